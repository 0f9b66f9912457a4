"""build_app(): the seven tabs in one gr.Blocks, wired to each other and to one JobManager.

The tabs feed each other: the Augment tab's settings and the One Cycle tab's schedule are what the Train tab
trains with and what the LR range test uses; "use these" in the LR tab fills the One Cycle tab. Named API
endpoints for scripts and tests: classify, train_start, train_status, train_stop, find_lr, sweep_start, sweep_stop,
compare_start.

Every API caller is treated as a stranger: train_start and find_lr take their parameters raw (preprocess=False)
and check each one themselves (lab.ui.common.train_config), so a wrong type or value is one line naming the
parameter — never a component's exception or Gradio's bare `{"error": null}`; a call missing parameters is told
which (LabBlocks). Uploads are capped in size and deleted from Gradio's cache after an hour.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from lab.data import DataError
from lab.server.jobs import JobManager
from lab.server.policy import UPLOAD_MAX_AGE_S, UPLOAD_MAX_BYTES, manage_runs_allowed, shared_mode
from lab.server.runner import Runner
from lab.server.zerogpu import ZeroGPU, on_zerogpu
from lab.ui import augment, classify, insights, lr_range, one_cycle, train
from lab.ui import compare as compare_section
from lab.ui import sweep as sweep_tab
from lab.ui.common import API_OPTIONAL, CONTROL_NAMES, TRAIN_CONTROLS, AppContext, has_cuda

# The confirmation the train_start and find_lr APIs take last (new in issue 12; optional, default False): a job
# expected to run over lab.estimate.LONG_JOB_S on a CPU starts only with confirm=True, and otherwise returns a
# message saying what it would cost.
CONFIRM = (("confirm", bool),)
# Parameters added to train_start and find_lr after their first release are optional, so scripts written against
# the first API keep working: the knobs declared api_optional (lab.config) at the lab's defaults, and the
# confirmation.
API_DEFAULTS = {**API_OPTIONAL, "confirm": False}

TITLE = "CIFAR-10 super-convergence lab"
CSS = """
.gradio-container {max-width: 1400px !important}
#classify-label {min-height: 120px}
/* Insights' top losses: each item is a 2:1 picture (test image | its CAM) whose caption must be read whole, so
   a thumbnail takes the picture's shape and the caption sits under it, wrapped, instead of over it, cut. */
#mistakes-gallery .thumbnail-item {aspect-ratio: auto; height: auto; display: flex; flex-direction: column;
  align-items: stretch}
#mistakes-gallery .thumbnail-item img {width: 100%; height: auto; object-fit: contain}
#mistakes-gallery .caption-label {position: static; max-width: none; white-space: normal; overflow: visible;
  text-overflow: clip; border: none; border-radius: 0; opacity: 1}
#mistakes-gallery .caption {white-space: normal}
#mistakes-gallery .grid-wrap {padding-top: var(--size-10)}  /* below the block label, not under it */
/* table headers wrap between words, never inside one ("test acc %" broke into "te|st" at 1024 px) */
#train-epochs th, #runs-table th, #train-epochs th *, #runs-table th * {word-break: normal !important;
  overflow-wrap: normal !important; hyphens: none}
"""


def theme() -> gr.themes.Theme:
    # System fonts: no request to a font CDN, so the app looks the same offline.
    sans = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    return gr.themes.Soft(primary_hue="indigo", font=sans, font_mono=mono)


def launch_kwargs() -> dict:
    """What app.py passes to launch(): host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT; an
    upload larger than UPLOAD_MAX_BYTES is refused by the server (HTTP 413) before it reaches a handler."""
    return {"theme": theme(), "css": CSS, "max_file_size": UPLOAD_MAX_BYTES}


def default_manager() -> JobManager:
    """The server's job manager: runs under $LAB_RUNS_DIR (default runs/); LAB_DOWNLOAD=1 lets a server without
    the data download CIFAR-10 through torchvision on first use; shared-server mode on a Space or with
    LAB_PUBLIC=1 (lab.server.policy.shared_mode)."""
    return JobManager(runs_root=os.environ.get("LAB_RUNS_DIR") or None,
                      download=os.environ.get("LAB_DOWNLOAD", "") in ("1", "true", "yes"), shared=shared_mode())


STOP_GRACE_S = 20  # how long a SIGTERM or Ctrl-C waits for the running job to stop and record it


def stop_job_then_exit(manager: JobManager) -> Callable:
    """A signal handler for app.py: SIGTERM (a Space restarting, `kill`) or Ctrl-C asks the running job to stop,
    gives it STOP_GRACE_S to write `stopped` into its run folder (as the Stop button would), then closes the
    server the way Gradio closes it on Ctrl-C. Without it the job's thread dies with the process, and its run
    reads `interrupted`."""
    def handler(signum, frame) -> None:
        if manager.stop() != "nothing is running":
            manager.wait(STOP_GRACE_S)
        raise KeyboardInterrupt

    return handler


def api_parameters(fn: Callable) -> list[inspect.Parameter]:
    """An endpoint's API parameters: its handler's parameters, less the gr.Request Gradio fills in."""
    return [p for p in inspect.signature(fn).parameters.values() if p.annotation is not gr.Request]


class LabBlocks(gr.Blocks):
    """gr.Blocks whose named endpoints take a raw HTTP caller's call without their optional (trailing, defaulted)
    parameters — gradio_client fills those in itself — and tell a caller that sends too few of the others which
    are missing. (Gradio's own check raises a plain ValueError, which a server without show_error answers with a
    bare `{"error": null}`; a gr.Error's message reaches the caller.)"""

    def validate_inputs(self, block_fn, inputs: list[Any]):
        if len(inputs) < len(block_fn.inputs) and block_fn.api_name:
            params = api_parameters(block_fn.fn)
            missing = params[len(inputs):] if len(params) == len(block_fn.inputs) else []
            if missing and all(p.default is not inspect.Parameter.empty for p in missing):
                inputs.extend(p.default for p in missing)  # in place: Gradio reads this list next
            else:
                required = [p.name for p in missing if p.default is inspect.Parameter.empty]
                raise gr.Error(f"{block_fn.api_name} got {len(inputs)} of its {len(block_fn.inputs)} parameters; "
                               f"missing: {', '.join(required) or 'the last ones'}. Send every parameter, in order "
                               "(gradio_client fills in the defaults of those you do not name).",
                               print_exception=False)
        super().validate_inputs(block_fn, inputs)


def header(ctx: AppContext) -> str:
    device = ctx.runner.device_note or ("CUDA GPU" if has_cuda() else "CPU only (use a small preset)")
    if ctx.manager.data_error() is None:
        source = ctx.manager.data().source
        # a visitor of a shared server is not told where its files live: the file's name is enough
        data_line = f"CIFAR-10 from `{Path(source).name if ctx.manager.shared else source}`"
    else:
        data_line = ("**CIFAR-10 not found** — Augment, LR range test, Train and Insights need it (the server needs "
                     "CIFAR10_DIR, or LAB_DOWNLOAD=1 to download it); Classify works with a checkpoint")
    return (f"# {TITLE}\nA ResNet-9 trained with One Cycle, the way Leslie Smith's *super-convergence* does it — "
            f"look at the augmentation, find the LR range, design the cycle, train, then see what the network "
            f"learned. Device: {device} · {data_line}.")


def api_function(name: str, params: tuple[tuple[str, type], ...], body: Callable[[dict, str | None], Any], doc: str,
                 stream: bool = False, defaults: dict[str, Any] | None = None):
    """A handler whose signature is `params` (Gradio names an endpoint's API parameters after its handler's
    signature), calling body({name: value}, session) — so the controls are listed once, in TRAIN_CONTROLS, and
    not spelled again as a parameter list, a dict and a call. A last `request: gr.Request` parameter (which
    Gradio fills in and leaves out of the API) gives the caller's browser session. With `stream`, body returns an
    iterator and the handler is a generator function (Gradio streams what a generator function yields)."""
    def call(values: tuple) -> tuple[dict, str | None]:
        *values, request = values
        return dict(zip((n for n, _ in params), values)), getattr(request, "session_hash", None)

    if stream:
        def handler(*values):
            yield from body(*call(values))
    else:
        def handler(*values):
            return body(*call(values))

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    defaults = defaults or {}  # optional parameters (API clients may leave them out)
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t,
                           default=defaults.get(n, inspect.Parameter.empty)) for n, t in params]
        + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request, default=None)],
        return_annotation=str)
    handler.__annotations__ = {**{n: t for n, t in params}, "request": gr.Request, "return": str}
    return handler


def default_runner(manager: JobManager) -> Runner:
    """What runs the app's jobs: on a ZeroGPU Space, GPU calls (lab.server.zerogpu); elsewhere a background thread
    of this server (lab.server.runner.Runner)."""
    return ZeroGPU(manager) if on_zerogpu() else Runner(manager)


def build_app(manager: JobManager | None = None, pretrained: Path | None = None,
              runner: Runner | None = None) -> gr.Blocks:
    """`runner`: what runs the jobs (default_runner: GPU calls on a ZeroGPU Space, otherwise a background thread);
    a runner that streams makes train_start and find_lr stream their message until the job ends."""
    manager = runner.manager if runner is not None else (manager or default_manager())
    ctx = AppContext(manager, manage_runs=manage_runs_allowed(), runner=runner or default_runner(manager))
    if pretrained is not None:
        ctx.pretrained = Path(pretrained)
    stream = ctx.runner.streams
    preset = train.default_preset()
    pv = train.preset_values(preset)
    # delete_cache: every UPLOAD_MAX_AGE_S, uploads (and other temporary files) older than that are deleted
    with LabBlocks(title=TITLE, delete_cache=(UPLOAD_MAX_AGE_S, UPLOAD_MAX_AGE_S)) as demo:
        gr.Markdown(header(ctx))
        with gr.Tabs():
            with gr.Tab("Augment", id="augment"):
                aug = augment.build(ctx, pv)
            with gr.Tab("LR range test", id="lr"):
                lr = lr_range.build(ctx)
            with gr.Tab("One Cycle", id="one_cycle"):
                oc = one_cycle.build(pv)
                cmp = compare_section.build(ctx)  # the page's configuration under every schedule (issue 23)
            with gr.Tab("Train", id="train"):
                tr = train.build(ctx, preset)
            with gr.Tab("Sweep", id="sweep"):
                sweep_tab.build(ctx)
            with gr.Tab("Insights", id="insights") as insights_tab:
                ins = insights.build(ctx)
            with gr.Tab("Classify", id="classify") as classify_tab:
                cls = classify.build(ctx)

        # -- the One Cycle preview follows its controls and the Train tab's subset (steps per epoch)
        preview_inputs = [*oc["controls"], tr["subset"]]
        # One listener for all of them (gr.on): its calls run one at a time, the last values last, so a slow early
        # answer can never land after, and overwrite, a later one (separate listeners each queue on their own)
        gr.on([c.change for c in preview_inputs], one_cycle.preview, preview_inputs, [oc["figure"], oc["summary"]],
              api_visibility="private", trigger_mode="always_last", show_progress="hidden")

        # -- presets fill every training control of the three tabs but the seed and the device
        tabs = {**aug, **oc, **tr}
        preset_outputs = [tabs[name] for name in train.PRESET_CONTROLS]

        # -- every training control of the three tabs, in TRAIN_CONTROLS order (the train_start API's parameters)
        controls = [tabs[name] for name in CONTROL_NAMES]

        def train_start(values: dict, session: str | None):
            return train.start(ctx, values.pop("confirm", False), session, **values)

        tr["start"].click(api_function("train_start", (*TRAIN_CONTROLS, *CONFIRM), train_start,
                                       "Start a training run in the background (returns at once; poll train_status, "
                                       "stop with train_stop). A second start while a job runs returns a 'busy — …' "
                                       "message. A run expected to take over 10 min on a CPU starts only with "
                                       "confirm=True; without it, the message says how long it would take. On a "
                                       "ZeroGPU Space the run is one GPU call: this streams its message until the run "
                                       "ends.", stream=stream, defaults=API_DEFAULTS),
                          [*controls, tr["confirm"]], tr["message"], api_name="train_start", concurrency_limit=None,
                          preprocess=False,
                          ).then(train.long_job_button, tr["message"], tr["anyway"], api_visibility="private")
        compare_section.wire(ctx, cmp, [*controls], TRAIN_CONTROLS, api_function, API_DEFAULTS)
        train_anyway = api_function("train_anyway", TRAIN_CONTROLS,
                                    lambda values, session: train.start(ctx, True, session, **values),
                                    "Start the run held back as a long job (the Start anyway button).", stream=stream)
        tr["anyway"].click(train_anyway, controls, tr["message"], api_visibility="private", concurrency_limit=None,
                           preprocess=False,
                           ).then(train.long_job_button, tr["message"], tr["anyway"], api_visibility="private")

        # -- what Start would cost, before it is pressed (the step time is measured once per width and device)
        estimate_inputs = [tabs[n] for n in ("width", "subset", "test_subset", "device", "epochs", "batch_size")]

        def estimate(*values):
            current = dict(zip(CONTROL_NAMES, values))
            return train.estimate_line(ctx, **current)

        gr.on([c.change for c in estimate_inputs], estimate, controls, tr["estimate"], api_visibility="private",
              trigger_mode="always_last", show_progress="hidden")  # one listener: answers arrive in order

        # the LRs a range test found and "Use these" applied, per browser session: a preset change keeps them
        found = gr.State(None)

        def apply_preset(name, found_lrs):
            v, line, kept = train.preset_with_lrs(name, found_lrs)
            out = {n: v[n] for n in train.PRESET_CONTROLS}
            out["peak_epoch"] = one_cycle.peak_slider(v["epochs"], v["peak_epoch"])
            # the estimate beside the preset is redrawn by .then below; until then it must not show the old one's
            return [*(out[n] for n in train.PRESET_CONTROLS), line, gr.Button(visible=kept),
                    "Expected time: estimating for this preset…"]

        tr["preset"].input(apply_preset, [tr["preset"], found], [*preset_outputs, tr["lr_source"], tr["preset_lrs"],
                                                                 tr["estimate"]], api_visibility="private",
                           ).then(estimate, controls, tr["estimate"], api_visibility="private", show_progress="hidden")

        def own_lrs(name):
            v, line, _ = train.preset_with_lrs(name, None)
            return v["max_lr"], v["lr_mode"], v["min_lr"], v["div_factor"], None, line, gr.Button(visible=False)

        tr["preset_lrs"].click(own_lrs, tr["preset"], [oc["max_lr"], oc["lr_mode"], oc["min_lr"], oc["div_factor"],
                                                       found, tr["lr_source"], tr["preset_lrs"]],
                               api_visibility="private")
        # an LR or optimizer set by hand is the learner's own: no range test's LRs are kept over a preset any more
        gr.on([oc[n].input for n in ("max_lr", "min_lr", "optimizer")],
              lambda: (None, train.BY_HAND, gr.Button(visible=False)), None,
              [found, tr["lr_source"], tr["preset_lrs"]], api_visibility="private", show_progress="hidden")

        # -- the LR range test runs for the run every control describes, with its own tab's optimizer
        range_own = (("iters", float), ("start_lr", float), ("end_lr", float), ("mode", str), ("optimizer", str))
        range_params = (*range_own, *((n, t) for n, t in TRAIN_CONTROLS if n != "optimizer"), *CONFIRM)
        range_inputs = [lr[n] for n, _ in range_own] + [tabs[n] for n, _ in range_params[len(range_own):-1]]

        def find_lr(values: dict, session: str | None):
            own = {n: values.pop(n) for n, _ in range_own}
            confirm = values.pop("confirm", False)  # checked with the rest (lr_range.start)
            return lr_range.start(ctx, {**values, "optimizer": own["optimizer"]}, own["iters"], own["start_lr"],
                                  own["end_lr"], own["mode"], own["optimizer"], confirm, session)

        lr["run"].click(api_function("find_lr", range_params, find_lr,
                                     "Start the LR range test in the background (poll train_status: kind 'lr_range'; "
                                     "its result holds the curve and the suggested max_lr / min_lr). A test "
                                     "expected to take over 10 min on a CPU starts only with confirm=True. On a "
                                     "ZeroGPU Space it is one GPU call, and this streams its message until it ends.",
                                     stream=stream, defaults=API_DEFAULTS),
                        [*range_inputs, lr["confirm"]], lr["message"], api_name="find_lr", concurrency_limit=None,
                        preprocess=False,
                        ).then(lr_range.long_job_button, lr["message"], lr["anyway"], api_visibility="private")
        find_lr_anyway = api_function("find_lr_anyway", range_params[:-1],
                                      lambda values, session: find_lr({**values, "confirm": True}, session),
                                      "Start the range test held back as a long job (the Run anyway button).",
                                      stream=stream)
        lr["anyway"].click(find_lr_anyway, range_inputs, lr["message"], api_visibility="private",
                           concurrency_limit=None, preprocess=False,
                           ).then(lr_range.long_job_button, lr["message"], lr["anyway"], api_visibility="private")

        def stop_range_test(request: gr.Request) -> str:
            return lr_range.stop(ctx, getattr(request, "session_hash", None))

        lr["stop"].click(stop_range_test, None, lr["message"], api_visibility="private", concurrency_limit=None)
        lr["use"].click(lambda ack: lr_range.use_these(ctx, ack), lr["acknowledged"],
                        [oc["max_lr"], oc["lr_mode"], oc["min_lr"], oc["optimizer"], lr["message"],
                         lr["acknowledged"], lr["use"], found],
                        api_visibility="private",
                        ).then(lambda f: (train.lrs_found_line(f), gr.Button(visible=False)), found,
                               [tr["lr_source"], tr["preset_lrs"]], api_visibility="private")

        # -- checkpoint lists are re-read whenever their tab is opened (a run may have finished meanwhile)
        insights_tab.select(ctx.checkpoint_dropdown, ins["checkpoint"], ins["checkpoint"], api_visibility="private")
        classify_tab.select(ctx.checkpoint_dropdown, cls["checkpoint"], cls["checkpoint"], api_visibility="private")

        # -- first paint
        demo.load(aug["show"], aug["controls"], [aug["image"], aug["caption"]], api_visibility="private")
        demo.load(one_cycle.preview, preview_inputs, [oc["figure"], oc["summary"]], api_visibility="private")
        demo.load(one_cycle.zigzag, oc["zz_controls"], [oc["zz_figure"], oc["zz_text"]], api_visibility="private")
        demo.load(estimate, controls, tr["estimate"], api_visibility="private")
        demo.load(lambda sel: lr_range.refresh_saved(ctx, sel), lr["saved"], [lr["saved"], lr["saved_plot"]],
                  api_visibility="private")
        demo.load(lambda: gr.Dropdown(choices=train.manageable_runs(ctx)), None, tr["target"],
                  api_visibility="private")
    return demo
