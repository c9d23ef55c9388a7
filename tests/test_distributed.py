"""`--scheduler` (dask.distributed): the same grades and records as the local pool, workers that
die or hang mid-batch, a worker that cannot see the instructor's folders, and dask missing."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import __version__, grading
from grader.cli import main
from grader.gradebook import GradeResult, Gradebook
from grader.intake import collect
from grader.records import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
TINY = str(Path(__file__).parent / "fixtures" / "tiny_assignment.toml")
BIN = Path(sys.executable).parent


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def lines(output: str, out_dir: str) -> list[str]:
    """The output without the timing line, with the output folder's name made neutral."""
    return [line.replace(out_dir, "OUT") for line in output.splitlines() if not line.startswith("time: ")]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work folder, English messages, and a snapshot of the reference records (an input of every
    grade; the battery may be rewriting reference_runs/ while the tests run). Set before any
    cluster starts: LocalCluster workers inherit this environment."""
    from grader.submission import reference_root

    snap = tmp_path / "reference-snapshot"
    snap.mkdir()
    for path in reference_root().glob("*.json"):
        shutil.copy(path, snap / path.name)
    monkeypatch.setenv("GRADER_REFERENCE_DIR", str(snap))
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def make_class(folder: Path, names: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for new, fixture in names.items():
        shutil.copy(FIXTURES / f"{fixture}.ipynb", folder / f"{new}.ipynb")
    return folder


# ------------------------------------------------------------------------------- usage errors

def test_dask_missing_is_one_line(here: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_class(here / "class", {"ana": "good_complete"})
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` sees without dask
    result = run("grade", "class", "-o", "out", "--no-reports", "--scheduler", "local")
    assert (result.exit_code, result.output) == (2, "Error: dask is not installed: pip install 'grader[dask]'\n")
    result = run("reference", "--assignment", TINY, "--out", str(here / "runs"), "--epochs", "1",
                 "--scheduler", "local")
    assert (result.exit_code, result.output) == (2, "Error: dask is not installed: pip install 'grader[dask]'\n")
    assert not (here / "runs").exists() or not any((here / "runs").glob("*.json"))


def test_scheduler_values_that_name_no_cluster(here: Path) -> None:
    make_class(here / "class", {"ana": "good_complete"})
    result = run("grade", "class", "-o", "out", "--no-reports", "--scheduler", "nowhere")
    assert (result.exit_code, result.output) == (2, "Error: --scheduler nowhere: expected local, an address like "
                                                    "tcp://host:8786, or a scheduler file (JSON)\n")
    result = run("grade", "class", "-o", "out", "--no-reports", "--scheduler", "cluster.json")
    assert (result.exit_code, result.output) == (2, "Error: cluster.json: no such scheduler file\n")


def test_a_result_is_recorded_once(tmp_path: Path) -> None:
    """Dask may run a task twice (its worker died after finishing it); the driver records the first
    result only, and the gradebook key makes a repeated write of the same row a no-op anyway."""
    from grader.distributed import Once

    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "ana.ipynb").write_text('{"cells": []}')
    with collect(folder) as found, Gradebook(tmp_path / "g.sqlite") as book:
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=None,
                                 references="r")
        [job] = plan.todo
        result = GradeResult(assignment="trabajo2", student="ana", sha256=job.sha256, grader_version=__version__,
                             status="graded", name="Ana", source="ana.ipynb", lms="file", total=7.0, max_total=10.0,
                             references="r")
        outcomes: list[str] = []
        once = Once(lambda r: outcomes.append(book.record(r, graded_at="t1")))
        assert once(job, result, None) is True
        assert once(job, result, None) is False
        assert outcomes == ["written"]
        assert book.record(result, graded_at="t2") == "written"  # the same key again: replaced, not added
        assert [(r.student, r.status, r.total) for r in book.results()] == [("ana", "graded", 7.0)]


def test_a_grading_task_uses_the_bytes_sent_and_refuses_another_grader(here: Path) -> None:
    """What runs on a worker, called in-process: the notebook comes as bytes (the instructor's path
    does not exist there), and a worker whose grader or reference records differ refuses."""
    from dataclasses import replace

    from grader import dasktasks
    from grader.submission import check_notebook

    folder = make_class(here / "class", {"ana": "good_complete"})
    with collect(folder) as found, Gradebook(here / "g.sqlite") as book:
        [job] = grading.make_plan(found, book, assignment="auto", lang="en", date="d", out_dir=None).todo
    data = (folder / "ana.ipynb").read_bytes()
    elsewhere = replace(job, submission=replace(job.submission, path=Path("/nonexistent/instructor/ana.ipynb")))
    result, pdf = dasktasks.grade_task(grading.grade_one, elsewhere, data, None, __version__)
    check = check_notebook(folder / "ana.ipynb", lang="en")
    assert (result.status, result.total, result.sha256, pdf) == ("graded", check.total, job.sha256, None)
    assert result.result["notebook_sha256"] == job.sha256 and result.source == "ana.ipynb"

    host = os.uname().nodename
    other, _ = dasktasks.grade_task(grading.grade_one, elsewhere, data, None, "9.9.9")
    assert (other.status, other.reason) == ("error", f"ana.ipynb: the dask worker on {host} runs grader "
                                                     f"{__version__}, this machine 9.9.9; install the same there")
    stale, _ = dasktasks.grade_task(grading.grade_one, replace(elsewhere, references="0123abcd"), data, None,
                                    __version__)
    assert stale.status == "error"
    assert stale.reason.startswith(f"ana.ipynb: the dask worker on {host} has other reference records (digest ")
    assert stale.reason.endswith(", expected 0123abcd); install the same reference_runs/ there")


# ---------------------------------------------------------------------------- same as the pool

@pytest.mark.slow
def test_example_class_gives_the_same_grades_csv(here: Path) -> None:
    pool = run("grade", str(ROOT / "submissions"), "-o", "pool", "--workers", "2", "--no-reports")
    dask = run("grade", str(ROOT / "submissions"), "-o", "dask", "--workers", "2", "--no-reports",
               "--scheduler", "local")
    assert pool.exit_code == 1, pool.output  # the class has a corrupt upload, listed
    assert dask.exit_code == 1, dask.output
    assert lines(dask.output, "dask") == lines(pool.output, "pool")
    for name in ("grades.csv", "moodle_grades.csv", "results.json"):
        assert (here / "dask" / name).read_bytes() == (here / "pool" / name).read_bytes(), name
    rows = list(csv.DictReader(open(here / "dask" / "grades.csv", encoding="utf-8")))
    assert len(rows) == 10 and sum(r["status"] == "graded" for r in rows) == 9


@pytest.mark.slow
def test_reports_come_back_to_the_instructors_out_folder(here: Path) -> None:
    make_class(here / "class", {"ana": "good_complete", "luis": "below_threshold"})
    pool = run("grade", "class", "-o", "pool", "--workers", "2")
    dask = run("grade", "class", "-o", "dask", "--workers", "2", "--scheduler", "local")
    assert (pool.exit_code, dask.exit_code) == (0, 0), dask.output
    assert lines(dask.output, "dask") == lines(pool.output, "pool")
    assert (here / "dask" / "grades.csv").read_bytes() == (here / "pool" / "grades.csv").read_bytes()
    assert sorted(p.name for p in (here / "dask" / "reports").iterdir()) == ["ana.pdf", "luis.pdf"]
    for name in ("ana.pdf", "luis.pdf"):
        pdf = (here / "dask" / "reports" / name).read_bytes()
        assert pdf.startswith(b"%PDF") and pdf == (here / "pool" / "reports" / name).read_bytes()
    again = run("grade", "class", "-o", "dask", "--scheduler", "local")  # nothing to do: no cluster started
    assert again.exit_code == 0
    assert lines(again.output, "dask")[1].startswith("nothing to grade: all 2 already graded")


# --------------------------------------------------------------------------- dead and hung workers

def flaky_worker(job: grading.Job) -> GradeResult:
    """A test worker run on dask workers: ``dies-once*`` kills its worker process the first time,
    ``dies-always*`` every time, ``hangs*`` never returns; others are graded quickly from the id."""
    sid = job.submission.student_id
    marker = Path(os.environ["GRADER_TEST_MARKERS"]) / sid
    if sid.startswith("dies-always") or (sid.startswith("dies-once") and not marker.exists()):
        marker.touch()
        time.sleep(1.5)  # mid-task, long enough for the driver to see where it runs
        os._exit(3)
    if sid.startswith("hangs"):
        time.sleep(300)
    time.sleep(0.3)
    total = float(sum(map(ord, sid)) % 11)
    return GradeResult(assignment="trabajo2", student=sid, sha256=job.sha256, grader_version=__version__,
                       status="graded", name=job.submission.name, source=job.submission.source,
                       lms=job.submission.lms, total=total, max_total=10.0, references=job.references)


@pytest.mark.slow
def test_dead_and_hung_workers_never_stop_the_batch(here: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.distributed import connect

    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("GRADER_TEST_MARKERS", str(markers))
    names = ["ana", "dies-once-bea", "carlos", "dies-always-dora", "eva", "hangs-fede", "gema", "hugo"]
    folder = tmp_path / "class"
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / f"{name}.ipynb").write_text('{"cells": [], "n": %d}' % i)
    events: list[tuple[str, dict]] = []
    db = tmp_path / "g.sqlite"
    with collect(folder) as found, Gradebook(db) as book, connect("local", workers=2) as cluster:
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=None)
        outcome = grading.run(plan, book, workers=cluster.workers, graded_at=lambda: "t", worker=flaky_worker,
                              timeout=8.0, driver=cluster.drive_grading,
                              on_event=lambda kind, info: events.append((kind, dict(info))))
        rows = book.results()
    status = {r.student: (r.status, r.reason) for r in outcome.results}
    assert status["dies-always-dora"] == ("error", "dies-always-dora.ipynb: the worker process died while grading "
                                                   "it (2 times: a crash or out of memory)")
    assert status["hangs-fede"] == ("error", "hangs-fede.ipynb: grading it took longer than 8 s; stopped")
    graded = {s for s, (st, _) in status.items() if st == "graded"}
    assert graded == {"ana", "dies-once-bea", "carlos", "eva", "gema", "hugo"}
    # one row per notebook: none missing, none twice (in the gradebook and in the events)
    assert sorted(r.student for r in rows) == sorted(names)
    results = [info["result"].student for kind, info in events if kind == "result"]
    assert sorted(results) == sorted(names)
    restarts = [info for kind, info in events if kind == "restart"]
    assert {"reason": "timeout", "students": ["hangs-fede"]} in restarts
    assert any(info["reason"] == "crash" and "dies-once-bea" in info["students"] for info in restarts)
    assert outcome.graded == len(names) and not outcome.interrupted


@pytest.mark.slow
def test_ctrl_c_cancels_and_keeps_what_was_recorded(here: Path) -> None:
    """SIGINT to the whole process group (as a terminal sends it): the workers ignore it, the
    driver cancels, the cluster closes, the rows and PDFs written so far stay, exit 1."""
    import psutil

    make_class(here / "class", {f"alumno{i:02d}": "good_complete" for i in range(12)})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "grade", "class", "-o", "out", "--workers", "2",
                             "--scheduler", "local"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    reports = here / "out" / "reports"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and len(list(reports.glob("*.pdf"))) < 2:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2  # the LocalCluster's worker processes
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (stdout, stderr)
    assert "Traceback" not in stderr
    [message] = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    kept = int(message.split()[2])
    assert message == (f"Error: interrupted: {kept} graded by this run are kept in out/gradebook.sqlite; "
                       "run the same command again to finish")
    with Gradebook(here / "out" / "gradebook.sqlite") as book:
        rows = book.results()
    assert 2 <= len(rows)
    assert len(rows) == kept and kept < 12
    assert {r.report for r in rows} == {f"reports/{r.student}.pdf" for r in rows}
    assert all((here / "out" / r.report).is_file() for r in rows)
    psutil.wait_procs(children, timeout=30)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


@pytest.mark.slow
def test_nannies_that_gave_up_are_replaced(here: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under heavy load a nanny may fail to start its worker again and close for good (seen once:
    the batch then waited forever on a cluster without workers). The driver starts new ones."""
    from grader.distributed import connect

    monkeypatch.setenv("GRADER_TEST_MARKERS", str(tmp_path))
    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(4):
        (folder / f"s{i}.ipynb").write_text('{"cells": [], "n": %d}' % i)
    with collect(folder) as found, Gradebook(tmp_path / "g.sqlite") as book, connect("local", workers=2) as cluster:
        for nanny in list(cluster._local.workers.values()):
            cluster._local.sync(nanny.close)
        assert cluster.client.nthreads() == {}
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=None)
        outcome = grading.run(plan, book, workers=2, graded_at=lambda: "t", worker=flaky_worker, timeout=60,
                              driver=cluster.drive_grading)
        assert [(r.student, r.status) for r in outcome.results] == [(f"s{i}", "graded") for i in range(4)]
        assert len(cluster.client.nthreads()) == 2


# ---------------------------------------------------------------------- a worker on "another machine"

def _wait_for(path: Path, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} not written in {seconds} s"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_worker_that_cannot_see_the_instructors_folders(here: Path, tmp_path: Path) -> None:
    """An existing cluster (`dask scheduler`, `dask worker`) whose worker runs in its own mount
    namespace where the class folder and OUT are empty: it grades from the bytes sent, and the
    PDFs it renders still end up in OUT/reports/ (written by the instructor's process)."""
    make_class(here / "class", {"ana": "good_complete", "luis": "test_leakage"})
    (here / "out").mkdir()
    sched_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(sched_file)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    worker = None
    try:
        _wait_for(sched_file, scheduler, 60)
        hide = " && ".join(f"mount -t tmpfs none '{here / d}'" for d in ("class", "out"))
        worker = subprocess.Popen(["unshare", "-rm", "sh", "-c",
                                   f"{hide} && exec '{BIN / 'dask'}' worker --scheduler-file '{sched_file}' "
                                   "--nthreads 1 --no-nanny --no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        from distributed import Client

        with Client(scheduler_file=str(sched_file), timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            seen = client.run(os.listdir, str(here / "class"))
            assert list(seen.values()) == [[]]  # the worker's view of the class folder: empty
        result = run("grade", "class", "-o", "out", "--scheduler", str(sched_file))
        assert result.exit_code == 0, result.output
        assert lines(result.output, "out")[1] == "grading 2 with 1 worker -> OUT"
        assert sorted(p.name for p in (here / "out" / "reports").iterdir()) == ["ana.pdf", "luis.pdf"]
        rows = {r["student"]: r for r in csv.DictReader(open(here / "out" / "grades.csv", encoding="utf-8"))}
        from grader.submission import check_notebook

        for student, fixture in (("ana", "good_complete"), ("luis", "test_leakage")):
            check = check_notebook(FIXTURES / f"{fixture}.ipynb", lang="en")
            assert (rows[student]["status"], rows[student]["total"]) == ("graded", f"{check.total:.2f}")
            assert rows[student]["source"] == f"{student}.ipynb"
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                _stop(proc)


# ------------------------------------------------------------------------------------ battery

def curves(record) -> list[tuple]:
    """Everything a training determines (wall time aside)."""
    return [(h.seed, h.accuracy, h.loss, h.val_accuracy, h.val_loss, h.best_epoch, h.test_accuracy)
            for h in record.histories]


@pytest.mark.slow
def test_reference_on_dask_gives_the_local_runners_records(tiny_data: Path, tmp_path: Path) -> None:
    args = ["reference", "--assignment", TINY, "--only", "acts.relu,final", "--epochs", "1", "--workers", "2"]
    pool = run(*args, "--out", str(tmp_path / "pool"))
    dask = run(*args, "--out", str(tmp_path / "dask"), "--scheduler", "local")
    assert pool.exit_code == 0, pool.output
    assert dask.exit_code == 0, dask.output
    assert dask.output.startswith(f"tiny: training 2 experiments, 0 cached, 2 workers, 1 epochs (smoke run) -> "
                                  f"{tmp_path / 'dask'}\n")
    local = {r.id: r for r in Store(tmp_path / "pool").records()}
    remote = {r.id: r for r in Store(tmp_path / "dask").records()}
    assert sorted(remote) == sorted(local) == ["acts.relu", "final"]
    for exp_id, record in remote.items():
        assert curves(record) == curves(local[exp_id]), exp_id  # one thread per worker in both: bit-identical
        assert record.spec_hash == local[exp_id].spec_hash and record.data_checksums == local[exp_id].data_checksums
        assert record.runner["scheduler"] == "dask" and record.runner["threads_per_worker"] == 1
    assert json.loads((tmp_path / "dask" / "acts.relu.json").read_text())["epochs_override"] == 1
