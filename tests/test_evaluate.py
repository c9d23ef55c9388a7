"""grader.evaluate and grader.evaluate_worker: models trained and saved by Keras, scored by our rebuild.

The slow tests train tiny models on the `tiny_data` fixture (or one epoch on the real data), save
them with ``model.save``, and check that our rebuilt model predicts what Keras predicts and that the
sandboxed evaluation reports the accuracies Keras itself computes on the same images.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader import assignment as assignment_mod
from grader import data as data_mod
from grader import evaluate_worker as worker
from grader.evaluate import Evaluation, Thresholds, evaluate, final_experiment, scaling_of, summary_lines
from grader.modelfile import load_spec

from .keras_files import dense, layer, sequential, write_keras


# The sandbox hides the invoking user's HOME and re-exposes the Python installation inside it; the
# tiny_data fixture points HOME elsewhere, which would leave e.g. /root (0700) unhidden and the
# interpreter under it unreachable for uid nobody. Sandboxed tests put the real HOME back.
REAL_HOME = os.path.expanduser("~")


@pytest.fixture
def real_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", REAL_HOME)


def _keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(7)
    return keras


def sequential_model(keras: Any) -> Any:
    """Raw 0-255 pixels in (a Rescaling layer), BN with a fast-moving average so its statistics matter."""
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28)), L.Rescaling(1 / 255.0), L.Flatten(),
                             L.Dense(12, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4)),
                             L.BatchNormalization(momentum=0.5), L.Dropout(0.3), L.Dense(10, activation="softmax")],
                            name="student_seq")


def functional_model(keras: Any) -> Any:
    """Flattened 784 inputs scaled by the student, LeakyReLU as a layer, logits then a softmax layer."""
    L = keras.layers
    inputs = keras.Input((784,))
    x = L.Dense(12, kernel_initializer="he_normal")(inputs)
    x = L.BatchNormalization(momentum=0.5)(x)
    x = L.LeakyReLU(negative_slope=0.1)(x)
    x = L.Dropout(0.2)(x)
    x = L.Activation("softmax")(L.Dense(10)(x))
    return keras.Model(inputs, x, name="student_fn")


MODELS = {"sequential": (sequential_model, False), "functional": (functional_model, True)}


def _student_inputs(images: np.ndarray, kind: str) -> np.ndarray:
    """What the student feeds: raw pixels to the Rescaling model, x / 255 flattened to the other."""
    return images.reshape(len(images), 784) / 255.0 if MODELS[kind][1] else images.astype(np.float64)


def train_and_save(kind: str, folder: Path, data_dir: Path, epochs: int = 1) -> tuple[Any, Path]:
    keras = _keras()
    model = MODELS[kind][0](keras)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train = data_mod.load_train(data_dir)
    model.fit(_student_inputs(train.images, kind), train.labels, epochs=epochs, batch_size=64, verbose=0)
    path = folder / f"{kind}.keras"
    model.save(path)
    return model, path


def keras_accuracy(model: Any, images: np.ndarray, labels: np.ndarray, kind: str) -> float:
    return float(model.evaluate(_student_inputs(images, kind), labels, verbose=0)[1])


# ------------------------------------------------------------------------------ pure parts

def test_final_experiment_and_split_of_each_assignment() -> None:
    trabajo2 = final_experiment(assignment_mod.load("trabajo2"))
    challenge = final_experiment(assignment_mod.load("challenge_s3"))
    assert (trabajo2.id, trabajo2.split) == ("final", "random80")
    assert (challenge.id, challenge.split) == ("s3.reduce_lr", "first10k")


def test_scaling_choice(tmp_path: Path) -> None:
    plain = load_spec(write_keras(tmp_path / "a.keras", sequential()))
    rescaled = load_spec(write_keras(tmp_path / "b.keras", sequential(
        layer("Rescaling", "r", scale=1 / 255, offset=0.0), layer("Flatten", "f"), dense("d", 10))))
    assert scaling_of(plain, True) == (True, "default")
    assert scaling_of(rescaled, True) == (False, "rescaling_layer")
    assert scaling_of(plain, False) == (False, "no_scale_option")


def test_summary_lines_and_round_trip(tmp_path: Path) -> None:
    spec = load_spec(write_keras(tmp_path / "m.keras", sequential()))
    rubric = assignment_mod.load("trabajo2").rubric
    ev = Evaluation("m.keras", "trabajo2", "final", "random80", spec, True, "default", 0.895, 10740, 12000,
                    0.87, 8700, 10000, Thresholds.judge(rubric, 0.895, 0.87), 3.21, "sandbox (test)")
    assert Evaluation.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    assert ev.thresholds.val_level == "partial"
    assert ev.thresholds.gap_ok is False
    assert summary_lines(ev) == [
        "m.keras: Sequential model 'sequential' (Keras 3.15.1), 25,450 parameters",
        "   0 Flatten            (784,)                0",
        "   1 Dense              (32,)            25,120  units=32, activation=relu",
        "   2 Dense              (10,)               330  units=10, activation=softmax",
        "input: (28, 28), pixels / 255 before the model (the usual preprocessing; --no-scale feeds raw 0-255)",
        "validation accuracy: 0.8950 (10,740/12,000; trabajo2 split random80, as in experiment final)",
        "test accuracy:       0.8700 (8,700/10,000)",
        "thresholds: validation 0.8950 -> partial (full >= 0.9, partial >= 0.88); test-validation gap 0.0250 > 0.02",
        "sandbox (test)",
        "time: 3.2 s",
    ]


def test_weight_keys_follow_keras_naming(tmp_path: Path) -> None:
    spec = load_spec(write_keras(tmp_path / "m.keras", sequential(
        layer("Flatten", "f"), dense("a", 8), layer("BatchNormalization", "bn"), dense("b", 8),
        layer("BatchNormalization", "bn2"), dense("c", 10))))
    assert worker.weight_keys(spec) == ["dense", "batch_normalization", "dense_1", "batch_normalization_1", "dense_2"]


def _soft_link(h5: Any) -> None:
    import h5py

    h5.create_group("other/vars")
    h5.create_group("layers")["dense"] = h5py.SoftLink("/other")


def _external_link(h5: Any) -> None:
    import h5py

    h5.create_group("layers")["dense"] = h5py.ExternalLink("/etc/other.h5", "/")


def _dense_vars(h5: Any) -> Any:
    """The dense layer's group with a correct bias "1"; each trap writes the kernel "0"."""
    group = h5.create_group("layers/dense/vars")
    group.create_dataset("1", data=np.zeros(10, "f4"))
    return group


def _external_storage(h5: Any) -> None:
    _dense_vars(h5).create_dataset("0", shape=(784, 10), dtype="f4", external=[("/etc/hostname", 0, 784 * 10 * 4)])


def _strings(h5: Any) -> None:
    _dense_vars(h5).create_dataset("0", data=np.full((784, 10), b"x"))


def _wrong_shape(h5: Any) -> None:
    _dense_vars(h5).create_dataset("0", data=np.zeros((784, 12), "f4"))


def _compressed(h5: Any) -> None:
    _dense_vars(h5).create_dataset("0", data=np.zeros((784, 10), "f4"), compression="gzip")


def _extra_layer(h5: Any) -> None:
    h5.create_group("layers/dense_9/vars").create_dataset("0", data=np.zeros(3, "f4"))


HDF5_TRAPS = {
    "soft_link": (_soft_link, "model.weights.h5: layers/dense is a SoftLink, refused"),
    "external_link": (_external_link, "model.weights.h5: layers/dense is a ExternalLink, refused"),
    "external_storage": (_external_storage,
                         "model.weights.h5: layers/dense/vars/0 uses external, virtual or filtered storage, refused"),
    "compressed": (_compressed,
                   "model.weights.h5: layers/dense/vars/0 uses external, virtual or filtered storage, refused"),
    "strings": (_strings, "model.weights.h5: layers/dense/vars/0 has dtype |S1, expected floats"),
    "wrong_shape": (_wrong_shape, "model.weights.h5: layers/dense/vars/0 has shape (784, 12), the rebuilt layer "
                                  "needs (784, 10) (the weights do not match the config)"),
    "extra_layer": (_extra_layer, "model.weights.h5 holds weights for layers/dense_9, which the config has no "
                                  "weighted layer for"),
}


@pytest.mark.parametrize("case", sorted(HDF5_TRAPS))
def test_weights_file_traps_are_refused(tmp_path: Path, case: str) -> None:
    build, reason = HDF5_TRAPS[case]
    spec = load_spec(write_keras(tmp_path / "m.keras", sequential(layer("Flatten", "f"), dense("d", 10))))
    import h5py

    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w") as handle:
        build(handle)
    with pytest.raises(worker.WeightsRefused) as info:
        worker.read_weights(h5, spec, [[(784, 10), (10,)]])
    assert str(info.value) == reason


# ------------------------------------------------------------------------------ with Keras

@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_rebuilt_model_predicts_what_keras_predicts(tmp_path: Path, tiny_data: Path, kind: str) -> None:
    model, path = train_and_save(kind, tmp_path, tiny_data)
    spec = load_spec(path)
    assert spec.params_count == model.count_params()
    with zipfile.ZipFile(path) as zf:
        (tmp_path / "w.h5").write_bytes(zf.read("model.weights.h5"))
    ours, weighted = worker.build(spec)
    arrays = worker.read_weights(tmp_path / "w.h5", spec, [[tuple(w.shape) for w in obj.weights] for obj in weighted])
    for obj, values in zip(weighted, arrays):
        obj.set_weights(values)
    images = data_mod.load_test(tiny_data).images
    scaled, _ = scaling_of(spec, True)
    expected = model.predict(_student_inputs(images, kind), verbose=0)
    got = ours.predict(worker.prepare(images, spec.input_shape, scaled), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    moving_var = next(obj for obj in weighted if obj.name.endswith("_batchnormalization")).weights[3].numpy()
    assert not np.allclose(moving_var, 1.0)  # the BN statistics were trained, so the check above means something


@pytest.mark.slow
def test_every_allowed_layer_is_rebuilt_faithfully(tmp_path: Path) -> None:
    keras = _keras()
    L = keras.layers
    model = keras.Sequential([
        keras.Input((784,)), L.Reshape((28, 28)), L.Reshape((-1,)), L.GaussianNoise(0.1),
        L.Dense(20, kernel_constraint=keras.constraints.MaxNorm(3), kernel_regularizer=keras.regularizers.L1L2(1e-4, 1e-3),
                activity_regularizer="l2", bias_initializer=keras.initializers.Constant(0.1),
                kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")),
        L.ReLU(max_value=6.0), L.AlphaDropout(0.1), L.GaussianDropout(0.1),
        L.Dense(12, activation="selu", kernel_initializer="orthogonal"), L.ELU(alpha=0.5),
        L.BatchNormalization(axis=1, center=False), L.Dense(16, activation=L.LeakyReLU(negative_slope=0.05)),
        L.Activation("gelu"), L.Dense(10), L.Softmax()])
    rng = np.random.default_rng(3)
    for layer_obj in model.layers:  # random weights everywhere, BN statistics included
        layer_obj.set_weights([rng.normal(0.5, 0.3, w.shape).astype("f4") for w in layer_obj.get_weights()])
    model.save(tmp_path / "every.keras")
    spec = load_spec(tmp_path / "every.keras")
    assert spec.params_count == model.count_params()
    with zipfile.ZipFile(tmp_path / "every.keras") as zf:
        (tmp_path / "w.h5").write_bytes(zf.read("model.weights.h5"))
    ours, weighted = worker.build(spec)
    arrays = worker.read_weights(tmp_path / "w.h5", spec, [[tuple(w.shape) for w in obj.weights] for obj in weighted])
    for obj, values in zip(weighted, arrays):
        obj.set_weights(values)
    x = rng.uniform(0, 1, (64, 784)).astype("f4")
    np.testing.assert_allclose(ours.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_sandboxed_accuracies_equal_keras(tmp_path: Path, tiny_data: Path, real_home: None, kind: str) -> None:
    model, path = train_and_save(kind, tmp_path, tiny_data)
    result = evaluate(path, assignment="trabajo2", data_dir=str(tiny_data))
    train, test = data_mod.load_train(tiny_data), data_mod.load_test(tiny_data)
    _, val_idx = data_mod.split_indices("random80", train.labels)
    assert abs(result.val_accuracy - keras_accuracy(model, train.images[val_idx], train.labels[val_idx], kind)) < 1e-6
    assert abs(result.test_accuracy - keras_accuracy(model, test.images, test.labels, kind)) < 1e-6
    assert (result.val_count, result.test_count) == (len(val_idx), len(test.labels))
    assert result.scaling == ("default" if kind == "functional" else "rescaling_layer")
    assert result.isolation.startswith("sandbox (")
    assert (result.split, result.experiment) == ("random80", "final")


@pytest.mark.slow
def test_real_data_one_epoch(tmp_path: Path, real_data: Path) -> None:
    keras = _keras()
    train, test = data_mod.load_train(real_data), data_mod.load_test(real_data)
    fit_idx, val_idx = data_mod.split_indices("random80", train.labels)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.images[fit_idx] / 255.0, train.labels[fit_idx], epochs=1, batch_size=256, verbose=0)
    model.save(tmp_path / "real.keras")
    result = evaluate(tmp_path / "real.keras", assignment="trabajo2", data_dir=str(real_data))
    assert (result.val_count, result.test_count) == (12000, 10000)
    val = model.evaluate(train.images[val_idx] / 255.0, train.labels[val_idx], verbose=0)[1]
    tst = model.evaluate(test.images / 255.0, test.labels, verbose=0)[1]
    assert abs(result.val_accuracy - val) < 1e-6
    assert abs(result.test_accuracy - tst) < 1e-6
    assert 0.7 < result.val_accuracy
