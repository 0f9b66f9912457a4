"""lab.plots: data in, plotly figure out — the right traces, axes and values, and JSON a browser can draw."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab import plots
from lab.config import ScheduleConfig
from lab.data import CLASSES
from lab.schedule import preview, triangular


def names(fig):
    return [t.name for t in fig.data]


def test_schedule_figure_has_lr_and_momentum_on_two_axes():
    cfg = ScheduleConfig(epochs=4, peak_epoch=1)
    curve = preview(cfg, steps_per_epoch=10)
    fig = plots.schedule_figure(curve, cfg.peak_epoch)
    assert names(fig) == ["learning rate", "momentum / β1"]
    lr, mom = fig.data
    assert list(lr.y) == curve["lr"] and list(lr.x) == curve["epoch"]
    assert lr.yaxis == "y" and mom.yaxis == "y2"  # momentum on the secondary axis
    assert max(lr.y) == pytest.approx(cfg.max_lr)
    assert any(s.type == "line" for s in fig.layout.shapes)  # the peak marker
    json.loads(fig.to_json())


def test_schedule_figure_without_momentum_cycling_still_draws_the_fixed_value():
    curve = preview(ScheduleConfig(epochs=2, peak_epoch=1, cycle_momentum=False), steps_per_epoch=5)
    fig = plots.schedule_figure(curve)
    assert len(set(fig.data[1].y)) == 1


def test_zigzag_figure_is_the_triangular_curve():
    curve = triangular(1e-3, 1e-2, step_size=5, cycles=2)
    fig = plots.zigzag_figure(curve)
    assert list(fig.data[0].y) == curve["lr"]
    assert max(fig.data[0].y) == pytest.approx(1e-2) and min(fig.data[0].y) == pytest.approx(1e-3)


def _steps(epochs=2, spe=4):
    return [{"epoch": e, "step": s, "steps_per_epoch": spe, "loss": 2.0 / (e * s), "lr": 0.01 * s / spe}
            for e in range(1, epochs + 1) for s in range(1, spe + 1)]


def _epochs(n=2, acc=0.5):
    return [{"epoch": e, "lr": 0.01, "train_loss": 2 / e, "train_acc": acc / 2 + e / 10, "test_loss": 2.1 / e,
             "test_acc": acc + e / 100} for e in range(1, n + 1)]


def test_training_figure_draws_step_and_epoch_curves_in_epochs():
    fig = plots.training_figure(_steps(), _epochs())
    assert names(fig) == ["train loss (step)", "LR", "train loss", "test loss", "train acc", "test acc"]
    step_trace = fig.data[0]
    assert step_trace.x[0] == pytest.approx(0.25) and step_trace.x[-1] == pytest.approx(2.0)
    test_acc = fig.data[-1]
    assert list(test_acc.y) == pytest.approx([51.0, 52.0])  # percent
    json.loads(fig.to_json())


def test_training_figure_while_no_epoch_has_finished_and_before_any_step():
    assert names(plots.training_figure(_steps(1), [])) == ["train loss (step)", "LR"]
    empty = plots.training_figure([], [])
    assert not empty.data and "Start" in empty.layout.annotations[-1].text


def test_runs_overlay_has_one_colour_and_legend_entry_per_run():
    fig = plots.runs_overlay_figure({"a": _epochs(3), "b": _epochs(2, 0.7), "empty": []})
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert legend == ["a", "b"]
    colours = {t.legendgroup: t.line.color for t in fig.data}
    assert colours["a"] != colours["b"]
    assert len(fig.data) == 6  # test acc, test loss, train loss per run
    assert not plots.runs_overlay_figure({}).data


def test_confusion_figure_normalised_shows_each_true_class_in_percent():
    m = np.array([[8, 2], [1, 999]])
    fig = plots.confusion_figure(m, classes=["a", "b"])
    heat = fig.data[0]
    assert np.allclose(np.asarray(heat.z), [[80, 20], [0.1, 99.9]]) and heat.zmax == 100
    assert np.asarray(heat.text).tolist() == [["80", "20"], ["<1", "100"]]  # a rare mistake is not shown as 0
    assert np.asarray(heat.customdata)[:, :, 0].tolist() == m.tolist()  # the hover still gives the counts
    assert list(heat.x) == ["a", "b"] and list(heat.y) == ["a", "b"] and "%" in fig.layout.title.text
    full = plots.confusion_figure(np.zeros((10, 10), dtype=int))  # an empty row must not divide by zero
    assert np.isfinite(np.asarray(full.data[0].z, dtype=float)).all()
    json.loads(fig.to_json())


def test_confusion_figure_in_counts():
    m = np.array([[8, 2], [1, 999]])
    heat = plots.confusion_figure(m, classes=["a", "b"], normalize=False).data[0]
    assert np.array_equal(np.asarray(heat.z), m) and heat.zmax is None
    assert np.asarray(heat.text).tolist() == [["8", "2"], ["1", "999"]]


def test_most_confused_figure_lists_pairs_most_frequent_on_top():
    pairs = [(3, 5, 40), (5, 3, 31), (1, 9, 7)]
    fig = plots.most_confused_figure(pairs, totals=[1000] * 10, limit=2)
    bar = fig.data[0]
    assert list(bar.y) == ["cat → dog", "dog → cat"] and list(bar.x) == [40, 31]
    assert fig.layout.yaxis.autorange == "reversed"  # the first (most frequent) pair at the top
    assert bar.text[0] == "40 (4.0% of cat)"
    json.loads(fig.to_json())
    empty = plots.most_confused_figure([])
    assert not empty.data and "no mistakes" in empty.layout.annotations[0].text


def test_per_class_figure_in_percent_with_missing_classes():
    acc = {c: i / 10 for i, c in enumerate(CLASSES)}
    acc["truck"] = float("nan")
    fig = plots.per_class_figure(acc)
    assert list(fig.data[0].x) == list(CLASSES)
    assert fig.data[0].y[1] == pytest.approx(10.0) and fig.data[0].y[-1] is None
    json.loads(fig.to_json())


def test_empty_figure_says_why():
    fig = plots.empty_figure("nothing here")
    assert fig.layout.annotations[0].text == "nothing here"


def test_smoothing_is_tensorboards_debiased_average():
    assert plots.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # no pull towards 0 at the start
    assert plots.smooth([0.0, 10.0], 0.5) == pytest.approx([0.0, 10 * 0.5 / 0.75])
    assert plots.smooth([1.0, float("nan"), 3.0], 0.0)[2] == 3.0
    with pytest.raises(ValueError):
        plots.smooth([1.0], 1.0)


def test_the_accuracy_panel_shows_the_epoch_so_far_before_the_first_epoch_ends():
    # issue 20: the accuracy panel stayed empty for the whole first epoch; the engine's step events now carry the
    # epoch's training accuracy so far
    steps = [{**s, "acc": 0.1 * s["step"]} for s in _steps(1)]
    fig = plots.training_figure(steps, [])
    acc = [t for t in fig.data if t.name == "train acc (step: the epoch so far)"]
    assert len(acc) == 1 and list(acc[0].y) == pytest.approx([10, 20, 30, 40]) and acc[0].xaxis == "x2"
    assert "train acc (step: the epoch so far)" not in names(plots.training_figure(_steps(1), []))  # old runs


def test_log_loss_ticks_are_written_in_full():
    # issue 20: plotly wrote 0.5 and 0.2 on a log axis as "5" and "2"
    ticks = plots.log_ticks([0.31, 0.7, 2.2, float("nan"), None])
    assert ticks["ticktext"][:4] == ["0.2", "0.5", "1", "2"] and ticks["tickvals"][:2] == pytest.approx([0.2, 0.5])
    assert plots.log_ticks([]) == {}
    fig = plots.training_figure(_steps(), _epochs(), log_loss=True)
    assert "0.5" in fig.layout.yaxis.ticktext
    overlay = plots.runs_overlay_figure({"a": _epochs(3)}, log_loss=True)
    assert overlay.layout.yaxis2.type == "log" and "1" in overlay.layout.yaxis2.ticktext


def test_training_figure_view_options():
    steps = [{**s, "elapsed": 10.0 * i} for i, s in enumerate(_steps(), 1)]
    epochs = [{**e, "elapsed": 40.0 * e["epoch"]} for e in _epochs()]
    fig = plots.training_figure(steps, epochs, log_loss=True, smoothing=0.6, x="time")
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "time (s)"
    raw, smoothed = fig.data[0], fig.data[1]
    assert smoothed.name == "train loss (step, smoothed 0.6)" and list(smoothed.y) == plots.smooth(raw.y, 0.6)
    assert list(raw.x) == [10.0 * i for i in range(1, 9)]
    assert [t.x[-1] for t in fig.data if t.name == "test acc"] == [80.0]
    with pytest.raises(ValueError):
        plots.training_figure(steps, epochs, x="steps")


def test_run_colours_follow_the_full_list_and_times_fall_back_to_seconds():
    assert plots.run_colours(["a", "b"])["b"] == plots.run_colours(["a", "b", "c"])["b"]
    assert plots.elapsed_of([{"seconds": 2.0}, {"seconds": 3.0}]) == [2.0, 5.0]
    fig = plots.runs_overlay_figure({"a": _epochs(3)}, colours={"a": "#123456"}, labels={"a": "nice"}, x="time")
    assert fig.data[0].line.color == "#123456" and fig.data[0].name == "nice"


def test_lr_finder_overlay_draws_each_test_with_its_lrmax():
    d = {"lrs": [1e-4, 1e-3, 1e-2, 1e-1], "losses": [2.3, 2.0, 1.5, 4.0], "max_lr": 1e-2, "rule": "loss_min"}
    fig = plots.lr_finder_overlay({"t1": d, "t2": {**d, "losses": [2.2, 1.9, 1.6, 3.0]}}, colours={"t1": "#111111"})
    lines = [t for t in fig.data if t.mode == "lines"]
    dots = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in lines] == ["t1", "t2"] and lines[0].line.color == "#111111"
    assert [d.x[0] for d in dots] == [1e-2, 1e-2] and fig.layout.xaxis.type == "log"
    assert fig.layout.yaxis.range[1] < 4.0  # the blow-up is left out of the view
    assert not plots.lr_finder_overlay({}).data
