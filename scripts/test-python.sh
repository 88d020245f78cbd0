#!/usr/bin/env bash
# The Python package's tests (called by scripts/test.sh): a virtual environment in
# build/python-venv, `pip install .` into it, then pytest over tests/python.
# The extension is built CPU-only unless ATTNPOOL_PYTHON_CUDA=ON|AUTO: the CUDA backends would
# double CI's build time and CI has no GPU to run them. torch is optional (its tests skip with a
# message where it is absent); ATTNPOOL_PYTHON_TORCH=1 tries to install the CPU wheel.
# ATTNPOOL_CPP_RESULTS names the C++ results program (tests/python/cpp_results.cpp) that the
# bitwise tests compare against; scripts/test.sh passes the one of its build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ATTNPOOL_PYTHON_VENV:-build/python-venv}
py=${PYTHON:-python3}
[[ -x $venv/bin/python ]] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q scikit-build-core nanobind numpy pytest scikit-learn
if [[ ${ATTNPOOL_PYTHON_TORCH:-0} == 1 ]]; then
  "${pip[@]}" install -q torch --index-url https://download.pytorch.org/whl/cpu ||
    echo "attnpool: torch could not be installed; its tests will skip"
fi
command -v ccache >/dev/null && export CMAKE_CXX_COMPILER_LAUNCHER=ccache
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
ATTNPOOL_CUDA=${ATTNPOOL_PYTHON_CUDA:-OFF} "${pip[@]}" install -q --no-build-isolation .
# From outside the source tree, so that the installed package is the one imported.
cd tests/python
"../../$venv/bin/python" -m pytest -q -ra .
