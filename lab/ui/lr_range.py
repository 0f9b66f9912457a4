"""LR range test tab: raise the LR every iteration and watch the loss; the curve grows while the background job
runs, the suggestions are marked when it ends, and "use these" copies LRMAX / LRMIN into the One Cycle tab."""

from __future__ import annotations

import math
from collections.abc import Iterator

import gradio as gr

from lab import lr_finder, plots
from lab import runs as runs_mod
from lab.config import (OPTIMIZERS, RANGE_TEST_END_LR, RANGE_TEST_ITERS, RANGE_TEST_MODES, RANGE_TEST_START_LR,
                        ConfigError, TrainConfig)
from lab.server.jobs import NotYours
from lab.ui import train
from lab.ui.common import (AppContext, choice, error_md, flag, fmt_seconds, heading, launch, message, number,
                           round_lr, train_config, whole)

USE = "Use these in One Cycle"
USE_WEAK = "⚠ Use these in One Cycle (weak test: see why)"
USE_ANYWAY = "⚠ Use them anyway"
LONG_JOB = "⚠ **Long job:**"  # as the Train tab's: the message that holds back a long CPU job

def _settings(controls: dict, iters, start_lr, end_lr, mode, optimizer) -> tuple[TrainConfig, dict]:
    """This tab's settings and every training control → (config, range-test kwargs), each value checked (type,
    range, start LR below end LR): ConfigError naming the control otherwise."""
    kwargs = dict(iters=whole("iters", "iterations", iters), start_lr=number("start_lr", "start LR", start_lr),
                  end_lr=number("end_lr", "end LR", end_lr), mode=choice("mode", "LR increase", mode, RANGE_TEST_MODES))
    cfg = train_config(**{**controls, "optimizer": choice("optimizer", "optimizer", optimizer, OPTIMIZERS)})
    # the One Cycle tab's LRMAX : LRMIN ratio, whether it is set as a div factor or as min LR
    kwargs["div_factor"] = cfg.schedule.max_lr / cfg.schedule.lr_min
    lr_finder.check_settings(**{k: kwargs[k] for k in ("iters", "start_lr", "end_lr", "mode", "div_factor")})
    return cfg, kwargs


def _started(job, cfg: TrainConfig, kwargs: dict, estimate=None) -> str:
    expected = f" Expected to take {estimate.duration}." if estimate is not None else ""
    return (f"Range test started at {job.started_at}: {kwargs['iters']} iterations, LR {kwargs['start_lr']:.1e} → "
            f"{kwargs['end_lr']:.1e} ({kwargs['mode']}), {cfg.optimizer.name}, batch {cfg.batch_size}, "
            f"width {cfg.width:g}.{expected}")


def start(ctx: AppContext, controls: dict, iters, start_lr, end_lr, mode, optimizer, confirm: bool = False,
          session: str | None = None) -> str | Iterator[str]:
    """Start the range test through the server's runner (ctx.runner), for the run that every training control
    describes (with this tab's optimizer); returns what the tab shows: a one-line Markdown message, or, when the
    runner streams (the test is one request long), an iterator of that line as the test reports. LRMIN will be the
    found LRMAX / the One Cycle tab's div factor, as "use these" sets it. Every setting, and on a shared server
    every cap, is checked before the test is timed and started. A test expected to run over
    lab.estimate.LONG_JOB_S on a CPU waits for `confirm` (the Run button's second press). `session`: the browser
    session starting it."""
    cfg, kwargs = None, None

    def begin():
        nonlocal cfg, kwargs
        ok = flag("confirm", "confirm", confirm)  # an API caller's "false" must not start a long job
        cfg, kwargs = _settings(controls, iters, start_lr, end_lr, mode, optimizer)
        return ctx.runner.start("lr_range", cfg, owner=session, confirm=ok,
                                estimate=lambda: ctx.estimate_range_test(cfg, kwargs["iters"]), **kwargs)

    return launch(ctx, begin, lambda launched: _started(launched.job, cfg, kwargs, launched.estimate),
                  f"{LONG_JOB} this range test would take {{estimate}}. Press **Run anyway** to run it, or lower the "
                  "iterations, the width or the batch size. (API: pass `confirm=True`.)")


def long_job_button(message: str):
    """Show "Run anyway" exactly when the last Run was held back as a long job."""
    return gr.Button(visible=str(message or "").startswith(LONG_JOB))


def figure(status: dict | None):
    """The curve of the latest range test: the points so far while it runs, the full result when it is over."""
    if status is None:
        return plots.empty_figure("no range test yet — press Run")
    if status.get("result"):
        return plots.lr_finder_figure(status["result"])
    pts = [(lr, loss) for _, lr, loss in status["points"] if math.isfinite(loss)]
    return plots.lr_finder_figure({"lrs": [p[0] for p in pts], "losses": [p[1] for p in pts], "suggestions": {}})


def rule_label(name: str) -> str:
    """'steepest descent (`steepest`)': the words the plot's legend uses, and the name --rule takes."""
    words = plots.SUGGESTION_LABELS.get(name, name)
    return words if words == name else f"{words} (`{name}`)"


# How a saved test ended, in the list of saved tests: a range test normally ends where the loss blows up.
ENDS = {"done": "ran every iteration", "diverged": "ended at the loss blow-up", "stopped": "stopped early"}


def describe(status: dict | None, busy: str | None = None) -> tuple[str, str]:
    """(status line, suggestions Markdown) for the latest range test."""
    if status is None:
        return (busy and error_md(busy)) or "No range test has run on this server yet.", ""
    head = heading("done") + " (it ended where the loss blew up)" if status["status"] == "diverged" else heading(
        status["status"])  # a range test is meant to run until the loss blows up: that end is not a failure
    line = f"{head} — range test started at {status['started_at']} · {status['progress']} · {fmt_seconds(status['elapsed'])}"
    if status["message"]:
        line += f"  \n{status['message']}"
    if busy and status["status"] != "running":
        line = error_md(busy) + "  \n" + line
    r = status.get("result")
    if not r:
        return line, ""
    # each rule as the plot's legend names it (plots.SUGGESTION_LABELS), its CLI name beside it
    rows = "\n".join(f"| {rule_label(name)} | {lr:.3g} |" for name, lr in r.get("suggestions", {}).items())
    notes = "".join(f"\n- {n}" for n in r.get("notes", []))
    caveats = lr_finder.caveats(r)
    warn = ("\n\n⚠ **A weak test — check before using its LRs:**" + "".join(f"\n- {c}" for c in caveats)
            if caveats else "")
    text = (f"**Suggested LRMAX {r['max_lr']:.3g}** (rule: {rule_label(r['rule'])}) · **LRMIN {r['min_lr']:.3g}**"
            f"{warn}\n\n"
            f"| rule | LR |\n|---|---|\n{rows}\n{notes}")
    return line, text


def stop(ctx: AppContext, session: str | None = None) -> str:
    try:
        return ctx.runner.stop(session)
    except NotYours as e:
        return error_md(str(e))


def use_button(status: dict | None):
    """The "use these" button as the latest test deserves: flagged when its result is weak."""
    r = status and status.get("result")
    return gr.Button(value=USE_WEAK if r and lr_finder.caveats(r) else USE)


def use_these(ctx: AppContext, acknowledged=None):
    """(max LR, 'min LR' mode, min LR, optimizer, message, acknowledged, button, found) from the latest finished
    range test, rounded to three significant figures. A weak test (lab.lr_finder.caveats) is not applied on the
    first press: the message says why and the button turns into "use them anyway"; `acknowledged` (the test's job
    id) is what the second press brings back. `found` (train.found_lrs) is what a later preset change keeps."""
    status = ctx.runner.status("lr_range")
    r = status and status.get("result")
    if not r:
        nothing = error_md("the range test is still running: wait for it to end (or stop it), then use its LRs"
                           if status and status["status"] == "running" else
                           "run a range test first: there is nothing to use yet")
        return (*(gr.skip(),) * 4, nothing, None, gr.skip(), gr.skip())
    caveats = lr_finder.caveats(r)
    if caveats and acknowledged != status["id"]:
        why = "".join(f"\n- {c}" for c in caveats)
        return (*(gr.skip(),) * 4, f"⚠ **Not applied yet — this test is weak:**{why}\n\nRun a longer or wider test, "
                f"or press **{USE_ANYWAY}** to use LRMAX {r['max_lr']:.3g} all the same.", status["id"],
                gr.Button(value=USE_ANYWAY), gr.skip())
    opt = TrainConfig.from_dict(status["config"]["train"]).optimizer.name
    max_lr, min_lr = round_lr(r["max_lr"]), round_lr(r["min_lr"])
    despite = " despite the warnings above" if caveats else ""
    return (max_lr, "min LR", min_lr, opt, f"One Cycle tab set to LRMAX {max_lr:.3g}, LRMIN {min_lr:.3g} ({opt})"
            f"{despite}. A preset picked later keeps them (the Train tab says which LRs are in force).", None,
            use_button(status), train.found_lrs(max_lr, min_lr, opt, status["started_at"]))


def refresh(ctx: AppContext, seen: int | None):
    """Timer tick: (seen, figure, status line, suggestions, use button, Run/Stop message) — all skipped when
    nothing it shows has changed. The message under Run/Stop is cleared once no job runs any more (the status line
    says how the test ended; "started" or "stopping…" would be stale)."""
    version = ctx.manager.fingerprint("lr_range")
    if seen is not None and tuple(seen) == version:
        return (gr.skip(),) * 6
    status = ctx.runner.status("lr_range")
    busy = ctx.manager.busy_message()
    note = "" if seen is not None and busy is None else gr.skip()
    if busy and status is not None and status["status"] == "running":
        busy = None  # the status line already says it is running
    line, text = describe(status, busy)
    return version, figure(status), line, text, use_button(status), note


# ----------------------------------------------------------------------------------- saved tests, compared


def saved_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, folder name) of every saved range test, newest first."""
    out = []
    for folder in runs_mod.list_range_tests(ctx.runs_root):
        try:
            d = runs_mod.read_range_test(folder)
        except runs_mod.RunError:
            continue
        s = d.get("settings") or {}
        out.append((f"{folder.name} · {s.get('optimizer', '?')} · w{s.get('width', '?')} · batch "
                    f"{s.get('batch_size', '?')} · LRMAX {d.get('max_lr', 0):.3g} "
                    f"({ENDS.get(d.get('status'), d.get('status', '?'))})",
                    folder.name))
    return out


def compare(ctx: AppContext, names: list[str] | None):
    """The chosen saved range tests overlaid (loss vs LR), each in the colour its place among all tests gives it.
    Names are looked up among the listed tests, never joined into a path."""
    listed = {f.name: f for f in runs_mod.list_range_tests(ctx.runs_root)}
    tests = {}
    for name in names or []:
        if name in listed:
            try:
                tests[name] = runs_mod.read_range_test(listed[name])
            except runs_mod.RunError:
                continue
    return plots.lr_finder_overlay(tests, colours=plots.run_colours(sorted(listed)))


def refresh_saved(ctx: AppContext, selected: list[str] | None, newest: bool = False):
    """(picker, overlay) re-read from disk; the picker keeps what still exists (the two newest when empty), and
    with `newest` the newest test joins it (one just ended: show it beside the others)."""
    choices = saved_choices(ctx)
    names = [c[1] for c in choices]
    keep = [n for n in (selected or []) if n in names]
    if newest and names and names[0] not in keep:
        keep = [names[0], *keep]
    keep = keep or names[:2]
    return gr.Dropdown(choices=choices, value=keep, multiselect=True), compare(ctx, keep)


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
            anyway = gr.Button("▶ Run anyway", variant="stop", visible=False, elem_id="lr-run-anyway")
            confirm = gr.Checkbox(value=False, visible=False, label="confirm")  # the find_lr API's last parameter
            use = gr.Button(USE, elem_id="lr-use")
            message = gr.Markdown(elem_id="lr-message")
        with gr.Column(scale=3):
            line = gr.Markdown(elem_id="lr-status")
            plot = gr.Plot(label="loss vs LR (log)", elem_id="lr-range-plot")
            suggestions = gr.Markdown(elem_id="lr-suggestions")
    gr.Markdown("### Range tests saved on this server\nEvery test the app runs is saved under `runs/lr-finder-…/` "
                "(so is `python -m lab find-lr`'s): overlay several to see how the width, batch size or optimizer "
                "moves the curve.")
    with gr.Row():
        saved = gr.Dropdown(choices=saved_choices(ctx), multiselect=True, label="overlay these range tests", scale=4,
                            elem_id="lr-saved")
        saved_refresh = gr.Button("↻ refresh", scale=1)
    saved_plot = gr.Plot(plots.lr_finder_overlay({}), label="range tests compared", elem_id="lr-compare-plot")
    seen = gr.State(None)
    acknowledged = gr.State(None)  # the job id of a weak test whose LRs the next "use" press applies anyway
    timer = gr.Timer(1.0)
    timer.tick(lambda s: refresh(ctx, s), seen, [seen, plot, line, suggestions, use, message], api_visibility="private",
               concurrency_limit=None, show_progress="hidden", queue=False)
    saved.change(lambda names: compare(ctx, names), saved, saved_plot, api_visibility="private",
                 show_progress="hidden")
    saved_refresh.click(lambda sel: refresh_saved(ctx, sel), saved, [saved, saved_plot], api_visibility="private")
    # the suggestions appear when a test ends, which is when it is saved: list it
    suggestions.change(lambda sel: refresh_saved(ctx, sel, newest=True), saved, [saved, saved_plot],
                       api_visibility="private",
                       show_progress="hidden", trigger_mode="always_last")
    return {"iters": iters, "start_lr": start_lr, "end_lr": end_lr, "mode": mode, "optimizer": optimizer,
            "run": run, "stop": stop, "use": use, "message": message, "plot": plot, "line": line,
            "suggestions": suggestions, "seen": seen, "timer": timer, "anyway": anyway, "confirm": confirm,
            "acknowledged": acknowledged, "saved": saved, "saved_plot": saved_plot}
