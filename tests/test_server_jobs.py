"""lab.server.jobs.JobManager: one background job for the whole server, events buffered for polling, stop, busy."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import pytest

from lab import data as data_mod
from lab import experiment
from lab.config import ScheduleConfig, TrainConfig
from lab.engine import Diverged, Event
from lab.model import Net
from lab.server import jobs
from lab.server.jobs import Busy, JobManager

TINY = TrainConfig(width=0.125, subset=128, test_subset=64, batch_size=32, device="cpu",
                   schedule=ScheduleConfig(epochs=1, peak_epoch=0.5))


@pytest.fixture
def blocking_train(monkeypatch):
    """lab.experiment.train replaced by one that reports a step, then waits for stop (or `release`)."""
    release = threading.Event()
    calls = []

    def fake(cfg, data=None, callbacks=(), stop=None, run_dir=None, extra_config=None, step_every=None):
        calls.append(cfg)
        for cb in callbacks:
            cb(Event("step", {"epoch": 1, "step": 1, "steps_per_epoch": 4, "global_step": 1, "total_steps": 4,
                              "loss": 2.3, "lr": 1e-3, "images_per_s": 100.0, "elapsed": 0.1, "eta": 0.3}))
        while not (stop.is_set() or release.is_set()):
            time.sleep(0.01)
        return SimpleNamespace(history=[], status="stopped" if stop.is_set() else "done", model=Net(0.125),
                               seconds=0.1, final={})

    monkeypatch.setattr(experiment, "train", fake)
    return SimpleNamespace(release=release, calls=calls)


def wait_for(predicate, timeout=30.0):
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_a_real_tiny_run_trains_in_the_background_and_is_saved(manager):
    t0 = time.perf_counter()
    job = manager.start_training(TINY)
    assert time.perf_counter() - t0 < 1.0  # the caller (a Gradio worker) is not held for the run
    assert manager.wait(120)
    s = manager.status()
    assert s["status"] == "done", s["message"]
    assert len(s["epochs"]) == 1 and s["steps"][-1]["global_step"] == 4
    assert "finished after 1 of 1 epoch" in s["message"] and job.run_dir in s["message"]
    run = manager.runs_root / job.run_dir.split("/")[-1]
    assert (run / "model.pt").is_file() and (run / "metrics.jsonl").is_file()
    from lab.runs import load_checkpoint

    _, cfg, metrics = load_checkpoint(run)  # what the app inspects: the run's checkpoint, not the live model
    assert cfg == TINY and metrics["epoch"] == 1
    assert manager.busy_message() is None


def test_a_second_start_while_a_job_runs_is_refused_with_who_and_since_when(manager, blocking_train):
    manager.start_training(TINY)
    wait_for(lambda: manager.status()["steps"])
    with pytest.raises(Busy) as e:
        manager.start_training(TINY)
    msg = str(e.value)
    assert msg.startswith("busy — a training run started at ")
    assert re.search(r"started at \d\d:\d\d:\d\d", msg) and "is in progress (epoch 1/1, step 1/4)" in msg
    with pytest.raises(Busy, match="busy — a training run"):
        manager.start_range_test(TINY, iters=10)
    assert len(blocking_train.calls) == 1
    assert manager.stop().startswith("stopping the training run")
    assert manager.wait(10)
    assert manager.status()["status"] == "stopped"
    assert manager.stop() == "nothing is running"
    manager.start_training(TINY)  # free again
    blocking_train.release.set()
    assert manager.wait(10) and manager.status()["status"] == "done"


def test_status_is_a_copy_and_the_fingerprint_moves_with_events(manager, blocking_train):
    f0 = manager.fingerprint("train")
    assert manager.status() is None and manager.status("train") is None
    manager.start_training(TINY)
    wait_for(lambda: manager.status()["steps"])
    assert manager.fingerprint("train") != f0
    s = manager.status()
    s["steps"].append("garbage")
    assert manager.status()["steps"] != s["steps"]
    assert manager.status("lr_range") is None and manager.status("train")["kind"] == "train"
    manager.stop()
    manager.wait(10)


def test_a_failing_or_diverging_job_is_reported_and_the_manager_carries_on(manager, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(experiment, "train", boom)
    manager.start_training(TINY)
    assert manager.wait(10)
    assert manager.status()["status"] == "error" and "out of cheese" in manager.status()["message"]

    def diverge(*a, **k):
        raise Diverged("training diverged — LR too high?")

    monkeypatch.setattr(experiment, "train", diverge)
    manager.start_training(TINY)
    assert manager.wait(10)
    s = manager.status()
    assert s["status"] == "diverged" and "LR too high" in s["message"] and s["finished"]


def test_missing_data_is_a_data_error_before_anything_starts(tmp_path):
    def missing():
        raise data_mod.DataNotFoundError("CIFAR-10 not found: set CIFAR10_DIR")

    m = JobManager(runs_root=tmp_path / "runs", data_loader=missing)
    assert "CIFAR10_DIR" in m.data_error()
    with pytest.raises(data_mod.DataError, match="CIFAR10_DIR"):
        m.start_training(TINY)
    assert m.status() is None and not (tmp_path / "runs").exists()


def test_the_data_is_loaded_once(tmp_path, cifar10):
    calls = []

    def load():
        calls.append(1)
        return cifar10

    m = JobManager(runs_root=tmp_path, data_loader=load)
    assert m.data() is m.data() and m.data_error() is None and len(calls) == 1


def test_step_events_are_thinned_past_the_cap(manager, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_POINTS", 50)

    def many(cfg, data=None, callbacks=(), stop=None, run_dir=None, extra_config=None, step_every=None):
        for i in range(1, 201):
            for cb in callbacks:
                cb(Event("step", {"epoch": 1, "step": i, "steps_per_epoch": 200, "loss": 1.0, "lr": 1e-3}))
        return SimpleNamespace(history=[], status="done", model=Net(0.125), seconds=0.1, final={})

    monkeypatch.setattr(experiment, "train", many)
    manager.start_training(TINY)
    manager.wait(10)
    steps = manager.status()["steps"]
    assert len(steps) <= 50 and steps[-1]["step"] == 200 and steps[0]["step"] == 1
    assert [s["step"] for s in steps] == sorted(s["step"] for s in steps)


def test_the_range_test_runs_as_the_background_job(manager, monkeypatch):
    import lab.lr_finder as lr_finder

    def fake_range_test(cfg, data=None, *, progress=None, stop=None, **kw):
        for i in range(1, 6):
            progress(i, 10.0 ** (i - 6), 2.0 - i / 10)
        return lr_finder.RangeTest(lrs=[1e-5, 1e-4], losses=[2.0, 1.5], suggestions={"steepest": 1e-4},
                                   max_lr=1e-4, min_lr=4e-6, rule="steepest", notes=[])

    monkeypatch.setattr(lr_finder, "range_test", fake_range_test)
    job = manager.start_range_test(TINY, iters=5, start_lr=1e-6, end_lr=1.0, mode="exp")
    assert job.kind == "lr_range" and manager.wait(10)
    s = manager.status("lr_range")
    assert s["status"] == "done" and len(s["points"]) == 5 and s["result"]["max_lr"] == 1e-4
    assert "suggested max LR 0.0001" in s["message"]


def test_each_tab_can_tell_whether_its_kind_of_job_changed(manager, blocking_train):
    lr_before, train_before = manager.fingerprint("lr_range"), manager.fingerprint("train")
    manager.start_training(TINY)
    wait_for(lambda: manager.status()["steps"])
    assert manager.fingerprint("train") != train_before
    lr_running = manager.fingerprint("lr_range")
    assert lr_running != lr_before  # the server is busy now: the LR tab shows that
    time.sleep(0.05)
    assert manager.fingerprint("lr_range") == lr_running  # but training steps do not redraw the LR tab
    manager.stop()
    manager.wait(10)
    assert manager.fingerprint("lr_range") == lr_before


# ------------------------------------------------------------------------------ shared-server mode (issue 10)

from lab import runs as runs_mod  # noqa: E402
from lab.config import ConfigError  # noqa: E402
from lab.server.policy import SHARED_CAPS, check_caps  # noqa: E402


@pytest.fixture
def shared(runs_root, cifar10):
    m = JobManager(runs_root=runs_root, data_loader=lambda: cifar10, shared=True)
    yield m
    m.stop()
    assert m.wait(60)


CAPPED = {  # one job just over each cap → the words the refusal must hold (the cap's name and value)
    "width": (dict(width=SHARED_CAPS["width"] * 2), f"above this shared server's cap of {SHARED_CAPS['width']:g}"),
    "batch_size": (dict(batch_size=SHARED_CAPS["batch_size"] * 2, subset=SHARED_CAPS["batch_size"] * 8),
                   f"batch size {SHARED_CAPS['batch_size'] * 2} is above this shared server's cap"),
    "epochs": (dict(subset=16, test_subset=16, batch_size=4, epochs=SHARED_CAPS["epochs"] + 1),
               f"epochs are above this shared server's cap of {SHARED_CAPS['epochs']}"),
    "image_epochs": (dict(subset=None, test_subset=None, epochs=SHARED_CAPS["image_epochs"] // 60_000 + 1),
                     f"image-epochs, above this shared server's cap of {SHARED_CAPS['image_epochs']:,}"),
}


@pytest.mark.parametrize("cap", list(CAPPED))
def test_each_cap_refuses_a_job_over_it_naming_the_cap(shared, manager, blocking_train, cap):
    knobs, words = CAPPED[cap]
    cfg = TrainConfig.from_flat(**{**TINY.flat(), **knobs})
    with pytest.raises(ConfigError) as e:
        shared.start_training(cfg)
    assert words in str(e.value) and e.value.knob in ("width", "batch_size", "epochs")
    assert shared.status() is None and len(list(shared.runs_root.iterdir())) == 1  # no job, no run folder
    if cap in SHARED_CAPS and cap != "image_epochs":  # exactly at the cap is allowed
        check_caps(TrainConfig.from_flat(**{**TINY.flat(), **knobs, cap: SHARED_CAPS[cap]}))
    manager.start_training(cfg)  # locally there are no caps
    manager.stop()
    assert manager.wait(10)


def test_the_range_test_iterations_are_capped(shared, manager, monkeypatch):
    import lab.lr_finder as lr_finder

    over = SHARED_CAPS["range_test_iters"] + 1
    with pytest.raises(ConfigError, match=f"{over} range-test iterations are above this shared server's cap"):
        shared.start_range_test(TINY, iters=over)
    with pytest.raises(ConfigError, match="start LR < end LR"):  # its settings are checked before it starts too
        shared.start_range_test(TINY, iters=10, start_lr=1.0, end_lr=0.1)
    assert shared.status() is None
    monkeypatch.setattr(lr_finder, "range_test", lambda cfg, data, **kw: lr_finder.RangeTest(
        [1e-3], [2.0], {}, 1e-2, 4e-4, "fallback"))
    manager.start_range_test(TINY, iters=over)  # locally: no cap
    assert manager.wait(10)


def test_a_run_that_would_not_fit_in_memory_is_refused_before_it_starts(manager, monkeypatch):
    monkeypatch.setenv("LAB_MEMORY_LIMIT", str(64 * 1024**2))  # as if 64 MB were free
    big = TrainConfig.from_flat(**{**TINY.flat(), "width": 1.0, "batch_size": 512, "subset": 4096})
    with pytest.raises(ConfigError, match=r"would need about [\d.]+ (MB|GB) of memory at its peak \(width 1, batch 512"):
        manager.start_training(big)
    assert manager.status() is None and len(list(manager.runs_root.iterdir())) == 1


def test_the_runs_quota_prunes_the_oldest_finished_runs_never_a_running_one(runs_root, cifar10, blocking_train):
    import os

    old = runs_root / "20000101-000000"  # the tiny finished run the fixture holds
    running = runs_mod.Run(runs_root / "19990101-000000")  # older still, but a live process trains it
    running.claim()
    running.write_config(TINY, status="running")
    stamp = time.time() - 3600
    os.utime(running.path / "config.json", (stamp, stamp))
    quota = runs_mod._size(runs_root) + 1000  # full: the next run's checkpoint does not fit
    m = JobManager(runs_root=runs_root, data_loader=lambda: cifar10, shared=True, runs_quota=quota)
    job = m.start_training(TINY)
    assert not old.exists() and running.path.is_dir() and job.run_dir and os.path.isdir(job.run_dir)
    m.stop()
    assert m.wait(10)
    local = JobManager(runs_root=runs_root, data_loader=lambda: cifar10, runs_quota=0)  # locally: no quota
    local.start_training(TINY)
    local.stop()
    assert local.wait(10) and len(runs_mod.list_runs(runs_root)) >= 1 and running.path.is_dir()
    running.release()


def test_only_the_session_that_started_a_job_can_stop_it_on_a_shared_server(shared, manager, blocking_train):
    shared.start_training(TINY, owner="session-a")
    wait_for(lambda: shared.status()["steps"])
    with pytest.raises(jobs.NotYours) as e:
        shared.stop("session-b")
    msg = str(e.value)
    assert "started from another browser session" in msg and "only that session can stop it" in msg
    assert re.search(r"it should end at about \d\d:\d\d:\d\d \(in \d+ s\)", msg)  # others see when it ends
    assert shared.status()["status"] == "running"
    assert re.search(r"should end at about \d\d:\d\d:\d\d", shared.busy_message())
    assert "only the browser session that started it can stop it" in shared.busy_message()
    assert shared.stop("session-a").startswith("stopping the training run")
    assert shared.wait(10) and shared.status()["status"] == "stopped"

    manager.start_training(TINY, owner="session-a")  # locally, anyone may press Stop
    wait_for(lambda: manager.status()["steps"])
    assert manager.stop("session-b").startswith("stopping")
    assert manager.wait(10)


def test_a_job_failure_is_one_readable_line(manager, monkeypatch):
    def full(*a, **k):
        raise runs_mod.disk_full(manager.runs_root, "model.pt")

    monkeypatch.setattr(experiment, "train", full)
    manager.start_training(TINY)
    assert manager.wait(10)
    s = manager.status()
    assert s["status"] == "error" and s["message"].startswith("disk full: cannot write model.pt in ")
    assert "Errno" not in s["message"] and "\n" not in s["message"]
    assert jobs.failure_message(KeyError("x")).startswith("the job failed unexpectedly (KeyError")
    assert jobs.failure_message(MemoryError()).startswith("out of memory")
