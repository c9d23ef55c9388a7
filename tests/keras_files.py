"""Hand-built Keras 3 ``.keras`` files for the model-file tests (no TensorFlow needed).

The configs follow the shape Keras 3.15 writes (seen by saving real models), reduced to what the
tests need; :func:`write_keras` zips them with a weights member that only has the HDF5 signature.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

HDF5_HEAD = b"\x89HDF\r\n\x1a\n" + b"\0" * 56
FUNCTION = {"class_name": "function", "registered_name": "function"}  # + module and config: a function reference
DTYPE = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


def layer(kind: str, name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": kind,
            "config": {"name": name, "trainable": True, "dtype": copy.deepcopy(DTYPE), **config},
            "registered_name": None}


def initializer(kind: str = "GlorotUniform", **config: Any) -> dict[str, Any]:
    return {"module": "keras.initializers", "class_name": kind, "config": config, "registered_name": None}


def dense(name: str, units: int, activation: Any = "relu", **extra: Any) -> dict[str, Any]:
    config = {"units": units, "activation": activation, "use_bias": True,
              "kernel_initializer": initializer("GlorotUniform", seed=None),
              "bias_initializer": initializer("Zeros"), "kernel_regularizer": None, "bias_regularizer": None,
              "kernel_constraint": None, "bias_constraint": None, "quantization_config": None}
    config.update(extra)
    return layer("Dense", name, **config)


def input_layer(shape: tuple[int, ...] = (28, 28), name: str = "input_layer") -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, *shape], "dtype": "float32", "sparse": False, "ragged": False,
                       "name": name, "optional": False}, "registered_name": None}


def sequential(*layers: dict[str, Any], shape: tuple[int, ...] = (28, 28)) -> dict[str, Any]:
    """A Sequential config: InputLayer(shape), then ``layers`` (default: Flatten, Dense 32, Dense 10)."""
    body = list(layers) or [layer("Flatten", "flatten", data_format="channels_last"), dense("dense", 32),
                            dense("dense_1", 10, "softmax")]
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": "sequential", "trainable": True, "dtype": copy.deepcopy(DTYPE),
                       "layers": [input_layer(shape), *body]},
            "registered_name": None, "compile_config": {"loss": "sparse_categorical_crossentropy",
                                                        "metrics": ["accuracy"]}}


def _tensor(source: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"shape": [None], "dtype": "float32",
                                                          "keras_history": [source, 0, 0]}}


def functional(*layers: dict[str, Any], shape: tuple[int, ...] = (28, 28),
               calls: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """A Functional config; each layer is called on the previous one unless ``calls`` says otherwise."""
    entries = [input_layer(shape)]
    entries[0]["name"], entries[0]["inbound_nodes"] = "input_layer", []
    previous = "input_layer"
    for item in layers:
        item = copy.deepcopy(item)
        name = item["config"]["name"]
        sources = (calls or {}).get(name, [previous])
        args = [_tensor(sources[0])] if len(sources) == 1 else [[_tensor(s) for s in sources]]
        item["name"], item["inbound_nodes"] = name, [{"args": args, "kwargs": {}}]
        entries.append(item)
        previous = name
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": "functional", "trainable": True, "layers": entries,
                       "input_layers": ["input_layer", 0, 0], "output_layers": [previous, 0, 0]},
            "registered_name": "Functional", "compile_config": {}}


def lambda_layer(name: str = "lambda") -> dict[str, Any]:
    """A Lambda layer entry as Keras writes it (the bytecode here is only an opaque base64 string)."""
    return layer("Lambda", name, function={"class_name": "__lambda__", "config": {
        "code": "4wEAAAAAAAAAAAAAAAIAAAADAAAA8wwAAACXAHwAZAF6BQAAUwApAk7pAgAAAA==", "defaults": None,
        "closure": None}}, arguments={})


def write_keras(path: Path, config: Any, *, metadata: Any = None, weights: bytes = HDF5_HEAD,
                extra: dict[str, bytes] | None = None, skip: tuple[str, ...] = (),
                compression: int = zipfile.ZIP_STORED) -> Path:
    """Zip a config (dict, or raw bytes/str) the way Keras lays out a .keras file."""
    meta = {"keras_version": "3.15.1", "date_saved": "2026-11-23@18:00:00"} if metadata is None else metadata
    raw_config = config if isinstance(config, (bytes, str)) else json.dumps(config)
    members = {"metadata.json": json.dumps(meta), "config.json": raw_config, "model.weights.h5": weights,
               **(extra or {})}
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            if name not in skip:
                zf.writestr(name, data)
    return path
