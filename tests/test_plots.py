"""Figures: valid PNG/SVG bytes, deterministic, print-sized, no pyplot and no rc settings left behind."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from grader import plots

CURVES = [plots.Curve("relu", [0.80, 0.84, 0.86, None, 0.87]), plots.Curve("run:tanh", [0.78, 0.83, 0.85])]
BANDS = [plots.Band("relu", [0.81, 0.845, 0.86, 0.865, 0.87], [0.80, 0.84, 0.85, 0.86, 0.865],
                    [0.82, 0.85, 0.87, 0.87, 0.875])]


def curves(fmt: str = plots.DEFAULT_FORMAT, **kw) -> bytes:
    return plots.curves_figure(CURVES, BANDS, xlabel="Epoch", ylabel="Validation accuracy", fmt=fmt, **kw)


def final(fmt: str = plots.DEFAULT_FORMAT) -> bytes:
    markers = [plots.Marker("validation", "", 0.9012), plots.Marker("test", "", 0.8954),
               plots.Marker("validation", "reference", 0.902, 0.899, 0.905),
               plots.Marker("test", "reference", 0.895, 0.893, 0.898)]
    return plots.final_figure(markers, [plots.Threshold("full", 0.90), plots.Threshold("partial", 0.88, ":")],
                              rows={"validation": "validation", "test": "test"}, xlabel="Accuracy",
                              legend={"yours": "you", "tolerance": "±0.02"}, tolerance=(0.8812, 0.9212), fmt=fmt)


def class_figures(fmt: str = plots.DEFAULT_FORMAT) -> list[bytes]:
    return [
        plots.totals_histogram([3, 5.5, 7, 7, 9.5, 10], 10, xlabel="points", ylabel="n", fmt=fmt),
        plots.status_bars([("Exercise 1: activation units", {"pass": 3, "fail": 1}),
                           ("Validation set", {"partial": 2, "missing": 2})],
                          {"pass": "pass", "partial": "partial", "fail": "fail", "missing": "missing"},
                          xlabel="%", fmt=fmt),
        plots.val_test_scatter([(0.90, 0.89, False), (0.88, 0.90, True)], full=0.9, partial=0.88, gap=0.02,
                               labels={k: k for k in ("x", "y", "ok", "flagged", "diagonal", "gap", "full",
                                                      "partial")}, fmt=fmt),
    ]


def test_rasters_are_opaque_rgb_at_print_resolution():
    assert plots.DEFAULT_FORMAT == "jpeg"  # WeasyPrint embeds JPEG as is; it re-encodes PNG
    for fmt, name in (("jpeg", "JPEG"), ("png", "PNG")):
        image = Image.open(io.BytesIO(curves(fmt)))
        assert image.format == name and image.mode == "RGB"  # no alpha: WeasyPrint embeds one image, not two
        w, h = plots.CURVES_SIZE
        assert abs(image.size[0] - w * plots.PRINT_DPI) <= 1 and abs(image.size[1] - h * plots.PRINT_DPI) <= 1
    assert plots.PRINT_DPI >= 150


def test_jpeg_keeps_full_colour_resolution():
    image = Image.open(io.BytesIO(curves("jpeg")))
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4: thin coloured lines keep their colour


def test_every_figure_in_both_formats():
    for fmt in plots.FORMATS:
        for data in [curves(fmt), final(fmt), *class_figures(fmt)]:
            if fmt == "png":
                assert data.startswith(b"\x89PNG\r\n\x1a\n")
            elif fmt == "jpeg":
                assert data.startswith(b"\xff\xd8\xff")
            else:
                assert data.lstrip().startswith(b"<?xml") and b"<svg" in data


def test_deterministic_and_the_cached_background_changes_nothing():
    plots._cache.clear()
    fresh = curves()
    cached = curves()
    assert fresh == cached
    plots._cache.clear()
    assert curves() == fresh
    assert final() == final()
    assert class_figures() == class_figures()
    assert curves("svg") == curves("svg")


def test_a_student_curve_is_drawn_over_the_cached_background():
    plots._cache.clear()
    with_runs = curves()
    only_reference = plots.curves_figure([], BANDS, xlabel="Epoch", ylabel="Validation accuracy", epochs=5)
    assert with_runs != only_reference
    # the background stays clean: the reference alone renders the same after the student's runs
    plots._cache.clear()
    before = plots.curves_figure([], BANDS, xlabel="Epoch", ylabel="Validation accuracy", epochs=5)
    curves()
    assert plots.curves_figure([], BANDS, xlabel="Epoch", ylabel="Validation accuracy", epochs=5) == before


def test_styles_differ_by_marker_not_only_colour():
    keys = [plots.Curve(f"k{i}", [0.5]) for i in range(7)]
    styles = plots.curve_styles(keys, [])
    assert len({s.marker for s in styles.values()}) == 7
    assert len({s.colour for s in styles.values()}) == 7


def test_reference_variants_keep_their_style_whatever_the_student_ran():
    a = plots.curve_styles([plots.Curve("run:x", [1]), plots.Curve("relu", [1])], BANDS)
    b = plots.curve_styles([plots.Curve("relu", [1])], BANDS)
    assert a["relu"] == b["relu"]


def test_empty_figure_with_a_note():
    data = plots.curves_figure([], [], xlabel="Epoch", ylabel="acc", empty_note="nothing to draw")
    assert data.startswith(b"\xff\xd8\xff")


def test_nice_limits_snap_to_a_grid():
    assert plots._nice_limits([0.8123, 0.8877], step=0.05, pad=0.005, floor=0, ceil=1) == (0.8, 0.9)
    assert plots._nice_limits([0.1, 0.1], step=0.05, pad=0.005, floor=0, ceil=1) == (0.05, 0.15)
    assert plots._nice_limits([0.1, 0.1], step=0.01, pad=0.0, floor=0, ceil=1) == (0.09, 0.11)
    assert plots._nice_limits([], step=0.05, pad=0.0, floor=0, ceil=1) == (0, 1)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown image format"):
        class_figures("jpg")


def test_no_pyplot_and_no_rc_changes_leak():
    code = textwrap.dedent("""
        import sys, matplotlib
        matplotlib.rcParams["lines.linewidth"] = 7.0
        before = dict(dict.items(matplotlib.rcParams))  # dict.items: reading "backend" would pick one
        from tests.test_plots import curves, final, class_figures
        curves(); final(); class_figures(); curves("svg")
        after = dict(dict.items(matplotlib.rcParams))
        assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
        assert "tensorflow" not in sys.modules, "tensorflow imported"
        changed = sorted(k for k in before if before[k] != after.get(k))
        assert not changed, changed
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=_root())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent)
