"""Read a submitted .ipynb into plain frozen dataclasses: cells, their sources and their outputs.

Student notebooks arrive in every state: re-saved by old Jupyter versions (nbformat 3), edited by
hand, truncated by a failed upload, encoded as cp1252 by a Windows editor, or swollen with base64
plots. This module turns any of them into the same small value (:class:`Notebook`) or refuses with
one :class:`~grader.errors.NotebookError` line that names the file and says what is wrong.

Why not ``nbformat.reads`` for everything: its full JSON-schema validation costs more than the rest
of ``grader check`` together on a notebook full of images, and it only *logs* schema problems
anyway. Version-4 notebooks are therefore normalized here with a few cheap, tolerant rules (a
missing ``metadata``, ``execution_count`` or ``outputs`` is filled in, not refused); older formats
go through nbformat's own converter, which is what it is good at.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import NotebookError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
CELL_TYPES = ("code", "markdown", "raw")
OUTPUT_KINDS = ("stream", "execute_result", "display_data", "error")
_IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg", "image/gif")


@dataclass(frozen=True)
class Output:
    """One output of a code cell, reduced to the text a grader can read."""

    kind: str  # one of OUTPUT_KINDS
    name: str | None  # "stdout"/"stderr" for streams, else None
    text: str  # stream text, text/plain, or "ename: evalue" + traceback (ANSI codes left in)
    has_image: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "text": self.text, "has_image": self.has_image}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Output":
        return cls(kind=d["kind"], name=d.get("name"), text=d.get("text", ""),
                   has_image=bool(d.get("has_image", False)))


@dataclass(frozen=True)
class Cell:
    """A cell as the student sees it: ``number`` is the 1-based "cell N" we show in messages."""

    index: int
    cell_type: str  # one of CELL_TYPES
    source: str
    execution_count: int | None = None
    outputs: tuple[Output, ...] = ()

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def output_text(self) -> str:
        """All outputs' text in order.

        Consecutive outputs of the same stream are joined as-is, because Keras metric lines may be
        split across them; any other boundary gets a newline so two results never share a line.
        """
        parts: list[str] = []
        prev: Output | None = None
        for out in self.outputs:
            if not out.text:
                continue
            same_stream = (prev is not None and prev.kind == "stream" and out.kind == "stream"
                           and prev.name == out.name)
            if parts and not same_stream and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(out.text)
            prev = out
        return "".join(parts)

    def stream_text(self, name: str = "stdout") -> str:
        """One stream's outputs joined as-is: a Keras line split by a stderr warning is whole again."""
        return "".join(o.text for o in self.outputs if o.kind == "stream" and o.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "number": self.number, "cell_type": self.cell_type,
                "source": self.source, "execution_count": self.execution_count,
                "outputs": [o.to_dict() for o in self.outputs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Cell":
        return cls(index=int(d["index"]), cell_type=d["cell_type"], source=d.get("source", ""),
                   execution_count=d.get("execution_count"),
                   outputs=tuple(Output.from_dict(o) for o in d.get("outputs", ())))


@dataclass(frozen=True)
class Notebook:
    """A read notebook. ``repairs`` lists what was normalized to read it (empty when clean)."""

    path: str
    sha256: str
    nbformat: int  # major version of the file as it was on disk (3 for converted v3 notebooks)
    nbformat_minor: int
    kernel_name: str | None
    cells: tuple[Cell, ...]
    encoding: str = "utf-8"
    repairs: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()  # metadata.authors / metadata.author (Jupyter, Colab, VS Code)
    # The repairs that lost or guessed the student's own content (a cell that is not an object, a
    # source that is not text, outputs that are not a list): such a file breaks the nbformat schema
    # and a grader may refuse it rather than grade what is left.
    damaged: tuple[str, ...] = ()

    @property
    def code_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.cell_type == "code")

    @property
    def has_outputs(self) -> bool:
        """False for a notebook saved without outputs (cleared, or never run)."""
        return any(c.outputs for c in self.code_cells)

    @property
    def executed_in_order(self) -> bool | None:
        """Whether the executed code cells were run top to bottom (None if none was run)."""
        counts = [c.execution_count for c in self.code_cells if c.execution_count is not None]
        if not counts:
            return None
        return all(a < b for a, b in zip(counts, counts[1:]))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "nbformat": self.nbformat,
                "nbformat_minor": self.nbformat_minor, "kernel_name": self.kernel_name,
                "encoding": self.encoding, "repairs": list(self.repairs), "authors": list(self.authors),
                "damaged": list(self.damaged), "cells": [c.to_dict() for c in self.cells]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Notebook":
        return cls(path=d["path"], sha256=d["sha256"], nbformat=int(d["nbformat"]),
                   nbformat_minor=int(d.get("nbformat_minor", 0)), kernel_name=d.get("kernel_name"),
                   cells=tuple(Cell.from_dict(c) for c in d.get("cells", ())),
                   encoding=d.get("encoding", "utf-8"), repairs=tuple(d.get("repairs", ())),
                   authors=tuple(d.get("authors", ())), damaged=tuple(d.get("damaged", ())))


def read_notebook(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> Notebook:
    """Read and normalize a notebook file; raise NotebookError with a one-line reason if unusable."""
    where = os.fspath(path)
    raw = _read_bytes(where, max_bytes)
    sha = hashlib.sha256(raw).hexdigest()
    text, encoding = _decode(raw)
    del raw
    if not text.strip():
        raise NotebookError(f"{where}: empty file (0 cells); save the notebook again and resubmit it")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            end = text.rstrip()
            line = end.count("\n") + 1
            raise NotebookError(f"{where}: truncated file (the JSON stops at line {line}, column "
                                f"{len(end) - end.rfind(chr(10))}); save the notebook again and "
                                "resubmit it") from None
        raise NotebookError(f"{where}: not a notebook (invalid JSON at line {exc.lineno}, "
                            f"column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise NotebookError(f"{where}: not a notebook (JSON nested too deeply)") from None
    del text
    repairs: list[str] = [] if encoding == "utf-8" else [f"decoded as {encoding}"]
    if not isinstance(data, dict):
        raise NotebookError(f"{where}: not a notebook (the JSON is a {type(data).__name__}, "
                            "not an object with cells)")
    major, minor = _version(data, where, repairs)
    if major < 4:
        data = _convert_old(data, major, where)
    cells_raw = data.get("cells")
    if not isinstance(cells_raw, list):
        raise NotebookError(f"{where}: not a notebook (no 'cells' list)")
    if not cells_raw:
        raise NotebookError(f"{where}: the notebook has no cells")
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        repairs.append("notebook metadata missing")
        metadata = {}
    kernelspec = metadata.get("kernelspec")
    kernel = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    damaged: list[str] = []
    cells = tuple(_cell(i, c, repairs, damaged) for i, c in enumerate(cells_raw))
    return Notebook(path=where, sha256=sha, nbformat=major, nbformat_minor=minor,
                    kernel_name=kernel if isinstance(kernel, str) else None, cells=cells,
                    encoding=encoding, repairs=tuple(repairs[:50]), authors=_authors(metadata),
                    damaged=tuple(damaged[:20]))


def _authors(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """Names in ``metadata.authors`` (a list of ``{"name": ...}`` or of strings) or ``metadata.author``."""
    raw = metadata.get("authors", metadata.get("author"))
    items = raw if isinstance(raw, list) else [raw]
    names = []
    for item in items[:20]:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip():
            names.append(" ".join(name.split())[:120])
    return tuple(names)


# ---------------------------------------------------------------- reading and decoding

def _read_bytes(where: str, max_bytes: int) -> bytes:
    try:
        size = os.stat(where).st_size
        if size > max_bytes:
            raise NotebookError(f"{where}: file too large ({_mb(size)}; the limit is {_mb(max_bytes)})")
        with open(where, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # the file may have grown since stat()
    except NotebookError:
        raise
    except IsADirectoryError:
        raise NotebookError(f"{where}: is a directory, not a notebook file") from None
    except OSError as exc:
        raise NotebookError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise NotebookError(f"{where}: file too large (over {_mb(max_bytes)}; the limit is {_mb(max_bytes)})")
    return raw


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _decode(raw: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM) first; UTF-16 when it has a BOM; cp1252 as the last resort."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; replacing them keeps the rest of the notebook readable.
        return raw.decode("cp1252", errors="replace"), "cp1252"


def _version(data: dict[str, Any], where: str, repairs: list[str]) -> tuple[int, int]:
    major, minor = data.get("nbformat"), data.get("nbformat_minor", 0)
    if not isinstance(major, int) or isinstance(major, bool):
        if isinstance(data.get("cells"), list):
            repairs.append("nbformat version missing; read as 4")
            major = 4
        elif isinstance(data.get("worksheets"), list):
            repairs.append("nbformat version missing; read as 3")
            major = 3
        else:
            raise NotebookError(f"{where}: not a notebook (no 'cells' and no 'nbformat' version)")
    if major > 4:
        repairs.append(f"nbformat {major} is newer than 4; read as 4")
        major = 4
    if major < 1:
        raise NotebookError(f"{where}: not a notebook (nbformat version {major})")
    return major, minor if isinstance(minor, int) and not isinstance(minor, bool) else 0


def _convert_old(data: dict[str, Any], major: int, where: str) -> dict[str, Any]:
    """nbformat 1-3 → 4 with nbformat's converter (no validation needed for our use)."""
    import nbformat  # imported lazily: reading a v4 notebook never pays for it
    from nbformat.converter import convert

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data.setdefault("nbformat", major)
            data.setdefault("nbformat_minor", 0)
            if major == 3 and not isinstance(data.get("worksheets"), list):
                raise ValueError("no 'worksheets' list")
            converted = convert(nbformat.from_dict(data), 4)
    except Exception as exc:  # noqa: BLE001 - any converter failure is one message for the user
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise NotebookError(f"{where}: cannot convert this nbformat {major} notebook ({reason})") from None
    return dict(converted)


# ---------------------------------------------------------------- light normalization

def _text(value: Any) -> str:
    """nbformat multiline strings are a str or a list of str; anything else is stringified."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v if isinstance(v, str) else str(v) for v in value)
    return "" if value is None else str(value)


def _cell(index: int, raw: Any, repairs: list[str], damaged: list[str]) -> Cell:
    if not isinstance(raw, dict):
        repairs.append(f"cell {index + 1}: not an object; kept as an empty raw cell")
        damaged.append(f"cell {index + 1}: not an object")
        return Cell(index=index, cell_type="raw", source="")
    cell_type = raw.get("cell_type")
    if cell_type not in CELL_TYPES:
        guessed = "code" if "outputs" in raw or "execution_count" in raw else "markdown"
        if cell_type != "heading":  # v3 heading cells that slipped through are markdown
            repairs.append(f"cell {index + 1}: cell_type {cell_type!r}; read as {guessed}")
        cell_type = "markdown" if cell_type == "heading" else guessed
    raw_source = raw.get("source", raw.get("input", ""))
    if not isinstance(raw_source, (str, list)):
        repairs.append(f"cell {index + 1}: source is not text; read as {type(raw_source).__name__}")
        damaged.append(f"cell {index + 1}: source is not text")
    source = _text(raw_source)
    if cell_type != "code":
        return Cell(index=index, cell_type=cell_type, source=source)
    count = raw.get("execution_count")
    if isinstance(count, bool) or not isinstance(count, int):
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        else:
            if "execution_count" not in raw:
                repairs.append(f"cell {index + 1}: execution_count missing")
            count = None
    outs = raw.get("outputs", [])
    if not isinstance(outs, list):
        repairs.append(f"cell {index + 1}: outputs is not a list; ignored")
        damaged.append(f"cell {index + 1}: outputs is not a list")
        outs = []
    outputs = tuple(o for o in (_output(x) for x in outs) if o is not None)
    return Cell(index=index, cell_type="code", source=source, execution_count=count, outputs=outputs)


def _output(raw: Any) -> Output | None:
    if not isinstance(raw, dict):
        return None
    kind = raw.get("output_type")
    if kind not in OUTPUT_KINDS:  # guess from the keys rather than lose the text
        kind = ("error" if "ename" in raw else "stream" if "text" in raw and "data" not in raw
                else "display_data" if "data" in raw else None)
        if kind is None:
            return None
    if kind == "stream":
        name = raw.get("name")
        return Output(kind="stream", name=name if isinstance(name, str) else "stdout",
                      text=_text(raw.get("text", "")))
    if kind == "error":
        head = f"{_text(raw.get('ename', 'Error'))}: {_text(raw.get('evalue', ''))}"
        trace = raw.get("traceback") or []
        lines = [t if isinstance(t, str) else str(t) for t in trace] if isinstance(trace, list) else []
        return Output(kind="error", name=None, text="\n".join([head, *lines]))
    data = raw.get("data")
    if not isinstance(data, dict):
        data = {}
    return Output(kind=kind, name=None, text=_text(data.get("text/plain", "")),
                  has_image=any(m in data for m in _IMAGE_MIMES))
