"""attnpool: fused attention pooling (Nadaraya-Watson kernel regression) on CPU and CUDA.

    out[i, :] = sum_j w[i, j] * values[j, :],   w[i, :] = softmax_j(score(queries[i], keys[j]))

with the Gaussian score -||q - k||^2 / (2 h^2) by default. The same C++ engine as the library's C++
API, with the same results and the same error messages.

Arrays
------
Every array argument may be a NumPy array, anything that speaks DLPack (PyTorch, JAX, CuPy) or
a nested list. A 1-D array is one column (the notebook's case: queries, keys and values of shape
(n,), (m,), (m,) give predictions of shape (n,)). Float32 arrays whose rows are contiguous (C
order, or a slice of one) are read without a copy; other dtypes and layouts are converted once.
Float64 queries and keys are centred in double before rounding to float32 (no kernel depends on
anything but q - k). Results come back in the input's dtype, and as a torch.Tensor on the input's
device when the queries are a tensor. The engine computes in float32.

CUDA arrays are copied to the host and the results back to the device. With
ATTNPOOL_PYTHON_CUDA_ARRAYS=1 (experimental: not yet run on a GPU), where attnpool was built
with CUDA, :func:`pool`, :func:`pool_backward`, :func:`attention_weights`, :func:`average_pool`
and :func:`pool_batched` given PyTorch CUDA tensors or CuPy arrays, all on one device, compute
there on the caller's current stream with no host round trip (float32 rows read in place, other
dtypes converted on the device) and return arrays of the same kind on that device. The other
functions, masked attention weights and batches, and backend="cpu" or "reference" keep the
host copies.

The GIL is released while attnpool computes; calls from several threads are safe.

Errors
------
InvalidArgument (a ValueError) names the argument and the value; CudaError (a RuntimeError) is
raised when a CUDA backend fails or the build has no CUDA backends.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _arrays as _a
from . import _core
from . import _device
from ._core import CudaError, Error, InvalidArgument

__version__ = _core.__version__

__all__ = [
    "pool", "attention_weights", "average_pool", "pool_backward", "loo_cv_error",
    "select_bandwidth", "train_parametric", "pool_batched", "pool_partial", "merge_partials",
    "cuda_available", "resolve_backend", "Gradients", "BandwidthSelection", "ParametricFit",
    "PartialStates", "InvalidArgument", "CudaError", "Error", "__version__",
]

BACKENDS = ("automatic", "reference", "cpu", "cuda_fused", "cuda_unfused")
KERNELS = ("gaussian", "laplacian", "epanechnikov", "boxcar", "tricube")
COMPACT_KERNELS = ("epanechnikov", "boxcar", "tricube")  # weight 0 for keys with u >= 1


def _params(bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, threads,
            check_finite):
    """The keyword arguments every pool-like call of _core takes, in its order."""
    return (float(bandwidth), kernel,
            None if bandwidths is None else _a.doubles(bandwidths, "bandwidths"),
            empty, "none" if mask is None else mask,
            None if valid_lens is None else _a.counts(valid_lens, "valid_lens"),
            backend, int(threads), bool(check_finite))


def _column_out(values_arr, out):
    """1-D values give 1-D results."""
    return out.reshape(-1) if np.ndim(values_arr) == 1 else out


def pool(queries, keys, values, bandwidth=1.0, *, kernel="gaussian", bandwidths=None, mask=None,
         valid_lens=None, empty="error", backend="automatic", threads=0, check_finite=True):
    """Attention pooling of `values` with weights between `queries` and `keys`.

    Parameters
    ----------
    queries : array_like, shape (n, d) or (n,)
    keys : array_like, shape (m, d) or (m,), m >= 1
    values : array_like, shape (m, dv) or (m,)
    bandwidth : float
        h > 0, finite; ignored when `bandwidths` is given.
    kernel : {"gaussian", "laplacian", "epanechnikov", "boxcar", "tricube"}
    bandwidths : array_like of float, shape (d,), optional
        One bandwidth per input dimension (anisotropic).
    mask : {None, "none", "leave_one_out", "valid_length"}
        "leave_one_out": query i skips key i (n == m); "valid_length": query i sees keys
        [0, valid_lens[i]).
    valid_lens : array_like of int, shape (n,), optional
        For mask="valid_length", each in [1, m].
    empty : {"error", "nan", "nearest"}
        Compact kernels: what a query with no key in its support gets.
    backend : {"automatic", "reference", "cpu", "cuda_fused", "cuda_unfused"}
    threads : int
        CPU engine threads; 0 means all hardware threads.
    check_finite : bool
        Reject NaN/Inf inputs.

    Returns
    -------
    out : array, shape (n, dv), or (n,) for 1-D values
        In the dtype (and, for tensors, the kind and device) of the inputs.

    Raises
    ------
    InvalidArgument
        On a bad shape, bandwidth, name or non-finite input; the message names the argument.
    CudaError
        When a CUDA backend fails or is not built.

    Examples
    --------
    >>> import attnpool
    >>> attnpool.pool([0.5], [0.0, 1.0], [1.0, 3.0])
    array([2.])
    """
    arrays = _a.fast(queries, keys, values)
    if arrays is None and (fw := _device.framework((queries, keys, values), backend)):
        return _device.pool(fw, queries, keys, values,
                            _params(bandwidth, kernel, bandwidths, empty, mask, valid_lens,
                                    backend, threads, check_finite))
    if arrays is not None:  # float32 NumPy in C order: no conversion, no centring needed
        kind = _a._KIND_F32
        q, k, v = arrays
    else:
        kind = _a.kind_of(queries, keys, values)
        q, k = _a.centred_pair(queries, keys, "queries", "keys")
        v = _a.matrix(values, "values")
    out = np.empty((q.shape[0], v.shape[1]), dtype=np.float32)
    _core.pool(q, k, v, out, *_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens,
                                      backend, threads, check_finite))
    return kind.wrap(_column_out(values, out))


def attention_weights(queries, keys, bandwidth=1.0, *, kernel="gaussian", bandwidths=None,
                      mask=None, valid_lens=None, empty="error", backend="automatic", threads=0,
                      check_finite=True):
    """The n x m row-stochastic attention weights (for heatmaps).

    Parameters are those of :func:`pool`. Materialises n * m floats by definition.

    Returns
    -------
    weights : array, shape (n, m)
        Each row sums to 1.

    Examples
    --------
    >>> import attnpool
    >>> attnpool.attention_weights([0.0], [0.0, 0.0]).tolist()
    [[0.5, 0.5]]
    """
    if mask in (None, "none") and (fw := _device.framework((queries, keys), backend)):
        return _device.attention_weights(
            fw, queries, keys, _params(bandwidth, kernel, bandwidths, empty, mask, valid_lens,
                                       backend, threads, check_finite))
    kind = _a.kind_of(queries, keys)
    q, k = _a.centred_pair(queries, keys, "queries", "keys")
    w = np.empty((q.shape[0], k.shape[0]), dtype=np.float32)
    _core.attention_weights(q, k, w, *_params(bandwidth, kernel, bandwidths, empty, mask,
                                              valid_lens, backend, threads, check_finite))
    return kind.wrap(w)


def average_pool(values, n, *, backend="automatic", threads=0, check_finite=True):
    """The notebook's baseline: every one of the `n` predictions is the mean of the values.

    Parameters
    ----------
    values : array_like, shape (m, dv) or (m,)
    n : int or array_like
        The number of predictions, or the queries (their length is used).

    Returns
    -------
    out : array, shape (n, dv), or (n,) for 1-D values

    Examples
    --------
    >>> import attnpool
    >>> attnpool.average_pool([1.0, 3.0], 2)
    array([2., 2.])
    """
    rows = int(n) if np.ndim(n) == 0 and not hasattr(n, "__len__") else len(n)
    if rows < 0:
        raise InvalidArgument(f"average_pool: n must be >= 0, got {rows}")
    if fw := _device.framework((values,), backend):
        return _device.average_pool(fw, values, rows, backend, bool(check_finite))
    kind = _a.kind_of(values)
    v = _a.matrix(values, "values")
    out = np.empty((rows, v.shape[1]), dtype=np.float32)
    _core.average_pool(v, out, backend, int(threads), bool(check_finite))
    return kind.wrap(_column_out(values, out))


class Gradients(NamedTuple):
    """What pool_backward returns: each gradient has its input's shape, None if not asked for."""

    queries: object
    keys: object
    values: object
    bandwidth: float | None


def pool_backward(queries, keys, values, dout, bandwidth=1.0, *, kernel="gaussian",
                  bandwidths=None, mask=None, valid_lens=None, empty="error",
                  backend="automatic", threads=0, check_finite=True,
                  wrt=("queries", "keys", "values", "bandwidth")):
    """The backward pass of :func:`pool`: gradients of a scalar loss L given dL/d(out).

    Fused: the n x m weights are never stored. Backends: "cpu", "reference", "cuda_fused"
    ("automatic" = cuda_fused where a device exists and d <= 64, else cpu).

    Parameters
    ----------
    queries, keys, values : array_like
        As for :func:`pool`.
    dout : array_like, shape (n, dv) or (n,)
        dL/d(out).
    wrt : iterable of {"queries", "keys", "values", "bandwidth"}
        Which gradients to compute (dq and dh share a pass, dk and dv another).
    Other parameters are those of :func:`pool`.

    Returns
    -------
    Gradients
        (queries (n, d), keys (m, d), values (m, dv), bandwidth float); None where not asked.

    Examples
    --------
    >>> import attnpool
    >>> g = attnpool.pool_backward([0.5], [0.0, 1.0], [1.0, 3.0], [1.0])
    >>> float(g.values.sum())
    1.0
    """
    wrt = set(wrt)
    unknown = wrt - {"queries", "keys", "values", "bandwidth"}
    if unknown:
        raise InvalidArgument(f"pool_backward: wrt must name queries, keys, values or bandwidth,"
                              f" got {sorted(unknown)}")
    if fw := _device.framework((queries, keys, values, dout), backend):
        return Gradients(*_device.pool_backward(
            fw, queries, keys, values, dout, wrt,
            _params(bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, threads,
                    check_finite)))
    kq, kk, kv = _a.kind_of(queries), _a.kind_of(keys), _a.kind_of(values)
    q, k = _a.centred_pair(queries, keys, "queries", "keys")
    v = _a.matrix(values, "values")
    g = _a.matrix(dout, "dout")
    dq = np.empty(q.shape, np.float32) if "queries" in wrt else None
    dk = np.empty(k.shape, np.float32) if "keys" in wrt else None
    dv = np.empty(v.shape, np.float32) if "values" in wrt else None
    dh = _core.pool_backward(q, k, v, g, dq, dk, dv, "bandwidth" in wrt,
                             *_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens,
                                      backend, threads, check_finite))
    shape = lambda src, out: out.reshape(np.shape(src)) if np.ndim(src) <= 1 else out  # noqa: E731
    return Gradients(
        None if dq is None else kq.wrap(shape(queries, dq)),
        None if dk is None else kk.wrap(shape(keys, dk)),
        None if dv is None else kv.wrap(shape(values, dv)),
        dh)


def loo_cv_error(x, y, bandwidths, *, backend="automatic", threads=0, check_finite=True):
    """Leave-one-out cross-validation error of Nadaraya-Watson regression, per bandwidth.

        cv(h) = 1 / (n dv) * sum_i sum_c (y_ic - yhat_ic(h))^2,  yhat_i leaving key i out.

    All bandwidths are evaluated in one fused sweep over the keys.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,), n >= 2
    y : array_like, shape (n, dv) or (n,)
    bandwidths : array_like of float, shape (b,)

    Returns
    -------
    cv : numpy.ndarray of float64, shape (b,)

    Examples
    --------
    >>> import attnpool, numpy as np
    >>> x = np.linspace(0, 5, 50); y = np.sin(x)
    >>> attnpool.loo_cv_error(x, y, [0.1, 1.0]).shape
    (2,)
    """
    xs, ys = _a.centred(x, "x"), _a.matrix(y, "y")
    h = _a.doubles(bandwidths, "bandwidths")
    return np.asarray(_core.loo_cv_error(xs, ys, h, backend, int(threads), bool(check_finite)),
                      dtype=np.float64)


class BandwidthSelection(NamedTuple):
    """What select_bandwidth returns."""

    bandwidth: float        #: the best isotropic h (finite, > 0)
    cv_error: float         #: loo_cv_error at `bandwidths`
    grid: np.ndarray        #: the grid bandwidths, ascending
    cv: np.ndarray          #: loo_cv_error at each grid bandwidth (the CV curve)
    evaluations: int        #: bandwidths evaluated: grid + refinement (+ per-dimension search)
    at_boundary: bool       #: the best grid point was an end of the grid
    bandwidths: np.ndarray  #: one h per input dimension (d copies of `bandwidth` unless per_dimension)
    isotropic_cv_error: float  #: loo_cv_error at `bandwidth`
    per_dimension_stop: str    #: "converged", "no_progress" or "max_epochs"


def select_bandwidth(x, y, *, grid_size=64, h_min=0.0, h_max=0.0, refine=True,
                     log_tolerance=1e-3, per_dimension=False, max_iterations=100,
                     backend="automatic", threads=0, check_finite=True):
    """The bandwidth that minimises the leave-one-out squared error (statsmodels' cv_ls).

    A log-spaced grid in one fused sweep, then golden-section refinement on ln h. With
    per_dimension, one h per input dimension (statsmodels' and R np's default for continuous
    data): quasi-Newton on ln h_c from the best isotropic h, with gradients from the fused
    backward pass, then descents restarted from one h_c moved at a time (e^{+-0.5}, e^{+-1}), which
    leave a local minimum the descent alone stops in. Every h returned is finite and > 0.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,), n >= 2
        float64 data is centred on its mean (in float64) before the float32 engine sees it.
    y : array_like, shape (n, dv) or (n,)
    grid_size : int
        Grid points, >= 3.
    h_min, h_max : float
        Grid ends; 0 means from the data (1e-3 and 10 times the largest coordinate range; per
        dimension, that column's range).
    refine : bool
        Golden-section refinement around the best grid point.
    log_tolerance : float
        Refinement stops once the bracket is this narrow in ln h.
    per_dimension : bool
        One bandwidth per input dimension (d > 1).
    max_iterations : int
        per_dimension: at most this many quasi-Newton iterations per descent.

    Returns
    -------
    BandwidthSelection
        (bandwidth, cv_error, grid, cv, evaluations, at_boundary, bandwidths,
        isotropic_cv_error, per_dimension_stop).

    Examples
    --------
    >>> import attnpool, numpy as np
    >>> x = np.linspace(0, 5, 50); y = np.sin(x)
    >>> attnpool.select_bandwidth(x, y).bandwidth > 0
    True
    >>> x2 = np.column_stack([x, 100 * np.cos(x)])
    >>> attnpool.select_bandwidth(x2, y, per_dimension=True).bandwidths.shape
    (2,)
    """
    xs, ys = _a.centred(x, "x"), _a.matrix(y, "y")
    iterations = _a.positive_int(max_iterations, "max_iterations")
    (h, cv_err, grid, cv, evals, boundary, hs, iso_err,
     stop) = _core.select_bandwidth(xs, ys, int(grid_size), float(h_min), float(h_max),
                                    bool(refine), float(log_tolerance), bool(per_dimension),
                                    iterations, backend, int(threads), bool(check_finite))
    return BandwidthSelection(h, cv_err, np.asarray(grid, np.float64), np.asarray(cv, np.float64),
                              evals, boundary, np.asarray(hs, np.float64), iso_err, stop)


class ParametricFit(NamedTuple):
    """What train_parametric returns."""

    w: np.ndarray         #: the trained weights: 1, or d with per_dimension (h = 1 / |w|)
    loss: np.ndarray      #: per iteration, the loss at its start
    final_loss: float     #: the loss at the returned w
    gradient: np.ndarray  #: dL/dw at the returned w
    stop: str             #: why it stopped: "converged", "no_progress" or "max_epochs"
    evaluations: int      #: loss evaluations (pool calls, plus each scale scan's bandwidths)


def train_parametric(x, y, *, method="quasi_newton", max_epochs=None, tolerance=1e-4,
                     learning_rate=0.5, per_dimension=False, seed=0, initial_w=None,
                     backend="automatic", threads=0, check_finite=True):
    """The book's parametric attention pooling, score = -((q - k) * w)^2 / 2 with learned w,
    trained on the leave-one-out squared error.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,), n >= 2
    y : array_like, shape (n, dv) or (n,)
    method : {"quasi_newton", "book_sgd"}
        "quasi_newton" (the default) minimises the *mean* leave-one-out loss over ln w (BFGS,
        a line search, a scale scan, and with per_dimension a scan that switches each input
        off in turn and restarts from one w_c moved at a time) and stops on `tolerance`: it
        reaches
        select_bandwidth's minimum (h = 1 / w). "book_sgd" is the book's run: plain gradient
        descent on the *summed* loss, `learning_rate`, exactly `max_epochs` steps; on the
        book's data its first step jumps to h ~ 1e-3 and stays there.
    max_epochs : int, optional
        Iterations at most per descent (quasi_newton, default 100) or exactly (book_sgd,
        default 5).
    tolerance : float
        quasi_newton: stop when max |dL/d ln w| <= tolerance * L.
    learning_rate : float
        book_sgd: the step size.
    per_dimension : bool
        One weight per input dimension.
    seed : int
        Seeds the initial weights.
    initial_w : array_like of float, optional
        Starting weights: 1 value, or d with per_dimension (> 0 for quasi_newton).

    Returns
    -------
    ParametricFit
        (w, loss, final_loss, gradient, stop, evaluations).

    Examples
    --------
    >>> import attnpool, numpy as np
    >>> x = np.linspace(0, 5, 50); y = np.sin(x)
    >>> fit = attnpool.train_parametric(x, y)
    >>> fit.stop in ("converged", "no_progress")
    True
    >>> len(attnpool.train_parametric(x, y, method="book_sgd", max_epochs=3).loss)
    3
    """
    xs, ys = _a.centred(x, "x"), _a.matrix(y, "y")
    w0 = None if initial_w is None else _a.doubles(initial_w, "initial_w")
    epochs = 0 if max_epochs is None else _a.positive_int(max_epochs, "max_epochs")
    w, loss, final, grad, stop, evals = _core.train_parametric(
        xs, ys, str(method), epochs, float(tolerance), float(learning_rate), bool(per_dimension),
        int(seed), w0, backend, int(threads), bool(check_finite))
    return ParametricFit(np.asarray(w, np.float64), np.asarray(loss, np.float64), final,
                         np.asarray(grad, np.float64), stop, evals)


def pool_batched(queries, keys, values, query_offsets, key_offsets, bandwidth=1.0, *,
                 kernel="gaussian", bandwidths=None, mask=None, valid_lens=None, empty="error",
                 backend="automatic", threads=0, check_finite=True):
    """Many independent problems in one call (variable-length batching).

    Problem b is query rows [query_offsets[b], query_offsets[b + 1]) against key / value rows
    [key_offsets[b], key_offsets[b + 1]); each result is what :func:`pool` gives it alone.

    Parameters
    ----------
    queries : array_like, shape (sum n_b, d) or (sum n_b,)
    keys : array_like, shape (sum m_b, d) or (sum m_b,)
    values : array_like, shape (sum m_b, dv) or (sum m_b,)
    query_offsets, key_offsets : array_like of int, shape (B + 1,)
        0 first, non-decreasing, the row count last.
    mask : {None, "none", "leave_one_out", "valid_length"}
        Applied within each problem: "leave_one_out" needs n_b == m_b in every problem (query i
        of problem b skips key i of problem b); "valid_length" takes `valid_lens`.
    valid_lens : array_like of int, shape (sum n_b,), optional
        For mask="valid_length": one count per query row of the whole batch, each in [1, m_b]
        of the row's own problem (its problem's keys [0, valid_lens[row]) are seen).
    Other parameters are those of :func:`pool`. Masks run on the host backends ("automatic",
    "cpu", "reference"); "cuda_fused" refuses them.

    Returns
    -------
    out : array, shape (sum n_b, dv), or (sum n_b,) for 1-D values

    Examples
    --------
    >>> import attnpool
    >>> attnpool.pool_batched([0.5, 0.5], [0.0, 1.0, 5.0], [1.0, 3.0, 7.0], [0, 1, 2], [0, 2, 3])
    array([2., 7.])
    """
    if mask in (None, "none") and (fw := _device.framework((queries, keys, values), backend)):
        return _device.pool_batched(
            fw, queries, keys, values, _a.counts(query_offsets, "query_offsets"),
            _a.counts(key_offsets, "key_offsets"),
            _params(bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend, threads,
                    check_finite))
    kind = _a.kind_of(queries, keys, values)
    q, k = _a.centred_pair(queries, keys, "queries", "keys")
    v = _a.matrix(values, "values")
    out = np.empty((q.shape[0], v.shape[1]), dtype=np.float32)
    _core.pool_batched(q, k, v, out, _a.counts(query_offsets, "query_offsets"),
                       _a.counts(key_offsets, "key_offsets"),
                       *_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens, backend,
                                threads, check_finite))
    return kind.wrap(_column_out(values, out))


class PartialStates(NamedTuple):
    """Partial streaming-softmax states of n rows over one key shard (float32 NumPy arrays).

    max + log2(sum) is each row's log-sum-exp in log2 units; acc is unnormalised.
    """

    max: np.ndarray   #: shape (n,)
    sum: np.ndarray   #: shape (n,)
    acc: np.ndarray   #: shape (n, dv)


def pool_partial(queries, keys_shard, values_shard, bandwidth=1.0, *, kernel="gaussian",
                 bandwidths=None, mask=None, valid_lens=None, key_offset=0, empty="error",
                 backend="automatic", threads=0, check_finite=True):
    """The partial states of `queries` over one shard of the keys; see :func:`merge_partials`.

    Backends "automatic" (= cpu), "cpu", "cuda_fused" (no masks). `empty` must not be
    "nearest". Inputs are not centred here, so that every shard sees the same float32 queries.

    Masks are the shard's share of a mask over all keys, for shards that are consecutive key
    ranges: mask="valid_length" takes `valid_lens`, one count per query row of *this shard's*
    keys it sees, each in [0, m_shard] (a global count L over shards in key order becomes
    clip(L - key_offset, 0, m_shard)); 0 gives the row the empty state, which the merge
    ignores. mask="leave_one_out": query i skips global key i, the shard's key
    i - key_offset where it lies in the shard. `key_offset` (the global index of the shard's
    first key) is read by leave_one_out only.

    Returns
    -------
    PartialStates
        (max (n,), sum (n,), acc (n, dv)), float32.

    Examples
    --------
    >>> import attnpool
    >>> a = attnpool.pool_partial([0.5], [0.0], [1.0])
    >>> b = attnpool.pool_partial([0.5], [1.0], [3.0])
    >>> attnpool.merge_partials([a, b])
    array([[2.]], dtype=float32)
    """
    q = _a.matrix(queries, "queries")
    k = _a.matrix(keys_shard, "keys_shard")
    v = _a.matrix(values_shard, "values_shard")
    mx, sm, acc = _core.pool_partial(q, k, v, *_params(bandwidth, kernel, bandwidths, empty, mask,
                                                       valid_lens, backend, threads, check_finite),
                                     _a.int_at_least(key_offset, "key_offset", 0))
    return PartialStates(mx, sm, acc)


def merge_partials(shards, *, kernel="gaussian", empty="error"):
    """Merges the shards' partial states exactly, in the order given.

    Parameters
    ----------
    shards : sequence of PartialStates
        At least one, all with the same n and dv.
    kernel, empty :
        Only read for rows that no shard saw a key for (compact kernels).

    Returns
    -------
    out : numpy.ndarray of float32, shape (n, dv)
    """
    if len(shards) == 0:
        raise InvalidArgument("merge_partials: shards must hold at least one shard, got 0")
    conv = []
    for s in shards:
        mx, sm, acc = s
        conv.append((np.ascontiguousarray(mx, np.float32).reshape(-1),
                     np.ascontiguousarray(sm, np.float32).reshape(-1),
                     np.ascontiguousarray(_a.as_2d(acc, "acc"), np.float32)))
    n, dv = conv[0][2].shape
    out = np.empty((n, dv), dtype=np.float32)
    _core.merge_partials(conv, out, kernel, empty)
    return out


def cuda_available():
    """True when attnpool was built with CUDA and a CUDA device is usable."""
    return _core.cuda_available()


def resolve_backend(backend="automatic"):
    """The backend that `backend` resolves to on this machine (never "automatic")."""
    return _core.resolve_backend(backend)
