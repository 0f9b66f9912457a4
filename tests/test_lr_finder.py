"""LR range test: lab/lr_finder.py, lab.plots.lr_finder_figure, `python -m lab find-lr` and `train --max-lr find`.

Real CIFAR-10 (CIFAR10_DIR or ./data), a tiny network (width 0.125), a few hundred images, 6–20 iterations.
"""

from __future__ import annotations

import copy
import json
import math
import threading

import numpy as np
import pytest
import torch

from lab import cli
from lab import data as data_mod
from lab.config import DEFAULT_MAX_LR, RANGE_TEST_RULES, ConfigError, ScheduleConfig, TrainConfig
from lab.engine import make_optimizer
from lab.model import Net
from lab.lr_finder import RangeTest, range_test, suggest
from lab.plots import SUGGESTION_LABELS, lr_finder_figure
from lab.schedule import OneCycle

SMALL = dict(width=0.125, batch_size=32, subset=256, device="cpu")
SMALL_FLAGS = ["--width", "0.125", "--batch-size", "32", "--subset", "256", "--device", "cpu"]


@pytest.fixture(scope="module")
def cifar(cifar10) -> data_mod.Cifar10:
    return cifar10  # conftest finds it (CIFAR10_DIR, else ../shared/cifar10, else data/) or says why it skips


@pytest.fixture(scope="module")
def curve(cifar):
    """One full range test (no early stop), with every progress report kept."""
    reports = []
    result = range_test(TrainConfig(**SMALL), cifar, iters=16, start_lr=1e-4, end_lr=1.0, diverge_th=1e6,
                        progress=lambda i, lr, loss: reports.append((i, lr, loss)))
    return result, reports


# ------------------------------------------------------------------------------------------- range_test


def test_curve_is_recorded_and_lrs_increase(curve):
    result, reports = curve
    assert result.status == "done"
    assert len(result.lrs) == len(result.losses) == 16
    assert np.all(np.diff(result.lrs) > 0)
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(1.0)
    assert all(math.isfinite(v) for v in result.losses)
    # the progress callback saw every iteration, in order, with the recorded values
    assert [r[0] for r in reports] == list(range(1, 17))
    assert [r[1] for r in reports] == result.lrs and [r[2] for r in reports] == result.losses


def test_suggestions_lie_within_the_tested_range(curve):
    result, _ = curve
    assert result.suggestions, result.notes
    assert set(result.suggestions) <= set(RANGE_TEST_RULES)
    for name, lr in result.suggestions.items():
        assert result.lrs[0] <= lr <= result.lrs[-1], name
    assert result.rule in result.suggestions
    assert result.max_lr == result.suggestions[result.rule]
    assert result.min_lr == pytest.approx(result.max_lr / ScheduleConfig().div_factor)


def test_training_model_and_optimizer_are_untouched(cifar):
    cfg = TrainConfig(**SMALL)
    torch.manual_seed(0)
    model = Net(width=cfg.width)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.schedule.max_lr)
    schedule = OneCycle(optimizer, cfg.schedule, steps_per_epoch=8)  # puts initial_lr in the param groups
    for _ in range(2):  # Adam state and BN running statistics exist
        x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        schedule.step()
    weights = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict())

    result = range_test(cfg, cifar, iters=6, start_lr=1e-3, end_lr=1.0, model=model)

    assert result.settings["pretrained"] and len(result.lrs) == 6
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = optimizer.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]
    for i, state in opt_state["state"].items():
        for k, v in state.items():
            assert torch.equal(after["state"][i][k], v), (i, k)
    schedule.step()  # training goes on with its schedule
    assert optimizer.param_groups[0]["lr"] == schedule.lr


def test_divergence_stops_the_test_early(cifar):
    # the fast loader on the CPU: the other loader kind goes through torch-lr-finder too
    result = range_test(TrainConfig(**SMALL, loader="fast"), cifar, iters=20, start_lr=1.0, end_lr=1e5)
    assert result.settings["loader"] == "fast"
    assert result.status == "diverged"
    assert len(result.lrs) < 20
    assert any("diverged at iteration" in n for n in result.notes), result.notes
    assert all(math.isfinite(v) for v in result.losses)
    assert math.isfinite(result.max_lr) and result.max_lr > 0 and result.min_lr < result.max_lr


def test_stop_flag_ends_the_test_and_too_few_points_fall_back(cifar):
    stop = threading.Event()

    def progress(i: int, lr: float, loss: float) -> None:
        if i == 4:
            stop.set()

    cfg = TrainConfig(**SMALL)
    result = range_test(cfg, cifar, iters=50, progress=progress, stop=stop)
    assert result.status == "stopped" and len(result.lrs) == 4
    assert result.suggestions == {}  # 4 points: no rule applies
    assert result.rule == "fallback" and result.max_lr == DEFAULT_MAX_LR["adam"]
    assert any("stopped on request" in n for n in result.notes)
    assert any("run more iterations" in n for n in result.notes)


def test_bad_settings_raise_config_errors(cifar):
    cfg = TrainConfig(**SMALL)
    for kwargs in ({"start_lr": 1.0, "end_lr": 0.1}, {"iters": 1}, {"mode": "cosine"}, {"smooth_f": 1.0},
                   {"diverge_th": 0.5}, {"div_factor": 1.0}, {"rule": "median"}):
        with pytest.raises(ConfigError):
            range_test(cfg, cifar, **kwargs)


# ------------------------------------------------------------------------------------------- suggest()


def _u_curve(n: int = 100, noise: float = 0.0, seed: int = 0):
    """Loss vs log-LR: flat at 2.3, a descent centred on 1e-3, a minimum near 1e-2, a blow-up after 1e-1."""
    lrs = np.logspace(-7, 1, n)
    x = np.log10(lrs)
    loss = 2.3 - 1.2 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 3, 0.0)
    loss += noise * np.random.default_rng(seed).standard_normal(n)
    return lrs.tolist(), loss.tolist()


def test_suggest_on_a_clean_curve():
    lrs, losses = _u_curve()
    s, notes = suggest(lrs, losses, run_steps=len(lrs))
    assert set(s) == set(RANGE_TEST_RULES), notes
    assert 1e-4 < s["steepest"] < 1e-2  # the steepest descent is at 1e-3
    assert 1e-4 < s["valley"] < 1e-1
    lr_min = lrs[int(np.argmin(losses))]
    assert s["min_div_10"] == pytest.approx(lr_min / 10)
    assert s["min_div_run"] == pytest.approx(lr_min / 10)  # a run as long as the test: the full margin
    assert all(lrs[0] <= v <= lrs[-1] for v in s.values())


def test_suggest_on_a_noisy_curve_stays_in_range():
    for seed in range(5):
        lrs, losses = _u_curve(noise=0.05, seed=seed)
        s, _ = suggest(lrs, losses)
        assert s and all(lrs[0] <= v <= lrs[-1] and math.isfinite(v) for v in s.values())


def test_suggest_cuts_the_curve_at_nan_and_inf():
    lrs, losses = _u_curve()
    losses[80] = float("nan")
    losses[85] = float("inf")
    s, notes = suggest(lrs, losses)
    assert any("curve is cut" in n for n in notes)
    assert s and all(v <= lrs[79] for v in s.values())


def test_suggest_with_too_few_points_or_no_descent():
    s, notes = suggest([1e-3, 1e-2, 1e-1], [2.3, 2.2, 2.5])
    assert s == {} and "run more iterations" in notes[0]
    s, notes = suggest([], [])  # an empty curve: no crash
    assert s == {} and notes
    lrs = np.logspace(-5, 0, 40).tolist()
    s, notes = suggest(lrs, np.linspace(2.3, 5.0, 40).tolist())  # the loss only rises
    assert "steepest" not in s and "valley" not in s
    assert any("never falls" in n for n in notes) and any("fell by only" in n for n in notes)


def test_suggest_rejects_malformed_input():
    with pytest.raises(ValueError):
        suggest([1e-3, 1e-2], [2.3])
    with pytest.raises(ValueError):
        suggest([1e-2, 1e-3], [2.3, 2.2])


def test_figure_from_result_and_dict(curve):
    result, _ = curve
    for source in (result, result.to_dict(), RangeTest.from_dict(json.loads(json.dumps(result.to_dict())))):
        fig = lr_finder_figure(source)
        assert fig.layout.xaxis.type == "log"
        names = " ".join(t.name or "" for t in fig.data)
        assert "LRMAX" in names and "LRMIN" in names
        # each rule under the words the table beside the plot uses too (lab.ui.lr_range.rule_label)
        assert all(SUGGESTION_LABELS[name] in names for name in result.suggestions)
        assert f"LRMAX ({SUGGESTION_LABELS[result.rule]})" in names
    assert lr_finder_figure({"lrs": [], "losses": [], "suggestions": {}}).data  # an empty test still draws


# ------------------------------------------------------------------------------------------------- CLI


def test_find_lr_command_writes_json_and_html(cifar10_dir, tmp_path, capsys):
    out = tmp_path / "finder"
    rc = cli.main(["find-lr", *SMALL_FLAGS, "--iters", "12", "--start-lr", "1e-4", "--end-lr", "1",
                   "--out", str(out), "--data-dir", str(cifar10_dir)])
    assert rc == 0
    doc = json.loads((out / "lr_finder.json").read_text())
    assert {"lrs", "losses", "suggestions", "max_lr", "min_lr", "rule", "notes", "settings"} <= set(doc)
    assert len(doc["lrs"]) == len(doc["losses"]) == 12
    assert doc["min_lr"] == pytest.approx(doc["max_lr"] / 25)
    html = (out / "lr_finder.html").read_text()
    assert "plotly" in html and "LRMAX" in html
    printed = capsys.readouterr().out
    assert "LRMAX" in printed and "LRMIN" in printed
    for name in doc["suggestions"]:
        assert name in printed


def test_find_lr_bad_flags_are_one_line_errors(capsys):
    assert cli.main(["find-lr", "--mode", "cosine", *SMALL_FLAGS, "--iters", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "mode" in err and "\n" not in err
    assert cli.main(["train", "--max-lr", "find", "--min-lr", "0.001"]) == 2
    assert "--min-lr cannot be combined" in capsys.readouterr().err


def test_train_max_lr_find_trains_with_the_found_lrs(cifar10_dir, tmp_path):
    run_dir = tmp_path / "run"
    rc = cli.main(["train", "--max-lr", "find", "--find-iters", "12", "--find-start-lr", "1e-4", "--find-end-lr",
                   "1", "--epochs", "1", "--width", "0.125", "--batch-size", "32", "--subset", "128",
                   "--test-subset", "64", "--device", "cpu", "--run-dir", str(run_dir), "--data-dir", str(cifar10_dir)])
    assert rc == 0
    doc = json.loads((run_dir / "config.json").read_text())
    found = doc["lr_finder"]
    assert doc["status"] == "done"
    assert doc["config"]["schedule"]["max_lr"] == found["max_lr"]
    assert doc["config"]["schedule"]["min_lr"] == found["min_lr"] == pytest.approx(found["max_lr"] / 25)
    assert found["settings"]["iters"] == 12 and found["settings"]["train_images"] == 128
    assert json.loads((run_dir / "lr_finder.json").read_text())["max_lr"] == found["max_lr"]
    assert (run_dir / "lr_finder.html").is_file()


def test_loss_min_keeps_the_tail():
    lrs = list(np.geomspace(1e-6, 1.0, 40))
    losses = [3.0 - 0.05 * i for i in range(37)] + [1.0, 4.0, 9.0]  # lowest at point 38, inside the trimmed tail
    s, notes = suggest(lrs, losses)
    assert s["loss_min"] == pytest.approx(lrs[37])
    assert not any("still falling" in n for n in notes)

    s, notes = suggest(lrs, [3.0 - 0.05 * i for i in range(40)])  # never turned up
    assert "loss_min" not in s and any("still falling" in n for n in notes)


def test_knee_is_where_the_loss_has_made_its_share_of_the_fall():
    from lab.config import RANGE_TEST_KNEE

    lrs = list(np.geomspace(1e-6, 1.0, 60))
    # a plateau at 3.0, a straight fall to 1.0 at point 40, then the blow-up
    losses = [3.0] * 20 + [3.0 - 0.1 * i for i in range(1, 21)] + [1.0 + 0.5 * i for i in range(1, 21)]
    s, notes = suggest(lrs, losses)
    threshold = 1.0 + (1 - RANGE_TEST_KNEE) * 2.0
    first = next(i for i, v in enumerate(losses) if v <= threshold)
    assert s["knee"] == pytest.approx(lrs[first]) and s["knee"] < s["loss_min"] == pytest.approx(lrs[39])
    assert losses[first - 1] > threshold  # the first point past the threshold, not a later one
    s, notes = suggest(lrs, [3.0 - 0.01 * i for i in range(60)])  # never turned up: the fall is not known
    assert "knee" not in s and any(n.startswith("knee:") for n in notes)


def test_the_default_divides_the_loss_minimum_by_a_margin_that_grows_with_the_run():
    from lab.config import RANGE_TEST_FULL_MARGIN_AT, RANGE_TEST_MARGIN
    from lab.lr_finder import choose, run_margin

    assert RANGE_TEST_RULES[0] == "min_div_run"
    lrs, losses = _u_curve()
    lr_min = lrs[int(np.argmin(losses))]
    n = len(lrs)
    full = math.ceil(RANGE_TEST_FULL_MARGIN_AT * n)  # from this many run steps on: the whole margin
    for steps, margin in ((1, 1.0), (full // 2, RANGE_TEST_MARGIN * (full // 2) / (RANGE_TEST_FULL_MARGIN_AT * n)),
                          (full, RANGE_TEST_MARGIN), (100 * n, RANGE_TEST_MARGIN)):
        assert run_margin(steps, n) == pytest.approx(margin)
        s, _ = suggest(lrs, losses, run_steps=steps)
        assert choose(s) == ("min_div_run", pytest.approx(lr_min / margin))
    # without the run's length (a bare curve) the rule cannot apply, and LRMAX falls back to min ÷ 10
    s, notes = suggest(lrs, losses)
    assert "min_div_run" not in s and any("run's length is not known" in n for n in notes)
    assert choose(s) == ("min_div_10", s["min_div_10"])


def test_range_test_suggests_for_the_run_its_config_describes(curve):
    result, _ = curve
    s = result.settings
    assert s["run_steps"] == TrainConfig(**SMALL).schedule.epochs * math.ceil(s["train_images"] /
                                                                           s["config"]["batch_size"])
    assert TrainConfig.from_dict(s["config"]) == TrainConfig(**SMALL)  # the test records its whole setup


# ------------------------------------------------------------------------------------------------ caveats


def _result(n=200, **change) -> dict:
    """A finished test on the U-shaped curve, as RangeTest.to_dict() gives it, with `change` applied."""
    from lab.lr_finder import choose

    lrs, losses = _u_curve(n)
    s, notes = suggest(lrs, losses, run_steps=10 * n)  # a run ten times the test's length, as the app's are
    rule, max_lr = choose(s)
    d = {"lrs": lrs, "losses": losses, "suggestions": s, "max_lr": max_lr, "min_lr": max_lr / 25, "rule": rule,
         "notes": notes, "status": "done",
         "settings": {"iters": n, "start_lr": lrs[0], "end_lr": lrs[-1], "rule": RANGE_TEST_RULES[0]}}
    return {**d, **change}


def test_a_sound_test_has_no_caveats():
    from lab.lr_finder import caveats

    assert caveats(_result()) == []


@pytest.mark.parametrize("change,words", [
    ({"status": "stopped"}, "stopped after 200 of 200"),
    ({"rule": "fallback", "max_lr": 0.01}, "optimizer's default"),
    ({"rule": "valley"}, "min_div_run rule did not apply"),
    ({"max_lr": 1.75e-7}, "very start of the tested range"),
    ({"losses": [2.3] * 200}, "fell by only 0.0%"),
])
def test_caveats_name_what_makes_a_test_weak(change, words):
    from lab.lr_finder import caveats

    found = caveats(_result(**change))
    assert len(found) == 1 and words in found[0], found


def test_a_short_test_is_weak():
    from lab.lr_finder import TRUSTED_POINTS, caveats

    found = caveats(_result(n=TRUSTED_POINTS - 1))
    assert any(f"only {TRUSTED_POINTS - 1} points" in c for c in found)
    assert not any("points" in c for c in caveats(_result(n=TRUSTED_POINTS)))
