"""Value-level checks of an untrusted Keras config: plain JSON values and names from our lists.

:func:`scan` walks the whole config first and refuses code-carrying things wherever they hide
(Lambda layers, ``__lambda__`` bytecode, functions from other modules, custom registered objects,
long encoded strings). :class:`Cfg` then reads one layer's ``config`` key by key: every key must be
consumed by a rule, so a key we do not know is refused instead of silently ignored.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping


class Refused(Exception):
    """Why a model file is not evaluated (one line; the caller prefixes the file name)."""


# Modules a Keras 3 file names for its own built-in objects. Nothing is imported from them: a
# module outside this list means a custom or arbitrary Python object, which we refuse.
KERAS_MODULES = frozenset({
    "keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
    "keras.activations", "keras.models", "keras.src.models.functional", "keras.src.models.sequential",
    "keras.src.models.model", "keras.dtype_policies",
})
# Only compile_config (never used by us) may also name optimizers, losses and metrics.
COMPILE_MODULES = KERAS_MODULES | {"keras.optimizers", "keras.optimizers.schedules", "keras.losses",
                                   "keras.metrics"}
# A loss given as a function object is saved as {"module": "builtins", "class_name": "function"}.
COMPILE_FUNCTION_MODULES = frozenset({"builtins", "keras.losses", "keras.metrics"})
CODE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})
CODE_KEYS = frozenset({"function", "code", "closure", "function_type", "module_objects", "output_shape_type"})
MAX_STRING = 512

ACTIVATIONS = frozenset({
    "relu", "sigmoid", "tanh", "softmax", "selu", "elu", "gelu", "swish", "silu", "leaky_relu", "linear",
    "softplus", "softsign", "exponential", "hard_sigmoid", "hard_silu", "hard_swish", "relu6", "mish",
    "log_softmax",
})
ACTIVATION_LAYERS: Mapping[str, Mapping[str, Any]] = {
    # class -> {argument: default}; None default means "number or null".
    "LeakyReLU": {"negative_slope": 0.3},
    "ReLU": {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
    "ELU": {"alpha": 1.0},
    "Softmax": {"axis": -1},
}
INITIALIZERS: Mapping[str, tuple[str, ...]] = {
    "Zeros": (), "Ones": (), "Constant": ("value",), "GlorotUniform": (), "GlorotNormal": (), "HeNormal": (),
    "HeUniform": (), "LecunNormal": (), "LecunUniform": (), "RandomNormal": ("mean", "stddev"),
    "RandomUniform": ("minval", "maxval"), "TruncatedNormal": ("mean", "stddev"), "Orthogonal": ("gain",),
    "Identity": ("gain",), "VarianceScaling": ("scale", "mode", "distribution"),
}
INITIALIZER_WORDS = {"mode": ("fan_in", "fan_out", "fan_avg"),
                     "distribution": ("truncated_normal", "untruncated_normal", "uniform", "normal")}
REGULARIZERS: Mapping[str, tuple[str, ...]] = {"L1": ("l1",), "L2": ("l2",), "L1L2": ("l1", "l2")}
CONSTRAINTS: Mapping[str, tuple[str, ...]] = {
    "MaxNorm": ("max_value", "axis"), "NonNeg": (), "UnitNorm": ("axis",),
    "MinMaxNorm": ("min_value", "max_value", "rate", "axis"),
}
DTYPES = ("float32",)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# ------------------------------------------------------------------------------- the deep scan

def scan(node: Any, where: str, *, compile_section: bool = False) -> None:
    """Refuse anything that carries or names code, anywhere below ``node``."""
    if isinstance(node, str):
        if len(node) > MAX_STRING:
            raise Refused(f"{where}: a {len(node)}-character string (encoded code or data is refused)")
        return
    if isinstance(node, list):
        for item in node:
            scan(item, where, compile_section=compile_section)
        return
    if not isinstance(node, dict):
        return
    cls = node.get("class_name")
    if cls in CODE_CLASSES:
        raise Refused(f"{where}: holds a {cls} (Python code), refused")
    for key in node:
        if key in CODE_KEYS:
            raise Refused(f"{where}: has a {key!r} entry (Python code), refused")
    if isinstance(cls, str) and cls.startswith("__") and cls != "__keras_tensor__":
        raise Refused(f"{where}: holds a serialized {cls} object, refused")
    if "module" in node or cls == "function":
        _check_module(node, where, compile_section)
    registered = node.get("registered_name")
    if registered is not None and registered not in (cls, "function", node.get("config")):
        raise Refused(f"{where}: custom registered object {safe_text(registered)!r}, refused")
    for value in node.values():
        scan(value, where, compile_section=compile_section)


def _check_module(node: Mapping[str, Any], where: str, compile_section: bool) -> None:
    module, cls = node.get("module"), node.get("class_name")
    if cls == "function":
        allowed = COMPILE_FUNCTION_MODULES if compile_section else {"keras.activations"}
        name = node.get("config")
        if module not in allowed or not (isinstance(name, str) and re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name)):
            raise Refused(f"{where}: references the Python function {safe_text(module)}.{safe_text(name)}, refused")
        return
    allowed = COMPILE_MODULES if compile_section else KERAS_MODULES
    if module not in allowed:
        raise Refused(f"{where}: custom object {safe_text(cls)} from module {safe_text(module)!r}, refused")


def safe_text(value: Any, limit: int = 60) -> str:
    """Untrusted text made fit for one terminal line."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------- one layer

def layer_identity(entry: Any, index: int) -> tuple[str, str]:
    """(class name, display name) of a layer entry whose wrapper keys are all known."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise Refused(f"layer {index}: not a layer object")
    kind = entry.get("class_name")
    name = safe_text(entry["config"].get("name", entry.get("name", "?")), 40)
    if not isinstance(kind, str):
        raise Refused(f"layer {index} {name!r}: no class name")
    where = f"layer {index} {name!r} ({safe_text(kind, 40)})"
    if kind in ("Sequential", "Functional", "Model"):
        raise Refused(f"{where}: a model nested as a layer is not supported; save one flat model")
    if entry.get("module", "keras.layers") != "keras.layers":
        raise Refused(f"{where}: module {safe_text(entry.get('module'))!r} is not keras.layers, refused")
    unknown = set(entry) - {"module", "class_name", "config", "registered_name", "build_config", "name",
                            "inbound_nodes"}
    if unknown:
        raise Refused(f"{where}: unexpected entry {safe_text(sorted(unknown)[0])!r}")
    return safe_text(kind, 40), name


class Cfg:
    """Reads one ``config`` mapping; :meth:`finish` refuses the keys no rule consumed."""

    def __init__(self, raw: Any, where: str, kind: str) -> None:
        if not isinstance(raw, dict):
            raise Refused(f"{where}: config is not an object")
        self.raw, self.where, self.kind = raw, where, kind
        self._used: set[str] = set()

    def seen(self, key: str) -> None:
        self._used.add(key)

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self._used)
        if unknown:
            raise Refused(f"{self.where}: unsupported setting {safe_text(unknown[0])!r}")

    def common(self) -> None:
        self.seen("name")
        self.bool("trainable", True)
        self.dtype("dtype")

    def get(self, key: str, default: Any) -> Any:
        self.seen(key)
        if key not in self.raw:
            if default is None:
                raise Refused(f"{self.where}: missing {key!r}")
            return default
        return self.raw[key]

    def number(self, key: str, default: float | None) -> float:
        value = self.get(key, default)
        if not is_number(value):
            raise Refused(f"{self.where}: {key} must be a number, got {safe_text(value)}")
        return float(value)

    def int(self, key: str, lo: int, hi: int) -> int:
        value = self.get(key, None)
        if not is_int(value) or not lo <= value <= hi:
            raise Refused(f"{self.where}: {key} must be an integer in [{lo}, {hi}], got {safe_text(value)}")
        return value

    def optional_int(self, key: str) -> int | None:
        self.seen(key)
        value = self.raw.get(key)
        if value is not None and not is_int(value):
            raise Refused(f"{self.where}: {key} must be an integer or null")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise Refused(f"{self.where}: {key} must be true or false")
        return value

    def null(self, key: str, reason: str) -> None:
        self.seen(key)
        if self.raw.get(key) is not None:
            raise Refused(f"{self.where}: {key} is set: {reason}")

    def choice(self, key: str, options: Iterable[Any], default: Any) -> Any:
        self.seen(key)
        value = self.raw.get(key, default)
        if value not in tuple(options):
            raise Refused(f"{self.where}: {key} {safe_text(value)!r} is not supported")
        return value

    def dtype(self, key: str) -> None:
        self.seen(key)
        value = self.raw.get(key, "float32")
        if isinstance(value, dict):
            if value.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy"):
                raise Refused(f"{self.where}: dtype policy {safe_text(value.get('class_name'))} is not supported")
            value = (value.get("config") or {}).get("name")
        if value not in DTYPES:
            raise Refused(f"{self.where}: dtype {safe_text(value)!r} is not supported (only float32)")


# ------------------------------------------------------------------------------- named objects

def activation(cfg: Cfg, key: str) -> Any:
    """An activation: an allowed name (str), or an activation layer as {"layer": class, args}."""
    value = cfg.get(key, "linear")
    if value is None:
        return "linear"
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")  # scan() already required module keras.activations
    if isinstance(value, str):
        if value not in ACTIVATIONS:
            raise Refused(f"{cfg.where}: activation {safe_text(value)!r} is not allowed "
                          f"(allowed: {', '.join(sorted(ACTIVATIONS))})")
        return value
    if isinstance(value, dict) and value.get("class_name") in ACTIVATION_LAYERS:
        kind, _ = layer_identity(value, 0)
        inner = Cfg(value["config"], f"{cfg.where} activation {kind}", kind)
        inner.common()
        params = activation_layer_params(inner)
        inner.finish()
        return params
    shown = value.get("class_name") if isinstance(value, dict) else value
    raise Refused(f"{cfg.where}: activation {safe_text(shown)!r} is not allowed")


def activation_layer_params(cfg: Cfg) -> dict[str, Any]:
    """Arguments of an activation layer (LeakyReLU, ReLU, ELU, Softmax) as plain numbers."""
    params: dict[str, Any] = {"layer": cfg.kind}
    for arg, default in ACTIVATION_LAYERS[cfg.kind].items():
        if cfg.kind == "LeakyReLU" and "alpha" in cfg.raw and arg == "negative_slope":
            cfg.seen("negative_slope")
            arg_value = cfg.number("alpha", None)  # the Keras 2 spelling
        elif arg == "axis":
            arg_value = cfg.get("axis", -1)
            if arg_value != -1 and arg_value != [-1]:
                raise Refused(f"{cfg.where}: only axis -1 is supported")
            arg_value = -1
        elif default is None:
            cfg.seen(arg)
            arg_value = cfg.raw.get(arg)
            if arg_value is not None:
                arg_value = cfg.number(arg, None)
        else:
            arg_value = cfg.number(arg, default)
        params[arg] = arg_value
    return params


def _named(cfg: Cfg, key: str, table: Mapping[str, tuple[str, ...]], what: str,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    value = cfg.get(key, {})
    if value is None or value == {}:
        return None
    if isinstance(value, str):  # an older short form, e.g. "glorot_uniform"
        value = {"class_name": "".join(part.capitalize() for part in value.split("_")), "config": {}}
    if not isinstance(value, dict) or value.get("class_name") not in table:
        shown = value.get("class_name") if isinstance(value, dict) else value
        raise Refused(f"{cfg.where}: {key} {safe_text(shown)!r} is not an allowed {what} "
                      f"(allowed: {', '.join(table)})")
    cls = value["class_name"]
    inner = value.get("config") or {}
    if not isinstance(inner, dict):
        raise Refused(f"{cfg.where}: {key} config is not an object")
    out: dict[str, Any] = {"class_name": cls}
    for arg, val in inner.items():
        if arg in (extra or {}):
            if not extra[arg](val):
                raise Refused(f"{cfg.where}: {key} {cls}.{safe_text(arg)} has an unsupported value")
            continue
        if arg not in table[cls]:
            raise Refused(f"{cfg.where}: {key} {cls} takes no {safe_text(arg)!r}")
        words = INITIALIZER_WORDS.get(arg)
        if not (val in words if words else is_number(val)) and not (arg == "axis" and _int_or_ints(val)):
            raise Refused(f"{cfg.where}: {key} {cls}.{arg} has an unsupported value {safe_text(val)}")
        out[arg] = val
    return out


def _int_or_ints(value: Any) -> bool:
    return is_int(value) or (isinstance(value, list) and all(is_int(v) for v in value))


def initializer(cfg: Cfg, key: str) -> dict[str, Any] | None:
    extra = {"seed": lambda v: v is None or is_int(v), "input_axes": lambda v: v is None or _int_or_ints(v),
             "output_axes": lambda v: v is None or _int_or_ints(v)}
    return _named(cfg, key, INITIALIZERS, "initializer", extra)


def regularizer(cfg: Cfg, key: str) -> dict[str, Any] | None:
    return _named(cfg, key, REGULARIZERS, "regularizer")


def constraint(cfg: Cfg, key: str) -> dict[str, Any] | None:
    return _named(cfg, key, CONSTRAINTS, "constraint")
