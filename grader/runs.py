"""Every training run of a notebook, code and outputs put together, with its label and reading.

A run is seen in two places that must agree: the `fit` calls the code makes (`codefacts.runs`, in
execution order, with the labels their loops or helper calls give them) and what each cell's
outputs show (`logs.parse_cell_logs`: per-epoch logs, printed histories, printed summaries).
They are paired cell by cell; a run keeps its loop's label, else the variant it trains, else the
assignment's name for it, else the label its log printed. Its validation accuracy is read as the
student reads it (the epoch EarlyStopping restored, else the last; a printed value when no
per-epoch curve was shown). Pure: values in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from .assignment import Assignment, canonical_name
from .attribution import (CURVES, FACETS, KERAS_DEFAULT_INITIALIZER, ExerciseMap, Sections, cell_index, facet_of,
                          fold, short)
from .codefacts import CodeFacts, Run
from .logs import CellLogs, Evaluation, HistoryPrint, TrainingLog, clean_terminal_text
from .notebook import Notebook


@dataclass(frozen=True)
class RunView:
    """One training run as the grader reads it: code and outputs put together.

    ``read_val`` is the validation accuracy the student reads for it: the restored best epoch
    with ``restore_best_weights``, else the last epoch; a printed value when no per-epoch curve was
    shown. ``read_rule`` says which ("restored", "last", "printed") and ``read_epoch`` the epoch.
    """

    index: int
    cell: int
    label: str | None
    exercise: str | None
    variant: str | None
    code: Run | None
    log: TrainingLog | None
    history: HistoryPrint | None
    printed: Evaluation | None
    printed_cell: int | None
    epochs: int | None
    planned_epochs: int | None
    curves: Mapping[str, tuple[float | None, ...]]
    read_val: float | None
    read_epoch: int | None
    read_rule: str | None
    excerpt: str
    val_excerpt: str | None = None
    executed: bool = True  # False for a fit in a cell that was never run (no count, no output)

    @property
    def shown(self) -> bool:
        """Whether an output shows a result of this run (a curve or a printed value, not just
        "Epoch k/N" headers whose bars a renderer dropped)."""
        return bool(self.curves) or self.printed is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cell": cell_index(self.cell), "label": self.label, "epochs": self.epochs}
        for name in CURVES:
            out[name] = [_json_float(v) for v in self.curves.get(name, ())]
        return out


def _json_float(v: float | None) -> float | None:
    return v if v is None or v == v and abs(v) != float("inf") else None


@dataclass
class _Slot:
    code: Run | None = None
    log: TrainingLog | None = None
    history: HistoryPrint | None = None
    printed: Evaluation | None = None
    printed_cell: int | None = None
    cell: int = 0

    @property
    def has_curve(self) -> bool:
        if self.log is not None and any(v is not None for v in self.log.series("val_accuracy")):
            return True
        return self.history is not None


def merge_runs(notebook: Notebook, logs: Mapping[int, CellLogs], facts: CodeFacts, assignment: Assignment,
               secs: Sections) -> tuple[RunView, ...]:
    """Every training run in notebook order, code runs paired with what the outputs show."""
    emap = ExerciseMap.build(assignment, facts)
    code_by_cell: dict[int, list[Run]] = {}
    for run in facts.runs:
        code_by_cell.setdefault(run.cell, []).append(run)
    slots: list[_Slot] = []
    for cell in notebook.code_cells:
        cell_logs = logs.get(cell.number)
        cell_slots = _pair_cell(code_by_cell.get(cell.number, []), cell_logs)
        for s in cell_slots:
            s.cell = cell.number
        if cell_logs is not None:
            leftovers = _assign_prints(cell_slots, cell_logs, cell.number)
            if not cell_slots:
                _attach_later_prints(slots, leftovers, cell.number)
        slots.extend(cell_slots)
    executed = {c.number for c in notebook.code_cells if c.execution_count is not None or c.outputs}
    views = []
    for i, s in enumerate(slots):
        exercise = emap.for_run(s.cell, secs.of(s.cell))
        view = _view(i, s, exercise, assignment, facts, logs.get(s.cell), s.cell in executed)
        if s.code is not None and s.code.evidence.cell != s.cell:
            view = replace(view, excerpt=_calling_line(notebook.cells[s.cell - 1].source, s.code) or view.excerpt)
        views.append(view)
    return tuple(views)


def _calling_line(source: str, run: Run) -> str | None:
    """The line of a cell that makes a helper defined elsewhere train: its loop, else its first call."""
    lines = [ln.strip() for ln in source.split("\n") if ln.strip() and not ln.strip().startswith(("#", "%", "!"))]
    if run.in_loop:
        loop = next((ln for ln in lines if ln.startswith("for ")), None)
        if loop:
            return short(loop)
    call = next((ln for ln in lines if "(" in ln and not ln.startswith(("def ", "import ", "from ", "print("))), None)
    return short(call) if call else None


def _compatible(code: Run, log: TrainingLog) -> bool:
    return code.epochs is None or log.epochs_planned is None or code.epochs == log.epochs_planned


def _pair_cell(code: list[Run], cell_logs: CellLogs | None) -> list[_Slot]:
    """Pair a cell's fit calls with its per-epoch logs, in order. A loop the static reading ran once
    (unknown items) may have printed several logs: they reuse its run; a log no code explains
    (a cell that did not parse) becomes a run of its own."""
    logs = list(cell_logs.runs) if cell_logs else []
    loud = [c for c in code if c.verbose != 0] or (list(code) if logs else [])
    paired: dict[int, TrainingLog] = {}  # index into loud -> log
    extra: list[tuple[int, TrainingLog, Run | None]] = []  # (after loud index, log, template run)
    i, last = 0, -1
    for log in logs:
        j = next((k for k in range(i, len(loud)) if _compatible(loud[k], log)), None)
        if j is not None and (j == i or not (last >= 0 and loud[last].in_loop and _compatible(loud[last], log))):
            paired[j] = log
            i, last = j + 1, j
        elif last >= 0 and loud[last].in_loop and _compatible(loud[last], log):
            extra.append((last, log, loud[last]))
        else:
            extra.append((last, log, None))
    # what the epochs did not pair (a misread `epochs`, a loop the reading ran once) pairs in order
    orphans = [k for k in range(len(loud)) if k not in paired and not any(e[2] is loud[k] for e in extra)]
    loose = [e for e in extra if e[2] is None]
    for k, e in zip(orphans, loose):
        paired[k] = e[1]
        extra.remove(e)
    out: list[_Slot] = []
    loud_index = {id(c): k for k, c in enumerate(loud)}
    for k in [e for e in extra if e[0] < 0]:
        out.append(_Slot(code=k[2], log=k[1]))
    for c in code:
        k = loud_index.get(id(c))
        out.append(_Slot(code=c, log=paired.get(k) if k is not None else None))
        if k is not None:
            out.extend(_Slot(code=e[2], log=e[1]) for e in extra if e[0] == k)
    return out


def _items(cell_logs: CellLogs) -> list[HistoryPrint | Evaluation]:
    """Printed results that may stand for a run's log: histories, and validation summaries."""
    items: list[Any] = list(cell_logs.history_prints)
    items += [e for e in cell_logs.evaluations
              if e.label == "validation" and e.accuracy is not None and not _is_epoch_line(e.excerpt)]
    return sorted(items, key=lambda x: x.offset)


def _is_epoch_line(text: str) -> bool:
    return bool(re.match(r"\s*(?:epoch|[ée]poca)\s*[:#]?\s*\d", text, re.I))


def _assign_prints(slots: list[_Slot], cell_logs: CellLogs, cell: int) -> list[Any]:
    """Give runs with no per-epoch log the histories / summaries their cell printed; return the rest."""
    items = _items(cell_logs)
    targets = [s for s in slots if not s.has_curve]
    left: list[Any] = []
    pos = 0
    for item in items:
        is_curve = isinstance(item, HistoryPrint)
        if is_curve and "val_accuracy" not in item.metrics and "accuracy" not in item.metrics:
            left.append(item)
            continue
        named = _named_target(targets, item)
        if named is not None:
            target = named
            pos = targets.index(named)
        else:
            while pos < len(targets) and _occupied(targets[pos], is_curve):
                pos += 1
            target = targets[pos] if pos < len(targets) else None
        if target is None or _occupied(target, is_curve):
            left.append(item)
            continue
        if is_curve:
            target.history = item
        else:
            target.printed, target.printed_cell = item, cell
    return left


def _occupied(slot: _Slot, curve: bool) -> bool:
    return slot.history is not None if curve else slot.printed is not None


def _named_target(targets: list[_Slot], item: Any) -> _Slot | None:
    text = fold(item.excerpt if isinstance(item, Evaluation) else (item.label or "") + " " + item.excerpt)
    hits = [s for s in targets if s.code is not None and s.code.label
            and re.search(r"(?<![a-z0-9_])" + re.escape(fold(s.code.label)) + r"(?![a-z0-9_])", text)]
    return hits[0] if len(hits) == 1 else None


def _attach_later_prints(slots: list[_Slot], items: list[Any], cell: int) -> None:
    """A cell that trains nothing but prints a history or a summary: it speaks of the latest run
    that shows nothing yet (``print(h.history['val_accuracy'])`` after a ``verbose=0`` fit)."""
    for item in items:
        is_curve = isinstance(item, HistoryPrint)
        if is_curve and "val_accuracy" not in item.metrics:
            continue
        if not slots:
            if is_curve and item.kind == "epoch_lines":
                slots.append(_Slot(history=item, cell=cell))
            continue
        last = slots[-1]
        if last.has_curve or _occupied(last, is_curve):
            continue
        if is_curve:
            last.history = item
        else:
            last.printed, last.printed_cell = item, cell


# ------------------------------------------------------------------------------------ one run

def _view(index: int, s: _Slot, exercise: str | None, assignment: Assignment, facts: CodeFacts,
          cell_logs: CellLogs | None, executed: bool) -> RunView:
    curves = _curves(s)
    variant = _variant(s, exercise, assignment)
    label = _label(s, exercise, variant, assignment)
    planned = s.code.epochs if s.code and s.code.epochs is not None else (s.log.epochs_planned if s.log else None)
    epochs = _epochs(s, curves, executed)
    read_val, read_epoch, rule = _read(s, curves, facts, cell_logs)
    excerpt = s.code.evidence.excerpt if s.code else (
        short(s.log.label_hint or "") if s.log else (s.history.excerpt if s.history else ""))
    val_excerpt = None
    if rule == "printed" and s.printed is not None:
        val_excerpt = s.printed.excerpt
    elif read_epoch is not None and s.log is not None and cell_logs is not None:
        val_excerpt = _epoch_line(cell_logs.text, s.log, read_epoch)
    elif read_epoch is not None and s.history is not None:
        val_excerpt = _history_line(cell_logs.text if cell_logs else "", s.history, read_epoch)
    return RunView(index=index, cell=s.cell, label=label, exercise=exercise, variant=variant, code=s.code,
                   log=s.log, history=s.history, printed=s.printed, printed_cell=s.printed_cell,
                   epochs=epochs, planned_epochs=planned, curves=curves, read_val=read_val,
                   read_epoch=read_epoch, read_rule=rule, excerpt=excerpt, val_excerpt=val_excerpt,
                   executed=executed or s.log is not None or s.history is not None)


def _curves(s: _Slot) -> dict[str, tuple[float | None, ...]]:
    source: Mapping[str, tuple[float | None, ...]] = {}
    if s.log is not None and any(any(v is not None for v in s.log.series(m)) for m in CURVES):
        source = s.log.metrics
    elif s.history is not None:
        source = s.history.metrics
    return {m: tuple(source[m]) for m in CURVES if m in source and any(v is not None for v in source[m])}


def _epochs(s: _Slot, curves: Mapping[str, tuple], executed: bool) -> int | None:
    if s.log is not None:
        return max(s.log.epochs, s.log.epochs_seen) or None
    if curves:
        return max(len(v) for v in curves.values())
    if s.code is not None and executed and s.code.epochs is not None and not _may_stop_early(s.code):
        return s.code.epochs
    return None


def _may_stop_early(run: Run) -> bool:
    return any(cb in ("early_stopping", "terminate_on_nan") or not cb.islower() for cb in run.callbacks)


def _variant(s: _Slot, exercise: str | None, assignment: Assignment) -> str | None:
    facet = facet_of(assignment, exercise)
    if facet is None:
        return None
    if s.code is not None:
        found = None
        if facet == "activations":
            found = s.code.activations[0] if s.code.activations else None
        elif facet == "initializers":
            found = s.code.initializers[0] if s.code.initializers else (
                KERAS_DEFAULT_INITIALIZER if s.code.default_initializer else None)
        else:
            found = s.code.optimizer
        if found:
            return found
    hint = (s.log.label_hint if s.log else None) or (s.history.label if s.history else None)
    return name_in_text(hint or "", FACETS[facet])


def name_in_text(text: str, table: Mapping[str, Any]) -> str | None:
    """The first canonical name of ``table`` written in free text ("Entrenando SGD ..." -> sgd)."""
    for word in re.findall(r"[A-Za-z][A-Za-z0-9_]*", text):
        name = canonical_name(word)
        if name in table:
            return name
    return None


def _label(s: _Slot, exercise: str | None, variant: str | None, assignment: Assignment) -> str | None:
    """The loop's label; in a comparison the variant (or the helper call's argument); for a single
    model the assignment's name for it ("final"); else the label its log printed."""
    code_label = short(s.code.label, 60) if s.code is not None and s.code.label else None
    if code_label and s.code is not None and s.code.label_source == "loop":
        return code_label
    if facet_of(assignment, exercise) and (code_label or variant):
        return code_label or variant
    if exercise:
        trained = {e.variant for e in assignment.experiments if e.exercise == exercise and e.kind == "train"}
        if len(trained) == 1:
            return trained.pop()
    if code_label:
        return code_label
    hint = (s.log.label_hint if s.log else None) or (s.history.label if s.history else None)
    return short(hint, 60) if hint else None


def _read(s: _Slot, curves: Mapping[str, tuple[float | None, ...]], facts: CodeFacts,
          cell_logs: CellLogs | None) -> tuple[float | None, int | None, str | None]:
    val = curves.get("val_accuracy", ())
    if any(v is not None for v in val):
        if s.code is not None and s.code.restore_best_weights and s.log is not None:
            epoch = _restored_epoch(s, curves, facts, cell_logs)
            if epoch is None:
                return None, None, None  # it restored some epoch we cannot tell
            if epoch > 0:
                return val[epoch - 1], epoch, "restored"
        last = max(i for i, v in enumerate(val) if v is not None)
        return val[last], last + 1, "last"
    if s.printed is not None:
        return s.printed.accuracy, None, "printed"
    return None, None, None


def _restored_epoch(s: _Slot, curves: Mapping[str, tuple[float | None, ...]], facts: CodeFacts,
                    cell_logs: CellLogs | None) -> int | None:
    """1-based epoch whose weights EarlyStopping(restore_best_weights) put back; 0 when it kept the
    last one (Keras 2 and tf.keras restore only when they stop early; Keras 3 always does)."""
    log = s.log
    assert log is not None and s.code is not None
    if log.restored_epoch is not None and log.restored_epoch in log.epoch_numbers:
        return log.epoch_numbers.index(log.restored_epoch) + 1
    stopped = log.early_stopped or (log.epochs_planned is not None and log.epochs < log.epochs_planned)
    keras3 = bool(cell_logs and "\u2501" in cell_logs.text) or (bool(log.metrics) and next(iter(log.metrics)) != "loss")
    if not stopped and not keras3:
        return 0
    cb = next((c for c in facts.callbacks if c.name == "early_stopping" and s.code.cell in c.cells
               and dict(c.params).get("restore_best_weights") is True), None)
    params = dict(cb.params) if cb else {}
    monitor = str(params.get("monitor", "val_loss"))
    key = "val_" + _base_metric(monitor[4:]) if monitor.startswith("val_") else _base_metric(monitor)
    series = curves.get(key) or (log.series(key) if key in log.metrics else ())
    if not series or any(v is None for v in series):
        return None
    mode = str(params.get("mode", "auto"))
    maximize = mode == "max" or (mode != "min" and ("acc" in monitor or "auc" in monitor))
    delta = abs(float(params["min_delta"])) if isinstance(params.get("min_delta"), (int, float)) else 0.0
    best, best_i = series[0], 0
    for i, v in enumerate(series[1:], 1):
        if (v - delta > best) if maximize else (v + delta < best):
            best, best_i = v, i
    return best_i + 1


def _base_metric(name: str) -> str:
    return "accuracy" if name in ("acc", "accuracy", "categorical_accuracy", "sparse_categorical_accuracy") else name


def _epoch_line(text: str, log: TrainingLog, epoch: int) -> str | None:
    """The output line that shows ``epoch`` of a logged run (for evidence excerpts)."""
    lines = [ln for ln in text[log.start_offset:log.end_offset].split("\n")
             if "val_" in ln and ":" in ln and not _is_epoch_line(ln)]
    if len(lines) == len(log.epoch_numbers) and 0 < epoch <= len(lines):
        line = _BAR.sub("", clean_terminal_text(lines[epoch - 1]))
        return short(f"Epoch {log.epoch_numbers[epoch - 1]}: {line.strip().lstrip('- ')}")
    return None


def _history_line(text: str, history: HistoryPrint, epoch: int) -> str:
    """The printed line of ``epoch`` when a callback printed one line per epoch, else the print."""
    if history.kind == "epoch_lines" and text:
        lines = [ln for ln in text[history.offset:].split("\n") if _is_epoch_line(ln)]
        if 0 < epoch <= len(lines):
            return short(lines[epoch - 1].strip())
    return history.excerpt


def squash_bars(text: str) -> str:
    """An output excerpt without its progress bar ("313/313 [=====] - 1s" -> "313/313 - 1s")."""
    return re.sub(r"\s*(?:\[[=>.]{3,}\]|\u2501{2,})", "", text)


_BAR = re.compile(r"\[[=>.]{3,}\]|\u2501{2,}|\s\d+/\d+\s|^\s*\d+/\d+\s")


# ------------------------------------------------------------------------------------ per exercise

@dataclass(frozen=True)
class ExerciseWork:
    """The runs attributed to one exercise and the variants of its facet they train, in order."""

    id: str
    runs: tuple[RunView, ...] = ()
    variants: tuple[str, ...] = ()
    cells: tuple[int, ...] = field(default=())


def by_exercise(runs: Sequence[RunView], assignment: Assignment) -> dict[str, ExerciseWork]:
    out = {}
    for ex in assignment.exercises:
        mine = tuple(r for r in runs if r.exercise == ex.id)
        variants = tuple(dict.fromkeys(r.variant for r in mine if r.variant))
        out[ex.id] = ExerciseWork(ex.id, mine, variants, tuple(dict.fromkeys(r.cell for r in mine)))
    return out
