"""The background job manager: one job (a training run or an LR range test) at a time for the whole server.

A job runs in a daemon thread, so the Gradio worker that pressed Start returns at once and no worker is held
for the length of a run. The engine's events (through `callbacks=`) and the range test's progress land in a
thread-safe Job record; the UI polls `status()` with a gr.Timer. Stop is a threading.Event the engine checks
between steps. A second Start while a job runs raises Busy, whose message says what is running and since when.

The manager also caches the dataset (loaded once). It never hands out the training thread's model: the app
inspects runs through their checkpoint files. `status_json()` is what API clients read about the job.

Every job's cost is checked before it starts (lab.experiment.preflight: the data's size, the schedule's length,
the estimated peak memory against what is free). On a shared server (`shared=True`: a Space, or LAB_PUBLIC=1)
the manager also applies the per-job caps (lab.config.SHARED_CAPS), keeps runs/ within a quota by pruning the
oldest finished runs, and lets only the browser session that started a job stop it; everyone sees what runs and
when it should end.
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
from lab.config import RANGE_TEST_ITERS, SHARED_CAPS, SHARED_RUNS_QUOTA, ConfigError, TrainConfig, check_caps
from lab.engine import Diverged

log = logging.getLogger(__name__)

MAX_POINTS = 4000  # step events kept per job; past this the older half is thinned so polling stays cheap
KIND_WORDS = {"train": "training run", "lr_range": "LR range test"}


class Busy(RuntimeError):
    """Another job is running; the message names it, when it started and when it should end."""


class NotYours(RuntimeError):
    """On a shared server, Stop from a browser session other than the one that started the job."""


TRUSTED = object()  # stop()'s caller when it is the server itself (tests, shutdown), not a browser session


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
    owner: str | None = None  # the browser session (gr.Request.session_hash) that started it

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

    def eta(self) -> float | None:
        """Seconds until the job should end (from its pace so far); None before there is a pace."""
        if not self.running:
            return None
        if self.kind == "train":
            eta = self.steps[-1].get("eta") if self.steps else None
            return eta if isinstance(eta, (int, float)) and math.isfinite(eta) else None
        done = len(self.points)
        return (time.time() - self.started) / done * max(0, (self.total or done) - done) if done else None

    def ends(self) -> str:
        """'; it should end at about 14:10:05 (in 6 min)', or '' while there is no pace yet."""
        eta = self.eta()
        if eta is None:
            return ""
        at = time.strftime("%H:%M:%S", time.localtime(time.time() + eta))
        return f"; it should end at about {at} (in {_duration(eta)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "message": self.message,
            "started": self.started, "started_at": self.started_at, "finished": self.finished,
            "elapsed": (self.finished or time.time()) - self.started, "run_dir": self.run_dir,
            "config": self.config, "total": self.total, "progress": self.progress(),
            "steps": list(self.steps), "epochs": list(self.epochs), "points": list(self.points),
            "result": self.result, "eta": self.eta(),
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


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _ago(seconds: float) -> str:
    return f"{_duration(seconds)} ago"


def failure_message(e: BaseException) -> str:
    """One readable line for a job that failed: the lab's own errors say what to do; anything else is named
    as unexpected (the server log has the traceback)."""
    from lab.runs import CheckpointError, DiskFull

    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, (Diverged, ConfigError, data_mod.DataError, CheckpointError, DiskFull)):
        return first
    if isinstance(e, MemoryError) or "out of memory" in first.lower():
        return ("out of memory: this run needed more memory than was free when it ran; lower the batch size or the "
                "width")
    return f"the job failed unexpectedly ({type(e).__name__}{': ' + first if first else ''}); the server log has details"


class JobManager:
    def __init__(self, runs_root: str | Path | None = None, data_dir: str | None = None, download: bool = False,
                 data_loader: Callable[[], data_mod.Cifar10] | None = None, shared: bool = False,
                 caps: dict[str, Any] | None = None, runs_quota: int | None = None):
        """`shared`: a server strangers use — per-job caps (`caps`, default SHARED_CAPS), a quota on runs_root
        (`runs_quota` bytes, default SHARED_RUNS_QUOTA) and session-owned Stop."""
        from lab.runs import DEFAULT_ROOT

        self.runs_root = Path(runs_root) if runs_root is not None else DEFAULT_ROOT
        self.data_dir = data_dir
        self.download = download
        self.shared = shared
        self.caps = dict(SHARED_CAPS if caps is None else caps)
        self.runs_quota = SHARED_RUNS_QUOTA if runs_quota is None else runs_quota
        self._data_loader = data_loader
        self._lock = threading.RLock()
        self._data_lock = threading.Lock()
        self._data: data_mod.Cifar10 | None = None
        self._job: Job | None = None
        self._latest: dict[str, Job] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_id = 1

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
        """None when the data can be used, else the reason (without loading more than once)."""
        try:
            self.data()
            return None
        except data_mod.DataError as e:
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
            how = ("wait for it to finish (only the browser session that started it can stop it)" if self.shared
                   else "wait for it to finish, or press Stop")
            return (f"busy — a {KIND_WORDS[job.kind]} started at {job.started_at} ({_ago(time.time() - job.started)}) "
                    f"is in progress ({job.progress()}){job.ends()}. One job runs at a time on this server: {how}.")

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
                                      "progress", "epochs", "result", "eta")}
        out["last_step"] = status["steps"][-1] if status["steps"] else None
        out["points"] = len(status["points"])
        out["busy"] = status["status"] == "running"
        return json_safe(out)

    # starting -------------------------------------------------------------------------------------------
    def _claim(self, kind: str, config: dict[str, Any], total: int, owner: str | None) -> Job:
        with self._lock:
            busy = self.busy_message()
            if busy:
                raise Busy(busy)
            job = Job(self._next_id, kind, config, total=total, owner=owner)
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
                    job.message = failure_message(e)
            finally:
                with self._lock:
                    if job.status == "running":
                        job.status = "error"
                        job.message = job.message or "the job ended without a result"
                    job.finished = time.time()

        self._thread = threading.Thread(target=body, name=f"lab-{job.kind}-{job.id}", daemon=True)
        self._thread.start()

    def _preflight(self, cfg: TrainConfig, data: data_mod.Cifar10, iters: int | None = None) -> None:
        """What a job must pass before it is started: the shared server's caps, then the data's size, the
        schedule's length and the memory (lab.experiment.preflight). ConfigError / DeviceError otherwise."""
        from lab.experiment import preflight

        if self.shared:
            check_caps(cfg, len(data.y_train), len(data.y_test), iters=iters, caps=self.caps)
        preflight(cfg, len(data.y_train), len(data.y_test), with_test=iters is None)

    def _make_room(self, cfg: TrainConfig) -> None:
        """Remove what killed runs left; on a shared server, prune the oldest finished runs so that runs_root
        stays within its quota with this run's checkpoint added."""
        from lab import runs as runs_mod
        from lab.experiment import count_parameters_at

        for run in runs_mod.list_runs(self.runs_root):
            run.remove_temporaries()
        if self.shared:
            incoming = count_parameters_at(cfg.width) * 4 + 1_000_000  # the checkpoint, and room for the rest
            removed = runs_mod.prune(self.runs_root, self.runs_quota, incoming)
            if removed:
                log.info("runs quota: removed %s", ", ".join(removed))

    def start_training(self, cfg: TrainConfig, extra_config: dict[str, Any] | None = None,
                       owner: str | None = None) -> Job:
        """Start a training run in the background; Busy if a job runs, DataError if there is no data, ConfigError
        (or DeviceError) if the run cannot work or is over a cap — all before any job or run folder exists.
        `owner`: the browser session starting it (only it may stop the job on a shared server)."""
        from lab.experiment import train
        from lab.runs import new_run_dir

        busy = self.busy_message()  # fail fast, before touching the data
        if busy:
            raise Busy(busy)
        data = self.data()
        self._preflight(cfg, data)
        job = self._claim("train", cfg.to_dict(), cfg.schedule.epochs, owner)
        stop = self._stop
        try:
            self._make_room(cfg)
            run_dir = new_run_dir(self.runs_root)
        except Exception as e:
            self._fail(job, f"cannot create a run folder under {self.runs_root}: {failure_message(e)}")
            raise
        job.run_dir = str(run_dir)

        def on_event(event) -> None:
            with self._lock:
                if event.kind == "step":
                    job.steps.append(dict(event.data))
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

    def start_range_test(self, cfg: TrainConfig, owner: str | None = None, **kwargs: Any) -> Job:
        """Start lab.lr_finder.range_test(cfg, data, **kwargs) in the background; its settings, the caps and
        the memory are checked first (ConfigError), as for training."""
        busy = self.busy_message()
        if busy:
            raise Busy(busy)
        from lab.lr_finder import check_settings, range_test

        check_settings(**{k: v for k, v in kwargs.items() if k not in ("progress", "stop", "model")})
        data = self.data()
        iters = int(kwargs.get("iters", RANGE_TEST_ITERS))
        self._preflight(cfg, data, iters=iters)
        job = self._claim("lr_range", {"train": cfg.to_dict(), **kwargs}, iters, owner)
        stop = self._stop

        def progress(iteration: int, lr: float, loss: float) -> None:
            with self._lock:
                job.points.append((int(iteration), float(lr), float(loss)))

        def target() -> None:
            result = range_test(cfg, data, progress=progress, stop=stop, **kwargs)
            with self._lock:
                job.result = result.to_dict()
                stopped = stop.is_set() or result.status == "stopped"
                job.status = "stopped" if stopped else "done"
                job.message = (f"{'stopped' if stopped else 'finished'} after {len(result.lrs)} iterations: "
                               f"suggested max LR {result.max_lr:.3g}, min LR {result.min_lr:.3g} ({result.rule})")

        self._launch(job, target)
        return job

    # stopping -------------------------------------------------------------------------------------------
    def stop(self, session: Any = TRUSTED) -> str:
        """Ask the running job to stop after its current step. `session`: the browser session asking (TRUSTED:
        the server itself). On a shared server, only the session that started the job may stop it: NotYours,
        saying what runs and when it should end, otherwise."""
        with self._lock:
            job = self._job
            if job is None or not job.running:
                return "nothing is running"
            if self.shared and session is not TRUSTED and job.owner is not None and session != job.owner:
                raise NotYours(f"the {KIND_WORDS[job.kind]} started at {job.started_at} ({job.progress()}) was started "
                               f"from another browser session, and only that session can stop it on this shared "
                               f"server{job.ends()}.")
            self._stop.set()
            return f"stopping the {KIND_WORDS[job.kind]} started at {job.started_at}: it ends after the current step"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends (tests and scripts); True if it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()
