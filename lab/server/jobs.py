"""The background job manager: one job (a training run, an LR range test or a sweep) at a time for the whole
server.

A job runs in a daemon thread, so the Gradio worker that pressed Start returns at once and no worker is held
for the length of a run. The engine's events (through `callbacks=`) and the range test's progress land in a
thread-safe Job record; the UI polls `status()` with a gr.Timer. Stop is a threading.Event the engine checks
between steps. A second Start while a job runs raises Busy, whose message says what is running and since when.

A sweep runs `python -m lab sweep --resume FOLDER` in a child process (lab.sweep does the work, through Ray Tune):
Stop sends it SIGINT, the Ctrl-C that Ray Tune turns into "stop every trial, save the state"; the job follows
the sweep's sweep.json as trials report.

On a ZeroGPU Space a thread of the server never sees the GPU: there the job's body runs inside a @spaces.GPU
generator in another process (lab.server.zerogpu) — `stream_job` — which yields what changed (`JobDelta`s) and the
manager's `run_streamed` mirrors them into the same Job record, so the tabs, Stop and the API read it as they
read a thread's job. The body is the same function either way (`_run_training`, `_run_range_test`).

The manager also caches the dataset (loaded once). It never hands out the training thread's model: the app
inspects runs through their checkpoint files. `status_json()` is what API clients read about the job.

Every job's cost is checked before it starts (lab.experiment.preflight: the data's size, the schedule's length,
the estimated peak memory against what is free). On a shared server (`shared=True`: a Space, or LAB_PUBLIC=1)
the manager also applies the per-job caps (lab.server.policy.SHARED_CAPS), keeps runs/ within a quota by pruning the
oldest finished runs, and lets only the browser session that started a job stop it; everyone sees what runs and
when it should end.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import data as data_mod
from lab.config import RANGE_TEST_ITERS, ConfigError, TrainConfig
from lab.engine import Diverged
from lab.estimate import format_duration
from lab.server.policy import SHARED_CAPS, SHARED_RUNS_QUOTA, check_caps, check_total

log = logging.getLogger(__name__)

MAX_POINTS = 4000  # step events kept per job; past this the older half is thinned so polling stays cheap
KIND_WORDS = {"train": "training run", "lr_range": "LR range test", "sweep": "sweep",
              "compare": "schedule comparison"}
SWEEP_POLL_S = 1.0  # how often a sweep job re-reads its sweep.json
SWEEP_STOP_WAIT_S = 120  # after Stop, how long the sweep may take to stop its trials and write its results
# A sweep is a grid × seeds of runs, each of which a visitor could start alone: on a shared server it is refused,
# not capped (a capped sweep would still hold the one job slot for every trial).
SWEEP_SHARED_OFF = ("sweeps are switched off on this shared server (each one trains many runs, and one job at a time "
                    "serves every visitor); train single runs here, or run `python -m lab sweep` on your own machine")


class Busy(RuntimeError):
    """Another job is running; the message names it, when it started and when it should end."""


class NotYours(RuntimeError):
    """On a shared server, Stop from a browser session other than the one that started the job."""


TRUSTED = object()  # stop()'s caller when it is the server itself (tests, shutdown), not a browser session


@dataclass
class Job:
    id: int
    kind: str  # "train" | "lr_range" | "sweep"
    config: dict[str, Any]
    started: float = field(default_factory=time.time)
    status: str = "running"  # running | done | stopped | diverged | error
    message: str = ""
    finished: float | None = None
    run_dir: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # train: the engine's step events
    epochs: list[dict[str, Any]] = field(default_factory=list)  # train: the engine's epoch records; sweep: trials
    points: list[tuple[int, float, float]] = field(default_factory=list)  # range test: (iteration, lr, loss)
    total: int | None = None  # train: epochs; range test: iterations; sweep: trials
    result: dict[str, Any] | None = None  # range test: RangeTest.to_dict(); train: the last epoch record;
    # sweep: its sweep.json
    version: int = 0  # sweep: bumped whenever its sweep.json changes
    owner: str | None = None  # the browser session (gr.Request.session_hash) that started it
    estimate_s: float | None = None  # what the estimate promised before it started (shown beside the real time)

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
        if self.kind == "compare":
            running = next((t for t in self.epochs if t["status"] == "running"), None)
            finished = sum(t["status"] in ("done", "diverged", "error", "stopped") for t in self.epochs)
            now = (f"; {running['label']}, epoch {running['epoch']}/{running['epochs']}" if running else "")
            return f"{finished}/{self.total} runs finished{now}"
        if self.kind == "sweep":
            if not self.epochs:
                return "range test and Ray start-up"
            finished = sum(t["status"] in ("done", "diverged", "error") for t in self.epochs)
            return f"{finished}/{self.total} trials finished"
        return f"iteration {len(self.points)}/{self.total}"

    def eta(self) -> float | None:
        """Seconds until the job should end (from its pace so far); None before there is a pace."""
        if not self.running:
            return None
        if self.kind == "train":
            eta = self.steps[-1].get("eta") if self.steps else None
            return eta if isinstance(eta, (int, float)) and math.isfinite(eta) else None
        done = len(self.points)
        if self.kind == "compare":  # its runs are alike in length: the pace of the finished ones
            done = sum(t["status"] not in ("pending", "running") for t in self.epochs)
        return (time.time() - self.started) / done * max(0, (self.total or done) - done) if done else None

    def ends(self) -> str:
        """'; it should end at about 14:10:05 (in 6 min)', or '' while there is no pace yet."""
        eta = self.eta()
        if eta is None:
            return ""
        at = time.strftime("%H:%M:%S", time.localtime(time.time() + eta))
        return f"; it should end at about {at} (in {format_duration(eta)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "message": self.message,
            "started": self.started, "started_at": self.started_at, "finished": self.finished,
            "elapsed": (self.finished or time.time()) - self.started, "run_dir": self.run_dir,
            "config": self.config, "total": self.total, "progress": self.progress(),
            "steps": list(self.steps), "epochs": list(self.epochs), "points": list(self.points),
            "result": self.result, "eta": self.eta(), "estimate_s": self.estimate_s,
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
    return f"{format_duration(seconds)} ago"


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



# ---------------------------------------------------------------------------------------------- job bodies
# What a job does, given its Job record and the lock that guards it: the manager's, when the job runs in a thread
# of this server; a fresh one, when it runs streamed in another process (stream_job).


def _run_training(job: Job, lock, cfg: TrainConfig, data: data_mod.Cifar10, stop: threading.Event,
                  run_dir: Path, extra_config: dict[str, Any]) -> None:
    from lab.experiment import train

    def on_event(event) -> None:
        with lock:
            if event.kind == "step":
                # "t": when it arrived, so a poller can count elapsed time and the ETA down between steps
                job.steps.append({**event.data, "t": time.time()})
                if len(job.steps) > MAX_POINTS:
                    half = len(job.steps) // 2
                    job.steps[:half] = job.steps[:half:2]
            elif event.kind == "epoch":
                job.epochs.append(dict(event.data))

    result = train(cfg, data, callbacks=[on_event], stop=stop, run_dir=run_dir, extra_config=extra_config)
    with lock:
        job.result = result.final or None
        job.status = result.status
        acc = result.final.get("test_acc")
        tail = f"; test accuracy {100 * acc:.2f}%" if acc is not None and math.isfinite(acc) else ""
        epochs = cfg.schedule.epochs
        job.message = (f"{'finished' if result.status == 'done' else 'stopped'} after "
                       f"{len(result.history)} of {epochs} epoch{'s' * (epochs != 1)} in {result.seconds:.1f} s"
                       f"{tail}; saved to {run_dir}")


def _run_range_test(job: Job, lock, cfg: TrainConfig, data: data_mod.Cifar10, stop: threading.Event,
                    kwargs: dict[str, Any], runs_root: Path | None = None) -> None:
    from lab.lr_finder import range_test
    from lab.runs import RANGE_TEST_PREFIX, new_run_dir, write_range_test

    def progress(iteration: int, lr: float, loss: float) -> None:
        with lock:
            job.points.append((int(iteration), float(lr), float(loss)))

    result = range_test(cfg, data, progress=progress, stop=stop, **kwargs)
    folder, saved = None, ""
    if runs_root is not None:  # saved like a run, so tests can be listed and overlaid later (a failed save loses only that)
        try:
            folder = new_run_dir(runs_root, prefix=RANGE_TEST_PREFIX)
            write_range_test(folder, result.to_dict(), config=cfg.to_dict(), started_from="app")
            saved = f"; saved to {folder}"
        except OSError as e:
            folder, saved = None, f"; not saved ({e})"
            log.error("could not save range test %s: %s", job.id, e)
    with lock:
        job.result = result.to_dict()
        if folder is not None:
            job.run_dir = str(folder)
        stopped = stop.is_set() or result.status == "stopped"
        job.status = "stopped" if stopped else "done"
        job.message = (f"{'stopped' if stopped else 'finished'} after {len(result.lrs)} iterations: "
                       f"suggested max LR {result.max_lr:.3g}, min LR {result.min_lr:.3g} ({result.rule}){saved}")


def _guarded(job: Job, lock, body: Callable[[], None]) -> None:
    """Run a job's body; a failure is recorded on the job (and logged), never raised: it must not kill the
    server, nor the GPU process it streams from."""
    try:
        body()
    except Exception as e:
        log.error("job %s failed:\n%s", job.id, traceback.format_exc())
        with lock:
            job.status = "diverged" if isinstance(e, Diverged) else "error"
            job.message = failure_message(e)
    finally:
        with lock:
            if job.status == "running":
                job.status = "error"
                job.message = job.message or "the job ended without a result"
            job.finished = time.time()


@dataclass
class JobDelta:
    """What changed in a streamed job since the last delta: plain values only, as it crosses a process boundary
    (pickled). `steps`/`epochs`/`points` hold only the new entries."""

    status: str
    message: str
    steps: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    points: list[tuple[int, float, float]]
    result: dict[str, Any] | None
    run_dir: str | None
    steps_reset: bool = False  # the job thinned its step list (MAX_POINTS): `steps` is the whole list, not new ones


def _close(stream) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


STREAM_POLL_S = 1.0  # a streamed job reports at least this often, so the server can pass on a Stop between reports


def stream_job(kind: str, cfg: TrainConfig, data: data_mod.Cifar10, *, run_dir: str | None = None,
               extra_config: dict[str, Any] | None = None, range_kwargs: dict[str, Any] | None = None,
               poll: float = STREAM_POLL_S) -> Iterator[JobDelta]:
    """Run a job in this process and yield what changed every `poll` seconds, and once more when it ends.

    For a ZeroGPU Space: this generator runs inside @spaces.GPU, in the process that holds the GPU. It shares
    nothing with the server's manager (its own Job, lock and stop flag; a lock copied into a forked process may be
    held forever). Closing the generator (the server's Stop, or the caller going away) asks the job to stop after
    its current step and waits for it, so its run folder records how it ended."""
    lock = threading.RLock()
    stop = threading.Event()
    total = cfg.schedule.epochs if kind == "train" else int((range_kwargs or {}).get("iters", RANGE_TEST_ITERS))
    job = Job(0, kind, {}, total=total, run_dir=run_dir)
    if kind == "train":
        if run_dir is None:
            raise ValueError("a streamed training job needs its run folder")
        body = lambda: _run_training(job, lock, cfg, data, stop, Path(run_dir), extra_config or {})  # noqa: E731
    else:
        body = lambda: _run_range_test(job, lock, cfg, data, stop, range_kwargs or {})  # noqa: E731
    thread = threading.Thread(target=_guarded, args=(job, lock, body), name=f"lab-{kind}-streamed", daemon=True)
    thread.start()
    sent = {"steps": 0, "epochs": 0, "points": 0}
    try:
        while True:
            thread.join(poll)
            done = not thread.is_alive()
            with lock:
                reset = len(job.steps) < sent["steps"]  # thinned (MAX_POINTS) since the last delta
                if reset:
                    sent["steps"] = 0
                new = {k: list(getattr(job, k)[sent[k]:]) for k in sent}
                sent = {k: len(getattr(job, k)) for k in sent}
                delta = JobDelta(job.status, job.message, new["steps"], new["epochs"], new["points"],
                                 job.result if done else None, job.run_dir, reset)
            yield delta
            if done:
                return
    finally:
        if thread.is_alive():
            stop.set()
            thread.join()


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

    def data_unlocked(self) -> data_mod.Cifar10:
        """The dataset without taking the data lock: for a forked process (a ZeroGPU job), which inherits the
        loaded dataset but also a copy of the lock, held forever if another thread held it at the fork."""
        if self._data is not None:
            return self._data
        if self._data_loader is not None:
            return self._data_loader()
        return data_mod.load(self.data_dir, download=self.download)

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
            return (job.id, job.status, len(job.steps), len(job.epochs), len(job.points), job.version, running)

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
                                      "progress", "epochs", "result", "eta", "estimate_s")}
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
        self._thread = threading.Thread(target=_guarded, args=(job, self._lock, target),
                                        name=f"lab-{job.kind}-{job.id}", daemon=True)
        self._thread.start()

    def _preflight(self, cfg: TrainConfig, data: data_mod.Cifar10, iters: int | None = None) -> None:
        """What a job must pass before it is started: the shared server's caps, then the data's size, the
        schedule's length and the memory (lab.experiment.preflight). ConfigError / DeviceError otherwise."""
        from lab.experiment import preflight

        if self.shared:
            check_caps(cfg, len(data.y_train), len(data.y_test), iters=iters, caps=self.caps)
        preflight(cfg, len(data.y_train), len(data.y_test), with_test=iters is None)

    def check(self, cfg: TrainConfig, iters: int | None = None) -> None:
        """What a job of `cfg` (a range test of `iters`) must pass, without starting it: for callers that do more
        work before they start one (timing it for an estimate), so that a job over a cap is never even timed."""
        self._preflight(cfg, self.data(), iters)

    def _make_room(self, cfg: TrainConfig) -> None:
        """Remove what killed runs left; on a shared server, prune the oldest finished runs so that runs_root
        stays within its quota with this run's checkpoint added."""
        from lab import runs as runs_mod
        from lab.estimate import count_parameters_at

        for run in runs_mod.list_runs(self.runs_root):
            run.remove_temporaries()
        if self.shared:
            incoming = count_parameters_at(cfg.width) * 4 + 1_000_000  # the checkpoint, and room for the rest
            removed = runs_mod.prune(self.runs_root, self.runs_quota, incoming)
            if removed:
                log.info("runs quota: removed %s", ", ".join(removed))

    def _train_job(self, cfg: TrainConfig, owner: str | None = None) -> tuple[Job, data_mod.Cifar10, Path]:
        """Claim a training job (a thread's or a streamed one): Busy if one runs; DataError, DeviceError or
        ConfigError (a cap, the data's size, the schedule's length, the memory) before a job or run folder exists."""
        from lab.runs import new_run_dir

        busy = self.busy_message()  # fail fast, before touching the data
        if busy:
            raise Busy(busy)
        data = self.data()
        self._preflight(cfg, data)
        job = self._claim("train", cfg.to_dict(), cfg.schedule.epochs, owner)
        try:
            self._make_room(cfg)
            run_dir = new_run_dir(self.runs_root)
        except Exception as e:
            self._fail(job, f"cannot create a run folder under {self.runs_root}: {failure_message(e)}")
            raise
        job.run_dir = str(run_dir)
        return job, data, run_dir

    def _range_job(self, cfg: TrainConfig, kwargs: dict[str, Any], owner: str | None = None
                   ) -> tuple[Job, data_mod.Cifar10]:
        """Claim a range-test job: its settings, the caps and the memory are checked first (ConfigError)."""
        from lab.lr_finder import check_settings

        busy = self.busy_message()
        if busy:
            raise Busy(busy)
        check_settings(**{k: v for k, v in kwargs.items() if k not in ("progress", "stop", "model")})
        data = self.data()
        iters = int(kwargs.get("iters", RANGE_TEST_ITERS))
        self._preflight(cfg, data, iters=iters)
        job = self._claim("lr_range", {"train": cfg.to_dict(), **kwargs}, iters, owner)
        return job, data

    def start_training(self, cfg: TrainConfig, extra_config: dict[str, Any] | None = None,
                       owner: str | None = None) -> Job:
        """Start a training run in the background (_train_job says what is refused first). `owner`: the browser
        session starting it (only it may stop the job on a shared server)."""
        job, data, run_dir = self._train_job(cfg, owner)
        stop, extra = self._stop, {"started_from": "app", **(extra_config or {})}
        self._launch(job, lambda: _run_training(job, self._lock, cfg, data, stop, run_dir, extra))
        return job

    def start_range_test(self, cfg: TrainConfig, owner: str | None = None, **kwargs: Any) -> Job:
        """Start lab.lr_finder.range_test(cfg, data, **kwargs) in the background (_range_job: what is refused)."""
        job, data = self._range_job(cfg, kwargs, owner)
        stop = self._stop
        self._launch(job, lambda: _run_range_test(job, self._lock, cfg, data, stop, kwargs, self.runs_root))
        return job

    def start_sweep(self, spec, owner: str | None = None) -> Job:
        """Start a sweep (a lab.sweep.SweepSpec) under runs/sweeps/ in a child process; Busy if a job runs,
        DataError if there is no data, ConfigError for a spec that cannot run — or, on a shared server, for any
        sweep (SWEEP_SHARED_OFF: a grid × seeds of runs is many visitors' worth of jobs)."""
        import dataclasses

        from lab import sweep as sweep_mod

        if self.shared:
            raise ConfigError(SWEEP_SHARED_OFF)
        busy = self.busy_message()
        if busy:
            raise Busy(busy)
        self.data()  # the child loads it the same way (its own copy); a missing dataset fails here, at once
        if spec.base.data_dir is None and self.data_dir is not None:
            spec = dataclasses.replace(spec, base=dataclasses.replace(spec.base, data_dir=self.data_dir))
        spec.validate()
        spec.check_data(self.data())  # what train checks before it starts, for every configuration
        job = self._claim("sweep", spec.to_dict(), 0, owner)
        stop = self._stop
        try:
            sweep = sweep_mod.create(spec, self.runs_root / "sweeps")
        except Exception as e:
            self._fail(job, f"cannot create a sweep folder under {self.runs_root / 'sweeps'}: {e}")
            raise
        job.run_dir = str(sweep.path)

        def follow(mtime: float) -> float:
            """Copy sweep.json into the job when it changed; returns its modification time."""
            path = sweep.path / sweep_mod.RESULTS_JSON
            try:
                now = path.stat().st_mtime
                if now == mtime:
                    return mtime
                doc = sweep.results()
            except (OSError, ValueError):  # not written yet, or replaced while being read: next poll
                return mtime
            with self._lock:
                job.result, job.epochs, job.total = doc, doc["trials"], len(doc["trials"])
                job.version += 1
            return now

        def target() -> None:
            root = str(Path(sweep_mod.__file__).resolve().parent.parent)  # the child imports this same lab
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
            with open(sweep.path / "sweep.log", "w") as out:
                proc = subprocess.Popen([sys.executable, "-m", "lab", "sweep", "--resume", str(sweep.path)],
                                        stdout=out, stderr=subprocess.STDOUT, env=env)
                mtime = 0.0
                while proc.poll() is None:
                    if stop.wait(SWEEP_POLL_S):
                        proc.send_signal(signal.SIGINT)  # Ctrl-C: Tune stops every trial and saves its state
                        try:
                            proc.wait(SWEEP_STOP_WAIT_S)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                        break
                    mtime = follow(mtime)
                rc = proc.wait()
            follow(0.0)
            tail = (sweep.path / "sweep.log").read_text(errors="replace").strip().splitlines()
            with self._lock:
                doc = job.result or {}
                if rc == 0:
                    job.status = "done"
                elif rc == 130 or stop.is_set():
                    job.status = "stopped"
                else:
                    job.status = "error"
                s = doc.get("summary", {})
                best = next((c for c in s.get("configurations", []) if c["key"] == s.get("best")), None)
                best_text = (f"; best max LR {best['max_lr']:.3g}: {best['mean']:.2f}% ± {best['std']:.2f}"
                             if best else "")
                if job.status == "error":
                    job.message = f"the sweep failed: {tail[-1] if tail else f'exit status {rc}'} (log: {sweep.path / 'sweep.log'})"
                else:
                    job.message = (f"{'finished' if rc == 0 else 'stopped'}: {s.get('trials', {})}{best_text}; "
                                   f"results in {sweep.path}")

        self._launch(job, target)
        return job

    def check_compare(self, base: TrainConfig, factors) -> list[TrainConfig]:
        """The comparison's runs (lab.compare.plan), each checked as a job of its own (caps, data, memory) and on a
        shared server all of them together (check_total); ConfigError / DeviceError / DataError otherwise."""
        from lab import compare

        data = self.data()
        runs = compare.plan(base, factors)
        for cfg in runs:
            self._preflight(cfg, data)
        if self.shared:
            check_total(runs, len(data.y_train), len(data.y_test), caps=self.caps)
        return runs

    def start_compare(self, base: TrainConfig, factors, owner: str | None = None) -> Job:
        """Compare schedules (lab.compare) in the background: `base` under each schedule in turn, One Cycle at its max
        LR, the others at the best of `factors` × it. Busy, DataError, or ConfigError / DeviceError for any run that
        cannot start — and on a shared server for a comparison over the caps as a whole (check_total) — before a
        job or folder exists. A shared server keeps only the latest comparison (each visitor's replaces the last)."""
        import shutil

        from lab import compare

        busy = self.busy_message()
        if busy:
            raise Busy(busy)
        data = self.data()
        runs = self.check_compare(base, factors)
        job = self._claim("compare", {"base": base.to_dict(), "factors": list(factors)}, len(runs), owner)
        root = self.runs_root / "sweeps"
        try:
            if self.shared:  # one job at a time: every earlier comparison has ended
                for old in root.glob(compare.PREFIX + "*"):
                    shutil.rmtree(old, ignore_errors=True)
            self._make_room(base)
            sweep = compare.create(base, factors, root)
        except Exception as e:
            self._fail(job, f"cannot create a folder under {root}: {failure_message(e)}")
            raise
        job.run_dir = str(sweep.path)
        stop = self._stop

        def update(doc: dict[str, Any]) -> None:
            with self._lock:
                job.result, job.epochs = doc, list(doc["trials"])
                job.version += 1

        def target() -> None:
            doc = compare.run(sweep, data, stop=stop, on_update=update, log=lambda line: log.info("%s", line))
            with self._lock:
                job.status = {"done": "done", "stopped": "stopped"}.get(doc["status"], "error")
                job.message = f"{compare.sentence(doc)} Results in runs/sweeps/{sweep.id}/"  # no path: see ui header()

        self._launch(job, target)
        return job

    # streamed (ZeroGPU) ---------------------------------------------------------------------------------
    def claim_streamed(self, kind: str, cfg: TrainConfig, kwargs: dict[str, Any] | None = None,
                       owner: str | None = None) -> Job:
        """Claim a job whose body will run elsewhere (run_streamed): the same checks (the shared server's caps
        included), record and run folder as a thread's job; Busy / DataError / DeviceError / ConfigError as
        start_training and start_range_test raise them."""
        if kind == "train":
            return self._train_job(cfg, owner)[0]
        return self._range_job(cfg, kwargs or {}, owner)[0]

    def run_streamed(self, job: Job, deltas: Iterator[JobDelta]) -> Iterator[Job]:
        """Mirror a job that runs elsewhere (stream_job, inside a @spaces.GPU generator) into `job`, yielding after
        each delta. Stop closes the stream (the far side then stops after its current step); an error raised by
        the stream (the GPU call refused, a quota, an aborted worker) ends the job as an error with its message."""
        stop = self._stop
        try:
            for delta in deltas:
                with self._lock:
                    if delta.steps_reset:
                        job.steps = list(delta.steps)
                    else:
                        job.steps.extend(delta.steps)
                    job.epochs.extend(delta.epochs)
                    job.points.extend(delta.points)
                    job.status, job.message = delta.status, delta.message
                    if delta.result is not None:
                        job.result = delta.result
                yield job
                if stop.is_set() and job.running:
                    _close(deltas)
                    with self._lock:
                        job.status = "stopped"
                        job.message = f"stopped after {job.progress()}"
                    break
        except GeneratorExit:  # whoever consumed this went away (the page's event was cancelled): stop the far side
            with self._lock:
                if job.running:
                    job.status, job.message = "stopped", f"stopped after {job.progress()} (the request ended)"
            raise
        except Exception as e:  # shown in the UI, never kills the server
            log.error("streamed job %s failed:\n%s", job.id, traceback.format_exc())
            with self._lock:
                job.status, job.message = "error", str(e) or type(e).__name__
        finally:
            _close(deltas)  # a no-op when it has ended; otherwise the far side stops after its current step
            with self._lock:
                if job.running:  # the stream ended without saying how the job did
                    job.status, job.message = "error", job.message or "the GPU task ended without a result"
                job.finished = job.finished or time.time()
        yield job


    def active_run_dirs(self) -> set[Path]:
        """The run folder the current job writes to (empty when none runs): what rename and delete must not
        touch."""
        with self._lock:
            job = self._job
            return {Path(job.run_dir)} if job is not None and job.running and job.run_dir else set()

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
            if job.kind == "sweep":
                return (f"stopping the sweep started at {job.started_at}: every trial stops; the finished ones are "
                        f"kept (resume: python -m lab sweep --resume {job.run_dir})")
            return f"stopping the {KIND_WORDS[job.kind]} started at {job.started_at}: it ends after the current step"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends (tests and scripts); True if it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()
