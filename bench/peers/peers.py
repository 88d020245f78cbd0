#!/usr/bin/env python3
"""attnpool against what a user would pick instead, on the same data.

Every system computes the same Gaussian attention pooling

    out[i, :] = sum_j w[i, j] v[j, :],   w[i, :] = softmax_j(-||q_i - k_j||^2 / (2 h^2))

on the same inputs: each shape's q, k, v are drawn once from a seeded generator, written to
DIR/data/*.npy, and read back by every peer (the attnpool driver reads the files themselves).

Peers (GPU mode, the default):
  torch_eager        the notebook's code: softmax(-(q - k.T)**2 / (2h^2)) @ v (d = 1),
                     torch.cdist(q, k)**2 for d > 1
  torch_compile      torch.compile of that same function (compile time reported, not timed)
  sdpa_fp32_bias     scaled_dot_product_attention on the Gaussian written as a dot product plus a
                     key bias: -||q-k||^2/(2h^2) = q.k/h^2 - ||k||^2/(2h^2) - ||q||^2/(2h^2), the
                     last term cancels in the softmax; scale=1/h^2, attn_mask = the key bias
  sdpa_fp16_nomask   the same with the bias folded into one extra coordinate
                     (q' = [q, 1], k' = [k, -||k||^2/2]), head dims zero-padded to a multiple
                     of 8, in float16: no mask and a half-precision dtype make it eligible for
                     the flash backend
  keops              pykeops LazyTensor, sumsoftmaxweight reduction (compiled at first use, which
                     is warmed up outside the timing)
  attnpool_fused / attnpool_unfused
                     the C++ driver (bench/peers/attnpool_peer.cpp, --attnpool-bin) on the
                     device-pointer API, timed with CUDA events
Every peer reports the max relative error against an fp64 result, the median time over several
CUDA-synchronised repetitions, pairs/s and peak memory (torch.cuda.max_memory_allocated, or the
driver's own allocations), or "OOM". After an OOM a peer skips its larger shapes. A peer that
cannot run (module missing, no GPU, no driver binary) gets rows marked "unavailable: <reason>";
the script never stops on one peer's failure.

--cpu-only: fp64 NumPy reference vs attnpool's cpu backend (driver) and the CPU peers a user
would pick, each in its own process restricted to --threads cores (2 by default here), with the
process's peak RSS (VmHWM: runtime and inputs included; "rss before" in the note is the
same process after its imports and the data load, so the difference is what the call added):
  numpy_float32      NumPy in float32, chunked over queries (in this process; traced peak);
                     above d = 3 the distance by a GEMM (2 q.k - |k|^2 - |q|^2)
  jax_jit            jax.jit of the formula on XLA's CPU backend (first call, compilation
                     included, reported as "compile"; then timed calls)
  numba_prange       numba.njit(parallel=True, fastmath=True): prange over queries, one pass
                     over the keys with an online softmax, in float32
  keops_cpu          pykeops LazyTensor sumsoftmaxweight on its CPU backend (compilation timed
                     separately)
  torch_cpu          the notebook's torch code on CPU tensors (torch.set_num_threads)
  statsmodels_lc     statsmodels KernelReg(reg_type='lc', bw=[h] * d).fit, one fit per value
                     column, small shapes only (n m d dv <= 4096^2 x 16)
Default CPU shapes: n = m in {1024, 4096, 16384} x d in {1, 3, 16, 64} x dv in {1, 16}.
A peer whose module is missing gets rows marked "unavailable: ..." and the run goes on.

Error measure: max over outputs of |out - ref| / sum_j w_ij |v_jc| (fp64 weights). The
denominator is the weighted magnitude the output is a sum of; it equals |ref| when the values
do not change sign, and it stays meaningful where cancellation makes ref itself ~0.

Outputs in --out DIR: results.csv (system, n, m, d, dv, ms, pairs_per_s, max_rel_err,
peak_mem_bytes, note), results.md (one table per shape, and "attnpool fused / best peer"),
meta.json (versions, device, command, seed, bandwidths).

Example (GPU box):  python3 bench/peers/peers.py --attnpool-bin build/bench/attnpool_peer \
                        --out out/peers
Example (no GPU):   python3 bench/peers/peers.py --cpu-only \
                        --attnpool-bin build-bench/bench/attnpool_peer --out out/peers-cpu
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

try:
    import numpy as np
except ImportError:  # nothing can run without NumPy: say so plainly
    sys.exit("peers.py needs NumPy (python3 -m pip install numpy)")

REPO = Path(__file__).resolve().parents[2]
CSV_FIELDS = ["system", "n", "m", "d", "dv", "ms", "pairs_per_s", "max_rel_err",
              "peak_mem_bytes", "note"]


# ---- shapes and data --------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    n: int
    m: int
    d: int
    dv: int
    probe: bool = False  # OOM probe: torch_eager only, one call

    @property
    def tag(self) -> str:
        return f"n{self.n}_m{self.m}_d{self.d}_dv{self.dv}"

    @property
    def bandwidth(self) -> float:
        # The notebook's h = 1 at d = 1. For d > 1, h = sqrt(d) keeps the weights spread over many
        # keys (||q - k||^2 grows like d) instead of collapsing onto the nearest key.
        return 1.0 if self.d == 1 else math.sqrt(self.d)

    @property
    def pairs(self) -> float:
        return float(self.n) * float(self.m)


GPU_SHAPES = [Shape(4096, 4096, 1, 1), Shape(16384, 16384, 1, 1), Shape(65536, 65536, 1, 1),
              Shape(16384, 16384, 16, 1), Shape(16384, 16384, 64, 1)]
GPU_PROBES = [Shape(131072, 131072, 1, 1, probe=True), Shape(262144, 262144, 1, 1, probe=True)]
# The CPU grid, small n first and, at each n, d = 3 last: the n = 16384 calls are most of the
# run's time, so a spent --time-budget skips d = 3 at 16384 first, then the last of the others.
CPU_SHAPES = [Shape(n, n, d, dv) for n in (1024, 4096, 16384)
              for d, dv in ((1, 1), (16, 1), (64, 1), (1, 16), (16, 16), (64, 16), (3, 1), (3, 16))]
CPU_PEERS = ["jax_jit", "numba_prange", "keops_cpu", "torch_cpu", "statsmodels_lc"]
# statsmodels' KernelReg.fit loops over the query points in Python, once per value column (it
# takes one endog at a time), and its kernel product costs about d per pair: n m d dv is capped
# at 4096^2 x 16, a 4.4 s call on the Xeon (4096^2, d = 16, dv = 1).
STATSMODELS_MAX_WORK = 4096 * 4096 * 16


def make_data(shape: Shape, seed: int, data_dir: Path) -> dict[str, Path]:
    """The notebook's data widened to d dimensions, written once as float32 C-order .npy."""
    paths = {name: data_dir / f"{shape.tag}_{name}.npy" for name in ("q", "k", "v")}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng([seed, shape.n, shape.m, shape.d, shape.dv])
    q = rng.uniform(0.0, 5.0, size=(shape.n, shape.d)).astype(np.float32)
    k = rng.uniform(0.0, 5.0, size=(shape.m, shape.d)).astype(np.float32)
    x = k[:, :1].astype(np.float64)
    v = (2.0 * np.sin(x) + x ** 0.8 + rng.normal(0.0, 0.5, size=(shape.m, shape.dv)))
    v = v.astype(np.float32)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, arr in (("q", q), ("k", k), ("v", v)):
        np.save(paths[name], np.ascontiguousarray(arr))
    return paths


def load_data(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: np.load(p) for name, p in paths.items()}


# ---- the fp64 result and the error measure ----------------------------------------------------

def reference_fp64(q, k, v, h, torch_mod=None, device=None):
    """fp64 pooled output and the weighted magnitude sum_j w |v| (the error denominator).

    Max-subtracted softmax, chunked over queries so memory stays ~256 MiB. On a GPU box it runs
    in float64 on the GPU with torch, with direct differences. With NumPy, direct differences
    for d <= 3; above, one column pass a dimension took minutes (4 at d = 64, n = m = 16384, on the
    loaded 2-core Xeon), so the distance is ||q||^2 + ||k||^2 - 2 q.k, a float64 GEMM: its
    rounding is about (d + 2) eps64 (||q||^2 + ||k||^2) < 1e-11 for coordinates in [0, 5) and
    d <= 64, far below the float32 errors measured (~1e-7)."""
    n, m = q.shape[0], k.shape[0]
    chunk = max(1, (32 << 20) // max(1, m))
    if torch_mod is not None and device is not None:
        t = torch_mod
        qd = t.as_tensor(q, dtype=t.float64, device=device)
        kd = t.as_tensor(k, dtype=t.float64, device=device)
        vd = t.as_tensor(v, dtype=t.float64, device=device)
        out = t.empty((n, v.shape[1]), dtype=t.float64, device=device)
        mag = t.empty_like(out)
        for i0 in range(0, n, chunk):
            qb = qd[i0:i0 + chunk]
            s = t.zeros((qb.shape[0], m), dtype=t.float64, device=device)
            for c in range(q.shape[1]):  # one column at a time: no (chunk, m, d) temporary
                s -= (qb[:, c:c + 1] - kd[None, :, c]) ** 2
            w = t.softmax(s / (2.0 * h * h), dim=1)
            out[i0:i0 + chunk] = w @ vd
            mag[i0:i0 + chunk] = w @ vd.abs()
        return out.cpu().numpy(), mag.cpu().numpy()
    qd, kd, vd = q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)
    out = np.empty((n, v.shape[1]))
    mag = np.empty_like(out)
    expand = q.shape[1] > 3
    kk = np.einsum("jc,jc->j", kd, kd)
    for i0 in range(0, n, chunk):
        qb = qd[i0:i0 + chunk]
        if expand:
            s = qb @ kd.T
            s *= 2.0
            s -= kk[None, :]
            s -= np.einsum("ic,ic->i", qb, qb)[:, None]
        else:
            s = np.zeros((qb.shape[0], m))
            for c in range(q.shape[1]):  # one column at a time: no (chunk, m, d) temporary
                s -= (qb[:, c:c + 1] - kd[None, :, c]) ** 2
        s /= 2.0 * h * h
        s -= s.max(axis=1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=1, keepdims=True)
        out[i0:i0 + chunk] = s @ vd
        mag[i0:i0 + chunk] = s @ np.abs(vd)
    return out, mag


def max_rel_err(out, ref) -> float:
    ref_out, mag = ref
    out = np.asarray(out, dtype=np.float64).reshape(ref_out.shape)
    if not np.all(np.isfinite(out)):
        return float("inf")
    return float(np.max(np.abs(out - ref_out) / np.maximum(mag, 1e-300)))


# ---- results ------------------------------------------------------------------------------------

@dataclass
class Row:
    system: str
    shape: Shape
    ms: float | None = None
    err: float | None = None
    peak: float | None = None
    note: str = ""

    def csv(self) -> dict:
        s = self.shape
        return {"system": self.system, "n": s.n, "m": s.m, "d": s.d, "dv": s.dv,
                "ms": "" if self.ms is None else f"{self.ms:.6g}",
                "pairs_per_s": "" if self.ms is None else f"{s.pairs / (self.ms * 1e-3):.6g}",
                "max_rel_err": "" if self.err is None else f"{self.err:.3g}",
                "peak_mem_bytes": "" if self.peak is None else f"{self.peak:.0f}",
                "note": self.note}


class PeerSkip(Exception):
    """A peer cannot run this shape; the message becomes the row's note."""


class OutOfMemory(Exception):
    pass


@dataclass
class Context:
    args: argparse.Namespace
    deadline: float
    torch: object = None
    device: object = None
    torch_note: str = ""
    oom_at: dict = field(default_factory=dict)  # system -> first shape that ran out of memory
    unavailable: dict = field(default_factory=dict)  # system -> reason
    extra: dict = field(default_factory=dict)


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "out of memory" in text or "outofmemory" in text or "cudaerrormemoryallocation" in text


def reps_for(first_ms: float, args) -> int:
    """Fewer repetitions for slow calls: the budget is minutes for the whole comparison."""
    if first_ms > 2000:
        return 1
    if first_ms > 300:
        return 3
    return args.reps


# ---- torch peers -------------------------------------------------------------------------------

def init_torch(ctx: Context) -> None:
    try:
        import torch  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken install raising something else
        ctx.torch_note = f"unavailable: torch not importable ({type(exc).__name__}: {exc})"
        return
    if not torch.cuda.is_available():
        ctx.torch_note = f"unavailable: torch {torch.__version__} sees no CUDA device"
        ctx.torch = torch
        return
    ctx.torch = torch
    ctx.device = torch.device("cuda")
    ctx.extra["torch"] = torch.__version__
    ctx.extra["gpu"] = torch.cuda.get_device_name(0)
    props = torch.cuda.get_device_properties(0)
    ctx.extra["gpu_memory_bytes"] = props.total_memory
    ctx.extra["gpu_sm_count"] = props.multi_processor_count
    try:
        import triton  # noqa: PLC0415
        ctx.extra["triton"] = triton.__version__
    except Exception as exc:
        ctx.extra["triton"] = f"unavailable ({type(exc).__name__})"


def cuda_time(ctx: Context, fn, shape: Shape):
    """Median ms over CUDA-event-timed repetitions after one warm-up; the last output."""
    torch = ctx.torch
    out = fn()  # warm-up (allocator, cuBLAS handles, Triton autotuning)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn()
    stop.record()
    stop.synchronize()
    times = [start.elapsed_time(stop)]
    for _ in range(reps_for(times[0], ctx.args) - 1):
        del out
        start.record()
        out = fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return float(np.median(times)), out


def run_torch_peer(ctx: Context, system: str, shape: Shape, data, ref, build, note=""):
    """build(tensors) -> fn; times fn, checks the error, records peak memory."""
    torch = ctx.torch
    if ctx.device is None:
        raise PeerSkip(ctx.torch_note)
    torch.cuda.empty_cache()
    tensors = {name: torch.as_tensor(a, device=ctx.device) for name, a in data.items()}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    try:
        fn, extra_note = build(tensors, shape)
        ms, out = cuda_time(ctx, fn, shape)
        peak = float(torch.cuda.max_memory_allocated())
        out_np = out.float().cpu().numpy()[:, :shape.dv]
    except Exception as exc:
        if is_oom(exc):
            raise OutOfMemory(str(exc).splitlines()[0]) from None
        raise
    finally:
        tensors.clear()
    err = max_rel_err(out_np, ref) if ref is not None else None
    return Row(system, shape, ms, err, peak, "; ".join(x for x in (note, extra_note) if x))


def eager_fn(torch, q, k, v, h: float):
    """The notebook's own formulation (d2l.ai, Nadaraya-Watson), as a user writes it."""
    if q.shape[1] == 1:
        w = torch.nn.functional.softmax(-(q - k.T) ** 2 / (2 * h * h), dim=1)
    else:
        w = torch.nn.functional.softmax(-torch.cdist(q, k) ** 2 / (2 * h * h), dim=1)
    return w @ v


def build_eager(ctx):
    def build(t, shape):
        q, k, v, h = t["q"], t["k"], t["v"], shape.bandwidth
        return (lambda: eager_fn(ctx.torch, q, k, v, h)), ""
    return build


def build_compile(ctx):
    torch = ctx.torch
    if "compiled" not in ctx.extra:
        def notebook(q, k, v, h):
            return eager_fn(torch, q, k, v, h)
        ctx.extra["compiled"] = torch.compile(notebook, dynamic=False)
    compiled = ctx.extra["compiled"]

    def build(t, shape):
        q, k, v, h = t["q"], t["k"], t["v"], shape.bandwidth
        t0 = time.perf_counter()
        compiled(q, k, v, h)  # compiles for this shape, outside the timing
        torch.cuda.synchronize()
        return (lambda: compiled(q, k, v, h)), \
            f"compile+first call {time.perf_counter() - t0:.1f} s (untimed)"
    return build


SDPA_NAMES = ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"]


def sdpa_inputs(torch, q, k, v, h, variant):
    """(query, key, value, attn_mask, scale) in (1, 1, L, E) layout for one SDPA variant."""
    if variant == "bias":
        bias = (-(k * k).sum(1) / (2 * h * h)).view(1, 1, 1, -1)
        mask = bias.expand(1, 1, q.shape[0], k.shape[0])
        return q[None, None], k[None, None], v[None, None], mask, 1.0 / (h * h)
    # "nomask": q' = [q, 1], k' = [k, -||k||^2/2], zero-padded so that E = Ev = 8 * ceil((d+1)/8)
    width = 8 * math.ceil((q.shape[1] + 1) / 8)
    width = max(width, 8 * math.ceil(v.shape[1] / 8))

    def pad(x, extra=None):
        out = torch.zeros((x.shape[0], width), dtype=torch.float16, device=x.device)
        out[:, :x.shape[1]] = x
        if extra is not None:
            out[:, x.shape[1]] = extra
        return out
    qa = pad(q, torch.ones_like(q[:, 0]))
    ka = pad(k, -0.5 * (k * k).sum(1))
    va = pad(v)
    return qa[None, None], ka[None, None], va[None, None], None, 1.0 / (h * h)


def sdpa_backend_report(ctx, t, shape, variant) -> str:
    """Which SDPA backend PyTorch picks for these inputs, and which ones can run them."""
    torch = ctx.torch
    key = (variant, shape.d, shape.dv)
    cache = ctx.extra.setdefault("sdpa_backends", {})
    if key in cache:
        return cache[key]
    small = {name: a[:min(1024, a.shape[0])] for name, a in t.items()}
    qq, kk, vv, mask, scale = sdpa_inputs(torch, small["q"], small["k"], small["v"],
                                          shape.bandwidth, variant)
    chosen = "unknown"
    try:
        from torch.nn.attention import SDPBackend  # noqa: PLC0415
        choice = torch._fused_sdp_choice(qq, kk, vv, attn_mask=mask, dropout_p=0.0,
                                         is_causal=False, scale=scale)
        chosen = SDPBackend(choice).name
    except Exception as exc:
        chosen = f"unknown ({type(exc).__name__})"
    runs = []
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: PLC0415
        for name in SDPA_NAMES:
            backend = getattr(SDPBackend, name, None)
            if backend is None:
                continue
            try:
                with sdpa_kernel([backend]):
                    torch.nn.functional.scaled_dot_product_attention(
                        qq, kk, vv, attn_mask=mask, scale=scale)
                torch.cuda.synchronize()
                runs.append(name.split("_")[0].lower())
            except Exception:
                pass
    except Exception as exc:
        runs.append(f"(trials unavailable: {type(exc).__name__})")
    cache[key] = f"SDPA backend chosen: {chosen}; runs on: {', '.join(runs) or 'none'}"
    return cache[key]


def build_sdpa(ctx, variant):
    torch = ctx.torch

    def build(t, shape):
        note = sdpa_backend_report(ctx, t, shape, variant)
        qq, kk, vv, mask, scale = sdpa_inputs(torch, t["q"], t["k"], t["v"], shape.bandwidth,
                                              variant)

        def fn():
            o = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask,
                                                                 scale=scale)
            return o[0, 0]
        return fn, note
    return build


KEOPS_CANARY = """
import faulthandler, sys, torch
faulthandler.enable()  # a crash prints the Python frames it happened under
from pykeops.torch import LazyTensor
d = int(sys.argv[1])
q = torch.rand(64, d, device="cuda"); k = torch.rand(64, d, device="cuda")
v = torch.rand(64, 1, device="cuda")
s = ((LazyTensor(q[:, None, :]) - LazyTensor(k[None, :, :])) ** 2).sum(-1) * -0.5
s.sumsoftmaxweight(LazyTensor(v[None, :, :]), axis=1)
torch.cuda.synchronize()
"""


def keops_canary(ctx, d: int) -> None:
    """KeOps compiles each formula at first use, in-process; on the H100 image of 2026-11-26
    (CUDA 13.0, torch 2.11, pykeops 2.3) that compilation died with SIGSEGV and took this script
    with it. So each formula is first compiled in a child process (which also fills KeOps' cache
    for the real call); a crash there makes the keops rows 'failed', not the run."""
    done = ctx.extra.setdefault("keops_canary", {})
    if d not in done:
        try:
            r = subprocess.run([sys.executable, "-c", KEOPS_CANARY, str(d)], capture_output=True,
                               text=True, timeout=180)
            lines = (r.stdout + r.stderr).strip().splitlines()
            tail = (lines or [""])[-1]
            if r.returncode != 0:  # the whole story for the log: KeOps prints its steps
                print(f"keops canary d = {d}, exit {r.returncode}:", *lines[-25:], sep="\n  ",
                      file=sys.stderr)
            done[d] = None if r.returncode == 0 else (
                f"KeOps crashed compiling its formula (exit {r.returncode}"
                f"{', signal ' + str(-r.returncode) if r.returncode < 0 else ''}): {tail}")
        except subprocess.TimeoutExpired:
            done[d] = "KeOps took over 180 s compiling its formula"
    if done[d] is not None:
        raise PeerSkip(f"failed: {done[d]}"[:300])


def build_keops(ctx):
    from pykeops.torch import LazyTensor  # noqa: PLC0415 (import errors are handled by the caller)

    def build(t, shape):
        keops_canary(ctx, shape.d)
        q, k, v, h = t["q"], t["k"], t["v"], shape.bandwidth
        c = -1.0 / (2.0 * h * h)

        def fn():
            qi, kj, vj = LazyTensor(q[:, None, :]), LazyTensor(k[None, :, :]), \
                LazyTensor(v[None, :, :])
            s = ((qi - kj) ** 2).sum(-1) * c
            return s.sumsoftmaxweight(vj, axis=1)
        t0 = time.perf_counter()
        fn()  # first call compiles the formula with nvcc (seconds); outside the timing
        ctx.torch.cuda.synchronize()
        return fn, (f"first call {time.perf_counter() - t0:.1f} s incl. compile (untimed); "
                    "peak memory counts torch allocations only")
    return build


# ---- attnpool (the C++ driver) -------------------------------------------------------------------

def find_driver(args) -> Path | None:
    if args.attnpool_bin:
        p = Path(args.attnpool_bin)
        return p if p.is_file() and os.access(p, os.X_OK) else None
    for cand in ("build/bench/attnpool_peer", "build-bench/bench/attnpool_peer",
                 "build/test/bench/attnpool_peer"):
        p = REPO / cand
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def run_driver(ctx: Context, system: str, backend: str, shape: Shape, paths, ref, out_dir: Path):
    driver = ctx.extra.get("driver")
    if driver is None:
        raise PeerSkip(ctx.unavailable.get("attnpool", "unavailable: attnpool_peer not found "
                                           "(build it: cmake --build BUILD --target "
                                           "attnpool_peer; pass --attnpool-bin)"))
    out_path = out_dir / f"{shape.tag}_{system}_out.npy"
    cmd = [str(driver), "--queries", str(paths["q"]), "--keys", str(paths["k"]),
           "--values", str(paths["v"]), "--backend", backend,
           "--bandwidth", repr(shape.bandwidth), "--reps", str(ctx.args.reps),
           "--warmup", "1", "--out", str(out_path)]
    if backend in ("cpu", "reference") and ctx.args.threads:
        cmd += ["--threads", str(ctx.args.threads)]
    timeout = max(10.0, ctx.deadline - time.monotonic())
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PeerSkip(f"timed out after {timeout:.0f} s (time budget)") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in result:
        msg = result.get("error") or proc.stderr.strip() or f"exit status {proc.returncode}"
        if is_oom(RuntimeError(msg)):
            raise OutOfMemory(msg)
        if any(x in msg for x in ("built without CUDA", "cudaErrorNoDevice",
                                  "cudaErrorInsufficientDriver")):
            raise PeerSkip(f"unavailable: {msg}")
        raise RuntimeError(msg)
    out = np.load(out_path)
    err = max_rel_err(out, ref) if ref is not None else None
    out_path.unlink(missing_ok=True)
    note = (f"{result.get('timing', '?')}, {result.get('reps', '?')} reps; "
            + ("peak = process peak RSS" if backend in ("cpu", "reference")
               else "peak = driver's device allocations (inputs, output, workspace)"))
    return Row(system, shape, float(result["median_ms"]), err, float(result["peak_bytes"]), note)


# ---- NumPy peer (CPU) ------------------------------------------------------------------------

def numpy_chunk(m: int) -> int:
    """Query rows per chunk of numpy_f32_pool: a 16 Mi-element score block."""
    return max(1, (16 << 20) // max(1, m))


def numpy_f32_pool(q, k, v, h):
    """What a NumPy user writes, in float32, chunked over queries to bound the n x m temporary.
    Above d = 3 the squared distance is 2 q.k - ||k||^2 - ||q||^2 by a GEMM, as
    sklearn's euclidean_distances and torch.cdist (above 25 dimensions) compute it: one column
    pass a dimension took 192 s at n = m = 16384, d = 64 on the loaded 2-core Xeon."""
    n, m = q.shape[0], k.shape[0]
    chunk = numpy_chunk(m)
    out = np.empty((n, v.shape[1]), dtype=np.float32)
    c = np.float32(1.0 / (2.0 * h * h))
    expand = q.shape[1] > 3
    kk = np.einsum("jc,jc->j", k, k)
    for i0 in range(0, n, chunk):
        qb = q[i0:i0 + chunk]
        if expand:
            s = qb @ k.T
            s *= np.float32(2.0)
            s -= kk[None, :]
            s -= np.einsum("ic,ic->i", qb, qb)[:, None]
        else:
            s = np.zeros((qb.shape[0], m), dtype=np.float32)
            for col in range(q.shape[1]):
                s -= (qb[:, col:col + 1] - k[None, :, col]) ** 2
        s *= c
        s -= s.max(axis=1, keepdims=True)
        np.exp(s, out=s)
        out[i0:i0 + chunk] = (s @ v) / s.sum(axis=1, keepdims=True)
    return out


def run_numpy_peer(ctx, shape, data, ref):
    q, k, v, h = data["q"], data["k"], data["v"], shape.bandwidth
    t0 = time.perf_counter()
    out = numpy_f32_pool(q, k, v, h)
    times = [(time.perf_counter() - t0) * 1e3]
    for _ in range(reps_for(times[0], ctx.args) - 1):
        t0 = time.perf_counter()
        out = numpy_f32_pool(q, k, v, h)
        times.append((time.perf_counter() - t0) * 1e3)
    # A separate, untimed call for the peak (tracing costs time per allocation), on one chunk of
    # queries: every chunk allocates the same.
    tracemalloc.start()
    numpy_f32_pool(q[:numpy_chunk(k.shape[0])], k, v, h)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return Row("numpy_float32", shape, float(np.median(times)), max_rel_err(out, ref),
               float(peak), f"{len(times)} reps, wall clock; peak = traced NumPy allocations")


# ---- CPU peers, each in a worker process (--cpu-only) -------------------------------------------

def build_cpu_peer(system: str, q, k, v, h: float, threads: int):
    """fn() -> the pooled output as a NumPy array, for one CPU peer; ImportError if missing."""
    n, d, dv = q.shape[0], q.shape[1], v.shape[1]
    c = 1.0 / (2.0 * h * h)
    if system == "jax_jit":
        import jax  # noqa: PLC0415
        import jax.numpy as jnp  # noqa: PLC0415

        @jax.jit
        def nw(q, k, v):
            # The formula as written; XLA fuses the difference, square and sum over d.
            s = -jnp.sum((q[:, None, :] - k[None, :, :]) ** 2, axis=-1) * c
            return jax.nn.softmax(s, axis=1) @ v
        qj, kj, vj = (jnp.asarray(a) for a in (q, k, v))
        return lambda: np.asarray(nw(qj, kj, vj).block_until_ready())
    if system == "numba_prange":
        import numba  # noqa: PLC0415
        numba.set_num_threads(threads)

        @numba.njit(parallel=True, fastmath=True)
        def nw(q, k, v, c, out):
            n, d = q.shape
            m, dv = v.shape
            for i in numba.prange(n):
                mx = np.float32(-np.inf)
                s = np.float32(0.0)
                acc = np.zeros(dv, dtype=np.float32)
                for j in range(m):
                    dist = np.float32(0.0)
                    for col in range(d):
                        diff = q[i, col] - k[j, col]
                        dist += diff * diff
                    sc = -dist * c
                    if sc > mx:  # a new maximum: rescale what was summed so far
                        r = np.exp(mx - sc)
                        s *= r
                        for col in range(dv):
                            acc[col] *= r
                        mx = sc
                    w = np.exp(sc - mx)
                    s += w
                    for col in range(dv):
                        acc[col] += w * v[j, col]
                for col in range(dv):
                    out[i, col] = acc[col] / s
        out = np.empty((n, dv), dtype=np.float32)
        c32 = np.float32(c)
        return lambda: (nw(q, k, v, c32, out), out)[1]
    if system == "keops_cpu":
        import pykeops  # noqa: PLC0415
        from pykeops.numpy import LazyTensor  # noqa: PLC0415
        pykeops.set_verbose(False)
        qi, kj, vj = LazyTensor(q[:, None, :]), LazyTensor(k[None, :, :]), LazyTensor(v[None, :, :])
        s = -((qi - kj) ** 2).sum(-1) * np.float32(c)
        return lambda: s.sumsoftmaxweight(vj, axis=1, backend="CPU")
    if system == "torch_cpu":
        import torch  # noqa: PLC0415
        torch.set_num_threads(threads)
        qt, kt, vt = (torch.from_numpy(a) for a in (q, k, v))
        with torch.no_grad():
            return lambda: eager_fn(torch, qt, kt, vt, h).numpy()
    if system == "statsmodels_lc":
        from statsmodels.nonparametric.kernel_regression import KernelReg  # noqa: PLC0415
        k64, q64 = k.astype(np.float64), q.astype(np.float64)

        def fit():
            cols = [KernelReg(v[:, col].astype(np.float64), k64, var_type="c" * d,
                              reg_type="lc", bw=[h] * d).fit(q64)[0] for col in range(dv)]
            return np.stack(cols, axis=1)
        return fit
    raise ValueError(f"unknown CPU peer {system}")


def rss_bytes(field: str = "VmRSS") -> float:
    """This process's resident set (VmRSS) or its peak (VmHWM), from /proc/self/status. Not
    ru_maxrss: Linux carries that over from the parent at fork, so a worker would report the
    driver's own peak."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field + ":"))
    return float(line.split()[1]) * 1024.0


def cpu_worker(args) -> int:
    """One CPU peer in this process: prints one JSON line (times, compile time, RSS)."""
    try:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
    except (AttributeError, OSError):
        pass
    q, k, v = (np.load(p) for p in args.worker_data.split(","))
    try:
        fn = build_cpu_peer(args.worker, q, k, v, args.worker_h, args.threads)
    except ImportError as exc:
        print(json.dumps({"unavailable": f"{type(exc).__name__}: {exc}"}))
        return 0
    before = rss_bytes()
    t0 = time.perf_counter()
    out = fn()  # the first call: JIT compilation (jax, numba, keops) is in it
    first = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    out = fn()
    times = [(time.perf_counter() - t0) * 1e3]
    for _ in range(reps_for(times[0], args) - 1):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    np.save(args.worker_out, np.asarray(out, dtype=np.float32).reshape(q.shape[0], -1))
    peak = rss_bytes("VmHWM")
    print(json.dumps({"median_ms": float(np.median(times)), "reps": len(times),
                      "first_ms": first, "rss_before": before, "peak_rss": peak}))
    return 0


def run_cpu_peer(ctx: Context, system: str, shape: Shape, paths, ref, out_dir: Path) -> Row:
    if system == "statsmodels_lc" and shape.pairs * shape.d * shape.dv > STATSMODELS_MAX_WORK:
        raise PeerSkip("skipped: statsmodels for small shapes only (n m d dv > 4096^2 x 16)")
    threads = ctx.args.threads or 2
    out_path = out_dir / f"{shape.tag}_{system}_out.npy"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(out_dir),
           "--worker", system, "--worker-data", ",".join(str(paths[x]) for x in ("q", "k", "v")),
           "--worker-h", repr(shape.bandwidth), "--worker-out", str(out_path),
           "--reps", str(ctx.args.reps), "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               JAX_PLATFORMS="cpu")
    timeout = max(10.0, ctx.deadline - time.monotonic())
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=env)
    except subprocess.TimeoutExpired:
        raise PeerSkip(f"timed out after {timeout:.0f} s (time budget)") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if "unavailable" in result:
        raise PeerSkip(f"unavailable: {result['unavailable']}"[:300])
    if proc.returncode != 0 or "median_ms" not in result:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RuntimeError(tail[:250])
    out = np.load(out_path)
    out_path.unlink(missing_ok=True)
    compile_ms = result["first_ms"] - result["median_ms"]
    note = (f"{threads} threads, {result['reps']} reps, wall clock; first call "
            f"{fmt_ms(result['first_ms'])} ms"
            + (f" (compile ~{fmt_ms(max(0.0, compile_ms))} ms)"
               if system in ("jax_jit", "numba_prange", "keops_cpu") else "")
            + f"; peak = process peak RSS, rss before the call {fmt_bytes(result['rss_before'])}")
    return Row(system, shape, float(result["median_ms"]), max_rel_err(out, ref),
               float(result["peak_rss"]), note)


# ---- the run -----------------------------------------------------------------------------------

def systems_for(args) -> list[str]:
    if args.cpu_only:
        return ["attnpool_cpu", "numpy_float32"] + CPU_PEERS
    return ["attnpool_fused", "attnpool_unfused", "torch_eager", "torch_compile",
            "sdpa_fp32_bias", "sdpa_fp16_nomask", "keops"]


def run_one(ctx: Context, system: str, shape: Shape, paths, data, ref, out_dir: Path) -> Row:
    if system in ctx.unavailable:
        return Row(system, shape, note=ctx.unavailable[system])
    if system in ctx.oom_at:
        return Row(system, shape, note=f"skipped: OOM at a smaller shape ({ctx.oom_at[system]})")
    if time.monotonic() > ctx.deadline:
        return Row(system, shape, note="skipped: time budget spent (--time-budget)")
    try:
        if system == "attnpool_cpu":
            return run_driver(ctx, system, "cpu", shape, paths, ref, out_dir)
        if system == "attnpool_fused":
            return run_driver(ctx, system, "cuda_fused", shape, paths, ref, out_dir)
        if system == "attnpool_unfused":
            return run_driver(ctx, system, "cuda_unfused", shape, paths, ref, out_dir)
        if system == "numpy_float32":
            return run_numpy_peer(ctx, shape, data, ref)
        if system in CPU_PEERS:
            return run_cpu_peer(ctx, system, shape, paths, ref, out_dir)
        if ctx.device is None:
            ctx.unavailable[system] = ctx.torch_note or "unavailable: no torch CUDA device"
            return Row(system, shape, note=ctx.unavailable[system])
        if system == "torch_eager":
            return run_torch_peer(ctx, system, shape, data, ref, build_eager(ctx))
        if system == "torch_compile":
            return run_torch_peer(ctx, system, shape, data, ref, build_compile(ctx))
        if system == "sdpa_fp32_bias":
            return run_torch_peer(ctx, system, shape, data, ref, build_sdpa(ctx, "bias"),
                                  "fp32, key bias as attn_mask")
        if system == "sdpa_fp16_nomask":
            return run_torch_peer(ctx, system, shape, data, ref, build_sdpa(ctx, "nomask"),
                                  "fp16, bias folded into an extra coordinate")
        if system == "keops":
            try:
                build = build_keops(ctx)
            except Exception as exc:
                ctx.unavailable[system] = (f"unavailable: pykeops not importable "
                                           f"({type(exc).__name__}: {exc})")
                return Row(system, shape, note=ctx.unavailable[system])
            return run_torch_peer(ctx, system, shape, data, ref, build)
        raise PeerSkip(f"unknown system {system}")
    except OutOfMemory as exc:
        ctx.oom_at[system] = shape.tag
        if ctx.torch is not None and ctx.device is not None:
            ctx.torch.cuda.empty_cache()
        return Row(system, shape, note=f"OOM ({exc})"[:300])
    except PeerSkip as exc:
        if str(exc).startswith("unavailable"):
            ctx.unavailable[system] = str(exc)
        return Row(system, shape, note=str(exc))
    except Exception as exc:  # a peer's own failure: record it, go on with the others
        if ctx.args.verbose:
            traceback.print_exc()
        return Row(system, shape, note=f"failed: {type(exc).__name__}: {exc}"[:300])


def run_probe(ctx: Context, shape: Shape) -> Row:
    """torch_eager at a size meant to exceed GPU memory: one call, untimed beyond that."""
    system = "torch_eager"
    if ctx.device is None:
        return Row(system, shape, note=ctx.torch_note or "unavailable")
    if system in ctx.oom_at and ctx.oom_at[system] != shape.tag:
        return Row(system, shape, note=f"skipped: OOM at a smaller shape ({ctx.oom_at[system]})")
    if time.monotonic() > ctx.deadline:
        return Row(system, shape, note="skipped: time budget spent (--time-budget)")
    torch = ctx.torch
    torch.cuda.empty_cache()
    rng = np.random.default_rng(ctx.args.seed)
    try:
        q = torch.as_tensor(rng.uniform(0, 5, (shape.n, 1)).astype(np.float32), device=ctx.device)
        k = torch.as_tensor(rng.uniform(0, 5, (shape.m, 1)).astype(np.float32), device=ctx.device)
        v = torch.sin(k)
        torch.cuda.reset_peak_memory_stats()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        eager_fn(torch, q, k, v, 1.0)
        stop.record()
        stop.synchronize()
        return Row(system, shape, start.elapsed_time(stop), None,
                   float(torch.cuda.max_memory_allocated()),
                   "OOM probe: ran (one call, no error check)")
    except Exception as exc:
        if is_oom(exc):
            ctx.oom_at[system] = shape.tag
            torch.cuda.empty_cache()
            return Row(system, shape, note=f"OOM probe: out of memory ({str(exc).splitlines()[0]})"
                       [:300])
        return Row(system, shape, note=f"OOM probe failed: {type(exc).__name__}: {exc}"[:300])


def fmt_ms(x):
    return "" if x is None else (f"{x:.3g}" if x < 100 else f"{x:.0f}")


def fmt_bytes(x):
    if x is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return ""


def write_outputs(out_dir: Path, rows: list[Row], ctx: Context, fused_name: str) -> None:
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow(r.csv())
    lines = [f"# attnpool vs peers ({'CPU only' if ctx.args.cpu_only else 'GPU'})", "",
             f"- date: {ctx.extra['date']}", f"- command: `{ctx.extra['command']}`",
             f"- device: {ctx.extra.get('gpu', ctx.extra.get('cpu', '?'))}",
             f"- seed: {ctx.args.seed}; bandwidth h = 1 at d = 1, sqrt(d) for d > 1",
             "- max_rel_err: max |out - ref64| / sum_j w|v| (see peers.py)",
             f"- ratio column: best peer ms / {fused_name} ms (> 1: attnpool is faster)", ""]
    shapes = []
    for r in rows:
        if r.shape not in shapes:
            shapes.append(r.shape)
    summary = ["| shape | h | " + fused_name + " ms | best peer | best peer ms | "
               f"{fused_name} / best peer (speed-up) |", "|---|---|---|---|---|---|"]
    for s in shapes:
        srows = [r for r in rows if r.shape == s]
        fused = next((r for r in srows if r.system == fused_name and r.ms is not None), None)
        peers = [r for r in srows if r.ms is not None and not r.system.startswith("attnpool")
                 and "probe" not in r.note]
        best = min(peers, key=lambda r: r.ms) if peers else None
        ratio = f"{best.ms / fused.ms:.2f}x" if fused and best else "n/a"
        title = f"n = {s.n}, m = {s.m}, d = {s.d}, dv = {s.dv}" + (" (OOM probe)" if s.probe
                                                                    else "")
        lines += [f"## {title}", "", "| system | ms | pairs/s | max rel err | peak memory | "
                  f"{fused_name} speed-up | note |", "|---|---|---|---|---|---|---|"]
        for r in srows:
            speed = f"{r.ms / fused.ms:.2f}x" if fused and r.ms is not None else ""
            pairs = f"{s.pairs / (r.ms * 1e-3):.3g}" if r.ms is not None else ""
            err = "" if r.err is None else f"{r.err:.2g}"
            lines.append(f"| {r.system} | {fmt_ms(r.ms)} | {pairs} | {err} | {fmt_bytes(r.peak)} "
                         f"| {speed} | {r.note} |")
        lines.append("")
        if not s.probe:
            summary.append(f"| {s.n}x{s.m}, d={s.d}, dv={s.dv} | {s.bandwidth:g} | "
                           f"{fmt_ms(fused.ms) if fused else 'n/a'} | "
                           f"{best.system if best else 'n/a'} | "
                           f"{fmt_ms(best.ms) if best else 'n/a'} | {ratio} |")
    grid = grid_table(rows, shapes, fused_name) if ctx.args.cpu_only else []
    lines = lines[:9] + ["## Summary", ""] + summary + [""] + grid + lines[9:]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    meta = {k: v for k, v in ctx.extra.items()
            if k not in ("compiled", "driver") and not callable(v)}
    meta["driver"] = str(ctx.extra.get("driver"))
    meta["shapes"] = [{"n": s.n, "m": s.m, "d": s.d, "dv": s.dv, "bandwidth": s.bandwidth,
                       "probe": s.probe} for s in shapes]
    meta["unavailable"] = ctx.unavailable
    meta["oom_at"] = ctx.oom_at
    (out_dir / "meta.json").write_text(json.dumps(json_safe(meta), indent=2, default=str) + "\n")


def grid_table(rows: list[Row], shapes: list[Shape], fused_name: str) -> list[str]:
    """One line per shape, one column of ms per system, the fastest peer's ratio last; then each
    system's worst error over the shapes it ran. Untimed rows show the first word of the note."""
    systems = []
    for r in rows:
        if r.system not in systems:
            systems.append(r.system)
    by = {(r.system, r.shape): r for r in rows}
    out = ["## Grid (ms)", "",
           "| n = m | d | dv | " + " | ".join(systems) + " | fastest peer / " + fused_name + " |",
           "|---|---|---|" + "---|" * (len(systems) + 1)]
    for s in sorted(shapes, key=lambda s: (s.dv, s.d, s.n)):  # grouped for reading, not run order
        if s.probe:
            continue
        cells = []
        for name in systems:
            r = by.get((name, s))
            cells.append("" if r is None else fmt_ms(r.ms) if r.ms is not None
                         else "timed out" if r.note.startswith("timed out")
                         else r.note.split(":")[0].split(" ")[0])
        fused = by.get((fused_name, s))
        peers = [by[(x, s)] for x in systems if (x, s) in by and not x.startswith("attnpool")
                 and by[(x, s)].ms is not None]
        best = min(peers, key=lambda r: r.ms) if peers else None
        ratio = (f"{best.ms / fused.ms:.3g}x ({best.system})"
                 if best and fused and fused.ms is not None else "n/a")
        out.append(f"| {s.n} | {s.d} | {s.dv} | " + " | ".join(cells) + f" | {ratio} |")
    worst = []
    for name in systems:
        errs = [r.err for r in rows if r.system == name and r.err is not None]
        worst.append(f"{max(errs):.2g}" if errs else "")
    out += ["| max rel err | | | " + " | ".join(worst) + " | |", ""]
    return out


def json_safe(obj):
    """meta with every dict key a string (peers cache things under tuple keys)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def parse_shapes(text: str) -> list[Shape]:
    """"4096x4096x1x1,16384x16384x16x1" -> shapes (n x m x d x dv)."""
    shapes = []
    for part in text.split(","):
        n, m, d, dv = (int(x) for x in part.lower().split("x"))
        shapes.append(Shape(n, m, d, dv))
    return shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--attnpool-bin", help="path to the attnpool_peer driver")
    ap.add_argument("--cpu-only", action="store_true", help="NumPy and attnpool's CPU backend")
    ap.add_argument("--shapes", help="override, e.g. 4096x4096x1x1,16384x16384x16x1")
    ap.add_argument("--no-probe", action="store_true", help="skip the torch_eager OOM probe")
    ap.add_argument("--systems", help="comma-separated subset of the systems to run")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions (fewer for slow ones)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--threads", type=int, default=0, help="attnpool cpu threads (0 = all)")
    ap.add_argument("--time-budget", type=float, default=150.0,
                    help="seconds; rows left when it is spent are marked skipped")
    ap.add_argument("--verbose", action="store_true")
    # Internal: one CPU peer in a worker process (run_cpu_peer starts it).
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-data", help=argparse.SUPPRESS)
    ap.add_argument("--worker-h", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return cpu_worker(args)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args=args, deadline=time.monotonic() + args.time_budget)
    ctx.extra["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx.extra["command"] = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    ctx.extra["numpy"] = np.__version__
    ctx.extra["python"] = platform.python_version()
    ctx.extra["cpu"] = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            ctx.extra["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f
                                    if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ctx.extra["cpu_count"] = os.cpu_count()

    driver = find_driver(args)
    ctx.extra["driver"] = driver
    if driver is None:
        ctx.unavailable["attnpool"] = ("unavailable: attnpool_peer binary not found"
                                       + (f" at {args.attnpool_bin}" if args.attnpool_bin else
                                          " (pass --attnpool-bin)"))
        for s in ("attnpool_cpu", "attnpool_fused", "attnpool_unfused"):
            ctx.unavailable[s] = ctx.unavailable["attnpool"]

    systems = systems_for(args)
    if args.systems:
        systems = [s for s in args.systems.split(",") if s]
    if not args.cpu_only:
        init_torch(ctx)
        try:
            import pykeops  # noqa: PLC0415
            ctx.extra["pykeops"] = pykeops.__version__
        except Exception as exc:
            ctx.unavailable["keops"] = (f"unavailable: pykeops not importable "
                                        f"({type(exc).__name__}: {exc})")
    shapes = parse_shapes(args.shapes) if args.shapes else (CPU_SHAPES if args.cpu_only
                                                            else GPU_SHAPES)
    fused_name = "attnpool_cpu" if args.cpu_only else "attnpool_fused"

    rows: list[Row] = []
    data_dir = out_dir / "data"
    for shape in shapes:
        paths = make_data(shape, args.seed, data_dir)
        data = load_data(paths)
        t0 = time.perf_counter()
        ref = reference_fp64(data["q"], data["k"], data["v"], shape.bandwidth,
                             ctx.torch if ctx.device is not None else None, ctx.device)
        print(f"[{shape.tag}] fp64 reference in {time.perf_counter() - t0:.1f} s", flush=True)
        for system in systems:
            row = run_one(ctx, system, shape, paths, data, ref, out_dir)
            rows.append(row)
            print(f"[{shape.tag}] {system:18s} ms={fmt_ms(row.ms):>8s} "
                  f"err={'' if row.err is None else f'{row.err:.2g}':>8s} "
                  f"peak={fmt_bytes(row.peak):>10s}  {row.note}", flush=True)
            write_outputs(out_dir, rows, ctx, fused_name)  # partial results survive a kill
    if not args.cpu_only and not args.no_probe and "torch_eager" in systems:
        for shape in GPU_PROBES:
            row = run_probe(ctx, shape)
            rows.append(row)
            print(f"[{shape.tag}] torch_eager probe: {row.note}", flush=True)
            if "out of memory" in row.note or not row.note.startswith("OOM probe: ran"):
                break  # the first OOM answers the question; so does any failure to run
    write_outputs(out_dir, rows, ctx, fused_name)
    print(f"wrote {out_dir / 'results.csv'} and {out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
