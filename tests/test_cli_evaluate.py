"""`grader evaluate` through Click's CliRunner: exact output lines, exit codes, and a real payload.

The malicious-file test builds a ``.keras`` whose Lambda layer writes a file when Keras rebuilds the
model, proves it does (``keras.models.load_model(..., safe_mode=False)`` in a throw-away
subprocess creates the file), then shows that ``grader evaluate`` refuses it and nothing is created.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from grader import data as data_mod
from grader import sandbox
from grader.cli import main
from grader.evaluate import EVAL_LIMITS

from .keras_files import FUNCTION, sequential, write_keras
from .test_evaluate import REAL_HOME, _keras, keras_accuracy, train_and_save


@pytest.fixture
def real_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox needs the real HOME (see tests/test_evaluate.py); tiny_data points it elsewhere."""
    monkeypatch.setenv("HOME", REAL_HOME)

def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["evaluate", *args])


def refusal(path: Path, reason: str, *args: str) -> None:
    result = run(str(path), *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {path}: {reason}\n"


# ------------------------------------------------------------------------------ refusals (fast)

def test_crafted_config_naming_os_system_is_refused(tmp_path: Path) -> None:
    config = sequential()
    config["config"]["layers"][2]["config"]["activation"] = {**FUNCTION, "module": "os", "config": "system"}
    refusal(write_keras(tmp_path / "m.keras", config),
            "layer 2 'dense' (Dense): references the Python function os.system, refused")


def test_legacy_h5_and_savedmodel_are_refused(tmp_path: Path) -> None:
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    ask = "save the model with model.save('model.keras') and hand in that file"
    refusal(h5, f"a legacy HDF5 (.h5) Keras model: it can hold Lambda layers with Python bytecode, refused; {ask}")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    refusal(saved, f"a TensorFlow SavedModel folder: loading it runs the graph it holds, refused; {ask}")


def test_unknown_assignment_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(write_keras(tmp_path / "m.keras", sequential())), "--assignment", "nope")
    assert result.exit_code == 2
    assert result.stderr == "Error: unknown assignment 'nope' (known: challenge_s3, trabajo2)\n"


# ------------------------------------------------------------------------------ the real payload

def malicious_model(folder: Path, target: Path) -> Path:
    """A .keras whose Lambda, when Keras rebuilds the model, writes ``target``."""
    keras = _keras()
    payload = eval(f"lambda x: (open({str(target)!r}, 'w').write('pwned'), x)[1]")  # the test's payload
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Lambda(payload), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    assert target.exists()  # building it ran the payload once; start clean
    target.unlink()
    path = folder / "evil.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_malicious_lambda_payload_is_real_and_never_runs(tmp_path: Path, tiny_data: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    target = victim / "PWNED"
    path = malicious_model(tmp_path, target)

    # The payload is real: Keras itself runs it when asked to load the file unsafely.
    proof = tmp_path / "proof"
    proof.mkdir()
    code = ("import sys, keras; keras.config.enable_unsafe_deserialization(); "
            "keras.models.load_model(sys.argv[1], safe_mode=False)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=proof, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert target.read_text() == "pwned"
    target.unlink()

    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    refusal(path, "layer 1 'lambda' (Lambda): holds a Lambda (Python code), refused")
    assert not target.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

    # The same layer disguised as a Dense still carries its bytecode, and is refused for it.
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["class_name"] = "Dense"
    disguised = write_keras(tmp_path / "disguised.keras", config, weights=members["model.weights.h5"])
    refusal(disguised, "layer 1 'lambda' (Dense): has a 'function' entry (Python code), refused")
    assert not target.exists()


# ------------------------------------------------------------------------------ evaluated (slow)

@pytest.mark.slow
def test_evaluate_prints_the_summary(tmp_path: Path, tiny_data: Path, real_home: None) -> None:
    model, path = train_and_save("sequential", tmp_path, tiny_data)
    result = run(str(path), "--assignment", "trabajo2", "--data-dir", str(tiny_data))
    assert result.exit_code == 0, result.output
    train, test = data_mod.load_train(tiny_data), data_mod.load_test(tiny_data)
    _, val_idx = data_mod.split_indices("random80", train.labels)
    val = keras_accuracy(model, train.images[val_idx], train.labels[val_idx], "sequential")
    tst = keras_accuracy(model, test.images, test.labels, "sequential")
    val_ok, tst_ok = round(val * len(val_idx)), round(tst * len(test.labels))
    level = "full" if val >= 0.90 else "partial" if val >= 0.88 else "below"
    gap = abs(val_ok / len(val_idx) - tst_ok / len(test.labels))
    lines = result.stdout.splitlines()
    assert lines[:-1] == [
        f"{path}: Sequential model 'student_seq' (Keras 3.15.1), 9,598 parameters",
        "   0 Rescaling          (28, 28)              0  scale=0.00392157, offset=0",
        "   1 Flatten            (784,)                0",
        "   2 Dense              (12,)             9,420  units=12, activation=relu",
        "   3 BatchNormalization (12,)                48  momentum=0.5",
        "   4 Dropout            (12,)                 0  rate=0.3",
        "   5 Dense              (10,)               130  units=10, activation=softmax",
        "input: (28, 28), raw 0-255 pixels (the model starts with a Rescaling layer)",
        f"validation accuracy: {val_ok / 120:.4f} ({val_ok}/120; trabajo2 split random80, as in experiment final)",
        f"test accuracy:       {tst_ok / 100:.4f} ({tst_ok}/100)",
        f"thresholds: validation {val_ok / 120:.4f} -> {level} (full >= 0.9, partial >= 0.88); "
        f"test-validation gap {gap:.4f} {'<=' if gap <= 0.02 else '>'} 0.02",
        sandbox.isolation(EVAL_LIMITS).describe(),
    ]
    assert re.fullmatch(r"time: \d+\.\d s", lines[-1])


@pytest.mark.slow
def test_json_with_no_scale_feeds_raw_pixels(tmp_path: Path, tiny_data: Path, real_home: None) -> None:
    model, path = train_and_save("functional", tmp_path, tiny_data)
    result = run(str(path), "--json", "--no-scale", "-a", "challenge_s3", "--data-dir", str(tiny_data))
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    train, test = data_mod.load_train(tiny_data), data_mod.load_test(tiny_data)
    val_images = train.images[:100]  # first10k of 600 images: the first 100

    def raw(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), 784).astype(np.float32)

    assert got["split"] == "first10k"
    assert got["experiment"] == "s3.reduce_lr"
    assert (got["scaled"], got["scaling"]) == (False, "no_scale_option")
    assert got["val_count"] == 100
    assert abs(got["val_accuracy"] - model.evaluate(raw(val_images), train.labels[:100], verbose=0)[1]) < 1e-6
    assert abs(got["test_accuracy"] - model.evaluate(raw(test.images), test.labels, verbose=0)[1]) < 1e-6
    assert got["model"]["input_shape"] == [784]
    assert [layer["kind"] for layer in got["model"]["layers"]] == ["Dense", "BatchNormalization", "LeakyReLU",
                                                                    "Dropout", "Dense", "Activation"]


@pytest.mark.slow
def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path, tiny_data: Path, real_home: None) -> None:
    _, path = train_and_save("sequential", tmp_path, tiny_data)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][3]["config"]["units"] = 8  # the first Dense: 12 units in the weights file
    edited = write_keras(tmp_path / "edited.keras", config, weights=members["model.weights.h5"])
    refusal(edited, "model.weights.h5: layers/dense/vars/0 has shape (784, 12), the rebuilt layer needs (784, 8) "
                    "(the weights do not match the config)", "--data-dir", str(tiny_data))
