"""Train tab: start and stop a run in the background, watch it live (a gr.Timer polls the job manager), and
compare finished runs.

A run trains with the schedule of the One Cycle tab and the augmentation of the Augment tab; this tab adds the
network width, the data subset and the device. lab.experiment.train does the work; this module only builds the
TrainConfig and draws what the job manager has buffered.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lab import plots
from lab import runs as runs_mod
from lab.config import DEVICES, LOADERS, PRESETS, TRAIN_IMAGES, ConfigError, TrainConfig
from lab.engine import DeviceError
from lab.estimate import LONG_JOB_S
from lab.model import describe as describe_model
from lab.server.jobs import NotYours
from lab.server.policy import CPU_PRESET, GPU_PRESET, check_caps
from lab.ui.common import (CONTROL_NAMES, DIV_FACTOR_RANGE, LR_MODES, AppContext, error_md, flag, fmt_seconds,
                           has_cuda, heading, launch, message, run_label, train_config)
from lab.ui.common import learner_tricks_md  # issue 23 item 4

EPOCH_COLUMNS = ["epoch", "LR", "train loss", "train acc %", "test loss", "test acc %", "seconds", "images/s"]
RUN_COLUMNS = ["run", "title", "status", "epochs", "test acc %", "width", "optimizer", "max LR", "batch", "images",
               "seconds"]
# what a preset sets: every training control but the seed and the device, which stay as the user has them
PRESET_CONTROLS = tuple(n for n in CONTROL_NAMES if n not in ("seed", "device"))
# The Start/Stop lines that hold only while a job runs (refresh clears them once none does).
TRANSIENT = ("Run started at", "stopping ", "nothing is running", "⚠ busy —")
# The start of the message that holds back a long CPU job until "Start anyway" (the app shows that button for it).
LONG_JOB = "⚠ **Long job:**"
BUNDLED_COLOUR = "#444444"  # the bundled checkpoint's recorded curve; runs take plots.RUN_COLOURS
_downloads: Path | None = None


def downloads_dir() -> Path:
    """This server's own folder for the copies of checkpoints being downloaded: made once per process under the
    temp dir with a random name, private (mode 0700, tempfile.mkdtemp), removed at exit — so two servers, or two
    users of one machine, never share, prune or plant files in each other's (issue 21: one fixed name for all)."""
    global _downloads
    if _downloads is None:
        _downloads = Path(tempfile.mkdtemp(prefix="lab-downloads-"))
        atexit.register(shutil.rmtree, _downloads, True)
    return _downloads
DOWNLOAD_KEEP_S = 3600  # … deleted after an hour (Gradio keeps its own copy in its cache while the page needs it)


def default_preset() -> str:
    return GPU_PRESET if has_cuda() else CPU_PRESET


def preset_values(name: str) -> dict[str, Any]:
    """The controls a preset sets, as the app shows them: 0 = all images; LRMIN from the div factor unless the
    preset names a min LR (the min-LR box then shows what the div factor gives)."""
    cfg = PRESETS[name].config()
    knobs = cfg.flat()
    out = {k: knobs[k] for k in PRESET_CONTROLS if k in knobs}
    by_min = knobs["min_lr"] is not None or not DIV_FACTOR_RANGE[0] <= knobs["div_factor"] <= DIV_FACTOR_RANGE[1]
    out.update(subset=knobs["subset"] or 0, test_subset=knobs["test_subset"] or 0, min_lr=cfg.schedule.lr_min,
               lr_mode=LR_MODES[1] if by_min else LR_MODES[0])
    if by_min:  # the div-factor slider keeps a value it can show; LRMIN comes from the min-LR box
        out["div_factor"] = min(max(knobs["div_factor"], DIV_FACTOR_RANGE[0]), DIV_FACTOR_RANGE[1])
    return out


# ------------------------------------------------------------------ the LRs in force across a preset change
# A range test's LRs, once "Use these in One Cycle" applied them, survive a preset change: the app opens on the
# Learner preset, whose range test is a long job, and switching to a smaller preset afterwards is the likely path —
# it used to put the preset's 0.01/0.0004 back without a word, and that is what trained (issue 20). They survive
# only for a preset that trains with the optimizer they were measured for; the line under the preset says which
# LRs are in force, and a button puts the preset's own back.
KEEP_FOUND = "LRs in force"
USE_PRESET_LRS = "Use the preset's own LRs"


def found_lrs(max_lr: float, min_lr: float, optimizer: str, started_at: str) -> dict[str, Any]:
    """What "Use these in One Cycle" applied, as the session keeps it (a gr.State)."""
    return {"max_lr": max_lr, "min_lr": min_lr, "optimizer": optimizer, "test": f"the range test of {started_at}"}


def _lrs(max_lr: float, min_lr: float) -> str:
    return f"LRMAX {max_lr:.3g}, LRMIN {min_lr:.3g}"


def preset_with_lrs(name: str, found: dict | None) -> tuple[dict[str, Any], str, bool]:
    """(the controls preset `name` sets, the line saying which LRs are in force, whether the range test's LRs were
    kept over the preset's own — the "use the preset's own" button shows then)."""
    v = preset_values(name)
    own = _lrs(v["max_lr"], v["min_lr"])
    if not found:
        return v, f"{KEEP_FOUND}: the preset's own ({own}). A range test finds them for your run.", False
    if found["optimizer"] != v["optimizer"]:
        return v, (f"{KEEP_FOUND}: the preset's own ({own}): it trains with {v['optimizer']}, and {found['test']} "
                   f"measured {found['optimizer']}."), False
    v.update(max_lr=found["max_lr"], min_lr=found["min_lr"], lr_mode=LR_MODES[1])
    return v, (f"{KEEP_FOUND}: **from {found['test']}** ({_lrs(found['max_lr'], found['min_lr'])}), kept over "
               f"the preset's own ({own})."), True


def lrs_found_line(found: dict | None) -> str:
    """The line right after "Use these in One Cycle" (no preset change yet)."""
    if not found:
        return gr.skip()
    return (f"{KEEP_FOUND}: **from {found['test']}** ({_lrs(found['max_lr'], found['min_lr'])}); a preset picked "
            f"now keeps them.")


BY_HAND = f"{KEEP_FOUND}: as set on the One Cycle tab (a preset picked now puts its own back)."


def _started(job, cfg: TrainConfig, estimate=None) -> str:
    s = cfg.schedule
    expected = f" Expected to take {estimate.duration}." if estimate is not None else ""
    return (f"Run started at {job.started_at} in `{job.run_dir}`: {s.epochs} epoch{'s' * (s.epochs != 1)}, "
            f"batch {cfg.batch_size}, "
            f"width {cfg.width:g}, {cfg.subset or TRAIN_IMAGES:,} training images, {cfg.optimizer.name} "
            f"LR {s.lr_min:.3g} → {s.max_lr:.3g} → {s.lr_min:.3g}.{expected}")


def start(ctx: AppContext, confirm: bool = False, session: str | None = None, **controls) -> str | Iterator[str]:
    """Start a run through the server's runner (ctx.runner); returns what the tab shows: a one-line Markdown message
    (busy, bad input, started, or — for a CPU run expected to take over LONG_JOB_S, unless `confirm` — what it would
    cost and how to start it anyway), or, when the runner streams (the run is one request long), an iterator of
    that line as the run reports. Every control, and on a shared server every cap, is checked before the run is
    timed for its estimate (measured on this server) and before "started". `session`: the browser session
    starting it (gr.Request.session_hash)."""
    cfg = None

    def begin():
        nonlocal cfg
        ok = flag("confirm", "confirm", confirm)  # an API caller's "false" must not start a long job
        cfg = train_config(**controls)
        return ctx.runner.start("train", cfg, owner=session, confirm=ok, estimate=lambda: ctx.estimate_run(cfg))

    return launch(ctx, begin, lambda launched: _started(launched.job, cfg, launched.estimate),
                  f"{LONG_JOB} this run would take {{estimate}}. Press **Start anyway** to run it, or pick a smaller "
                  "preset (Tiny, Quick) or fewer images or epochs. (API: pass `confirm=True`.)")


def estimate_line(ctx: AppContext, **controls) -> str:
    """What Start would cost, shown before it is pressed: '' for controls Start would refuse (Start says why)."""
    try:
        cfg = train_config(**controls)
        if ctx.manager.shared:  # a job over a cap is refused by Start: never timed (a wide network is costly)
            check_caps(cfg, caps=ctx.manager.caps)
        estimate = ctx.estimate_run(cfg)
    except (ConfigError, DeviceError, TypeError, ValueError):
        return ""
    if estimate is None:
        return "Expected time: measured once this server is free (a job is running)."
    warn = (f"  \nOver {LONG_JOB_S // 60} min on a CPU: Start will ask you to confirm." if estimate.long else "")
    return f"Expected time: **{estimate.duration}** <small>{str(estimate)[len(estimate.duration):]}</small>{warn}"


def long_job_button(message: str):
    """Show "Start anyway" exactly when the last Start was held back as a long job."""
    return gr.Button(visible=str(message or "").startswith(LONG_JOB))


def stop(ctx: AppContext, session: str | None = None) -> str:
    try:
        return ctx.runner.stop(session)
    except NotYours as e:
        return error_md(str(e))


def epoch_table(epochs: list[dict]) -> pd.DataFrame:
    rows = [[e["epoch"], f"{e['lr']:.2e}", round(e["train_loss"], 4), round(100 * e["train_acc"], 2),
             round(e["test_loss"], 4), round(100 * e["test_acc"], 2), round(e["seconds"], 1),
             round(e["images_per_s"])] for e in epochs]
    return pd.DataFrame(rows, columns=EPOCH_COLUMNS)


def against_estimate(status: dict) -> str:
    """' (estimated 2 min 50 s)' while a run trains; ' (estimated 2 min 50 s: 12% longer)' once it has ended, so
    the estimate is checked against every run it was made for; '' when none was made."""
    est = status.get("estimate_s")
    if not est:
        return ""
    said = f"estimated {fmt_seconds(est)}"
    if est < 60:  # start-up and the data's first load are not in the estimate, and they dominate a short run
        return f" ({said} for the steps alone)"
    if status["status"] != "done":  # a stopped run's time says nothing about the estimate
        return f" ({said})"
    off = status["elapsed"] / est - 1
    return f" ({said}: {abs(off):.0%} {'longer' if off > 0 else 'shorter'})"


def describe(status: dict | None, now: float | None = None) -> str:
    """One Markdown paragraph: what the latest run is doing, its speed and ETA, or how it ended. Elapsed time and
    the ETA count on from the last step (its arrival time "t"), so they move between steps too."""
    if status is None:
        return "No run yet on this server. Pick a preset, then press **Start**."
    now = time.time() if now is None else now
    head = heading(status["status"])
    parts = [f"{head} — run `{Path(status['run_dir']).name if status['run_dir'] else '?'}` "
             f"started at {status['started_at']}", status["progress"]]
    if status["steps"]:
        s = status["steps"][-1]
        parts += [f"loss {s['loss']:.3f}", f"LR {s['lr']:.2e}", f"**{s['images_per_s']:,.0f} images/s**"]
        if status["status"] == "running":
            eta = max(s["eta"] - max(0.0, now - s.get("t", now)), 0.0)
            parts.append(f"ETA {fmt_seconds(eta)}")
            # the clock time, for whoever waits for the server (a shared server runs one job at a time)
            parts.append(f"ends at about {time.strftime('%H:%M:%S', time.localtime(now + eta))}")
    parts.append(f"elapsed {fmt_seconds(status['elapsed'])}{against_estimate(status)}")
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
        rows.append([s.name, s.title or "", s.status, f"{s.epochs_done}/{s.epochs}",
                     round(100 * s.test_acc, 2) if s.test_acc is not None else None, s.width, s.optimizer, s.max_lr,
                     s.batch_size, s.train_images, round(s.seconds, 1) if s.seconds is not None else None])
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


BUNDLED = "bundled checkpoint"  # the picker's name for the bundled checkpoint's recorded training history


def run_choices(ctx: AppContext) -> list[tuple[str, str]]:
    out = [(run_label(r.summary()), r.name) for r in runs_mod.list_runs(ctx.runs_root)]
    if ctx.pretrained_metrics().get("train_history"):
        out.append((f"{BUNDLED} (spec recipe, 24 epochs on a GPU)", BUNDLED))
    return out


def colours(ctx: AppContext) -> dict[str, str]:
    """Every run's colour, from its place among all runs by name (the names are creation times), so that adding
    runs to the overlay or renaming one never recolours another."""
    out = plots.run_colours(sorted(r.name for r in runs_mod.list_runs(ctx.runs_root)))
    out[BUNDLED] = BUNDLED_COLOUR
    return out


def overlay(ctx: AppContext, names: list[str] | None, log_loss: bool = False, x: str = "epoch"):
    """The overlay figure of the chosen runs' per-epoch curves (the bundled checkpoint's recorded history too).
    Names are looked up among the listed runs, never joined into a path."""
    listed = {r.name: r for r in runs_mod.list_runs(ctx.runs_root)}
    curves, labels = {}, {}
    for name in names or []:
        if name == BUNDLED:
            history = ctx.pretrained_metrics().get("train_history")
            if history:
                curves[name] = history
            continue
        run = listed.get(name)
        if run is not None:
            try:
                curves[name] = run.metrics()
            except (OSError, ValueError):
                continue  # a damaged metrics file: the run is left out of the plot, the table still lists it
            title = run.summary().title
            labels[name] = f"{title} ({name})" if title else name
    return plots.runs_overlay_figure(curves, title="Runs compared" if curves else None, colours=colours(ctx),
                                     labels=labels, log_loss=bool(log_loss), x=x if x in plots.X_AXES else "epoch")


def refresh_runs(ctx: AppContext, selected: list[str] | None, newest: bool = False, log_loss: bool = False,
                 x: str = "epoch"):
    """(run table, run picker, overlay, the rename/delete run list) re-read from disk. The picker keeps its
    selection (the two newest runs when empty); with `newest`, the newest run is added to it (a run just ended:
    show it). The rename/delete list keeps whatever is chosen in it."""
    choices = run_choices(ctx)
    names = [c[1] for c in choices]
    keep = [s for s in (selected or []) if s in names]
    if newest and names and names[0] not in keep:
        keep = [names[0], *keep]
    keep = keep or names[:2]
    return (runs_table(ctx), gr.Dropdown(choices=choices, value=keep, multiselect=True),
            overlay(ctx, keep, log_loss, x), gr.Dropdown(choices=manageable_runs(ctx)))


def live_figure(status: dict | None, log_loss: bool = False, smoothing: float = 0.0, x: str = "epoch"):
    """The latest run's curves as the view controls ask (bad values from a raw API call fall back to the
    defaults rather than failing the poll)."""
    smoothing = float(smoothing or 0.0)
    view = dict(log_loss=bool(log_loss), smoothing=smoothing if 0 <= smoothing < 1 else 0.0,
                x=x if x in plots.X_AXES else "epoch")
    if status is None:
        return plots.training_figure([], [], **view)
    return plots.training_figure(status["steps"], status["epochs"], **view)


def refresh(ctx: AppContext, seen, selected: list[str] | None = None, log_loss: bool = False,
            smoothing: float = 0.0, x: str = "epoch", shown: str | None = None):
    """Timer tick → (seen, status line, figure, epoch table, run table, run picker, overlay, rename/delete run
    list, Start/Stop message), skipping what has not changed. `seen` is (the manager's fingerprint of the training
    job, id of the last finished run the run list was refreshed for); the run list and overlay are redrawn on the
    first tick and whenever a run ends. While a run trains, the status line is redrawn on every tick (elapsed time
    and ETA move between steps). The message under Start/Stop ("started", "busy", "stopping…") is cleared once no
    job runs any more: the status line then says how the run ended, and a stale line would contradict it. `shown`
    is the line on the page: one that arrived after the run's end was seen (a Stop answered after the last step)
    is cleared on the next tick; a refusal ("⚠ seed must be …") stays."""
    version = ctx.manager.fingerprint("train")
    last_seen, finished_seen = seen if isinstance(seen, (list, tuple)) else (None, None)
    status = ctx.runner.status("train")
    if last_seen is not None and tuple(last_seen) == version:
        if status is not None and status["status"] == "running":
            return (gr.skip(), describe(status), *(gr.skip(),) * 7)
        late = str(shown or "").startswith(TRANSIENT) and ctx.manager.busy_message() is None
        return (*(gr.skip(),) * 8, "" if late else gr.skip())
    busy = ctx.manager.busy_message()
    line = describe(status)
    if busy and (status is None or status["status"] != "running"):
        line = error_md(busy) + "  \n" + line  # a range test holds the server
    fig = live_figure(status, log_loss, smoothing, x)
    table = epoch_table(status["epochs"]) if status else epoch_table([])
    finished = status["id"] if status and status["status"] != "running" else None
    runs_out: tuple = (gr.skip(),) * 4
    if finished != finished_seen or last_seen is None:
        runs_out = refresh_runs(ctx, selected if last_seen is not None else None, newest=finished != finished_seen,
                                log_loss=log_loss, x=x)
    note = "" if last_seen is not None and busy is None else gr.skip()
    return ((version, finished), line, fig, table, *runs_out, note)


# ---------------------------------------------------------------------------------- rename, delete, download


def manageable_runs(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, name) of every run folder a person may rename, delete or download from (the bundled checkpoint
    is not one)."""
    return [(run_label(r.summary()), r.name) for r in runs_mod.list_runs(ctx.runs_root)]


MANAGE_OFF = ("renaming and deleting runs is switched off on this server (a public one: every visitor could "
              "change everyone's runs); its operator can set LAB_MANAGE_RUNS=1")


def rename(ctx: AppContext, name: str | None, title: str | None) -> str:
    """Give a run a display title ('' clears it); its folder keeps its name. A Markdown message either way."""
    if not ctx.manage_runs:
        return error_md(MANAGE_OFF)
    if not name:
        return error_md("pick a run to rename first")
    try:
        title = runs_mod.set_title(ctx.runs_root, name, title or "", ctx.manager.active_run_dirs())
    except runs_mod.RunError as e:
        return error_md(str(e))
    return f"Run `{name}` is now titled **{title}**." if title else f"Run `{name}` has no title any more."


def delete(ctx: AppContext, name: str | None, armed: str | None) -> tuple[str, str | None]:
    """Delete a run on the second press for the same run: (message, run the next press would delete)."""
    if not ctx.manage_runs:
        return error_md(MANAGE_OFF), None
    if not name:
        return error_md("pick a run to delete first"), None
    try:
        run = runs_mod.find_run(ctx.runs_root, name)
        if armed != name:
            s = run.summary()
            return (f"⚠ Delete run `{name}` ({run_label(s)}) with its checkpoint and metrics, for good? Press "
                    "**Delete** again to confirm.", name)
        runs_mod.delete_run(ctx.runs_root, name, ctx.manager.active_run_dirs())
    except runs_mod.RunError as e:
        return error_md(str(e)), None
    return f"Deleted run `{name}`.", None


def download_file(ctx: AppContext, name: str | None):
    """A DownloadButton for the chosen run's model.pt, copied to a temporary file named after the run (so the
    download says which run it is); disabled when there is none."""
    none = gr.DownloadButton(value=None, interactive=False, label="⬇ checkpoint")
    if not name:
        return none
    try:
        run = runs_mod.find_run(ctx.runs_root, name)
    except runs_mod.RunError:
        return none
    if not run.checkpoint.is_file():
        return gr.DownloadButton(value=None, interactive=False, label="⬇ no checkpoint yet")
    downloads = downloads_dir()
    for old in downloads.glob("*.pt"):  # bound the disk the copies take
        if time.time() - old.stat().st_mtime > DOWNLOAD_KEEP_S:
            old.unlink(missing_ok=True)
    target = downloads / f"{run.name}-model.pt"
    # a private temporary name per request (two at once must not write into one file), then an atomic rename;
    # model.pt itself is replaced atomically per epoch, so the copy is always one whole checkpoint
    fd, tmp = tempfile.mkstemp(dir=downloads, suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(run.checkpoint, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return gr.DownloadButton(value=str(target), interactive=True, label=f"⬇ {target.name}")


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
    gr.Markdown(learner_tricks_md(), elem_id="train-tricks")  # issue 23 item 4: what the Learner's tricks buy
    if ctx.data_message():
        gr.Markdown(ctx.data_message())
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            # a radio, not a dropdown: the labels say what each preset costs, and a dropdown cut them at its arrow
            preset_dd = gr.Radio([(p.label, name) for name, p in PRESETS.items()], value=preset, label="preset",
                                 elem_id="train-preset")
            lr_source = gr.Markdown(preset_with_lrs(preset, None)[1], elem_id="train-lr-source")
            preset_lrs = gr.Button(USE_PRESET_LRS, size="sm", visible=False, elem_id="train-preset-lrs")
            width = gr.Slider(0.125, 2, value=values["width"], step=0.125, label="width (1 = the spec network)",
                              elem_id="train-width")
            subset = gr.Number(value=values["subset"], precision=0, minimum=0,
                               label="training images (0 = all 50,000)", elem_id="train-subset")
            test_subset = gr.Number(value=values["test_subset"], precision=0, minimum=0,
                                    label="test images (0 = all 10,000)", elem_id="train-test-subset")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="train-seed")
            device = gr.Radio(list(DEVICES), value="auto", label="device")
            loader = gr.Radio(list(LOADERS), value=values["loader"], label="loader (auto: fast on CUDA, reference on CPU)")
            with gr.Row():
                start_btn = gr.Button("▶ Start", variant="primary", elem_id="train-start")
                stop_btn = gr.Button("■ Stop", variant="stop", elem_id="train-stop")
            anyway_btn = gr.Button("▶ Start anyway", variant="stop", visible=False, elem_id="train-start-anyway")
            # the train_start API's last parameter; the page always sends False, "Start anyway" sends True
            confirm = gr.Checkbox(value=False, visible=False, label="confirm")
            estimate = gr.Markdown(elem_id="train-estimate")
            message = gr.Markdown(elem_id="train-message")
        with gr.Column(scale=3):
            line = gr.Markdown(elem_id="train-status")
            with gr.Row(elem_id="curve-view"):
                log_loss = gr.Checkbox(value=False, label="log loss axis", elem_id="view-log", min_width=120)
                smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="smoothing (per-step loss)",
                                      elem_id="view-smoothing", min_width=200)
                x_axis = gr.Radio(list(plots.X_AXES), value="epoch", label="x axis", elem_id="view-x",
                                  min_width=160)
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
        picker = gr.Dropdown(choices=run_choices(ctx), multiselect=True, label="overlay these runs", scale=4,
                             elem_id="runs-picker")
        runs_refresh = gr.Button("↻ refresh", scale=1)
    overlay_plot = gr.Plot(plots.runs_overlay_figure({}), label="runs compared", elem_id="runs-overlay-plot")
    runs_df = gr.Dataframe(headers=RUN_COLUMNS, label="runs (newest first)", interactive=False, wrap=True,
                           elem_id="runs-table")
    with gr.Accordion("Rename, delete or download a run" if ctx.manage_runs else "Download a run's checkpoint",
                      open=False, elem_id="runs-manage"):
        with gr.Row():
            target = gr.Dropdown(choices=manageable_runs(ctx), value=None, label="run", scale=3,
                                 elem_id="runs-target")
            new_title = gr.Textbox(label=f"title (up to {runs_mod.TITLE_MAX} characters; empty: none)", scale=3,
                                   max_length=runs_mod.TITLE_MAX, elem_id="runs-title")
        with gr.Row():
            rename_btn = gr.Button("Rename", elem_id="runs-rename", visible=ctx.manage_runs)
            delete_btn = gr.Button("Delete…", variant="stop", elem_id="runs-delete", visible=ctx.manage_runs)
            download_btn = gr.DownloadButton("⬇ checkpoint", value=None, interactive=False, elem_id="runs-download")
        manage_msg = gr.Markdown(elem_id="runs-manage-message")
    armed = gr.State(None)  # the run the next Delete press deletes (the first press only asks)

    seen = gr.State(None)
    timer = gr.Timer(1.0)
    view = [log_loss, smoothing, x_axis]
    timer.tick(lambda s, sel, lg, sm, x, shown: refresh(ctx, s, sel, lg, sm, x, shown),
               [seen, picker, *view, message],
               [seen, line, figure, table, runs_df, picker, overlay_plot, target, message],
               api_visibility="private", concurrency_limit=None, show_progress="hidden", queue=False)
    picker.change(lambda names, lg, x: overlay(ctx, names, lg, x), [picker, log_loss, x_axis], overlay_plot,
                  api_visibility="private", show_progress="hidden")
    # a view change redraws both plots from what is already there (no training state changes); one listener each
    # (gr.on), so that answers cannot arrive out of order
    gr.on([c.change for c in view], lambda lg, sm, x: live_figure(ctx.runner.status("train"), lg, sm, x), view,
          figure, api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    gr.on([log_loss.change, x_axis.change], lambda names, lg, x: overlay(ctx, names, lg, x),
          [picker, log_loss, x_axis], overlay_plot, api_visibility="private", show_progress="hidden",
          trigger_mode="always_last")
    runs_refresh.click(lambda sel, lg, x: refresh_runs(ctx, sel, log_loss=lg, x=x), [picker, log_loss, x_axis],
                       [runs_df, picker, overlay_plot, target], api_visibility="private")

    def after_change(message, sel, lg, x, current):
        names = [n for _, n in manageable_runs(ctx)]
        *listing, _ = refresh_runs(ctx, sel, log_loss=lg, x=x)
        return (message, *listing,
                gr.Dropdown(choices=manageable_runs(ctx), value=current if current in names else None))

    def do_rename(name, title, sel, lg, x):
        return after_change(rename(ctx, name, title), sel, lg, x, name)

    def do_delete(name, arm, sel, lg, x):
        message, arm = delete(ctx, name, arm)
        label = "Delete — press again to confirm" if arm else "Delete…"
        return (*after_change(message, sel, lg, x, name), arm, gr.Button(value=label))

    listing = [runs_df, picker, overlay_plot, target]
    rename_btn.click(do_rename, [target, new_title, picker, log_loss, x_axis], [manage_msg, *listing],
                     api_visibility="private")
    delete_btn.click(do_delete, [target, armed, picker, log_loss, x_axis], [manage_msg, *listing, armed, delete_btn],
                     api_visibility="private")
    # choosing another run disarms Delete and offers that run's checkpoint for download
    target.change(lambda name: (None, gr.Button(value="Delete…"), download_file(ctx, name)), target,
                  [armed, delete_btn, download_btn], api_visibility="private", show_progress="hidden")
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
    return {"preset": preset_dd, "lr_source": lr_source, "preset_lrs": preset_lrs, "width": width, "subset": subset, "test_subset": test_subset, "seed": seed,
            "device": device, "loader": loader, "start": start_btn, "stop": stop_btn, "message": message,
            "anyway": anyway_btn, "confirm": confirm, "estimate": estimate,
            "line": line, "figure": figure, "table": table, "raw": raw, "picker": picker, "overlay": overlay_plot,
            "runs_df": runs_df, "runs_refresh": runs_refresh, "timer": timer, "target": target,
            "title": new_title, "rename": rename_btn, "delete": delete_btn, "download": download_btn,
            "manage_message": manage_msg}
