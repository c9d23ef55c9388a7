"""grader.modelfile: what a .keras file may hold, and every way it is refused (pure, no TensorFlow)."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from grader.modelfile import ArchiveLimits, ModelFileError, ModelSpec, copy_weights, load_spec

from .keras_files import (FUNCTION, HDF5_HEAD, dense, functional, initializer, input_layer, lambda_layer, layer, sequential,
                          write_keras)


def refused(path: Path, **kwargs: Any) -> str:
    """The reason load_spec gives, without the leading '<path>: '."""
    with pytest.raises(ModelFileError) as info:
        load_spec(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message[len(f"{path}: "):]


# --------------------------------------------------------------------------------- accepted

def test_sequential_becomes_our_spec(tmp_path: Path) -> None:
    config = sequential(
        layer("Rescaling", "rescaling", scale=1 / 255, offset=0.0),
        layer("Flatten", "flatten", data_format="channels_last"),
        dense("dense", 16, "relu", kernel_regularizer={"module": "keras.regularizers", "class_name": "L2",
                                                       "config": {"l2": 0.01}, "registered_name": None}),
        layer("BatchNormalization", "batch_normalization", axis=-1, momentum=0.99, epsilon=0.001, center=True,
              scale=True, beta_initializer=initializer("Zeros"), gamma_initializer=initializer("Ones"),
              moving_mean_initializer=initializer("Zeros"), moving_variance_initializer=initializer("Ones"),
              beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
              synchronized=False, renorm=False, renorm_clipping=None, renorm_momentum=0.99),
        layer("Dropout", "dropout", rate=0.2, seed=None, noise_shape=None),
        dense("dense_1", 10, "softmax"),
    )
    spec = load_spec(write_keras(tmp_path / "m.keras", config))
    assert [layer.kind for layer in spec.layers] == ["Rescaling", "Flatten", "Dense", "BatchNormalization",
                                                     "Dropout", "Dense"]
    assert [layer.output_shape for layer in spec.layers] == [(28, 28), (784,), (16,), (16,), (16,), (10,)]
    assert spec.params_count == 784 * 16 + 16 + 4 * 16 + 16 * 10 + 10
    assert spec.model_class == "Sequential"
    assert spec.input_shape == (28, 28)
    assert spec.rescales_input is True
    assert spec.layers[2].params["kernel_regularizer"] == {"class_name": "L2", "l2": 0.01}
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_functional_chain_with_activation_layers(tmp_path: Path) -> None:
    leaky = layer("LeakyReLU", "leaky", negative_slope=0.2)
    config = functional(dense("d0", 8, "gelu"), leaky, dense("d1", 10, "linear"),
                        layer("Activation", "act", activation="softmax"), shape=(784,))
    spec = load_spec(write_keras(tmp_path / "f.keras", config))
    assert spec.model_class == "Functional"
    assert [(layer.kind, layer.name) for layer in spec.layers] == [("Dense", "d0"), ("LeakyReLU", "leaky"),
                                                                   ("Dense", "d1"), ("Activation", "act")]
    assert spec.layers[1].params == {"layer": "LeakyReLU", "negative_slope": 0.2}
    assert spec.params_count == 784 * 8 + 8 + 8 * 10 + 10
    assert spec.rescales_input is False


def test_activation_given_as_a_layer_object(tmp_path: Path) -> None:
    config = sequential(layer("Flatten", "flatten"), dense("d", 10, layer("LeakyReLU", "lr", negative_slope=0.1)))
    spec = load_spec(write_keras(tmp_path / "m.keras", config))
    assert spec.layers[1].params["activation"] == {"layer": "LeakyReLU", "negative_slope": 0.1}


def test_loss_function_object_in_compile_config_is_tolerated(tmp_path: Path) -> None:
    config = sequential()
    config["compile_config"]["loss"] = {"module": "builtins", "class_name": "function",
                                        "config": "sparse_categorical_crossentropy", "registered_name": "function"}
    assert load_spec(write_keras(tmp_path / "m.keras", config)).params_count == 784 * 32 + 32 + 330


# --------------------------------------------------------------------------------- code in the config

def _with(config: dict[str, Any], index: int, key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out["config"]["layers"][index]["config"][key] = value
    return out


CODE_CASES = {
    "lambda": (sequential(lambda_layer(), layer("Flatten", "flatten"), dense("d", 10)),
               "layer 1 'lambda' (Lambda): holds a Lambda (Python code), refused"),
    "tfoplambda": (sequential(layer("TFOpLambda", "tf.math.add", function="math.add"), dense("d", 10)),
                   "layer 1 'tf.math.add' (TFOpLambda): holds a TFOpLambda (Python code), refused"),
    "os_system_activation": (_with(sequential(), 2, "activation", {**FUNCTION, "module": "os", "config": "system"}),
                             "layer 2 'dense' (Dense): references the Python function os.system, refused"),
    "subprocess_initializer": (_with(sequential(), 2, "kernel_initializer", {
        "module": "subprocess", "class_name": "Popen", "config": {"args": "touch PWNED"}, "registered_name": None}),
        "layer 2 'dense' (Dense): custom object Popen from module 'subprocess', refused"),
    "keras_get_file": (_with(sequential(), 2, "activation", {**FUNCTION, "module": "keras.utils",
                                                             "config": "get_file"}),
                       "layer 2 'dense' (Dense): references the Python function keras.utils.get_file, refused"),
    "custom_module_layer": ({**sequential(), "config": {**sequential()["config"], "layers": [
        input_layer(), {**layer("Flatten", "f"), "module": "my_layers"}, dense("d", 10)]}},
        "layer 1 'f' (Flatten): custom object Flatten from module 'my_layers', refused"),
    "registered_custom": (_with(sequential(), 2, "kernel_regularizer", {
        "module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.1}, "registered_name": "Custom>L2"}),
        "layer 2 'dense' (Dense): custom registered object 'Custom>L2', refused"),
    "bytecode_string": (_with(sequential(), 2, "name", "4wE" + "A" * 600),
                        "layer 2 '4wEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...' (Dense): a 603-character string "
                        "(encoded code or data is refused)"),
    "compile_os": ({**sequential(), "compile_config": {"loss": {**FUNCTION, "module": "os", "config": "system"}}},
                   "compile_config: references the Python function os.system, refused"),
    "lambda_model": ({"module": "keras.layers", "class_name": "Lambda", "config": {}},
                     "the model is a Lambda (Python code), refused"),
    "numpy_object": (_with(sequential(), 2, "units", {"class_name": "__numpy__", "config": {"value": [10]}}),
                     "layer 2 'dense' (Dense): holds a serialized __numpy__ object, refused"),
}


@pytest.mark.parametrize("case", sorted(CODE_CASES))
def test_code_in_the_config_is_refused(tmp_path: Path, case: str) -> None:
    config, reason = CODE_CASES[case]
    assert refused(write_keras(tmp_path / "m.keras", config)) == reason


# --------------------------------------------------------------------------------- unsupported models

UNSUPPORTED = {
    "unknown_activation": (_with(sequential(), 3, "activation", "hard_shrink"),
                           "layer 3 'dense_1' (Dense): activation 'hard_shrink' is not allowed (allowed: elu, "
                           "exponential, gelu, hard_sigmoid, hard_silu, hard_swish, leaky_relu, linear, "
                           "log_softmax, mish, relu, relu6, selu, sigmoid, silu, softmax, softplus, softsign, "
                           "swish, tanh)"),
    "conv_layer": (sequential(layer("Conv2D", "conv", filters=8), dense("d", 10)),
                   "layer 1 'conv' (Conv2D): layer class Conv2D is not allowed (allowed: InputLayer, Dense, "
                   "BatchNormalization, Dropout, AlphaDropout, GaussianDropout, GaussianNoise, Flatten, Reshape, "
                   "Rescaling, Activation, LeakyReLU, ReLU, ELU, Softmax)"),
    "unknown_setting": (_with(sequential(), 2, "extra_hook", 1),
                        "layer 2 'dense' (Dense): unsupported setting 'extra_hook'"),
    "unknown_initializer": (_with(sequential(), 2, "kernel_initializer", initializer("MyInit")),
                            "layer 2 'dense' (Dense): kernel_initializer 'MyInit' is not an allowed initializer "
                            "(allowed: Zeros, Ones, Constant, GlorotUniform, GlorotNormal, HeNormal, HeUniform, "
                            "LecunNormal, LecunUniform, RandomNormal, RandomUniform, TruncatedNormal, Orthogonal, "
                            "Identity, VarianceScaling)"),
    "string_units": (_with(sequential(), 2, "units", "32"),
                     "layer 2 'dense' (Dense): units must be an integer in [1, 65536], got 32"),
    "not_an_image": (sequential(shape=(32, 32, 3)),
                     "input layer 'input_layer': input shape (32, 32, 3) is not a Fashion-MNIST image "
                     "(accepted: (28, 28), (784,), (28, 28, 1))"),
    "five_classes": (_with(sequential(), 3, "units", 5), "the model outputs shape (5,), expected (10,) class scores"),
    "branching": (functional(layer("Flatten", "flat"), dense("a", 8), dense("b", 8), layer("Add", "add"),
                             dense("out", 10), calls={"b": ["flat"], "add": ["a", "b"]}),
                  "branching graph: layer 'flat' feeds 2 layers (a, b); only a chain of layers is supported"),
    "nested_model": (functional(layer("Flatten", "flat"), {**sequential(), "config": {"name": "inner"}}),
                     "layer 2 'inner' (Sequential): a model nested as a layer is not supported; save one flat model"),
    "mixed_precision": (_with(sequential(), 2, "dtype", {**copy.deepcopy(input_layer()), "class_name": "DTypePolicy",
                                                         "module": "keras", "config": {"name": "mixed_float16"}}),
                        "layer 2 'dense' (Dense): dtype 'mixed_float16' is not supported (only float32)"),
    "subclassed_model": ({"module": "keras", "class_name": "MyModel", "config": {}},
                         "model class 'MyModel' is not supported (only Sequential and Functional models)"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_model_is_refused_with_its_reason(tmp_path: Path, case: str) -> None:
    config, reason = UNSUPPORTED[case]
    assert refused(write_keras(tmp_path / "m.keras", config)) == reason


# --------------------------------------------------------------------------------- not a .keras file

ASK = "save the model with model.save('model.keras') and hand in that file"


def test_legacy_h5_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(HDF5_HEAD + b"model_config")
    assert refused(path) == f"a legacy HDF5 (.h5) Keras model: it can hold Lambda layers with Python bytecode, " \
                            f"refused; {ASK}"


def test_savedmodel_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    assert refused(folder) == f"a TensorFlow SavedModel folder: loading it runs the graph it holds, refused; {ASK}"
    assert refused(folder / "variables") == f"is a folder, not a .keras model file; {ASK}"


@pytest.mark.parametrize("name", ["model.pkl", "model.keras"])
def test_pickle_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=4))
    assert refused(path) == f"a pickle: unpickling runs arbitrary code, refused; {ASK}"


def test_text_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.keras"
    path.write_text("hello")
    assert refused(path) == f"not a Keras .keras file (not a zip archive); {ASK}"
    assert refused(tmp_path / "nope.keras") == "no such file"


def test_corrupt_zip_is_refused(tmp_path: Path) -> None:
    good = write_keras(tmp_path / "good.keras", sequential()).read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(good[: len(good) // 2])
    assert refused(path).startswith("corrupt zip archive (")


def test_corrupt_member_is_refused(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "m.keras", sequential(), compression=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"config.json") + len("config.json") + 10  # inside the deflated config data
    raw[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    assert refused(path).startswith("corrupt zip member 'config.json' (")


@pytest.mark.parametrize("member, what", [("evil.pkl", " (a pickle)"), ("assets/hook.py", " (code)"),
                                          ("assets/vocab.txt", " (layer assets)"), ("notes.txt", "")])
def test_extra_members_are_refused(tmp_path: Path, member: str, what: str) -> None:
    path = write_keras(tmp_path / "m.keras", sequential(), extra={member: b"import os"})
    assert refused(path) == (f"unexpected member {member!r}{what}: a .keras file holds only config.json, "
                             "metadata.json, model.weights.h5, refused")


def test_missing_member_is_refused(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "m.keras", sequential(), skip=("model.weights.h5",))
    assert refused(path) == f"missing member 'model.weights.h5': not a Keras 3 .keras file; {ASK}"


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "bomb.keras", sequential(), weights=HDF5_HEAD + bytes(8 * 1024 * 1024),
                       compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    reason = refused(path)
    assert reason.startswith("member 'model.weights.h5' expands ")
    assert reason.endswith("x (a zip bomb), refused")


def test_oversized_weights_are_refused(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "big.keras", sequential(), weights=HDF5_HEAD + bytes(3 * 1024 * 1024))
    assert refused(path, limits=ArchiveLimits(max_weights_mb=2)) == \
        "member 'model.weights.h5' is 3 MB, over the 2 MB limit"
    with pytest.raises(ModelFileError, match="over the 2 MB limit"):
        copy_weights(path, tmp_path / "out.h5", ArchiveLimits(max_weights_mb=2))


def test_weights_must_be_hdf5(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "m.keras", sequential(), weights=b"\x80\x04not hdf5 at all")
    assert refused(path) == "model.weights.h5 is not an HDF5 file, refused"


def test_config_must_be_json_and_metadata_keras(tmp_path: Path) -> None:
    assert refused(write_keras(tmp_path / "a.keras", "{not json")).startswith("config.json is not valid JSON (")
    assert refused(write_keras(tmp_path / "b.keras", '{"units": NaN}')) == \
        "config.json is not valid JSON (NaN is not JSON)"
    assert refused(write_keras(tmp_path / "c.keras", sequential(), metadata={"date_saved": "x"})) == \
        "metadata.json has no keras_version: not a Keras .keras file"


def test_copy_weights_writes_only_the_weights(tmp_path: Path) -> None:
    payload = HDF5_HEAD + b"weights"
    path = write_keras(tmp_path / "m.keras", sequential(), weights=payload)
    assert copy_weights(path, tmp_path / "w.h5") == len(payload)
    assert (tmp_path / "w.h5").read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "w.h5"]


def test_validation_imports_no_tensorflow() -> None:
    code = ("import sys, grader.modelfile, grader.evaluate, grader.cli; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _bn(axis: Any) -> dict[str, Any]:
    return layer("BatchNormalization", "bn", axis=axis, momentum=0.9, epsilon=0.001, center=True, scale=False)


def test_batchnorm_axis_counts_the_batch_axis(tmp_path: Path) -> None:
    def spec_with(axis: Any) -> ModelSpec:
        return load_spec(write_keras(tmp_path / "m.keras", sequential(layer("Flatten", "f"), dense("d", 16), _bn(axis),
                                                                      dense("out", 10))))

    assert spec_with(1).layers[2].params["axis"] == -1  # axis 1 of (None, 16) is the last one
    assert spec_with([-1]).layers[2].params_count == 3 * 16  # no gamma (scale=False): beta, mean, variance
    path = write_keras(tmp_path / "b.keras", sequential(layer("Flatten", "f"), dense("d", 16), _bn(0), dense("o", 10)))
    assert refused(path) == "layer 3 'bn' (BatchNormalization): axis 0 is not a feature axis of its input (None, 16)"


def test_dense_before_flatten_acts_on_the_last_axis(tmp_path: Path) -> None:
    spec = load_spec(write_keras(tmp_path / "m.keras", sequential(dense("d", 4), layer("Flatten", "f"),
                                                                  dense("out", 10))))
    assert [layer.output_shape for layer in spec.layers] == [(28, 4), (112,), (10,)]
    assert spec.params_count == 28 * 4 + 4 + 112 * 10 + 10


def test_sequential_input_shape_from_build_or_refused(tmp_path: Path) -> None:
    config = sequential()
    del config["config"]["layers"][0]
    config["config"]["build_input_shape"] = [None, 28, 28]
    assert load_spec(write_keras(tmp_path / "a.keras", config)).input_shape == (28, 28)
    del config["config"]["build_input_shape"]
    assert refused(write_keras(tmp_path / "b.keras", config)) == (
        "the Sequential model has no input shape (it was never built or called); add keras.Input(shape=(28, 28)) "
        "as its first layer")


@pytest.mark.parametrize("depth", [990, 5000])
def test_deeply_nested_config_is_refused_in_one_line(tmp_path: Path, depth: int) -> None:
    text = json.dumps(sequential()).replace('"units": 32', '"units": ' + "[" * depth + "1" + "]" * depth)
    reason = refused(write_keras(tmp_path / "deep.keras", text))
    assert reason.startswith("config.json is not valid JSON (maximum recursion depth exceeded")
