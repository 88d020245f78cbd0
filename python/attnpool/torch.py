"""attnpool for PyTorch: a custom op with autograd that torch.compile sees, and the book's
parametric attention pooling as an nn.Module.

>>> import torch
>>> from attnpool.torch import nadaraya_watson
>>> q = torch.tensor([[0.5]]); k = torch.tensor([[0.0], [1.0]])
>>> v = torch.tensor([[1.0], [3.0]], requires_grad=True)
>>> out = nadaraya_watson(q, k, v, 1.0)
>>> out.sum().backward(); v.grad.flatten().tolist()
[0.5, 0.5]

The op is ``torch.ops.attnpool.nadaraya_watson`` (registered with torch.library, with
register_autograd and register_fake): forward and backward run attnpool's fused engine, so the
n x m weights are never stored, and the gradients of the queries, keys, values and bandwidth
come from attnpool's fused backward pass. CUDA tensors go through host copies to the CPU
engine; with ATTNPOOL_PYTHON_CUDA_ARRAYS=1 (experimental, see attnpool's module docstring) they
are computed on their device, on the current stream, by the fused CUDA kernels.
"""

from __future__ import annotations

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("attnpool.torch needs PyTorch (pip install torch); the rest of attnpool "
                      "works without it") from e

from torch import Tensor

import attnpool

__all__ = ["nadaraya_watson", "ParametricAttentionPooling"]


def _h(bandwidth: Tensor) -> float:
    return float(bandwidth.detach().cpu().reshape(()).item())


@torch.library.custom_op("attnpool::nadaraya_watson", mutates_args=())
def _forward(queries: Tensor, keys: Tensor, values: Tensor, bandwidth: Tensor,
             mask: str) -> Tensor:
    out = attnpool.pool(queries, keys, values, _h(bandwidth), mask=mask)
    return out.to(dtype=values.dtype, device=values.device)


@_forward.register_fake
def _(queries, keys, values, bandwidth, mask):
    return values.new_empty((queries.shape[0], values.shape[1]))


@torch.library.custom_op("attnpool::nadaraya_watson_backward", mutates_args=())
def _backward_op(queries: Tensor, keys: Tensor, values: Tensor, bandwidth: Tensor, mask: str,
                 grad: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = attnpool.pool_backward(queries, keys, values, grad, _h(bandwidth), mask=mask)
    dh = torch.tensor(g.bandwidth, dtype=bandwidth.dtype, device=bandwidth.device)
    return (g.queries.to(queries.dtype), g.keys.to(keys.dtype), g.values.to(values.dtype),
            dh.reshape(bandwidth.shape))


@_backward_op.register_fake
def _(queries, keys, values, bandwidth, mask, grad):
    return (torch.empty_like(queries), torch.empty_like(keys), torch.empty_like(values),
            torch.empty_like(bandwidth))


def _setup_context(ctx, inputs, output):
    queries, keys, values, bandwidth, mask = inputs
    ctx.save_for_backward(queries, keys, values, bandwidth)
    ctx.mask = mask


def _backward(ctx, grad):
    queries, keys, values, bandwidth = ctx.saved_tensors
    dq, dk, dv, dh = _backward_op(queries, keys, values, bandwidth, ctx.mask, grad.contiguous())
    return dq, dk, dv, dh, None


_forward.register_autograd(_backward, setup_context=_setup_context)


def nadaraya_watson(queries: Tensor, keys: Tensor, values: Tensor, bandwidth=1.0, *,
                    mask: str = "none") -> Tensor:
    """Attention pooling with Gaussian weights, differentiable in every input.

    Parameters
    ----------
    queries : Tensor, shape (n, d) or (n,)
    keys : Tensor, shape (m, d) or (m,)
    values : Tensor, shape (m, dv) or (m,)
    bandwidth : float or Tensor (0-D or 1 element)
        A tensor that requires grad gets dL/dh.
    mask : {"none", "leave_one_out"}
        "leave_one_out": query i skips key i (n == m), the book's training objective.

    Returns
    -------
    Tensor, shape (n, dv), or (n,) for 1-D values; the dtype and device of `values`.
    """
    if not isinstance(bandwidth, Tensor):
        bandwidth = torch.tensor(float(bandwidth), dtype=values.dtype, device=values.device)
    q = queries.reshape(-1, 1) if queries.dim() == 1 else queries
    k = keys.reshape(-1, 1) if keys.dim() == 1 else keys
    v = values.reshape(-1, 1) if values.dim() == 1 else values
    out = torch.ops.attnpool.nadaraya_watson(q, k, v, bandwidth.reshape(()), mask)
    return out.reshape(-1) if values.dim() == 1 else out


class ParametricAttentionPooling(torch.nn.Module):
    """The book's parametric attention pooling: score = -((q - k) w)^2 / 2 with a learned w
    (the Gaussian kernel with bandwidth 1 / |w|), trainable with any torch optimiser.

    Parameters
    ----------
    w : float, optional
        Initial weight; by default torch.rand(1), as the book.

    Examples
    --------
    >>> import torch
    >>> from attnpool.torch import ParametricAttentionPooling
    >>> x = torch.linspace(0, 5, 50); y = torch.sin(x)
    >>> net = ParametricAttentionPooling(1.0)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.01)
    >>> for _ in range(3):
    ...     opt.zero_grad(); loss = ((net(x, x, y, leave_one_out=True) - y) ** 2).sum()
    ...     loss.backward(); opt.step()
    """

    def __init__(self, w: float | None = None):
        super().__init__()
        init = torch.rand((1,)) if w is None else torch.tensor([float(w)])
        self.w = torch.nn.Parameter(init)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, *,
                leave_one_out: bool = False) -> Tensor:
        """Pooled values, shape (n, dv) or (n,); leave_one_out skips key i for query i."""
        h = 1.0 / self.w.abs()
        return nadaraya_watson(queries, keys, values, h.to(values.dtype),
                               mask="leave_one_out" if leave_one_out else "none")
