"""A scikit-learn estimator on attnpool: Nadaraya-Watson kernel regression.

>>> import numpy as np
>>> from attnpool.sklearn import NadarayaWatsonRegressor
>>> x = np.linspace(0, 5, 50)[:, None]; y = np.sin(x[:, 0])
>>> model = NadarayaWatsonRegressor().fit(x, y)
>>> bool(model.score(x, y) > 0.9)
True
"""

from __future__ import annotations

import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
    from sklearn.utils.validation import check_is_fitted
except ImportError as e:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("attnpool.sklearn needs scikit-learn: pip install scikit-learn") from e

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
    def _validate_data(est, *args, **kw):
        return est._validate_data(*args, **kw)

import attnpool

__all__ = ["NadarayaWatsonRegressor"]

# Bandwidth grid of the leave-one-out search for kernels that select_bandwidth does not take
# (it is Gaussian only): relative to the largest coordinate range, as select_bandwidth's.
_GRID = np.geomspace(1e-2, 10.0, 32)


class NadarayaWatsonRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Nadaraya-Watson kernel regression: predictions are attention pooling of the training
    targets with weights between the query and the training inputs.

    Parameters
    ----------
    bandwidth : "cv", "cv-iso", "silverman", float or array_like of shape (n_features,)
        "cv": the bandwidths minimising the leave-one-out squared error, one per feature where
        there are several (statsmodels' and R np's cv_ls; attnpool's select_bandwidth with
        per_dimension, from the best single bandwidth). "cv-iso": one bandwidth for every
        feature (one fused sweep then golden-section refinement). For non-Gaussian kernels both
        take one bandwidth from a 32-point log grid of leave-one-out fits. "silverman": Silverman's rule of
        thumb per feature, 0.9 min(std, IQR / 1.34) n^(-1/5). A float is used as it is; an
        array gives one bandwidth per feature.
    kernel : {"gaussian", "laplacian", "epanechnikov", "boxcar", "tricube"}
    backend : {"automatic", "reference", "cpu", "cuda_fused", "cuda_unfused"}

    Attributes
    ----------
    bandwidth_ : float or ndarray of shape (n_features,)
        The bandwidth used by predict.
    cv_curve_ : tuple (grid, cv) of ndarrays, or None
        With bandwidth="cv" or "cv-iso": the single bandwidths evaluated and their
        leave-one-out error (the grid of the isotropic search).
    n_features_in_ : int
    X_fit_, y_fit_ : ndarray
        The training data (the keys and values of every prediction).
    """

    def __init__(self, bandwidth="cv", kernel="gaussian", backend="automatic"):
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.backend = backend

    def fit(self, X, y):
        """Stores the training data and chooses the bandwidth.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True,
                              y_numeric=True)
        if self.kernel not in attnpool.KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(attnpool.KERNELS)}; "
                             f"got {self.kernel!r}")
        self.X_fit_ = X
        self.y_fit_ = y
        self.cv_curve_ = None
        bw = self.bandwidth
        if isinstance(bw, str):
            if bw == "silverman":
                self.bandwidth_ = _silverman(X)
            elif bw in ("cv", "cv-iso"):
                self.bandwidth_ = self._cv(X, y, per_feature=bw == "cv")
            else:
                raise ValueError(f"bandwidth must be 'cv', 'cv-iso', 'silverman', a float or an "
                                 f"array; got {bw!r}")
        elif isinstance(bw, numbers.Real):
            if not np.isfinite(bw) or bw <= 0:
                raise ValueError(f"bandwidth must be finite and > 0, got {bw}")
            self.bandwidth_ = float(bw)
        else:
            h = np.asarray(bw, dtype=np.float64).reshape(-1)
            if h.shape != (X.shape[1],):
                raise ValueError(f"bandwidth must hold one value per feature ({X.shape[1]}), "
                                 f"got shape {np.shape(bw)}")
            self.bandwidth_ = h
        return self

    def _cv(self, X, y, per_feature):
        if X.shape[0] < 2:
            return 1.0  # one sample: every bandwidth predicts its target
        if self.kernel == "gaussian":
            per_feature = per_feature and X.shape[1] > 1
            sel = attnpool.select_bandwidth(X, y, per_dimension=per_feature,
                                            backend=self.backend)
            self.cv_curve_ = (sel.grid, sel.cv)
            return sel.bandwidths if per_feature else float(sel.bandwidth)
        span = float(np.ptp(X, axis=0).max()) or 1.0
        grid = _GRID * span
        yy = y.reshape(len(y), -1)
        cv = np.empty(len(grid))
        for i, h in enumerate(grid):
            pred = attnpool.pool(X, X, yy, h, kernel=self.kernel, mask="leave_one_out",
                                 empty="nearest", backend=_host(self.backend))
            cv[i] = np.mean((np.asarray(pred, np.float64) - yy) ** 2)
        self.cv_curve_ = (grid, cv)
        best = np.flatnonzero(cv == cv.min())[-1]  # ties: the larger, smoother bandwidth
        return float(grid[best])

    def predict(self, X):
        """Predictions for X.

        Parameters
        ----------
        X : array_like of shape (n_queries, n_features)

        Returns
        -------
        ndarray of shape (n_queries,) or (n_queries, n_outputs)
        """
        check_is_fitted(self, "bandwidth_")
        X = _validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        h = self.bandwidth_
        kw = dict(kernel=self.kernel, backend=self.backend)
        if self.kernel in attnpool.COMPACT_KERNELS:
            # A query outside every key's support gets its nearest training target, as
            # predictions must be finite; the engine does this on the host backends.
            kw.update(empty="nearest", backend=_host(self.backend))
        if np.ndim(h) == 0:
            return attnpool.pool(X, self.X_fit_, self.y_fit_, h, **kw)
        return attnpool.pool(X, self.X_fit_, self.y_fit_, bandwidths=h, **kw)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _host(backend):
    """empty="nearest" runs on the host backends only."""
    return "cpu" if backend in ("automatic", "cuda_fused", "cuda_unfused") else backend


def _silverman(X):
    n, d = X.shape
    x = np.asarray(X, np.float64)
    std = x.std(axis=0, ddof=1) if n > 1 else np.zeros(d)
    iqr = np.subtract(*np.percentile(x, [75, 25], axis=0)) / 1.34
    spread = np.where(iqr > 0, np.minimum(std, iqr), std)
    h = 0.9 * spread * n ** (-0.2)
    h = np.where(np.isfinite(h) & (h > 0), h, 1.0)
    return float(h[0]) if d == 1 else h
