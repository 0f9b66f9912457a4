"""Find and load CIFAR-10 as uint8 arrays; class names and mean/std live here and only here.

An explicit directory (`--data-dir`) is the only place looked in when one is given: a folder holding no CIFAR-10
is an error, never a reason to train on other data found elsewhere. Without one, the places searched, in order,
are the CIFAR10_DIR environment variable and ./data. In each, three layouts are understood: the compact
`cifar10.npz` bundle, the official `cifar-10-batches-py` pickles, and the official `cifar-10-python.tar.gz`
archive. If none is found, torchvision downloads the official archive into ./data (real users have a network);
if that fails too, what the failed download left is removed and DataNotFoundError names every place searched
and how to provide the data.

The official batches are pickles, and a pickle can name any function to call while it loads. They are read by
_BatchUnpickler, which lets a pickle name only the numpy functions that rebuild an array; a batch that names
anything else (os.system, a class with a __reduce__ …) is refused with a DataError before it runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the 50,000 training images, in [0, 1] units (standard CIFAR-10 figures, checked in
# tests/test_data.py against the real training set).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

NPZ_NAME = "cifar10.npz"
BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DEFAULT_DIR = Path("data")


class DataError(RuntimeError):
    """The data could not be used; the message says what and where."""


class DataNotFoundError(DataError):
    pass


@dataclass(frozen=True)
class Cifar10:
    x_train: np.ndarray  # (N, 32, 32, 3) uint8, HWC RGB
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # the file or folder read

    @property
    def sha256(self) -> str:
        """Checksum of the pixels and labels, the same whichever layout they came from."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train.astype(np.uint8), self.x_test, self.y_test.astype(np.uint8)):
            h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()

    def subset(self, train: int | None = None, test: int | None = None) -> Cifar10:
        """The first `train` training and first `test` test images (all when None)."""
        return Cifar10(
            self.x_train[:train], self.y_train[:train], self.x_test[:test], self.y_test[:test], self.source
        )


def _validate(x: np.ndarray, y: np.ndarray, what: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: {what} images have shape {x.shape}, expected (N, 32, 32, 3); the file is not CIFAR-10")
    if y.shape != (x.shape[0],):
        raise DataError(f"{path}: {what} has {x.shape[0]} images but labels of shape {y.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{path}: {what} images are {x.dtype}, expected uint8")
    if len(y) == 0:
        raise DataError(f"{path}: the {what} set holds no images; the file is not CIFAR-10 (replace it)")
    if y.min() < 0 or y.max() >= len(CLASSES):
        raise DataError(f"{path}: {what} labels fall outside 0–9")
    return x, y.astype(np.int64)


# The most bytes an array of CIFAR-10 can hold: 50,000 training images of 32 × 32 × 3 bytes (labels: 50,000 int64).
# A file's arrays are checked against these from their headers before anything is read: a small compressed npz
# or pickle can otherwise ask for gigabytes (issue 21: 1.2 MB of npz allocated 1.2 GB).
MAX_IMAGE_BYTES = 50_000 * 32 * 32 * 3
MAX_LABEL_BYTES = 50_000 * 8


def _npz_header_bytes(z, key: str) -> int:
    """The bytes array `key` of an open npz would take, from its .npy header alone (nothing is decompressed)."""
    with z.zip.open(f"{key}.npy") as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _read_npz(path: Path) -> Cifar10:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)}; expected x_train, y_train, x_test, y_test")
            for key in ("x_train", "y_train", "x_test", "y_test"):
                limit = MAX_IMAGE_BYTES if key.startswith("x") else MAX_LABEL_BYTES
                size = _npz_header_bytes(z, key)
                if size > limit:
                    raise DataError(f"{path}: {key} would take {size:,} bytes, more than CIFAR-10's {limit:,}; the "
                                    "file is not CIFAR-10 (replace it)")
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except DataError:
        raise
    except Exception as e:  # zip errors, truncated files, pickled objects
        raise DataError(f"{path}: cannot read it as a CIFAR-10 npz bundle ({e}); replace or delete the file") from e
    xtr, ytr = _validate(arrays["x_train"], arrays["y_train"], "training", path)
    xte, yte = _validate(arrays["x_test"], arrays["y_test"], "test", path)
    return Cifar10(xtr, ytr, xte, yte, str(path))


def _numpy_globals() -> dict[tuple[str, str], object]:
    """What the official batches name, and only that: cPickle wrote each b'data' array (Python 2, numpy 1) as
    numpy.core.multiarray._reconstruct(numpy.ndarray, shape, numpy.dtype(...)) plus its raw bytes. numpy 2 writes
    the same under numpy._core (a re-pickled batch), and its integers (labels saved as numpy scalars) through
    multiarray.scalar(dtype, bytes). None of these runs code: they build an array, a dtype or a number."""
    try:
        from numpy._core import multiarray  # numpy 2
    except ImportError:  # numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    def reconstruct(subtype, shape, dtype):  # the array a batch rebuilds, bounded before it is allocated
        _check_batch_array(shape, np.dtype(dtype))
        return multiarray._reconstruct(np.ndarray, shape, dtype)

    def latin1(text, encoding="utf-8"):
        # Python 3's protocol 2 writes bytes as _codecs.encode(str, "latin1") (a batch re-pickled so names it);
        # only that spelling of bytes is let through, not a call of any other codec
        if encoding != "latin1" or not isinstance(text, str):
            raise _Refused(f"_codecs.encode with {encoding!r:.20}")
        return text.encode("latin1")

    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): _BatchArray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): latin1}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


# One batch holds 10,000 images of 3,072 bytes: no array in it can be larger.
MAX_BATCH_ARRAY_BYTES = 10_000 * 3072


def _check_batch_array(shape, dtype: np.dtype) -> None:
    try:
        size = int(np.prod(tuple(int(n) for n in shape), dtype=np.int64)) * dtype.itemsize
    except (TypeError, ValueError, OverflowError):
        raise pickle.UnpicklingError(f"an array of shape {shape!r:.60}") from None
    if size < 0 or size > MAX_BATCH_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"an array of {size:,} bytes, more than a CIFAR-10 batch holds "
                                     f"({MAX_BATCH_ARRAY_BYTES:,})")


class _BatchArray(np.ndarray):
    """What a batch's pickle gets for numpy.ndarray: building one directly (ndarray(shape, dtype)) is bounded like
    _reconstruct's, before anything is allocated. The official batches only pass it to _reconstruct."""

    def __new__(cls, shape, dtype=float, *args, **kwargs):
        _check_batch_array(shape if isinstance(shape, tuple) else (shape,), np.dtype(dtype))
        return np.ndarray.__new__(np.ndarray, shape, dtype, *args, **kwargs)


_BATCH_GLOBALS = _numpy_globals()


class _Refused(pickle.UnpicklingError):
    """A batch named a global outside _BATCH_GLOBALS (its args: the dotted name)."""


class _BatchUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that resolves only _BATCH_GLOBALS. find_class is how every global a pickle names is
    looked up (GLOBAL, STACK_GLOBAL, INST/OBJ, copyreg extensions), so nothing else can be called or built."""

    def find_class(self, module: str, name: str):
        try:
            return _BATCH_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle_batch(raw: bytes, name: str, where: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
        x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except _Refused as e:
        raise DataError(f"{where}: batch {name} refused: it asks to call {e}, which a CIFAR-10 batch never does, "
                        "so it was not loaded; replace it with the official file") from None
    except Exception as e:
        raise DataError(f"{where}: batch {name} is not a CIFAR-10 pickle ({e}); replace it") from e
    return np.ascontiguousarray(x), labels


def _assemble(batches: dict[str, tuple[np.ndarray, np.ndarray]], where: Path) -> Cifar10:
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in batches]
    if missing:
        raise DataError(f"{where}: missing batches {missing}")
    xtr = np.concatenate([batches[n][0] for n in TRAIN_BATCHES])
    ytr = np.concatenate([batches[n][1] for n in TRAIN_BATCHES])
    xtr, ytr = _validate(xtr, ytr, "training", where)
    xte, yte = _validate(*batches[TEST_BATCH], "test", where)
    return Cifar10(xtr, ytr, xte, yte, str(where))


def _read_batches_dir(path: Path) -> Cifar10:
    batches = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        f = path / name
        if not f.is_file():
            raise DataError(f"{path}: missing {name}; the folder should hold data_batch_1..5 and test_batch")
        batches[name] = _unpickle_batch(f.read_bytes(), name, f)
    return _assemble(batches, path)


def _read_archive(path: Path) -> Cifar10:
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in (*TRAIN_BATCHES, TEST_BATCH):
                    f = tar.extractfile(member)
                    assert f is not None
                    batches[name] = _unpickle_batch(f.read(), name, path)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot read the archive ({e}); replace or delete it") from e
    return _assemble(batches, path)


def _candidates(folder: Path) -> list[tuple[Path, object]]:
    """The layouts a folder may hold, in the order tried. The folder may itself be the batches folder."""
    return [
        (folder / NPZ_NAME, _read_npz),
        (folder / BATCHES_DIR, _read_batches_dir),
        (folder, _read_batches_dir),
        (folder / ARCHIVE_NAME, _read_archive),
    ]


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where to look: only `data_dir` when it is given, else $CIFAR10_DIR and ./data."""
    if data_dir:
        return [Path(data_dir)]
    dirs = []
    if os.environ.get("CIFAR10_DIR"):
        dirs.append(Path(os.environ["CIFAR10_DIR"]))
    dirs.append(DEFAULT_DIR)
    return dirs


def find(data_dir: str | os.PathLike | None = None) -> tuple[Path, object] | None:
    """The first readable layout in the search order, without loading it."""
    for folder in search_dirs(data_dir):
        if data_dir and folder == Path(data_dir) and not folder.exists():
            raise DataNotFoundError(f"data dir {folder} does not exist; pass a folder holding {NPZ_NAME}, "
                                    f"{BATCHES_DIR}/ or {ARCHIVE_NAME}")
        for path, reader in _candidates(folder):
            if reader is _read_batches_dir:
                if (path / "data_batch_1").is_file():
                    return path, reader
            elif path.is_file():
                return path, reader
    return None


def _download(root: Path) -> Path:
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10  # imported late: only a download needs it

    TorchvisionCIFAR10(root=str(root), train=True, download=True)
    return root / BATCHES_DIR


def _remove_new(made: list[Path]) -> None:
    """Remove what a failed download created: `made` lists the paths that did not exist before it."""
    import shutil

    for path in made:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def load(data_dir: str | os.PathLike | None = None, download: bool = True) -> Cifar10:
    """Load CIFAR-10 from `data_dir` when given (only there), else from the first place that has it, or
    download it into ./data."""
    found = find(data_dir)
    if found is not None:
        path, reader = found
        return reader(path)  # type: ignore[operator]
    if data_dir:
        raise DataNotFoundError(
            f"data dir {data_dir} holds no CIFAR-10: expected {NPZ_NAME}, {BATCHES_DIR}/ or {ARCHIVE_NAME} in it. "
            "Point --data-dir at the folder that holds one of them, or leave it out to search $CIFAR10_DIR and "
            f"{DEFAULT_DIR}/ (and download there)."
        )
    searched = ", ".join(f"{d}/" for d in search_dirs(data_dir))
    why = "download turned off"
    if download:
        made = [p for p in (DEFAULT_DIR, DEFAULT_DIR / BATCHES_DIR, DEFAULT_DIR / ARCHIVE_NAME) if not p.exists()]
        try:
            return _read_batches_dir(_download(DEFAULT_DIR))
        except Exception as e:  # no network, disk full, a half download
            _remove_new(made)  # a half download would be found (and fail) next time; an empty data/ misleads
            why = f"the download into {DEFAULT_DIR}/ failed: {type(e).__name__}: {e}"
    raise DataNotFoundError(
        f"CIFAR-10 not found: searched {searched} for {NPZ_NAME}, {BATCHES_DIR}/ or {ARCHIVE_NAME}, and {why}. "
        "Provide the data: pass --data-dir DIR or set CIFAR10_DIR to a folder holding cifar10.npz, the "
        "official cifar-10-batches-py/ folder or cifar-10-python.tar.gz (from "
        "https://www.cs.toronto.edu/~kriz/cifar.html)."
    )


def mean_pixel() -> tuple[int, int, int]:
    """MEAN in 0–255 units, rounded: what CutOut fills its hole with."""
    return tuple(int(round(m * 255)) for m in MEAN)  # type: ignore[return-value]

