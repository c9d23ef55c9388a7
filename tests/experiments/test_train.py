"""Training on tiny generated data, in this process: determinism and the tower equivalence."""

from pathlib import Path

import pytest

from grader import assignment
from grader.experiments.train import Job, run_job

TINY = Path(__file__).parent.parent / "fixtures" / "tiny_assignment.toml"


@pytest.fixture(scope="module")
def battery():
    return assignment.load(TINY)


def _train(battery, exp_id, seed=1):
    return run_job(Job(exp_id, battery.experiment(exp_id).training_spec(), seed=seed))


@pytest.mark.slow
def test_same_seed_same_history_and_seed_matters(tiny_data, battery):
    a = _train(battery, "acts.relu")
    b = _train(battery, "acts.relu")
    c = _train(battery, "acts.relu", seed=2)
    assert a.epochs == 3 and len(a.loss) == len(a.accuracy) == len(a.val_loss) == 3
    assert (a.accuracy, a.loss, a.val_accuracy, a.val_loss) == (b.accuracy, b.loss, b.val_accuracy, b.val_loss)
    assert a.val_loss != c.val_loss
    assert a.best_epoch == 3 and a.test_accuracy is None


@pytest.mark.slow
def test_final_restores_best_and_evaluates_test(tiny_data, battery):
    h = _train(battery, "final")
    assert h.best_epoch >= 1 and h.best_epoch <= h.epochs and h.epochs <= 4
    assert h.final_val_accuracy == max(h.val_accuracy)
    assert h.test_accuracy is not None and 0.0 <= h.test_accuracy <= 1.0
    assert len(h.learning_rate) == h.epochs


@pytest.mark.slow
def test_label_smoothing_trains_on_one_hot_targets_with_the_same_accuracy_metric(tiny_data, battery):
    spec = dict(battery.experiment("acts.relu").training_spec(), label_smoothing=0.1)
    smooth = run_job(Job("acts.relu", spec, seed=1))
    plain = _train(battery, "acts.relu")
    assert len(smooth.val_accuracy) == 3
    assert all(0.0 <= v and v <= 1.0 for v in smooth.val_accuracy)
    assert smooth.loss != plain.loss  # a different loss was minimised
    assert smooth.loss[0] > 0.1  # smoothed targets keep the loss away from 0
