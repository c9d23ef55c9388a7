"""Whose notebook it is and which assignment it answers.

The student's name comes from the notebook metadata (``authors``), else from a markdown line such
as "Alumno: ...", "Nombre: ...", "Name: ...", "Autor: ...", else from a line near the top that
reads as a person's name ("### Javier Ortega Blanco", "Pablo Iglesias — entrega parcial"), else
the file name. The assignment is the one whose `detect` keywords and exercise headings the
notebook's markdown matches best, with the exercises its code answers as a tie-breaker. Pure.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Sequence

from .assignment import Assignment
from .attribution import HeadingMatcher, fold, heading_lines
from .codefacts import CodeFacts
from .errors import GraderError
from .notebook import Notebook

_LABELLED = re.compile(
    r"^\s*(?:[#>*_\-\s]*)(?:nombre(?:\s+y\s+apellidos?|\s+completo|\s+del?\s+(?:la\s+)?(?:alumn[oa]|estudiante))?"
    r"|apellidos?,?\s+(?:y\s+)?nombre|alumn[oa](?:/a|\(a\))?s?|estudiantes?|autor(?:a|es)?|author|name"
    r"|student(?:'s)?(?:\s+name)?|full\s+name)\s*[*_]*\s*[:：]\s*(.+)$", re.I)
_CUT = re.compile(r"\s+[—–|]\s+|\s+-\s+|\s*[;(\[<]|\s{3,}|,\s*(?:grupo|group|curso|dni|nia|id)\b", re.I)
_WORD = re.compile(r"^[A-ZÁÉÍÓÚÑÜÇÀÈÒ][a-záéíóúñüçàèòï'’\-]+\.?$")
_PARTICLES = {"de", "del", "la", "las", "los", "y", "da", "van", "von", "di", "le", "i"}
# Capitalised words that start titles, not names.
_NOT_NAMES = {
    "trabajo", "práctica", "practica", "challenge", "redes", "red", "neuronales", "deep", "learning",
    "keras", "fashion", "mnist", "aspectos", "batch", "normalization", "módulo", "modulo", "data",
    "science", "machine", "tensorflow", "python", "notebook", "ejercicio", "pregunta", "exercise",
    "question", "objetivos", "tareas", "resultados", "conclusiones", "introducción", "introduccion",
    "introduction", "entrega", "asignatura", "curso", "grupo", "máster", "master", "universidad",
    "university", "profesor", "professor", "neural", "networks", "network", "assignment", "homework",
    "lab", "dnns", "dnn", "mlp", "punto", "partida", "ajuste", "inicialización", "optimizadores",
}


def student_name(notebook: Notebook) -> str:
    """The student's name as the notebook gives it; the file stem when it gives none."""
    for author in notebook.authors:
        name = _clean(author)
        if name:
            return name
    markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
    for cell in markdown[:8]:
        for line in cell.source.split("\n"):
            m = _LABELLED.match(_strip_md(line))
            if m:
                name = _clean(m.group(1))
                if name:
                    return name
    first_code = next((c.index for c in notebook.cells if c.cell_type == "code"), len(notebook.cells))
    for cell in markdown[:3]:
        if cell.index > first_code:
            break
        for line in cell.source.split("\n"):
            for part in _CUT.split(_strip_md(line).lstrip("#").strip()):
                if _looks_like_name(part.strip()):
                    return part.strip()
    return PurePath(notebook.path).stem


def _strip_md(line: str) -> str:
    return re.sub(r"<[^>]+>", " ", line).replace("**", "").replace("__", "").replace("*", "").strip()


def _clean(text: str) -> str:
    text = _CUT.split(_strip_md(text).strip(" :-#"))[0]
    text = " ".join(text.split()).strip(" .,;:")
    return text[:80] if re.search(r"[^\W\d_]", text) else ""


def _looks_like_name(text: str) -> bool:
    words = text.split()
    if not 2 <= len(words) <= 5 or any(ch.isdigit() for ch in text):
        return False
    real = [w for w in words if w.lower() not in _PARTICLES]
    if len(real) < 2 or words[0].lower() in _PARTICLES:
        return False
    return all(_WORD.match(w) and w.lower().strip(".") not in _NOT_NAMES for w in real)


# ------------------------------------------------------------------------------------ assignment

def detect_assignment(notebook: Notebook, facts: CodeFacts, candidates: Sequence[Assignment]) -> Assignment:
    """The candidate the notebook answers best; a GraderError when nothing points to any of them."""
    markdown = fold("\n".join(c.source for c in notebook.cells if c.cell_type == "markdown"))
    headings = [text for c in notebook.cells for _, text in heading_lines(c)]
    scored = []
    for order, asg in enumerate(candidates):
        score = 2.0 * sum(1 for kw in asg.detect if fold(kw) in markdown)
        matcher = HeadingMatcher.of(asg)
        score += 1.5 * len({hit[0] for text in headings if (hit := matcher.match(text))})
        own = {e.id for e in asg.exercises}
        shared = set.intersection(*[{e.id for e in a.exercises} for a in candidates]) if len(candidates) > 1 else set()
        score += 1.0 * len({g.id for g in facts.exercises_by_code if g.id in own and g.id not in shared})
        if facts.validation.fraction is not None and facts.validation.fraction == asg.rubric.validation_fraction:
            score += 0.5
        scored.append((score, -order, asg))
    best = max(scored, key=lambda t: (t[0], t[1]))
    if best[0] <= 0.5:
        names = "|".join(a.id for a in candidates)
        raise GraderError(f"{notebook.path}: cannot tell which assignment this notebook answers; "
                          f"pass --assignment {names}")
    return best[2]
