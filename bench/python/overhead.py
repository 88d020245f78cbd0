"""The Python call's overhead over the C++ call: attnpool.pool against attnpool::pool on the same
shapes (d = dv = 1, random data, backend cpu, the same thread count), medians of REPS calls.

    python bench/python/overhead.py <build>/bench/attnpool_py_cpp_call [--threads T] [--reps R]

Prints one Markdown row per size: n = m, C++ median, Python median, difference, ratio.
"""

import argparse
import platform
import subprocess
import time

import numpy as np

import attnpool


def py_median_ns(n, m, reps, threads):
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 5, n).astype(np.float32)
    k = rng.uniform(0, 5, m).astype(np.float32)
    v = rng.uniform(0, 5, m).astype(np.float32)
    attnpool.pool(q, k, v, backend="cpu", threads=threads)  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        attnpool.pool(q, k, v, backend="cpu", threads=threads)
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cpp_call")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=0, help="0: 20001 at n = 100, 7 at 16384")
    ap.add_argument("--sizes", default="100,16384")
    a = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}, attnpool {attnpool.__version__}, threads {a.threads}")
    print("| n = m | C++ call | Python call | difference | Python / C++ |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in a.sizes.split(",")):
        reps = a.reps or (20001 if size <= 1000 else 7)
        cpp = float(subprocess.run([a.cpp_call, str(size), str(size), str(reps), str(a.threads)],
                                   check=True, capture_output=True, text=True).stdout)
        py = py_median_ns(size, size, reps, a.threads)
        print(f"| {size} | {cpp / 1e3:.2f} µs | {py / 1e3:.2f} µs | {(py - cpp) / 1e3:+.2f} µs "
              f"| {py / cpp:.3f} |")


if __name__ == "__main__":
    main()
