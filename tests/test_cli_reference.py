"""`grader reference` and `grader data` through Click's CliRunner: exact output and exit codes."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.records import Store

TINY = str(Path(__file__).parent / "fixtures" / "tiny_assignment.toml")


def curves(record):
    """Everything a training determines (wall time aside)."""
    return [(h.seed, h.accuracy, h.loss, h.val_accuracy, h.val_loss, h.best_epoch, h.test_accuracy)
            for h in record.histories]


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_list_trabajo2():
    result = run("reference", "--list", "--assignment", "trabajo2", "--out", "/nonexistent")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "trabajo2: Trabajo 2: Aspectos prácticos de las redes neuronales"
    assert lines[1] == "seeds: 1, 2, 3"
    ids = [line.split()[0] for line in lines[3:]]
    assert ids == ["activations.sigmoid", "activations.relu", "activations.selu", "activations.leaky_relu",
                   "inits.zeros", "inits.random_normal", "inits.glorot_uniform", "optimizers.sgd",
                   "optimizers.rmsprop", "optimizers.adagrad", "optimizers.adam", "final", "final.test"]
    assert lines[4].split() == ["activations.relu", "train", "random80", "40", "64", "sgd", "d3cb610dfb17baa3", "-"]


def test_unknown_assignment_and_experiment():
    result = run("reference", "--list", "--assignment", "trabajo9")
    assert result.exit_code == 2
    assert result.output == "Error: unknown assignment 'trabajo9' (known: challenge_s3, trabajo2)\n"
    result = run("reference", "--list", "--assignment", "trabajo2", "--only", "activations.tanh")
    assert result.exit_code == 2
    assert result.output.startswith("Error: assignments/trabajo2.toml: no experiment matches 'activations.tanh' (known: ")


def test_bad_toml_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(TINY).read_text().replace("batch_size = 32", 'batch_size = "x"'))
    result = run("reference", "--list", "--assignment", str(bad))
    assert result.exit_code == 2
    assert result.output == f"Error: {bad}: experiments[0] (acts.relu).batch_size: must be int, got str 'x'\n"


def test_missing_data_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADER_DATA_DIR", raising=False)
    result = run("reference", "--assignment", TINY, "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path / "nodata"))
    assert result.exit_code == 2
    assert result.output == (f"Error: {tmp_path / 'nodata'}: no train-images-idx3-ubyte[.gz] there; get it with "
                             "`apt-get install dataset-fashion-mnist`, or put the four IDX files in a folder and "
                             "pass --data-dir / set GRADER_DATA_DIR\n")


def test_smoke_runs_never_go_to_reference_runs():
    result = run("reference", "--assignment", "challenge_s3", "--epochs", "1", "--out", "reference_runs")
    assert result.exit_code == 2
    assert "smoke runs and are never written to reference_runs/" in result.output


def test_data_command(tiny_data):
    result = run("data")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == f"GRADER_DATA_DIR {tiny_data}  [complete]"
    assert f"using {tiny_data}: train 600 images, checksums ok" in result.output


@pytest.mark.slow
def test_battery_trains_caches_and_forces(tiny_data, tmp_path):
    out = tmp_path / "runs"
    first = run("reference", "--assignment", TINY, "--out", str(out), "--workers", "2")
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"tiny: training 4 experiments, 0 cached, 2 workers -> {out}\n")
    store = Store(out)
    records = {r.id: r for r in store.records()}
    assert sorted(records) == ["acts.relu", "acts.same_as_relu", "acts.sigmoid", "final"]
    relu = records["acts.relu"]
    assert relu.seeds == (1, 2) and [h.epochs for h in relu.histories] == [3, 3]
    # identical specs train once: the same histories under both ids
    assert curves(records["acts.same_as_relu"]) == curves(relu)
    assert records["final"].histories[0].test_accuracy is not None
    assert relu.band()["min"] == [min(a, b) for a, b in zip(*(h.val_accuracy for h in relu.histories))]
    index = json.loads((out / "index.json").read_text())
    assert sorted(index["experiments"]) == sorted(records)
    assert index["experiments"]["acts.relu"]["spec_hash"] == relu.spec_hash

    second = run("reference", "--assignment", TINY, "--out", str(out))
    assert second.exit_code == 0
    assert second.output.startswith(f"tiny: all 4 selected experiments are cached in {out}; nothing to train")
    assert {r.id: r.histories for r in Store(out).records()} == {k: v.histories for k, v in records.items()}

    forced = run("reference", "--assignment", TINY, "--out", str(out), "--only", "acts.sigmoid", "--force")
    assert forced.exit_code == 0
    assert forced.output.startswith("tiny: training 1 experiments, 0 cached, ")
    # retrained with the same seeds: bit-identical history
    assert curves(Store(out).get("acts.sigmoid")) == curves(records["acts.sigmoid"])


@pytest.mark.slow
def test_ctrl_c_keeps_finished_records(tiny_data, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) ends the run cleanly."""
    import os
    import signal
    import subprocess
    import sys
    import time

    toml = tmp_path / "two.toml"
    text = Path(TINY).read_text().replace("seeds = [1, 2]", "seeds = [1]")
    text = text.replace('id = "acts.sigmoid"', 'id = "acts.slow"\nepochs = 2000')
    toml.write_text(text)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "reference", "--assignment", str(toml),
                             "--out", str(out), "--only", "acts.relu,acts.slow", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 400  # generous: CI machines are shared and TensorFlow starts slowly
    while not (out / "acts.relu.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (out / "acts.relu.json").exists(), proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, (stdout, stderr)
    assert f"Error: interrupted: 1 finished records kept in {out}" in stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["acts.relu.json", "index.json"]
    assert Store(out).get("acts.relu").histories[0].epochs == 3
