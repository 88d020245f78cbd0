"""attnpool.pool and friends against the fp64 formula, on NumPy inputs."""

import numpy as np
import pytest

import attnpool


def nw(q, k, v, h):
    """Nadaraya-Watson in float64, the formula itself."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    q = q.reshape(len(q), -1)
    k = k.reshape(len(k), -1)
    v2 = v.reshape(len(v), -1)
    s = -((q[:, None, :] - k[None, :, :]) ** 2).sum(-1) / (2 * h * h)
    s -= s.max(axis=1, keepdims=True)
    w = np.exp(s)
    w /= w.sum(axis=1, keepdims=True)
    out = w @ v2
    return out.reshape(-1) if v.ndim == 1 else out


def test_done_when_example():
    out = attnpool.pool([0.5], [0.0, 1.0], [1.0, 3.0])
    assert out.shape == (1,)
    assert out[0] == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("n,m,d,dv", [(1, 1, 1, 1), (7, 7, 2, 3), (129, 33, 3, 1)])
def test_pool_matches_formula(rng, n, m, d, dv):
    q = rng.standard_normal((n, d)).astype(np.float32)
    k = rng.standard_normal((m, d)).astype(np.float32)
    v = rng.standard_normal((m, dv)).astype(np.float32)
    out = attnpool.pool(q, k, v, 0.7, backend="cpu")
    assert out.dtype == np.float32 and out.shape == (n, dv)
    np.testing.assert_allclose(out, nw(q, k, v, 0.7), rtol=1e-5, atol=1e-5)


def _batch(rng, sizes, d):
    """Concatenated problems and their offsets."""
    qs = [rng.random((n, d), dtype=np.float32) for n, _ in sizes]
    ks = [rng.random((m, d), dtype=np.float32) for _, m in sizes]
    vs = [rng.uniform(-1, 1, (m, 2)).astype(np.float32) for _, m in sizes]
    qoff = np.cumsum([0] + [n for n, _ in sizes])
    koff = np.cumsum([0] + [m for _, m in sizes])
    return qs, ks, vs, qoff, koff


@pytest.mark.parametrize("mask", ["valid_length", "leave_one_out"])
@pytest.mark.parametrize("kernel", ["gaussian", "tricube"])
def test_masked_pool_batched_matches_pool_per_problem(rng, mask, kernel):
    sizes = ([(1, 1), (7, 129), (0, 0), (129, 7), (0, 3), (33, 1025)] if mask == "valid_length"
             else [(7, 7), (0, 0), (2, 2), (129, 129), (1025, 1025)])
    qs, ks, vs, qoff, koff = _batch(rng, sizes, 2)
    lens = np.concatenate([rng.integers(1, m + 1, n) for n, m in sizes]) if mask == "valid_length" \
        else None
    kw = dict(kernel=kernel, empty="nan", mask=mask)
    out = attnpool.pool_batched(np.concatenate(qs), np.concatenate(ks), np.concatenate(vs), qoff,
                                koff, 0.3, valid_lens=lens, backend="cpu", **kw)
    for b, (n, m) in enumerate(sizes):
        if n == 0:
            continue
        part = None if lens is None else lens[qoff[b]:qoff[b + 1]]
        want = attnpool.pool(qs[b], ks[b], vs[b], 0.3, valid_lens=part, backend="cpu", **kw)
        np.testing.assert_allclose(out[qoff[b]:qoff[b + 1]], want, rtol=1e-5, atol=1e-5,
                                   err_msg=f"problem {b} ({n} x {m})")


@pytest.mark.parametrize("mask", ["valid_length", "leave_one_out"])
def test_masked_pool_partial_merges_to_the_masked_pool(rng, mask):
    n = m = 300
    q = rng.random((n, 1), dtype=np.float32)
    k = rng.random((m, 1), dtype=np.float32)
    v = rng.uniform(-1, 1, (m, 1)).astype(np.float32)
    lens = rng.integers(1, m + 1, n) if mask == "valid_length" else None
    bounds = [0, 1, 2, 150, m]
    shards = []
    for k0, k1 in zip(bounds[:-1], bounds[1:]):
        share = None if lens is None else np.clip(lens - k0, 0, k1 - k0)
        shards.append(attnpool.pool_partial(q, k[k0:k1], v[k0:k1], 0.1, mask=mask,
                                            valid_lens=share, key_offset=k0))
    merged = attnpool.merge_partials(shards)
    want = attnpool.pool(q, k, v, 0.1, mask=mask, valid_lens=lens, backend="cpu")
    np.testing.assert_allclose(merged, want, rtol=1e-5, atol=1e-5)


def test_masks_in_batches_and_shards_name_the_argument():
    q = np.zeros((3, 1), np.float32)
    with pytest.raises(attnpool.InvalidArgument, match=r"valid_lens\[2\] = 4 \(row 2 of problem 0"):
        attnpool.pool_batched(q, q, q, [0, 3], [0, 3], mask="valid_length", valid_lens=[1, 2, 4])
    with pytest.raises(attnpool.InvalidArgument, match="problem 0 has n_b = 3 and m_b = 2"):
        attnpool.pool_batched(q, q[:2], q[:2], [0, 3], [0, 2], mask="leave_one_out")
    with pytest.raises(attnpool.InvalidArgument, match="key_offset must be an integer >= 0"):
        attnpool.pool_partial(q, q, q, mask="leave_one_out", key_offset=-1)
    with pytest.raises(attnpool.InvalidArgument, match=r"valid_lens\[0\] = 5 exceeds this shard"):
        attnpool.pool_partial(q, q, q, mask="valid_length", valid_lens=[5, 0, 0])
