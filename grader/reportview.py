"""What the report templates show: check results and reference runs turned into page contexts.

Everything here is plain data in, plain data out (strings, lists, dicts and the figures' data URIs),
so the templates hold no logic and the same inputs give the same context. Student-facing words come
from ``templates/messages/report_<lang>.toml``; check titles and status words from the messages
`grader check` uses, so the terminal and the paper say the same thing.

Cells: the check result counts them from 0 (like nbformat); the page shows the numbers people
count, from 1.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

from . import __version__, plots
from .assignment import Assignment, ExperimentSpec, canonical_name
from .errors import GraderError
from .messages import load as load_messages
from .records import RunRecord

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LANGS = ("es", "en")
STATUSES = ("pass", "partial", "fail", "missing")
STATUS_MARK = {"pass": "✓", "partial": "◐", "fail": "✗", "missing": "—"}
EXCERPT_MAX = 240
CELL_BASE = 1  # the check result counts cells from 0; people count from 1


class ReportError(GraderError):
    """A report cannot be rendered or written (unknown language, unwritable output)."""


@functools.lru_cache(maxsize=None)
def messages(lang: str) -> Mapping[str, Mapping[str, str]]:
    """The report's student-facing strings in one language (templates/messages/report_<lang>.toml)."""
    if lang not in LANGS:
        raise ReportError(f"unknown report language {lang!r} (known: {', '.join(LANGS)})")
    text = (resources.files("grader.templates") / "messages" / f"report_{lang}.toml").read_text("utf-8")
    return tomllib.loads(text)


def _fmt(template: str, **values: Any) -> str:
    return template.format(**values)


def _pts(x: float | None) -> str:
    return "—" if x is None else f"{round(float(x), 2):g}"


def _thr(x: float) -> str:
    """A threshold as the rubric states it: 0.90, 0.02."""
    return f"{x:.2f}"


def _acc(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _cell(t: Mapping[str, Mapping[str, str]], cell: Any) -> str:
    return _fmt(t["student"]["cell"], cell=int(cell) + CELL_BASE) if isinstance(cell, int) else ""


def _excerpt(text: Any) -> str:
    s = "" if text is None else str(text).strip("\n")
    return s if len(s) <= EXCERPT_MAX else s[:EXCERPT_MAX - 1].rstrip() + "…"


# ------------------------------------------------------------------------ shared judgements

def check_title(check_id: str, assignment: Assignment, lang: str) -> str:
    """A check's title as `grader check` names it: its exercise's title, or the message table's
    ``check.<id>.title`` for a check that is not about one exercise."""
    msg = load_messages(lang)
    spec = next((c for c in assignment.rubric.checks if c.id == check_id), None)
    exercise = assignment.exercise(spec.exercise) if spec and spec.exercise else None
    key = f"check.{check_id}.title"
    if exercise is not None and (exercise.id == check_id or not msg.has(key)):
        return exercise.title.get(lang) or next(iter(exercise.title.values()), check_id)
    return msg.text(key) if msg.has(key) else check_id


def status_word(status: str, lang: str) -> str:
    msg = load_messages(lang)
    return msg.text(f"status.{status}") if msg.has(f"status.{status}") else status


def failing_required(result: Mapping[str, Any], assignment: Assignment) -> list[str]:
    """Ids of required checks that do not pass (what makes `grader check` exit 1)."""
    required = {c.id for c in assignment.rubric.checks if c.required}
    return [c["id"] for c in result.get("checks", ()) if c["id"] in required and c.get("status") != "pass"]


def flags_of(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The result's flags, plus one (without evidence) for each fact-level trap no flag names."""
    flags = [dict(f) for f in result.get("flags") or () if isinstance(f, Mapping)]
    kinds = {f.get("kind") for f in flags}
    facts = result.get("facts") or {}
    derived = {"test_leakage": facts.get("test_leakage") is True,
               "model_reuse": facts.get("model_reuse") is True,
               "out_of_order": facts.get("executed_in_order") is False}
    for kind, present in derived.items():
        if present and kind not in kinds:
            flags.append({"kind": kind, "cell": None, "excerpt": None})
    return flags


def _flag_rows(result: Mapping[str, Any], t: Mapping[str, Mapping[str, str]]) -> list[dict[str, str]]:
    rows = []
    for f in flags_of(result):
        kind = str(f.get("kind") or "other")
        rows.append({"kind": kind, "title": t["flag"].get(kind, t["flag"]["other"]),
                     "cell": _cell(t, f.get("cell")), "excerpt": _excerpt(f.get("excerpt")),
                     "message": str(f.get("message") or "")})
    return rows


def _hints(result: Mapping[str, Any]) -> list[str]:
    out = []
    for h in result.get("hints") or ():
        text = h.get("message") or h.get("text") if isinstance(h, Mapping) else h
        if text:
            out.append(str(text))
    return out


# ---------------------------------------------------------------- runs -> exercises/variants

def _norm(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _variant_of(label: str | None, variants: Iterable[str]) -> tuple[str | None, int]:
    """The variant a run label names (the longest one it contains as a word), and its length."""
    if not label:
        return None, 0
    canon = canonical_name(label)
    best, size = None, 0
    norm = _norm(label)
    for v in variants:
        named = canon == v or re.search(rf"(?<![a-z0-9]){re.escape(v)}(?![a-z0-9])", norm)
        if named and len(v) > size:
            best, size = v, len(v)
    return best, size


def attribute_runs(result: Mapping[str, Any], assignment: Assignment) -> dict[str, list[tuple[dict, str | None]]]:
    """Group the result's runs by exercise, each with the reference variant it compares to.

    A run that carries an ``exercise`` key (the checker's attribution, see ``report.from_check``)
    keeps it, and None means the checker placed it in no exercise. Otherwise its label decides
    when it names a variant of exactly one exercise; else the exercise whose check's evidence cell
    is the last one at or before the run's cell (the section the run sits in); the final model's
    run is the one in the cell the check read the final validation accuracy from.
    """
    trained: dict[str, list[str]] = {}
    for spec in assignment.experiments:
        if spec.kind == "train":
            trained.setdefault(spec.exercise, []).append(spec.variant)
    anchors = sorted((c["evidence"]["cell"], c_ex) for c in result.get("checks", ())
                     for c_ex in [_check_exercise(c["id"], assignment)]
                     if c_ex in trained and isinstance((c.get("evidence") or {}).get("cell"), int))
    final_cell = (result.get("final") or {}).get("cell_val")
    final_ex = next((s.exercise for s in assignment.experiments if s.kind == "train" and s.evaluate_test
                     and any(t.of == s.id for t in assignment.experiments)), None)
    out: dict[str, list[tuple[dict, str | None]]] = {ex: [] for ex in trained}
    runs = [r for r in result.get("runs", ()) if isinstance(r, Mapping)]
    last_in_final_cell = max((i for i, r in enumerate(runs) if r.get("cell") == final_cell), default=None)
    for i, run in enumerate(runs):
        if "exercise" in run:  # attributed by the checker
            ex = run["exercise"] if run["exercise"] in trained else None
            if ex is None:
                continue
        else:
            ex = None
        variant = run.get("variant") if ex and run.get("variant") in trained[ex] else None
        if ex is None:
            ex, variant = _by_label(run.get("label"), trained)
        if ex is None and i == last_in_final_cell and final_ex in trained:
            ex = final_ex
        if ex is None:
            before = [a for a in anchors if isinstance(run.get("cell"), int) and a[0] <= run["cell"]]
            ex = before[-1][1] if before else None
        if ex is None:
            continue
        if variant is None:
            variant, _ = _variant_of(run.get("label"), trained[ex])
        if variant is None and len(trained[ex]) == 1:
            variant = trained[ex][0]
        out[ex].append((dict(run), variant))
    return out


def _by_label(label: str | None, trained: Mapping[str, list[str]]) -> tuple[str | None, str | None]:
    hits = [(size, ex, v) for ex, vs in trained.items() for v, size in [_variant_of(label, vs)] if v]
    if not hits:
        return None, None
    top = max(size for size, _, _ in hits)
    best = [(ex, v) for size, ex, v in hits if size == top]
    return best[0] if len(best) == 1 else (None, None)


def _check_exercise(check_id: str, assignment: Assignment) -> str | None:
    spec = next((c for c in assignment.rubric.checks if c.id == check_id), None)
    return spec.exercise if spec else None


# ------------------------------------------------------------------------- student report

@dataclass(frozen=True)
class _Reference:
    variant: str
    val: tuple[float, float, float] | None  # mean, min, max of the final validation accuracy
    test: tuple[float, float, float] | None


def _spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    return (sum(values) / len(values), min(values), max(values)) if values else None


def _reference_finals(assignment: Assignment, references: Mapping[str, RunRecord]) -> list[_Reference]:
    out = []
    for spec in assignment.experiments:
        record = references.get(spec.id)
        if spec.kind != "test" or record is None:
            continue
        out.append(_Reference(
            variant=spec.variant,
            val=_spread([h.final_val_accuracy for h in record.histories]),
            test=_spread([h.test_accuracy for h in record.histories if h.test_accuracy is not None])))
    return out


_GLYPHS = {"o": ("●", "○"), "s": ("■", "□"), "^": ("▲", "△"), "D": ("◆", "◇"), "v": ("▼", "▽"),
           "P": ("✚", "✚"), "X": ("✖", "✕")}


def _legend_entry(style: plots.Style, label: str, *, reference: bool) -> dict[str, str]:
    """A legend line: the curve's look drawn with glyphs (line, marker, line) in its colour."""
    marker = _GLYPHS.get(style.marker, ("●", "○"))[1 if reference else 0]
    line = "╍" if reference else "━"
    return {"colour": style.colour, "swatch": f"{line}{marker}{line}", "label": label}


def _exercise_curves(specs: Sequence[ExperimentSpec], runs: Sequence[tuple[dict, str | None]],
                     references: Mapping[str, RunRecord], t: Mapping[str, Mapping[str, str]],
                     fmt: str) -> dict[str, Any]:
    """The exercise's figure (data URI), its legend entries (HTML, so values stay text) and notes."""
    tf = t["figure"]
    by_variant = {s.variant: references.get(s.id) for s in specs}
    curves: list[plots.Curve] = []
    labels: dict[str, str] = {}
    ran: list[str] = []
    for run, variant in runs:
        values = [float(v) if isinstance(v, (int, float)) else None for v in run.get("val_accuracy") or ()]
        if not any(v is not None for v in values):
            continue
        name = str(run.get("label") or variant or "?")
        key, n = variant or f"run:{name}", 2
        while key in labels:  # the same variant trained twice: its own style and entry
            key, n = f"{variant or 'run:' + name}#{n}", n + 1
        last = next((v for v in reversed(values) if v is not None), None)
        has_ref = variant is not None and by_variant.get(variant) is not None
        labels[key] = _fmt(tf["yours"] if has_ref else tf["yours_extra"], variant=name, value=_acc(last))
        curves.append(plots.Curve(key=key, values=values))
        if variant:
            ran.append(variant)
    # References: the variants the student ran; all of them when no run of theirs was found.
    wanted = [v for v in by_variant if v in ran] or ([] if curves else list(by_variant))
    bands = []
    for variant in wanted:
        record = by_variant.get(variant)
        if record is None:
            continue
        b = record.band("val_accuracy")
        bands.append(plots.Band(key=variant, mean=b["mean"], low=b["min"], high=b["max"]))
        labels[variant + "@ref"] = _fmt(tf["reference"], variant=variant, epochs=len(b["mean"]),
                                        value=_acc(record.summary()["val_mean"]))
    notes = []
    if not curves:
        notes.append(t["student"]["no_runs"])
    if not any(by_variant.values()):
        notes.append(t["student"]["no_reference"])
    # The x axis spans the student's runs: a 3-epoch run is not squeezed against a 40-epoch reference.
    shown = max((len(c.values) for c in curves), default=0)
    longest_ref = max((len(b.mean) for b in bands), default=0)
    if shown and longest_ref > shown:
        notes.append(_fmt(t["student"]["reference_cut"], shown=shown, epochs=longest_ref))
    image = plots.curves_figure(curves, bands, xlabel=tf["epoch"], ylabel=tf["val_accuracy"],
                                empty_note="" if curves or bands else notes[-1], epochs=shown or None, fmt=fmt)
    styles = plots.curve_styles(curves, bands)
    legend = []
    band_keys = {b.key for b in bands}
    for key in styles:  # reference variants first, each followed by the student's runs of it
        if key in band_keys:
            mine = [c for c in curves if c.key == key or c.key.startswith(key + "#")]
            legend += [_legend_entry(styles[c.key], labels[c.key], reference=False) for c in mine]
            legend.append(_legend_entry(styles[key], labels[key + "@ref"], reference=True))
        elif not any(key.startswith(b + "#") for b in band_keys):
            legend.append(_legend_entry(styles[key], labels[key], reference=False))
    return {"image": plots.data_uri(image, fmt), "legend": legend, "notes": notes}


def _final_block(result: Mapping[str, Any], assignment: Assignment, references: Mapping[str, RunRecord],
                 t: Mapping[str, Mapping[str, str]], fmt: str) -> dict[str, Any]:
    tf, rub = t["final"], assignment.rubric
    final = result.get("final") or {}
    val, test = final.get("val_accuracy"), final.get("test_accuracy")
    val = float(val) if isinstance(val, (int, float)) else None
    test = float(test) if isinstance(test, (int, float)) else None
    refs = _reference_finals(assignment, references)
    markers = [plots.Marker(row, "", v) for row, v in (("validation", val), ("test", test)) if v is not None]
    legend = {"yours": tf["yours"], "tolerance": _fmt(tf["tolerance"], gap=_thr(rub.test_val_max_gap))}
    for ref in refs:
        group = _fmt(tf["reference"], variant=ref.variant)
        for row, spread in (("validation", ref.val), ("test", ref.test)):
            if spread:
                markers.append(plots.Marker(row, group, spread[0], spread[1], spread[2]))
    thresholds = [plots.Threshold(_fmt(tf["full"], value=_thr(rub.final_val_full)), rub.final_val_full, "--"),
                  plots.Threshold(_fmt(tf["partial"], value=_thr(rub.final_val_partial)), rub.final_val_partial,
                                  ":")]
    tolerance = None if val is None else (val - rub.test_val_max_gap, val + rub.test_val_max_gap)
    image = plots.final_figure(markers, thresholds, rows={"validation": tf["validation"], "test": tf["test"]},
                               xlabel=t["figure"]["accuracy"], legend=legend, tolerance=tolerance, fmt=fmt)

    def yours(value: float | None, cell: Any) -> str:
        if value is None:
            return tf["not_found"]
        return _fmt(tf["from_cell"], value=_acc(value), cell=int(cell) + CELL_BASE) \
            if isinstance(cell, int) else _acc(value)

    def spread(which: str) -> list[str]:
        out = []
        for ref in refs:
            s = getattr(ref, which)
            if s:
                prefix = f"{ref.variant}: " if len(refs) > 1 else ""
                out.append(f"{prefix}{_acc(s[0])} ({_acc(s[1])}–{_acc(s[2])})")
        return out or ["—"]

    table = [
        {"quantity": tf["val_row"], "yours": yours(val, final.get("cell_val")), "reference": spread("val"),
         "needed": _fmt(tf["val_needed"], full=_thr(rub.final_val_full), partial=_thr(rub.final_val_partial))},
        {"quantity": tf["test_row"], "yours": yours(test, final.get("cell_test")), "reference": spread("test"),
         "needed": _fmt(tf["test_needed"], gap=_thr(rub.test_val_max_gap))},
    ]
    return {"image": plots.data_uri(image, fmt), "table": table}


def student_context(result: Mapping[str, Any], references: Mapping[str, RunRecord], assignment: Assignment,
                    *, lang: str, date: str, image_format: str = plots.DEFAULT_FORMAT) -> dict[str, Any]:
    """Everything the student template shows, as strings and lists (no logic left for the template)."""
    t = messages(lang)
    ts = t["student"]
    checks = [c for c in result.get("checks", ()) if isinstance(c, Mapping)]
    failing = failing_required(result, assignment)
    total, max_total = result.get("total"), result.get("max_total")
    if not failing and total is not None and max_total is not None and total >= max_total:
        verdict, verdict_kind = t["verdict"]["full"], "full"
    elif not failing:
        verdict, verdict_kind = _fmt(t["verdict"]["pass"], missing=_pts((max_total or 0) - (total or 0)),
                                     max=_pts(max_total)), "pass"
    else:
        verdict, verdict_kind = _fmt(t["verdict"]["fail"], count=len(failing)), "fail"
    by_check = {c["id"]: c for c in checks}
    rubric = [{"id": c["id"], "title": str(c.get("title") or check_title(c["id"], assignment, lang)),
               "status": c.get("status", "missing"),
               "status_text": status_word(str(c.get("status")), lang),
               "mark": STATUS_MARK.get(c.get("status", ""), "?"),
               "points": f"{_pts(c.get('points'))} / {_pts(c.get('max_points'))}",
               "message": str(c.get("message") or ""),
               "cell": _cell(t, (c.get("evidence") or {}).get("cell")),
               "excerpt": _excerpt((c.get("evidence") or {}).get("excerpt"))} for c in checks]

    attributed = attribute_runs(result, assignment)
    sections = []
    final = None
    for ex in assignment.exercises:
        specs = [s for s in assignment.experiments if s.exercise == ex.id]
        train = [s for s in specs if s.kind == "train"]
        check = next((by_check[c.id] for c in assignment.rubric.checks if c.exercise == ex.id
                      and c.id in by_check), None)
        section = {"id": ex.id, "title": ex.title.get(lang) or next(iter(ex.title.values())),
                   "status": check.get("status") if check else None,
                   "status_text": status_word(str(check.get("status")), lang) if check else "",
                   "mark": STATUS_MARK.get(check.get("status", ""), "") if check else "",
                   "kind": "curves" if train else ("final" if specs else "none"), "notes": []}
        if train:
            section.update(_exercise_curves(train, attributed.get(ex.id, []), references, t, image_format))
        elif specs:
            final = final or _final_block(result, assignment, references, t, image_format)
            section["final"] = final
        sections.append(section)
    standalone_final = None if final else _final_block(result, assignment, references, t, image_format)

    sha = str(result.get("notebook_sha256") or "")
    student = result.get("student") or ts["unknown_student"]
    seeds = max((len(r.seeds) for r in references.values()), default=len(assignment.seeds))
    return {
        "lang": lang,
        "t": t,
        "header": {"student": str(student), "assignment": f"{assignment.title} ({assignment.id})",
                   "grader_version": str(result.get("grader_version") or __version__),
                   "sha": sha[:12], "date": date},
        "footer": _fmt(ts["footer"], student=str(student), assignment=assignment.id, sha=sha[:12]),
        "total": f"{_pts(total)} / {_pts(max_total)}",
        "verdict": verdict,
        "verdict_kind": verdict_kind,
        "rubric": rubric,
        "exercises_intro": _fmt(ts["exercises_intro"], seeds=seeds),
        "sections": sections,
        "final": standalone_final,
        "flags": _flag_rows(result, t),
        "hints": _hints(result),
    }


# --------------------------------------------------------------------------- class summary

def _who(result: Mapping[str, Any]) -> str:
    return str(result.get("student") or result.get("submission") or
               str(result.get("notebook_sha256") or "?")[:12])


def summary_context(results: Sequence[Mapping[str, Any]], unreadable: Sequence[tuple[str, str]],
                    assignment: Assignment, *, lang: str, date: str,
                    image_format: str = plots.DEFAULT_FORMAT) -> dict[str, Any]:
    t = messages(lang)
    tsum = t["summary"]
    rub = assignment.rubric
    ordered = sorted(results, key=lambda r: (_who(r).casefold(), _who(r), str(r.get("notebook_sha256"))))
    totals = [float(r["total"]) for r in ordered if isinstance(r.get("total"), (int, float))]
    max_total = next((r["max_total"] for r in ordered if r.get("max_total") is not None), rub.max_total)
    check_ids = [c.id for c in rub.checks]
    for r in ordered:
        check_ids += [c["id"] for c in r.get("checks", ()) if c["id"] not in check_ids]
    counts = {cid: {s: 0 for s in STATUSES} for cid in check_ids}
    for r in ordered:
        for c in r.get("checks", ()):
            if c.get("status") in STATUSES:
                counts[c["id"]][c["status"]] += 1
    given = {c["id"]: c["title"] for r in ordered for c in r.get("checks", ()) if c.get("title")}
    check_rows = [(str(given.get(cid) or check_title(cid, assignment, lang)), counts[cid]) for cid in check_ids
                  if sum(counts[cid].values())]
    points, missing = [], 0
    flagged_rows, students = [], []
    for r in ordered:
        final = r.get("final") or {}
        val, test = final.get("val_accuracy"), final.get("test_accuracy")
        flags = _flag_rows(r, t)
        if isinstance(val, (int, float)) and isinstance(test, (int, float)):
            points.append((float(val), float(test), bool(flags)))
        else:
            missing += 1
        for i, f in enumerate(flags):
            flagged_rows.append({"student": _who(r), "first": i == 0, **f})
        students.append({"student": _who(r), "total": f"{_pts(r.get('total'))} / {_pts(r.get('max_total'))}",
                         "val": _acc(val), "test": _acc(test),
                         "passing": not failing_required(r, assignment), "flags": len(flags)})
    labels = {"x": tsum["scatter_x"], "y": tsum["scatter_y"], "ok": tsum["scatter_ok"],
              "flagged": tsum["scatter_flagged"], "diagonal": tsum["scatter_diagonal"],
              "gap": _fmt(tsum["scatter_gap"], gap=_thr(rub.test_val_max_gap)),
              "full": _fmt(t["final"]["full"], value=_thr(rub.final_val_full)),
              "partial": _fmt(t["final"]["partial"], value=_thr(rub.final_val_partial))}
    fmt = image_format
    hist = plots.totals_histogram(totals, float(max_total), xlabel=tsum["totals_x"], ylabel=tsum["totals_y"],
                                  fmt=fmt)
    bars = plots.status_bars(check_rows, {s: status_word(s, lang) for s in STATUSES},
                             xlabel=tsum["pass_rates_x"], fmt=fmt)
    scatter = plots.val_test_scatter(points, full=rub.final_val_full, partial=rub.final_val_partial,
                                     gap=rub.test_val_max_gap, labels=labels, fmt=fmt)
    return {
        "lang": lang,
        "t": t,
        "header": {"assignment": f"{assignment.title} ({assignment.id})", "date": date,
                   "grader_version": __version__,
                   "graded": _fmt(tsum["graded"], count=len(ordered), unreadable=len(unreadable))},
        "footer": f"{assignment.id} · {date}",
        "stats": {"mean": _pts(statistics.fmean(totals)) if totals else "—",
                  "median": _pts(statistics.median(totals)) if totals else "—",
                  "passing": f"{sum(s['passing'] for s in students)} / {len(students)}",
                  "max_total": _pts(max_total)},
        "histogram": plots.data_uri(hist, fmt),
        "status_bars": plots.data_uri(bars, fmt),
        "scatter": plots.data_uri(scatter, fmt),
        "scatter_missing": _fmt(tsum["scatter_missing"], count=missing) if missing else "",
        "students": students,
        "flagged": flagged_rows,
        "unreadable": [{"file": str(name), "reason": str(reason)} for name, reason in unreadable],
    }
