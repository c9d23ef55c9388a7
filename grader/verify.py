"""Claimed vs re-executed: does a notebook's re-execution confirm the numbers its outputs show?

Runs are paired by the cell that trains them and their order in that cell (the code is the same
in both notebooks). For each pair the validation accuracy curves are compared epoch by epoch
(only epochs both have, and with ``--max-epochs N`` only epochs <= N). An epoch agrees when the
two values differ by at most the *tolerance* at that epoch:

    tolerance(e) = max(FLOOR, widest band of the run's reference experiment over epochs e-1..e+1)

where the band width is max - min over the reference seeds. Why the smoothing and the floor:
the reference battery has 3 seeds per experiment, and the range of 3 draws underestimates how
far two fresh runs fall apart (for normal noise the expected range of 3 is 1.69 sigma, while 95%
of the differences between two runs stay within 2.77 sigma, 1.6 times more); per-epoch widths are
themselves noisy (0.0008 at one epoch, 0.01 at the next in activations.relu). The bands' median
width is about 0.006, so 1.6 times that is about 0.01; FLOOR = 0.02 (two points of accuracy)
covers it with room for thread-count nondeterminism, and still puts a claimed 0.95 far outside a
re-executed ~0.88. A run with no reference experiment gets DEFAULT_TOLERANCE.

A run is ``mismatch`` when its last compared epoch disagrees, or more than a third of its compared
epochs do; else ``confirmed``. ``unconfirmed``: it could not be paired, was not re-run (the run
stopped earlier), or shows no number to compare. Pure: values in, values out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Sequence

from .attribution import cell_index
from .messages import Messages
from .results import CheckResult, Flag
from .runs import RunView

FLOOR = 0.02
DEFAULT_TOLERANCE = 0.03
STATUSES = ("confirmed", "mismatch", "unconfirmed")
WHY = ("not_rerun", "no_values", "capped")  # why a run is unconfirmed


@dataclass(frozen=True)
class RunComparison:
    """One claimed run against its re-execution. ``cell`` is 1-based ("cell N"); ``epoch`` the
    epoch decided on (the last compared, or the worst one when that decided a mismatch)."""

    run: int
    cell: int
    label: str | None
    status: str
    experiment: str | None = None
    epoch: int | None = None
    claimed: float | None = None
    executed: float | None = None
    tolerance: float | None = None
    epochs_compared: int = 0
    epochs_outside: int = 0
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON: ``cell`` as the 0-based index into the notebook's cells, like the check JSON."""
        return {**asdict(self), "cell": cell_index(self.cell)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunComparison":
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**{**fields, "cell": int(data["cell"]) + 1})


def compare(claimed: CheckResult, executed: CheckResult, references: Mapping[str, Any],
            max_epochs: int | None = None) -> tuple[RunComparison, ...]:
    """Every run the claimed notebook shows a number for, compared with its re-execution."""
    reruns: dict[int, list[RunView]] = {}
    for run in executed.runs:
        if run.shown:
            reruns.setdefault(run.cell, []).append(run)
    seen: dict[int, int] = {}
    out = []
    for run in claimed.runs:
        if not run.shown:
            continue
        k = seen[run.cell] = seen.get(run.cell, -1) + 1
        partners = reruns.get(run.cell, [])
        exp_id, widths = _reference(run, references)
        if k >= len(partners):
            out.append(RunComparison(run.index, run.cell, run.label, "unconfirmed", exp_id, why="not_rerun"))
            continue
        out.append(_compare_pair(run, partners[k], exp_id, widths, max_epochs))
    return tuple(out)


def _reference(run: RunView, references: Mapping[str, Any]) -> tuple[str | None, list[float] | None]:
    """The reference experiment training what this run trains, and its band widths per epoch."""
    trains = [(exp_id, rec) for exp_id, rec in references.items()  # a test evaluation is keyed under its own
              if isinstance(getattr(rec, "spec", None), Mapping) and rec.spec.get("kind", "train") == "train"
              and getattr(rec, "id", exp_id) == exp_id]  # id but holds its training's record: skip it
    same = [(i, r) for i, r in trains if r.spec.get("exercise") == run.exercise and run.exercise is not None]
    exact = [(i, r) for i, r in same if r.spec.get("variant") == run.variant]
    chosen = exact[0] if exact else (same[0] if len(same) == 1 else None)
    if chosen is None:
        return None, None
    band = chosen[1].band("val_accuracy")
    return chosen[0], [hi - lo for lo, hi in zip(band["min"], band["max"])]


def tolerance(widths: Sequence[float] | None, epoch: int) -> float:
    """The agreement allowed at ``epoch`` (1-based): see the module docstring."""
    if not widths:
        return DEFAULT_TOLERANCE
    i = min(epoch, len(widths)) - 1
    near = widths[max(0, i - 1): i + 2]
    return round(max(FLOOR, *near), 4)


def _compare_pair(claim: RunView, rerun: RunView, exp_id: str | None, widths: list[float] | None,
                  max_epochs: int | None) -> RunComparison:
    base = RunComparison(claim.index, claim.cell, claim.label, "unconfirmed", exp_id)
    mine, theirs = claim.curves.get("val_accuracy", ()), rerun.curves.get("val_accuracy", ())
    n = min(len(mine), len(theirs), max_epochs or 10**9)
    pairs = [(e, mine[e - 1], theirs[e - 1]) for e in range(1, n + 1)
             if mine[e - 1] is not None and theirs[e - 1] is not None]
    if not pairs:  # no curves to compare: the values the student reads, if both ran in full
        if claim.read_val is None or rerun.read_val is None:
            return replace(base, why="no_values")
        if max_epochs is not None and (claim.epochs is None or claim.epochs > max_epochs):
            return replace(base, why="capped")
        pairs = [(claim.read_epoch or rerun.read_epoch or 1, claim.read_val, rerun.read_val)]
    outside = [(abs(c - x) - tolerance(widths, e), e, c, x) for e, c, x in pairs if abs(c - x) > tolerance(widths, e)]
    last_e, last_c, last_x = pairs[-1]
    last_out = abs(last_c - last_x) > tolerance(widths, last_e)
    bad = last_out or (len(pairs) >= 3 and 3 * len(outside) > len(pairs))
    e, c, x = (last_e, last_c, last_x) if last_out or not bad else max(outside)[1:]
    return replace(base, status="mismatch" if bad else "confirmed", epoch=e, claimed=round(c, 4),
                   executed=round(x, 4), tolerance=tolerance(widths, e), epochs_compared=len(pairs),
                   epochs_outside=len(outside))


def mismatch_flags(comparisons: Sequence[RunComparison], messages: Messages) -> tuple[Flag, ...]:
    """One flag per mismatching run, in the student's language."""
    return tuple(Flag("mismatch", c.cell, c.label or "", messages.text(
        "verify.flag_mismatch", cell=c.cell, label=c.label or "?", claimed=f"{c.claimed:.4f}",
        executed=f"{c.executed:.4f}", epoch=c.epoch, tolerance=f"{c.tolerance:.3f}"))
        for c in comparisons if c.status == "mismatch")


def graded_basis(status: str, max_epochs: int | None) -> str:
    """Which notebook a verified grade is computed from: the re-executed one when it ran in full
    (its outputs are the real ones), else the submitted one (a capped or stopped run cannot show
    every result the rubric asks for)."""
    return "executed" if status == "ok" and max_epochs is None else "claimed"


def verified_check(claimed: CheckResult, executed: CheckResult | None, comparisons: Sequence[RunComparison],
                   basis: str, messages: Messages) -> CheckResult:
    """The CheckResult to grade and print: ``basis``'s, named like the submitted notebook, with
    the mismatch flags added."""
    chosen = executed if basis == "executed" and executed is not None else claimed
    chosen = replace(chosen, notebook_sha256=claimed.notebook_sha256, notebook_name=claimed.notebook_name,
                     student=claimed.student)
    return replace(chosen, flags=chosen.flags + mismatch_flags(comparisons, messages))


SYMBOLS = {"confirmed": "✓", "mismatch": "✗", "unconfirmed": "·"}


def verification_lines(*, status: str, cell: int | None, reason: str, seconds: float, max_epochs: int | None,
                       comparisons: Sequence[RunComparison], basis: str, isolation_line: str,
                       messages: Messages) -> list[str]:
    """The verification section `grader check --execute` prints after the rubric."""
    msg = messages
    lines = [msg.text("verify.title", seconds=f"{seconds:.1f}", status=msg.text(f"verify.status.{status}"))]
    if max_epochs:
        lines.append("  " + msg.text("verify.capped", n=max_epochs))
    if status != "ok":
        lines.append("  " + (msg.text("verify.stopped", cell=cell, reason=reason) if cell
                             else msg.text("verify.stopped_nocell", reason=reason)))
    for c in comparisons:
        label = c.label or "?"
        if c.why:
            text = msg.text(f"verify.why.{c.why}", label=label, cell=c.cell)
        else:
            text = msg.text("verify.run", label=label, cell=c.cell, claimed=f"{c.claimed:.4f}",
                            executed=f"{c.executed:.4f}", epoch=c.epoch, tolerance=f"{c.tolerance:.3f}")
        lines.append(f"  {SYMBOLS[c.status]} {msg.text('verify.status.' + c.status)}: {text}")
    lines.append("  " + msg.text(f"verify.graded_{basis}"))
    lines.append("  " + isolation_line)
    return lines
