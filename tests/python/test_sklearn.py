"""attnpool.sklearn.NadarayaWatsonRegressor: scikit-learn's estimator checks, GridSearchCV,
Pipeline, and the fitted attributes."""

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import attnpool  # noqa: E402
from attnpool.sklearn import NadarayaWatsonRegressor  # noqa: E402


@pytest.mark.parametrize("est", [NadarayaWatsonRegressor(),
                                 NadarayaWatsonRegressor(bandwidth="silverman"),
                                 NadarayaWatsonRegressor(bandwidth=0.5, kernel="epanechnikov")],
                         ids=["cv", "silverman", "epanechnikov"])
def test_check_estimator(est):
    check_estimator(est)


def data(rng, n=120, noise=0.1):
    x = rng.uniform(0, 5, (n, 1))
    return x, np.sin(x[:, 0]) + noise * rng.standard_normal(n)


def test_cv_bandwidth_is_select_bandwidth(rng):
    x, y = data(rng)
    m = NadarayaWatsonRegressor().fit(x, y)
    sel = attnpool.select_bandwidth(x, y)
    assert m.bandwidth_ == sel.bandwidth
    grid, cv = m.cv_curve_
    np.testing.assert_array_equal(grid, sel.grid)
    np.testing.assert_array_equal(cv, sel.cv)
    np.testing.assert_array_equal(m.predict(x), attnpool.pool(x, x, y, sel.bandwidth))
    assert m.score(x, y) > 0.8


def test_cv_selects_one_bandwidth_per_feature(rng):
    # y depends on x0 at a fine scale and on x1 (100 times wider) at a coarse one.
    x = np.column_stack([rng.uniform(0, 5, 150), rng.uniform(0, 500, 150)])
    y = np.sin(2 * x[:, 0]) + 0.01 * x[:, 1] + 0.1 * rng.standard_normal(150)
    m = NadarayaWatsonRegressor().fit(x, y)
    iso = NadarayaWatsonRegressor(bandwidth="cv-iso").fit(x, y)
    sel = attnpool.select_bandwidth(x, y, per_dimension=True)
    np.testing.assert_array_equal(m.bandwidth_, sel.bandwidths)
    assert np.ndim(iso.bandwidth_) == 0 and iso.bandwidth_ == sel.bandwidth
    assert sel.cv_error < sel.isotropic_cv_error
    assert m.bandwidth_[1] > 10 * m.bandwidth_[0]
    np.testing.assert_array_equal(m.predict(x), attnpool.pool(x, x, y, bandwidths=sel.bandwidths))


def test_multi_output_and_per_feature_bandwidth(rng):
    x = rng.uniform(0, 5, (80, 2))
    y = np.column_stack([np.sin(x[:, 0]), np.cos(x[:, 1])])
    m = NadarayaWatsonRegressor(bandwidth=[0.3, 0.6]).fit(x, y)
    assert m.predict(x[:5]).shape == (5, 2)
    np.testing.assert_array_equal(m.predict(x), attnpool.pool(x, x, y, bandwidths=[0.3, 0.6]))
    s = NadarayaWatsonRegressor(bandwidth="silverman").fit(x, y)
    assert s.bandwidth_.shape == (2,) and np.all(s.bandwidth_ > 0)


def test_grid_search_over_bandwidths(rng):
    # 300 points with noise 0.3: the nearest-neighbour fit of h = 0.01 (error ~2 noise^2) loses to
    # h = 0.3 on every one of 1000 seeds tried; with 120 points and noise 0.1 it won on 3 % of them.
    x, y = data(rng, n=300, noise=0.3)
    gs = GridSearchCV(NadarayaWatsonRegressor(), {"bandwidth": [0.01, 0.3, 30.0]}, cv=3)
    gs.fit(x, y)
    assert gs.best_params_["bandwidth"] == 0.3  # too wiggly and too flat both lose
    assert gs.best_estimator_.bandwidth_ == 0.3


def test_pipeline(rng):
    x, y = data(rng)
    p = make_pipeline(StandardScaler(), NadarayaWatsonRegressor(kernel="laplacian")).fit(x, y)
    assert p.score(x, y) > 0.8


def test_bad_parameters(rng):
    x, y = data(rng, 20)
    for bad in [dict(bandwidth=-1.0), dict(bandwidth="scott"), dict(kernel="cosine"),
                dict(bandwidth=[1.0, 2.0])]:
        with pytest.raises(ValueError):
            NadarayaWatsonRegressor(**bad).fit(x, y)
