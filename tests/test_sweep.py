"""lab.sweep: the grid and its parsing, the summary maths, and real sweeps through Ray Tune on the CPU.

Ray is started once for the module (2 CPUs, no dashboard); the sweeps train a width-0.125 network on a few hundred
real CIFAR-10 images, so they check plumbing (trials, run folders, reports, resume), not accuracy.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lab import sweep as sw
from lab.cli import main
from lab.config import RANGE_TEST_RULES, ConfigError, TrainConfig
from lab.runs import Run
from conftest import TINY, run_lab, tiny_config


# -------------------------------------------------------------------------------------------- the grid


def test_parse_grid_types_factors_and_rules():
    grid = sw.parse_grid(["max_lr=0.003, x0.5,×2,valley", "div-factor=10,25", "optimizer=adam,sgd",
                          "epochs=2,3", "cycle_momentum=false,true"])
    assert grid["max_lr"] == [0.003, "x0.5", "x2", "valley"]
    assert grid["div_factor"] == [10.0, 25.0]
    assert grid["optimizer"] == ["adam", "sgd"]
    assert grid["epochs"] == [2, 3] and all(isinstance(e, int) for e in grid["epochs"])
    assert grid["cycle_momentum"] == [False, True]
    assert sw.parse_grid(["max_lr=rules"])["max_lr"] == list(RANGE_TEST_RULES)
    assert sw.parse_grid(["max_lr=0.01,0.01,x1,x1.0"])["max_lr"] == [0.01, "x1"]  # repeats dropped


@pytest.mark.parametrize("items, words", [
    (["colour=red,blue"], "unknown grid field 'colour'"),
    (["max_lr="], "max_lr has no values"),
    (["max_lr=0.01", "max_lr=0.1"], "given twice"),
    (["max_lr"], "FIELD=V1,V2"),
    (["max_lr=-0.1"], "positive"),
    (["max_lr=x0"], "positive"),
    (["epochs=2.5"], "whole number"),
])
def test_parse_grid_refuses(items, words):
    with pytest.raises(ConfigError, match=words):
        sw.parse_grid(items)


def test_parse_seeds():
    assert sw.parse_seeds("3") == [0, 1, 2]
    assert sw.parse_seeds("0,5,7") == [0, 5, 7]
    assert sw.parse_seeds("4,") == [4]
    for bad in ("0", "a", "1,1", "-1,2"):
        with pytest.raises(ConfigError):
            sw.parse_seeds(bad)


def test_validate_refuses_before_anything_starts():
    base = tiny_config()
    with pytest.raises(ConfigError, match="grid is empty"):
        sw.SweepSpec(base, {}).validate()
    with pytest.raises(ConfigError, match="need the LR range test"):
        sw.SweepSpec(base, {"max_lr": ["x1"]}, range_test=None).validate()
    with pytest.raises(ConfigError, match="configuration epochs=1.*peak epoch"):
        sw.SweepSpec(base, {"epochs": [1, 2], "peak_epoch": [1.5]}).validate()
    with pytest.raises(ConfigError, match="GPUs per trial"):
        sw.SweepSpec(base, {"max_lr": [0.01]}, gpus_per_trial=-1).validate()
    with pytest.raises(ConfigError, match="no GPU"):
        sw.SweepSpec(TrainConfig(device="cuda"), {"max_lr": [0.01]}, gpus_per_trial=0).validate()
    with pytest.raises(ConfigError, match="range-test iterations"):
        sw.SweepSpec(base, {"max_lr": [0.01]}, range_test={"iters": 1}).validate()


def test_epochs_grid_keeps_the_peak_share():
    base = TrainConfig(**TINY)  # 24 epochs, peak at 5
    spec = sw.SweepSpec(base, {"epochs": [12, 48]}, range_test=None)
    configs, _ = sw.resolve(spec)
    peaks = {c["values"]["epochs"]: c["config"]["schedule"]["peak_epoch"] for c in configs}
    assert peaks == {12: pytest.approx(base.schedule.peak_epoch / 2), 48: pytest.approx(base.schedule.peak_epoch * 2)}


def fake_range_test(suggestions: dict[str, float], rule: str = "loss_min") -> dict:
    """A range-test record for the summary and figure tests: only its suggestions matter there."""
    lrs = sorted({*suggestions.values(), 1e-5, 1.0})
    return {"lrs": lrs, "losses": [2.0] * len(lrs), "suggestions": suggestions, "max_lr": suggestions[rule],
            "min_lr": suggestions[rule] / 25, "rule": rule, "notes": [], "status": "done",
            "settings": {"train_images": 256, "rule": rule}}


def u_curve_test(train_images: int = TINY["subset"]) -> dict:
    """A range-test record with a real curve: a plateau, a fall to a minimum at LR 0.05, then the blow-up."""
    from lab.lr_finder import choose, suggest

    lrs = list(np.geomspace(1e-6, 1.0, 100))
    losses = [2.3 if lr < 1e-3 else 2.3 - 0.8 * math.log10(lr / 1e-3) if lr < 0.05 else 1.0 + 5 * (lr - 0.05)
              for lr in lrs]
    sug, _ = suggest(lrs, losses, run_steps=8)
    rule, lr = choose(sug)
    return {"lrs": lrs, "losses": losses, "suggestions": sug, "max_lr": lr, "min_lr": lr / 25, "rule": rule,
            "notes": [], "status": "done", "settings": {"train_images": train_images, "rule": RANGE_TEST_RULES[0]}}


def test_resolve_factors_and_rules_to_concrete_lrs():
    spec = sw.SweepSpec(tiny_config(), {"max_lr": ["x0.5", "x1", RANGE_TEST_RULES[0], "loss_min", "steepest", 0.3],
                                        "div_factor": [10.0, 25.0]})
    groups = sw.range_test_groups(spec)
    assert len(groups) == 1  # the div factor does not change the range test
    (key, group), = groups.items()
    rt = u_curve_test()
    configs, notes = sw.resolve(spec, {group["id"]: rt}, {key: group["id"]})
    sug, rule, suggested = sw.suggestions_for(rt, configs[0]["config"])
    assert rule == RANGE_TEST_RULES[0] and suggested == sug[rule]
    expected = sorted([(0.5 * suggested, ["x0.5"]), (suggested, ["x1", RANGE_TEST_RULES[0]]),
                       (sug["loss_min"], ["loss_min"]), (sug["steepest"], ["steepest"]), (0.3, [])])
    for div in (10.0, 25.0):
        mine = sorted((c["max_lr"], c["lr_from"]) for c in configs if c["values"]["div_factor"] == div)
        # x1 and the default rule land on the same LR: one configuration remembering both names
        assert [m[1] for m in mine] == [e[1] for e in expected]
        assert [m[0] for m in mine] == pytest.approx([e[0] for e in expected])
    assert len({c["key"] for c in configs}) == len(configs) == 10
    assert all(c["config"]["schedule"]["div_factor"] == c["values"]["div_factor"] for c in configs)
    # a rule that cannot apply to the curve (still falling at the end: no minimum) is dropped with a note
    falling = {**rt, "lrs": rt["lrs"][:75], "losses": rt["losses"][:75]}
    spec = sw.SweepSpec(tiny_config(), {"max_lr": ["loss_min", 0.01]})
    configs, notes = sw.resolve(spec, {group["id"]: falling}, {key: group["id"]})
    assert [c["max_lr"] for c in configs] == [0.01] and any("loss_min rule did not apply" in n for n in notes)


def test_the_default_rule_follows_each_configurations_run_length():
    """One range test serves a grid over epochs, but min_div_run's margin grows with the run's length."""
    from lab.lr_finder import run_margin

    spec = sw.SweepSpec(tiny_config(), {"max_lr": [RANGE_TEST_RULES[0]], "epochs": [1, 4, 40]})
    (key, group), = sw.range_test_groups(spec).items()
    rt = u_curve_test()
    configs, _ = sw.resolve(spec, {group["id"]: rt}, {key: group["id"]})
    steps = {c["values"]["epochs"]: c["values"]["epochs"] * math.ceil(TINY["subset"] / TINY["batch_size"])
             for c in configs}
    lrs = {c["values"]["epochs"]: c["max_lr"] for c in configs}
    for epochs, lr in lrs.items():
        assert lr == pytest.approx(rt["suggestions"]["loss_min"] / run_margin(steps[epochs], len(rt["lrs"])))
    assert lrs[1] > lrs[4] > lrs[40]  # longer runs, a wider margin below the loss minimum


# --------------------------------------------------------------------------------------------- summary


def configuration(key: str, lr: float, lr_from=(), series: str = "all", group: str = "g0") -> dict:
    return {"key": key, "label": f"max_lr={lr}", "values": {"max_lr": lr}, "max_lr": lr, "lr_from": list(lr_from),
            "series": series, "group": group, "config": {"schedule": {"epochs": 2}}}


def trial(key: str, seed: int, acc: float | None, status: str = "done") -> dict:
    return {"key": key, "seed": seed, "status": status, "test_acc": acc}


def test_summary_mean_std_best_and_rule_gaps():
    configs = [configuration("c0", 0.001, ["valley"]), configuration("c1", 0.01), configuration("c2", 0.1, ["x1"])]
    accs = {"c0": [0.40, 0.42, 0.44], "c1": [0.50, 0.49, 0.51], "c2": [0.45, 0.47, 0.40]}
    trials = [trial(k, s, a) for k, v in accs.items() for s, a in enumerate(v)]
    rt = {"g0": fake_range_test({"loss_min": 0.1, "valley": 0.001, "steepest": 0.003})}
    s = sw.summarize(configs, trials, rt)
    rows = {r["key"]: r for r in s["configurations"]}
    for k, v in accs.items():
        pct = [100 * a for a in v]
        assert rows[k]["mean"] == pytest.approx(statistics.mean(pct))
        assert rows[k]["std"] == pytest.approx(statistics.stdev(pct))  # sample std over seeds
        assert rows[k]["n"] == 3 and rows[k]["complete"]
    assert s["best"] == "c1"
    (series,) = s["series"]
    assert series["best_lr"] == 0.01
    rules = series["rules"]
    # loss_min's LR was trained as x1: matched by its LR
    assert rules["loss_min"]["key"] == "c2"
    assert rules["loss_min"]["below_best"] == pytest.approx(rows["c1"]["mean"] - rows["c2"]["mean"])
    assert rules["loss_min"]["lr_over_best"] == pytest.approx(10)
    assert rules["valley"]["below_best"] == pytest.approx(rows["c1"]["mean"] - rows["c0"]["mean"])
    assert rules["steepest"]["mean"] is None and rules["steepest"]["below_best"] is None  # suggested, not trained
    assert s["trials"] == {"done": 9}


def test_summary_counts_only_finished_seeds_and_prefers_complete_configurations():
    configs = [configuration("c0", 0.01), configuration("c1", 0.1)]
    trials = [trial("c0", 0, 0.50), trial("c0", 1, 0.52),
              trial("c1", 0, 0.60), trial("c1", 1, None, "diverged")]  # the higher mean, but one seed diverged
    s = sw.summarize(configs, trials)
    rows = {r["key"]: r for r in s["configurations"]}
    assert rows["c1"]["n"] == 1 and rows["c1"]["mean"] == pytest.approx(60) and rows["c1"]["std"] == 0
    assert not rows["c1"]["complete"] and rows["c1"]["statuses"] == {"done": 1, "diverged": 1}
    assert s["best"] == "c0"
    # with no complete configuration, the best mean among the rest
    s = sw.summarize(configs, [trial("c0", 0, 0.5, "stopped"), trial("c1", 0, 0.6), trial("c1", 1, None, "pending")])
    assert s["best"] == "c1"
    csv_rows = sw.to_csv(s).splitlines()
    assert csv_rows[0].startswith("key,max_lr,lr_from,mean_test_acc") and len(csv_rows) == 3
    assert csv_rows[2].endswith("best")


def test_series_have_their_own_best():
    configs = [configuration("c0", 0.01, series="div_factor=10"), configuration("c1", 0.1, series="div_factor=10"),
               configuration("c2", 0.01, series="div_factor=25"), configuration("c3", 0.1, series="div_factor=25")]
    trials = [trial("c0", 0, 0.5), trial("c1", 0, 0.4), trial("c2", 0, 0.3), trial("c3", 0, 0.35)]
    s = sw.summarize(configs, trials)
    assert [x["best"] for x in s["series"]] == ["c0", "c3"]
    assert s["best"] == "c0"


# ------------------------------------------------------------------------------------------ through Ray


class FakeResult:
    """What _finish reads of a ray.tune Result: its folder (named by _trial_dirname), metrics and error."""

    def __init__(self, path: Path, metrics: dict | None = None, error: BaseException | None = None):
        self.path, self.metrics, self.error = str(path), metrics or {}, error

    @property
    def config(self):  # as Ray's: from the metrics, None before the first report
        return self.metrics.get("config") if self.metrics else None


def test_finish_counts_trials_tune_never_made_and_those_that_never_reported(tmp_path):
    """A Ctrl-C can reach Tune after the first trial finished and before it made the next (grid search makes
    trials as slots free up): its result grid then holds only the finished trial. That sweep is "stopped", with
    the rest "pending" — not "done". A trial stopped before its first report has no config: no crash."""
    spec = sw.SweepSpec(tiny_config(), {"max_lr": [0.002, 0.02]}, seeds=[0, 1], range_test=None)
    sweep = sw.create(spec, tmp_path, "s")
    configurations, notes = sw.resolve(spec)
    sweep.write_state({**sweep.state(), "configurations": configurations, "notes": notes, "gpus_per_trial": 0.0})
    first = configurations[0]
    done = {"status": "done", "epoch": 2, "test_acc": 0.25, "test_loss": 2.0, "train_loss": 2.1,
            "time_total_s": 3.0, "config": {"configuration": first, "seed": 0}}
    tune_dir = sweep.path / sw.TUNE_DIR
    only_the_first = [FakeResult(tune_dir / sw._folder_name(first, 0), done)]
    doc = sw._finish(sweep, only_the_first)
    statuses = {(t["key"], t["seed"]): t["status"] for t in doc["trials"]}
    assert doc["status"] == "stopped" and len(statuses) == 4
    assert statuses.pop((first["key"], 0)) == "done" and set(statuses.values()) == {"pending"}

    never_reported = FakeResult(tune_dir / sw._folder_name(first, 1))  # made, stopped before any epoch
    run_dir = sweep.run_dir(first, 1)
    Run(run_dir).write_config(tiny_config(), status="running")  # what its killed process left
    doc = sw._finish(sweep, [*only_the_first, never_reported])
    statuses = {(t["key"], t["seed"]): t["status"] for t in doc["trials"]}
    assert doc["status"] == "stopped" and statuses[(first["key"], 1)] == "stopped"
    assert Run(run_dir).config_doc()["status"] == "stopped"

    everything = [FakeResult(tune_dir / sw._folder_name(c, seed), {**done, "config": {"configuration": c, "seed": seed}})
                  for c in configurations for seed in (0, 1)]
    assert sw._finish(sweep, everything)["status"] == "done"


@pytest.fixture(scope="module")
def ray_session():  # every test that starts Ray is in the slow tier: Ray's start-up alone is seconds
    import ray

    assert sw.connect(num_cpus=2)  # as the CLI starts it: 2 CPUs, no dashboard, workers import this lab
    yield ray
    ray.shutdown()


def read_runs(doc: dict) -> dict[tuple[str, int], Run]:
    return {(t["key"], t["seed"]): Run(Path(t["run_dir"])) for t in doc["trials"]}


@pytest.mark.slow
def test_sweep_2x2(ray_session, cifar10, tmp_path, capsys):
    """Two max LRs as factors of the range test's suggestion × two seeds: four trials, four run folders."""
    spec = sw.SweepSpec(tiny_config(), sw.parse_grid(["max_lr=x0.5,x2"]), seeds=[0, 1],
                        range_test={"iters": 20})
    doc = sw.run(spec, cifar10, root=tmp_path, name="s")
    folder = tmp_path / "s"
    assert doc["status"] == "done" and doc["summary"]["trials"] == {"done": 4}
    (rt,) = doc["range_tests"].values()
    assert rt["settings"]["iterations_run"] <= 20 and rt["settings"]["train_images"] == TINY["subset"]
    rows = doc["summary"]["configurations"]
    assert sorted(r["max_lr"] for r in rows) == pytest.approx(sorted([0.5 * rt["max_lr"], 2 * rt["max_lr"]]))
    runs = read_runs(doc)
    assert len(runs) == 4 and len({r.path for r in runs.values()}) == 4
    for (key, seed), run in runs.items():
        assert run.path.parent == folder / sw.RUNS_DIR
        cfg_doc = run.config_doc()
        assert cfg_doc["status"] == "done" and cfg_doc["config"]["seed"] == seed
        assert cfg_doc["sweep"]["id"] == "s" and cfg_doc["sweep"]["configuration"] == key
        assert len(run.metrics()) == 2 and run.checkpoint.exists()
    # what Tune received matches what the run folders hold: each configuration's mean is over its run folders
    for r in rows:
        accs = [100 * runs[(r["key"], s)].metrics()[-1]["test_acc"] for s in (0, 1)]
        assert r["accs"] == pytest.approx(accs)
        assert r["mean"] == pytest.approx(statistics.mean(accs)) and r["std"] == pytest.approx(statistics.stdev(accs))
    # every epoch reached Tune (one report per epoch, as its own result log shows)
    progress = list((folder / sw.TUNE_DIR).glob("*/progress.csv"))
    assert len(progress) == 4 and all(len(p.read_text().splitlines()) == 1 + 2 for p in progress)
    assert json.loads((folder / sw.RESULTS_JSON).read_text())["summary"] == doc["summary"]
    assert len((folder / sw.RESULTS_CSV).read_text().splitlines()) == 1 + 2
    assert (folder / sw.FIGURE).stat().st_size > 0
    out = capsys.readouterr().out
    assert out.count("seed ") >= 4 and "[4/4]" in out


def test_figure_puts_suggestions_and_accuracy_on_one_lr_axis():
    from lab.plots import sweep_figure

    configs = [configuration("c0", 0.001, ["valley"]), configuration("c1", 0.01), configuration("c2", 0.1, ["x1"])]
    trials = [trial(k, s, a) for k, a in (("c0", 0.4), ("c1", 0.5), ("c2", 0.45)) for s in (0, 1)]
    rt = fake_range_test({"loss_min": 0.1, "valley": 0.001})
    doc = {"summary": sw.summarize(configs, trials, {"g0": rt}), "range_tests": {"g0": rt}}
    fig = sweep_figure(doc)
    assert fig.layout.xaxis.type == "log"
    names = [t.name or "" for t in fig.data]
    acc = next(t for t in fig.data if t.name == "test accuracy")
    assert list(acc.x) == [0.001, 0.01, 0.1] and acc.error_y.array is not None
    assert any(n.startswith("best: 0.01") for n in names)
    assert any(n.startswith("loss minimum (default): 1.00e-01") for n in names)
    assert any(n.startswith("valley") for n in names)
    loss = next(t for t in fig.data if t.name == "range-test loss")
    assert loss.yaxis == "y2"  # the curve shares the LR axis, on its own y axis
    assert "0.1" in fig.layout.title.text and "below" in fig.layout.title.text


@pytest.mark.slow
def test_the_recorder_is_found_by_name_where_no_sweep_ran_yet(tmp_path):
    """Tune pickles the callback into tuner.pkl, and a resumed sweep reads it back in a process where lab.sweep
    has not made its _Recorder class yet (it is made on first use, so that importing lab.sweep loads no Ray):
    lab.sweep._Recorder still names it."""
    import subprocess
    import sys

    from ray import cloudpickle
    from ray.tune import Callback

    from conftest import REPO

    recorder = sw._recorder_class()(str(tmp_path))
    assert isinstance(recorder, Callback) and type(recorder) is sw._Recorder is sw._recorder_class()
    assert (type(recorder).__module__, type(recorder).__qualname__) == ("lab.sweep", "_Recorder")
    code = ("import pickle, sys; r = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(r).__module__, type(r).__qualname__, r.sweep_dir)")
    proc = subprocess.run([sys.executable, "-c", code], input=cloudpickle.dumps(recorder), capture_output=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["lab.sweep", "_Recorder", str(tmp_path)]


@pytest.mark.slow
def test_ctrl_c_stops_every_trial_and_resume_finishes_the_rest(ray_session, cifar10, tmp_path):
    """SIGINT (Ctrl-C) while trials run: Tune stops them, each unfinished run folder reads "stopped", and
    resume trains only what had not finished."""
    spec = sw.SweepSpec(tiny_config(epochs=2), {"max_lr": [0.002, 0.02]}, seeds=[0, 1], range_test=None,
                        max_concurrent=1)
    folder = tmp_path / "r"
    fitting = threading.Event()
    sent = threading.Event()

    def interrupt_after_first_run():
        deadline = time.time() + 300
        while time.time() < deadline and not sent.is_set():
            for cfg in (folder / sw.RUNS_DIR).glob("*/config.json"):
                if json.loads(cfg.read_text()).get("status") == "done" and fitting.is_set():
                    os.kill(os.getpid(), signal.SIGINT)
                    sent.set()
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=interrupt_after_first_run, daemon=True)
    fitting.set()
    watcher.start()
    doc = sw.run(spec, cifar10, root=tmp_path, name="r")
    fitting.clear()
    watcher.join(5)
    assert sent.is_set(), "the first run never finished"
    statuses = [t["status"] for t in doc["trials"]]
    assert doc["status"] == "stopped" and 1 <= statuses.count("done") < 4, statuses
    assert set(statuses) <= {"done", "stopped", "pending"}
    done_before = {}
    for t in doc["trials"]:
        run_cfg = Path(t["run_dir"]) / "config.json"
        if t["status"] == "done":
            done_before[(t["key"], t["seed"])] = run_cfg.stat().st_mtime_ns
        if run_cfg.exists() and t["status"] != "done":
            assert json.loads(run_cfg.read_text())["status"] == "stopped"  # never left reading "running"

    doc2 = sw.resume(folder, cifar10)
    assert doc2["status"] == "done" and doc2["summary"]["trials"] == {"done": 4}
    for t in doc2["trials"]:  # the finished runs were kept, not trained again
        if (t["key"], t["seed"]) in done_before:
            assert (Path(t["run_dir"]) / "config.json").stat().st_mtime_ns == done_before[(t["key"], t["seed"])]
    assert all(r["n"] == 2 for r in doc2["summary"]["configurations"])


@pytest.mark.slow
def test_gpus_per_trial_needs_gpus_ray_can_see(ray_session, cifar10, tmp_path):
    if ray_session.cluster_resources().get("GPU", 0) >= 0.25:
        pytest.skip("this machine has a GPU: packing trials onto it is allowed")
    spec = sw.SweepSpec(tiny_config(), {"max_lr": [0.01]}, range_test=None, gpus_per_trial=0.25)
    with pytest.raises(sw.SweepError, match="0.25 GPUs per trial asked for, but Ray sees 0 GPUs"):
        sw.run(spec, cifar10, root=tmp_path, name="g")
    assert not (tmp_path / "g").exists()  # refused before any folder was made


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("args, words", [
    ([], "the grid is empty"),
    (["--grid", "colour=red"], "unknown grid field 'colour'"),
    (["--grid", "max_lr=x1", "--no-range-test"], "need the LR range test"),
    (["--grid", "max_lr=0.01", "--seeds", "0"], "seed count must be ≥ 1"),
])
def test_cli_bad_input_is_one_line(args, words, capsys):
    assert main(["sweep", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


@pytest.mark.slow
def test_cli_unreachable_cluster_is_one_line(tmp_path, cifar10_dir):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    r = run_lab("sweep", "--grid", "max_lr=0.01", "--address", f"127.0.0.1:{port}", "--root", str(tmp_path),
                cwd=tmp_path, env={"CIFAR10_DIR": str(cifar10_dir)}, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}") and r.stderr.count("\n") == 1
    assert time.time() - t0 < 60
    assert not any(tmp_path.iterdir())  # nothing made


# -------------------------------------------------------------------------------------------- estimate


def test_the_estimate_adds_every_trial_and_the_range_test(cifar10, monkeypatch):
    from lab import estimate as est

    step = est.StepTime("cpu", 0.125, 32, train_per_image=1e-3, eval_per_image=1e-4, step_overhead=0.01)
    monkeypatch.setattr(est, "measure", lambda width, batch, device="auto": step)
    spec = sw.SweepSpec(tiny_config(), {"max_lr": [0.01, 0.02], "epochs": [1, 2]}, seeds=[0, 1, 2],
                        range_test={"iters": 50})
    total = sw.estimate(spec, cifar10)
    used = cifar10.subset(TINY["subset"], TINY["test_subset"])
    runs = sum(est.for_run(TrainConfig.from_dict(sw._config_dict(spec.base, c, spec.grid)), len(used.y_train),
                           len(used.y_test), step).seconds for c in spec.combos())
    assert total.seconds == pytest.approx(3 * runs + est.for_range_test(spec.base, 50, step).seconds)
    assert total.device == "cpu" and "12 trials" in total.what


def test_cli_asks_before_a_long_sweep_on_the_cpu(monkeypatch, capsys, cifar10_dir):
    from lab import estimate as est

    slow = est.StepTime("cpu", 1.0, 32, train_per_image=1.0, eval_per_image=0.1)  # far over LONG_JOB_S
    monkeypatch.setattr(est, "measure", lambda width, batch, device="auto": slow)
    # the data named as conftest finds it: the test passes with or without CIFAR10_DIR set
    assert main(["sweep", "--preset", "tiny", "--grid", "max_lr=0.01,0.02", "--no-range-test",
                 "--data-dir", str(cifar10_dir)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("expected: about ") and "on the CPU" in out
    assert err.startswith("error: this would take about ") and "pass --yes" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------- a sweep that fails says so


def _one_line_error(code: int, expected_code: int, err: str, words: str) -> None:
    assert code == expected_code, err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("make, args, code, words", [
    # a name is one folder name: it never reaches outside the sweeps root
    (None, ["--name", "../../escape"], 2, "must be one folder name"),
    (None, ["--name", "a/b"], 2, "must be one folder name"),
    (lambda t: (t / "rootfile").write_text("x"), ["--root", "rootfile"], 2, "is a file; name a folder"),
    # every configuration is checked as train checks a run: 256 images in batches of 128 for 1 epoch = 2 steps
    (None, ["--subset", "256", "--epochs", "1", "--batch-size", "128"], 2,
     "the configuration max_lr=0.01 cannot run: One Cycle needs at least 3 steps"),
])
def test_cli_refuses_a_sweep_that_cannot_run_before_anything_starts(make, args, code, words, cifar10_dir, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if make:
        make(tmp_path)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    got = main(["sweep", "--preset", "tiny", "--grid", "max_lr=0.01,0.02", "--no-range-test", "--yes",
                "--data-dir", str(cifar10_dir), "--root", "sweeps", *args])
    _one_line_error(got, code, capsys.readouterr().err, words)
    assert not (tmp_path / "sweeps").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before  # nothing made beside it either


@pytest.mark.parametrize("make, words", [
    (lambda t: (t / "afile").write_text("x") and t / "afile", "holds no spec.json: it is not a sweep folder"),
    (lambda t: t, "holds no spec.json: it is not a sweep folder"),
    (lambda t: (t / "spec.json").write_text("{not json") and t, "cannot be read as a sweep's spec"),
    (lambda t: (t / "spec.json").write_text("[1, 2]") and t, "is not a sweep's spec"),
    (lambda t: (t / "spec.json").write_text('{"spec": {"base": "x"}}') and t, "does not describe a sweep"),
])
def test_cli_resume_of_something_that_is_not_a_sweep_is_one_line(make, words, tmp_path, capsys):
    folder = make(tmp_path)
    _one_line_error(main(["sweep", "--resume", str(folder)]), 1, capsys.readouterr().err, words)


def test_a_sweep_whose_every_trial_failed_failed(tmp_path):
    spec = sw.SweepSpec(tiny_config(), {"max_lr": [0.002, 0.02]}, seeds=[0], range_test=None)
    sweep = sw.create(spec, tmp_path, "f")
    configurations, notes = sw.resolve(spec)
    sweep.write_state({**sweep.state(), "configurations": configurations, "notes": notes, "gpus_per_trial": 0.0})
    failed = [FakeResult(sweep.path / sw.TUNE_DIR / sw._folder_name(c, 0), error=RuntimeError("boom"))
              for c in configurations]
    doc = sw._finish(sweep, failed)
    assert doc["status"] == "failed" and {t["status"] for t in doc["trials"]} == {"error"}
    assert all(t["error"] == "boom" for t in doc["trials"])
    one_diverged = [failed[0], FakeResult(sweep.path / sw.TUNE_DIR / sw._folder_name(configurations[1], 0),
                                          {"status": "diverged", "error": "the loss became nan"})]
    assert sw._finish(sweep, one_diverged)["status"] == "done"  # a diverged trial is a result, not a failure


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_stops_the_sweep_and_every_trial(tmp_path, cifar10_dir):
    """Ctrl-C at a terminal reaches the whole process group — the sweep and Ray's workers alike: exit 130, no
    traceback, the sweep and every unfinished trial "stopped" (not "error"), no run folder left "running"."""
    import subprocess
    import sys as _sys

    from conftest import REPO

    args = ["sweep", "--preset", "tiny", "--grid", "max_lr=0.002,0.02", "--seeds", "2", "--no-range-test",
            "--epochs", "3", "--peak-epoch", "1", "--root", str(tmp_path), "--name", "s", "--yes",
            "--data-dir", str(cifar10_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([_sys.executable, "-m", "lab", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not list((tmp_path / "s" / sw.RUNS_DIR).glob("*/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "stopped (" in err and "--resume" in err
    doc = json.loads((tmp_path / "s" / sw.RESULTS_JSON).read_text())
    assert doc["status"] == "stopped" and set(t["status"] for t in doc["trials"]) <= {"done", "stopped", "pending"}
    for cfg in (tmp_path / "s" / sw.RUNS_DIR).glob("*/config.json"):
        assert json.loads(cfg.read_text())["status"] in ("done", "stopped")
