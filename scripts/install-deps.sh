#!/usr/bin/env bash
# Installs the Debian packages attnpool builds and tests with, where they are missing.
# OpenMPI is for attnpool::mpi and its multi-rank tests (tests/mpi).
# The CUDA Toolkit is not installed here: where nvcc exists the CUDA backends are built too.
set -euo pipefail
pkgs=(cmake make g++ pkg-config libgtest-dev libgmock-dev libbenchmark-dev libstb-dev
      fonts-dejavu-core python3 python3-dev python3-venv
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "attnpool: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
