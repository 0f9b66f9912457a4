"""lab.data: every layout loads to the same arrays, the search order, clear errors, and the real set's stats."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import TRAIN_PER_BATCH, WRITERS, call_lab, make_cifar, write_archive, write_batches
from lab import data as data_mod
from lab.data import DataError, DataNotFoundError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No CIFAR10_DIR, and a working directory without ./data, unless a test sets them."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def assert_same(a: data_mod.Cifar10, b: data_mod.Cifar10) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert a.sha256 == b.sha256


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_layout_loads_the_same_arrays(synthetic_data, fmt):
    folder, written = synthetic_data(fmt)
    loaded = data_mod.load(folder, download=False)
    assert loaded.x_train.shape == (20, 32, 32, 3) and loaded.x_train.dtype == np.uint8
    assert loaded.x_test.shape == (6, 32, 32, 3)
    assert loaded.y_train.dtype == np.int64 and loaded.y_test.dtype == np.int64
    assert_same(loaded, written)
    assert Path(loaded.source).parent == folder or Path(loaded.source) == folder / data_mod.BATCHES_DIR


def test_layouts_agree_with_each_other(synthetic_data):
    loaded = [data_mod.load(synthetic_data(fmt)[0], download=False) for fmt in sorted(WRITERS)]
    for other in loaded[1:]:
        assert_same(loaded[0], other)


def test_checksum_changes_with_the_data():
    assert make_cifar(0).sha256 != make_cifar(1).sha256
    assert make_cifar(0).sha256 == make_cifar(0).sha256


def test_batches_folder_itself_can_be_the_data_dir(synthetic_data):
    folder, written = synthetic_data("batches")
    assert_same(data_mod.load(folder / data_mod.BATCHES_DIR, download=False), written)


def test_npz_is_preferred_when_a_folder_holds_several_layouts(tmp_path):
    folder = tmp_path / "both"
    WRITERS["batches"](folder, make_cifar(1))
    WRITERS["npz"](folder, make_cifar(2))
    loaded = data_mod.load(folder, download=False)
    assert loaded.source == str(folder / data_mod.NPZ_NAME)
    assert_same(loaded, make_cifar(2))


def test_search_order_data_dir_then_env_then_dot_data(synthetic_data, tmp_path, monkeypatch, isolated):
    explicit, ds_explicit = synthetic_data("npz", seed=1)
    env, ds_env = synthetic_data("batches", seed=2)
    dot_data, ds_dot = synthetic_data("archive", seed=3, folder=isolated / "data")
    monkeypatch.setenv("CIFAR10_DIR", str(env))

    assert_same(data_mod.load(explicit, download=False), ds_explicit)
    assert_same(data_mod.load(download=False), ds_env)
    monkeypatch.delenv("CIFAR10_DIR")
    loaded = data_mod.load(download=False)
    assert_same(loaded, ds_dot)
    assert loaded.source == str(Path("data") / data_mod.ARCHIVE_NAME)


def test_an_explicit_data_dir_without_cifar10_is_an_error_not_a_fall_through(synthetic_data, tmp_path, monkeypatch):
    """Issue 10: an explicit --data-dir holding no CIFAR-10 silently trained on CIFAR10_DIR instead."""
    env, _ = synthetic_data("npz", seed=4)
    monkeypatch.setenv("CIFAR10_DIR", str(env))
    calls = []
    monkeypatch.setattr(data_mod, "_download", lambda root: calls.append(root))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="holds no CIFAR-10") as e:
        data_mod.load(empty)
    assert str(empty) in str(e.value) and str(env) not in str(e.value) and "\n" not in str(e.value)
    assert calls == []  # no download either: the caller said where the data is


def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist") as e:
        data_mod.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)


# -------------------------------------------------------------------------------------------- missing data


def test_missing_data_names_every_place_searched_and_how_to_fix_it(tmp_path, monkeypatch, isolated):
    env = tmp_path / "env"
    env.mkdir()
    monkeypatch.setenv("CIFAR10_DIR", str(env))
    with pytest.raises(DataNotFoundError) as e:
        data_mod.load()
    message = str(e.value)
    for place in (str(env), "data/"):
        assert place in message
    assert "download" in message and "network disabled in tests" in message  # the download was tried, and failed
    assert "--data-dir" in message and "CIFAR10_DIR" in message  # how to provide the data
    assert "\n" not in message


def test_missing_data_without_download_says_so(isolated):
    with pytest.raises(DataNotFoundError, match="download turned off"):
        data_mod.load(download=False)


@pytest.mark.parametrize("existed", [False, True], ids=["no-data-folder", "data-folder-existed"])
def test_a_failed_download_leaves_nothing_behind(monkeypatch, isolated, existed):
    """Issue 12: a failed download left an empty data/ (and a half archive would be found, and fail, next time)."""
    if existed:
        (isolated / "data").mkdir()
        (isolated / "data" / "notes.txt").write_text("mine")

    def half_download(root: Path) -> Path:
        (root / data_mod.BATCHES_DIR).mkdir(parents=True)
        (root / data_mod.ARCHIVE_NAME).write_bytes(b"half an archive")
        raise OSError("connection reset")

    monkeypatch.setattr(data_mod, "_download", half_download)
    with pytest.raises(DataNotFoundError, match="connection reset"):
        data_mod.load()
    if existed:  # what was there before stays; only what the download made goes
        assert sorted(p.name for p in (isolated / "data").iterdir()) == ["notes.txt"]
    else:
        assert not (isolated / "data").exists()


def test_download_lands_in_dot_data_and_is_read(monkeypatch, isolated):
    """When nothing is found, torchvision's download into ./data is what gets loaded (download faked here)."""
    calls = []

    def fake_download(root: Path) -> Path:
        calls.append(root)
        return write_batches(root, make_cifar(5))

    monkeypatch.setattr(data_mod, "_download", fake_download)
    loaded = data_mod.load()
    assert calls == [Path("data")]
    assert_same(loaded, make_cifar(5))
    assert (isolated / "data" / data_mod.BATCHES_DIR / "data_batch_1").is_file()


# ---------------------------------------------------------------------------------------- corrupt files


def test_corrupt_npz_names_the_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / data_mod.NPZ_NAME).write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="cannot read it as a CIFAR-10 npz") as e:
        data_mod.load(folder, download=False)
    assert str(folder / data_mod.NPZ_NAME) in str(e.value)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"x_train": make_cifar().x_train[..., 0]}, r"expected \(N, 32, 32, 3\)"),  # wrong shape
        ({"x_test": None, "y_test": None}, "x_test"),  # missing arrays (None: left out)
        ({"y_train": np.arange(20) % 11}, "outside 0–9"),
        ({"y_train": np.zeros(19, dtype=np.int64)}, "labels of shape"),
        ({"x_test": np.zeros((6, 32, 32, 3), dtype=np.float32)}, "uint8"),
        ({"x_train": np.zeros((0, 32, 32, 3), dtype=np.uint8), "y_train": np.zeros(0, dtype=np.uint8)},
         "training set holds no images"),
    ],
    ids=["wrong-shape", "missing-arrays", "label-range", "label-count", "dtype", "no-images"],
)
def test_bad_npz_contents_are_explained_and_name_the_file(tmp_path, changes, words):
    folder = tmp_path / "bad"
    folder.mkdir()
    ds = make_cifar()
    arrays = {"x_train": ds.x_train, "y_train": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test, **changes}
    np.savez(folder / data_mod.NPZ_NAME, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(DataError, match=words) as e:
        data_mod.load(folder, download=False)
    assert str(folder / data_mod.NPZ_NAME) in str(e.value)


def test_corrupt_batch_names_the_file(synthetic_data):
    folder, _ = synthetic_data("batches")
    bad = folder / data_mod.BATCHES_DIR / "data_batch_3"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="not a CIFAR-10 pickle") as e:
        data_mod.load(folder, download=False)
    assert str(bad) in str(e.value)


def test_missing_batch_is_named(synthetic_data):
    folder, _ = synthetic_data("batches")
    (folder / data_mod.BATCHES_DIR / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        data_mod.load(folder, download=False)


def test_truncated_archive_names_the_file(synthetic_data):
    folder, _ = synthetic_data("archive")
    archive = folder / data_mod.ARCHIVE_NAME
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError) as e:
        data_mod.load(folder, download=False)
    assert str(archive) in str(e.value)


# ------------------------------------------------------------------------------------------ hostile pickles


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as cPickle did for the official batches;
    Python 3's protocol 2 would route them through `_codecs.encode` instead."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def official_batch(x: np.ndarray, y: np.ndarray) -> bytes:
    """One batch pickled the way the files in cifar-10-python.tar.gz are: protocol 2, str keys, the array
    through numpy.core.multiarray._reconstruct (numpy 2 writes numpy._core; the official files predate it)."""
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in y],
                                       b"data": rows, b"filenames": [b"img_%d.png" % i for i in range(len(x))]})
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def pickle_globals(raw: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}


def test_official_format_batches_load(tmp_path):
    ds = make_cifar(7)
    folder = tmp_path / "official" / data_mod.BATCHES_DIR
    folder.mkdir(parents=True)
    k = TRAIN_PER_BATCH
    for i, name in enumerate(data_mod.TRAIN_BATCHES):
        (folder / name).write_bytes(official_batch(ds.x_train[i * k:(i + 1) * k], ds.y_train[i * k:(i + 1) * k]))
    (folder / data_mod.TEST_BATCH).write_bytes(official_batch(ds.x_test, ds.y_test))
    # the globals the real files name, and nothing else
    assert pickle_globals((folder / "data_batch_1").read_bytes()) == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert_same(data_mod.load(folder.parent, download=False), ds)


class RunsShell:
    """Unpickling this runs `touch MARKER` through the shell."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class TouchesAFile:
    """Unpickling this calls pathlib.Path.touch on MARKER: no shell, only a method of the standard library."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def hostile_batch(payload) -> bytes:
    """A well-formed batch (its data and labels would load) with a payload among its values."""
    ds = make_cifar(0)
    rows = ds.x_test.transpose(0, 3, 1, 2).reshape(len(ds.x_test), 3072)
    return pickle.dumps({b"batch_label": payload, b"data": rows, b"labels": [int(v) for v in ds.y_test]})


@pytest.mark.parametrize("payload", [RunsShell, TouchesAFile], ids=["os.system", "Path.touch"])
@pytest.mark.parametrize("layout", ["batches", "archive"])
def test_a_pickle_that_would_run_code_is_refused_and_named(tmp_path, payload, layout):
    marker = tmp_path / "MARKER"
    raw = hostile_batch(payload(marker))
    folder = tmp_path / "data"
    if layout == "batches":
        path = write_batches(folder, make_cifar(0))
        bad = path / "data_batch_3"
        bad.write_bytes(raw)
        named = [str(bad)]
    else:
        bad = write_archive(folder, make_cifar(0))
        with tarfile.open(bad, "r:gz") as tar:  # rebuild the archive with data_batch_3 swapped
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(bad, "w:gz") as tar:
            for m, content in members:
                content = raw if m.name.endswith("/data_batch_3") else content
                m.size = len(content)
                tar.addfile(m, io.BytesIO(content))
        named = [str(bad), "data_batch_3"]
    with pytest.raises(DataError) as e:
        data_mod.load(folder, download=False)
    message = str(e.value)
    assert not marker.exists(), "the pickle's payload ran"
    assert all(n in message for n in named) and "\n" not in message, message
    assert "refused" in message


@pytest.mark.parametrize("where", ["CIFAR10_DIR", "./data"])
def test_the_cli_refuses_a_hostile_pickle_from_the_env_and_dot_data(tmp_path, where):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    work.mkdir()
    folder = work / "data" if where == "./data" else tmp_path / "env"
    bad = write_batches(folder, make_cifar(0)) / "data_batch_1"
    bad.write_bytes(hostile_batch(RunsShell(marker)))
    env = {"CIFAR10_DIR": str(folder)} if where == "CIFAR10_DIR" else {}
    r = call_lab("train", "--subset", "8", "--test-subset", "4", "--epochs", "2", "--peak-epoch", "1",
                 "--batch-size", "4", "--width", "0.125", "--device", "cpu", cwd=work, env=env)
    assert r.returncode == 1, r.stderr
    assert not marker.exists(), "the pickle's payload ran"
    assert str(bad) in r.stderr or str(bad.relative_to(work)) in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------- real data


def test_real_data_shapes_and_labels(cifar10):
    assert cifar10.x_train.shape == (50_000, 32, 32, 3) and cifar10.x_train.dtype == np.uint8
    assert cifar10.x_test.shape == (10_000, 32, 32, 3) and cifar10.x_test.dtype == np.uint8
    assert np.array_equal(np.bincount(cifar10.y_train), [5000] * 10)
    assert np.array_equal(np.bincount(cifar10.y_test), [1000] * 10)
    assert len(data_mod.CLASSES) == 10


def test_real_data_checksum_is_stable_and_ignores_subsets(cifar10):
    digest = cifar10.sha256
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert cifar10.subset(100, 10).sha256 != digest
    assert data_mod.Cifar10(cifar10.x_train, cifar10.y_train, cifar10.x_test, cifar10.y_test, "x").sha256 == digest


def test_mean_and_std_match_the_real_training_set(cifar10):
    x = cifar10.x_train
    total = np.zeros(3)
    squares = np.zeros(3)
    for i in range(0, len(x), 5000):  # in chunks: the whole set as float64 would take 1.2 GB
        chunk = x[i:i + 5000].reshape(-1, 3).astype(np.float64) / 255
        total += chunk.sum(0)
        squares += (chunk * chunk).sum(0)
    n = len(x) * 32 * 32
    mean = total / n
    std = np.sqrt(squares / n - mean**2)
    np.testing.assert_allclose(mean, data_mod.MEAN, atol=5e-4)
    np.testing.assert_allclose(std, data_mod.STD, atol=5e-4)


def test_subset_takes_the_first_images(cifar10):
    sub = cifar10.subset(10, 3)
    assert np.array_equal(sub.x_train, cifar10.x_train[:10]) and np.array_equal(sub.y_test, cifar10.y_test[:3])


def test_mean_pixel_is_mean_in_255_units():
    assert data_mod.mean_pixel() == tuple(round(m * 255) for m in data_mod.MEAN)


# ----------------------------------------------------------------- sizes bounded before anything is allocated


class HugeArray:
    """Unpickling this builds numpy.ndarray((27_000_000,), float64) directly: 216 MB from a pickle of bytes."""

    def __reduce__(self):
        return np.ndarray, ((27_000_000,), np.dtype("f8"))


class HugeReconstruct:
    """The official files' own call, numpy's _reconstruct, asked for 27M float64 elements."""

    def __reduce__(self):
        from numpy._core import multiarray

        return multiarray._reconstruct, (np.ndarray, (27_000_000,), b"d")


@pytest.mark.parametrize("payload", [HugeArray(), HugeReconstruct()], ids=["ndarray", "_reconstruct"])
def test_a_pickle_that_asks_for_more_than_a_batch_holds_is_refused_before_it_is_built(tmp_path, payload):
    """Issue 21: a 1.9 KB pickle built a 27M-element array. Every array a batch builds is bounded by a CIFAR-10
    batch's size (10,000 × 3,072 bytes) before it is allocated."""
    raw = hostile_batch(payload)
    assert len(raw) < 50_000
    folder = write_batches(tmp_path / "data", make_cifar(0))
    (folder / "data_batch_1").write_bytes(raw)
    with pytest.raises(data_mod.DataError, match=r"data_batch_1 is not a CIFAR-10 pickle \(an array of "
                                                 r"216,000,000 bytes, more than a CIFAR-10 batch holds"):
        data_mod.load(tmp_path / "data", download=False)


def test_a_genuine_batch_repickled_by_numpy_2_still_loads(tmp_path):
    ds = make_cifar(3)
    write_batches(tmp_path / "data", ds)  # pickle.dumps of numpy 2 arrays: numpy._core names, bounded calls
    assert_same(data_mod.load(tmp_path / "data", download=False), ds)


def test_a_small_npz_that_would_decompress_to_gigabytes_is_refused_from_its_header(tmp_path):
    """Issue 21: a 1.2 MB npz allocated 1.2 GB. Each array's size is read from its .npy header first."""
    folder = tmp_path / "bomb"
    folder.mkdir()
    path = folder / data_mod.NPZ_NAME
    ds = make_cifar(0)
    # a header claiming 400M images' worth of bytes, with a compressed body of zeros: read the header, not the data
    np.savez_compressed(path, x_train=np.zeros((400_000, 32, 32, 3), np.uint8), y_train=ds.y_train,
                        x_test=ds.x_test, y_test=ds.y_test)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(data_mod.DataError, match=r"x_train would take 1,228,800,000 bytes, more than CIFAR-10's "
                                                 r"153,600,000"):
        data_mod.load(folder, download=False)


def test_a_genuine_batch_repickled_with_protocol_2_loads(tmp_path):
    """Issue 21: Python 3's protocol 2 writes bytes through _codecs.encode(…, "latin1"); a genuine batch so
    re-pickled was refused as if it asked to run code. Only that spelling is let through."""
    ds = make_cifar(5)
    folder = write_batches(tmp_path / "data", ds)
    for name in (*data_mod.TRAIN_BATCHES, data_mod.TEST_BATCH):
        d = pickle.loads((folder / name).read_bytes())
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    assert "_codecs encode" in pickle_globals((folder / "data_batch_1").read_bytes())
    assert_same(data_mod.load(tmp_path / "data", download=False), ds)


class OtherCodec:
    """_codecs.encode asked for another codec than protocol 2's latin1."""

    def __reduce__(self):
        import _codecs

        return _codecs.encode, (b"x" * 10, "zlib_codec")


def test_codecs_other_than_protocol_2s_latin1_are_refused(tmp_path):
    folder = write_batches(tmp_path / "data", make_cifar(0))
    (folder / "data_batch_1").write_bytes(hostile_batch(OtherCodec()))
    with pytest.raises(data_mod.DataError, match=r"refused: it asks to call _codecs.encode with 'zlib_codec'"):
        data_mod.load(tmp_path / "data", download=False)
