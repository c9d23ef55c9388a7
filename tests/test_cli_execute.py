"""`grader check --execute` and `grader grade --execute` through Click's CliRunner.

The reference records are pinned to an empty folder, so every run is compared with the default
tolerance (0.030) and the expected lines do not move when `grader reference` writes new records.
Tests marked slow execute the tiny TensorFlow notebook for real (about 15 s each).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.sandbox import isolation

FIXTURES = Path(__file__).parent / "fixtures" / "execute"


pytestmark = pytest.mark.usefixtures("no_reference_runs")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def verification_section(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("Verification:", "Verificación:")))
    return lines[start:]


@pytest.mark.slow
def test_check_execute_reports_an_edited_claim_as_a_mismatch() -> None:
    result = run("check", str(FIXTURES / "tiny_train_claims_095.ipynb"), "--execute", "--lang", "en")
    assert result.exit_code == 1
    section = verification_section(result.output)
    assert re.fullmatch(r"Verification: the notebook was re-executed in a sandbox \(\d+\.\d s\): ran to the end",
                        section[0])
    assert section[1:] == [
        "  ✗ mismatch: final (cell 3): claimed 0.9512, re-executed 0.7842 at epoch 2 (tolerance 0.030)",
        "  The grade is computed from the re-executed notebook.",
        "  " + isolation().describe(),
    ]
    flat = " ".join(result.output.split())  # rich wraps the warnings to the terminal's width
    assert ("! cell 3: 'final' re-executed reaches 0.7842 at epoch 2, but the notebook shows 0.9512 "
            "(tolerance 0.030); the saved outputs do not match the code") in flat


@pytest.mark.slow
def test_check_execute_json_with_max_epochs_confirms_the_real_numbers() -> None:
    result = run("check", str(FIXTURES / "tiny_train.ipynb"), "--execute", "--max-epochs", "1", "--json",
                 "--lang", "en")
    data = json.loads(result.output)
    verification = data["verification"]
    execution = verification["execution"]
    assert (execution["status"], execution["cell"], execution["max_epochs"]) == ("ok", None, 1)
    assert execution["isolation"]["method"] == "root"
    assert verification["graded_from"] == "claimed"  # a capped run cannot show every result
    (run_,) = verification["runs"]
    assert (run_["status"], run_["cell"], run_["epoch"], run_["epochs_compared"], run_["claimed"]) == \
        ("confirmed", 2, 1, 1, 0.7475)
    assert abs(run_["executed"] - 0.7475) <= run_["tolerance"]
    assert data["runs"][0]["val_accuracy"] == [0.7475, 0.7842]  # the rubric read the submitted notebook
    assert result.exit_code == 1  # the tiny notebook does not pass the trabajo2 rubric


def test_check_execute_reports_a_timeout_with_the_cell() -> None:
    result = run("check", str(FIXTURES / "loop_forever.ipynb"), "--execute", "--cell-timeout", "3", "-a",
                 "trabajo2", "--lang", "en")
    assert result.exit_code == 1
    section = verification_section(result.output)
    assert re.fullmatch(r"Verification: the notebook was re-executed in a sandbox \(\d+\.\d s\): timeout", section[0])
    assert section[1:] == [
        "  stopped at cell 3: cell timeout (3 s)",
        "  The grade is computed from the submitted notebook; the re-execution only confirms its numbers.",
        "  " + isolation().describe(),
    ]


def test_check_execute_in_spanish() -> None:
    result = run("check", str(FIXTURES / "loop_forever.ipynb"), "--execute", "--cell-timeout", "3", "-a",
                 "trabajo2", "--lang", "es")
    section = verification_section(result.output)
    assert re.fullmatch(r"Verificación: el notebook se ha vuelto a ejecutar en un entorno aislado \(\d+\.\d s\): "
                        r"tiempo agotado", section[0])
    assert section[1] == "  se detuvo en la celda 3: cell timeout (3 s)"


@pytest.mark.parametrize("args, message", [
    (["--max-epochs", "0"], "Invalid value for '--max-epochs': 0 is not in the range x>=1."),
    (["--timeout", "0"], "Invalid value for '--timeout': 0.0 is not in the range x>=1."),
])
def test_check_execute_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run("check", str(FIXTURES / "loop_forever.ipynb"), "--execute", *args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: {message}"


def test_grade_one_records_a_timeout_with_the_cell(tmp_path: Path) -> None:
    from grader import grading
    from grader.intake import Submission

    path = tmp_path / "bob.ipynb"
    shutil.copy(FIXTURES / "loop_forever.ipynb", path)
    job = grading.Job(Submission("bob", "Bob", "bob.ipynb", path, "generic"), grading.file_sha256(path), "trabajo2",
                      "en", "2026-01-01", None, execute=True, cell_timeout=3)
    result = grading.grade_one(job)
    assert (result.status, result.total) == ("timeout", None)
    assert result.reason == "bob.ipynb: re-execution timed out at cell 3 (cell timeout (3 s))"
    assert result.result["verification"]["execution"]["cell"] == 2  # 0-based in JSON, like the check object


@pytest.mark.slow
def test_grade_execute_flags_a_mismatch_and_grades_the_re_executed_notebook(tmp_path: Path) -> None:
    src = tmp_path / "class"
    src.mkdir()
    shutil.copy(FIXTURES / "tiny_train_claims_095.ipynb", src / "ana.ipynb")
    out = tmp_path / "graded"
    result = run("grade", str(src), "-o", str(out), "-a", "trabajo2", "--no-reports", "--execute", "--lang", "en")
    assert result.exit_code == 0, result.output
    with open(out / "grades.csv", newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["student"], row["status"]) == ("ana", "graded")
    assert "mismatch" in row["flags"].split()
    (ana,) = json.loads((out / "results.json").read_text())["submissions"]
    verification = ana["result"]["verification"]
    assert (verification["execution"]["status"], verification["graded_from"]) == ("ok", "executed")
    assert [(r["status"], r["claimed"], r["executed"]) for r in verification["runs"]] == [("mismatch", 0.9512, 0.7842)]
    assert ana["total"] == 1.0  # graded on the re-executed notebook: 0.78, not the claimed 0.95
