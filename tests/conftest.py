"""Shared fixtures: the real CIFAR-10 (loaded once), tiny synthetic datasets in every layout, a CLI runner.

The real data is found through CIFAR10_DIR (CI sets it to ../shared/cifar10), else ../shared/cifar10 beside the
repository, else data/ in it. Tests that need it skip, saying why, only when CIFAR10_DIR is unset and neither
place holds it; a CIFAR10_DIR that holds no CIFAR-10 fails them instead of skipping them quietly.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lab import data as data_mod

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ real data


ENV_DIR = os.environ.get("CIFAR10_DIR")  # read once, at start-up: some tests unset it for themselves
LAYOUTS = (data_mod.NPZ_NAME, f"{data_mod.BATCHES_DIR}/data_batch_1", "data_batch_1", data_mod.ARCHIVE_NAME)


def holds_cifar10(folder: Path) -> bool:
    return any((folder / layout).is_file() for layout in LAYOUTS)


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """Where the real CIFAR-10 is: CIFAR10_DIR when set (and then it must hold it), else ../shared/cifar10
    beside the repository, else ./data in the repository."""
    if ENV_DIR:
        if not holds_cifar10(Path(ENV_DIR)):
            pytest.fail(f"CIFAR10_DIR={ENV_DIR} holds no CIFAR-10 ({', '.join(LAYOUTS)})", pytrace=False)
        return Path(ENV_DIR)
    for folder in (REPO.parent / "shared" / "cifar10", REPO / "data"):
        if holds_cifar10(folder):
            return folder
    pytest.skip("real CIFAR-10 not found: set CIFAR10_DIR to a folder holding cifar10.npz, "
                "cifar-10-batches-py/ or cifar-10-python.tar.gz")


@pytest.fixture(scope="session")
def cifar10(cifar10_dir) -> data_mod.Cifar10:
    return data_mod.load(cifar10_dir, download=False)


# ------------------------------------------------------------------------------------------- synthetic data

TRAIN_PER_BATCH = 4  # 5 batches → 20 training images
N_TEST = 6


def make_cifar(seed: int = 0) -> data_mod.Cifar10:
    """A tiny CIFAR-10-shaped dataset of random pixels; different seeds give different data."""
    rng = np.random.default_rng(seed)
    n_train = TRAIN_PER_BATCH * len(data_mod.TRAIN_BATCHES)
    return data_mod.Cifar10(
        x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train).astype(np.int64),
        x_test=rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, N_TEST).astype(np.int64),
        source="synthetic",
    )


def _batch_pickle(x: np.ndarray, y: np.ndarray) -> bytes:
    """One batch as the official pickles hold it: b'data' (N, 3072) uint8 in R, G, B planes; b'labels' a list."""
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
    return pickle.dumps({b"batch_label": b"synthetic", b"data": rows, b"labels": [int(v) for v in y]})


def _batch_files(ds: data_mod.Cifar10) -> dict[str, bytes]:
    k = TRAIN_PER_BATCH
    files = {name: _batch_pickle(ds.x_train[i * k:(i + 1) * k], ds.y_train[i * k:(i + 1) * k])
             for i, name in enumerate(data_mod.TRAIN_BATCHES)}
    files[data_mod.TEST_BATCH] = _batch_pickle(ds.x_test, ds.y_test)
    return files


def write_npz(folder: Path, ds: data_mod.Cifar10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / data_mod.NPZ_NAME
    # uint8 labels, as in the shared bundle
    np.savez(path, x_train=ds.x_train, y_train=ds.y_train.astype(np.uint8), x_test=ds.x_test,
             y_test=ds.y_test.astype(np.uint8), label_names=np.array(data_mod.CLASSES))
    return path


def write_batches(folder: Path, ds: data_mod.Cifar10) -> Path:
    path = folder / data_mod.BATCHES_DIR
    path.mkdir(parents=True, exist_ok=True)
    for name, raw in _batch_files(ds).items():
        (path / name).write_bytes(raw)
    return path


def write_archive(folder: Path, ds: data_mod.Cifar10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / data_mod.ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in _batch_files(ds).items():
            info = tarfile.TarInfo(f"{data_mod.BATCHES_DIR}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


WRITERS = {"npz": write_npz, "batches": write_batches, "archive": write_archive}


@pytest.fixture
def synthetic_data(tmp_path):
    """make(fmt, seed=0, folder=None) → (folder holding that layout, the dataset written)."""

    def make(fmt: str, seed: int = 0, folder: Path | None = None) -> tuple[Path, data_mod.Cifar10]:
        folder = folder or tmp_path / f"{fmt}-{seed}"
        ds = make_cifar(seed)
        WRITERS[fmt](folder, ds)
        return folder, ds

    return make


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """No test reaches the network: torchvision's CIFAR-10 download fails at once (tests may override this)."""
    import torchvision.datasets

    def refuse(self):
        raise RuntimeError("network disabled in tests")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", refuse)


# --------------------------------------------------------------------------------------------------- CLI


def run_lab(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m lab ARGS` in a fresh interpreter, with the repository on PYTHONPATH."""
    full_env = {k: v for k, v in os.environ.items() if k != "CIFAR10_DIR"}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
