#!/usr/bin/env python
"""Rebuild the example reports the README shows (docs/example_*.pdf and a PNG of each first page).

The student report is `grader report` on the good fixture notebook; the class summary covers every
trabajo2 fixture notebook (and lists the two broken ones as unreadable). Both use the reference
records in reference_runs/ (or $GRADER_REFERENCE_DIR), so rebuild them once the battery is trained.
Needs pdftoppm (poppler-utils) for the PNGs.

    .venv/bin/python docs/make_examples.py [--lang en|es] [--date 2025-06-30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import assignment as assignment_mod  # noqa: E402
from grader import report  # noqa: E402
from grader.errors import GraderError  # noqa: E402
from grader.submission import check_notebook, load_references  # noqa: E402

NOTEBOOKS = ROOT / "tests" / "fixtures" / "notebooks"
DOCS = ROOT / "docs"


def first_page_png(pdf: Path) -> Path:
    stem = pdf.with_suffix("")
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(stem)],
                   check=True)
    return stem.with_suffix(".png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", default="en", choices=report.LANGS)
    ap.add_argument("--date", default="2025-06-30")
    args = ap.parse_args()
    trabajo2 = assignment_mod.load("trabajo2")
    refs = load_references(trabajo2)

    good = check_notebook(NOTEBOOKS / "good_complete.ipynb", assignment="trabajo2", lang=args.lang, references=refs)
    student = report.render_student_report(report.from_check(good), refs, trabajo2, lang=args.lang, date=args.date)
    out = report.write_bytes(DOCS / "example_student_report.pdf", student)
    print(out, first_page_png(out))

    results, unreadable = [], []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        try:
            check = check_notebook(path, assignment="auto", lang=args.lang, references=refs)
        except GraderError as exc:
            unreadable.append((path.name, str(exc).replace(str(path), path.name)))
            continue
        if check.assignment == trabajo2.id:
            results.append({**report.from_check(check), "submission": path.stem})
    summary = report.render_class_summary(results, unreadable, trabajo2, lang=args.lang, date=args.date)
    out = report.write_bytes(DOCS / "example_class_summary.pdf", summary)
    print(out, first_page_png(out))


if __name__ == "__main__":
    main()
