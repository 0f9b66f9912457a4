"""One Cycle on torch's OneCycleLR, stepped once per batch, plus the triangular cyclic-LR "zig-zag".

OneCycleLR is configured so that the run ends at LRMIN, the LR it started from (no annihilation):
- final_div_factor=1: OneCycleLR's last LR is initial_lr / final_div_factor, which would otherwise be far below.
- the LR written to the optimizer is clamped into [LRMIN, LRMAX]: the phase arithmetic is in floating point and
  can land a hair outside the cycle (or, with pct_start rounding, past the end), never meaningfully, but a
  negative or sub-LRMIN LR must never reach the optimizer.
- two_phase (not three_phase): up from LRMIN to LRMAX by the end of the peak epoch, then down to LRMIN.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import OneCycleLR

from lab.config import MIN_SCHEDULE_STEPS, ConfigError, ScheduleConfig


class _Stepped:
    """A torch LR scheduler stepped once per batch: call `step()` after every optimizer step. `lr` and `momentum`
    are what the optimizer holds for the next step."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    steps_taken: int

    def _after_step(self) -> None:
        """What a schedule does to the optimizer's LR after the scheduler's (One Cycle: clamp it)."""

    def step(self) -> None:
        # OneCycleLR raises past its last step; the last optimizer step needs no new LR after it.
        self.steps_taken += 1
        if self.steps_taken < self.total_steps:
            self.scheduler.step()
            self._after_step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def momentum(self) -> float | None:
        return momentum_of(self.optimizer)


class OneCycle(_Stepped):
    """OneCycleLR for one run; call `step()` after every optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int):
        if steps_per_epoch < 1:
            raise ValueError(f"steps per epoch must be ≥ 1, got {steps_per_epoch}")
        self.cfg = cfg
        self.total_steps = cfg.epochs * steps_per_epoch
        if self.total_steps < MIN_SCHEDULE_STEPS:
            raise ConfigError(
                f"One Cycle needs at least {MIN_SCHEDULE_STEPS} steps (up from LRMIN, the peak, back down), got {cfg.epochs} epoch(s) × "
                f"{steps_per_epoch} step(s); train on more images, use a smaller batch or more epochs"
            )
        # OneCycleLR's rise ends at step pct_start·total − 1. In a run of very few steps the asked-for peak can
        # fall before step 1, so there would be no rise from LRMIN: then the peak moves to step 1 (and, at the
        # other end, no later than the second-to-last step).
        pct_start = min(max(cfg.pct_start, 2 / self.total_steps), (self.total_steps - 1) / self.total_steps)
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = optimizer
        self.scheduler = OneCycleLR(
            optimizer,
            max_lr=cfg.max_lr,
            total_steps=self.total_steps,
            pct_start=pct_start,
            anneal_strategy=cfg.anneal,
            cycle_momentum=cfg.cycle_momentum,
            base_momentum=cfg.base_momentum,
            max_momentum=cfg.max_momentum,
            div_factor=cfg.max_lr / cfg.lr_min,
            final_div_factor=1.0,
            three_phase=False,
        )
        self.steps_taken = 0
        self._clamp()

    def _clamp(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = min(max(group["lr"], self.cfg.lr_min), self.cfg.max_lr)

    _after_step = _clamp


class Baseline(_Stepped):
    """The schedules One Cycle is compared against (beyond the spec), each on torch's own scheduler, stepped once
    per batch like OneCycle: constant (ConstantLR at factor 1: max LR throughout), step (MultiStepLR: max LR ÷ 10
    at 50% and again at 75% of the steps) and cosine (CosineAnnealingLR from max LR down to min LR at the last step,
    no warm-up). Momentum (Adam's β1) stays the optimizer's own: only One Cycle cycles it."""

    MILESTONES = (0.5, 0.75)  # step: the shares of the run after which the LR drops
    STEP_GAMMA = 0.1

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int):
        from torch.optim import lr_scheduler

        if steps_per_epoch < 1:
            raise ValueError(f"steps per epoch must be ≥ 1, got {steps_per_epoch}")
        self.cfg, self.optimizer, self.steps_per_epoch = cfg, optimizer, steps_per_epoch
        self.total_steps = cfg.epochs * steps_per_epoch
        for group in optimizer.param_groups:
            group["lr"] = cfg.max_lr
        if cfg.policy == "constant":
            self.scheduler = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        elif cfg.policy == "step":
            # milestone m: the LR drops for step m (0-based) onwards, i.e. after m steps have been taken
            milestones = [round(share * self.total_steps) for share in self.MILESTONES]
            self.scheduler = lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=self.STEP_GAMMA)
        elif cfg.policy == "cosine":
            self.scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.total_steps - 1),
                                                            eta_min=cfg.lr_min)
        else:
            raise ValueError(f"not a baseline schedule: {cfg.policy!r}")
        self.steps_taken = 0


def make_schedule(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int) -> OneCycle | Baseline:
    """The schedule cfg.policy names, for training and for the preview alike."""
    if cfg.policy == "one-cycle":
        return OneCycle(optimizer, cfg, steps_per_epoch)
    return Baseline(optimizer, cfg, steps_per_epoch)


def momentum_of(optimizer: torch.optim.Optimizer) -> float | None:
    """SGD's momentum or Adam's β1 (what OneCycleLR cycles)."""
    group = optimizer.param_groups[0]
    if "betas" in group:
        return float(group["betas"][0])
    return float(group["momentum"]) if "momentum" in group else None


def preview(cfg: ScheduleConfig, steps_per_epoch: int, optimizer: str = "adam") -> dict[str, list[float]]:
    """Per-step LR and momentum/β1 of a run, without training: the LR used by each of the run's steps, stepped by
    make_schedule — the scheduler that trains."""
    param = torch.nn.Parameter(torch.zeros(1))
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD([param], lr=cfg.max_lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam([param], lr=cfg.max_lr)
    sched = make_schedule(opt, cfg, steps_per_epoch)
    lrs, moms = [], []
    for _ in range(sched.total_steps):
        lrs.append(sched.lr)
        moms.append(sched.momentum)
        opt.step()  # a no-op (no gradient); keeps torch from warning about the call order
        sched.step()
    # Step k (1-based, as the engine counts) sits at epoch k / steps_per_epoch, where the training curves put it
    # (plots._epoch_x): the LR a step used is drawn where that step ends. Drawn at its start, the peak landed one
    # step before its own "peak (epoch X)" marker and the curve stopped one step short of the run's end (issue 20).
    steps = range(1, len(lrs) + 1)
    return {"step": list(steps), "epoch": [k / steps_per_epoch for k in steps], "lr": lrs, "momentum": moms}


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Batches per epoch: the last partial batch is kept."""
    return -(-n_images // batch_size)


def triangular(min_lr: float, max_lr: float, step_size: int, cycles: int = 3) -> dict[str, list[float]]:
    """The triangular cyclic-LR curve (Smith 2017, torch's CyclicLR): linear up from min_lr to max_lr over
    step_size steps, linear back down, `cycles` times."""
    if step_size < 1 or cycles < 1:
        raise ValueError(f"step size and cycles must be ≥ 1, got {step_size} and {cycles}")
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min LR < max LR, got {min_lr} and {max_lr}")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=min_lr)
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=min_lr, max_lr=max_lr, step_size_up=step_size, mode="triangular", cycle_momentum=False
    )
    lrs = []
    for _ in range(2 * step_size * cycles + 1):
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return {"step": list(range(len(lrs))), "lr": lrs}
