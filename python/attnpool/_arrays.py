"""Arrays in and out: any array-like to the float32 views the C++ engine reads, and results back
into the caller's kind of array.

The engine reads row-major float32 with a leading dimension. A float32 array whose rows are
contiguous (C order, or a slice of rows / columns of one) is passed as it is, without a copy;
everything else is converted once. Float64 queries and keys are centred in double before they are
rounded to float32: every kernel depends only on q - k, so the shift changes no result, and it
keeps the rounding error relative to the data's spread rather than its offset.
"""

from __future__ import annotations

import numpy as np

from . import _core

_F32 = np.dtype(np.float32)
_DLPACK_CPU = 1  # DLDeviceType kDLCPU


class Kind:
    """What the caller passed, so that results go back as the same kind of array."""

    __slots__ = ("torch_like", "dtype")

    def __init__(self, torch_like=None, dtype=_F32):
        self.torch_like = torch_like  # a torch.Tensor whose device and dtype the result takes
        self.dtype = dtype            # NumPy dtype of the result otherwise

    def wrap(self, out):
        """`out` (a float32 NumPy array) as the caller's kind and dtype."""
        if self.torch_like is not None:
            import torch

            return torch.from_numpy(out).to(device=self.torch_like.device,
                                            dtype=self.torch_like.dtype)
        if out.dtype != self.dtype:
            return out.astype(self.dtype)
        return out


_KIND_F32 = Kind()


def _is_torch(a):
    return type(a).__module__.startswith("torch") and hasattr(a, "detach")


def to_numpy(a, name):
    """`a` as a NumPy array without a copy where the memory allows (host DLPack, NumPy)."""
    if isinstance(a, np.ndarray):
        return a
    if _is_torch(a):
        t = a.detach()
        if t.device.type != "cpu":
            t = t.cpu()  # device tensors: the CPU engine reads host memory
        if t.dtype.is_complex:
            raise _core.InvalidArgument(f"{name}: complex arrays are not supported, got {t.dtype}")
        if not t.dtype.is_floating_point or t.dtype == _torch_bf16():
            t = t.float()
        return t.resolve_conj().resolve_neg().numpy()
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None and hasattr(a, "__dlpack__"):
        try:
            if int(dev()[0]) == _DLPACK_CPU:
                return np.from_dlpack(a)
        except (TypeError, BufferError, RuntimeError):
            pass
        get = getattr(a, "get", None)  # CuPy
        if callable(get):
            return np.asarray(get())
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as e:
        raise _core.InvalidArgument(f"{name}: cannot be read as an array ({e})") from None


def _torch_bf16():
    import torch

    return torch.bfloat16


def fast(*arrays):
    """The arrays as 2-D float32 views when every one is a C-contiguous float32 NumPy array of
    1 or 2 dimensions (the common case, checked in a few hundred nanoseconds); else None."""
    out = []
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != _F32 or not a.flags.c_contiguous:
            return None
        nd = a.ndim
        if nd == 1:
            a = a.reshape(-1, 1)
        elif nd != 2:
            return None
        out.append(a)
    return out


def kind_of(*arrays):
    """The result kind: torch if the first argument is a tensor, else the NumPy result dtype."""
    first = arrays[0]
    if _is_torch(first):
        return Kind(torch_like=first)
    dtypes = []
    for a in arrays:
        dt = getattr(a, "dtype", None)
        if isinstance(dt, np.dtype):
            dtypes.append(dt)
    if not dtypes:
        return Kind(dtype=np.dtype(np.float64) if not isinstance(first, np.ndarray) else _F32)
    dt = np.result_type(*dtypes)
    return Kind(dtype=dt if dt.kind == "f" else np.dtype(np.float64))


def check_dtype(a, name):
    if a.dtype.kind == "c":
        raise _core.InvalidArgument(f"{name}: complex arrays are not supported, got {a.dtype}")
    if a.dtype.kind not in "fiub":
        raise _core.InvalidArgument(f"{name}: expected a real numeric array, got dtype {a.dtype}")


def as_2d(a, name):
    """NumPy array, 1-D as one column (the notebook's case), at most 2-D."""
    a = to_numpy(a, name)
    check_dtype(a, name)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(-1, 1)
    elif a.ndim != 2:
        raise _core.InvalidArgument(
            f"{name}: expected a 1-D or 2-D array, got {a.ndim}-D with shape {a.shape}")
    return a


def is_engine_ready(a):
    """True when the engine can read `a` as it is: float32, rows contiguous, aligned."""
    if a.dtype != _F32 or not a.flags.aligned:
        return False
    rows, cols = a.shape
    if rows == 0 or cols == 0:
        return True
    s0, s1 = a.strides
    if cols > 1 and s1 != 4:
        return False
    return rows == 1 or (s0 > 0 and s0 % 4 == 0 and s0 >= 4 * cols)


def f32(a):
    """A 2-D NumPy array as the engine's float32, zero-copy where possible."""
    if is_engine_ready(a):
        return a
    return np.ascontiguousarray(a, dtype=_F32)


def matrix(a, name):
    """Any array-like as a 2-D float32 array the engine reads (zero-copy where possible)."""
    return f32(as_2d(a, name))


def centred_pair(q, k, qname, kname):
    """Queries and keys as float32 for the engine; float64 data is centred first (see above)."""
    q2, k2 = as_2d(q, qname), as_2d(k, kname)
    if (q2.dtype == np.float64 and k2.dtype == np.float64 and k2.shape[0] > 0
            and q2.shape[1] == k2.shape[1]):
        with np.errstate(all="ignore"):
            c = k2.mean(axis=0)
        if np.all(np.isfinite(c)) and np.any(c != 0):
            return f32(q2 - c), f32(k2 - c)
    return f32(q2), f32(k2)


def centred(x, name):
    """One array that is both queries and keys (bandwidth selection, training)."""
    x2 = as_2d(x, name)
    if x2.dtype == np.float64 and x2.shape[0] > 0:
        with np.errstate(all="ignore"):
            c = x2.mean(axis=0)
        if np.all(np.isfinite(c)) and np.any(c != 0):
            return f32(x2 - c)
    return f32(x2)


def int_at_least(value, name, least):
    """An int >= least, or InvalidArgument naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise _core.InvalidArgument(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def positive_int(value, name):
    """An int >= 1 (an iteration count), or InvalidArgument naming it."""
    return int_at_least(value, name, 1)


def doubles(a, name):
    """A 1-D float64 C-contiguous array (bandwidths, initial weights)."""
    a = np.ascontiguousarray(to_numpy(a, name), dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise _core.InvalidArgument(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def counts(a, name):
    """A 1-D uint64 array (valid lengths, offsets); negative or fractional values are rejected."""
    a = to_numpy(a, name)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise _core.InvalidArgument(f"{name}: expected a 1-D array, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":
        if a.dtype.kind != "f" or not np.all(a == np.floor(a)):
            raise _core.InvalidArgument(f"{name}: expected integers, got dtype {a.dtype}")
    if a.size and a.dtype.kind in "if" and a.min() < 0:
        i = int(np.argmin(a))
        raise _core.InvalidArgument(f"{name}[{i}] must be >= 0, got {a[i]}")
    return np.ascontiguousarray(a, dtype=np.uint64)
