"""Train and evaluate loops for any model, optimizer, schedule and batch stream.

The engine knows nothing of data formats, UIs or files: it pulls (images, labels) batches, steps the optimizer
and the schedule once per batch, and reports through events to callbacks:
  step   every `step_every` steps: epoch, step, loss, lr, images/s, elapsed, ETA
  epoch  after each epoch's evaluation: the metrics.jsonl record
A stop request (a threading.Event) is honoured between steps. A non-finite loss raises Diverged.

Speed: channels_last everywhere (oneDNN's convolutions on the CPU are ~1.3–2× faster in it at the lab's small
widths, cuDNN's tensor-core kernels want it); mixed precision by the GPU's capability (resolve_precision: bf16
where the GPU has it, fp16 with loss scaling where it does not, fp32 on the CPU); and no host sync per step on
CUDA — loss and accuracy accumulate on the device and are read once per epoch (and at step events, which the
caller can space out).
"""

from __future__ import annotations

import math
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lab.config import PRECISIONS, OptimizerConfig


class DeviceError(RuntimeError):
    """The asked-for device is not there."""


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Event:
    kind: str  # "step" | "epoch"
    data: dict[str, Any] = field(default_factory=dict)


Callback = Callable[[Event], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def make_optimizer(model: nn.Module, cfg: OptimizerConfig, lr: float) -> torch.optim.Optimizer:
    """Adam (the spec) or SGD with Nesterov momentum (the preset). The schedule overwrites lr every step."""
    params = list(model.parameters())
    # fused: one kernel for the whole update on CUDA instead of a few per parameter tensor
    fused = {"fused": True} if params and params[0].is_cuda else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.decay, **fused)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.decay, **fused)


def bf16_supported(device: torch.device) -> bool:
    """Whether the GPU computes in bf16 natively (compute capability 8.0, Ampere, and later). T4 and V100 do not:
    torch would emulate bf16 there (including_emulation), slower than fp32, so they get fp16 instead."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Precision:
    """How a run computes: autocast to bf16 or fp16, or plain fp32. fp16's narrow exponent underflows small
    gradients, so fp16 comes with a GradScaler (the loss is scaled up before backward and the gradients back
    down before the step, skipping steps whose gradients overflowed); bf16 has fp32's exponent and needs none."""

    name: str  # "bf16" | "fp16" | "fp32"
    device_type: str  # "cuda" | "cpu"

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self):
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is live for fp16 and a pass-through (scale(loss) is the loss, step() the optimizer's
        step) otherwise, so the training loop has one shape for every precision."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def resolve_precision(name: str, device: torch.device) -> Precision:
    """auto: bf16 on a GPU that has it, fp16 (with loss scaling) on one that does not, fp32 on the CPU. bf16 or
    fp16 asked for on the CPU run under the CPU's autocast (correct, but slower than fp32 on most CPUs)."""
    if name not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        if device.type != "cuda":
            return Precision("fp32", device.type)
        return Precision("bf16" if bf16_supported(device) else "fp16", device.type)
    if name == "bf16" and device.type == "cuda" and not bf16_supported(device):
        raise DeviceError(f"--precision bf16 was asked for but this GPU ({torch.cuda.get_device_name(device)}) has "
                          "no native bf16 (it needs compute capability 8.0+); use --precision fp16 or auto")
    return Precision(name, device.type)


def autocast_for(device: torch.device, precision: Precision | None = None):
    """The autocast context of `precision` (default: the device's automatic choice)."""
    return (precision or resolve_precision("auto", device)).autocast()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels once
    return model.to(memory_format=torch.channels_last)


class Loss(nn.Module):
    """The loss: cross-entropy of logits × scale (a temperature; 1 = plain cross-entropy). Built once from the
    config (Loss.of) and handed to training, evaluation and the LR range test. Training and the range test take
    the mean with the config's label smoothing (forward); evaluation reports the plain cross-entropy (total: the
    sum over a batch, so batches of any size add up), which is what a test loss means."""

    def __init__(self, label_smoothing: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.test_ce = nn.CrossEntropyLoss(reduction="sum")

    @classmethod
    def of(cls, cfg) -> Loss:
        """The loss a TrainConfig describes: its label smoothing and logit scale."""
        return cls(cfg.label_smoothing, cfg.logit_scale)

    def _scaled(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits * self.scale if self.scale != 1 else logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(self._scaled(logits), target)

    def total(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.test_ce(self._scaled(logits), target)


def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    """Image batches in channels_last, as the model's weights are (a no-op when they already are)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return to_model_layout(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)


def resize_batch(x: torch.Tensor, side: int) -> torch.Tensor:
    """Progressive resizing: the augmented batch scaled to side × side (bilinear with antialiasing, so a smaller
    image is a blurred whole, not an aliased one), in fp32 (not every device's kernel takes bf16/fp16), back in
    the batch's dtype and layout. A no-op at the batch's own size."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    small = nn.functional.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True,
                                      align_corners=False)
    return to_model_layout(small.to(x.dtype))


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, device: torch.device, *, loss: Loss | None = None,
             tta: bool = False, precision: Precision | None = None, side: int | None = None) -> dict[str, float]:
    """Mean loss (`loss`'s test loss: plain cross-entropy of logits × its scale; default Loss()) and accuracy over every batch (eval mode: BN uses its
    running statistics). With `tta`, also tta_loss / tta_acc: the same with the logits of each image averaged
    with those of its mirror image (flip test-time augmentation), from the same pass over the batches. `side`:
    scale the images to side × side first (progressive resizing's low-res epochs); default as they are."""
    was_training = model.training
    model.eval()
    loss_fn = (loss or Loss()).total
    sums = {k: torch.zeros((), device=device) for k in ("loss", "acc", "tta_loss", "tta_acc")}
    seen = 0
    with autocast_for(device, precision):
        for x, y in batches:
            x, y = _to_device(x, y, device)
            if side is not None:
                x = resize_batch(x, side)
            logits = model(x).float()
            sums["loss"] += loss_fn(logits, y)
            sums["acc"] += (logits.argmax(1) == y).sum()
            if tta:
                both = (logits + model(x.flip(3)).float()) / 2
                sums["tta_loss"] += loss_fn(both, y)
                sums["tta_acc"] += (both.argmax(1) == y).sum()
            seen += len(y)
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate() got no batches: the test set is empty")
    keys = ("loss", "acc", "tta_loss", "tta_acc") if tta else ("loss", "acc")
    return {k: sums[k].item() / seen for k in keys}


def _diverged(epoch: int, step: int, loss: float, lr: float) -> Diverged:
    return Diverged(
        f"training diverged — LR too high? The loss became {loss} at epoch {epoch}, step {step} (LR {lr:.3g}). "
        "Lower --max-lr (or run the LR range test) and start again."
    )


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule,
    train_batches: Sequence,
    test_batches: Iterable,
    epochs: int,
    device: torch.device,
    *,
    loss: Loss | None = None,
    tta: bool = False,
    image_side: Callable[[int], int] | None = None,
    precision: Precision | None = None,
    callbacks: Sequence[Callback] = (),
    stop: threading.Event | None = None,
    step_every: int | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Train for `epochs`, evaluating after each. Returns (per-epoch records, "done" | "stopped").

    `schedule` has .step() and .lr (lab.schedule.OneCycle). `step_every`: emit a step event (and so read the
    loss on the host) every this many steps; default every step on the CPU, every 10 on CUDA; 0: never (the
    loss is then read, and checked, once per epoch). `precision`: default, the device's automatic choice.
    `image_side(epoch)`: the side that epoch's training batches, and its evaluation's test images, are scaled to
    (TrainConfig.image_side); default the batches' own.
    """
    precision = precision or resolve_precision("auto", device)
    scaler = precision.grad_scaler()
    if scaler.is_enabled():
        # fp16's first steps are often skipped while the scaler finds its scale; torch then warns that the LR
        # scheduler stepped before the optimizer did. One Cycle moves on by design (a step of the cycle per batch).
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
    loss_fn = loss or Loss()
    if step_every is None:
        step_every = 10 if device.type == "cuda" else 1
    steps_per_epoch = len(train_batches)
    total_steps = epochs * steps_per_epoch
    history: list[dict[str, Any]] = []
    global_step = 0
    t_start = time.perf_counter()
    images_done = 0

    def emit(kind: str, **data: Any) -> None:
        for cb in callbacks:
            cb(Event(kind, data))

    def eta(elapsed: float) -> float:
        return elapsed / global_step * (total_steps - global_step) if global_step else math.nan

    model.train()
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        data_seconds = 0.0
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        it = iter(train_batches)
        side = image_side(epoch) if image_side is not None else None
        for step in range(1, steps_per_epoch + 1):
            if stop is not None and stop.is_set():
                return history, "stopped"
            t_data = time.perf_counter()
            x, y = next(it)
            x, y = _to_device(x, y, device)
            if side is not None:
                x = resize_batch(x, side)
            data_seconds += time.perf_counter() - t_data
            lr = schedule.lr  # the LR this step uses
            with precision.autocast():
                logits = model(x)
                loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # fp16: skipped when a gradient overflowed (the schedule moves on regardless)
            scaler.update()
            schedule.step()
            global_step += 1
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            images_done += len(y)
            if step_every and (global_step % step_every == 0 or step == steps_per_epoch):
                value = loss.item()
                if not math.isfinite(value):
                    raise _diverged(epoch, step, value, lr)
                elapsed = time.perf_counter() - t_start
                # acc: the epoch's training accuracy so far — what the accuracy panel can show before the first
                # epoch's test figure (issue 20: the panel stayed empty for the whole first epoch)
                emit("step", epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, global_step=global_step,
                     total_steps=total_steps, loss=value, acc=correct.item() / seen, lr=lr,
                     images_per_s=images_done / elapsed,
                     elapsed=elapsed, eta=eta(elapsed))
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise _diverged(epoch, steps_per_epoch, train_loss, schedule.lr)
        train_seconds = time.perf_counter() - t_epoch
        # A low-res epoch is evaluated at its own side: the network then meets the scale it is training at (at
        # 32 px it would score 20–30 points lower until its full-size epoch, a curve that says nothing), for
        # (side/32)² of the cost. The last epoch is always at full size, so the final figure is the plain one.
        test = evaluate(model, test_batches, device, loss=loss_fn, tta=tta, precision=precision,
                        side=side)
        elapsed = time.perf_counter() - t_start
        record = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": correct.item() / seen,
            "test_loss": test["loss"],
            "test_acc": test["acc"],
            **({"test_loss_tta": test["tta_loss"], "test_acc_tta": test["tta_acc"]} if tta else {}),
            **({"image_side": side} if side is not None else {}),
            "seconds": time.perf_counter() - t_epoch,
            "train_seconds": train_seconds,
            "data_seconds": data_seconds,
            "images_per_s": seen / train_seconds,
            "elapsed": elapsed,
            "eta": eta(elapsed),
        }
        history.append(record)
        emit("epoch", **record)
    return history, "done"
