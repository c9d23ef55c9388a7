"""Grade a class: one submission -> GradeResult, and a batch of them over worker processes.

``grade_one`` is what a worker runs for one notebook: the same library call as ``grader check``
(:func:`grader.submission.check_notebook`), then the student's PDF report, rendered and written in
the worker. It never raises: an unreadable notebook becomes a result with status ``unreadable``
and the reason, a failure of the grader itself one with status ``error``.

``run`` drives a batch: the parent process plans (what the gradebook already holds is skipped),
hands the rest to a ProcessPoolExecutor, and writes each result to the gradebook as it arrives, so
the database has one writer. A worker that dies (a crash, the OOM killer) or hangs takes down only
the notebooks it was holding: they are retried alone, and a notebook that kills a worker twice is
recorded as an error. Nothing here prints; progress goes through ``on_event``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import hashlib
import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import __version__
from .errors import GraderError
from .files import sha256_file
from .gradebook import DONE_STATUSES, Gradebook, GradeResult
from .intake import Intake, Submission

AUTO = "auto"
REPORTS_DIR = "reports"
DEFAULT_TIMEOUT_S = 600.0  # one notebook: checks + PDF; a hung worker is killed after this
MAX_CRASHES = 2  # a notebook that takes down a worker this many times is recorded as an error

EventSink = Callable[[str, Mapping[str, Any]], None]
# What runs a batch: (jobs, workers, timeout, record, emit, worker). ``record`` is the parent's one
# gradebook writer; the local pool (``_drive``) and the dask driver (grader.distributed) both fit.
Driver = Callable[[Sequence["Job"], int, float, Callable[[GradeResult], None], EventSink,
                   Callable[["Job"], GradeResult]], None]


@dataclass(frozen=True)
class Job:
    """One notebook to grade and how. ``out_dir`` None: no PDF."""

    submission: Submission
    sha256: str
    assignment: str  # a name, a TOML path, or "auto"
    lang: str
    date: str
    out_dir: str | None
    flags: tuple[str, ...] = ()  # from the intake: late, duplicate_id
    references: str = ""  # reference_digest() when the batch was planned
    execute: bool = False  # re-run the notebook in the sandbox first (grader.execute)
    exec_timeout: float | None = None  # with execute: total seconds (None: the core's default)
    cell_timeout: float | None = None  # with execute: seconds per cell (None: only the total)
    max_epochs: int | None = None  # with execute: cap every fit() at this many epochs


def file_sha256(path: Path | None) -> str:
    """The notebook's sha256 (the gradebook key); "-" when there is no readable file."""
    if path is None:
        return "-"
    try:
        return sha256_file(path)
    except OSError:
        return "-"


def reference_digest(root: Path | None = None) -> str:
    """A fingerprint of the reference records (an input of every grade, like the notebook)."""
    from .submission import reference_root

    folder = root or reference_root()
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            continue
    return digest.hexdigest()[:16]


def report_path(student_id: str) -> str:
    return f"{REPORTS_DIR}/{student_id}.pdf"


# --------------------------------------------------------------------------------- one notebook

@functools.lru_cache(maxsize=8)
def _assignment(name: str) -> Any:
    from . import assignment as assignment_mod

    return assignment_mod.load(name)


@functools.lru_cache(maxsize=8)
def _references(assignment_id: str) -> Mapping[str, Any]:
    """The reference records of an assignment, read once per worker process."""
    from .submission import load_references

    return load_references(_assignment(assignment_id))


def payload(check: Any) -> dict[str, Any]:
    """What results.json keeps for a submission and the reports are drawn from: the check JSON
    object plus hints, flags and each run's exercise and variant (the report's own converter)."""
    from .report import from_check

    return from_check(check)


def flag_kinds(result: Mapping[str, Any]) -> tuple[str, ...]:
    """Flag kinds for the CSV: the check's flags and the traps its facts name."""
    kinds = {str(f.get("kind")) for f in result.get("flags") or () if isinstance(f, Mapping) and f.get("kind")}
    facts = result.get("facts") or {}
    if facts.get("test_leakage") is True:
        kinds.add("test_leakage")
    if facts.get("model_reuse") is True:
        kinds.add("model_reuse")
    if facts.get("executed_in_order") is False:
        kinds.add("out_of_order")
    return tuple(sorted(kinds))


def report_input(result: Mapping[str, Any], submission: Submission) -> dict[str, Any]:
    """What the report is given: the payload, named as the LMS names the student when it does."""
    shown = dict(result)
    if submission.lms == "moodle":
        shown["student"] = submission.name
    elif not shown.get("student"):
        shown["student"] = submission.name
    shown["submission"] = submission.student_id
    return shown


def _base(job: Job, assignment: str) -> GradeResult:
    sub = job.submission
    return GradeResult(assignment=assignment, student=sub.student_id, sha256=job.sha256, grader_version=__version__,
                       status="error", name=sub.name, source=sub.source, lms=sub.lms, lms_id=sub.lms_id,
                       flags=job.flags, references=job.references)


def _as_source(text: str, sub: Submission) -> str:
    """Messages name the file as the instructor knows it, not its temporary copy."""
    return text.replace(str(sub.path), sub.source) if sub.path is not None else text


def unassigned(job: Job) -> str:
    """The gradebook's assignment for a notebook not graded: the one asked for, or "auto"."""
    return AUTO if job.assignment == AUTO else _safe_id(job.assignment)


def grade_one(job: Job) -> GradeResult:
    """Grade one submission and render its report. Never raises."""
    start = time.perf_counter()
    sub = job.submission
    base = _base(job, unassigned(job))
    if sub.path is None:
        return replace(base, status="unreadable", reason=f"{sub.source}: {sub.problem or 'not extracted'}",
                       seconds=time.perf_counter() - start)
    verification = None
    try:
        from .submission import check_notebook

        refs = None if job.assignment == AUTO else _references(job.assignment)
        if job.execute:
            check, verification = _verified(job, refs)
        else:
            check = check_notebook(sub.path, assignment=job.assignment, lang=job.lang, references=refs)
    except GraderError as exc:
        return replace(base, status="unreadable", reason=_as_source(str(exc), sub),
                       seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one notebook that breaks the checker never stops the batch
        return replace(base, status="error", reason=_crash_reason(sub, "grading it", exc),
                       seconds=time.perf_counter() - start)
    result = payload(check)
    if sub.lms != "moodle" and check.student and check.student != sub.path.stem:
        base = replace(base, name=check.student)  # the notebook names its author better than a file name
    if verification is not None:
        result = {**result, "verification": verification.to_dict()}
        if verification.executed.status == "timeout":
            return replace(base, assignment=check.assignment, status="timeout", result=result,
                           reason=_timeout_reason(verification.executed, sub, check.lang),
                           seconds=time.perf_counter() - start)
    ran = {f"execute_{verification.executed.status}"} - {"execute_ok"} if verification is not None else set()
    graded = replace(base, assignment=check.assignment, status="graded", total=check.total,
                     max_total=check.max_total, flags=tuple(sorted(set(flag_kinds(result)) | set(job.flags) | ran)),
                     result=result)
    if job.out_dir is not None:
        try:
            graded = replace(graded, report=_render_report(job, check.assignment, result))
        except Exception as exc:  # noqa: BLE001 - the grade stands; the next run retries the report
            graded = replace(graded, flags=tuple(sorted(set(graded.flags) | {"no_report"})),
                             reason=_crash_reason(sub, "rendering its report", exc))
    return replace(graded, seconds=time.perf_counter() - start)


def _verified(job: Job, refs: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """Re-execute the submission in the sandbox, then check it (see grader.execute.verify_notebook)."""
    from .execute import verify_notebook

    assert job.submission.path is not None
    return verify_notebook(job.submission.path, assignment=job.assignment, lang=job.lang, references=refs,
                           timeout=job.exec_timeout, cell_timeout=job.cell_timeout, max_epochs=job.max_epochs)


def _timeout_reason(executed: Any, sub: Submission, lang: str) -> str:
    from .messages import load

    msg = load(lang)
    if executed.cell:
        return msg.text("verify.timeout_reason", source=sub.source, cell=executed.cell, reason=executed.reason)
    return msg.text("verify.timeout_reason_nocell", source=sub.source, reason=executed.reason)


def with_execute(plan: "Plan", *, timeout: float | None, cell_timeout: float | None,
                 max_epochs: int | None) -> "Plan":
    """The plan with every job re-executing its notebook first (`grader grade --execute`)."""
    todo = tuple(replace(j, execute=True, exec_timeout=timeout, cell_timeout=cell_timeout, max_epochs=max_epochs)
                 for j in plan.todo)
    return replace(plan, todo=todo)


def batch_timeout(plan: "Plan") -> float:
    """Seconds a worker may spend on one job: the usual limit, plus the execution's own when the
    jobs re-execute (the execution enforces its limit itself; this is the pool's backstop)."""
    from .execute import DEFAULT_TIMEOUT_S as EXECUTE_S, GRACE_S

    extra = max((float(j.exec_timeout or EXECUTE_S) + GRACE_S for j in plan.todo if j.execute), default=0.0)
    return DEFAULT_TIMEOUT_S + extra


def _safe_id(name: str) -> str:
    """The assignment id for a name or TOML path (the TOML's own id)."""
    try:
        return str(_assignment(name).id)
    except GraderError:
        return name


def _render_report(job: Job, assignment_id: str, result: Mapping[str, Any]) -> str:
    from .report import render_student_report, write_bytes

    asg = _assignment(job.assignment if job.assignment != AUTO else assignment_id)
    refs = _references(job.assignment if job.assignment != AUTO else assignment_id)
    pdf = render_student_report(report_input(result, job.submission), refs, asg, lang=job.lang, date=job.date)
    rel = report_path(job.submission.student_id)
    assert job.out_dir is not None
    write_bytes(Path(job.out_dir) / rel, pdf)
    return rel


def _crash_reason(sub: Submission, doing: str, exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{sub.source}: the grader failed while {doing} ({type(exc).__name__}{': ' + text if text else ''})"


# ---------------------------------------------------------------------------------------- batch

@dataclass(frozen=True)
class Plan:
    """What a batch will grade (``todo``) and what the gradebook already holds (``done``);
    ``stale`` of the todo were graded before against other reference records."""

    todo: tuple[Job, ...]
    done: tuple[GradeResult, ...]
    stale: int = 0

    @property
    def total(self) -> int:
        return len(self.todo) + len(self.done)


def make_plan(intake: Intake, book: Gradebook, *, assignment: str, lang: str, date: str, out_dir: str | None,
              regrade: bool = False, references: str | None = None) -> Plan:
    """Skip each submission whose notebook (same student, sha256 and grader version) is already
    graded against the same reference records, or known unreadable, and whose report is on
    disk; grade the rest (all with ``regrade``)."""
    refs = reference_digest() if references is None else references
    asg_key = None if assignment == AUTO else _safe_id(assignment)
    dup_ids = {i for d in intake.duplicates for i in d.ids}
    todo, done, stale = [], [], 0
    for sub in intake.submissions:
        flags = tuple(sorted(({"late"} if sub.late else set()) | ({"duplicate_id"} if sub.student_id in dup_ids
                                                                    else set())))
        job = Job(sub, sub.sha256 or file_sha256(sub.path), assignment, lang, date, out_dir, flags, refs)
        old = None if regrade else book.lookup(sub.student_id, job.sha256, __version__, assignment=asg_key)
        fresh = old is not None and (old.status == "unreadable" or old.references == refs)
        if old is not None and old.status in DONE_STATUSES and fresh and _report_present(old, out_dir):
            done.append(old)
        else:
            stale += old is not None and old.status == "graded" and not fresh
            todo.append(job)
    return Plan(tuple(todo), tuple(done), stale)


def _report_present(old: GradeResult, out_dir: str | None) -> bool:
    if out_dir is None or old.status != "graded":
        return True
    return old.report is not None and (Path(out_dir) / old.report).is_file()


@dataclass(frozen=True)
class BatchOutcome:
    """Every submission of the batch as the gradebook now holds it, and what this run did."""

    results: tuple[GradeResult, ...]
    graded: int  # graded by this run (whatever the status)
    skipped: int  # found in the gradebook
    kept: tuple[str, ...]  # students whose failed regrade left their previous grade in place
    interrupted: bool = False

    @property
    def failed(self) -> tuple[GradeResult, ...]:
        return tuple(r for r in self.results if r.status != "graded")


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent (which stops the batch in order), draw with Agg, and end
    themselves when the parent is gone (``kill -9`` of ``grader grade`` must not leave them behind:
    they would wait on the task queue forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("MPLBACKEND", "Agg")
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="grader-parent-watch", daemon=True).start()


def run(plan: Plan, book: Gradebook, *, workers: int, graded_at: Callable[[], str],
        on_event: EventSink | None = None, timeout: float = DEFAULT_TIMEOUT_S,
        worker: Callable[[Job], GradeResult] = grade_one, driver: Driver | None = None) -> BatchOutcome:
    """Grade ``plan.todo`` in ``workers`` processes; record each result in ``book`` as it arrives.
    ``worker`` (a module-level function, for the tests) replaces :func:`grade_one`; ``driver``
    replaces the local process pool (e.g. a dask cluster's ``drive_grading``)."""
    emit = on_event or (lambda kind, info: None)
    emit("start", {"total": plan.total, "todo": len(plan.todo), "skipped": len(plan.done), "workers": workers})
    for old in plan.done:
        emit("skipped", {"result": old})
    written: dict[tuple[str, str], GradeResult] = {}
    kept: list[str] = []

    def record(result: GradeResult) -> None:
        outcome = book.record(result, graded_at=graded_at())
        stored = result
        if outcome == "kept":
            kept.append(result.student)
            stored = book.lookup(result.student, result.sha256, result.grader_version) or result
        written[(result.student, result.sha256)] = stored
        emit("result", {"result": result, "outcome": outcome, "stored": stored})

    interrupted = False
    if plan.todo:
        try:
            (driver or _drive)(plan.todo, max(1, workers), timeout, record, emit, worker)
        except KeyboardInterrupt:
            interrupted = True
    keys = [r.key for r in plan.done]
    for job in plan.todo:
        got = written.get((job.submission.student_id, job.sha256))
        if got is not None:
            keys.append(got.key)
    stored = book.results(keys)
    if len(stored) != len(keys):  # a concurrent run replaced nothing we need; keep what we hold
        have = {r.key for r in stored}
        stored += [r for r in written.values() if r.key not in have]
    return BatchOutcome(tuple(sorted(stored, key=lambda r: (r.student, r.assignment))), len(written),
                        len(plan.done), tuple(kept), interrupted)


def _ready(reports: bool) -> int:
    """A worker's first task: import what grading needs (and WeasyPrint, for PDFs) before any
    notebook's clock starts, so a slow start is not taken for a hung notebook."""
    import grader.submission  # noqa: F401

    if reports:
        import weasyprint  # noqa: F401

        import grader.report  # noqa: F401
    time.sleep(0.2)  # long enough for the other workers to take the other warm-up tasks
    return os.getpid()


def _pool(workers: int, reports: bool) -> cf.ProcessPoolExecutor:
    """A started pool: every worker spawned and warmed up."""
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                  initializer=_worker_init)
    ready: set[int] = set()
    deadline = time.monotonic() + DEFAULT_TIMEOUT_S
    try:
        while len(ready) < workers and time.monotonic() < deadline:
            # A warm worker may take the next warm-up task too; ask again until every one answered.
            for fut in [pool.submit(_ready, reports) for _ in range(workers - len(ready))]:
                ready.add(fut.result(timeout=max(1.0, deadline - time.monotonic())))
    except (BrokenProcessPool, cf.TimeoutError):
        pass  # the first real task finds the pool broken and the driver deals with it
    return pool


def _kill(pool: cf.ProcessPoolExecutor) -> None:
    """End the pool's processes now (a hung notebook, Ctrl-C): they are ours, by pid."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _drive(jobs: Sequence[Job], workers: int, timeout: float, record: Callable[[GradeResult], None],
           emit: EventSink, worker: Callable[[Job], GradeResult]) -> None:
    """Keep ``workers`` jobs in flight; survive dead and hung workers; record results in order of arrival."""
    pending = collections.deque(jobs)
    crashes: collections.Counter[str] = collections.Counter()
    solo: set[str] = set()  # suspects of a crash run alone, so an innocent neighbour is not blamed twice
    reports = any(job.out_dir is not None for job in jobs)
    starts = 0
    pool = _pool(workers, reports)
    inflight: dict[cf.Future, tuple[Job, float]] = {}
    try:
        while pending or inflight:
            while pending and len(inflight) < workers:
                nxt = pending[0]
                alone = nxt.submission.student_id in solo
                if alone and inflight:
                    break
                if any(j.submission.student_id in solo for j, _ in inflight.values()):
                    break
                try:
                    fut = pool.submit(worker, nxt)
                except BrokenProcessPool:  # a worker died: the futures in flight report it below
                    if inflight:
                        break
                    starts += 1  # or the pool could not even start
                    if starts > MAX_CRASHES:
                        raise GraderError("cannot start the grading worker processes (they die at start); "
                                          "try --workers 1") from None
                    _kill(pool)
                    pool = _pool(workers, reports)
                    continue
                pending.popleft()
                inflight[fut] = (nxt, time.monotonic())
            done, _ = cf.wait(list(inflight), timeout=0.5, return_when=cf.FIRST_COMPLETED)
            crashed: list[Job] = []
            for fut in done:
                job, _ = inflight.pop(fut)
                try:
                    record(fut.result())
                except BrokenProcessPool:
                    crashed.append(job)
                except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled back
                    record(replace(_base(job, unassigned(job)), status="error",
                                   reason=_crash_reason(job.submission, "grading it", exc)))
            now = time.monotonic()
            hung = [job for job, t0 in inflight.values() if now - t0 > timeout]
            if not (crashed or hung):
                continue
            hung_ids = {j.submission.student_id for j in hung}
            for job in hung:
                record(replace(_base(job, unassigned(job)), status="error",
                               reason=f"{job.submission.source}: grading it took longer than {timeout:.0f} s; "
                                      "stopped"))
            # A dead worker breaks the whole pool: every notebook in flight is a suspect.
            suspects = crashed + [job for job, _ in inflight.values() if job.submission.student_id not in hung_ids]
            inflight.clear()
            _kill(pool)
            pool = _pool(workers, reports)
            emit("restart", {"reason": "timeout" if hung else "crash",
                             "students": sorted(hung_ids | {j.submission.student_id for j in suspects})})
            retry = []
            for job in suspects:
                sid = job.submission.student_id
                if crashed:
                    crashes[sid] += 1
                if crashes[sid] >= MAX_CRASHES:
                    record(replace(_base(job, unassigned(job)), status="error",
                                   reason=f"{job.submission.source}: the worker process died while grading it "
                                          f"({crashes[sid]} times: a crash or out of memory)"))
                    continue
                if crashes[sid]:
                    solo.add(sid)
                retry.append(job)
            pending.extendleft(reversed(retry))
    except BaseException:
        _kill(pool)
        raise
    pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------- class summary

def summary_assignment(results: Iterable[GradeResult], requested: str) -> str | None:
    """The assignment of the class summary: the one requested, else the most graded one."""
    if requested != AUTO:
        return _safe_id(requested)
    counts = collections.Counter(r.assignment for r in results if r.status == "graded")
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def write_class_summary(outcome: BatchOutcome, refused: Sequence[Any], intake: Intake, *, assignment: str,
                         lang: str, date: str, out_dir: str) -> str | None:
    """Write ``class_summary.pdf`` for the batch; its relative path, or None with nothing graded."""
    from .report import render_class_summary as render
    from .report import write_bytes

    asg_id = summary_assignment(outcome.results, assignment)
    if asg_id is None:
        return None
    asg = _assignment(assignment if assignment != AUTO else asg_id)
    subs = {s.student_id: s for s in intake.submissions}
    shown = [report_input(r.result, subs[r.student]) if r.student in subs else dict(r.result)
             for r in outcome.results if r.status == "graded" and r.assignment == asg.id and r.result]
    unreadable = [(r.source, r.reason or r.status) for r in outcome.results if r.status != "graded"]
    unreadable += [(x.source, x.reason) for x in refused]
    pdf = render(shown, unreadable, asg, lang=lang, date=date)
    write_bytes(Path(out_dir) / "class_summary.pdf", pdf)
    return "class_summary.pdf"


# ---------------------------------------------------------------------------------------- outputs

def lms_kind(requested: str, intake: Intake) -> str:
    """``auto``: the LMS whose names the submissions carry, else the generic file."""
    if requested != AUTO:
        return requested
    return {"moodle": "moodle", "canvas": "canvas"}.get(intake.lms, "generic")


def write_outputs(outcome: BatchOutcome, intake: Intake, *, assignment: str, lms: str, lang: str, date: str,
                  out_dir: str, reports: bool = True) -> list[tuple[str, str]]:
    """grades.csv, the LMS import file, results.json and class_summary.pdf; (label, path) of each."""
    from . import gradebook

    out = Path(out_dir)
    asg_id = summary_assignment(outcome.results, assignment)
    asg = _assignment(assignment if assignment != AUTO else asg_id) if asg_id else None
    order = [c.id for c in asg.rubric.checks] if asg is not None else []
    results = list(outcome.results)
    files: list[tuple[str, str]] = []
    if reports:
        n = sum(1 for r in results if r.report)
        files.append(("reports", f"{out / REPORTS_DIR}{os.sep} ({n} PDF{'s' if n != 1 else ''})"))
        summary = write_class_summary(outcome, intake.refused, intake, assignment=assignment, lang=lang, date=date,
                                      out_dir=out_dir)
        if summary:
            files.append(("class summary", str(out / summary)))
    files.append(("grades", str(gradebook.write_text(out / "grades.csv", gradebook.grades_csv(results, order)))))
    kind = lms_kind(lms, intake)
    max_total = asg.rubric.max_total if asg is not None else None
    title = asg.title if asg is not None else "grade"
    text = gradebook.lms_csv(kind, results, title=title, max_total=max_total)
    files.append((f"{kind} import", str(gradebook.write_text(out / gradebook.LMS_FILES[kind], text))))
    text = gradebook.results_json(results, [r.to_dict() for r in intake.refused],
                                  [d.to_dict() for d in intake.duplicates])
    files.append(("results", str(gradebook.write_text(out / "results.json", text))))
    return files
