"""lab.schedule: One Cycle peaks at the end of the peak epoch, starts and ends at LRMIN (no annihilation), is
never negative, and cycles momentum / Adam β1 the other way; the triangular CLR zig-zag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.config import ConfigError, ScheduleConfig, TrainConfig
from lab.schedule import OneCycle, momentum_of, preview, steps_per_epoch, triangular

CASES = [  # (epochs, peak_epoch, steps per epoch, max_lr, anneal)
    (24, 5, 98, 0.01, "linear"),  # the spec: 50,000 images in batches of 512
    (24, 5, 98, 0.4, "cos"),
    (2, 1, 4, 0.01, "linear"),
    (10, 3, 7, 1.0, "cos"),
    (3, 0.5, 4, 0.05, "linear"),
    (5, 4, 1, 0.02, "linear"),
]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}ep-peak{c[1]}-spe{c[2]}-{c[4]}")
def case(request):
    epochs, peak, spe, max_lr, anneal = request.param
    cfg = ScheduleConfig(max_lr=max_lr, epochs=epochs, peak_epoch=peak, anneal=anneal)
    return cfg, spe, preview(cfg, spe)


def test_length_is_one_lr_per_step(case):
    cfg, spe, curve = case
    assert len(curve["lr"]) == len(curve["momentum"]) == len(curve["step"]) == cfg.epochs * spe
    assert curve["step"][0] == 1 and curve["epoch"][spe - 1] == 1.0 and curve["epoch"][-1] == cfg.epochs


def test_the_preview_draws_the_peak_on_its_marker(case):
    # issue 20: the preview drew step k's LR at the step's start, so the peak sat one step before the "peak (epoch X)"
    # marker (where the Train tab's LR plot, plotting each step where it ends, puts it) and the curve stopped short
    cfg, spe, curve = case
    x_peak = curve["epoch"][int(np.argmax(curve["lr"]))]
    assert x_peak == pytest.approx(round(cfg.peak_epoch * spe) / spe)
    assert x_peak == pytest.approx(cfg.peak_epoch, abs=0.5 / spe)


def test_peak_is_max_lr_at_the_end_of_the_peak_epoch(case):
    cfg, spe, curve = case
    lr = np.array(curve["lr"])
    peak = round(cfg.peak_epoch * spe) - 1
    assert lr[peak] == pytest.approx(cfg.max_lr, rel=1e-9)
    assert lr.max() == pytest.approx(cfg.max_lr, rel=1e-9)
    assert lr.max() <= cfg.max_lr
    assert np.all(np.diff(lr[:peak + 1]) > 0)  # rises to the peak
    assert np.all(np.diff(lr[peak:]) < 0)  # then falls all the way


def test_first_and_last_lr_are_lrmin_no_annihilation(case):
    cfg, _, curve = case
    assert curve["lr"][0] == pytest.approx(cfg.lr_min, rel=1e-9)
    assert curve["lr"][-1] == pytest.approx(cfg.lr_min, rel=1e-9)


def test_lr_never_below_lrmin_nor_negative(case):
    cfg, _, curve = case
    lr = np.array(curve["lr"])
    assert lr.min() >= cfg.lr_min * (1 - 1e-12)
    assert (lr > 0).all()


def test_momentum_cycles_opposite_to_the_lr(case):
    cfg, spe, curve = case
    mom = np.array(curve["momentum"])
    peak = round(cfg.peak_epoch * spe) - 1
    assert mom[peak] == pytest.approx(cfg.base_momentum, rel=1e-9)
    assert mom[0] == pytest.approx(cfg.max_momentum, rel=1e-9)
    assert mom[-1] == pytest.approx(cfg.max_momentum, rel=1e-9)
    assert mom.min() >= cfg.base_momentum - 1e-12 and mom.max() <= cfg.max_momentum + 1e-12


def test_explicit_min_lr_is_where_the_cycle_starts_and_ends():
    cfg = ScheduleConfig(max_lr=0.1, min_lr=0.003, epochs=4, peak_epoch=1)
    lr = preview(cfg, 5)["lr"]
    assert lr[0] == pytest.approx(0.003, rel=1e-9) and lr[-1] == pytest.approx(0.003, rel=1e-9)
    assert lr[4] == pytest.approx(0.1, rel=1e-9)


def test_sgd_cycles_momentum_and_adam_cycles_beta1():
    cfg = ScheduleConfig(max_lr=0.1, epochs=4, peak_epoch=1)
    sgd = preview(cfg, 5, optimizer="sgd")
    adam = preview(cfg, 5, optimizer="adam")
    assert sgd["momentum"] == pytest.approx(adam["momentum"])
    assert sgd["lr"] == pytest.approx(adam["lr"])

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=0.1)
    sched = OneCycle(opt, cfg, 5)
    betas = []
    for _ in range(sched.total_steps):
        betas.append(opt.param_groups[0]["betas"][0])
        opt.step()
        sched.step()
    assert betas == pytest.approx(adam["momentum"])
    assert opt.param_groups[0]["betas"][1] == 0.999  # β2 is left alone
    assert betas[4] == pytest.approx(0.85) and betas[0] == pytest.approx(0.95)


def test_no_cycle_momentum_keeps_it_fixed():
    cfg = ScheduleConfig(max_lr=0.1, epochs=4, peak_epoch=1, cycle_momentum=False)
    assert set(preview(cfg, 5, optimizer="adam")["momentum"]) == {0.9}  # Adam's default β1
    assert set(preview(cfg, 5, optimizer="sgd")["momentum"]) == {0.9}


def test_linear_and_cos_differ_between_the_ends():
    kw = dict(max_lr=0.1, epochs=6, peak_epoch=2)
    lin = np.array(preview(ScheduleConfig(anneal="linear", **kw), 10)["lr"])
    cos = np.array(preview(ScheduleConfig(anneal="cos", **kw), 10)["lr"])
    assert lin[[0, 19, -1]] == pytest.approx(cos[[0, 19, -1]])
    assert not np.allclose(lin, cos)
    # linear: evenly spaced on the way up
    assert np.allclose(np.diff(lin[:20]), np.diff(lin[:20])[0])


def test_one_cycle_steps_exactly_total_steps_times():
    cfg = ScheduleConfig(max_lr=0.4, epochs=3, peak_epoch=1, anneal="cos")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.4, momentum=0.9, nesterov=True)
    sched = OneCycle(opt, cfg, 7)
    assert sched.total_steps == 21
    lrs = []
    for _ in range(sched.total_steps):  # the engine's pattern: the step uses .lr, then steps the schedule
        lrs.append(sched.lr)
        opt.step()
        sched.step()  # OneCycleLR itself would raise on its total_steps-th step
    assert sched.steps_taken == 21
    assert lrs == pytest.approx(preview(cfg, 7, optimizer="sgd")["lr"], rel=1e-12)
    assert sched.lr == pytest.approx(cfg.lr_min)
    assert momentum_of(opt) == pytest.approx(cfg.max_momentum)


def test_one_cycle_rejects_zero_steps_per_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="steps per epoch"):
        OneCycle(opt, ScheduleConfig(max_lr=0.1, epochs=2), 0)


def test_steps_per_epoch_keeps_the_last_partial_batch():
    assert steps_per_epoch(50_000, 512) == 98
    assert steps_per_epoch(1024, 512) == 2
    assert steps_per_epoch(1, 512) == 1


def test_triangular_zigzags_between_min_and_max():
    curve = triangular(0.001, 0.01, step_size=5, cycles=3)
    lr = np.array(curve["lr"])
    assert len(lr) == 2 * 5 * 3 + 1
    assert lr.min() == pytest.approx(0.001) and lr.max() == pytest.approx(0.01)
    for cycle in range(3):
        start = 10 * cycle
        assert lr[start] == pytest.approx(0.001)
        assert lr[start + 5] == pytest.approx(0.01)
        assert np.all(np.diff(lr[start:start + 6]) > 0)  # rises linearly
        assert np.allclose(np.diff(lr[start:start + 6]), 0.009 / 5)
        assert np.all(np.diff(lr[start + 5:start + 11]) < 0)  # falls linearly
    assert lr[-1] == pytest.approx(0.001)


@pytest.mark.parametrize("args", [(0.01, 0.001, 5), (0, 0.01, 5), (-0.01, 0.01, 5), (0.001, 0.01, 0)])
def test_triangular_rejects_bad_ranges(args):
    with pytest.raises(ValueError):
        triangular(*args)


@pytest.mark.parametrize("epochs,steps", [(1, 3), (1, 4), (2, 4), (3, 2)])
def test_very_short_runs_still_rise_peak_and_end_at_lrmin(epochs, steps):
    from lab.config import ScheduleConfig
    from lab.schedule import preview

    cfg = ScheduleConfig(max_lr=0.01, epochs=epochs)  # the peak share (5/24) falls before step 1 here
    lrs = preview(cfg, steps)["lr"]
    assert lrs[0] == pytest.approx(cfg.lr_min) and lrs[-1] == pytest.approx(cfg.lr_min)
    assert max(lrs) == pytest.approx(cfg.max_lr)


def test_fewer_than_three_steps_is_a_clear_error():
    from lab.config import ConfigError, ScheduleConfig
    from lab.schedule import preview

    with pytest.raises(ConfigError, match="at least 3 steps"):
        preview(ScheduleConfig(epochs=2), 1)


# ------------------------------------------------------------------- the schedules One Cycle is compared against


def _torch_curve(make, total: int, max_lr: float) -> list[float]:
    """The LR each of `total` steps uses under one of torch's schedulers, stepped after every step."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched, out = make(opt), []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("policy", ["constant", "step", "cosine"])
def test_each_baseline_schedule_is_torchs_own(policy):
    from torch.optim import lr_scheduler

    cfg = ScheduleConfig(max_lr=0.1, epochs=4, policy=policy)  # LRMIN 0.004 (div factor 25)
    curve = preview(cfg, 10)["lr"]
    total = 40
    assert len(curve) == total and curve[0] == pytest.approx(0.1)
    if policy == "constant":
        assert curve == pytest.approx([0.1] * total)
    elif policy == "step":  # ÷10 from step 20 (50%) and again from step 30 (75%)
        assert curve == pytest.approx([0.1] * 20 + [0.01] * 10 + [0.001] * 10)
        want = _torch_curve(lambda o: lr_scheduler.MultiStepLR(o, [20, 30], 0.1), total, 0.1)
        assert curve == pytest.approx(want)
    else:  # from max LR down to LRMIN at the last step, always falling, no warm-up
        assert curve[-1] == pytest.approx(cfg.lr_min) and all(a > b for a, b in zip(curve, curve[1:]))
        want = _torch_curve(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=total - 1, eta_min=cfg.lr_min),
                            total, 0.1)
        assert curve == pytest.approx(want)
    assert set(preview(cfg, 10)["momentum"]) == {0.9}  # only One Cycle cycles momentum (Adam's β1 here)


def test_the_schedule_is_a_knob_of_the_cli_the_app_and_the_sweep_grid():
    from lab import cli
    from lab import sweep as sw
    from lab.ui.common import train_config, control_defaults

    assert cli.train_config(cli.parse(["train", "--schedule", "cosine"])).schedule.policy == "cosine"
    assert train_config(**{**control_defaults(), "schedule": "step"}).schedule.policy == "step"
    assert sw.parse_grid(["schedule=one-cycle,constant"])["schedule"] == ["one-cycle", "constant"]
    assert TrainConfig.from_flat(schedule="step").flat()["schedule"] == "step"
    with pytest.raises(ConfigError, match="schedule must be one of one-cycle, constant, step, cosine"):
        ScheduleConfig(policy="triangle")


def test_training_follows_the_schedule_it_is_given(tmp_path):
    """A run under the step schedule trains at max LR, then ÷10, then ÷100, epoch by epoch (the record's LR is
    the last step's of each epoch)."""
    from conftest import make_cifar
    from lab.experiment import train

    cfg = TrainConfig.from_flat(width=0.125, batch_size=4, subset=20, test_subset=6, device="cpu", workers=0,
                                epochs=4, max_lr=0.01, schedule="step")
    result = train(cfg, make_cifar(), run_dir=tmp_path / "run")
    assert [round(r["lr"], 6) for r in result.history] == [0.01, 0.01, 0.001, 0.0001]


def test_one_cycle_is_torchs_one_cycle_lr_and_each_curve_has_its_landmarks():
    """One Cycle against torch's OneCycleLR stepped bare (LRMIN = max / div, final_div_factor 1): the same curve;
    and the landmarks each schedule claims — One Cycle's peak at the end of the peak epoch, cosine halfway between
    its ends at the middle step, step's two decays at 50% and 75% — on the curves the comparison trains with."""
    from torch.optim import lr_scheduler

    cfg = ScheduleConfig(max_lr=0.1, epochs=4, peak_epoch=1, div_factor=25)
    total = 40
    want = _torch_curve(lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=total, pct_start=10 / total,
                                                          anneal_strategy="linear", div_factor=25,
                                                          final_div_factor=1.0, three_phase=False), total, 0.1)
    curve = preview(cfg, 10)["lr"]
    assert curve == pytest.approx(want, rel=1e-9)
    assert curve[0] == pytest.approx(0.004) and curve[9] == pytest.approx(0.1) and curve[-1] == pytest.approx(0.004)
    cosine = preview(ScheduleConfig(max_lr=0.1, epochs=4, policy="cosine"), 10)["lr"]
    # T_max = total - 1: the curve is symmetric about step 19.5, where it is halfway between its ends
    assert (cosine[19] + cosine[20]) / 2 == pytest.approx((0.1 + 0.004) / 2, rel=1e-3)
    step = preview(ScheduleConfig(max_lr=0.1, epochs=4, policy="step"), 10)["lr"]
    drops = [i for i in range(1, total) if step[i] < step[i - 1]]
    assert drops == [20, 30]
