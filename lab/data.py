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


def _read_npz(path: Path) -> Cifar10:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)}; expected x_train, y_train, x_test, y_test")
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
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


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

