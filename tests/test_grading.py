"""Grading: one submission -> GradeResult (never raises), and batches that survive broken notebooks,
dead and hung workers, re-runs and failed regrades."""

from __future__ import annotations

import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from grader import __version__, grading
from grader.gradebook import GradeResult, Gradebook, grades_csv
from grader.intake import Submission, collect
from grader.submission import check_notebook

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
GOOD = FIXTURES / "good_complete.ipynb"


def job_for(path: Path | None, student: str = "ana", *, source: str | None = None, problem: str | None = None,
            out_dir: str | None = None, assignment: str = "auto") -> grading.Job:
    sub = Submission(student, student.title(), source or (path.name if path else "x.ipynb"), path, "file",
                     problem=problem)
    return grading.Job(sub, grading.file_sha256(path), assignment, "en", "2025-01-01", out_dir)


# ------------------------------------------------------------------------------- one submission

def test_grade_one_matches_grader_check() -> None:
    result = grading.grade_one(job_for(GOOD))
    check = check_notebook(GOOD, lang="en")
    assert result.status == "graded" and result.reason is None and result.report is None
    assert (result.total, result.max_total, result.assignment) == (check.total, check.max_total, check.assignment)
    assert result.sha256 == check.notebook_sha256 and result.grader_version == __version__
    payload = dict(result.result)
    plain = check.to_dict()
    assert {k: payload[k] for k in plain if k not in ("checks", "runs")} == {k: v for k, v in plain.items()
                                                                            if k not in ("checks", "runs")}
    assert [{k: c[k] for k in plain["checks"][0]} for c in payload["checks"]] == plain["checks"]
    assert [h["text"] for h in payload["hints"]] == [h.text for h in check.hints]
    assert payload["flags"] == check.extras()["flags"]
    assert [(r["exercise"], r["variant"]) for r in payload["runs"]] == [(r.exercise, r.variant) for r in check.runs]
    assert result.name == check.student  # the notebook names its author better than the file name


def test_grade_one_unreadable_names_the_file_as_submitted(tmp_path: Path) -> None:
    z = tmp_path / "e.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("Ana Gómez_11_assignsubmission_file_/roto.ipynb", '{"cells": [')
    with collect(z) as found:
        [sub] = found.submissions
        result = grading.grade_one(grading.Job(sub, grading.file_sha256(sub.path), "auto", "en", "d", None))
    assert result.status == "unreadable" and result.assignment == "auto"
    assert result.reason.startswith("e.zip!/Ana Gómez_11_assignsubmission_file_/roto.ipynb: truncated file")
    assert str(tmp_path) not in result.reason and "grader-intake" not in result.reason


def test_grade_one_unextracted_entry() -> None:
    result = grading.grade_one(job_for(None, source="big.zip!/a.ipynb", problem="too large: 60.0 MB"))
    assert (result.status, result.reason, result.sha256) == ("unreadable", "big.zip!/a.ipynb: too large: 60.0 MB", "-")


def test_grade_one_survives_a_checker_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import grader.submission

    def boom(*a, **k):
        raise KeyError("cells")

    monkeypatch.setattr(grader.submission, "check_notebook", boom)
    result = grading.grade_one(job_for(GOOD))
    assert result.status == "error"
    assert result.reason == "good_complete.ipynb: the grader failed while grading it (KeyError: 'cells')"


def test_a_report_failure_keeps_the_grade(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import grader.report

    def boom(*a, **k):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(grader.report, "render_student_report", boom)
    result = grading.grade_one(job_for(GOOD, out_dir=str(tmp_path)))
    assert result.status == "graded" and result.report is None and "no_report" in result.flags
    assert result.reason == "good_complete.ipynb: the grader failed while rendering its report (RuntimeError: no fonts)"


@pytest.mark.slow
def test_grade_one_writes_the_pdf(tmp_path: Path) -> None:
    result = grading.grade_one(job_for(GOOD, "ana-lopez_12", out_dir=str(tmp_path)))
    assert result.report == "reports/ana-lopez_12.pdf"
    assert (tmp_path / result.report).read_bytes().startswith(b"%PDF")


# ------------------------------------------------------------------------------------- batches

def fake_worker(job: grading.Job) -> GradeResult:
    """Grades instantly from the id; ``crash*`` kills its worker, ``hang*`` never returns."""
    sid = job.submission.student_id
    if sid.startswith("crash"):
        os._exit(3)
    if sid.startswith("hang"):
        time.sleep(120)
    total = float(sum(map(ord, sid)) % 11)
    return GradeResult(assignment="trabajo2", student=sid, sha256=job.sha256, grader_version=__version__,
                       status="graded", name=job.submission.name, source=job.submission.source,
                       lms=job.submission.lms, total=total, max_total=10.0, references=job.references,
                       result={"checks": [{"id": "final_model", "status": "pass", "points": total}]})


def failing_worker(job: grading.Job) -> GradeResult:
    return replace(fake_worker(job), status="error", total=None, result=None, reason="checker bug")


def class_folder(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "class"
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / f"{name}.ipynb").write_text('{"cells": [], "n": %d}' % i)
    return folder


def batch(folder: Path, db: Path, *, worker=fake_worker, regrade: bool = False, workers: int = 2,
          timeout: float = 60.0, references: str = "r1") -> grading.BatchOutcome:
    events: list[str] = []
    with collect(folder) as found, Gradebook(db) as book:
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=None,
                                 regrade=regrade, references=references)
        return grading.run(plan, book, workers=workers, graded_at=lambda: "t", worker=worker, timeout=timeout,
                           on_event=lambda kind, info: events.append(kind))


@pytest.mark.slow
def test_dead_and_hung_workers_never_stop_the_batch(tmp_path: Path) -> None:
    folder = class_folder(tmp_path, ["ana", "crash-bea", "carlos", "hang-dora", "eva", "fede", "gema"])
    outcome = batch(folder, tmp_path / "g.sqlite", timeout=8.0)
    status = {r.student: (r.status, r.reason) for r in outcome.results}
    assert status["crash-bea"] == ("error", "crash-bea.ipynb: the worker process died while grading it "
                                            "(2 times: a crash or out of memory)")
    assert status["hang-dora"] == ("error", "hang-dora.ipynb: grading it took longer than 8 s; stopped")
    assert {s for s, (st, _) in status.items() if st == "graded"} == {"ana", "carlos", "eva", "fede", "gema"}
    assert outcome.graded == 7 and len(outcome.failed) == 2


@pytest.mark.slow
def test_rerun_skips_and_regrade_is_idempotent(tmp_path: Path) -> None:
    folder = class_folder(tmp_path, [f"alumno{i:02d}" for i in range(12)])
    db = tmp_path / "g.sqlite"
    first = batch(folder, db)
    assert (first.graded, first.skipped) == (12, 0)
    again = batch(folder, db)
    assert (again.graded, again.skipped) == (0, 12)
    regraded = batch(folder, db, regrade=True)
    assert (regraded.graded, regraded.skipped) == (12, 0)
    assert grades_csv(first.results) == grades_csv(again.results) == grades_csv(regraded.results)
    # a changed notebook is a new row; the old grade stays in the gradebook but not in this batch
    (folder / "alumno03.ipynb").write_text('{"cells": [], "changed": true}')
    changed = batch(folder, db)
    assert (changed.graded, changed.skipped) == (1, 11)
    with Gradebook(db) as book:
        assert len(book.results()) == 13
    # new reference records are a new input: everything is graded again
    with collect(folder) as found, Gradebook(db) as book:
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=None,
                                 references="r2")
        assert (len(plan.todo), len(plan.done), plan.stale) == (12, 0, 12)


@pytest.mark.slow
def test_a_failed_regrade_keeps_the_previous_grade(tmp_path: Path) -> None:
    folder = class_folder(tmp_path, ["ana", "luis"])
    db = tmp_path / "g.sqlite"
    first = batch(folder, db, workers=1)
    failed = batch(folder, db, worker=failing_worker, regrade=True, workers=1)
    assert failed.kept == ("ana", "luis")
    assert [(r.student, r.status, r.total) for r in failed.results] == \
        [(r.student, r.status, r.total) for r in first.results]
    assert not failed.failed


def test_plan_regrades_when_the_report_is_missing(tmp_path: Path) -> None:
    folder = class_folder(tmp_path, ["ana"])
    db = tmp_path / "g.sqlite"
    out = tmp_path / "out"
    with collect(folder) as found, Gradebook(db) as book:
        sub = found.submissions[0]
        sha = grading.file_sha256(sub.path)
        book.record(GradeResult(assignment="trabajo2", student="ana", sha256=sha, grader_version=__version__,
                                status="graded", name="Ana", source="ana.ipynb", lms="file", total=5.0,
                                max_total=10.0, report="reports/ana.pdf", references="r1"), graded_at="t")
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=str(out),
                                 references="r1")
        assert len(plan.todo) == 1  # graded, but its PDF is gone
        (out / "reports").mkdir(parents=True)
        (out / "reports" / "ana.pdf").write_bytes(b"%PDF")
        plan = grading.make_plan(found, book, assignment="trabajo2", lang="en", date="d", out_dir=str(out),
                                 references="r1")
        assert (len(plan.todo), len(plan.done)) == (0, 1)
