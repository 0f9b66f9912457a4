"""python -m lab: bad input exits non-zero with one "error:" line and no traceback; schedule and summary."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import run_lab
from lab import cli
from lab.config import DEFAULT_MAX_LR
from lab import data as data_mod

BAD_INPUTS = {  # id → (arguments, words the message must hold)
    "epochs-0": (["train", "--epochs", "0"], "epochs must be a whole number"),
    "peak-beyond-epochs": (["train", "--epochs", "5", "--peak-epoch", "6"], "peak epoch"),
    "peak-at-last-epoch": (["train", "--epochs", "5", "--peak-epoch", "5"], "peak epoch"),
    "negative-max-lr": (["train", "--max-lr", "-0.1"], "max LR must be a positive number"),
    "zero-max-lr": (["train", "--max-lr", "0"], "max LR must be a positive number"),
    "max-lr-not-a-number": (["train", "--max-lr", "fast"], "--max-lr must be a number"),
    "negative-min-lr": (["train", "--min-lr", "-0.001"], "min LR must be a positive number"),
    "min-lr-equals-max-lr": (["train", "--max-lr", "0.01", "--min-lr", "0.01"], "must be below max LR"),
    "min-lr-above-max-lr": (["train", "--max-lr", "0.01", "--min-lr", "0.1"], "must be below max LR"),
    "batch-size-0": (["train", "--batch-size", "0"], "batch size must be a whole number"),
    "unknown-optimizer": (["train", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
    "data-not-found": (["train", "--data-dir", "no/such/folder", "--epochs", "1"], "does not exist"),
    "unknown-flag": (["train", "--bogus"], "unrecognized arguments"),
    "no-command": ([], "required"),
    "schedule-epochs-0": (["schedule", "--epochs", "0"], "epochs"),
    "schedule-steps-per-epoch-0": (["schedule", "--steps-per-epoch", "0"], "--steps-per-epoch"),
    "summary-width-0": (["summary", "--width", "0"], "width"),
    "evaluate-missing-checkpoint": (["evaluate", "--checkpoint", "nowhere.pt"], "not found"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Every bad input run once, in fresh interpreters (two at a time), each in its own empty folder."""

    def run(case):
        cwd = tmp_path_factory.mktemp(case)
        return cwd, run_lab(*BAD_INPUTS[case][0], cwd=cwd, timeout=120)

    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        return dict(zip(BAD_INPUTS, pool.map(run, BAD_INPUTS)))


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_nonzero_with_one_line(bad_runs, case):
    cwd, proc = bad_runs[case]
    words = BAD_INPUTS[case][1]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert words in lines[0]
    assert not (cwd / "runs").exists()  # no run folder is made for a run that cannot start


def test_config_errors_exit_2_and_missing_data_exits_1(bad_runs):
    assert bad_runs["epochs-0"][1].returncode == 2
    assert bad_runs["unknown-flag"][1].returncode == 2
    assert bad_runs["data-not-found"][1].returncode == 1


def test_missing_data_message_says_where_it_looked_and_how_to_fix_it(tmp_path, monkeypatch, capsys):
    """An existing but empty --data-dir, no CIFAR10_DIR, no ./data, and a download that fails (no network)."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code = cli.main(["train", "--data-dir", "empty", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: CIFAR-10 not found")
    assert "empty/" in err and "data/" in err
    assert "network disabled in tests" in err  # the torchvision download was tried
    assert "CIFAR10_DIR" in err and "--data-dir" in err
    assert not (tmp_path / "runs").exists()


def test_missing_data_is_checked_before_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.chdir(tmp_path)

    def offline(root):
        raise OSError("offline")

    monkeypatch.setattr(data_mod, "_download", offline)
    assert cli.main(["train", "--epochs", "1", "--run-dir", "r"]) == 1
    assert "offline" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here")
def test_cuda_without_a_gpu_is_one_line_and_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--device", "cuda", "--epochs", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --device cuda") and captured.err.count("\n") == 1
    assert "run folder" not in captured.out
    assert not (tmp_path / "runs").exists()


def test_schedule_json(tmp_path):
    proc = run_lab("schedule", "--epochs", "6", "--peak-epoch", "2", "--steps-per-epoch", "10", "--max-lr", "0.1",
                   "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["lr"]) == len(doc["momentum"]) == 6 * 10
    assert doc["steps_per_epoch"] == 10 and doc["max_lr"] == 0.1 and doc["min_lr"] == pytest.approx(0.004)
    assert doc["lr"][19] == pytest.approx(0.1) and doc["lr"][0] == pytest.approx(0.004)
    assert doc["lr"][-1] == pytest.approx(0.004)
    assert doc["momentum"][19] == pytest.approx(0.85)


def test_schedule_defaults_to_the_spec(capsys):
    assert cli.main(["schedule", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps_per_epoch"] == 98  # 50,000 images in batches of 512
    assert len(doc["lr"]) == 24 * 98
    assert max(doc["lr"]) == pytest.approx(0.01) and doc["lr"].index(max(doc["lr"])) == 5 * 98 - 1


def test_schedule_table(capsys):
    assert cli.main(["schedule", "--epochs", "4", "--peak-epoch", "1", "--steps-per-epoch", "5",
                     "--optimizer", "sgd", "--anneal", "cos"]) == 0
    out = capsys.readouterr().out
    assert "One Cycle: 4 epochs × 5 steps" in out and "cos anneal" in out
    assert f"→ {DEFAULT_MAX_LR['sgd']:.3g} (end of epoch 1)" in out  # the SGD default max LR


def test_summary_prints_the_parameter_count(tmp_path):
    proc = run_lab("summary", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "6,573,120" in proc.stdout
    assert "6,573,120 parameters at width 1" in proc.stdout


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "schedule", "summary"):
        assert command in out


def test_a_preset_sets_the_defaults_and_explicit_flags_win():
    from lab.config import PRESETS

    args = cli.parse(["train", "--preset", "tiny", "--epochs", "3"])
    cfg = cli.train_config(args)
    tiny = PRESETS["tiny"].config(epochs=3)
    assert (cfg.width, cfg.subset, cfg.batch_size, cfg.schedule.epochs) == (tiny.width, tiny.subset, tiny.batch_size, 3)
    assert cli.train_config(cli.parse(["train"])) == PRESETS["spec"].config()  # no preset: the spec defaults
    find = cli.train_config(cli.parse(["find-lr", "--preset", "quick", "--optimizer", "sgd"]))
    assert find.width == PRESETS["quick"].config().width and find.schedule.max_lr == DEFAULT_MAX_LR["sgd"]


def test_a_long_cpu_job_states_its_cost_and_waits_for_yes(cifar10_dir, tmp_path, monkeypatch, capsys):
    from lab import estimate

    # as if this CPU took an hour per image: every job here is "long"
    slow = estimate.StepTime("cpu", 0.125, estimate.PROBE_BATCH, 3600.0, 1.0)
    monkeypatch.setattr(estimate, "measure", lambda *a, **k: slow)
    monkeypatch.chdir(tmp_path)
    small = ["--subset", "128", "--test-subset", "64", "--width", "0.125", "--batch-size", "32", "--device", "cpu",
             "--data-dir", str(cifar10_dir)]
    for command in (["train", "--epochs", "1", "--peak-epoch", "0.5"], ["find-lr", "--iters", "5"]):
        assert cli.main([*command, *small]) == 2
        out, err = capsys.readouterr()
        assert out.startswith("expected: about ") and "on the CPU" in out
        assert err.startswith("error: this would take about") and "pass --yes" in err
        assert not (tmp_path / "runs").exists()  # nothing started, no folder left behind
    assert cli.main(["train", "--epochs", "1", "--peak-epoch", "0.5", "--yes", *small]) == 0
    assert "final test accuracy" in capsys.readouterr().out
