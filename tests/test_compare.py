"""lab.compare: the configuration under each schedule at the LR a learner would pick (One Cycle at its max LR, the
others at the best of a small grid), end to end on a tiny subset — through the core, the job manager and the CLI;
the sentence, the picks and the figure from a made-up result; the shared server's bound on the whole job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY, call_lab, tiny_config
from lab import compare, plots
from lab.config import COMPARE_LR_FACTORS, SCHEDULES, ConfigError, TrainConfig
from lab.schedule import preview


def test_plan_gives_one_cycle_its_max_lr_and_each_other_schedule_the_grid():
    base = tiny_config(epochs=2, max_lr=0.02, div_factor=50)
    runs = compare.plan(base, COMPARE_LR_FACTORS)
    assert len(runs) == 1 + 3 * len(COMPARE_LR_FACTORS) == 10
    assert [r.schedule.policy for r in runs] == ["one-cycle"] + [s for s in SCHEDULES[1:] for _ in COMPARE_LR_FACTORS]
    assert runs[0].schedule.max_lr == 0.02
    for r in runs[1:]:
        assert r.schedule.lr_min == pytest.approx(r.schedule.max_lr / 50)  # One Cycle's LRMIN ratio kept
    assert sorted({round(r.schedule.max_lr, 6) for r in runs[1:]}) == [0.002, 0.006, 0.02]
    assert all(r.flat() | {"schedule": None, "max_lr": None} == runs[0].flat() | {"schedule": None, "max_lr": None}
               for r in runs)  # nothing else differs
    # an explicit LRMIN becomes a ratio, so a baseline at ×0.1 does not end up with LRMIN above its LR
    assert compare.plan(tiny_config(max_lr=0.01, min_lr=0.005), (0.1,))[1].schedule.lr_min == pytest.approx(0.0005)
    assert len(compare.plan(base, compare.factors_for("same"))) == 4
    with pytest.raises(ConfigError, match="others' LR must be one of grid, same"):
        compare.factors_for("all")
    with pytest.raises(ConfigError, match="positive"):
        compare.parse_factors("0.1,-1")


def _doc(status="done", oc=78.1, others=(("constant", [(0.001, 60.0), (0.003, 65.0), (0.01, 62.0)]),
                                          ("cosine", [(0.001, 68.0), (0.003, 71.2), (0.01, 70.0)]))):
    """A comparison's sweep.json as lab.sweep.summarize writes it (only what lab.compare reads)."""
    rows, series, trials = [], [], []
    groups = [("one-cycle", [(0.01, oc)]), *others]
    for s, tried in groups:
        keys = []
        for lr, acc in tried:
            key = f"c{len(rows):02d}"
            keys.append((key, lr, acc))
            rows.append({"key": key, "series": f"schedule={s}", "max_lr": lr, "mean": acc})
            trials.append({"key": key, "epochs": 3, "run_dir": f"/nowhere/{key}", "status": "done"})
        scored = [k for k in keys if k[2] is not None]
        best = max(scored, key=lambda k: k[2]) if scored else None
        series.append({"series": f"schedule={s}", "best": best and best[0], "best_lr": best and best[1],
                       "best_mean": best and best[2]})
    return {"status": status, "summary": {"configurations": rows, "series": series}, "trials": trials}


def test_the_sentence_states_the_result_with_its_numbers():
    assert compare.sentence(_doc()) == (
        "One Cycle at max LR 0.01 reached 78.10% in 3 epochs; the best other, cosine at LR 0.003 (best of 0.001, "
        "0.003, 0.01), reached 71.20%: One Cycle is 6.90 points ahead.")
    behind = compare.sentence(_doc(oc=70.0, status="running"))
    assert behind.endswith("One Cycle is 1.20 points behind so far.")
    assert compare.sentence(_doc(others=())) == "One Cycle at max LR 0.01 reached 78.10% in 3 epochs; no other schedule has finished."
    assert compare.sentence(None) == "No run of the comparison has finished yet."
    lines = compare.picks(_doc())
    assert lines[0] == "One Cycle: LR 0.01, its max LR (the range test's): 78.10%"
    assert lines[2] == "cosine: LR 0.003, the best of 0.001 (68.00%), 0.003 (71.20%), 0.01 (70.00%)"


def test_compare_figure_overlays_accuracy_and_lr_per_schedule():
    curves = {s: {"label": s, "epochs": [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.6}],
                  "lr": preview(tiny_config(epochs=2, schedule=s).schedule, 4)} for s in SCHEDULES}
    fig = plots.compare_figure(curves)
    acc = [t for t in fig.data if t.xaxis == "x"]
    lrs = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in acc] == list(SCHEDULES) and list(acc[0].y) == [50.0, 60.0]
    assert len(lrs) == 4 and len(lrs[0].y) == 8 and fig.layout.yaxis2.type == "log"
    assert len({t.line.color for t in acc}) == 4
    assert plots.compare_figure({}).layout.annotations[-1].text.startswith("the curves appear")


def _check_folder(doc, factors):
    """The comparison's folder is a sweep's: every run an ordinary run folder; each run's recorded LR is its
    schedule's, epoch by epoch (the last step's LR of each epoch)."""
    from lab.runs import Run

    folder = Path(doc["folder"])
    for name in ("spec.json", "sweep.json", "sweep.csv", "sweep.html", compare.HTML):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "spec.json").read_text())["compare"]["factors"] == list(factors)
    assert len(doc["trials"]) == 1 + 3 * len(factors)
    assert {t["status"] for t in doc["trials"]} == {"done"}
    for t in doc["trials"]:
        run = Run(Path(t["run_dir"]))
        assert run.summary().status == "done"
        cfg, spe = run.config, run.config_doc()["steps_per_epoch"]
        curve = preview(cfg.schedule, spe)["lr"]
        assert [r["lr"] for r in run.metrics()] == pytest.approx([curve[e * spe - 1] for e in (1, 2)])
    assert set(compare.best_runs(doc)) == set(SCHEDULES)
    assert set(compare.curves(doc)) == set(SCHEDULES)


def test_compare_job_runs_end_to_end_on_a_tiny_subset(manager):
    """Through the job manager, as the app's button starts it: the runs one after another, the result sentence
    as the job's message, every run folder an ordinary one."""
    base = tiny_config(epochs=2, workers=0)
    job = manager.start_compare(base, (0.3, 1.0))
    assert manager.wait(300)
    status = manager.status("compare")
    assert status["status"] == "done", status["message"]
    assert status["message"].startswith("One Cycle at max LR 0.01 reached ")
    assert status["progress"] == "7/7 runs finished"
    _check_folder(status["result"], (0.3, 1.0))
    assert Path(job.run_dir).parent == manager.runs_root / "sweeps"


def test_compare_schedules_cli(tmp_path, cifar10_dir):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    out = call_lab("compare-schedules", *flags, "--epochs", "2", "--workers", "0", "--lr-factors", "1",
                   "--root", str(tmp_path / "sweeps"), "--data-dir", str(cifar10_dir), "--yes", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "constant, step and cosine each at the best of x1 × that LR (one LR: cheaper" in out.stdout
    assert "cosine: LR 0.01, One Cycle's max LR (not tuned for it)" in out.stdout
    assert "One Cycle at max LR 0.01 reached" in out.stdout
    folder = next((tmp_path / "sweeps").glob("compare-*"))
    _check_folder(json.loads((folder / "sweep.json").read_text()), (1.0,))


def test_a_shared_server_bounds_the_comparison_as_a_whole(runs_root, cifar10):
    """Each run alone fits the caps, ten of them do not: the job is refused before anything starts."""
    from lab.server.jobs import JobManager
    from lab.server.policy import SHARED_CAPS

    shared = JobManager(runs_root=runs_root, data_loader=lambda: cifar10, shared=True)
    learner = TrainConfig.from_flat(**{**__import__("lab.config").config.PRESETS["learner"].knobs, "device": "cpu"})
    with pytest.raises(ConfigError, match=r"10 runs × .* image-epochs, above this shared server's cap of "
                                          f"{SHARED_CAPS['image_epochs']:,}"):
        shared.start_compare(learner, COMPARE_LR_FACTORS)
    assert shared.status() is None and not (runs_root / "sweeps").exists()
    shared.check_compare(learner, (1.0,))  # 4 runs fit


def test_the_page_refuses_where_a_job_is_one_gpu_call_and_says_what_is_wrong(ctx):
    from lab.ui import compare as ui
    from lab.ui.common import control_defaults

    class Streaming:
        streams = True

    assert "compare-schedules" in ui.start(type("C", (), {"runner": Streaming()})(), {}, "grid")
    bad = ui.start(ctx, {**control_defaults(), "epochs": "many"}, "grid")
    assert bad.startswith("⚠") and "epochs" in bad
    assert ui.start(ctx, control_defaults(), "everything").startswith("⚠ the others' LR must be one of")
    assert ctx.manager.status() is None
