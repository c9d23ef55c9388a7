"""The Keras vocabulary: which calls build layers, optimizers, initializers, callbacks and
regularizers, their canonical names (from `assignment`) and the parameters that tell variants
apart, and what a model or a `fit` call amounts to for grading."""

from __future__ import annotations

import ast
from functools import lru_cache
from typing import Any

from .assignment import ACTIVATIONS, CALLBACKS, INITIALIZERS, OPTIMIZERS, canonical_name
from .symbols import (Const, LambdaV, Model, Obj, Ref, Seq, Site, as_int, as_number, scalar,
                      validation_of)

FIT_METHODS = ("fit", "fit_generator")
FIT_POSITIONS = {
    "fit": ("x", "y", "batch_size", "epochs", "verbose", "callbacks", "validation_split", "validation_data"),
    "fit_generator": ("generator", "steps_per_epoch", "epochs", "verbose", "callbacks", "validation_data"),
}
FIT_KEYWORDS = frozenset({"epochs", "batch_size", "validation_split", "validation_data", "callbacks",
                          "verbose", "steps_per_epoch", "initial_epoch"})

# Keras names that assignment.py's tables do not cover (layers other than dense/dropout/batchnorm,
# callbacks other than early stopping / LR reduction, legacy initializer strings).
LAYER_CLASSES = frozenset({
    "Dense", "Dropout", "BatchNormalization", "Activation", "LeakyReLU", "ELU", "PReLU", "ReLU",
    "Softmax", "ThresholdedReLU", "Flatten", "InputLayer", "Reshape", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "LayerNormalization", "Conv2D", "MaxPooling2D", "MaxPool2D",
    "SpatialDropout2D", "GlobalAveragePooling2D",
})
ACTIVATION_LAYERS = frozenset({"leaky_relu", "elu", "relu", "prelu", "softmax", "thresholdedrelu"})
DROPOUT_LAYERS = frozenset({"dropout", "alphadropout", "gaussiandropout", "spatialdropout2d"})
CALLBACK_CLASSES = {
    "ModelCheckpoint": "model_checkpoint", "LearningRateScheduler": "learning_rate_scheduler",
    "TensorBoard": "tensorboard", "CSVLogger": "csv_logger", "LambdaCallback": "lambda_callback",
    "TerminateOnNaN": "terminate_on_nan", "BackupAndRestore": "backup_and_restore",
    "ProgbarLogger": "progbar_logger", "RemoteMonitor": "remote_monitor",
}
REGULARIZERS = {"l1": "l1", "l2": "l2", "l1_l2": "l1_l2", "L1": "l1", "L2": "l2", "L1L2": "l1_l2"}
LEGACY_INITIALIZERS = {"normal": "random_normal", "uniform": "random_uniform"}

Spec = tuple  # (canonical name, params, site)


@lru_cache(maxsize=1024)
def canon(name: str) -> str:
    return canonical_name(name)


@lru_cache(maxsize=1024)
def classify(path: str) -> tuple[str, str] | None:
    """(category, canonical name) of a Keras class or function called by this dotted name."""
    parts = path.split(".")
    last = parts[-1]
    upper = last[:1].isupper()
    name = canon(last)
    if last in REGULARIZERS and (upper or "regularizers" in parts or path == last):
        return "regularizer", REGULARIZERS[last]
    if last in LAYER_CLASSES or ("layers" in parts and upper):
        return "layer", name
    if (name in OPTIMIZERS and upper) or ("optimizers" in parts and upper):
        return "optimizer", name
    if (name in INITIALIZERS and upper) or "initializers" in parts:
        return "initializer", name
    if name in CALLBACKS or last in CALLBACK_CLASSES or ("callbacks" in parts and upper):
        return "callback", CALLBACK_CLASSES.get(last, name)
    return None


def params_of(obj: Obj) -> tuple[tuple[str, Any], ...]:
    """The parameters that identify a variant, with canonical keys (lr -> learning_rate, alpha ->
    negative_slope for LeakyReLU), literal values only."""
    cat, name, kw = obj.category, obj.name, obj.kwargs
    raw: dict[str, Any] = {}
    if cat == "optimizer":
        allowed: tuple[str, ...] = OPTIMIZERS.get(name, ("learning_rate",))
        if obj.args:
            raw["learning_rate"] = obj.args[0]
        raw.update({("learning_rate" if k == "lr" else k): v for k, v in kw.items()})
    elif cat == "initializer":
        allowed = INITIALIZERS.get(name, ())
        raw = dict(zip(allowed, obj.args))
        raw.update(kw)
        if name not in INITIALIZERS:
            allowed = tuple(k for k in raw if k != "seed")
    elif cat == "layer" and name == "leaky_relu":
        allowed = ("negative_slope",)
        if obj.args:
            raw["negative_slope"] = obj.args[0]
        raw.update({("negative_slope" if k == "alpha" else k): v for k, v in kw.items()})
    elif cat == "layer" and name == "elu":
        allowed = ("alpha",)
        raw = dict(zip(allowed, obj.args))
        raw.update(kw)
    elif cat == "regularizer":
        allowed = ("l1", "l2") if name == "l1_l2" else (name,)
        raw = dict(zip(allowed, obj.args))
        raw.update({(name if k == "l" else k): v for k, v in kw.items()})
    elif cat == "callback":
        raw = dict(kw)
        if name == "model_checkpoint" and obj.args:
            raw.setdefault("filepath", obj.args[0])
        allowed = tuple(raw)
    else:
        return ()
    out = {k: scalar(v) for k, v in raw.items() if k in allowed and scalar(v) is not None}
    return tuple(sorted(out.items()))


def activation_of(v: Any, site: Site) -> Spec | None:
    if isinstance(v, Const):
        return (canon(v.value), (), v.site or site) if isinstance(v.value, str) else None
    if isinstance(v, Obj) and v.category == "layer":
        if v.name in ACTIVATION_LAYERS:
            return (v.name, params_of(v), v.site)
        if v.name == "activation":
            return activation_of(v.arg(0, "activation"), v.site)
    if isinstance(v, Ref):
        name = canon(v.last)
        if name in ACTIVATIONS or "activations" in v.parts:
            return (name, (), site)
    if isinstance(v, LambdaV):
        for node in ast.walk(v.node.body):
            ident = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if ident and canon(ident) in ACTIVATIONS:
                params: tuple = ()
                call = next((c for c in ast.walk(v.node.body) if isinstance(c, ast.Call)), None)
                if canon(ident) == "leaky_relu" and call is not None:
                    for kw in call.keywords:
                        if kw.arg in ("alpha", "negative_slope") and isinstance(kw.value, ast.Constant):
                            params = (("negative_slope", kw.value.value),)
                return (canon(ident), params, site)
    return None


def initializer_of(v: Any, site: Site) -> Spec | None:
    if isinstance(v, Const) and isinstance(v.value, str):
        low = v.value.strip().lower()
        return (LEGACY_INITIALIZERS.get(low) or canon(v.value), (), v.site or site)
    if isinstance(v, Obj) and v.category == "initializer":
        return (v.name, params_of(v), v.site)
    if isinstance(v, Ref) and (canon(v.last) in INITIALIZERS or "initializers" in v.parts):
        return (canon(v.last), (), site)
    return None


def optimizer_of(v: Any, site: Site) -> Spec | None:
    if isinstance(v, Const) and isinstance(v.value, str):
        return (canon(v.value), (), v.site or site)
    if isinstance(v, Obj) and v.category == "optimizer":
        return (v.name, params_of(v), v.site)
    if isinstance(v, Ref) and canon(v.last) in OPTIMIZERS:
        return (canon(v.last), (), site)
    return None


def regularizer_of(v: Any, site: Site) -> Spec | None:
    if isinstance(v, Const) and isinstance(v.value, str) and v.value in REGULARIZERS:
        return (REGULARIZERS[v.value], (), v.site or site)
    if isinstance(v, Obj) and v.category == "regularizer":
        return (v.name, params_of(v), v.site)
    return None


def layer_info(obj: Obj) -> dict:
    if obj.info is None:
        obj.info = _layer_info(obj)
    return obj.info


def _layer_info(obj: Obj) -> dict:
    kind = obj.name
    dense = kind == "dense"
    info = {"kind": kind, "units": None, "activation": None, "initializer": None, "regularizer": None,
            "rate": None, "site": obj.site}
    if dense:
        info["units"] = as_int(obj.arg(0, "units"))
    if kind == "activation":
        info["activation"] = activation_of(obj.arg(0, "activation"), obj.site)
    elif kind in ACTIVATION_LAYERS:
        info["activation"] = (kind, params_of(obj), obj.site)
    else:
        info["activation"] = activation_of(obj.arg(1 if dense else None, "activation"), obj.site)
    info["initializer"] = initializer_of(obj.arg(3 if dense else None, "kernel_initializer", "init"), obj.site)
    info["regularizer"] = regularizer_of(obj.arg(5 if dense else None, "kernel_regularizer", "W_regularizer"),
                                         obj.site)
    if kind in DROPOUT_LAYERS:
        info["rate"] = as_number(obj.arg(0, "rate", "p"))
    return info


def profile_of(model: Model) -> dict:
    """What a training of this model compares: hidden activations (never softmax), kernel
    initializers, whether a Dense layer relies on Keras' default initializer, the optimizer."""
    layers = [layer_info(o) for o in model.layers if isinstance(o, Obj)]
    acts = [lay["activation"] for lay in layers if lay["activation"] and lay["activation"][0] != "softmax"]
    inits = [lay["initializer"] for lay in layers if lay["initializer"]]
    default_init = any(lay["kind"] == "dense" and lay["initializer"] is None for lay in layers)
    return {"layers": layers, "activations": acts, "initializers": inits, "default_initializer": default_init,
            "optimizer": optimizer_of(model.optimizer, model.site)}


def fit_summary(method: str, bound: dict, node: ast.Call) -> dict:
    """The keyword arguments of a fit that the rubric cares about, resolved to plain values."""
    def intval(key: str, default: Any) -> Any:
        return default if key not in bound else as_int(bound[key])

    vd_node = _arg_node(node, FIT_POSITIONS[method], "validation_data")
    if vd_node is None:
        names: tuple = ()
    elif isinstance(vd_node, (ast.Tuple, ast.List)):
        names = tuple(source_of(e) for e in vd_node.elts)
    else:
        names = (source_of(vd_node),)
    kind, fraction = validation_of(bound.get("validation_data"), bound.get("validation_split"))
    verbose = bound.get("verbose")
    cbs = bound.get("callbacks")
    callbacks = [o for o in (cbs.items if isinstance(cbs, Seq) else [cbs])
                 if isinstance(o, Obj) and o.category == "callback"]
    return {
        "epochs": intval("epochs", 1),
        "batch_size": intval("batch_size", 32 if method == "fit" else None),
        "verbose": 1 if verbose is None or scalar(verbose) == "auto" else as_int(verbose),
        "validation_split": float(as_number(bound.get("validation_split")) or 0) or None,
        "validation_names": names,
        "validation_kind": kind,
        "validation": fraction,
        "callbacks": callbacks,
    }


def source_of(node: ast.AST, limit: int = 60) -> str:
    """Short source text of an expression (`model`, `models[i]`, `x_val`)."""
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)[:limit]


def _arg_node(node: ast.Call, positions: tuple, key: str) -> ast.expr | None:
    for kw in node.keywords:
        if kw.arg == key:
            return kw.value
    pos = positions.index(key) if key in positions else None
    if pos is not None and pos < len(node.args) and not any(isinstance(a, ast.Starred) for a in node.args[:pos + 1]):
        return node.args[pos]
    return None


def lexical_fits(tree: ast.AST, lines: set[int]) -> list[tuple[ast.Call, bool, ast.AST | None]]:
    """Every `.fit(...)`/`.fit_generator(...)` call starting on one of these lines, with whether it
    sits in a loop and in which def (only the nodes spanning those lines are visited)."""
    out: list[tuple[ast.Call, bool, ast.AST | None]] = []
    loops = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)

    def walk(node: ast.AST, in_loop: bool, func: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            start = getattr(child, "lineno", None)
            if start is not None and not any(start <= line <= (child.end_lineno or start) for line in lines):
                continue
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and child.func.attr in FIT_METHODS):
                out.append((child, in_loop, func))
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(child, False, child)
            elif isinstance(child, ast.Lambda):
                walk(child, False, child)
            else:
                walk(child, in_loop or isinstance(child, loops), func)

    walk(tree, False, None)
    return out


def is_keras_fit(node: ast.Call) -> bool:
    """Whether a fit call we could not tie to a model looks like Keras (not sklearn's fit(X, y))."""
    return bool(FIT_KEYWORDS & {kw.arg for kw in node.keywords}) or len(node.args) > 2
