"""grader.execute and grader.verify: hostile notebooks re-executed in the sandbox, and the pure
claimed-vs-re-executed comparison.

The hostile fixtures (tests/fixtures/execute/, written by make_execute_notebooks.py) run plain
Python in a real kernel: a few seconds each, no TensorFlow. The comparison tests read the saved
tiny_train notebooks (executed for real when the fixtures were made) without running anything.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import sqlite3
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from grader import verify
from grader.execute import Executed, execute_notebook
from grader.nbrun import stage_dataset
from grader.sandbox import Limits
from grader.submission import check_notebook, load_references
from grader.verify import FLOOR, RunComparison, compare, tolerance
from tests.conftest import make_tiny_dataset

FIXTURES = Path(__file__).parent / "fixtures" / "execute"
LIMITS = Limits(address_space_mb=4096, cpu_seconds=120, max_processes=256, file_size_mb=64)


def materialize(name: str, folder: Path, **values: str) -> Path:
    """The fixture with its @PLACEHOLDERS@ filled in (ports and paths only the test knows)."""
    text = (FIXTURES / f"{name}.ipynb").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    out = folder / f"{name}.ipynb"
    out.write_text(text, encoding="utf-8")
    return out


def outputs(executed: Executed) -> dict[int, str]:
    """Cell number (1-based) -> its text outputs and error values, joined."""
    nb = nbformat.reads(executed.notebook.decode("utf-8"), as_version=4)
    found: dict[int, str] = {}
    for i, cell in enumerate(nb.cells):
        parts = [o.get("text", "") if o.get("output_type") == "stream" else o.get("evalue", "")
                 for o in cell.get("outputs", [])]
        if parts:
            found[i + 1] = "".join(parts)
    return found


# ----------------------------------------------------------------------------- hostile notebooks

def test_a_cell_that_never_ends_times_out_at_that_cell(tmp_path: Path) -> None:
    done = execute_notebook(FIXTURES / "loop_forever.ipynb", limits=LIMITS, cell_timeout=3, timeout=120)
    assert (done.status, done.cell, done.reason) == ("timeout", 3, "cell timeout (3 s)")
    assert done.seconds < 60  # kernel start included; it proves only that nothing hangs
    assert outputs(done) == {2: "started\n"}
    nb = nbformat.reads(done.notebook.decode(), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"  # it asked for "some-other-kernel"


def test_the_total_timeout_holds_without_a_cell_timeout(tmp_path: Path) -> None:
    done = execute_notebook(FIXTURES / "loop_forever.ipynb", limits=LIMITS, timeout=15)
    assert (done.status, done.cell, done.reason) == ("timeout", 3, "total timeout (15 s)")
    assert done.seconds < 15 + 20  # the total counts the kernel's start; teardown is the rest


def test_a_socket_to_the_host_or_outside_fails_and_is_reported(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    done = execute_notebook(materialize("socket_out", tmp_path, PORT=str(port)), limits=LIMITS, cell_timeout=30)
    assert (done.status, done.cell) == ("error", 3)
    assert done.reason == "OSError: [Errno 101] Network is unreachable"
    assert outputs(done)[2] == ("{'127.0.0.1': 'blocked: [Errno 101] Network is unreachable', "
                                "'1.1.1.1': 'blocked: [Errno 101] Network is unreachable'}\n")
    with pytest.raises(socket.timeout):
        server.accept()  # nothing ever reached the host
    server.close()
    assert done.isolation.network_isolated is True


def test_writes_outside_the_working_folder_are_stopped_and_reported(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    repo = Path(__file__).resolve().parent.parent
    home = Path.home()
    nb = materialize("write_outside", tmp_path, OUTSIDE=str(outside), REAL_HOME=str(home), REPO=str(repo))
    done = execute_notebook(nb, limits=LIMITS, cell_timeout=30)
    # a checkout under /tmp (as CI may make) is mounted read-only in the cage: a different error
    denial = "OSError" if repo.is_relative_to("/tmp") else "PermissionError"
    assert (done.status, done.cell) == ("error", 4)
    assert done.reason == f"PermissionError: [Errno 13] Permission denied: '{home}/grader_escaped.txt'"
    shown = outputs(done)
    assert shown[2].startswith("home ok /tmp/gx-")
    assert shown[3].splitlines() == [f"blocked {outside}/escaped.txt FileNotFoundError",
                                     f"blocked {home}/grader_escaped.txt PermissionError",
                                     f"blocked {repo}/grader_escaped.txt {denial}",
                                     "WROTE /tmp/grader_escaped.txt"]  # the cage's private /tmp
    assert list(outside.iterdir()) == []
    assert not (home / "grader_escaped.txt").exists()
    assert not (repo / "grader_escaped.txt").exists()
    assert not Path("/tmp/grader_escaped.txt").exists()


def test_a_fork_bomb_is_stopped_at_the_process_cap(tmp_path: Path) -> None:
    done = execute_notebook(FIXTURES / "fork_bomb.ipynb", limits=LIMITS, cell_timeout=60, timeout=120)
    assert (done.status, done.cell) == ("killed", 3)
    assert done.reason == "stopped at the process limit (256 processes and threads)"
    assert done.fork_failures >= 1
    assert done.seconds < 50  # stopped at the cap, before the cell timeout (60 s)
    assert outputs(done) == {2: "before\n"}


def test_an_unreadable_notebook_is_a_user_error(tmp_path: Path) -> None:
    from grader.errors import NotebookError

    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(NotebookError, match=r"bad\.ipynb: not a notebook \(invalid JSON\)"):
        execute_notebook(bad)


def test_executed_round_trips_with_zero_based_cells() -> None:
    from grader.sandbox import isolation

    done = Executed("timeout", 3, "cell timeout (3 s)", 4.5, isolation(), b"{}", 2, 1)
    data = done.to_dict()
    assert data["cell"] == 2
    assert "notebook" not in data
    assert Executed.from_dict(json.loads(json.dumps(data)), b"{}") == done


# ----------------------------------------------------------------------------- the data

KERAS_NAMES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
               "train-labels-idx1-ubyte.gz"]


def test_world_readable_data_is_linked_where_keras_looks(tmp_path: Path) -> None:
    from grader.data import DEBIAN_DIR

    target = stage_dataset(DEBIAN_DIR, tmp_path / "home")
    assert target == tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in target.iterdir()) == KERAS_NAMES
    assert all((target / n).is_symlink() and (target / n).resolve() == DEBIAN_DIR / n for n in KERAS_NAMES)


def test_data_the_cage_user_cannot_read_is_copied(tmp_path: Path, real_data: Path) -> None:
    private = tmp_path / "private"  # under pytest's root-only tmp folder
    private.mkdir()
    for name in KERAS_NAMES:
        (private / name).write_bytes((real_data / name).read_bytes())
    target = stage_dataset(private, tmp_path / "home")
    assert not any((target / n).is_symlink() for n in KERAS_NAMES)
    assert all((target / n).read_bytes() == (private / n).read_bytes() for n in KERAS_NAMES)


def test_uncompressed_data_is_gzipped_for_keras(tmp_path: Path) -> None:
    plain = make_tiny_dataset(tmp_path / "plain", n_train=20, n_test=10, compress=False)
    target = stage_dataset(plain, tmp_path / "home")
    packed = target / "train-labels-idx1-ubyte.gz"
    assert not packed.is_symlink()
    assert gzip.decompress(packed.read_bytes()) == (plain / "train-labels-idx1-ubyte").read_bytes()


# ----------------------------------------------------------------------------- the comparison

@pytest.fixture(scope="module")
def checks() -> dict[str, object]:
    real = check_notebook(FIXTURES / "tiny_train.ipynb", assignment="trabajo2", lang="en", references={})
    claimed = check_notebook(FIXTURES / "tiny_train_claims_095.ipynb", assignment="trabajo2", lang="en",
                             references={})
    return {"real": real, "claimed": claimed}


def test_an_edited_claim_of_095_is_a_mismatch_with_both_numbers(checks) -> None:
    (result,) = compare(checks["claimed"], checks["real"], {})
    assert result == RunComparison(run=0, cell=3, label="final", status="mismatch", experiment=None, epoch=2,
                                   claimed=0.9512, executed=0.7842, tolerance=0.03, epochs_compared=2,
                                   epochs_outside=2)


def test_the_same_numbers_are_confirmed(checks) -> None:
    (result,) = compare(checks["real"], checks["real"], {})
    assert (result.status, result.claimed, result.executed, result.epochs_compared) == ("confirmed", 0.7842, 0.7842, 2)


def test_max_epochs_compares_only_the_epochs_run(checks) -> None:
    (result,) = compare(checks["claimed"], checks["real"], {}, max_epochs=1)
    assert (result.status, result.epoch, result.claimed, result.executed, result.epochs_compared) == \
        ("mismatch", 1, 0.9512, 0.7475, 1)


def test_a_run_the_re_execution_did_not_reach_is_unconfirmed(checks, tmp_path: Path) -> None:
    nb = nbformat.read(FIXTURES / "tiny_train.ipynb", as_version=4)
    for cell in nb.cells:
        cell["outputs"] = [o for o in cell.get("outputs", []) if "val_accuracy" not in o.get("text", "")] \
            if cell.cell_type == "code" else cell.get("outputs")
        if cell.cell_type == "code" and "fit(" in cell.source:
            cell["outputs"] = []
    nbformat.write(nb, tmp_path / "stopped.ipynb")
    stopped = check_notebook(tmp_path / "stopped.ipynb", assignment="trabajo2", lang="en", references={})
    (result,) = compare(checks["real"], stopped, {})
    assert (result.status, result.why, result.cell) == ("unconfirmed", "not_rerun", 3)


def test_the_tolerance_is_the_reference_spread_with_a_floor(checks) -> None:
    from grader import assignment

    refs = load_references(assignment.load("trabajo2"))
    widths = [hi - lo for lo, hi in zip(refs["final"].band()["min"], refs["final"].band()["max"])]
    assert tolerance(widths, 2) == round(max(FLOOR, *widths[0:3]), 4)
    assert tolerance([0.0, 0.0, 0.0], 2) == FLOOR  # zeros init: no spread at all, the floor holds
    assert tolerance(None, 5) == verify.DEFAULT_TOLERANCE
    (result,) = compare(checks["claimed"], checks["real"], refs)
    assert (result.status, result.experiment) == ("mismatch", "final")  # 0.95 vs ~0.78: far outside
    assert result.tolerance == tolerance(widths, 2)


def test_one_bad_epoch_in_the_middle_is_tolerated_but_a_bad_last_epoch_is_not(checks) -> None:
    real = checks["real"]
    run = real.runs[0]
    three = replace(run, curves={**run.curves, "val_accuracy": (0.70, 0.75, 0.80)})
    bumped_middle = replace(run, curves={**run.curves, "val_accuracy": (0.70, 0.85, 0.80)})
    bumped_last = replace(run, curves={**run.curves, "val_accuracy": (0.70, 0.75, 0.85)})
    base = replace(real, runs=(three,))
    (middle,) = compare(replace(real, runs=(bumped_middle,)), base, {})
    (last,) = compare(replace(real, runs=(bumped_last,)), base, {})
    assert (middle.status, middle.epochs_outside) == ("confirmed", 1)
    assert (last.status, last.epoch, last.claimed, last.executed) == ("mismatch", 3, 0.85, 0.80)


def test_comparisons_round_trip_with_zero_based_cells(checks) -> None:
    (result,) = compare(checks["claimed"], checks["real"], {})
    data = result.to_dict()
    assert data["cell"] == 2
    assert RunComparison.from_dict(data) == result


# ----------------------------------------------------------------------------- the gradebook

def test_a_version_1_gradebook_is_migrated_and_takes_timeouts(tmp_path: Path) -> None:
    from grader.gradebook import Gradebook, GradeResult

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE results (assignment TEXT NOT NULL, student TEXT NOT NULL, sha256 TEXT NOT NULL,
            grader_version TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('graded', 'unreadable', 'error')),
            total REAL, max_total REAL, name TEXT NOT NULL, source TEXT NOT NULL, lms TEXT NOT NULL, lms_id TEXT,
            flags TEXT NOT NULL, reason TEXT, report TEXT, refs TEXT NOT NULL, result TEXT, graded_at TEXT NOT NULL,
            PRIMARY KEY (assignment, student, sha256, grader_version));
        INSERT INTO results VALUES ('trabajo2', 'ana', 'abc', '0.1.0', 'graded', 7.5, 10, 'Ana', 'ana.ipynb',
            'generic', NULL, '', NULL, NULL, 'r', NULL, '2026-01-01');
    """)
    db.commit()
    db.close()
    with Gradebook(path) as book:
        timeout = GradeResult("trabajo2", "bob", "def", "0.1.0", "timeout", "Bob", "bob.ipynb", "generic",
                              reason="bob.ipynb: re-execution timed out at cell 3 (cell timeout (3 s))")
        assert book.record(timeout, graded_at="2026-01-02") == "written"
        rows = {r.student: r for r in book.results()}
    assert (rows["ana"].status, rows["ana"].total) == ("graded", 7.5)
    assert rows["bob"].status == "timeout"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
        indexes = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results'").fetchall()
        assert sorted(indexes) == [("results_by_notebook",), ("sqlite_autoindex_results_1",)]
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'results_v1'").fetchone() == (0,)


def test_execute_is_not_imported_by_plain_check() -> None:
    import subprocess
    import sys

    code = ("import sys; from grader.cli import main; from grader.submission import check_notebook; "
            "print(sorted(m for m in ('grader.execute', 'grader.verify', 'tensorflow', 'nbclient') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert done.stdout.strip() == "[]"
