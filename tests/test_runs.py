"""lab.runs: atomic writes, the run folder, checkpoints that load with weights_only, list_runs."""

from __future__ import annotations

import json
import os
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


def test_delete_spares_running_runs_unless_they_died_long_ago(tmp_path):
    root = tmp_path / "runs"
    _run(root, "done")
    live = _run(root, "live", status="running")
    mine = _run(root, "mine")
    with pytest.raises(runs.RunError, match="training right now"):
        runs.delete_run(root, "mine", active={mine.path})
    with pytest.raises(runs.RunError, match="still running"):
        runs.delete_run(root, "live")
    old = time.time() - runs.STALE_RUNNING_S - 60  # a run that said "running" and then wrote nothing for long
    for f in live.path.iterdir():
        os.utime(f, (old, old))
    assert runs.delete_run(root, "live") == live.path and not live.path.exists()
    runs.delete_run(root, "done")
    assert [r.name for r in list_runs(root)] == ["mine"]


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
