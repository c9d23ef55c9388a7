"""Re-execute a student's notebook in a cage (`grader check --execute`, `grader grade --execute`).

The grader process never runs nbclient itself: :func:`execute_notebook` starts a child process
(``python -m grader.nbrun SPEC``) that drives nbclient, and waits for it with a backstop. The
child starts the kernel through the sandbox wrapper (:meth:`grader.sandbox.Cage.wrap`) as the
only kernelspec it knows, named ``python3`` (the notebook's own kernelspec is ignored), over ZMQ
``ipc`` sockets in the cage's working dir (TCP on 127.0.0.1 would not cross the kernel's private
network namespace). Each cell runs with a timeout of ``min(cell_timeout, time left of timeout)``;
a cell that overruns, or the total running out, stops the run with status ``timeout`` and the
kernel's whole process tree is killed. The results (the executed notebook, a status JSON) are
written to a folder the caged kernel cannot see.

The child's side (the kernelspec, the data, ``--max-epochs``) is :mod:`grader.nbrun`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .attribution import cell_index
from .errors import NotebookError
from .sandbox import (
    Isolation,
    Limits,
    base_env,
    isolation,
    kill_cgroup,
)
from .verify import RunComparison, compare

DEFAULT_TIMEOUT_S = 1800
STATUSES = ("ok", "timeout", "error", "killed")
GRACE_S = 60  # the child's own teardown; after timeout + GRACE_S the parent kills everything


@dataclass(frozen=True)
class Executed:
    """A re-executed notebook. ``cell`` is the 1-based cell number ("cell N", all cells counted)
    that timed out or failed; ``reason`` one line saying why it stopped (empty when ``ok``)."""

    status: str  # ok | timeout | error | killed
    cell: int | None
    reason: str
    seconds: float
    isolation: Isolation
    notebook: bytes  # the executed notebook (nbformat v4 JSON), outputs up to where it stopped
    max_epochs: int | None = None
    fork_failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Everything but the notebook's bytes; ``cell`` as a 0-based index, like the check JSON."""
        return {"status": self.status, "cell": cell_index(self.cell), "reason": self.reason, "seconds": self.seconds,
                "max_epochs": self.max_epochs, "fork_failures": self.fork_failures,
                "isolation": self.isolation.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], notebook: bytes = b"") -> "Executed":
        cell = data.get("cell")
        return cls(data["status"], None if cell is None else int(cell) + 1, data.get("reason", ""),
                   float(data.get("seconds", 0.0)),
                   Isolation.from_dict(data["isolation"]), notebook, data.get("max_epochs"),
                   int(data.get("fork_failures", 0)))

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Save the executed notebook (so `check_notebook` can read it)."""
        out = Path(path)
        out.write_bytes(self.notebook)
        return out


def execute_notebook(path: str | os.PathLike[str], *, limits: Limits | None = None, cell_timeout: float | None = None,
                     timeout: float | None = None, max_epochs: int | None = None,
                     data_dir: str | os.PathLike[str] | None = None) -> Executed:
    """Re-run the notebook at ``path`` in a cage; never hangs past ``timeout`` + a short grace."""
    from . import data

    timeout = float(timeout or DEFAULT_TIMEOUT_S)
    # RLIMIT_CPU is per process and TensorFlow keeps every core busy: by default it must not end a
    # training the wall-clock timeout would still allow.
    limits = limits or Limits(cpu_seconds=max(Limits().cpu_seconds, int(timeout * (os.cpu_count() or 1)) + 60))
    source = Path(path)
    try:
        raw = source.read_bytes()
        json.loads(raw)
    except OSError as exc:
        raise NotebookError(f"{source}: cannot read ({exc.strerror})") from None
    except ValueError:
        raise NotebookError(f"{source}: not a notebook (invalid JSON); it cannot be executed") from None
    dataset = data.locate(data_dir)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grader-exec-") as private:
        work = tempfile.mkdtemp(prefix="gx-")  # short: ipc socket paths are limited to 107 bytes
        try:
            spec = {"parent": os.getpid(), "notebook": str(source.resolve()), "workdir": work, "out": private, "limits": limits.to_dict(),
                    "cell_timeout": cell_timeout, "timeout": timeout, "max_epochs": max_epochs,
                    "dataset": str(dataset)}
            spec_path = Path(private, "spec.json")
            spec_path.write_text(json.dumps(spec))
            log = open(Path(private, "child.log"), "wb")
            with log:
                child = subprocess.Popen([sys.executable, "-m", "grader.nbrun", str(spec_path)],
                                         env=_child_env(private), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, cwd=private)
                try:
                    child.wait(timeout + GRACE_S)
                except subprocess.TimeoutExpired:
                    _kill_child(child, Path(private))
            return _collect(Path(private), limits, max_epochs, round(time.monotonic() - start, 2), timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Verification:
    """A re-execution and what it says about the submitted notebook's numbers. ``basis``: which
    notebook the grade comes from ("executed" or "claimed", see :func:`grader.verify.graded_basis`)."""

    executed: Executed
    comparisons: tuple[RunComparison, ...]
    basis: str

    @property
    def mismatches(self) -> int:
        return sum(c.status == "mismatch" for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        """The ``verification`` key of `grader check --execute --json` and of results.json."""
        return {"execution": self.executed.to_dict(), "graded_from": self.basis,
                "runs": [c.to_dict() for c in self.comparisons]}

    def lines(self, messages: Any) -> list[str]:
        from .verify import verification_lines

        e = self.executed
        return verification_lines(status=e.status, cell=e.cell, reason=e.reason, seconds=e.seconds,
                                  max_epochs=e.max_epochs, comparisons=self.comparisons, basis=self.basis,
                                  isolation_line=e.isolation.describe(), messages=messages)


def verify_notebook(path: str | os.PathLike[str], *, assignment: str = "auto", lang: str | None = None,
                    references: Mapping[str, Any] | None = None, limits: Limits | None = None,
                    cell_timeout: float | None = None, timeout: float | None = None,
                    max_epochs: int | None = None, data_dir: str | os.PathLike[str] | None = None
                    ) -> tuple[Any, Verification]:
    """Check the notebook, re-execute it, check the executed copy, compare them run by run.

    Returns the CheckResult to grade and print (see :func:`grader.verify.verified_check`) and the
    Verification. Raises like :func:`grader.submission.check_notebook` for an unreadable notebook.
    """
    from . import assignment as assignment_mod
    from .messages import load, resolve_lang
    from .submission import AUTO, check_notebook, load_references
    from .verify import graded_basis, verified_check

    claimed = check_notebook(path, assignment=assignment, lang=lang, references=references)
    chosen = assignment if assignment != AUTO else claimed.assignment
    refs = references if references is not None else load_references(assignment_mod.load(chosen))
    executed = execute_notebook(path, limits=limits, cell_timeout=cell_timeout, timeout=timeout,
                                max_epochs=max_epochs, data_dir=data_dir)
    rerun = None
    if executed.notebook:
        with tempfile.TemporaryDirectory(prefix="grader-executed-") as folder:
            rerun = check_notebook(executed.write(Path(folder, Path(path).name)), assignment=chosen,
                                   lang=claimed.lang, references=refs)
    comparisons = compare(claimed, rerun, refs, max_epochs) if rerun is not None else tuple(
        RunComparison(r.index, r.cell, r.label, "unconfirmed", why="not_rerun") for r in claimed.runs if r.shown)
    basis = graded_basis(executed.status, max_epochs) if rerun is not None else "claimed"
    result = verified_check(claimed, rerun, comparisons, basis, load(resolve_lang(claimed.lang)))
    return result, Verification(executed, comparisons, basis)


def _child_env(private: str) -> dict[str, str]:
    env = base_env({"JUPYTER_RUNTIME_DIR": str(Path(private, "runtime")),
                    "JUPYTER_DATA_DIR": str(Path(private, "data")), "JUPYTER_CONFIG_DIR": str(Path(private, "cfg")),
                    "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    grader_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = grader_root  # the child must import this grader even when not installed
    return env


def _kill_child(child: subprocess.Popen[bytes], private: Path) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()
    cage = private / "cgroup.txt"
    if cage.exists():
        kill_cgroup(Path(cage.read_text().strip()), remove=True)


def _collect(private: Path, limits: Limits, max_epochs: int | None, seconds: float, timeout: float) -> Executed:
    status_file, notebook_file = private / "status.json", private / "executed.ipynb"
    notebook = notebook_file.read_bytes() if notebook_file.exists() else b""
    if status_file.exists():
        found = json.loads(status_file.read_text())
        return Executed(found["status"], found.get("cell"), found.get("reason", ""), seconds,
                        Isolation.from_dict(found["isolation"]), notebook, max_epochs, int(found.get("fork_failures", 0)))
    log = (private / "child.log").read_bytes().decode("utf-8", "replace").strip().splitlines() \
        if (private / "child.log").exists() else []
    if seconds >= timeout:
        return Executed("timeout", None, f"total timeout ({timeout:g} s)", seconds, isolation(limits), notebook,
                        max_epochs)
    reason = "the execution process failed" + (f": {log[-1][:200]}" if log else "")
    return Executed("killed", None, reason, seconds, isolation(limits), notebook, max_epochs)
