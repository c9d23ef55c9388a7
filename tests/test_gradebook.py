"""Gradebook: one transaction per result, failed regrades keep the grade, concurrent writers,
deterministic exports."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from grader.gradebook import (GradeResult, Gradebook, GradebookError, grades_csv, lms_csv, results_json,
                              write_text)


def graded(student: str, total: float, *, sha: str = "a" * 64, checks: dict[str, float] | None = None,
           flags: tuple[str, ...] = (), lms: str = "file", lms_id: str | None = None) -> GradeResult:
    checks = checks if checks is not None else {"activations": 2.0, "final_model": total - 2.0}
    payload = {"student": student, "total": total, "max_total": 10.0,
               "checks": [{"id": k, "status": "pass" if v > 0 else "fail", "points": v, "max_points": 2.0,
                           "message": f"msg {k}"} for k, v in checks.items()]}
    return GradeResult(assignment="trabajo2", student=student, sha256=sha, grader_version="0.1.0",
                       status="graded", name=student.title(), source=f"{student}.ipynb", lms=lms, lms_id=lms_id,
                       total=total, max_total=10.0, flags=flags, report=f"reports/{student}.pdf", result=payload)


def unreadable(student: str, reason: str = "x.ipynb: truncated file", sha: str = "a" * 64,
               status: str = "unreadable") -> GradeResult:
    return GradeResult(assignment="trabajo2", student=student, sha256=sha, grader_version="0.1.0", status=status,
                       name=student, source=f"{student}.ipynb", lms="file", reason=reason)


def test_pragmas_and_round_trip(tmp_path: Path) -> None:
    with Gradebook(tmp_path / "g.sqlite") as book:
        assert book.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert book.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert book.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        r = graded("ana", 9.5, flags=("late",))
        assert book.record(r, graded_at="2025-01-01T00:00:00") == "written"
        assert book.lookup("ana", "a" * 64, "0.1.0") == r
        assert book.lookup("ana", "a" * 64, "0.1.0", assignment="challenge_s3") is None
        assert book.lookup("ana", "b" * 64, "0.1.0") is None
        assert book.results()[0].result == r.result


def test_failed_regrade_keeps_the_grade(tmp_path: Path) -> None:
    with Gradebook(tmp_path / "g.sqlite") as book:
        book.record(graded("ana", 9.5), graded_at="t1")
        assert book.record(unreadable("ana", status="error"), graded_at="t2") == "kept"
        assert book.results()[0].status == "graded" and book.results()[0].total == 9.5
        assert book.record(graded("ana", 8.0), graded_at="t3") == "written"  # a successful regrade replaces it
        assert [r.total for r in book.results()] == [8.0]
        # an error is replaced by a later grade, and an unreadable row by an error only if not graded
        book.record(unreadable("luis", status="error"), graded_at="t4")
        book.record(graded("luis", 5.0), graded_at="t5")
        assert [(r.student, r.status) for r in book.results()] == [("ana", "graded"), ("luis", "graded")]


def test_lookup_prefers_a_finished_row(tmp_path: Path) -> None:
    with Gradebook(tmp_path / "g.sqlite") as book:
        book.record(unreadable("ana", status="error"), graded_at="t")
        assert book.lookup("ana", "a" * 64, "0.1.0").status == "error"


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "g.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GradebookError, match=r"g\.sqlite: not a usable gradebook"):
        Gradebook(bad)


def test_grades_csv_is_deterministic_and_formatted(tmp_path: Path) -> None:
    rows = [graded("luis", 7.0, flags=("test_leakage", "late")), graded("ana", 9.5),
            unreadable("zoe", reason="zoe.ipynb: truncated file (the JSON stops at line 3, column 1)")]
    text = grades_csv(rows, ["activations", "initializers", "final_model"])
    assert text == (
        "student,name,total,max,status,activations,initializers,final_model,flags,assignment,source,reason\n"
        "ana,Ana,9.50,10.00,graded,2.00,,7.50,,trabajo2,ana.ipynb,\n"
        "luis,Luis,7.00,10.00,graded,2.00,,5.00,late test_leakage,trabajo2,luis.ipynb,\n"
        "zoe,zoe,,,unreadable,,,,,trabajo2,zoe.ipynb,"
        "\"zoe.ipynb: truncated file (the JSON stops at line 3, column 1)\"\n")
    assert grades_csv(list(reversed(rows)), ["activations", "initializers", "final_model"]) == text
    out = write_text(tmp_path / "out" / "grades.csv", text)
    assert out.read_bytes() == text.encode()
    assert [p.name for p in out.parent.iterdir()] == ["grades.csv"]  # no temp file left


def test_lms_files() -> None:
    rows = [graded("ana-lopez_12", 9.5, lms="moodle", lms_id="12", checks={"a": 2.0, "b": 0.0}),
            unreadable("bea_13")]
    assert lms_csv("moodle", rows, title="Trabajo 2", max_total=10.0) == (
        "Identifier,Full name,Grade,Maximum Grade,Feedback comments\n"
        "Participant 12,Ana-Lopez_12,9.50,10.00,msg b\n"
        "bea_13,bea_13,,10.00,x.ipynb: truncated file\n")
    assert lms_csv("canvas", rows, title="Trabajo 2", max_total=10.0) == (
        "Student,ID,SIS User ID,SIS Login ID,Section,Trabajo 2\n"
        "Points Possible,,,,,10.00\n"
        "Ana-Lopez_12,,,,,9.50\n"
        "bea_13,,,,,\n")
    assert lms_csv("generic", rows, title="T", max_total=10.0).splitlines()[0] == \
        "student,name,grade,max_grade,status,feedback"
    with pytest.raises(GradebookError):
        lms_csv("blackboard", rows, title="T", max_total=10.0)


def test_results_json() -> None:
    doc = json.loads(results_json([graded("b", 5.0), graded("a", 6.0)], [{"source": "x", "reason": "y"}]))
    assert [s["student"] for s in doc["submissions"]] == ["a", "b"]
    assert doc["refused"] == [{"source": "x", "reason": "y"}] and doc["duplicates"] == []
    assert doc["submissions"][0]["result"]["checks"][0]["id"] == "activations"


# ---------------------------------------------------------------------------- concurrent writers

def _writer(db: str, prefix: str, n: int, barrier) -> None:
    barrier.wait()
    with Gradebook(db) as book:
        for i in range(n):
            book.record(graded(f"{prefix}{i:03d}", float(i % 10)), graded_at="t")
            # the same notebook written by both processes: the key makes it one row
            book.record(graded("shared", 7.0), graded_at=prefix)


@pytest.mark.slow
def test_two_processes_write_one_database(tmp_path: Path) -> None:
    db = str(tmp_path / "g.sqlite")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(db, p, 150, barrier)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 301
    assert con.execute("SELECT COUNT(*) FROM results WHERE student = 'shared'").fetchone()[0] == 1
    con.close()
