"""The CUDA-array path's Python glue (attnpool._device) on the CPU: NumPy arrays stand in for
device arrays (only the pointer is NumPy's own), and the device entry points of _core are
replaced by the host engine reading the (pointer, rows, cols, leading dimension) views that
_device hands them. So the layouts, the centring, the dtype and shape of the results and the
views handed to the library are checked here without a GPU; tests/python/test_cuda_arrays.py
runs the real thing where one exists."""

import contextlib
import ctypes

import numpy as np
import pytest

import attnpool
from attnpool import _core, _device


class NumpyDevice(_device._CuPy):
    """_device's CuPy framework with NumPy behind it: the same conversions, on the host."""

    def __init__(self):  # noqa: D107 - no cupy import
        self.cp = np
        self.device = contextlib.nullcontext()

    def stream(self):
        return 0

    def ptr(self, a):
        return a.ctypes.data


def as_array(view, writable=False):
    ptr, rows, cols, ld = view
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), np.float32)
    buf = (ctypes.c_float * ((rows - 1) * ld + cols)).from_address(ptr)
    flat = np.frombuffer(buf, dtype=np.float32)
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (4 * ld, 4), writeable=writable)


@pytest.fixture
def glue(monkeypatch):
    """The device calls served by the host engine; records the views they received."""
    seen = []

    monkeypatch.setattr(_core, "cuda_pool_workspace_size", lambda *a: 64)
    monkeypatch.setattr(_core, "cuda_pool_backward_workspace_size", lambda *a: 64)

    def cuda_pool(q, k, v, out, bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend,
                  check_finite, stream, ws, size):
        seen.append((q, k, v))
        _core.pool(as_array(q), as_array(k), as_array(v), as_array(out, True), bandwidth, kernel,
                   bandwidths, empty, mask, valid_lens, "cpu", 1, check_finite)

    def cuda_pool_backward(q, k, v, g, dq, dk, dv, dh, bandwidth, kernel, bandwidths, empty, mask,
                           valid_lens, backend, check_finite, stream, ws, size):
        arr = [None if x is None else as_array(x, True) for x in (dq, dk, dv)]
        h = _core.pool_backward(as_array(q), as_array(k), as_array(v), as_array(g), *arr,
                                dh != 0, bandwidth, kernel, bandwidths, empty, mask, valid_lens,
                                "cpu", 1, check_finite)
        if dh:
            ctypes.c_double.from_address(dh).value = h

    monkeypatch.setattr(_core, "cuda_pool", cuda_pool)
    monkeypatch.setattr(_core, "cuda_pool_backward", cuda_pool_backward)
    return seen


def params(h, mask="none"):
    return (h, "gaussian", None, "error", mask, None, "automatic", 1, True)


def test_layouts_and_in_place_views(rng, glue):
    base = rng.standard_normal((300, 8)).astype(np.float32)
    q, k, v = base[:40, 1:4], base[:, 4:7], base[:, 7]
    out = _device.pool(NumpyDevice(), q, k, v, params(0.8))
    assert out.shape == (40,) and out.dtype == np.float32
    (vq, vk, vv), = glue
    assert vq == (q.ctypes.data, 40, 3, 8) and vk[0] == k.ctypes.data  # read in place
    np.testing.assert_array_equal(out, attnpool.pool(q, k, v, 0.8, backend="cpu", threads=1))
    f = np.asfortranarray(base[:40, 1:4])
    out_f = _device.pool(NumpyDevice(), f, k, v, params(0.8))  # converted once
    assert glue[1][0][0] != f.ctypes.data
    np.testing.assert_array_equal(out_f, out)


def test_float64_is_centred_and_returned_in_float64(rng, glue):
    x = 1e6 + rng.uniform(0, 1, 300)
    y = np.sin(x - 1e6)
    out = _device.pool(NumpyDevice(), x[:50], x, y, params(0.05))
    assert out.dtype == np.float64 and out.shape == (50,)
    np.testing.assert_array_equal(out, attnpool.pool(x[:50], x, y, 0.05, backend="cpu",
                                                     threads=1))


def test_backward_gradients_shapes_and_bandwidth(rng, glue):
    q, k, v = (rng.standard_normal(s) for s in ((20, 2), (30, 2), (30, 3)))
    g = rng.standard_normal((20, 3))
    dq, dk, dv, dh = _device.pool_backward(NumpyDevice(), q, k, v, g,
                                           {"queries", "keys", "values", "bandwidth"},
                                           params(0.9))
    want = attnpool.pool_backward(q, k, v, g, 0.9, backend="cpu", threads=1)
    for got, ref in ((dq, want.queries), (dk, want.keys), (dv, want.values)):
        assert got.dtype == np.float64 and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    assert dh == want.bandwidth
    none = _device.pool_backward(NumpyDevice(), q, k, v, g, {"values"}, params(0.9))
    assert none[0] is None and none[1] is None and none[3] is None
    np.testing.assert_array_equal(none[2], want.values)
