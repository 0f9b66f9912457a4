"""One training run from a TrainConfig: data → batch streams → model → optimizer → schedule → engine → run folder.

preflight() checks what a run needs before anything is made (the data's size, the schedule's length, the
memory at the peak: lab.estimate.peak_memory against what is free); prepare() is the one setup sequence (device →
data subset → seed → batch streams → model), shared by train() and the LR range test so both see the same batches and the same initial weights. train() is
the single entry point that the CLI, the Gradio app, the sweeps and the benchmarks all call.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab import data as data_mod
from lab.config import ConfigError, TrainConfig
from lab.engine import (Callback, Diverged, Event, Loss, Precision, fit, make_optimizer, prepare_model, resolve_device,
                        resolve_precision, seed_everything)
from lab.estimate import free_memory, peak_memory
from lab.loaders import EVAL_BATCH, FastLoader, choose_loader, reference_loader
from lab.model import Net, activation_bytes
from lab.runs import DiskFull, Run, fmt_bytes
from lab.schedule import make_schedule


@dataclass
class Result:
    history: list[dict[str, Any]]
    status: str  # "done" | "stopped"
    model: nn.Module
    run: Run | None
    device: torch.device
    loader: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def device_name(device: torch.device) -> str:
    """What a run's record calls its device: the GPU's model name, or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def build_loaders(cfg: TrainConfig, data: data_mod.Cifar10, device: torch.device, kind: str,
                  with_test: bool = True, precision: Precision | None = None):
    """(train batches, test batches or None) of the chosen kind. The fast loader hands out batches already in
    the precision's dtype and in channels_last, as the model takes them."""
    test = None
    if kind == "fast":
        dtype = (precision or resolve_precision(cfg.precision, device)).dtype
        train = FastLoader(data.x_train, data.y_train, cfg.batch_size, True, device, cfg.augment, cfg.seed,
                           dtype, True)
        if with_test:
            test = FastLoader(data.x_test, data.y_test, max(cfg.batch_size, EVAL_BATCH), False, device,
                              dtype=dtype, channels_last=True)
        return train, test
    pin = device.type == "cuda"
    train = reference_loader(data.x_train, data.y_train, cfg.batch_size, True, cfg.augment, cfg.seed,
                             cfg.workers, pin)
    if with_test:
        test = reference_loader(data.x_test, data.y_test, max(cfg.batch_size, EVAL_BATCH), False, seed=cfg.seed,
                                workers=cfg.workers, pin_memory=pin)
    return train, test


def check_memory(cfg: TrainConfig, device: torch.device, train_images: int, test_images: int,
                 with_test: bool = True) -> int:
    """Refuse (ConfigError naming width and batch) a run whose estimated peak does not fit what is free on the
    device; returns the estimate. LAB_MEMORY_LIMIT (bytes) stands in for the free memory (tests, or a server
    that wants to keep room for something else)."""
    need = peak_memory(cfg, device, train_images, test_images, with_test)
    override = os.environ.get("LAB_MEMORY_LIMIT")
    free = int(float(override)) if override else free_memory(device)
    if free is not None and need > free:
        where = "the GPU" if device.type == "cuda" else "this machine"
        raise ConfigError(
            f"this run would need about {fmt_bytes(need)} of memory at its peak (width {cfg.width:g}, batch "
            f"{cfg.batch_size}: {fmt_bytes(activation_bytes(float(cfg.width))[0])} of activations per image), but "
            f"only {fmt_bytes(free)} is free on {where}; lower the batch size or the width", "batch_size")
    return need


def preflight(cfg: TrainConfig, train_images: int, test_images: int, with_test: bool = True) -> torch.device:
    """Everything that can be checked before a run makes anything: the device is there, the subsets fit the
    data, the schedule has the steps One Cycle needs, the estimated peak memory fits. Returns the device."""
    device = resolve_device(cfg.device)
    cfg.check_data(train_images, test_images if with_test else None)
    check_memory(cfg, device, train_images, test_images, with_test)
    return device


@dataclass
class Prepared:
    """What a run trains with: everything before the optimizer."""

    device: torch.device
    source: data_mod.Cifar10  # the whole dataset (its source and checksum go into the run's record)
    data: data_mod.Cifar10  # the images this run uses (cfg.subset / cfg.test_subset of the source)
    loader: str  # "fast" | "reference"
    precision: Precision
    train_batches: Any
    test_batches: Any  # None when prepared without a test set (the range test)
    model: nn.Module


def prepare(cfg: TrainConfig, data: data_mod.Cifar10 | None = None, *, with_test: bool = True,
            model: nn.Module | None = None) -> Prepared:
    """The one setup sequence: device → data subset → seed → batch streams → model, in this order, so that
    everything seeded (the shuffling, the augmentation draws, the initial weights) is the same for every caller.
    `data`: CIFAR-10 (loaded from cfg.data_dir when None). `model`: start from a deep copy of these weights
    instead of a freshly initialised network (the caller's model is never modified)."""
    full = data if data is not None else data_mod.load(cfg.data_dir)
    device = preflight(cfg, len(full.y_train), len(full.y_test), with_test)
    precision = resolve_precision(cfg.precision, device)
    used = full.subset(cfg.subset, cfg.test_subset if with_test else 0)
    seed_everything(cfg.seed)
    kind = choose_loader(cfg, device)
    train_batches, test_batches = build_loaders(cfg, used, device, kind, with_test, precision)
    net = prepare_model(Net(width=cfg.width) if model is None else copy.deepcopy(model), device)
    return Prepared(device, full, used, kind, precision, train_batches, test_batches, net)


def train(
    cfg: TrainConfig,
    data: data_mod.Cifar10 | None = None,
    callbacks: Sequence[Callback] = (),
    stop: threading.Event | None = None,
    run_dir: str | Path | None = None,
    extra_config: dict[str, Any] | None = None,
    step_every: int | None = None,
) -> Result:
    """Train one run. With run_dir, the run folder is written as it goes: lock.json (this process owns the run),
    config.json (status running), then after every epoch the checkpoint and only then the metrics line that
    claims it, so an interrupted run keeps its finished epochs and never claims one its checkpoint lacks. At the
    end config.json records how the run ended (done, stopped — the stop flag, Ctrl-C or SIGTERM —, diverged or
    error, with the reason) and the lock goes; a process that dies without that reads `interrupted`."""
    t0 = time.perf_counter()
    prepared = prepare(cfg, data)
    device, model, train_batches = prepared.device, prepared.model, prepared.train_batches
    optimizer = make_optimizer(model, cfg.optimizer, cfg.schedule.max_lr)
    schedule = make_schedule(optimizer, cfg.schedule, len(train_batches))
    step_model = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model

    run = Run(Path(run_dir)) if run_dir is not None else None
    extra = {
        "data": {"source": prepared.source.source, "sha256": prepared.source.sha256,
                 "train_images": len(prepared.data.y_train),
                 "test_images": len(prepared.data.y_test)},
        "device": device_name(device),
        "loader": prepared.loader,
        "precision": prepared.precision.name,
        "steps_per_epoch": len(train_batches),
        **(extra_config or {}),
    }
    history: list[dict[str, Any]] = []

    def persist(event: Event) -> None:
        if event.kind == "epoch":
            if run is not None:
                run.save_model(model, cfg, event.data)  # first: a metrics line never claims a missing checkpoint
                run.write_metrics([*history, event.data])
            history.append(event.data)

    if run is not None:
        run.claim()
        run.write_config(cfg, status="running", **extra)
    status, error = "error", None
    try:
        _, status = fit(step_model, optimizer, schedule, train_batches, prepared.test_batches, cfg.schedule.epochs,
                        device, loss=Loss.of(cfg), tta=cfg.tta, image_side=cfg.image_side,
                        precision=prepared.precision, callbacks=[persist, *callbacks], stop=stop,
                        step_every=step_every)
    except KeyboardInterrupt:
        status = "stopped"  # Ctrl-C or SIGTERM: the finished epochs and their checkpoint stay, as with the stop flag
        raise
    except Diverged as e:
        status, error = "diverged", str(e)
        raise
    except Exception as e:  # disk full, out of memory, a bug: the run records why it failed
        error = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise
    finally:
        if run is not None:
            _record_end(run, status, error, time.perf_counter() - t0)
    return Result(history, status, model, run, device, prepared.loader, time.perf_counter() - t0, extra)


def _record_end(run: Run, status: str, error: str | None, seconds: float) -> None:
    """config.json says how the run ended, then the lock goes. On a full disk even this small write may fail:
    then the lock stays, and the run reads `interrupted` once this process is gone — never `running`."""
    fields: dict[str, Any] = {"status": status, "seconds": seconds}
    if error:
        fields["error"] = error
    try:
        run.update_config(**fields)
    except (DiskFull, OSError):
        return
    run.release()
