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
