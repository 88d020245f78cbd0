"""Zero copies where the memory allows, float64 centring, kinds of arrays, threads."""

import threading
import tracemalloc

import numpy as np
import pytest

import attnpool
from attnpool import _core


def addresses(monkeypatch):
    """Records the data address of every array _core.pool receives."""
    seen = []
    real = _core.pool

    def spy(q, k, v, out, *rest):
        seen.append([a.__array_interface__["data"][0] for a in (q, k, v)])
        return real(q, k, v, out, *rest)

    monkeypatch.setattr(_core, "pool", spy)
    return seen


def ptr(a):
    return a.__array_interface__["data"][0]


def test_float32_rows_are_not_copied(monkeypatch, rng):
    seen = addresses(monkeypatch)
    q = rng.standard_normal((50, 3)).astype(np.float32)
    big = rng.standard_normal((40, 7)).astype(np.float32)
    k = big[:, 2:5]            # rows contiguous, leading dimension 7
    v = big[:, 6]              # 1-D with a stride: one column, converted
    attnpool.pool(q, k, v, backend="cpu")
    assert seen[0][0] == ptr(q)
    assert seen[0][1] == ptr(k)
    attnpool.pool(np.asfortranarray(q), k, v, backend="cpu")
    assert seen[1][0] != ptr(q)  # Fortran order is converted once


def test_float32_input_is_not_copied_memory(rng):
    q = rng.standard_normal((250_000, 4)).astype(np.float32)  # 4 MB
    k = rng.standard_normal((8, 4)).astype(np.float32)
    v = rng.standard_normal((8, 1)).astype(np.float32)
    tracemalloc.start()
    out = attnpool.pool(q, k, v, backend="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.nbytes <= peak < out.nbytes + q.nbytes // 2, peak


def test_float64_far_from_origin_is_centred(rng):
    """Data at 1e6 with unit spread: rounding it to float32 first would lose the distances."""
    x = 1e6 + rng.uniform(0, 5, 200)
    y = np.sin(x - 1e6)
    q = 1e6 + np.linspace(0.5, 4.5, 50)
    v = y[:, None]
    s = -((q[:, None] - x[None, :]) ** 2) / (2 * 0.3**2)
    w = np.exp(s - s.max(1, keepdims=True))
    exact = (w / w.sum(1, keepdims=True)) @ v
    got = attnpool.pool(q, x, y, 0.3, backend="cpu")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, exact[:, 0], rtol=0, atol=1e-5)
    naive = attnpool.pool(q.astype(np.float32), x.astype(np.float32), y, 0.3, backend="cpu")
    assert np.abs(naive - exact[:, 0]).max() > 1e-3  # what centring avoids


def test_lists_and_scalars():
    assert attnpool.pool([0.5], [0.0, 1.0], [1.0, 3.0]).tolist() == [2.0]
    assert attnpool.pool(0.5, [0.0, 1.0], [1.0, 3.0]).tolist() == [2.0]
    out = attnpool.pool([[0.5, 0.0]], [[0.0, 0.0], [1.0, 0.0]], [[1.0, 10.0], [3.0, 20.0]])
    np.testing.assert_allclose(out, [[2.0, 15.0]], rtol=1e-6)


def test_dlpack_producer(rng):
    """Any object with __dlpack__ on the CPU is read through DLPack."""

    class Producer:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    q = rng.standard_normal((5, 2)).astype(np.float32)
    k = rng.standard_normal((6, 2)).astype(np.float32)
    v = rng.standard_normal((6, 1)).astype(np.float32)
    np.testing.assert_array_equal(attnpool.pool(Producer(q), Producer(k), Producer(v)),
                                  attnpool.pool(q, k, v))


def test_integer_inputs_give_float64():
    out = attnpool.pool(np.array([1]), np.array([0, 2]), np.array([1, 3]))
    assert out.dtype == np.float64 and out.tolist() == [2.0]


def test_threads_share_the_engine(rng):
    q = rng.standard_normal((300, 2)).astype(np.float32)
    k = rng.standard_normal((500, 2)).astype(np.float32)
    v = rng.standard_normal((500, 2)).astype(np.float32)
    want = attnpool.pool(q, k, v, backend="cpu", threads=1)
    results = [None] * 8

    def work(i):
        results[i] = attnpool.pool(q, k, v, backend="cpu", threads=1)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_resolve_backend():
    assert attnpool.resolve_backend("cpu") == "cpu"
    assert attnpool.resolve_backend() in ("cpu", "cuda_fused")
    assert attnpool.__version__.count(".") == 2


def test_gil_is_released_while_computing(rng):
    """Another Python thread runs while a call computes: with the GIL held, the main thread
    would stall for a whole call."""
    import time

    q = rng.standard_normal((1500, 4)).astype(np.float32)
    v = rng.standard_normal((1500, 1)).astype(np.float32)
    t0 = time.perf_counter()
    attnpool.pool(q, q, v, backend="reference", threads=1)
    call = time.perf_counter() - t0
    done = threading.Event()

    def work():
        attnpool.pool(q, q, v, backend="reference", threads=1)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    longest, last = 0.0, time.perf_counter()
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    t.join()
    assert longest < call / 2, (longest, call)


def test_device_layout_rule_reads_rows_in_place_and_copies_the_rest():
    """_device's rule for CUDA arrays, on NumPy stand-ins (strides in bytes): rows with contiguous
    elements and a leading dimension >= cols are read in place; anything else is copied."""
    from attnpool import _device

    def rule(a):
        return _device._rows_contiguous(a, a.strides, 1, lambda: np.ascontiguousarray(a))

    base = np.zeros((6, 5), np.float32)
    for in_place in (base, base[:, 1:4], base[2:3, :], base[:, 2:3], base[::2]):
        assert rule(in_place) is in_place
    for copied in (np.asfortranarray(base), base[:, ::2], np.broadcast_to(base[:1], (6, 5))):
        out = rule(copied)
        assert out is not copied and out.flags.c_contiguous
        np.testing.assert_array_equal(out, copied)


def test_device_path_is_off_without_its_switch(monkeypatch):
    from attnpool import _device

    a = np.ones((2, 2), np.float32)
    monkeypatch.delenv(_device.SWITCH, raising=False)
    assert _device.framework((a, a, a), "automatic") is None
    monkeypatch.setenv(_device.SWITCH, "1")
    assert _device.framework((a, a, a), "automatic") is None  # host arrays stay on the host
