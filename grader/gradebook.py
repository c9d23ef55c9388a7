"""The gradebook: every graded submission in SQLite, and the files an instructor takes away.

One row per (assignment, student, notebook sha256, grader version), written in one transaction,
so a batch killed at any moment (even ``kill -9``) loses at most the submissions being graded at
that moment, and the same command run again grades only those: the rest are found here and
skipped. The database runs in WAL mode with ``synchronous=FULL`` (a committed grade survives a
power cut) and a busy timeout; writes take the write lock up front (``BEGIN IMMEDIATE``) and are
retried while another process holds it, so two ``grader grade`` runs on one database at once
interleave their rows instead of failing or corrupting it. Each process has one writer.

The exports (``grades.csv``, the LMS import file, ``results.json``) are pure functions of the
rows: sorted, fixed float formatting, no timestamps, so the same grades give byte-identical
files. They are written atomically (temp file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from . import files
from .errors import GraderError

SCHEMA_VERSION = 2  # 2: status 'timeout' (a re-execution that ran out of time); 1 is migrated on open
# error: the grader failed (a bug); timeout: `grade --execute` ran out of time. Both are retried.
STATUSES = ("graded", "unreadable", "error", "timeout")
DONE_STATUSES = ("graded", "unreadable")  # what a re-run skips
LMS_KINDS = ("moodle", "canvas", "generic")
LMS_FILES = {"moodle": "moodle_grades.csv", "canvas": "canvas_grades.csv", "generic": "lms_grades.csv"}
BUSY_TIMEOUT_S = 30.0  # SQLite's own wait for a lock, per statement
RETRY_FOR_S = 120.0  # then ours, around a whole transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    assignment     TEXT NOT NULL,
    student        TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('graded', 'unreadable', 'error', 'timeout')),
    total          REAL,
    max_total      REAL,
    name           TEXT NOT NULL,
    source         TEXT NOT NULL,
    lms            TEXT NOT NULL,
    lms_id         TEXT,
    flags          TEXT NOT NULL,
    reason         TEXT,
    report         TEXT,
    refs           TEXT NOT NULL,
    result         TEXT,
    graded_at      TEXT NOT NULL,
    PRIMARY KEY (assignment, student, sha256, grader_version)
);
CREATE INDEX IF NOT EXISTS results_by_notebook ON results (student, sha256, grader_version);
"""


class GradebookError(GraderError):
    """The gradebook cannot be opened or written (not a database, locked for too long, read-only)."""


@dataclass(frozen=True)
class GradeResult:
    """One submission as graded: the row of the gradebook and of every export.

    ``status`` is ``graded`` (whatever the grade), ``unreadable`` (the notebook cannot be read:
    ``reason`` says why, in a line the student can act on) or ``error`` (the grader itself failed
    on it; retried on the next run). ``result`` is the ``grader check --json`` object plus the
    ``hints`` and ``flags`` the report shows; ``flags`` here are kinds only (the CSV column), with
    the intake's own (``late``, ``duplicate_id``) added. ``report`` is the PDF's path relative to
    the output folder. ``references`` fingerprints the reference records the plausibility checks
    compared against: they are an input of the grade too, so a re-run grades again when they changed.
    """

    assignment: str
    student: str
    sha256: str
    grader_version: str
    status: str
    name: str
    source: str
    lms: str
    lms_id: str | None = None
    total: float | None = None
    max_total: float | None = None
    flags: tuple[str, ...] = ()
    reason: str | None = None
    report: str | None = None
    references: str = ""  # digest of the reference records it was checked against
    result: Mapping[str, Any] | None = field(default=None, compare=False)
    seconds: float = field(default=0.0, compare=False)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.assignment, self.student, self.sha256, self.grader_version)

    @property
    def checks(self) -> list[Mapping[str, Any]]:
        return list((self.result or {}).get("checks") or ())

    def to_dict(self) -> dict[str, Any]:
        return {"student": self.student, "name": self.name, "assignment": self.assignment,
                "status": self.status, "total": self.total, "max_total": self.max_total,
                "flags": list(self.flags), "reason": self.reason, "report": self.report,
                "source": self.source, "lms": self.lms, "lms_id": self.lms_id, "sha256": self.sha256,
                "grader_version": self.grader_version, "references": self.references, "result": self.result}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GradeResult":
        return cls(assignment=d["assignment"], student=d["student"], sha256=d["sha256"],
                   grader_version=d["grader_version"], status=d["status"], name=d["name"], source=d["source"],
                   lms=d["lms"], lms_id=d.get("lms_id"), total=d.get("total"), max_total=d.get("max_total"),
                   flags=tuple(d.get("flags") or ()), reason=d.get("reason"), report=d.get("report"),
                   references=d.get("references", ""), result=d.get("result"))


T = TypeVar("T")


class Gradebook:
    """One SQLite gradebook file. Use one instance per process (it is the process's one writer)."""

    def __init__(self, path: str | Path, *, retry_for: float = RETRY_FOR_S) -> None:
        self.path = Path(path)
        self.retry_for = retry_for
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                      check_same_thread=False)
        except OSError as exc:
            raise GradebookError(f"{self.path}: cannot open the gradebook ({exc.strerror}: {exc.filename})") from None
        except sqlite3.Error as exc:
            raise GradebookError(f"{self.path}: cannot open the gradebook ({exc})") from None
        try:
            self._retrying(self._setup)
        except BaseException:
            self.db.close()
            raise

    def _setup(self) -> None:
        self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise GradebookError(f"{self.path}: cannot switch the gradebook to WAL mode (got {mode}); "
                                 "put it on a local disk")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) == 1:
                _migrate_v1(self.db)
            elif int(row[0]) != SCHEMA_VERSION:
                raise GradebookError(f"{self.path}: gradebook schema {row[0]}, this grader reads "
                                     f"{SCHEMA_VERSION}; use another --db")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Gradebook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------- locking

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` again while SQLite says the database is busy, for up to ``retry_for`` s."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if ("locked" in text or "busy" in text) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                raise GradebookError(f"{self.path}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise GradebookError(f"{self.path}: not a usable gradebook ({exc})") from None

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = body(self.db)
                self.db.execute("COMMIT")
                return out
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return self._retrying(run)

    # -------------------------------------------------------------------------------- reading

    def lookup(self, student: str, sha256: str, grader_version: str,
               assignment: str | None = None) -> GradeResult | None:
        """The stored result for a notebook (any assignment when ``assignment`` is None)."""
        sql = "SELECT * FROM results WHERE student = ? AND sha256 = ? AND grader_version = ?"
        args: list[Any] = [student, sha256, grader_version]
        if assignment is not None:
            sql += " AND assignment = ?"
            args.append(assignment)
        rows = self._retrying(lambda: self._select(sql + " ORDER BY assignment", args))
        done = [r for r in rows if r.status in DONE_STATUSES]
        return (done or rows or [None])[0]

    def results(self, keys: Iterable[tuple[str, str, str, str]] | None = None) -> list[GradeResult]:
        """The rows for these keys (all rows when None), sorted by student then assignment."""
        rows = self._retrying(lambda: self._select("SELECT * FROM results", []))
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r.key in wanted]
        return sorted(rows, key=lambda r: (r.student, r.assignment, r.sha256, r.grader_version))

    def _select(self, sql: str, args: Sequence[Any]) -> list[GradeResult]:
        cur = self.db.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [_from_row(dict(zip(names, row))) for row in cur.fetchall()]

    # -------------------------------------------------------------------------------- writing

    def record(self, result: GradeResult, *, graded_at: str) -> str:
        """Store one result in one transaction: ``"written"``, or ``"kept"`` when it is a failure
        and a grade of the same notebook (same student, sha256 and grader version, under any
        assignment) is already stored: a failed regrade never replaces a grade. A grade replaces
        the failures stored for its notebook."""
        if result.status not in STATUSES:
            raise ValueError(f"unknown status {result.status!r}")
        same = "student = ? AND sha256 = ? AND grader_version = ?"
        notebook = (result.student, result.sha256, result.grader_version)

        def body(db: sqlite3.Connection) -> str:
            if result.status != "graded":
                if db.execute(f"SELECT 1 FROM results WHERE {same} AND status = 'graded'", notebook).fetchone():
                    return "kept"
            else:
                db.execute(f"DELETE FROM results WHERE {same} AND status != 'graded' AND assignment != ?",
                           (*notebook, result.assignment))
            db.execute("INSERT OR REPLACE INTO results (assignment, student, sha256, grader_version, status, total, "
                       "max_total, name, source, lms, lms_id, flags, reason, report, refs, result, graded_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*result.key, result.status, result.total, result.max_total, result.name, result.source,
                        result.lms, result.lms_id, " ".join(result.flags), result.reason, result.report,
                        result.references,
                        None if result.result is None else json.dumps(result.result, ensure_ascii=False),
                        graded_at))
            return "written"

        return self._transaction(body)


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2 inside the caller's transaction: SQLite cannot change a CHECK constraint, so
    the results table is rebuilt with the new status list and its rows copied over."""
    db.execute("ALTER TABLE results RENAME TO results_v1")
    for statement in filter(str.strip, _SCHEMA.split(";")):
        db.execute(statement)
    db.execute("INSERT INTO results SELECT * FROM results_v1")
    db.execute("DROP TABLE results_v1")
    db.execute("CREATE INDEX IF NOT EXISTS results_by_notebook ON results (student, sha256, grader_version)")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _from_row(row: Mapping[str, Any]) -> GradeResult:
    return GradeResult(assignment=row["assignment"], student=row["student"], sha256=row["sha256"],
                       grader_version=row["grader_version"], status=row["status"], name=row["name"],
                       source=row["source"], lms=row["lms"], lms_id=row["lms_id"], total=row["total"],
                       max_total=row["max_total"], flags=tuple(row["flags"].split()) if row["flags"] else (),
                       reason=row["reason"], report=row["report"], references=row["refs"],
                       result=None if row["result"] is None else json.loads(row["result"]))


# ------------------------------------------------------------------------------------ exports

def _num(x: float | None) -> str:
    return "" if x is None else f"{float(x):.2f}"


def _csv(rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def check_columns(results: Sequence[GradeResult], order: Sequence[str] = ()) -> list[str]:
    """The check ids, in ``order`` (the rubric's) first, then as they first appear."""
    ids = list(order)
    for r in sorted(results, key=lambda r: r.student):
        ids += [c["id"] for c in r.checks if c.get("id") not in ids]
    return ids


def grades_csv(results: Sequence[GradeResult], checks: Sequence[str] = ()) -> str:
    """grades.csv: one row per student (id, name, total, max, status, one column per check with its
    points, flags, assignment, where the notebook was, why it could not be graded)."""
    columns = check_columns(results, checks)
    rows: list[list[Any]] = [["student", "name", "total", "max", "status", *columns, "flags", "assignment",
                              "source", "reason"]]
    for r in sorted(results, key=lambda r: (r.student, r.assignment)):
        points = {c["id"]: c.get("points") for c in r.checks}
        rows.append([r.student, r.name, _num(r.total), _num(r.max_total), r.status,
                     *[_num(points.get(cid)) for cid in columns], " ".join(sorted(set(r.flags))), r.assignment,
                     r.source, _one_line(r.reason)])
    return _csv(rows)


def feedback(result: GradeResult) -> str:
    """A short comment for the LMS: why it could not be graded, or what to fix (the check messages)."""
    if result.status != "graded":
        return _one_line(result.reason)
    return " | ".join(_one_line(c.get("message")) for c in result.checks if c.get("status") != "pass")


def lms_csv(kind: str, results: Sequence[GradeResult], *, title: str, max_total: float | None) -> str:
    """The import file of an LMS: Moodle's grading worksheet, Canvas's gradebook CSV, or a plain one."""
    ordered = sorted(results, key=lambda r: (r.student, r.assignment))
    if kind == "moodle":
        rows: list[list[Any]] = [["Identifier", "Full name", "Grade", "Maximum Grade", "Feedback comments"]]
        for r in ordered:
            ident = f"Participant {r.lms_id}" if r.lms == "moodle" and r.lms_id else r.student
            rows.append([ident, r.name, _num(r.total), _num(r.max_total if r.max_total is not None else max_total),
                         feedback(r)])
    elif kind == "canvas":
        rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title],
                ["Points Possible", "", "", "", "", _num(max_total)]]
        for r in ordered:
            # Canvas matches rows on ID (its user id); a row without one is left for the instructor.
            rows.append([r.name, r.lms_id if r.lms == "canvas" and r.lms_id else "", "", "", "", _num(r.total)])
    elif kind == "generic":
        rows = [["student", "name", "grade", "max_grade", "status", "feedback"]]
        for r in ordered:
            rows.append([r.student, r.name, _num(r.total), _num(r.max_total if r.max_total is not None else max_total),
                         r.status, feedback(r)])
    else:
        raise GradebookError(f"unknown LMS {kind!r} (known: {', '.join(LMS_KINDS)})")
    return _csv(rows)


def results_json(results: Sequence[GradeResult], refused: Sequence[Mapping[str, Any]] = (),
                 duplicates: Sequence[Mapping[str, Any]] = ()) -> str:
    """results.json: every submission's row and check object, the refused entries, the id clashes."""
    doc = {"submissions": [r.to_dict() for r in sorted(results, key=lambda r: (r.student, r.assignment))],
           "refused": [dict(x) for x in refused], "duplicates": [dict(x) for x in duplicates]}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write an export atomically (a crash leaves the old file or the new one)."""
    try:
        return files.write_atomic(path, text)
    except OSError as exc:
        raise GradebookError(f"{path}: cannot write it ({exc.strerror or exc})") from None


def _one_line(text: Any) -> str:
    return "" if text is None else " ".join(str(text).split())
