"""Each bad input of the C++ error tests gives attnpool.InvalidArgument with the C++ message;
Python-level mistakes (dimensions, dtypes, names) are InvalidArgument too; nothing crashes."""

import numpy as np
import pytest

import attnpool

BACKENDS = ["reference", "cpu", "cuda_fused", "cuda_unfused"]


def problem():
    """The C++ tests' valid 3-query, 4-key, d = 2, dv = 1 problem."""
    q = np.array([[0, 0], [1, 1], [2, 2]], np.float32)
    k = np.array([[0, 1], [1, 0], [2, 1], [3, 3]], np.float32)
    v = np.array([[1], [2], [3], [4]], np.float32)
    return q, k, v


def rejected(fragments, fn, *args, **kw):
    with pytest.raises(attnpool.InvalidArgument) as e:
        fn(*args, **kw)
    for f in fragments:
        assert f in str(e.value), f"message {str(e.value)!r} lacks {f!r}"
    return e.value


def test_exception_types():
    assert issubclass(attnpool.InvalidArgument, ValueError)
    assert issubclass(attnpool.CudaError, RuntimeError)
    assert issubclass(attnpool.CudaError, attnpool.Error)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("h,frags", [(-1, ["bandwidth", "-1"]), (0, ["bandwidth", "got 0"]),
                                     (float("nan"), ["bandwidth", "nan"]),
                                     (float("inf"), ["bandwidth", "inf"]),
                                     (1e-30, ["bandwidth", "1e-30", "too small"])])
def test_bandwidth(backend, h, frags):
    q, k, v = problem()
    rejected(frags, attnpool.pool, q, k, v, h, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes(backend):
    q, k, v = problem()
    rejected(["keys.rows (m)", "got 0"], attnpool.pool, q, k[:0], v[:0], backend=backend)
    rejected(["queries.cols (d)", "got 0"], attnpool.pool, q[:, :0], k[:, :0], v,
             backend=backend)
    rejected(["values.cols (dv)", "got 0"], attnpool.pool, q, k, v[:, :0], backend=backend)
    rejected(["keys.cols", "got 1"], attnpool.pool, q, k[:, :1], v, backend=backend)
    rejected(["values.rows", "got 3"], attnpool.pool, q, k, v[:3], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_inputs(backend):
    q, k, v = problem()
    q[1, 1] = np.nan
    rejected(["queries(1, 1)", "nan"], attnpool.pool, q, k, v, backend=backend)
    q, k, v = problem()
    k[0, 0] = np.inf
    rejected(["keys(0, 0)", "inf"], attnpool.pool, q, k, v, backend=backend)
    q, k, v = problem()
    v[2, 0] = -np.inf
    rejected(["values(2, 0)", "-inf"], attnpool.pool, q, k, v, backend=backend)
    q, k, v = problem()
    k[0, 0] = 3e19
    rejected(["coordinates up to", "overflow float32"], attnpool.pool, q, k, v, backend=backend)


def test_check_finite_can_be_switched_off():
    q, k, v = problem()
    q[0, 0] = np.nan
    out = attnpool.pool(q, k, v, backend="cpu", check_finite=False)
    assert np.isnan(out[0, 0]) and not np.isnan(out[1, 0])


def test_weights_and_average_check_too():
    q, k, v = problem()
    rejected(["bandwidth"], attnpool.attention_weights, q, k, -2.0)
    rejected(["keys.cols"], attnpool.attention_weights, q, k[:, :1])
    rejected(["values"], attnpool.average_pool, v[:0], 3)


def test_names():
    q, k, v = problem()
    rejected(["kernel must be one of", "'gauss'"], attnpool.pool, q, k, v, kernel="gauss")
    rejected(["backend must be one of", "'gpu'"], attnpool.pool, q, k, v, backend="gpu")
    rejected(["mask must be one of", "'causal'"], attnpool.pool, q, k, v, mask="causal")
    rejected(["empty must be one of", "'zero'"], attnpool.pool, q, k, v, empty="zero")


def test_masks():
    q, k, v = problem()
    rejected(["leave_one_out"], attnpool.pool, q, k, v, mask="leave_one_out")
    rejected(["valid_lens"], attnpool.pool, q, k, v, mask="valid_length", valid_lens=[1, 2])
    rejected(["valid_lens"], attnpool.pool, q, k, v, mask="valid_length", valid_lens=[1, 2, 5])
    rejected(["valid_lens[1] must be >= 0", "-2"], attnpool.pool, q, k, v, mask="valid_length",
             valid_lens=[1, -2, 3])


def test_python_level_mistakes():
    q, k, v = problem()
    rejected(["queries", "3-D"], attnpool.pool, q[None], k, v)
    rejected(["values", "complex"], attnpool.pool, q, k, v.astype(np.complex64))
    rejected(["keys", "dtype"], attnpool.pool, q, np.array([["a", "b"]] * 4), v)
    rejected(["wrt"], attnpool.pool_backward, q, k, v, v[:3], wrt=["bias"])
    rejected(["bandwidths", "1-D"], attnpool.pool, q, k, v, bandwidths=np.ones((2, 2)))
    rejected(["shards"], attnpool.merge_partials, [])


def test_learning_checks():
    x = np.linspace(0, 1, 10)
    rejected(["grid_size"], attnpool.select_bandwidth, x, x, grid_size=2)
    rejected(["learning_rate"], attnpool.train_parametric, x, x, method="book_sgd",
             learning_rate=-1.0)
    rejected(["method", "newton"], attnpool.train_parametric, x, x, method="newton")
    rejected(["max_epochs", "0"], attnpool.train_parametric, x, x, max_epochs=0)
    rejected(["tolerance"], attnpool.train_parametric, x, x, tolerance=float("nan"))
    rejected(["max_iterations"], attnpool.select_bandwidth, x, x, per_dimension=True,
             max_iterations=-3)
    rejected(["bandwidth"], attnpool.loo_cv_error, x, x, [0.5, -1.0])
    rejected(["offsets"], attnpool.pool_batched, x, x, x, [0, 5], [0, 3])


def test_cuda_backend_without_cuda_says_so():
    if attnpool.cuda_available():
        pytest.skip("a CUDA device is present")
    q, k, v = problem()
    with pytest.raises(attnpool.CudaError):
        attnpool.pool(q, k, v, backend="cuda_fused")
