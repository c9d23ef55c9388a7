"""Report speed: student PDFs per second on a process pool, against a baseline in the same run.

For each of N synthetic students of one class (tests/fixtures/report_data.py: trabajo2, curves
with each student's own noise, synthetic reference runs), a worker turns the check result into the
full student PDF: figures, HTML, WeasyPrint. Workers are warmed up first (fonts, templates), as
the batch grader's workers are after their first submission.

Baseline, same students, same pool: WeasyPrint alone on the same HTML with its figures removed
(the floor any report with this layout pays). Also measured: the same reports with the figure
cache off (every figure drawn whole), and with --formats, JPEG, PNG and SVG figures.

Besides wall-clock rates, each run records every PDF's CPU time in its worker: on a machine busy
with other work the wall rate says little, while the median CPU seconds per PDF project what N idle
cores give (contention inflates CPU time too, so the projection is conservative; the best case is
the fastest PDF's).

    python benchmarks/report.py                      # 24 students, 2 workers
    python benchmarks/report.py --students 48 --workers 2 --formats
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL = 3.0  # student PDFs per second on 2 cores
DATE = "2025-06-30"

_STATE: dict = {}


def _setup(fmt: str, cache: bool) -> None:
    """Worker initializer: load everything once and render one report (not timed)."""
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    from grader import assignment, plots, report
    from tests.fixtures import report_data as rd

    if not cache:
        plots._CACHE_SIZE = 0
    asg = assignment.load("trabajo2")
    _STATE.update(asg=asg, refs=rd.references(asg), fmt=fmt)
    report.render_student_report(rd.trabajo2_result(seed=1), _STATE["refs"], asg, lang="es", date=DATE,
                                 image_format=fmt)


def _student(i: int) -> tuple[float, int]:
    from grader import report
    from tests.fixtures import report_data as rd

    val = 0.88 + (i * 37 % 30) / 1000
    result = rd.trabajo2_result(f"Student {i:03d}", final_val=val, test=round(val - 0.006, 4), seed=1000 + i)
    start = time.process_time()
    pdf = report.render_student_report(result, _STATE["refs"], _STATE["asg"], lang="es", date=DATE,
                                       image_format=_STATE["fmt"])
    return time.process_time() - start, len(pdf)


def _text_only(html: str) -> tuple[float, int]:
    from grader import report

    start = time.process_time()
    pdf = report.html_to_pdf(html)
    return time.process_time() - start, len(pdf)


def _pool(workers: int, fmt: str = "jpeg", cache: bool = True) -> cf.ProcessPoolExecutor:
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                  initializer=_setup, initargs=(fmt, cache))
    list(pool.map(_noop, range(workers * 4)))  # start (and warm up) every worker before timing
    return pool


def _noop(_: int) -> None:
    return None


def _run(pool: cf.ProcessPoolExecutor, fn, items) -> tuple[float, list[float], int]:
    start = time.perf_counter()
    results = list(pool.map(fn, items))
    wall = time.perf_counter() - start
    return wall, sorted(r[0] for r in results), sum(r[1] for r in results) // max(1, len(results))


def _stripped_html(n: int) -> list[str]:
    """The same students' HTML with every figure removed (the baseline's input)."""
    from grader import assignment, report
    from tests.fixtures import report_data as rd

    asg = assignment.load("trabajo2")
    refs = rd.references(asg)
    out = []
    for i in range(n):
        val = 0.88 + (i * 37 % 30) / 1000
        result = rd.trabajo2_result(f"Student {i:03d}", final_val=val, test=round(val - 0.006, 4), seed=1000 + i)
        html = report.render_student_report_html(result, refs, asg, lang="es", date=DATE)
        out.append(re.sub(r'<img class="figure[^>]*>', "", html))
    return out


def _line(name: str, n: int, wall: float, cpu: list[float], size: int, cores: int) -> float:
    """One result row; returns the PDFs/s that ``cores`` idle cores give at the median CPU time."""
    mean, median, low = sum(cpu) / n, cpu[n // 2], cpu[0]
    print(f"{name:34} {n:4d} PDFs {wall:7.2f} s wall {n / wall:6.2f} PDFs/s | CPU s/PDF mean {mean:5.3f} "
          f"median {median:5.3f} min {low:5.3f} -> {cores / median:5.2f} PDFs/s on {cores} idle cores "
          f"(best case {cores / low:5.2f}) | {size // 1024:4d} KB/PDF")
    return cores / median


def formats(n: int) -> None:
    """JPEG, PNG and SVG figures, one process: where the time goes and what the PDF weighs."""
    import weasyprint

    from grader import assignment, plots, report
    from tests.fixtures import report_data as rd

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    asg = assignment.load("trabajo2")
    refs = rd.references(asg)
    print(f"\nJPEG and PNG ({plots.PRINT_DPI} dpi, cached backgrounds) vs SVG (vector, text as text), "
          "one process, CPU seconds per report:")
    for fmt in ("jpeg", "png", "svg") * 2:  # twice: the first round warms up
        stages = [0.0, 0.0, 0.0]
        size = 0
        for i in range(n):
            result = rd.trabajo2_result(f"S{i}", seed=2000 + i)
            t0 = time.process_time()
            html = report.render_student_report_html(result, refs, asg, lang="es", date=DATE, image_format=fmt)
            t1 = time.process_time()
            doc = weasyprint.HTML(string=html, url_fetcher=report.data_only_fetcher()).render(
                font_config=report._font_config())
            t2 = time.process_time()
            pdf = doc.write_pdf()
            t3 = time.process_time()
            for k, v in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                stages[k] += v
            size += len(pdf)
        _FORMAT_ROWS[fmt] = ([v / n for v in stages], size // n)  # the second (warm) round overwrites
    for fmt, (s, size) in _FORMAT_ROWS.items():
        print(f"  {fmt}: figures+HTML {s[0]:.3f}  layout {s[1]:.3f}  PDF drawing+write {s[2]:.3f}  "
              f"total {sum(s):.3f} s   {size // 1024} KB/PDF")
    jpeg, png, svg = (sum(_FORMAT_ROWS[f][0]) for f in ("jpeg", "png", "svg"))
    print(f"  png/jpeg time: {png / jpeg:.2f}x   svg/jpeg time: {svg / jpeg:.2f}x   (dpi {plots.PRINT_DPI})")


_FORMAT_ROWS: dict = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--formats", action="store_true", help="also compare JPEG, PNG and SVG figures")
    args = ap.parse_args()
    n, w = args.students, args.workers
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n} student reports, {w} worker processes, {os.cpu_count()} cores, load average {load:.1f} at start")

    htmls = _stripped_html(n)
    with _pool(w) as pool:
        ours = _run(pool, _student, range(n))
        base = _run(pool, _text_only, htmls)
    with _pool(w, cache=False) as pool:
        nocache = _run(pool, _student, range(n))
    projected = _line("grader report (figures cached)", n, *ours, w)
    _line("  same, figure cache off", n, *nocache, w)
    floor = _line("baseline: WeasyPrint, no figures", n, *base, w)
    print(f"ratio ours/baseline (wall): {(n / ours[0]) / (n / base[0]):.2f}   "
          f"(CPU projection: {projected / floor:.2f})")
    print(f"cache speedup (CPU): {sum(nocache[1]) / sum(ours[1]):.2f}x")
    print(f"PDFs/s: {n / ours[0]:.2f} measured, {projected:.2f} projected on {w} idle cores "
          f"(goal >= {GOAL:g} on 2 cores: {'met' if projected >= GOAL else 'NOT met'})")
    if args.formats:
        formats(max(3, min(n, 6)))


if __name__ == "__main__":
    main()
