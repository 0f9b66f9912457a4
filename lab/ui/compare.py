"""Compare schedules, on the One Cycle tab: one button trains the page's configuration under every schedule in turn
(lab.compare, as the server's one background job), then overlays their test-accuracy and LR curves and says the
result in one sentence.

On the One Cycle tab, not the Sweep tab: that is where a learner picks the schedule and sets the max LR the
comparison starts from (the range test's "use these" fills it), and where the question "why One Cycle?" comes up;
the Sweep tab sweeps one schedule's LR over seeds. The job takes every training control of the page, as Start does
(train_config), so it compares exactly what Start would train.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from lab import compare
from lab import plots
from lab.config import COMPARE_LR_CHOICES, COMPARE_LR_FACTORS
from lab.estimate import Estimate
from lab.server.runner import Launch
from lab.ui.common import AppContext, error_md, flag, fmt_seconds, heading, launch, train_config

LONG_JOB = "⚠ **Long job:**"  # as the Train tab's: the message that holds back a long CPU job
STREAM_REFUSAL = ("comparing schedules trains several runs in one job, longer than one GPU call may last here; run "
                  "`python -m lab compare-schedules` on your own machine")
_GRID = ", ".join(f"×{f:g}" for f in COMPARE_LR_FACTORS)
CHOICES = [(f"each at the best of One Cycle's max LR {_GRID} ({1 + 3 * len(COMPARE_LR_FACTORS)} runs)", "grid"),
           ("all at One Cycle's max LR (4 runs: cheaper, but it flatters One Cycle)", "same")]
assert [v for _, v in CHOICES] == list(COMPARE_LR_CHOICES)
PICK_COLUMNS = ["schedule", "LRs tried (test acc %)", "picked LR", "test acc %"]


def start(ctx: AppContext, controls: dict, others_lr: str, confirm=False, session: str | None = None) -> str:
    """Start the comparison of the configuration `controls` describe (every training control, as train_start
    takes them) as the server's background job; one Markdown line: refused, held back as a long job, or started."""
    if ctx.runner.streams:
        return error_md(STREAM_REFUSAL)
    runs: list = []

    def begin() -> Launch:
        ok = flag("confirm", "confirm", confirm)  # an API caller's "false" must not start a long job
        base = train_config(**controls)
        factors = compare.factors_for(others_lr)
        runs[:] = ctx.manager.check_compare(base, factors)  # caps, data, memory: before anything is timed
        est = _estimate(ctx, runs)
        if est is not None and est.long and not ok:
            return Launch(None, est)
        return Launch(ctx.manager.start_compare(base, factors, owner=session), est)

    def started(launched: Launch) -> str:
        job, est = launched.job, launched.estimate
        when = f", expected {est.duration}" if est is not None else ""
        # the folder's name, not its path: a shared server's visitors are not told where its files live
        return (f"Comparison started at {job.started_at}: {len(runs)} runs one after another{when}, into "
                f"`runs/sweeps/{Path(job.run_dir).name}/`.")

    return launch(ctx, begin, started,
                  f"{LONG_JOB} the comparison's {{estimate}}. Press **Compare anyway** to run it, or pick a smaller "
                  "preset or the 4-run choice. (API: pass `confirm=True`.)")


def _estimate(ctx: AppContext, runs: list) -> Estimate | None:
    """Every run's expected time, added up (they train one after another); None while no timing is at hand."""
    parts = [ctx.estimate_run(cfg) for cfg in runs]
    if not parts or any(p is None for p in parts):
        return None
    return Estimate(sum(p.seconds for p in parts), parts[0].device, f"{len(runs)} runs, each timed on this machine")


def long_job_button(message: str):
    return gr.Button(visible=str(message or "").startswith(LONG_JOB))


def picks_table(doc: dict | None) -> pd.DataFrame:
    """Per schedule: the LRs it trained at and their accuracies, the LR picked (its best) and its accuracy."""
    rows = []
    for s, v in compare.best_runs(doc).items():
        tried = ", ".join(f"{lr:.3g} ({'—' if acc is None else f'{acc:.2f}'})" for lr, acc in v["tried"])
        rows.append([compare.NAMES[s], "its max LR: " + tried if s == compare.ONE_CYCLE else tried,
                     f"{v['lr']:.3g}", round(v["acc"], 2)])
    return pd.DataFrame(rows, columns=PICK_COLUMNS)


def describe(status: dict | None) -> str:
    if status is None:
        return ("No comparison yet on this server. It trains this page's configuration (the preset and every "
                "control, as **Start** on the Train tab would) under each schedule in turn.")
    doc = status.get("result")
    text = f"{heading(status['status'])} — started at {status['started_at']} · {status['progress']} · elapsed " \
           f"{fmt_seconds(status['elapsed'])}"
    if status["status"] == "running":
        return f"{text}  \n{compare.sentence(doc)}" if doc else text
    return f"{text}  \n{status['message']}"


def refresh(ctx: AppContext, seen):
    """Timer tick → (seen, status line, picks table, figure), skipping what has not changed."""
    version = ctx.manager.fingerprint("compare")
    if seen is not None and tuple(seen) == version:
        return (gr.skip(),) * 4
    status = ctx.runner.status("compare")
    doc = status["result"] if status else None
    line = describe(status)
    busy = ctx.manager.busy_message()
    if busy and (status is None or status["status"] != "running"):
        line = error_md(busy) + "  \n" + line
    return version, line, picks_table(doc), plots.compare_figure(compare.curves(doc))


def build(ctx: AppContext) -> dict:
    """The section's components; `wire` connects them once every training control exists."""
    with gr.Accordion("Compare schedules: One Cycle against constant, step and cosine", open=True):
        gr.Markdown("Trains this page's configuration under **each schedule in turn**, at one budget (the same "
                    "epochs), each at the LR a learner would pick for it: One Cycle at its **max LR** above (the one "
                    "the LR range test's *use these* sets), the others at the **best of a small LR grid** around it "
                    f"(that LR {_GRID}: 3 runs each, so 10 runs in all — or 4, every schedule at One Cycle's LR, which "
                    "is cheaper but not a fair test). One seed; the runs land in `runs/sweeps/compare-<time>/` as "
                    "a sweep's. The same from a terminal: `python -m lab compare-schedules --preset learner`.")
        with gr.Row():
            others_lr = gr.Radio(CHOICES, value=CHOICES[0][1], label="the other schedules' LR", scale=3,
                                 elem_id="compare-lr")
            with gr.Column(scale=1, min_width=200):
                start_btn = gr.Button("▶ Compare schedules", variant="primary", elem_id="compare-start")
                anyway = gr.Button("▶ Compare anyway", visible=False, elem_id="compare-anyway")
                stop_btn = gr.Button("■ Stop", variant="stop", elem_id="compare-stop")
        confirm = gr.Checkbox(value=False, visible=False, label="confirm")  # the API's; the page uses "anyway"
        message = gr.Markdown(elem_id="compare-message")
        line = gr.Markdown(elem_id="compare-status")
        fig = gr.Plot(plots.compare_figure({}), label="test accuracy and LR per schedule (each at its best LR)",
                      elem_id="compare-plot")
        picks = gr.Dataframe(headers=PICK_COLUMNS, label="the LR each schedule trained at", interactive=False,
                             wrap=True, elem_id="compare-picks")
    seen = gr.State(None)
    timer = gr.Timer(1.0)
    timer.tick(lambda s: refresh(ctx, s), seen, [seen, line, picks, fig], api_visibility="private",
               concurrency_limit=None, show_progress="hidden", queue=False)
    return {"others_lr": others_lr, "confirm": confirm, "start": start_btn, "anyway": anyway, "stop": stop_btn, "message": message,
            "line": line, "figure": fig, "picks": picks, "timer": timer}


def wire(ctx: AppContext, ui: dict, controls: list, names: tuple, api_function, defaults: dict) -> None:
    """Connect Compare (API: compare_start; its parameters: every training control in `names` order, then
    others_lr and confirm) and Stop. `api_function`: lab.ui.app's, which gives a raw API caller named parameters."""
    params = (*((n, t) for n, t in names), ("others_lr", str), ("confirm", bool))

    def body(values: dict, session: str | None) -> str:
        others, confirm = values.pop("others_lr"), values.pop("confirm", False)
        return start(ctx, values, others, confirm, session)

    handler = api_function("compare_start", params, body,
                           "Compare schedules in the background: the configuration the training controls describe "
                           "under one-cycle (at max_lr), constant, step and cosine (each at the best of "
                           f"max_lr {_GRID} with others_lr='grid', or at max_lr with 'same'). Poll train_status "
                           "(kind 'compare'; its result is the comparison's sweep.json). A comparison expected to "
                           "take over 10 min on a CPU starts only with confirm=True.",
                           defaults={**defaults, "others_lr": "grid", "confirm": False})
    ui["start"].click(handler, [*controls, ui["others_lr"], ui["confirm"]], ui["message"], api_name="compare_start",
                      concurrency_limit=None, preprocess=False,
                      ).then(long_job_button, ui["message"], ui["anyway"], api_visibility="private")
    anyway = api_function("compare_anyway", params[:-1], lambda values, session: body({**values, "confirm": True},
                                                                                       session),
                          "Start the comparison held back as a long job (the Compare anyway button).")
    ui["anyway"].click(anyway, [*controls, ui["others_lr"]], ui["message"], api_visibility="private",
                       concurrency_limit=None, preprocess=False,
                       ).then(long_job_button, ui["message"], ui["anyway"], api_visibility="private")

    def compare_stop(request: gr.Request) -> str:
        from lab.server.jobs import NotYours

        try:
            return ctx.runner.stop(getattr(request, "session_hash", None))
        except NotYours as e:
            return error_md(str(e))

    ui["stop"].click(compare_stop, None, ui["message"], api_visibility="private", concurrency_limit=None)
