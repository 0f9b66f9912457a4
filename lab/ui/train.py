"""Train tab: start and stop a run in the background, watch it live (a gr.Timer polls the job manager), and
compare finished runs.

A run trains with the schedule of the One Cycle tab and the augmentation of the Augment tab; this tab adds the
network width, the data subset and the device. lab.experiment.train does the work; this module only builds the
TrainConfig and draws what the job manager has buffered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lab import plots
from lab import runs as runs_mod
from lab.config import CPU_PRESET, DEVICES, GPU_PRESET, LOADERS, PRESETS, TRAIN_IMAGES, ConfigError, TrainConfig
from lab.data import DataError
from lab.engine import DeviceError
from lab.model import describe as describe_model
from lab.ui.common import AppContext, error_md, fmt_seconds, has_cuda, heading, message, run_label, train_config
from lab.ui.jobs import Busy, NotYours

EPOCH_COLUMNS = ["epoch", "LR", "train loss", "train acc %", "test loss", "test acc %", "seconds", "images/s"]
RUN_COLUMNS = ["run", "status", "epochs", "test acc %", "width", "optimizer", "max LR", "batch", "images", "seconds"]
PRESET_CONTROLS = ("width", "subset", "test_subset", "epochs", "peak_epoch", "batch_size")  # what a preset sets


def default_preset() -> str:
    return GPU_PRESET if has_cuda() else CPU_PRESET


def preset_values(name: str) -> dict[str, Any]:
    """The controls a preset sets, as the app shows them (0 = all images)."""
    knobs = PRESETS[name].config().flat()
    return {k: (knobs[k] or 0) if k in ("subset", "test_subset") else knobs[k] for k in PRESET_CONTROLS}


def start(ctx: AppContext, session: str | None = None, **controls) -> str:
    """Start a run as the server's background job; returns a one-line Markdown message (busy, bad input or
    started) and never waits for the run. Every control is checked (and, on a shared server, every cap) before
    "started". `session`: the browser session starting it (gr.Request.session_hash)."""
    try:
        cfg = train_config(**controls)
        job = ctx.manager.start_training(cfg, owner=session)
    except Busy as e:
        return error_md(str(e))
    except (ConfigError, DataError, DeviceError, OSError) as e:
        return error_md(message(e))
    s = cfg.schedule
    return (f"Run started at {job.started_at} in `{job.run_dir}`: {s.epochs} epoch{'s' * (s.epochs != 1)}, "
            f"batch {cfg.batch_size}, "
            f"width {cfg.width:g}, {cfg.subset or TRAIN_IMAGES:,} training images, {cfg.optimizer.name} "
            f"LR {s.lr_min:.3g} → {s.max_lr:.3g} → {s.lr_min:.3g}.")


def stop(ctx: AppContext, session: str | None = None) -> str:
    try:
        return ctx.manager.stop(session)
    except NotYours as e:
        return error_md(str(e))


def epoch_table(epochs: list[dict]) -> pd.DataFrame:
    rows = [[e["epoch"], f"{e['lr']:.2e}", round(e["train_loss"], 4), round(100 * e["train_acc"], 2),
             round(e["test_loss"], 4), round(100 * e["test_acc"], 2), round(e["seconds"], 1),
             round(e["images_per_s"])] for e in epochs]
    return pd.DataFrame(rows, columns=EPOCH_COLUMNS)


def describe(status: dict | None) -> str:
    """One Markdown paragraph: what the latest run is doing, its speed and ETA, or how it ended."""
    if status is None:
        return "No run yet on this server. Pick a preset, then press **Start**."
    head = heading(status["status"])
    parts = [f"{head} — run `{Path(status['run_dir']).name if status['run_dir'] else '?'}` "
             f"started at {status['started_at']}", status["progress"]]
    if status["steps"]:
        s = status["steps"][-1]
        parts += [f"loss {s['loss']:.3f}", f"LR {s['lr']:.2e}", f"**{s['images_per_s']:,.0f} images/s**"]
        if status["status"] == "running":
            parts.append(f"ETA {fmt_seconds(s['eta'])}")
            if status.get("eta") is not None:
                parts.append(f"ends at about {time.strftime('%H:%M:%S', time.localtime(time.time() + status['eta']))}")
    parts.append(f"elapsed {fmt_seconds(status['elapsed'])}")
    if status["epochs"]:
        parts.append(f"test acc {100 * status['epochs'][-1]['test_acc']:.2f}%")
    text = " · ".join(parts)
    if status["message"]:
        text += f"  \n{status['message']}"
    return text


def runs_table(ctx: AppContext) -> pd.DataFrame:
    rows = []
    for run in runs_mod.list_runs(ctx.runs_root):
        s = run.summary()
        if s.status == "unreadable":
            continue
        rows.append([s.name, s.status, f"{s.epochs_done}/{s.epochs}",
                     round(100 * s.test_acc, 2) if s.test_acc is not None else None, s.width, s.optimizer, s.max_lr,
                     s.batch_size, s.train_images, round(s.seconds, 1) if s.seconds is not None else None])
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


BUNDLED = "bundled checkpoint"  # the picker's name for the bundled checkpoint's recorded training history


def run_choices(ctx: AppContext) -> list[tuple[str, str]]:
    out = [(run_label(r.summary()), r.name) for r in runs_mod.list_runs(ctx.runs_root)]
    if ctx.pretrained_metrics().get("train_history"):
        out.append((f"{BUNDLED} (spec recipe, 24 epochs on a GPU)", BUNDLED))
    return out


def overlay(ctx: AppContext, names: list[str] | None):
    """The overlay figure of the chosen runs' per-epoch curves (the bundled checkpoint's recorded history too)."""
    curves = {}
    for name in names or []:
        if name == BUNDLED:
            history = ctx.pretrained_metrics().get("train_history")
            if history:
                curves[name] = history
            continue
        run = runs_mod.Run(ctx.runs_root / name)
        if run.path.is_dir():
            curves[name] = run.metrics()
    return plots.runs_overlay_figure(curves, title="Runs compared" if curves else None)


def refresh_runs(ctx: AppContext, selected: list[str] | None, newest: bool = False):
    """(run table, run picker, overlay) re-read from disk. The picker keeps its selection (the two newest runs
    when empty); with `newest`, the newest run is added to it (a run just ended: show it)."""
    choices = run_choices(ctx)
    names = [c[1] for c in choices]
    keep = [s for s in (selected or []) if s in names]
    if newest and names and names[0] not in keep:
        keep = [names[0], *keep]
    keep = keep or names[:2]
    return runs_table(ctx), gr.Dropdown(choices=choices, value=keep, multiselect=True), overlay(ctx, keep)


def refresh(ctx: AppContext, seen, selected: list[str] | None = None):
    """Timer tick → (seen, status line, figure, epoch table, run table, run picker, overlay, Start/Stop message),
    skipping what has not changed. `seen` is (the manager's fingerprint of the training job, id of the last
    finished run the run list was refreshed for); the run list and overlay are redrawn on the first tick and
    whenever a run ends. The message under Start/Stop ("started", "busy", "stopping…") is cleared once no job
    runs any more: the status line then says how the run ended, and a stale line would contradict it."""
    version = ctx.manager.fingerprint("train")
    last_seen, finished_seen = seen if isinstance(seen, (list, tuple)) else (None, None)
    if last_seen is not None and tuple(last_seen) == version:
        return (gr.skip(),) * 8
    status = ctx.manager.status("train")
    busy = ctx.manager.busy_message()
    line = describe(status)
    if busy and (status is None or status["status"] != "running"):
        line = error_md(busy) + "  \n" + line  # a range test holds the server
    fig = plots.training_figure(status["steps"], status["epochs"]) if status else plots.training_figure([], [])
    table = epoch_table(status["epochs"]) if status else epoch_table([])
    finished = status["id"] if status and status["status"] != "running" else None
    runs_out: tuple = (gr.skip(),) * 3
    if finished != finished_seen or last_seen is None:
        runs_out = refresh_runs(ctx, selected if last_seen is not None else None, newest=finished != finished_seen)
    note = "" if last_seen is not None and busy is None else gr.skip()
    return ((version, finished), line, fig, table, *runs_out, note)


def model_summary(width) -> str:
    try:
        TrainConfig(width=float(width))
    except (ConfigError, TypeError, ValueError) as e:
        return error_md(str(e))
    return f"```\n{describe_model(float(width))}\n```"


def build(ctx: AppContext, preset: str) -> dict:
    values = preset_values(preset)
    gr.Markdown("Trains with the **One Cycle** tab's schedule and the **Augment** tab's augmentation. The run "
                "trains in the background: you can leave this page and come back; its folder under `runs/` holds "
                "the config, the per-epoch metrics and the checkpoint. One job runs at a time on this server.")
    if ctx.data_message():
        gr.Markdown(ctx.data_message())
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            preset_dd = gr.Dropdown([(p.label, name) for name, p in PRESETS.items()], value=preset, label="preset",
                                    elem_id="train-preset")
            width = gr.Slider(0.125, 2, value=values["width"], step=0.125, label="width (1 = the spec network)",
                              elem_id="train-width")
            subset = gr.Number(value=values["subset"], precision=0, minimum=0,
                               label="training images (0 = all 50,000)", elem_id="train-subset")
            test_subset = gr.Number(value=values["test_subset"], precision=0, minimum=0,
                                    label="test images (0 = all 10,000)", elem_id="train-test-subset")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="train-seed")
            device = gr.Radio(list(DEVICES), value="auto", label="device")
            loader = gr.Radio(list(LOADERS), value="auto", label="loader (auto: fast on CUDA, reference on CPU)")
            with gr.Row():
                start_btn = gr.Button("▶ Start", variant="primary", elem_id="train-start")
                stop_btn = gr.Button("■ Stop", variant="stop", elem_id="train-stop")
            message = gr.Markdown(elem_id="train-message")
        with gr.Column(scale=3):
            line = gr.Markdown(elem_id="train-status")
            figure = gr.Plot(label="training curves", elem_id="train-plot")
            table = gr.Dataframe(headers=EPOCH_COLUMNS, label="epochs", interactive=False, wrap=True,
                                 elem_id="train-epochs")
            with gr.Accordion("Raw job status (what the train_status API returns)", open=False):
                raw_btn = gr.Button("Read the job status")
                raw = gr.JSON()
    with gr.Accordion("Model summary", open=False):
        summary_btn = gr.Button("Show the layer table for this width")
        summary_md = gr.Markdown()
    gr.Markdown("### Runs on this server")
    with gr.Row():
        picker = gr.Dropdown(choices=run_choices(ctx), multiselect=True, label="overlay these runs", scale=4)
        runs_refresh = gr.Button("↻ refresh", scale=1)
    overlay_plot = gr.Plot(plots.runs_overlay_figure({}), label="runs compared", elem_id="runs-overlay-plot")
    runs_df = gr.Dataframe(headers=RUN_COLUMNS, label="runs (newest first)", interactive=False, wrap=True)

    seen = gr.State(None)
    timer = gr.Timer(1.0)
    timer.tick(lambda s, sel: refresh(ctx, s, sel), [seen, picker], [seen, line, figure, table, runs_df, picker,
                                                                     overlay_plot, message],
               api_visibility="private", concurrency_limit=None, show_progress="hidden", queue=False)
    picker.change(lambda names: overlay(ctx, names), picker, overlay_plot, api_visibility="private",
                  show_progress="hidden")
    runs_refresh.click(lambda sel: refresh_runs(ctx, sel), picker, [runs_df, picker, overlay_plot],
                       api_visibility="private")
    summary_btn.click(model_summary, width, summary_md, api_visibility="private")

    def train_stop(request: gr.Request) -> str:
        """Ask the running job to stop after its current step (on a shared server, only the browser session that
        started it may)."""
        return stop(ctx, request.session_hash if request is not None else None)

    def train_status() -> dict:
        """The current or last job: kind, status, progress, epoch records, last step (JSON)."""
        return ctx.manager.status_json()

    stop_btn.click(train_stop, None, message, api_name="train_stop", concurrency_limit=None)
    raw_btn.click(train_status, None, raw, api_name="train_status", concurrency_limit=None)
    return {"preset": preset_dd, "width": width, "subset": subset, "test_subset": test_subset, "seed": seed,
            "device": device, "loader": loader, "start": start_btn, "stop": stop_btn, "message": message,
            "line": line, "figure": figure, "table": table, "raw": raw, "picker": picker, "overlay": overlay_plot,
            "runs_df": runs_df, "runs_refresh": runs_refresh, "timer": timer}
