"""The rubric and what it reads: sections, runs, final model, claims, plausibility, messages.

Each test builds a small notebook in the style it is about (headings, loops, log styles) and runs
the same pipeline as `grader check` on it, without the CLI.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from grader import assignment as assignment_mod
from grader import messages
from grader.attribution import HeadingMatcher, sections
from grader.checks import CheckResult
from grader.codefacts import extract
from grader.errors import GraderError, NotebookError
from grader.identify import detect_assignment, student_name
from grader.notebook import read_notebook
from grader.records import RunRecord, SeedHistory
from grader.submission import check_notebook

TRABAJO2 = assignment_mod.load("trabajo2")
CHALLENGE = assignment_mod.load("challenge_s3")

DATA = """
import keras
from keras.models import Sequential
from keras.layers import Dense, Input, Dropout
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train.reshape(-1, 784) / 255.0
x_test = x_test.reshape(-1, 784) / 255.0
"""

HELPER = """
def red(act='relu', init='glorot_uniform', opt='sgd', epochs=3, verbose=2):
    m = Sequential([Input(shape=(784,)), Dense(256, activation=act, kernel_initializer=init),
                    Dense(128, activation=act, kernel_initializer=init),
                    Dense(64, activation=act, kernel_initializer=init), Dense(10, activation='softmax')])
    m.compile(optimizer=opt, loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    return m.fit(x_train, y_train, epochs=epochs, batch_size=64, validation_split=0.2, verbose=verbose)
"""


# ------------------------------------------------------------------------------------ builders

def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": textwrap.dedent(text).strip("\n")}


def code(src: str, out: str | None = None, result: str | None = None, count: int | None = None) -> dict:
    outputs = []
    if out:
        outputs.append({"output_type": "stream", "name": "stdout", "text": out})
    if result:
        outputs.append({"output_type": "execute_result", "execution_count": count, "metadata": {},
                        "data": {"text/plain": result}})
    return {"cell_type": "code", "metadata": {}, "execution_count": count,
            "source": textwrap.dedent(src).strip("\n"), "outputs": outputs}


def k3(vals: list[float], planned: int | None = None, loss: list[float] | None = None, steps: int = 1500) -> str:
    """A Keras 3 verbose=2 log of one fit with these validation accuracies."""
    planned = planned or len(vals)
    lines = []
    for i, v in enumerate(vals, 1):
        vl = loss[i - 1] if loss else 2.3 - 2 * v
        lines.append(f"Epoch {i}/{planned}\n{steps}/{steps} - 3s - 2ms/step - accuracy: {v:.4f} - "
                     f"loss: {2.3 - 2 * v:.4f} - val_accuracy: {v:.4f} - val_loss: {vl:.4f}\n")
    return "".join(lines)


def write(tmp_path: Path, cells: list[dict], name: str = "nb.ipynb", metadata: dict | None = None,
          number: bool = True) -> Path:
    n = 0
    for c in cells:
        if c["cell_type"] == "code" and number and c["execution_count"] is None:
            n += 1
            c["execution_count"] = n
    doc = {"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def grade(tmp_path: Path, cells: list[dict], lang: str = "en", references: dict | None = None,
          **kw) -> CheckResult:
    return check_notebook(write(tmp_path, cells, **kw), lang=lang, references=references or {})


def status(result: CheckResult, check_id: str) -> tuple[str, str]:
    item = next(c for c in result.checks if c.id == check_id)
    return item.status, item.message


def complete(final_vals: list[float] | None = None, test: str = "Test accuracy: 0.8990\n",
             final_code: str | None = None) -> list[dict]:
    """A full trabajo2 submission in the seed's style; the final model and test cell can vary."""
    final_vals = final_vals or [0.86, 0.89, 0.905]
    return [
        md("# Trabajo 2\nAlumno: Ana Pérez"),
        code(DATA),
        code(HELPER),
        md("## 1. Unidades de activación"),
        code("for a in ['sigmoid', 'relu']:\n    red(act=a)", k3([0.3, 0.5, 0.6]) + k3([0.78, 0.82, 0.84])),
        md("## 2. Inicialización de parámetros"),
        code("for i in ['zeros', 'random_normal', 'glorot_uniform']:\n    red(init=i)",
             k3([0.1, 0.1, 0.1]) + k3([0.7, 0.78, 0.8]) + k3([0.78, 0.82, 0.84])),
        md("## 3. Optimizadores"),
        code("for o in ['sgd', 'rmsprop', 'adam']:\n    red(opt=o)",
             k3([0.78, 0.82, 0.84]) + k3([0.82, 0.85, 0.86]) + k3([0.83, 0.86, 0.87])),
        md("## 4. Regularización y red final"),
        code(final_code or """
            final = Sequential([Input(shape=(784,)), Dense(512, activation='relu'), Dropout(0.3),
                                Dense(10, activation='softmax')])
            final.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
            h = final.fit(x_train, y_train, epochs=3, batch_size=128, validation_split=0.2, verbose=2)
        """, k3(final_vals)),
        md("### Pregunta 4.2: evaluación en test"),
        code("loss, acc = final.evaluate(x_test, y_test, verbose=0)\nprint('Test accuracy:', acc)", test),
    ]


# ------------------------------------------------------------------------------------ headings

@pytest.mark.parametrize("text, expected", [
    ("1. Unidades de activación", ("activations", False)),
    ("Ejercicio 1: Partiendo de una red sencilla (optimizadores aparte)", ("activations", True)),
    ("Pregunta 1: funciones de activación", ("activations", True)),
    ("Exercise 2: weight initialization", ("initializers", True)),
    ("Inicializacion de parametros", ("initializers", False)),
    ("Ejercicio 3: partiendo de la mejor inicialización, optimizadores", ("optimizers", True)),
    ("Ejercicio 4.1: red final", ("final_model", True)),
    ("Pregunta 4.2. Evaluación en test", ("test_evaluation", True)),
    ("4.2 Evaluación en test", ("test_evaluation", True)),
    ("Question 4.2: test set evaluation", ("test_evaluation", True)),
    ("Ejercicio 10", None),
    ("Conclusiones", None),
])
def test_heading_matcher(text, expected):
    assert HeadingMatcher(TRABAJO2).match(text) == expected


def test_sections_from_markdown_bold_lines_and_code_comments(tmp_path):
    nb = read_notebook(write(tmp_path, [
        md("# Trabajo 2"),                                   # 1
        code("import keras"),                                # 2: before any section
        md("**Ejercicio 1:** funciones de activación"),      # 3
        code("x = 1"),                                       # 4
        code("# Ejercicio 2\nx = 2"),                        # 5: a comment heading a code cell
        md("## 4. Regularización y red final"),              # 6
        md("### Optimizador elegido: Adam"),                 # 7: a subheading, not exercise 3
        code("x = 3"),                                       # 8
        md("## Pregunta 4.2"),                               # 9
        code("x = 4"),                                       # 10
    ]))
    secs = sections(nb, TRABAJO2)
    assert secs.by_cell == (None, None, "activations", "activations", "initializers", "final_model",
                            "final_model", "final_model", "test_evaluation", "test_evaluation")


def test_an_unmapped_heading_ends_the_subheadings_of_the_section_above(tmp_path):
    nb = read_notebook(write(tmp_path, [
        md("## Punto de partida"), code("x = 1"),
        md("## Tareas"),
        md("### Añadir Batch Normalization"), code("x = 2"),
        md("### Ajuste de la tasa de aprendizaje"), code("x = 3"),
    ]))
    assert sections(nb, CHALLENGE).by_cell == ("baseline", "baseline", "baseline", "batchnorm", "batchnorm",
                                                "reduce_lr", "reduce_lr")


def test_a_subheading_moves_on_to_a_later_exercise_only(tmp_path):
    nb = read_notebook(write(tmp_path, [
        md("## Punto de partida"), code("x = 1"),
        md("### Añadir Batch Normalization"), code("x = 2"),   # a later exercise: a new section
        md("### Ajuste de la tasa de aprendizaje"), code("x = 3"),
        md("#### Batch normalization en esta red"), code("x = 4"),  # an earlier one: still reduce_lr
    ]))
    assert sections(nb, CHALLENGE).by_cell == ("baseline", "baseline", "batchnorm", "batchnorm", "reduce_lr",
                                                "reduce_lr", "reduce_lr", "reduce_lr")


# ------------------------------------------------------------------------------------ identity

@pytest.mark.parametrize("cells, metadata, expected", [
    ([md("# Trabajo 2\n**Alumno:** Andrés Pascual Gómez")], None, "Andrés Pascual Gómez"),
    ([md("Alumno: Raúl Medina Ortiz — curso 2018/19")], None, "Raúl Medina Ortiz"),
    ([md("Student: **Emma Clarke** (Erasmus)")], None, "Emma Clarke"),
    ([md("Nombre: Luis Gil\nGrupo: B")], None, "Luis Gil"),
    ([md("**Alumno/a**: Sara Núñez")], None, "Sara Núñez"),
    ([md("Nombre del alumno: Iker Etxeberria")], None, "Iker Etxeberria"),
    ([md("Nombre de la red: MLP\n\nNombre y apellidos: Ana Ruiz")], None, "Ana Ruiz"),
    ([md("# Trabajo 2\n### Javier Ortega Blanco\n\nEntreno con...")], None, "Javier Ortega Blanco"),
    ([md("# Trabajo 2\nPablo Iglesias — entrega parcial (ejercicios 1-3)")], None, "Pablo Iglesias"),
    ([md("# Trabajo 2\n## Aspectos prácticos de las redes neuronales — Irene Castaño")], None, "Irene Castaño"),
    ([md("# Challenge S3\n## Batch Normalization\n## Deep Learning")], None, "nb"),
    ([md("# Trabajo 2")], {"authors": [{"name": "Marta Lozano Fuentes"}]}, "Marta Lozano Fuentes"),
])
def test_student_name(tmp_path, cells, metadata, expected):
    nb = read_notebook(write(tmp_path, cells + [code("x = 1")], metadata=metadata))
    assert student_name(nb) == expected


def test_assignment_detection(tmp_path):
    both = [TRABAJO2, CHALLENGE]
    nb = read_notebook(write(tmp_path, [md("## 1. Unidades de activación"), md("## 2. Inicialización"),
                                        code("x = 1")]))
    assert detect_assignment(nb, extract([]), both).id == "trabajo2"
    nb = read_notebook(write(tmp_path, [md("# Challenge S3"), md("## Punto de partida"),
                                        md("### Añadir Batch Normalization"), code("x = 1")]))
    assert detect_assignment(nb, extract([]), both).id == "challenge_s3"
    nb = read_notebook(write(tmp_path, [md("# Mis notas"), code("x = 1")]))
    with pytest.raises(GraderError, match="cannot tell which assignment"):
        detect_assignment(nb, extract([]), both)


# ------------------------------------------------------------------------------------ the rubric

def test_complete_submission_passes_every_required_check(tmp_path):
    r = grade(tmp_path, complete())
    assert r.passed and r.exit_code == 0
    assert [c.status for c in r.checks] == ["pass", "pass", "pass", "fail", "pass", "pass", "pass"]
    assert r.total == 9.5 and r.max_total == 10.0
    assert r.final.val_accuracy == 0.905 and r.final.test_accuracy == 0.899
    assert r.facts.exercises == ("activations", "initializers", "optimizers", "final_model", "test_evaluation")
    assert r.facts.activations == ("sigmoid", "relu")
    assert r.facts.initializers == ("zeros", "random_normal", "glorot_uniform")
    assert [(x.cell, x.label) for x in r.runs] == [
        (5, "sigmoid"), (5, "relu"), (7, "zeros"), (7, "random_normal"), (7, "glorot_uniform"),
        (9, "sgd"), (9, "rmsprop"), (9, "adam"), (11, "final")]
    assert status(r, "epochs") == ("fail", "cells 5, 7 and 9: 3 epochs per run; the assignment asks for 40 "
                                           "(an EarlyStopping callback may stop earlier)")
    assert [h.check for h in r.hints] == ["epochs"] and r.hints[0].gain == 0.5
    assert r.student == "Ana Pérez" and r.assignment == "trabajo2"


def test_to_dict_has_the_issue_keys_in_order_and_0_based_cells(tmp_path):
    d = grade(tmp_path, complete()).to_dict()
    assert list(d) == ["grader_version", "notebook_sha256", "student", "assignment", "total", "max_total",
                       "checks", "runs", "final", "facts"]
    assert list(d["checks"][0]) == ["id", "status", "points", "max_points", "message", "evidence"]
    assert list(d["checks"][0]["evidence"]) == ["cell", "excerpt"]
    assert list(d["runs"][0]) == ["cell", "label", "epochs", "accuracy", "val_accuracy", "loss", "val_loss"]
    assert list(d["final"]) == ["val_accuracy", "test_accuracy", "cell_val", "cell_test"]
    assert list(d["facts"]) == ["exercises", "activations", "initializers", "optimizers", "validation_fraction",
                                "test_leakage", "model_reuse", "outputs_saved", "executed_in_order"]
    assert d["final"]["cell_val"] == 10 and d["runs"][0]["cell"] == 4  # "cell 11" and "cell 5" in messages
    json.dumps(d, allow_nan=False)


def test_final_thresholds_full_partial_fail(tmp_path):
    assert status(grade(tmp_path, complete([0.85, 0.89])), "final_model")[0] == "partial"
    r = grade(tmp_path, complete([0.85, 0.87], test="Test accuracy: 0.8650\n"))
    st, message = status(r, "final_model")
    assert st == "fail" and "0.8700" in message and "cell 11" in message and r.exit_code == 1
    assert next(c for c in r.checks if c.id == "final_model").points == 0.0
    partial = next(c for c in grade(tmp_path, complete([0.85, 0.89])).checks if c.id == "final_model")
    assert partial.points == 0.75


def test_test_gap_and_missing_test(tmp_path):
    st, message = status(grade(tmp_path, complete(test="Test accuracy: 0.8500\n")), "test_evaluation")
    assert st == "partial" and "0.0550" in message
    cells = complete()[:-1]
    assert status(grade(tmp_path, cells), "test_evaluation")[0] == "missing"


def test_an_unnamed_result_of_a_test_evaluation_is_the_test_accuracy(tmp_path):
    r = grade(tmp_path, complete(test="Accuracy: 0.8950\n"))
    assert (r.final.test_accuracy, r.final.cell_test) == (0.895, 13)
    assert status(r, "test_evaluation")[0] == "pass"


def test_comparison_names_what_is_missing_and_where(tmp_path):
    cells = complete()
    cells[4] = code("red(act='sigmoid')", k3([0.3, 0.5, 0.6]))
    r = grade(tmp_path, cells)
    st, message = status(r, "activations")
    assert st == "fail" and message == "train with 'relu' too: cell 5 trains only 'sigmoid'"
    r = grade(tmp_path, cells, lang="es")
    assert status(r, "activations")[1] == "entrena también con 'relu': celda 5 solo entrena 'sigmoid'"


def test_restore_best_weights_reads_the_epoch_the_monitor_chose(tmp_path):
    final = """
        from keras.callbacks import EarlyStopping
        final = Sequential([Input(shape=(784,)), Dense(512, activation='relu'), Dense(10, activation='softmax')])
        final.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
        es = EarlyStopping(monitor='val_loss', patience=2, restore_best_weights=True)
        h = final.fit(x_train, y_train, epochs=20, batch_size=128, validation_split=0.2, callbacks=[es], verbose=2)
    """
    cells = complete(final_code=final)
    cells[10]["outputs"][0]["text"] = k3([0.88, 0.902, 0.91, 0.912], planned=20, loss=[0.35, 0.30, 0.31, 0.32])
    r = grade(tmp_path, cells)
    assert r.final.val_accuracy == 0.902  # min val_loss at epoch 2, not the max val_accuracy
    assert status(r, "final_model")[1] == "validation accuracy 0.9020 (epoch 2, restored by EarlyStopping, cell 11)"


def test_keras2_without_early_stop_keeps_the_last_epoch(tmp_path):
    final = """
        from keras.callbacks import EarlyStopping
        final = Sequential([Input(shape=(784,)), Dense(512, activation='relu'), Dense(10, activation='softmax')])
        final.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['acc'])
        h = final.fit(x_train, y_train, epochs=3, validation_split=0.2, verbose=2,
                      callbacks=[EarlyStopping(patience=5, restore_best_weights=True)])
    """
    log = "Train on 48000 samples, validate on 12000 samples\n" + "".join(
        f"Epoch {i}/3\n - 3s - loss: 0.3 - acc: 0.9 - val_loss: {vl} - val_acc: {va}\n"
        for i, (va, vl) in enumerate([(0.90, 0.30), (0.91, 0.28), (0.905, 0.29)], 1))
    cells = complete(final_code=final)
    cells[10]["outputs"][0]["text"] = log
    assert grade(tmp_path, cells).final.val_accuracy == 0.905


def test_validation_on_the_test_set_fails_validation_and_the_final_model(tmp_path):
    cells = complete()
    cells[10]["source"] = cells[10]["source"].replace("validation_split=0.2", "validation_data=(x_test, y_test)")
    r = grade(tmp_path, cells)
    assert r.facts.test_leakage is True and r.facts.validation_fraction == "test_set"
    st, message = status(r, "final_model")
    assert st == "fail" and message.startswith("cell 11 validates on the test set")
    assert status(r, "validation_split")[0] == "fail"
    assert any(f.kind == "test_leakage" and f.cell == 11 for f in r.flags)


def test_choosing_among_candidates_by_test_accuracy_is_leakage_and_names_the_final(tmp_path):
    cells = [
        md("# Trabajo 2\nAlumno: Hugo Prieto"), code(DATA),
        md("## Ejercicio 4.1: candidatos"),
        code("""
            modelos = {}
            for tipo in ["dropout", "l2", "batchnorm"]:
                modelos[tipo] = Sequential([Input(shape=(784,)), Dense(64, activation="relu"), Dense(10)])
                modelos[tipo].compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                modelos[tipo].fit(x_train, y_train, epochs=2, validation_split=0.2, verbose=2)
        """, k3([0.80, 0.84]) + k3([0.81, 0.85]) + k3([0.82, 0.83])),
        md("## Pregunta 4.2"),
        code("""
            res = {}
            for tipo, m in modelos.items():
                res[tipo] = m.evaluate(x_test, y_test, verbose=0)[1]
                print(f"{tipo:10s} test accuracy = {res[tipo]:.4f}")
            mejor = max(res, key=res.get)
            print("Mejor modelo:", mejor)
        """, "dropout    test accuracy = 0.8312\nl2         test accuracy = 0.8456\n"
             "batchnorm  test accuracy = 0.8201\nMejor modelo: l2\n"),
    ]
    r = grade(tmp_path, cells)
    assert r.facts.test_leakage is True
    assert (r.final.run.label, r.final.val_accuracy, r.final.test_accuracy) == ("l2", 0.85, 0.8456)
    assert status(r, "final_model")[0] == "fail"
    assert r.facts.exercises == ("final_model", "test_evaluation")


def test_model_reuse_in_code_makes_the_comparison_partial(tmp_path):
    cells = complete()
    cells[8] = code("""
        m = Sequential([Input(shape=(784,)), Dense(256, activation='relu'), Dense(10, activation='softmax')])
        for o in ['sgd', 'rmsprop', 'adam']:
            m.compile(optimizer=o, loss='sparse_categorical_crossentropy', metrics=['accuracy'])
            m.fit(x_train, y_train, epochs=3, validation_split=0.2, verbose=2)
    """, k3([0.78, 0.82, 0.84]) + k3([0.86, 0.87, 0.88]) + k3([0.89, 0.89, 0.90]))
    r = grade(tmp_path, cells)
    assert r.facts.model_reuse is True
    st, message = status(r, "optimizers")
    assert st == "partial" and message.startswith("cell 9 keeps training the same model")
    assert any(f.kind == "model_reuse" for f in r.flags)


def test_verbose0_runs_read_printed_summaries_and_callback_lines(tmp_path):
    cells = complete()
    cells[2] = code(HELPER.replace("verbose=2", "verbose=0"))
    cells[4] = code("""
        for a in ['sigmoid', 'relu']:
            h = red(act=a, verbose=0)
            print(a, '-> max val_accuracy:', round(max(h.history['val_accuracy']), 4))
    """, "sigmoid -> max val_accuracy: 0.4512\nrelu -> max val_accuracy: 0.8123\n")
    cells[10] = code("""
        class UnaLinea(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                print(f"época {epoch + 1} | acc {logs['accuracy']:.4f} | val_acc {logs['val_accuracy']:.4f}")
        final = Sequential([Input(shape=(784,)), Dense(512, activation='relu'), Dense(10, activation='softmax')])
        final.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
        h = final.fit(x_train, y_train, epochs=3, validation_split=0.2, verbose=0, callbacks=[UnaLinea()])
    """, "época 1 | acc 0.85 | val_acc 0.8611\népoca 2 | acc 0.89 | val_acc 0.8911\n"
         "época 3 | acc 0.91 | val_acc 0.9011\n")
    r = grade(tmp_path, cells)
    sig, relu = r.runs[0], r.runs[1]
    assert (sig.label, sig.read_val, sig.read_rule, sig.epochs) == ("sigmoid", 0.4512, "printed", 3)
    assert (relu.label, relu.read_val) == ("relu", 0.8123)
    assert r.final.val_accuracy == 0.9011 and r.runs[-1].curves["val_accuracy"] == (0.8611, 0.8911, 0.9011)
    assert status(r, "activations")[0] == "pass"


def test_a_loop_over_unknown_items_keeps_every_logged_run(tmp_path):
    cells = complete()
    cells[4] = code("""
        for a in activaciones_de_otro_sitio():
            print('Entrenando', a)
            red(act=a)
    """, "Entrenando sigmoid\n" + k3([0.3, 0.5, 0.6]) + "Entrenando relu\n" + k3([0.78, 0.82, 0.84]))
    r = grade(tmp_path, cells)
    assert [x.label for x in r.runs[:2]] == ["sigmoid", "relu"]  # the variant its log names
    assert r.facts.activations == ("sigmoid", "relu")


def test_no_outputs(tmp_path):
    cells = complete()
    for c in cells:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    r = check_notebook(write(tmp_path, cells, number=False), lang="en", references={})
    assert r.facts.outputs_saved is False and r.facts.executed_in_order is None
    message = "the notebook was saved without outputs; run all cells and save"
    for cid in ("activations", "initializers", "optimizers", "final_model", "test_evaluation"):
        assert status(r, cid) == ("fail", message)
    assert status(r, "validation_split")[0] == "pass"  # read from the code
    assert r.flags[0].kind == "no_outputs" and r.flags[0].message == message
    assert r.final.val_accuracy is None and r.runs == () and r.to_dict()["runs"] == []


def test_markdown_claims_without_output_are_unverified(tmp_path):
    cells = complete()
    cells[10]["outputs"] = []
    cells[12]["outputs"] = []
    cells.insert(11, md("Con esta red final obtuvimos un **91%** de accuracy en validación, así que cumple "
                        "el objetivo del 90%."))
    cells.append(md("En test obtuvimos un 89,7%, muy parecido a validación. Usamos el 20% como validación."))
    r = grade(tmp_path, cells)
    claims = [(c.cell, c.split, c.value, c.verified) for c in r.claims]
    assert claims == [(12, "validation", 0.91, False), (15, "test", 0.897, False)]
    assert status(r, "final_model")[1].startswith("no output shows the final model's validation accuracy "
                                                  "(cell 11); the 91% in cell 12 is unverified")
    assert [f.message for f in r.flags if f.kind == "unverified_claim"] == [
        "cell 12: the 91% claimed in the text is not shown by any output",
        "cell 15: the 89.7% claimed in the text is not shown by any output"]


def test_a_claim_an_output_shows_is_verified(tmp_path):
    cells = complete()
    cells.append(md("La red final llega al 90.5% en validación y al 89.9% en test."))
    assert all(c.verified for c in grade(tmp_path, cells).claims)


def test_out_of_order_execution_is_flagged(tmp_path):
    cells = complete()
    counts = iter([1, 2, 7, 3, 4, 5, 6])
    for c in cells:
        if c["cell_type"] == "code":
            c["execution_count"] = next(counts)
    r = grade(tmp_path, cells)
    assert r.facts.executed_in_order is False
    flag = next(f for f in r.flags if f.kind == "out_of_order")
    assert flag.cell == 5 and "cell 5 ran after cell 7" in flag.message


def test_damaged_notebook_is_refused(tmp_path):
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": 42, "outputs": "x"}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(NotebookError, match="not a valid notebook .cell 1: source is not text"):
        check_notebook(path, references={})


def test_challenge_s3(tmp_path):
    def cell(bn: bool, epochs: int, cb: bool) -> str:
        return (DATA + "X_valid, Y_valid = x_train[:10000], y_train[:10000]\n"
                "X_tr, Y_tr = x_train[10000:], y_train[10000:]\nmodel = Sequential()\n"
                "model.add(Dense(512, activation='relu', input_shape=(784,)))\n"
                + ("model.add(keras.layers.BatchNormalization())\n" if bn else "")
                + "model.add(Dense(10, activation='softmax'))\n"
                "model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])\n"
                + ("cbs = [keras.callbacks.ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=2)]\n"
                   if cb else "")
                + f"model.fit(X_tr, Y_tr, batch_size=128, epochs={epochs}, verbose=1, "
                  f"validation_data=(X_valid, Y_valid){', callbacks=cbs' if cb else ''})\n"
                  "print(model.evaluate(x_test, y_test, verbose=0))")
    cells = [md("# Challenge S3: Redes Neuronales Profundas en Keras (DNNs)\n**Nerea Gil Ibáñez**"),
             md("## Punto de partida"), code(cell(False, 2, False), k3([0.85, 0.87], steps=391) + "[0.35, 0.8650]\n"),
             md("## Tareas"), md("### Añadir Batch Normalization"),
             code(cell(True, 2, False), k3([0.86, 0.88], steps=391) + "[0.33, 0.8750]\n"),
             md("### Ajuste de la tasa de aprendizaje"),
             code(cell(True, 3, True), k3([0.87, 0.89, 0.895], steps=391) + "[0.31, 0.8880]\n")]
    r = check_notebook(write(tmp_path, cells), lang="en", references={})
    assert r.assignment == "challenge_s3" and r.student == "Nerea Gil Ibáñez"
    assert r.facts.validation_fraction == "first_10k"
    assert r.facts.exercises == ("baseline", "batchnorm", "reduce_lr", "test_evaluation")
    assert [x.label for x in r.runs] == ["baseline", "batchnorm", "reduce_lr"]
    assert (r.final.val_accuracy, r.final.test_accuracy, r.final.cell_test) == (0.895, 0.888, 8)
    assert [c.status for c in r.checks] == ["pass"] * 6 and r.exit_code == 0
    assert r.facts.activations == () and r.checks[4].title == "Final model"


# ------------------------------------------------------------------------------------ plausibility

def record(exp_id: str, curves: list[list[float]]) -> RunRecord:
    hist = tuple(SeedHistory(seed=i, accuracy=tuple(c), loss=tuple(1 - v for v in c), val_accuracy=tuple(c),
                             val_loss=tuple(1 - v for v in c), best_epoch=len(c)) for i, c in enumerate(curves))
    return RunRecord(exp_id, "trabajo2", {}, "0" * 16, tuple(range(len(curves))), hist, {}, {})


REFS = {
    "inits.zeros": record("inits.zeros", [[0.10, 0.10, 0.10], [0.10, 0.099, 0.101]]),
    "optimizers.sgd": record("optimizers.sgd", [[0.76, 0.80, 0.82], [0.77, 0.81, 0.83]]),
    "activations.sigmoid": record("activations.sigmoid", [[0.25, 0.45, 0.55], [0.3, 0.5, 0.6]]),
}


def test_a_curve_far_above_the_reference_band_is_flagged(tmp_path):
    cells = complete()
    cells[6] = code("for i in ['zeros', 'random_normal', 'glorot_uniform']:\n    red(init=i)",
                    k3([0.1, 0.5, 0.85]) + k3([0.7, 0.78, 0.8]) + k3([0.78, 0.82, 0.84]))
    r = grade(tmp_path, cells, references=REFS)
    st, message = status(r, "initializers")
    assert st == "partial"
    assert message.startswith("cell 7: 'zeros' reaches 0.5000 at epoch 2, more than such a model can (0.1510)")
    assert any(f.kind == "implausible" and f.cell == 7 for f in r.flags)
    assert r.facts.model_reuse is False


def test_a_first_epoch_a_fresh_model_cannot_have_is_model_reuse(tmp_path):
    cells = complete()
    cells[8] = code("for o in ['sgd', 'rmsprop', 'adam']:\n    red(opt=o)",
                    k3([0.90, 0.91, 0.92]) + k3([0.82, 0.85, 0.86]) + k3([0.83, 0.86, 0.87]))
    r = grade(tmp_path, cells, references=REFS)
    assert r.facts.model_reuse is True
    assert status(r, "optimizers")[1].startswith("cell 9: 'sgd' starts at 0.9000 after one epoch")


def test_plausibility_needs_the_same_training_and_the_records(tmp_path):
    cells = complete()
    cells[8] = code("for o in [keras.optimizers.SGD(learning_rate=0.1), 'rmsprop', 'adam']:\n    red(opt=o)",
                    k3([0.90, 0.91, 0.92]) + k3([0.82, 0.85, 0.86]) + k3([0.83, 0.86, 0.87]))
    assert status(grade(tmp_path, cells, references=REFS), "optimizers")[0] == "pass"  # lr 0.1 is not the reference's
    assert grade(tmp_path, complete(), references=REFS).passed
    assert status(grade(tmp_path, cells, references={}), "optimizers")[0] == "pass"


def test_a_different_architecture_is_not_compared(tmp_path):
    """A shallower net legitimately learns faster than the reference's 3 hidden layers."""
    cells = complete()
    cells[2] = code(HELPER.replace("Dense(128, activation=act, kernel_initializer=init),\n", ""))
    cells[6] = code("for i in ['zeros', 'random_normal', 'glorot_uniform']:\n    red(init=i)",
                    k3([0.1, 0.5, 0.85]) + k3([0.7, 0.78, 0.8]) + k3([0.78, 0.82, 0.84]))
    assert status(grade(tmp_path, cells, references=REFS), "initializers")[0] == "pass"


def test_smaller_batches_are_compared_by_optimizer_steps(tmp_path):
    cells = complete()
    cells[2] = code(HELPER.replace("batch_size=64", "batch_size=16"))
    cells[8] = code("for o in ['sgd', 'rmsprop', 'adam']:\n    red(opt=o)",  # 4x the steps of the reference
                    k3([0.83, 0.85, 0.86], steps=3000) + k3([0.82, 0.85, 0.86]) + k3([0.83, 0.86, 0.87]))
    assert status(grade(tmp_path, cells, references=REFS), "optimizers")[0] == "pass"


# ------------------------------------------------------------------------------------ messages

def _keys(table: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in table.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_message_files_have_the_same_keys_and_placeholders():
    es, en = messages.load("es"), messages.load("en")
    assert _keys(dict(es.table)) == _keys(dict(en.table))
    for key in _keys(dict(es.table)):
        ph = re.compile(r"{(\w+)}")
        assert set(ph.findall(es.text(key))) == set(ph.findall(en.text(key))), key


def test_every_message_of_a_result_is_filled_in(tmp_path):
    for lang in ("es", "en"):
        cells = complete(test="Test accuracy: 0.8000\n")
        cells[4] = code("red(act='sigmoid')", k3([0.3, 0.5, 0.6]))
        r = grade(tmp_path, cells, lang=lang)
        texts = [c.message for c in r.checks] + [h.text for h in r.hints] + [f.message for f in r.flags]
        assert not [t for t in texts if "{" in t or "msg." in t], texts


@pytest.mark.parametrize("env, expected", [
    ({"LANG": "en_GB.UTF-8"}, "en"), ({"LANG": "es_ES.UTF-8"}, "es"), ({"LANG": "C.UTF-8"}, "es"),
    ({}, "es"), ({"LC_ALL": "en_US.UTF-8", "LANG": "es_ES.UTF-8"}, "en"), ({"LANG": "fr_FR.UTF-8"}, "es"),
])
def test_language_from_the_environment(env, expected):
    assert messages.resolve_lang(None, env) == expected
    assert messages.resolve_lang("en", env) == "en"


def test_references_are_read_as_the_runner_reads_them():
    from grader.experiments.runner import load_reference, reference_dir
    from grader.submission import load_references

    for name in ("trabajo2", "challenge_s3"):
        battery = assignment_mod.load(name)
        assert load_references(battery, reference_dir()) == load_reference(battery, reference_dir())


def test_epochs_stopped_early_by_a_callback_count_as_trained(tmp_path):
    cells = complete()
    helper = HELPER.replace("verbose=verbose)", "verbose=verbose,\n                 callbacks=[keras.callbacks."
                                                "EarlyStopping(patience=2)])").replace("epochs=3", "epochs=40")
    cells[2] = code(helper)
    for i in (4, 6, 8):  # the logs stop after 3 of the 40 planned epochs
        cells[i]["outputs"][0]["text"] = cells[i]["outputs"][0]["text"].replace("/3\n", "/40\n")
    r = grade(tmp_path, cells)
    assert status(r, "epochs") == ("pass", "every comparison run trains 40 epochs (or a callback stops it)")
    assert r.total == 10.0 and r.runs[0].epochs == 3 and r.runs[0].planned_epochs == 40


def test_extras_carry_hints_and_flags_with_json_cells(tmp_path):
    cells = complete()
    cells[10]["source"] = cells[10]["source"].replace("validation_split=0.2", "validation_data=(x_test, y_test)")
    extras = grade(tmp_path, cells).extras()
    assert extras["lang"] == "en"
    assert extras["flags"][0] == {"kind": "test_leakage", "cell": 10, "excerpt": extras["flags"][0]["excerpt"],
                                  "message": "cell 11: validates on the test set (validation_data=(x_test, y_test))"}
    assert {h["check"] for h in extras["hints"]} == {"validation_split", "final_model", "epochs"}
