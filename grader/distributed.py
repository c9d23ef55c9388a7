"""Scale-out on dask.distributed: ``grader grade`` and ``grader reference`` with ``--scheduler``.

``--scheduler local`` starts a LocalCluster of ``--workers`` processes with one thread each;
``--scheduler tcp://HOST:PORT`` (or a scheduler file, JSON) joins an existing cluster. Either way
the per-submission work (check, render) or the per-(experiment, seed) training runs on the
workers, and everything that is written stays on this machine with one writer: the gradebook
rows, the PDFs in OUT/reports/ and the reference records are written by this process as results
arrive, exactly as with the local process pool (``grading.run`` and ``runner.run`` take a driver).

What crosses the wire, so that a worker on another machine needs no shared folder: each grading
task carries the notebook's bytes (and the assignment TOML's text when ``--assignment`` is a
file); the worker grades a private copy that keeps the file name, and sends back the
``GradeResult`` with the PDF's bytes, which this process writes to OUT/reports/. PDFs are tens of
kilobytes, so returning them costs little, and no worker ever needs write access to OUT. A worker
refuses (an ``error`` row naming it) when its grader version or reference records differ from
this machine's: the grade would not be the one the gradebook key claims. Training tasks carry
the job only; the worker reads Fashion-MNIST from its own data path and refuses when the files'
checksums or its TensorFlow/Keras/NumPy versions differ from the plan's.

Failures: a notebook whose worker died is retried alone, and one that took down ``MAX_CRASHES``
workers ends as an ``error`` row, never as an exception that stops the batch (an existing
scheduler first retries by its own ``allowed-failures``; each of those deaths counts). A grading
task running longer than the timeout is recorded as an error, cancelled, and its worker restarted.
A result is recorded at most once per notebook. Ctrl-C cancels what is queued and keeps what was
recorded. The functions that run on the workers are in :mod:`grader.dasktasks`.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import signal
import threading
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import __version__
from .dasktasks import grade_task, train_task
from .errors import GraderError
from .gradebook import GradeResult

if TYPE_CHECKING:  # importing them at run time would load numpy and the intake for every caller
    from .experiments.runner import Collector
    from .experiments.train import Job as TrainJob
    from .grading import EventSink, Job

LOCAL = "local"
INSTALL_HINT = "dask is not installed: pip install 'grader[dask]'"
CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 60.0  # an existing cluster with no worker after this long is an error
POLL_S = 0.5  # how often the driver asks the scheduler where tasks run (timeouts, lost workers)
_ADDRESS = re.compile(r"^([a-z0-9+]+://)?[\w.\-\[\]:]+:\d+$", re.I)


class SchedulerError(GraderError):
    """dask is missing, or the cluster cannot be started, reached or kept."""


def _dask() -> Any:
    """The distributed module, imported only when a --scheduler is asked for."""
    try:
        import distributed
    except ImportError:
        raise SchedulerError(INSTALL_HINT) from None
    return distributed


# ------------------------------------------------------------------------------------ the cluster

class Cluster:
    """A client of a dask cluster: our own LocalCluster (``local``) or an existing scheduler.
    Use as a context manager; closing it stops a LocalCluster's processes."""

    def __init__(self, scheduler: str, *, workers: int = 1) -> None:
        self.scheduler = scheduler
        self._dist = _dask()
        self._local: Any = None
        self._want = max(1, workers)
        kind = _kind(scheduler)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # version-mismatch and port notices: the tasks check what matters
            if kind == LOCAL:
                self.client = self._start_local(max(1, workers))
            else:
                self.client = self._connect(kind)
        try:
            want = max(1, workers) if kind == LOCAL else 1
            self.client.wait_for_workers(want, timeout=WORKERS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a timeout or a lost scheduler: either way no workers
            self.close()
            raise SchedulerError(f"{self.name}: no dask worker connected within {WORKERS_TIMEOUT_S:.0f} s; "
                                 f"start some with: dask worker {scheduler}") from None
        self.workers = len(self.client.nthreads())

    @property
    def name(self) -> str:
        return "local dask cluster" if self._local is not None else f"dask scheduler {self.scheduler}"

    def _start_local(self, workers: int) -> Any:
        try:
            # A worker's death fails its tasks at once (allowed_failures 0): the driver retries
            # them itself, alone, as the local pool does; dask would put a retried task next to
            # another on a busy worker and blame both for the next death (seen in the tests).
            # The workers' start is made quiet (grader.dasktasks.dask_setup).
            self._local = self._dist.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.CRITICAL, preload=["grader.dasktasks"], scheduler_kwargs={"allowed_failures": 0})
            return self._dist.Client(self._local, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - ports, processes: nothing a user can fix but retry
            self.close()
            raise SchedulerError(f"cannot start a local dask cluster ({type(exc).__name__}: {exc})") from None

    def _connect(self, kind: str) -> Any:
        how = {"scheduler_file": self.scheduler} if kind == "file" else {"address": self.scheduler}
        try:
            return self._dist.Client(**how, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, a malformed scheduler file
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise SchedulerError(f"cannot reach the dask scheduler at {self.scheduler} ({text})") from None

    def close(self) -> None:
        for thing in (getattr(self, "client", None), self._local):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing after a lost connection
                    pass
        self._local = None

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _lost(self) -> SchedulerError:
        return SchedulerError(f"lost the connection to the {self.name}; what was recorded is kept: "
                              "run the same command again to finish")

    def _alive(self) -> None:
        if self.client.status not in ("running", "connecting"):
            raise self._lost()

    # -------------------------------------------------------------------------------- grading

    def drive_grading(self, jobs: Sequence[Job], workers: int, timeout: float,
                      record: Callable[[GradeResult], None], emit: EventSink,
                      worker: Callable[[Job], GradeResult] | None = None) -> None:
        """A ``grading.Driver``: grade ``jobs`` on the cluster, each sent to a worker thread that
        is free (never queued behind another notebook on a busy worker); ``record`` each result
        here, once per notebook. ``workers`` is the cluster's.

        A notebook whose worker died is retried alone (so a neighbour that happened to share the
        worker is not blamed twice) until it has taken down ``MAX_CRASHES`` workers: the local
        driver's rule. Our LocalCluster leaves every retry to this loop (allowed-failures 0); an
        existing scheduler retries first by its own allowed-failures, and each of its deaths counts.
        """
        from . import grading

        fn = worker or grading.grade_one
        token = uuid.uuid4().hex[:8]
        pending = collections.deque(jobs)
        inflight: dict[Any, Job] = {}
        done = self._dist.as_completed(loop=self.client.loop)
        watch = _Watch()
        deliver = Once(record)
        crashes: collections.Counter[str] = collections.Counter()
        solo: set[str] = set()

        def fail(job: Job, reason: str) -> None:
            deliver(job, replace(grading._base(job, grading.unassigned(job)), status="error", reason=reason), None)

        try:
            while pending or inflight:
                if time.monotonic() - watch.polled >= POLL_S:
                    self._watch(watch, inflight, timeout, fail, emit)
                while pending:
                    sid = pending[0].submission.student_id
                    if (sid in solo and inflight) or any(j.submission.student_id in solo for j in inflight.values()):
                        break
                    addr = watch.free(inflight)
                    if addr is None:
                        break
                    job = pending.popleft()
                    fut = self._submit_grade(fn, job, f"grade-{sid}-{token}-{crashes[sid]}", addr)
                    inflight[fut] = job
                    watch.sent[fut] = addr
                    done.add(fut)
                for fut in done.next_batch(block=False) if done.has_ready() else ():
                    job = inflight.pop(fut, None)
                    watch.sent.pop(fut, None)
                    watch.polled = 0.0  # a thread is free, or a worker is gone: look again now
                    if job is None:  # timed out and recorded already
                        continue
                    deaths = self._collect(fut, job, deliver, fail)
                    if not deaths:
                        continue
                    sid = job.submission.student_id
                    crashes[sid] += deaths
                    emit("restart", {"reason": "crash", "students": [sid]})
                    if crashes[sid] >= grading.MAX_CRASHES:
                        fail(job, f"{job.submission.source}: the worker process died while grading it "
                                  f"({crashes[sid]} times: a crash or out of memory)")
                    else:
                        solo.add(sid)
                        pending.appendleft(job)
                if not done.has_ready():
                    time.sleep(0.05)
        except BaseException:
            self._cancel(list(inflight))
            raise

    def _submit_grade(self, fn: Callable[[Job], GradeResult], job: Job, key: str, addr: str) -> Any:
        sub = job.submission
        notebook = None
        if sub.path is not None:
            try:
                notebook = sub.path.read_bytes()
            except OSError as exc:
                job = replace(job, submission=replace(sub, path=None, problem=f"cannot read it ({exc.strerror})"))
        toml = None
        if job.assignment.endswith(".toml") or os.path.isfile(job.assignment):
            toml = (Path(job.assignment).name, Path(job.assignment).read_text(encoding="utf-8"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "large graph": a notebook of a few MB is the point
            # to this free worker while it lives (loose: anywhere else if it is gone by then)
            return self.client.submit(grade_task, fn, job, notebook, toml, __version__, key=key, pure=False,
                                      workers=[addr], allow_other_workers=True)

    def _collect(self, fut: Any, job: Job, deliver: Callable[..., Any], fail: Callable[[Job, str], None]) -> int:
        """Record a finished task's result; the number of workers that died running it, if they did."""
        from .grading import _crash_reason

        try:
            result, pdf = fut.result()
        except self._dist.KilledWorker as exc:
            return int(exc.allowed_failures) + 1
        except Exception as exc:  # noqa: BLE001 - cancelled by the cluster, a worker without grader...
            self._alive()
            fail(job, _crash_reason(job.submission, "grading it", exc))
            return 0
        deliver(job, result, pdf)
        return 0

    def _watch(self, watch: "_Watch", inflight: dict[Any, Job], timeout: float,
               fail: Callable[[Job, str], None], emit: EventSink) -> None:
        """Where each task runs (its clock starts there), and stop the ones running too long."""
        try:
            processing = self.client.processing()
            watch.nthreads = dict(self.client.nthreads())
        except Exception:  # noqa: BLE001 - OSError, CommClosedError, TimeoutError
            raise self._lost() from None
        now = watch.polled = time.monotonic()
        self._keep_workers(watch, now)
        mine = {fut.key: (fut, job) for fut, job in inflight.items()}
        where = {k: addr for addr, keys in processing.items() for k in keys if k in mine}
        watch.started = {k: (watch.started[k] if k in watch.started and watch.where.get(k) == a else now)
                         for k, a in where.items()}
        watch.where = where
        hung = [k for k, t0 in watch.started.items() if now - t0 > timeout]
        if not hung:
            return
        for key in hung:
            fut, job = mine[key]
            inflight.pop(fut, None)
            watch.sent.pop(fut, None)
            fail(job, f"{job.submission.source}: grading it took longer than {timeout:.0f} s; stopped")
        self._cancel([mine[k][0] for k in hung])
        self._unstick(sorted({where[k] for k in hung}))
        emit("restart", {"reason": "timeout", "students": sorted(mine[k][1].submission.student_id for k in hung)})

    def _keep_workers(self, watch: "_Watch", now: float) -> None:
        """Never wait forever on a cluster without workers. A nanny of ours whose worker could not
        be started again (a slow start under heavy load) closes for good: start another in its
        place. Without any worker for ``WORKERS_TIMEOUT_S``, stop with an error."""
        if self._local is not None and len(watch.nthreads) < self._want:
            try:
                closed = [name for name, nanny in list(self._local.workers.items())
                          if str(getattr(nanny, "status", "")).endswith(("closed", "failed"))]
                for name in closed:
                    self._local.worker_spec.pop(name, None)
                if closed:
                    self._local.scale(self._want)
            except Exception:  # noqa: BLE001 - the cluster is closing: the timeout below decides
                pass
        if watch.nthreads:
            watch.empty_since = None
            return
        watch.empty_since = watch.empty_since or now
        if now - watch.empty_since > WORKERS_TIMEOUT_S:
            raise SchedulerError(f"{self.name}: no dask worker left for {WORKERS_TIMEOUT_S:.0f} s; what was "
                                 "recorded is kept: run the same command again to finish")

    def _unstick(self, addresses: list[str]) -> None:
        """Free workers whose thread hangs (a thread cannot be stopped; its process can): ours are
        killed by pid and their nanny starts them again; an existing cluster's are restarted
        through their nanny, in the background, when they have one."""
        if self._local is not None:
            try:
                pids = self.client.run(os.getpid, workers=addresses)
            except Exception:  # noqa: BLE001 - already gone
                return
            for pid in pids.values():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            return

        def restart() -> None:
            try:
                self.client.restart_workers(addresses, raise_for_error=False)
            except Exception:  # noqa: BLE001 - no nanny: the thread stays busy, the batch goes on
                pass

        threading.Thread(target=restart, name="grader-dask-restart", daemon=True).start()

    def _cancel(self, futures: list[Any]) -> None:
        if futures:
            try:
                self.client.cancel(futures, force=True)
            except Exception:  # noqa: BLE001 - the connection is gone already
                pass

    # -------------------------------------------------------------------------------- battery

    def drive_battery(self, jobs: Sequence[TrainJob], collect: Collector) -> None:
        """A ``runner.BatteryDriver``: train each (spec, seed) on the cluster, longest first; the
        collector (this process) stores the records; epochs arrive as worker events."""
        token = uuid.uuid4().hex[:8]
        topic = f"grader-epochs-{token}"
        epochs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.client.subscribe_topic(topic, lambda event: epochs.put(event[1]))
        expect = (dict(collect.plan.data_checksums), dict(collect.plan.versions))
        futures = {self.client.submit(train_task, job, topic, expect, priority=len(jobs) - i, pure=False,
                                      key=f"train-{job.key[:16]}-seed{job.seed}-{token}"): job
                   for i, job in enumerate(jobs)}
        done = self._dist.as_completed(list(futures), loop=self.client.loop)
        watch = _Watch()
        try:
            while not done.is_empty():
                for fut in done.next_batch(block=False) if done.has_ready() else ():
                    self._collect_training(fut, futures[fut], collect)
                _drain(epochs, collect)
                if time.monotonic() - watch.polled >= POLL_S:
                    try:
                        watch.nthreads = dict(self.client.nthreads())
                    except Exception:  # noqa: BLE001 - OSError, CommClosedError, TimeoutError
                        raise self._lost() from None
                    watch.polled = time.monotonic()
                    self._keep_workers(watch, watch.polled)
                if not done.has_ready():
                    time.sleep(0.1)
            _drain(epochs, collect)
        except BaseException:
            self._cancel(list(futures))
            raise
        finally:
            try:
                self.client.unsubscribe_topic(topic)
            except Exception:  # noqa: BLE001 - the connection is gone already
                pass

    def _collect_training(self, fut: Any, job: TrainJob, collect: Collector) -> None:
        try:
            key, seed, history, info = fut.result()
        except self._dist.KilledWorker as exc:
            collect.failed(job, f"the worker process died while training it ({exc.allowed_failures + 1} times: "
                                "a crash or out of memory)")
            return
        except Exception as exc:  # noqa: BLE001 - one experiment that fails must not lose the others
            self._alive()
            collect.failed(job, str(exc) if isinstance(exc, GraderError) else f"{type(exc).__name__}: {exc}")
            return
        collect.result(job, (key, seed, history, {**info, "workers": self.workers, "scheduler": "dask"}))


class Once:
    """Hands each notebook's first result to ``record`` (after writing its PDF to OUT/reports/)
    and drops any later one: a task dask ran twice, a result arriving after its timeout."""

    def __init__(self, record: Callable[[GradeResult], None]) -> None:
        self.record = record
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, job: Job, result: GradeResult, pdf: bytes | None) -> bool:
        ident = (job.submission.student_id, job.sha256)
        if ident in self.seen:
            return False
        self.seen.add(ident)
        self.record(_with_report(job, result, pdf))
        return True


class _Watch:
    """The grading driver's view of the cluster, refreshed every ``POLL_S``."""

    def __init__(self) -> None:
        self.polled = 0.0
        self.nthreads: dict[str, int] = {}  # worker address -> threads
        self.sent: dict[Any, str] = {}  # future in flight -> the worker it was sent to
        self.where: dict[str, str] = {}  # task key -> worker address it was last seen running on
        self.started: dict[str, float] = {}  # task key -> when it was first seen there
        self.empty_since: float | None = None  # since when the cluster has had no worker

    def free(self, inflight: Mapping[Any, Any]) -> str | None:
        """A worker with a thread none of our tasks holds, if there is one."""
        load = collections.Counter(addr for fut, addr in self.sent.items() if fut in inflight)
        for addr, threads in sorted(self.nthreads.items()):
            if load[addr] < threads:
                return addr
        return None


def check(scheduler: str) -> None:
    """Fail now, before any work, when dask is missing or ``scheduler`` names no cluster."""
    _dask()
    _kind(scheduler)


def connect(scheduler: str, *, workers: int = 1) -> Cluster:
    """A connected cluster for ``--scheduler`` (``local``, an address, or a scheduler file)."""
    return Cluster(scheduler, workers=workers)


def _kind(scheduler: str) -> str:
    if scheduler == LOCAL:
        return LOCAL
    if scheduler.endswith(".json") or os.path.isfile(scheduler):
        if not os.path.isfile(scheduler):
            raise SchedulerError(f"{scheduler}: no such scheduler file")
        return "file"
    if _ADDRESS.match(scheduler):
        return "address"
    raise SchedulerError(f"--scheduler {scheduler}: expected local, an address like tcp://host:8786, "
                         "or a scheduler file (JSON)")


def _with_report(job: Job, result: GradeResult, pdf: bytes | None) -> GradeResult:
    """Write the PDF a worker sent back to OUT/reports/ (here: the one writer of OUT)."""
    if not result.report or job.out_dir is None:
        return result
    from .report import write_bytes

    try:
        if pdf is None:
            raise GraderError("the worker sent no PDF back")
        write_bytes(Path(job.out_dir) / result.report, pdf)
        return result
    except GraderError as exc:  # the grade stands; the next run renders the report again
        return replace(result, report=None, flags=tuple(sorted(set(result.flags) | {"no_report"})),
                       reason=f"{job.submission.source}: its report was not written ({exc})")


def _drain(epochs: "queue.SimpleQueue[Any]", collect: Collector) -> None:
    while True:
        try:
            spec_hash, seed, epoch, val = epochs.get_nowait()
        except queue.Empty:
            return
        collect.epoch(spec_hash, int(seed), int(epoch), float(val))
