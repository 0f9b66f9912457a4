"""Sweep tab: a grid of max LRs × seeds on a preset, run by lab.sweep (Ray Tune) as the server's one background
job, with a live table of trials, the accuracy-against-max-LR figure beside the range test's curve and
suggestions, and the trials' curves overlaid.

The tab builds a lab.sweep.SweepSpec; the job manager runs it in a child process (`python -m lab sweep
--resume FOLDER`) and follows its sweep.json. Everything shown here is read from that file and the trials' run
folders, so a sweep started from the command line looks the same once it is on disk.
"""

from __future__ import annotations

import math
from pathlib import Path

import gradio as gr
import pandas as pd

from lab import plots
from lab import sweep as sweep_mod
from lab.config import (OPTIMIZERS, PRESETS, RANGE_TEST_ITERS, RANGE_TEST_RULES, SWEEP_LR_FACTORS, SWEEP_SEEDS,
                        ConfigError)
from lab.data import DataError
from lab.runs import Run
from lab.server.jobs import SWEEP_SHARED_OFF, Busy, NotYours
from lab.server.policy import CPU_SWEEP_PRESET, GPU_PRESET
from lab.ui.common import AppContext, error_md, fmt_seconds, has_cuda, heading

# A server's sweep is bounded before it starts: this many trials (configurations × seeds) at most, each a whole
# training run of the chosen preset.
MAX_TRIALS = 60
DEFAULT_LRS = ", ".join(f"x{f:g}" for f in SWEEP_LR_FACTORS)
TRIAL_COLUMNS = ["configuration", "seed", "status", "epoch", "test acc %", "seconds"]
SUMMARY_COLUMNS = ["configuration", "max LR", "from", "test acc % (mean)", "± std", "seeds", "best"]


def default_preset() -> str:
    return GPU_PRESET if has_cuda() else CPU_SWEEP_PRESET


def spec_for(preset: str, optimizer: str, lrs: str, seeds, iters) -> sweep_mod.SweepSpec:
    """The tab's controls → a validated SweepSpec (ConfigError with a readable message otherwise)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    try:
        n_seeds, n_iters = float(seeds), float(iters)
    except (TypeError, ValueError):
        raise ConfigError(f"seeds and range-test iterations must be whole numbers, got {seeds!r} and {iters!r}") from None
    if not (math.isfinite(n_seeds) and n_seeds == int(n_seeds) and n_seeds >= 1):
        raise ConfigError(f"seeds must be a whole number ≥ 1, got {seeds!r}")
    if not (math.isfinite(n_iters) and n_iters == int(n_iters)):
        raise ConfigError(f"range-test iterations must be a whole number, got {iters!r}")
    base = PRESETS[preset].config(optimizer=optimizer)
    spec = sweep_mod.SweepSpec(base, {"max_lr": sweep_mod.parse_values("max_lr", lrs or "")},
                               seeds=list(range(int(n_seeds))), range_test={"iters": int(n_iters)})
    spec.validate()
    trials = len(spec.combos()) * len(spec.seeds)
    if trials > MAX_TRIALS:
        raise ConfigError(f"{trials} trials asked for ({len(spec.combos())} max LRs × {len(spec.seeds)} seeds); "
                          f"this server runs at most {MAX_TRIALS} per sweep: fewer LRs or seeds")
    return spec


def start(ctx: AppContext, preset: str, optimizer: str, lrs: str, seeds, iters, session: str | None = None) -> str:
    """Start a sweep as the server's background job; a one-line Markdown message (busy, bad input or started).
    Refused where the runner cannot run sweeps (its sweep_refusal) and on any shared server (SWEEP_SHARED_OFF).
    `session`: the browser session."""
    if ctx.runner.sweep_refusal:
        return error_md(ctx.runner.sweep_refusal)
    if ctx.manager.shared:
        return error_md(SWEEP_SHARED_OFF)
    try:
        spec = spec_for(preset, optimizer, lrs, seeds, iters)
        job = ctx.manager.start_sweep(spec, owner=session)
    except (Busy, ConfigError, DataError, TypeError, ValueError) as e:
        return error_md(str(e))
    n = len(spec.combos()) * len(spec.seeds)
    return (f"Sweep started at {job.started_at} in `{job.run_dir}`: {len(spec.combos())} max LRs × "
            f"{len(spec.seeds)} seeds = {n} trials of the {preset} preset (a range test of "
            f"{spec.range_test['iters']} iterations first).")


def stop(ctx: AppContext, session: str | None) -> str:
    try:
        return ctx.runner.stop(session)
    except NotYours as e:
        return error_md(str(e))


def trials_table(doc: dict | None) -> pd.DataFrame:
    rows = []
    for t in (doc or {}).get("trials", []):
        acc = t.get("test_acc")
        rows.append([t["label"], t["seed"], t["status"], f"{t['epoch'] or 0}/{t['epochs']}",
                     round(100 * acc, 2) if isinstance(acc, float) else None,
                     round(t["seconds"], 1) if t.get("seconds") else None])
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def summary_table(doc: dict | None) -> pd.DataFrame:
    s = (doc or {}).get("summary", {})
    rows = [[r["label"], f"{r['max_lr']:.3g}", ", ".join(r["lr_from"]) or "grid",
             round(r["mean"], 2) if r["mean"] is not None else None,
             round(r["std"], 2) if r["std"] is not None else None, r["n"], "★" if r["key"] == s.get("best") else ""]
            for r in s.get("configurations", [])]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def figure(doc: dict | None):
    if not doc or not doc.get("summary", {}).get("configurations"):
        return plots.empty_figure("the figure appears once the range test has run and trials report")
    return plots.sweep_figure(doc)


def trials_overlay(doc: dict | None):
    """The trials' per-epoch curves (from their run folders), one line per trial."""
    curves = {}
    for t in (doc or {}).get("trials", []):
        run = Run(Path(t["run_dir"]))
        if run.path.is_dir():
            curves[f"{t['label']} · seed {t['seed']}"] = run.metrics()
    return plots.runs_overlay_figure(curves, title="The sweep's trials" if curves else None)


def describe(status: dict | None) -> str:
    if status is None:
        return "No sweep yet on this server. Pick a preset, max LRs and seeds, then press **Start sweep**."
    parts = [f"{heading(status['status'])} — sweep `{Path(status['run_dir']).name if status['run_dir'] else '?'}` "
             f"started at {status['started_at']}", status["progress"], f"elapsed {fmt_seconds(status['elapsed'])}"]
    text = " · ".join(parts)
    if status["message"]:
        text += f"  \n{status['message']}"
    return text


def refresh(ctx: AppContext, seen):
    """Timer tick → (seen, status line, trials, summary, figure, overlay), skipping what has not changed."""
    version = ctx.manager.fingerprint("sweep")
    if seen is not None and tuple(seen) == version:
        return (gr.skip(),) * 6
    status = ctx.runner.status("sweep")
    doc = status["result"] if status else None
    line = describe(status)
    busy = ctx.manager.busy_message()
    if busy and (status is None or status["status"] != "running"):
        line = error_md(busy) + "  \n" + line
    return version, line, trials_table(doc), summary_table(doc), figure(doc), trials_overlay(doc)


def build(ctx: AppContext) -> dict:
    gr.Markdown("Many runs at once: every max LR below × every seed, each an ordinary run folder under "
                "`runs/sweeps/<id>/`, scheduled by **Ray Tune** over this server's cores and GPUs. Max LRs are "
                "numbers, **x*F*** (*F* × the range test's suggestion, found first on the same preset) or rule "
                f"names ({', '.join(f'`{r}`' for r in RANGE_TEST_RULES)}, or `rules` for all). The figure shows "
                "where the range test's suggestion lands against the sweep's best. Every trial runs its whole "
                "One Cycle (no early stopping: One Cycle's first epochs rank LRs badly). One job at a time on this "
                f"server; at most {MAX_TRIALS} trials per sweep. The same from a terminal: `python -m lab sweep`.")
    if ctx.data_message():
        gr.Markdown(ctx.data_message())
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            preset = gr.Dropdown([(p.label, name) for name, p in PRESETS.items()], value=default_preset(),
                                 label="preset", elem_id="sweep-preset")
            optimizer = gr.Radio(list(OPTIMIZERS), value=OPTIMIZERS[0], label="optimizer")
            lrs = gr.Textbox(value=DEFAULT_LRS, label="max LRs (comma-separated)", elem_id="sweep-lrs")
            seeds = gr.Number(value=SWEEP_SEEDS, precision=0, minimum=1, label="seeds per max LR",
                              elem_id="sweep-seeds")
            iters = gr.Number(value=RANGE_TEST_ITERS, precision=0, minimum=2, label="range-test iterations",
                              elem_id="sweep-iters")
            with gr.Row():
                start_btn = gr.Button("▶ Start sweep", variant="primary", elem_id="sweep-start")
                stop_btn = gr.Button("■ Stop", variant="stop", elem_id="sweep-stop")
            message = gr.Markdown(elem_id="sweep-message")
        with gr.Column(scale=3):
            line = gr.Markdown(elem_id="sweep-status")
            fig = gr.Plot(figure(None), label="test accuracy against max LR", elem_id="sweep-plot")
            summary = gr.Dataframe(headers=SUMMARY_COLUMNS, label="per max LR: mean ± std over seeds",
                                   interactive=False, wrap=True, elem_id="sweep-summary")
    trials = gr.Dataframe(headers=TRIAL_COLUMNS, label="trials", interactive=False, wrap=True, elem_id="sweep-trials")
    overlay = gr.Plot(plots.runs_overlay_figure({}), label="the trials' curves", elem_id="sweep-overlay")

    seen = gr.State(None)
    timer = gr.Timer(1.0)
    timer.tick(lambda s: refresh(ctx, s), seen, [seen, line, trials, summary, fig, overlay],
               api_visibility="private", concurrency_limit=None, show_progress="hidden", queue=False)

    def sweep_start(preset: str, optimizer: str, max_lrs: str, seeds: float, iters: float,
                    request: gr.Request) -> str:
        """Start a sweep of max LRs × seeds on a preset in the background (poll train_status: kind 'sweep'; its
        result is the sweep.json document). Stop it with sweep_stop. Refused on a shared server."""
        return start(ctx, preset, optimizer, max_lrs, seeds, iters, getattr(request, "session_hash", None))

    def sweep_stop(request: gr.Request) -> str:
        """Stop the running job: a sweep's every trial stops; finished trials are kept and it can be resumed. On a
        shared server only the browser session that started the job may stop it."""
        return stop(ctx, getattr(request, "session_hash", None))

    start_btn.click(sweep_start, [preset, optimizer, lrs, seeds, iters], message, api_name="sweep_start",
                    concurrency_limit=None)
    stop_btn.click(sweep_stop, None, message, api_name="sweep_stop", concurrency_limit=None)
    return {"preset": preset, "optimizer": optimizer, "lrs": lrs, "seeds": seeds, "iters": iters,
            "start": start_btn, "stop": stop_btn, "message": message, "line": line, "figure": fig,
            "summary": summary, "trials": trials, "overlay": overlay, "timer": timer}
