"""attnpool.torch.nadaraya_watson on CUDA tensors against the same formula in eager PyTorch and
torch.compile: forward, and forward + backward (all four gradients), medians of CUDA-event
timings after a warm-up (torch.compile's compilation in the warm-up, not timed).

    ATTNPOOL_PYTHON_CUDA_ARRAYS=1 python bench/python/torch_op.py [--sizes 4096,16384] [--reps 10]

Without the switch the op runs through host copies (the default until a GPU run has passed
tests/python/test_cuda_arrays.py); the script says which path it timed. Prints one Markdown row
per (n = m, system, pass): milliseconds, pairs/s and the max relative error of the output
against float64 eager. Exits 0 with a message where there is no CUDA device.
"""

import argparse
import os
import sys

import torch

import attnpool
from attnpool.torch import nadaraya_watson


def eager(q, k, v, h):
    s = -((q[:, None, :] - k[None, :, :]) ** 2).sum(-1) / (2 * h * h)
    return torch.softmax(s, dim=1) @ v


def timed(fn, reps):
    """Median milliseconds of fn() over reps calls, CUDA events around each."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4096,16384")
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_op.py: no CUDA device; nothing to measure")
        return 0
    path = ("device (ATTNPOOL_PYTHON_CUDA_ARRAYS=1)"
            if os.environ.get("ATTNPOOL_PYTHON_CUDA_ARRAYS") == "1" and attnpool.cuda_available()
            else "host copies (the default)")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"attnpool {attnpool.__version__}, attnpool path: {path}")
    print("| n = m | system | pass | ms | pairs/s | max rel err (forward) |")
    print("|---|---|---|---|---|---|")
    h = 1.0
    compiled = torch.compile(eager)
    gen = torch.Generator(device="cuda").manual_seed(20261204)
    for n in (int(x) for x in a.sizes.split(",")):
        q, k, v = (torch.rand((n, 1), device="cuda", generator=gen) * 5 for _ in range(3))
        ref = eager(q.double(), k.double(), v.double(), h)
        systems = {
            "attnpool": lambda q, k, v: nadaraya_watson(q, k, v, h),
            "torch_eager": lambda q, k, v: eager(q, k, v, h),
            "torch_compile": lambda q, k, v: compiled(q, k, v, h),
        }
        for name, f in systems.items():
            try:
                out = f(q, k, v)
                err = float(((out.double() - ref).abs() / ref.abs().clamp_min(1e-30)).max())
                ms = timed(lambda: f(q, k, v), a.reps)
                print(f"| {n} | {name} | forward | {ms:.3f} | {n * n / ms * 1e3:.3g} | {err:.1e} |")
                qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))

                def fwbw():
                    f(qg, kg, vg).sum().backward()

                ms = timed(fwbw, a.reps)
                print(f"| {n} | {name} | forward + backward | {ms:.3f} | "
                      f"{n * n / ms * 1e3:.3g} | |")
            except torch.cuda.OutOfMemoryError:
                print(f"| {n} | {name} | | OOM | | |")
                torch.cuda.empty_cache()
            except Exception as e:  # noqa: BLE001 - one system's failure is a row, not the end
                print(f"| {n} | {name} | | failed: {type(e).__name__}: {str(e)[:120]} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
