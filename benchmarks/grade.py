"""Batch grading speed: `grader grade` on a class of 200 notebooks, with PDFs, against itself with one
worker, in the same run.

The class is made of copies of tests/fixtures/notebooks/*.ipynb (the broken ones included, as a real
class has them) under Moodle-style names with different student ids, in a temporary folder. Each
configuration runs the real CLI in a subprocess, into a fresh output folder (nothing skipped), while
a sampler adds up the RSS of the whole process tree (parent and workers) every 50 ms.

Prints, per configuration: submissions, wall time, submissions/s, peak RSS of the tree; then the
ratio of the parallel run's rate to the one-worker baseline's, as `speedup: X.XX`, and the goal
(200 in under 60 s on 2 cores, under 1 GB).

    python benchmarks/grade.py                 # 200 notebooks, --workers <cores> vs --workers 1
    python benchmarks/grade.py --quick         # 40 notebooks
    python benchmarks/grade.py --no-reports    # the checks alone
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "notebooks"
GOAL_SECONDS, GOAL_N, GOAL_BYTES = 60.0, 200, 1024 ** 3


def make_class(folder: Path, n: int) -> list[str]:
    fixtures = sorted(FIXTURES.glob("*.ipynb"))
    if not fixtures:
        raise SystemExit(f"no fixture notebooks in {FIXTURES}")
    for i in range(n):
        src = fixtures[i % len(fixtures)]
        shutil.copy(src, folder / f"Alumno {i:03d}_{20000 + i}_assignsubmission_file_{src.name}")
    return [f.name for f in fixtures]


class TreeSampler:
    """Peak of the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            if total > self.peak:
                self.peak, self.peak_procs = total, len(procs)
            self._stop.wait(self.every)


def grade(src: Path, out: Path, workers: int, reports: bool) -> tuple[float, int, int, int]:
    cmd = [sys.executable, "-m", "grader", "grade", str(src), "-o", str(out), "--workers", str(workers),
           "--lang", "en"]
    if not reports:
        cmd.append("--no-reports")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    with TreeSampler(proc.pid) as sampler:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"grader grade failed ({proc.returncode}):\n{stderr[-3000:]}")
    pdfs = len(list((out / "reports").glob("*.pdf"))) if reports else 0
    return wall, sampler.peak, sampler.peak_procs, pdfs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=GOAL_N, help="notebooks in the class")
    parser.add_argument("--quick", action="store_true", help="40 notebooks")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-reports", action="store_true", help="skip the PDFs")
    parser.add_argument("--no-baseline", action="store_true", help="skip the --workers 1 run")
    args = parser.parse_args()
    n = 40 if args.quick else args.n
    reports = not args.no_reports
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        src = Path(tmp) / "class"
        src.mkdir()
        kinds = make_class(src, n)
        print(f"class: {n} notebooks (copies of {len(kinds)} fixtures), PDFs {'on' if reports else 'off'}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        rows = []
        configs = [args.workers] + ([] if args.no_baseline or args.workers == 1 else [1])
        for workers in configs:
            wall, peak, procs, pdfs = grade(src, Path(tmp) / f"out-{workers}", workers, reports)
            rows.append((workers, wall, peak))
            print(f"--workers {workers}: {n} in {wall:.1f} s = {n / wall:.2f} submissions/s, "
                  f"peak RSS {peak / 1024 ** 2:.0f} MB ({procs} processes)"
                  + (f", {pdfs} PDFs" if reports else ""))
    workers, wall, peak = rows[0]
    if len(rows) > 1:
        print(f"speedup: {rows[1][1] / wall:.2f} (--workers {workers} vs --workers 1, same run)")
    projected = wall * GOAL_N / n
    verdict = "met" if projected < GOAL_SECONDS and peak < GOAL_BYTES else "NOT met"
    print(f"goal (200 in < 60 s, < 1 GB): {verdict} ({projected:.0f} s for 200, {peak / 1024 ** 2:.0f} MB)")


if __name__ == "__main__":
    main()
