"""CUDA arrays: PyTorch CUDA tensors and CuPy arrays computed on their device, on the current
stream, read in place when they are float32 with contiguous rows, and returned on the device
(with ATTNPOOL_PYTHON_CUDA_ARRAYS=1, which these tests set). Every case skips with "no CUDA
device" where attnpool has no CUDA backend or no GPU is visible."""

import numpy as np
import pytest

import attnpool
from attnpool import _core

torch = pytest.importorskip("torch", reason="torch is not installed: the CUDA array tests skip")

if not (torch.cuda.is_available() and attnpool.cuda_available()):
    pytest.skip("no CUDA device (or attnpool built without CUDA): the CUDA array tests skip",
                allow_module_level=True)

from attnpool import _device  # noqa: E402
from attnpool.torch import nadaraya_watson  # noqa: E402


@pytest.fixture(autouse=True)
def device_path_on(monkeypatch):
    """The device path is behind its switch until a GPU run has passed these tests."""
    monkeypatch.setenv(_device.SWITCH, "1")


def eager(q, k, v, h, loo=False):
    # Differences, not cdist: its matrix-product form cancels for points far from the origin.
    s = -((q[:, None, :] - k[None, :, :]) ** 2).sum(-1) / (2 * h * h)
    if loo:
        s = s.masked_fill(torch.eye(len(q), dtype=torch.bool, device=q.device), float("-inf"))
    return torch.softmax(s, dim=1) @ v


def tensors(rng, n, m, d, dv, dtype=torch.float32, offset=0.0):
    t = lambda *s: torch.tensor(rng.standard_normal(s), dtype=dtype,  # noqa: E731
                                device="cuda")
    return t(n, d) + offset, t(m, d) + offset, t(m, dv)


@pytest.fixture
def no_host_path(monkeypatch):
    """Fails a test that reaches the host engine; records the device views _core received."""
    seen = []

    def refuse(*args, **kwargs):
        raise AssertionError("a CUDA array took the host path")

    for name in ("pool", "pool_backward"):
        monkeypatch.setattr(_core, name, refuse)
    real = _core.cuda_pool

    def record(q, k, v, out, *rest):
        seen.append((q, k, v, out, rest[-3]))  # the views and the stream
        return real(q, k, v, out, *rest)

    monkeypatch.setattr(_core, "cuda_pool", record)
    return seen


@pytest.mark.parametrize("n,m,d,dv", [(1, 1, 1, 1), (7, 129, 1, 1), (129, 4097, 3, 2),
                                      (300, 1000, 16, 5)])
def test_pool_on_the_device_in_place(rng, no_host_path, n, m, d, dv):
    q, k, v = tensors(rng, n, m, d, dv)
    out = attnpool.pool(q, k, v, 0.7)
    assert out.is_cuda and out.device == q.device and out.dtype == torch.float32
    assert out.shape == (n, dv)
    (vq, vk, vv, _, _), = no_host_path
    assert (vq[0], vk[0], vv[0]) == (q.data_ptr(), k.data_ptr(), v.data_ptr())  # zero-copy
    ref = eager(q.double(), k.double(), v.double(), 0.7)
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-5)


def test_float64_far_from_the_origin_is_centred_on_the_device(rng, no_host_path):
    q, k, v = tensors(rng, 64, 500, 1, 1, dtype=torch.float64, offset=1e6)
    q, k = 1e6 + (q - 1e6) * 0.1, 1e6 + (k - 1e6) * 0.1
    out = attnpool.pool(q, k, v, 0.05)
    assert out.dtype == torch.float64 and out.is_cuda
    torch.testing.assert_close(out, eager(q, k, v, 0.05), rtol=1e-4, atol=1e-4)


def test_strided_and_one_dimensional_inputs(rng, no_host_path):
    base = torch.tensor(rng.standard_normal((200, 8)), dtype=torch.float32, device="cuda")
    q, k, v = base[:50, 1:4], base[:, 4:7], base[:, 7]  # leading dimension 8, 1-D values
    out = attnpool.pool(q, k, v, 0.9)
    assert out.shape == (50,)
    assert no_host_path[0][0][3] == 8 and no_host_path[0][0][0] == q.data_ptr()
    ref = eager(q.double(), k.double(), v.double()[:, None], 0.9)[:, 0]
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-5)
    t = attnpool.pool(base[:50, 1:4].t().contiguous().t(), k, v, 0.9)  # column-major: one copy
    torch.testing.assert_close(t, out)


def test_the_current_stream_is_used(rng, no_host_path):
    q, k, v = tensors(rng, 4096, 4096, 1, 1)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = attnpool.pool(q, k, v, 0.5, check_finite=False)
    assert no_host_path[0][4] == s.cuda_stream
    s.synchronize()
    torch.testing.assert_close(out.double(), eager(q.double(), k.double(), v.double(), 0.5),
                               rtol=2e-5, atol=2e-5)


def test_errors_name_the_argument_as_on_the_host(rng):
    q, k, v = tensors(rng, 5, 6, 2, 1)
    with pytest.raises(attnpool.InvalidArgument) as dev:
        attnpool.pool(q, k, v, -1.0)
    with pytest.raises(attnpool.InvalidArgument) as host:
        attnpool.pool(q.cpu(), k.cpu(), v.cpu(), -1.0)
    assert "bandwidth" in str(dev.value) and "-1" in str(dev.value)
    assert str(dev.value).split(": ", 1)[1] == str(host.value).split(": ", 1)[1]
    bad = q.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(attnpool.InvalidArgument, match="queries"):
        attnpool.pool(bad, k, v, 1.0)
    with pytest.raises(attnpool.InvalidArgument, match="keys"):
        attnpool.pool(q, k[:, :1].contiguous(), v, 1.0)


def test_mixed_devices_and_the_cpu_backend_take_the_host_path(rng):
    q, k, v = tensors(rng, 9, 11, 2, 3)
    want = attnpool.pool(q.cpu(), k.cpu(), v.cpu(), 0.8)
    for got in (attnpool.pool(q, k.cpu(), v, 0.8), attnpool.pool(q, k, v, 0.8, backend="cpu")):
        assert got.is_cuda
        torch.testing.assert_close(got.cpu(), want)


@pytest.mark.parametrize("loo", [False, True])
def test_backward_on_the_device_against_eager(rng, loo):
    q, k, v = tensors(rng, 129, 129 if loo else 300, 2, 3, dtype=torch.float64)
    if loo:
        k = q.clone()
    g = torch.tensor(rng.standard_normal((129, 3)), dtype=torch.float64, device="cuda")
    grads = attnpool.pool_backward(q, k, v, g, 0.8, mask="leave_one_out" if loo else None)
    qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
    h = torch.tensor(0.8, dtype=torch.float64, device="cuda", requires_grad=True)
    want = torch.autograd.grad(eager(qq, kk, vv, h, loo), (qq, kk, vv, h), g)
    for got, ref in zip(grads[:3], want[:3]):
        assert got.is_cuda and got.dtype == torch.float64
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert grads.bandwidth == pytest.approx(float(want[3]), rel=1e-4, abs=1e-4)


def test_torch_op_values_gradients_and_compile_on_the_device(rng):
    q, k, v = (t.requires_grad_() for t in tensors(rng, 33, 65, 3, 2, dtype=torch.float64))
    h = torch.tensor(0.9, dtype=torch.float64, device="cuda", requires_grad=True)
    out = nadaraya_watson(q, k, v, h)
    ref = eager(q, k, v, h)
    assert out.is_cuda
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v, h), g),
                    torch.autograd.grad(ref, (q, k, v, h), g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    f = torch.compile(lambda a, b, c: nadaraya_watson(a, b, c, 0.9).sum(), fullgraph=True)
    qf, kf, vf = (t.detach().float() for t in (q, k, v))
    assert float(f(qf, kf, vf)) == pytest.approx(float(ref.sum()), rel=1e-4)


@pytest.fixture
def host_refused(monkeypatch):
    """Fails a test that reaches any host entry point of _core."""
    def refuse(*args, **kwargs):
        raise AssertionError("a CUDA array took the host path")

    for name in ("pool", "pool_backward", "attention_weights", "average_pool", "pool_batched"):
        monkeypatch.setattr(_core, name, refuse)


def test_weights_average_and_batches_on_the_device(rng, host_refused):
    q, k, v = tensors(rng, 33, 70, 2, 3)
    w = attnpool.attention_weights(q, k, 0.6)
    assert w.is_cuda and w.shape == (33, 70)
    s = -((q[:, None, :].double() - k[None, :, :].double()) ** 2).sum(-1) / (2 * 0.36)
    torch.testing.assert_close(w.double(), torch.softmax(s, dim=1), rtol=1e-5, atol=1e-6)
    avg = attnpool.average_pool(v[:, 0], 5)
    assert avg.is_cuda and avg.shape == (5,)
    torch.testing.assert_close(avg, v[:, 0].mean().expand(5), rtol=1e-6, atol=1e-6)
    qo, ko = [0, 10, 10, 33], [0, 30, 31, 70]  # an empty problem among them
    out = attnpool.pool_batched(q, k, v, qo, ko, 0.6)
    assert out.is_cuda and out.shape == (33, 3)
    for b in range(3):
        if qo[b] == qo[b + 1]:
            continue
        qs, ks = slice(qo[b], qo[b + 1]), slice(ko[b], ko[b + 1])
        ref = eager(q[qs].double(), k[ks].double(), v[ks].double(), 0.6)
        torch.testing.assert_close(out[qs].double(), ref, rtol=2e-5, atol=2e-5)


def test_masked_weights_keep_the_host_path(rng):
    q, k, _ = tensors(rng, 9, 9, 1, 1)
    w = attnpool.attention_weights(q, k, 0.5, mask="leave_one_out")
    assert w.is_cuda and float(w.diagonal().abs().max()) == 0.0


def test_cupy_arrays(rng):
    cp = pytest.importorskip("cupy", reason="cupy is not installed")
    qn, kn, vn = (rng.standard_normal(s).astype(np.float32) for s in ((20, 2), (40, 2), (40, 3)))
    out = attnpool.pool(cp.asarray(qn), cp.asarray(kn), cp.asarray(vn), 0.6)
    assert isinstance(out, cp.ndarray) and out.shape == (20, 3)
    np.testing.assert_allclose(cp.asnumpy(out), attnpool.pool(qn, kn, vn, 0.6, backend="cpu"),
                               rtol=2e-5, atol=2e-6)
