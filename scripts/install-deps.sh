#!/usr/bin/env bash
# Installs the Debian packages attnpool builds and tests with, where they are missing.
# OpenMPI is for attnpool::mpi and its multi-rank tests (tests/mpi); clang and its runtime
# libraries (libFuzzer, the sanitizers) for the fuzz targets (scripts/fuzz.sh).
# The CUDA Toolkit is not installed here: where nvcc exists the CUDA backends are built too.
set -euo pipefail
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

pkgs=(cmake make g++ pkg-config libgtest-dev libgmock-dev libbenchmark-dev libstb-dev
      fonts-dejavu-core python3 python3-dev python3-venv
      libopenmpi-dev openmpi-bin clang)
missing=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "attnpool: installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libFuzzer comes with the distribution's clang, in a package named by its version (bookworm:
# clang 14, libclang-rt-14-dev), so it is looked up once clang is there.
clang_major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
rt="libclang-rt-${clang_major}-dev"
if [[ -n $clang_major ]] && ! installed "$rt" && apt-cache show "$rt" >/dev/null 2>&1; then
  echo "attnpool: installing $rt"
  $sudo apt-get install -y -qq --no-install-recommends "$rt"
fi
