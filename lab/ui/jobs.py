"""The background job manager: one job (a training run or an LR range test) at a time for the whole server.

A job runs in a daemon thread, so the Gradio worker that pressed Start returns at once and no worker is held
for the length of a run. The engine's events (through `callbacks=`) and the range test's progress land in a
thread-safe Job record; the UI polls `status()` with a gr.Timer. Stop is a threading.Event the engine checks
between steps. A second Start while a job runs raises Busy, whose message says what is running and since when.

The manager also caches the dataset (loaded once). It never hands out the training thread's model: the app
inspects runs through their checkpoint files. `status_json()` is what API clients read about the job.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import data as data_mod
from lab.config import RANGE_TEST_ITERS, TrainConfig
from lab.engine import Diverged, resolve_device

log = logging.getLogger(__name__)

MAX_POINTS = 4000  # step events kept per job; past this the older half is thinned so polling stays cheap
KIND_WORDS = {"train": "training run", "lr_range": "LR range test"}


class Busy(RuntimeError):
    """Another job is running; the message names it and when it started."""


@dataclass
class Job:
    id: int
    kind: str  # "train" | "lr_range"
    config: dict[str, Any]
    started: float = field(default_factory=time.time)
    status: str = "running"  # running | done | stopped | diverged | error
    message: str = ""
    finished: float | None = None
    run_dir: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # train: the engine's step events
    epochs: list[dict[str, Any]] = field(default_factory=list)  # train: the engine's epoch records
    points: list[tuple[int, float, float]] = field(default_factory=list)  # range test: (iteration, lr, loss)
    total: int | None = None  # train: epochs; range test: iterations
    result: dict[str, Any] | None = None  # range test: RangeTest.to_dict(); train: the last epoch record

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def started_at(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.started))

    def progress(self) -> str:
        """A few words on how far the job has come."""
        if self.kind == "train":
            if self.steps:
                s = self.steps[-1]
                return f"epoch {s['epoch']}/{self.total}, step {s['step']}/{s['steps_per_epoch']}"
            return f"preparing epoch 1/{self.total}"
        return f"iteration {len(self.points)}/{self.total}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "message": self.message,
            "started": self.started, "started_at": self.started_at, "finished": self.finished,
            "elapsed": (self.finished or time.time()) - self.started, "run_dir": self.run_dir,
            "config": self.config, "total": self.total, "progress": self.progress(),
            "steps": list(self.steps), "epochs": list(self.epochs), "points": list(self.points),
            "result": self.result,
        }


def json_safe(value):
    """NaN/inf → None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


class JobManager:
    def __init__(self, runs_root: str | Path | None = None, data_dir: str | None = None, download: bool = False,
                 data_loader: Callable[[], data_mod.Cifar10] | None = None):
        from lab.runs import DEFAULT_ROOT

        self.runs_root = Path(runs_root) if runs_root is not None else DEFAULT_ROOT
        self.data_dir = data_dir
        self.download = download
        self._data_loader = data_loader
        self._lock = threading.RLock()
        self._data_lock = threading.Lock()
        self._data: data_mod.Cifar10 | None = None
        self._job: Job | None = None
        self._latest: dict[str, Job] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_id = 1
        self._data_warned = False

    # data -----------------------------------------------------------------------------------------------
    def data(self) -> data_mod.Cifar10:
        """CIFAR-10, loaded on first use and kept; DataError (with a readable message) when it is missing."""
        with self._data_lock:
            if self._data is None:
                if self._data_loader is not None:
                    self._data = self._data_loader()
                else:
                    self._data = data_mod.load(self.data_dir, download=self.download)
            return self._data

    def data_error(self) -> str | None:
        """None when the data can be used, else the reason (without loading more than once). The first failure
        also goes to the server's log, so whoever runs the server sees it, not only the people using the app."""
        try:
            self.data()
            return None
        except data_mod.DataError as e:
            if not self._data_warned:
                self._data_warned = True
                if isinstance(e, data_mod.DataNotFoundError):
                    where = ", ".join(f"{d}/" for d in data_mod.search_dirs(self.data_dir))
                    why = f"the download failed: {e}" if self.download else "downloading is off"
                    log.warning("CIFAR-10 not found (searched %s; %s), so the Augment, LR range test, Train and "
                                "Insights tabs cannot work. Set CIFAR10_DIR to a folder holding cifar10.npz, "
                                "cifar-10-batches-py/ or cifar-10-python.tar.gz, or start the app with "
                                "LAB_DOWNLOAD=1 to download it.", where, why)
                else:
                    log.warning("CIFAR-10 cannot be used, so the Augment, LR range test, Train and Insights tabs "
                                "cannot work: %s", e)
            return str(e)

    # state ----------------------------------------------------------------------------------------------
    def fingerprint(self, kind: str) -> tuple:
        """Changes exactly when what a tab shows about the latest `kind` job (or the server's busy state)
        changes: a poller for one kind skips the other kind's events."""
        with self._lock:
            job = self._latest.get(kind)
            running = self._job.id if self._job is not None and self._job.running else None
            if job is None:
                return (None, running)
            return (job.id, job.status, len(job.steps), len(job.epochs), len(job.points), running)

    def busy_message(self) -> str | None:
        with self._lock:
            job = self._job
            if job is None or not job.running:
                return None
            return (f"busy — a {KIND_WORDS[job.kind]} started at {job.started_at} ({_ago(time.time() - job.started)}) "
                    f"is in progress ({job.progress()}). One job runs at a time on this server: wait for it to "
                    "finish, or press Stop.")

    def status(self, kind: str | None = None) -> dict[str, Any] | None:
        """A copy of the latest job (of `kind`, when given) that a poller may read freely; None if none yet."""
        with self._lock:
            job = self._latest.get(kind) if kind else self._job
            return job.to_dict() if job is not None else None

    def status_json(self) -> dict[str, Any]:
        """The current (or last) job for API clients: kind, status, progress, the epoch records and the last
        step; 'busy' is set while a job runs. NaN/inf become null, so it is valid JSON."""
        status = self.status()
        if status is None:
            return {"status": "idle", "kind": None, "busy": False, "message": "no job has run on this server yet"}
        out = {k: status[k] for k in ("id", "kind", "status", "message", "started_at", "elapsed", "run_dir", "total",
                                      "progress", "epochs", "result")}
        out["last_step"] = status["steps"][-1] if status["steps"] else None
        out["points"] = len(status["points"])
        out["busy"] = status["status"] == "running"
        return json_safe(out)

    # starting -------------------------------------------------------------------------------------------
    def _claim(self, kind: str, config: dict[str, Any], total: int) -> Job:
        with self._lock:
            busy = self.busy_message()
            if busy:
                raise Busy(busy)
            job = Job(self._next_id, kind, config, total=total)
            self._next_id += 1
            self._job = job
            self._latest[kind] = job
            self._stop = threading.Event()
            return job

    def _fail(self, job: Job, message: str) -> None:
        with self._lock:
            job.status, job.message, job.finished = "error", message, time.time()

    def _launch(self, job: Job, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except Exception as e:  # a job's failure is shown in the UI, never kills the server
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                with self._lock:
                    job.status = "diverged" if isinstance(e, Diverged) else "error"
                    job.message = str(e) if isinstance(e, Diverged) else f"{type(e).__name__}: {e}"
            finally:
                with self._lock:
                    if job.status == "running":
                        job.status = "error"
                        job.message = job.message or "the job ended without a result"
                    job.finished = time.time()

        self._thread = threading.Thread(target=body, name=f"lab-{job.kind}-{job.id}", daemon=True)
        self._thread.start()

    def start_training(self, cfg: TrainConfig, extra_config: dict[str, Any] | None = None) -> Job:
        """Start a training run in the background; Busy if a job runs, DataError if there is no data."""
        from lab.experiment import train
        from lab.runs import new_run_dir

        busy = self.busy_message()  # fail fast, before touching the data
        if busy:
            raise Busy(busy)
        resolve_device(cfg.device)  # a missing GPU fails here, before a job or an empty run folder exists
        data = self.data()
        job = self._claim("train", cfg.to_dict(), cfg.schedule.epochs)
        stop = self._stop
        try:
            run_dir = new_run_dir(self.runs_root)
        except Exception as e:
            self._fail(job, f"cannot create a run folder under {self.runs_root}: {e}")
            raise
        job.run_dir = str(run_dir)

        def on_event(event) -> None:
            with self._lock:
                if event.kind == "step":
                    # "t": when it arrived, so a poller can count elapsed time and the ETA down between steps
                    job.steps.append({**event.data, "t": time.time()})
                    if len(job.steps) > MAX_POINTS:
                        half = len(job.steps) // 2
                        job.steps[:half] = job.steps[:half:2]
                elif event.kind == "epoch":
                    job.epochs.append(dict(event.data))

        def target() -> None:
            result = train(cfg, data, callbacks=[on_event], stop=stop, run_dir=run_dir,
                           extra_config={"started_from": "app", **(extra_config or {})})
            with self._lock:
                job.result = result.final or None
                job.status = result.status
                acc = result.final.get("test_acc")
                tail = f"; test accuracy {100 * acc:.2f}%" if acc is not None and math.isfinite(acc) else ""
                epochs = cfg.schedule.epochs
                job.message = (f"{'finished' if result.status == 'done' else 'stopped'} after "
                               f"{len(result.history)} of {epochs} epoch{'s' * (epochs != 1)} in {result.seconds:.1f} s"
                               f"{tail}; saved to {run_dir}")

        self._launch(job, target)
        return job

    def start_range_test(self, cfg: TrainConfig, **kwargs: Any) -> Job:
        """Start lab.lr_finder.range_test(cfg, data, **kwargs) in the background."""
        busy = self.busy_message()
        if busy:
            raise Busy(busy)
        from lab.lr_finder import range_test

        data = self.data()
        job = self._claim("lr_range", {"train": cfg.to_dict(), **kwargs}, int(kwargs.get("iters", RANGE_TEST_ITERS)))
        stop = self._stop

        def progress(iteration: int, lr: float, loss: float) -> None:
            with self._lock:
                job.points.append((int(iteration), float(lr), float(loss)))

        def target() -> None:
            from lab.runs import RANGE_TEST_PREFIX, new_run_dir, write_range_test

            result = range_test(cfg, data, progress=progress, stop=stop, **kwargs)
            # saved like a run, so that tests can be listed and overlaid later (a failed save loses only that)
            try:
                folder = new_run_dir(self.runs_root, prefix=RANGE_TEST_PREFIX)
                write_range_test(folder, result.to_dict(), config=cfg.to_dict(), started_from="app")
                saved = f"; saved to {folder}"
            except OSError as e:
                folder, saved = None, f"; not saved ({e})"
                log.error("could not save range test %s: %s", job.id, e)
            with self._lock:
                job.result = result.to_dict()
                job.run_dir = str(folder) if folder is not None else None
                stopped = stop.is_set() or result.status == "stopped"
                job.status = "stopped" if stopped else "done"
                job.message = (f"{'stopped' if stopped else 'finished'} after {len(result.lrs)} iterations: "
                               f"suggested max LR {result.max_lr:.3g}, min LR {result.min_lr:.3g} ({result.rule})"
                               f"{saved}")

        self._launch(job, target)
        return job

    def active_run_dirs(self) -> set[Path]:
        """The run folder the current job writes to (empty when none runs): what rename and delete must not
        touch."""
        with self._lock:
            job = self._job
            return {Path(job.run_dir)} if job is not None and job.running and job.run_dir else set()

    # stopping -------------------------------------------------------------------------------------------
    def stop(self) -> str:
        with self._lock:
            job = self._job
            if job is None or not job.running:
                return "nothing is running"
            self._stop.set()
            return f"stopping the {KIND_WORDS[job.kind]} started at {job.started_at}: it ends after the current step"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends (tests and scripts); True if it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()
