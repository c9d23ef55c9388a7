"""The battery runner: plan (what is cached, what to train), train in worker processes, store.

Planning is pure and cheap (no TensorFlow). Training happens in spawned worker processes, each
pinned to ``cores // workers`` threads, each holding the float32 data once. An experiment's record
is written as soon as all its seeds are done, so an interrupted battery keeps every finished record.
Experiments with identical training specs (e.g. activations.relu and optimizers.sgd) train once.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from multiprocessing.managers import SyncManager
import os
import queue
import signal
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import __version__
from ..assignment import Assignment, ExperimentSpec
from ..data import checksums as data_checksums
from ..errors import ReferenceRunError
from ..records import RunRecord, SeedHistory, Store, cache_key
from .train import Job

VERSIONED = ("tensorflow", "keras", "numpy")


def versions() -> dict[str, str]:
    """Versions that change numerics, read from package metadata (no TensorFlow import)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def reference_dir() -> Path:
    """The shipped reference_runs/ folder (the repository's, in an editable install)."""
    return Path(str(resources.files("grader.reference_runs")))


def smoke_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grader" / "smoke-runs"


@dataclass(frozen=True)
class Plan:
    """What a `grader reference` invocation will do, decided before any training."""

    assignment: str
    train: tuple[ExperimentSpec, ...]  # experiments to train (kind == "train")
    cached: tuple[RunRecord, ...]
    tests: tuple[ExperimentSpec, ...]  # test evaluations (satisfied by their training record)
    epochs_override: int | None
    data_checksums: Mapping[str, str]
    versions: Mapping[str, str]

    def jobs(self, data_dir: str | None) -> list[Job]:
        """One job per (distinct training spec, seed), longest first for load balance."""
        unique: dict[str, ExperimentSpec] = {}
        for spec in self.train:
            unique.setdefault(spec.spec_hash(), spec)
        jobs = [Job(key=spec.spec_hash(), spec=spec.training_spec(), seed=seed, data_dir=data_dir)
                for spec in unique.values() for seed in spec.seeds]
        return sorted(jobs, key=lambda j: -_cost(j.spec))

    @property
    def total_epochs(self) -> int:
        unique = {s.spec_hash(): s for s in self.train}
        return sum(s.epochs * len(s.seeds) for s in unique.values())


def _cost(spec: Mapping[str, Any]) -> float:
    width = sum(layer.get("units", 0) for layer in spec["layers"])
    return spec["epochs"] * width / spec["batch_size"] ** 0.5


def make_plan(assignment: Assignment, selected: Sequence[ExperimentSpec], store: Store, *,
              epochs: int | None, force: bool, data_dir: str | None) -> Plan:
    sums = data_checksums(data_dir)
    vers = versions()
    train, cached = [], []
    for spec in selected:
        if spec.kind != "train":
            continue
        spec = spec.with_epochs(epochs) if epochs else spec
        key = cache_key(spec.spec_hash(), sums, vers, epochs)
        hit = None if force else store.cached(spec.id, key)
        (cached if hit else train).append(hit or spec)
    tests = tuple(s for s in selected if s.kind == "test")
    return Plan(assignment.id, tuple(train), tuple(cached), tests, epochs, sums, vers)


@dataclass
class Outcome:
    """What the run did: records trained, records reused, interrupted or not."""

    trained: list[RunRecord] = field(default_factory=list)
    cached: list[RunRecord] = field(default_factory=list)
    interrupted: bool = False
    failed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- worker side

def _ignore_sigint() -> None:
    """Helpers leave Ctrl-C to the driver, which ends them in order and keeps finished records."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_worker(threads: int, events: Any) -> None:
    from .train import configure_threads

    _ignore_sigint()
    # TensorFlow's C++ start-up notices (no CUDA driver, ...) ignore TF_CPP_MIN_LOG_LEVEL; a
    # worker's failures reach the parent as exceptions, so its stderr is not needed.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)

    configure_threads(threads)
    global _EVENTS
    _EVENTS = events


_EVENTS: Any = None


def _work(job: Job) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    from .train import run_job

    def progress(exp_id: str, seed: int, epoch: int, val: float) -> None:
        if _EVENTS is not None:
            _EVENTS.put((exp_id, seed, epoch, val))

    return job.key, job.seed, run_job(job, progress).to_dict(), _runtime_info()


def _runtime_info() -> dict[str, Any]:
    import tensorflow as tf

    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}


# ------------------------------------------------------------------------------- driver side

Event = Callable[[str, Mapping[str, Any]], None]


class Collector:
    """The driver side of a battery, whatever trains the jobs: turns each finished (job, result)
    into records, stored by this process (the one writer) as soon as every seed of a spec is in,
    and relays epoch progress. Used by :func:`run` and by the dask driver alike."""

    def __init__(self, plan: Plan, store: Store, outcome: Outcome, runtime: dict[str, Any], emit: Event) -> None:
        self.plan, self.store, self.outcome, self.runtime, self.emit = plan, store, outcome, runtime, emit
        self.by_hash: dict[str, list[ExperimentSpec]] = {}
        for spec in plan.train:
            self.by_hash.setdefault(spec.spec_hash(), []).append(spec)
        self.done: dict[str, dict[int, dict[str, Any]]] = {h: {} for h in self.by_hash}

    def result(self, job: Job, got: tuple[str, int, dict[str, Any], dict[str, Any]]) -> None:
        """A job's ``_work`` result: keep its history; store the records its seed completes."""
        spec_hash, seed, history, info = got
        self.runtime.update(info)
        self.done[spec_hash][seed] = history
        specs = self.by_hash[spec_hash]
        if len(self.done[spec_hash]) == len(specs[0].seeds):
            for spec in specs:
                record = _record(self.plan, spec, self.done[spec_hash], self.runtime)
                self.store.put(record)
                self.outcome.trained.append(record)
                self.emit("record", {"record": record})

    def failed(self, job: Job, message: str) -> None:
        """A job that could not train: every experiment sharing its spec failed (the others go on)."""
        for spec in self.by_hash[job.key]:
            self.outcome.failed.append(spec.id)
            self.emit("error", {"id": spec.id, "message": message})

    def epoch(self, spec_hash: str, seed: int, epoch: int, val: float) -> None:
        specs = self.by_hash.get(spec_hash, ())
        if specs:
            self.emit("epoch", {"id": specs[0].id, "ids": [s.id for s in specs], "seed": seed, "epoch": epoch,
                                "epochs": specs[0].epochs, "val_accuracy": val})


BatteryDriver = Callable[[Sequence[Job], Collector], None]


def run(plan: Plan, store: Store, *, workers: int, data_dir: str | None,
        on_event: Event | None = None, driver: BatteryDriver | None = None) -> Outcome:
    """Train what the plan says, write each record as it completes, return what happened.

    ``on_event(kind, info)`` receives "start" (jobs, total_epochs), "epoch" (id, seed, epoch,
    val_accuracy), "record" (record), "error" (id, message). Ctrl-C ends the workers and returns
    with ``interrupted=True``; every record already written stays. ``driver`` (e.g. the dask one)
    trains the jobs elsewhere and hands each result to the collector; by default a local pool.
    """
    emit = on_event or (lambda kind, info: None)
    outcome = Outcome(cached=list(plan.cached))
    jobs = plan.jobs(data_dir)
    emit("start", {"jobs": len(jobs), "total_epochs": plan.total_epochs, "workers": workers})
    if not jobs:
        return outcome

    workers = max(1, min(workers, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    collect = Collector(plan, store, outcome, {"workers": workers, "threads_per_worker": threads}, emit)
    if driver is not None:
        try:
            driver(jobs, collect)
        except KeyboardInterrupt:
            outcome.interrupted = True
        return outcome
    ctx = mp.get_context("spawn")
    manager = SyncManager(ctx=ctx)
    manager.start(_ignore_sigint)
    events = manager.Queue()
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                  initializer=_init_worker, initargs=(threads, events))
    futures = {pool.submit(_work, job): job for job in jobs}
    pending = set(futures)
    try:
        while pending:
            finished, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            _drain(events, collect)
            for fut in finished:
                job = futures[fut]
                try:
                    got = fut.result()
                except Exception as exc:  # a failed experiment must not lose the others
                    collect.failed(job, f"{type(exc).__name__}: {exc}")
                    continue
                collect.result(job, got)
        _drain(events, collect)
    except KeyboardInterrupt:
        outcome.interrupted = True
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
    else:
        pool.shutdown(wait=True)
    finally:
        manager.shutdown()
    return outcome


def _drain(events: Any, collect: Collector) -> None:
    while True:
        try:
            spec_hash, seed, epoch, val = events.get_nowait()
        except (queue.Empty, EOFError, OSError):
            return
        collect.epoch(spec_hash, seed, epoch, val)


def _record(plan: Plan, spec: ExperimentSpec, histories: Mapping[int, Mapping[str, Any]],
            runtime: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        id=spec.id, assignment=plan.assignment, spec=spec.to_dict(), spec_hash=spec.spec_hash(),
        seeds=tuple(spec.seeds),
        histories=tuple(SeedHistory.from_dict(histories[s]) for s in spec.seeds),
        versions=dict(plan.versions), data_checksums=dict(plan.data_checksums),
        epochs_override=plan.epochs_override, grader_version=__version__, runner=dict(runtime),
    )


def load_reference(assignment: Assignment, root: Path | None = None) -> dict[str, RunRecord]:
    """The stored reference records of an assignment, by experiment id (missing ones left out)."""
    store = Store(root or reference_dir())
    out = {}
    for spec in assignment.experiments:
        target = assignment.experiment(spec.of) if spec.kind == "test" and spec.of else spec
        record = store.get(target.id)
        if record is not None:
            out[spec.id] = record
    return out


def check_writable(out: Path, epochs: int | None) -> None:
    if epochs and out.resolve() == reference_dir().resolve():
        raise ReferenceRunError(f"{out}: runs with --epochs are smoke runs and are never written to "
                                "reference_runs/; pass another --out")
