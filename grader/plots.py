"""Figures for the printed reports, as image bytes (PNG by default, SVG on request).

Every function takes plain values (numbers and already translated labels) and returns the encoded
image: matplotlib's object API on an Agg canvas, never pyplot, with the report's rc settings
applied inside ``matplotlib.style.context`` so nothing leaks into the caller's matplotlib.

Printable in black and white: series are told apart by marker shape and line style (the student's
runs solid with filled markers, the reference dashed with hollow ones), filled areas by hatching;
colour (Okabe-Ito, distinct in grey too) only helps. The curve legends are left to the report's
HTML (:func:`curve_styles` says which colour and marker each series got), so the values in them
stay real text in the PDF.

Speed: a student report has one figure per exercise, and in a class most students compare the
same variants against the same reference curves. The part of a figure that does not depend on the
student (axes, ticks, labels, reference bands) is drawn once per process and kept as a raster; the
student's artists are drawn on a copy of it (matplotlib "blitting"). The result is byte-identical to
drawing from scratch along the same path, so output stays deterministic.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import matplotlib
import matplotlib.style
import matplotlib.ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

FORMATS = ("jpeg", "png", "svg")
# JPEG by default: WeasyPrint embeds a JPEG as it is (a DCTDecode stream), while it decodes every
# PNG and compresses its pixels again, which was a third of a student report's CPU time. At quality
# 92 with no chroma subsampling, lines, markers and text at print resolution look the same as the
# PNG's (rendered side by side at 110 dpi). Rasters render ~2.5x faster than SVG figures
# (WeasyPrint draws SVG in Python, and tiles SVG hatch patterns with visible seams); SVG PDFs are
# smaller. benchmarks/report.py --formats measures all three.
DEFAULT_FORMAT = "jpeg"
PRINT_DPI = 170  # print resolution for line art; 200 costs ~10% more per report (benchmarks/report.py)
JPEG_QUALITY = 92
MIME = {"jpeg": "image/jpeg", "png": "image/png", "svg": "image/svg+xml"}

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and each a different grey.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
STATUS_STYLE = {  # face colour, hatch: readable in grey and in colour
    "pass": ("#4d4d4d", ""),
    "partial": ("#bdbdbd", "///"),
    "fail": ("#ffffff", "xxx"),
    "missing": ("#ffffff", ".."),
}
REFERENCE_DASH = (0, (4, 2))
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 8.0,
    "legend.fontsize": 7.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.linewidth": 0.6,
    "svg.hashsalt": "grader-report",  # stable ids inside SVG output
    "svg.fonttype": "none",  # SVG text stays text (smaller; the PDF renderer sets it in DejaVu Sans)
    "hatch.linewidth": 0.6,
}


def _styled(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """Run a figure function under the report's rc settings, starting from matplotlib's defaults
    (a user's matplotlibrc stays out of the reports); the caller's settings are restored after.

    Artists read rcParams when they are created and tick labels when they are drawn, so the whole
    function (building and saving) runs inside the context.
    """
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> bytes:
        with matplotlib.style.context(["default", _RC]):
            return draw(*args, **kwargs)
    return wrapper


# ----------------------------------------------------------------------------------- values

@dataclass(frozen=True)
class Curve:
    """One series of per-epoch values (None where an epoch has no value); ``key`` pairs a student
    curve with the reference band of the same variant (same colour and marker)."""

    key: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Band:
    """A reference curve: per-epoch mean and min-max over seeds."""

    key: str
    mean: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


@dataclass(frozen=True)
class Marker:
    """A value on the final-model chart: ``row`` is a key of the chart's rows (validation, test)."""

    row: str
    group: str  # "" for the student's model, else the reference's label (one marker shape each)
    value: float
    low: float | None = None  # a reference's min-max over seeds
    high: float | None = None


@dataclass(frozen=True)
class Threshold:
    label: str
    value: float
    style: str = "--"  # matplotlib line style


def curve_styles(students: Sequence[Curve], references: Sequence[Band]) -> dict[str, Style]:
    """Colour and marker per series key: the reference variants first (so a variant keeps its style
    from one student to the next), then the student's other runs."""
    keys: list[str] = []
    for key in [*(b.key for b in references), *(c.key for c in students)]:
        if key not in keys:
            keys.append(key)
    return {k: Style(COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]) for i, k in enumerate(keys)}


# ---------------------------------------------------------------------------- the figures

CURVES_SIZE = (4.6, 2.45)  # inches; the report puts the legend (HTML) beside it


@_styled
def curves_figure(students: Sequence[Curve], references: Sequence[Band], *, xlabel: str, ylabel: str,
                  empty_note: str = "", epochs: int | None = None, fmt: str = DEFAULT_FORMAT) -> bytes:
    """Per-epoch validation accuracy: each student curve solid over its reference band, dashed.

    ``epochs`` limits the x axis (the reference is cut there); default: the longest series."""
    styles = curve_styles(students, references)
    longest = epochs or max([len(c.values) for c in students] + [len(b.mean) for b in references] + [1])
    values = [v for c in students for v in c.values[:longest] if v is not None and math.isfinite(v)]
    values += [v for b in references for v in (*b.low[:longest], *b.high[:longest])]
    ylim = _nice_limits(values, step=0.05, pad=0.005, floor=0.0, ceil=1.0)
    bands = tuple((b.key, styles[b.key], tuple(b.mean), tuple(b.low), tuple(b.high)) for b in references)
    key = ("curves", fmt, PRINT_DPI, xlabel, ylabel, empty_note, longest, ylim, bands)

    def background() -> tuple[Figure, Any]:
        fig, ax = _figure(*CURVES_SIZE)
        for band_key, style, mean, low, high in bands:
            xs = range(1, len(mean) + 1)
            ax.fill_between(xs, low, high, color=style.colour, alpha=0.13, linewidth=0)
            ax.plot(xs, mean, linestyle=REFERENCE_DASH, linewidth=1.1, color=style.colour,
                    marker=style.marker, markersize=4.2, markerfacecolor="white", markeredgewidth=0.9,
                    markevery=_every(len(mean), offset=1))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xlim(0.5, longest + 0.5)
        ax.set_ylim(*ylim)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, nbins=8))
        ax.grid(True, linewidth=0.4, color="#d0d0d0")
        ax.set_axisbelow(True)
        if empty_note:
            ax.text(0.5, 0.5, empty_note, transform=ax.transAxes, ha="center", va="center", wrap=True,
                    fontsize=7.5, color="#333333",
                    bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "#999999"})
        fig.subplots_adjust(left=0.13, right=0.98, top=0.97, bottom=0.17)
        return fig, ax

    def foreground(ax: Any) -> list[Any]:
        artists = []
        for curve in students:
            style = styles[curve.key]
            ys = [math.nan if v is None else v for v in curve.values]
            artists.append(Line2D(range(1, len(ys) + 1), ys, linestyle="-", linewidth=1.5, color=style.colour,
                                  marker=style.marker, markersize=4.2, markevery=_every(len(ys))))
        return artists

    return _render(key, background, foreground, fmt)


FINAL_SIZE = (7.0, 1.75)


@_styled
def final_figure(markers: Sequence[Marker], thresholds: Sequence[Threshold], *, rows: Mapping[str, str],
                 xlabel: str, legend: Mapping[str, str], tolerance: tuple[float, float] | None = None,
                 fmt: str = DEFAULT_FORMAT) -> bytes:
    """The final model's accuracies (filled circles, value printed) against the thresholds and the
    references (hollow, with their min-max over seeds). ``rows`` maps row keys to labels, top to
    bottom; ``legend`` names "yours", "tolerance" and each reference group; ``tolerance`` = (low,
    high) shades the accepted test range."""
    row_y = {row: len(rows) - 1 - i for i, row in enumerate(rows)}
    groups = []
    for m in markers:
        if m.group and m.group not in groups:
            groups.append(m.group)
    values = [m.value for m in markers] + [t.value for t in thresholds]
    values += [v for m in markers for v in (m.low, m.high) if v is not None]
    values += list(tolerance or ())
    xlim = _nice_limits(values, step=0.01, pad=0.004, floor=0.0, ceil=1.0)
    ylim = (-0.5 - 0.14 * max(0, len(groups) - 1), len(rows) - 0.5)
    key = ("final", fmt, PRINT_DPI, tuple(rows.items()), xlabel, tuple(sorted(legend.items())), tuple(groups),
           tuple((t.label, t.value, t.style) for t in thresholds), xlim, ylim, tolerance is not None)

    def background() -> tuple[Figure, Any]:
        fig, ax = _figure(*FINAL_SIZE)
        handles: list[Any] = []
        if tolerance is not None:
            handles.append(Patch(facecolor="#e6e6e6", edgecolor="#9a9a9a", hatch="////", linewidth=0.0,
                                 label=legend["tolerance"]))
        for th in thresholds:
            handles.append(ax.axvline(th.value, color="#333333", linestyle=th.style, linewidth=0.9,
                                      label=th.label))
        handles.append(Line2D([], [], marker="o", markersize=7, color="#000000", linestyle="none",
                              label=legend["yours"]))
        for i, group in enumerate(groups):
            handles.append(Line2D([], [], marker=MARKERS[(i + 1) % len(MARKERS)], markersize=5,
                                  markerfacecolor="white", markeredgecolor="#444444", color="#444444",
                                  linestyle="-", linewidth=0.9, label=group))
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_yticks([row_y[r] for r in rows])
        ax.set_yticklabels(list(rows.values()))
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(0.01 if xlim[1] - xlim[0] <= 0.12 else 0.05))
        ax.grid(True, axis="x", linewidth=0.4, color="#d0d0d0")
        ax.set_axisbelow(True)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  borderaxespad=0.0, handlelength=2.2)
        fig.subplots_adjust(left=0.12, right=0.64, top=0.95, bottom=0.25)
        return fig, ax

    def foreground(ax: Any) -> list[Any]:
        artists: list[Any] = []
        if tolerance is not None and "test" in row_y:
            y = row_y["test"]
            artists.append(ax.fill_betweenx([y - 0.42, y + 0.42], tolerance[0], tolerance[1],
                                            facecolor="#e6e6e6", edgecolor="#9a9a9a", hatch="////",
                                            linewidth=0.0, alpha=0.55))
        for m in markers:
            if m.row not in row_y:
                continue
            if m.group:
                i = groups.index(m.group)
                y = row_y[m.row] - 0.22 - 0.14 * i
                if m.low is not None and m.high is not None:
                    artists.append(Line2D([m.low, m.high], [y, y], color="#444444", linewidth=0.9,
                                          marker="|", markersize=5))
                artists.append(Line2D([m.value], [y], marker=MARKERS[(i + 1) % len(MARKERS)], markersize=5,
                                      markerfacecolor="white", markeredgecolor="#444444", linestyle="none"))
            else:
                y = row_y[m.row] + 0.12
                artists.append(Line2D([m.value], [y], marker="o", markersize=7, color="#000000",
                                      linestyle="none"))
                artists.append(ax.annotate(f"{m.value:.4f}", (m.value, y), xytext=(0, 5), textcoords="offset points",
                                           ha="center", va="bottom", fontsize=7.5,
                                           bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                                 "edgecolor": "none"}))
        return artists

    return _render(key, background, foreground, fmt)


@_styled
def totals_histogram(totals: Sequence[float], max_total: float, *, xlabel: str, ylabel: str,
                     fmt: str = DEFAULT_FORMAT) -> bytes:
    """Distribution of the students' totals, one bar per half point."""
    fig, ax = _figure(3.4, 2.4)
    step = 0.5 if max_total <= 20 else max(1.0, round(max_total / 20))
    edges = [i * step for i in range(math.ceil(max_total / step) + 2)]
    ax.hist(list(totals), bins=edges, color="#9e9e9e", edgecolor="#222222", linewidth=0.7)
    ax.set_xlim(0, edges[-1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, axis="y", linewidth=0.4, color="#d0d0d0")
    ax.set_axisbelow(True)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.95, bottom=0.18)
    return _encode(fig, fmt)


@_styled
def status_bars(checks: Sequence[tuple[str, Mapping[str, int]]], status_labels: Mapping[str, str], *,
                xlabel: str, fmt: str = DEFAULT_FORMAT) -> bytes:
    """Per check, the share of submissions in each status: stacked, hatched horizontal bars."""
    height = max(2.4, 0.8 + 0.24 * len(checks))
    fig, ax = _figure(3.6, height)
    ys = list(range(len(checks)))[::-1]
    left = [0.0] * len(checks)
    for status, (face, hatch) in STATUS_STYLE.items():
        shares = [100.0 * counts.get(status, 0) / (sum(counts.values()) or 1) for _, counts in checks]
        ax.barh(ys, shares, left=left, height=0.62, color=face, hatch=hatch, edgecolor="#222222",
                linewidth=0.6, label=status_labels.get(status, status))
        left = [a + b for a, b in zip(left, shares)]
    ax.set_yticks(ys)
    ax.set_yticklabels([_wrap(name, 26) for name, _ in checks], fontsize=6.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower center", bbox_to_anchor=(0.35, 1.0), ncol=4, frameon=False, fontsize=6.5,
              handlelength=1.6, columnspacing=0.9)
    fig.subplots_adjust(left=0.42, right=0.97, top=1 - 0.35 / height, bottom=0.45 / height)
    return _encode(fig, fmt)


@_styled
def val_test_scatter(points: Sequence[tuple[float, float, bool]], *, full: float, partial: float,
                     gap: float, labels: Mapping[str, str], fmt: str = DEFAULT_FORMAT) -> bytes:
    """Final validation (x) against test (y) accuracy per submission; flagged ones as crosses.

    The vertical lines are the full and partial validation thresholds; the dotted diagonals the
    accepted test-validation gap.
    """
    fig, ax = _figure(7.0, 2.9)
    coords = [v for p in points for v in p[:2]]
    lo, hi = _nice_limits([*coords, partial - 0.01, full + 0.01], step=0.01, pad=0.005, floor=0.0, ceil=1.0)
    ax.plot([lo, hi], [lo, hi], color="#777777", linewidth=0.7, linestyle="-", label=labels["diagonal"])
    ax.plot([lo, hi], [lo - gap, hi - gap], color="#777777", linewidth=0.7, linestyle=":", label=labels["gap"])
    ax.plot([lo, hi], [lo + gap, hi + gap], color="#777777", linewidth=0.7, linestyle=":")
    ax.axvline(full, color="#222222", linestyle="--", linewidth=0.9, label=labels["full"])
    ax.axvline(partial, color="#222222", linestyle=(0, (1, 1.5)), linewidth=0.9, label=labels["partial"])
    clean = [(x, y) for x, y, flagged in points if not flagged]
    flagged = [(x, y) for x, y, flag in points if flag]
    if clean:
        ax.plot(*zip(*clean), linestyle="none", marker="o", markersize=4.5, markerfacecolor="#0072B2",
                markeredgecolor="#000000", markeredgewidth=0.5, label=labels["ok"])
    if flagged:
        ax.plot(*zip(*flagged), linestyle="none", marker="X", markersize=6, color="#D55E00",
                markeredgecolor="#000000", markeredgewidth=0.5, label=labels["flagged"])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(labels["x"])
    ax.set_ylabel(labels["y"])
    ax.grid(True, linewidth=0.4, color="#e0e0e0")
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0)
    fig.subplots_adjust(left=0.09, right=0.64, top=0.96, bottom=0.16)
    return _encode(fig, fmt)


def data_uri(image: bytes, fmt: str) -> str:
    return f"data:{MIME[fmt]};base64,{base64.b64encode(image).decode('ascii')}"


# ------------------------------------------------------------------------------- internals

_CACHE_SIZE = 64  # backgrounds kept per process (~2 MB each): a class of 22 kinds of notebook needs 57
_cache: OrderedDict[Hashable, tuple[Figure, Any, Any]] = OrderedDict()
_cache_lock = threading.Lock()


def _render(key: Hashable, background: Callable[[], tuple[Figure, Any]],
            foreground: Callable[[Any], list[Any]], fmt: str) -> bytes:
    """Draw ``background`` once per key (kept as a raster), then the foreground artists over it.

    SVG has no raster to reuse: it is drawn whole, along the same path.
    """
    if fmt == "svg":
        fig, ax = background()
        for artist in foreground(ax):
            _attach(ax, artist)
        return _encode(fig, fmt)
    with _cache_lock:
        entry = _cache.pop(key, None)
        if entry is None:
            fig, ax = background()
            fig.canvas.draw()
            entry = (fig, ax, fig.canvas.copy_from_bbox(fig.bbox))
        _cache[key] = entry
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        fig, ax, saved = entry
        fig.canvas.restore_region(saved)
        artists = foreground(ax)
        try:
            for artist in artists:
                _attach(ax, artist)
                ax.draw_artist(artist)
        finally:
            for artist in artists:
                artist.remove()
        return _raster(fig, fmt)


def _attach(ax: Any, artist: Any) -> None:
    if isinstance(artist, Line2D) and artist.axes is None:
        ax.add_line(artist)


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=PRINT_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _encode(fig: Figure, fmt: str) -> bytes:
    """The whole figure drawn now, as PNG or SVG, with no date or software tag."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "svg":
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, facecolor="white")
        return buf.getvalue()
    fig.canvas.draw()
    return _raster(fig, fmt)


def _raster(fig: Figure, fmt: str) -> bytes:
    """The canvas as an opaque RGB JPEG or PNG (an alpha channel would make WeasyPrint embed a
    second image)."""
    from PIL import Image

    canvas = fig.canvas
    rgba = Image.frombuffer("RGBA", canvas.get_width_height(physical=True), canvas.buffer_rgba(),
                            "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    if fmt == "jpeg":
        # subsampling=0 (4:4:4): thin coloured lines keep their colour edges
        rgba.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0,
                                 dpi=(PRINT_DPI, PRINT_DPI))
    else:
        # Level 1: the PDF renderer decodes and re-compresses the pixels anyway; this only has to be quick.
        rgba.convert("RGB").save(buf, format="PNG", compress_level=1, dpi=(PRINT_DPI, PRINT_DPI))
    return buf.getvalue()


def _nice_limits(values: Sequence[float], *, step: float, pad: float, floor: float,
                 ceil: float) -> tuple[float, float]:
    """Axis limits on a ``step`` grid around the values, so similar data gets identical axes."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return floor, ceil
    lo = max(floor, math.floor((min(finite) - pad) / step) * step)
    hi = min(ceil, math.ceil((max(finite) + pad) / step) * step)
    if hi - lo < 2 * step - 1e-9:
        lo, hi = max(floor, lo - step), min(ceil, hi + step)
    return round(lo, 6), round(hi, 6)


def _every(n: int, offset: int = 0) -> slice | None:
    """Markers at about eight epochs per curve so a printed line stays readable."""
    if n <= 10:
        return None
    step = max(2, round(n / 8))
    return slice(min(offset, step - 1), None, step)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")
