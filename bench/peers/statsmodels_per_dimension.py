#!/usr/bin/env python3
"""Per-dimension bandwidth selection: attnpool against statsmodels' KernelReg(bw="cv_ls").

    python bench/peers/statsmodels_per_dimension.py [--sizes 1000,10000] [--sm-max 1000] [--threads 2]

Both minimise the same leave-one-out squared error of local-constant (Nadaraya-Watson)
regression with a Gaussian product kernel, one bandwidth per input dimension. For every data set
this prints each method's bandwidths, its leave-one-out error recomputed here in float64 (one
formula for every method, so the errors compare), and its wall time. Data sets:

  sm60    the 60-point data of statsmodels' own test_continuousdata_lc_cvls (regenerated from
          its seed), where R's np package gives h = [0.6163835, 0.1649656] (from that test);
  aniso   y = sin(2 x0) + x1 / 100 + noise with x0 ~ U(0, 5), x1 ~ U(0, 500), plus d - 2
          irrelevant columns, at n = --sizes and d = 2, 8.

statsmodels runs only where n <= --sm-max: its leave-one-out loop is Python, O(n^2) per
evaluation, and its Nelder-Mead takes hundreds of evaluations.
"""
import argparse
import os
import time

import numpy as np


def loo_error(x, y, h):
    """Mean leave-one-out squared error at bandwidths h (float64, chunked over queries)."""
    x = np.asarray(x, np.float64) / np.asarray(h, np.float64)
    y = np.asarray(y, np.float64)
    n = len(x)
    sq = np.sum(x * x, axis=1)
    err = 0.0
    step = max(1, 2 ** 24 // n)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        s = -0.5 * np.maximum(sq[i0:i1, None] + sq[None, :] - 2 * x[i0:i1] @ x.T, 0.0)
        s[np.arange(i1 - i0), np.arange(i0, i1)] = -np.inf
        s -= s.max(axis=1, keepdims=True)
        w = np.exp(s)
        pred = (w @ y) / w.sum(axis=1)
        err += float(np.sum((pred - y[i0:i1]) ** 2))
    return err / n


def sm60():
    rs = np.random.RandomState(123456)
    nobs = 60
    rs.binomial(2, 0.7, size=(nobs, 1))
    rs.binomial(3, 0.7, size=(nobs, 1))
    c1 = rs.normal(size=(nobs, 1))
    c2 = rs.normal(10, 1, size=(nobs, 1))
    rs.normal(10, 2, size=(nobs, 1))
    noise = rs.normal(size=(nobs, 1))
    y = 0.3 + 1.2 * c1 + 3.7 * c2 + noise
    return np.hstack([c1, c2]), y[:, 0]


def aniso(n, d, seed):
    rs = np.random.default_rng(seed)
    x = np.column_stack([rs.uniform(0, 5, n), rs.uniform(0, 500, n)]
                        + [rs.uniform(0, 1, n) for _ in range(d - 2)])
    y = np.sin(2 * x[:, 0]) + x[:, 1] / 100 + 0.3 * rs.standard_normal(n)
    return x, y


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--sm-max", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261203)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import attnpool
    try:
        from statsmodels.nonparametric.kernel_regression import KernelReg
    except ImportError:
        KernelReg = None
        print("statsmodels: not installed (pip install statsmodels); its rows are skipped")

    cases = [("sm60", *sm60())]
    for n in (int(s) for s in args.sizes.split(",")):
        for d in (2, 8):
            cases.append((f"aniso n={n} d={d}", *aniso(n, d, args.seed)))
    print(f"seed {args.seed}, attnpool {attnpool.__version__}, threads {args.threads}")
    print(f"{'data':<20} {'method':<26} {'LOO error (fp64)':>17} {'time s':>8}  bandwidths")
    for name, x, y in cases:
        rows = []
        iso, t_iso = timed(lambda: attnpool.select_bandwidth(x, y, threads=args.threads))
        rows.append(("attnpool isotropic", [iso.bandwidth] * x.shape[1], t_iso))
        per, t_per = timed(lambda: attnpool.select_bandwidth(x, y, per_dimension=True,
                                                             threads=args.threads))
        rows.append((f"attnpool per-dim ({per.per_dimension_stop})", per.bandwidths, t_per))
        if name == "sm60":
            rows.append(("R np (statsmodels' test)", [0.6163835, 0.1649656], float("nan")))
        if KernelReg is not None and len(x) <= args.sm_max:
            sm, t_sm = timed(lambda: KernelReg(endog=[y], exog=[x[:, c] for c in range(x.shape[1])],
                                               var_type="c" * x.shape[1], reg_type="lc",
                                               bw="cv_ls"))
            rows.append(("statsmodels cv_ls", sm.bw, t_sm))
        elif KernelReg is not None:
            rows.append((f"statsmodels cv_ls: skipped, n > {args.sm_max}", None, float("nan")))
        for method, h, t in rows:
            if h is None:
                print(f"{name:<20} {method:<26}")
                continue
            h = np.asarray(h, np.float64)
            e = loo_error(x, y, h) if np.all(h > 0) else float("nan")
            hs = ", ".join(f"{v:.4g}" for v in h)
            print(f"{name:<20} {method:<26} {e:17.6g} {t:8.3f}  [{hs}]", flush=True)


if __name__ == "__main__":
    main()
