"""Printable reports: golden HTML, escaping of student text, no fetch of anything but data: URLs,
and the PDF of a real fixture notebook read back with poppler's tools.

Regenerate the golden files after an intended change of templates, CSS or messages with
``GRADER_UPDATE_GOLDEN=1 pytest tests/test_report.py`` and review the diff.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import assignment as assignment_mod
from grader import report
from grader.cli import main
from tests.fixtures import report_data as rd

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "fixtures" / "expected"
NOTEBOOKS = HERE / "fixtures" / "notebooks"
GOOD = NOTEBOOKS / "good_complete.ipynb"
DATE = "2025-06-30"
NASTY = '<script>alert(1)</script><img src="file:///etc/passwd">{{ 7*7 }}'
POPPLER = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdfimages") is None,
                             reason="poppler-utils not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def trabajo2() -> assignment_mod.Assignment:
    return assignment_mod.load("trabajo2")


@pytest.fixture(scope="module")
def refs(trabajo2):
    return rd.references(trabajo2)


def _without_images(html: str) -> str:
    """Golden files keep the markup, not the pixels (those depend on the FreeType build)."""
    return re.sub(r'data:image/(jpeg|png|svg\+xml);base64,[A-Za-z0-9+/=]+', r'data:image/\1;base64,…', html)


def _golden(name: str, html: str) -> None:
    path = EXPECTED / name
    text = _without_images(html)
    if os.environ.get("GRADER_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with GRADER_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


def _text(s: str) -> str:
    return " ".join(s.split())


# ------------------------------------------------------------------------------- golden HTML

def test_student_html_is_deterministic_and_matches_the_golden_file(trabajo2, refs):
    first = report.render_student_report_html(rd.trabajo2_result(), refs, trabajo2, lang="en", date=DATE)
    second = report.render_student_report_html(rd.trabajo2_result(), refs, trabajo2, lang="en", date=DATE)
    assert first == second  # byte-identical, images included
    _golden("student_report_en.html", first)


def test_class_summary_html_is_deterministic_and_matches_the_golden_file(trabajo2):
    unreadable = [("zoe.ipynb", "not a notebook (invalid JSON at line 3)")]
    first = report.render_class_summary_html(rd.class_results(), unreadable, trabajo2, lang="es", date=DATE)
    second = report.render_class_summary_html(rd.class_results(), unreadable, trabajo2, lang="es", date=DATE)
    assert first == second
    _golden("class_summary_es.html", first)


def test_the_pdf_is_deterministic_too(trabajo2, refs):
    html = report.render_student_report_html(rd.trabajo2_result(), refs, trabajo2, lang="es", date=DATE)
    first, second = report.html_to_pdf(html), report.html_to_pdf(html)
    assert first.startswith(b"%PDF") and first == second


def test_the_date_is_the_one_passed_in(trabajo2, refs):
    html = report.render_student_report_html(rd.trabajo2_result(), refs, trabajo2, lang="es", date="1999-12-31")
    assert "1999-12-31" in html


def test_one_figure_per_exercise_and_the_final_block(trabajo2, refs):
    html = report.render_student_report_html(rd.trabajo2_result(), refs, trabajo2, lang="en", date=DATE)
    for ex in trabajo2.exercises:
        section = html.split(f'id="ex-{ex.id}"', 1)[1].split("</section>", 1)[0]
        assert section.count('<img class="figure') == 1, ex.id
    assert "0.9012 (cell 19)" in html and "0.8954 (cell 21)" in html


def test_message_files_have_the_same_keys():
    def keys(table, prefix=""):
        return {k2 for k, v in table.items()
                for k2 in (keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"})}

    assert keys(report.messages("es")) == keys(report.messages("en"))


def test_a_report_with_nothing_found_still_renders(trabajo2):
    empty = {"grader_version": "0.1.0", "notebook_sha256": "0" * 64, "student": None, "assignment": "trabajo2",
             "total": 0.0, "max_total": 10.0, "checks": [], "runs": [],
             "final": {"val_accuracy": None, "test_accuracy": None, "cell_val": None, "cell_test": None},
             "facts": {}}
    html = report.render_student_report_html(empty, {}, trabajo2, lang="en", date=DATE)
    assert "not found" in html and "(not stated in the notebook)" in html
    assert html.count('<img class="figure') == len(trabajo2.exercises)


def test_challenge_assignment_compares_each_test_reference():
    challenge = assignment_mod.load("challenge_s3")
    refs = rd.references(challenge)
    result = {"grader_version": "0.1.0", "notebook_sha256": "ab" * 32, "student": "Eva", "assignment": "challenge_s3",
              "total": 5.0, "max_total": 7.0,
              "checks": [rd.check(c.id, "pass", c.points, c.points, "ok", 3, "model.fit(...)")
                         for c in challenge.rubric.checks],
              "runs": [{**rd._run(3, "base", "baseline", 10), "exercise": "baseline"},
                       {**rd._run(6, "bn", "batchnorm", 10), "exercise": "batchnorm"},
                       {**rd._run(9, "lr", "reduce_lr", 30), "exercise": "reduce_lr"}],
              "final": {"val_accuracy": 0.9001, "test_accuracy": 0.8950, "cell_val": 9, "cell_test": 11},
              "facts": {}}
    html = report.render_student_report_html(result, refs, challenge, lang="es", date=DATE)
    assert html.count('<img class="figure') == len(challenge.exercises)
    for variant in ("baseline", "batchnorm", "reduce_lr"):
        assert f"{variant}: " in html  # one reference row per test experiment


# ---------------------------------------------------------------------------------- injection

def test_student_text_is_escaped_never_markup_or_template(trabajo2, refs):
    html = report.render_student_report_html(rd.trabajo2_result(nasty=NASTY), refs, trabajo2, lang="en", date=DATE)
    assert "<script>" not in html and "alert(1)</script>" not in html
    assert '<img src="file:' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html
    assert "{{ 7*7 }}" in html  # shown as typed, never evaluated
    assert html.count("{{ 7*7 }}") == html.count("&lt;script&gt;")


def test_class_summary_escapes_names_excerpts_and_reasons(trabajo2):
    results = rd.class_results(4)
    results[0]["student"] = NASTY
    results[1]["flags"] = [{"kind": "test_leakage", "cell": 3, "excerpt": NASTY, "message": NASTY}]
    html = report.render_class_summary_html(results, [(NASTY, NASTY)], trabajo2, lang="en", date=DATE)
    assert "<script>" not in html and '<img src="file:' not in html
    assert "{{ 7*7 }}" in html


@POPPLER
def test_injected_text_reads_as_text_in_the_pdf(trabajo2, refs, tmp_path):
    pdf = report.render_student_report(rd.trabajo2_result(nasty=NASTY), refs, trabajo2, lang="en", date=DATE)
    text = _pdftotext(pdf, tmp_path)
    assert "<script>alert(1)</script>" in text
    assert "{{ 7*7 }}" in text


# -------------------------------------------------------------------------- no fetch, ever

class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str]  # set by the fixture

    def do_GET(self) -> None:  # http.server's name for it
        type(self).seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Recorder.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Recorder.seen
    httpd.shutdown()
    httpd.server_close()


def _spy_fetcher(tried: list[str], refused: list[str]):
    fetcher = report.data_only_fetcher()
    fetch = fetcher.fetch

    def spy(url, headers=None):
        tried.append(url)
        try:
            return fetch(url, headers)
        except report.RefusedURL:
            refused.append(url)
            raise

    fetcher.fetch = spy
    return fetcher


def test_a_template_asking_for_file_or_http_urls_gets_nothing(server, tmp_path):
    base, seen = server
    secret = tmp_path / "secret.css"
    secret.write_text("body { background: red }")
    html = f"""<!DOCTYPE html><html><head>
      <link rel="stylesheet" href="{base}/style.css">
      <link rel="stylesheet" href="file://{secret}">
      <style>@import url("{base}/import.css"); body {{ background: url("{base}/bg.png") }}
             @font-face {{ font-family: X; src: url("{base}/font.ttf") }}</style></head>
      <body style="font-family: X"><img src="{base}/pixel.png"><img src="file:///etc/passwd">
      <img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==">
      </body></html>"""
    tried, refused = [], []
    pdf = report.html_to_pdf(html, url_fetcher=_spy_fetcher(tried, refused))
    assert pdf.startswith(b"%PDF")
    assert seen == []  # the server never got a request
    assert any(u.startswith("http://127.0.0.1") for u in refused)
    assert any(u.startswith("file://") for u in refused)
    assert set(refused) == {u for u in tried if not u.startswith("data:")}
    assert any(u.startswith("data:") for u in tried)  # the one data: image was served


def test_a_notebook_with_urls_in_its_text_makes_the_report_fetch_nothing(server, trabajo2, refs):
    base, seen = server
    nasty = f'<img src="{base}/x.png"><link rel="stylesheet" href="{base}/y.css"> url({base}/z) file:///etc/passwd'
    html = report.render_student_report_html(rd.trabajo2_result(nasty=nasty), refs, trabajo2, lang="en", date=DATE)
    tried, refused = [], []
    report.html_to_pdf(html, url_fetcher=_spy_fetcher(tried, refused))
    assert seen == [] and refused == []  # escaped text is never a URL to begin with
    assert all(u.startswith("data:") for u in tried)


def test_figures_go_to_weasyprint_in_memory_and_student_text_that_looks_like_one_stays_text(trabajo2, refs):
    nasty = 'data:image/png;base64,AAAA <img src="data:image/png;base64,AAAA">'
    html = report.render_student_report_html(rd.trabajo2_result(nasty=nasty), refs, trabajo2, lang="en", date=DATE)
    stripped, figures = report._hand_over_figures(html)
    assert len(figures) == html.count('<img class="figure')
    assert figures
    assert "data:image/png;base64,AAAA &lt;img" in stripped  # the student's text, still escaped text
    assert "data:image/jpeg" not in stripped
    assert all(mime == "image/jpeg" and body.startswith(b"\xff\xd8") for mime, body in figures.values())
    fetcher = report.data_only_fetcher(figures)
    with pytest.raises(report.RefusedURL):
        fetcher.fetch(f"{report.FIGURE_SCHEME}:{len(figures)}")  # only the figures handed over
    with pytest.raises(report.RefusedURL):
        report.data_only_fetcher().fetch("file:///etc/passwd")


# ----------------------------------------------------------------------- real notebook -> PDF

def _pdftotext(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def _pdfimages(pdf: bytes, tmp_path: Path) -> int:
    path = tmp_path / "i.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdfimages", "-list", str(path)], check=True, capture_output=True, text=True).stdout
    rows = [line for line in out.splitlines()[2:] if line.strip()]
    return sum(1 for line in rows if line.split()[2] == "image")  # smask rows are alpha channels


@POPPLER
def test_pdf_of_a_good_notebook_shows_its_accuracies_titles_and_figures(trabajo2, refs, tmp_path):
    from grader.submission import check_notebook

    check = check_notebook(GOOD, assignment="trabajo2", lang="en", references=refs)
    data = report.from_check(check)
    html = report.render_student_report_html(data, refs, trabajo2, lang="en", date=DATE)
    pdf = report.html_to_pdf(html)
    text = _text(_pdftotext(pdf, tmp_path))
    assert f"{check.final.val_accuracy:.4f}" in text and f"{check.final.test_accuracy:.4f}" in text
    for item in check.checks:
        assert _text(item.title) in text, item.title
    assert _pdfimages(pdf, tmp_path) >= len(trabajo2.exercises)
    for ex in trabajo2.exercises:  # and at least one in each exercise's section
        assert html.split(f'id="ex-{ex.id}"', 1)[1].split("</section>", 1)[0].count("<img") >= 1


@POPPLER
def test_grader_report_cli_writes_the_pdf_and_exits_like_check(tmp_path, monkeypatch):
    from grader.submission import REFERENCE_ENV

    monkeypatch.setenv(REFERENCE_ENV, str(tmp_path / "no-references"))
    out = tmp_path / "ana.pdf"
    runner = CliRunner()
    checked = runner.invoke(main, ["check", str(GOOD), "--lang", "en", "--json"])
    made = runner.invoke(main, ["report", str(GOOD), "-o", str(out), "--lang", "en", "--html", "--date", DATE])
    assert made.exit_code == checked.exit_code, made.output
    assert out.read_bytes().startswith(b"%PDF")
    assert DATE in out.with_suffix(".html").read_text(encoding="utf-8")
    assert DATE in _pdftotext(out.read_bytes(), tmp_path)


def test_grader_report_cli_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["report", str(NOTEBOOKS / "not_json.ipynb"), "-o", str(tmp_path / "x.pdf")])
    assert bad.exit_code == 2 and "not a notebook" in bad.output
    assert not (tmp_path / "x.pdf").exists()
    wrong_date = runner.invoke(main, ["report", str(GOOD), "-o", str(tmp_path / "y.pdf"), "--date", "30/06/2025"])
    assert wrong_date.exit_code == 2


def test_renderer_never_imports_tensorflow(tmp_path):
    code = ("import sys; from tests.test_report import _render_once; _render_once(); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=HERE.parent)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _render_once() -> bytes:
    asg = assignment_mod.load("trabajo2")
    return report.render_student_report(rd.trabajo2_result(), rd.references(asg), asg, lang="es", date=DATE)
