"""attnpool.torch: the custom op against the eager formula in float64 (values and gradients),
torch.library.opcheck, torch.compile without graph breaks, and the module trained a few steps.
Skips with a message where torch is not installed; the CUDA cases skip without a device."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the torch tests skip")

import attnpool  # noqa: E402
from attnpool.torch import ParametricAttentionPooling, nadaraya_watson  # noqa: E402


def eager(q, k, v, h, loo=False):
    s = -torch.cdist(q, k) ** 2 / (2 * h * h)
    if loo:
        s = s.masked_fill(torch.eye(len(q), dtype=torch.bool, device=q.device), float("-inf"))
    return torch.softmax(s, dim=1) @ v


def inputs(rng, n=17, m=23, d=3, dv=2, dtype=torch.float64, device="cpu", square=False):
    t = lambda *s: torch.tensor(rng.standard_normal(s), dtype=dtype, device=device,  # noqa: E731
                                requires_grad=True)
    q = t(n, d)
    k = q.detach().clone().requires_grad_() if square else t(m, d)
    v = t(k.shape[0], dv)
    h = torch.tensor(0.9, dtype=dtype, device=device, requires_grad=True)
    return q, k, v, h


@pytest.mark.parametrize("loo", [False, True])
def test_values_and_gradients_against_eager(rng, loo):
    q, k, v, h = inputs(rng, square=loo)
    mask = "leave_one_out" if loo else "none"
    out = nadaraya_watson(q, k, v, h, mask=mask)
    ref = eager(q, k, v, h, loo)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.tensor(rng.standard_normal(out.shape))
    got = torch.autograd.grad(out, (q, k, v, h), g)
    want = torch.autograd.grad(ref, (q, k, v, h), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_one_dimensional_and_float_bandwidth():
    x = torch.tensor([0.0, 1.0])
    out = nadaraya_watson(torch.tensor([0.5]), x, torch.tensor([1.0, 3.0]), 1.0)
    assert out.shape == (1,) and out.item() == pytest.approx(2.0)


def test_opcheck(rng):
    q, k, v, h = inputs(rng, dtype=torch.float32)
    torch.library.opcheck(torch.ops.attnpool.nadaraya_watson.default, (q, k, v, h, "none"))
    g = torch.ones(q.shape[0], v.shape[1])
    torch.library.opcheck(torch.ops.attnpool.nadaraya_watson_backward.default,
                          (q.detach(), k.detach(), v.detach(), h.detach(), "none", g))


def test_torch_compile_without_graph_breaks(rng):
    q, k, v, h = inputs(rng, dtype=torch.float32)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def loss(q, k, v, h):
        return (nadaraya_watson(q, k, v, h) ** 2).sum()

    got = loss(q, k, v, h)
    got.backward()
    want = (nadaraya_watson(q, k, v, h) ** 2).sum()
    torch.testing.assert_close(got, want)
    assert q.grad is not None and h.grad is not None


def test_module_trains_as_train_parametric(rng):
    x = torch.tensor(np.sort(rng.uniform(0, 5, 50)), dtype=torch.float32)
    y = 2 * torch.sin(x) + x ** 0.8 + torch.tensor(rng.normal(0, 0.5, 50), dtype=torch.float32)
    net = ParametricAttentionPooling(0.7)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ((net(x, x, y, leave_one_out=True) - y) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    fit = attnpool.train_parametric(x.numpy(), y.numpy(), method="book_sgd", initial_w=[0.7],
                                    backend="cpu")
    np.testing.assert_allclose(losses, fit.loss, rtol=1e-3)
    assert losses[-1] < losses[0]


def test_cuda_tensors(rng):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    q, k, v, h = inputs(rng, dtype=torch.float32, device="cuda")
    out = nadaraya_watson(q, k, v, h)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out, eager(q, k, v, h), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert q.grad.device.type == "cuda"
