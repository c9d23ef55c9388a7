"""What runs on a dask worker for ``--scheduler`` (see :mod:`grader.distributed` for the driver).

Every function here is sent to workers by reference, so a worker needs grader installed (the
same version: ``grade_task`` checks it, with the reference records). Nothing here reads a path of
the instructor's machine or writes a file that outlives the task: a notebook arrives as bytes and
is graded from a private copy; its PDF goes back as bytes; training reads the worker's own
Fashion-MNIST after checking that its checksums are the plan's.
"""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import __version__
from .errors import GraderError
from .gradebook import GradeResult

if TYPE_CHECKING:  # importing them at run time would load numpy and the intake for every caller
    from .experiments.train import Job as TrainJob
    from .grading import Job


class WorkerMismatchError(GraderError):
    """A worker's data or library versions are not the ones the instructor's plan names."""


def dask_setup(worker: Any) -> None:
    """Start of one of our LocalCluster's worker processes (a dask preload): Ctrl-C is left to the
    instructor's process (which cancels in order), plots draw with Agg, and the process's stderr
    (TensorFlow's start-up notices) is dropped: results and errors come back as task results."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave it
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def grade_task(fn: Callable[[Job], GradeResult], job: Job, notebook: bytes | None,
               toml: tuple[str, str] | None, version: str) -> tuple[GradeResult, bytes | None]:
    """One notebook on a worker: grade a private copy of the bytes sent (never the instructor's
    path); return the result and the PDF's bytes (rendered into a temporary folder)."""
    from . import grading

    sub = job.submission
    with tempfile.TemporaryDirectory(prefix="grader-task-") as tmp:
        local = job
        if toml is not None:
            local = replace(local, assignment=str(_assignment_copy(*toml)))
        if notebook is not None and sub.path is not None:
            copy = Path(tmp) / "in" / sub.path.name  # the same file name: messages and names use it
            copy.parent.mkdir()
            copy.write_bytes(notebook)
            local = replace(local, submission=replace(sub, path=copy))
        elif sub.path is not None:
            local = replace(local, submission=replace(sub, path=None, problem=sub.problem or "not sent"))
        if job.out_dir is not None:
            local = replace(local, out_dir=str(Path(tmp) / "out"))
        mismatch = _mismatch(version, job.references)
        if mismatch:
            return replace(grading._base(local, grading.unassigned(local)), reason=f"{sub.source}: {mismatch}"), None
        result = fn(local)
        pdf = None
        if result.report and local.out_dir is not None:
            try:
                pdf = (Path(local.out_dir) / result.report).read_bytes()
            except OSError:
                pdf = None
        return result, pdf


def _mismatch(version: str, references: str) -> str | None:
    """Why this worker's grade would not be the one the gradebook key claims, if it would not."""
    from .grading import reference_digest

    host = os.uname().nodename
    if version != __version__:
        return f"the dask worker on {host} runs grader {__version__}, this machine {version}; install the same there"
    mine = reference_digest()
    if references and mine != references:
        return (f"the dask worker on {host} has other reference records (digest {mine}, expected {references}); "
                "install the same reference_runs/ there")
    return None


def _assignment_copy(name: str, text: str) -> Path:
    """The assignment TOML sent by the instructor, stored once per content on this worker."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"grader-assignments-{os.getuid()}" / digest / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


_TRAIN_LOCK = threading.Lock()  # Keras seeds are process-wide: one training at a time per process


class _EpochEvents:
    """What the runner's task function puts epochs into, published as worker events."""

    def __init__(self, topic: str) -> None:
        from distributed import get_worker

        self.worker = get_worker()
        self.topic = topic

    def put(self, item: Sequence[Any]) -> None:
        self.worker.log_event(self.topic, [str(item[0]), int(item[1]), int(item[2]), float(item[3])])


def train_task(job: TrainJob, topic: str, expect: tuple[Mapping[str, str], Mapping[str, str]]
               ) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    """One (spec, seed) on a worker, through the runner's own task function, after checking that
    this worker's data and library versions are the ones the record will name."""
    from distributed import get_worker

    from .data import checksums
    from .experiments import runner, train

    sums, versions = expect
    host = os.uname().nodename
    with _TRAIN_LOCK:
        if dict(checksums(job.data_dir)) != dict(sums):
            raise WorkerMismatchError(f"the dask worker on {host} has other Fashion-MNIST files than this "
                                      "machine (checksums differ)")
        if runner.versions() != dict(versions):
            raise WorkerMismatchError(f"the dask worker on {host} runs {runner.versions()}, "
                                      f"this machine {dict(versions)}")
        threads = max(1, int(get_worker().state.nthreads))
        train.configure_threads(threads)
        runner._EVENTS = _EpochEvents(topic)
        try:
            key, seed, history, info = runner._work(job)
        finally:
            runner._EVENTS = None
        return key, seed, history, {**info, "threads_per_worker": threads}
