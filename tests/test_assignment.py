import pytest

from grader import assignment
from grader.errors import AssignmentError

TRABAJO2_IDS = [
    "activations.sigmoid", "activations.relu", "activations.selu", "activations.leaky_relu",
    "inits.zeros", "inits.random_normal", "inits.glorot_uniform",
    "optimizers.sgd", "optimizers.rmsprop", "optimizers.adagrad", "optimizers.adam",
    "final", "final.test",
]


def test_shipped_assignments():
    assert assignment.available() == ["challenge_s3", "trabajo2"]
    t2 = assignment.load("trabajo2")
    assert [e.id for e in t2.experiments] == TRABAJO2_IDS
    relu = t2.experiment("activations.relu")
    assert [l["units"] for l in relu.layers] == [256, 128, 64]
    assert relu.optimizer == {"name": "sgd"} and relu.batch_size == 64 and relu.epochs == 40
    assert relu.split == "random80" and relu.seeds == (1, 2, 3)
    leaky = t2.experiment("activations.leaky_relu")
    assert leaky.layers[0]["activation"] == {"name": "leaky_relu", "negative_slope": 0.5}
    rn = t2.experiment("inits.random_normal")
    assert rn.layers[0]["initializer"] == {"name": "random_normal", "mean": 0.0, "stddev": 0.05}
    # identical trainings share a spec hash (trained once), different ones do not
    assert relu.spec_hash() == t2.experiment("optimizers.sgd").spec_hash() == t2.experiment("inits.glorot_uniform").spec_hash()
    assert relu.spec_hash() != t2.experiment("optimizers.adam").spec_hash()
    assert t2.experiment("final.test").spec_hash() == t2.experiment("final").spec_hash()
    assert t2.rubric.final_val_full == 0.90 and t2.rubric.final_val_partial == 0.88
    assert t2.rubric.validation_fraction == 0.2


def test_challenge():
    s3 = assignment.load("challenge_s3")
    assert [e.id for e in s3.experiments] == ["s3.baseline", "s3.baseline.test", "s3.batchnorm",
                                             "s3.batchnorm.test", "s3.reduce_lr", "s3.reduce_lr.test"]
    rl = s3.experiment("s3.reduce_lr")
    assert rl.epochs == 30 and rl.split == "first10k" and rl.batch_size == 128
    assert rl.callbacks == ({"name": "early_stopping", "mode": "min", "monitor": "val_loss", "patience": 5},
                            {"name": "reduce_lr_on_plateau", "factor": 0.5, "min_lr": 0.001,
                             "monitor": "val_loss", "patience": 2})
    assert [l["type"] for l in rl.layers] == ["dense", "batchnorm", "dense", "batchnorm"]


def test_select():
    t2 = assignment.load("trabajo2")
    assert [e.id for e in t2.select("activations.*")][:2] == ["activations.sigmoid", "activations.relu"]
    assert [e.id for e in t2.select("final.test")] == ["final", "final.test"]
    with pytest.raises(AssignmentError, match=r"no experiment matches 'nope\*'"):
        t2.select("nope*")


def test_unknown_assignment():
    with pytest.raises(AssignmentError, match=r"unknown assignment 'trabajo9' \(known: challenge_s3, trabajo2\)"):
        assignment.load("trabajo9")


BASE = """
[assignment]
id = "x"
title = "X"
seeds = [1]
[defaults]
split = "random80"
hidden = [8]
activation = "relu"
initializer = "glorot_uniform"
optimizer = "sgd"
batch_size = 4
epochs = 1
[[exercises]]
id = "e"
title = "E"
[[experiments]]
id = "a"
variant = "a"
{extra}
[rubric]
validation_fraction = 0.2
required_epochs = 1
final_val_full = 0.9
final_val_partial = 0.8
test_val_max_gap = 0.02
checks = [{{ id = "e", points = 1.0 }}]
"""


@pytest.mark.parametrize("extra, message", [
    ('exercise = "e"\nbatch_size = "big"', r"x.toml: experiments\[0\] \(a\).batch_size: must be int, got str 'big'"),
    ('exercise = "e"\n' + "epochs = 0", r"experiments\[0\] \(a\).epochs: must be a positive integer, got 0"),
    ('exercise = "e"\n' + 'optimizer = "adamm"', r"experiments\[0\] \(a\): unknown optimizer 'adamm' \(known: adadelta, adagrad"),
    ('exercise = "e"\n' + 'split = "half"', r"experiments\[0\] \(a\).split: unknown split 'half'"),
    ('exercise = "e"\n' + 'activation = { class = "LeakyReLU", alpha = 0.1 }', r"activation 'leaky_relu' takes no parameter 'alpha'"),
    ('exercise = "zzz"', r"experiments\[0\] \(a\).exercise: unknown exercise 'zzz'"),
    ('exercise = "e"\n' + 'layers = [{ type = "conv" }]', r"experiments\[0\] \(a\).layers\[0\].type: unknown layer 'conv'"),
    ('exercise = "e"\n' + 'label_smoothing = 1.5', r"experiments\[0\] \(a\).label_smoothing: must be in \[0, 1\), got 1.5"),
])
def test_bad_toml_names_key(tmp_path, extra, message):
    path = tmp_path / "x.toml"
    path.write_text(BASE.format(extra=extra))
    with pytest.raises(AssignmentError, match=message):
        assignment.load(path)


def test_missing_field_and_invalid_toml(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(BASE.format(extra='exercise = "e"').replace('seeds = [1]\n', ""))
    with pytest.raises(AssignmentError, match=r"x.toml: assignment.seeds: missing"):
        assignment.load(path)
    path.write_text("[assignment\n")
    with pytest.raises(AssignmentError, match=r"x.toml: invalid TOML"):
        assignment.load(path)
    path.write_text(BASE.format(extra='exercise = "e"'))
    assert assignment.load(path).experiment("a").layers[0]["units"] == 8


def test_label_smoothing_enters_the_spec_only_when_set(tmp_path):
    plain, smooth = tmp_path / "p.toml", tmp_path / "s.toml"
    plain.write_text(BASE.format(extra='exercise = "e"'))
    smooth.write_text(BASE.format(extra='exercise = "e"\nlabel_smoothing = 0.1'))
    a, b = assignment.load(plain).experiment("a"), assignment.load(smooth).experiment("a")
    assert "label_smoothing" not in a.training_spec()  # existing records keep their hash
    assert b.training_spec()["label_smoothing"] == 0.1
    assert a.spec_hash() != b.spec_hash()
