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
from lab.data import CLASSES
from lab.ui import augment, classify, insights, lr_range, one_cycle, train
from lab.ui.common import NO_CHECKPOINT, control_defaults, fmt_seconds, train_config
from lab.ui.jobs import json_safe

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
    assert img is None and "CIFAR-10 is not available" in msg and "CIFAR10_DIR" in msg
    assert 0 <= augment.new_seed() <= 99_999


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
    ({"peak_epoch": 4}, "peak epoch must lie"),
    ({"max_lr": None}, "max LR is empty"),
    ({"max_lr": -1}, "max LR must be a positive number"),
    ({"base_momentum": 0.99}, "momentum range"),
])
def test_one_cycle_bad_controls_keep_the_plot_and_say_what_to_fix(change, message):
    fig, text = one_cycle.preview(**{**OC, **change})
    assert is_skip(fig) and message in text


def test_one_cycle_helpers():
    upd = one_cycle.clamp_peak(3, 5)
    assert upd.maximum == 2.5 and upd.value == 2.5
    assert one_cycle.optimizer_default_lr("sgd") == DEFAULT_MAX_LR["sgd"]
    fig, text = one_cycle.zigzag(0.01, "div factor", 10, None, 20, 3)
    assert len(fig.data[0].y) == 2 * 20 * 3 + 1 and "3 cycles" in text
    fig, text = one_cycle.zigzag(0.01, "min LR", 10, 0.02, 20, 3)
    assert is_skip(fig) and "min LR" in text


# ------------------------------------------------------------------------------------------------------ Train

CONTROLS = dict(width=0.125, subset=256, test_subset=128, seed=0, device="cpu", loader="auto", max_lr=0.01,
                lr_mode="div factor", div_factor=25, min_lr=None, epochs=1, peak_epoch=0.5, batch_size=64,
                optimizer="adam", anneal="linear", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                pad=4, cutout=8, cutout_p=1.0, flip_p=0.5)


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


def test_presets_fit_their_schedules():
    for name in PRESETS:
        v = train.preset_values(name)
        ScheduleConfig(epochs=v["epochs"], peak_epoch=v["peak_epoch"])  # valid
        assert train_config(**{**CONTROLS, **v}) == PRESETS[name].config(seed=0, device="cpu", loader="auto")
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
    assert train.stop(ctx).startswith("stopping")
    assert ctx.manager.wait(60)
    s = ctx.manager.status_json()
    assert s["status"] in ("stopped", "done") and not s["busy"]


def test_train_bad_input_and_missing_data_give_messages(ctx, no_data_ctx):
    assert "min LR" in train.start(ctx, **{**CONTROLS, "lr_mode": "min LR", "min_lr": 1.0})
    assert "CIFAR10_DIR" in train.start(no_data_ctx, **CONTROLS)
    assert ctx.manager.status() is None


def test_train_refresh_draws_the_run_and_skips_when_nothing_changed(ctx):
    out = train.refresh(ctx, None)
    seen, line, fig, table, runs_df, picker, overlay, note = out
    assert "No run yet" in line and isinstance(fig, go.Figure) and table.empty
    assert list(runs_df["run"]) == ["20000101-000000"] and picker.value == ["20000101-000000"]
    assert all(is_skip(x) for x in train.refresh(ctx, seen, picker.value))
    ctx.manager.start_training(train_config(**CONTROLS))
    assert ctx.manager.wait(120)
    seen2, line, fig, table, runs_df, picker, overlay, note = train.refresh(ctx, seen, ["20000101-000000"])
    assert note == ""  # the run ended: "Run started at …" under Start would be stale
    assert seen2 != seen and "**Done**" in line and "images/s" in line and "test acc" in line
    assert list(table.columns) == train.EPOCH_COLUMNS and len(table) == 1
    assert len(runs_df) == 2 and len(picker.value) == 2  # the finished run joins the overlay
    assert len([t for t in overlay.data if t.showlegend is not False]) == 2
    assert all(is_skip(x) for x in train.refresh(ctx, seen2, picker.value))


def test_epoch_and_run_tables():
    rec = {"epoch": 1, "lr": 1e-3, "train_loss": 2.0, "train_acc": 0.2, "test_loss": 1.9, "test_acc": 0.3,
           "seconds": 1.23, "images_per_s": 1000.4}
    df = train.epoch_table([rec])
    assert df.iloc[0]["test acc %"] == 30.0 and df.iloc[0]["images/s"] == 1000
    assert isinstance(train.epoch_table([]), pd.DataFrame)
    assert json_safe({"a": [float("nan"), 1.0, {"b": float("inf")}]}) == {"a": [None, 1.0, {"b": None}]}
    assert fmt_seconds(75) == "1:15" and fmt_seconds(3725) == "1:02:05" and fmt_seconds(math.nan) == "–"


def test_runs_overlay_and_refresh(ctx):
    table, picker, fig = train.refresh_runs(ctx, ["gone"])
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
    seen, fig, line, text, note = lr_range.refresh(ctx, None)
    assert "No range test" in line and isinstance(fig, go.Figure) and text == "" and is_skip(note)
    assert all(is_skip(x) for x in lr_range.refresh(ctx, seen))


def _fake_range(monkeypatch, stop_after=None):
    import lab.lr_finder as lr_finder

    def fake(cfg, data=None, *, iters=100, start_lr=1e-7, end_lr=10, mode="exp", progress=None, stop=None, **kw):
        lrs, losses = [], []
        for i in range(1, iters + 1):
            lr = start_lr * (end_lr / start_lr) ** (i / iters)
            loss = 2.3 - 0.5 * math.log10(lr / start_lr) / 8 + (5.0 if lr > 1 else 0)
            lrs.append(lr)
            losses.append(loss)
            progress(i, lr, loss)
            if stop is not None and stop.is_set():
                break
            time.sleep(0.002)
        return lr_finder.RangeTest(lrs, losses, {"steepest": 1e-2, "valley": 3e-3}, 1e-2, 4e-4, "steepest",
                                   ["a note"], status="stopped" if stop.is_set() else "done")

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
    seen, fig, line, text, _ = lr_range.refresh(ctx, None)
    assert "**Done**" in line and "Suggested LRMAX 0.01" in text and "a note" in text
    assert any(t.x and len(t.x) == 50 for t in fig.data)
    max_lr, mode, min_lr, opt, note = lr_range.use_these(ctx)
    assert (max_lr, mode, min_lr, opt) == (1e-2, "min LR", 4e-4, "sgd") and "LRMAX 0.01" in note
    assert "busy" not in lr_range.start(ctx, run, 10, 1e-6, 10.0, "exp", "adam")
    ctx.manager.wait(30)
    assert "must be" in lr_range.start(ctx, {**run, "batch_size": 0}, 10, 1e-6, 10.0, "exp", "adam")


def test_lr_tab_curve_grows_while_the_test_runs(ctx):
    status = {"status": "running", "points": [(1, 1e-5, 2.3), (2, 1e-4, 2.2), (3, 1e-3, float("inf"))],
              "result": None, "started_at": "12:00:00", "progress": "iteration 3/10", "elapsed": 1.0,
              "message": ""}
    fig = lr_range.figure(status)
    assert list(fig.data[0].x) == [1e-5, 1e-4] and fig.layout.xaxis.type == "log"
    line, text = lr_range.describe(status)
    assert "**Running**" in line and "iteration 3/10" in line and text == ""


# ---------------------------------------------------------------------------------------------------- Insights


def test_insights_evaluates_a_run_and_shows_its_mistakes_with_grad_cam(ctx, runs_root):
    ckpt = str(runs_root / "20000101-000000")
    summary, conf, per_class, gallery = insights.analyse(ctx, ckpt, 200, "layer3", 0.5, "predicted class", 8)
    assert "Test accuracy" in summary and "first 200 test images" in summary and "run 20000101-000000" in summary
    heat = conf.data[0]
    assert np.asarray(heat.text).sum() == 200 and list(heat.x) == list(CLASSES)
    assert list(per_class.data[0].x) == list(CLASSES)
    assert 0 < len(gallery) <= 8
    img, caption = gallery[0]
    assert img.shape == (128, 128, 3) and re.fullmatch(r"\w+ → \w+ \d+%", caption)
    again = insights.regallery(ctx, ckpt, 200, "prep", 0.9, "true class", 4)
    assert len(again) == 4 and not np.array_equal(again[0][0], img)
    assert is_skip(insights.regallery(ctx, ckpt, 300, "prep", 0.9, "true class", 4))  # not evaluated yet


def test_insights_without_checkpoint_or_data(ctx, no_data_ctx, tmp_path, runs_root):
    summary, *_ = insights.analyse(ctx, None, 100, "layer3", 0.5, "predicted class", 8)
    assert "No checkpoint yet" in summary and "python -m lab train" in summary
    empty_run = tmp_path / "runs" / "empty"
    empty_run.mkdir(parents=True)
    summary, *_ = insights.analyse(ctx, str(empty_run), 100, "layer3", 0.5, "predicted class", 8)
    assert "no checkpoint yet" in summary
    summary, *_ = insights.analyse(no_data_ctx, str(runs_root / "20000101-000000"), 100, "layer3", 0.5,
                                   "predicted class", 8)
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


def test_classify_view_shows_input_label_and_cam(ctx, tmp_path):
    p = classify.examples()[0]
    seen, label, cam, msg = classify.view(ctx, p, None, 3, "layer3", 0.5, classify.TOP)
    assert seen.shape == (classify.VIEW, classify.VIEW, 3) and cam.shape == seen.shape
    assert len(label) == 3 and list(label.values()) == sorted(label.values(), reverse=True)
    assert "Prediction: **" in msg and "width 0.125" in msg
    _, _, cam_cat, msg = classify.view(ctx, p, None, 3, "layer2", 0.5, "cat")
    assert "Grad-CAM for *cat* at layer2" in msg
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)).convert("CMYK")
    img.save(tmp_path / "cmyk.jpg")
    assert classify.view(ctx, str(tmp_path / "cmyk.jpg"), None, 5, "prep", 1.0, classify.TOP)[1] is not None


@pytest.mark.parametrize("raw,words", [(b"", "empty"), (b"GIF89a garbage", "truncated or damaged|not an image"),
                                       (b"hello", "not an image")])
def test_classify_bad_uploads_give_a_message(ctx, tmp_path, raw, words):
    import re

    p = tmp_path / "upload.png"
    p.write_bytes(raw)
    seen, label, cam, msg = classify.view(ctx, str(p), None, 3, "layer3", 0.5, classify.TOP)
    assert seen is None and label is None and re.search(words, msg)
    with pytest.raises(ValueError):
        classify.predict(ctx, str(p))
    assert classify.view(ctx, None, None, 3, "layer3", 0.5, classify.TOP)[3].startswith("Upload an image")


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
    msg = train.start(ctx, "a-session", **{**CONTROLS, **change})
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
    assert train.start(ctx, "session-a", **{**CONTROLS, "epochs": 3, "peak_epoch": 1, "batch_size": 16}).startswith(
        "Run started")
    t0 = time.time()
    while not ctx.manager.status()["steps"] and time.time() - t0 < 60:
        time.sleep(0.05)
    msg = train.stop(ctx, "session-b")
    assert msg.startswith("⚠ ") and "another browser session" in msg
    assert ctx.manager.status()["status"] == "running"
    assert "ends at about" in train.describe(ctx.manager.status())  # what everyone sees: when it will end
    assert train.stop(ctx, "session-a").startswith("stopping")
    assert ctx.manager.wait(60)
