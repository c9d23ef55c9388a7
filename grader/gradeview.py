"""Terminal presentation of `grader grade` (part of the CLI layer): the progress bar and the summary.

On a terminal, a rich progress bar shows submissions done / total, failures so far, the rate and
the time left. Elsewhere (pipes, CI, tests) nothing is drawn while grading and the summary is plain
deterministic text, so it can be compared exactly.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import click

from .gradebook import GradeResult
from .intake import Duplicate, Intake, Refused

LMS_LABEL = {"moodle": "Moodle", "canvas": "Canvas", "file": "file"}


class GradeProgress:
    """Listens to grading events; draws a bar when ``live`` (stdout is a terminal)."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.done = 0
        self.failures = 0
        self.started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        self._graded_now = 0

    def __enter__(self) -> "GradeProgress":
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      TextColumn("left"), TimeRemainingColumn(),
                                      console=Console(highlight=False), transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def event(self, kind: str, info: Mapping[str, Any]) -> None:
        if kind == "start":
            self.started = time.monotonic()
            if self._progress is not None and info["todo"]:
                self._task = self._progress.add_task("grade", total=info["todo"], info="")
            return
        if kind == "skipped":  # listed in the summary; the bar counts this run's work only
            return
        elif kind == "result":
            self.done += 1
            self._graded_now += 1
            self._failure(info.get("stored") or info["result"])
            if self._progress is not None and info["result"].status != "graded":
                r = info["result"]
                self._progress.console.print(f"[red]{r.status}[/red] {r.student}: {r.reason}", markup=True,
                                             highlight=False)
        elif kind == "restart" and self._progress is not None:
            self._progress.console.print(f"a worker process was restarted ({info['reason']}): "
                                         f"{', '.join(info['students'])}")
        if self._progress is not None and self._task is not None:
            elapsed = max(1e-6, time.monotonic() - self.started)
            rate = self._graded_now / elapsed
            self._progress.update(self._task, completed=self.done,
                                  info=f"{self.failures} failed · {rate:.1f}/s")

    def _failure(self, result: GradeResult) -> None:
        if result.status != "graded":
            self.failures += 1


def intake_lines(intake: Intake, source: str) -> list[str]:
    n = len(intake.submissions)
    scheme = LMS_LABEL.get(intake.lms, intake.lms)
    head = f"{n} submission{'s' if n != 1 else ''} in {source} (named as in {scheme})" if intake.lms != "file" \
        else f"{n} submission{'s' if n != 1 else ''} in {source}"
    if intake.refused:
        head += f"; {len(intake.refused)} entr{'ies' if len(intake.refused) != 1 else 'y'} refused"
    lines = [head]
    for dup in intake.duplicates:
        lines.append(_duplicate(dup))
    if len(intake.identical) == 1:
        copy, kept = intake.identical[0]
        lines.append(f"  the same file twice, graded once: {copy} = {kept}")
    elif intake.identical:
        lines.append(f"  {len(intake.identical)} files found twice (same student, same bytes: a folder and a zip "
                     "of the same export?), each graded once")
    return lines


def _duplicate(dup: Duplicate) -> str:
    pairs = ", ".join(f"{s} -> {i}" for s, i in zip(dup.sources, dup.ids))
    return f"  duplicate student id {dup.base_id}: kept apart as {pairs}"


def plan_line(todo: int, skipped: int, workers: int, out_dir: str, stale: int = 0) -> str:
    again = " (same notebook and grader version; --regrade grades them again)"
    if not todo:
        return f"nothing to grade: all {skipped} already graded{again}"
    line = f"grading {todo} with {workers} worker{'s' if workers != 1 else ''} -> {out_dir}"
    if stale:
        line += f" ({stale} graded before against other reference runs)"
    return line + (f"; {skipped} already graded, skipped{again}" if skipped else "")


def summary_lines(results: Sequence[GradeResult], refused: Sequence[Refused], kept: Sequence[str],
                  files: Sequence[tuple[str, str]]) -> list[str]:
    """The end of a run: counts, every submission that could not be graded, where the files are."""
    graded = [r for r in results if r.status == "graded"]
    failed = [r for r in results if r.status != "graded"]
    flagged = [r for r in graded if set(r.flags) - {"late", "duplicate_id"}]
    totals = sorted(r.total for r in graded if r.total is not None)
    lines = [f"graded {len(graded)} of {len(results)} submission{'s' if len(results) != 1 else ''}"
             + (f"; {len(failed)} could not be graded" if failed else "")
             + (f"; {len(flagged)} flagged" if flagged else "")]
    if totals:
        max_total = max((r.max_total or 0.0) for r in graded)
        median = totals[len(totals) // 2] if len(totals) % 2 else (totals[len(totals) // 2 - 1]
                                                                  + totals[len(totals) // 2]) / 2
        lines.append(f"  totals: median {median:.2f} / {max_total:.2f}, min {totals[0]:.2f}, max {totals[-1]:.2f}")
    if failed:
        lines.append("could not be graded:")
        lines += [f"  {r.student} [{r.status}] {r.reason or ''}".rstrip() for r in failed]
    if refused:
        lines.append("refused (not extracted):")
        lines += [f"  {x.source}: {x.reason}" for x in refused]
    if kept:
        lines.append(f"regrade failed, previous grade kept: {', '.join(sorted(kept))}")
    lines.append("files:")
    lines += [f"  {label:14}  {path}" for label, path in files]
    return lines


def assignments_line(results: Sequence[GradeResult], shown: str | None) -> list[str]:
    """With --assignment auto, a class whose notebooks were detected as different assignments."""
    counts: dict[str, int] = {}
    for r in results:
        if r.status == "graded":
            counts[r.assignment] = counts.get(r.assignment, 0) + 1
    if len(counts) < 2:
        return []
    parts = ", ".join(f"{a} ({n})" for a, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return [f"notebooks detected as different assignments: {parts}; the class summary shows {shown}; "
            "pass --assignment to grade them all against one"]


def echo(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(line)
