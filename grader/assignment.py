"""Assignments as data: load and validate ``assignments/<name>.toml`` into frozen dataclasses.

An assignment holds three things: the exercises a notebook must answer (with the headings that
mark them), the battery of reference experiments (each a fully expanded, hashable training spec),
and the rubric (checks, points and thresholds). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .errors import AssignmentError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPLITS = ("random80", "last20", "first10k")

# Canonical names and the parameters each may take. Keys are the canonical snake_case names; the
# aliases map what people write (Keras class names, short strings) onto them.
ACTIVATIONS: dict[str, tuple[str, ...]] = {
    "sigmoid": (), "relu": (), "selu": (), "elu": ("alpha",), "tanh": (), "softmax": (),
    "linear": (), "swish": (), "gelu": (), "softplus": (), "leaky_relu": ("negative_slope",),
}
INITIALIZERS: dict[str, tuple[str, ...]] = {
    "zeros": (), "ones": (), "glorot_uniform": (), "glorot_normal": (), "he_normal": (),
    "he_uniform": (), "lecun_normal": (), "lecun_uniform": (),
    "random_normal": ("mean", "stddev"), "random_uniform": ("minval", "maxval"),
    "truncated_normal": ("mean", "stddev"),
}
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum"),
    "adagrad": ("learning_rate",),
    "adam": ("learning_rate", "beta_1", "beta_2"),
    "adamw": ("learning_rate", "weight_decay"),
    "nadam": ("learning_rate",),
    "adamax": ("learning_rate",),
    "adadelta": ("learning_rate",),
}
CALLBACKS: dict[str, tuple[str, ...]] = {
    "early_stopping": ("monitor", "patience", "mode", "min_delta", "restore_best_weights"),
    "reduce_lr_on_plateau": ("monitor", "factor", "patience", "min_lr", "mode", "min_delta"),
}
LAYERS: dict[str, tuple[str, ...]] = {
    "dense": ("units", "activation", "initializer", "l1", "l2"),
    "batchnorm": (),
    "dropout": ("rate",),
}
ALIASES = {
    "leakyrelu": "leaky_relu", "randomnormal": "random_normal", "randomuniform": "random_uniform",
    "truncatednormal": "truncated_normal", "glorotuniform": "glorot_uniform",
    "glorotnormal": "glorot_normal", "henormal": "he_normal", "heuniform": "he_uniform",
    "lecunnormal": "lecun_normal", "lecununiform": "lecun_uniform", "zero": "zeros",
    "earlystopping": "early_stopping", "reducelronplateau": "reduce_lr_on_plateau",
    "batchnormalization": "batchnorm", "batch_normalization": "batchnorm",
}


def canonical_name(name: str) -> str:
    """Map a Keras class name or string alias onto our snake_case name ("LeakyReLU" -> "leaky_relu")."""
    key = name.strip()
    low = key.lower()
    if low in ALIASES:
        return ALIASES[low]
    squashed = low.replace("_", "")
    return ALIASES.get(squashed, low)


@dataclass(frozen=True)
class Exercise:
    id: str
    title: Mapping[str, str]
    headings: tuple[str, ...]
    facet: str | None = None
    required: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": dict(self.title), "headings": list(self.headings),
                "facet": self.facet, "required": list(self.required)}


@dataclass(frozen=True)
class ExperimentSpec:
    """One reference experiment, fully expanded (defaults applied, names canonical)."""

    id: str
    exercise: str
    variant: str
    kind: str  # "train" or "test" (a test evaluation of the experiment named in `of`)
    of: str | None
    split: str
    layers: tuple[Mapping[str, Any], ...]
    optimizer: Mapping[str, Any]
    batch_size: int
    epochs: int
    callbacks: tuple[Mapping[str, Any], ...]
    evaluate_test: bool
    seeds: tuple[int, ...]
    label_smoothing: float = 0.0  # > 0: categorical cross-entropy on smoothed one-hot labels

    def training_spec(self) -> dict[str, Any]:
        """What determines the training (not the names): the input of the spec hash. Keys that
        are at their default are left out, so adding an option changes no existing hash."""
        out = {
            "split": self.split,
            "layers": [dict(layer) for layer in self.layers],
            "optimizer": dict(self.optimizer),
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "callbacks": [dict(cb) for cb in self.callbacks],
            "evaluate_test": self.evaluate_test,
            "seeds": list(self.seeds),
            "loss": "sparse_categorical_crossentropy",
            "input_shape": [28, 28],
            "classes": 10,
        }
        if self.label_smoothing:
            out["label_smoothing"] = self.label_smoothing
        return out

    def spec_hash(self) -> str:
        blob = json.dumps(self.training_spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "exercise": self.exercise, "variant": self.variant,
                "kind": self.kind, "of": self.of, **self.training_spec()}

    def with_epochs(self, epochs: int) -> "ExperimentSpec":
        """A smoke-run copy with a different epoch budget (never written to reference_runs/)."""
        return replace(self, epochs=epochs)


@dataclass(frozen=True)
class Check:
    id: str
    points: float
    required: bool
    exercise: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "points": self.points, "required": self.required,
                "exercise": self.exercise}


@dataclass(frozen=True)
class Rubric:
    validation_fraction: float | str
    required_epochs: int
    final_val_full: float
    final_val_partial: float
    test_val_max_gap: float
    checks: tuple[Check, ...]

    @property
    def max_total(self) -> float:
        return sum(c.points for c in self.checks)


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    source: str
    seeds: tuple[int, ...]
    detect: tuple[str, ...]
    exercises: tuple[Exercise, ...]
    experiments: tuple[ExperimentSpec, ...]
    rubric: Rubric

    def experiment(self, exp_id: str) -> ExperimentSpec:
        for exp in self.experiments:
            if exp.id == exp_id:
                return exp
        known = ", ".join(e.id for e in self.experiments)
        raise AssignmentError(f"{self.source}: unknown experiment id {exp_id!r} (known: {known})")

    def select(self, pattern: str | None) -> tuple[ExperimentSpec, ...]:
        """Experiments whose id matches a glob-like pattern (`activations.*`, `final`); all if None.

        Selecting a test evaluation also selects the training it evaluates.
        """
        if not pattern:
            return self.experiments
        wanted: set[str] = set()
        for part in pattern.split(","):
            rx = re.compile("^" + re.escape(part.strip()).replace(r"\*", ".*") + "$")
            wanted |= {e.id for e in self.experiments if rx.match(e.id)}
        if not wanted:
            known = ", ".join(e.id for e in self.experiments)
            raise AssignmentError(f"{self.source}: no experiment matches {pattern!r} (known: {known})")
        for exp in self.experiments:
            if exp.id in wanted and exp.of:
                wanted.add(exp.of)
        return tuple(e for e in self.experiments if e.id in wanted)

    def exercise(self, ex_id: str) -> Exercise | None:
        return next((e for e in self.exercises if e.id == ex_id), None)


# ------------------------------------------------------------------------------------ loading

def available() -> list[str]:
    """Names of the assignments shipped with the package."""
    folder = resources.files("grader.assignments")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str | Path) -> Assignment:
    """Load an assignment by name (``trabajo2``) or from a TOML file path."""
    text, source = _read(name_or_path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AssignmentError(f"{source}: invalid TOML ({exc})") from None
    return parse(raw, source)


def _read(name_or_path: str | Path) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise AssignmentError(f"{path}: cannot read assignment ({exc.strerror})") from None
    name = str(name_or_path)
    names = available()
    if name not in names:
        raise AssignmentError(f"unknown assignment {name!r} (known: {', '.join(names)})")
    res = resources.files("grader.assignments") / f"{name}.toml"
    return res.read_text(encoding="utf-8"), f"assignments/{name}.toml"


class _Reader:
    """Typed access to one TOML table, with errors naming the file and the key path."""

    def __init__(self, table: Mapping[str, Any], where: str, source: str) -> None:
        if not isinstance(table, Mapping):
            raise AssignmentError(f"{source}: {where} must be a table")
        self.table, self.where, self.source = table, where, source

    def _fail(self, key: str, problem: str) -> AssignmentError:
        return AssignmentError(f"{self.source}: {self.where}.{key}: {problem}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise self._fail(key, "missing")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self._fail(key, f"wrong type (got {value!r})")
        if not isinstance(value, types):
            want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise self._fail(key, f"must be {want}, got {type(value).__name__} {value!r}")
        return value

    def positive_int(self, key: str, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if value <= 0:
            raise self._fail(key, f"must be a positive integer, got {value}")
        return value


def _named(value: Any, table: dict[str, tuple[str, ...]], what: str, where: str,
           source: str) -> dict[str, Any]:
    """Normalize `"relu"` or `{class = "LeakyReLU", negative_slope = 0.5}` to a canonical dict."""
    if isinstance(value, str):
        name, params = canonical_name(value), {}
    elif isinstance(value, Mapping):
        cls = value.get("class", value.get("name"))
        if not isinstance(cls, str):
            raise AssignmentError(f"{source}: {where}: {what} table needs a 'class' string")
        name = canonical_name(cls)
        params = {k: v for k, v in value.items() if k not in ("class", "name")}
    else:
        raise AssignmentError(f"{source}: {where}: {what} must be a string or a table, got {value!r}")
    if name not in table:
        raise AssignmentError(f"{source}: {where}: unknown {what} {value!r} "
                              f"(known: {', '.join(sorted(table))})")
    for key, val in params.items():
        if key not in table[name]:
            raise AssignmentError(f"{source}: {where}: {what} {name!r} takes no parameter {key!r}")
        if not isinstance(val, (int, float, str, bool)):
            raise AssignmentError(f"{source}: {where}: {what} parameter {key!r} must be a scalar")
    return {"name": name, **dict(sorted(params.items()))}


def _layers(spec: _Reader, source: str, where: str) -> tuple[dict[str, Any], ...]:
    activation = _named(spec.get("activation", (str, dict)), ACTIVATIONS, "activation", where, source)
    initializer = _named(spec.get("initializer", (str, dict)), INITIALIZERS, "initializer", where, source)
    explicit = spec.get("layers", list, None)
    if explicit is None:
        hidden = spec.get("hidden", list)
        if not hidden or not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in hidden):
            raise AssignmentError(f"{source}: {where}.hidden: must be a non-empty list of positive integers")
        return tuple({"type": "dense", "units": u, "activation": activation,
                      "initializer": initializer} for u in hidden)
    out = []
    for i, raw in enumerate(explicit):
        lw = f"{where}.layers[{i}]"
        layer = _Reader(raw, lw, source)
        kind = canonical_name(layer.get("type", str))
        if kind not in LAYERS:
            raise AssignmentError(f"{source}: {lw}.type: unknown layer {kind!r} (known: {', '.join(LAYERS)})")
        unknown = set(raw) - {"type", *LAYERS[kind]}
        if unknown:
            raise AssignmentError(f"{source}: {lw}: layer {kind!r} takes no {sorted(unknown)[0]!r}")
        if kind == "dense":
            entry = {"type": "dense", "units": layer.positive_int("units"),
                     "activation": _named(raw.get("activation", "linear"), ACTIVATIONS, "activation", lw, source),
                     "initializer": _named(raw.get("initializer", "glorot_uniform"), INITIALIZERS,
                                           "initializer", lw, source)}
            for reg in ("l1", "l2"):
                if reg in raw:
                    entry[reg] = float(layer.get(reg, (int, float)))
        elif kind == "dropout":
            rate = float(layer.get("rate", (int, float)))
            if not 0.0 <= rate < 1.0:
                raise AssignmentError(f"{source}: {lw}.rate: must be in [0, 1), got {rate}")
            entry = {"type": "dropout", "rate": rate}
        else:
            entry = {"type": "batchnorm"}
        out.append(entry)
    if not any(layer["type"] == "dense" for layer in out):
        raise AssignmentError(f"{source}: {where}.layers: needs at least one dense layer")
    return tuple(out)


def _experiment(raw: Mapping[str, Any], defaults: Mapping[str, Any], index: int, seeds: tuple[int, ...],
                source: str) -> ExperimentSpec:
    merged = {**defaults, **raw}
    if "layers" in raw:
        merged.pop("hidden", None)
    exp_id = raw.get("id")
    where = f"experiments[{index}]" + (f" ({exp_id})" if isinstance(exp_id, str) else "")
    spec = _Reader(merged, where, source)
    exp_id = spec.get("id", str)
    if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", exp_id):
        raise AssignmentError(f"{source}: {where}.id: must be dotted lowercase words, got {exp_id!r}")
    kind = spec.get("kind", str, "train")
    if kind not in ("train", "test"):
        raise AssignmentError(f"{source}: {where}.kind: must be 'train' or 'test', got {kind!r}")
    split = spec.get("split", str)
    if split not in SPLITS:
        raise AssignmentError(f"{source}: {where}.split: unknown split {split!r} (known: {', '.join(SPLITS)})")
    callbacks = tuple(_named(cb, CALLBACKS, "callback", f"{where}.callbacks[{i}]", source)
                      for i, cb in enumerate(spec.get("callbacks", list, [])))
    return ExperimentSpec(
        id=exp_id,
        exercise=spec.get("exercise", str),
        variant=spec.get("variant", str),
        kind=kind,
        of=spec.get("of", str, None) if kind == "test" else None,
        split=split,
        layers=_layers(spec, source, where),
        optimizer=_named(spec.get("optimizer", (str, dict)), OPTIMIZERS, "optimizer", where, source),
        batch_size=spec.positive_int("batch_size"),
        epochs=spec.positive_int("epochs"),
        callbacks=callbacks,
        evaluate_test=spec.get("evaluate_test", bool, False),
        seeds=seeds,
        label_smoothing=_fraction(spec, "label_smoothing"),
    )


def _fraction(spec: "_Reader", key: str) -> float:
    value = float(spec.get(key, (int, float), 0.0))
    if not 0.0 <= value < 1.0:
        raise spec._fail(key, f"must be in [0, 1), got {value!r}")
    return value


def parse(raw: Mapping[str, Any], source: str) -> Assignment:
    """Validate a parsed TOML document; every problem names the file and the key."""
    head = _Reader(raw.get("assignment", None) or {}, "assignment", source)
    if "assignment" not in raw:
        raise AssignmentError(f"{source}: assignment: missing table [assignment]")
    seeds = head.get("seeds", list)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise AssignmentError(f"{source}: assignment.seeds: must be a non-empty list of integers")
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise AssignmentError(f"{source}: defaults: must be a table")

    exercises = []
    for i, ex in enumerate(raw.get("exercises", [])):
        r = _Reader(ex, f"exercises[{i}]", source)
        title = r.get("title", (str, dict))
        exercises.append(Exercise(
            id=r.get("id", str),
            title={"es": title, "en": title} if isinstance(title, str) else dict(title),
            headings=tuple(h.lower() for h in r.get("headings", list, [])),
            facet=r.get("facet", str, None),
            required=tuple(r.get("required", list, [])),
        ))
    exercise_ids = {e.id for e in exercises}

    experiments = [_experiment(exp, defaults, i, tuple(seeds), source)
                   for i, exp in enumerate(raw.get("experiments", []))]
    if not experiments:
        raise AssignmentError(f"{source}: experiments: the battery is empty")
    ids = [e.id for e in experiments]
    for i, exp in enumerate(experiments):
        if ids.count(exp.id) > 1:
            raise AssignmentError(f"{source}: experiments[{i}].id: duplicate id {exp.id!r}")
        if exp.exercise not in exercise_ids:
            raise AssignmentError(f"{source}: experiments[{i}] ({exp.id}).exercise: unknown exercise {exp.exercise!r}")
        if exp.kind == "test":
            target = next((e for e in experiments if e.id == exp.of), None)
            if target is None or target.kind != "train":
                raise AssignmentError(f"{source}: experiments[{i}] ({exp.id}).of: must name a training experiment, got {exp.of!r}")
            if not target.evaluate_test:
                raise AssignmentError(f"{source}: experiments[{i}] ({exp.id}).of: {exp.of!r} does not set evaluate_test = true")

    # A test evaluation trains nothing of its own: it carries the spec of the model it evaluates.
    experiments = [replace(next(t for t in experiments if t.id == e.of), id=e.id, exercise=e.exercise,
                           variant=e.variant, kind="test", of=e.of) if e.kind == "test" else e
                   for e in experiments]

    rub = _Reader(raw.get("rubric", None) or {}, "rubric", source)
    if "rubric" not in raw:
        raise AssignmentError(f"{source}: rubric: missing table [rubric]")
    checks = []
    for i, ch in enumerate(rub.get("checks", list)):
        r = _Reader(ch, f"rubric.checks[{i}]", source)
        exercise = r.get("exercise", str, None)
        if exercise is not None and exercise not in exercise_ids:
            raise AssignmentError(f"{source}: rubric.checks[{i}].exercise: unknown exercise {exercise!r}")
        points = r.get("points", (int, float))
        checks.append(Check(id=r.get("id", str), points=float(points),
                            required=r.get("required", bool, True), exercise=exercise))
    rubric = Rubric(
        validation_fraction=rub.get("validation_fraction", (float, str)),
        required_epochs=rub.positive_int("required_epochs"),
        final_val_full=float(rub.get("final_val_full", float)),
        final_val_partial=float(rub.get("final_val_partial", float)),
        test_val_max_gap=float(rub.get("test_val_max_gap", float)),
        checks=tuple(checks),
    )
    return Assignment(
        id=head.get("id", str),
        title=head.get("title", str),
        source=source,
        seeds=tuple(seeds),
        detect=tuple(d.lower() for d in head.get("detect", list, [])),
        exercises=tuple(exercises),
        experiments=tuple(experiments),
        rubric=rubric,
    )
