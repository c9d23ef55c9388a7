"""`grader grade` through CliRunner (exact output, exit codes) and as a real subprocess killed with
SIGKILL in the middle of a batch, then resumed."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.submission import check_notebook

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
READABLE = ["good_complete", "test_leakage", "below_threshold", "keras2_verbose2", "keras3_ansi", "model_reuse"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def lines(output: str) -> list[str]:
    """The output without the timing line (the only part that changes between runs)."""
    return [line for line in output.splitlines() if not line.startswith("time: ")]


def make_class(folder: Path, names: dict[str, str]) -> Path:
    """``names``: new file stem -> fixture stem."""
    folder.mkdir(parents=True, exist_ok=True)
    for new, fixture in names.items():
        shutil.copy(FIXTURES / f"{fixture}.ipynb", folder / f"{new}.ipynb")
    return folder


def pinned_references(tmp_path: Path) -> Path:
    """A snapshot of the reference records: the battery may be writing new ones while tests run, and
    they are an input of every grade."""
    from grader.submission import reference_root

    snap = tmp_path / "reference-snapshot"
    snap.mkdir()
    for path in reference_root().glob("*.json"):
        shutil.copy(path, snap / path.name)
    return snap


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADER_REFERENCE_DIR", str(pinned_references(tmp_path)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    return work


def test_grades_a_folder_exit_0_and_skips_on_rerun(here: Path) -> None:
    make_class(here / "class", {"ana": "good_complete", "luis": "test_leakage"})
    good, leak = (check_notebook(FIXTURES / f"{n}.ipynb", lang="en") for n in ("good_complete", "test_leakage"))
    result = run("grade", "class", "-o", "out", "--workers", "1", "--no-reports")
    assert result.exit_code == 0, result.output
    lo, hi = sorted([good.total, leak.total])
    median = (lo + hi) / 2
    files = ["files:",
             "  grades          out/grades.csv",
             "  generic import  out/lms_grades.csv",
             "  results         out/results.json",
             "  gradebook       out/gradebook.sqlite"]
    flagged = sum(1 for c in (good, leak) if c.flags)
    assert lines(result.output) == [
        "2 submissions in class",
        "grading 2 with 1 worker -> out",
        f"graded 2 of 2 submissions{f'; {flagged} flagged' if flagged else ''}",
        f"  totals: median {median:.2f} / 10.00, min {lo:.2f}, max {hi:.2f}",
        *files]
    rows = list(csv.DictReader(open(here / "out" / "grades.csv", encoding="utf-8")))
    assert [(r["student"], r["total"], r["status"]) for r in rows] == [
        ("ana", f"{good.total:.2f}", "graded"), ("luis", f"{leak.total:.2f}", "graded")]
    assert "test_leakage" in rows[1]["flags"].split()
    first_csv = (here / "out" / "grades.csv").read_bytes()

    again = run("grade", "class", "-o", "out", "--workers", "1", "--no-reports")
    assert again.exit_code == 0
    assert lines(again.output)[1] == ("nothing to grade: all 2 already graded (same notebook and grader version; "
                                      "--regrade grades them again)")
    assert (here / "out" / "grades.csv").read_bytes() == first_csv

    regrade = run("grade", "class", "-o", "out", "--workers", "1", "--no-reports", "--regrade")
    assert regrade.exit_code == 0 and lines(regrade.output)[1] == "grading 2 with 1 worker -> out"
    assert (here / "out" / "grades.csv").read_bytes() == first_csv


def test_unreadable_submissions_exit_1_and_are_listed(here: Path) -> None:
    make_class(here / "class", {"ana": "good_complete", "roto": "not_json"})
    (here / "class" / "vacio.ipynb").write_text("")
    result = run("grade", "class", "-o", "out", "--workers", "1", "--no-reports")
    assert result.exit_code == 1
    out = lines(result.output)
    assert out[out.index("could not be graded:") + 1:out.index("files:")] == [
        "  roto [unreadable] roto.ipynb: not a notebook (invalid JSON at line 1, column 1: Expecting value)",
        "  vacio [unreadable] vacio.ipynb: empty file (0 cells); save the notebook again and resubmit it"]
    rows = {r["student"]: r for r in csv.DictReader(open(here / "out" / "grades.csv", encoding="utf-8"))}
    assert rows["roto"]["status"] == "unreadable" and rows["roto"]["total"] == ""
    assert rows["roto"]["reason"].startswith("roto.ipynb: not a notebook")


def test_usage_errors_exit_2(here: Path) -> None:
    result = run("grade", "nowhere")
    assert result.exit_code == 2 and "'nowhere' does not exist" in result.output
    (here / "empty").mkdir()
    result = run("grade", "empty")
    assert (result.exit_code, result.output) == (2, "Error: empty: no .ipynb notebook found (searched folders "
                                                    "and zips inside)\n")
    make_class(here / "class", {"ana": "good_complete"})
    result = run("grade", "class", "--assignment", "trabajo9")
    assert (result.exit_code, result.output) == (2, "Error: unknown assignment 'trabajo9' (known: challenge_s3, "
                                                    "trabajo2)\n")
    result = run("grade", "class", "--lms", "blackboard")
    assert result.exit_code == 2 and "Invalid value for '--lms'" in result.output
    result = run("grade", "class", "--workers", "0")
    assert result.exit_code == 2
    (here / "notadb.sqlite").write_bytes(b"garbage" * 1000)
    result = run("grade", "class", "--db", "notadb.sqlite", "--no-reports")
    assert result.exit_code == 2 and result.output.startswith("Error: notadb.sqlite: not a usable gradebook")


def test_moodle_zip_with_a_hostile_entry(here: Path) -> None:
    z = here / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(FIXTURES / "good_complete.ipynb", "Ana García López_12345_assignsubmission_file_/Práctica 2.ipynb")
        zf.write(FIXTURES / "test_leakage.ipynb", "Luis Pérez_12346_assignsubmission_file_trabajo.ipynb")
        zf.writestr("../../../escape.ipynb", "{}")
    result = run("grade", "export.zip", "-o", "out", "--workers", "1", "--no-reports", "--assignment", "trabajo2")
    assert result.exit_code == 1  # graded, but an entry was refused
    out = lines(result.output)
    assert out[0] == "2 submissions in export.zip (named as in Moodle); 1 entry refused"
    assert out[out.index("refused (not extracted):") + 1] == \
        "  export.zip!/../../../escape.ipynb: refused: the path climbs out of the archive (..)"
    assert "  moodle import   out/moodle_grades.csv" in out
    moodle = list(csv.reader(open(here / "out" / "moodle_grades.csv", encoding="utf-8")))
    assert [row[:2] for row in moodle] == [["Identifier", "Full name"], ["Participant 12345", "Ana García López"],
                                           ["Participant 12346", "Luis Pérez"]]
    assert not (here.parent / "escape.ipynb").exists()


@pytest.mark.slow
def test_reports_and_class_summary(here: Path) -> None:
    make_class(here / "class", {"Ana López": "good_complete", "luis": "not_json"})
    env_date = {"SOURCE_DATE_EPOCH": "1735689600"}  # 2025-01-01
    result = CliRunner(env=env_date).invoke(main, ["grade", "class", "-o", "out", "--workers", "1", "--lms", "canvas"])
    assert result.exit_code == 1, result.output
    out = lines(result.output)
    assert "  reports         out/reports/ (1 PDF)" in out and "  class summary   out/class_summary.pdf" in out
    assert (here / "out" / "reports" / "ana-lopez.pdf").read_bytes().startswith(b"%PDF")
    assert (here / "out" / "class_summary.pdf").read_bytes().startswith(b"%PDF")
    assert (here / "out" / "canvas_grades.csv").read_text().splitlines()[1] == "Points Possible,,,,,10.00"
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(here / "out" / "class_summary.pdf"), "-"], capture_output=True,
                              text=True).stdout
        assert "2025-01-01" in text and "luis.ipynb" in text


# ------------------------------------------------------------------------------------ kill -9

def grade_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "grader", "grade", str(src), "-o", str(out), "--workers", "2", *extra]


def rows_in(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(str(db), timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def kill_midway(cmd: list[str], db: Path, at_least: int, total: int, env: dict[str, str]) -> int:
    """Start ``cmd``, SIGKILL it once ``at_least`` rows are committed; the rows there were then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 600
    try:
        while rows_in(db) < at_least:
            assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)  # orphaned workers notice and end themselves
    assert not alive, f"workers left behind: {alive}"
    done = rows_in(db)
    assert at_least <= done < total, f"not killed in the middle ({done} of {total})"
    return done


@pytest.mark.slow
@pytest.mark.parametrize("reports", [False, True], ids=["grades-only", "with-pdfs"])
def test_kill_9_midway_then_resume_gives_the_same_grades_csv(tmp_path: Path, reports: bool) -> None:
    n = 30 if not reports else 4
    names = {f"Alumno {i:02d}_{1000 + i}_assignsubmission_file_": READABLE[i % len(READABLE)] for i in range(n)}
    src = tmp_path / "class"
    for folder, fixture in names.items():
        make_class(src / folder, {"entrega": fixture})
    (src / "roto_9999_assignsubmission_file_entrega.ipynb").write_text('{"cells": [')
    total = n + 1
    extra = () if reports else ("--no-reports",)
    env = {**os.environ, "LANG": "en_US.UTF-8", "SOURCE_DATE_EPOCH": "1735689600",
           "GRADER_REFERENCE_DIR": str(pinned_references(tmp_path))}

    full = tmp_path / "full"
    straight = subprocess.run(grade_cmd(src, full, *extra), capture_output=True, text=True, env=env, timeout=900)
    assert straight.returncode == 1, straight.stderr  # the corrupt notebook is listed

    part = tmp_path / "part"
    done = kill_midway(grade_cmd(src, part, *extra), part / "gradebook.sqlite", 1 if reports else 5, total, env)
    resumed = subprocess.run(grade_cmd(src, part, *extra), capture_output=True, text=True, env=env, timeout=900)
    assert resumed.returncode == 1, resumed.stderr
    assert f"; {done} already graded, skipped" in resumed.stdout
    assert rows_in(part / "gradebook.sqlite") == total  # no duplicate, no missing row
    for name in ("grades.csv", "moodle_grades.csv", "results.json"):
        assert (part / name).read_bytes() == (full / name).read_bytes(), name
    if reports:
        pdfs = sorted(p.name for p in (part / "reports").iterdir())
        assert pdfs == sorted(p.name for p in (full / "reports").iterdir()) and len(pdfs) == n
        assert all((part / "reports" / p).read_bytes().startswith(b"%PDF") for p in pdfs)
        assert not [p for p in (part / "reports").iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.slow
def test_two_grade_runs_on_one_gradebook_at_once(tmp_path: Path) -> None:
    src = make_class(tmp_path / "class", {f"alumno{i:02d}": READABLE[i % len(READABLE)] for i in range(16)})
    db = tmp_path / "shared.sqlite"
    env = {**os.environ, "LANG": "en_US.UTF-8", "GRADER_REFERENCE_DIR": str(pinned_references(tmp_path))}
    procs = [subprocess.Popen(grade_cmd(src, tmp_path / f"out{i}", "--no-reports", "--db", str(db)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in (1, 2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    con = sqlite3.connect(str(db))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT student) FROM results").fetchone() == (16, 16)
    con.close()
    assert (tmp_path / "out1" / "grades.csv").read_bytes() == (tmp_path / "out2" / "grades.csv").read_bytes()


@pytest.mark.slow
def test_the_example_class(here: Path) -> None:
    """submissions/: the folder and its Moodle zip hold the same files; each student is graded once."""
    root = Path(__file__).parent.parent / "submissions"
    result = run("grade", str(root), "-o", "out", "--no-reports", "--lang", "en")
    assert result.exit_code == 1  # the corrupt upload
    out = lines(result.output)
    assert out[:2] == [f"10 submissions in {root} (named as in Moodle)",
                       "  10 files found twice (same student, same bytes: a folder and a zip of the same export?), "
                       "each graded once"]
    rows = {r["student"]: r for r in csv.DictReader(open(here / "out" / "grades.csv", encoding="utf-8"))}
    assert sorted(rows) == ["ana-belen-torres_21112", "chen-wei_21088", "daniel-okafor_21041",
                            "irene-castro-gomez_21093", "javier-ruiz-molina_21105", "lucia-martin-prieto_21034",
                            "marta-gil-ortega_21057", "pablo-romero-sanz_21062", "sofia-navarro-diaz_21070",
                            "tom-becker_21120"]
    assert rows["javier-ruiz-molina_21105"]["status"] == "unreadable"
    assert "truncated file" in rows["javier-ruiz-molina_21105"]["reason"]
    assert all(r["status"] == "graded" for k, r in rows.items() if k != "javier-ruiz-molina_21105")
    assert all("!/" not in r["source"] for r in rows.values())  # the plain files, not the zip's copies
    assert "test_leakage" in rows["sofia-navarro-diaz_21070"]["flags"].split()
    assert "model_reuse" in rows["chen-wei_21088"]["flags"].split()
    assert "no_outputs" in rows["irene-castro-gomez_21093"]["flags"].split()
    best = max(rows.values(), key=lambda r: float(r["total"] or 0))
    assert best["student"] in ("lucia-martin-prieto_21034", "tom-becker_21120")
    moodle = list(csv.reader(open(here / "out" / "moodle_grades.csv", encoding="utf-8")))
    assert moodle[1][:2] == ["Participant 21112", "Ana Belén Torres"]
