"""A student's Keras ``config.json`` -> our own :class:`ModelSpec`, by allowlist only.

Nothing in a config is ever resolved to Python: no module is imported, no class is looked up by
name. Each layer must be one of a few plain Keras classes with plain JSON values (numbers, bools,
names from our lists); every other key, class, module or value is refused with a reason naming the
layer. The model is later rebuilt from the ModelSpec by our own code (``grader.evaluate_worker``),
so what the file says can only choose among the constructors and arguments listed here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from . import modelchecks as mc
from .modelchecks import Refused

CLASSES = 10
# Input shapes a Fashion-MNIST image can be fed as (batch axis left out).
IMAGE_SHAPES = ((28, 28), (784,), (28, 28, 1))
MAX_WIDTH = 1 << 16  # units / dimension bound: refuses absurd sizes before any memory is spent


@dataclass(frozen=True)
class LayerSpec:
    """One validated layer: its Keras class, its (display) name, the arguments we rebuild it with.

    ``params`` holds only JSON-plain values; ``output_shape`` and ``params_count`` are inferred here
    (pure) so the summary needs no TensorFlow.
    """

    kind: str
    name: str
    params: Mapping[str, Any]
    output_shape: tuple[int, ...]
    params_count: int

    @property
    def has_weights(self) -> bool:
        return self.kind in ("Dense", "BatchNormalization")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "params": dict(self.params),
                "output_shape": list(self.output_shape), "params_count": self.params_count}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "LayerSpec":
        return cls(raw["kind"], raw["name"], dict(raw["params"]), tuple(raw["output_shape"]),
                   int(raw["params_count"]))


@dataclass(frozen=True)
class ModelSpec:
    """A validated model: a chain of allowed layers from a 28x28 image to 10 outputs."""

    model_class: str  # "Sequential" or "Functional"
    name: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    keras_version: str

    @property
    def params_count(self) -> int:
        return sum(layer.params_count for layer in self.layers)

    @property
    def rescales_input(self) -> bool:
        """True when a Rescaling layer comes before any weighted layer: the model wants raw 0-255."""
        for layer in self.layers:
            if layer.kind == "Rescaling":
                return True
            if layer.has_weights:
                return False
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"model_class": self.model_class, "name": self.name, "input_shape": list(self.input_shape),
                "layers": [layer.to_dict() for layer in self.layers], "params_count": self.params_count,
                "keras_version": self.keras_version}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "ModelSpec":
        return cls(raw["model_class"], raw["name"], tuple(raw["input_shape"]),
                   tuple(LayerSpec.from_dict(layer) for layer in raw["layers"]), raw["keras_version"])


# ------------------------------------------------------------------------------ per-layer rules

def _dense(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    units = cfg.int("units", 1, MAX_WIDTH)
    params = {"units": units, "activation": mc.activation(cfg, "activation"),
              "use_bias": cfg.bool("use_bias", True)}
    for key in ("kernel_initializer", "bias_initializer"):
        params[key] = mc.initializer(cfg, key)
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
        params[key] = mc.regularizer(cfg, key)
    for key in ("kernel_constraint", "bias_constraint"):
        params[key] = mc.constraint(cfg, key)
    for key in ("lora_rank", "lora_alpha", "quantization_config"):
        cfg.null(key, "LoRA or quantized Dense layers are not supported")
    count = shape[-1] * units + (units if params["use_bias"] else 0)
    return params, shape[:-1] + (units,), count


def _batchnorm(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    axis = cfg.raw.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    rank = len(shape) + 1  # Keras counts the batch axis: axis 1 of a (None, 16) input is the features
    if not mc.is_int(axis) or not -rank < axis < rank or axis % rank == 0:
        raise Refused(f"{cfg.where}: axis {mc.safe_text(axis)} is not a feature axis of its input (None, "
                      f"{', '.join(map(str, shape))})")
    axis = axis % rank - 1  # index into shape (no batch axis)
    params = {"axis": -1 if axis == len(shape) - 1 else axis + 1,
              "momentum": cfg.number("momentum", 0.99), "epsilon": cfg.number("epsilon", 1e-3),
              "center": cfg.bool("center", True), "scale": cfg.bool("scale", True)}
    cfg.seen("axis")
    for key in ("beta_initializer", "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer"):
        mc.initializer(cfg, key)
    for key in ("beta_regularizer", "gamma_regularizer"):
        mc.regularizer(cfg, key)
    for key in ("beta_constraint", "gamma_constraint"):
        mc.constraint(cfg, key)
    for key in ("synchronized", "renorm"):
        if cfg.bool(key, False):
            raise Refused(f"{cfg.where}: {key}=True is not supported")
    cfg.null("renorm_clipping", "renorm is not supported")
    cfg.number("renorm_momentum", 0.99)
    features = shape[axis]
    count = features * (2 + int(params["center"]) + int(params["scale"]))
    return params, shape, count


def _dropout(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    rate = cfg.number("rate", None)
    if not 0.0 <= rate < 1.0:
        raise Refused(f"{cfg.where}: rate {rate} is not in [0, 1)")
    cfg.optional_int("seed")
    noise = cfg.raw.get("noise_shape")
    if noise is not None and not (isinstance(noise, list) and all(v is None or mc.is_int(v) for v in noise)):
        raise Refused(f"{cfg.where}: noise_shape must be a list of integers")
    cfg.seen("noise_shape")
    return {"rate": rate}, shape, 0


def _noise(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    key = "stddev" if cfg.kind == "GaussianNoise" else "rate"
    value = cfg.number(key, None)
    if not 0.0 <= value < (math.inf if key == "stddev" else 1.0):
        raise Refused(f"{cfg.where}: {key} {value} is out of range")
    cfg.optional_int("seed")
    cfg.null("noise_shape", "a noise shape is not supported here")
    return {key: value}, shape, 0


def _flatten(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    cfg.choice("data_format", ("channels_last", "channels_first", None), "channels_last")
    return {}, (math.prod(shape),), 0


def _reshape(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    target = cfg.raw.get("target_shape")
    if not (isinstance(target, list) and 0 < len(target) <= 4 and all(mc.is_int(v) for v in target)):
        raise Refused(f"{cfg.where}: target_shape must be a list of integers")
    cfg.seen("target_shape")
    total, known = math.prod(shape), [v for v in target if v != -1]
    if target.count(-1) > 1 or any(v <= 0 for v in known) or total % max(1, math.prod(known)):
        raise Refused(f"{cfg.where}: target_shape {target} does not fit its input {shape}")
    out = tuple(total // math.prod(known) if v == -1 else v for v in target)
    if math.prod(out) != total:
        raise Refused(f"{cfg.where}: target_shape {target} does not fit its input {shape}")
    return {"target_shape": list(out)}, out, 0


def _rescaling(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    return {"scale": cfg.number("scale", None), "offset": cfg.number("offset", 0.0)}, shape, 0


def _activation(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    return {"activation": mc.activation(cfg, "activation")}, shape, 0


def _activation_layer(cfg: mc.Cfg, shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...], int]:
    return mc.activation_layer_params(cfg), shape, 0


RULES = {
    "Dense": _dense, "BatchNormalization": _batchnorm, "Dropout": _dropout, "AlphaDropout": _noise,
    "GaussianDropout": _noise, "GaussianNoise": _noise, "Flatten": _flatten, "Reshape": _reshape,
    "Rescaling": _rescaling, "Activation": _activation, "LeakyReLU": _activation_layer,
    "ReLU": _activation_layer, "ELU": _activation_layer, "Softmax": _activation_layer,
}
ALLOWED_LAYERS = ("InputLayer", *RULES)


def layer_spec(entry: Mapping[str, Any], index: int, shape: tuple[int, ...]) -> LayerSpec:
    """Validate one layer entry of the config (not InputLayer) given its input shape."""
    kind, name = mc.layer_identity(entry, index)
    where = f"layer {index} {name!r} ({kind})"
    if kind not in RULES:
        raise Refused(f"{where}: layer class {kind} is not allowed (allowed: {', '.join(ALLOWED_LAYERS)})")
    cfg = mc.Cfg(entry["config"], where, kind)
    cfg.common()
    params, out_shape, count = RULES[kind](cfg, shape)
    cfg.finish()
    return LayerSpec(kind, name, params, tuple(int(v) for v in out_shape), int(count))


# ------------------------------------------------------------------------------ the whole model

def input_shape_of(entry: Mapping[str, Any]) -> tuple[int, ...]:
    """The image shape an InputLayer entry declares (batch axis dropped), if it is an image."""
    kind, name = mc.layer_identity(entry, 0)
    where = f"input layer {name!r}"
    cfg = mc.Cfg(entry["config"], where, kind)
    cfg.seen("name")
    shape = cfg.raw.get("batch_shape", cfg.raw.get("batch_input_shape"))  # Keras 3 / Keras 2 spelling
    cfg.seen("batch_shape")
    cfg.seen("batch_input_shape")
    cfg.dtype("dtype")
    for flag in ("sparse", "ragged", "optional"):
        if cfg.bool(flag, False):
            raise Refused(f"{where}: {flag}=True is not supported")
    cfg.null("input_tensor", "an input tensor cannot be rebuilt")
    cfg.finish()
    return image_shape(shape, where)


def image_shape(shape: Any, where: str) -> tuple[int, ...]:
    """Check a batch shape ``[null, ...]`` is one of the image shapes we can feed."""
    if not (isinstance(shape, list) and shape and all(v is None or mc.is_int(v) for v in shape)):
        raise Refused(f"{where}: no usable input shape (got {shape!r})")
    dims = tuple(shape[1:])
    if dims not in IMAGE_SHAPES:
        raise Refused(f"{where}: input shape {dims} is not a Fashion-MNIST image "
                      f"(accepted: {', '.join(str(s) for s in IMAGE_SHAPES)})")
    return dims


def build_spec(model_class: str, name: str, first_shape: tuple[int, ...],
               entries: list[tuple[int, Mapping[str, Any]]], keras_version: str) -> ModelSpec:
    """Validate the chain of layer entries (index in the config, entry) after the input."""
    if not entries:
        raise Refused("the model has no layers")
    shape, layers = first_shape, []
    for index, entry in entries:
        layer = layer_spec(entry, index, shape)
        layers.append(layer)
        shape = layer.output_shape
    if shape != (CLASSES,):
        raise Refused(f"the model outputs shape {shape}, expected ({CLASSES},) class scores")
    return ModelSpec(model_class, safe_name(name), first_shape, tuple(layers), keras_version)


def safe_name(value: Any) -> str:
    """A name fit for a terminal line: printable, at most 64 characters."""
    text = re.sub(r"[^\w.\-]", "?", str(value))
    return text[:64] or "?"
