"""The sandboxed half of ``grader evaluate``: rebuild, load weights as arrays, score. Imports Keras.

Run as ``python -m grader.evaluate_worker JOBDIR`` inside :func:`grader.sandbox.run_isolated`.
JOBDIR holds ``job.json`` (a validated ModelSpec and how to feed it), ``weights.h5`` (the student's
weights, copied out of the zip under a name we chose) and the images and labels as ``.npy``. The
model is built by the constructors below from the spec's plain values, never from the student's
config; the weights file is read with h5py as float arrays (no links, no external storage, no
filters) and matched to our layers by class and order, as Keras itself names them, with each shape
checked. One JSON object goes to stdout; everything else the libraries print goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .modelspec import LayerSpec, ModelSpec

REFUSED = 3  # exit code: the weights do not fit the config (the parent reports it as a refusal)
EVAL_BATCH = 1000
KERAS_GROUP = {"Dense": "dense", "BatchNormalization": "batch_normalization"}  # Keras' snake_case names


class WeightsRefused(Exception):
    """The weights file does not match the validated config, or uses HDF5 features we refuse."""


# ------------------------------------------------------------------------------ weights as arrays

def weight_keys(spec: ModelSpec) -> list[str]:
    """The ``layers/<key>`` group of each weighted layer, named as Keras names them on save:
    the class in snake_case, numbered per class in layer order (``dense``, ``dense_1``, ...)."""
    counts: dict[str, int] = {}
    keys = []
    for layer in spec.layers:
        if layer.has_weights:
            base = KERAS_GROUP[layer.kind]
            n = counts.get(base, 0)
            counts[base] = n + 1
            keys.append(base if n == 0 else f"{base}_{n}")
    return keys


def _child(group: Any, name: str, where: str) -> Any:
    import h5py

    link = group.get(name, getlink=True)
    if link is None:
        raise WeightsRefused(f"model.weights.h5 has no {where}")
    if not isinstance(link, h5py.HardLink):
        raise WeightsRefused(f"model.weights.h5: {where} is a {type(link).__name__}, refused")
    return group[name]


def _array(dataset: Any, where: str, shape: tuple[int, ...]) -> np.ndarray:
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise WeightsRefused(f"model.weights.h5: {where} is not an array")
    if dataset.dtype.kind != "f" or dataset.dtype.itemsize not in (2, 4, 8):
        raise WeightsRefused(f"model.weights.h5: {where} has dtype {dataset.dtype}, expected floats")
    if dataset.external or dataset.is_virtual or dataset.id.get_create_plist().get_nfilters():
        raise WeightsRefused(f"model.weights.h5: {where} uses external, virtual or filtered storage, refused")
    if tuple(dataset.shape) != tuple(shape):
        raise WeightsRefused(f"model.weights.h5: {where} has shape {tuple(dataset.shape)}, the rebuilt layer "
                             f"needs {tuple(shape)} (the weights do not match the config)")
    return np.asarray(dataset[()], dtype=np.float32)


def read_weights(path: Path, spec: ModelSpec, shapes: Sequence[Sequence[tuple[int, ...]]]) -> list[list[np.ndarray]]:
    """For each weighted layer (in order) its arrays, checked against ``shapes`` (our layers' shapes)."""
    import h5py

    keys = weight_keys(spec)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsRefused(f"model.weights.h5 is not a readable HDF5 file ({exc})") from None
    with handle as h5:
        layers = _child(h5, "layers", "'layers' group")
        for name in layers:
            group = _child(layers, name, f"layers/{name}")
            if name not in keys and "vars" in group and len(_child(group, "vars", f"layers/{name}/vars")):
                raise WeightsRefused(f"model.weights.h5 holds weights for layers/{name}, "
                                     "which the config has no weighted layer for")
        out = []
        for key, layer_shapes in zip(keys, shapes, strict=True):
            found = _child(_child(layers, key, f"layers/{key}"), "vars", f"layers/{key}/vars")
            if len(found) != len(layer_shapes):
                raise WeightsRefused(f"model.weights.h5: layers/{key} has {len(found)} arrays, the rebuilt layer "
                                     f"needs {len(layer_shapes)}")
            out.append([_array(_child(found, str(i), f"layers/{key}/vars/{i}"), f"layers/{key}/vars/{i}", shape)
                        for i, shape in enumerate(layer_shapes)])
        return out


# ------------------------------------------------------------------------------ our own model

def _activation(keras: Any, value: Any) -> Any:
    if isinstance(value, str):
        return value
    return _activation_layer(keras, value)


def _activation_layer(keras: Any, params: Mapping[str, Any]) -> Any:
    args = {k: v for k, v in params.items() if k != "layer"}
    return getattr(keras.layers, {"LeakyReLU": "LeakyReLU", "ReLU": "ReLU", "ELU": "ELU",
                                  "Softmax": "Softmax"}[params["layer"]])(**args)


def make_layer(keras: Any, layer: LayerSpec, index: int) -> Any:
    """Our Keras layer for one validated LayerSpec. Initializers are zeros: every weight is loaded."""
    p, L, name = layer.params, keras.layers, f"l{index}_{layer.kind.lower()}"
    if layer.kind == "Dense":
        return L.Dense(p["units"], activation=_activation(keras, p["activation"]), use_bias=p["use_bias"],
                       kernel_initializer="zeros", name=name)
    if layer.kind == "BatchNormalization":
        return L.BatchNormalization(axis=p["axis"], momentum=p["momentum"], epsilon=p["epsilon"],
                                    center=p["center"], scale=p["scale"], name=name)
    if layer.kind in ("Dropout", "AlphaDropout", "GaussianDropout"):
        return getattr(L, layer.kind)(p["rate"], name=name)
    if layer.kind == "GaussianNoise":
        return L.GaussianNoise(p["stddev"], name=name)
    if layer.kind == "Flatten":
        return L.Flatten(name=name)
    if layer.kind == "Reshape":
        return L.Reshape(tuple(p["target_shape"]), name=name)
    if layer.kind == "Rescaling":
        return L.Rescaling(p["scale"], offset=p["offset"], name=name)
    if layer.kind == "Activation":
        return L.Activation(_activation(keras, p["activation"]), name=name)
    if layer.kind in ("LeakyReLU", "ReLU", "ELU", "Softmax"):
        return _activation_layer(keras, p)
    raise WeightsRefused(f"layer {index}: no builder for {layer.kind}")  # modelspec allows no other class


def build(spec: ModelSpec) -> tuple[Any, list[Any]]:
    """(model, our weighted layers in order) for a spec: a chain from keras.Input to the last layer."""
    import keras

    inputs = keras.Input(shape=spec.input_shape, name="image")
    x, weighted = inputs, []
    for i, layer in enumerate(spec.layers):
        obj = make_layer(keras, layer, i)
        x = obj(x)
        if layer.has_weights:
            weighted.append(obj)
    return keras.Model(inputs, x, name="evaluated"), weighted


# ------------------------------------------------------------------------------ scoring

def prepare(images: np.ndarray, shape: Sequence[int], scale: bool) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 in the model's input shape; /255 as students do (in float64)."""
    x = images / 255.0 if scale else images.astype(np.float64)
    return x.astype(np.float32).reshape((len(images), *shape))


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    scores = model.predict(x, batch_size=EVAL_BATCH, verbose=0)
    correct = int(np.sum(np.argmax(scores, axis=-1) == y))
    return correct / len(y), correct


def run(jobdir: Path) -> dict[str, Any]:
    job = json.loads((jobdir / "job.json").read_text(encoding="utf-8"))
    spec = ModelSpec.from_dict(job["spec"])
    from .experiments.train import configure_threads

    configure_threads(int(job.get("threads", 1)))
    import keras

    start = time.monotonic()
    model, weighted = build(spec)
    arrays = read_weights(jobdir / "weights.h5", spec, [[tuple(w.shape) for w in obj.weights] for obj in weighted])
    for obj, values in zip(weighted, arrays, strict=True):
        obj.set_weights(values)
    out: dict[str, Any] = {"ok": True, "keras_version": keras.__version__}
    for part in ("val", "test"):
        images = np.load(jobdir / f"{part}_x.npy", allow_pickle=False)
        labels = np.load(jobdir / f"{part}_y.npy", allow_pickle=False)
        acc, correct = accuracy(model, prepare(images, spec.input_shape, bool(job["scale"])), labels)
        out[f"{part}_accuracy"], out[f"{part}_correct"], out[f"{part}_count"] = acc, correct, int(len(labels))
    out["params_count"] = int(model.count_params())
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m grader.evaluate_worker JOBDIR\n")
        return 2
    result_fd = os.dup(1)
    os.dup2(2, 1)  # whatever TensorFlow or Keras prints lands on stderr; stdout carries one JSON line
    try:
        result, code = run(Path(args[0])), 0
    except WeightsRefused as exc:
        result, code = {"ok": False, "error": str(exc)}, REFUSED
    os.write(result_fd, (json.dumps(result) + "\n").encode("utf-8"))
    return code


if __name__ == "__main__":
    sys.exit(main())
