"""python -m lab: bad input exits non-zero with one "error:" line and no traceback; schedule and summary.

The bad-input table runs in this process (cli.main, as `python -m lab` calls it), each case in its own folder and
environment; a few of its cases also run as real `python -m lab` processes (marked slow).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_cifar, run_lab, write_npz
from lab import cli
from lab.config import DEFAULT_MAX_LR, PRESETS
from lab import data as data_mod

def _synthetic(cwd: Path) -> dict:
    """A tiny CIFAR-10 (20 training, 6 test images) in cwd/data, named by --data-dir in the case's arguments."""
    write_npz(cwd / "data", make_cifar())
    return {}


def _file(name: str):
    def setup(cwd: Path) -> dict:
        (cwd / name).write_text("not a folder")
        return _synthetic(cwd)
    return setup


def _folder_with(name: str):
    def setup(cwd: Path) -> dict:
        (cwd / "out").mkdir()
        (cwd / "out" / name).write_text("{}")
        return _synthetic(cwd)
    return setup


def _empty_data_dir_and_real_data_elsewhere(cwd: Path) -> dict:
    (cwd / "empty").mkdir()
    write_npz(cwd / "elsewhere", make_cifar())
    return {"CIFAR10_DIR": str(cwd / "elsewhere")}  # the old code fell through to this and trained on it


def _npz_without_images(cwd: Path) -> dict:
    (cwd / "zero").mkdir()
    none = np.zeros((0, 32, 32, 3), np.uint8)
    np.savez(cwd / "zero" / "cifar10.npz", x_train=none, y_train=np.zeros(0, np.uint8), x_test=none,
             y_test=np.zeros(0, np.uint8))
    return {}


def _string_config_checkpoint(cwd: Path) -> dict:
    torch.save({"state_dict": {}, "config": "a string"}, cwd / "odd.pt")
    return _synthetic(cwd)


def _low_memory(cwd: Path) -> dict:
    _synthetic(cwd)
    return {"LAB_MEMORY_LIMIT": str(1 << 30)}  # as if 1 GiB were free


SYN = ["--data-dir", "data", "--device", "cpu"]  # with a _synthetic setup
# id → (arguments, words the message must hold, setup(cwd) → extra environment, or None). Every bad input a
# person can type, from the spec's checks and issues 10 and 12: exit non-zero, one line, no traceback, and the
# folder it ran in unchanged (no run folder, no empty --run-dir left behind).
BAD_INPUTS = {
    "epochs-0": (["train", "--epochs", "0"], "epochs must be a whole number", None),
    "peak-beyond-epochs": (["train", "--epochs", "5", "--peak-epoch", "6"], "peak epoch", None),
    "peak-at-last-epoch": (["train", "--epochs", "5", "--peak-epoch", "5"], "peak epoch", None),
    "negative-max-lr": (["train", "--max-lr", "-0.1"], "max LR must be a positive number", None),
    "zero-max-lr": (["train", "--max-lr", "0"], "max LR must be a positive number", None),
    "max-lr-not-a-number": (["train", "--max-lr", "fast"], "--max-lr must be a number", None),
    "negative-min-lr": (["train", "--min-lr", "-0.001"], "min LR must be a positive number", None),
    "min-lr-equals-max-lr": (["train", "--max-lr", "0.01", "--min-lr", "0.01"], "must be below max LR", None),
    "min-lr-above-max-lr": (["train", "--max-lr", "0.01", "--min-lr", "0.1"], "must be below max LR", None),
    "batch-size-0": (["train", "--batch-size", "0"], "batch size must be a whole number", None),
    "unknown-optimizer": (["train", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'", None),
    "data-not-found": (["train", "--data-dir", "no/such/folder", "--epochs", "1"], "does not exist", None),
    "unknown-flag": (["train", "--bogus"], "unrecognized arguments", None),
    "no-command": ([], "required", None),
    "schedule-epochs-0": (["schedule", "--epochs", "0"], "epochs", None),
    "schedule-steps-per-epoch-0": (["schedule", "--steps-per-epoch", "0"], "--steps-per-epoch", None),
    # issue 21: 20,000 epochs took 123 s and 800 MB
    "schedule-epochs-1000000": (["schedule", "--epochs", "1000000"], "the preview would have 98,000,000 steps", None),
    "summary-width-0": (["summary", "--width", "0"], "width", None),
    "evaluate-missing-checkpoint": (["evaluate", "--checkpoint", "nowhere.pt"], "not found", None),
    # issue 10: seeds
    "seed-negative": (["train", "--seed", "-1", *SYN], "seed must be a whole number from 0 to", _synthetic),
    "seed-1e23": (["train", "--seed", "1e23", *SYN], "--seed: invalid int value: '1e23'", _synthetic),
    "seed-too-big": (["train", "--seed", str(2**40), *SYN], "seed must be a whole number from 0 to", _synthetic),
    # issue 10: --run-dir and --out refused before any data is loaded
    "run-dir-is-a-file": (["train", "--run-dir", "afile", *SYN], "--run-dir afile is a file", _file("afile")),
    "run-dir-not-empty": (["train", "--run-dir", "out", *SYN], "--run-dir out is not empty (it holds notes.txt)",
                          _folder_with("notes.txt")),
    "run-dir-holds-a-run": (["train", "--run-dir", "out", *SYN], "--run-dir out holds a run",
                            _folder_with("config.json")),
    "run-dir-in-proc": (["train", "--run-dir", "/proc/lab-run", *SYN], "--run-dir /proc/lab-run: cannot create",
                        _synthetic),
    "find-lr-out-is-a-file": (["find-lr", "--out", "afile", *SYN], "--out afile is a file", _file("afile")),
    "find-lr-out-holds-a-test": (["find-lr", "--out", "out", *SYN], "--out out is not empty (it holds lr_finder.json)",
                                 _folder_with("lr_finder.json")),
    # issue 10: data
    "data-dir-without-cifar10": (["train", "--data-dir", "empty", "--device", "cpu"], "data dir empty holds no CIFAR-10",
                                 _empty_data_dir_and_real_data_elsewhere),
    "npz-with-no-images": (["train", "--data-dir", "zero", "--device", "cpu"], "the training set holds no images",
                           _npz_without_images),
    "subset-beyond-the-data": (["train", "--subset", "21", *SYN], "subset 21 is more than the 20 training images",
                               _synthetic),
    "test-subset-beyond-the-data": (["train", "--test-subset", "7", *SYN], "test subset 7 is more than the 6 test",
                                    _synthetic),
    "find-lr-subset-beyond-the-data": (["find-lr", "--subset", "21", *SYN], "subset 21 is more than the 20",
                                       _synthetic),
    "checkpoint-config-is-a-string": (["evaluate", "--checkpoint", "odd.pt", "--data-dir", "data"],
                                      "odd.pt is not a lab checkpoint", _string_config_checkpoint),
    "peak-memory-over-what-is-free": (["train", "--width", "2", "--batch-size", "2048", "--epochs", "3", *SYN],
                                      "would need about", _low_memory),
    # issue 12: a too-short schedule, and flags that meant something else (or nothing)
    "schedule-too-short": (["train", "--batch-size", "512", "--epochs", "1", *SYN], "One Cycle needs at least 3",
                           _synthetic),
    "evaluate-subset-means-test-subset": (["evaluate", "--subset", "5"], "evaluate takes --test-subset", None),
    "evaluate-test-subset-beyond-the-data": (["evaluate", "--test-subset", "7", "--data-dir", "data"],
                                             "--test-subset 7 is more than the 6 test images", _synthetic),
    "find-lr-takes-no-test-subset": (["find-lr", "--test-subset", "5"], "unrecognized arguments: --test-subset",
                                     None),
}


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@dataclass
class Finished:
    """What a run of the CLI left: as subprocess.CompletedProcess has it."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def process_state():
    """What cli.main may change in this process and a `python -m lab` process would take with it when it exits:
    the signal handlers (main sets SIGTERM's, `sweep` SIGINT's), the environment, torch's threads and seed. Put
    back after the test, so that one case cannot leak into the next test."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    environ, threads, rng = dict(os.environ), torch.get_num_threads(), torch.random.get_rng_state()
    yield
    for s, h in handlers.items():
        if h is not None:  # None: a handler not set from Python, which this process never changes
            signal.signal(s, h)
    for name in set(os.environ) - set(environ) - {"PYTEST_CURRENT_TEST"}:
        del os.environ[name]
    for name, value in environ.items():
        if name != "PYTEST_CURRENT_TEST" and os.environ.get(name) != value:
            os.environ[name] = value
    torch.set_num_threads(threads)
    torch.random.set_rng_state(rng)


@pytest.fixture
def run_in_process(tmp_path, monkeypatch, capfd, caplog, process_state):
    """run(case) → (its folder, what the folder held before, Finished): the case's arguments through cli.main in
    this process, in a folder of its own (set up by the case) and its environment — the one run_lab gives a
    `python -m lab` process: this one's without CIFAR10_DIR, plus the case's. What the process would have printed
    goes into stderr as a fresh interpreter prints it: a SystemExit's message, the traceback of an exception that
    escapes main, a warning (Python's default filters) and a log record at WARNING or above (logging's last
    resort). capfd also holds what C++ code writes to the file descriptors."""

    def run(case: str) -> tuple[Path, set[str], Finished]:
        args, _, setup = BAD_INPUTS[case]
        cwd = tmp_path / case
        cwd.mkdir()
        monkeypatch.delenv("CIFAR10_DIR", raising=False)
        env = setup(cwd) if setup else {}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        before = _tree(cwd)
        capfd.readouterr()
        caplog.clear()
        extra = []
        with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.WARNING):
            # Python's default filters, not pytest's: the other categories are shown once per place
            warnings.resetwarnings()
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # as the interpreter turns it into an exit status
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if e.code is not None and not isinstance(e.code, int):
                    extra.append(str(e.code))
            except Exception:  # a fresh interpreter would print this and exit 1
                code = 1
                extra.append(traceback.format_exc().rstrip())
        out, err = capfd.readouterr()
        extra += [warnings.formatwarning(w.message, w.category, w.filename, w.lineno).rstrip() for w in shown]
        extra += [f"{r.levelname}:{r.name}:{r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
        return cwd, before, Finished(code, out, err + "".join(f"{line}\n" for line in extra))

    return run


def _check_one_line(case: str, cwd: Path, before: set[str], proc: Finished | subprocess.CompletedProcess) -> None:
    words = BAD_INPUTS[case][1]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert words in lines[0]
    assert "run folder" not in proc.stdout
    assert _tree(cwd) == before  # no run folder, no empty --run-dir, nothing half-written


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_nonzero_with_one_line(run_in_process, case):
    _check_one_line(case, *run_in_process(case))


def test_config_errors_exit_2_and_missing_data_exits_1(run_in_process):
    assert run_in_process("epochs-0")[2].returncode == 2
    assert run_in_process("unknown-flag")[2].returncode == 2
    assert run_in_process("data-not-found")[2].returncode == 1
    assert run_in_process("subset-beyond-the-data")[2].returncode == 2


# a typo, missing data, and a case with its own data and environment: as real `python -m lab` processes too
SUBPROCESS_CASES = {"unknown-flag": 2, "data-not-found": 1, "peak-memory-over-what-is-free": 2}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_bad_input_in_a_real_process(tmp_path, case):
    args, _, setup = BAD_INPUTS[case]
    env = setup(tmp_path) if setup else {}
    before = _tree(tmp_path)
    proc = run_lab(*args, cwd=tmp_path, env=env, timeout=180)
    _check_one_line(case, tmp_path, before, proc)
    assert proc.returncode == SUBPROCESS_CASES[case]


def test_building_the_parser_imports_no_torch():
    """A typo is answered before torch is imported (seconds of CPU on a busy machine): build_parser must not
    import it (it once did, for one constant in lab.estimate)."""
    code = "import sys; from lab import cli; cli.build_parser(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", list(_commands()))
def test_every_command_prints_its_help(command, capsys):
    """--help renders for every command (argparse %-formats help text: a preset label's "81.5%)" once crashed
    train, find-lr, sweep and bench), and lists every flag the command has; preset labels read as written."""
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    sub = _commands()[command]
    flags = [f for a in sub._actions if a.help != argparse.SUPPRESS for f in a.option_strings]
    assert flags
    for flag in flags:
        assert flag in out, flag
    if "--preset" in flags:
        text = " ".join(out.split())  # argparse wraps the help over lines
        for name, preset in PRESETS.items():
            assert f"{name}: {' '.join(preset.label.split())}" in text


def test_missing_data_message_says_where_it_looked_and_how_to_fix_it(tmp_path, monkeypatch, capsys):
    """No --data-dir, no CIFAR10_DIR, no ./data, and a download that fails (no network): one line, and neither
    a run folder nor an empty data/ left behind."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["train", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: CIFAR-10 not found")
    assert "data/" in err
    assert "network disabled in tests" in err  # the torchvision download was tried
    assert "CIFAR10_DIR" in err and "--data-dir" in err
    assert list(tmp_path.iterdir()) == []


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
def test_cuda_without_a_gpu_is_one_line_and_no_run_folder(tmp_path, monkeypatch, capsys, cifar10_dir):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--device", "cuda", "--epochs", "1", "--data-dir", str(cifar10_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --device cuda") and captured.err.count("\n") == 1
    assert "run folder" not in captured.out
    assert not (tmp_path / "runs").exists()


def test_schedule_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["schedule", "--epochs", "6", "--peak-epoch", "2", "--steps-per-epoch", "10", "--max-lr", "0.1",
                     "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
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


def test_summary_prints_the_parameter_count(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["summary"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "6,573,120" in out
    assert "6,573,120 parameters at width 1" in out


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
    small = ["--subset", "128", "--width", "0.125", "--batch-size", "32", "--device", "cpu",
             "--data-dir", str(cifar10_dir)]
    for command in (["train", "--epochs", "1", "--peak-epoch", "0.5", "--test-subset", "64"],
                    ["find-lr", "--iters", "5"]):
        assert cli.main([*command, *small]) == 2
        out, err = capsys.readouterr()
        assert out.startswith("expected: about ") and "on the CPU" in out
        assert err.startswith("error: this would take about") and "pass --yes" in err
        assert not (tmp_path / "runs").exists()  # nothing started, no folder left behind
    assert cli.main(["train", "--epochs", "1", "--peak-epoch", "0.5", "--test-subset", "64", "--yes", *small]) == 0
    assert "final test accuracy" in capsys.readouterr().out


def test_every_flag_has_help_and_shows_its_default():
    """Issue 12: flags without help, or with a default the help did not show."""
    import argparse

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            flag = f"{name} {action.option_strings[0]}"
            assert action.help and action.help.strip() not in ("", "(default %(default)s)"), flag
            # None, a flag's False/True and an empty list (sweep --grid) are no value to show
            if action.default not in (None, False, True, []) and not isinstance(action, argparse._StoreConstAction):
                assert "default" in action.help, flag  # a value the flag has unless given is shown


def test_one_epoch_reads_one_epoch(capsys):
    """Issue 12: "1 epochs … end of epoch 0.208333"."""
    assert cli.main(["schedule", "--epochs", "1", "--steps-per-epoch", "5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("One Cycle: 1 epoch × 5 steps") and "(end of epoch 0.208)" in first
