"""The Sweep tab (lab.ui.sweep) and the job manager's sweep job: bad input, drawing a sweep, and a real sweep
started, followed and stopped through the manager (a child process running Ray Tune on this machine)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from lab import sweep as sweep_mod
from lab.config import ConfigError
from lab.ui import sweep as tab


@pytest.mark.parametrize("args, words", [
    (("nope", "adam", "x1", 3, 200), "unknown preset 'nope'"),
    (("tiny", "rmsprop", "x1", 3, 200), "unknown optimizer"),
    (("tiny", "adam", "", 3, 200), "max_lr has no values"),
    (("tiny", "adam", "x1, fast", 3, 200), "'fast' is not a number"),
    (("tiny", "adam", "x1", 0, 200), "seeds must be a whole number ≥ 1"),
    (("tiny", "adam", "x1", 3, 1), "range-test iterations must be a whole number ≥ 2"),
    (("tiny", "adam", ",".join(f"x{i}" for i in range(1, 22)), 3, 200), "at most"),
])
def test_bad_input_is_refused_before_anything_starts(args, words, ctx):
    with pytest.raises(ConfigError, match=words):
        tab.spec_for(*args)
    message = tab.start(ctx, *args)
    assert message.startswith("⚠") and words.split("'")[0] in message and "\n" not in message
    assert ctx.manager.status("sweep") is None and not (ctx.runs_root / "sweeps").exists()


def test_a_zerogpu_space_refuses_sweeps(ctx):
    from lab.server.zerogpu import SWEEP_REFUSAL, ZeroGPU

    ctx.runner = ZeroGPU(ctx.manager, gpu=lambda duration: lambda task: task)  # any lender: the tab never reaches it
    message = tab.start(ctx, "tiny", "adam", "x1", 1, 10)
    assert message == "⚠ " + SWEEP_REFUSAL and ctx.manager.status("sweep") is None


def test_a_shared_server_refuses_sweeps_and_says_so(ctx):
    """Issue 10 item 3: a sweep on a public server is refused (not capped) — through the tab and the manager."""
    ctx.manager.shared = True
    message = tab.start(ctx, "tiny", "adam", "0.01", 1, 10)
    assert message == "⚠ " + tab.SWEEP_SHARED_OFF and "shared server" in message
    with pytest.raises(ConfigError, match="switched off on this shared server"):
        ctx.manager.start_sweep(tab.spec_for("tiny", "adam", "0.01", 1, 10))
    assert ctx.manager.status("sweep") is None and not (ctx.runs_root / "sweeps").exists()


def test_the_default_lrs_are_factors_around_the_suggestion():
    spec = tab.spec_for("tiny", "adam", tab.DEFAULT_LRS, 3, 200)
    assert spec.grid["max_lr"] == ["x0.25", "x0.5", "x1", "x2", "x4"] and spec.seeds == [0, 1, 2]
    assert spec.base.width == 0.125 and spec.base.subset == 1000  # the preset's knobs


def test_drawing_a_sweep_document():
    doc = {"summary": sweep_mod.summarize(
        [{"key": "c0", "label": "max_lr=0.01", "values": {"max_lr": 0.01}, "max_lr": 0.01, "lr_from": ["x1"],
          "series": "all", "group": "g0", "config": {}}],
        [{"key": "c0", "seed": 0, "status": "done", "test_acc": 0.4}]),
        "trials": [{"label": "max_lr=0.01", "seed": 0, "status": "done", "epoch": 2, "epochs": 2, "test_acc": 0.4,
                    "seconds": 3.0, "run_dir": "/nowhere"}]}
    trials = tab.trials_table(doc)
    assert list(trials.iloc[0]) == ["max_lr=0.01", 0, "done", "2/2", 40.0, 3.0]
    summary = tab.summary_table(doc)
    assert list(summary.iloc[0]) == ["max_lr=0.01", "0.01", "x1", 40.0, 0.0, 1, "★"]
    assert tab.figure(doc).layout.xaxis.type == "log"
    assert isinstance(tab.trials_table(None), pd.DataFrame) and tab.trials_table(None).empty


def wait_for(condition, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_a_sweep_runs_as_the_one_job_is_followed_live_and_stops(ctx):
    """Three max LRs around a 10-iteration range test on the Tiny preset, one seed: the tab starts it, the job
    follows its trials, a second start is refused while it runs, and Stop ends it with every unfinished trial
    recorded as stopped."""
    message = tab.start(ctx, "tiny", "adam", "x0.5, x1, x2", 1, 10)
    assert message.startswith("Sweep started"), message
    assert tab.start(ctx, "tiny", "adam", "x1", 1, 10).startswith("⚠ busy")
    manager = ctx.manager
    status = manager.status("sweep")
    folder = Path(status["run_dir"])
    assert folder.parent == ctx.runs_root / "sweeps" and (folder / sweep_mod.SPEC).exists()
    # live: the job follows sweep.json until a trial has finished
    wait_for(lambda: any(t["status"] == "done" for t in (manager.status("sweep")["epochs"] or [])), 400,
             "a finished trial")
    seen, line, trials, summary, fig, overlay = tab.refresh(ctx, None)
    assert "Running" in line and "trials finished" in line
    assert len(trials) == 3 and "done" in set(trials["status"])
    assert len(summary) == 3 and any(t.name == "range-test loss" for t in fig.data)
    assert len(overlay.data) > 0
    manager.stop()
    assert manager.wait(180), "the sweep did not stop"
    status = manager.status("sweep")
    assert status["status"] == "stopped", status["message"]
    doc = json.loads((folder / sweep_mod.RESULTS_JSON).read_text())
    statuses = [t["status"] for t in doc["trials"]]
    assert doc["status"] == "stopped" and "done" in statuses and set(statuses) - {"done"} <= {"stopped", "pending"}
    for t in doc["trials"]:  # no run folder is left reading "running"
        cfg = Path(t["run_dir"]) / "config.json"
        if cfg.exists():
            assert json.loads(cfg.read_text())["status"] == ("done" if t["status"] == "done" else "stopped")
    assert "stopped" in status["message"] and str(folder) in status["message"]
    assert (folder / sweep_mod.FIGURE).exists()
