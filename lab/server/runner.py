"""The job runner: the one interface the tabs call — start / stop / status — whatever runs the job.

Three ways to run a job, one interface:
  - a background thread of this server (Runner over a local JobManager): start returns at once;
  - the same on a shared server (Runner over a JobManager with shared=True: caps, quota, session-owned Stop —
    the manager applies them, so the runner is the same class);
  - ZeroGPU (lab.server.zerogpu.ZeroGPU, a Runner): the job is one @spaces.GPU call that lasts as long as the
    request, so start returns the job's reports as they stream (`Launch.updates`).

Why a module of its own rather than more of jobs.py: jobs.py is the job record, its bodies and the one-job-at-a-time
manager, which the ZeroGPU side (zerogpu.py) builds on; the runner is how a caller asks for a job and sits above
both (zerogpu.py subclasses it), so jobs.py never imports what runs its jobs elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lab.config import TrainConfig
from lab.server.jobs import Busy, Job, JobManager


class TooLong(ValueError):
    """The job would need longer than one job may run here (ZeroGPU: one GPU call's limit)."""


@dataclass
class Launch:
    """What start did. `job`: the job started (None when held back). `held`: a long job was not started, as it
    waits for a confirmation (`estimate` says what it would cost). `estimate`: what the caller's estimate said
    (lab.estimate.Estimate), when one was asked for. `note`: a sentence the runner adds to the "started" line.
    `updates`: for a runner that streams, the job after each report until it ends (consume it: the job runs for as
    long as it is consumed); None for a job that runs in the background."""

    job: Job | None
    estimate: Any = None
    note: str = ""
    updates: Iterator[Job] | None = None

    @property
    def held(self) -> bool:
        return self.job is None


class Runner:
    """Jobs in a background thread of this server, through its JobManager (local, or shared when the manager is)."""

    streams = False  # start's Launch carries the job's reports (the request lasts as long as the job)
    sweep_refusal: str | None = None  # why this runner cannot run sweeps; None: it can (the manager may still refuse)
    device_note: str | None = None  # what the app's header says about the device, when the runner decides it

    def __init__(self, manager: JobManager):
        self.manager = manager

    def start(self, kind: str, cfg: TrainConfig, *, owner: str | None = None, confirm: bool = False,
              estimate: Callable[[], Any] | None = None, **range_kwargs: Any) -> Launch:
        """Start a `kind` job ("train" or "lr_range"; range_kwargs: lab.lr_finder.range_test's settings) for the
        browser session `owner` (the only one that may stop it on a shared server). Everything that refuses a job
        raises before it starts: Busy; DataError; ConfigError / DeviceError (a cap, the data's size, the memory).
        Then `estimate()` (how long it would take here; None when it cannot be timed now) is asked — only for a
        job that passed those checks, so a job over a cap is never timed — and a long one (Estimate.long) is held
        back unless `confirm`."""
        busy = self.manager.busy_message()
        if busy:
            raise Busy(busy)
        iters = int(range_kwargs["iters"]) if kind == "lr_range" else None
        self.manager.check(cfg, iters=iters)  # no data, a cap, too little memory: said before timing anything
        est = estimate() if estimate is not None else None
        if est is not None and est.long and not confirm:
            return Launch(None, est)
        if kind == "train":
            job = self.manager.start_training(cfg, owner=owner)
        else:
            job = self.manager.start_range_test(cfg, owner=owner, **range_kwargs)
        if est is not None:  # kept with the job: its end is shown beside what was promised (issue 20)
            job.estimate_s = est.seconds
        return Launch(job, est)

    def stop(self, session: Any) -> str:
        """Ask the running job to stop after its current step (NotYours on a shared server when `session` did not
        start it)."""
        return self.manager.stop(session)

    def status(self, kind: str | None = None) -> dict[str, Any] | None:
        """The latest `kind` job (any kind when None) as a dict a poller may read freely; None if none yet."""
        return self.manager.status(kind)


def local_inference_device() -> str:
    """Where the server's own inference (Insights, Classify) runs: CUDA when this process sees a GPU of its own; on
    a ZeroGPU Space the process sees only a stand-in CUDA device (the GPU lives inside @spaces.GPU calls), so the
    CPU."""
    import torch

    from lab.server.zerogpu import on_zerogpu

    return "cuda" if torch.cuda.is_available() and not on_zerogpu() else "cpu"
