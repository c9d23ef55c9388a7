"""Read a submitted ``.keras`` model file without trusting it: zip layout, sizes, config, weights.

A Keras 3 ``.keras`` file is a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``.
Loading it with ``keras.models.load_model`` would let the config choose Python objects to build,
and ``safe_mode`` has been bypassed repeatedly; so here the zip is read in memory (never extracted
by name), the config is parsed as JSON and validated into our own :class:`ModelSpec` (see
``modelspec``/``modelchecks``), and only the weights member is copied out, as bytes, for the
sandboxed worker to read as arrays. Other formats (SavedModel folders, legacy HDF5 models,
pickles) are recognised and refused with the reason. Pure: no TensorFlow, no h5py.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from . import modelchecks as mc
from .errors import GraderError
from .modelchecks import Refused
from .modelspec import ModelSpec, build_spec, image_shape, input_shape_of

MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ASK_FOR_KERAS = "save the model with model.save('model.keras') and hand in that file"
MB = 1024 * 1024


class ModelFileError(GraderError):
    """A model file is refused (unsafe or unsupported) or cannot be read."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Size limits for a submitted model file; generous for an MLP (the trabajo2 final is ~6 MB)."""

    max_file_mb: int = 512
    max_weights_mb: int = 256
    max_config_kb: int = 1024
    max_metadata_kb: int = 64
    max_ratio: int = 100  # uncompressed / compressed, for members over 1 MB: a zip bomb beyond this

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "ArchiveLimits":
        return cls(**{k: int(v) for k, v in raw.items() if k in cls.__dataclass_fields__})


def _refuse(path: Path, reason: str) -> ModelFileError:
    return ModelFileError(f"{path}: {reason}")


# ------------------------------------------------------------------------------ what the file is

def _sniff(path: Path, limits: ArchiveLimits) -> None:
    """Refuse, with the reason, anything that is not a zip archive of a sane size."""
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise _refuse(path, "a TensorFlow SavedModel folder: loading it runs the graph it holds, "
                                f"refused; {ASK_FOR_KERAS}")
        raise _refuse(path, f"is a folder, not a .keras model file; {ASK_FOR_KERAS}")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise _refuse(path, "no such file") from None
    except OSError as exc:
        raise _refuse(path, f"cannot read ({exc.strerror or type(exc).__name__})") from None
    if head.startswith(HDF5_SIGNATURE):
        raise _refuse(path, "a legacy HDF5 (.h5) Keras model: it can hold Lambda layers with Python "
                            f"bytecode, refused; {ASK_FOR_KERAS}")
    if (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or \
            path.suffix.lower() in (".pkl", ".pickle", ".joblib", ".dill"):
        raise _refuse(path, f"a pickle: unpickling runs arbitrary code, refused; {ASK_FOR_KERAS}")
    if head.startswith(b"\x93NUMPY"):
        raise _refuse(path, f"a NumPy array file, not a model; {ASK_FOR_KERAS}")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise _refuse(path, f"not a Keras .keras file (not a zip archive); {ASK_FOR_KERAS}")
    if size > limits.max_file_mb * MB:
        raise _refuse(path, f"{size / MB:.0f} MB, over the {limits.max_file_mb} MB limit for a model file")


def _open_zip(path: Path, limits: ArchiveLimits) -> zipfile.ZipFile:
    """The archive, with exactly the three Keras members, each within its size and ratio limits."""
    _sniff(path, limits)
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise _refuse(path, f"corrupt zip archive ({mc.safe_text(exc)})") from None
    try:
        names = [info.filename for info in infos]
        for name in names:
            if name not in MEMBERS:
                raise _refuse(path, f"unexpected member {mc.safe_text(name)!r}{_what(name)}: a .keras file holds "
                                    f"only {', '.join(MEMBERS)}, refused")
        for name in MEMBERS:
            if names.count(name) != 1:
                raise _refuse(path, f"{'missing' if name not in names else 'duplicate'} member {name!r}: "
                                    f"not a Keras 3 .keras file; {ASK_FOR_KERAS}")
        caps = {"config.json": limits.max_config_kb * 1024, "metadata.json": limits.max_metadata_kb * 1024,
                "model.weights.h5": limits.max_weights_mb * MB}
        for info in infos:
            if info.flag_bits & 0x1:
                raise _refuse(path, f"member {info.filename!r} is encrypted, refused")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _refuse(path, f"member {info.filename!r} uses an unsupported compression method")
            if info.file_size > caps[info.filename]:
                raise _refuse(path, f"member {info.filename!r} is {_size(info.file_size)}, over the "
                                    f"{_size(caps[info.filename])} limit")
            if info.file_size > MB and info.file_size > limits.max_ratio * max(1, info.compress_size):
                raise _refuse(path, f"member {info.filename!r} expands {info.file_size // max(1, info.compress_size)}x "
                                    "(a zip bomb), refused")
    except ModelFileError:
        archive.close()
        raise
    return archive


def _what(name: str) -> str:
    low = name.lower()
    if low.endswith((".pkl", ".pickle", ".joblib", ".dill")):
        return " (a pickle)"
    if low.endswith((".py", ".pyc", ".so", ".dll", ".dylib", ".sh")):
        return " (code)"
    if low.startswith("assets/"):
        return " (layer assets)"
    return ""


def _size(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / 1024:.0f} KB"


def _read_member(path: Path, archive: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """A member's bytes, never more than ``cap`` whatever its header claims (CRC checked)."""
    try:
        with archive.open(name) as fh:
            data = fh.read(cap + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise _refuse(path, f"corrupt zip member {name!r} ({mc.safe_text(exc)})") from None
    if len(data) > cap:
        raise _refuse(path, f"member {name!r} is over the {_size(cap)} limit")
    return data


def _json(path: Path, data: bytes, name: str) -> Any:
    def no_constant(word: str) -> Any:
        raise ValueError(f"{word} is not JSON")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise _refuse(path, f"{name} is not valid JSON ({mc.safe_text(exc)})") from None


# ------------------------------------------------------------------------------ the config

def parse_config(config: Any, keras_version: str = "?") -> ModelSpec:
    """Validate a parsed ``config.json`` into a ModelSpec, or raise :class:`Refused`."""
    if not isinstance(config, dict):
        raise Refused("config.json is not a JSON object")
    model_class = config.get("class_name")
    if model_class not in ("Sequential", "Functional", "Model"):
        shown = mc.safe_text(model_class)
        if model_class in mc.CODE_CLASSES:
            raise Refused(f"the model is a {shown} (Python code), refused")
        raise Refused(f"model class {shown!r} is not supported (only Sequential and Functional models)")
    unknown = set(config) - {"module", "class_name", "config", "registered_name", "build_config", "compile_config"}
    if unknown:
        raise Refused(f"model: unexpected entry {mc.safe_text(sorted(unknown)[0])!r}")
    body = config.get("config")
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise Refused("model config has no layer list")
    layers = body["layers"]
    for i, entry in enumerate(layers):
        label = f"layer {i}"
        if isinstance(entry, dict):
            inner = entry.get("config") if isinstance(entry.get("config"), dict) else {}
            label += f" {mc.safe_text(inner.get('name', entry.get('name', '?')), 40)!r} " \
                     f"({mc.safe_text(entry.get('class_name'), 40)})"
        mc.scan(entry, label)
    mc.scan({k: v for k, v in config.items() if k not in ("config", "compile_config")}, "model")
    mc.scan({k: v for k, v in body.items() if k != "layers"}, "model config")
    mc.scan(config.get("compile_config"), "compile_config", compile_section=True)
    name = body.get("name", "model")
    if model_class == "Sequential":
        return _sequential(body, layers, name, keras_version)
    return _functional(body, layers, name, keras_version)


def _sequential(body: Mapping[str, Any], layers: list[Any], name: str, version: str) -> ModelSpec:
    unknown = set(body) - {"name", "trainable", "dtype", "layers", "build_input_shape"}
    if unknown:
        raise Refused(f"Sequential config: unexpected entry {mc.safe_text(sorted(unknown)[0])!r}")
    entries = list(enumerate(layers))
    if entries and isinstance(entries[0][1], dict) and entries[0][1].get("class_name") == "InputLayer":
        shape = input_shape_of(entries.pop(0)[1])
    elif body.get("build_input_shape") is not None:
        shape = image_shape(body["build_input_shape"], "Sequential build_input_shape")
    else:
        raise Refused("the Sequential model has no input shape (it was never built or called); "
                      "add keras.Input(shape=(28, 28)) as its first layer")
    return build_spec("Sequential", name, shape, entries, version)


def _functional(body: Mapping[str, Any], layers: list[Any], name: str, version: str) -> ModelSpec:
    """A Functional model is accepted when its graph is one chain from one input to one output."""
    unknown = set(body) - {"name", "trainable", "layers", "input_layers", "output_layers"}
    if unknown:
        raise Refused(f"Functional config: unexpected entry {mc.safe_text(sorted(unknown)[0])!r}")
    by_name: dict[str, tuple[int, Mapping[str, Any]]] = {}
    parents: dict[str, list[str]] = {}
    for i, entry in enumerate(layers):
        kind, label = mc.layer_identity(entry, i)
        node_name = entry.get("name", entry["config"].get("name"))
        if not isinstance(node_name, str) or node_name in by_name:
            raise Refused(f"layer {i} {label!r}: missing or duplicate layer name")
        by_name[node_name] = (i, entry)
        parents[node_name] = _inbound(entry, f"layer {i} {label!r} ({kind})")
    first = _endpoint(body.get("input_layers"), "input_layers", by_name)
    last = _endpoint(body.get("output_layers"), "output_layers", by_name)
    children: dict[str, list[str]] = {}
    for child, srcs in parents.items():
        for src in srcs:
            if src not in by_name:
                raise Refused(f"layer {mc.safe_text(child)!r} is called on an unknown layer {mc.safe_text(src)!r}")
            children.setdefault(src, []).append(child)
    for src, kids in children.items():
        if len(kids) > 1:
            raise Refused(f"branching graph: layer {mc.safe_text(src)!r} feeds {len(kids)} layers "
                          f"({', '.join(mc.safe_text(k) for k in kids)}); only a chain of layers is supported")
    for child, srcs in parents.items():
        if len(srcs) > 1:
            raise Refused(f"branching graph: layer {mc.safe_text(child)!r} merges {len(srcs)} inputs; "
                          "only a chain of layers is supported")
    if by_name[first][1].get("class_name") != "InputLayer":
        raise Refused("the Functional model's input is not an InputLayer")
    chain, current = [first], first
    while current != last:
        kids = children.get(current, [])
        if not kids:
            raise Refused(f"layer {mc.safe_text(current)!r} does not lead to the output layer")
        current = kids[0]
        chain.append(current)
    extra = set(by_name) - set(chain)
    if extra:
        raise Refused(f"layer {mc.safe_text(sorted(extra)[0])!r} is not on the chain from input to output "
                      "(several inputs or outputs are not supported)")
    shape = input_shape_of(by_name[first][1])
    entries = [by_name[n] for n in chain[1:]]
    for i, entry in entries:
        if entry.get("class_name") == "InputLayer":
            raise Refused(f"layer {i}: a second InputLayer inside the chain")
    return build_spec("Functional", name, shape, entries, version)


def _inbound(entry: Mapping[str, Any], where: str) -> list[str]:
    """The layers this layer is called on ([] for an InputLayer); refuses shared layers and odd calls."""
    nodes = entry.get("inbound_nodes")
    if not isinstance(nodes, list):
        raise Refused(f"{where}: no inbound_nodes (not a Functional layer)")
    if entry.get("class_name") == "InputLayer":
        if nodes:
            raise Refused(f"{where}: an InputLayer called on another layer")
        return []
    if len(nodes) != 1:
        raise Refused(f"{where}: called {len(nodes)} times (shared layers are not supported)")
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [tensor or [tensors]], "kwargs": {...}}
        args, kwargs = node.get("args"), node.get("kwargs", {})
        if set(node) - {"args", "kwargs"} or not isinstance(args, list) or len(args) != 1:
            raise Refused(f"{where}: unsupported call arguments")
        tensors = args[0] if isinstance(args[0], list) else [args[0]]
        histories = [t.get("config", {}).get("keras_history") if isinstance(t, dict) else None for t in tensors]
    elif isinstance(node, list) and all(isinstance(t, list) for t in node):  # Keras 2: [[name, 0, 0, kwargs]]
        histories = [t[:3] for t in node]
        kwargs = node[0][3] if len(node) == 1 and len(node[0]) > 3 else {}
    else:
        raise Refused(f"{where}: unreadable inbound node")
    if not isinstance(kwargs, dict) or set(kwargs) - {"training", "mask"} or \
            any(v not in (None, False) for v in kwargs.values()):
        raise Refused(f"{where}: called with unsupported arguments {mc.safe_text(kwargs)}")
    for history in histories:
        if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)
                and history[1] == 0 and history[2] == 0):
            raise Refused(f"{where}: unreadable or unsupported call (input {mc.safe_text(history)})")
    return [h[0] for h in histories]


def _endpoint(value: Any, key: str, by_name: Mapping[str, Any]) -> str:
    """The single layer named by input_layers/output_layers ([name, 0, 0] or [[name, 0, 0]])."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
        raise Refused(f"Functional {key}: exactly one is supported (got {mc.safe_text(value)})")
    if value[0] not in by_name:
        raise Refused(f"Functional {key}: unknown layer {mc.safe_text(value[0])!r}")
    return value[0]


# ------------------------------------------------------------------------------ public API

def load_spec(path: str | Path, limits: ArchiveLimits = ArchiveLimits()) -> ModelSpec:
    """Validate a model file end to end (layout, sizes, config, weights signature) -> ModelSpec."""
    path = Path(path)
    with _open_zip(path, limits) as archive:
        metadata = _json(path, _read_member(path, archive, "metadata.json", limits.max_metadata_kb * 1024),
                         "metadata.json")
        config = _json(path, _read_member(path, archive, "config.json", limits.max_config_kb * 1024),
                       "config.json")
        try:
            with archive.open("model.weights.h5") as fh:
                head = fh.read(len(HDF5_SIGNATURE))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
            raise _refuse(path, f"corrupt zip member 'model.weights.h5' ({mc.safe_text(exc)})") from None
    if not head.startswith(HDF5_SIGNATURE):
        raise _refuse(path, "model.weights.h5 is not an HDF5 file, refused")
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    if not isinstance(version, str):
        raise _refuse(path, "metadata.json has no keras_version: not a Keras .keras file")
    try:
        return parse_config(config, mc.safe_text(version, 20))
    except Refused as exc:
        raise _refuse(path, str(exc)) from None
    except RecursionError:
        raise _refuse(path, "config.json is nested too deeply, refused") from None


def copy_weights(path: str | Path, dest: str | Path, limits: ArchiveLimits = ArchiveLimits()) -> int:
    """Copy the weights member to ``dest`` (a name we choose), bounded in size; returns its byte count."""
    path, dest = Path(path), Path(dest)
    cap = limits.max_weights_mb * MB
    written = 0
    with _open_zip(path, limits) as archive:
        try:
            with archive.open("model.weights.h5") as src, dest.open("wb") as out:
                while chunk := src.read(min(1 << 20, cap + 1 - written)):
                    written += len(chunk)
                    if written > cap:
                        raise _refuse(path, f"member 'model.weights.h5' is over the {_size(cap)} limit")
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
            raise _refuse(path, f"corrupt zip member 'model.weights.h5' ({mc.safe_text(exc)})") from None
    with dest.open("rb") as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        raise _refuse(path, "model.weights.h5 is not an HDF5 file, refused")
    return written


__all__ = ["ArchiveLimits", "ModelFileError", "ModelSpec", "copy_weights", "load_spec", "parse_config"]
