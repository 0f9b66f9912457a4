"""Before a job starts: how long it will take (from a step time measured on this machine) and how much memory it
will need at its peak (from the network's shapes).

Time. A 24-epoch spec run takes seconds on a large GPU and hours on two CPU cores (benchmarks/RESULTS.md); nothing
in a config says which machine it will meet, so the estimate times a few real training steps of the same network
(width, device, the precision training picks there — lab.engine.resolve_precision: bf16 autocast on a GPU that has
it, fp16 on one that does not, fp32 on the CPU —, channels_last, an Adam step) on random inputs, and scales:

    run          epochs × (steps per epoch × step time  +  test images × evaluation time per image)
    range test   iterations × step time

On a CPU a step costs a fixed overhead (one dispatch per layer, whatever the batch) plus a time per image, so
steps are timed at two small batches (PROBE_BATCHES) and the line through them is extended to the run's batch: a
few small steps of probing instead of one full-size step, which at width 1 takes seconds on a CPU. On CUDA small
batches would only time the launch overhead, so the probe uses the run's own batch size (capped). Each size is
timed PROBE_STEPS times after an untimed warm-up step and the median kept, as other work on the machine makes
single steps jump. Not timed: data loading and augmentation (the reference loader's worker processes run beside
the model on the CPU), start-up, and the machine's other work changing after the probe; the figure is good to
the order of magnitude that decides whether to start. The app shows it before Start and `python -m lab train` /
`find-lr` print it; on a CPU, both ask before a job expected to take over LONG_JOB_S.

Memory. peak_memory counts what a run holds at once — a training step's saved activations (lab.model's formula
from the layer shapes, × a factor calibrated by benchmarks/memory_probe.py) or an evaluation batch, plus the
weights, their gradients and the optimizer's state, plus the dataset when the fast loader keeps it on the device
— and lab.experiment.check_memory refuses a run whose peak does not fit free_memory.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

# LONG_JOB_S lives in lab.config (the CLI reads it to build --help, without torch); importable from here as before
from lab.config import LONG_JOB_S, TrainConfig
from lab.engine import autocast_for, make_optimizer, prepare_model, resolve_device
from lab.loaders import EVAL_BATCH, choose_loader
from lab.model import Net, activation_bytes, count_parameters
from lab.schedule import steps_per_epoch

PROBE_BATCHES = (8, 32)  # images per timed step on a CPU: the two points of the overhead + per-image line
PROBE_BATCH = PROBE_BATCHES[-1]  # the probe's key: a CPU timing serves every batch size
PROBE_BATCH_CUDA = 1024  # the most a timed step uses on CUDA
PROBE_STEPS = 3  # timed steps per size (the median is kept), after one untimed warm-up step (allocations,
# oneDNN's and cuDNN's kernel choice for the new shapes)


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
    """A training step costs `step_overhead` + `train_per_image` × batch seconds, and evaluation
    `eval_per_image` per image, as measured (largest probe batch `batch`) on `device`."""

    device: str  # "cpu" | "cuda"
    width: float
    batch: int
    train_per_image: float
    eval_per_image: float
    step_overhead: float = 0.0
    measured_at: float | None = None  # time.time() of the probe
    load: float | None = None  # the machine's 1-minute load average then (None where the OS has none)

    def step_seconds(self, batch_size: int) -> float:
        return self.step_overhead + self.train_per_image * batch_size

    def when(self) -> str:
        """'timed on this machine at 21:40:05 under load 0.62' — what a reader needs to judge the figure."""
        at = f" at {time.strftime('%H:%M:%S', time.localtime(self.measured_at))}" if self.measured_at else ""
        load = f" under load {self.load:.2f}" if self.load is not None else ""
        return f"timed on this machine{at}{load}"

    def stale(self, now: float | None = None, load: float | None = None) -> bool:
        """Whether the probe no longer speaks for this machine: older than TIMING_MAX_AGE_S, or the load has moved
        by LOAD_SHIFT or more since (other work started or ended: a probe under load 11 once promised 55 min for a
        run that took 15, and kept promising it after the machine went idle — issue 20)."""
        now = time.time() if now is None else now
        if self.measured_at is None or now - self.measured_at > TIMING_MAX_AGE_S:
            return True
        return load is not None and self.load is not None and abs(load - self.load) >= LOAD_SHIFT


# A step-time probe is redone when older than this, or when the machine's load moved by LOAD_SHIFT since (one more
# busy core on a 2-core machine roughly halves the speed the probe saw).
TIMING_MAX_AGE_S = 600
LOAD_SHIFT = 1.0


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS does not keep one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(width: float, batch_size: int, device: str = "auto") -> StepTime:
    """Time real training steps (forward, backward, Adam) and an evaluation pass of the network at `width` on
    `device`, on random inputs: at PROBE_BATCHES on a CPU (a line: overhead + per image), at the run's batch
    (capped) on CUDA. Leaves the global RNG untouched (its own generator draws the inputs)."""
    dev = resolve_device(device)
    load = load_average()  # before the probe, which adds its own
    sizes = PROBE_BATCHES if dev.type == "cpu" else (min(batch_size, PROBE_BATCH_CUDA),)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # Net() draws its initial weights from the global RNG
        model = prepare_model(Net(width=width), dev)
    opt = make_optimizer(model, TrainConfig().optimizer, 1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 3, 32, 32, generator=gen).to(dev)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (n,), generator=gen).to(dev)

    def timed(fn) -> float:
        fn()  # warm-up: new shapes
        _sync(dev)
        times = []
        for _ in range(PROBE_STEPS):
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast_for(dev):
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    points = []
    for n in sizes:
        x, y = batch(n)
        points.append((n, timed(lambda: train_step(x, y))))
    if len(points) == 2:
        (n0, t0), (n1, t1) = points
        per_image = max((t1 - t0) / (n1 - n0), t1 / n1 / 4)  # noise can flatten the line: keep a floor
        overhead = max(t1 - per_image * n1, 0.0)
    else:
        (n1, t1), overhead = points[0], 0.0
        per_image = t1 / n1
    model.eval()
    with torch.no_grad(), autocast_for(dev):
        eval_s = timed(lambda: model(x))
    return StepTime(dev.type, float(width), n1, per_image, eval_s / n1, overhead, time.time(), load)


def _step_duration(seconds: float) -> str:
    """One step's time: '0.31 s', or format_duration's form from 10 s up."""
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

    @property
    def duration(self) -> str:
        """'about 18 h 06 min'; below a minute just 'under a minute', since start-up and the data loader's fixed
        costs (not timed) then weigh as much as the steps (benchmarks/RESULTS.md, "Step time on the CPU")."""
        return "under a minute" if self.seconds < 60 else f"about {format_duration(self.seconds)}"

    def __str__(self) -> str:
        return f"{self.duration} on {'the CPU' if self.device == 'cpu' else 'CUDA'} ({self.what})"


def for_run(cfg: TrainConfig, train_images: int, test_images: int, timing: StepTime) -> Estimate:
    """The expected length of training `cfg` on `train_images` (evaluating `test_images` after each epoch)."""
    steps = steps_per_epoch(train_images, cfg.batch_size)
    step = timing.step_seconds(cfg.batch_size)
    # a low-res epoch (progressive resizing) costs (side/32)² of a full-size one; the step was timed at 32 px
    total = cfg.training_work() * (steps * step + test_images * timing.eval_per_image)
    low = (f", the first {cfg.low_res_epochs} at {cfg.low_res} px" if cfg.low_res_epochs else "")
    what = (f"{cfg.schedule.epochs} × {steps} steps of {cfg.batch_size} images at {_step_duration(step)} per step"
            f"{low}, {timing.when()}")
    return Estimate(total, timing.device, what)


def for_range_test(cfg: TrainConfig, iters: int, timing: StepTime) -> Estimate:
    """The expected length of an LR range test of `iters` iterations (at most; it may stop early)."""
    step = timing.step_seconds(cfg.batch_size)
    what = f"up to {iters} steps of {cfg.batch_size} images at {_step_duration(step)} per step, {timing.when()}"
    return Estimate(iters * step, timing.device, what)


# ------------------------------------------------------------------------------------------------ memory

# Peak memory of a training step ÷ what autograd saves for the backward pass (model.activation_bytes), a factor
# calibrated by benchmarks/memory_probe.py on the CPU (benchmarks/RESULTS.md, "Memory: one training step on the
# CPU", has the readings and the command); it stays above every reading there. The weights' gradients are counted
# apart. On CUDA the same fp32 count over-estimates bf16/fp16 activations, so a refusal there errs on the safe side.
PEAK_OVER_SAVED = 1.6
OPTIMIZER_STATES = {"adam": 2, "sgd": 1}  # per-parameter buffers besides the weight and its gradient


def peak_memory(cfg: TrainConfig, device: torch.device, train_images: int, test_images: int,
                with_test: bool = True) -> int:
    """An estimate, in bytes, of the most memory a run of `cfg` holds on `device` at once: the larger of a
    training step's activations (PEAK_OVER_SAVED × what autograd saves per image × batch) and an evaluation
    batch's (the largest layer output and its input, × the evaluation batch), plus the weights, their gradients
    and the optimizer's state, plus the dataset when the fast loader keeps it on the device."""
    saved, largest = activation_bytes(float(cfg.width))
    train_peak = PEAK_OVER_SAVED * saved * cfg.batch_size
    eval_peak = 2 * largest * max(cfg.batch_size, EVAL_BATCH) if with_test else 0
    weights = count_parameters_at(cfg.width) * 4 * (2 + OPTIMIZER_STATES.get(cfg.optimizer.name, 2))
    data = 0
    if choose_loader(cfg, device) == "fast":
        images = min(cfg.subset or train_images, train_images) + (
            min(cfg.test_subset or test_images, test_images) if with_test else 0)
        data = images * 32 * 32 * 3  # uint8 on the device
    return int(max(train_peak, eval_peak) + weights + data)


def count_parameters_at(width: float) -> int:
    """The network's parameter count at `width`, from its shapes alone."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return count_parameters(Net(width=width))


def free_memory(device: torch.device) -> int | None:
    """Bytes this process could still get on `device`; None when it cannot be told. On CUDA: the driver's
    free memory plus what torch's caching allocator holds unused. On the CPU: MemAvailable, and the container's
    limit (cgroup v2, then v1) when that is tighter."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    found = []
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = open(limit_file).read().strip()
            usage = int(open(usage_file).read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            found.append(int(limit) - usage)
        break
    return min(found) if found else None
