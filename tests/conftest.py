"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import data as data_mod

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ the app (lab.ui)


def _real_data_dir() -> Path | None:
    candidates = [Path(os.environ["CIFAR10_DIR"])] if os.environ.get("CIFAR10_DIR") else []
    candidates += [REPO.parent / "shared" / "cifar10", REPO / "data"]
    layouts = (data_mod.NPZ_NAME, f"{data_mod.BATCHES_DIR}/data_batch_1", "data_batch_1", data_mod.ARCHIVE_NAME)
    for folder in candidates:
        if any((folder / layout).is_file() for layout in layouts):
            return folder
    return None


@pytest.fixture(scope="session")
def ui_data_dir() -> Path:
    folder = _real_data_dir()
    if folder is None:
        pytest.skip("real CIFAR-10 not found: set CIFAR10_DIR to a folder holding cifar10.npz, "
                    "cifar-10-batches-py/ or cifar-10-python.tar.gz")
    return folder


@pytest.fixture(scope="session")
def ui_data(ui_data_dir) -> data_mod.Cifar10:
    """The real CIFAR-10, loaded once for the app's tests."""
    return data_mod.load(ui_data_dir, download=False)


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
def manager(runs_root, ui_data):
    from lab.ui.jobs import JobManager

    m = JobManager(runs_root=runs_root, data_loader=lambda: ui_data)
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
def no_data_ctx(tmp_path):
    """An app context on a server without CIFAR-10."""
    from lab.ui.common import AppContext
    from lab.ui.jobs import JobManager

    def missing():
        raise data_mod.DataNotFoundError("CIFAR-10 not found: searched nowhere (test). Set CIFAR10_DIR.")

    return AppContext(JobManager(runs_root=tmp_path / "runs", data_loader=missing),
                      pretrained=tmp_path / "no-bundled-checkpoint.pt")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def launch_app(tmp_path, ui_data_dir):
    """launch(runs_root) → URL of `python app.py` started in a subprocess on 127.0.0.1 and a free port (host and
    port through GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, as on a Space); stopped at teardown."""
    import subprocess
    import sys
    import time
    import urllib.request

    procs = []

    def launch(runs_root: Path, timeout: float = 120) -> str:
        port = _free_port()
        env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
               "GRADIO_ANALYTICS_ENABLED": "False", "LAB_RUNS_DIR": str(runs_root), "CIFAR10_DIR": str(ui_data_dir),
               "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        log = open(tmp_path / f"app-{port}.log", "w")
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        procs.append((proc, log))
        url = f"http://127.0.0.1:{port}/"
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"app.py exited with {proc.returncode}:\n{Path(log.name).read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                pass
            if time.time() - t0 > timeout:
                raise AssertionError(f"app.py did not answer on {url} within {timeout:.0f} s:\n"
                                     f"{Path(log.name).read_text()}")
            time.sleep(0.5)

    yield launch
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
