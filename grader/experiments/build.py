"""Spec -> Keras objects. Imported only inside training workers (it imports Keras)."""

from __future__ import annotations

from typing import Any, Mapping

import keras

_ACTIVATION_LAYERS = {"leaky_relu": lambda p: keras.layers.LeakyReLU(negative_slope=p.get("negative_slope", 0.3))}
_INITIALIZERS = {
    "zeros": keras.initializers.Zeros, "ones": keras.initializers.Ones,
    "glorot_uniform": keras.initializers.GlorotUniform, "glorot_normal": keras.initializers.GlorotNormal,
    "he_normal": keras.initializers.HeNormal, "he_uniform": keras.initializers.HeUniform,
    "lecun_normal": keras.initializers.LecunNormal, "lecun_uniform": keras.initializers.LecunUniform,
    "random_normal": keras.initializers.RandomNormal, "random_uniform": keras.initializers.RandomUniform,
    "truncated_normal": keras.initializers.TruncatedNormal,
}
_OPTIMIZERS = {
    "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop, "adagrad": keras.optimizers.Adagrad,
    "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "nadam": keras.optimizers.Nadam,
    "adamax": keras.optimizers.Adamax, "adadelta": keras.optimizers.Adadelta,
}


def _params(named: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in named.items() if k != "name"}


def initializer(named: Mapping[str, Any], seed: int | None) -> keras.initializers.Initializer:
    cls = _INITIALIZERS[named["name"]]
    params = _params(named)
    if named["name"] not in ("zeros", "ones"):
        params["seed"] = seed
    return cls(**params)


def optimizer(named: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    return _OPTIMIZERS[named["name"]](**_params(named))


def callbacks(specs: list[Mapping[str, Any]]) -> list[keras.callbacks.Callback]:
    out: list[keras.callbacks.Callback] = []
    for cb in specs:
        params = _params(cb)
        if cb["name"] == "early_stopping":
            out.append(keras.callbacks.EarlyStopping(**params))
        elif cb["name"] == "reduce_lr_on_plateau":
            out.append(keras.callbacks.ReduceLROnPlateau(**params))
    return out


def stack(inputs: Any, layers: list[Mapping[str, Any]], seed: int, prefix: str = "") -> Any:
    """Apply the spec's layer stack to a Keras tensor; then the 10-way softmax head.

    Each layer gets its own derived seed so the initial weights depend only on (seed, position).
    """
    x = keras.layers.Flatten(name=f"{prefix}flatten")(inputs)
    for i, layer in enumerate(layers):
        name = f"{prefix}{layer['type']}_{i}"
        if layer["type"] == "dense":
            act = layer["activation"]
            reg = None
            if "l1" in layer or "l2" in layer:
                reg = keras.regularizers.L1L2(l1=layer.get("l1", 0.0), l2=layer.get("l2", 0.0))
            plain = act["name"] not in _ACTIVATION_LAYERS
            x = keras.layers.Dense(layer["units"], activation=act["name"] if plain else None,
                                   kernel_initializer=initializer(layer["initializer"], seed * 1000 + i),
                                   kernel_regularizer=reg, name=name)(x)
            if not plain:
                x = _ACTIVATION_LAYERS[act["name"]](act)(x)
        elif layer["type"] == "batchnorm":
            x = keras.layers.BatchNormalization(name=name)(x)
        elif layer["type"] == "dropout":
            x = keras.layers.Dropout(layer["rate"], seed=seed * 1000 + i, name=name)(x)
    head_init = _head_initializer(layers)
    return keras.layers.Dense(10, activation="softmax", name=f"{prefix}out",
                              kernel_initializer=initializer(head_init, seed * 1000 + 999))(x)


def _head_initializer(layers: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The output layer uses the same initializer as the hidden Dense layers (as the seed does)."""
    dense = [layer for layer in layers if layer["type"] == "dense"]
    return dense[-1]["initializer"] if dense else {"name": "glorot_uniform"}


def model(spec: Mapping[str, Any], seed: int) -> keras.Model:
    inputs = keras.Input(shape=(28, 28), name="image")
    return keras.Model(inputs, stack(inputs, list(spec["layers"]), seed), name="reference")
