"""The rubric: what a notebook's runs, facts and reported results are worth, check by check.

`evaluate` takes plain values (the notebook, its code facts, its parsed outputs, the assignment,
the reference records, the messages of one language) and returns a `CheckResult`: one
`CheckItem` per rubric check of the assignment TOML (status pass|partial|fail|missing, points,
an actionable message, the evidence it was decided from), the runs, the final model, the facts,
and what the terminal needs besides: hints that would raise the grade and flags (test leakage,
model reuse, cells run out of order, unverified claims). Pure: nothing here reads files.

Points: pass earns the check's points, partial half of them, fail and missing none. A check is
passed only with status pass; the exit code of `grader check` is 0 when every required one is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from . import __version__
from .assignment import Assignment, Check
from .attribution import ExerciseMap, Sections, facet_of, sections, short
from .codefacts import CodeFacts
from .codefacts import Finding as CodeFinding
from .logs import CellLogs
from .messages import Messages
from .notebook import Notebook
from .plausibility import Finding, check_runs
from .reported import Claim, Final, final_reading, markdown_claims
from .results import NO_EVIDENCE, CheckItem, CheckResult, Evidence, Facts, Flag, Hint
from .runs import ExerciseWork, RunView, by_exercise, merge_runs, squash_bars

FRACTION_TOLERANCE = 0.005
FEATURE_NAMES = {"batchnorm": "BatchNormalization", "dropout": "Dropout",
                 "reduce_lr_on_plateau": "ReduceLROnPlateau", "early_stopping": "EarlyStopping"}


# ------------------------------------------------------------------------------------ context

@dataclass(frozen=True)
class _Ctx:
    notebook: Notebook
    facts: CodeFacts
    assignment: Assignment
    msg: Messages
    secs: Sections
    runs: tuple[RunView, ...]
    work: Mapping[str, ExerciseWork]
    final: Final
    findings: tuple[Finding, ...]
    claims: tuple[Claim, ...]
    test_cells: tuple[int, ...]
    final_exercise: str | None

    def title(self, check: Check) -> str:
        """The exercise's title for a check on one exercise; the message table's for the others
        (challenge_s3's final-model check reads the reduce_lr exercise but is not about it)."""
        ex = self.assignment.exercise(check.exercise) if check.exercise else None
        key = f"check.{check.id}.title"
        if ex is not None and (ex.id == check.id or check.id not in _HANDLERS or not self.msg.has(key)):
            return ex.title.get(self.msg.lang) or next(iter(ex.title.values()), check.id)
        return self.msg.text(key) if self.msg.has(key) else check.id


_Outcome = tuple[str, str, Evidence]  # (status, message, evidence)


def evaluate(notebook: Notebook, facts: CodeFacts, logs: Mapping[int, CellLogs], assignment: Assignment,
             references: Mapping[str, Any], msg: Messages, student: str) -> CheckResult:
    """Grade one notebook against one assignment's rubric."""
    secs = sections(notebook, assignment)
    runs = merge_runs(notebook, logs, facts, assignment, secs)
    emap = ExerciseMap.build(assignment, facts)
    test_ex = _test_exercise(assignment)
    final = final_reading(notebook, runs, logs, facts, secs, emap.final, test_ex)
    claims = markdown_claims(notebook, runs, logs, secs)
    ctx = _Ctx(notebook, facts, assignment, msg, secs, runs, by_exercise(runs, assignment), final,
               check_runs(runs, facts, assignment, references), claims,
               tuple(sorted({t.cell for t in facts.test_evaluations})), emap.final)
    items = []
    for check in assignment.rubric.checks:
        status, message, evidence = _dispatch(check, ctx)
        points = check.points if status == "pass" else round(check.points / 2, 2) if status == "partial" else 0.0
        items.append(CheckItem(check.id, status, points, check.points, message, evidence, check.required,
                               ctx.title(check)))
    hints = tuple(sorted((Hint(c.id, round(c.max_points - c.points, 2), c.message)
                          for c in items if c.status != "pass"), key=lambda h: -h.gain))
    return CheckResult(
        grader_version=__version__, notebook_sha256=notebook.sha256, student=student,
        assignment=assignment.id, total=round(sum(c.points for c in items), 2),
        max_total=round(assignment.rubric.max_total, 2), checks=tuple(items),
        runs=tuple(r for r in runs if r.executed),  # a fit in a cell never run trained nothing
        final=final,
        facts=_facts(ctx), lang=msg.lang, assignment_title=assignment.title,
        notebook_name=notebook.path.replace("\\", "/").rsplit("/", 1)[-1], hints=hints, flags=_flags(ctx),
        claims=claims)


def _test_exercise(assignment: Assignment) -> str | None:
    trains = {e.exercise for e in assignment.experiments if e.kind == "train"}
    return next((e.exercise for e in assignment.experiments if e.kind == "test" and e.exercise not in trains),
                None)


def _dispatch(check: Check, ctx: _Ctx) -> _Outcome:
    handler: Callable[[Check, _Ctx], _Outcome] | None = _HANDLERS.get(check.id)
    if handler is None:
        if check.exercise and facet_of(ctx.assignment, check.exercise):
            handler = _comparison
        elif check.exercise and check.exercise == _test_exercise(ctx.assignment):
            handler = _test_evaluation
        elif check.exercise:
            handler = _exercise_runs
        else:
            return "missing", ctx.msg.text("msg.unknown_check", id=check.id), NO_EVIDENCE
    return handler(check, ctx)


def _no_outputs(ctx: _Ctx) -> _Outcome | None:
    if ctx.notebook.has_outputs:
        return None
    return "fail", ctx.msg.text("msg.no_outputs"), NO_EVIDENCE


def _ev(run: RunView) -> Evidence:
    return Evidence(run.cell, short(run.excerpt))


def _q(items: Sequence[str]) -> list[str]:
    return [f"'{i}'" for i in items]


# ------------------------------------------------------------------------------------ comparisons

def _comparison(check: Check, ctx: _Ctx) -> _Outcome:
    """An exercise comparing variants (activations, initializers, optimizers)."""
    msg, ex = ctx.msg, ctx.assignment.exercise(check.exercise or "")
    assert ex is not None
    required = [r for r in ex.required]
    work = ctx.work[ex.id]
    if not work.runs:
        return "missing", msg.text("msg.compare.missing", required=msg.join(_q(required))), NO_EVIDENCE
    if (out := _no_outputs(ctx)) is not None:
        return out
    runs = work.runs
    first = _ev(runs[0])
    trained = list(work.variants)
    hidden = [r for r in runs if not r.shown]
    if len(hidden) == len(runs):
        return "fail", msg.text("msg.compare.not_shown", where=msg.cells(r.cell for r in hidden),
                                labels=msg.join(_q([r.label or "?" for r in hidden]))), first
    missing = [v for v in required if v not in trained]
    if missing:
        status = "partial" if len(trained) >= 2 and len(missing) < len(required) else "fail"
        return status, msg.text("msg.compare.missing_variants", missing=msg.join(_q(missing)),
                                where=msg.cells(work.cells), trained=msg.join(_q(trained)) or "-"), first
    reused = [r for r in runs if r.code is not None and r.code.reused]
    if reused:
        return "partial", msg.text("msg.compare.reuse", where=msg.cells(r.cell for r in reused),
                                   labels=msg.join(_q([r.label or "?" for r in reused]))), _ev(reused[0])
    mine = {r.index for r in runs}
    for f in ctx.findings:
        if f.run in mine:
            key = "msg.compare.reuse_outputs" if f.kind == "reuse" else "msg.compare.implausible"
            return "partial", msg.text(key, cell=f.cell, label=f.label or "?", value=f"{f.value:.4f}",
                                       epoch=f.epoch, limit=f"{f.limit:.4f}"), Evidence(f.cell, short(
                                           next(r.excerpt for r in runs if r.index == f.run)))
    if hidden:
        return "partial", msg.text("msg.compare.not_shown", where=msg.cells(r.cell for r in hidden),
                                   labels=msg.join(_q([r.label or "?" for r in hidden]))), _ev(hidden[0])
    return "pass", msg.text("msg.compare.pass", variants=msg.join(_q(trained)), where=msg.cells(work.cells)), first


def _exercise_runs(check: Check, ctx: _Ctx) -> _Outcome:
    """An exercise answered by training one model with some feature (BatchNormalization, a callback)."""
    msg = ctx.msg
    work = ctx.work.get(check.exercise or "")
    title = ctx.title(check)
    if work is None or not work.runs:
        return "missing", msg.text("msg.exercise.missing", title=title), NO_EVIDENCE
    if (out := _no_outputs(ctx)) is not None:
        return out
    runs = work.runs
    needed = _features(ctx.assignment, check.exercise or "")
    with_features = [r for r in runs if _has_features(r, needed, ctx.facts)]
    if needed and not with_features:
        return "partial", msg.text("msg.exercise.feature", where=msg.cells(work.cells),
                                   feature=msg.join(FEATURE_NAMES.get(f, f) for f in sorted(needed))), _ev(runs[0])
    chosen = (with_features or list(runs))[-1]
    if not chosen.shown:
        return "partial", msg.text("msg.compare.not_shown", where=msg.cells([chosen.cell]),
                                   labels=f"'{chosen.label or '?'}'"), _ev(chosen)
    val = f"{chosen.read_val:.4f}" if chosen.read_val is not None else "-"
    return "pass", msg.text("msg.exercise.pass", label=chosen.label or "?", where=msg.cells([chosen.cell]),
                            val=val), _ev(chosen)


def _features(assignment: Assignment, exercise: str) -> set[str]:
    """What the exercise's reference experiments add: batch normalization, dropout, callbacks."""
    specs = [e for e in assignment.experiments if e.exercise == exercise and e.kind == "train"]
    if not specs:
        return set()
    sets = []
    for spec in specs:
        found = {layer["type"] for layer in spec.layers if layer["type"] in ("batchnorm", "dropout")}
        found |= {cb["name"] for cb in spec.callbacks if cb["name"] == "reduce_lr_on_plateau"}
        sets.append(found)
    common = set.intersection(*sets)
    others = [e for e in assignment.experiments if e.kind == "train" and e.exercise != exercise]
    # only what sets this exercise apart from the ones before it counts as its feature
    before = set()
    for e in others:
        if assignment.exercises.index(assignment.exercise(e.exercise)) < \
                assignment.exercises.index(assignment.exercise(exercise)):  # type: ignore[arg-type]
            before |= {layer["type"] for layer in e.layers} | {cb["name"] for cb in e.callbacks}
    return common - before


def _has_features(run: RunView, needed: set[str], facts: CodeFacts) -> bool:
    if not needed:
        return True
    if run.code is None:
        return False
    model = next((m for m in facts.models if m.id == run.code.model), None)
    kinds = {layer.kind for layer in model.layers} if model is not None else set()
    have = {k for k in kinds if k in ("batchnorm", "dropout")} | set(run.code.callbacks)
    return needed <= have


# ------------------------------------------------------------------------------------ validation

def _fraction_text(msg: Messages, value: float | str | None) -> str:
    if isinstance(value, (int, float)):
        return msg.text("fraction.percent", pct=f"{value * 100:.3g}%")
    key = f"fraction.{value}"
    return msg.text(key) if value and msg.has(key) else str(value)


def _how(msg: Messages, expected: float | str) -> str:
    if isinstance(expected, (int, float)):
        return msg.text("msg.validation.how_split", value=f"{expected:g}")
    key = f"msg.validation.how_{expected}"
    return msg.text(key) if msg.has(key) else str(expected)


def _validation(check: Check, ctx: _Ctx) -> _Outcome:
    msg, expected = ctx.msg, ctx.assignment.rubric.validation_fraction
    runs = ctx.facts.runs
    if not runs and not ctx.runs:
        return "missing", msg.text("msg.validation.missing"), NO_EVIDENCE
    fraction = ctx.facts.validation.fraction
    exp_text = _fraction_text(msg, expected)
    how = _how(msg, expected)
    if fraction == "test_set":
        leak = next((r for r in runs if r.validation.fraction == "test_set"), None)
        ev = Evidence(leak.cell, leak.evidence.excerpt) if leak else NO_EVIDENCE
        return "fail", msg.text("msg.validation.test_set", cell=ev.cell, expected=exp_text, how=how), ev
    if fraction is None:
        shows_val = any(r.curves.get("val_accuracy") for r in ctx.runs)
        first = runs[0] if runs else None
        ev = Evidence(first.cell, first.evidence.excerpt) if first else NO_EVIDENCE
        kinds = {r.validation.kind for r in runs}
        if kinds - {None} or shows_val:
            return "partial", msg.text("msg.validation.unknown", cell=ev.cell, how=how), ev
        return "fail", msg.text("msg.validation.none", how=how), ev
    if not _same_fraction(fraction, expected):
        run = next((r for r in runs if r.validation.fraction == fraction), None)
        split = next((s for s in ctx.facts.validation.splits if s.fraction == fraction), None)
        ev = (Evidence(run.cell, run.evidence.excerpt) if run else
              Evidence(split.evidence.cell, split.evidence.excerpt) if split else NO_EVIDENCE)
        return "fail", msg.text("msg.validation.other", cell=ev.cell, fraction=_fraction_text(msg, fraction),
                                expected=exp_text, how=how), ev
    odd = [r for r in runs if r.validation.fraction is not None and not _same_fraction(r.validation.fraction, expected)]
    good = next((r for r in runs if _same_fraction(r.validation.fraction, expected)), None)
    if odd:
        return "partial", msg.text("msg.validation.other", cell=odd[0].cell,
                                   fraction=_fraction_text(msg, odd[0].validation.fraction),
                                   expected=exp_text, how=how), Evidence(odd[0].cell, odd[0].evidence.excerpt)
    split = next((s for s in ctx.facts.validation.splits if _same_fraction(s.fraction, expected)), None)
    if split is not None and (good is None or good.validation.kind != "split"):
        ev = Evidence(split.evidence.cell, split.evidence.excerpt)  # where the held-out part is made
    elif good is not None:
        ev = Evidence(good.cell, good.evidence.excerpt)
    else:
        ev = NO_EVIDENCE
    return "pass", msg.text("msg.validation.pass", fraction=exp_text, cell=ev.cell), ev


def _same_fraction(a: float | str | None, b: float | str | None) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= FRACTION_TOLERANCE
    return a == b


# ------------------------------------------------------------------------------------ epochs

def _epochs(check: Check, ctx: _Ctx) -> _Outcome:
    msg, required = ctx.msg, ctx.assignment.rubric.required_epochs
    facet_ex = {e.id for e in ctx.assignment.exercises if facet_of(ctx.assignment, e.id)}
    runs = [r for r in ctx.runs if r.exercise in facet_ex] or [
        r for r in ctx.runs if r.exercise and r.exercise != ctx.final_exercise]
    if not runs:
        return "missing", msg.text("msg.epochs.missing", required=required), NO_EVIDENCE
    short_runs = []
    for r in runs:
        planned = r.planned_epochs
        stopped_by_callback = r.code is not None and "early_stopping" in r.code.callbacks
        if planned is not None and planned >= required and (
                r.epochs is None or r.epochs >= planned or stopped_by_callback or (r.log and r.log.early_stopped)):
            continue
        if planned is None and r.epochs is not None and r.epochs >= required:
            continue
        short_runs.append(r)
    if not short_runs:
        return "pass", msg.text("msg.epochs.pass", required=required), _ev(runs[0])
    counts = sorted({r.planned_epochs if r.planned_epochs is not None else r.epochs for r in short_runs} - {None})
    status = "fail" if len(short_runs) == len(runs) else "partial"
    return status, msg.text("msg.epochs.short", where=msg.cells(r.cell for r in short_runs),
                            epochs=msg.join(str(c) for c in counts) or "?", required=required), _ev(short_runs[0])


# ------------------------------------------------------------------------------------ final model

_LEAK_ORDER = ("validation_on_test", "callback_monitors_test", "test_in_candidate_loop", "test_compared")


def _leak(ctx: _Ctx) -> CodeFinding | None:
    """The leak that taints the final model most directly: in the final model's own cell first,
    then a choice among models by test results, then validating on the test set elsewhere."""
    final_cell = ctx.final.run.cell if ctx.final.run else None
    selection = ("test_in_candidate_loop", "test_compared")

    def rank(f: CodeFinding) -> tuple[int, int, int]:
        kind = _LEAK_ORDER.index(f.kind) if f.kind in _LEAK_ORDER else 9
        return (0 if f.cell == final_cell else 1 if f.kind in selection else 2, kind, f.cell)

    leaks = sorted(ctx.facts.leaks, key=rank)
    return leaks[0] if leaks else None


def _final_model(check: Check, ctx: _Ctx) -> _Outcome:
    msg, rub, final = ctx.msg, ctx.assignment.rubric, ctx.final
    run = final.run
    if run is None:
        return "missing", msg.text("msg.final.missing", title=ctx.title(check)), NO_EVIDENCE
    if (out := _no_outputs(ctx)) is not None:
        return out
    leak = _leak(ctx)
    if leak is not None:
        return "fail", msg.text("msg.final.leakage", cell=leak.cell, reason=msg.text(f"leak.{leak.kind}")), \
            Evidence(leak.cell, leak.evidence.excerpt)
    val = final.val_accuracy
    ev = Evidence(final.cell_val or run.cell, short(final.val_excerpt or run.excerpt))
    if val is None:
        claim = next((c for c in ctx.claims if not c.verified and c.split != "test"), None)
        if claim is not None:
            return "fail", msg.text("msg.final.claim_only", cell=run.cell, claim=f"{claim.value * 100:.4g}%",
                                    claim_cell=claim.cell), Evidence(claim.cell, claim.excerpt)
        return "fail", msg.text("msg.final.not_shown", cell=run.cell), ev
    rule = msg.text(f"rule.{run.read_rule}", epoch=run.read_epoch) if run.read_rule else ""
    values = dict(val=f"{val:.4f}", cell=ev.cell, rule=rule, full=f"{rub.final_val_full:.2f}",
                  partial=f"{rub.final_val_partial:.2f}")
    if val < rub.final_val_partial:
        return "fail", msg.text("msg.final.below", **values), ev
    finding = next((f for f in ctx.findings if f.run == run.index), None)
    if finding is not None:
        return "partial", msg.text("msg.compare.implausible", cell=finding.cell, label=finding.label or "?",
                                   value=f"{finding.value:.4f}", epoch=finding.epoch,
                                   limit=f"{finding.limit:.4f}"), ev
    if val < rub.final_val_full:
        return "partial", msg.text("msg.final.partial", **values), ev
    return "pass", msg.text("msg.final.pass", **values), ev


def _test_evaluation(check: Check, ctx: _Ctx) -> _Outcome:
    msg, final, gap_max = ctx.msg, ctx.final, ctx.assignment.rubric.test_val_max_gap
    test = final.test
    if test is None and not ctx.test_cells:
        return "missing", msg.text("msg.test.missing"), NO_EVIDENCE
    if (out := _no_outputs(ctx)) is not None:
        return out
    if test is None:
        cell = ctx.test_cells[-1]
        ev = next((Evidence(t.cell, t.evidence.excerpt) for t in ctx.facts.test_evaluations if t.cell == cell),
                  Evidence(cell, ""))
        claim = next((c for c in ctx.claims if not c.verified and c.split == "test"), None)
        if claim is not None:
            return "fail", msg.text("msg.test.claim_only", cell=cell, claim=f"{claim.value * 100:.4g}%",
                                    claim_cell=claim.cell), ev
        return "fail", msg.text("msg.test.not_shown", cell=cell), ev
    ev = Evidence(test.cell, short(squash_bars(test.excerpt)))
    values = dict(test=f"{test.accuracy:.4f}", cell=test.cell, max_gap=f"{gap_max:.2f}")
    if final.val_accuracy is None:
        return "partial", msg.text("msg.test.no_val", **values), ev
    gap = abs(test.accuracy - final.val_accuracy)
    values.update(val=f"{final.val_accuracy:.4f}", gap=f"{gap:.4f}")
    if gap > gap_max + 1e-9:
        return "partial", msg.text("msg.test.gap", **values), ev
    return "pass", msg.text("msg.test.pass", **values), ev


_HANDLERS: dict[str, Callable[[Check, _Ctx], _Outcome]] = {
    "validation_split": _validation,
    "epochs": _epochs,
    "final_model": _final_model,
    "test_evaluation": _test_evaluation,
}


# ------------------------------------------------------------------------------------ facts, flags

def _facts(ctx: _Ctx) -> Facts:
    answered = []
    test_ex = _test_exercise(ctx.assignment)
    for ex in ctx.assignment.exercises:
        if ctx.work[ex.id].runs or (ex.id == test_ex and (ctx.final.test is not None or ctx.test_cells)):
            answered.append(ex.id)
    variants: dict[str, list[str]] = {"activations": [], "initializers": [], "optimizers": []}
    for ex in ctx.assignment.exercises:
        facet = facet_of(ctx.assignment, ex.id)
        if facet:
            variants[facet] += [v for v in ctx.work[ex.id].variants if v not in variants[facet]]
    fraction = ctx.facts.validation.fraction
    if isinstance(fraction, float):
        fraction = round(fraction, 4)
    reuse = ctx.facts.model_reuse or any(f.kind == "reuse" for f in ctx.findings)
    return Facts(tuple(answered), tuple(variants["activations"]), tuple(variants["initializers"]),
                 tuple(variants["optimizers"]), fraction, ctx.facts.test_leakage, reuse,
                 ctx.notebook.has_outputs, ctx.notebook.executed_in_order)


def _flags(ctx: _Ctx) -> tuple[Flag, ...]:
    msg, out = ctx.msg, []
    if not ctx.notebook.has_outputs:
        out.append(Flag("no_outputs", None, "", msg.text("msg.no_outputs")))
    by_kind: dict[str, list[CodeFinding]] = {}
    for leak in ctx.facts.leaks:
        by_kind.setdefault(leak.kind, []).append(leak)
    for kind, leaks in by_kind.items():  # one warning per kind of leak, naming every cell
        out.append(Flag("test_leakage", leaks[0].cell, leaks[0].evidence.excerpt,
                        msg.text("flag.test_leakage", where=msg.cells(f.cell for f in leaks),
                                 reason=msg.text(f"leak.{kind}"))))
    if ctx.facts.reuses:
        reuses = ctx.facts.reuses
        out.append(Flag("model_reuse", reuses[0].cell, reuses[0].evidence.excerpt,
                        msg.text("flag.model_reuse", where=msg.cells(f.cell for f in reuses))))
    for f in ctx.findings:
        key = "flag.reuse_outputs" if f.kind == "reuse" else "flag.implausible"
        out.append(Flag("model_reuse" if f.kind == "reuse" else "implausible", f.cell, f.label or "",
                        msg.text(key, cell=f.cell, label=f.label or "?", value=f"{f.value:.4f}", epoch=f.epoch,
                                 limit=f"{f.limit:.4f}")))
    order = _out_of_order(ctx.notebook)
    if order is not None:
        out.append(Flag("out_of_order", order[0], "", msg.text("flag.out_of_order", cell=order[0], prev=order[1])))
    for c in ctx.claims:
        if not c.verified:
            out.append(Flag("unverified_claim", c.cell, c.excerpt,
                            msg.text("flag.unverified_claim", cell=c.cell, value=f"{c.value * 100:.4g}%")))
    unparsed = [u for u in ctx.facts.unparsed if u.reason == "syntax_error"]
    if unparsed:  # one warning (a Python 2 notebook would otherwise give one per cell)
        out.append(Flag("unparsed", unparsed[0].cell, unparsed[0].detail,
                        msg.text("flag.unparsed", where=msg.cells(u.cell for u in unparsed),
                                 detail=unparsed[0].detail)))
    return tuple(out)


def _out_of_order(notebook: Notebook) -> tuple[int, int] | None:
    """(cell, earlier cell) of the first code cell whose execution count is below one above it."""
    best: tuple[int, int] | None = None  # (count, cell) of the highest count so far
    for cell in notebook.code_cells:
        count = cell.execution_count
        if count is None:
            continue
        if best is not None and count <= best[0]:
            return best[1], cell.number
        if best is None or count > best[0]:
            best = (count, cell.number)
    return None
