
import numpy as np
import pytest

from grader import data
from grader.errors import DataError

from .conftest import make_tiny_dataset, write_idx


def test_reads_gzip_and_plain(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_DATA_SUBSET", "1")
    gz = make_tiny_dataset(tmp_path / "gz", n_train=60, n_test=20)
    raw = make_tiny_dataset(tmp_path / "raw", n_train=60, n_test=20, compress=False)
    a, b = data.load_train(gz), data.load_train(raw)
    assert a.images.shape == (60, 28, 28) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert set(a.checksums) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}
    assert data.load_test(raw).images.shape == (20, 28, 28)


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    places = [src for src, _ in data.search_path(tmp_path / "cli")]
    assert places == ["--data-dir", "GRADER_DATA_DIR", "keras cache", "debian package"]
    assert data.search_path(None)[1][1] == tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"


def test_subset_refused_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADER_DATA_SUBSET", raising=False)
    folder = make_tiny_dataset(tmp_path / "d", n_train=60, n_test=20)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: 60 images, expected 60000"):
        data.load_train(folder)


def test_missing_file_names_it(tmp_path):
    folder = make_tiny_dataset(tmp_path / "d", n_train=60, n_test=20)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte\[.gz\] there; get it with `apt-get install"):
        data.locate(folder)


def test_truncated_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_DATA_SUBSET", "1")
    folder = make_tiny_dataset(tmp_path / "d", n_train=60, n_test=20, compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated or corrupt \(46940 data bytes, header says 47040\)"):
        data.load_train(folder)


def test_corrupt_gzip_and_bad_magic(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_DATA_SUBSET", "1")
    folder = make_tiny_dataset(tmp_path / "d", n_train=60, n_test=20)
    gz = folder / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:50])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read"):
        data.load_train(folder)
    write_idx(folder / "train-images-idx3-ubyte", np.zeros(60, dtype=np.uint8))  # a label file in its place
    with pytest.raises(DataError, match=r"not an IDX image file \(magic number 2049, expected 2051\)"):
        data.load_train(folder)


def test_labels_out_of_range(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_DATA_SUBSET", "1")
    folder = make_tiny_dataset(tmp_path / "d", n_train=60, n_test=20)
    write_idx(folder / "train-labels-idx1-ubyte", np.full(60, 11, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels must be 0-9, found 11"):
        data.load_train(folder)


def test_splits_are_data():
    labels = np.arange(60000) % 10
    tr, va = data.split_indices("first10k", labels)
    assert (va[0], va[-1], len(va), tr[0]) == (0, 9999, 10000, 10000)
    tr, va = data.split_indices("last20", labels)
    assert (len(tr), len(va), va[0]) == (48000, 12000, 48000)
    tr, va = data.split_indices("random80", labels)
    assert (len(tr), len(va)) == (48000, 12000)
    assert np.bincount(labels[va]).tolist() == [1200] * 10  # stratified
    assert not set(tr) & set(va)
    tr2, va2 = data.split_indices("random80", labels)
    assert np.array_equal(va, va2)  # fixed seed


def test_unknown_split():
    with pytest.raises(DataError, match="unknown split 'half'"):
        data.split_indices("half", np.zeros(10))


@pytest.mark.slow
def test_real_data_is_valid(real_data):
    train = data.load_train(real_data)
    test = data.load_test(real_data)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert len(data.checksums(real_data)) == 4
