"""examples/python/notebook.py runs end to end on the CPU, and its fits improve in the order the
book shows: Nadaraya-Watson with h = 1 beats average pooling, the cross-validated h beats h = 1,
and the trained bandwidth is the cross-validated one (both minimise the leave-one-out error)."""

import runpy
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "python" / "notebook.py"


@pytest.mark.parametrize("seed", [0, 1])
def test_notebook_runs(capsys, seed):
    main = runpy.run_path(str(NOTEBOOK))["main"]
    mse = main(["--seed", str(seed), "--backend", "cpu"])
    out = capsys.readouterr().out
    assert "epoch 5, loss" in out and "cross-validated h" in out
    assert mse["nw"] < mse["average"]
    assert mse["cv"] < mse["nw"] and mse["parametric"] < mse["average"]
    assert abs(mse["h_trained"] / mse["h_cv"] - 1) < 0.02
