"""Shared fixtures: the real CIFAR-10 (loaded once), tiny synthetic datasets in every layout, a CLI runner, and
for the app: a tiny checkpoint, a job manager and app context over it, and `python app.py` on a free port.

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


def call_lab(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """run_lab's twin in this process (no interpreter to start, no torch to import again): `cli.main(args)` run in
    `cwd`, with the environment run_lab would give it (CIFAR10_DIR dropped, then `env`) and its output captured.
    The working folder, the environment and the signal handlers are put back afterwards, whatever happened."""
    import contextlib
    import signal

    from lab import cli

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.pop("CIFAR10_DIR", None)
        os.environ.update(env or {})
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # --help exits through argparse
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
    return subprocess.CompletedProcess(["lab", *args], code, out.getvalue(), err.getvalue())


# ------------------------------------------------------------------------------------------- a tiny run

# The one tiny training setup the suite shares: an eighth of the network on a few hundred real images, batches of
# 64 — seconds per epoch on one core. Tests check plumbing with it, not accuracy.
TINY = dict(width=0.125, subset=256, test_subset=128, batch_size=64, device="cpu")


def tiny_config(epochs: int = 2, **knobs):
    """TINY as a TrainConfig (flat knobs, as the CLI and the app name them, override it)."""
    from lab.config import TrainConfig

    return TrainConfig.from_flat(**{**TINY, "epochs": epochs, **knobs})


# ------------------------------------------------------------------------------------------ the app (lab.ui)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A run folder holding a width-0.125 checkpoint (weights from one seeded init; plumbing, not accuracy)."""
    import torch

    from lab.config import TrainConfig
    from lab.model import Net
    from lab.runs import Run

    torch.manual_seed(0)
    cfg = TrainConfig(width=0.125, subset=256, test_subset=256)
    run = Run(tmp_path_factory.mktemp("ckpt") / "runs" / "20000101-000000")
    run.write_config(cfg, status="done", data={"train_images": 256, "test_images": 256}, seconds=1.0)
    record = {"epoch": 1, "lr": 4e-4, "train_loss": 2.3, "train_acc": 0.1, "test_loss": 2.3, "test_acc": 0.1,
              "seconds": 1.0, "images_per_s": 256.0}
    run.write_metrics([record])
    run.save_model(Net(width=0.125).eval(), cfg, record)
    return run.path


@pytest.fixture
def runs_root(tmp_path, tiny_checkpoint) -> Path:
    """A fresh runs/ folder holding a copy of the tiny run."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(tiny_checkpoint, root / tiny_checkpoint.name)
    return root


@pytest.fixture
def manager(runs_root, cifar10, cifar10_dir):
    from lab.server.jobs import JobManager

    # data_dir: where a child process (a sweep) loads it from, with or without CIFAR10_DIR set
    m = JobManager(runs_root=runs_root, data_dir=str(cifar10_dir), data_loader=lambda: cifar10)
    yield m
    m.stop()
    assert m.wait(60), "a test left a background job running"


@pytest.fixture
def ctx(manager, tmp_path):
    """The app context over the real data and the tiny run; no bundled checkpoint (so tests do not depend on
    assets/)."""
    from lab.ui.common import AppContext

    return AppContext(manager, pretrained=tmp_path / "no-bundled-checkpoint.pt")


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    """Gradio's upload folder for this test (GRADIO_TEMP_DIR, which Gradio reads on each use): the Classify
    handlers read only files in it (or the bundled examples), as they would read a browser's upload."""
    folder = tmp_path / "gradio-uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture
def no_data_ctx(tmp_path):
    """An app context on a server without CIFAR-10."""
    from lab.ui.common import AppContext
    from lab.server.jobs import JobManager

    def missing():
        raise data_mod.DataNotFoundError("CIFAR-10 not found: searched nowhere (test). Set CIFAR10_DIR.")

    return AppContext(JobManager(runs_root=tmp_path / "runs", data_loader=missing),
                      pretrained=tmp_path / "no-bundled-checkpoint.pt")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(runs_root: Path, cwd: Path, data_dir: Path, env: dict[str, str] | None = None,
              timeout: float = 120) -> tuple[subprocess.Popen, Path, str]:
    """`python app.py` in a subprocess on 127.0.0.1 and a free port (host and port through GRADIO_SERVER_NAME /
    GRADIO_SERVER_PORT, as on a Space), once it answers: (process, its log file, URL). Stop it with stop_app."""
    import time
    import urllib.request

    port = _free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", "LAB_RUNS_DIR": str(runs_root), "CIFAR10_DIR": str(data_dir),
                "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    log = cwd / f"app-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=cwd, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, log, url
        except OSError:
            pass
        if time.time() - t0 > timeout:
            stop_app(proc)
            raise AssertionError(f"app.py did not answer on {url} within {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.5)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def launch_app(tmp_path, cifar10_dir):
    """launch(runs_root) → URL of `python app.py` (start_app) over the real data; stopped at teardown."""
    procs = []

    def launch(runs_root: Path, timeout: float = 120, env: dict[str, str] | None = None) -> str:
        """`env`: more variables for the app (e.g. LAB_PUBLIC=1)."""
        proc, log, url = start_app(runs_root, tmp_path, cifar10_dir, env=env, timeout=timeout)
        procs.append((proc, log))
        return url

    launch.procs = procs  # (process, log) of each app started: a test may signal one
    yield launch
    for proc, _ in procs:
        if proc.poll() is None:  # not already ended (a test may stop it)
            stop_app(proc)
