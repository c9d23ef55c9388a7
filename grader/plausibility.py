"""Compare student curves with what the reference battery says is possible.

A run is compared only with a reference experiment that trains the same thing: the same hidden
activations, initializers, optimizer (name, learning rate, no extra parameters) and the same use
of batch normalization and dropout. Epochs are put on one scale by optimizer steps (a student with
batch 32 takes twice the reference's steps per epoch with batch 64). A run is flagged when its
validation accuracy at some epoch is above everything the reference seeds reached in ``SPEEDUP``
times as many steps (and one epoch more) by more than ``MARGIN``; when that already happens at its
first epoch and an earlier run exists, it most likely continued training a model that was not
rebuilt (model reuse seen in the outputs).
Missing reference records mean no comparison, never a flag. Pure: values in, values out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .assignment import Assignment, ExperimentSpec
from .attribution import KERAS_DEFAULT_INITIALIZER
from .codefacts import CodeFacts
from .runs import RunView

# A run may learn faster than the reference for reasons the comparison does not model (the output
# layer's initializer, wider layers, a stratified split, luck): it gets SPEEDUP times the reference's
# steps and MARGIN above the best seed before it is called implausible. Calibrated so that every
# fixture trained for real passes, while zeros reaching 0.5 or SGD at 0.90 after one epoch do not.
SPEEDUP = 3.0
MARGIN = 0.05
KERAS_DEFAULT_BATCH = 32
SPLIT_ROWS = {"random80": 48_000, "last20": 48_000, "first10k": 50_000}
# Default learning rates: Keras 3 (what the reference battery runs) and Keras 2 (older notebooks).
DEFAULT_LR = {"sgd": 0.01, "rmsprop": 0.001, "adagrad": 0.001, "adam": 0.001, "adamw": 0.001,
              "nadam": 0.001, "adamax": 0.001, "adadelta": 0.001}
DEFAULT_LR_KERAS2 = {**DEFAULT_LR, "adagrad": 0.01, "adadelta": 1.0, "nadam": 0.002, "adamax": 0.002}


@dataclass(frozen=True)
class Finding:
    """``kind`` is "implausible" (a curve above the reference band) or "reuse" (already at its
    first epoch, after an earlier run)."""

    kind: str
    run: int  # RunView.index
    cell: int
    label: str | None
    epoch: int
    value: float
    limit: float
    experiment: str


def check_runs(runs: Sequence[RunView], facts: CodeFacts, assignment: Assignment,
               references: Mapping[str, Any]) -> tuple[Finding, ...]:
    """Findings for every run whose curve a fresh model of its kind cannot have."""
    if not references:
        return ()
    specs = [s for s in assignment.experiments if s.kind == "train" and s.id in references]
    out: list[Finding] = []
    for run in runs:
        if run.code is None:
            continue
        spec = next((s for s in specs if _same_training(run, s, facts)), None)
        if spec is None:
            continue
        finding = _compare(run, spec, references[spec.id], any(r.index < run.index for r in runs))
        if finding is not None:
            out.append(finding)
    return tuple(out)


def _compare(run: RunView, spec: ExperimentSpec, record: Any, has_earlier: bool) -> Finding | None:
    metric = "val_accuracy" if run.curves.get("val_accuracy") else "accuracy"
    series = run.curves.get(metric, ())
    if not series:
        return None
    high = _band_max(record, metric)
    if not high:
        return None
    ratio = _steps(run) / (SPLIT_ROWS.get(spec.split, 48_000) / spec.batch_size)
    numbers = run.log.epoch_numbers if run.log is not None and run.log.epoch_numbers else range(1, len(series) + 1)
    for epoch, value in zip(numbers, series):
        if value is None or value != value:
            continue
        reach = max(1, math.ceil(epoch * ratio * SPEEDUP - 1e-9))
        limit = max(high[:reach + 1]) + MARGIN  # one more epoch of grace where the curve is steep
        if value > limit:
            kind = "reuse" if epoch == 1 and has_earlier else "implausible"
            return Finding(kind, run.index, run.cell, run.label, epoch, value, round(limit, 4), spec.id)
    return None


_BANDS: dict[tuple[int, str], tuple[Any, list[float]]] = {}


def _band_max(record: Any, metric: str) -> list[float]:
    """The per-epoch maximum over seeds, computed once per record (a batch reuses the records)."""
    key = (id(record), metric)
    hit = _BANDS.get(key)
    if hit is None or hit[0] is not record:
        if len(_BANDS) > 256:
            _BANDS.clear()
        hit = _BANDS[key] = (record, list(record.band(metric)["max"]))  # holding it keeps its id unique
    return hit[1]


def _steps(run: RunView) -> float:
    """Optimizer steps per epoch of a student run (an upper bound when the log does not say)."""
    batch = run.code.batch_size if run.code and run.code.batch_size else KERAS_DEFAULT_BATCH
    log = run.log
    if log is not None and log.train_samples:
        return math.ceil(log.train_samples / batch)
    if log is not None and log.progress_total and log.train_samples is None and log.progress_total < 20_000:
        return float(log.progress_total)
    return 60_000 / batch


def _same_training(run: RunView, spec: ExperimentSpec, facts: CodeFacts) -> bool:
    code = run.code
    assert code is not None
    dense = [layer for layer in spec.layers if layer["type"] == "dense"]
    if set(code.activations) != {layer["activation"]["name"] for layer in dense}:
        return False
    inits = set(code.initializers) or ({KERAS_DEFAULT_INITIALIZER} if code.default_initializer else set())
    if inits != {layer["initializer"]["name"] for layer in dense}:
        return False
    if code.optimizer != spec.optimizer["name"]:
        return False
    params = dict(code.optimizer_params)
    if set(params) - {"learning_rate"}:
        return False
    keras2 = run.log is not None and run.log.train_samples is not None
    defaults = DEFAULT_LR_KERAS2 if keras2 else DEFAULT_LR
    lr = params.get("learning_rate", defaults.get(code.optimizer))
    spec_lr = spec.optimizer.get("learning_rate", DEFAULT_LR.get(spec.optimizer["name"]))
    if not isinstance(lr, (int, float)) or spec_lr is None or abs(lr - spec_lr) > 1e-12:
        return False
    model = next((m for m in facts.models if m.id == code.model), None)
    if model is None or not model.layers_known:
        return False
    # Depth and width matter: a shallower sigmoid net legitimately learns faster than the
    # reference's 3 hidden layers, so only the same hidden Dense stack is compared.
    hidden = [layer.units for layer in model.layers if layer.kind == "dense"][:-1]
    if hidden != [layer["units"] for layer in dense]:
        return False
    kinds = {layer.kind for layer in model.layers}
    spec_kinds = {layer["type"] for layer in spec.layers}
    return (("batchnorm" in kinds) == ("batchnorm" in spec_kinds)
            and (bool(kinds & {"dropout", "alphadropout", "gaussiandropout"}) == ("dropout" in spec_kinds))
            and not any(layer.regularizer for layer in model.layers))
