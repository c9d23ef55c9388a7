"""Terminal presentation of the battery runner (rich): live progress and the summary table.

Part of the CLI layer: the runner only emits events; this turns them into a display. When stdout
is not a terminal (CI, pipes), progress is one plain line per finished experiment instead of a
live display.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

console = Console(highlight=False)
if not console.is_terminal:  # pipes and CI logs: wide enough for the summary table
    console = Console(highlight=False, width=120)


class BatteryProgress:
    """Overall bar (epochs done / planned) plus one line per running (experiment, seed)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.total_task: Any = None
        self.rows: dict[tuple[str, int], Any] = {}
        self.seen: set[tuple[str, int]] = set()

    def __enter__(self) -> "BatteryProgress":
        if self.live:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.progress.__exit__(*exc)

    def event(self, kind: str, info: Mapping[str, Any]) -> None:
        if kind == "start" and self.live:
            self.total_task = self.progress.add_task("battery", total=info["total_epochs"], info="epochs")
        elif kind == "epoch":
            self._epoch(info)
        elif kind == "record":
            record = info["record"]
            s = record.summary()
            line = (f"done  {record.id:24} val {s['val_mean']:.4f} [{s['val_min']:.4f}-{s['val_max']:.4f}]"
                    + (f"  test {s['test_mean']:.4f}" if s["test_mean"] is not None else "")
                    + f"  {s['wall_time']:.0f}s")
            (self.progress.console if self.live else console).print(line)
            for key in [k for k in self.rows if k[0] == record.id]:
                self.progress.remove_task(self.rows.pop(key))
        elif kind == "error":
            console.print(f"[red]failed[/red] {info['id']}: {info['message']}")

    def _epoch(self, info: Mapping[str, Any]) -> None:
        if not self.live:
            return
        key = (info["id"], info["seed"])
        if key not in self.rows:
            label = " = ".join(info["ids"])
            self.rows[key] = self.progress.add_task(f"{label} seed {info['seed']}", total=info["epochs"], info="")
        self.progress.update(self.rows[key], completed=info["epoch"], info=f"val_acc {info['val_accuracy']:.4f}")
        if self.total_task is not None:
            self.progress.advance(self.total_task, 1)


def summary_table(records: Iterable[Any], trained: set[str], tests: Iterable[Any]) -> None:
    """One row per experiment: val accuracy over seeds, test accuracy, epochs, time, cached or not."""
    table = Table(title="reference battery", show_lines=False)
    for col, justify in (("experiment", "left"), ("seeds", "right"), ("epochs", "right"),
                         ("val acc (mean)", "right"), ("val range", "right"), ("test acc", "right"),
                         ("time", "right"), ("state", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for record in sorted(records, key=lambda r: r.id):
        s = record.summary()
        table.add_row(record.id, str(len(record.seeds)), ",".join(map(str, s["epochs"])), f"{s['val_mean']:.4f}",
                      f"{s['val_min']:.4f}-{s['val_max']:.4f}",
                      "-" if s["test_mean"] is None else f"{s['test_mean']:.4f}",
                      f"{s['wall_time']:.0f}s", "trained" if record.id in trained else "cached")
    console.print(table)
