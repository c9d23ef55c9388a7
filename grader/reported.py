"""What a notebook reports as its results: the final model, its validation and test accuracy, and
the accuracies its markdown claims.

The final model is the one the student presents as final: the last run of the assignment's
final-model exercise, or the candidate an output or a markdown cell names as chosen ("Mejor
modelo: l2"); with no such exercise answered, the last run that belongs to no other exercise.
Its validation accuracy is read as the student reads it (see `attribution.RunView.read_val`).
The test accuracy is the first test result printed after that model was trained. A percentage in
markdown that no output shows is an unverified claim. Pure: values in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .attribution import Sections, cell_index, fold, short
from .codefacts import CodeFacts
from .logs import CellLogs, Evaluation
from .notebook import Notebook
from .runs import RunView


@dataclass(frozen=True)
class TestResult:
    cell: int
    accuracy: float
    excerpt: str


@dataclass(frozen=True)
class Final:
    """The model presented as final and the two numbers the rubric reads from it."""

    run: RunView | None
    val_accuracy: float | None
    cell_val: int | None
    val_excerpt: str | None
    test: TestResult | None
    chosen_by: str | None  # the line that named the chosen candidate, if any
    cell_test: int | None = None  # the test result's cell, else the cell whose code evaluates on test

    @property
    def test_accuracy(self) -> float | None:
        return self.test.accuracy if self.test else None

    def to_dict(self) -> dict[str, float | int | None]:
        return {"val_accuracy": _finite(self.val_accuracy), "test_accuracy": _finite(self.test_accuracy),
                "cell_val": cell_index(self.cell_val), "cell_test": cell_index(self.cell_test)}


def _finite(v: float | None) -> float | None:
    return v if v is not None and v == v and abs(v) != float("inf") else None


# "Mejor modelo: l2", "best model -> dropout", "Me quedo con el modelo batchnorm"
_CHOSEN = re.compile(r"(?:mejor modelo|modelo elegido|modelo seleccionado|modelo final|me quedo con|elijo"
                     r"|best model|chosen model|selected model|final model|i (?:keep|choose|pick))\b(.{0,60})")


def final_reading(notebook: Notebook, runs: Sequence[RunView], logs: Mapping[int, CellLogs], facts: CodeFacts,
                  secs: Sections, final_exercise: str | None, test_exercise: str | None) -> Final:
    run, chosen = _final_run(notebook, runs, logs, final_exercise)
    val = run.read_val if run else None
    cell_val = None
    if run is not None and run.executed:
        cell_val = run.printed_cell if run.read_rule == "printed" and run.printed_cell else run.cell
    test = _test_result(notebook, runs, logs, facts, secs, run, chosen, test_exercise)
    test_cell = test.cell if test else _test_code_cell(notebook, facts, run)
    return Final(run, val, cell_val, run.val_excerpt if run and val is not None else None, test,
                 chosen[1] if chosen else None, test_cell)


def _test_code_cell(notebook: Notebook, facts: CodeFacts, final: RunView | None) -> int | None:
    """With no test result shown: the cell whose code evaluates on the test set after the final
    model, if it was run (a cell never run evaluated nothing)."""
    ran = {c.number for c in notebook.code_cells if c.execution_count is not None or c.outputs}
    cells = [t.cell for t in facts.test_evaluations if (final is None or t.cell >= final.cell) and t.cell in ran]
    return cells[0] if cells else None


def _final_run(notebook: Notebook, runs: Sequence[RunView], logs: Mapping[int, CellLogs],
               final_exercise: str | None) -> tuple[RunView | None, tuple[RunView, str] | None]:
    candidates = [r for r in runs if final_exercise and r.exercise == final_exercise]
    if not candidates:
        rest = [r for r in runs if r.exercise is None]
        return (rest[-1] if rest else None), None
    if len(candidates) > 1:
        chosen = _chosen(notebook, candidates, logs)
        if chosen is not None:
            return chosen[0], chosen
    return candidates[-1], None


def _chosen(notebook: Notebook, candidates: Sequence[RunView],
            logs: Mapping[int, CellLogs]) -> tuple[RunView, str] | None:
    """The candidate an output (or, failing that, a markdown cell) names as the chosen one."""
    labels = {r.label: r for r in candidates if r.label}
    if len(labels) < 2:
        return None
    start = candidates[0].cell
    found: list[tuple[int, RunView, str]] = []  # (priority, run, line)
    for cell in notebook.cells[start - 1:]:
        text = logs[cell.number].text if cell.cell_type == "code" and cell.number in logs else (
            cell.source if cell.cell_type == "markdown" else "")
        for line in text.split("\n"):
            low = fold(line)
            for m in _CHOSEN.finditer(low):
                tail = m.group(1)
                hits = [r for label, r in labels.items()
                        if re.search(r"(?<![a-z0-9_])" + re.escape(fold(label)) + r"(?![a-z0-9_])", tail)]
                if len(hits) == 1:
                    found.append((0 if cell.cell_type == "code" else 1, hits[0], short(line.strip())))
    if not found:
        return None
    best = min(p for p, _, _ in found)
    _, run, line = [f for f in found if f[0] == best][-1]
    return run, line


def _test_result(notebook: Notebook, runs: Sequence[RunView], logs: Mapping[int, CellLogs], facts: CodeFacts,
                 secs: Sections, final: RunView | None, chosen: tuple[RunView, str] | None,
                 test_exercise: str | None) -> TestResult | None:
    test_cells = {t.cell for t in facts.test_evaluations}
    found: list[tuple[int, Evaluation]] = []
    for cell in notebook.code_cells:
        cell_logs = logs.get(cell.number)
        if cell_logs is None:
            continue
        in_test_section = test_exercise is not None and secs.of(cell.number) == test_exercise
        for ev in cell_logs.evaluations:
            if ev.accuracy is None or ev.accuracy != ev.accuracy:
                continue
            # an unnamed result counts where the code evaluates on the test set ("Accuracy: 0.87"
            # after model.evaluate(x_test, ...)); in the test section only as evaluate() prints it
            if ev.label == "test" or (ev.label is None and (cell.number in test_cells or (
                    in_test_section and ev.kind in ("list", "progress")))):
                found.append((cell.number, ev))
    if not found:
        return None
    if final is None:
        cell, ev = found[-1]
        return TestResult(cell, ev.accuracy, ev.excerpt)  # type: ignore[arg-type]
    end = final.log.end_offset if final.log is not None else -1
    after = [(c, ev) for c, ev in found if c > final.cell or (c == final.cell and ev.offset >= end)]
    if chosen is not None and chosen[0].label:
        label = re.escape(fold(chosen[0].label))
        named = [(c, ev) for c, ev in found if re.search(r"(?<![a-z0-9_])" + label + r"(?![a-z0-9_])",
                                                          fold(ev.excerpt))]
        after = named or after
    if not after:
        return None
    cell, ev = after[0]
    return TestResult(cell, ev.accuracy, ev.excerpt)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ claims

@dataclass(frozen=True)
class Claim:
    """An accuracy written in markdown ("un 91% en validación"); ``verified`` if an output shows it."""

    cell: int
    split: str | None  # "validation" | "test" | None
    value: float
    excerpt: str
    verified: bool


_NUMBER = re.compile(r"(?<![\d.,])(\d{1,3}(?:[.,]\d{1,4})?)\s*%|(?<![\d.,])(0[.,]\d{2,4})(?![\d%])")
_ACC_WORDS = re.compile(r"accura|(?<![a-z])acc(?![a-z])|precisi|exactitud|acierto")
_TEST_WORDS = re.compile(r"(?<![a-z])(?:test|prueba)")
_VAL_WORDS = re.compile(r"(?<![a-z])val(?:idaci|idation|_acc|\b)")
# Words before a number that make it a goal, a bound or an approximation, not a result:
# "cercana al 90%", "el objetivo del 90%", "no llego al 90%", "at least 88%", "más del 85%".
_GOAL_WORDS = re.compile(
    r"cercan|cerca|objetivo|al menos|como minimo|minimo de|requisit|se pide|se requiere|debe|deberia|target"
    r"|goal|at least|close to|required|should|must|(?<![a-z])aim|no lleg|sin lleg|llegar|alcanzar|debajo"
    r"|encima|below|under|less than|more than|above|(?<![a-z])over|mas de|menos de|superar|supera|exceed"
    r"|aprox|around|about|alrededor|casi|almost|nearly|hasta|up to")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def markdown_claims(notebook: Notebook, runs: Sequence[RunView], logs: Mapping[int, CellLogs],
                    secs: Sections) -> tuple[Claim, ...]:
    """Accuracies claimed in markdown cells, each checked against the outputs it can be about: a test
    claim against test results, a validation claim against the runs of its own section (all runs
    when its section trained none), a claim that names no set against every accuracy shown."""
    out: list[Claim] = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown" or "%" not in cell.source and "0." not in cell.source \
                and "0," not in cell.source:
            continue
        for sentence in _SENTENCE.split(cell.source):
            low = fold(sentence.replace("*", "").replace("`", ""))
            has_acc = bool(_ACC_WORDS.search(low))
            for m in _NUMBER.finditer(low):
                raw = (m.group(1) or m.group(2)).replace(",", ".")
                value = float(raw) / (100.0 if m.group(1) else 1.0)
                if not 0.5 <= value <= 1.0:
                    continue  # "el 20% de los datos": a split, not an accuracy
                if _GOAL_WORDS.search(low[max(0, m.start() - 30):m.start()]):
                    continue  # "cercana al 90%", "el objetivo del 90%": a goal, not a result
                split = _nearest_split(low, m.start())
                if not has_acc and split is None:
                    continue
                decimals = len(raw.split(".")[1]) if "." in raw else 0
                unit = 10.0 ** -(decimals + (2 if m.group(1) else 0))
                values = _shown(split, secs.of(cell.number), runs, logs)
                verified = any(value - unit / 2 - 1e-9 <= v < value + unit for v in values)
                out.append(Claim(cell.number, split, round(value, 6), short(sentence.strip()), verified))
    return tuple(out)


def _shown(split: str | None, exercise: str | None, runs: Sequence[RunView],
           logs: Mapping[int, CellLogs]) -> list[float]:
    """The accuracies an output shows that a claim about ``split`` in ``exercise``'s section may be about."""
    evaluations = [e for cl in logs.values() for e in cl.evaluations if e.accuracy is not None]
    if split == "test":
        return [e.accuracy for e in evaluations if e.label in ("test", None)]  # type: ignore[misc]
    own = [r for r in runs if exercise is not None and r.exercise == exercise] or list(runs)
    names = ("val_accuracy",) if split == "validation" else ("accuracy", "val_accuracy")
    out = [v for r in own for n in names for v in r.curves.get(n, ()) if v is not None]
    out += [r.read_val for r in own if r.read_val is not None]
    out += [e.accuracy for e in evaluations if split is None or e.label == split]  # type: ignore[misc]
    return out


def _nearest_split(text: str, pos: int) -> str | None:
    best: tuple[int, str] | None = None
    for rx, name in ((_TEST_WORDS, "test"), (_VAL_WORDS, "validation")):
        for m in rx.finditer(text):
            d = abs(m.start() - pos)
            if best is None or d < best[0]:
                best = (d, name)
    return best[1] if best else None
