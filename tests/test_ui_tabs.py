"""The functions behind each tab of the app (lab.ui.*), called as the Blocks call them, without a server."""

from __future__ import annotations

import json
import re
import math
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from lab.config import DEFAULT_MAX_LR, PRESETS, ScheduleConfig, TrainConfig
from lab import insights as ins_mod
from lab.data import CLASSES
from lab.runs import Run
from lab.ui import augment, classify, insights, lr_range, one_cycle, train
from lab.ui.common import NO_CHECKPOINT, control_defaults, fmt_seconds, train_config
from lab.server.jobs import json_safe

SKIP = type(gr.skip())


def is_skip(x) -> bool:
    return isinstance(x, SKIP)


# ---------------------------------------------------------------------------------------------------- Augment


def test_augment_grid_shows_each_image_beside_its_draws(ctx):
    img, caption = augment.preview(ctx, 4, 8, 1.0, 0.5, seed=3, n_images=3, draws=2)
    rows, cols = 3, 3
    assert img.shape == (augment.HEADER_H + rows * (augment.CELL + augment.GAP) + augment.GAP,
                         augment.LABEL_W + cols * (augment.CELL + augment.GAP) + augment.GAP, 3)
    assert "seed 3" in caption and "CutOut one 8×8 hole" in caption and "pad 4 px" in caption
    again, _ = augment.preview(ctx, 4, 8, 1.0, 0.5, seed=3, n_images=3, draws=2)
    other, _ = augment.preview(ctx, 4, 8, 1.0, 0.5, seed=4, n_images=3, draws=2)
    assert np.array_equal(img, again) and not np.array_equal(img, other)


def _tile(img, r, c):
    y = augment.HEADER_H + augment.GAP + r * (augment.CELL + augment.GAP)
    x = augment.LABEL_W + augment.GAP + c * (augment.CELL + augment.GAP)
    return img[y:y + augment.CELL, x:x + augment.CELL]


def test_augment_with_every_op_off_changes_nothing_and_flip_1_mirrors(ctx):
    img, caption = augment.preview(ctx, 0, 0, 0.0, 0.0, seed=1, n_images=2, draws=2)
    assert "CutOut" not in caption
    for r in range(2):
        assert np.array_equal(_tile(img, r, 0), _tile(img, r, 1))
    img, _ = augment.preview(ctx, 0, 0, 0.0, 1.0, seed=1, n_images=2, draws=1)
    assert np.array_equal(_tile(img, 0, 0)[:, ::-1], _tile(img, 0, 1))


def test_augment_cutout_fills_a_hole_with_the_mean_colour(ctx):
    from lab.data import mean_pixel

    img, _ = augment.preview(ctx, 0, 16, 1.0, 0.0, seed=2, n_images=1, draws=1)
    aug = _tile(img, 0, 1)
    assert (aug == np.array(mean_pixel(), dtype=np.uint8)).all(-1).sum() >= (16 * 3) ** 2


def test_augment_bad_settings_and_missing_data_say_so(ctx, no_data_ctx):
    img, msg = augment.preview(ctx, 4, 8, 1.5, 0.5, 0)
    assert img is None and "cutout_p is a probability" in msg
    img, msg = augment.preview(no_data_ctx, 4, 8, 1.0, 0.5, 0)
    # the tab's notice says how to provide the data; the caption does not say it a second time
    assert img is None and "CIFAR-10 is not available" in msg and "CIFAR10_DIR" not in msg
    assert 0 <= augment.new_seed() <= 99_999


def test_the_missing_data_notice_speaks_to_an_app_operator(no_data_ctx):
    notice = no_data_ctx.data_message()
    # the app takes no flags: environment variables, and the download switch, are what its operator can use
    assert "--data-dir" not in notice and "CIFAR10_DIR" in notice and "LAB_DOWNLOAD=1" in notice


def test_augment_cautions_about_a_cutout_that_hides_the_image(ctx):
    _, spec = augment.preview(ctx, 4, 8, 1.0, 0.5, seed=0, n_images=1, draws=1)
    _, whole = augment.preview(ctx, 4, 32, 1.0, 0.5, seed=0, n_images=1, draws=1)
    _, never = augment.preview(ctx, 4, 32, 0.0, 0.5, seed=0, n_images=1, draws=1)
    assert "⚠" not in spec and "⚠" not in never  # the spec's 8×8, or a hole that is never cut
    assert "32×32 hole covers 100%" in whole and "hides the whole image" in whole


# -------------------------------------------------------------------------------------------------- One Cycle

OC = dict(max_lr=0.01, lr_mode="div factor", div_factor=25, min_lr=4e-4, epochs=4, peak_epoch=1, batch_size=500,
          optimizer="adam", anneal="linear", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)


def test_one_cycle_preview_follows_the_controls_without_training():
    fig, text = one_cycle.preview(**OC, subset=5000)
    assert isinstance(fig, go.Figure)
    lr = fig.data[0]
    assert len(lr.y) == 4 * 10  # 5,000 images / batch 500 = 10 steps per epoch
    assert max(lr.y) == pytest.approx(0.01) and lr.y[0] == pytest.approx(4e-4) and lr.y[-1] == pytest.approx(4e-4)
    assert int(np.argmax(lr.y)) in (9, 10)  # the peak at the end of epoch 1
    assert "LRMIN 0.0004 → LRMAX 0.01" in text and "4 epochs × 10 steps" in text and "β1 cycles" in text
    fig2, text2 = one_cycle.preview(**{**OC, "lr_mode": "min LR", "min_lr": 1e-3, "anneal": "cos",
                                       "optimizer": "sgd", "cycle_momentum": False}, subset=0)
    assert min(fig2.data[0].y) == pytest.approx(1e-3) and "50,000 images" in text2 and "momentum fixed" in text2


@pytest.mark.parametrize("change,message", [
    ({"lr_mode": "min LR", "min_lr": 0.02}, "min LR (0.02) must be below max LR"),
    ({"peak_epoch": "x"}, "peak epoch must be a number"),
    ({"max_lr": None}, "max LR is empty"),
    ({"max_lr": -1}, "max LR must be a positive number"),
    ({"base_momentum": 0.99}, "momentum range"),
])
def test_one_cycle_bad_controls_keep_the_plot_and_say_what_to_fix(change, message):
    fig, text = one_cycle.preview(**{**OC, **change})
    assert is_skip(fig) and message in text


def test_the_preview_draws_the_peak_the_slider_clamps_to():
    # a shorter run's peak comes back from peak_slider on its own round trip; the preview of the new epochs must not
    # show an error for a peak the slider is about to move (the browser test once ended on that error)
    fig, text = one_cycle.preview(**{**OC, "epochs": 1, "peak_epoch": 2}, subset=5000)
    assert "at the end of epoch 0.5" in text and "1 epoch × 10 steps" in text
    assert one_cycle.peak_slider(1, 2).value == 0.5
    assert int(np.argmax(fig.data[0].y)) in (4, 5)


@pytest.mark.parametrize("epochs,low,value", [(3, 2, 2), (2, 2, 1), (1, 2, 0), (24, 5, 5), ("", 2, 0), (3, "x", 0)])
def test_low_res_epochs_follow_a_shorter_run_so_the_last_epoch_stays_full_size(epochs, low, value):
    from lab.config import TrainConfig

    assert one_cycle.low_res_epochs_for(epochs, low) == value
    TrainConfig.from_flat(epochs=int(epochs or 1), low_res_epochs=value)  # a setting the config accepts


@pytest.mark.parametrize("epochs,peak,value", [(1, 5, 0.5), (1, 0.5, 0.5), (3, 5, 2.5), (24, 5, 5), (50, 5, 5),
                                               (2, 1.75, 1.75), ("", 5, 0.5)])
def test_the_peak_slider_always_has_a_range_and_keeps_the_peak_inside_the_run(epochs, peak, value):
    upd = one_cycle.peak_slider(epochs, peak)
    e = int(epochs or 1)
    # a slider whose minimum is not below its maximum is an error in Gradio (the 1-epoch bug)
    assert upd.minimum < upd.maximum == e - one_cycle.PEAK_STEP and upd.value == value
    ScheduleConfig(epochs=e, peak_epoch=upd.value)  # a peak the schedule accepts
    gr.Slider(minimum=upd.minimum, maximum=upd.maximum, value=upd.value, step=upd.step)


def test_the_min_lr_box_shows_the_lrmin_that_div_factor_mode_makes():
    div, box = one_cycle.lr_fields(0.0658, "div factor", 25)
    assert box.value == 0.00263 and box.interactive is False and div.interactive is True
    div, box = one_cycle.lr_fields(0.01, "min LR", 25)
    assert box.interactive is True and div.interactive is False and box.value is None  # the typed value stays
    assert one_cycle.lr_fields(None, "div factor", 25)[1].value is None


def test_one_cycle_helpers():
    assert one_cycle.optimizer_default_lr("sgd") == DEFAULT_MAX_LR["sgd"]
    fig, text = one_cycle.zigzag(0.01, "div factor", 10, None, 20, 3)
    assert len(fig.data[0].y) == 2 * 20 * 3 + 1 and "3 cycles" in text
    fig, text = one_cycle.zigzag(0.01, "min LR", 10, 0.02, 20, 3)
    assert is_skip(fig) and "min LR" in text


# ------------------------------------------------------------------------------------------------------ Train

# every training control at the lab's defaults (generated from the knobs' declarations), for a tiny CPU run
CONTROLS = {**control_defaults(), **dict(width=0.125, subset=256, test_subset=128, device="cpu", epochs=1,
                                         peak_epoch=0.5, batch_size=64)}


def test_train_config_gathers_the_three_tabs():
    cfg = train_config(**{**CONTROLS, "subset": 0, "test_subset": None, "lr_mode": "min LR",
                                "min_lr": 1e-3, "cutout": 0, "optimizer": "sgd"})
    assert cfg.subset is None and cfg.test_subset is None and cfg.schedule.lr_min == 1e-3
    assert cfg.augment.cutout == 0 and cfg.optimizer.name == "sgd" and cfg.width == 0.125
    assert cfg.schedule == ScheduleConfig(max_lr=0.01, min_lr=1e-3, epochs=1, peak_epoch=0.5)
    with pytest.raises(ValueError, match="whole number of images"):
        train_config(**{**CONTROLS, "subset": 2.5})
    with pytest.raises(ValueError, match=r"training controls missing \['width'\]"):
        train_config(**{k: v for k, v in CONTROLS.items() if k != "width"})
    assert train_config(**control_defaults()) == TrainConfig()  # the controls' defaults are the lab's


def test_presets_set_every_control_but_seed_and_device_and_train_what_they_name():
    for name in PRESETS:
        v = train.preset_values(name)
        ScheduleConfig(epochs=v["epochs"], peak_epoch=v["peak_epoch"])  # valid
        assert set(v) == set(train.PRESET_CONTROLS) and not {"seed", "device"} & set(v)
        got, want = train_config(**{**CONTROLS, **v}), PRESETS[name].config(seed=CONTROLS["seed"],
                                                                           device=CONTROLS["device"])
        # LRMIN may be shown as a min LR where the div factor lies beyond the slider (Page's 1e4): the same LRMIN
        assert got.schedule.lr_min == pytest.approx(want.schedule.lr_min)
        drop = lambda c: {k: x for k, x in c.flat().items() if k not in ("min_lr", "div_factor")}  # noqa: E731
        assert drop(got) == drop(want), name
    assert train.default_preset() in PRESETS


def test_train_start_status_and_stop_through_the_tab(ctx):
    assert ctx.manager.status_json()["status"] == "idle"
    assert "No run yet" in train.describe(None)
    msg = train.start(ctx, **{**CONTROLS, "epochs": 3, "peak_epoch": 1, "batch_size": 16})
    assert msg.startswith("Run started at ") and "3 epochs, batch 16" in msg
    busy = train.start(ctx, **CONTROLS)
    assert "busy — a training run started at" in busy
    t0 = time.time()
    while not ctx.manager.status()["steps"] and time.time() - t0 < 60:
        time.sleep(0.05)
    s = ctx.manager.status_json()
    assert s["busy"] and s["kind"] == "train" and s["last_step"]["loss"] > 0
    json.dumps(s, allow_nan=False)
    # a tick with nothing new still redraws the status line (elapsed time and the ETA move between steps)
    _, line, *_ = train.refresh(ctx, (ctx.manager.fingerprint("train"), None))
    assert "**Running**" in line and "ETA" in line and "elapsed" in line
    assert train.stop(ctx).startswith("stopping")
    assert ctx.manager.wait(60)
    s = ctx.manager.status_json()
    assert s["status"] in ("stopped", "done") and not s["busy"]


def _slow_machine(ctx, seconds_per_image: float, width: float = CONTROLS["width"]) -> None:
    """Make the app believe a step time of `seconds_per_image` was measured on this CPU for `width`."""
    from lab.estimate import PROBE_BATCH, StepTime

    ctx.measure = lambda w, batch_size, device: StepTime("cpu", w, PROBE_BATCH, seconds_per_image,
                                                         seconds_per_image / 3, measured_at=time.time())


def test_a_long_cpu_run_waits_for_start_anyway_and_says_what_it_costs(ctx):
    from lab.estimate import LONG_JOB_S, for_run

    # 256 images × 2 epochs at this rate: just over LONG_JOB_S
    per_image = 1.1 * LONG_JOB_S / (2 * 256 + 2 * 128 / 3)
    _slow_machine(ctx, per_image)
    run = {**CONTROLS, "epochs": 2, "peak_epoch": 1}
    expected = for_run(train_config(**run), 256, 128, ctx.timing(0.125, 64, "cpu")).seconds
    held = train.start(ctx, **run)
    assert held.startswith(train.LONG_JOB) and fmt_seconds(expected) in held and "Start anyway" in held
    assert ctx.manager.status() is None  # nothing started
    assert train.long_job_button(held).visible is True
    line = train.estimate_line(ctx, **run)
    assert fmt_seconds(expected) in line and "confirm" in line
    started = train.start(ctx, confirm=True, **run)
    assert started.startswith("Run started at") and f"Expected to take about {fmt_seconds(expected)}" in started
    assert train.long_job_button(started).visible is False
    ctx.manager.stop()
    assert ctx.manager.wait(60)


def test_the_step_time_is_probed_again_once_stale(ctx, monkeypatch):
    # issue 20: a probe taken under load (55 min for a 15-min run) was kept for the server's life
    from lab import estimate
    from lab.estimate import PROBE_BATCH, StepTime

    probes = []

    def probe(width, batch_size, device):
        probes.append(time.time())
        return StepTime("cpu", width, PROBE_BATCH, 1e-3, 1e-4, measured_at=time.time() - 10 * len(probes), load=0.5)

    ctx.measure = probe
    monkeypatch.setattr(estimate, "load_average", lambda: 0.6)
    first = ctx.timing(0.125, 64, "cpu")
    assert ctx.timing(0.125, 64, "cpu") is first and len(probes) == 1  # fresh: kept
    monkeypatch.setattr(estimate, "load_average", lambda: 0.5 + estimate.LOAD_SHIFT)
    assert ctx.timing(0.125, 64, "cpu") is not first and len(probes) == 2  # the load moved: probed again
    monkeypatch.setattr(estimate, "TIMING_MAX_AGE_S", 15)
    monkeypatch.setattr(estimate, "load_average", lambda: 0.5)
    assert len(probes) == 2 and ctx.timing(0.125, 64, "cpu") and len(probes) == 3  # 20 s old: probed again


def test_a_short_cpu_run_starts_at_once_with_its_estimate(ctx):
    _slow_machine(ctx, 1e-4)
    line = train.estimate_line(ctx, **CONTROLS)
    assert "Expected time: **" in line and "confirm" not in line
    msg = train.start(ctx, **{**CONTROLS, "epochs": 3, "peak_epoch": 1, "batch_size": 16})
    assert msg.startswith("Run started at") and "Expected to take under a minute" in msg
    # no probe beside a running job: a width not timed yet waits for the server to be free
    assert "once this server is free" in train.estimate_line(ctx, **{**CONTROLS, "width": 0.25})
    ctx.manager.stop()
    assert ctx.manager.wait(120)
    assert train.estimate_line(ctx, **{**CONTROLS, "batch_size": 0}) == ""  # Start will say what is wrong


def test_the_status_line_sets_the_estimate_beside_the_real_time():
    status = {"status": "running", "run_dir": "runs/x", "started_at": "12:00:00", "progress": "epoch 1/3",
              "steps": [], "elapsed": 40.0, "epochs": [], "message": "", "estimate_s": 200.0}
    assert "elapsed 40 s (estimated 3 min 20 s)" in train.describe(status)
    done = {**status, "status": "done", "elapsed": 230.0}
    assert "elapsed 3 min 50 s (estimated 3 min 20 s: 15% longer)" in train.describe(done)
    short = {**done, "elapsed": 3.0, "estimate_s": 0.6}  # start-up dominates: no percentage to mislead
    assert "elapsed 3 s (estimated 1 s for the steps alone)" in train.describe(short)
    assert "(estimated" not in train.describe({**status, "estimate_s": None})


def test_the_status_line_counts_elapsed_time_and_eta_between_steps():
    step = {"epoch": 1, "step": 3, "steps_per_epoch": 10, "loss": 2.0, "lr": 1e-3, "images_per_s": 100.0,
            "eta": 100.0, "t": 1000.0}
    status = {"status": "running", "run_dir": "runs/x", "started_at": "12:00:00", "progress": "epoch 1/1",
              "steps": [step], "elapsed": 40.0, "epochs": [], "message": ""}
    assert "ETA 1 min 40 s" in train.describe(status, now=1000.0)
    assert "ETA 1 min 30 s" in train.describe(status, now=1010.0)  # ten seconds after that step
    assert "ETA 0 s" in train.describe(status, now=2000.0)


def test_train_bad_input_and_missing_data_give_messages(ctx, no_data_ctx):
    assert "min LR" in train.start(ctx, **{**CONTROLS, "lr_mode": "min LR", "min_lr": 1.0})
    missing = train.start(no_data_ctx, **CONTROLS)
    assert "CIFAR10_DIR" in missing and "LAB_DOWNLOAD=1" in missing and "--data-dir" not in missing
    assert ctx.manager.status() is None


def test_train_refresh_draws_the_run_and_skips_when_nothing_changed(ctx):
    out = train.refresh(ctx, None)
    seen, line, fig, table, runs_df, picker, overlay, target, note = out
    assert "No run yet" in line and isinstance(fig, go.Figure) and table.empty
    assert list(runs_df["run"]) == ["20000101-000000"] and picker.value == ["20000101-000000"]
    assert all(is_skip(x) for x in train.refresh(ctx, seen, picker.value))
    ctx.manager.start_training(train_config(**CONTROLS))
    assert ctx.manager.wait(120)
    seen2, line, fig, table, runs_df, picker, overlay, target, note = train.refresh(ctx, seen, ["20000101-000000"])
    assert note == ""  # the run ended: "Run started at …" under Start would be stale
    assert seen2 != seen and "**Done**" in line and "images/s" in line and "test acc" in line
    assert list(table.columns) == train.EPOCH_COLUMNS and len(table) == 1
    assert len(runs_df) == 2 and len(picker.value) == 2  # the finished run joins the overlay
    assert len(target.choices) == 2  # … and the rename/delete list
    assert len([t for t in overlay.data if t.showlegend is not False]) == 2
    assert all(is_skip(x) for x in train.refresh(ctx, seen2, picker.value))
    # a Stop answered after the run's end was already seen: its line goes on the next tick; a refusal stays
    late = train.refresh(ctx, seen2, picker.value, shown="stopping the training run started at 12:00:00: …")
    assert late[-1] == "" and all(is_skip(x) for x in late[:-1])
    kept = train.refresh(ctx, seen2, picker.value, shown="⚠ seed must be a whole number … (`seed`)")
    assert all(is_skip(x) for x in kept)


def test_epoch_and_run_tables():
    rec = {"epoch": 1, "lr": 1e-3, "train_loss": 2.0, "train_acc": 0.2, "test_loss": 1.9, "test_acc": 0.3,
           "seconds": 1.23, "images_per_s": 1000.4}
    df = train.epoch_table([rec])
    assert df.iloc[0]["test acc %"] == 30.0 and df.iloc[0]["images/s"] == 1000
    assert isinstance(train.epoch_table([]), pd.DataFrame)
    assert json_safe({"a": [float("nan"), 1.0, {"b": float("inf")}]}) == {"a": [None, 1.0, {"b": None}]}
    assert fmt_seconds(75) == "1 min 15 s" and fmt_seconds(3725) == "1 h 02 min" and fmt_seconds(math.nan) == "–"
    assert fmt_seconds(38336) == "10 h 39 min" and fmt_seconds(9) == "9 s"  # not a clock time: "10:38:56"


def _copy_run(runs_root, name, status="done"):
    import shutil

    src = runs_root / "20000101-000000"
    shutil.copytree(src, runs_root / name)
    doc = json.loads((runs_root / name / "config.json").read_text())
    doc["status"] = status
    (runs_root / name / "config.json").write_text(json.dumps(doc))
    return runs_root / name


def test_a_run_keeps_its_colour_whichever_runs_are_drawn_beside_it(ctx, runs_root):
    _copy_run(runs_root, "20000102-000000")
    _copy_run(runs_root, "20000103-000000")

    def colour_of(fig, name):
        return next(t.line.color for t in fig.data if t.legendgroup == name)

    alone = train.overlay(ctx, ["20000103-000000"])
    both = train.overlay(ctx, ["20000101-000000", "20000103-000000"])
    assert colour_of(alone, "20000103-000000") == colour_of(both, "20000103-000000")
    assert colour_of(both, "20000101-000000") != colour_of(both, "20000103-000000")
    log = train.overlay(ctx, ["20000101-000000"], log_loss=True, x="time")
    assert log.layout.yaxis2.type == "log" and log.layout.xaxis.title.text.startswith("time")


def test_rename_gives_a_title_and_refuses_what_it_must(ctx, runs_root):
    assert "is now titled **baseline**" in train.rename(ctx, "20000101-000000", "  baseline ")
    assert train.runs_table(ctx).iloc[0]["title"] == "baseline"
    label = dict((v, k) for k, v in train.run_choices(ctx))["20000101-000000"]
    assert label.startswith("baseline (20000101-000000)")
    assert "no title" in train.rename(ctx, "20000101-000000", "")
    for name in ("../20000101-000000", "/etc", "nope", None):
        assert train.rename(ctx, name, "x").startswith("⚠")
    assert "one line" in train.rename(ctx, "20000101-000000", "a\nb")
    assert "at most" in train.rename(ctx, "20000101-000000", "x" * 200)


def test_delete_asks_first_and_never_touches_a_running_run(ctx, runs_root):
    victim = _copy_run(runs_root, "20000102-000000")
    msg, armed = train.delete(ctx, "20000102-000000", None)
    assert "Press **Delete** again" in msg and armed == "20000102-000000" and victim.is_dir()
    msg, armed = train.delete(ctx, "20000102-000000", armed)
    assert msg == "Deleted run `20000102-000000`." and armed is None and not victim.exists()
    live = _copy_run(runs_root, "20000104-000000", status="running")  # a run a live process (this one) owns
    Run(live).claim()
    msg, _ = train.delete(ctx, "20000104-000000", "20000104-000000")
    assert "being trained by process" in msg and live.is_dir()
    Run(live).release()  # its owner is gone: the run reads interrupted, and may go
    msg, _ = train.delete(ctx, "20000104-000000", "20000104-000000")
    assert msg == "Deleted run `20000104-000000`." and not live.exists()
    msg, _ = train.delete(ctx, "../runs", "../runs")
    assert msg.startswith("⚠") and runs_root.is_dir()
    ctx.manager.start_training(train_config(**{**CONTROLS, "epochs": 3, "peak_epoch": 1, "batch_size": 16}))
    active = Path(ctx.manager.status("train")["run_dir"])
    t0 = time.time()
    while not (active / "config.json").exists() and time.time() - t0 < 60:
        time.sleep(0.05)
    msg, _ = train.delete(ctx, active.name, active.name)
    assert "training right now" in msg and active.is_dir()
    assert "training right now" in train.rename(ctx, active.name, "mine")
    ctx.manager.stop()
    assert ctx.manager.wait(60)


def test_a_public_server_keeps_runs_from_strangers(ctx, runs_root):
    from lab.server.policy import manage_runs_allowed

    assert manage_runs_allowed({}) and not manage_runs_allowed({"SPACE_ID": "user/lab"})
    assert manage_runs_allowed({"SPACE_ID": "user/lab", "LAB_MANAGE_RUNS": "1"})
    assert not manage_runs_allowed({"LAB_MANAGE_RUNS": "0"})
    ctx.manage_runs = False
    assert "switched off" in train.rename(ctx, "20000101-000000", "mine")
    assert "switched off" in train.delete(ctx, "20000101-000000", "20000101-000000")[0]
    assert (runs_root / "20000101-000000").is_dir() and train.runs_table(ctx).iloc[0]["title"] == ""
    assert train.download_file(ctx, "20000101-000000").interactive  # reading stays open to all


def test_a_run_checkpoint_downloads_under_the_run_name(ctx, runs_root):
    button = train.download_file(ctx, "20000101-000000")
    path = Path(button.value["path"])  # Gradio's copy in its cache, served under the run's name
    assert button.interactive and button.value["orig_name"] == "20000101-000000-model.pt"
    assert path.read_bytes() == (runs_root / "20000101-000000" / "model.pt").read_bytes()
    for name in (None, "../../etc", "missing"):
        assert train.download_file(ctx, name).interactive is False


def test_checkpoint_copies_go_to_this_servers_own_private_folder():
    """Issue 21: the download folder had one fixed name in the temp dir for every instance and user."""
    import stat
    import tempfile

    folder = train.downloads_dir()
    assert folder == train.downloads_dir()  # one per server process …
    assert folder.parent == Path(tempfile.gettempdir()) and folder.name != "lab-downloads"  # … with its own name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # and no one else's to read or plant files in


def test_runs_overlay_and_refresh(ctx):
    table, picker, fig, target = train.refresh_runs(ctx, ["gone"])
    assert picker.value == ["20000101-000000"] and len(table) == 1
    fig = train.overlay(ctx, ["20000101-000000", "missing"])
    assert [t.name for t in fig.data if t.showlegend is not False] == ["20000101-000000"]


def test_model_summary_shows_the_layer_table():
    text = train.model_summary(0.125)
    assert "Conv2d" in text and "parameters at width 0.125" in text
    assert "6,573,120 parameters" in train.model_summary(1)
    assert "width multiplier" in train.model_summary(9)


# ------------------------------------------------------------------------------------------- LR range test


def test_lr_tab_before_any_range_test(ctx):
    out = lr_range.use_these(ctx)
    assert all(is_skip(x) for x in out[:4]) and "run a range test first" in out[4]
    seen, fig, line, text, button, note = lr_range.refresh(ctx, None)
    assert "No range test" in line and isinstance(fig, go.Figure) and text == "" and is_skip(note)
    assert all(is_skip(x) for x in lr_range.refresh(ctx, seen))


def _fake_range(monkeypatch, max_lr=1e-2, stop_at=None):
    """lab.lr_finder.range_test replaced by a quick fake curve; with stop_at, it stops itself there, as on a
    Stop press."""
    import lab.lr_finder as lr_finder

    def fake(cfg, data=None, *, iters=100, start_lr=1e-7, end_lr=10, mode="exp", progress=None, stop=None, **kw):
        lrs, losses = [], []
        for i in range(1, iters + 1):
            lr = start_lr * (end_lr / start_lr) ** (i / iters)
            loss = 2.3 - 0.5 * math.log10(lr / start_lr) / 8 + (5.0 if lr > 1 else 0)
            lrs.append(lr)
            losses.append(loss)
            progress(i, lr, loss)
            if i == stop_at:
                stop.set()
            if stop is not None and stop.is_set():
                break
            time.sleep(0.002)
        settings = {"iters": iters, "start_lr": start_lr, "end_lr": end_lr, "rule": "steepest", "optimizer": "adam"}
        return lr_finder.RangeTest(lrs, losses, {"steepest": max_lr, "valley": 3e-3}, max_lr, max_lr / 25,
                                   "steepest", ["a note"], status="stopped" if stop.is_set() else "done",
                                   settings=settings)

    monkeypatch.setattr(lr_finder, "range_test", fake)


def test_lr_tab_runs_the_test_and_fills_one_cycle(ctx, monkeypatch):
    _fake_range(monkeypatch)
    run = {**CONTROLS, "epochs": 7, "max_lr": 0.05, "div_factor": 10}
    seen_cfg = {}
    real_start = ctx.manager.start_range_test

    def spy(cfg, **kw):
        seen_cfg.update(cfg=cfg, **kw)
        return real_start(cfg, **kw)

    monkeypatch.setattr(ctx.manager, "start_range_test", spy)
    msg = lr_range.start(ctx, run, 50, 1e-6, 10.0, "exp", "sgd")
    # every training control reaches the range test (none silently left at a default); its optimizer is the tab's
    assert seen_cfg["cfg"] == train_config(**{**run, "optimizer": "sgd"})
    assert seen_cfg["cfg"].schedule.epochs == 7 and seen_cfg["div_factor"] == pytest.approx(10)
    assert msg.startswith("Range test started at") and "50 iterations" in msg and "sgd" in msg
    assert ctx.manager.wait(30)
    seen, fig, line, text, button, _ = lr_range.refresh(ctx, None)
    assert "**Done**" in line and "Suggested LRMAX 0.01" in text and "a note" in text and "weak" not in text
    assert button.value == lr_range.USE
    assert any(t.x and len(t.x) == 50 for t in fig.data)
    max_lr, mode, min_lr, opt, note, ack, button, found = lr_range.use_these(ctx)  # a sound test: applied at once
    assert (max_lr, mode, min_lr, opt) == (1e-2, "min LR", 4e-4, "sgd") and "LRMAX 0.01" in note
    assert found["max_lr"] == 1e-2 and found["min_lr"] == 4e-4 and found["optimizer"] == "sgd"
    assert "keeps them" in train.lrs_found_line(found)
    assert "busy" not in lr_range.start(ctx, run, 10, 1e-6, 10.0, "exp", "adam")
    ctx.manager.wait(30)
    assert "must be" in lr_range.start(ctx, {**run, "batch_size": 0}, 10, 1e-6, 10.0, "exp", "adam")


def test_a_weak_range_test_is_flagged_at_the_button_and_not_applied_silently(ctx, monkeypatch):
    # stopped after 31 of 100 iterations, suggesting an LR barely above the start: the issue's case
    _fake_range(monkeypatch, max_lr=0.06579332246575682, stop_at=31)
    assert lr_range.start(ctx, CONTROLS, 100, 1e-7, 10.0, "exp", "adam").startswith("Range test started")
    assert ctx.manager.wait(30)
    seen, fig, line, text, button, _ = lr_range.refresh(ctx, None)
    assert button.value == lr_range.USE_WEAK and "weak test" in text and "stopped after 31 of 100" in text
    *values, note, ack, button, found = lr_range.use_these(ctx)
    assert all(is_skip(v) for v in values) and "Not applied" in note and button.value == lr_range.USE_ANYWAY
    assert is_skip(found)  # nothing applied: nothing for a preset change to keep
    max_lr, mode, min_lr, opt, note, ack, button, found = lr_range.use_these(ctx, ack)  # the second press: "anyway"
    assert (max_lr, mode, min_lr) == (0.0658, "min LR", 0.00263) and "despite the warnings" in note
    assert ack is None and found["max_lr"] == 0.0658


def test_a_preset_change_keeps_the_lrs_a_range_test_found_and_says_so():
    # issue 20: "Use these in One Cycle", then a smaller preset, silently trained at the preset's 0.01/0.0004
    found = train.found_lrs(0.0316, 0.000316, "adam", "12:00:00")
    v, line, kept = train.preset_with_lrs("tiny", found)
    assert kept and (v["max_lr"], v["min_lr"], v["lr_mode"]) == (0.0316, 0.000316, "min LR")
    assert "from the range test of 12:00:00** (LRMAX 0.0316, LRMIN 0.000316), kept over the preset's own" in line
    assert v["epochs"] == PRESETS["tiny"].knobs["epochs"]  # the rest of the preset applies
    cfg = train_config(**{**CONTROLS, **{k: v[k] for k in train.PRESET_CONTROLS}})
    assert cfg.schedule.max_lr == 0.0316 and cfg.schedule.lr_min == 0.000316  # what Start then trains
    own, line, kept = train.preset_with_lrs("tiny", None)
    assert not kept and own["max_lr"] != 0.0316 and "the preset's own" in line
    # LRs measured for Adam do not carry over to a preset that trains with SGD
    sgd, line, kept = train.preset_with_lrs("page", found)
    assert not kept and sgd["max_lr"] == PRESETS["page"].knobs["max_lr"] and "measured adam" in line


def test_a_range_test_that_ends_at_the_blow_up_reads_as_done_and_names_rules_as_its_plot_does():
    # issue 20: a normal end was headed "Diverged"; the table named rules otherwise than the plot's legend
    from lab.plots import SUGGESTION_LABELS

    result = {"max_lr": 0.01, "min_lr": 4e-4, "rule": "steepest", "suggestions": {"steepest": 0.01, "valley": 3e-3},
              "notes": [], "lrs": [1e-4, 1e-3, 1e-2], "losses": [2.3, 2.0, 1.6], "settings": {"iters": 3}}
    status = {"status": "diverged", "started_at": "12:00:00", "progress": "iteration 3/100", "elapsed": 5.0,
              "message": "", "result": result}
    line, text = lr_range.describe(status)
    assert line.startswith("**Done** (it ended where the loss blew up)") and "Diverged" not in line
    assert f"| {SUGGESTION_LABELS['steepest']} (`steepest`) | 0.01 |" in text
    assert f"(rule: {SUGGESTION_LABELS['steepest']} (`steepest`))" in text
    assert lr_range.ENDS["diverged"] == "ended at the loss blow-up"


def test_a_long_cpu_range_test_waits_for_run_anyway(ctx, monkeypatch):
    from lab.estimate import LONG_JOB_S

    _fake_range(monkeypatch)
    _slow_machine(ctx, 2 * LONG_JOB_S / (100 * CONTROLS["batch_size"]))  # 100 iterations: twice the limit
    held = lr_range.start(ctx, CONTROLS, 100, 1e-7, 10.0, "exp", "adam")
    assert held.startswith(lr_range.LONG_JOB) and "Run anyway" in held and ctx.manager.status() is None
    assert lr_range.long_job_button(held).visible is True
    started = lr_range.start(ctx, CONTROLS, 100, 1e-7, 10.0, "exp", "adam", confirm=True)
    assert started.startswith("Range test started") and lr_range.long_job_button(started).visible is False
    assert ctx.manager.wait(30)


def test_range_tests_are_saved_and_overlaid(ctx, monkeypatch, runs_root):
    _fake_range(monkeypatch)
    for optimizer in ("adam", "sgd"):
        lr_range.start(ctx, CONTROLS, 60, 1e-7, 10.0, "exp", optimizer)
        assert ctx.manager.wait(30)
    assert "saved to" in ctx.manager.status("lr_range")["message"]
    choices = lr_range.saved_choices(ctx)
    assert len(choices) == 2 and all(name.startswith("lr-finder-") for _, name in choices)
    picker, fig = lr_range.refresh_saved(ctx, None)
    assert len(picker.value) == 2
    assert lr_range.refresh_saved(ctx, [choices[1][1]], newest=True)[0].value == [choices[0][1], choices[1][1]]
    curves = [t for t in fig.data if t.mode == "lines"]
    assert len(curves) == 2 and curves[0].line.color != curves[1].line.color and fig.layout.xaxis.type == "log"
    assert len(lr_range.compare(ctx, ["../x", choices[0][1]]).data) == 2  # unknown names are ignored: one curve
    assert "20000101-000000" not in [n for _, n in choices]  # training runs are not range tests


def test_lr_tab_curve_grows_while_the_test_runs(ctx):
    status = {"status": "running", "points": [(1, 1e-5, 2.3), (2, 1e-4, 2.2), (3, 1e-3, float("inf"))],
              "result": None, "started_at": "12:00:00", "progress": "iteration 3/10", "elapsed": 1.0,
              "message": ""}
    fig = lr_range.figure(status)
    assert list(fig.data[0].x) == [1e-5, 1e-4] and fig.layout.xaxis.type == "log"
    line, text = lr_range.describe(status)
    assert "**Running**" in line and "iteration 3/10" in line and text == ""


# ---------------------------------------------------------------------------------------------------- Insights


GALLERY = ("gradcam", "layer3", 0.5, "predicted class", 8)  # method, layer, opacity, CAM target, images
CAPTION = re.compile(r"(\w+) → (\w+) \d+% · loss (\d+\.\d\d)")


def test_insights_evaluates_a_run_fastai_style(ctx, runs_root):
    ckpt = str(runs_root / "20000101-000000")
    summary, conf, per_class, confused, pair, note, gallery = insights.analyse(
        ctx, ckpt, 200, insights.CONFUSION_VIEWS[0], *GALLERY)
    assert "Test accuracy" in summary and "first 200 test images" in summary and "run 20000101-000000" in summary
    ev = insights.evaluate(ctx, ckpt, 200)
    heat = conf.data[0]
    assert np.asarray(heat.customdata)[:, :, 0].sum() == 200 and list(heat.x) == list(CLASSES)
    rows = np.asarray(heat.z, dtype=float).sum(1)
    assert np.allclose(rows[rows > 0], 100)  # normalised: each true class's row is 100%
    assert list(per_class.data[0].x) == list(CLASSES)
    # most confused: the evaluation's own off-diagonal pairs, most frequent first; the same pairs filter the gallery
    pairs = ev.evaluation.most_confused()
    assert list(confused.data[0].x) == [c for *_, c in pairs[:12]]
    assert list(confused.data[0].y) == [f"{CLASSES[t]} → {CLASSES[p]}" for t, p, _ in pairs[:12]]
    assert pair.choices[0][1] == insights.ALL_PAIRS and len(pair.choices) == 1 + min(len(pairs), 20)
    assert pair.value == insights.ALL_PAIRS  # a new evaluation shows every image again
    assert "The 8 highest losses of 200 test images" in note and "Grad-CAM at layer3 for the predicted class" in note
    # top losses: the original beside its CAM, captions that say true → predicted, confidence and loss, worst first
    assert len(gallery) == 8
    img, caption = gallery[0]
    assert img.shape == (128, 2 * 128 + 4, 3) and np.array_equal(img[:, :128], ins_mod.upscale(ev.images[
        ev.evaluation.top_losses(1)[0]], 128))
    losses = [float(CAPTION.fullmatch(c).group(3)) for _, c in gallery]
    assert losses == sorted(losses, reverse=True)
    assert losses[0] == pytest.approx(ev.evaluation.losses().max(), abs=0.005)


def test_insights_gallery_follows_its_controls_from_the_cached_evaluation(ctx, runs_root):
    ckpt = str(runs_root / "20000101-000000")
    *_, first = insights.analyse(ctx, ckpt, 200, insights.CONFUSION_VIEWS[0], *GALLERY)
    note, again = insights.regallery(ctx, ckpt, 200, insights.ALL_PAIRS, "gradcam++", "prep", 0.9, "true class", 4)
    assert len(again) == 4 and "Grad-CAM++ at prep for the true class" in note
    assert [c for _, c in again] == [c for _, c in first[:4]] and not np.array_equal(again[0][0], first[0][0])
    note, eigen = insights.regallery(ctx, ckpt, 200, insights.ALL_PAIRS, "eigencam", "layer2", 0.5,
                                     "predicted class", 4)
    assert "EigenCAM at layer2 —" in note and "same map for every class" in note
    t, p, n = insights.evaluate(ctx, ckpt, 200).evaluation.most_confused()[0]
    note, only = insights.regallery(ctx, ckpt, 200, f"{t},{p}", *GALLERY)
    assert len(only) == min(n, 8) and f"{CLASSES[t]} predicted as {CLASSES[p]}: {len(only)} of {n}" in note
    assert all(CAPTION.fullmatch(c).group(1, 2) == (CLASSES[t], CLASSES[p]) for _, c in only)
    counts = insights.reconfuse(ctx, ckpt, 200, insights.CONFUSION_VIEWS[1]).data[0]
    assert np.asarray(counts.z).sum() == 200
    # nothing is computed for settings that were not evaluated yet
    assert all(is_skip(x) for x in insights.regallery(ctx, ckpt, 300, insights.ALL_PAIRS, *GALLERY))
    assert is_skip(insights.reconfuse(ctx, ckpt, 300, insights.CONFUSION_VIEWS[1]))


@pytest.mark.parametrize("change,words", [
    ({"method": "scorecam"}, "unknown CAM method 'scorecam'"), ({"layer": "fc"}, "unknown layer 'fc'"),
    ({"opacity": 2}, "opacity must lie between 0 and 1"), ({"count": 0}, "whole number from 1 to 48"),
    ({"count": 10_000}, "whole number from 1 to 48"), ({"count": "many"}, "must be numbers"),
    ({"target": "dog"}, "CAM for 'dog'"), ({"pair": "3,99"}, "unknown class pair '3,99'"),
    ({"pair": "x"}, "unknown class pair"),
])
def test_insights_bad_gallery_requests_get_one_line_and_no_work(ctx, runs_root, change, words):
    ckpt = str(runs_root / "20000101-000000")
    insights.evaluate(ctx, ckpt, 100)
    args = {"pair": insights.ALL_PAIRS, **dict(zip(("method", "layer", "opacity", "target", "count"), GALLERY)),
            **change}
    note, gallery = insights.regallery(ctx, ckpt, 100, *args.values())
    assert note.startswith("⚠") and re.search(words, note) and gallery == []
    if "pair" not in change:
        summary, *_, gallery = insights.analyse(ctx, ckpt, 100, insights.CONFUSION_VIEWS[0],
                                                *[args[k] for k in ("method", "layer", "opacity", "target", "count")])
        assert summary.startswith("⚠") and re.search(words, summary) and gallery == []


def test_insights_without_checkpoint_or_data(ctx, no_data_ctx, tmp_path, runs_root):
    summary, *_ = insights.analyse(ctx, None, 100, insights.CONFUSION_VIEWS[0], *GALLERY)
    assert "No checkpoint yet" in summary and "python -m lab train" in summary
    empty_run = tmp_path / "runs" / "empty"
    empty_run.mkdir(parents=True)
    summary, *_ = insights.analyse(ctx, str(empty_run), 100, insights.CONFUSION_VIEWS[0], *GALLERY)
    assert "no checkpoint yet" in summary
    summary, *_ = insights.analyse(no_data_ctx, str(runs_root / "20000101-000000"), 100,
                                   insights.CONFUSION_VIEWS[0], *GALLERY)
    assert "CIFAR-10 is not available" in summary


def test_checkpoint_choices_prefer_the_bundled_one(ctx, tmp_path, tiny_checkpoint):
    import shutil

    assert ctx.default_checkpoint().endswith("20000101-000000")
    bundled = tmp_path / "bundled.pt"
    shutil.copy(tiny_checkpoint / "model.pt", bundled)
    ctx.pretrained = bundled
    assert ctx.default_checkpoint() == str(bundled)
    dd = ctx.checkpoint_dropdown("not-there")
    assert dd.value == str(bundled) and len(dd.choices) == 2


# ---------------------------------------------------------------------------------------------------- Classify

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def test_the_examples_are_there_and_classify():
    assert len(classify.examples()) >= 3
    for p in classify.examples():
        assert Image.open(p).size[0] >= 64


def test_classify_view_shows_input_label_and_cam(ctx, uploads):
    p = classify.examples()[0]
    seen, label, cam, msg = classify.view(ctx, p, None, 3, "layer3", 0.5, classify.TOP)
    assert seen.shape == (classify.VIEW, classify.VIEW, 3) and cam.shape == seen.shape
    assert len(label) == 3 and list(label.values()) == sorted(label.values(), reverse=True)
    assert "Prediction: **" in msg and "width 0.125" in msg
    w, h = Image.open(p).size
    assert f"The {w}×{h} image was" in msg and "shrunk to 32×32" in msg and "⚠" not in msg
    _, _, cam_cat, msg = classify.view(ctx, p, None, 3, "layer2", 0.5, "cat")
    assert "Grad-CAM for *cat* at layer2" in msg
    _, _, cam_pp, msg = classify.view(ctx, p, None, 3, "layer2", 0.5, "cat", "gradcam++")
    assert "Grad-CAM++ for *cat* at layer2" in msg and not np.array_equal(cam_pp, cam_cat)
    *_, msg = classify.view(ctx, p, None, 3, "layer2", 0.5, "cat", "eigencam")
    assert "EigenCAM (the same for every class) at layer2" in msg
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)).convert("CMYK")
    img.save(uploads / "cmyk.jpg")
    assert classify.view(ctx, str(uploads / "cmyk.jpg"), None, 5, "prep", 1.0, classify.TOP)[1] is not None


@pytest.mark.parametrize("raw,words", [(b"", "empty"), (b"GIF89a garbage", "truncated or damaged|not an image"),
                                       (b"hello", "not an image")])
def test_classify_bad_uploads_give_a_message(ctx, uploads, raw, words):
    import re

    p = uploads / "upload.png"
    p.write_bytes(raw)
    seen, label, cam, msg = classify.view(ctx, str(p), None, 3, "layer3", 0.5, classify.TOP)
    assert seen is None and label is None and re.search(words, msg)
    with pytest.raises(ValueError):
        classify.predict(ctx, str(p))
    assert classify.view(ctx, None, None, 3, "layer3", 0.5, classify.TOP)[3].startswith("Upload an image")


@pytest.mark.parametrize("side,caution", [(1, "Only one pixel reaches the network"), (4, "no shape survives"),
                                          (16, "take this prediction with care")])
def test_classify_a_tiny_upload_is_cautioned_and_called_upscaled(ctx, uploads, side, caution):
    p = uploads / "tiny.png"
    Image.new("RGB", (side, side), (40, 90, 200)).save(p)
    seen, label, cam, msg = classify.view(ctx, str(p), None, 3, "layer3", 0.5, classify.TOP)
    assert label is not None  # still answered, with the caution first
    assert msg.startswith("⚠ Only") and caution in msg and "at least 32×32" in msg
    assert f"The {side}×{side} image was upscaled to 32×32." in msg and "shrunk" not in msg


@pytest.mark.parametrize("args,words", [(("layer3", 0.5, classify.TOP, "scorecam"), "unknown CAM method"),
                                        (("fc", 0.5, classify.TOP, "gradcam"), "unknown CAM layer 'fc'"),
                                        (("layer3", 0.5, "unicorn", "gradcam"), "CAM for 'unicorn'")])
def test_classify_bad_cam_settings_give_one_line(ctx, args, words):
    seen, label, cam, msg = classify.view(ctx, classify.examples()[0], None, 3, *args)
    assert seen is None and label is None and msg.startswith("⚠") and words in msg


def test_classify_without_any_checkpoint_says_how_to_get_one(no_data_ctx):
    p = classify.examples()[0]
    *_, msg = classify.view(no_data_ctx, p, None, 3, "layer3", 0.5, classify.TOP)
    assert NO_CHECKPOINT in msg and "python -m lab train" in msg and "Train" in msg
    with pytest.raises(ValueError, match="No checkpoint yet"):
        classify.predict(no_data_ctx, p)


def test_classify_works_without_the_data(no_data_ctx, tiny_checkpoint):
    seen, label, cam, msg = classify.view(no_data_ctx, classify.examples()[0], str(tiny_checkpoint), 3, "layer3",
                                          0.5, classify.TOP)
    assert label is not None and len(label) == 3
    probs = classify.predict(no_data_ctx, classify.examples()[0], str(tiny_checkpoint), 10)
    assert set(probs) == set(CLASSES)


def test_any_image_passes_the_raw_upload_through():
    from gradio.data_classes import FileData

    comp = classify.AnyImage(type="filepath", image_mode=None, render=False)
    assert comp.get_block_name() == "image"  # the browser shows the standard image component
    assert comp.preprocess(None) is None
    assert comp.preprocess(FileData(path="/tmp/x.bin")) == "/tmp/x.bin"
    from gradio.components.image import ImageData

    assert comp.preprocess(ImageData(url="data:image/png;base64,aGVsbG8=")) == b"hello"


def test_a_pasted_image_over_the_upload_cap_is_refused_before_it_is_decoded(monkeypatch):
    """Issue 21: a 60 MB image sent as a data: URL inside a classify call was decoded (+190 MB, kept) before it was
    refused. Its length is judged first: nothing is decoded."""
    import base64

    import gradio as gr
    from gradio.components.image import ImageData

    comp = classify.AnyImage(type="filepath", image_mode=None, render=False)
    decoded = []
    monkeypatch.setattr(base64, "b64decode", lambda s, *a, **k: decoded.append(len(s)) or b"")
    at_cap = "data:image/png;base64," + "A" * (4 * -(-classify.uploads.MAX_UPLOAD_BYTES // 3))
    assert comp.preprocess(ImageData(url=at_cap)) == b"" and decoded  # an upload at the cap is decoded …
    decoded.clear()
    with pytest.raises(gr.Error, match=r"the pasted image is about \d+ MB, over this server's 20 MB limit"):
        comp.preprocess(ImageData(url=at_cap + "A" * 1024))  # … one over it is not
    assert decoded == []


# ------------------------------------------------------------- every control checked before "started" (issue 10)

TRAIN_BAD = {  # id → (controls changed, words of the message, the API parameter it must name)
    "negative-seed": ({"seed": -1}, "seed must be a whole number from 0 to", "seed"),
    "huge-seed": ({"seed": 1e23}, "seed must be a whole number from 0 to", "seed"),
    "empty-max-lr": ({"max_lr": None}, "max LR is empty; enter a number", "max_lr"),
    "blank-max-lr": ({"max_lr": ""}, "max LR is empty; enter a number", "max_lr"),
    "infinite-max-lr": ({"max_lr": float("inf")}, "max LR must be a finite number", "max_lr"),
    "text-for-width": ({"width": "wide"}, "width must be a number, got 'wide'", "width"),
    "bool-for-epochs": ({"epochs": True}, "epochs must be a number, got True", "epochs"),
    "list-for-device": ({"device": ["cpu"]}, "device must be one of auto, cpu, cuda, got ['cpu']", "device"),
    "dict-for-optimizer": ({"optimizer": {"name": "adam"}}, "optimizer must be one of adam, sgd", "optimizer"),
    "text-for-a-checkbox": ({"cycle_momentum": "yes"}, "cycle momentum is on or off: true or false", "cycle_momentum"),
    "unknown-lr-mode": ({"lr_mode": "max"}, "LRMIN from must be one of div factor, min LR", "lr_mode"),
    "min-lr-above-max-lr": ({"lr_mode": "min LR", "min_lr": 1.0}, "min LR (1) must be below max LR", "min_lr"),
    "subset-beyond-the-data": ({"subset": 60_000}, "subset 60,000 is more than the 50,000 training images", "subset"),
    "schedule-too-short": ({"subset": 64, "batch_size": 64, "epochs": 1}, "One Cycle needs at least 3 steps",
                           "epochs"),
}


@pytest.mark.parametrize("case", list(TRAIN_BAD))
def test_train_start_checks_every_control_and_names_it(ctx, runs_root, case):
    change, words, param = TRAIN_BAD[case]
    msg = train.start(ctx, session="a-session", **{**CONTROLS, **change})
    assert msg.startswith("⚠ ") and words in msg and msg.endswith(f"(`{param}`)"), msg
    assert "\n" not in msg and "float()" not in msg and "Error" not in msg
    assert ctx.manager.status() is None  # nothing was started …
    assert [p.name for p in runs_root.iterdir()] == ["20000101-000000"]  # … and no run folder made


RANGE_BAD = {  # id → (iters, start_lr, end_lr, mode, optimizer), words, parameter
    "empty-start-lr": ((50, None, 10.0, "exp", "adam"), "start LR is empty", "start_lr"),
    "start-above-end": ((50, 1.0, 0.1, "exp", "adam"), "0 < start LR < end LR", "end_lr"),
    "zero-start-lr": ((50, 0, 10.0, "exp", "adam"), "start LR must be a positive number", "start_lr"),
    "no-iterations": ((None, 1e-6, 10.0, "exp", "adam"), "iterations is empty", "iters"),
    "fractional-iterations": ((10.5, 1e-6, 10.0, "exp", "adam"), "iterations must be a whole number", "iters"),
    "one-iteration": ((1, 1e-6, 10.0, "exp", "adam"), "iterations must be a whole number ≥ 2", "iters"),
    "unknown-mode": ((50, 1e-6, 10.0, "cosine", "adam"), "LR increase must be one of exp, linear", "mode"),
    "unknown-optimizer": ((50, 1e-6, 10.0, "exp", "rmsprop"), "optimizer must be one of adam, sgd", "optimizer"),
}


@pytest.mark.parametrize("case", list(RANGE_BAD))
def test_range_test_start_checks_every_setting_and_names_it(ctx, case):
    args, words, param = RANGE_BAD[case]
    msg = lr_range.start(ctx, CONTROLS, *args)
    assert msg.startswith("⚠ ") and words in msg and msg.endswith(f"(`{param}`)"), msg
    assert "float()" not in msg and "int()" not in msg
    assert ctx.manager.status() is None


@pytest.mark.parametrize("seed,words", [(-5, "seed must be a whole number from 0 to"),
                                        (2**40, "seed must be a whole number from 0 to"),
                                        ("x", "seed must be a number")])
def test_augment_bad_seed_is_a_message_not_an_error(ctx, seed, words):
    img, msg = augment.preview(ctx, 4, 8, 1.0, 0.5, seed)
    assert img is None and words in msg and "`seed`" in msg
    img, msg = augment.preview(ctx, None, 8, 1.0, 0.5, 0)
    assert img is None and "pad is empty" in msg


def test_the_range_test_message_is_cleared_when_the_test_ends(ctx, monkeypatch):
    _fake_range(monkeypatch)
    seen, *_ = lr_range.refresh(ctx, None)
    assert lr_range.start(ctx, CONTROLS, 20, 1e-6, 10.0, "exp", "adam").startswith("Range test started")
    assert ctx.manager.wait(30)
    *_, note = lr_range.refresh(ctx, seen)
    assert note == ""


def test_stop_from_another_session_on_a_shared_server_says_who_may_and_when_it_ends(ctx, monkeypatch):
    ctx.manager.shared = True
    msg = train.start(ctx, session="session-a", **{**CONTROLS, "epochs": 3, "peak_epoch": 1, "batch_size": 16})
    assert msg.startswith("Run started")
    t0 = time.time()
    while not ctx.manager.status()["steps"] and time.time() - t0 < 60:
        time.sleep(0.05)
    msg = train.stop(ctx, "session-b")
    assert msg.startswith("⚠ ") and "another browser session" in msg
    assert ctx.manager.status()["status"] == "running"
    assert "ends at about" in train.describe(ctx.manager.status())  # what everyone sees: when it will end
    assert train.stop(ctx, "session-a").startswith("stopping")
    assert ctx.manager.wait(60)


def test_confirm_is_checked_and_a_job_over_a_cap_is_never_timed(ctx, monkeypatch):
    """An API caller's confirm="false" must not start a long CPU job; on a shared server a job over a cap is
    refused before the server spends time measuring it for an estimate."""
    msg = train.start(ctx, confirm="false", **CONTROLS)
    assert msg == "⚠ confirm is on or off: true or false, got 'false' (`confirm`)"
    timed = []
    monkeypatch.setattr(type(ctx), "timing", lambda self, *a: timed.append(a))
    ctx.manager.shared = True
    wide = {**CONTROLS, "width": 2.0}
    assert train.estimate_line(ctx, **wide) == ""
    msg = train.start(ctx, **wide)
    assert "above this shared server's cap of 1" in msg and msg.endswith("(`width`)")
    assert timed == [] and ctx.manager.status() is None
