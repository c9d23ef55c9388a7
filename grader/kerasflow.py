"""What Keras and the data do, on top of the Python semantics of `interpreter`.

`Sequential`, `Model(inputs, outputs)`, `model.add`, `compile`, `fit`, `evaluate`, `predict`,
`load_data`, `train_test_split`, slicing of the training set; each training becomes a RunEvent
with the model's profile (activations, initializers, optimizer), its validation data, whether the
same model object was trained before, and the label its loop or call gives it. Test evaluations,
splits and comparisons of test scores become events too; `codefacts` turns them into facts.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from .interpreter import Frame, Interpreter
from .kerasnames import (FIT_METHODS, FIT_POSITIONS, classify, fit_summary, is_keras_fit, profile_of,
                         source_of)
from .symbols import (TRAIN_ROWS, UNKNOWN, Const, Data, DictV, Klass, Model, Obj, Ref, Score, Seq, Site,
                      Tensor, as_number, choose_label, first_of, render, scalar, validation_of)

EVALUATE_METHODS = frozenset({"evaluate", "evaluate_generator"})
PREDICT_METHODS = frozenset({"predict", "predict_classes", "predict_proba", "predict_on_batch",
                             "predict_generator"})
ACCURACY_CALLS = frozenset({"accuracy_score", "balanced_accuracy_score", "f1_score", "precision_score",
                            "recall_score", "mean", "sum", "average", "count_nonzero"})
FILE_READERS = frozenset({"load", "loadtxt", "genfromtxt", "fromfile", "load_npz"})


@dataclass
class RunEvent:
    cell: int
    site: Site
    method: str
    receiver: str
    model: Model | None
    profile: dict
    fit: dict
    in_loop: bool
    label: str | None
    label_source: str | None
    label_vars: tuple
    loop_values: tuple
    reuse: tuple | None  # (kind, previous site, previous cell)


@dataclass
class TestEvent:
    cell: int
    site: Site
    receiver: str
    kind: str  # "evaluate" | "predict"
    model: Any  # model id, or "expr:<receiver>" when the model is unknown
    loop: int | None  # serial of the outermost active loop
    fresh_in_unknown_loop: bool


@dataclass
class SplitEvent:
    kind: str
    fraction: Any
    names: tuple
    site: Site


class NotebookInterpreter(Interpreter):
    """The interpreter with Keras and data semantics; collects the events of one notebook."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunEvent] = []
        self.tests: list[TestEvent] = []
        self.splits: list[SplitEvent] = []
        self.models: list[Model] = []
        self.callbacks: list[Obj] = []
        self.fit_static: dict[int, dict] = {}  # id(fit node) -> its arguments as written
        self.fit_nodes: list[tuple[int, ast.Call, bool, ast.AST | None]] = []  # as lexical_fits
        self.fitted: dict[int, tuple[Site, int]] = {}  # model id -> (site, cell) of its last fit

    def static_fit(self, node: ast.Call, func_node: ast.AST | None) -> dict:
        """Arguments of a fit that never ran in the walk: literals, globals and the def's defaults."""
        func = self.funcs.get(id(func_node)) if func_node is not None else None
        local: dict[str, Any] = {}
        if func is not None:
            a = func.node.args
            local = {p.arg: func.defaults.get(p.arg, UNKNOWN) for p in a.posonlyargs + a.args + a.kwonlyargs}
        frame = Frame(local, self.module, self.module.cell, None)
        method = node.func.attr  # type: ignore[attr-defined]
        with self._quiet(), self._in(frame):
            return fit_summary(method, self._bind_fit(method, node), node)

    # ---------------------------------------------------------------- calls
    def call(self, callee: Any, args: list, kwargs: dict, node: ast.Call) -> Any:
        if isinstance(callee, Klass):
            if callee.kind == "callback":
                obj = Obj("callback", callee.name, callee.name, args, kwargs, self.site(node), custom=True)
                if not self.quiet:
                    self.callbacks.append(obj)
                return obj
            if callee.kind == "model":
                return self.new_model([], node, known=False)
            return UNKNOWN
        if isinstance(callee, Obj) and callee.category == "layer":
            tensor = first_of(args[0], Tensor) if args else None
            return Tensor(tensor.layers + (callee,)) if tensor is not None else UNKNOWN
        return super().call(callee, args, kwargs, node)

    def call_ref(self, ref: Ref, args: list, kwargs: dict, node: ast.Call) -> Any:
        last, site = ref.last, self.site(node)
        if last == "Sequential":
            layers = args[0] if args else kwargs.get("layers")
            return self.new_model(list(layers.items) if isinstance(layers, Seq) else [], node)
        if last in ("Model", "Functional"):
            out = kwargs.get("outputs", args[1] if len(args) > 1 else None)
            tensor = first_of(out, Tensor)
            return self.new_model(list(tensor.layers) if tensor else [], node, known=tensor is not None)
        if last == "Input":
            return Tensor(())
        if last == "clone_model":
            src = args[0] if args else None
            return self.new_model(list(src.layers) if isinstance(src, Model) else [], node,
                                  known=isinstance(src, Model))
        if last == "load_model":
            return self.new_model([], node, known=False)
        if last == "load_data":
            train, test = Data("train", (), site), Data("test", (), site)
            return Seq([Seq([train, train], site), Seq([test, test], site)], site)
        if last == "train_test_split":
            return self._train_test_split(args, kwargs, site)
        if last == "load_mnist":
            kind = scalar(kwargs.get("kind", args[1] if len(args) > 1 else None))
            data = Data("test" if kind == "t10k" else "train", (), site)
            return Seq([data, data], site)
        if last.startswith("read_") or last in FILE_READERS:
            for v in list(args) + list(kwargs.values()):
                text = str(scalar(v) or "").lower()
                if "test" in text or "t10k" in text:
                    return Data("test", (), site)
                if "train" in text:
                    return Data("train", (), site)
        obj = self.keras_object(ref, args, kwargs, site)
        if obj is not None:
            return obj
        if last in ACCURACY_CALLS:
            scored = self._accuracy(args, kwargs, node)
            if scored is not None:
                return scored
        return super().call_ref(ref, args, kwargs, node)

    def keras_object(self, ref: Ref, args: list, kwargs: dict, site: Site) -> Obj | None:
        kind = classify(ref.path)
        if kind is None:
            return None
        obj = Obj(kind[0], kind[1], ref.last, args, kwargs, site)
        if obj.category == "callback" and not self.quiet:
            self.callbacks.append(obj)
        return obj

    def new_model(self, layers: list, node: ast.AST, known: bool = True) -> Model:
        self.model_count += 1
        builder = self.frame.func.name if self.frame.func is not None else None
        model = Model(self.model_count, None, builder, self.cell, self.site(node),
                      [o for o in layers if isinstance(o, Obj)], known_layers=known)
        if not self.quiet:
            self.models.append(model)
        return model

    def _train_test_split(self, args: list, kwargs: dict, site: Site) -> Any:
        test = as_number(kwargs.get("test_size"))
        train = as_number(kwargs.get("train_size"))
        rows = next((d.rows for d in args if isinstance(d, Data) and d.rows), TRAIN_ROWS)
        if test is not None and test >= 1:
            test = test / rows
        if test is None and train is not None:
            train = train / rows if train >= 1 else train
            test = 1 - train
        fraction = round(test if test is not None else 0.25, 6)
        out: list = []
        for arr in args:
            if isinstance(arr, Data):
                out += [Data(arr.source, ("split_train", round(1 - fraction, 6)), site),
                        Data(arr.source, ("split_val", fraction), site)]
            else:
                out += [UNKNOWN, UNKNOWN]
        return Seq(out, site)

    def assigned(self, st: ast.Assign, value: Any) -> None:
        call = st.value
        if isinstance(call, ast.Call) and _callee_last(call) == "train_test_split":
            names = tuple(ast.unparse(t) for target in st.targets
                          for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]))
            val = next((d for d in (value.items if isinstance(value, Seq) else [])
                        if isinstance(d, Data) and d.part and d.part[0] == "split_val"), None)
            if val is not None:
                self.splits.append(SplitEvent("train_test_split", val.part[1], names, self.site(st)))
            return
        for target in st.targets:
            pairs = [(target, st.value)]
            if isinstance(target, ast.Tuple) and isinstance(st.value, ast.Tuple) and len(target.elts) == len(st.value.elts):
                pairs = list(zip(target.elts, st.value.elts))
            for name, expr in pairs:
                data = self.lookup(name.id) if isinstance(name, ast.Name) else None
                # a held-out slice of the training set, sliced right here (`X_valid = X[:5000] / 255.`)
                if (isinstance(data, Data) and data.source == "train" and data.part
                        and data.part[0] in ("head", "tail", "rows") and data.part[1]
                        and data.part[1] <= TRAIN_ROWS // 2
                        and any(isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice)
                                for n in ast.walk(expr))):
                    _, fraction = validation_of(data, None)
                    self.splits.append(SplitEvent("slice", fraction, (name.id,), self.site(st)))

    # ---------------------------------------------------------------- methods
    def call_method(self, recv: Any, attr: str, args: list, kwargs: dict, node: ast.Call) -> Any:
        if isinstance(recv, Model):
            return self._model_method(recv, attr, args, kwargs, node)
        if attr in FIT_METHODS or attr in EVALUATE_METHODS or attr in PREDICT_METHODS:
            # an object we cannot see (built in a cell that did not parse, returned by unknown code)
            opaque = not isinstance(recv, (Seq, DictV, Data, Const, Ref)) or (
                isinstance(recv, Ref) and "." not in recv.path)
            receiver = source_of(node.func.value)  # type: ignore[attr-defined]
            if attr in FIT_METHODS and is_keras_fit(node) and (opaque or isinstance(recv, Ref)):
                return self._fit(None, receiver, attr, node)
            if attr not in FIT_METHODS and opaque:
                return self._test_use(f"expr:{receiver}", receiver, attr, args, kwargs, node)
        return super().call_method(recv, attr, args, kwargs, node)

    def _model_method(self, model: Model, attr: str, args: list, kwargs: dict, node: ast.Call) -> Any:
        if attr == "add" and args:
            if isinstance(args[0], Obj):
                model.layers.append(args[0])
            elif isinstance(args[0], Model):
                model.layers.extend(args[0].layers)
            return Const(None)
        if attr == "pop" and model.layers:
            model.layers.pop()
            return UNKNOWN
        if attr == "set_weights" and not self.quiet:
            self.fitted.pop(model.id, None)  # weights put back (e.g. the initial ones): a fresh start
            for loop in self.loops:
                loop.reset.add(model.id)
            return Const(None)
        if attr == "compile":
            model.optimizer = kwargs.get("optimizer", args[0] if args else None)
            return Const(None)
        if attr in FIT_METHODS:
            return self._fit(model, source_of(node.func.value), attr, node)  # type: ignore[attr-defined]
        if attr in EVALUATE_METHODS | PREDICT_METHODS:
            return self._test_use(model.id, source_of(node.func.value), attr,  # type: ignore[attr-defined]
                                  args, kwargs, node)
        return UNKNOWN

    # ---------------------------------------------------------------- training and test events
    def _bind_fit(self, method: str, node: ast.Call) -> dict:
        positions = FIT_POSITIONS[method]
        bound: dict = {}
        for name, arg in zip(positions, node.args):
            if isinstance(arg, ast.Starred):
                break
            bound[name] = self.eval(arg)
        for kw in node.keywords:
            value = self.eval(kw.value)
            if kw.arg is not None:
                bound[kw.arg] = value
            elif isinstance(value, DictV):  # model.fit(x, y, **params)
                bound.update({str(k): v for k, (_, v) in value.items.items()})
        return bound

    def _fit(self, model: Model | None, receiver: str, method: str, node: ast.Call) -> Any:
        if self.quiet:
            return UNKNOWN
        site = self.site(node)
        summary = fit_summary(method, self._bind_fit(method, node), node)
        if id(node) not in self.fit_static:
            self.fit_static[id(node)] = self._fit_with_defaults(method, node) if self.frame.func else summary
            func = self.frame.func
            self.fit_nodes.append((self.frame.cell, node, self.frame.loop_depth > 0,
                                   func.node if func is not None else None))
        reuse = None
        if model is not None:
            previous = self.fitted.get(model.id)
            if previous is not None:
                reuse = ("refit_in_loop" if previous[0] == site else "refit", previous[0], previous[1])
            elif any(not lf.concrete and model.id <= lf.model_start and model.id not in lf.reset
                     for lf in self.loops):
                reuse = ("refit_in_loop", site, self.cell)
            self.fitted[model.id] = (site, self.cell)
        label, source, label_vars, loop_values = self._label()
        self.runs.append(RunEvent(
            cell=self.cell, site=site, method=method, receiver=receiver, model=model,
            profile=profile_of(model) if model is not None else {}, fit=summary, in_loop=bool(self.loops),
            label=label, label_source=source, label_vars=label_vars, loop_values=loop_values, reuse=reuse))
        return UNKNOWN

    def _fit_with_defaults(self, method: str, node: ast.Call) -> dict:
        """A fit inside a def, as written: the def's parameters take their default values."""
        func = self.frame.func
        assert func is not None
        a = func.node.args
        local = dict(self.frame.vars)
        local.update({p.arg: func.defaults.get(p.arg, UNKNOWN) for p in a.posonlyargs + a.args + a.kwonlyargs})
        frame = Frame(local, self.frame.parent, self.frame.cell, func)
        with self._quiet(), self._in(frame):
            return fit_summary(method, self._bind_fit(method, node), node)

    def _label(self) -> tuple[str | None, str | None, tuple, tuple]:
        values = tuple((n, render(v)) for lf in self.loops for n, v in lf.bindings if render(v) is not None)
        chosen = [c for c in (choose_label(lf.bindings, lf.extra) for lf in self.loops) if c]
        if chosen:
            return ", ".join(text for _, text in chosen), "loop", tuple(n for n, _ in chosen), values
        if self.calls:
            pick = choose_label(self.calls[0].explicit, allow_numbers=False)
            if pick:
                return pick[1], "calls", (pick[0],), values
        return None, None, (), values

    def _test_use(self, key: Any, receiver: str, attr: str, args: list, kwargs: dict, node: ast.Call) -> Any:
        x = kwargs.get("x", args[0] if args else None)
        data = first_of(x, Data)
        if data is None or data.source != "test":
            return UNKNOWN
        if attr in PREDICT_METHODS:
            return Score(frozenset({key}), pred=True)
        self._record_test(key, receiver, "evaluate", node)
        return Score(frozenset({key}))

    def _record_test(self, key: Any, receiver: str, kind: str, node: ast.AST) -> None:
        if self.quiet:
            return
        fresh = any(not lf.concrete and isinstance(key, int) and key > lf.model_start for lf in self.loops)
        self.tests.append(TestEvent(self.cell, self.site(node), receiver, kind, key,
                                    self.loops[0].serial if self.loops else None, fresh))

    def _accuracy(self, args: list, kwargs: dict, node: ast.Call) -> Score | None:
        preds = [v for v in list(args) + list(kwargs.values()) if isinstance(v, Score) and v.pred]
        if not preds:
            return None
        models = frozenset().union(*(p.models for p in preds))
        names = {m.id: m.name or "" for m in self.models}
        for key in sorted(models, key=str):
            receiver = names.get(key, "") if isinstance(key, int) else str(key).removeprefix("expr:")
            self._record_test(key, receiver, "predict", node)
        return Score(models)


def _callee_last(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""
