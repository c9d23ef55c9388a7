"""Fashion-MNIST: find, validate and read the four IDX files; the train/validation splits.

The training set and the test set are read by separate functions on purpose: only the
test-evaluation step of the battery runner ever calls :func:`load_test`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import DataError
from .files import sha256_file

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FULL_COUNTS = {"train": 60000, "test": 10000}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = ("get it with `apt-get install dataset-fashion-mnist`, or put the four IDX files in a folder "
              "and pass --data-dir / set GRADER_DATA_DIR")
# Set to 1 to accept IDX files with fewer images than the real data set (tests, quick trials).
SUBSET_ENV = "GRADER_DATA_SUBSET"

# The validation splits, as data. `random80` is what the trabajo2 seed's
# train_test_split(x, y, train_size=0.8) does (stratified, fixed seed); `last20` is what Keras'
# validation_split=0.2 does (the last 20% before shuffling); `first10k` is the challenge's split.
SPLITS: Mapping[str, Mapping[str, Any]] = {
    "random80": {"kind": "stratified", "train_fraction": 0.8, "seed": 42},
    "last20": {"kind": "tail", "fraction": 0.2},
    "first10k": {"kind": "head", "count": 10000},
}


def search_path(data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """Where the data is looked for, in order: --data-dir, $GRADER_DATA_DIR, Keras cache, Debian."""
    places: list[tuple[str, Path]] = []
    if data_dir:
        places.append(("--data-dir", Path(data_dir)))
    env = os.environ.get("GRADER_DATA_DIR")
    if env:
        places.append(("GRADER_DATA_DIR", Path(env)))
    places.append(("keras cache", Path.home() / ".keras" / "datasets" / "fashion-mnist"))
    places.append(("debian package", DEBIAN_DIR))
    return places


def _file_in(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Place:
    """One folder of the search path and which of the four files it holds."""

    source: str
    directory: str
    found: Mapping[str, str | None]

    @property
    def complete(self) -> bool:
        return all(self.found.values())


def survey(data_dir: str | Path | None = None) -> list[Place]:
    """What each folder of the search path holds (for `grader data`)."""
    out = []
    for source, directory in search_path(data_dir):
        found = {key: (str(p) if (p := _file_in(directory, stem)) else None) for key, stem in FILES.items()}
        out.append(Place(source, str(directory), found))
    return out


def locate(data_dir: str | Path | None = None) -> Path:
    """The first folder of the search path with all four files.

    An explicit --data-dir must itself hold the data: falling through to another folder would
    silently train on data the user did not ask for.
    """
    places = survey(data_dir)
    if data_dir:
        first = places[0]
        if not first.complete:
            missing = next(FILES[k] for k, v in first.found.items() if not v)
            raise DataError(f"{data_dir}: no {missing}[.gz] there; {HOW_TO_GET}")
        return Path(first.directory)
    for place in places:
        if place.complete:
            return Path(place.directory)
    looked = ", ".join(p.directory for p in places)
    raise DataError(f"Fashion-MNIST not found (looked in {looked}); {HOW_TO_GET}")


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DataError(f"{path}: cannot read ({reason}); {HOW_TO_GET}") from None


def _parse_idx(path: Path, payload: bytes, magic: int) -> np.ndarray:
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{path}: truncated ({len(payload)} bytes, shorter than the IDX header); {HOW_TO_GET}")
    found_magic = struct.unpack(">I", payload[:4])[0]
    if found_magic != magic:
        raise DataError(f"{path}: not an IDX {'image' if ndim == 3 else 'label'} file "
                        f"(magic number {found_magic}, expected {magic}); {HOW_TO_GET}")
    dims = struct.unpack(">" + "I" * ndim, payload[4:header])
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = int(np.prod(dims))
    if len(payload) - header != expected:
        raise DataError(f"{path}: truncated or corrupt ({len(payload) - header} data bytes, header says "
                        f"{expected}); {HOW_TO_GET}")
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(dims)


@dataclass(frozen=True)
class Arrays:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one part of the data set."""

    images: np.ndarray
    labels: np.ndarray
    checksums: Mapping[str, str]
    directory: str


def _load_part(part: str, data_dir: str | Path | None) -> Arrays:
    directory = locate(data_dir)
    loaded: dict[str, np.ndarray] = {}
    sums: dict[str, str] = {}
    for kind, magic in (("images", IMAGE_MAGIC), ("labels", LABEL_MAGIC)):
        key = f"{part}_{kind}"
        path = _file_in(directory, FILES[key])
        assert path is not None  # locate() checked
        raw = path.read_bytes() if path.exists() else b""
        sums[path.name] = hashlib.sha256(raw).hexdigest()
        loaded[kind] = _parse_idx(path, _read_bytes(path), magic)
    images, labels = loaded["images"], loaded["labels"]
    label_path = _file_in(directory, FILES[f"{part}_labels"])
    if len(images) != len(labels):
        raise DataError(f"{label_path}: {len(labels)} labels for {len(images)} images")
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_path}: labels must be 0-9, found {int(labels.max())}")
    full = FULL_COUNTS[part]
    if len(images) != full and os.environ.get(SUBSET_ENV) != "1":
        raise DataError(f"{_file_in(directory, FILES[f'{part}_images'])}: {len(images)} images, expected {full} "
                        f"(set {SUBSET_ENV}=1 to use a smaller set on purpose)")
    return Arrays(images, labels, sums, str(directory))


def load_train(data_dir: str | Path | None = None) -> Arrays:
    """The 60,000 training images: the only data model selection may see."""
    return _load_part("train", data_dir)


def load_test(data_dir: str | Path | None = None) -> Arrays:
    """The 10,000 test images. Only the test-evaluation step calls this."""
    return _load_part("test", data_dir)


def checksums(data_dir: str | Path | None = None) -> dict[str, str]:
    """sha256 of each of the four files as stored (compressed or not), by file name."""
    directory = locate(data_dir)
    out = {}
    for stem in FILES.values():
        path = _file_in(directory, stem)
        assert path is not None
        out[path.name] = sha256_file(path)
    return dict(sorted(out.items()))


def split_indices(split: str, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) into the training set for a named split."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    rule = SPLITS[split]
    n = len(labels)
    idx = np.arange(n)
    if rule["kind"] == "head":
        count = rule["count"] if n >= FULL_COUNTS["train"] else max(1, round(n * rule["count"] / FULL_COUNTS["train"]))
        return idx[count:], idx[:count]
    if rule["kind"] == "tail":
        cut = int(n * (1 - rule["fraction"]))  # what Keras' validation_split does
        return idx[:cut], idx[cut:]
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(idx, train_size=rule["train_fraction"],
                                          random_state=rule["seed"], stratify=labels)
    return np.sort(train_idx), np.sort(val_idx)
