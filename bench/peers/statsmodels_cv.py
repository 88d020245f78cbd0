#!/usr/bin/env python3
"""Leave-one-out bandwidth selection: statsmodels KernelReg(bw='cv_ls') against
`attnpool fit --bandwidth auto` on the same data.

The notebook's data, x uniform on [0, 5), y = 2 sin x + x^0.8 + N(0, 0.5^2), n points, are written
to a .npy file; statsmodels fits KernelReg(y, x, 'c', reg_type='lc', bw='cv_ls') (local constant =
Nadaraya-Watson, leave-one-out least squares, Gaussian kernel) in this process, and the attnpool
CLI selects h on the same file (wall clock of the whole process: start-up, reading, the 64-point
grid sweep, the golden-section refinement and the final fit, so the ratio is conservative).

Usage: python3 bench/peers/statsmodels_cv.py --attnpool build/examples/cli/attnpool [--n 1000]
       python3 bench/peers/statsmodels_cv.py [--n 1000]      (statsmodels alone, e.g. on the GPU
       machine, where bench_cuda_cv times attnpool's GPU path on the same n)
"""
import argparse
import os
import subprocess
import tempfile
import time

import numpy as np
from statsmodels.nonparametric.kernel_regression import KernelReg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attnpool", help="path to the attnpool CLI (omit: time statsmodels only)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(0, 5, args.n)
    y = 2 * np.sin(x) + x ** 0.8 + rng.normal(0, 0.5, args.n)
    data = np.stack([x, y], axis=1).astype(np.float32)

    t_attnpool = None
    if args.attnpool:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "train.npy")
            np.save(path, data)
            t0 = time.perf_counter()
            r = subprocess.run([args.attnpool, "fit", "--train", path, "--x", "0", "--y", "1",
                                "--backend", "cpu", "--out", os.path.join(tmp, "pred.csv")],
                               capture_output=True, text=True, check=True)
            t_attnpool = time.perf_counter() - t0
        print(f"attnpool: {t_attnpool:.3f} s  {r.stderr.strip()}")

    xd, yd = data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)
    t0 = time.perf_counter()
    kr = KernelReg(yd, xd, var_type="c", reg_type="lc", bw="cv_ls")
    t_sm = time.perf_counter() - t0
    print(f"statsmodels KernelReg(cv_ls): {t_sm:.3f} s  h = {kr.bw[0]:.6g}")
    if t_attnpool is not None:
        print(f"n = {args.n}: attnpool is {t_sm / t_attnpool:.0f}x faster")


if __name__ == "__main__":
    main()
