#!/usr/bin/env python3
"""Peak resident memory of attnpool's cpu backend on a shape too large to wait for.

Starts the attnpool_peer driver on n x m x d x dv float32 inputs (written once as .npy), samples
its VmRSS and VmHWM from /proc/PID/status every --interval seconds for --seconds, then kills it
(or lets it finish, when it ends first), and compares the peak with the inputs' bytes
4 (n d + m d + m dv + n dv) (the output counted with the inputs: the driver allocates it before
the call). The engine packs its keys and values before the row loop starts, so the peak is
reached within the first seconds; the samples show when VmHWM stops growing.

    python3 bench/peers/peak_rss.py --attnpool-bin build/bench/attnpool_peer \\
        --shape 1048576x1048576x16x1 --seconds 60 --out /tmp/peak-rss
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in bytes; empty once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {ln.split(":")[0]: float(ln.split()[1]) * 1024.0 for ln in f
                    if ln.startswith(("VmRSS:", "VmHWM:"))}
    except OSError:
        return {}


def mib(x: float) -> str:
    return f"{x / 2**20:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attnpool-bin", required=True)
    ap.add_argument("--shape", default="1048576x1048576x16x1", help="n x m x d x dv")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--out", required=True, help="directory for the .npy inputs")
    args = ap.parse_args()
    n, m, d, dv = (int(x) for x in args.shape.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([args.seed, n, m, d, dv])
    paths = {}
    for name, shape in (("q", (n, d)), ("k", (m, d)), ("v", (m, dv))):
        paths[name] = out / f"{args.shape}_{name}.npy"
        if not paths[name].exists():
            np.save(paths[name], rng.uniform(0.0, 5.0, size=shape).astype(np.float32))
    inputs = 4.0 * (n * d + m * d + m * dv + n * dv)
    cmd = [args.attnpool_bin, "--queries", str(paths["q"]), "--keys", str(paths["k"]),
           "--values", str(paths["v"]), "--backend", "cpu", "--bandwidth", repr(math.sqrt(d)),
           "--reps", "1", "--warmup", "0", "--threads", str(args.threads)]
    print(f"shape n={n} m={m} d={d} dv={dv}; inputs and output {mib(inputs)} MiB", flush=True)
    print("| t (s) | VmRSS (MiB) | VmHWM (MiB) | VmHWM - inputs (MiB) |", flush=True)
    print("|---|---|---|---|", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    last = {}
    while time.monotonic() - t0 < args.seconds and proc.poll() is None:
        s = status(proc.pid)
        if s:
            last = s
            print(f"| {time.monotonic() - t0:.0f} | {mib(s['VmRSS'])} | {mib(s['VmHWM'])} | "
                  f"{mib(s['VmHWM'] - inputs)} |", flush=True)
        time.sleep(args.interval)
    finished = proc.poll() is not None
    if not finished:
        proc.kill()
    stdout = proc.communicate()[0]
    result = next((json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")), None)
    if finished and result and "peak_bytes" in result:
        print(f"finished in {result['median_ms']:.0f} ms; the driver's own VmHWM "
              f"{mib(result['peak_bytes'])} MiB = inputs + {mib(result['peak_bytes'] - inputs)} "
              "MiB")
    elif last:
        print(f"killed after {args.seconds:.0f} s; last VmHWM {mib(last['VmHWM'])} MiB = "
              f"inputs + {mib(last['VmHWM'] - inputs)} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
