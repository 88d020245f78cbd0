"""Every public function against the C++ library's results on the same inputs (the program
attnpool-cpp-results): bitwise equal on the CPU backend, for NumPy inputs of several dtypes and
layouts. Float64 inputs reach the engine centred in double, so the C++ side gets those floats."""

import numpy as np
import pytest

import attnpool

LAYOUTS = ["c", "fortran", "ld", "strided", "f64", "f16", "1d"]


def layout(a, how):
    """The float64 matrix `a` in layout `how`, and the float32 matrix the engine should read."""
    a32 = a.astype(np.float32)
    if how == "c":
        return a32, a32
    if how == "fortran":
        return np.asfortranarray(a32), a32
    if how == "ld":  # rows contiguous, leading dimension > cols: read in place
        big = np.zeros((a.shape[0], a.shape[1] + 3), np.float32)
        big[:, 1:1 + a.shape[1]] = a32
        return big[:, 1:1 + a.shape[1]], a32
    if how == "strided":  # a column stride: converted
        big = np.zeros((a.shape[0], 2 * a.shape[1]), np.float32)
        big[:, ::2] = a32
        return big[:, ::2], a32
    if how == "f16":
        h = a.astype(np.float16)
        return h, h.astype(np.float32)
    if how == "1d":
        return a32[:, 0], a32
    if how == "f64":
        return a, a32  # the caller centres the reference for pairs
    raise AssertionError(how)


def pair(qa, ka, how):
    """Queries and keys in layout `how`, and what the engine reads (centred for float64)."""
    q, q32 = layout(qa, how)
    k, k32 = layout(ka, how)
    if how == "f64":
        c = ka.mean(axis=0)
        q32, k32 = (qa - c).astype(np.float32), (ka - c).astype(np.float32)
    return q, k, q32, k32


def single(xa, how):
    x, x32 = layout(xa, how)
    if how == "f64":
        x32 = (xa - xa.mean(axis=0)).astype(np.float32)
    return x, x32


def same(py, expect):
    py = np.asarray(py)
    assert py.dtype.kind == "f"
    if py.dtype == np.float16:  # the float32 result, rounded once to the input's dtype
        np.testing.assert_array_equal(py.reshape(expect.shape), expect.astype(np.float16))
    else:  # exact in every float dtype at least as wide as float32
        np.testing.assert_array_equal(py.astype(np.float32).reshape(expect.shape), expect)


def dims(how, d, dv):
    return (1, 1) if how == "1d" else (d, dv)


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("n,m", [(1, 1), (7, 129), (129, 7)])
def test_pool(cpp, rng, how, n, m):
    d, dv = dims(how, 3, 2)
    qa = rng.standard_normal((n, d)) + 5
    ka = rng.standard_normal((m, d)) + 5
    va = rng.standard_normal((m, dv))
    q, k, q32, k32 = pair(qa, ka, how)
    v, v32 = layout(va, how)
    got = attnpool.pool(q, k, v, 0.8, backend="cpu")
    want = cpp("pool", queries=q32, keys=k32, values=v32, bandwidth=0.8).f32("out", (n, dv))
    if how != "f16":
        assert got.dtype == v.dtype
    assert got.shape == ((n,) if how == "1d" else (n, dv))
    same(got, want)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "epanechnikov", "boxcar", "tricube"])
@pytest.mark.parametrize("mask", ["none", "leave_one_out", "valid_length"])
def test_pool_kernels_masks(cpp, rng, kernel, mask):
    n = m = 33
    q = rng.standard_normal((n, 2)).astype(np.float32)
    k = q if mask == "leave_one_out" else rng.standard_normal((m, 2)).astype(np.float32)
    v = rng.standard_normal((m, 3)).astype(np.float32)
    lens = rng.integers(1, m + 1, n).astype(np.uint64)
    kw = dict(kernel=kernel, mask=mask, empty="nan", bandwidth=1.5)
    if mask == "valid_length":
        kw["valid_lens"] = lens
    got = attnpool.pool(q, k, v, backend="cpu", **kw)
    r = cpp("pool", queries=q, keys=k, values=v, **kw)
    same(got, r.f32("out", (n, 3)))


def test_pool_anisotropic(cpp, rng):
    q = rng.standard_normal((20, 3)).astype(np.float32)
    k = rng.standard_normal((30, 3)).astype(np.float32)
    v = rng.standard_normal((30, 1)).astype(np.float32)
    h = np.array([0.5, 1.0, 2.0])
    same(attnpool.pool(q, k, v, bandwidths=h, backend="cpu"),
         cpp("pool", queries=q, keys=k, values=v, bandwidths=h).f32("out", (20, 1)))


@pytest.mark.parametrize("how", LAYOUTS)
def test_attention_weights(cpp, rng, how):
    d = 1 if how == "1d" else 2
    qa, ka = rng.standard_normal((9, d)), rng.standard_normal((13, d))
    q, k, q32, k32 = pair(qa, ka, how)
    got = attnpool.attention_weights(q, k, 0.6, backend="cpu")
    assert got.shape == (9, 13)
    same(got, cpp("attention_weights", queries=q32, keys=k32, bandwidth=0.6).f32("out", (9, 13)))


@pytest.mark.parametrize("how", LAYOUTS)
def test_average_pool(cpp, rng, how):
    dv = 1 if how == "1d" else 3
    v, v32 = layout(rng.standard_normal((17, dv)), how)
    got = attnpool.average_pool(v, 5, backend="cpu")
    same(got, cpp("average_pool", values=v32, n=5).f32("out", (5, dv)))


@pytest.mark.parametrize("how", LAYOUTS)
def test_pool_backward(cpp, rng, how):
    d, dv = dims(how, 2, 2)
    qa, ka = rng.standard_normal((11, d)), rng.standard_normal((19, d))
    q, k, q32, k32 = pair(qa, ka, how)
    v, v32 = layout(rng.standard_normal((19, dv)), how)
    g, g32 = layout(rng.standard_normal((11, dv)), how)
    got = attnpool.pool_backward(q, k, v, g, 0.9, backend="cpu")
    r = cpp("pool_backward", queries=q32, keys=k32, values=v32, dout=g32, bandwidth=0.9)
    same(got.queries, r.f32("dq", (11, d)))
    same(got.keys, r.f32("dk", (19, d)))
    same(got.values, r.f32("dv", (19, dv)))
    assert got.bandwidth == r.values["dh"]
    only = attnpool.pool_backward(q, k, v, g, 0.9, backend="cpu", wrt=["values"])
    assert only.queries is None and only.keys is None and only.bandwidth is None
    same(only.values, r.f32("dv", (19, dv)))


@pytest.mark.parametrize("how", LAYOUTS)
def test_loo_cv_error(cpp, rng, how):
    d, dv = dims(how, 2, 2)
    x, x32 = single(rng.standard_normal((40, d)) * 3 + 100, how)
    y, y32 = layout(rng.standard_normal((40, dv)), how)
    h = np.array([0.1, 0.5, 1.0, 4.0])
    got = attnpool.loo_cv_error(x, y, h, backend="cpu")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, cpp("loo_cv_error", x=x32, y=y32, bandwidths=h).f64("cv"))


@pytest.mark.parametrize("how", ["c", "fortran", "f64", "1d"])
def test_select_bandwidth(cpp, rng, how):
    d, dv = dims(how, 2, 1)
    x, x32 = single(rng.uniform(0, 5, (60, d)), how)
    y, y32 = layout(np.sin(rng.uniform(0, 5, (60, dv))), how)
    for per_dim in (False, True):
        got = attnpool.select_bandwidth(x, y, grid_size=16, per_dimension=per_dim, backend="cpu")
        r = cpp("select_bandwidth", x=x32, y=y32, grid_size=16, per_dimension=int(per_dim))
        assert got.bandwidth == r.values["bandwidth"]
        assert got.cv_error == r.values["cv_error"]
        assert got.isotropic_cv_error == r.values["isotropic_cv_error"]
        assert got.evaluations == r.values["evaluations"]
        assert got.at_boundary == bool(r.values["at_boundary"])
        np.testing.assert_array_equal(got.grid, r.f64("grid"))
        np.testing.assert_array_equal(got.cv, r.f64("cv"))
        np.testing.assert_array_equal(got.bandwidths, r.f64("bandwidths"))
        assert got.bandwidths.shape == (d,)


@pytest.mark.parametrize("how", ["c", "ld", "f64", "1d"])
def test_train_parametric(cpp, rng, how):
    d, dv = dims(how, 2, 1)
    x, x32 = single(rng.uniform(0, 5, (30, d)), how)
    y, y32 = layout(rng.standard_normal((30, dv)), how)
    got = attnpool.train_parametric(x, y, seed=7, backend="cpu")
    r = cpp("train_parametric", x=x32, y=y32, seed=7)
    np.testing.assert_array_equal(got.w, r.f64("w"))
    np.testing.assert_array_equal(got.loss, r.f64("loss"))
    np.testing.assert_array_equal(got.gradient, r.f64("gradient"))
    assert got.final_loss == r.values["final_loss"]
    assert got.evaluations == r.values["evaluations"]
    assert got.stop in ("converged", "no_progress")
    book = attnpool.train_parametric(x, y, method="book_sgd", max_epochs=4, seed=7,
                                     backend="cpu")
    rb = cpp("train_parametric", x=x32, y=y32, book=1, epochs=4, seed=7)
    np.testing.assert_array_equal(book.w, rb.f64("w"))
    np.testing.assert_array_equal(book.loss, rb.f64("loss"))
    assert book.final_loss == rb.values["final_loss"]
    assert book.stop == "max_epochs" and len(book.loss) == 4
    w0 = attnpool.train_parametric(x, y, method="book_sgd", max_epochs=2, initial_w=[2.0],
                                   backend="cpu")
    r0 = cpp("train_parametric", x=x32, y=y32, book=1, epochs=2, initial_w=np.array([2.0]))
    np.testing.assert_array_equal(w0.w, r0.f64("w"))


@pytest.mark.parametrize("how", ["c", "strided", "f64", "1d"])
def test_pool_batched(cpp, rng, how):
    d, dv = dims(how, 2, 3)
    qoff = np.array([0, 3, 3, 10, 11], np.uint64)
    koff = np.array([0, 5, 6, 6 + 129, 6 + 129 + 1], np.uint64)
    qa = rng.standard_normal((11, d))
    ka = rng.standard_normal((int(koff[-1]), d))
    q, k, q32, k32 = pair(qa, ka, how)
    v, v32 = layout(rng.standard_normal((int(koff[-1]), dv)), how)
    got = attnpool.pool_batched(q, k, v, qoff, koff.tolist(), 0.7, backend="cpu")
    r = cpp("pool_batched", queries=q32, keys=k32, values=v32, query_offsets=qoff,
            key_offsets=koff, bandwidth=0.7)
    same(got, r.f32("out", (11, dv)))


@pytest.mark.parametrize("how", ["c", "fortran", "f64", "1d"])
def test_pool_partial_and_merge(cpp, rng, how):
    d, dv = dims(how, 2, 2)
    q, q32 = layout(rng.standard_normal((8, d)), how)
    k, k32 = layout(rng.standard_normal((20, d)), how)
    v, v32 = layout(rng.standard_normal((20, dv)), how)
    a = attnpool.pool_partial(q, k[:6], v[:6], 1.3, backend="cpu")
    b = attnpool.pool_partial(q, k[6:], v[6:], 1.3, backend="cpu")
    r = cpp("pool_partial", queries=q32, keys=k32, values=v32, split=6, bandwidth=1.3)
    for i, s in enumerate((a, b)):
        np.testing.assert_array_equal(s.max, r.f32(f"max{i}", (8,)))
        np.testing.assert_array_equal(s.sum, r.f32(f"sum{i}", (8,)))
        np.testing.assert_array_equal(s.acc, r.f32(f"acc{i}", (8, dv)))
    np.testing.assert_array_equal(attnpool.merge_partials([a, b]), r.f32("out", (8, dv)))
