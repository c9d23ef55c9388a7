"""Abstract values of notebook code: what a name can hold when the notebook is read, not run.

Constants, lists and dicts, Keras objects built from known classes, data arrays tagged with the
part of Fashion-MNIST they come from (so `validation_data=(X_valid, ...)` can be traced back to
`train_images[:10000]` or to the test set), models with their layers, the student's own functions,
values computed from test-set results. Anything else is UNKNOWN: never guessed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from .assignment import canonical_name

Site = tuple[int, int]  # (cell number, line in the cell)

TRAIN_ROWS, TEST_ROWS = 60_000, 10_000
LABELISH = re.compile(r"name|label|title|nombre|etiqueta|tag|key|titulo", re.I)


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(eq=False, slots=True)
class Const:
    value: Any
    site: Site | None = None


@dataclass(eq=False, slots=True)
class Seq:
    """A list or tuple (mutable, shared by reference like Python's)."""
    items: list
    site: Site | None = None


@dataclass(eq=False, slots=True)
class DictV:
    items: dict  # python key -> (key value, value)
    site: Site | None = None


@dataclass(eq=False, slots=True)
class Obj:
    """A Keras object built from a known class: layer, initializer, optimizer, callback, regularizer."""
    category: str
    name: str
    cls: str
    args: list
    kwargs: dict
    site: Site
    custom: bool = False
    info: dict | None = None  # layer_info, computed once

    def arg(self, pos: int | None, *keys: str) -> Any:
        for key in keys:
            if key in self.kwargs:
                return self.kwargs[key]
        if pos is not None and pos < len(self.args):
            return self.args[pos]
        return None


@dataclass(eq=False, slots=True)
class Data:
    """An array (or dataset) derived from the training or the test set of load_data().

    part: () the whole set | ("head"|"tail"|"rows", n) a slice of n rows (None if unknown) |
    ("split_val"|"split_train", fraction) a side of train_test_split.
    """
    source: str
    part: tuple = ()
    site: Site | None = None

    @property
    def rows(self) -> int | None:
        if not self.part:
            return TRAIN_ROWS if self.source == "train" else TEST_ROWS
        if self.part[0] in ("head", "tail", "rows"):
            return self.part[1]
        return None


@dataclass(eq=False, slots=True)
class Rows:
    """An integer index array over the rows of a dataset: ``np.random.permutation(len(x_train))``,
    ``np.arange(60000)``, ``rng.choice(60000, 12000, replace=False)``, or a slice of one. ``total``
    is the length of what it indexes, ``n`` how many indices it holds (None when unknown).
    ``x_train[rows]`` is then a part of ``n`` rows of the training set, as a slice would be."""
    total: int | None
    n: int | None
    site: Site | None = None


@dataclass(eq=False, slots=True)
class Model:
    id: int
    name: str | None
    builder: str | None
    cell: int
    site: Site
    layers: list
    optimizer: Any = None
    known_layers: bool = True


@dataclass(eq=False, slots=True)
class Func:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    defaults: dict
    cell: int
    closure: Any  # the interpreter Frame it was defined in

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(eq=False, slots=True)
class Klass:
    name: str
    kind: str | None  # "callback", "model" or None


@dataclass(eq=False, slots=True)
class Ref:
    """A module, class or function we only know by its dotted name (`keras.layers.Dense`)."""
    path: str

    @property
    def last(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def parts(self) -> list[str]:
        return self.path.split(".")


@dataclass(eq=False, slots=True)
class Tensor:
    layers: tuple


@dataclass(eq=False, slots=True)
class Score:
    """A value computed from test-set results of these models (pred: raw predictions, not yet a score)."""
    models: frozenset
    pred: bool = False


@dataclass(eq=False, slots=True)
class LambdaV:
    node: ast.Lambda


# ------------------------------------------------------------------------------------ reading values

def scalar(v: Any) -> Any:
    if isinstance(v, Const) and isinstance(v.value, (int, float, str, bool)):
        return v.value
    return None


def as_int(v: Any) -> int | None:
    val = scalar(v)
    if isinstance(val, bool):
        return None
    if isinstance(val, int):
        return val
    if isinstance(val, float) and val.is_integer():
        return int(val)
    return None


def as_number(v: Any) -> float | None:
    val = scalar(v)
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        return val
    return None


def first_of(v: Any, kind: type, depth: int = 0) -> Any:
    """The first value of a type inside v (looking into lists/tuples/dicts a few levels deep)."""
    if isinstance(v, kind):
        return v
    if depth < 3 and isinstance(v, Seq):
        for item in v.items:
            found = first_of(item, kind, depth + 1)
            if found is not None:
                return found
    if depth < 3 and isinstance(v, DictV):
        for _, item in v.items.values():
            found = first_of(item, kind, depth + 1)
            if found is not None:
                return found
    return None


def scores_in(values: Any, depth: int = 0) -> frozenset:
    """Models whose test scores are inside these values."""
    out: frozenset = frozenset()
    for v in values:
        if isinstance(v, Score) and not v.pred:
            out |= v.models
        elif depth < 3 and isinstance(v, Seq):
            out |= scores_in(v.items, depth + 1)
        elif depth < 3 and isinstance(v, DictV):
            out |= scores_in([item for _, item in v.items.values()], depth + 1)
    return out


def render(v: Any) -> str | None:
    """A value as a run label: strings as written, numbers, Keras objects by canonical name."""
    if isinstance(v, Const) and isinstance(v.value, (str, int, float)) and not isinstance(v.value, bool):
        return str(v.value)
    if isinstance(v, Obj):
        return v.cls if v.custom else v.name
    if isinstance(v, Ref) and "." in v.path:  # tf.nn.relu, not a name we could not resolve
        return canonical_name(v.last)
    return None


def choose_label(bindings: list, extra: list = (), allow_numbers: bool = True) -> tuple[str, str] | None:
    """(name, text) of the value that best names a run: a string in a variable called like a name,
    any string, a Keras object, a number; loop variables (`bindings`) before names the loop body
    assigned (`extra`, e.g. `act = activations[i]`)."""
    def is_str(v: Any) -> bool:
        return isinstance(v, Const) and isinstance(v.value, str)

    tests = [lambda n, v: is_str(v) and LABELISH.search(n), lambda n, v: is_str(v),
             lambda n, v: isinstance(v, (Obj, Ref))]
    for test in tests:
        for pool in (bindings, extra):
            for name, value in pool:
                text = render(value)
                if text is not None and test(name, value):
                    return name, text
    if allow_numbers:
        for name, value in bindings:
            text = render(value)
            if text is not None:
                return name, text
    return None


def validation_of(data: Any, split: Any) -> tuple[str | None, Any]:
    """(kind, fraction): kind "data" for validation_data, "split" for validation_split."""
    if data is not None and not (isinstance(data, Const) and data.value is None):
        arr = first_of(data, Data)
        if arr is None:
            return "data", None
        if arr.source == "test":
            return "data", "test_set"
        kind, amount = (arr.part + (None,))[:2] if arr.part else (None, None)
        if kind == "split_val":
            return "data", amount
        if kind in ("head", "tail", "rows") and amount:
            if amount == 10_000 and kind != "rows":
                return "data", "first_10k" if kind == "head" else "last_10k"
            return "data", round(amount / TRAIN_ROWS, 4)
        return "data", None
    frac = as_number(split)
    if frac:
        return "split", float(frac)
    return None, None
