"""A run on disk: runs/<id>/config.json, metrics.jsonl, model.pt, and lock.json while a process trains it.

A run folder never lies:
- Every file is written atomically (a temporary file in the same folder, flushed and fsynced, then renamed over
  the target), so a crash mid-write leaves the previous version, never half a file. A temporary left by a
  killed process is never read, and is removed once no live process owns the run (remove_temporaries).
- The training loop writes an epoch's checkpoint before the metrics line that claims it (lab.experiment).
- lock.json names the process that trains the run (pid, host, the process's start time). A run whose
  config.json still says `running` but whose owner is gone (SIGKILL, out of memory, a server restart) reads
  `interrupted` in Run.summary — the one reader that lists and labels use.
- A full disk is one DiskFull line naming the folder and the space left.
model.pt holds only tensors and plain Python values, so it loads with torch.load(path, weights_only=True).
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab.config import RUNS_DIR, ConfigError, TrainConfig
from lab.model import Net

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "model.pt"
LOCK = "lock.json"
DEFAULT_ROOT = Path(RUNS_DIR)
# The bundled spec-recipe checkpoint (fp16 state dict) and its recorded metrics, used by default by
# `python -m lab evaluate` and the app.
ASSETS = Path(__file__).resolve().parent.parent / "assets"
PRETRAINED_CHECKPOINT = ASSETS / "cifar10_resnet9.pt"
PRETRAINED_METRICS = PRETRAINED_CHECKPOINT.with_suffix(".json")  # beside every bundled checkpoint: recorded_metrics
RANGE_TEST = "lr_finder.json"  # an LR range test's folder holds this instead of config.json
RANGE_TEST_PREFIX = "lr-finder-"
# A run's name is its folder's name; names a caller sends are matched against the listed folders, never joined into
# a path, so this pattern only decides which strings are worth looking up.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TITLE_MAX = 80  # characters in a run's display title
# A run whose config says "running", whose lock names a process on another host (which cannot be asked whether it
# lives), and whose files have not changed for this long is taken for the leftover of a process that died (an epoch
# of the spec recipe on two CPU cores takes ~15 min, so a live run writes more often). On this host the lock decides.
STALE_RUNNING_S = 3600
PACKAGES = ("torch", "torchvision", "albumentations", "numpy", "torch-lr-finder", "grad-cam", "gradio")


class CheckpointError(RuntimeError):
    pass


class RunError(ValueError):
    """A request about a run folder (rename, delete, look up) that cannot be done; the message says why."""


class DiskFull(OSError):
    """A write failed for want of space (or quota); the message names the folder and the space left."""


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(folder: Path) -> int | None:
    """Space left for writing in `folder` (or its nearest existing parent); None when it cannot be told."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def disk_full(folder: Path, what: str) -> DiskFull:
    error = DiskFull(f"disk full: cannot write {what} in {folder} ({fmt_bytes(free_bytes(folder))} free there); "
                     "free some space, or save runs elsewhere, and start again")
    error.errno = errno.ENOSPC  # set apart from the message: OSError(errno, text) would print "[Errno 28] …"
    return error


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if e.errno in FULL_ERRNOS:
            raise disk_full(path.parent, path.name) from e
        raise
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)  # first: the space the half-written file held is given back
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS and not isinstance(e, DiskFull):
            raise disk_full(path.parent, path.name) from e
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def code_version() -> str | None:
    """The git commit of the lab's code, with '+dirty' when it has uncommitted changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def new_run_dir(root: Path = DEFAULT_ROOT, prefix: str = "") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = Path(root) / f"{prefix}{stamp}{'' if i == 0 else f'-{i}'}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {root}")


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The model.pt a path names: the file itself, or the one inside a run folder."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def recorded_metrics(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """What a bundled checkpoint's JSON beside it records (test accuracy, training history); {} when absent."""
    try:
        doc = json.loads(Path(checkpoint).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


# ------------------------------------------------------------------------------------------- run ownership


def _process_start(pid: int) -> str | None:
    """The kernel's start time of process `pid` (/proc/<pid>/stat field 22, clock ticks since boot): with the
    pid it tells a process from a later one that reuses the pid (a restarted container often gets the same
    one). None off Linux, or when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return False
    return True


def owner_record() -> dict[str, Any]:
    """What lock.json says about the process that trains a run."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": time.time(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "process_start": _process_start(pid)}


def owner_alive(lock: dict[str, Any]) -> bool | None:
    """True: the process a lock names still runs; False: it is gone; None: it ran on another host, which cannot
    be checked from here."""
    if lock.get("host") != socket.gethostname():
        return None
    pid = lock.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid):
        return False
    recorded, now = lock.get("process_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


TEMP_GRACE_S = 60  # a temporary younger than this may belong to a write in progress (writes take seconds)


@dataclass(frozen=True)
class RunSummary:
    """What a list of runs shows about one: read from its config.json, metrics.jsonl and lock.json."""

    name: str
    status: str  # running | done | stopped | diverged | error | interrupted, or "unreadable"
    epochs_done: int
    epochs: int | None  # asked for
    test_acc: float | None  # after the last finished epoch
    width: float | None
    optimizer: str | None
    max_lr: float | None
    batch_size: int | None
    train_images: int | None
    seconds: float | None
    has_checkpoint: bool
    title: str | None = None  # a display name given in the app (config.json "title"); the folder keeps its name
    folder: str = ""  # where it is (the `runs` command and the app show it)
    error: str | None = None  # why a run failed or diverged, as recorded


@dataclass
class Run:
    """One run's folder. Metrics are kept in memory and the whole file rewritten atomically per epoch."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # ownership ------------------------------------------------------------------------------------------
    def claim(self) -> None:
        """Write lock.json naming this process as the run's owner (before config.json says `running`)."""
        atomic_write_text(self.path / LOCK, json.dumps(owner_record()) + "\n")

    def release(self) -> None:
        """Remove lock.json (after config.json records how the run ended)."""
        (self.path / LOCK).unlink(missing_ok=True)

    def lock(self) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.path / LOCK).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def owned(self) -> bool | None:
        """Whether a live process trains this run: True, False, or None when its owner is on another host."""
        lock = self.lock()
        return False if lock is None else owner_alive(lock)

    def temporaries(self) -> list[Path]:
        """Temporary files of atomic writes (.NAME.*.tmp) in the folder: what a killed writer leaves."""
        try:
            return sorted(p for p in self.path.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))
        except OSError:
            return []

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporaries a dead writer left (never while a live process owns the run, never one young
        enough to be a write in progress); returns those removed."""
        if self.owned() is not False:
            return []
        removed = []
        for temporary in self.temporaries():
            try:
                if time.time() - temporary.stat().st_mtime > TEMP_GRACE_S:
                    temporary.unlink()
                    removed.append(temporary)
            except OSError:
                pass
        return removed

    # writing --------------------------------------------------------------------------------------------
    def write_config(self, cfg: TrainConfig, **extra: Any) -> None:
        doc = {"config": cfg.to_dict(), "packages": package_versions(), "code_version": code_version(),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
        atomic_write_text(self.path / CONFIG, json.dumps(doc, indent=2, default=str) + "\n")

    def update_config(self, **extra: Any) -> None:
        doc = self.config_doc()
        doc.update(extra)
        atomic_write_text(self.path / CONFIG, json.dumps(doc, indent=2, default=str) + "\n")

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_text(self.path / METRICS, text)

    def save_model(self, model: nn.Module, cfg: TrainConfig, metrics: dict[str, Any] | None = None,
                   half: bool = False) -> Path:
        return save_checkpoint(self.path / CHECKPOINT, model, cfg, metrics, half)

    # reading --------------------------------------------------------------------------------------------
    def config_doc(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / CONFIG).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{self.path} has no {CONFIG}: it is not a run folder") from None
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{self.path / CONFIG} is not valid JSON ({e})") from e

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config_doc()["config"])

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def summary(self) -> RunSummary:
        """The one reading of a run folder that lists and labels use; never raises for a damaged folder. A run
        that says `running` but that no live process owns any more reads `interrupted`."""
        try:
            metrics = self.metrics()
        except (OSError, ValueError):
            metrics = []
        acc = metrics[-1].get("test_acc") if metrics and isinstance(metrics[-1], dict) else None
        try:
            doc = self.config_doc()
            cfg = TrainConfig.from_dict(doc["config"])
        except (CheckpointError, ConfigError, KeyError, TypeError, ValueError, OSError):
            return RunSummary(self.name, "unreadable", len(metrics), None, acc, None, None, None, None, None, None,
                              self.checkpoint.is_file(), folder=str(self.path))
        seconds = doc.get("seconds")
        images = doc.get("data", {}).get("train_images") if isinstance(doc.get("data"), dict) else None
        title = doc.get("title")
        status = str(doc.get("status", "?"))
        if status == "running" and self.owned() is False:
            status = "interrupted"  # config.json was never updated: its process died (SIGKILL, out of memory)
        error = doc.get("error")
        return RunSummary(self.name, status, len(metrics), cfg.schedule.epochs, acc, cfg.width,
                          cfg.optimizer.name, cfg.schedule.max_lr, cfg.batch_size, images,
                          float(seconds) if isinstance(seconds, (int, float)) else None, self.checkpoint.is_file(),
                          title=title if isinstance(title, str) and title else None, folder=str(self.path),
                          error=str(error) if error else None)

    def last_written(self) -> float:
        """The newest modification time of the folder's files (seconds since the epoch); 0 for an empty folder."""
        times = [f.stat().st_mtime for f in self.path.iterdir() if f.is_file()] if self.path.is_dir() else []
        return max(times, default=0.0)

    @property
    def name(self) -> str:
        return self.path.name


def save_checkpoint(path: Path, model: nn.Module, cfg: TrainConfig, metrics: dict[str, Any] | None = None,
                    half: bool = False) -> Path:
    """State dict (fp16 on request: half the size, same predictions to within rounding) + config + metrics."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    doc = {"state_dict": state, "config": cfg.to_dict(), "metrics": metrics or {}, "format": 1}
    buf = io.BytesIO()
    torch.save(doc, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Net, TrainConfig, dict]:
    """(model in eval mode, its config, its recorded metrics). Accepts a model.pt or a run folder."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass a model.pt file or a run folder holding one")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable lab checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(doc, dict) or "state_dict" not in doc or "config" not in doc:
        raise CheckpointError(f"{path} is not a lab checkpoint: expected keys state_dict and config")
    try:
        cfg = TrainConfig.from_dict(doc["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path} is not a lab checkpoint: {e}") from e
    state = doc["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a lab checkpoint: its state_dict is not a mapping of tensors")
    model = Net(width=cfg.width)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the network of width {cfg.width} ({e})") from e
    metrics = doc.get("metrics", {})
    return model.to(device).eval(), cfg, metrics if isinstance(metrics, dict) else {}


def list_runs(root: Path = DEFAULT_ROOT) -> list[Run]:
    """Run folders under root (those with a config.json), newest first."""
    return _folders_with(root, CONFIG)


def list_range_tests(root: Path = DEFAULT_ROOT) -> list[Run]:
    """LR range test folders under root (those with an lr_finder.json), newest first."""
    return _folders_with(root, RANGE_TEST)


def _folders_with(root: Path, marker: str) -> list[Run]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [Run(folder) for folder in root.iterdir() if (folder / marker).is_file()]
    return sorted(found, key=lambda r: (r.path / marker).stat().st_mtime, reverse=True)


def read_range_test(folder: Run | Path) -> dict[str, Any]:
    """A saved range test (lab.lr_finder.RangeTest.to_dict(), plus "config" and "title" when the app saved it);
    RunError when the file is missing or not a range test."""
    path = Path(getattr(folder, "path", folder)) / RANGE_TEST
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path} cannot be read as a range test ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("lrs"), list) or not isinstance(doc.get("losses"), list):
        raise RunError(f"{path} is not a range test: it lacks the lrs and losses lists")
    return doc


def write_range_test(folder: Path, result: dict[str, Any], **extra: Any) -> Path:
    """Save a range test (RangeTest.to_dict() and `extra`, e.g. the config it ran with) as folder/lr_finder.json,
    atomically; the folder then lists among the range tests. Returns the file written."""
    path = Path(folder) / RANGE_TEST
    doc = {**result, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    atomic_write_text(path, json.dumps(doc, indent=2, default=str) + "\n")
    return path


def find_run(root: Path, name: str, range_tests: bool = False) -> Run:
    """The training run (or, with range_tests, the range test) called `name` directly under `root`. The name is
    compared with the folders found there, never turned into a path itself, so no string a caller sends ('..',
    '/etc', 'a/../../b') can name anything outside the runs root; RunError when no listed folder has that name."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise RunError(f"{str(name)[:120]!r} is not a run name (letters, digits, '.', '_' and '-'; pick one from the "
                       "list)")
    for run in (list_range_tests(root) if range_tests else list_runs(root)):
        if run.name == name:
            if run.path.is_symlink() or run.path.resolve().parent != Path(root).resolve():
                raise RunError(f"{name} is a link to a folder elsewhere; this lab only changes folders inside "
                               f"{root}")
            return run
    raise RunError(f"there is no {'range test' if range_tests else 'run'} called {name} in {root}; refresh the list")


def check_title(title: str) -> str:
    """A display title, stripped; '' clears it. RunError for one that is too long or has control characters."""
    if not isinstance(title, str):
        raise RunError("a title must be text")
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise RunError(f"a title has at most {TITLE_MAX} characters, this one {len(title)}; shorten it")
    if any(not ch.isprintable() for ch in title):
        raise RunError("a title cannot hold line breaks or control characters; type it on one line")
    return title


def _check_idle(run: Run, active: set[Path], what: str) -> None:
    """RunError when `run` is training now: in this process (`active`) or, as its lock tells, in another. A run
    whose lock names a process on another host cannot be checked from here: its files' age decides."""
    if run.path.resolve() in {Path(a).resolve() for a in active}:
        raise RunError(f"{run.name} is training right now; stop it first, then {what} it")
    if (run.path / CONFIG).is_file() and run.owned():
        lock = run.lock() or {}
        raise RunError(f"{run.name} is being trained by process {lock.get('pid')} on this machine; stop that "
                       f"process first, then {what} it")
    status = run.summary().status if (run.path / CONFIG).is_file() else "done"
    age = time.time() - run.last_written()
    if status == "running" and age < STALE_RUNNING_S:
        raise RunError(f"{run.name} says it is still running (its files changed {int(age // 60)} min ago): a process "
                       f"on another machine may be training it. Stop that process first, then {what} it (a run that "
                       f"has written nothing for {STALE_RUNNING_S // 60} min counts as dead)")


def set_title(root: Path, name: str, title: str, active: set[Path] = frozenset()) -> str:
    """Give the run `name` a display title ('' clears it); the folder, and so every path to it, keeps its name.
    Returns the title stored. Refused (RunError) for a run that is training."""
    title = check_title(title)
    run = find_run(root, name)
    _check_idle(run, active, "rename")
    run.update_config(title=title or None)
    return title


def delete_run(root: Path, name: str, active: set[Path] = frozenset(), range_test: bool = False) -> Path:
    """Delete the run (or range test) `name` under `root` and everything in its folder; returns the folder removed.
    Refused (RunError) for a run that is training, and for anything not listed directly under `root`."""
    run = find_run(root, name, range_tests=range_test)
    if range_test and (run.path / CONFIG).is_file():
        raise RunError(f"the range test {name} belongs to the training run of that name (train --max-lr find); "
                       "delete the run to remove both")
    _check_idle(run, active, "delete")
    shutil.rmtree(run.path)
    return run.path


def _size(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _created(run: Run) -> float:
    try:
        return (run.path / CONFIG).stat().st_mtime if not (run.path / LOCK).exists() else time.time()
    except OSError:
        return 0.0


def prune(root: Path, quota_bytes: int, incoming: int = 0) -> list[str]:
    """Make room under `root` for `incoming` more bytes within `quota_bytes`: delete finished runs, the
    least recently finished first, until the folder fits. Never a run a live process owns (or one owned from
    another host), never anything but a run folder directly under root (so never the bundled assets/, which
    holds no config.json), and stray temporaries of dead runs go first. Returns the names deleted."""
    root = Path(root)
    if not root.is_dir():
        return []
    for run in list_runs(root):
        run.remove_temporaries()
    total = _size(root)
    removed: list[str] = []
    assets = ASSETS.resolve()
    candidates = sorted(list_runs(root), key=_created)
    for run in candidates:
        if total + incoming <= quota_bytes:
            break
        where = run.path.resolve()
        if run.owned() is not False or where == assets or assets.is_relative_to(where) or where.parent != root.resolve():
            continue
        size = _size(run.path)
        shutil.rmtree(run.path, ignore_errors=True)
        if not run.path.exists():
            total -= size
            removed.append(run.name)
    return removed
