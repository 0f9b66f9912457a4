"""LR range test tab: raise the LR every iteration and watch the loss; the curve grows while the background job
runs, the suggestions are marked when it ends, and "use these" copies LRMAX / LRMIN into the One Cycle tab."""

from __future__ import annotations

import math

import gradio as gr

from lab import plots
from lab.config import (OPTIMIZERS, RANGE_TEST_END_LR, RANGE_TEST_ITERS, RANGE_TEST_MODES, RANGE_TEST_START_LR,
                        ConfigError, TrainConfig)
from lab.data import DataError
from lab.engine import DeviceError
from lab.ui.common import AppContext, choice, error_md, fmt_seconds, heading, message, number, train_config, whole
from lab.ui.jobs import Busy, NotYours


def start(ctx: AppContext, controls: dict, iters, start_lr, end_lr, mode, optimizer, session: str | None = None) -> str:
    """Start the range test as the server's background job, for the run that every training control describes
    (with this tab's optimizer); returns a one-line Markdown message. Every setting is checked (type, range,
    start LR below end LR, the caps on a shared server) before "started". LRMIN will be the found LRMAX / the One
    Cycle tab's div factor, as "use these" sets it. `session`: the browser session starting it."""
    try:
        kwargs = dict(iters=whole("iters", "iterations", iters), start_lr=number("start_lr", "start LR", start_lr),
                      end_lr=number("end_lr", "end LR", end_lr), mode=choice("mode", "LR increase", mode,
                                                                             RANGE_TEST_MODES))
        cfg = train_config(**{**controls, "optimizer": choice("optimizer", "optimizer", optimizer, OPTIMIZERS)})
        # the One Cycle tab's LRMAX : LRMIN ratio, whether it is set as a div factor or as min LR
        kwargs["div_factor"] = cfg.schedule.max_lr / cfg.schedule.lr_min
        job = ctx.manager.start_range_test(cfg, owner=session, **kwargs)
    except Busy as e:
        return error_md(str(e))
    except (ConfigError, DataError, DeviceError, OSError) as e:
        return error_md(message(e))
    return (f"Range test started at {job.started_at}: {kwargs['iters']} iterations, LR {kwargs['start_lr']:.1e} → "
            f"{kwargs['end_lr']:.1e} ({mode}), {optimizer}, batch {cfg.batch_size}, width {cfg.width:g}.")


def figure(status: dict | None):
    """The curve of the latest range test: the points so far while it runs, the full result when it is over."""
    if status is None:
        return plots.empty_figure("no range test yet — press Run")
    if status.get("result"):
        return plots.lr_finder_figure(status["result"])
    pts = [(lr, loss) for _, lr, loss in status["points"] if math.isfinite(loss)]
    return plots.lr_finder_figure({"lrs": [p[0] for p in pts], "losses": [p[1] for p in pts], "suggestions": {}})


def describe(status: dict | None, busy: str | None = None) -> tuple[str, str]:
    """(status line, suggestions Markdown) for the latest range test."""
    if status is None:
        return (busy and error_md(busy)) or "No range test has run on this server yet.", ""
    line = (f"{heading(status['status'])} — range test started at {status['started_at']} · {status['progress']} · "
            f"{fmt_seconds(status['elapsed'])}")
    if status["message"]:
        line += f"  \n{status['message']}"
    if busy and status["status"] != "running":
        line = error_md(busy) + "  \n" + line
    r = status.get("result")
    if not r:
        return line, ""
    rows = "\n".join(f"| {name} | {lr:.3g} |" for name, lr in r.get("suggestions", {}).items())
    notes = "".join(f"\n- {n}" for n in r.get("notes", []))
    text = (f"**Suggested LRMAX {r['max_lr']:.3g}** (rule: {r['rule']}) · **LRMIN {r['min_lr']:.3g}**\n\n"
            f"| rule | LR |\n|---|---|\n{rows}\n{notes}")
    return line, text


def stop(ctx: AppContext, session: str | None = None) -> str:
    try:
        return ctx.manager.stop(session)
    except NotYours as e:
        return error_md(str(e))


def use_these(ctx: AppContext):
    """(max LR, 'min LR' mode, min LR, optimizer, message) from the latest finished range test."""
    status = ctx.manager.status("lr_range")
    r = status and status.get("result")
    if not r:
        nothing = error_md("run a range test first: there is nothing to use yet")
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), nothing
    opt = TrainConfig.from_dict(status["config"]["train"]).optimizer.name
    return (r["max_lr"], "min LR", r["min_lr"], opt,
            f"One Cycle tab set to LRMAX {r['max_lr']:.3g}, LRMIN {r['min_lr']:.3g} ({opt}).")


def refresh(ctx: AppContext, seen: int | None):
    """Timer tick: (seen, figure, status line, suggestions, Run/Stop message) — all skipped when nothing it shows
    has changed. The message under Run/Stop is cleared once no job runs any more (the status line says how the
    test ended; "started" or "stopping…" would be stale)."""
    version = ctx.manager.fingerprint("lr_range")
    if seen is not None and tuple(seen) == version:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    status = ctx.manager.status("lr_range")
    busy = ctx.manager.busy_message()
    note = "" if seen is not None and busy is None else gr.skip()
    if busy and status is not None and status["status"] == "running":
        busy = None  # the status line already says it is running
    line, text = describe(status, busy)
    return version, figure(status), line, text, note


def build(ctx: AppContext) -> dict:
    gr.Markdown("The LR range test (Smith 2015; torch-lr-finder) trains for a few hundred steps while the LR rises "
                "from *start* to *end*, recording the smoothed loss. LRMAX is taken just before the loss turns "
                "up, LRMIN a fraction of it. It uses the batch size of the *One Cycle* tab and the network width, "
                "data subset and augmentation of the *Train* and *Augment* tabs, and runs as this server's one "
                "background job.")
    if ctx.data_message():
        gr.Markdown(ctx.data_message())
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            iters = gr.Slider(10, 500, value=RANGE_TEST_ITERS, step=10, label="iterations", elem_id="lr-iters")
            start_lr = gr.Number(value=RANGE_TEST_START_LR, label="start LR", minimum=0, elem_id="lr-start-lr")
            end_lr = gr.Number(value=RANGE_TEST_END_LR, label="end LR", minimum=0, elem_id="lr-end-lr")
            mode = gr.Radio(list(RANGE_TEST_MODES), value=RANGE_TEST_MODES[0], label="LR increase")
            optimizer = gr.Radio(list(OPTIMIZERS), value=OPTIMIZERS[0], label="optimizer")
            with gr.Row():
                run = gr.Button("▶ Run range test", variant="primary", elem_id="lr-run")
                stop = gr.Button("■ Stop", variant="stop", elem_id="lr-stop")
            use = gr.Button("Use these in One Cycle", elem_id="lr-use")
            message = gr.Markdown(elem_id="lr-message")
        with gr.Column(scale=3):
            line = gr.Markdown(elem_id="lr-status")
            plot = gr.Plot(label="loss vs LR (log)", elem_id="lr-range-plot")
            suggestions = gr.Markdown(elem_id="lr-suggestions")
    seen = gr.State(None)
    timer = gr.Timer(1.0)
    timer.tick(lambda s: refresh(ctx, s), seen, [seen, plot, line, suggestions, message], api_visibility="private",
               concurrency_limit=None, show_progress="hidden", queue=False)
    return {"iters": iters, "start_lr": start_lr, "end_lr": end_lr, "mode": mode, "optimizer": optimizer,
            "run": run, "stop": stop, "use": use, "message": message, "plot": plot, "line": line,
            "suggestions": suggestions, "seen": seen, "timer": timer}
