"""Facts about a notebook's code, read statically with `ast` (student code is never run).

`extract(cells)` takes the code cells in document order as (cell number, source) pairs and returns
a `CodeFacts`: every training (`fit`) with its arguments and the variant it trains, the models and
their layers, the activations / initializers / optimizers actually trained (canonical names from
`assignment`), how validation data is made, test-set leakage, model reuse, callbacks,
regularization, which exercises the code seems to answer, and the labels of the runs each cell
trains. Every fact carries evidence: the cell and a short excerpt of the line it was read from.

Cells that are not Python (`%%bash`) or do not parse even without their IPython magics are listed
in `unparsed` and skipped. The reading is an abstract interpretation: values in `symbols`, Keras
names in `kerasnames`, Python semantics in `interpreter`, Keras and data calls in `kerasflow`.
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Sequence

from .interpreter import Budget
from .kerasflow import NotebookInterpreter, RunEvent
from .kerasnames import (DROPOUT_LAYERS, is_keras_fit, layer_info, lexical_fits, optimizer_of, params_of,
                         source_of)
from .symbols import Site

Params = tuple[tuple[str, Any], ...]

EXCERPT_CHARS = 120
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
_SHELL_ASSIGN = re.compile(r"^\s*[\w.,\s()\[\]]+=\s*[!%]")
_VALIDATING_CALLBACKS = frozenset({"early_stopping", "reduce_lr_on_plateau", "model_checkpoint"})


class _Plain:
    """to_dict for the frozen dataclasses below: tuples become lists, *params become dicts."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name), f.name) for f in fields(self)}  # type: ignore[arg-type]


def _plain(value: Any, name: str = "") -> Any:
    if is_dataclass(value) and isinstance(value, _Plain):
        return value.to_dict()
    if isinstance(value, tuple):
        if name.endswith("params") or name == "loop_values":
            return {k: _plain(v) for k, v in value}
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ public values

@dataclass(frozen=True)
class Evidence(_Plain):
    cell: int
    line: int
    excerpt: str


@dataclass(frozen=True)
class Unparsed(_Plain):
    cell: int
    reason: str  # "syntax_error" | "cell_magic" | "analysis_error"
    detail: str


@dataclass(frozen=True)
class Variant(_Plain):
    """An activation, initializer or optimizer that some training uses."""
    name: str
    params: Params
    cells: tuple[int, ...]  # cells whose execution trains it
    evidence: Evidence  # where the value is written


@dataclass(frozen=True)
class Layer(_Plain):
    kind: str  # dense | dropout | batchnorm | activation | leaky_relu | flatten | ...
    units: int | None = None
    activation: str | None = None
    activation_params: Params = ()
    initializer: str | None = None
    initializer_params: Params = ()
    regularizer: str | None = None  # l1 | l2 | l1_l2
    regularizer_params: Params = ()
    rate: float | None = None
    evidence: Evidence | None = None


@dataclass(frozen=True)
class ModelFact(_Plain):
    id: int
    name: str | None  # the variable it was first assigned to
    builder: str | None  # the student's function that built it
    cell: int  # the cell whose execution built it
    layers: tuple[Layer, ...]
    layers_known: bool  # False for load_model(), subclassed models
    optimizer: str | None
    optimizer_params: Params
    trained: bool
    evidence: Evidence


@dataclass(frozen=True)
class Validation(_Plain):
    kind: str | None  # "split" (validation_split) | "data" (validation_data) | None
    fraction: float | str | None  # 0.2 | "first_10k" | "last_10k" | "test_set" | None
    names: tuple[str, ...]  # the expressions passed as validation_data


@dataclass(frozen=True)
class FitFact(_Plain):
    """One `.fit(...)` call as written (inside a def: the def's defaults)."""
    cell: int
    line: int
    receiver: str
    method: str
    epochs: int | None  # Keras' default 1 when not passed
    batch_size: int | None
    verbose: int | None
    validation_split: float | None
    validation_data: tuple[str, ...]
    validation: Validation
    callbacks: tuple[str, ...]
    in_loop: bool
    function: str | None
    evidence: Evidence


@dataclass(frozen=True)
class Run(_Plain):
    """One training as the notebook executes it, in document order; `cell` is where its log appears."""
    index: int
    cell: int
    evidence: Evidence  # the fit call
    model: int | None
    receiver: str
    label: str | None
    label_source: str | None  # "loop" | "calls" | None
    label_vars: tuple[str, ...]
    loop_values: tuple[tuple[str, str], ...]
    epochs: int | None
    batch_size: int | None
    verbose: int | None
    validation: Validation
    callbacks: tuple[str, ...]
    restore_best_weights: bool
    activations: tuple[str, ...]
    initializers: tuple[str, ...]
    default_initializer: bool
    optimizer: str | None
    optimizer_params: Params
    in_loop: bool
    reused: bool


@dataclass(frozen=True)
class CallbackFact(_Plain):
    name: str
    params: Params
    custom: bool
    cells: tuple[int, ...]  # cells whose trainings use it (empty: built but never passed to fit)
    evidence: Evidence


@dataclass(frozen=True)
class TestEval(_Plain):
    cell: int
    receiver: str
    kind: str  # "evaluate" | "predict" (predictions on the test set turned into an accuracy)
    model: int | None
    in_loop: bool
    evidence: Evidence


@dataclass(frozen=True)
class Split(_Plain):
    kind: str  # "train_test_split" | "slice"
    fraction: float | str | None
    names: tuple[str, ...]
    evidence: Evidence


@dataclass(frozen=True)
class ValidationFacts(_Plain):
    fraction: float | str | None  # overall: "test_set" if any training validates on test, else the most common
    splits: tuple[Split, ...]


@dataclass(frozen=True)
class Finding(_Plain):
    kind: str
    cell: int
    evidence: Evidence
    related: Evidence | None = None


@dataclass(frozen=True)
class Regularization(_Plain):
    dropout: bool
    l1: bool
    l2: bool
    batchnorm: bool
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class ExerciseGuess(_Plain):
    id: str
    cells: tuple[int, ...]


@dataclass(frozen=True)
class LabelGroup(_Plain):
    cell: int
    source: str  # "loop" | "calls"
    variables: tuple[str, ...]
    values: tuple[str | None, ...]  # one per run of the cell, in order


@dataclass(frozen=True)
class CodeFacts(_Plain):
    unparsed: tuple[Unparsed, ...]
    analysis_errors: tuple[Unparsed, ...]
    fits: tuple[FitFact, ...]
    runs: tuple[Run, ...]
    models: tuple[ModelFact, ...]
    activations: tuple[Variant, ...]
    initializers: tuple[Variant, ...]
    optimizers: tuple[Variant, ...]
    default_initializer_used: bool
    validation: ValidationFacts
    test_leakage: bool
    leaks: tuple[Finding, ...]
    test_evaluations: tuple[TestEval, ...]
    model_reuse: bool
    reuses: tuple[Finding, ...]
    callbacks: tuple[CallbackFact, ...]
    regularization: Regularization
    exercises_by_code: tuple[ExerciseGuess, ...]
    labels: tuple[LabelGroup, ...]


# ------------------------------------------------------------------------------------ parsing

def parse_cell(source: str) -> tuple[ast.Module | None, Unparsed | None]:
    """Parse a code cell, tolerating IPython line magics, shell escapes and `?` help lines."""
    first = source.lstrip().split("\n", 1)[0].strip()
    if first.startswith("%%"):
        magic = (first[2:].split() or [""])[0]
        if magic not in PYTHON_CELL_MAGICS:
            return None, Unparsed(0, "cell_magic", f"%%{magic}")
    error: SyntaxError | None = None
    for attempt in range(3):
        text = source if attempt == 0 else _strip_magics(source, help_lines=attempt == 2)
        try:
            return ast.parse(text), None
        except SyntaxError as exc:
            error = error or exc
        except (ValueError, RecursionError, MemoryError) as exc:
            return None, Unparsed(0, "syntax_error", type(exc).__name__)
    assert error is not None
    return None, Unparsed(0, "syntax_error", f"line {error.lineno}: {error.msg}")


def _strip_magics(source: str, help_lines: bool) -> str:
    out = []
    for line in source.split("\n"):
        text = line.strip()
        magic = text.startswith(("%", "!")) or bool(_SHELL_ASSIGN.match(line))
        if help_lines and not text.startswith("#") and (text.endswith("?") or text.startswith("?")):
            magic = True
        out.append(line[:len(line) - len(line.lstrip())] + "pass" if magic else line)
    return "\n".join(out)


# ------------------------------------------------------------------------------------ extraction

def extract(cells: Sequence[tuple[int, str]]) -> CodeFacts:
    """Facts from the code cells of one notebook, in document order."""
    interp = NotebookInterpreter()
    lines: dict[int, list[str]] = {}
    unparsed: list[Unparsed] = []
    fit_lines: dict[int, tuple[ast.Module, set[int]]] = {}
    exhausted = False
    for number, source in cells:
        lines[number] = source.split("\n")
        tree, problem = parse_cell(source)
        if tree is None:
            assert problem is not None
            unparsed.append(Unparsed(number, problem.reason, problem.detail))
            continue
        candidates = {i for i, line in enumerate(lines[number], 1) if ".fit" in line}
        if candidates:
            fit_lines[number] = (tree, candidates)
        if not exhausted:
            try:
                interp.run_cell(number, tree)
            except Budget:
                exhausted = True
                interp.errors.append((number, "analysis budget exhausted; later cells not followed"))
    # fits the walk executed carry their lexical context; the others (in defs never called,
    # branches not taken, cells after an exhausted budget) are found by walking their lines
    lexical = list(interp.fit_nodes)
    seen = {id(node) for _, node, _, _ in lexical}
    covered: dict[int, set[int]] = defaultdict(set)
    for cell, node, _, _ in lexical:
        covered[cell].add(node.lineno)
    for number, (tree, candidates) in fit_lines.items():
        rest = candidates - covered[number]
        if rest:
            lexical += [(number, node, in_loop, func) for node, in_loop, func in lexical_fits(tree, rest)
                        if id(node) not in seen]
    return _Builder(interp, lines).build(unparsed, lexical)


class _Builder:
    """Turns the interpreter's events into the public facts."""

    def __init__(self, interp: NotebookInterpreter, lines: dict[int, list[str]]) -> None:
        self.interp, self.lines = interp, lines
        self._evidence: dict[Site, Evidence] = {}

    def ev(self, site: Site | None) -> Evidence:
        site = site or (0, 0)
        found = self._evidence.get(site)
        if found is None:
            cell, line = site
            src = self.lines.get(cell, [])
            text = src[line - 1].strip() if 0 < line <= len(src) else ""
            found = self._evidence[site] = Evidence(cell, line, text[:EXCERPT_CHARS])
        return found

    def build(self, unparsed: list[Unparsed], lexical: list) -> CodeFacts:
        it = self.interp
        runs = tuple(self.run(i, r) for i, r in enumerate(it.runs))
        tests = tuple(TestEval(t.cell, t.receiver, t.kind, t.model if isinstance(t.model, int) else None,
                               t.loop is not None, self.ev(t.site)) for t in it.tests)
        leaks = self.leaks()
        reuses = _dedupe(Finding(r.reuse[0], r.cell, self.ev(r.site), self.ev(r.reuse[1]))
                         for r in it.runs if r.reuse)
        activations = self.variants(lambda p: p["activations"])
        initializers = self.variants(lambda p: p["initializers"])
        optimizers = self.variants(lambda p: [p["optimizer"]] if p.get("optimizer") else [])
        splits = tuple(Split(s.kind, s.fraction, s.names, self.ev(s.site)) for s in it.splits)
        return CodeFacts(
            unparsed=tuple(unparsed),
            analysis_errors=tuple(Unparsed(c, "analysis_error", msg) for c, msg in it.errors),
            fits=self.fits(lexical),
            runs=runs,
            models=tuple(self.model(m) for m in it.models),
            activations=activations,
            initializers=initializers,
            optimizers=optimizers,
            default_initializer_used=any(r.profile.get("default_initializer") for r in it.runs),
            validation=ValidationFacts(_overall_fraction(runs, splits), splits),
            test_leakage=bool(leaks),
            leaks=leaks,
            test_evaluations=tests,
            model_reuse=bool(reuses),
            reuses=reuses,
            callbacks=self.callbacks(),
            regularization=self.regularization(),
            exercises_by_code=self.exercises(runs, tests),
            labels=_labels(runs),
        )

    # ---------------------------------------------------------------- pieces
    def validation(self, fit: dict) -> Validation:
        return Validation(fit["validation_kind"], fit["validation"], fit["validation_names"])

    def fits(self, lexical: list) -> tuple[FitFact, ...]:
        out = []
        for cell, node, in_loop, func in sorted(lexical, key=lambda t: (t[0], t[1].lineno, t[1].col_offset)):
            receiver = source_of(node.func.value)
            static = self.interp.fit_static.get(id(node))
            if static is None:
                if not (is_keras_fit(node) or "model" in receiver.lower()):
                    continue
                try:
                    static = self.interp.static_fit(node, func)
                except Exception:  # an odd call must not hide the others
                    continue
            out.append(FitFact(
                cell=cell, line=node.lineno, receiver=receiver, method=node.func.attr,
                epochs=static["epochs"], batch_size=static["batch_size"], verbose=static["verbose"],
                validation_split=static["validation_split"], validation_data=static["validation_names"],
                validation=self.validation(static), callbacks=tuple(c.name for c in static["callbacks"]),
                in_loop=in_loop, function=getattr(func, "name", "<lambda>" if func is not None else None),
                evidence=self.ev((cell, node.lineno))))
        return tuple(out)

    def run(self, index: int, r: RunEvent) -> Run:
        p, fit = r.profile, r.fit
        opt = p.get("optimizer")
        return Run(
            index=index, cell=r.cell, evidence=self.ev(r.site), model=r.model.id if r.model else None,
            receiver=r.receiver, label=r.label, label_source=r.label_source, label_vars=r.label_vars,
            loop_values=r.loop_values, epochs=fit["epochs"], batch_size=fit["batch_size"],
            verbose=fit["verbose"], validation=self.validation(fit),
            callbacks=tuple(c.name for c in fit["callbacks"]),
            restore_best_weights=any(dict(params_of(c)).get("restore_best_weights") is True
                                     for c in fit["callbacks"]),
            activations=_unique(a[0] for a in p.get("activations", [])),
            initializers=_unique(i[0] for i in p.get("initializers", [])),
            default_initializer=bool(p.get("default_initializer")),
            optimizer=opt[0] if opt else None, optimizer_params=opt[1] if opt else (),
            in_loop=r.in_loop, reused=r.reuse is not None)

    def model(self, m: Any) -> ModelFact:
        opt = optimizer_of(m.optimizer, m.site)
        return ModelFact(
            id=m.id, name=m.name, builder=m.builder, cell=m.cell,
            layers=tuple(self.layer(layer_info(o)) for o in m.layers), layers_known=m.known_layers,
            optimizer=opt[0] if opt else None, optimizer_params=opt[1] if opt else (),
            trained=m.id in self.interp.fitted, evidence=self.ev(m.site))

    def layer(self, info: dict) -> Layer:
        act, init, reg = info["activation"], info["initializer"], info["regularizer"]
        return Layer(kind=info["kind"], units=info["units"],
                     activation=act[0] if act else None, activation_params=act[1] if act else (),
                     initializer=init[0] if init else None, initializer_params=init[1] if init else (),
                     regularizer=reg[0] if reg else None, regularizer_params=reg[1] if reg else (),
                     rate=info["rate"], evidence=self.ev(info["site"]))

    def variants(self, pick: Any) -> tuple[Variant, ...]:
        cells: dict[tuple, list[int]] = {}
        sites: dict[tuple, Site] = {}
        for r in self.interp.runs:
            for name, params, site in pick(r.profile) if r.profile else []:
                key = (name, params)
                sites.setdefault(key, site)
                cells.setdefault(key, [])
                if r.cell not in cells[key]:
                    cells[key].append(r.cell)
        return tuple(Variant(name, params, tuple(cells[(name, params)]), self.ev(sites[(name, params)]))
                     for name, params in cells)

    def leaks(self) -> tuple[Finding, ...]:
        it = self.interp
        out: list[Finding] = []
        for r in it.runs:
            if r.fit["validation"] != "test_set":
                continue
            out.append(Finding("validation_on_test", r.cell, self.ev(r.site)))
            for cb in r.fit["callbacks"]:
                monitor = dict(params_of(cb)).get("monitor", "val_loss")
                if cb.name in _VALIDATING_CALLBACKS and str(monitor).startswith("val"):
                    out.append(Finding("callback_monitors_test", r.cell, self.ev(cb.site), self.ev(r.site)))
        groups: dict[tuple, list] = defaultdict(list)
        for t in it.tests:
            if t.loop is not None:
                groups[(t.loop, t.site)].append(t)
        for group in groups.values():
            if len({t.model for t in group}) >= 2 or any(t.fresh_in_unknown_loop for t in group):
                out.append(Finding("test_in_candidate_loop", group[0].cell, self.ev(group[0].site)))
        out.extend(Finding(kind, cell, self.ev(site)) for kind, site, cell in it.leaks)
        return _dedupe(out)

    def callbacks(self) -> tuple[CallbackFact, ...]:
        used: dict[int, list[int]] = defaultdict(list)
        for r in self.interp.runs:
            for cb in r.fit["callbacks"]:
                if r.cell not in used[id(cb)]:
                    used[id(cb)].append(r.cell)
        merged: dict[tuple, list[int]] = {}
        objs: dict[tuple, Any] = {}
        for cb in self.interp.callbacks:
            key = (cb.site, cb.name, params_of(cb))
            objs.setdefault(key, cb)
            merged.setdefault(key, [])
            merged[key] += [c for c in used.get(id(cb), []) if c not in merged[key]]
        return tuple(CallbackFact(cb.cls if cb.custom else cb.name, key[2], cb.custom, tuple(sorted(merged[key])),
                                  self.ev(cb.site)) for key, cb in objs.items())

    def _trained_layers(self) -> list[dict]:
        runs = [r for r in self.interp.runs if r.profile]
        if runs:
            return [lay for r in runs for lay in r.profile["layers"]]
        return [layer_info(o) for m in self.interp.models for o in m.layers]

    def regularization(self) -> Regularization:
        found: list[Finding] = []
        for lay in self._trained_layers():
            kinds = []
            if lay["kind"] in DROPOUT_LAYERS:
                kinds.append("dropout")
            if lay["kind"] == "batchnorm":
                kinds.append("batchnorm")
            if lay["regularizer"]:
                kinds += ["l1", "l2"] if lay["regularizer"][0] == "l1_l2" else [lay["regularizer"][0]]
            found += [Finding(k, lay["site"][0], self.ev(lay["site"])) for k in kinds]
        found_t = _dedupe(found)
        kinds_found = {f.kind for f in found_t}
        return Regularization("dropout" in kinds_found, "l1" in kinds_found, "l2" in kinds_found,
                              "batchnorm" in kinds_found, found_t)

    def exercises(self, runs: tuple[Run, ...], tests: tuple[TestEval, ...]) -> tuple[ExerciseGuess, ...]:
        out: list[ExerciseGuess] = []
        variant_cells: set[int] = set()
        pickers = {
            "activations": lambda p: p["activations"],
            "initializers": lambda p: p["initializers"],
            "optimizers": lambda p: [p["optimizer"]] if p.get("optimizer") else [],
        }
        for ex, pick in pickers.items():
            # a variant is what one training uses (a model mixing two activations is one variant)
            per_cell: dict[int, set] = defaultdict(set)
            first_cell: dict[frozenset, int] = {}
            explicit: set = set()
            for r in self.interp.runs:
                if not r.profile:
                    continue
                keys = frozenset((n, params) for n, params, _ in pick(r.profile))
                if keys:
                    explicit.add(keys)
                elif ex == "initializers" and r.profile["default_initializer"]:
                    keys = frozenset({("<default>", ())})
                if keys:
                    per_cell[r.cell].add(keys)
                    first_cell.setdefault(keys, r.cell)
            if len(explicit) >= 2:
                cells = sorted(c for c, v in per_cell.items() if len(v) >= 2) or sorted(set(first_cell.values()))
                variant_cells |= set(cells)
                out.append(ExerciseGuess(ex, tuple(cells)))
        # the final model: trained on its own (not in a loop, not in a cell comparing variants) with
        # regularization or callbacks, or simply the last such training after the comparisons
        single = [(r, ev) for r, ev in zip(runs, self.interp.runs) if not r.in_loop and r.cell not in variant_cells]
        final = {r.cell for r, ev in single if _regularized(ev)}
        if single and single[-1][0].cell > max(variant_cells, default=0):
            final.add(single[-1][0].cell)
        if final:
            out.append(ExerciseGuess("final_model", tuple(sorted(final))))
        if tests:
            out.append(ExerciseGuess("test_evaluation", tuple(sorted({t.cell for t in tests}))))
        bn = sorted({r.cell for r in self.interp.runs if r.profile
                     and any(lay["kind"] == "batchnorm" for lay in r.profile["layers"])})
        if bn:
            out.append(ExerciseGuess("batchnorm", tuple(bn)))
        lr = sorted({r.cell for r in runs if "reduce_lr_on_plateau" in r.callbacks})
        if lr:
            out.append(ExerciseGuess("reduce_lr", tuple(lr)))
        return tuple(out)


def _regularized(ev: RunEvent) -> bool:
    layers = ev.profile.get("layers", []) if ev.profile else []
    if any(lay["kind"] in DROPOUT_LAYERS or lay["kind"] == "batchnorm" or lay["regularizer"] for lay in layers):
        return True
    return any(cb.name in ("early_stopping", "reduce_lr_on_plateau") for cb in ev.fit["callbacks"])


def _overall_fraction(runs: tuple[Run, ...], splits: tuple[Split, ...]) -> float | str | None:
    values = [r.validation.fraction for r in runs if r.validation.fraction is not None]
    if "test_set" in values:
        return "test_set"
    if values:
        counts = Counter(values)
        best = max(counts.values())
        return next(v for v in values if counts[v] == best)
    fractions = [s.fraction for s in splits if s.fraction is not None]
    return fractions[0] if fractions else None


def _labels(runs: tuple[Run, ...]) -> tuple[LabelGroup, ...]:
    by_cell: dict[int, list[Run]] = defaultdict(list)
    for r in runs:
        by_cell[r.cell].append(r)
    out = []
    for cell, group in by_cell.items():
        labelled = [r for r in group if r.label is not None]
        if not labelled:
            continue
        variables = _unique(v for r in labelled for v in r.label_vars)
        out.append(LabelGroup(cell, labelled[0].label_source or "loop", variables, tuple(r.label for r in group)))
    return tuple(out)


def _unique(items: Any) -> tuple:
    return tuple(dict.fromkeys(items))


def _dedupe(findings: Any) -> tuple[Finding, ...]:
    return tuple(dict.fromkeys(findings))
