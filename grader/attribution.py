"""Which cells answer which exercise of an assignment.

*Sections* come from the notebook's own headings ("## 2. Inicialización de parámetros",
"**Ejercicio 3:**", "Pregunta 4.2", "Exercise 1: activation functions", a comment "# Ejercicio 2"
heading a code cell) matched against the headings of the assignment TOML; `ExerciseMap` adds what
the code says (`codefacts.exercises_by_code`) for the cells no heading covers and knows which
exercises train models. `runs` attributes each training run with them. Also the small text
helpers both use (accent folding, excerpts, 0-based cell indices for JSON). Pure.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping

from .assignment import ACTIVATIONS, INITIALIZERS, OPTIMIZERS, Assignment
from .codefacts import CodeFacts
from .notebook import Cell, Notebook

CURVES = ("accuracy", "val_accuracy", "loss", "val_loss")
FACETS: dict[str, dict[str, tuple[str, ...]]] = {
    "activations": ACTIVATIONS, "initializers": INITIALIZERS, "optimizers": OPTIMIZERS}
KERAS_DEFAULT_INITIALIZER = "glorot_uniform"
EXCERPT = 120

# "Ejercicio 2", "Pregunta 4.2", "Exercise 3", "Ej. 1", "Apartado nº 2", "Task 1" ... (accents folded)
_MARKER = re.compile(
    r"(?<![a-z])(?:ejercicio|ejer|ej|exercise|exercice|ex|pregunta|question|apartado|tarea|task|parte|part"
    r"|problema|problem|actividad|cuestion|seccion|section)s?\.?\s*(?:n[o°º]\.?\s*)?(\d+(?:\.\d+)*)(?![\d])")
_NUMBERED_KEYWORD = re.compile(r"^(?:[a-z]+\s+)?(\d+(?:\.\d+)*)$")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s*(.*?)\s*#*\s*$")
_HTML_H = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1>", re.I | re.S)
_BOLD_START = re.compile(r"^\s*(?:\*\*|__)")
_TAGS = re.compile(r"<[^>]+>")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def cell_index(number: int | None) -> int | None:
    """A 1-based cell number (what messages say) as the 0-based index the JSON carries."""
    return None if number is None else number - 1


_ACCENTS = str.maketrans("áéíóúüñàèìòùâêîôûäëïöçã", "aeiouunaeiouaeiouaeioca")


def fold(text: str) -> str:
    """Lower-case ASCII: "Inicialización" and "inicializacion" read alike (other marks dropped)."""
    text = text.lower().translate(_ACCENTS)
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def short(text: str, limit: int = EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------------------------ headings

@dataclass(frozen=True)
class Heading:
    """A heading that names an exercise: the cell it is in (1-based) and its text."""

    cell: int
    exercise: str
    text: str
    numbered: bool  # named by number ("Ejercicio 2") rather than by topic


class HeadingMatcher:
    """Maps heading text onto an assignment's exercise ids using the TOML `headings` keywords.

    `HeadingMatcher.of(assignment)` reuses one per assignment (a batch grades many notebooks)."""

    _cache: dict[tuple[str, str], "HeadingMatcher"] = {}

    @classmethod
    def of(cls, assignment: Assignment) -> "HeadingMatcher":
        key = (assignment.source, assignment.id)
        found = cls._cache.get(key)
        if found is None or found.exercises != assignment.exercises:
            found = cls._cache[key] = cls(assignment)
        return found

    def __init__(self, assignment: Assignment) -> None:
        self.exercises = assignment.exercises
        self.by_number: dict[str, str] = {}
        self.topics: list[tuple[str, str]] = []  # (folded keyword, exercise id)
        for ex in assignment.exercises:
            for kw in ex.headings:
                key = fold(kw).strip()
                m = _NUMBERED_KEYWORD.match(key)
                if m:
                    self.by_number.setdefault(m.group(1), ex.id)
                    if not key[0].isdigit():
                        continue
                if key:
                    self.topics.append((key, ex.id))

    def match(self, text: str) -> tuple[str, bool] | None:
        """(exercise id, numbered) for a heading's text, or None when it names no exercise."""
        low = fold(text)[:160]
        numbered: list[tuple[int, int, str]] = []  # (-len(number), position, exercise)
        for m in _MARKER.finditer(low):
            ex = self._by_number(m.group(1))
            if ex:
                numbered.append((-len(m.group(1)), m.start(), ex))
        for key, ex in self.topics:
            if key[0].isdigit():
                for pos in _finds(low, key):
                    if (pos == 0 or not (low[pos - 1].isdigit() or low[pos - 1] == ".")) and \
                            not low[pos + len(key):pos + len(key) + 1].isdigit():
                        numbered.append((-len(key), pos, ex))
        if numbered:
            return min(numbered)[2], True
        topical = [(pos, -len(key), ex) for key, ex in self.topics if not key[0].isdigit()
                   for pos in _finds(low, key) if pos == 0 or not low[pos - 1].isalnum()]
        return (min(topical)[2], False) if topical else None

    def _by_number(self, number: str) -> str | None:
        while number:
            if number in self.by_number:
                return self.by_number[number]
            number = number.rpartition(".")[0]
        return None


def _finds(text: str, key: str) -> Iterable[int]:
    pos = text.find(key)
    while pos >= 0:
        yield pos
        pos = text.find(key, pos + 1)


PARAGRAPH_LEVEL = 7  # a bold line or an "Ejercicio N" line: weaker than any markdown heading


def heading_lines(cell: Cell) -> tuple[tuple[int, str], ...]:
    """(level, text) of the lines of a cell that read as headings: markdown headings (ATX, setext,
    HTML; level 1-6), lines that open in bold or start with an exercise marker (level 7); in code
    cells, leading comments that carry an exercise marker ("# Ejercicio 2")."""
    return _heading_lines(cell.cell_type, cell.source)


@lru_cache(maxsize=4096)
def _heading_lines(cell_type: str, source: str) -> tuple[tuple[int, str], ...]:
    out: list[tuple[int, str]] = []
    lines = source.split("\n")
    if cell_type == "code":
        for line in lines:
            s = line.strip()
            if not s:
                continue
            if not s.startswith("#"):
                break
            text = s.lstrip("#").strip()
            if _MARKER.match(fold(text)):
                out.append((PARAGRAPH_LEVEL, text))
        return tuple(out)
    if cell_type != "markdown":
        return ()
    for m in _HTML_H.finditer(source):
        out.append((int(m.group(1)), _plain(m.group(2))))
    for i, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        m = _ATX.match(line)
        if m:
            out.append((len(m.group(1)), _plain(m.group(2))))
        elif i + 1 < len(lines) and re.fullmatch(r"\s*(=+|-+)\s*", lines[i + 1]) and len(s) < 120:
            out.append((1 if "=" in lines[i + 1] else 2, _plain(s)))
        elif _BOLD_START.match(s) or _MARKER.match(fold(_plain(s))):
            out.append((PARAGRAPH_LEVEL, _plain(s)))
    return tuple(out)


def _plain(text: str) -> str:
    text = _LINK.sub(r"\1", _TAGS.sub(" ", text))
    return " ".join(text.replace("*", " ").replace("`", " ").replace("__", " ").split())


@dataclass(frozen=True)
class Sections:
    """The exercise each cell belongs to by headings (``by_cell[index]``), and the headings found."""

    by_cell: tuple[str | None, ...]
    headings: tuple[Heading, ...]

    def of(self, number: int) -> str | None:
        return self.by_cell[number - 1] if 0 < number <= len(self.by_cell) else None

    def cells_of(self, exercise: str) -> tuple[int, ...]:
        return tuple(i + 1 for i, ex in enumerate(self.by_cell) if ex == exercise)


def sections(notebook: Notebook, assignment: Assignment) -> Sections:
    """A heading naming an exercise opens its section; it runs until the next one naming another.

    A heading that names an exercise by number ("Ejercicio 3", "Pregunta 4.2") always opens a
    section; one that names it by topic too, unless it is a subheading of the current section that
    names an earlier exercise ("### Optimizador elegido" inside "## 4. Red final" stays in the final
    model's section; "### Añadir Batch Normalization" under "## Punto de partida" moves on). A
    heading that names nothing at the current section's level or above ("## Tareas") leaves the
    cells where they are but makes what follows no longer a subheading of that section.
    """
    matcher = HeadingMatcher.of(assignment)
    order = {e.id: i for i, e in enumerate(assignment.exercises)}
    current: str | None = None
    level = 0
    by_cell: list[str | None] = []
    found: list[Heading] = []
    for cell in notebook.cells:
        for lvl, text in heading_lines(cell):
            hit = matcher.match(text)
            if not hit:
                if lvl < PARAGRAPH_LEVEL and lvl <= level:
                    level = PARAGRAPH_LEVEL  # "## Tareas" ends the subheadings of the section above
                continue
            exercise, numbered = hit
            if exercise == current:
                level = min(level, lvl)
            elif numbered or current is None or lvl <= level or order[exercise] > order[current]:
                current, level = exercise, lvl
            else:
                continue
            found.append(Heading(cell.number, exercise, short(text), numbered))
        by_cell.append(current)
    return Sections(tuple(by_cell), tuple(found))


# ------------------------------------------------------------------------------------ exercises

@dataclass(frozen=True)
class ExerciseMap:
    """What the code and the assignment say about exercises, for attributing runs."""

    takes_runs: frozenset[str]  # exercises with a training experiment
    run_exercise_of: Mapping[str, str]  # a test-only exercise -> the exercise its model comes from
    code_guesses: Mapping[int, tuple[str, ...]]  # cell -> exercises the code suggests, most specific first
    final: str | None  # the exercise whose model is "the final model"

    @classmethod
    def build(cls, assignment: Assignment, facts: CodeFacts) -> "ExerciseMap":
        ids = [e.id for e in assignment.exercises]
        takes = frozenset(e.exercise for e in assignment.experiments if e.kind == "train")
        of = {}
        for e in assignment.experiments:
            if e.kind == "test" and e.of and e.exercise not in takes:
                of.setdefault(e.exercise, assignment.experiment(e.of).exercise)
        guesses: dict[int, list[tuple[int, int, str]]] = {}
        for g in facts.exercises_by_code:
            if g.id not in ids:
                continue
            for c in g.cells:
                guesses.setdefault(c, []).append((len(g.cells), ids.index(g.id), g.id))
        final_check = next((c for c in assignment.rubric.checks if c.id == "final_model"), None)
        final = final_check.exercise if final_check and final_check.exercise else (
            "final_model" if "final_model" in ids else None)
        return cls(takes, of, {c: tuple(g for _, _, g in sorted(v)) for c, v in guesses.items()}, final)

    def for_run(self, cell: int, heading: str | None) -> str | None:
        guesses = [g for g in self.code_guesses.get(cell, ()) if g in self.takes_runs]
        if heading in self.takes_runs:
            return heading
        if guesses:
            return guesses[0]
        if heading in self.run_exercise_of:
            return self.run_exercise_of[heading]
        return None


def facet_of(assignment: Assignment, exercise: str | None) -> str | None:
    ex = assignment.exercise(exercise) if exercise else None
    return ex.facet if ex is not None and ex.facet in FACETS else None
