"""Read what Keras training printed into a notebook: per-epoch logs, printed histories, test scores.

The grader never re-runs student code, so the saved outputs are the evidence. They come in many
shapes: Keras 2 progress bars rewritten with ``\\r`` and ``\\b``, Keras 2 ``verbose=2`` lines,
tf.keras 2.x bars, Keras 3 bars with ANSI colours and ``━``, callbacks' messages, TensorFlow
warnings in between, several ``fit`` calls in one cell, ``print(history.history)``, evaluate
results as lists or as sentences in Spanish or English. Everything here is pure text in, frozen
values out; it never raises on odd text and stays linear in the size of the output.

All offsets point into ``clean_terminal_text(text)`` (every function cleans its input first;
cleaning is idempotent), so callers can cut evidence excerpts from the same string.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

__all__ = ["UNNAMED", "CellLogs", "Evaluation", "HistoryPrint", "TrainingLog", "clean_terminal_text",
           "parse_cell_logs", "parse_evaluations", "parse_history_prints", "parse_training_logs"]

UNNAMED = "unknown"  # metric name of a printed list whose text does not say what it is

# ---------------------------------------------------------------- terminal clean-up

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_BACKSPACES = re.compile(r"\x08+")


def clean_terminal_text(text: str) -> str:
    """What a terminal would finally show: no ANSI codes, ``\\r`` rewrites and ``\\b`` applied.

    Keras progress bars rewrite one line many times; only the last rewrite of each line is kept,
    which for a finished epoch is the one that holds the epoch's metrics.
    """
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\r" not in text and "\x08" not in text:
        return text
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "\r" in line:
            lines[i] = _last_rewrite(line)
        elif "\x08" in line:
            lines[i] = _apply_backspaces(line)
    return "\n".join(lines)


def _last_rewrite(line: str) -> str:
    """The last ``\\r``-separated segment with visible text (a trailing bare ``\\r`` erases nothing)."""
    for seg in reversed(line.split("\r")):
        if "\x08" in seg:
            seg = _apply_backspaces(seg)
        if seg.strip():
            return seg
    return ""


def _apply_backspaces(seg: str) -> str:
    """Each ``\\b`` erases the character before it (what Jupyter does when it renders a stream)."""
    kept: list[str] = []
    pos = 0
    for m in _BACKSPACES.finditer(seg):
        kept.append(seg[pos:m.start()])
        n = m.end() - m.start()
        while n and kept:
            last = kept.pop()
            if len(last) > n:
                kept.append(last[:-n])
                n = 0
            else:
                n -= len(last)
        pos = m.end()
    kept.append(seg[pos:])
    return "".join(kept)


# ---------------------------------------------------------------- values

def _jsonable(v: Any) -> Any:
    """Tuples as lists, and NaN/Infinity as null (JSON has neither; a diverged value reads null)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def _frozen(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, Mapping):
        return {k: _frozen(x) for k, x in v.items()}
    return v


class _Json:
    """``to_dict``/``from_dict`` for the frozen values below (field names are the JSON keys)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        return cls(**{f.name: _frozen(d[f.name]) for f in fields(cls) if f.name in d})  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrainingLog(_Json):
    """One ``fit`` call as its per-epoch log shows it.

    ``metrics`` maps canonical names (``accuracy``, ``val_accuracy``, ``loss``, ``val_loss``, and
    any other metric under its own name) to one value per epoch in ``epoch_numbers``; ``None``
    where an epoch's line lacked that metric. ``epochs_seen`` counts "Epoch k/N" headers, which
    also survive when a renderer dropped the progress bars holding the metrics.
    """

    epochs_planned: int | None
    epochs: int
    epochs_seen: int
    epoch_numbers: tuple[int, ...]
    metrics: Mapping[str, tuple[float | None, ...]]
    label_hint: str | None
    early_stopped: bool
    restored_epoch: int | None
    lr_reductions: tuple[tuple[int, float], ...]
    train_samples: int | None
    val_samples: int | None
    progress_total: int | None  # N of the "n/N" counter: samples in Keras 2, batches later
    start_offset: int
    end_offset: int

    def series(self, name: str) -> tuple[float | None, ...]:
        return self.metrics.get(name, ())


@dataclass(frozen=True)
class HistoryPrint(_Json):
    """Per-epoch values printed without a Keras log: a history dict, a list, or custom lines.

    ``kind`` is ``dict`` (``print(history.history)``), ``list`` (``print(h.history['val_acc'])``;
    the metric is named from the text before the list, else :data:`UNNAMED`) or ``epoch_lines``
    ("Epoch 3: val_accuracy=0.8612", one line per epoch).
    """

    kind: str
    metrics: Mapping[str, tuple[float | None, ...]]
    label: str | None
    excerpt: str
    offset: int

    @property
    def epochs(self) -> int:
        return max((len(v) for v in self.metrics.values()), default=0)


@dataclass(frozen=True)
class Evaluation(_Json):
    """A loss/accuracy result reported outside the per-epoch log (usually ``model.evaluate``).

    ``label`` is ``"test"``, ``"validation"`` or None when the text does not say which set it
    is; ``kind`` is ``list`` (``[loss, acc]``), ``progress`` (a Keras evaluate bar) or ``line``.
    """

    loss: float | None
    accuracy: float | None
    label: str | None
    excerpt: str
    offset: int
    kind: str = "line"


@dataclass(frozen=True)
class CellLogs:
    """Everything this module reads from one cell's output text, cleaned once (not serialized:
    its parts are)."""

    text: str
    runs: tuple[TrainingLog, ...]
    history_prints: tuple[HistoryPrint, ...]
    evaluations: tuple[Evaluation, ...]


# ---------------------------------------------------------------- shared regexes and helpers

_NUM = r"[-+]?(?:nan|inf|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)"
_KERAS_PAIR = re.compile(r"(?:^|\s)-\s+([A-Za-z_][\w.]*)\s*:\s*(" + _NUM + r")(?=\s|$)", re.I)
_LOOSE_PAIR = re.compile(r"(?<![\w.])([A-Za-z_][\w]*)\s*[:=]?\s*(" + _NUM + r")(?![\w.])", re.I)
_PROGRESS = re.compile(r"^\s*(\d+)/(\d+)(?:\s|$)")
_HEADER = re.compile(r"^\s*Epoch\s+(\d+)\s*/\s*(\d+)\s*(.*)$", re.I)
_CALLBACK = re.compile(r"^\s*Epoch\s+0*(\d+)\s*:\s*(.*)$")
_LR = re.compile(r"reducing learning rate to\s*(" + _NUM + ")", re.I)
_RESTORE = re.compile(r"^\s*Restoring model weights from the end of the best epoch(?:\s*:\s*(\d+))?", re.I)
_CALLBACK_MSG = re.compile(r"ReduceLROnPlateau|early stopping|improve|saving model|restor", re.I)
_SAMPLES = re.compile(r"^\s*Train on (\d+) samples(?:, validate on (\d+) samples)?", re.I)
_NOISE = re.compile(
    r"^\s*(?:WARNING|INFO|ERROR|W\d{4}|I\d{4}|E\d{4}|\d{4}-\d\d-\d\d[ T]\d\d:\d\d|Instructions for updating"
    r"|Using (?:TensorFlow|Theano) backend|Downloading data from|Model:|Total params|Trainable params"
    r"|Non-trainable params|Optimizer params|Layer \(type\)|warnings\.warn|super\(\)\.__init__"
    r"|<(?:keras|tensorflow|matplotlib|Figure)[^>]* at 0x[0-9a-f]+>)",
    re.I)
# Warnings, model-summary rows (Keras 2 "(None, 256)", Keras 3 "│ dense │") and rules.
_NOISE_ANYWHERE = re.compile(r"Warning:|\(None,|Output Shape|^\s*[│┃]|^[\s_=\-\u2500-\u257f]+$")


def _canonical_metric(name: str) -> str:
    n = name.strip().lower()
    prefix = "val_" if n.startswith("val_") else ""
    base = n[len(prefix):]
    if base in ("acc", "categorical_accuracy", "sparse_categorical_accuracy"):
        base = "accuracy"
    return prefix + base


def _metricish(name: str) -> bool:
    """Whether a canonical name is a training metric (not "took", "of", "batch"...)."""
    base = name[4:] if name.startswith("val_") else name
    return ("acc" in base or "loss" in base or base in ("lr", "learning_rate", "mae", "mse", "auc")
            or _metric_from_label(base) is not None)


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _pairs(rx: re.Pattern[str], text: str) -> dict[str, float | None]:
    """name -> value for the pairs on a line; an alias never overrides the canonical name."""
    raw = [(m.group(1), _to_float(m.group(2))) for m in rx.finditer(text)]
    out: dict[str, float | None] = {}
    for name, value in raw:
        key = _canonical_metric(name)
        if key not in out or name.lower() == key:
            out[key] = value
    out.pop("eta", None)
    return out


class _Lines:
    """The cleaned text split once into lines with their start offsets."""

    def __init__(self, text: str) -> None:
        self.text = clean_terminal_text(text)
        self.lines = self.text.split("\n")
        self.starts: list[int] = []
        pos = 0
        for line in self.lines:
            self.starts.append(pos)
            pos += len(line) + 1
        self._next_cache: dict[str, tuple[int, int]] = {}
        self._lower: str | None = None

    def flat_close(self, open_pos: int) -> int | None:
        """Offset of the ``]`` closing the ``[`` at ``open_pos`` when no ``[`` comes in between
        (histories are flat lists); None otherwise.

        The next-bracket lookups are cached, so calls with increasing offsets stay linear even
        over thousands of unclosed brackets.
        """
        close = self._next("]", open_pos + 1)
        if close is None or (self._next("[", open_pos + 1) or len(self.text)) < close:
            return None
        return close

    def _next(self, char: str, pos: int) -> int | None:
        start, found = self._next_cache.get(char, (-1, -1))
        if not start <= pos <= found:
            found = self.text.find(char, pos)
            found = len(self.text) if found < 0 else found
            self._next_cache[char] = (pos, found)
        return found if found < len(self.text) else None

    def containing(self, needles: tuple[str, ...]) -> list[int]:
        """Indices of the lines holding any needle (case-insensitive), found with ``str.find`` so
        that the lines holding none, usually nearly all, cost nothing in Python."""
        if self._lower is None:
            self._lower = self.text.lower()
        if len(self._lower) != len(self.text):  # a rare letter whose lower case is longer ("İ")
            return list(range(len(self.lines)))
        low, hits = self._lower, set()
        for needle in needles:
            pos = low.find(needle)
            while pos >= 0:
                i = bisect_right(self.starts, pos) - 1
                hits.add(i)
                pos = low.find(needle, self.starts[i] + len(self.lines[i]) + 1)
        return sorted(hits)

    def end(self, i: int) -> int:
        return self.starts[i] + len(self.lines[i])

    def is_noise(self, j: int) -> bool:
        """Lines that are never a label: TF/Python warnings, model summaries, bare progress bars,
        printed number lists. Decided per line (with a look at the line above), on demand."""
        line = self.lines[j]
        stripped = line.strip()
        if not stripped or _NOISE.match(line) or _NOISE_ANYWHERE.search(line):
            return True
        if _PROGRESS.match(line) and not _KERAS_PAIR.search(line):
            return True
        if stripped[0] == "[" and stripped[-1] == "]" and _numeric_list(stripped[1:-1]) is not None:
            return True
        above = self.lines[j - 1] if j else ""
        # TF's advice after "Instructions for updating:", or a warning's indented source line.
        return (above.strip().startswith("Instructions for updating")
                or (line[:1].isspace() and bool(_NOISE.match(above) or "Warning:" in above)))

    def hint_before(self, i: int, stop: int) -> str | None:
        """The nearest line above ``i`` (down to ``stop``) that is neither noise nor a log line."""
        for j in range(i - 1, max(stop, i - 400) - 1, -1):
            if self.is_noise(j):
                continue
            line = self.lines[j]
            if _is_log_line(line):
                return None
            return line.strip()[:200]
        return None

    def excerpt(self, i: int) -> str:
        line = self.lines[i].strip()
        return line if len(line) <= 120 else line[:117] + "..."


class _Spans:
    """Sorted, disjoint offset ranges, asked about lines in increasing order (linear overall)."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        self.spans = sorted(spans)
        self.i = 0

    def overlaps(self, start: int, end: int) -> bool:
        while self.i < len(self.spans) and self.spans[self.i][1] <= start:
            self.i += 1
        return self.i < len(self.spans) and self.spans[self.i][0] <= end


def _is_log_line(line: str) -> bool:
    return bool(_HEADER.match(line) or _CALLBACK.match(line) or _SAMPLES.match(line)
                or _RESTORE.match(line) or ((" - " in line or line.lstrip().startswith("- "))
                                             and _KERAS_PAIR.search(line)))


# ---------------------------------------------------------------- per-epoch training logs

@dataclass
class _Candidate:
    """A metric line that may close an epoch; its values are parsed only if it is chosen."""

    line: int
    has_val: bool
    progress: tuple[int, int] | None
    values: dict[str, float | None] | None = None


@dataclass
class _Run:
    first: int  # index of the first line (the "Train on" line or the first header)
    last: int
    planned: int | None = None
    headers: list[int] = field(default_factory=list)
    blocks: dict[int, list[_Candidate]] = field(default_factory=dict)
    totals: dict[int, int] = field(default_factory=dict)  # first "n/N" total seen in each epoch
    early: bool = False
    restored: int | None = None
    lr: list[tuple[int, float]] = field(default_factory=list)
    samples: tuple[int | None, int | None] = (None, None)

    def accepts(self, epoch: int, planned: int) -> bool:
        """Whether an "Epoch k/N" header continues this run rather than starting the next fit."""
        if not self.headers:
            return True
        return planned == self.planned and epoch > self.headers[-1]


def _choose(cands: list[_Candidate], total: int | None) -> _Candidate | None:
    """The line that closed an epoch: the last one with validation metrics, else the last complete
    bar with the epoch's own step count (so a following evaluate bar is not taken for it)."""
    with_val = [c for c in cands if c.has_val]
    if with_val:
        return with_val[-1]
    if total is None:
        return cands[-1] if cands else None
    for c in reversed(cands):
        if c.progress and c.progress[1] == total:
            return c
    return None


def _finish(run: _Run, lines: _Lines, stop: int) -> tuple[TrainingLog, int] | None:
    """The run as a TrainingLog, and the index of its last line."""
    if not run.headers and not run.blocks:
        return None
    chosen: list[tuple[int, _Candidate]] = []
    for epoch in sorted(run.blocks):
        c = _choose(run.blocks[epoch], run.totals.get(epoch))
        if c is not None:
            if c.values is None:
                c.values = _pairs(_KERAS_PAIR, lines.lines[c.line])
            chosen.append((epoch, c))
    names: list[str] = []
    for _, c in chosen:
        names.extend(k for k in c.values or () if k not in names)
    metrics = {k: tuple((c.values or {}).get(k) for _, c in chosen) for k in names}
    last = max([run.last] + [c.line for _, c in chosen])
    totals = [c.progress[1] for _, c in chosen if c.progress]
    seen_last = max([run.headers[-1] if run.headers else 0] + [e for e, _ in chosen])
    planned = run.planned
    return TrainingLog(
        epochs_planned=planned, epochs=len(chosen), epochs_seen=len(set(run.headers)),
        epoch_numbers=tuple(e for e, _ in chosen), metrics=metrics,
        label_hint=lines.hint_before(run.first, stop),
        early_stopped=run.early or (planned is not None and seen_last < planned),
        restored_epoch=run.restored, lr_reductions=tuple(run.lr),
        train_samples=run.samples[0], val_samples=run.samples[1],
        progress_total=totals[-1] if totals else None,
        start_offset=lines.starts[run.first], end_offset=lines.end(last),
    ), last


def _training_logs(lines: _Lines) -> tuple[TrainingLog, ...]:
    logs: list[TrainingLog] = []
    run: _Run | None = None
    epoch: int | None = None
    stop = 0  # label hints never reach back into the previous run

    def close() -> None:
        nonlocal run, stop
        if run is not None:
            done = _finish(run, lines, stop)
            if done is not None:
                logs.append(done[0])
                stop = done[1] + 1
        run = None

    for i, line in enumerate(lines.lines):
        if "poch" in line:
            m = _HEADER.match(line)
            if m:
                k, n = int(m.group(1)), int(m.group(2))
                if run is None or not run.accepts(k, n):
                    if run is not None and (run.headers or run.blocks):
                        close()
                    if run is None:
                        run = _Run(first=i, last=i)
                run.planned, epoch, run.last = n, k, i
                run.headers.append(k)
                rest = m.group(3)
                if rest:
                    values = _pairs(_KERAS_PAIR, rest) or {
                        name: v for name, v in _pairs(_LOOSE_PAIR, rest).items() if _metricish(name)}
                    if values:
                        has_val = any(name.startswith("val_") for name in values)
                        run.blocks.setdefault(k, []).append(_Candidate(i, has_val, None, values))
                continue
            m = _CALLBACK.match(line)
            if m and _CALLBACK_MSG.search(m.group(2)):
                if run is not None:
                    msg = m.group(2)
                    if "early stopping" in msg.lower():
                        run.early = True
                    lr = _LR.search(msg)
                    if lr and _to_float(lr.group(1)) is not None:
                        run.lr.append((int(m.group(1)), float(lr.group(1))))
                    run.last = i
                continue
        if "Train on" in line[:20]:
            m = _SAMPLES.match(line)
            if m:
                close()
                run = _Run(first=i, last=i, samples=(int(m.group(1)),
                                                     int(m.group(2)) if m.group(2) else None))
                epoch = None
                continue
        if run is None:
            continue
        if "Restoring model weights" in line:
            m = _RESTORE.match(line)
            if m:
                run.restored = int(m.group(1)) if m.group(1) else run.restored
                run.last = i
                continue
        if epoch is None or "- " not in line:
            continue
        p = _PROGRESS.match(line)
        prog = (int(p.group(1)), int(p.group(2))) if p else None
        if prog:
            run.totals.setdefault(epoch, prog[1])
            if prog[0] < prog[1]:
                continue  # an unfinished bar never closes an epoch
        if ":" in line and _KERAS_PAIR.search(line):
            run.blocks.setdefault(epoch, []).append(_Candidate(i, "- val_" in line, prog))
    close()
    return tuple(logs)


def parse_training_logs(text: str) -> tuple[TrainingLog, ...]:
    """One TrainingLog per ``fit`` call whose "Epoch k/N" log appears in ``text``, in order."""
    return _training_logs(_Lines(text))


# ---------------------------------------------------------------- printed histories

_DICT_KEY = re.compile(r"""['"]([A-Za-z_][\w]*)['"]\s*:\s*(?:array\()?\[""")
_WRAPPERS = re.compile(r"(?:np|numpy)\.(?:float(?:16|32|64)?|double)\(|array\(|dtype=\w+|\)")
_LIST_NUM = re.compile(r"(?<![\w.])" + _NUM + r"(?![\w.])", re.I)
_EPOCH_LINE = re.compile(r"^\s*(?:epoch|[ée]poca)\s*[:#]?\s*(\d+)(?!\s*/\s*\d)\s*[:,|\-–]?\s*(.*)$", re.I)


def _numeric_list(body: str) -> tuple[float | None, ...] | None:
    """Floats of a flat list repr (Python, numpy, ``np.float64(...)``); None if it holds anything
    else (nested lists are predictions or images, not a history)."""
    if "[" in body:
        return None
    body = _WRAPPERS.sub(" ", body)
    values = [_to_float(m.group()) for m in _LIST_NUM.finditer(body)]
    if not values or _LIST_NUM.sub(" ", body).strip(" \t\n,[]"):
        return None
    return tuple(values)


def _metric_from_label(label: str) -> str | None:
    """A history metric named in free text ("val_acc", "Validation accuracy", "pérdida")."""
    low = label.lower()
    if re.search(r"(?<![a-z])test|prueba", low):
        return None
    val = "val_" if re.search(r"(?<![a-z])val|validaci", low) else ""
    if re.search(r"acc|precisi|exactitud|acierto", low):
        return val + "accuracy"
    if re.search(r"loss|p[ée]rdida|perdida", low):
        return val + "loss"
    if re.search(r"(?<![a-z])lr(?![a-z])|learning.rate", low):
        return "learning_rate"
    return None


def _history_prints(lines: _Lines) -> tuple[HistoryPrint, ...]:
    text = lines.text
    found: list[HistoryPrint] = []
    consumed_until = 0
    # 1. dict reprs: consecutive 'key': [numbers] entries form one print.
    group: dict[str, tuple[float | None, ...]] = {}
    group_start = group_end = 0
    spans: list[tuple[int, int]] = []
    for m in _DICT_KEY.finditer(text):
        if m.start() < consumed_until:
            continue
        close_at = lines.flat_close(m.end() - 1)
        if close_at is None:
            continue
        values = _numeric_list(text[m.end():close_at])
        consumed_until = close_at + 1
        if values is None:
            continue
        if group and not re.fullmatch(r"[\s,)]*", text[group_end:m.start()]):
            found.extend(_dict_print(group, text, group_start))
            spans.append((group_start, group_end))
            group = {}
        if not group:
            group_start = m.start()
        group[_canonical_metric(m.group(1))] = values
        group_end = consumed_until
    if group:
        found.extend(_dict_print(group, text, group_start))
        spans.append((group_start, group_end))
    # 2. bare or labelled lists, and 3. custom per-epoch lines.
    series: dict[str, list[float | None]] = {}
    series_first = last_epoch = -1
    skip_until = 0

    def flush() -> None:
        nonlocal series, series_first
        if series:
            n = max(len(v) for v in series.values())
            metrics = {k: tuple(v + [None] * (n - len(v))) for k, v in series.items()}
            found.append(HistoryPrint("epoch_lines", metrics, lines.hint_before(series_first, 0),
                                      lines.excerpt(series_first), lines.starts[series_first]))
        series, series_first = {}, -1

    in_dict = _Spans(spans)
    for i in lines.containing(("epoch", "época", "epoca", "[")):
        line, start = lines.lines[i], lines.starts[i]
        if start < skip_until or in_dict.overlaps(start, start + len(line)):
            continue
        m = _EPOCH_LINE.match(line) if "poc" in line[:12].lower() else None
        if m and not _CALLBACK_MSG.search(m.group(2)):
            values = {k: v for k, v in _pairs(_LOOSE_PAIR, m.group(2)).items() if _metricish(k)}
            if values:
                epoch = int(m.group(1))
                if epoch <= last_epoch:
                    flush()
                if series_first < 0:
                    series_first = i
                n = max((len(v) for v in series.values()), default=0)
                for k, v in values.items():
                    series.setdefault(k, [None] * n).append(v)
                for k in series:
                    if k not in values:
                        series[k].append(None)
                last_epoch = epoch
                continue
        if "[" not in line:
            continue
        open_at = start + line.index("[")
        close_at = lines.flat_close(open_at)
        if close_at is None:
            continue
        body = text[open_at + 1:close_at]
        values = _numeric_list(body) if "=" not in body else None  # "[====>...]" is a bar
        if values is None or _is_log_line(line):
            continue
        skip_until = close_at + 1
        label = line[:line.index("[")].strip().rstrip(":=").strip() or None
        if values is None or (label and (label.endswith("(") or _split_of(label) == "test")):
            continue  # a call's argument, or per-model test results (see parse_evaluations)
        name = _metric_from_label(label) if label else None
        floats = re.search(r"\d\.\d|\de-|nan", body) is not None
        if name or (len(values) >= 3 and floats):
            found.append(HistoryPrint("list", {name or UNNAMED: values}, label,
                                      lines.excerpt(i), start))
    flush()
    return tuple(sorted(found, key=lambda h: h.offset))


def _dict_print(group: dict[str, tuple[float | None, ...]], text: str, start: int) -> list[HistoryPrint]:
    if not any(k in ("loss", "accuracy", "val_loss", "val_accuracy") or "acc" in k or "loss" in k
               for k in group):
        return []
    line_end = text.find("\n", start)
    line = text[start:line_end if line_end >= 0 else len(text)].strip()
    excerpt = line if len(line) <= 120 else line[:117] + "..."
    return [HistoryPrint("dict", dict(group), None, excerpt, start)]


def parse_history_prints(text: str) -> tuple[HistoryPrint, ...]:
    """Histories printed instead of (or besides) a Keras log, in order of appearance."""
    return _history_prints(_Lines(text))


# ---------------------------------------------------------------- test / validation results

# Free-text results are read word by word: a word's role comes from a table, not a regex.
_EVAL_TOKEN = re.compile(r"[^\W\d_]+|(\d+\.\d+(?:[eE][-+]?\d+)?|\.\d+|\d+[eE][-+]?\d+|\d+(?=\s*%))(\s*%)?|\d+")
_EVAL_ROLE = {
    **dict.fromkeys(("accuracy", "acc", "precisión", "precision", "exactitud", "acierto", "aciertos"), "acc"),
    **dict.fromkeys(("loss", "pérdida", "perdida"), "loss"),
    **dict.fromkeys(("test", "testing", "prueba"), "test"),
    **dict.fromkeys(("val", "valid", "validation", "validación", "validacion"), "val"),
    "nan": "nan",
}
_EVAL_WORDS = ("acc", "loss", "precisi", "rdida", "exactitud", "acierto")  # substrings: faster than a regex


def _has_eval_words(line: str) -> bool:
    low = line.lower()
    return any(w in low for w in _EVAL_WORDS)


def _eval_from_line(line: str) -> list[tuple[str | None, float | None, float | None]]:
    """(label, loss, accuracy) per set named on a free-text line like "Test accuracy: 87.6%".

    A number belongs to the metric word before it ("Test loss: 0.35"); a number with no metric
    before it waits for one later on the line ("un 87.6% de acierto en test").
    """
    results: dict[str | None, list[float | None]] = {}
    metric = split = carried = None
    orphan: tuple[str, str | None] | None = None

    def put(metric: str, num: str, pct: str | None) -> None:
        value = _to_float(num)
        if value is not None and metric == "acc" and (pct or 1.0 < value <= 100.0):
            value = round(value / 100.0, 12)
        slot = results.setdefault(split or carried, [None, None])
        idx = 0 if metric == "loss" else 1
        if slot[idx] is None:
            slot[idx] = value

    for m in _EVAL_TOKEN.finditer(line):
        num, pct = m.group(1, 2)
        role = None if num else _EVAL_ROLE.get(m.group().lower())
        if role == "nan":
            num = "nan"
        if num:
            if m.start() and line[m.start() - 1] in "._" or line[m.end():m.end() + 1].isalpha():
                continue  # part of a name ("v1.2", "model_0.5x")
            if metric:
                put(metric, num, pct)
                carried, metric, split, orphan = split or carried, None, None, None
            else:
                orphan = (num, pct)
        elif role in ("acc", "loss"):
            metric = role
        elif role:
            split = "test" if role == "test" else "validation"
    if metric and orphan:
        put(metric, *orphan)
    return [(label, v[0], v[1]) for label, v in results.items()
            if v[1] is None or v[1] != v[1] or 0.0 <= v[1] <= 1.0]


def _split_of(label: str | None) -> str | None:
    if not label:
        return None
    low = label.lower()
    if re.search(r"(?<![a-z])(?:test|prueba)", low):
        return "test"
    if re.search(r"(?<![a-z])val|validaci", low):
        return "validation"
    return None


def _evaluations(lines: _Lines, runs: tuple[TrainingLog, ...]) -> tuple[Evaluation, ...]:
    in_run = _Spans([(r.start_offset, r.end_offset) for r in runs])
    found: list[tuple[int, Evaluation]] = []  # (line index, evaluation)
    for i in lines.containing(_EVAL_WORDS + ("[",)):  # no other line can hold a result
        line = lines.lines[i]
        stripped = line.lstrip()
        if not stripped or len(line) > 400:
            continue
        first = stripped[0]
        start = lines.starts[i]
        if in_run.overlaps(start, start):
            continue
        if first in "EeÉé" and (_HEADER.match(line) or _CALLBACK.match(line) or _EPOCH_LINE.match(line)):
            continue
        p = _PROGRESS.match(line)
        if p or line.lstrip().startswith("- "):  # a Keras bar or verbose=2 line outside any run
            values = _pairs(_KERAS_PAIR, line)
            if (p and int(p.group(1)) >= int(p.group(2)) and ("accuracy" in values or "loss" in values)
                    and not any(k.startswith("val_") for k in values)):
                found.append((i, Evaluation(values.get("loss"), values.get("accuracy"), None,
                                            lines.excerpt(i), start, "progress")))
            continue
        if "{" in line and "[" in line:
            continue  # a history dict: parse_history_prints reads those
        if "[" in line:
            at = line.index("[")
            close = line.find("]", at)
            if close > at:
                values = _numeric_list(line[at + 1:close])
                label = line[:at].strip().rstrip(":=").strip()
                if values and len(values) == 2 and (not label or _split_of(label) or
                                                     re.search(r"score|result|eval", label, re.I)):
                    loss, acc = values
                    if acc is not None and 0.0 <= acc <= 1.0 and (loss is None or loss >= 0):
                        found.append((i, Evaluation(loss, acc, _split_of(label), lines.excerpt(i),
                                                    start, "list")))
                continue
        if not _has_eval_words(line) or lines.is_noise(i):
            continue
        for label, loss, acc in _eval_from_line(line):
            found.append((i, Evaluation(loss, acc, label, lines.excerpt(i), start, "line")))
    return tuple(_merge_adjacent(found, lines))


def _agree(a: float | None, b: float | None) -> bool:
    return a is None or b is None or abs(a - b) <= 1e-3 or (a != a and b != b)


def _precise(a: float | None, b: float | None) -> float | None:
    """Of one value printed twice, the one with more digits (a bar rounds to 4 decimals)."""
    if a is None or b is None:
        return b if a is None else a
    return b if len(repr(b)) > len(repr(a)) else a


def _merge_adjacent(found: list[tuple[int, Evaluation]], lines: _Lines) -> list[Evaluation]:
    """One result printed twice in a row ("[0.35, 0.87]" then "Test accuracy: 0.87", or a loss line
    then an accuracy line) becomes one Evaluation, keeping the most precise value of each."""
    merged: list[tuple[int, Evaluation]] = []
    for i, ev in found:
        if merged:
            j, prev = merged[-1]
            near = i - j <= 3 and all(not lines.lines[k].strip() for k in range(j + 1, i))
            labels_ok = prev.label is None or ev.label is None or prev.label == ev.label
            overlap = ((prev.loss is not None and ev.loss is not None)
                       or (prev.accuracy is not None and ev.accuracy is not None))
            if (near and labels_ok and _agree(prev.loss, ev.loss) and _agree(prev.accuracy, ev.accuracy)
                    and (not overlap or prev.kind != ev.kind)):  # two sentences = two models
                excerpt = prev.excerpt if prev.excerpt == ev.excerpt else f"{prev.excerpt} / {ev.excerpt}"
                merged[-1] = (i, Evaluation(
                    loss=_precise(prev.loss, ev.loss), accuracy=_precise(prev.accuracy, ev.accuracy),
                    label=prev.label or ev.label,
                    excerpt=excerpt if len(excerpt) <= 120 else excerpt[:117] + "...",
                    offset=prev.offset, kind="list" if "list" in (prev.kind, ev.kind) else prev.kind))
                continue
        merged.append((i, ev))
    return [ev for _, ev in merged]


def parse_evaluations(text: str) -> tuple[Evaluation, ...]:
    """Loss/accuracy results reported outside the training logs, in order of appearance."""
    lines = _Lines(text)
    return _evaluations(lines, _training_logs(lines))


def parse_cell_logs(text: str) -> CellLogs:
    """All three readings of one cell's output text, cleaning it once."""
    lines = _Lines(text)
    runs = _training_logs(lines)
    return CellLogs(text=lines.text, runs=runs, history_prints=_history_prints(lines),
                    evaluations=_evaluations(lines, runs))
