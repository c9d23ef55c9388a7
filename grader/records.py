"""RunRecord: the result of one reference experiment over all its seeds, and its JSON store.

A record keeps every seed's per-epoch history; the *band* (min and max per epoch over seeds) is
what checks and plots compare students against. Records are plain JSON, never pickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import __version__, files
from .errors import ReferenceRunError

METRICS = ("accuracy", "loss", "val_accuracy", "val_loss")
# Bump when the runner changes what it computes for the same spec (invalidates every cache entry).
RUNNER_VERSION = "1"


@dataclass(frozen=True)
class SeedHistory:
    """One training run: per-epoch metrics (index 0 is epoch 1)."""

    seed: int
    accuracy: tuple[float, ...]
    loss: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    val_loss: tuple[float, ...]
    best_epoch: int  # 1-based epoch whose weights the model ends with (restored best, else last)
    test_accuracy: float | None = None
    test_loss: float | None = None
    learning_rate: tuple[float, ...] = ()
    wall_time: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.val_accuracy)

    @property
    def final_val_accuracy(self) -> float:
        """Validation accuracy of the weights the run ends with (what a student would report)."""
        return self.val_accuracy[self.best_epoch - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "accuracy": list(self.accuracy),
            "loss": list(self.loss),
            "val_accuracy": list(self.val_accuracy),
            "val_loss": list(self.val_loss),
            "learning_rate": list(self.learning_rate),
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "wall_time": round(self.wall_time, 3),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SeedHistory":
        return cls(seed=d["seed"], accuracy=tuple(d["accuracy"]), loss=tuple(d["loss"]),
                   val_accuracy=tuple(d["val_accuracy"]), val_loss=tuple(d["val_loss"]),
                   best_epoch=d["best_epoch"], test_accuracy=d.get("test_accuracy"),
                   test_loss=d.get("test_loss"), learning_rate=tuple(d.get("learning_rate", ())),
                   wall_time=d.get("wall_time", 0.0))


def band(histories: Sequence[SeedHistory], metric: str = "val_accuracy") -> dict[str, list[float]]:
    """Per-epoch min/max/mean over seeds; runs that stopped early count while they last."""
    length = max((len(getattr(h, metric)) for h in histories), default=0)
    lo, hi, mean = [], [], []
    for epoch in range(length):
        values = [getattr(h, metric)[epoch] for h in histories if len(getattr(h, metric)) > epoch]
        lo.append(min(values))
        hi.append(max(values))
        mean.append(sum(values) / len(values))
    return {"min": lo, "max": hi, "mean": mean}


@dataclass(frozen=True)
class RunRecord:
    id: str
    assignment: str
    spec: Mapping[str, Any]
    spec_hash: str
    seeds: tuple[int, ...]
    histories: tuple[SeedHistory, ...]
    versions: Mapping[str, str]
    data_checksums: Mapping[str, str]
    epochs_override: int | None = None  # set for smoke runs: never written to reference_runs/
    grader_version: str = __version__
    runner: Mapping[str, Any] = field(default_factory=dict)  # how it was trained (towers, threads)

    @property
    def cache_key(self) -> str:
        return cache_key(self.spec_hash, self.data_checksums, self.versions, self.epochs_override)

    @property
    def wall_time(self) -> float:
        return sum(h.wall_time for h in self.histories)

    def band(self, metric: str = "val_accuracy") -> dict[str, list[float]]:
        return band(self.histories, metric)

    def summary(self) -> dict[str, Any]:
        """Numbers for tables: mean final val accuracy, its range, test accuracy, epochs run."""
        finals = [h.final_val_accuracy for h in self.histories]
        tests = [h.test_accuracy for h in self.histories if h.test_accuracy is not None]
        return {
            "id": self.id,
            "val_mean": sum(finals) / len(finals),
            "val_min": min(finals),
            "val_max": max(finals),
            "test_mean": sum(tests) / len(tests) if tests else None,
            "epochs": [h.epochs for h in self.histories],
            "wall_time": self.wall_time,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "assignment": self.assignment,
            "spec_hash": self.spec_hash,
            "cache_key": self.cache_key,
            "grader_version": self.grader_version,
            "epochs_override": self.epochs_override,
            "seeds": list(self.seeds),
            "versions": dict(self.versions),
            "data_checksums": dict(self.data_checksums),
            "runner": dict(self.runner),
            "spec": dict(self.spec),
            "band": {m: self.band(m) for m in METRICS},
            "histories": [h.to_dict() for h in self.histories],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunRecord":
        return cls(id=d["id"], assignment=d["assignment"], spec=d["spec"], spec_hash=d["spec_hash"],
                   seeds=tuple(d["seeds"]), histories=tuple(SeedHistory.from_dict(h) for h in d["histories"]),
                   versions=d["versions"], data_checksums=d["data_checksums"],
                   epochs_override=d.get("epochs_override"), grader_version=d.get("grader_version", ""),
                   runner=d.get("runner", {}))


def cache_key(spec_hash: str, data_checksums: Mapping[str, str], versions: Mapping[str, str],
              epochs_override: int | None) -> str:
    blob = json.dumps({"spec": spec_hash, "data": dict(data_checksums), "versions": dict(versions),
                       "epochs": epochs_override, "runner": RUNNER_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dumps(obj: Any) -> str:
    """Deterministic JSON (sorted keys where dicts are built from sorted data, fixed separators)."""
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=True) + "\n"


class Store:
    """A folder of RunRecord JSON files (``<id>.json``) plus ``index.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, exp_id: str) -> Path:
        return self.root / f"{exp_id}.json"

    def get(self, exp_id: str) -> RunRecord | None:
        path = self.path(exp_id)
        if not path.exists():
            return None
        try:
            return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ReferenceRunError(f"{path}: not a valid run record ({exc})") from None

    def cached(self, exp_id: str, key: str) -> RunRecord | None:
        """The stored record when its cache key matches (same spec, data, versions), else None."""
        try:
            record = self.get(exp_id)
        except ReferenceRunError:
            return None
        return record if record is not None and record.cache_key == key else None

    def put(self, record: RunRecord) -> Path:
        path = self.path(record.id)
        files.write_atomic(path, dumps(record.to_dict()))
        return path

    def records(self) -> list[RunRecord]:
        return [r for p in sorted(self.root.glob("*.json")) if p.name != "index.json"
                if (r := self.get(p.stem)) is not None]

    def write_index(self, records: Iterable[RunRecord]) -> Path:
        records = sorted(records, key=lambda r: (r.assignment, r.id))
        first = records[0] if records else None
        index = {
            "grader_version": __version__,
            "runner_version": RUNNER_VERSION,
            "versions": dict(first.versions) if first else {},
            "data_checksums": dict(first.data_checksums) if first else {},
            "experiments": {r.id: {"assignment": r.assignment, "spec_hash": r.spec_hash,
                                   "cache_key": r.cache_key, "file": f"{r.id}.json",
                                   "seeds": list(r.seeds)} for r in records},
        }
        path = self.root / "index.json"
        files.write_atomic(path, dumps(index))
        return path
