"""lab.runs: atomic writes, the run folder, checkpoints that load with weights_only, list_runs."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import torch

from lab import runs
from lab.config import ScheduleConfig, TrainConfig
from lab.model import Net
from lab.runs import CheckpointError, Run, atomic_write_text, list_runs, load_checkpoint, save_checkpoint

CFG = TrainConfig(width=0.125, seed=7, schedule=ScheduleConfig(epochs=2))


def small_net() -> Net:
    torch.manual_seed(0)
    return Net(width=0.125)


# ---------------------------------------------------------------------------------------------- atomicity


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def fail(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk pulled out"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_failed_write_midway_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    run = Run(tmp_path)
    run.write_metrics([{"epoch": 1}])
    before = target.read_bytes()

    def fail_fsync(fd):
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError):
        run.write_metrics([{"epoch": 1}, {"epoch": 2}])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_an_unserializable_record_leaves_the_old_metrics(tmp_path):
    run = Run(tmp_path)
    run.write_metrics([{"epoch": 1}])
    with pytest.raises(TypeError):
        run.write_metrics([{"epoch": 1}, {"epoch": 2, "bad": object()}])
    assert run.metrics() == [{"epoch": 1}]


# ---------------------------------------------------------------------------------------------- run folder


def test_run_folder_round_trip(tmp_path):
    run = Run(tmp_path / "r1")
    run.write_config(CFG, status="running", data={"sha256": "ab" * 32})
    doc = run.config_doc()
    assert doc["status"] == "running" and doc["data"]["sha256"] == "ab" * 32
    assert doc["config"]["seed"] == 7
    assert {"python", "torch", "torchvision", "numpy", "albumentations"} <= set(doc["packages"])
    assert doc["packages"]["torch"] == torch.__version__.split("+")[0]
    assert "code_version" in doc and "created" in doc
    assert run.config == CFG

    run.update_config(status="done", seconds=1.5)
    doc = run.config_doc()
    assert (doc["status"], doc["seconds"], doc["config"]["seed"]) == ("done", 1.5, 7)

    assert run.metrics() == []
    records = [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.75}]
    run.write_metrics(records)
    assert run.metrics() == records
    assert (run.path / runs.METRICS).read_text().count("\n") == 2
    assert run.name == "r1"


def test_config_doc_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not a run folder"):
        Run(tmp_path).config_doc()
    (tmp_path / runs.CONFIG).write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Run(tmp_path).config_doc()


def test_new_run_dir_never_reuses_a_folder(tmp_path):
    made = {runs.new_run_dir(tmp_path) for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() for p in made)


def test_list_runs_newest_first_and_only_run_folders(tmp_path):
    assert list_runs(tmp_path / "nothing-here") == []
    for i, name in enumerate(["a", "b", "c"]):
        Run(tmp_path / name).write_config(CFG)
        stamp = time.time() - 100 + i * 10
        os.utime(tmp_path / name / runs.CONFIG, (stamp, stamp))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    assert [r.name for r in list_runs(tmp_path)] == ["c", "b", "a"]


# --------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("half", [False, True])
def test_checkpoint_round_trip(tmp_path, half):
    net = small_net().eval()
    path = Run(tmp_path).save_model(net, CFG, {"epoch": 2, "test_acc": 0.5}, half=half)
    assert path == tmp_path / runs.CHECKPOINT
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "config", "metrics", "format"}
    if half:
        assert raw["state_dict"]["fc.weight"].dtype == torch.float16

    for where in (path, tmp_path):  # the file or its run folder
        model, cfg, metrics = load_checkpoint(where)
        assert cfg == CFG and metrics == {"epoch": 2, "test_acc": 0.5}
        assert not model.training
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(model(x), net(x), atol=1e-2 if half else 1e-6)


def test_checkpoint_of_a_compiled_model_saves_the_plain_weights(tmp_path):
    net = small_net()

    class Compiled(torch.nn.Module):  # what torch.compile wraps a model in: the original under _orig_mod
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    save_checkpoint(tmp_path / "m.pt", Compiled(net), CFG)
    assert set(torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]) == set(net.state_dict())


def test_load_checkpoint_rejects_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path)  # a folder without model.pt

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a torch file")
    with pytest.raises(CheckpointError, match="not a readable lab checkpoint") as e:
        load_checkpoint(garbage)
    assert str(garbage) in str(e.value)

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a lab checkpoint"):
        load_checkpoint(other)

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "config": CFG}, pickled)  # an arbitrary object: refused by weights_only
    with pytest.raises(CheckpointError, match="not a readable lab checkpoint"):
        load_checkpoint(pickled)


def test_load_checkpoint_says_when_weights_do_not_fit_the_width(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_net(), CFG)
    doc = torch.load(path, weights_only=True)
    doc["config"]["width"] = 0.25
    torch.save(doc, path)
    with pytest.raises(CheckpointError, match="do not fit the network of width 0.25"):
        load_checkpoint(path)


def test_checkpoint_metadata_round_trips_through_json(tmp_path):
    metrics = {"epoch": 1, "test_acc": 0.5}
    path = save_checkpoint(tmp_path / "m.pt", small_net(), CFG, metrics)
    doc = torch.load(path, weights_only=True)
    # the config and metrics are plain JSON values: what config.json holds, the checkpoint holds, unchanged
    assert TrainConfig.from_dict(json.loads(json.dumps(doc["config"]))) == CFG
    assert json.loads(json.dumps(doc["metrics"])) == metrics


def test_summary_is_the_one_reading_of_a_run_folder(tmp_path):
    run = Run(tmp_path / "r1")
    run.write_config(CFG, status="done", seconds=12.5, data={"train_images": 256})
    run.write_metrics([{"epoch": 1, "test_acc": 0.25}, {"epoch": 2, "test_acc": 0.5}])
    s = run.summary()
    assert (s.name, s.status, s.epochs_done, s.epochs, s.test_acc) == ("r1", "done", 2, CFG.schedule.epochs, 0.5)
    assert (s.width, s.optimizer, s.max_lr, s.batch_size) == (CFG.width, "adam", CFG.schedule.max_lr, CFG.batch_size)
    assert (s.train_images, s.seconds, s.has_checkpoint) == (256, 12.5, False)
    run.save_model(small_net(), CFG)
    assert run.summary().has_checkpoint

    broken = Run(tmp_path / "r2")
    atomic_write_text(broken.path / "config.json", '{"config": "a string"}')
    assert broken.summary().status == "unreadable"  # a damaged folder is listed, never raises
    assert Run(tmp_path / "empty").summary().status == "unreadable"


def test_checkpoint_file_names_the_model_in_a_folder_or_the_file_itself(tmp_path):
    assert runs.checkpoint_file(tmp_path) == tmp_path / "model.pt"
    assert runs.checkpoint_file(tmp_path / "x.pt") == tmp_path / "x.pt"


# ------------------------------------------------------------------------------- titles, deleting, range tests


def _run(root, name, status="done"):
    run = Run(root / name)
    run.write_config(CFG, status=status)
    return run


def test_find_run_matches_listed_names_and_nothing_else(tmp_path):
    root = tmp_path / "runs"
    _run(root, "a")
    outside = _run(tmp_path, "outside")
    assert runs.find_run(root, "a").path == root / "a"
    for name in ("../outside", "/etc", "a/..", "", "b", ".", "..", 3, None):
        with pytest.raises(runs.RunError):
            runs.find_run(root, name)
    (root / "link").symlink_to(outside.path, target_is_directory=True)
    with pytest.raises(runs.RunError, match="link to a folder elsewhere"):
        runs.find_run(root, "link")
    with pytest.raises(runs.RunError, match="link"):
        runs.delete_run(root, "link")
    assert (outside.path / "config.json").is_file()


def test_a_title_is_kept_beside_the_run_and_the_folder_keeps_its_name(tmp_path):
    root = tmp_path / "runs"
    _run(root, "a")
    assert runs.set_title(root, "a", "  first try  ") == "first try"
    assert Run(root / "a").summary().title == "first try" and (root / "a").is_dir()
    assert runs.set_title(root, "a", "") == "" and Run(root / "a").summary().title is None
    for bad in ("x" * (runs.TITLE_MAX + 1), "two\nlines", "tab\there"):
        with pytest.raises(runs.RunError):
            runs.set_title(root, "a", bad)


def test_delete_spares_running_runs_but_not_dead_ones(tmp_path):
    root = tmp_path / "runs"
    _run(root, "done")
    live = _run(root, "live", status="running")
    live.claim()  # this process trains it
    mine = _run(root, "mine")
    elsewhere = _run(root, "elsewhere", status="running")  # its lock names another host: only its files' age tells
    runs.atomic_write_text(elsewhere.path / runs.LOCK, json.dumps({**runs.owner_record(), "host": "other-host"}))
    dead = _run(root, "dead", status="running")  # said running, no live owner: interrupted, so deletable
    with pytest.raises(runs.RunError, match="training right now"):
        runs.delete_run(root, "mine", active={mine.path})
    with pytest.raises(runs.RunError, match="being trained by process"):
        runs.delete_run(root, "live")
    with pytest.raises(runs.RunError, match="still running"):
        runs.delete_run(root, "elsewhere")
    old = time.time() - runs.STALE_RUNNING_S - 60  # a run that said "running" and then wrote nothing for long
    for f in elsewhere.path.iterdir():
        os.utime(f, (old, old))
    assert runs.delete_run(root, "elsewhere") == elsewhere.path and not elsewhere.path.exists()
    assert runs.delete_run(root, "dead") == dead.path
    live.release()
    runs.delete_run(root, "done")
    assert sorted(r.name for r in list_runs(root)) == ["live", "mine"]


def test_range_tests_are_listed_read_and_deleted_apart_from_runs(tmp_path):
    root = tmp_path / "runs"
    _run(root, "trained")
    runs.write_range_test(root / "trained", {"lrs": [1e-3], "losses": [2.0]})  # train --max-lr find keeps one
    runs.write_range_test(root / "lr-finder-1", {"lrs": [1e-3, 1e-2], "losses": [2.0, 1.5]}, config={"width": 1})
    assert sorted(r.name for r in runs.list_range_tests(root)) == ["lr-finder-1", "trained"]
    assert [r.name for r in list_runs(root)] == ["trained"]
    doc = runs.read_range_test(root / "lr-finder-1")
    assert doc["losses"] == [2.0, 1.5] and doc["config"] == {"width": 1} and "created" in doc
    with pytest.raises(runs.RunError, match="belongs to the training run"):
        runs.delete_run(root, "trained", range_test=True)
    runs.delete_run(root, "lr-finder-1", range_test=True)
    assert not (root / "lr-finder-1").exists() and (root / "trained").is_dir()
    (root / "bad").mkdir()
    (root / "bad" / "lr_finder.json").write_text("{}")
    with pytest.raises(runs.RunError, match="not a range test"):
        runs.read_range_test(root / "bad")


# --------------------------------------------------------------------------------- a run folder never lies


def test_bad_checkpoint_configs_are_checkpoint_errors(tmp_path):
    """Issue 10: a checkpoint whose config is a string gave a traceback."""
    for i, config in enumerate(["a string", {"width": "wide"}, {"schedule": "fast"}, ["not", "a", "dict"]]):
        path = tmp_path / f"m{i}.pt"
        torch.save({"state_dict": small_net().state_dict(), "config": config}, path)
        with pytest.raises(CheckpointError, match="not a lab checkpoint") as e:
            load_checkpoint(path)
        assert str(path) in str(e.value)
    path = tmp_path / "weights-not-tensors.pt"
    torch.save({"state_dict": {"fc.weight": "zeros"}, "config": CFG.to_dict()}, path)
    with pytest.raises(CheckpointError, match="not a mapping of tensors"):
        load_checkpoint(path)


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has it (until the kernel hands it out again, long after this test)


def test_a_running_run_without_a_live_owner_reads_interrupted(tmp_path):
    run = Run(tmp_path / "r")
    run.claim()
    run.write_config(CFG, status="running")
    lock = run.lock()
    assert lock["pid"] == os.getpid() and lock["host"] and lock["started"] <= time.time()
    assert run.owned() is True and run.summary().status == "running"

    atomic_write_text(run.path / runs.LOCK, json.dumps({**lock, "pid": _dead_pid()}))  # as SIGKILL leaves it
    assert run.owned() is False and run.summary().status == "interrupted"

    # the pid is alive but is another process (a restarted container reuses pids): its start time differs
    atomic_write_text(run.path / runs.LOCK, json.dumps({**lock, "process_start": "1"}))
    if runs._process_start(os.getpid()) is not None:  # Linux: /proc tells start times apart
        assert run.summary().status == "interrupted"

    atomic_write_text(run.path / runs.LOCK, json.dumps({**lock, "host": "another-host"}))
    assert run.owned() is None and run.summary().status == "running"  # cannot be told from here: not a guess

    run.release()
    assert run.summary().status == "interrupted"  # no lock at all (e.g. a run written before locks)
    run.update_config(status="done")
    assert run.summary().status == "done"  # finished runs are never reinterpreted


def test_temporaries_of_dead_writers_are_ignored_then_removed(tmp_path):
    run = Run(tmp_path / "r")
    run.write_config(CFG, status="done")
    run.write_metrics([{"epoch": 1, "test_acc": 0.5}])
    stray = run.path / ".model.pt.abc123.tmp"  # what SIGKILL during a checkpoint write leaves
    stray.write_bytes(b"half a checkpoint")
    s = run.summary()
    assert (s.status, s.epochs_done, s.has_checkpoint) == ("done", 1, False)  # never read as a checkpoint
    assert run.remove_temporaries() == []  # young: it could be a write in progress
    old = time.time() - runs.TEMP_GRACE_S - 5
    os.utime(stray, (old, old))
    run.claim()
    assert run.remove_temporaries() == []  # a live process owns the run: its files are its own
    run.release()
    assert run.remove_temporaries() == [stray] and not stray.exists()


def _finished_run(root, name, status="done", size=1000, age=0.0):
    run = Run(root / name)
    run.write_config(CFG, status=status)
    (run.path / "model.pt").write_bytes(b"x" * size)
    stamp = time.time() - 1000 + age
    os.utime(run.path / runs.CONFIG, (stamp, stamp))
    return run


def test_prune_removes_the_oldest_finished_runs_never_a_running_one(tmp_path):
    root = tmp_path / "runs"
    oldest_running = _finished_run(root, "a-running", status="running", size=5000, age=0)
    oldest_running.claim()  # this process trains it
    _finished_run(root, "b-stopped", status="stopped", size=5000, age=10)
    _finished_run(root, "c-done", size=5000, age=20)
    newest = _finished_run(root, "d-done", size=5000, age=30)
    (root / "lr-finder-x").mkdir()  # not a run folder: never touched
    (root / "lr-finder-x" / "lr_finder.json").write_text("{}")
    total = runs._size(root)

    assert runs.prune(root, quota_bytes=total) == []  # it fits
    removed = runs.prune(root, quota_bytes=total - 4000)
    assert removed == ["b-stopped"]  # the oldest finished one; the older running one stays
    removed = runs.prune(root, quota_bytes=runs._size(root), incoming=9000)
    assert removed == ["c-done", "d-done"]
    assert oldest_running.path.is_dir() and (root / "lr-finder-x").is_dir() and not newest.path.exists()
    assert runs.prune(root, quota_bytes=0) == []  # only the running run is left: nothing more may go

    oldest_running.release()  # its process died: an interrupted run is finished, and may go
    assert oldest_running.summary().status == "interrupted"
    assert runs.prune(root, quota_bytes=0) == ["a-running"]
    assert runs.prune(tmp_path / "nowhere", 0) == []


def test_prune_never_touches_the_bundled_assets(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    assets = root / "assets"  # a runs root that (wrongly) holds the assets folder, made to look like a run
    Run(assets).write_config(CFG, status="done")
    (assets / "cifar10_resnet9.pt").write_bytes(b"x" * 100)
    monkeypatch.setattr(runs, "ASSETS", assets)
    assert runs.prune(root, quota_bytes=0) == [] and (assets / "cifar10_resnet9.pt").exists()


def test_a_full_disk_is_one_line_naming_the_folder_and_the_space_left(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "run" / "model.pt"
    atomic_write_text(target, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(runs.DiskFull) as e:
        atomic_write_text(target, "new")
    message = str(e.value)
    assert message.startswith("disk full: cannot write model.pt in ") and str(target.parent) in message
    assert "free there" in message and re.search(r"\d+(\.\d)? (B|KB|MB|GB) free", message) and "\n" not in message
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["model.pt"]
