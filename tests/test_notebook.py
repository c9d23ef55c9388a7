"""grader.notebook: reading real-world .ipynb files into plain values, and refusing bad ones clearly."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest

from grader.errors import GraderError, NotebookError
from grader.notebook import Cell, Notebook, Output, read_notebook


def _nb(cells: list[dict], **extra) -> dict:
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
    }
    nb.update(extra)
    return nb


def _code(source, outputs=(), count=None) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": source,
            "execution_count": count, "outputs": list(outputs)}


def _md(source) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def _stream(text, name="stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def _write(tmp_path: Path, data, name="ana.ipynb") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _one_line_error(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert msg.startswith(str(path) + ": ")
    assert "\n" not in msg and "Traceback" not in msg
    assert isinstance(exc.value, GraderError) and exc.value.exit_code == 2
    return msg


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()

GOOD = _nb([
    _md("# Trabajo 2\n"),
    _code(["import keras\n", "print('hola')"], [_stream("hola\n")], count=1),
    _code("model.fit(x, y)", [
        _stream("Epoch 1/2\n"),
        _stream(" - 3s - loss: 0.5 - acc: 0.8\n"),
        _stream("WARNING: slow\n", name="stderr"),
        {"output_type": "execute_result", "execution_count": 2, "metadata": {},
         "data": {"text/plain": ["<keras.callbacks.History at 0x7f>"]}},
        {"output_type": "display_data", "metadata": {},
         "data": {"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": PNG}},
    ], count=2),
    _code("1/0", [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                   "traceback": ["\x1b[0;31m---------\x1b[0m", "ZeroDivisionError: division by zero"]}],
          count=3),
    {"cell_type": "raw", "metadata": {}, "source": "raw text"},
])


def test_reads_cells_outputs_and_metadata(tmp_path):
    path = _write(tmp_path, GOOD)
    nb = read_notebook(path)
    assert nb.path == str(path)
    assert nb.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (nb.nbformat, nb.nbformat_minor, nb.kernel_name) == (4, 5, "python3")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code", "raw"]
    assert [c.index for c in nb.cells] == [0, 1, 2, 3, 4]
    assert [c.number for c in nb.cells] == [1, 2, 3, 4, 5]
    assert nb.cells[1].source == "import keras\nprint('hola')"
    assert [c.number for c in nb.code_cells] == [2, 3, 4]
    fit = nb.cells[2]
    assert fit.execution_count == 2
    assert [o.kind for o in fit.outputs] == ["stream", "stream", "stream", "execute_result", "display_data"]
    assert [o.name for o in fit.outputs] == ["stdout", "stdout", "stderr", None, None]
    assert fit.outputs[3].text == "<keras.callbacks.History at 0x7f>"
    assert fit.outputs[4].has_image and not fit.outputs[3].has_image
    err = nb.cells[3].outputs[0]
    assert err.kind == "error"
    assert err.text.startswith("ZeroDivisionError: division by zero\n\x1b[0;31m")  # ANSI left in
    assert nb.repairs == () and nb.encoding == "utf-8"


def test_output_text_joins_streams_and_separates_results(tmp_path):
    nb = read_notebook(_write(tmp_path, GOOD))
    assert nb.cells[2].output_text == (
        "Epoch 1/2\n - 3s - loss: 0.5 - acc: 0.8\nWARNING: slow\n"
        "<keras.callbacks.History at 0x7f>\n<Figure size 640x480 with 1 Axes>")
    split = Cell(index=0, cell_type="code", source="", outputs=(
        Output("stream", "stdout", " - 3s - loss: 0.4 - val_lo"),
        Output("stream", "stdout", "ss: 0.41 - val_acc: 0.85\n"),
        Output("execute_result", None, "[0.35, 0.87]"),
        Output("stream", "stdout", "Test accuracy: 0.87\n"),
    ))
    assert split.output_text == " - 3s - loss: 0.4 - val_loss: 0.41 - val_acc: 0.85\n[0.35, 0.87]\nTest accuracy: 0.87\n"


def test_execution_order_and_outputs_flags(tmp_path):
    in_order = read_notebook(_write(tmp_path, _nb([_code("a", count=1), _md("x"), _code("b", count=5),
                                                    _code("c", count=None)]), "a.ipynb"))
    assert in_order.executed_in_order is True
    assert in_order.has_outputs is False
    shuffled = read_notebook(_write(tmp_path, _nb([_code("a", [_stream("x\n")], count=3),
                                                    _code("b", count=2)]), "b.ipynb"))
    assert shuffled.executed_in_order is False and shuffled.has_outputs is True
    repeated = read_notebook(_write(tmp_path, _nb([_code("a", count=2), _code("b", count=2)]), "c.ipynb"))
    assert repeated.executed_in_order is False
    never = read_notebook(_write(tmp_path, _nb([_code("a"), _code("b")]), "d.ipynb"))
    assert never.executed_in_order is None and never.has_outputs is False


def test_invalid_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "ana.ipynb"
    path.write_text('{\n  "cells": [\n    {"cell_type": "code",, }\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(NotebookError) as exc:
        read_notebook(path)
    msg = _one_line_error(exc, path)
    assert msg.startswith(f"{path}: not a notebook (invalid JSON at line 3, column 26")


def test_truncated_file_is_reported_as_truncated(tmp_path):
    full = json.dumps(GOOD, indent=1)
    path = tmp_path / "cut.ipynb"
    path.write_text(full[: len(full) // 2], encoding="utf-8")
    with pytest.raises(NotebookError) as exc:
        read_notebook(path)
    assert "truncated file (the JSON stops at line" in _one_line_error(exc, path)
    # cut inside a long string (a base64 image): json reports where the string started
    path.write_text(full[: full.index(PNG) + 10], encoding="utf-8")
    with pytest.raises(NotebookError, match="truncated file"):
        read_notebook(path)


def test_cp1252_file_is_decoded(tmp_path):
    text = json.dumps(_nb([_md("# Precisión en validación\n"),
                           _code("print('Precisión')", [_stream("Precisión en test = 0.8760\n")], 1)]),
                      ensure_ascii=False)
    path = tmp_path / "win.ipynb"
    path.write_bytes(text.encode("cp1252"))
    nb = read_notebook(path)
    assert nb.encoding == "cp1252" and nb.repairs == ("decoded as cp1252",)
    assert nb.cells[0].source == "# Precisión en validación\n"
    assert nb.cells[1].outputs[0].text == "Precisión en test = 0.8760\n"
    assert nb.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_utf8_bom_and_utf16_are_read(tmp_path):
    text = json.dumps(_nb([_md("# Ejercicio 1: ñandú\n")]), ensure_ascii=False)
    bom = tmp_path / "bom.ipynb"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    nb = read_notebook(bom)
    assert nb.cells[0].source == "# Ejercicio 1: ñandú\n" and nb.encoding == "utf-8"
    u16 = tmp_path / "u16.ipynb"
    u16.write_bytes(text.encode("utf-16"))
    assert read_notebook(u16).cells[0].source == "# Ejercicio 1: ñandú\n"


def test_oversize_file_is_refused_with_size_and_limit(tmp_path):
    path = _write(tmp_path, _nb([_md("x" * 300_000)]))
    with pytest.raises(NotebookError) as exc:
        read_notebook(path, max_bytes=100_000)
    msg = _one_line_error(exc, path)
    assert "file too large (0.3 MB; the limit is 0.1 MB)" in msg
    assert read_notebook(path, max_bytes=1_000_000).cells[0].source.startswith("xxx")


def test_nbformat3_notebook_is_converted(tmp_path):
    v3 = {
        "nbformat": 3, "nbformat_minor": 0,
        "metadata": {"name": "trabajo2"},
        "worksheets": [{"cells": [
            {"cell_type": "heading", "level": 1, "metadata": {}, "source": "Trabajo 2"},
            {"cell_type": "code", "collapsed": False, "input": ["score = model.evaluate(x, y)\n", "score"],
             "language": "python", "metadata": {}, "prompt_number": 7,
             "outputs": [
                 {"output_type": "stream", "stream": "stdout", "text": ["Epoch 1/1\n"]},
                 {"output_type": "pyout", "prompt_number": 7, "metadata": {},
                  "text": ["[0.3456415989637375, 0.8808]"]},
                 {"output_type": "display_data", "metadata": {}, "png": PNG, "text": ["<Figure>"]},
             ]},
        ]}],
    }
    nb = read_notebook(_write(tmp_path, v3, "old.ipynb"))
    assert nb.nbformat == 3
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    assert nb.cells[0].source == "# Trabajo 2"
    code = nb.cells[1]
    assert code.source == "score = model.evaluate(x, y)\nscore" and code.execution_count == 7
    assert [(o.kind, o.name) for o in code.outputs] == [("stream", "stdout"), ("execute_result", None),
                                                        ("display_data", None)]
    assert code.outputs[1].text == "[0.3456415989637375, 0.8808]"
    assert code.outputs[2].has_image


def test_schema_problems_are_normalized_not_refused(tmp_path):
    data = {
        "nbformat": 4, "nbformat_minor": 2,  # no notebook metadata at all
        "cells": [
            {"cell_type": "code", "source": "fit()",  # no metadata, no execution_count
             "outputs": [{"output_type": "stream", "text": ["Epoch 1/", "3\n"]},  # no name
                         {"output_type": "execute_result", "data": {"text/plain": "0.87"}}]},
            {"source": ["# Ejercicio 2"]},  # no cell_type
            {"cell_type": "code", "execution_count": "4", "source": "x", "outputs": "oops"},
            "not a cell",
        ],
    }
    nb = read_notebook(_write(tmp_path, data))
    assert nb.kernel_name is None
    assert [c.cell_type for c in nb.cells] == ["code", "markdown", "code", "raw"]
    assert nb.cells[0].execution_count is None
    assert nb.cells[0].output_text == "Epoch 1/3\n0.87"
    assert nb.cells[0].outputs[0].name == "stdout"
    assert nb.cells[1].source == "# Ejercicio 2"
    assert nb.cells[2].execution_count == 4 and nb.cells[2].outputs == ()
    assert len(nb.repairs) == 5 and any("execution_count missing" in r for r in nb.repairs)


@pytest.mark.parametrize("content, reason", [
    ("", "empty file"),
    ("[1, 2, 3]", "not a notebook (the JSON is a list"),
    ('{"metadata": {}}', "not a notebook (no 'cells' and no 'nbformat' version)"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "not a notebook (no 'cells' list)"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}', "the notebook has no cells"),
    ('{"nbformat": 3, "nbformat_minor": 0, "metadata": {}}', "cannot convert this nbformat 3 notebook"),
])
def test_not_a_notebook(tmp_path, content, reason):
    path = tmp_path / "x.ipynb"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(NotebookError) as exc:
        read_notebook(path)
    assert reason in _one_line_error(exc, path)


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.ipynb"
    with pytest.raises(NotebookError) as exc:
        read_notebook(missing)
    assert "cannot read the file (No such file or directory)" in _one_line_error(exc, missing)
    with pytest.raises(NotebookError, match="is a directory"):
        read_notebook(tmp_path)


def test_to_dict_round_trip_is_json(tmp_path):
    nb = read_notebook(_write(tmp_path, GOOD))
    blob = json.dumps(nb.to_dict())
    again = Notebook.from_dict(json.loads(blob))
    assert again == nb
    assert json.loads(blob)["cells"][2]["number"] == 3


def test_five_megabyte_notebook_parses_fast(tmp_path):
    image = base64.b64encode(bytes(range(256)) * 1300).decode()  # ~400 kB of base64 per plot
    cells = []
    for i in range(12):
        cells.append(_md(f"## Ejercicio {i}\n"))
        cells.append(_code(f"plot({i})", [
            _stream("".join(f"Epoch {e}/40\n - 3s - loss: 0.4 - acc: 0.85\n" for e in range(1, 41))),
            {"output_type": "display_data", "metadata": {},
             "data": {"text/plain": "<Figure>", "image/png": image}},
        ], count=i + 1))
    path = _write(tmp_path, _nb(cells), "big.ipynb")
    assert path.stat().st_size > 5_000_000
    t0 = time.perf_counter()
    nb = read_notebook(path)
    elapsed = time.perf_counter() - t0
    assert len(nb.cells) == 24 and all(c.outputs[1].has_image for c in nb.code_cells)
    assert elapsed < 0.5, f"read_notebook took {elapsed:.3f}s on a 5 MB notebook"


def test_authors_from_the_metadata(tmp_path):
    data = {"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "markdown", "source": "# T2"}],
            "metadata": {"authors": [{"name": " Marta  Lozano "}, "Luis Gil", {"x": 1}]}}
    assert read_notebook(_write(tmp_path, data)).authors == ("Marta Lozano", "Luis Gil")
    data["metadata"] = {"author": "Ana"}
    assert read_notebook(_write(tmp_path, data)).authors == ("Ana",)


def test_damaged_cells_are_listed_apart_from_harmless_repairs(tmp_path):
    data = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": "x = 1", "outputs": []},  # no execution_count: harmless
        {"cell_type": "code", "metadata": {}, "source": 42, "outputs": "ninguna"},
        "not a cell"]}
    nb = read_notebook(_write(tmp_path, data))
    assert nb.damaged == ("cell 2: source is not text", "cell 2: outputs is not a list", "cell 3: not an object")
    assert read_notebook(_write(tmp_path, GOOD)).damaged == ()
