"""The whole training command on the simulated device: one epoch of train_cifar.py with
--backend cupysim on a small synthetic set gives the NumPy run's first-epoch training loss (same
seed) to float32 rounding, and its run folder is complete."""
import math

import pytest

from tinyba2m import backend
from tinyba2m.training.cli import main
from tinyba2m.training.metrics import read_rows

from test_train_cli import tiny_args


@pytest.mark.parametrize("attention", ["ba2m", "se"])
def test_one_epoch_on_cupysim_matches_numpy(tmp_path, small_data, attention):
    losses = {}
    previous = backend.name
    try:
        for name in ("numpy", "cupysim"):
            out = tmp_path / name
            assert main(tiny_args(out, "--backend", name, "--attention", attention, "--seed", "3", epochs=1),
                        data=small_data) == 0
            rows = read_rows(out / "metrics.csv")
            losses[name] = (rows[0]["train_loss"], rows[0]["test_loss_batch"])
            assert (out / "checkpoint.npz").exists() and (out / "best.npz").exists()
    finally:
        backend.use_backend(previous)
    (train_np, test_np), (train_sim, test_sim) = losses["numpy"], losses["cupysim"]
    assert math.isfinite(train_np) and math.isclose(train_sim, train_np, rel_tol=4e-7), losses
    assert math.isclose(test_sim, test_np, rel_tol=4e-7), losses
