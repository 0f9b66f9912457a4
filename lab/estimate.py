"""How long a run or a range test will take, from a step time measured on this machine, before it starts.

A 24-epoch spec run is a quarter of a minute on an H100 and ten hours on two CPU cores; nothing in a config says
which machine it will meet, so the estimate times a few real training steps of the same network (width, device,
bf16 autocast and channels_last on CUDA, an Adam step) on random inputs, and scales:

    run          epochs × (steps per epoch × step time  +  test images × evaluation time per image)
    range test   iterations × step time

On a CPU the time per image hardly depends on the batch (the cores are busy at any size), so a step is timed at a
small batch (PROBE_BATCH) and scaled to the run's batch size: the probe then costs about a second at width 1
rather than the ten a 512-image step takes. On CUDA a small batch would leave the GPU idle, so the probe uses the
run's own batch size (capped). Not timed: data loading and augmentation (the reference loader's worker processes
run beside the model on the CPU), start-up, and whatever else the machine is doing; the figure is a floor, good
to the order of magnitude that decides whether to start. `python -m lab train` and the app report it, and on a
CPU ask for a confirmation above LONG_JOB_S.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from lab.config import TrainConfig
from lab.engine import autocast_for, make_optimizer, prepare_model, resolve_device
from lab.model import Net
from lab.schedule import steps_per_epoch

PROBE_BATCH = 32  # images per timed step on a CPU
PROBE_BATCH_CUDA = 1024  # the most a timed step uses on CUDA
PROBE_STEPS = 2  # timed steps, after one untimed warm-up step (allocations, cuDNN's kernel search)
LONG_JOB_S = 10 * 60  # on a CPU, jobs expected to run longer than this ask for a confirmation first


def format_duration(seconds: float | None) -> str:
    """'45 s', '4 min 05 s', '10 h 39 min' — a length of time that cannot be read as a clock time; '–' when
    unknown (None, NaN, inf)."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    h, m = divmod((s + 30) // 60, 60)  # rounded to the minute: seconds mean nothing after hours
    return f"{h} h {m:02d} min"


@dataclass(frozen=True)
class StepTime:
    """Seconds per training image and per evaluated image, measured at `batch` on `device`."""

    device: str  # "cpu" | "cuda"
    width: float
    batch: int
    train_per_image: float
    eval_per_image: float

    def step_seconds(self, batch_size: int) -> float:
        # CPU: per-image cost is flat in the batch size. CUDA: the probe ran at the run's own batch (capped), and
        # a larger one scales the same way.
        return self.train_per_image * batch_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(width: float, batch_size: int, device: str = "auto") -> StepTime:
    """Time PROBE_STEPS real training steps (forward, backward, Adam) and one evaluation pass of the network at
    `width` on `device`, on random inputs. Leaves the global RNG untouched (its own generator draws the inputs)."""
    dev = resolve_device(device)
    batch = min(batch_size, PROBE_BATCH) if dev.type == "cpu" else min(batch_size, PROBE_BATCH_CUDA)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # Net() draws its initial weights from the global RNG
        model = prepare_model(Net(width=width), dev)
    opt = make_optimizer(model, TrainConfig().optimizer, 1e-3)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with autocast_for(dev):
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(PROBE_STEPS):
        step()
    _sync(dev)
    train_s = (time.perf_counter() - t0) / PROBE_STEPS
    model.eval()
    with torch.no_grad(), autocast_for(dev):
        model(x)
        _sync(dev)
        t0 = time.perf_counter()
        model(x)
        _sync(dev)
    eval_s = time.perf_counter() - t0
    return StepTime(dev.type, float(width), batch, train_s / batch, eval_s / batch)


def _step(seconds: float) -> str:
    return format_duration(seconds) if seconds >= 10 else f"{seconds:.2g} s"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    device: str  # "cpu" | "cuda"
    what: str  # how it was reckoned, in a few words

    @property
    def long(self) -> bool:
        """A CPU job long enough to ask before starting it."""
        return self.device == "cpu" and self.seconds > LONG_JOB_S

    def __str__(self) -> str:
        return f"about {format_duration(self.seconds)} on {'the CPU' if self.device == 'cpu' else 'CUDA'} ({self.what})"


def for_run(cfg: TrainConfig, train_images: int, test_images: int, timing: StepTime) -> Estimate:
    """The expected length of training `cfg` on `train_images` (evaluating `test_images` after each epoch)."""
    spe = steps_per_epoch(train_images, cfg.batch_size)
    step = timing.step_seconds(cfg.batch_size)
    epoch = spe * step + test_images * timing.eval_per_image
    total = cfg.schedule.epochs * epoch
    what = (f"{cfg.schedule.epochs} × {spe} steps of {cfg.batch_size} images at {_step(step)} per step, "
            f"timed on this machine")
    return Estimate(total, timing.device, what)


def for_range_test(cfg: TrainConfig, iters: int, timing: StepTime) -> Estimate:
    """The expected length of an LR range test of `iters` iterations (at most; it may stop early)."""
    step = timing.step_seconds(cfg.batch_size)
    what = f"up to {iters} steps of {cfg.batch_size} images at {_step(step)} per step, timed on this machine"
    return Estimate(iters * step, timing.device, what)
