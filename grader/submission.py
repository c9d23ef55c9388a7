"""One notebook file -> CheckResult: read it, tell whose and which assignment it is, read its code and
outputs, load the reference runs, run the rubric.

This is the only step of `grader check` that touches files (the notebook, the assignment TOML, the
reference records); everything it calls is pure. It never imports TensorFlow (nor numpy) and never
runs student code: the reference records are plain JSON.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from . import assignment as assignment_mod
from .checks import CheckResult, evaluate
from .codefacts import extract
from .errors import NotebookError
from .identify import detect_assignment, student_name
from .logs import CellLogs, parse_cell_logs
from .messages import load as load_messages
from .messages import resolve_lang
from .notebook import DEFAULT_MAX_BYTES, Notebook, read_notebook
from .records import RunRecord, Store

AUTO = "auto"
DEFAULT_ASSIGNMENT = AUTO
REFERENCE_ENV = "GRADER_REFERENCE_DIR"  # another folder of reference records (tests, experiments)


def reference_root() -> Path:
    override = os.environ.get(REFERENCE_ENV)
    return Path(override) if override else Path(str(resources.files("grader.reference_runs")))


def load_references(assignment: assignment_mod.Assignment, root: Path | None = None) -> dict[str, RunRecord]:
    """The assignment's reference records by experiment id (a test evaluation under the id of the
    training it evaluates, as `experiments.runner.load_reference` does); empty when none exist.

    Read here with `records.Store` rather than through the runner, whose imports (numpy,
    multiprocessing) would cost a fifth of `grader check`'s one-second budget. Cached per folder
    and assignment: a batch grades many notebooks against the same records.
    """
    return dict(_references(str(root or reference_root()), assignment.source, assignment.id,
                            tuple((e.id, e.of if e.kind == "test" else None) for e in assignment.experiments)))


@lru_cache(maxsize=8)
def _references(root: str, source: str, assignment_id: str,
                experiments: tuple[tuple[str, str | None], ...]) -> tuple[tuple[str, RunRecord], ...]:
    folder = Path(root)
    if not folder.is_dir():
        return ()
    store = Store(folder)
    out = []
    for exp_id, of in experiments:
        record = store.get(of or exp_id)
        if record is not None:
            out.append((exp_id, record))
    return tuple(out)


@lru_cache(maxsize=16)
def _assignment(name: str) -> assignment_mod.Assignment:
    return assignment_mod.load(name)


def read_submission(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> Notebook:
    """A notebook a grader can trust: readable, and not missing pieces of the student's own content."""
    notebook = read_notebook(path, max_bytes=max_bytes)
    if notebook.damaged:
        raise NotebookError(f"{notebook.path}: not a valid notebook ({'; '.join(notebook.damaged[:3])}); "
                            "open it in Jupyter, save it again and resubmit it")
    return notebook


def cell_logs(notebook: Notebook) -> dict[int, CellLogs]:
    """The parsed outputs of every code cell that has any, by cell number."""
    return {c.number: parse_cell_logs(c.output_text) for c in notebook.code_cells if c.outputs}


def check_notebook(path: str | os.PathLike[str], assignment: str = DEFAULT_ASSIGNMENT, lang: str | None = None,
                   references: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
                   ) -> CheckResult:
    """Grade one notebook file. ``assignment`` is a name, a TOML path or "auto"; ``references``
    overrides the shipped reference records (``{}`` disables the plausibility comparison)."""
    messages = load_messages(resolve_lang(lang, environ))
    notebook = read_submission(path)
    facts = extract([(c.number, c.source) for c in notebook.code_cells])
    if assignment == AUTO:
        chosen = detect_assignment(notebook, facts, [_assignment(n) for n in assignment_mod.available()])
    elif Path(assignment).suffix == ".toml" or Path(assignment).exists():
        chosen = assignment_mod.load(assignment)  # a file may change between calls: never cached
    else:
        chosen = _assignment(assignment)
    refs = load_references(chosen) if references is None else references
    return evaluate(notebook, facts, cell_logs(notebook), chosen, refs, messages, student_name(notebook))
