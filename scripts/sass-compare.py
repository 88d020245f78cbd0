#!/usr/bin/env python3
"""Compares the SASS of two CUDA object files function by function.

    scripts/sass-compare.py OLD.o NEW.o [OLD_SUBSTRING=NEW_SUBSTRING ...]

Instructions are compared one by one with the constant-bank offsets of kernel parameters
(c[0x0][...]) masked, so that a change of parameter layout alone reads as identical; functions
are matched by mangled name, anonymous-namespace hashes masked, after the given renames (for
example 21fused_pool_any_kernel=25fused_pool_generic_kernel). Needs cuobjdump: on PATH, under
CUDA_HOME, or from `pip install nvidia-cuda-cuobjdump`. No GPU needed. Exits 1 when a function
differs or exists on one side only.

    scripts/sass-compare.py --hot-loop OBJ FUNCTION_SUBSTRING [PAIRS_PER_ITERATION]

Counts the instructions of one kernel's hot inner loop: of the loops (backward branches) whose
body holds a MUFU.EX2, the innermost ones, and through each the shortest path from its head to
its back-edge that passes at least one MUFU.EX2 (in fused_pool_masked_kernel a chunk that no row
sees is skipped: that path does no pair's work). In the fused agent that path is the common chunk (no rebase; score - ref as one
FFMA on the direct distance, or in fused_pool_expanded_kernel the expanded score, one FFMA per
pair): every rarer branch (the rebase, the far-reference form) only adds instructions.
Prints the path's opcode counts and instructions per pair (pairs = PAIRS_PER_ITERATION, by
default the MUFU.EX2 count on the path, i.e. one exp2 per pair). Then each loop that encloses
such a loop, other than the outermost, with its shortest path around the inner loops (in
fused_pool_masked_kernel the chunk where a row loses a key). Then the outermost loop (in
the fused agent the tile loop) and its shortest path, which enters no inner loop: the fixed
per-tile work, barriers included.
"""
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig


def cuobjdump():
    found = shutil.which("cuobjdump")
    if found:
        return found
    cands = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump")]
    cands += glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu*", "bin",
                                    "cuobjdump"))
    for c in cands:
        if os.path.exists(c):
            return c
    sys.exit("sass-compare: cuobjdump not found (pip install nvidia-cuda-cuobjdump)")


def functions(obj, renames):
    out = subprocess.check_output([cuobjdump(), "-sass", obj], text=True)
    fs, cur = {}, None
    for line in out.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = re.sub(r"[0-9]+_GLOBAL__N__\w+?_cu_[0-9a-f]+", "<anon>", m.group(1))
            for old, new in renames:
                name = name.replace(old, new)
            cur = fs.setdefault(name, [])
            continue
        m = re.match(r"\s+/\*[0-9a-f]{4}\*/\s+(.*?);", line)
        if m and cur is not None:
            cur.append(re.sub(r"c\[0x0\]\[0x[0-9a-f]+\]", "c[0x0][*]", m.group(1)).strip())
    return fs


def instructions(obj, fn_substring):
    """(address, predicate, opcode, operands) of the one function whose name holds the substring."""
    out = subprocess.check_output([cuobjdump(), "-sass", obj], text=True)
    fs, cur = {}, None
    for line in out.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = fs.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z0-9_.]+)\s*(.*?)\s*;", line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), (m.group(2) or "").strip(), m.group(3), m.group(4)))
    hits = [k for k in fs if fn_substring in k]
    if len(hits) != 1:
        sys.exit(f"sass-compare: {len(hits)} functions match {fn_substring!r}: {hits[:8]}")
    return hits[0], fs[hits[0]]


def hot_loops(ins, pairs=None):
    """The innermost MUFU loops of one function, each with its shortest head-to-back-edge path."""
    addr = {a: i for i, (a, *_) in enumerate(ins)}
    def target(i):
        m = re.match(r"(0x[0-9a-f]+)", ins[i][3])
        return addr.get(int(m.group(1), 16)) if m else None
    loops = []
    for i, (a, pred, op, _) in enumerate(ins):
        t = target(i) if op == "BRA" else None
        if t is not None and t <= i:
            loops.append((t, i))
    with_mufu = [(h, b) for h, b in loops
                 if any(ins[k][2] == "MUFU.EX2" for k in range(h, b + 1))]
    inner = [(h, b) for h, b in with_mufu
             if not any((h2, b2) != (h, b) and h <= h2 and b2 <= b for h2, b2 in with_mufu)]
    results = []
    for h, b in inner:
        path = shortest_path(ins, target, h, b, min_mufu=1)
        if path is None:
            continue
        ops = collections.Counter(ins[k][2] for k in path)
        n_pairs = pairs or ops["MUFU.EX2"]
        results.append((ins[h][0], ins[b][0], len(path), ops, n_pairs))
    # Loops that hold an inner MUFU loop but are not the outermost: in fused_pool_masked_kernel
    # the walk between clean runs, whose path around its inner loop is the masked chunk.
    outer_head = min((h for h, _ in loops), default=None)
    middle = []
    for h, b in with_mufu:
        if (h, b) in inner or h == outer_head:
            continue
        avoid = {k for h2, b2 in with_mufu if (h2, b2) != (h, b) and h <= h2 and b2 <= b
                 for k in range(h2, b2 + 1)}
        path = shortest_path(ins, target, h, b, min_mufu=1, avoid=avoid)
        if path is not None:
            ops = collections.Counter(ins[k][2] for k in path)
            middle.append((ins[h][0], ins[b][0], len(path), ops, pairs or ops["MUFU.EX2"]))
    outer = None
    if loops:
        h = min(h for h, _ in loops)
        b = max(b for h2, b in loops if h2 == h)
        path = shortest_path(ins, target, h, b)
        if path is not None:
            outer = (ins[h][0], ins[b][0], len(path), collections.Counter(ins[k][2] for k in path))
    return results, middle, outer


def shortest_path(ins, target, h, b, min_mufu=0, avoid=frozenset()):
    """Shortest path (instruction count) over the forward edges of the body h .. b that ends by
    taking the back-edge at b and holds at least min_mufu MUFU.EX2, as instruction indices; None
    where there is none. Edges: fall-through unless an unconditional BRA/EXIT, plus the branch
    target when it stays in [h, b]. Nodes are (instruction, MUFU.EX2 seen, capped at min_mufu).
    Instructions in `avoid` are never entered."""
    import heapq
    def seen(k, i):
        return min(min_mufu, k + (ins[i][2] == "MUFU.EX2"))
    start = (h, seen(0, h))
    dist, prev, heap = {start: 1}, {}, [(1, start)]
    while heap:
        d, node = heapq.heappop(heap)
        i, k = node
        if d != dist.get(node) or i == b:
            continue
        _, pred, op, _ = ins[i]
        succ = []
        if op == "BRA":
            t = target(i)
            if t is not None and h < t <= b and t > i:
                succ.append(t)
            if pred:
                succ.append(i + 1)
        elif op not in ("EXIT", "RET"):
            succ.append(i + 1)
        for s in succ:
            nxt = (s, seen(k, s))
            if s <= b and s not in avoid and d + 1 < dist.get(nxt, 1 << 30):
                dist[nxt], prev[nxt] = d + 1, node
                heapq.heappush(heap, (d + 1, nxt))
    end = (b, min_mufu)
    if end not in dist:
        return None
    path, node = [b], end
    while node != start:
        node = prev[node]
        path.append(node[0])
    return path


def hot_loop_main(args):
    obj, fn = args[0], args[1]
    pairs = int(args[2]) if len(args) > 2 else None
    name, ins = instructions(obj, fn)
    print(f"{name}: {len(ins)} instructions")
    inner, middle, outer = hot_loops(ins, pairs)
    for head, back, count, ops, n_pairs in inner:
        print(f"loop {head:#06x}..{back:#06x}: shortest path {count} instructions, "
              f"{ops['MUFU.EX2']} MUFU.EX2, {count / n_pairs:.2f} per pair ({n_pairs} pairs)")
        print("  " + ", ".join(f"{op} {c}" for op, c in ops.most_common()))
    for head, back, count, ops, n_pairs in middle:
        print(f"enclosing loop {head:#06x}..{back:#06x}: shortest path around its inner loops "
              f"{count} instructions, {ops['MUFU.EX2']} MUFU.EX2, {count / n_pairs:.2f} per pair "
              f"({n_pairs} pairs)")
        print("  " + ", ".join(f"{op} {c}" for op, c in ops.most_common()))
    if outer is not None:
        head, back, count, ops = outer
        print(f"outermost loop {head:#06x}..{back:#06x}: shortest path {count} instructions "
              f"(no inner loop entered)")
        print("  " + ", ".join(f"{op} {c}" for op, c in ops.most_common()))
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--hot-loop":
        if len(sys.argv) < 4:
            sys.exit(__doc__)
        return hot_loop_main(sys.argv[2:])
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    renames = [tuple(r.split("=", 1)) for r in sys.argv[3:]]
    a, b = functions(sys.argv[1], renames), functions(sys.argv[2], [])
    same = differ = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"only in {'new' if name in b else 'old'}: {name}")
            differ += 1
        elif a[name] == b[name]:
            same += 1
        else:
            differ += 1
            ops = lambda f: collections.Counter(i.split()[0] for i in f)  # noqa: E731
            print(f"differs: {name}: {len(a[name])} -> {len(b[name])} instructions"
                  f"{'' if ops(a[name]) != ops(b[name]) else ' (same opcode counts)'}")
    print(f"{same} functions identical, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
