"""The rubric as terminal renderables (rich): one line per check, the total, hints, warnings.

Builds values only; `cli.py` prints them. Student-provided text (names, excerpts, labels) goes
into `Text` objects, never into markup, so a "[0.35, 0.87]" in a message stays as written.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from .checks import CheckResult
from .messages import Messages, load

STYLES = {"pass": "green", "partial": "yellow", "fail": "red", "missing": "red"}
SYMBOLS = {"pass": "✓", "partial": "~", "fail": "✗", "missing": "·"}


def _points(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}".rstrip("0")


def rubric(result: CheckResult, messages: Messages | None = None) -> list[Any]:
    """Renderables, in order: header, the checks table, total, hints, warnings."""
    msg = messages or load(result.lang)
    out: list[Any] = [Text(msg.text("ui.header", assignment=result.assignment_title or result.assignment,
                                    student=result.student, notebook=result.notebook_name), style="bold")]
    table = _grid(3)
    for c in result.checks:
        style = STYLES[c.status]
        line = Text(c.title or c.id, style="bold" if c.required else "")
        if not c.required:
            line.append(f" ({msg.text('ui.optional')})", style="dim")
        line.append(": ")
        line.append(c.message)
        table.add_row(Text(f"{SYMBOLS[c.status]} {msg.text('status.' + c.status)}", style=style),
                      Text(f"{_points(c.points)}/{_points(c.max_points)}", style=style), line)
    out.append(table)
    total = Text(f"{msg.text('ui.total')}: {_points(result.total)}/{_points(result.max_total)}  ", style="bold")
    total.append(msg.text("ui.passed" if result.passed else "ui.not_passed"),
                 style="green" if result.passed else "red")
    out.append(total)
    titles = {c.id: c.title or c.id for c in result.checks}
    if result.hints:
        out.append(Text(msg.text("ui.hints") + ":", style="bold"))
        hints = _grid(2)
        for h in result.hints:
            hints.add_row(Text(f"  +{_points(h.gain)}", style="cyan"),
                          Text(f"{titles.get(h.check, h.check)}: {h.text}"))
        out.append(hints)
    if result.flags:
        out.append(Text(msg.text("ui.flags") + ":", style="bold"))
        flags = _grid(2)
        for f in result.flags:
            flags.add_row(Text("  !", style="yellow"), Text(f.message))
        out.append(flags)
    return out


def _grid(columns: int) -> Table:
    """Columns with hanging indent: the last one takes the rest of the width and wraps under itself."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1), expand=False)
    for i in range(columns):
        last = i == columns - 1
        table.add_column(no_wrap=not last, justify="right" if i == 1 and columns == 3 else "left",
                         ratio=1 if last else None)
    return table
