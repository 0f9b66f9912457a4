"""One training run from a TrainConfig: data → batch streams → model → optimizer → schedule → engine → run folder.

prepare() is the one setup sequence (device → data subset → seed → batch streams → model), shared by train()
and the LR range test so both see the same batches and the same initial weights. train() is the single entry
point that the CLI, the Gradio app, the sweeps and the benchmarks all call.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lab import data as data_mod
from lab.config import TrainConfig
from lab.engine import (Callback, Diverged, Event, Precision, fit, make_optimizer, prepare_model, resolve_device,
                        resolve_precision, seed_everything)
from lab.loaders import FastLoader, reference_loader
from lab.model import Net
from lab.runs import Run
from lab.schedule import OneCycle

EVAL_BATCH = 1024  # evaluation holds no activations for backward: a larger batch is cheaper per image


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


def choose_loader(cfg: TrainConfig, device: torch.device) -> str:
    if cfg.loader != "auto":
        return cfg.loader
    return "fast" if device.type == "cuda" else "reference"


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
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    full = data if data is not None else data_mod.load(cfg.data_dir)
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
    """Train one run. With run_dir, the run folder is written as it goes (config first, then metrics and the
    checkpoint after every epoch), so an interrupted run keeps its finished epochs."""
    t0 = time.perf_counter()
    p = prepare(cfg, data)
    device, model, train_batches = p.device, p.model, p.train_batches
    optimizer = make_optimizer(model, cfg.optimizer, cfg.schedule.max_lr)
    schedule = OneCycle(optimizer, cfg.schedule, len(train_batches))
    step_model = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model

    run = Run(Path(run_dir)) if run_dir is not None else None
    extra = {
        "data": {"source": p.source.source, "sha256": p.source.sha256, "train_images": len(p.data.y_train),
                 "test_images": len(p.data.y_test)},
        "device": device_name(device),
        "loader": p.loader,
        "precision": p.precision.name,
        "steps_per_epoch": len(train_batches),
        **(extra_config or {}),
    }
    history: list[dict[str, Any]] = []

    def persist(event: Event) -> None:
        if event.kind == "epoch":
            history.append(event.data)
            if run is not None:
                run.write_metrics(history)
                run.save_model(model, cfg, event.data)

    if run is not None:
        run.write_config(cfg, status="running", **extra)
    status = "error"
    try:
        _, status = fit(step_model, optimizer, schedule, train_batches, p.test_batches, cfg.schedule.epochs, device,
                        label_smoothing=cfg.label_smoothing, logit_scale=cfg.logit_scale, tta=cfg.tta,
                        precision=p.precision, callbacks=[persist, *callbacks], stop=stop,
                        step_every=step_every)
    except KeyboardInterrupt:
        status = "stopped"  # Ctrl-C: the finished epochs and their checkpoint stay, as with the stop flag
        raise
    except Diverged as e:
        status = "diverged"
        if run is not None:
            run.update_config(status=status, error=str(e))
        raise
    finally:
        if run is not None and status != "diverged":
            run.update_config(status=status, seconds=time.perf_counter() - t0)
    return Result(history, status, model, run, device, p.loader, time.perf_counter() - t0, extra)
