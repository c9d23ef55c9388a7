"""Command line: parse options, call the core, print. Nothing else lives here."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import click

from . import __version__
from . import assignment as assignment_mod
from .errors import GraderError

DEFAULT_ASSIGNMENT = "challenge_s3"


class GraderGroup(click.Group):
    """Turns GraderError into a one-line message and its exit code (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GraderError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=GraderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grader")
def main() -> None:
    """Autograder and report generator for the Fashion-MNIST Keras assignment.

    \b
    grader check       grade one notebook against the rubric (runs its code only with --execute)
    grader report      the same, written as a printable PDF report
    grader grade       grade a class (folder or LMS zip): PDFs, grades.csv, gradebook
    grader reference   run (or list) the battery of reference experiments
    grader data        show where the Fashion-MNIST files are looked for
    grader evaluate    score a handed-in .keras model safely (validation and test accuracy)
    """


# ---------------------------------------------------------------------------------- check

def execute_options(command: Any) -> Any:
    """--execute and its limits, shared by `check` and `grade` (None: the core's defaults)."""
    options = [
        click.option("--execute", is_flag=True,
                     help="Re-run the notebook in a sandbox (no network, throw-away HOME, resource limits) "
                          "and confirm its numbers run by run."),
        click.option("--timeout", "exec_timeout", type=click.FloatRange(min=1), default=None,
                     help="With --execute: total seconds for the whole notebook [default: 1800]."),
        click.option("--cell-timeout", type=click.FloatRange(min=1), default=None,
                     help="With --execute: seconds for any one cell [default: only the total]."),
        click.option("--max-epochs", type=click.IntRange(min=1), default=None,
                     help="With --execute: cap every fit() at N epochs; compare only those epochs."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=True, path_type=str))
@click.option("--assignment", "-a", "assignment_name", default="auto", show_default=True,
              help="trabajo2, challenge_s3, a TOML file, or auto (detected from the notebook).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the rubric.")
@click.option("--lang", type=click.Choice(["es", "en"]), default=None,
              help="Language of the messages [default: from $LANG, else es].")
@execute_options
@click.pass_context
def check(ctx: click.Context, notebook: str, assignment_name: str, as_json: bool, lang: str | None,
          execute: bool, exec_timeout: float | None, cell_timeout: float | None, max_epochs: int | None) -> None:
    """Grade NOTEBOOK from its saved outputs and code (exit 0: every required check passes).

    With --execute the notebook is also re-run in a sandbox; exit 0 then also needs the run to end
    and no run to mismatch its saved numbers."""
    from .submission import check_notebook

    verification = None
    if execute:
        from .execute import verify_notebook

        result, verification = verify_notebook(notebook, assignment=assignment_name, lang=lang, timeout=exec_timeout,
                                               cell_timeout=cell_timeout, max_epochs=max_epochs)
    else:
        result = check_notebook(notebook, assignment=assignment_name, lang=lang)
    if as_json:
        shown = result.to_dict()
        if verification is not None:
            shown["verification"] = verification.to_dict()
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
    else:
        from rich.console import Console

        from .messages import load
        from .terminal import rubric

        console = Console(highlight=False, soft_wrap=False)
        for renderable in rubric(result):
            console.print(renderable)
        for line in verification.lines(load(result.lang)) if verification is not None else ():
            click.echo(line)
    failed = verification is not None and (verification.executed.status != "ok" or verification.mismatches > 0)
    ctx.exit(1 if failed else result.exit_code)


# --------------------------------------------------------------------------------- report

def _report_date(value: str | None) -> str:
    """--date, else $SOURCE_DATE_EPOCH (reproducible builds), else today: the renderer never reads the clock."""
    from datetime import date, datetime, timezone

    if value:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc).date().isoformat()
    return date.today().isoformat()


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=True, path_type=str))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="PDF to write [default: NOTEBOOK with .pdf].")
@click.option("--assignment", "-a", "assignment_name", default="auto", show_default=True,
              help="trabajo2, challenge_s3, a TOML file, or auto (detected from the notebook).")
@click.option("--lang", type=click.Choice(["es", "en"]), default=None,
              help="Language of the report [default: from $LANG, else es].")
@click.option("--html", "keep_html", is_flag=True, help="Also write the HTML next to the PDF.")
@click.option("--date", "date_value", default=None, metavar="YYYY-MM-DD",
              help="Date printed on the report [default: $SOURCE_DATE_EPOCH, else today].")
@click.pass_context
def report(ctx: click.Context, notebook: str, output: str | None, assignment_name: str, lang: str | None,
           keep_html: bool, date_value: str | None) -> None:
    """Grade NOTEBOOK as `grader check` does and write its printable PDF report (same exit codes)."""
    from . import report as report_mod
    from .submission import check_notebook, load_references

    day = _report_date(date_value)
    result = check_notebook(notebook, assignment=assignment_name, lang=lang)
    chosen = assignment_mod.load(assignment_name if assignment_name != "auto" else result.assignment)
    data = report_mod.from_check(result)
    html = report_mod.render_student_report_html(data, load_references(chosen), chosen, lang=result.lang, date=day)
    pdf_path = Path(output) if output else Path(notebook).with_suffix(".pdf")
    report_mod.write_bytes(pdf_path, report_mod.html_to_pdf(html))
    click.echo(f"{pdf_path}: {result.total:g} / {result.max_total:g}")
    if keep_html:
        html_path = pdf_path.with_suffix(".html")
        report_mod.write_bytes(html_path, html.encode("utf-8"))
        click.echo(f"{html_path}")
    ctx.exit(result.exit_code)


# ----------------------------------------------------------------------------------- data

@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the four Fashion-MNIST IDX files (gzip or not).")
def data(data_dir: str | None) -> None:
    """Show where the data is looked for, what each place holds, and validate what is used."""
    from . import data as data_mod

    for place in data_mod.survey(data_dir):
        found = sum(1 for v in place.found.values() if v)
        state = "complete" if place.complete else f"{found}/4 files"
        click.echo(f"{place.source:15} {place.directory}  [{state}]")
    directory = data_mod.locate(data_dir)
    train = data_mod.load_train(data_dir)
    click.echo(f"using {directory}: train {train.images.shape[0]} images, checksums ok")
    for name, digest in data_mod.checksums(data_dir).items():
        click.echo(f"  {digest}  {name}")


# ------------------------------------------------------------------------------ reference

scheduler_option = click.option(
    "--scheduler", default=None, metavar="local|ADDRESS|FILE",
    help="Run the work on a dask cluster: local (a LocalCluster of --workers processes), an existing "
         "scheduler's address (tcp://host:8786) or its scheduler file; needs grader[dask] "
         "[default: a local process pool].")


def _check_scheduler(scheduler: str | None) -> None:
    """A bad --scheduler or a missing dask is a usage error before any work."""
    if scheduler is not None:
        from . import distributed

        distributed.check(scheduler)


def _cluster(scheduler: str | None, workers: int, needed: bool) -> Any:
    """The dask cluster --scheduler names (None without one); started only when there is work."""
    if scheduler is None or not needed:
        return None
    from . import distributed

    return distributed.connect(scheduler, workers=workers)


@main.command()
@click.option("--assignment", "-a", "assignment_name", default=DEFAULT_ASSIGNMENT, show_default=True,
              help="Assignment name (trabajo2, challenge_s3) or a TOML file.")
@click.option("--only", "pattern", default=None, help="Experiment ids to run, glob-like: 'activations.*,final'.")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="cores",
              help="Worker processes training in parallel.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override every experiment's epochs (smoke run: never written to reference_runs/).")
@click.option("--list", "list_only", is_flag=True, help="List the experiments and their cache state; train nothing.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where records go [default: reference_runs/, or the cache for --epochs runs].")
@click.option("--force", is_flag=True, help="Retrain even when a cached record matches.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Fashion-MNIST folder.")
@scheduler_option
def reference(assignment_name: str, pattern: str | None, workers: int, epochs: int | None, list_only: bool,
              out: str | None, force: bool, data_dir: str | None, scheduler: str | None) -> None:
    """Run the battery of reference experiments (cached by spec, data and versions)."""
    from .experiments import runner
    from .records import Store

    _check_scheduler(scheduler)
    assignment = assignment_mod.load(assignment_name)
    selected = assignment.select(pattern)
    out_dir = Path(out) if out else (runner.smoke_dir() if epochs else runner.reference_dir())
    runner.check_writable(out_dir, epochs)
    store = Store(out_dir)
    if list_only:
        _list_battery(assignment, selected, store)
        return
    plan = runner.make_plan(assignment, selected, store, epochs=epochs, force=force, data_dir=data_dir)
    from .progress import BatteryProgress, summary_table

    cluster = _cluster(scheduler, workers, bool(plan.train))
    workers = cluster.workers if cluster else workers
    if not plan.train:
        click.echo(f"{assignment.id}: all {len(plan.cached)} selected experiments are cached in {out_dir}; "
                   "nothing to train (--force retrains)")
    else:
        smoke = f", {epochs} epochs (smoke run)" if epochs else ""
        click.echo(f"{assignment.id}: training {len(plan.train)} experiments, {len(plan.cached)} cached, "
                   f"{workers} workers{smoke} -> {out_dir}")
    with BatteryProgress(enabled=bool(plan.train)) as progress, cluster or contextlib.nullcontext():
        outcome = runner.run(plan, store, workers=workers, data_dir=data_dir, on_event=progress.event,
                             driver=cluster.drive_battery if cluster else None)
    if not epochs and (outcome.trained or not (out_dir / "index.json").exists()):
        store.write_index([r for r in store.records()])
    summary_table(list(plan.cached) + outcome.trained, {r.id for r in outcome.trained}, plan.tests)
    if outcome.interrupted:
        raise click.ClickException(f"interrupted: {len(outcome.trained)} finished records kept in {out_dir}")
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} experiments failed: {', '.join(outcome.failed)}")


def _list_battery(assignment: assignment_mod.Assignment, selected: Any, store: Any) -> None:
    click.echo(f"{assignment.id}: {assignment.title}")
    click.echo(f"seeds: {', '.join(map(str, assignment.seeds))}")
    click.echo(f"{'id':24} {'kind':5} {'split':9} {'epochs':>6} {'batch':>5} {'optimizer':10} {'spec':16} stored")
    for spec in selected:
        record = store.get(spec.of if spec.kind == "test" and spec.of else spec.id)
        stored = "-" if record is None else ("yes" if record.spec_hash == spec.spec_hash() else "stale")
        click.echo(f"{spec.id:24} {spec.kind:5} {spec.split:9} {spec.epochs:>6} {spec.batch_size:>5} "
                   f"{spec.optimizer['name']:10} {spec.spec_hash():16} {stored}")


# ---------------------------------------------------------------------------------- grade

@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=str))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=str), default="graded",
              show_default=True, help="Folder for reports/, class_summary.pdf, grades.csv, results.json.")
@click.option("--assignment", "-a", "assignment_name", default="auto", show_default=True,
              help="trabajo2, challenge_s3, a TOML file, or auto (detected per notebook).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="cores",
              help="Worker processes grading and rendering PDFs in parallel.")
@click.option("--lang", type=click.Choice(["es", "en"]), default=None,
              help="Language of the reports [default: from $LANG, else es].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Gradebook SQLite file [default: OUT/gradebook.sqlite].")
@click.option("--regrade", is_flag=True, help="Grade again what the gradebook already holds.")
@click.option("--lms", type=click.Choice(["auto", "moodle", "canvas", "generic"]), default="auto",
              show_default=True, help="Grades import file to write (auto: from the submissions' names).")
@click.option("--no-reports", is_flag=True, help="Skip the PDFs (grades, CSV and JSON only).")
@scheduler_option
@execute_options
@click.pass_context
def grade(ctx: click.Context, source: str, out_dir: str, assignment_name: str, workers: int, lang: str | None,
          db_path: str | None, regrade: bool, lms: str, no_reports: bool, scheduler: str | None,
          execute: bool, exec_timeout: float | None, cell_timeout: float | None, max_epochs: int | None) -> None:
    """Grade every notebook in SOURCE (a folder, or a Moodle/Canvas zip): one PDF per student,
    a class summary, grades.csv and an LMS import file (exit 0: every submission was graded).

    With --execute every notebook is first re-run in a sandbox (implies --regrade): a run out of
    time is recorded with status timeout, saved numbers the re-run does not confirm get a flag
    mismatch."""
    import sys
    from datetime import datetime, timezone

    from . import grading, gradeview, intake as intake_mod
    from .gradebook import Gradebook
    from .messages import resolve_lang

    lang = resolve_lang(lang)
    if assignment_name != grading.AUTO:
        assignment_mod.load(assignment_name)  # a wrong name is a usage error before any work
    _check_scheduler(scheduler)
    if execute:
        from .data import locate

        locate()  # no data to re-execute with is one error before any work, not one per student
    date = _report_date(None)  # $SOURCE_DATE_EPOCH, else today: the renderer never reads the clock
    out = Path(out_dir)
    with intake_mod.collect(source) as found, Gradebook(Path(db_path) if db_path else out / "gradebook.sqlite") as book:
        gradeview.echo(gradeview.intake_lines(found, source))
        plan = grading.make_plan(found, book, assignment=assignment_name, lang=lang, date=date,
                                 out_dir=None if no_reports else str(out), regrade=regrade or execute)
        if execute:
            plan = grading.with_execute(plan, timeout=exec_timeout, cell_timeout=cell_timeout, max_epochs=max_epochs)
        cluster = _cluster(scheduler, workers, bool(plan.todo))
        workers = cluster.workers if cluster else workers
        gradeview.echo([gradeview.plan_line(len(plan.todo), len(plan.done), workers, out_dir, plan.stale)])
        started = datetime.now(timezone.utc)
        with gradeview.GradeProgress(live=sys.stdout.isatty()) as progress, cluster or contextlib.nullcontext():
            outcome = grading.run(plan, book, workers=workers, on_event=progress.event,
                                  graded_at=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  driver=cluster.drive_grading if cluster else None, timeout=grading.batch_timeout(plan))
        if outcome.interrupted:
            raise click.ClickException(f"interrupted: {outcome.graded} graded by this run are kept in {book.path}; "
                                       "run the same command again to finish")
        files = grading.write_outputs(outcome, found, assignment=assignment_name, lms=lms, lang=lang, date=date,
                                      out_dir=str(out), reports=not no_reports)
        files.append(("gradebook", str(book.path)))
        seconds = (datetime.now(timezone.utc) - started).total_seconds()
        gradeview.echo(gradeview.summary_lines(outcome.results, found.refused, outcome.kept, files))
        gradeview.echo(gradeview.assignments_line(outcome.results,
                                                  grading.summary_assignment(outcome.results, assignment_name)))
        if outcome.graded:
            click.echo(f"time: {seconds:.1f} s, {outcome.graded / max(seconds, 1e-9):.2f} submissions/s")
    ctx.exit(1 if outcome.failed or found.refused else 0)


# ------------------------------------------------------------------------------- evaluate

@main.command()
@click.argument("model_file", type=click.Path(path_type=str))
@click.option("--assignment", "-a", "assignment_name", default=DEFAULT_ASSIGNMENT, show_default=True,
              help="trabajo2, challenge_s3 or a TOML file: gives the validation split and the thresholds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary.")
@click.option("--no-scale", is_flag=True,
              help="Feed raw 0-255 pixels [default: pixels / 255, unless the model starts with a Rescaling layer].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Fashion-MNIST folder.")
def evaluate(model_file: str, assignment_name: str, as_json: bool, no_scale: bool, data_dir: str | None) -> None:
    """Score MODEL_FILE (a .keras file) on the assignment's validation split and the test set.

    The file is never loaded by Keras: its config is checked against a list of allowed layers and
    values, the model is rebuilt by grader's own code, and only the weights are read, as arrays, in
    a sandboxed process. Exit 0: evaluated; 2: refused (unsafe or unsupported) or unreadable.
    """
    from . import evaluate as evaluate_mod

    result = evaluate_mod.evaluate(model_file, assignment=assignment_name, data_dir=data_dir, scale=not no_scale)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        for line in evaluate_mod.summary_lines(result):
            click.echo(line)


if __name__ == "__main__":  # python -m grader.cli
    main()
