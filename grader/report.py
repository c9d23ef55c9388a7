"""Printable reports: one per student, one for the class. Check results -> HTML -> PDF.

The inputs are plain data: the object ``grader check --json`` prints (optionally with ``hints`` and
``flags`` lists, and runs carrying the ``exercise``/``variant`` the checker gave them: see
:func:`from_check`), the reference RunRecords by experiment id, and the assignment. The date is
passed in, never read from the clock, so the same inputs give byte-identical HTML and PDF. The
batch grader calls these functions from its worker processes; each process keeps its templates,
fonts and figure backgrounds after the first report.

Safety: every piece of student text (name, labels, excerpts, messages quoting the notebook) reaches
the page through Jinja2 autoescaping and is never compiled as a template, so ``<script>`` or
``{{ 7*7 }}`` print as text. Images are ``data:`` URIs made here; WeasyPrint gets a URL fetcher that
refuses every other URL, so rendering never reads a local file or the network.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
from markupsafe import Markup

from . import files
from . import plots
from .assignment import Assignment
from .records import RunRecord
from .reportview import LANGS, ReportError, messages, student_context, summary_context

__all__ = ["LANGS", "ReportError", "messages", "render_student_report", "render_student_report_html",
           "render_class_summary", "render_class_summary_html", "from_check", "html_to_pdf",
           "data_only_fetcher", "RefusedURL", "write_bytes"]


# ------------------------------------------------------------------------------ resources

@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    """Templates from the package's templates/ folder; autoescape on for every template."""
    root = resources.files("grader.templates")

    def load(name: str) -> str | None:
        res = root / name
        return res.read_text("utf-8") if res.is_file() else None

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


@functools.lru_cache(maxsize=None)
def stylesheet() -> Markup:
    """report.css, trusted (it ships with the package), inlined so an HTML report stands alone."""
    return Markup((resources.files("grader.templates") / "report.css").read_text("utf-8"))


def from_check(check: Any) -> dict[str, Any]:
    """The renderer's input from a :class:`grader.checks.CheckResult`: its JSON object, plus the
    hints and flags (``extras``) and each run's exercise and variant as the checker attributed them."""
    out = check.to_dict()
    extras = check.extras()
    out["hints"], out["flags"] = extras["hints"], extras["flags"]
    for shown, run in zip(out.get("runs", ()), check.runs):
        shown["exercise"], shown["variant"] = run.exercise, run.variant
    titles = {c.id: c.title for c in check.checks if c.title}
    for shown in out.get("checks", ()):
        if shown["id"] in titles:
            shown["title"] = titles[shown["id"]]
    return out


def render_student_report_html(result: Mapping[str, Any], references: Mapping[str, RunRecord],
                               assignment: Assignment, *, lang: str, date: str,
                               image_format: str = plots.DEFAULT_FORMAT) -> str:
    """The student report as one self-contained HTML document (deterministic)."""
    context = student_context(result, references, assignment, lang=lang, date=date, image_format=image_format)
    return environment().get_template("student_report.html.j2").render(context, css=stylesheet())


def render_student_report(result: Mapping[str, Any], references: Mapping[str, RunRecord],
                          assignment: Assignment, *, lang: str, date: str,
                          image_format: str = plots.DEFAULT_FORMAT) -> bytes:
    """The student report as A4 PDF bytes."""
    return html_to_pdf(render_student_report_html(result, references, assignment, lang=lang, date=date,
                                                  image_format=image_format))


def render_class_summary_html(results: Sequence[Mapping[str, Any]], unreadable: Sequence[tuple[str, str]],
                              assignment: Assignment, *, lang: str, date: str,
                              image_format: str = plots.DEFAULT_FORMAT) -> str:
    context = summary_context(results, unreadable, assignment, lang=lang, date=date, image_format=image_format)
    return environment().get_template("class_summary.html.j2").render(context, css=stylesheet())


def render_class_summary(results: Sequence[Mapping[str, Any]], unreadable: Sequence[tuple[str, str]],
                         assignment: Assignment, *, lang: str, date: str,
                         image_format: str = plots.DEFAULT_FORMAT) -> bytes:
    """The class summary as A4 PDF bytes."""
    return html_to_pdf(render_class_summary_html(results, unreadable, assignment, lang=lang, date=date,
                                                 image_format=image_format))


# ------------------------------------------------------------------------------ HTML -> PDF

class RefusedURL(ValueError):
    """A report asked for something other than a data: URL."""


FIGURE_SCHEME = "grader-figure"
# The figures this module put in the HTML: an <img> tag's src attribute holding a data: URI.
# Student text cannot match it: autoescaping turns its "<" and '"' into entities.
_FIGURE_SRC = re.compile(r'(<img [^>]*?src=")data:(image/(?:jpeg|png|svg\+xml));base64,([A-Za-z0-9+/=]+)"')


def data_only_fetcher(figures: Mapping[str, tuple[str, bytes]] | None = None) -> Any:
    """A WeasyPrint URL fetcher that serves data: URLs (and the report's own figures, handed over
    in memory) and refuses everything else (file, http...)."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    known = dict(figures or {})

    class DataOnlyFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url in known:
                mime, body = known[url]
                return URLFetcherResponse(url, body=body, headers={"Content-Type": mime})
            if not url.lower().startswith("data:"):
                raise RefusedURL(f"reports load only data: URLs, refused {url[:80]!r}")
            return super().fetch(url, headers)

    return DataOnlyFetcher(allowed_protocols=("data",), allow_redirects=False, timeout=1)


def _hand_over_figures(html: str) -> tuple[str, dict[str, tuple[str, bytes]]]:
    """Take the figures' data: URIs out of the HTML: WeasyPrint's HTML parser reads a 100 KB
    attribute character by character (a tenth of a report's time), while the fetcher can hand
    the decoded bytes over directly."""
    figures: dict[str, tuple[str, bytes]] = {}

    def stash(match: re.Match[str]) -> str:
        key = f"{FIGURE_SCHEME}:{len(figures)}"
        figures[key] = (match.group(2), base64.b64decode(match.group(3)))
        return f'{match.group(1)}{key}"'

    return _FIGURE_SRC.sub(stash, html), figures


@functools.lru_cache(maxsize=1)
def _font_config() -> Any:
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


def html_to_pdf(html: str, *, url_fetcher: Any = None) -> bytes:
    """Render HTML to PDF with no base URL and the data-only fetcher (A4 comes from report.css)."""
    import weasyprint

    if url_fetcher is None:
        html, figures = _hand_over_figures(html)
        url_fetcher = data_only_fetcher(figures)
    document = weasyprint.HTML(string=html, base_url=None, url_fetcher=url_fetcher)
    return document.write_pdf(font_config=_font_config(), uncompressed_pdf=False)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a report atomically (a crash leaves the old file or the new one). Not fsynced: a
    report is derived data, rendered again by the next run if a power cut loses it."""
    try:
        return files.write_atomic(path, data, durable=False)
    except OSError as exc:
        raise ReportError(f"{path}: cannot write the report ({exc.strerror})") from None
