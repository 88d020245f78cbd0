#!/usr/bin/env python3
"""Compares the SASS of two CUDA object files function by function.

    scripts/sass-compare.py OLD.o NEW.o [OLD_SUBSTRING=NEW_SUBSTRING ...]

Instructions are compared one by one with the constant-bank offsets of kernel parameters
(c[0x0][...]) masked, so that a change of parameter layout alone reads as identical; functions
are matched by mangled name, anonymous-namespace hashes masked, after the given renames (for
example 21fused_pool_any_kernel=25fused_pool_generic_kernel). Needs cuobjdump: on PATH, under
CUDA_HOME, or from `pip install nvidia-cuda-cuobjdump`. No GPU needed. Exits 1 when a function
differs or exists on one side only.
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


def main():
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
