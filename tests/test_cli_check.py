"""`grader check` through Click's CliRunner: the exact --json object, exit codes, languages, errors.

The reference records are pinned to an empty folder (GRADER_REFERENCE_DIR) so that these tests
read the notebooks only and do not change when `grader reference` writes new records; the
plausibility comparison has its own tests in test_checks.py and test_fixture_manifest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

from grader.cli import main

NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"
EXPECTED = Path(__file__).parent / "fixtures" / "expected"
MANIFEST = tomllib.loads((NOTEBOOKS / "MANIFEST.toml").read_text(encoding="utf-8"))
ENTRIES = {e["file"]: e for e in MANIFEST["notebook"]}
GOOD = "good_complete.ipynb"


pytestmark = pytest.mark.usefixtures("no_reference_runs")


def run(*args: str):
    return CliRunner().invoke(main, ["check", *args])


def present(name: str) -> Path:
    path = NOTEBOOKS / name
    assert path.exists(), f"{name} is missing (tests/fixtures/make_notebooks.py builds it)"
    return path


def test_json_of_the_good_submission_is_exactly_the_expected_object():
    result = run(str(present(GOOD)), "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got == json.loads((EXPECTED / "good_complete.json").read_text(encoding="utf-8"))
    assert list(got) == ["grader_version", "notebook_sha256", "student", "assignment", "total", "max_total",
                         "checks", "runs", "final", "facts"]
    assert result.output.count("\n{") == 0 and result.output.startswith("{")  # exactly one object


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPECTED.glob("*.json")))
def test_every_expected_json(name):
    """Each fixture's reviewed expected object (tests/fixtures/make_expected.py writes them)."""
    result = run(str(present(name + ".ipynb")), "--json", "--lang", "es")
    assert json.loads(result.output) == json.loads((EXPECTED / f"{name}.json").read_text(encoding="utf-8"))


def test_json_is_stable_and_has_no_paths_or_times(tmp_path):
    copy = tmp_path / "entrega.ipynb"
    copy.write_bytes(present(GOOD).read_bytes())
    first, second = run(str(copy), "--json").output, run(str(copy), "--json").output
    assert first == second
    assert str(tmp_path) not in first and "entrega" not in first
    assert json.loads(first)["notebook_sha256"] == json.loads(run(str(present(GOOD)), "--json").output)[
        "notebook_sha256"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_exit_code_of_every_fixture(name):
    entry = ENTRIES[name]
    result = run(str(present(name)))
    if not entry["readable"]:
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
        return
    assert result.exit_code in (0, 1), result.output
    bad = (entry.get("test_leakage") or entry.get("model_reuse") or entry.get("outputs_saved") is False
           or "final_val_accuracy" in entry.get("unknown", []) or entry.get("final_val_accuracy", 1) < 0.88)
    if name == GOOD:
        assert result.exit_code == 0
    elif bad:
        assert result.exit_code == 1


@pytest.mark.parametrize("content, reason", [
    (b"{\"cells\": [", "truncated file"),
    (b"<html>session expired</html>", "not a notebook (invalid JSON"),
])
def test_unreadable_notebooks_exit_2_with_one_line(tmp_path, content, reason):
    path = tmp_path / "x.ipynb"
    path.write_bytes(content)
    result = run(str(path))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and reason in result.output


def test_usage_errors_exit_2():
    assert run(str(present(GOOD)), "--assignment", "trabajo9").exit_code == 2
    assert run(str(present(GOOD)), "--lang", "fr").exit_code == 2
    assert run("missing.ipynb").exit_code == 2
    assert run(str(NOTEBOOKS)).exit_code == 2


def test_terminal_rubric_in_both_languages(monkeypatch):
    es = run(str(present(GOOD)))
    assert es.exit_code == 0
    assert "Total: 9.5/10" in es.output and "Para subir la nota:" in es.output and "celda" in es.output
    en = run(str(present(GOOD)), "--lang", "en")
    assert "Total: 9.5/10" in en.output and "To raise the grade:" in en.output and "cell" in en.output
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert "To raise the grade:" in run(str(present(GOOD))).output


def test_json_message_follows_the_language():
    es = json.loads(run(str(present(GOOD)), "--json").output)
    en = json.loads(run(str(present(GOOD)), "--json", "--lang", "en").output)
    assert es["checks"][0]["message"].startswith("compara ") and en["checks"][0]["message"].startswith("compares ")
    for a, b in zip(es["checks"], en["checks"]):
        assert (a["status"], a["points"], a["evidence"]) == (b["status"], b["points"], b["evidence"])


def test_explicit_assignment_overrides_detection():
    got = json.loads(run(str(present(GOOD)), "--json", "--assignment", "challenge_s3").output)
    assert got["assignment"] == "challenge_s3" and got["max_total"] == 10.0


@pytest.mark.slow
def test_check_never_imports_tensorflow():
    code = ("import sys\nfrom grader.cli import main\n"
            "try:\n    main(['check', sys.argv[1], '--json'])\nexcept SystemExit:\n    pass\n"
            "for name in ('tensorflow', 'keras', 'numpy'):  # numpy: a fifth of the 1 s budget\n"
            "    assert name not in sys.modules, name + ' imported'\nprint('ok', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, str(present(GOOD))], capture_output=True, text=True,
                          env={**os.environ, "GRADER_REFERENCE_DIR": ""}, timeout=120)
    assert done.returncode == 0 and done.stderr.strip().endswith("ok"), done.stderr
