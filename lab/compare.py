"""Compare schedules: one configuration trained under each LR schedule in turn, at one budget — the claim One Cycle
exists to teach (Smith & Topin: a large peak LR reaches in a few epochs what ordinary schedules need more for), shown
rather than told.

Each schedule trains at the LR a learner would pick for it:
- One Cycle at its max LR: the one the LR range test set (the app's One Cycle max LR; the CLI's --max-lr, or
  `--max-lr find` to run the test first);
- constant, step and cosine at the best of lab.config.COMPARE_LR_FACTORS × that max LR (one run per factor: 3 per
  baseline, 10 runs in all), or with the cheaper choice ("same": factors (1,), 4 runs) at One Cycle's max LR too.

Choices, and why:
- A loop over lab.experiment.train, not a Ray sweep (`python -m lab sweep --grid schedule=…`). A sweep's grid is a
  product, so every schedule would get every LR (One Cycle too: 12 runs, not 10); Ray costs seconds of CPU and a
  child process to start, and sweeps are off on a shared server, where this comparison is the one a visitor may
  run (bounded as a whole: lab.server.policy.check_total). On 2 cores, runs side by side are no faster than in turn.
- The comparison's folder is a sweep's (runs/sweeps/compare-<time>/: spec.json, sweep.json, sweep.csv, sweep.html,
  runs/<config>_seed<k>/), written by lab.sweep's own Sweep.record: each schedule is a series of the sweep, so the
  summary, the CSV and the accuracy-against-LR figure are a sweep's, and every run is an ordinary run folder that
  lab.runs reads. spec.json's "compare" says what was compared and how each LR was chosen; compare.html overlays
  the curves.
- One seed (the configuration's): the LR grid already multiplies the runs; the seed-to-seed spread of a preset is
  in benchmarks/RESULTS.md.
- Each baseline keeps One Cycle's LRMIN ratio (LRMIN = its LR / the div factor One Cycle uses): cosine anneals
  to it, constant and step ignore it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab import config as C
from lab.config import ConfigError, TrainConfig
from lab.runs import new_run_dir
from lab.sweep import FIGURE, SWEEP_ROOT, Sweep, _trial_record

PREFIX = "compare-"  # a comparison's folder under the sweeps root
HTML = "compare.html"  # the overlaid curves, beside the sweep's own figure
ONE_CYCLE = C.SCHEDULES[0]
BASELINES = C.SCHEDULES[1:]
NAMES = {"one-cycle": "One Cycle", "constant": "constant", "step": "step", "cosine": "cosine"}


def factors_for(choice: str) -> tuple[float, ...]:
    """The LR factors of an "others' LR" choice (lab.config.COMPARE_LR_CHOICES); ConfigError otherwise."""
    if choice not in C.COMPARE_LR_CHOICES:
        raise ConfigError(f"the others' LR must be one of {', '.join(C.COMPARE_LR_CHOICES)}, got {choice!r:.60}",
                          "others_lr")
    return C.COMPARE_LR_CHOICES[choice]


def parse_factors(text: str | Sequence[float]) -> tuple[float, ...]:
    """'0.1,0.3,1' (or numbers) → distinct positive factors, in order; ConfigError otherwise."""
    items = [t.strip() for t in text.split(",") if t.strip()] if isinstance(text, str) else list(text)
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(f"LR factors must be numbers, comma-separated (e.g. 0.1,0.3,1), got {text!r:.60}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"LR factors must be one or more positive numbers, got {text!r:.60}")
    return tuple(dict.fromkeys(values))


def lr_grid(max_lr: float, factors: Sequence[float]) -> dict[str, list[float]]:
    """schedule → the LRs it trains at: One Cycle at `max_lr`, each baseline at every factor × `max_lr`."""
    return {ONE_CYCLE: [max_lr], **{s: [f * max_lr for f in factors] for s in BASELINES}}


def plan(base: TrainConfig, factors: Sequence[float]) -> list[TrainConfig]:
    """The runs, in the order they train (One Cycle first): `base` under each schedule at each of its LRs."""
    flat = base.flat()
    div = base.schedule.max_lr / base.schedule.lr_min  # LRMIN keeps One Cycle's ratio to each run's LR
    out = []
    for schedule, lrs in lr_grid(base.schedule.max_lr, factors).items():
        for lr in lrs:
            try:
                out.append(TrainConfig.from_flat(**{**flat, "schedule": schedule, "max_lr": lr, "min_lr": None,
                                                    "div_factor": div}))
            except ConfigError as e:
                raise ConfigError(f"the {NAMES[schedule]} run at LR {lr:.3g} cannot run: {e}", e.knob) from None
    return out


def _configurations(runs: list[TrainConfig], factors: Sequence[float]) -> list[dict[str, Any]]:
    """The runs as lab.sweep configurations (what Sweep.record summarises): one series per schedule."""
    out = []
    by_schedule: dict[str, int] = {}
    for i, cfg in enumerate(runs):
        s = cfg.schedule.policy
        k = by_schedule[s] = by_schedule.get(s, -1) + 1
        lr_from = "max LR" if s == ONE_CYCLE else f"x{factors[k]:g}"
        values = {"schedule": s, "max_lr": cfg.schedule.max_lr}
        out.append({"key": f"c{i:02d}", "label": f"schedule={s}, max_lr={cfg.schedule.max_lr:.3g}", "values": values,
                    "max_lr": cfg.schedule.max_lr, "lr_from": [lr_from], "series": f"schedule={s}", "group": None,
                    "config": cfg.to_dict(), "suggestions": {}, "rule": None, "suggested": None})
    return out


def create(base: TrainConfig, factors: Sequence[float], root: str | Path = SWEEP_ROOT) -> Sweep:
    """The comparison's folder (a sweep's: spec.json with the runs it will train); nothing trains yet."""
    runs = plan(base, factors)
    sweep = Sweep(new_run_dir(Path(root), prefix=PREFIX))
    spec = {"base": base.to_dict(), "grid": {"schedule": list(C.SCHEDULES)}, "seeds": [base.seed],
            "range_test": None, "cpus_per_trial": 1.0, "gpus_per_trial": None, "max_concurrent": 1}
    compare = {"one_cycle_lr": base.schedule.max_lr, "factors": list(factors),
               "lrs": lr_grid(base.schedule.max_lr, factors),
               "how": "One Cycle at its max LR (the range test's); every other schedule at the best of "
                      + ", ".join(f"x{f:g}" for f in factors) + " × that LR"}
    sweep.write_state({"id": sweep.id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": "compare",
                       "spec": spec, "compare": compare, "range_tests": {}, "notes": [],
                       "configurations": _configurations(runs, factors)})
    return sweep


def run(sweep: Sweep, data, *, stop: threading.Event | None = None, on_update: Callable[[dict], None] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the comparison's runs one after another into its folder; sweep.json is rewritten after every epoch
    (`on_update` gets it). Returns the final sweep.json document: status done, stopped (the stop flag: the run in
    progress keeps its finished epochs, the rest stay pending) or failed (every run failed)."""
    from lab.engine import Diverged
    from lab.experiment import train

    state = sweep.state()
    configurations, seed = state["configurations"], state["spec"]["seeds"][0]
    records = [_trial_record(c, seed, None, "", None, sweep.run_dir(c, seed)) for c in configurations]
    status = "done"

    def publish(run_status: str = "running") -> dict[str, Any]:
        doc = sweep.record(records, run_status)
        if on_update is not None:
            on_update(doc)
        return doc

    publish()
    for i, c in enumerate(configurations):
        cfg = TrainConfig.from_dict({**c["config"], "seed": seed})
        run_dir = sweep.run_dir(c, seed)
        t0 = time.perf_counter()
        log(f"[{i + 1}/{len(configurations)}] {NAMES[c['values']['schedule']]} at LR {c['max_lr']:.3g} "
            f"({c['lr_from'][0]})")

        def on_epoch(event, i=i, c=c, t0=t0, run_dir=run_dir) -> None:
            if event.kind == "epoch":
                rec = {**event.data, "status": "running", "time_total_s": time.perf_counter() - t0}
                records[i] = _trial_record(c, seed, rec, "RUNNING", None, run_dir)
                publish()

        result, error = {}, None
        try:
            res = train(cfg, data, callbacks=[on_epoch], stop=stop, run_dir=run_dir,
                        extra_config={"sweep": {"id": sweep.id, "folder": str(sweep.path), "configuration": c["key"],
                                                "label": c["label"], "lr_from": c["lr_from"]}}, step_every=0)
            result = {**res.final, "status": "done" if res.status == "done" else "stopped", "time_total_s": res.seconds}
        except Diverged as e:
            result = {"status": "diverged", "error": str(e)}
        except KeyboardInterrupt:
            records[i] = _trial_record(c, seed, {"status": "stopped"}, "", None, run_dir)
            publish("stopped")
            raise
        except Exception as e:  # recorded (its run folder says why); the next schedule still trains
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        records[i] = _trial_record(c, seed, result, "", error, run_dir)  # a "stopped" result reads stopped
        acc = records[i]["test_acc"]
        log(f"    {records[i]['status']}" + (f": {100 * acc:.2f}%" if acc is not None else "")
            + (f" ({records[i]['error']})" if records[i]["error"] else ""))
        if result.get("status") == "stopped" or (stop is not None and stop.is_set()):
            status = "stopped"
            break
    if status == "done" and all(r["status"] == "error" for r in records):
        status = "failed"
    doc = sweep.record(records, status, write_figure=True)
    _write_curves(sweep, doc)
    if on_update is not None:
        on_update(doc)
    return doc


def _write_curves(sweep: Sweep, doc: dict[str, Any]) -> None:
    from lab.plots import compare_figure
    from lab.runs import atomic_write_text

    # plotly.js embedded (~4.7 MB), as the sweep's figure: the page opens offline
    atomic_write_text(sweep.path / HTML, compare_figure(curves(doc)).to_html(include_plotlyjs=True))


# ------------------------------------------------------------------------------------------------ reading


def best_runs(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """schedule → its best finished run: {"lr", "acc" (%), "epochs", "run_dir", "tried": [(lr, acc % or None)]},
    in the order of lab.config.SCHEDULES; a schedule with no finished run is left out."""
    if not doc:
        return {}
    summary = doc.get("summary", {})
    rows = {r["key"]: r for r in summary.get("configurations", [])}
    trials = {t["key"]: t for t in doc.get("trials", [])}
    out = {}
    for s in C.SCHEDULES:
        series = next((x for x in summary.get("series", []) if x["series"] == f"schedule={s}"), None)
        if series is None or series.get("best") is None:
            continue
        members = sorted((r for r in rows.values() if r["series"] == f"schedule={s}"), key=lambda r: r["max_lr"])
        best = trials[series["best"]]
        out[s] = {"lr": series["best_lr"], "acc": series["best_mean"], "epochs": best["epochs"],
                  "run_dir": best["run_dir"], "tried": [(r["max_lr"], r["mean"]) for r in members]}
    return out


def picks(doc: dict[str, Any] | None) -> list[str]:
    """One line per schedule: the LR it was given and why, e.g. "cosine: LR 0.003, the best of 0.001 (61.2%),
    0.003 (71.2%), 0.01 (69.0%)"."""
    out = []
    for s, v in best_runs(doc).items():
        if s == ONE_CYCLE:
            out.append(f"{NAMES[s]}: LR {v['lr']:.3g}, its max LR (the range test's): {v['acc']:.2f}%")
            continue
        tried = ", ".join(f"{lr:.3g} ({'—' if acc is None else f'{acc:.2f}%'})" for lr, acc in v["tried"])
        out.append(f"{NAMES[s]}: LR {v['lr']:.3g}, the best of {tried}" if len(v["tried"]) > 1
                   else f"{NAMES[s]}: LR {v['lr']:.3g}, One Cycle's max LR (not tuned for it): {v['acc']:.2f}%")
    return out


def sentence(doc: dict[str, Any] | None) -> str:
    """The comparison's result in one sentence with its numbers, e.g. "One Cycle at max LR 0.01 reached 78.10% in
    3 epochs; the best other, cosine at LR 0.003 (best of 0.001, 0.003, 0.01), reached 71.20%: One Cycle is 6.90
    points ahead." Partial results say "so far"."""
    best = best_runs(doc)
    if not best:
        return "No run of the comparison has finished yet."
    so_far = " so far" if (doc or {}).get("status") == "running" else ""
    oc = best.get(ONE_CYCLE)
    others = {s: v for s, v in best.items() if s != ONE_CYCLE}
    top = max(others, key=lambda s: others[s]["acc"]) if others else None

    def other_text(s: str) -> str:
        v = others[s]
        tried = [lr for lr, acc in v["tried"] if acc is not None]
        grid = f" (best of {', '.join(f'{lr:.3g}' for lr in tried)})" if len(tried) > 1 else ""
        return f"{NAMES[s]} at LR {v['lr']:.3g}{grid}, reached {v['acc']:.2f}%"

    if oc is None:
        return f"One Cycle has no finished run{so_far}; the best other, {other_text(top)}."
    head = f"One Cycle at max LR {oc['lr']:.3g} reached {oc['acc']:.2f}% in {oc['epochs']} epoch{'s' * (oc['epochs'] != 1)}"
    if top is None:
        return f"{head}; no other schedule has finished{so_far}."
    gap = oc["acc"] - others[top]["acc"]
    verdict = (f"One Cycle is {gap:.2f} points ahead" if gap > 0 else
               f"One Cycle is {-gap:.2f} points behind" if gap < 0 else "a tie")
    return f"{head}; the best other, {other_text(top)}: {verdict}{so_far}."


def curves(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """schedule → {"label", "epochs": the best run's metrics.jsonl records, "lr": its per-step LR curve
    (lab.schedule.preview: the scheduler the run trained with, stepped without training)}, for plots.compare_figure."""
    from lab import schedule as sched
    from lab.runs import Run

    out = {}
    for s, v in best_runs(doc).items():
        run = Run(Path(v["run_dir"]))
        try:
            cfg, doc_cfg = run.config, run.config_doc()
        except (OSError, ValueError, KeyError):  # a folder removed or damaged since: left out, the rest still show
            continue
        steps = doc_cfg.get("steps_per_epoch") or 1
        lr = sched.preview(cfg.schedule, steps, cfg.optimizer.name)
        out[s] = {"label": f"{NAMES[s]} (LR {v['lr']:.3g}): {v['acc']:.2f}%", "epochs": run.metrics(),
                  "lr": {"epoch": lr["epoch"], "lr": lr["lr"]}}
    return out
