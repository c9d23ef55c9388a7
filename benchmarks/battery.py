"""Battery speed: grader's runner against a plain seed-style loop, on the real data, same run.

The baseline trains the same experiments the way the seed notebooks do: one `model.fit(...,
verbose=2)` after another in one process with TensorFlow's default threads and Keras' default
compile settings. It gets the same models (same seeded initial weights) and the same seeded data
order, so the two can be held to the "same training" rule:

- per-epoch val_accuracy of every run within 0.005 of the baseline's (reduction order differs),
- two runs of grader's runner with the same settings are bit-identical.

Prints the achieved GFLOP/s of both against a numpy SGEMM measured in the same run, and the
ratio last, as `speedup: X.XX`.

    python benchmarks/battery.py --quick      # 4 activations x 3 epochs, seed 1 (< 3 minutes)
    python benchmarks/battery.py              # 4 activations + 4 optimizers x 5 epochs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader import assignment  # noqa: E402
from grader.experiments import runner  # noqa: E402
from grader.records import Store  # noqa: E402

TOLERANCE = 0.005


def sgemm_gflops(n: int = 2048, repeat: int = 5) -> float:
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    start = time.perf_counter()
    for _ in range(repeat):
        a @ a
    return 2 * n ** 3 * repeat / (time.perf_counter() - start) / 1e9


def flops(spec: dict, n_train: int, n_val: int) -> float:
    """Multiply-adds of the dense layers: x6 per training sample (forward+backward), x2 per validation one."""
    macs, width = 0, 28 * 28
    for layer in spec["layers"]:
        if layer["type"] == "dense":
            macs += width * layer["units"]
            width = layer["units"]
    macs += width * 10
    return spec["epochs"] * (6 * macs * n_train + 2 * macs * n_val)


def run_grader(selected, out: Path, workers: int) -> tuple[float, dict]:
    store = Store(out)
    plan = runner.make_plan(battery, selected, store, epochs=None, force=True, data_dir=None)
    start = time.perf_counter()
    outcome = runner.run(plan, store, workers=workers, data_dir=None)
    wall = time.perf_counter() - start
    if outcome.failed or outcome.interrupted:
        raise SystemExit(f"runner failed: {outcome.failed}")
    return wall, {r.id: r for r in outcome.trained}


def run_baseline(selected, seed: int) -> tuple[float, dict]:
    """The seed notebooks' way: fit one model after another, verbose=2, default threads."""
    import keras
    import numpy as np
    import tensorflow as tf

    from grader.data import load_train, split_indices
    from grader.experiments import build

    train = load_train()
    histories, wall = {}, 0.0
    for spec in selected:
        s = spec.training_spec()
        tr, va = split_indices(s["split"], train.labels)
        x = train.images / 255.0  # float64, as the seed notebooks do
        y = train.labels.astype(np.int32)
        start = time.perf_counter()
        keras.utils.set_random_seed(seed)
        model = build.model(s, seed)
        model.compile(optimizer=build.optimizer(s["optimizer"]), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        ds = tf.data.Dataset.from_tensor_slices((x[tr].astype(np.float32), y[tr]))
        ds = ds.shuffle(len(tr), seed=seed, reshuffle_each_iteration=True).batch(s["batch_size"])
        val = tf.data.Dataset.from_tensor_slices((x[va].astype(np.float32), y[va])).batch(s["batch_size"])
        h = model.fit(ds, validation_data=val, epochs=s["epochs"], verbose=2)
        wall += time.perf_counter() - start
        histories[spec.id] = [float(v) for v in h.history["val_accuracy"]]
        keras.backend.clear_session()
    return wall, histories


def main() -> None:
    global battery
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 activations x 3 epochs (< 3 minutes)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    battery = assignment.load("trabajo2")
    ids = ["activations.sigmoid", "activations.relu", "activations.selu", "activations.leaky_relu"]
    epochs = 3 if args.quick else 5
    if not args.quick:
        ids += ["optimizers.rmsprop", "optimizers.adagrad", "optimizers.adam", "inits.random_normal"]
    from dataclasses import replace

    selected = [replace(battery.experiment(i).with_epochs(epochs), seeds=(1,)) for i in ids]
    print(f"experiments: {', '.join(ids)}; {epochs} epochs each; seed 1; real Fashion-MNIST")

    sgemm = sgemm_gflops()
    print(f"numpy SGEMM 2048^3 (all cores): {sgemm:.1f} GFLOP/s")
    total_flops = sum(flops(s.training_spec(), 48000, 12000) for s in selected)

    with tempfile.TemporaryDirectory() as tmp:
        wall_a, recs_a = run_grader(selected, Path(tmp) / "a", args.workers)
        print(f"grader runner ({args.workers} workers): {wall_a:.1f} s, {total_flops / wall_a / 1e9:.1f} GFLOP/s "
              f"({total_flops / wall_a / 1e9 / sgemm:.0%} of SGEMM)")
        wall_b, recs_b = run_grader(selected, Path(tmp) / "b", args.workers)
        print(f"grader runner, second run: {wall_b:.1f} s")
    identical = all(
        [(h.accuracy, h.loss, h.val_accuracy, h.val_loss) for h in recs_a[i].histories]
        == [(h.accuracy, h.loss, h.val_accuracy, h.val_loss) for h in recs_b[i].histories] for i in ids)
    print(f"bit-identical between two runner runs: {'yes' if identical else 'NO'}")

    wall_base, base = run_baseline(selected, seed=1)
    print(f"seed-style loop (1 process, default threads): {wall_base:.1f} s, "
          f"{total_flops / wall_base / 1e9:.1f} GFLOP/s ({total_flops / wall_base / 1e9 / sgemm:.0%} of SGEMM)")
    worst = 0.0
    for i in ids:
        ours = recs_a[i].histories[0].val_accuracy
        diff = max(abs(a - b) for a, b in zip(ours, base[i]))
        worst = max(worst, diff)
        print(f"  {i:24} val_acc ours {ours[-1]:.4f} baseline {base[i][-1]:.4f}  max |diff| {diff:.4f}")
    same = worst <= TOLERANCE and identical
    print(f"same training (val_accuracy within {TOLERANCE}, bit-identical reruns): {'yes' if same else 'NO'}")
    best = min(wall_a, wall_b)
    print(f"speedup: {wall_base / best:.2f}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
