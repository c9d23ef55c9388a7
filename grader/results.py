"""What grading one notebook produces: check items with evidence, hints, flags, facts, the result.

`CheckResult.to_dict()` is the object `grader check --json` prints, keys in the order the issue
fixes; cells there are 0-based indices into the notebook's cells (as nbformat and the fixture
manifest count), while messages, hints and flags speak of the 1-based "cell N" people count.
Everything else the terminal, the report and the gradebook need stays in attributes (``extras()``
gives them as plain data), never as extra JSON keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .attribution import cell_index
from .reported import Claim, Final
from .runs import RunView

STATUSES = ("pass", "partial", "fail", "missing")


@dataclass(frozen=True)
class Evidence:
    """``cell`` is the cell number people count (1-based, as the messages say "cell 7"); the JSON
    carries the 0-based index into the notebook's cells, like nbformat and the fixture manifest."""

    cell: int | None
    excerpt: str

    def to_dict(self) -> dict[str, Any]:
        return {"cell": cell_index(self.cell), "excerpt": self.excerpt}


NO_EVIDENCE = Evidence(None, "")


@dataclass(frozen=True)
class CheckItem:
    id: str
    status: str
    points: float
    max_points: float
    message: str
    evidence: Evidence
    required: bool = True
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "points": self.points, "max_points": self.max_points,
                "message": self.message, "evidence": self.evidence.to_dict()}


@dataclass(frozen=True)
class Hint:
    check: str
    gain: float
    text: str


@dataclass(frozen=True)
class Flag:
    kind: str  # test_leakage | model_reuse | out_of_order | unverified_claim | implausible | no_outputs | unparsed
    cell: int | None
    excerpt: str
    message: str


@dataclass(frozen=True)
class Facts:
    exercises: tuple[str, ...]
    activations: tuple[str, ...]
    initializers: tuple[str, ...]
    optimizers: tuple[str, ...]
    validation_fraction: float | str | None
    test_leakage: bool | None
    model_reuse: bool | None
    outputs_saved: bool
    executed_in_order: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {"exercises": list(self.exercises), "activations": list(self.activations),
                "initializers": list(self.initializers), "optimizers": list(self.optimizers),
                "validation_fraction": self.validation_fraction, "test_leakage": self.test_leakage,
                "model_reuse": self.model_reuse, "outputs_saved": self.outputs_saved,
                "executed_in_order": self.executed_in_order}


@dataclass(frozen=True)
class CheckResult:
    """The graded notebook. ``to_dict`` is the `grader check --json` object (cells as 0-based
    indices); the other attributes (language, hints, flags, titles) are for the terminal and the
    report, where cells are the 1-based numbers people count."""

    grader_version: str
    notebook_sha256: str
    student: str
    assignment: str
    total: float
    max_total: float
    checks: tuple[CheckItem, ...]
    runs: tuple[RunView, ...]  # the trainings that ran (a fit in a cell never executed is left out)
    final: Final
    facts: Facts
    lang: str = "es"
    assignment_title: str = ""
    notebook_name: str = ""
    hints: tuple[Hint, ...] = ()
    flags: tuple[Flag, ...] = ()
    claims: tuple[Claim, ...] = ()

    def extras(self) -> dict[str, Any]:
        """What the JSON object leaves out, for reports and the gradebook: hints and flags (cells
        0-based like ``to_dict``), the language of the messages."""
        return {"lang": self.lang,
                "hints": [{"check": h.check, "gain": h.gain, "text": h.text} for h in self.hints],
                "flags": [{"kind": f.kind, "cell": cell_index(f.cell), "excerpt": f.excerpt, "message": f.message}
                          for f in self.flags]}

    @property
    def passed(self) -> bool:
        return all(c.status == "pass" for c in self.checks if c.required)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "grader_version": self.grader_version,
            "notebook_sha256": self.notebook_sha256,
            "student": self.student,
            "assignment": self.assignment,
            "total": self.total,
            "max_total": self.max_total,
            "checks": [c.to_dict() for c in self.checks],
            "runs": [r.to_dict() for r in self.runs],
            "final": self.final.to_dict(),
            "facts": self.facts.to_dict(),
        }
