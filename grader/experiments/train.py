"""Train one job (one experiment spec, one seed) in a worker process; imports TensorFlow.

The whole run is a function of (spec, seed): initial weights come from initializers seeded by
(seed, layer position), the data order from a tf.data shuffle seeded by the seed, dropout masks
from seeded layers. Two runs with the same spec and seed on one machine give identical histories.

Speed (measured on the 2-core CPU, see benchmarks/battery.py): one epoch of the whole split is one
compiled call (`steps_per_execution` = steps per epoch) and workers are pinned to one thread each,
which beats one process with two threads on these small matrices. Training several experiments
as towers of one model was tried and was not faster (each tower's matmuls stay as small as
before), so each job is one plain model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..data import load_test, load_train, split_indices
from ..records import SeedHistory

EVAL_BATCH = 1000
Progress = Callable[[str, int, int, float], None]  # (experiment id, seed, epoch, val_accuracy)


@dataclass(frozen=True)
class Job:
    """One training run: a spec (``ExperimentSpec.training_spec()``) and a seed."""

    key: str  # what progress events and results are reported under (the spec hash)
    spec: Mapping[str, Any]
    seed: int
    data_dir: str | None = None
    steps_per_execution: int = 0  # 0: as many steps as fit in one epoch (one call per epoch)


def configure_threads(threads: int) -> None:
    """Pin TensorFlow's thread pools. Must run before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices are noise for a battery of models
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized in this process
        pass


_DATA_CACHE: dict[tuple[str | None, str], tuple[np.ndarray, ...]] = {}


def _split_arrays(data_dir: str | None, split: str) -> tuple[np.ndarray, ...]:
    """float32 train/val arrays for a split, built once per worker process."""
    key = (data_dir, split)
    if key not in _DATA_CACHE:
        train = load_train(data_dir)
        tr, va = split_indices(split, train.labels)
        x = train.images.astype(np.float32) / np.float32(255.0)
        y = train.labels.astype(np.int32)
        _DATA_CACHE[key] = (np.ascontiguousarray(x[tr]), y[tr], np.ascontiguousarray(x[va]), y[va])
    return _DATA_CACHE[key]


def run_job(job: Job, progress: Progress | None = None) -> SeedHistory:
    """Train the job's spec with its seed; test accuracy too when the spec asks for it."""
    import keras
    import tensorflow as tf

    from . import build

    spec = job.spec
    keras.utils.set_random_seed(job.seed)
    x_tr, y_tr, x_va, y_va = _split_arrays(job.data_dir, spec["split"])
    model = build.model(spec, job.seed)
    steps = -(-len(x_tr) // spec["batch_size"])
    smoothing = float(spec.get("label_smoothing", 0.0))
    model.compile(
        optimizer=build.optimizer(spec["optimizer"]),
        # Smoothed labels need one-hot targets (the sparse loss has no label_smoothing); the
        # "accuracy" metric follows the targets' shape, so it means the same either way.
        loss=(keras.losses.CategoricalCrossentropy(label_smoothing=smoothing) if smoothing
              else "sparse_categorical_crossentropy"),
        metrics=["accuracy"],
        steps_per_execution=job.steps_per_execution or steps,
        # Measured on the 2-core CPU: XLA costs ~1 s more to compile per model and ran ~25% slower
        # per epoch on these small MLPs than the plain TF graph.
        jit_compile=False,
    )

    def batches(x: np.ndarray, y: np.ndarray, shuffle: bool) -> Any:
        if smoothing:
            y = np.eye(10, dtype=np.float32)[y]
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=job.seed, reshuffle_each_iteration=True)
            return ds.batch(spec["batch_size"]).prefetch(2)
        # Evaluation batches do not change the result (a mean over samples), only its speed.
        return ds.batch(EVAL_BATCH).prefetch(2)

    lr_log: list[float] = []

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            lr_log.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            if progress:
                progress(job.key, job.seed, epoch + 1, float((logs or {}).get("val_accuracy", float("nan"))))

    start = time.perf_counter()
    history = model.fit(batches(x_tr, y_tr, True), validation_data=batches(x_va, y_va, False),
                        epochs=spec["epochs"], callbacks=[*build.callbacks(list(spec["callbacks"])), _Report()],
                        verbose=0, shuffle=False)  # the dataset shuffles itself, seeded
    wall = time.perf_counter() - start
    series = {m: tuple(float(v) for v in history.history[m]) for m in ("accuracy", "loss", "val_accuracy", "val_loss")}

    test_accuracy = test_loss = None
    if spec["evaluate_test"]:  # the only place the test set is read
        test = load_test(job.data_dir)
        x_te = test.images.astype(np.float32) / np.float32(255.0)
        result = model.evaluate(batches(x_te, test.labels.astype(np.int32), False), verbose=0, return_dict=True)
        test_accuracy, test_loss = float(result["accuracy"]), float(result["loss"])

    restored = any(cb.get("restore_best_weights") for cb in spec["callbacks"])
    best = _best_epoch(series, spec["callbacks"]) if restored else len(series["val_accuracy"])
    keras.backend.clear_session()
    return SeedHistory(seed=job.seed, best_epoch=best, test_accuracy=test_accuracy, test_loss=test_loss,
                       learning_rate=tuple(lr_log), wall_time=wall, **series)


def _best_epoch(series: Mapping[str, Sequence[float]], callbacks: Sequence[Mapping[str, Any]]) -> int:
    """The epoch EarlyStopping(restore_best_weights=True) restores: best value of its monitor."""
    cb = next(c for c in callbacks if c.get("restore_best_weights"))
    monitor = cb.get("monitor", "val_loss")
    values = list(series[monitor])
    mode = cb.get("mode", "auto")
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    pick = max if mode == "max" else min
    return values.index(pick(values)) + 1
