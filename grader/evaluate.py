"""``grader evaluate``: score a submitted ``.keras`` model safely, on the validation split and the test set.

The parent (this module, no TensorFlow) validates the file into a :class:`ModelSpec`
(``modelfile``), copies the weights member and the images it needs into a throw-away folder, and
runs ``grader.evaluate_worker`` there under ``grader.sandbox`` with resource limits. The worker
rebuilds the model with our code and reads the weights as arrays; nothing the student wrote is
ever deserialized by Keras. The validation split is the one of the assignment's final experiment
(``random80`` for trabajo2, ``first10k`` for challenge_s3); the test set is the real 10,000 images.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import assignment as assignment_mod
from . import data as data_mod
from . import modelfile, sandbox
from .errors import GraderError
from .evaluate_worker import REFUSED as WORKER_REFUSED  # the worker imports Keras only when it runs
from .modelspec import ModelSpec

# TensorFlow reserves several GB of address space at import (see sandbox.Limits); scoring an MLP
# on 22,000 images takes seconds, so CPU and wall time are capped far lower than for a notebook.
# max_processes is high because, when the cage runs as uid nobody, RLIMIT_NPROC counts every
# task of that uid on the machine: at 256, other cages running at the same time (a notebook's
# TensorFlow threads) made our fork or thread creation fail (seen: EAGAIN, then SIGABRT in TF).
EVAL_LIMITS = sandbox.Limits(address_space_mb=8192, cpu_seconds=300, max_processes=1024, file_size_mb=64,
                             wall_seconds=300)


class EvaluationError(GraderError):
    """The sandboxed evaluation did not finish (crash, timeout, resource limit)."""

    exit_code = 1


@dataclass(frozen=True)
class Thresholds:
    """The assignment's final-model thresholds and where this model stands against them."""

    final_val_full: float
    final_val_partial: float
    test_val_max_gap: float
    val_level: str  # "full" | "partial" | "below"
    gap: float
    gap_ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {"final_val_full": self.final_val_full, "final_val_partial": self.final_val_partial,
                "test_val_max_gap": self.test_val_max_gap, "val_level": self.val_level,
                "gap": self.gap, "gap_ok": self.gap_ok}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Thresholds":
        return cls(float(raw["final_val_full"]), float(raw["final_val_partial"]), float(raw["test_val_max_gap"]),
                   str(raw["val_level"]), float(raw["gap"]), bool(raw["gap_ok"]))

    @classmethod
    def judge(cls, rubric: assignment_mod.Rubric, val: float, test: float) -> "Thresholds":
        level = "full" if val >= rubric.final_val_full else "partial" if val >= rubric.final_val_partial else "below"
        gap = round(abs(val - test), 6)
        return cls(rubric.final_val_full, rubric.final_val_partial, rubric.test_val_max_gap, level, gap,
                   gap <= rubric.test_val_max_gap)


@dataclass(frozen=True)
class Evaluation:
    """What ``grader evaluate`` found: the model, how it was fed, its accuracies, where it ran."""

    model_file: str
    assignment: str
    experiment: str
    split: str
    spec: ModelSpec
    scaled: bool  # True: pixels / 255 before the model; False: raw 0-255 pixels
    scaling: str  # why: "default", "rescaling_layer" or "no_scale_option"
    val_accuracy: float
    val_correct: int
    val_count: int
    test_accuracy: float
    test_correct: int
    test_count: int
    thresholds: Thresholds
    seconds: float
    isolation: str

    def to_dict(self) -> dict[str, Any]:
        return {"model_file": self.model_file, "assignment": self.assignment, "experiment": self.experiment,
                "split": self.split, "model": self.spec.to_dict(), "scaled": self.scaled, "scaling": self.scaling,
                "val_accuracy": self.val_accuracy, "val_correct": self.val_correct, "val_count": self.val_count,
                "test_accuracy": self.test_accuracy, "test_correct": self.test_correct,
                "test_count": self.test_count, "thresholds": self.thresholds.to_dict(),
                "seconds": self.seconds, "isolation": self.isolation}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Evaluation":
        return cls(raw["model_file"], raw["assignment"], raw["experiment"], raw["split"],
                   ModelSpec.from_dict(raw["model"]), bool(raw["scaled"]), raw["scaling"],
                   float(raw["val_accuracy"]), int(raw["val_correct"]), int(raw["val_count"]),
                   float(raw["test_accuracy"]), int(raw["test_correct"]), int(raw["test_count"]),
                   Thresholds.from_dict(raw["thresholds"]), float(raw["seconds"]), raw["isolation"])


def final_experiment(chosen: assignment_mod.Assignment) -> assignment_mod.ExperimentSpec:
    """The experiment a handed-in final model corresponds to: ``final`` if the battery has it, else
    the last trained experiment that is evaluated on test (challenge_s3: ``s3.reduce_lr``)."""
    trained = [e for e in chosen.experiments if e.kind == "train"]
    named = [e for e in trained if e.id == "final"]
    tested = [e for e in trained if e.evaluate_test]
    return (named or tested or trained)[-1]


def scaling_of(spec: ModelSpec, scale: bool) -> tuple[bool, str]:
    """(divide by 255?, why). A leading Rescaling layer means the model wants raw pixels."""
    if not scale:
        return False, "no_scale_option"
    if spec.rescales_input:
        return False, "rescaling_layer"
    return True, "default"


def _write_job(work: Path, model_file: Path, spec: ModelSpec, scaled: bool, split: str,
               data_dir: str | None, archive_limits: modelfile.ArchiveLimits) -> None:
    """Everything the worker reads, in its folder: no path outside it is passed to the sandbox."""
    modelfile.copy_weights(model_file, work / "weights.h5", archive_limits)
    train = data_mod.load_train(data_dir)
    _, val_idx = data_mod.split_indices(split, train.labels)
    np.save(work / "val_x.npy", train.images[val_idx])
    np.save(work / "val_y.npy", train.labels[val_idx].astype(np.int64))
    test = data_mod.load_test(data_dir)
    np.save(work / "test_x.npy", test.images)
    np.save(work / "test_y.npy", test.labels.astype(np.int64))
    job = {"spec": spec.to_dict(), "scale": scaled, "threads": 1}
    (work / "job.json").write_text(json.dumps(job), encoding="utf-8")


def _run_worker(work: Path, model_file: Path, limits: sandbox.Limits) -> tuple[dict[str, Any], str]:
    env = sandbox.base_env({"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow",
                            "HDF5_PLUGIN_PATH": str(work / "no-hdf5-plugins")})
    done = sandbox.run_isolated([sys.executable, "-m", "grader.evaluate_worker", str(work)], workdir=work,
                                env=env, limits=limits)
    where = done.isolation.describe()
    if done.timed_out:
        raise EvaluationError(f"{model_file}: evaluation timed out after {limits.wall_seconds} s in the sandbox")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = {}
    if done.returncode == WORKER_REFUSED and result.get("error"):
        raise modelfile.ModelFileError(f"{model_file}: {result['error']}")
    if done.returncode != 0 or not result.get("ok"):
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        how = f"signal {done.killed_by}" if done.killed_by else f"exit {done.returncode}"
        raise EvaluationError(f"{model_file}: the sandboxed evaluation failed ({how}: {last.strip()[:200]})")
    return result, where


def evaluate(model_file: str | Path, *, assignment: str = "challenge_s3", data_dir: str | None = None,
             scale: bool = True, limits: sandbox.Limits = EVAL_LIMITS,
             archive_limits: modelfile.ArchiveLimits = modelfile.ArchiveLimits()) -> Evaluation:
    """Validate, then score ``model_file`` in the sandbox on the assignment's validation split and the test set."""
    start = time.monotonic()
    path = Path(model_file)
    spec = modelfile.load_spec(path, archive_limits)  # refusals happen here, before any data or process
    chosen = assignment_mod.load(assignment)
    final = final_experiment(chosen)
    scaled, why = scaling_of(spec, scale)
    with tempfile.TemporaryDirectory(prefix="grader-evaluate-") as tmp:
        work = Path(tmp) / "job"
        work.mkdir()
        _write_job(work, path, spec, scaled, final.split, data_dir, archive_limits)
        result, where = _run_worker(work, path, limits)
    if int(result.get("params_count", -1)) != spec.params_count:
        raise EvaluationError(f"{path}: the rebuilt model has {result.get('params_count')} parameters, "
                              f"the config {spec.params_count}")
    val, test = float(result["val_accuracy"]), float(result["test_accuracy"])
    return Evaluation(str(path), chosen.id, final.id, final.split, spec, scaled, why, val,
                      int(result["val_correct"]), int(result["val_count"]), test, int(result["test_correct"]),
                      int(result["test_count"]), Thresholds.judge(chosen.rubric, val, test),
                      round(time.monotonic() - start, 2), where)


# ------------------------------------------------------------------------------ text for the CLI

SCALING_WORDS = {
    "default": "pixels / 255 before the model (the usual preprocessing; --no-scale feeds raw 0-255)",
    "rescaling_layer": "raw 0-255 pixels (the model starts with a Rescaling layer)",
    "no_scale_option": "raw 0-255 pixels (--no-scale)",
}


def summary_lines(ev: Evaluation) -> list[str]:
    """The plain-text report ``grader evaluate`` prints (instructor-facing, English)."""
    spec = ev.spec
    lines = [f"{ev.model_file}: {spec.model_class} model {spec.name!r} (Keras {spec.keras_version}), "
             f"{spec.params_count:,} parameters"]
    for i, layer in enumerate(spec.layers):
        lines.append(f"  {i:>2} {layer.kind:18} {str(layer.output_shape):12} {layer.params_count:>10,}  "
                     f"{_detail(layer.params)}".rstrip())
    th = ev.thresholds
    lines += [
        f"input: {spec.input_shape}, {SCALING_WORDS[ev.scaling]}",
        f"validation accuracy: {ev.val_accuracy:.4f} ({ev.val_correct:,}/{ev.val_count:,}; {ev.assignment} "
        f"split {ev.split}, as in experiment {ev.experiment})",
        f"test accuracy:       {ev.test_accuracy:.4f} ({ev.test_correct:,}/{ev.test_count:,})",
        f"thresholds: validation {ev.val_accuracy:.4f} -> {th.val_level} (full >= {th.final_val_full:g}, "
        f"partial >= {th.final_val_partial:g}); test-validation gap {th.gap:.4f} "
        f"{'<=' if th.gap_ok else '>'} {th.test_val_max_gap:g}",
        ev.isolation,
        f"time: {ev.seconds:.1f} s",
    ]
    return lines


def _detail(params: Mapping[str, Any]) -> str:
    parts = []
    for key in ("units", "activation", "rate", "stddev", "scale", "offset", "target_shape", "momentum"):
        if key in params and not (key == "scale" and isinstance(params[key], bool)):
            value = params[key]
            if isinstance(value, dict):
                value = f"{value.get('layer')}(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in value.items() if k != "layer") + ")"
            elif isinstance(value, float):
                value = f"{value:.6g}"
            parts.append(f"{key}={value}")
    return ", ".join(parts)
