"""Shared fixtures: seeded random data (the seed is printed), the C++ results program."""

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("ATTNPOOL_SEED", np.random.SeedSequence().entropy % 2**32))
    print(f"{request.node.name}: seed {seed} (rerun with ATTNPOOL_SEED={seed})")
    return np.random.default_rng(seed)


class CppResult:
    """What attnpool-cpp-results wrote for one call."""

    def __init__(self, d):
        self.dir = Path(d)
        err = self.dir / "error.txt"
        self.error = err.read_text() if err.exists() else None
        self.values = {}
        res = self.dir / "results.txt"
        if res.exists():
            for line in res.read_text().split("\n"):
                if line:
                    k, v = line.split(" ", 1)
                    self.values[k] = float(v)

    def f32(self, name, shape):
        return np.fromfile(self.dir / f"{name}.bin", dtype=np.float32).reshape(shape)

    def f64(self, name):
        return np.fromfile(self.dir / f"{name}.bin", dtype=np.float64)


@pytest.fixture(scope="session")
def cpp():
    """cpp(call, **inputs) runs one C++ API call in attnpool-cpp-results and returns its
    CppResult. float32 2-D arrays, float64 and uint64 1-D arrays, strings and numbers."""
    exe = os.environ.get("ATTNPOOL_CPP_RESULTS")
    if not exe or not Path(exe).exists():
        msg = ("the C++ results program is not built: set ATTNPOOL_CPP_RESULTS to "
               "<build>/tests/python/attnpool-cpp-results (scripts/test.sh does)")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    tmp = tempfile.TemporaryDirectory(prefix="attnpool-cpp-")

    def call(name, **kw):
        d = Path(tempfile.mkdtemp(dir=tmp.name))
        lines = [f"call {name}"]
        for k, v in kw.items():
            if isinstance(v, np.ndarray) and v.dtype == np.float32:
                assert v.ndim == 2
                np.ascontiguousarray(v).tofile(d / f"{k}.bin")
                lines.append(f"f32 {k} {v.shape[0]} {v.shape[1]}")
            elif isinstance(v, np.ndarray) and v.dtype == np.float64:
                np.ascontiguousarray(v).tofile(d / f"{k}.bin")
                lines.append(f"f64 {k} {v.size}")
            elif isinstance(v, np.ndarray) and v.dtype == np.uint64:
                np.ascontiguousarray(v).tofile(d / f"{k}.bin")
                lines.append(f"u64 {k} {v.size}")
            elif isinstance(v, str):
                lines.append(f"str {k} {v}")
            else:
                lines.append(f"num {k} {float(v)!r}")
        (d / "args.txt").write_text("\n".join(lines) + "\n")
        r = subprocess.run([exe, str(d)], capture_output=True, text=True)
        assert r.returncode in (0, 3), r.stderr
        return CppResult(d)

    yield call
    tmp.cleanup()
