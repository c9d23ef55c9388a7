"""Every fixture notebook, graded, against what a careful human reads in it (MANIFEST.toml).

Compared: the final validation and test accuracy (and their cells), the exercises answered, the
variants trained, the validation fraction, test leakage, model reuse, saved outputs, execution
order, the assignment, the student, and every run (cell, label, epochs, the value the student
reads, the curves shown). Run with no reference records and again with the shipped ones (when
`grader reference` has written them): the plausibility comparison must not contradict the reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from grader import assignment as assignment_mod
from grader.errors import GraderError
from grader.submission import check_notebook, load_references

NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"
MANIFEST = tomllib.loads((NOTEBOOKS / "MANIFEST.toml").read_text(encoding="utf-8"))
TOL = MANIFEST["tolerance"]
ENTRIES = {e["file"]: e for e in MANIFEST["notebook"]}


def _references(mode: str, name: str) -> dict:
    if mode == "none":
        return {}
    refs = load_references(assignment_mod.load(name))
    assert refs, f"no reference records shipped for {name} (run `grader reference -a {name}`)"
    return refs


def _close(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return abs(got - want) <= TOL
    return got == want


@pytest.mark.parametrize("refs", ["none", "shipped"])
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_fixture_matches_the_manifest(name, refs):
    entry = ENTRIES[name]
    path = NOTEBOOKS / name
    assert path.exists(), f"{name} is missing (tests/fixtures/make_notebooks.py builds it)"
    if not entry["readable"]:
        with pytest.raises(GraderError):
            check_notebook(path, references={})
        return
    result = check_notebook(path, lang="en", references=_references(refs, entry["assignment"]))
    got = result.to_dict()
    unknown = set(entry.get("unknown", ()))
    problems = []

    def expect(key: str, value, wanted) -> None:
        if not _close(value, wanted):
            problems.append(f"{key}: got {value!r}, manifest says {wanted!r}")

    final = got["final"]
    for key, field in (("final_val_accuracy", "val_accuracy"), ("test_accuracy", "test_accuracy"),
                       ("final_cell", "cell_val"), ("test_cell", "cell_test")):
        expect(key, final[field], None if key in unknown else entry.get(key))
    facts = got["facts"]
    expect("exercises", facts["exercises"], entry["exercises"])
    for key in ("activations", "initializers", "optimizers"):
        expect(key, sorted(facts[key]), sorted(entry[key]))
    for key in ("validation_fraction", "test_leakage", "model_reuse", "outputs_saved", "executed_in_order"):
        expect(key, facts[key], None if key in unknown else entry.get(key))
    expect("assignment", got["assignment"], entry["assignment"])
    if "student" in entry:
        expect("student", got["student"], entry["student"])
    runs = entry.get("runs", [])
    views = result.runs
    if len(runs) != len(got["runs"]):
        problems.append(f"runs: got {len(got['runs'])}, manifest says {len(runs)}")
    else:
        for mine, theirs in zip(got["runs"], runs):
            where = f"run {theirs['label']!r}"
            expect(f"{where} cell", mine["cell"], theirs["cell"])
            label = (mine["label"] or "").casefold()
            if label != theirs["variant"].casefold():  # naming a run by its variant reads it right too
                expect(f"{where} label", label, theirs["label"].casefold())
            if "epochs" in theirs and (theirs["shown"] or theirs.get("log_style") != "none"):
                expect(f"{where} epochs", mine["epochs"], theirs["epochs"])
            for metric in theirs["shown"]:
                series = mine[metric]
                if len(series) != len(theirs[metric]) or not all(
                        _close(a, b) for a, b in zip(series, theirs[metric])):
                    problems.append(f"{where} {metric}: got {series}, manifest says {theirs[metric]}")
        for view, theirs in zip(views, runs):
            if "read_val_accuracy" in theirs:
                expect(f"run {theirs['label']!r} read value", view.read_val, theirs["read_val_accuracy"])
    assert not problems, "\n".join(problems)
