"""CUDA arrays in, CUDA arrays out: PyTorch CUDA tensors and CuPy arrays go to the library's
device-pointer API (attnpool/cuda.hpp) on the caller's current stream, with no host round trip.

Float32 arrays whose rows are contiguous are read in place; other float dtypes and layouts are
converted once on the device, and float64 queries and keys are centred there first (as the host
path centres them). The output and the workspace are allocated by the caller's framework, whose
allocator orders their reuse on the same stream, so nothing here synchronises except the
device-side input scan of check_finite (one synchronisation of the stream).

Other device arrays (JAX, or a CUDA array mixed with host arrays) take the host path.

This path has not yet run on a GPU: until a GPU run has passed tests/python/test_cuda_arrays.py
(scripts/device-check.sh runs it), it is taken only with ATTNPOOL_PYTHON_CUDA_ARRAYS=1, and CUDA
arrays otherwise go through host copies, as before.
"""

from __future__ import annotations

import os

from . import _core

DEVICE_BACKENDS = ("automatic", "cuda_fused", "cuda_unfused")
SWITCH = "ATTNPOOL_PYTHON_CUDA_ARRAYS"  # "1": CUDA arrays computed on their device


class _Framework:
    """What the device path needs of an array library; each subclass says it for its arrays."""

    def view(self, a):
        """(pointer, rows, cols, leading dimension) of a 2-D float32 device array."""
        rows, cols = a.shape
        return self.ptr(a), rows, cols, (self.row_stride(a) if rows > 1 else cols)


class _Torch(_Framework):
    def __init__(self, like):
        import torch

        self.t = torch
        self.device = like.device

    def same_device(self, a):
        return self.t.is_tensor(a) and a.is_cuda and a.device == self.device

    def ptr(self, a):
        return a.data_ptr()

    def row_stride(self, a):
        return a.stride(0)

    def context(self):
        return self.t.cuda.device(self.device)

    def stream(self):
        return self.t.cuda.current_stream(self.device).cuda_stream

    def f32(self, a, centre=None):
        a = a.detach()
        if a.dtype.is_complex:
            raise _core.InvalidArgument(f"complex tensors are not supported, got {a.dtype}")
        if centre is not None:
            a = a - centre
        if a.dtype != self.t.float32:
            a = a.to(self.t.float32)
        return _rows_contiguous(a, a.stride(), a.element_size(), a.contiguous)

    def mean0(self, a):
        return a.detach().mean(dim=0)

    def is_f64(self, a):
        return a.dtype == self.t.float64

    def finite(self, c):
        return bool(self.t.isfinite(c).all()) and bool((c != 0).any())

    def empty(self, shape, dtype="float32"):
        return self.t.empty(shape, dtype=getattr(self.t, dtype), device=self.device)

    def to(self, a, like):
        return a if a.dtype == like.dtype else a.to(like.dtype)


class _CuPy(_Framework):
    def __init__(self, like):
        import cupy

        self.cp = cupy
        self.device = like.device

    def same_device(self, a):
        return isinstance(a, self.cp.ndarray) and a.device == self.device

    def ptr(self, a):
        return a.data.ptr

    def row_stride(self, a):
        return a.strides[0] // a.itemsize

    def context(self):
        return self.device

    def stream(self):
        return self.cp.cuda.get_current_stream().ptr

    def f32(self, a, centre=None):
        if a.dtype.kind == "c":
            raise _core.InvalidArgument(f"complex arrays are not supported, got {a.dtype}")
        if centre is not None:
            a = a - centre
        if a.dtype != self.cp.float32:
            a = a.astype(self.cp.float32)
        return _rows_contiguous(a, a.strides, 1, lambda: self.cp.ascontiguousarray(a))

    def mean0(self, a):
        return a.mean(axis=0)

    def is_f64(self, a):
        return a.dtype == self.cp.float64

    def finite(self, c):
        return bool(self.cp.isfinite(c).all()) and bool((c != 0).any())

    def empty(self, shape, dtype="float32"):
        return self.cp.empty(shape, dtype=getattr(self.cp, dtype))

    def to(self, a, like):
        return a if a.dtype == like.dtype else a.astype(like.dtype)


def _rows_contiguous(a, strides, unit, contiguous):
    """`a` itself when its rows are contiguous (strides in units of `unit` bytes), else a copy."""
    if a.ndim == 2 and a.shape[0] > 0 and a.shape[1] > 0:
        s0, s1 = strides[0] * unit, strides[1] * unit
        cols = a.shape[1]
        if (cols == 1 or s1 == 4) and (a.shape[0] == 1 or (s0 % 4 == 0 and s0 >= 4 * cols)):
            return a
        return contiguous()
    return a


def framework(arrays, backend):
    """The device framework of `arrays` when every one is a CUDA array of PyTorch or CuPy on one
    device and `backend` may run there; else None (the host path)."""
    if (backend not in DEVICE_BACKENDS or os.environ.get(SWITCH) != "1"
            or not _core.cuda_available()):
        return None
    first = arrays[0]
    mod = type(first).__module__
    try:
        if mod.startswith("torch") and getattr(first, "is_cuda", False):
            fw = _Torch(first)
        elif mod.startswith("cupy") and hasattr(first, "device") and hasattr(first, "data"):
            fw = _CuPy(first)
        else:
            return None
    except ImportError:
        return None
    return fw if all(fw.same_device(a) for a in arrays) else None


def _two_d(a, name):
    """1-D as one column, 0-D as one element (as the host path reads them)."""
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(-1, 1)
    if a.ndim != 2:
        raise _core.InvalidArgument(
            f"{name}: expected a 1-D or 2-D array, got {a.ndim}-D with shape {tuple(a.shape)}")
    return a


def prepared(fw, queries, keys, values=None, dout=None):
    """The inputs as 2-D float32 device arrays; float64 queries and keys centred first."""
    q, k = _two_d(queries, "queries"), _two_d(keys, "keys")
    centre = None
    if fw.is_f64(q) and fw.is_f64(k) and k.shape[0] > 0 and q.shape[1] == k.shape[1]:
        c = fw.mean0(k)
        if fw.finite(c):
            centre = c
    out = [fw.f32(q, centre), fw.f32(k, centre)]
    for a, name in ((values, "values"), (dout, "dout")):
        if a is not None:
            out.append(fw.f32(_two_d(a, name)))
    return out


def pool(fw, queries, keys, values, params):
    """attnpool.pool on the device; `params` are _core's keyword arguments in order."""
    with fw.context():
        q, k, v = prepared(fw, queries, keys, values)
        out = fw.empty((q.shape[0], v.shape[1]))
        (bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, _threads,
         check_finite) = params
        size = _core.cuda_pool_workspace_size(q.shape[0], k.shape[0], q.shape[1], v.shape[1],
                                              bandwidth, kernel, bandwidths, empty, mask,
                                              valid_lens, backend)
        ws = fw.empty((max(size, 1),), "uint8")
        _core.cuda_pool(fw.view(q), fw.view(k), fw.view(v), fw.view(out), bandwidth, kernel,
                        bandwidths, empty, mask, valid_lens, backend, check_finite, fw.stream(),
                        fw.ptr(ws), size)
        out = fw.to(out, values)
        return out.reshape(-1) if values.ndim == 1 else out


def attention_weights(fw, queries, keys, params):
    """attnpool.attention_weights on the device (the unfused cuBLAS path; no masks)."""
    with fw.context():
        q, k = prepared(fw, queries, keys)
        w = fw.empty((q.shape[0], k.shape[0]))
        (bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, _threads,
         check_finite) = params
        size = _core.cuda_attention_weights_workspace_size(
            q.shape[0], k.shape[0], q.shape[1], bandwidth, kernel, bandwidths, empty, mask,
            valid_lens, backend)
        ws = fw.empty((max(size, 1),), "uint8")
        _core.cuda_attention_weights(fw.view(q), fw.view(k), fw.view(w), bandwidth, kernel,
                                     bandwidths, empty, mask, valid_lens, backend, check_finite,
                                     fw.stream(), fw.ptr(ws), size)
        return fw.to(w, queries)


def average_pool(fw, values, rows, backend, check_finite):
    """attnpool.average_pool on the device."""
    with fw.context():
        v = fw.f32(_two_d(values, "values"))
        out = fw.empty((rows, v.shape[1]))
        _core.cuda_average_pool(fw.view(v), fw.view(out), backend, check_finite, fw.stream())
        out = fw.to(out, values)
        return out.reshape(-1) if values.ndim == 1 else out


def pool_batched(fw, queries, keys, values, query_offsets, key_offsets, params):
    """attnpool.pool_batched on the device (the fused path; no masks). The offsets are host
    arrays (uint64), as the library reads them."""
    with fw.context():
        q, k, v = prepared(fw, queries, keys, values)
        out = fw.empty((q.shape[0], v.shape[1]))
        (bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, _threads,
         check_finite) = params
        size = _core.cuda_pool_batched_workspace_size(
            max(len(query_offsets) - 1, 0), q.shape[0], q.shape[1], v.shape[1], bandwidth, kernel,
            bandwidths, empty, mask, valid_lens, backend)
        ws = fw.empty((max(size, 1),), "uint8")
        _core.cuda_pool_batched(fw.view(q), fw.view(k), fw.view(v), fw.view(out), query_offsets,
                                key_offsets, bandwidth, kernel, bandwidths, empty, mask,
                                valid_lens, backend, check_finite, fw.stream(), fw.ptr(ws),
                                size)
        out = fw.to(out, values)
        return out.reshape(-1) if values.ndim == 1 else out


def pool_backward(fw, queries, keys, values, dout, wrt, params):
    """attnpool.pool_backward on the device: (dq, dk, dv, dh) with None where not asked."""
    with fw.context():
        q, k, v, g = prepared(fw, queries, keys, values, dout)
        (bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, _threads,
         check_finite) = params
        dq = fw.empty(tuple(q.shape)) if "queries" in wrt else None
        dk = fw.empty(tuple(k.shape)) if "keys" in wrt else None
        dv = fw.empty(tuple(v.shape)) if "values" in wrt else None
        dh = fw.empty((1,), "float64") if "bandwidth" in wrt else None
        size = _core.cuda_pool_backward_workspace_size(q.shape[0], k.shape[0], q.shape[1],
                                                       v.shape[1], bandwidth, kernel, bandwidths,
                                                       empty, mask, valid_lens, backend)
        ws = fw.empty((max(size, 1),), "uint8")
        _core.cuda_pool_backward(
            fw.view(q), fw.view(k), fw.view(v), fw.view(g), None if dq is None else fw.view(dq),
            None if dk is None else fw.view(dk), None if dv is None else fw.view(dv),
            0 if dh is None else fw.ptr(dh), bandwidth, kernel, bandwidths, empty, mask,
            valid_lens, backend, check_finite, fw.stream(), fw.ptr(ws), size)

        def shaped(src, grad):
            if grad is None:
                return None
            grad = fw.to(grad, src)
            return grad.reshape(tuple(src.shape)) if src.ndim <= 1 else grad

        return (shaped(queries, dq), shaped(keys, dk), shaped(values, dv),
                None if dh is None else float(dh[0]))

