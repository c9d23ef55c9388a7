"""Shared fixtures: tiny generated Fashion-MNIST IDX files, the real data when present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write an IDX file (images: magic 2051, labels: 2049) the way the data set ships it."""
    magic = 2051 if array.ndim == 3 else 2049
    payload = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload, compresslevel=1))
    else:
        path.write_bytes(payload)
    return path


def make_tiny_dataset(folder: Path, n_train: int = 600, n_test: int = 100, seed: int = 0,
                      compress: bool = True) -> Path:
    """A learnable toy data set: each class is a bright horizontal band at its own height."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def images(labels: np.ndarray) -> np.ndarray:
        out = rng.integers(0, 60, size=(len(labels), 28, 28))
        for i, label in enumerate(labels):
            out[i, 2 + 2 * label: 5 + 2 * label, :] += 150
        return np.clip(out, 0, 255)

    y_train = np.arange(n_train) % 10
    rng.shuffle(y_train)
    y_test = np.arange(n_test) % 10
    write_idx(folder / "train-images-idx3-ubyte", images(y_train), compress)
    write_idx(folder / "train-labels-idx1-ubyte", y_train, compress)
    write_idx(folder / "t10k-images-idx3-ubyte", images(y_test), compress)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_test, compress)
    return folder


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of tiny IDX files; subsets allowed; the real data and the Keras cache hidden."""
    folder = make_tiny_dataset(tmp_path / "fmnist")
    monkeypatch.setenv("GRADER_DATA_SUBSET", "1")
    monkeypatch.setenv("GRADER_DATA_DIR", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def real_data() -> Path:
    """The real data set. `make test` fetches it first, so its absence is a failure, not a skip."""
    from grader.data import locate

    return locate(None)


@pytest.fixture
def no_reference_runs(tmp_path_factory, monkeypatch):
    """CLI tests: no shipped reference records (plausibility off) and messages in the default
    language, whatever the machine's locale."""
    monkeypatch.setenv("GRADER_REFERENCE_DIR", str(tmp_path_factory.mktemp("no-references")))
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
