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
