"""Jobs on a ZeroGPU Space: the GPU exists only inside a function decorated with `@spaces.GPU(duration=…)`.

ZeroGPU runs such a function in a separate, forked process that holds a GPU for at most `duration` seconds, and
streams a generator's yields back to the server. A background thread of the server never sees the GPU (the
server process only sees a stand-in torch device), so here a job's body — the same one the thread runs
elsewhere — runs inside a decorated generator (`lab.server.jobs.stream_job`) that yields what changed; the
server's job manager mirrors it into its Job record (`JobManager.run_streamed`), so the tabs, Stop and the API read
it as they read a thread's job, and the run folder is written by the GPU process as usual. ZeroGPU is a
lab.server.runner.Runner: the tabs call its start / stop / status as they call the thread's.

Each call asks for the seconds the job is estimated to need (`estimate_seconds`, from the spec recipe's speed
measured on an H100 and the ZeroGPU device's size, with a margin); a job whose request would pass the most one
call may hold (`MAX_CALL_S`) is refused before it starts, with the limit named. Quotas (a few minutes a day for
free accounts) are ZeroGPU's own: its refusal reaches the page as the job's error.

Off ZeroGPU (`on_zerogpu()` false: no SPACES_ZERO_GPU) the decorator passes the function through unchanged and the
app keeps its background-thread runner; nothing here is used.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from lab.config import TEST_IMAGES, TRAIN_IMAGES, TrainConfig
from lab.schedule import steps_per_epoch
from lab.server.jobs import JobDelta, JobManager, stream_job
from lab.server.runner import Launch, Runner, TooLong

# The most seconds one call may ask for. ZeroGPU refuses a call that asks for more than the visitor has left of their
# daily quota: 2 minutes for an anonymous visitor, 3.5 for a free account, 25 for PRO (hub docs, spaces-zerogpu).
# 120 s is a call any visitor can be granted on a fresh day. A Space's owner can set LAB_ZEROGPU_MAX_S to what their
# audience gets.
MAX_CALL_S = int(os.environ.get("LAB_ZEROGPU_MAX_S", "120"))

# The spec recipe's speed on one H100 (benchmarks/RESULTS.md, fast loader, eager, bf16): 0.591 s per epoch of
# 50,000 training and 10,000 test images at width 1, batch 512; the untimed first epoch's extra (cuDNN's kernel
# search) 1.0 s; and the host needs 4.5–4.8 ms to queue one step whatever its size (the profile), so small
# networks and batches are bound by the step count, not the arithmetic.
H100_SPEC_EPOCH_S = 0.591
H100_WARMUP_S = 1.0
HOST_STEP_S = 0.0048
H100_SMS = 132  # an H100 SXM's streaming multiprocessors; a ZeroGPU slice has fewer (spaces' config says how many)
# Not measured here (no ZeroGPU machine): the GPU process's start (fork, CUDA initialisation, moving the data to the
# device) is allowed START_ALLOWANCE_S, and the whole estimate is multiplied by MARGIN, since a call that runs past
# its duration may be cut off mid-run.
START_ALLOWANCE_S = 30.0
MARGIN = 1.5


# Sweeps are refused here whatever the server's mode (the sweep tab shows this).
SWEEP_REFUSAL = ("sweeps do not run on a ZeroGPU Space: its GPU is lent one call at a time, and a sweep is "
                 "many runs under Ray on a machine of its own — run `python -m lab sweep` there")


def on_zerogpu() -> bool:
    """Whether this process is a ZeroGPU Space's server (the `spaces` package reads SPACES_ZERO_GPU)."""
    try:
        from spaces.config import Config
    except ImportError:  # the package is in requirements.txt; without it there is no ZeroGPU either
        return False
    return bool(Config.zero_gpu)


def slice_slowdown() -> float:
    """How much slower than an H100 the ZeroGPU device computes, by streaming-multiprocessor count (an H200 MIG
    3g slice, the default size: 60 of 132)."""
    try:
        from spaces.config import Config

        sms = Config.zerogpu_cuda_multi_processor_count
    except (ImportError, AttributeError):
        return 1.0
    return max(1.0, H100_SMS / sms) if sms else 1.0


@functools.lru_cache(maxsize=32)
def _flops(width: float) -> int:
    from lab.model import Net, flops_per_image

    return flops_per_image(Net(width))


def _work_ratio(width: float, images: float) -> float:
    """FLOPs of `images` image-passes at `width`, as a share of the spec epoch's (3 passes per training image, as
    backward ≈ 2 × forward, plus one per test image)."""
    return images * _flops(width) / ((3 * TRAIN_IMAGES + TEST_IMAGES) * _flops(1.0))


# Two time estimators, on purpose: lab.estimate times a few real steps on the device the job will use, but a ZeroGPU
# server process has no GPU to time them on before the call, so this one scales a recorded H100 speed by FLOPs.
def estimate_seconds(kind: str, cfg: TrainConfig, range_kwargs: dict[str, Any] | None = None,
                     slowdown: float | None = None) -> float:
    """GPU seconds a job will need on the ZeroGPU device, margin and start-up included."""
    slowdown = slice_slowdown() if slowdown is None else slowdown
    n_train = cfg.subset or TRAIN_IMAGES
    n_test = cfg.test_subset or TEST_IMAGES
    if kind == "train":
        steps = steps_per_epoch(n_train, cfg.batch_size)
        compute = H100_SPEC_EPOCH_S * _work_ratio(cfg.width, 3 * n_train + n_test) * slowdown
        epoch = max(compute, steps * HOST_STEP_S)
        body = cfg.schedule.epochs * epoch
    else:
        iters = int((range_kwargs or {}).get("iters", 0))
        step = H100_SPEC_EPOCH_S * _work_ratio(cfg.width, 3 * cfg.batch_size) * slowdown
        body = iters * max(step, HOST_STEP_S)
    return (START_ALLOWANCE_S + H100_WARMUP_S * slowdown + body) * MARGIN


class ZeroGPU(Runner):
    """The app's jobs as GPU calls: a Runner whose start streams (the request lasts as long as the GPU call). `gpu`
    is the decorator (spaces.GPU; tests pass one that runs the generator in a forked child process, as ZeroGPU
    does)."""

    streams = True
    sweep_refusal = SWEEP_REFUSAL

    def __init__(self, manager: JobManager, gpu: Callable | None = None, max_call_s: int = MAX_CALL_S):
        if gpu is None:
            import spaces

            gpu = spaces.GPU
        super().__init__(manager)
        self.max_call_s = max_call_s
        # duration is called with the task's own arguments, before the GPU is requested
        self.task = gpu(duration=self.duration)(self._gpu_job)

    def duration(self, kind: str, cfg: dict[str, Any], run_dir: str | None,
                 range_kwargs: dict[str, Any] | None) -> int:
        """Seconds to ask ZeroGPU for: the estimate, never past the limit."""
        return self.duration_s(estimate_seconds(kind, TrainConfig.from_dict(cfg), range_kwargs))

    def duration_s(self, estimate: float) -> int:
        return min(self.max_call_s, math.ceil(estimate))

    def _gpu_job(self, kind: str, cfg: dict[str, Any], run_dir: str | None,
                 range_kwargs: dict[str, Any] | None) -> Iterator[JobDelta]:
        """The decorated generator: runs in the GPU process. Its arguments and yields are plain values (they are
        pickled across the process boundary); the dataset comes from the server's copy, inherited by the fork."""
        yield from stream_job(kind, TrainConfig.from_dict(cfg), self.manager.data_unlocked(), run_dir=run_dir,
                              extra_config={"started_from": "app (ZeroGPU)"}, range_kwargs=range_kwargs)

    def check(self, kind: str, cfg: TrainConfig, range_kwargs: dict[str, Any] | None = None) -> float:
        """The estimate in seconds; TooLong, naming the limit, when the job cannot fit one call."""
        estimate = estimate_seconds(kind, cfg, range_kwargs)
        if estimate > self.max_call_s:
            what = "training run" if kind == "train" else "range test"
            raise TooLong(
                f"this {what} needs about {estimate:.0f} s of GPU time (estimate with margin), but one ZeroGPU call "
                f"is limited to {self.max_call_s} s: use fewer epochs, fewer images or a smaller width (the "
                f"Spec preset, 24 epochs of all 50,000 images, asks for {estimate_seconds('train', TrainConfig()):.0f} s)")
        return estimate

    @property
    def device_note(self) -> str:
        return f"ZeroGPU (each job is one GPU call of at most {self.max_call_s} s)"

    def start(self, kind: str, cfg: TrainConfig, *, owner: str | None = None, confirm: bool = False,
              estimate: Callable[[], Any] | None = None, **range_kwargs: Any) -> Launch:
        """Check and claim the job now (TooLong, Busy, DataError, and ConfigError for a shared server's caps raise
        here, before any GPU is asked for); the Launch's `updates` run it as one GPU call, yielding the mirrored
        Job after each report. `owner`: the browser session starting it (the only one that may stop it on a shared
        server). `confirm` and `estimate` are not used: a GPU call is bounded by its own limit, not by CPU time."""
        range_kwargs = range_kwargs or None
        seconds = self.check(kind, cfg, range_kwargs)
        job = self.manager.claim_streamed(kind, cfg, range_kwargs, owner)
        updates = self.manager.run_streamed(job, self.task(kind, cfg.to_dict(), job.run_dir, range_kwargs))
        return Launch(job, note=f" On ZeroGPU: one GPU call of up to {self.duration_s(seconds)} s.", updates=updates)
