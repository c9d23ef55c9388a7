"""grader.logs: Keras training logs, printed histories and test results, one test per style.

Every input below is written the way that Keras version prints it (bars rewritten with ``\\r`` and
``\\b``, ANSI colours in Keras 3), kept to a few epochs.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from grader.logs import (UNNAMED, CellLogs, Evaluation, HistoryPrint, TrainingLog, clean_terminal_text,
                         parse_cell_logs, parse_evaluations, parse_history_prints, parse_training_logs)
from grader.notebook import Cell, Output

B = "\x08"


def dynamic(*updates: str, end: str = "\n") -> str:
    """What a Keras progress bar writes in a notebook: each update erases the previous one with
    backspaces and a carriage return; the last one ends the line."""
    out, prev = [], 0
    for u in updates:
        out.append(B * prev + "\r" + u)
        prev = len(u)
    return "".join(out) + end


def k3(count: str, bar: str, time_: str, rest: str) -> str:
    """A Keras 3 progress update with its ANSI codes."""
    return f"\x1b[1m{count}\x1b[0m \x1b[32m{bar}\x1b[0m\x1b[37m\x1b[0m \x1b[1m{time_}\x1b[0m {rest}"


# ---------------------------------------------------------------- clean_terminal_text

def test_clean_terminal_text():
    assert clean_terminal_text("\x1b[1m10/10\x1b[0m \x1b[32m━━\x1b[0m done") == "10/10 ━━ done"
    assert clean_terminal_text("50%\r100%\nnext\r\n") == "100%\nnext\n"
    assert clean_terminal_text("abc" + B * 2 + "X\n") == "aX\n"
    assert clean_terminal_text("keep\r" + B * 4 + "\r   \r") == "keep"  # erasures alone keep the last text
    assert clean_terminal_text("plain text\n") == "plain text\n"
    once = clean_terminal_text(dynamic("1/2 [==>...]", "2/2 [=====] - loss: 0.5"))
    assert once == "2/2 [=====] - loss: 0.5\n" and clean_terminal_text(once) == once


# ---------------------------------------------------------------- Keras 2

KERAS2_V1 = (
    "Train on 48000 samples, validate on 12000 samples\n"
    "Epoch 1/2\n"
    + dynamic("  128/48000 [..............................] - ETA: 1:23 - loss: 2.3026 - acc: 0.1016",
              "24064/48000 [==============>...............] - ETA: 1s - loss: 0.7123 - acc: 0.7541",
              "48000/48000 [==============================] - 3s 62us/step - loss: 0.5012 - acc: 0.8231"
              " - val_loss: 0.4112 - val_acc: 0.8533")
    + "Epoch 2/2\n"
    + dynamic("  128/48000 [..............................] - ETA: 2s - loss: 0.3954 - acc: 0.8594",
              "48000/48000 [==============================] - 3s 58us/step - loss: 0.3762 - acc: 0.8652"
              " - val_loss: 0.3801 - val_acc: 0.8629")
)


@pytest.mark.parametrize("text", [KERAS2_V1, clean_terminal_text(KERAS2_V1)],
                         ids=["raw-bars", "collapsed-by-jupyter"])
def test_keras2_verbose1_progress_bars(text):
    (run,) = parse_training_logs(text)
    assert (run.epochs_planned, run.epochs, run.epochs_seen) == (2, 2, 2)
    assert run.metrics == {"loss": (0.5012, 0.3762), "accuracy": (0.8231, 0.8652),
                           "val_loss": (0.4112, 0.3801), "val_accuracy": (0.8533, 0.8629)}
    assert (run.train_samples, run.val_samples, run.progress_total) == (48000, 12000, 48000)
    assert run.early_stopped is False and run.label_hint is None


def test_keras2_verbose1_without_dynamic_display_takes_each_epochs_last_line():
    text = ("Epoch 1/2\n\n"
            "  128/60000 [..............................] - ETA: 40s - loss: 2.2811 - acc: 0.1250\n"
            "59904/60000 [============================>.] - ETA: 0s - loss: 0.5135 - acc: 0.8203\n"
            "60000/60000 [==============================] - 4s 70us/step - loss: 0.5129 - acc: 0.8205\n"
            "Epoch 2/2\n\n"
            "60000/60000 [==============================] - 4s 66us/step - loss: 0.3880 - acc: 0.8601\n"
            "10000/10000 [==============================] - 0s 31us/step - loss: 0.4012 - acc: 0.8544\n")
    (run,) = parse_training_logs(text)
    assert run.epochs == 2
    assert run.metrics == {"loss": (0.5129, 0.388), "accuracy": (0.8205, 0.8601)}
    assert run.progress_total == 60000
    assert text[run.start_offset:run.end_offset].endswith("acc: 0.8601")  # the evaluate bar is not the run's
    (ev,) = parse_evaluations(text)
    assert (ev.loss, ev.accuracy, ev.kind) == (0.4012, 0.8544, "progress")


SEED_VERBOSE2 = """
Building and training model sigmoid with af=sigmoid, kInit=glorot_uniform, optimizer=sgd ...
WARNING:tensorflow:From /usr/local/lib/python3.5/dist-packages/tensorflow/python/framework/op_def_library.py:263: colocate_with (from tensorflow.python.framework.ops) is deprecated and will be removed in a future version.
Instructions for updating:
Colocations handled automatically by placer.
/usr/local/lib/python3.5/dist-packages/keras/activations.py:211: UserWarning: Do not pass a layer instance
  identifier=identifier.__class__.__name__))
Train on 48000 samples, validate on 12000 samples
Epoch 1/40

 - 17s - loss: 2.3138 - acc: 0.1072 - val_loss: 2.2882 - val_acc: 0.1012

Epoch 2/40

 - 3s - loss: 2.2931 - acc: 0.1238 - val_loss: 2.2694 - val_acc: 0.3066
Epoch 3/40
 - 3s - loss: 2.2715 - acc: 0.1475 - val_loss: 2.2402 - val_acc: 0.3193


Building and training model relu with af=relu, kInit=glorot_uniform, optimizer=sgd ...
Train on 48000 samples, validate on 12000 samples
Epoch 1/40
 - 3s - loss: 1.1901 - acc: 0.5832 - val_loss: 0.6922 - val_acc: 0.7559
Epoch 2/40
 - 3s - loss: 0.7110 - acc: 0.7510 - val_loss: 0.5557 - val_acc: 0.8081
"""


def test_keras2_verbose2_several_runs_with_tf_warnings():
    sig, relu = parse_training_logs(SEED_VERBOSE2)
    assert sig.label_hint == "Building and training model sigmoid with af=sigmoid, kInit=glorot_uniform, optimizer=sgd ..."
    assert relu.label_hint == "Building and training model relu with af=relu, kInit=glorot_uniform, optimizer=sgd ..."
    assert (sig.epochs, sig.epochs_planned, sig.early_stopped) == (3, 40, True)
    assert sig.metrics["val_accuracy"] == (0.1012, 0.3066, 0.3193)
    assert sig.metrics["loss"][0] == 2.3138 and sig.metrics["loss"][-1] == 2.2715
    assert relu.metrics["accuracy"] == (0.5832, 0.751)
    assert relu.epoch_numbers == (1, 2) and relu.val_samples == 12000
    assert sig.end_offset < relu.start_offset
    assert SEED_VERBOSE2[relu.start_offset:].startswith("Train on 48000 samples")


def test_keras2_early_stopping_and_reduce_lr_messages():
    text = ("Epoch 1/40\n - 2s - loss: 0.5 - acc: 0.82 - val_loss: 0.45 - val_acc: 0.84\n"
            "Epoch 2/40\n - 2s - loss: 0.4 - acc: 0.86 - val_loss: 0.46 - val_acc: 0.83\n"
            "\nEpoch 00002: ReduceLROnPlateau reducing learning rate to 0.0005000000237487257.\n"
            "Epoch 3/40\n - 2s - loss: 0.35 - acc: 0.87 - val_loss: 0.47 - val_acc: 0.83 - lr: 5.0000e-04\n"
            "\nEpoch 00003: val_loss did not improve from 0.45000\n"
            "Epoch 00003: early stopping\n")
    (run,) = parse_training_logs(text)
    assert run.epochs == 3 and run.early_stopped is True
    assert run.lr_reductions == ((2, 0.0005000000237487257),)
    assert run.metrics["lr"] == (None, None, 0.0005)
    assert text[:run.end_offset].endswith("Epoch 00003: early stopping")


def test_keras2_bars_dropped_by_the_renderer_leave_headers_and_lr_messages():
    text = ("Train on 50000 samples, validate on 10000 samples\n"
            + "".join(f"Epoch {k}/30\n" for k in range(1, 8))
            + "\nEpoch 00007: ReduceLROnPlateau reducing learning rate to 0.001.\n"
            + "".join(f"Epoch {k}/30\n" for k in range(8, 11))
            + "\nEpoch 00010: ReduceLROnPlateau reducing learning rate to 0.001.\n"
            + "Epoch 11/30\nEpoch 12/30\nEpoch 13/30\n[0.39473962216377256, 0.8717]\n")
    (run,) = parse_training_logs(text)
    assert (run.epochs, run.epochs_seen, run.epochs_planned) == (0, 13, 30)
    assert run.metrics == {} and run.early_stopped is True
    assert run.lr_reductions == ((7, 0.001), (10, 0.001))
    (ev,) = parse_evaluations(text)
    assert (ev.loss, ev.accuracy, ev.label, ev.kind) == (0.39473962216377256, 0.8717, None, "list")


# ---------------------------------------------------------------- tf.keras 2.x

def test_tf_keras2_verbose1_with_interleaved_warnings():
    text = ("2023-03-01 10:12:01.123456: I tensorflow/core/platform/cpu_feature_guard.cc:193] "
            "This TensorFlow binary is optimized with oneDNN\n"
            "Entrenando con sigmoid\n"
            "Epoch 1/3\n"
            + dynamic("   1/1500 [..............................] - ETA: 22:32 - loss: 2.4237 - accuracy: 0.0625",
                      " 748/1500 [=============>................] - ETA: 1s - loss: 0.6502 - accuracy: 0.7744",
                      end="\n")
            + "WARNING:tensorflow:Callback method `on_train_batch_end` is slow compared to the batch time "
              "(batch time: 0.0010s vs `on_train_batch_end` time: 0.0030s). Check your callbacks.\n"
            + dynamic("1500/1500 [==============================] - 4s 2ms/step - loss: 0.5012 - accuracy: 0.8231"
                      " - val_loss: 0.4112 - val_accuracy: 0.8533")
            + "Epoch 2/3\n"
            + dynamic("1500/1500 [==============================] - 3s 2ms/step - loss: 0.3771 - accuracy: 0.8641"
                      " - val_loss: 0.3905 - val_accuracy: 0.8601")
            + "Epoch 3/3\n"
            + dynamic("1500/1500 [==============================] - 3s 2ms/step - loss: 0.3390 - accuracy: 0.8760"
                      " - val_loss: 0.3577 - val_accuracy: 0.8712"))
    (run,) = parse_training_logs(text)
    assert run.label_hint == "Entrenando con sigmoid"
    assert run.epochs == 3 and run.early_stopped is False and run.progress_total == 1500
    assert run.metrics["val_accuracy"] == (0.8533, 0.8601, 0.8712)
    assert run.metrics["loss"] == (0.5012, 0.3771, 0.339)
    assert (run.train_samples, run.val_samples) == (None, None)


def test_tf_keras2_verbose2():
    text = ("Epoch 1/2\n"
            "1500/1500 - 3s - loss: 0.5012 - accuracy: 0.8231 - val_loss: 0.4112 - val_accuracy: 0.8533 - 3s/epoch - 2ms/step\n"
            "Epoch 2/2\n"
            "1500/1500 - 2s - loss: 0.3771 - accuracy: 0.8641 - val_loss: 0.3905 - val_accuracy: 0.8601 - 2s/epoch - 1ms/step\n")
    (run,) = parse_training_logs(text)
    assert run.metrics == {"loss": (0.5012, 0.3771), "accuracy": (0.8231, 0.8641),
                           "val_loss": (0.4112, 0.3905), "val_accuracy": (0.8533, 0.8601)}
    assert parse_evaluations(text) == ()


def test_tf_keras_restoring_best_weights_without_epoch_number():
    text = ("Epoch 1/50\n1500/1500 [==============================] - 3s 2ms/step - loss: 0.5 - accuracy: 0.82"
            " - val_loss: 0.41 - val_accuracy: 0.85\n"
            "Epoch 2/50\n1500/1500 [==============================] - 3s 2ms/step - loss: 0.4 - accuracy: 0.86"
            " - val_loss: 0.43 - val_accuracy: 0.84\n"
            "Restoring model weights from the end of the best epoch.\nEpoch 2: early stopping\n")
    (run,) = parse_training_logs(text)
    assert run.early_stopped and run.restored_epoch is None and run.epochs == 2


# ---------------------------------------------------------------- Keras 3

KERAS3_V1 = (
    "Epoch 1/3\n"
    + dynamic(k3("   1/1500", "", "15:03", "600ms/step - accuracy: 0.0625 - loss: 2.4012"),
              k3(" 812/1500", "━━━━━━━━━━", "1s", "2ms/step - accuracy: 0.7420 - loss: 0.7311"),
              k3("1500/1500", "━━━━━━━━━━━━━━━━━━━━", "3s", "2ms/step - accuracy: 0.7904 - loss: 0.5981"
                 " - val_accuracy: 0.8487 - val_loss: 0.4210 - learning_rate: 0.0010"))
    + "Epoch 2/3\n"
    + dynamic(k3("   1/1500", "", "5s", "4ms/step - accuracy: 0.8750 - loss: 0.3021"), end="")
    + "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.0005000000237487257.\n"
    + dynamic(k3("1500/1500", "━━━━━━━━━━━━━━━━━━━━", "3s", "2ms/step - accuracy: 0.8590 - loss: 0.3874"
                 " - val_accuracy: 0.8611 - val_loss: 0.3822 - learning_rate: 0.0010"))
    + "Epoch 3/3\n"
    + dynamic(k3("1500/1500", "━━━━━━━━━━━━━━━━━━━━", "3s", "2ms/step - accuracy: 0.8744 - loss: 0.3401"
                 " - val_accuracy: 0.8702 - val_loss: 0.3590 - learning_rate: 5.0000e-04"))
    + "Restoring model weights from the end of the best epoch: 3.\n"
    + dynamic(k3(" 1/313", "", "11s", "38ms/step - accuracy: 0.9062 - loss: 0.2512"),
              k3("313/313", "━━━━━━━━━━━━━━━━━━━━", "1s", "2ms/step - accuracy: 0.8765 - loss: 0.3500"))
    + "[0.3500123918056488, 0.8765000104904175]\n"
)


def test_keras3_verbose1_ansi_bars_callbacks_and_evaluate():
    (run,) = parse_training_logs(KERAS3_V1)
    assert (run.epochs, run.epochs_planned, run.early_stopped) == (3, 3, False)
    assert run.metrics["accuracy"] == (0.7904, 0.859, 0.8744)
    assert run.metrics["val_loss"] == (0.421, 0.3822, 0.359)
    assert run.metrics["learning_rate"] == (0.001, 0.001, 0.0005)
    assert list(run.metrics) == ["accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"]
    assert run.lr_reductions == ((2, 0.0005000000237487257),)
    assert run.restored_epoch == 3 and run.progress_total == 1500
    (ev,) = parse_evaluations(KERAS3_V1)  # the evaluate bar and the printed list are one result
    assert (ev.loss, ev.accuracy, ev.kind) == (0.3500123918056488, 0.8765000104904175, "list")
    assert ev.excerpt.startswith("313/313 ━")


def test_keras3_verbose2_and_early_stopping():
    text = ("Epoch 1/40\n"
            "1500/1500 - 3s - 2ms/step - accuracy: 0.8213 - loss: 0.5012 - val_accuracy: 0.8533 - val_loss: 0.4112\n"
            "Epoch 2/40\n"
            "1500/1500 - 2s - 1ms/step - accuracy: 0.8641 - loss: 0.3771 - val_accuracy: 0.8511 - val_loss: 0.4105\n"
            "Epoch 2: early stopping\n"
            "Restoring model weights from the end of the best epoch: 1.\n")
    (run,) = parse_training_logs(text)
    assert run.epochs == 2 and run.early_stopped and run.restored_epoch == 1
    assert run.metrics["val_accuracy"] == (0.8533, 0.8511)


def test_keras3_without_validation_does_not_take_the_evaluate_bar():
    text = ("Epoch 1/2\n"
            "\n" + k3("   1/1875", "", "9:15", "296ms/step - accuracy: 0.0938 - loss: 2.3919")
            + "\n" + k3("1875/1875", "━━━━━━━━━━━━━━━━━━━━", "3s", "1ms/step - accuracy: 0.7787 - loss: 0.6371")
            + "\nEpoch 2/2\n"
            + "\n" + k3("1875/1875", "━━━━━━━━━━━━━━━━━━━━", "2s", "1ms/step - accuracy: 0.8561 - loss: 0.3979")
            + "\n" + k3("313/313", "━━━━━━━━━━━━━━━━━━━━", "0s", "1ms/step - accuracy: 0.8472 - loss: 0.4231") + "\n"
            "Test accuracy: 0.8472\n")
    (run,) = parse_training_logs(text)
    assert run.metrics == {"accuracy": (0.7787, 0.8561), "loss": (0.6371, 0.3979)}
    (ev,) = parse_evaluations(text)
    assert (ev.loss, ev.accuracy, ev.label) == (0.4231, 0.8472, "test")


# ---------------------------------------------------------------- several fits, labels, odd values

def test_several_fits_labels_skip_model_summaries():
    summary = ('Model: "sequential_3"\n'
               "┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━┓\n"
               "┃ Layer (type)        ┃ Output Shape  ┃ Param # ┃\n"
               "┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━┩\n"
               "│ dense_9 (Dense)     │ (None, 256)   │ 200,960 │\n"
               "└─────────────────────┴───────────────┴─────────┘\n"
               " Total params: 200,960 (785.00 KB)\n"
               " Trainable params: 200,960 (785.00 KB)\n"
               " Non-trainable params: 0 (0.00 B)\n")
    keras2_summary = ("_________________________________________________________________\n"
                      "Layer (type)                 Output Shape              Param #   \n"
                      "=================================================================\n"
                      "dense_1 (Dense)              (None, 256)               200960    \n"
                      "=================================================================\n"
                      "Total params: 200,960\nTrainable params: 200,960\nNon-trainable params: 0\n"
                      "_________________________________________________________________\n")
    epoch = "Epoch {k}/2\n1500/1500 - 2s - 1ms/step - accuracy: {a} - loss: 0.5 - val_accuracy: {v} - val_loss: 0.4\n"
    text = ("=== SGD ===\n" + summary + epoch.format(k=1, a=0.70, v=0.75) + epoch.format(k=2, a=0.80, v=0.81)
            + "<keras.src.callbacks.history.History object at 0x7f3a2c1d5e10>\n"
            + "=== Adam ===\n" + keras2_summary + epoch.format(k=1, a=0.85, v=0.86) + epoch.format(k=2, a=0.88, v=0.87)
            + epoch.format(k=1, a=0.89, v=0.88))  # trained again without a heading: no label
    sgd, adam, again = parse_training_logs(text)
    assert (sgd.label_hint, adam.label_hint, again.label_hint) == ("=== SGD ===", "=== Adam ===", None)
    assert sgd.metrics["val_accuracy"] == (0.75, 0.81)
    assert adam.metrics["accuracy"] == (0.85, 0.88)
    assert again.metrics["accuracy"] == (0.89,) and again.epochs_planned == 2 and again.early_stopped


def test_continued_training_with_initial_epoch_is_a_new_run():
    text = ("Epoch 9/10\n - 1s - loss: 0.3 - acc: 0.89\nEpoch 10/10\n - 1s - loss: 0.29 - acc: 0.9\n"
            "Epoch 11/20\n - 1s - loss: 0.28 - acc: 0.905\n")
    first, second = parse_training_logs(text)
    assert first.epoch_numbers == (9, 10) and first.early_stopped is False
    assert second.epoch_numbers == (11,) and second.epochs_planned == 20 and second.early_stopped


def test_scientific_notation_and_nan():
    text = ("Epoch 1/2\n1500/1500 [==============================] - 3s 2ms/step - loss: 1.2e-04"
            " - accuracy: 1.0000 - val_loss: 3.4567e-05 - val_accuracy: 0.9990\n"
            "Epoch 2/2\n1500/1500 [==============================] - 3s 2ms/step - loss: nan"
            " - accuracy: 0.1000 - val_loss: nan - val_accuracy: 0.1000\n")
    (run,) = parse_training_logs(text)
    assert run.metrics["loss"][0] == 1.2e-04 and run.metrics["val_loss"][0] == 3.4567e-05
    assert math.isnan(run.metrics["loss"][1]) and run.metrics["accuracy"] == (1.0, 0.1)
    assert run.to_dict()["metrics"]["loss"] == [1.2e-04, None]  # JSON has no NaN


def test_metric_line_split_across_outputs():
    cell = Cell(index=4, cell_type="code", source="model.fit(...)", outputs=(
        Output("stream", "stdout", "Epoch 1/1\n - 3s - loss: 0.4 - acc: 0.85 - val_lo"),
        Output("stream", "stderr", "W tensorflow warning\n"),
        Output("stream", "stdout", "ss: 0.41 - val_acc: 0.86\n"),
    ))
    assert cell.stream_text("stderr") == "W tensorflow warning\n"
    (run,) = parse_training_logs(cell.stream_text("stdout"))
    assert run.metrics == {"loss": (0.4,), "accuracy": (0.85,), "val_loss": (0.41,), "val_accuracy": (0.86,)}


def test_alias_metric_names():
    text = ("Epoch 1/1\n - 2s - loss: 0.5 - sparse_categorical_accuracy: 0.81"
            " - val_loss: 0.45 - val_sparse_categorical_accuracy: 0.83\n")
    (run,) = parse_training_logs(text)
    assert run.metrics == {"loss": (0.5,), "accuracy": (0.81,), "val_loss": (0.45,), "val_accuracy": (0.83,)}


# ---------------------------------------------------------------- printed histories

def test_history_dict_prints():
    text = ("{'val_loss': [0.6922, 0.5557, 0.4957], 'val_acc': [0.7559, 0.8081, 0.8226], "
            "'loss': [1.1901, 0.711, 0.603], 'acc': [0.5832, 0.751, 0.7909]}\n"
            "{'accuracy': [np.float64(0.8), np.float64(0.85)], 'loss': [0.5, 0.4],\n"
            " 'learning_rate': [array(0.001, dtype=float32), array(5.e-04, dtype=float32)]}\n")
    first, second = parse_history_prints(text)
    assert first.kind == "dict" and first.epochs == 3
    assert first.metrics == {"val_loss": (0.6922, 0.5557, 0.4957), "val_accuracy": (0.7559, 0.8081, 0.8226),
                             "loss": (1.1901, 0.711, 0.603), "accuracy": (0.5832, 0.751, 0.7909)}
    assert second.metrics == {"accuracy": (0.8, 0.85), "loss": (0.5, 0.4), "learning_rate": (0.001, 0.0005)}
    assert parse_evaluations(text) == () and parse_training_logs(text) == ()


def test_history_list_prints():
    text = ("val_acc: [0.7559, 0.8081, 0.8226]\n"
            "relu [0.81, 0.84, 0.86, 0.87]\n"
            "[0.7559 0.8081 0.8226 0.8247 0.8388 0.8418\n 0.8494 0.8492]\n"
            "Pérdida en validación = [np.float64(0.61), np.float64(0.52)]\n"
            "[9 0 0 3 0 2 7 2 5 5]\n"            # labels, not a history
            "[[0.1 0.9]\n [0.8 0.2]]\n"          # predictions, not a history
            "Test accuracy por modelo: [0.85, 0.87, 0.88]\n")
    named, relu, wrapped, loss = parse_history_prints(text)
    assert (named.kind, named.metrics, named.label) == ("list", {"val_accuracy": (0.7559, 0.8081, 0.8226)}, "val_acc")
    assert relu.metrics == {UNNAMED: (0.81, 0.84, 0.86, 0.87)} and relu.label == "relu"
    assert wrapped.metrics == {UNNAMED: (0.7559, 0.8081, 0.8226, 0.8247, 0.8388, 0.8418, 0.8494, 0.8492)}
    assert loss.metrics == {"val_loss": (0.61, 0.52)}


def test_custom_per_epoch_lines():
    text = ("Entrenando relu\n"
            "Epoch 1: val_accuracy=0.8012\nEpoch 2: val_accuracy=0.8433\nEpoch 3: val_accuracy=0.8612\n"
            "Entrenando sigmoid\n"
            "epoch 1 - loss 1.9 - val_acc 0.61\nepoch 2 - loss 1.2 - val_acc 0.70\n"
            "Epoch 00003: ReduceLROnPlateau reducing learning rate to 0.001.\n")
    relu, sig = parse_history_prints(text)
    assert relu.kind == "epoch_lines" and relu.label == "Entrenando relu"
    assert relu.metrics == {"val_accuracy": (0.8012, 0.8433, 0.8612)}
    assert sig.label == "Entrenando sigmoid" and sig.metrics == {"loss": (1.9, 1.2), "val_accuracy": (0.61, 0.7)}
    assert parse_training_logs(text) == ()


# ---------------------------------------------------------------- evaluations

@pytest.mark.parametrize("line, loss, acc, label", [
    ("Test accuracy: 0.876", None, 0.876, "test"),
    ("Test loss: 0.35", 0.35, None, "test"),
    ("Accuracy en test: 87.6%", None, 0.876, "test"),
    ("Precisión en test = 0.8760", None, 0.876, "test"),
    ("test_acc: 0.87", None, 0.87, "test"),
    ("Test accuracy: 0.876 (87.6%)", None, 0.876, "test"),
    ("Exactitud en el conjunto de prueba: 88.1", None, 0.881, "test"),
    ("La pérdida en test es 0.3512 y la accuracy 0.8791", 0.3512, 0.8791, "test"),
    ("Validation accuracy: 0.89", None, 0.89, "validation"),
    ("Accuracy en validación: 0.8912", None, 0.8912, "validation"),
    ("Mejor val_acc: 0.8784", None, 0.8784, "validation"),
    ("Loss: 0.3400, Accuracy: 0.8800", 0.34, 0.88, None),
    ("Test: [0.3456, 0.8808]", 0.3456, 0.8808, "test"),
    ("score = [0.3456, 0.8808]", 0.3456, 0.8808, None),
])
def test_evaluation_lines(line, loss, acc, label):
    (ev,) = parse_evaluations(line + "\n")
    assert (ev.loss, ev.accuracy, ev.label) == (loss, acc, label)
    assert ev.excerpt == line and ev.offset == 0


def test_validation_and_test_on_one_line_stay_apart():
    val, test = parse_evaluations("Validation accuracy: 0.8912 | Test accuracy: 0.8801\n")
    assert (val.label, val.accuracy, test.label, test.accuracy) == ("validation", 0.8912, "test", 0.8801)


def test_seed_style_evaluate_print_merges_loss_and_accuracy_lines():
    text = "[0.35109124109745027, 0.876]\nTest loss: 0.35109124109745027\nTest accuracy: 0.876\n"
    (ev,) = parse_evaluations(text)
    assert (ev.loss, ev.accuracy, ev.label, ev.kind) == (0.35109124109745027, 0.876, "test", "list")
    two = parse_evaluations("Test accuracy: 0.876\n\nmodel 2\nTest accuracy: 0.881\n")
    assert [e.accuracy for e in two] == [0.876, 0.881]
    same = parse_evaluations("relu - test accuracy: 0.8760\nselu - test accuracy: 0.8762\n")
    assert [e.accuracy for e in same] == [0.876, 0.8762]  # two models, not one result twice


def test_lines_that_are_not_results():
    text = ("Epoch 3/10\nfrom 0.2 to 0.3\naccuracy of model 3\n[0.1, 0.2, 0.3, 0.4]\n"
            "Model accuracy improved a lot\n{'loss': [0.5, 0.4]}\n")
    assert parse_evaluations(text) == ()


# ---------------------------------------------------------------- robustness, speed, values

@pytest.mark.parametrize("text", ["", "\n\n", "Epoch", "Epoch 1/", "Epoch 0/0\n - loss:", "[[[[", "]]]",
                                  "\x1b[", "\r\r\x08\x08", "Test accuracy: %", "{'acc': [", "é" * 50,
                                  "Epoch 99999999999999999999/1\n - 1s - loss: 1e999999 - acc: -"])
def test_odd_text_never_raises(text):
    logs = parse_cell_logs(text)
    assert isinstance(logs, CellLogs)


def test_five_megabyte_output_parses_fast():
    rng_values = [f"0.{i % 9000 + 1000:04d}" for i in range(400)]
    epoch = "".join(
        f"Epoch {k}/40\n" + dynamic(
            *(f"{c:5d}/48000 [=========>....................] - ETA: 1s - loss: {v} - acc: {v}"
              for c, v in zip(range(128, 48000, 3000), rng_values)),
            f"48000/48000 [==============================] - 3s 62us/step - loss: 0.4 - acc: 0.8{k:02d}"
            f" - val_loss: 0.4 - val_acc: 0.8{k:02d}")
        for k in range(1, 41))
    text = "".join(f"=== run {r} ===\nTrain on 48000 samples, validate on 12000 samples\n{epoch}"
                   "Test accuracy: 0.87\n" for r in range(50))
    assert len(text) > 5_000_000
    t0 = time.perf_counter()
    logs = parse_cell_logs(text)
    elapsed = time.perf_counter() - t0
    assert len(logs.runs) == 50 and all(r.epochs == 40 for r in logs.runs)
    assert logs.runs[7].label_hint == "=== run 7 ===" and logs.runs[7].metrics["val_accuracy"][-1] == 0.84
    assert len(logs.evaluations) == 50
    assert elapsed < 1.0, f"parse took {elapsed:.3f}s"


def test_values_round_trip_through_json():
    logs = parse_cell_logs(KERAS3_V1 + "{'loss': [0.5, 0.4], 'acc': [0.8, 0.9]}\n")
    for value, cls in [(logs.runs[0], TrainingLog), (logs.history_prints[0], HistoryPrint),
                       (logs.evaluations[0], Evaluation)]:
        again = cls.from_dict(json.loads(json.dumps(value.to_dict())))
        assert again == value


def test_number_before_its_metric_word():
    (ev,) = parse_evaluations("El modelo final obtiene un 87.6% de acierto en test\n")
    assert (ev.accuracy, ev.label) == (0.876, "test")
    (ev,) = parse_evaluations("{'test_loss': 0.3512, 'test_acc': 0.8791}\n")
    assert (ev.loss, ev.accuracy, ev.label) == (0.3512, 0.8791, "test")


def test_text_whose_lower_case_is_longer_still_parses():
    (ev,) = parse_evaluations("İstanbul grubu\nTest accuracy: 0.87\n")
    assert (ev.accuracy, ev.offset) == (0.87, len("İstanbul grubu\n"))


def test_tf_keras_evaluate_bar_then_print_keeps_the_precise_value():
    text = ("313/313 [==============================] - 1s 2ms/step - loss: 0.2711 - accuracy: 0.9105\n"
            "Test accuracy: 0.9104999899864197\n")
    (ev,) = parse_evaluations(text)
    assert (ev.loss, ev.accuracy, ev.label, ev.kind) == (0.2711, 0.9104999899864197, "test", "progress")


def test_spanish_epoch_lines_of_a_callback_are_not_evaluations():
    text = "época  1 | acc 0.8012 | val_acc 0.8311\népoca  2 | acc 0.8512 | val_acc 0.8611\nÉpoca 3: val_acc 0.87\n"
    logs = parse_cell_logs(text)
    assert logs.evaluations == ()
    assert logs.history_prints[0].metrics["val_accuracy"][:2] == (0.8311, 0.8611)
