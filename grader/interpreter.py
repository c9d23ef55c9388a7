"""Python semantics over abstract values: the walk through a notebook's cells.

Statements run in document order against one symbol table per notebook; `for` loops over known
lists run once per item (so a fit in the loop yields one training per variant) and longer or
unknown ones run once with unknown loop variables; `if` with an unknown condition runs both
branches; calls of the student's own functions bind their arguments and defaults and run the body.
Library calls are left to `call_ref`/`call_method`, which `kerasflow` extends with what Keras and
the data do. Nothing is executed for real.
"""

from __future__ import annotations

import ast
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from .symbols import (UNKNOWN, Const, Data, DictV, Func, Klass, LambdaV, Model, Ref, Rows, Score, Seq, Site,
                      as_int, as_number, first_of, scalar, scores_in)

MAX_ITER = 64  # longer loops run once with unknown loop variables
MAX_DEPTH = 12  # nested calls of the student's own functions
MAX_STEPS = 100_000  # statements interpreted per notebook
# calls that rank or pick among values: given test scores of two models, a choice by test accuracy
RANKING_CALLS = frozenset({"max", "min", "sorted", "argmax", "argmin", "argsort", "nlargest", "nsmallest",
                           "idxmax", "idxmin", "sort_values", "sort"})
# calls that make an index array over a dataset's rows (a split by hand: x_train[perm[:12000]])
INDEX_CALLS = frozenset({"permutation", "arange", "choice"})


@dataclass
class LoopFrame:
    serial: int
    names: tuple
    concrete: bool
    model_start: int
    frame: Any = None  # the Frame whose code the loop is in
    bindings: list = field(default_factory=list)  # loop variables in this iteration
    extra: list = field(default_factory=list)  # names the loop body assigned in this iteration
    reset: set = field(default_factory=set)  # models whose weights the loop body put back


@dataclass
class CallFrame:
    func: str
    explicit: list  # (parameter, value) passed explicitly


class Frame:
    __slots__ = ("vars", "parent", "cell", "func", "global_names", "loop_depth")

    def __init__(self, vars: dict, parent: "Frame | None", cell: int, func: Func | None) -> None:
        self.vars, self.parent, self.cell, self.func = vars, parent, cell, func
        self.global_names: set[str] = set()
        self.loop_depth = 0  # loops around the code being run, inside this frame's own code


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class Budget(Exception):
    """The notebook needs more interpretation steps than MAX_STEPS."""


class Interpreter:
    """Walks the cells of one notebook, binding names to abstract values."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {}
        self.module = Frame(self.globals, None, 0, None)
        self.frame = self.module
        self.cell = 0  # the top-level cell being executed (where the outputs appear)
        self.loops: list[LoopFrame] = []
        self.calls: list[CallFrame] = []
        self.quiet = 0  # >0 while re-evaluating arguments: no events, no calls into student code
        self.steps = 0
        self.loop_serial = 0
        self.model_count = 0  # models built so far (a loop knows which models predate it)
        self.leaks: list[tuple[str, Site, int]] = []  # (kind, site, cell) of test scores compared
        self.funcs: dict[int, Func] = {}
        self.errors: list[tuple[int, str]] = []

    # ---------------------------------------------------------------- driving
    def run_cell(self, cell: int, tree: ast.Module) -> None:
        self.cell = self.module.cell = cell
        for stmt in tree.body:
            self.frame, self.loops, self.calls, self.quiet = self.module, [], [], 0
            try:
                self.exec(stmt)
            except Budget:
                raise
            except RecursionError:
                self.errors.append((cell, f"line {stmt.lineno}: expression nested too deeply"))
            except Exception as exc:  # a gap in the analysis must not stop grading
                self.errors.append((cell, f"line {stmt.lineno}: {type(exc).__name__}: {exc}"))
        self.frame = self.module

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        self.quiet += 1
        try:
            yield
        finally:
            self.quiet -= 1

    @contextmanager
    def _in(self, frame: Frame) -> Iterator[None]:
        saved, self.frame = self.frame, frame
        try:
            yield
        finally:
            self.frame = saved

    def site(self, node: ast.AST) -> Site:
        return (self.frame.cell, getattr(node, "lineno", 0))

    # ---------------------------------------------------------------- names
    def lookup(self, name: str) -> Any:
        frame: Frame | None = self.frame
        if name in self.frame.global_names:
            frame = self.module
        while frame is not None:
            if name in frame.vars:
                return frame.vars[name]
            frame = frame.parent
        return Ref(name)

    def store(self, name: str, value: Any) -> None:
        target = self.module if name in self.frame.global_names else self.frame
        target.vars[name] = value
        if self.loops and self.loops[-1].frame is target and name not in self.loops[-1].names:
            extra = self.loops[-1].extra
            extra[:] = [(n, v) for n, v in extra if n != name] + [(name, value)]

    def bind(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.store(target.id, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            elts = target.elts
            if any(isinstance(e, ast.Starred) for e in elts):
                for e in elts:
                    self.bind(e.value if isinstance(e, ast.Starred) else e, UNKNOWN)
                return
            for e, v in zip(elts, self.unpack(value, len(elts))):
                self.bind(e, v)
        elif isinstance(target, ast.Subscript):
            container, key = self.eval(target.value), self.eval(target.slice)
            if isinstance(container, DictV) and isinstance(key, Const):
                try:
                    container.items[key.value] = (key, value)
                except TypeError:
                    pass
            elif isinstance(container, Seq) and as_int(key) is not None and -len(container.items) <= as_int(key) < len(container.items):
                container.items[as_int(key)] = value
        elif isinstance(target, ast.Starred):
            self.bind(target.value, UNKNOWN)
        elif isinstance(target, ast.Attribute):
            self.eval(target.value)

    @staticmethod
    def unpack(value: Any, n: int) -> list:
        if isinstance(value, Seq) and len(value.items) == n:
            return list(value.items)
        if isinstance(value, DictV) and len(value.items) == n:
            return [k for k, _ in value.items.values()]
        if isinstance(value, (Data, Score)):
            return [value] * n
        return [UNKNOWN] * n

    @staticmethod
    def iterate(value: Any) -> list | None:
        if isinstance(value, Seq):
            return list(value.items)
        if isinstance(value, DictV):
            return [k for k, _ in value.items.values()]
        return None

    # ---------------------------------------------------------------- statements
    def exec_block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.exec(stmt)

    def exec(self, stmt: ast.stmt) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Budget()
        handler = _STATEMENTS.get(type(stmt))
        if handler is not None:
            handler(self, stmt)

    def _s_Import(self, st: ast.Import) -> None:
        for alias in st.names:
            if alias.asname:
                self.store(alias.asname, Ref(alias.name))
            else:
                head = alias.name.split(".")[0]
                self.store(head, Ref(head))

    def _s_ImportFrom(self, st: ast.ImportFrom) -> None:
        for alias in st.names:
            if alias.name != "*":
                self.store(alias.asname or alias.name, Ref(f"{st.module or ''}.{alias.name}".lstrip(".")))

    def _s_Assign(self, st: ast.Assign) -> None:
        value = self.eval(st.value)
        for target in st.targets:
            self.bind(target, value)
            if isinstance(target, ast.Name) and isinstance(value, Model) and value.name is None:
                value.name = target.id
        if not self.quiet:
            self.assigned(st, value)

    def assigned(self, st: ast.Assign, value: Any) -> None:
        """Hook: an assignment statement was executed (a subclass records splits here)."""

    def _s_AnnAssign(self, st: ast.AnnAssign) -> None:
        if st.value is not None:
            self.bind(st.target, self.eval(st.value))

    def _s_AugAssign(self, st: ast.AugAssign) -> None:
        value = self.eval(st.value)
        if isinstance(st.target, ast.Name):
            current = self.lookup(st.target.id)
            if isinstance(current, Seq) and isinstance(st.op, ast.Add) and isinstance(value, Seq):
                current.items.extend(value.items)
            else:
                self.store(st.target.id, self.binop(st.op, current, value, self.site(st)))

    def _s_Expr(self, st: ast.Expr) -> None:
        self.eval(st.value)

    def _s_Return(self, st: ast.Return) -> None:
        raise _Return(self.eval(st.value) if st.value is not None else Const(None))

    def _s_Global(self, st: ast.Global) -> None:
        self.frame.global_names.update(st.names)

    def _s_If(self, st: ast.If) -> None:
        cond = self.truth(self.eval(st.test))
        if cond is not False:
            self.exec_block(st.body)
        if cond is not True:
            self.exec_block(st.orelse)

    def _s_With(self, st: ast.With) -> None:
        for item in st.items:
            self.eval(item.context_expr)
            if item.optional_vars is not None:
                self.bind(item.optional_vars, UNKNOWN)
        self.exec_block(st.body)

    _s_AsyncWith = _s_With

    def _s_Try(self, st: ast.Try) -> None:
        self.exec_block(st.body)
        self.exec_block(st.orelse)
        self.exec_block(st.finalbody)

    _s_TryStar = _s_Try

    def _s_While(self, st: ast.While) -> None:
        self.eval(st.test)
        with self._loop((), concrete=False):
            self.exec_block(st.body)
        self.exec_block(st.orelse)

    def _s_For(self, st: ast.For) -> None:
        items = self.iterate(self.eval(st.iter))
        names = tuple(n.id for n in ast.walk(st.target) if isinstance(n, ast.Name))
        if items is not None and len(items) <= MAX_ITER:
            with self._loop(names, concrete=True) as frame:
                for item in items:
                    self.bind(st.target, item)
                    frame.bindings, frame.extra = [(n, self.lookup(n)) for n in names], []
                    self.exec_block(st.body)
        else:
            self.bind(st.target, UNKNOWN)
            with self._loop(names, concrete=False):
                self.exec_block(st.body)
        self.exec_block(st.orelse)

    _s_AsyncFor = _s_For

    @contextmanager
    def _loop(self, names: tuple, concrete: bool) -> Iterator[LoopFrame]:
        self.loop_serial += 1
        frame = LoopFrame(self.loop_serial, names, concrete, self.model_count, self.frame)
        self.loops.append(frame)
        code = self.frame
        code.loop_depth += 1
        try:
            yield frame
        finally:
            self.loops.pop()
            code.loop_depth -= 1

    def _s_FunctionDef(self, st: ast.FunctionDef) -> None:
        a = st.args
        positional = a.posonlyargs + a.args
        defaults = {p.arg: self.eval(d) for p, d in zip(positional[len(positional) - len(a.defaults):], a.defaults)}
        defaults.update({p.arg: self.eval(d) for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
        func = Func(st, defaults, self.frame.cell, self.frame)
        self.funcs[id(st)] = func
        self.store(st.name, func)

    _s_AsyncFunctionDef = _s_FunctionDef

    def _s_ClassDef(self, st: ast.ClassDef) -> None:
        kind = None
        for base in st.bases:
            value = self.eval(base)
            last = value.last if isinstance(value, Ref) else ""
            if isinstance(value, Klass) and value.kind:
                kind = value.kind
            elif last == "Callback":
                kind = "callback"
            elif last in ("Model", "Sequential"):
                kind = "model"
        self.store(st.name, Klass(st.name, kind))

    # ---------------------------------------------------------------- expressions
    def eval(self, e: ast.expr | None) -> Any:
        if e is None:
            return Const(None)
        handler = _EXPRESSIONS.get(type(e))
        if handler is not None:
            return handler(self, e)
        for child in ast.iter_child_nodes(e):
            if isinstance(child, ast.expr):
                self.eval(child)
        return UNKNOWN

    def _e_Constant(self, e: ast.Constant) -> Any:
        return Const(e.value, (self.frame.cell, e.lineno))

    def _e_Name(self, e: ast.Name) -> Any:
        return self.lookup(e.id)

    def _e_NamedExpr(self, e: ast.NamedExpr) -> Any:
        value = self.eval(e.value)
        self.bind(e.target, value)
        return value

    def _e_Lambda(self, e: ast.Lambda) -> Any:
        return LambdaV(e)

    def _e_List(self, e: ast.List | ast.Tuple | ast.Set) -> Any:
        items: list = []
        for elt in e.elts:
            if isinstance(elt, ast.Starred):
                inner = self.iterate(self.eval(elt.value))
                if inner is None:
                    return UNKNOWN
                items.extend(inner)
            else:
                items.append(self.eval(elt))
        return Seq(items, self.site(e))

    _e_Tuple = _e_Set = _e_List

    def _e_Dict(self, e: ast.Dict) -> Any:
        out = DictV({}, self.site(e))
        for k, v in zip(e.keys, e.values):
            value = self.eval(v)
            if k is None:
                if isinstance(value, DictV):
                    out.items.update(value.items)
                continue
            key = self.eval(k)
            if isinstance(key, Const):
                try:
                    out.items[key.value] = (key, value)
                except TypeError:
                    pass
        return out

    def _e_JoinedStr(self, e: ast.JoinedStr) -> Any:
        parts = []
        for v in e.values:
            value = self.eval(v.value if isinstance(v, ast.FormattedValue) else v)
            parts.append(scalar(value) if isinstance(v, ast.FormattedValue) and v.format_spec is None else
                         (value.value if isinstance(v, ast.Constant) else None))
        if any(p is None for p in parts):
            return UNKNOWN
        return Const("".join(str(p) for p in parts), self.site(e))

    def _e_IfExp(self, e: ast.IfExp) -> Any:
        cond = self.truth(self.eval(e.test))
        if cond is True:
            return self.eval(e.body)
        if cond is False:
            return self.eval(e.orelse)
        self.eval(e.orelse)
        return self.eval(e.body)

    def _e_BoolOp(self, e: ast.BoolOp) -> Any:
        values = [self.eval(v) for v in e.values]
        truths = [self.truth(v) for v in values]
        if None in truths:
            return UNKNOWN
        for v, t in zip(values, truths):
            if t is isinstance(e.op, ast.Or):
                return v
        return values[-1]

    def _e_UnaryOp(self, e: ast.UnaryOp) -> Any:
        value = self.eval(e.operand)
        if isinstance(value, (Data, Score)):
            return value
        if isinstance(e.op, ast.Not):
            t = self.truth(value)
            return UNKNOWN if t is None else Const(not t, self.site(e))
        num = as_number(value)
        if num is not None and isinstance(e.op, (ast.USub, ast.UAdd)):
            return Const(-num if isinstance(e.op, ast.USub) else num, self.site(e))
        return UNKNOWN

    def _e_BinOp(self, e: ast.BinOp) -> Any:
        return self.binop(e.op, self.eval(e.left), self.eval(e.right), self.site(e))

    def binop(self, op: ast.operator, a: Any, b: Any, site: Site) -> Any:
        for v in (a, b):
            if isinstance(v, Data):
                return v
        scores = [v for v in (a, b) if isinstance(v, Score)]
        if scores:
            return Score(frozenset().union(*(s.models for s in scores)), pred=all(s.pred for s in scores))
        if isinstance(a, Seq) and isinstance(b, Seq) and isinstance(op, ast.Add):
            return Seq(a.items + b.items, site)
        x, y = scalar(a), scalar(b)
        if x is None or y is None or isinstance(op, ast.MatMult):
            return UNKNOWN
        if isinstance(op, ast.Mod) and isinstance(x, str):
            return UNKNOWN
        if isinstance(op, ast.Pow) and (not isinstance(y, (int, float)) or abs(y) > 64):
            return UNKNOWN
        if isinstance(op, ast.Mult) and (isinstance(x, str) or isinstance(y, str)):
            return UNKNOWN
        if isinstance(op, (ast.LShift, ast.RShift)) and isinstance(y, int) and abs(y) > 64:
            return UNKNOWN
        ops = {ast.Add: lambda: x + y, ast.Sub: lambda: x - y, ast.Mult: lambda: x * y, ast.Div: lambda: x / y,
               ast.FloorDiv: lambda: x // y, ast.Mod: lambda: x % y, ast.Pow: lambda: x ** y}
        fn = ops.get(type(op))
        if fn is None:
            return UNKNOWN
        try:
            result = fn()
        except (ArithmeticError, TypeError, ValueError):
            return UNKNOWN
        if isinstance(result, str) and len(result) > 10_000:
            return UNKNOWN
        return Const(result, site)

    def _e_Compare(self, e: ast.Compare) -> Any:
        values = [self.eval(e.left)] + [self.eval(c) for c in e.comparators]
        models = scores_in(values)
        # test scores of two models, or of a model built in the loop we are in (`if acc > best:`)
        candidates = len(models) >= 2 or any(isinstance(m, int) and m > loop.model_start
                                             for loop in self.loops for m in models)
        if candidates and not self.quiet and any(isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE))
                                                 for op in e.ops):
            self.leaks.append(("test_compared", self.site(e), self.cell))
        preds = [v for v in values if isinstance(v, Score) and v.pred]
        if preds and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in e.ops):
            return Score(frozenset().union(*(p.models for p in preds)), pred=True)
        if any(isinstance(v, (Data, Score)) for v in values):
            return next(v for v in values if isinstance(v, (Data, Score)))
        if len(values) != 2:
            return UNKNOWN
        left, right = values
        op = e.ops[0]
        if isinstance(op, (ast.Is, ast.IsNot)):
            if isinstance(left, Const) and isinstance(right, Const) and right.value is None:
                return Const((left.value is None) == isinstance(op, ast.Is), self.site(e))
            return UNKNOWN
        if isinstance(op, (ast.In, ast.NotIn)):
            pool = self.iterate(right)
            x = scalar(left)
            if pool is None or x is None or any(scalar(p) is None for p in pool):
                return UNKNOWN
            return Const((x in [scalar(p) for p in pool]) == isinstance(op, ast.In), self.site(e))
        x, y = scalar(left), scalar(right)
        if x is None or y is None:
            return UNKNOWN
        try:
            result = {ast.Eq: x == y, ast.NotEq: x != y}.get(type(op))
            if result is None:
                result = {ast.Lt: lambda: x < y, ast.Gt: lambda: x > y, ast.LtE: lambda: x <= y,
                          ast.GtE: lambda: x >= y}[type(op)]()
        except (TypeError, KeyError):
            return UNKNOWN
        return Const(result, self.site(e))

    @staticmethod
    def truth(value: Any) -> bool | None:
        if isinstance(value, Const):
            return bool(value.value)
        if isinstance(value, Seq):
            return bool(value.items)
        if isinstance(value, DictV):
            return bool(value.items)
        return None

    def _e_Attribute(self, e: ast.Attribute) -> Any:
        base = self.eval(e.value)
        if isinstance(base, Ref):
            return Ref(f"{base.path}.{e.attr}")
        if isinstance(base, Data):
            if e.attr == "shape":
                rows = base.rows
                return Seq([Const(rows, self.site(e)) if rows is not None else UNKNOWN], self.site(e))
            return base
        if isinstance(base, Score):
            return base
        return UNKNOWN

    def _e_Subscript(self, e: ast.Subscript) -> Any:
        base = self.eval(e.value)
        rows = e.slice.elts[0] if isinstance(e.slice, ast.Tuple) and e.slice.elts else e.slice  # x[:n, :]
        if isinstance(base, Data):
            if isinstance(rows, ast.Slice):
                return self._slice_data(base, self._bounds(rows))
            return self._index_data(base, self.eval(rows))
        if isinstance(base, Rows) and isinstance(e.slice, ast.Slice):
            bounds = self._bounds(e.slice)
            if base.n is None or UNKNOWN in bounds or bounds[2] == 0:
                return Rows(base.total, None, self.site(e))
            return Rows(base.total, len(range(base.n)[slice(*bounds)]), self.site(e))
        if isinstance(e.slice, ast.Slice):
            bounds = self._bounds(e.slice)
            if isinstance(base, Seq) and UNKNOWN not in bounds and bounds[2] != 0:
                return Seq(base.items[slice(*bounds)], self.site(e))
            return base if isinstance(base, Score) else UNKNOWN
        index = self.eval(e.slice)
        if isinstance(base, Score):
            return base
        if isinstance(base, Seq) and as_int(index) is not None:
            i = as_int(index)
            return base.items[i] if -len(base.items) <= i < len(base.items) else UNKNOWN
        if isinstance(base, DictV) and isinstance(index, Const):
            try:
                return base.items.get(index.value, (None, UNKNOWN))[1]
            except TypeError:
                return UNKNOWN
        return UNKNOWN

    def _bounds(self, node: ast.Slice) -> list:
        """[lower, upper, step] as Python values (None when omitted), UNKNOWN where not literal."""
        out = []
        for part in (node.lower, node.upper, node.step):
            value = self.eval(part) if part is not None else Const(None)
            out.append(scalar(value) if isinstance(value, Const) and (value.value is None or as_int(value) is not None)
                       else UNKNOWN)
        return out

    @staticmethod
    def _index_data(data: Data, index: Any) -> Data:
        """``x_train[idx]`` with an index array over all its rows: a part of ``idx.n`` rows (a
        shuffled split by hand); any other index leaves the data as it is."""
        if not isinstance(index, Rows) or index.total is None or index.total != data.rows:
            return data
        if index.n is None:
            return Data(data.source, ("rows", None), data.site)
        return data if index.n == index.total else Data(data.source, ("rows", index.n), data.site)

    @staticmethod
    def _slice_data(data: Data, bounds: list) -> Data:
        total = data.rows
        if UNKNOWN in bounds or total is None:
            return Data(data.source, ("rows", None), data.site)
        rows = range(total)[slice(*bounds)]
        n = len(rows)
        if data.part or n == total or n == 0:
            return Data(data.source, ("rows", n) if n != total else data.part, data.site)
        if rows.start == 0:
            return Data(data.source, ("head", n), data.site)
        if rows[-1] == total - 1:
            return Data(data.source, ("tail", n), data.site)
        return Data(data.source, ("rows", n), data.site)

    # ---------------------------------------------------------------- comprehensions
    def _e_ListComp(self, e: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> Any:
        out: list = []
        complete = self._comprehend(e.generators, lambda: out.append(self.eval(e.elt)))
        return Seq(out, self.site(e)) if complete else UNKNOWN

    _e_SetComp = _e_GeneratorExp = _e_ListComp

    def _e_DictComp(self, e: ast.DictComp) -> Any:
        out = DictV({}, self.site(e))

        def emit() -> None:
            key, value = self.eval(e.key), self.eval(e.value)
            if isinstance(key, Const):
                try:
                    out.items[key.value] = (key, value)
                except TypeError:
                    pass

        return out if self._comprehend(e.generators, emit) else UNKNOWN

    def _comprehend(self, generators: list[ast.comprehension], emit: Any) -> bool:
        frame = Frame({}, self.frame, self.frame.cell, self.frame.func)
        frame.global_names, frame.loop_depth = self.frame.global_names, self.frame.loop_depth
        with self._in(frame):
            return self._generate(generators, 0, emit)

    def _generate(self, gens: list[ast.comprehension], i: int, emit: Any) -> bool:
        if i == len(gens):
            emit()
            return True
        gen = gens[i]
        items = self.iterate(self.eval(gen.iter))
        names = tuple(n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name))
        if items is None or len(items) > MAX_ITER:
            self.bind(gen.target, UNKNOWN)
            with self._loop(names, concrete=False):
                for cond in gen.ifs:
                    self.eval(cond)
                self._generate(gens, i + 1, emit)
            return False
        complete = True
        with self._loop(names, concrete=True) as loop:
            for item in items:
                self.bind(gen.target, item)
                loop.bindings, loop.extra = [(n, self.lookup(n)) for n in names], []
                truths = [self.truth(self.eval(cond)) for cond in gen.ifs]
                if False in truths:
                    continue
                complete = self._generate(gens, i + 1, emit) and None not in truths and complete
        return complete

    # ---------------------------------------------------------------- calls
    def _e_Call(self, e: ast.Call) -> Any:
        if isinstance(e.func, ast.Attribute):
            receiver = self.eval(e.func.value)
            args, kwargs = self._arguments(e)
            return self.call_method(receiver, e.func.attr, args, kwargs, e)
        callee = self.eval(e.func)
        args, kwargs = self._arguments(e)
        return self.call(callee, args, kwargs, e)

    def _arguments(self, e: ast.Call) -> tuple[list, dict]:
        args: list = []
        for a in e.args:
            if isinstance(a, ast.Starred):
                inner = self.iterate(self.eval(a.value))
                args.extend(inner if inner is not None else [UNKNOWN])
            else:
                args.append(self.eval(a))
        kwargs: dict = {}
        for kw in e.keywords:
            value = self.eval(kw.value)
            if kw.arg is not None:
                kwargs[kw.arg] = value
            elif isinstance(value, DictV):
                kwargs.update({str(k): v for k, (_, v) in value.items.items()})
        return args, kwargs

    def call(self, callee: Any, args: list, kwargs: dict, node: ast.Call) -> Any:
        if isinstance(callee, Func):
            return self.call_func(callee, args, kwargs, node)
        if isinstance(callee, Ref):
            return self.call_ref(callee, args, kwargs, node)
        return self.propagate(args, kwargs)

    @staticmethod
    def propagate(args: list, kwargs: dict) -> Any:
        """An unknown function applied to data returns data of the same origin."""
        values = list(args) + list(kwargs.values())
        data = next((d for d in (first_of(v, Data) for v in values) if d is not None), None)
        if data is not None:
            return data
        scores = [v for v in values if isinstance(v, Score)]
        if scores:
            return Score(frozenset().union(*(s.models for s in scores)), pred=all(s.pred for s in scores))
        return UNKNOWN

    def call_func(self, func: Func, args: list, kwargs: dict, node: ast.Call) -> Any:
        if self.quiet or len(self.calls) >= MAX_DEPTH:
            return UNKNOWN
        a = func.node.args
        positional = a.posonlyargs + a.args
        local: dict[str, Any] = {}
        explicit: list = []
        for i, p in enumerate(positional):
            if i < len(args):
                local[p.arg] = args[i]
                explicit.append((p.arg, args[i]))
            elif p.arg in kwargs:
                local[p.arg] = kwargs[p.arg]
                explicit.append((p.arg, kwargs[p.arg]))
            else:
                local[p.arg] = func.defaults.get(p.arg, UNKNOWN)
        if a.vararg:
            local[a.vararg.arg] = Seq(list(args[len(positional):]))
        for p in a.kwonlyargs:
            if p.arg in kwargs:
                explicit.append((p.arg, kwargs[p.arg]))
            local[p.arg] = kwargs.get(p.arg, func.defaults.get(p.arg, UNKNOWN))
        if a.kwarg:
            known = {p.arg for p in positional + a.kwonlyargs}
            local[a.kwarg.arg] = DictV({k: (Const(k), v) for k, v in kwargs.items() if k not in known})
        frame = Frame(local, func.closure, func.cell, func)
        self.calls.append(CallFrame(func.name, explicit))
        try:
            with self._in(frame):
                self.exec_block(func.node.body)
            return Const(None)
        except _Return as ret:
            return ret.value
        finally:
            self.calls.pop()

    def call_ref(self, ref: Ref, args: list, kwargs: dict, node: ast.Call) -> Any:
        """A call of a library function or class known by name: builtins here, Keras in a subclass."""
        last, site = ref.last, self.site(node)
        builtin = self._builtin(last, args, kwargs, site) if ref.path == last else None
        if builtin is not None:
            return builtin
        if last in RANKING_CALLS:
            self._ranking(args, kwargs, site)
        if last in INDEX_CALLS and (rows := self._index_array(last, args, kwargs, site)) is not None:
            return rows
        return self.propagate(args, kwargs)

    @staticmethod
    def _index_array(name: str, args: list, kwargs: dict, site: Site) -> Rows | None:
        """``permutation(N)``, ``arange(N)``, ``choice(N, n, replace=False)``: indices into N rows
        (numpy's module functions and a Generator's methods alike)."""
        first = args[0] if args else kwargs.get("a")
        if isinstance(first, Rows):  # permutation(idx): the same indices, shuffled
            return first if name == "permutation" else None
        total = as_int(first)
        if total is None or total <= 0:
            return None
        if name in ("permutation", "arange"):
            return Rows(total, total, site) if len(args) <= 1 else None
        size = as_int(args[1] if len(args) > 1 else kwargs.get("size"))
        replace = args[2] if len(args) > 2 else kwargs.get("replace")
        if name == "choice" and size is not None and 0 < size <= total and isinstance(replace, Const) \
                and replace.value is False:
            return Rows(total, size, site)
        return None

    def _builtin(self, name: str, args: list, kwargs: dict, site: Site) -> Any:
        """Python builtins whose result we can know (range, zip, len...); None for the others."""
        if name == "range":
            ints = [as_int(a) for a in args]
            if not args or None in ints or len(ints) > 3 or (len(ints) == 3 and ints[2] == 0):
                return None
            r = range(*ints)  # type: ignore[arg-type]
            return Seq([Const(i, site) for i in r], site) if len(r) <= 10_000 else None
        if name == "zip":
            lists = [self.iterate(a) for a in args]
            if not lists or any(x is None for x in lists):
                return None
            return Seq([Seq(list(t), site) for t in zip(*lists)], site)
        if name == "enumerate":
            items = self.iterate(args[0]) if args else None
            start = as_int(kwargs.get("start", args[1] if len(args) > 1 else Const(0))) or 0
            if items is None:
                return None
            return Seq([Seq([Const(i + start, site), v], site) for i, v in enumerate(items)], site)
        if name in ("list", "tuple", "set", "reversed"):
            if not args:
                return Seq([], site)
            items = self.iterate(args[0])
            if items is None:
                return args[0] if isinstance(args[0], (Data, Score)) else None
            return Seq(items[::-1] if name == "reversed" else items, site)
        if name == "dict":
            out = DictV({}, site)
            pairs = self.iterate(args[0]) if args else []
            for pair in pairs or []:
                if isinstance(pair, Seq) and len(pair.items) == 2 and isinstance(pair.items[0], Const):
                    out.items[pair.items[0].value] = (pair.items[0], pair.items[1])
            for k, v in kwargs.items():
                out.items[k] = (Const(k, site), v)
            return out
        if name == "len":
            arg = args[0] if args else None
            if isinstance(arg, (Seq, DictV)):
                return Const(len(arg.items), site)
            if isinstance(arg, Data) and arg.rows is not None:
                return Const(arg.rows, site)
            return None
        if name in ("int", "float", "round", "abs", "str") and args:
            x = scalar(args[0])
            if x is None or (name != "str" and isinstance(x, str)):
                return None
            try:
                fn = {"int": int, "float": float, "round": round, "abs": abs, "str": str}[name]
                return Const(fn(x), site)
            except (TypeError, ValueError, OverflowError):
                return None
        return None

    def call_method(self, recv: Any, attr: str, args: list, kwargs: dict, node: ast.Call) -> Any:
        if isinstance(recv, Ref):
            return self.call_ref(Ref(f"{recv.path}.{attr}"), args, kwargs, node)
        if isinstance(recv, Seq):
            if attr == "append" and args:
                recv.items.append(args[0])
            elif attr == "extend" and args and self.iterate(args[0]) is not None:
                recv.items.extend(self.iterate(args[0]) or [])
            elif attr == "insert" and len(args) == 2 and as_int(args[0]) is not None:
                recv.items.insert(as_int(args[0]), args[1])  # type: ignore[arg-type]
            elif attr == "copy":
                return Seq(list(recv.items), recv.site)
            elif attr in RANKING_CALLS:
                self._ranking([recv], kwargs, self.site(node))
            return UNKNOWN
        if isinstance(recv, DictV):
            return self._dict_method(recv, attr, args, kwargs, node)
        if isinstance(recv, (Data, Score)):
            if attr in RANKING_CALLS:
                self._ranking([recv], kwargs, self.site(node))
            return recv
        if attr in INDEX_CALLS and not isinstance(recv, (Seq, DictV, Data)):  # rng.permutation(60000)
            rows = self._index_array(attr, args, kwargs, self.site(node))
            if rows is not None:
                return rows
        if isinstance(recv, Const) and isinstance(recv.value, str) and attr in ("lower", "upper", "strip", "title",
                                                                              "capitalize"):
            return Const(getattr(recv.value, attr)(), recv.site)
        return self.propagate(args, kwargs)

    def _dict_method(self, recv: DictV, attr: str, args: list, kwargs: dict, node: ast.Call) -> Any:
        site = self.site(node)
        if attr == "items":
            return Seq([Seq([k, v], site) for k, v in recv.items.values()], site)
        if attr == "keys":
            return Seq([k for k, _ in recv.items.values()], site)
        if attr == "values":
            return Seq([v for _, v in recv.items.values()], site)
        if attr == "get" and args and isinstance(args[0], Const):
            try:
                return recv.items.get(args[0].value, (None, args[1] if len(args) > 1 else Const(None)))[1]
            except TypeError:
                return UNKNOWN
        if attr == "update" and args and isinstance(args[0], DictV):
            recv.items.update(args[0].items)
        return UNKNOWN

    def _ranking(self, args: list, kwargs: dict, site: Site) -> None:
        if not self.quiet and len(scores_in(list(args) + list(kwargs.values()))) >= 2:
            self.leaks.append(("test_compared", site, self.cell))


# Dispatch by node type, built once from the base class: subclasses extend call_ref, call_method
# and assigned, not the _s_/_e_ handlers.
_STATEMENTS = {getattr(ast, name[3:]): fn for name, fn in vars(Interpreter).items()
               if name.startswith("_s_") and hasattr(ast, name[3:])}
_EXPRESSIONS = {getattr(ast, name[3:]): fn for name, fn in vars(Interpreter).items()
                if name.startswith("_e_") and hasattr(ast, name[3:])}
