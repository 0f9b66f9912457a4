"""build_app(): the six tabs in one gr.Blocks, wired to each other and to one JobManager.

The tabs feed each other: the Augment tab's settings and the One Cycle tab's schedule are what the Train tab
trains with and what the LR range test uses; "use these" in the LR tab fills the One Cycle tab. Named API
endpoints for scripts and tests: classify, train_start, train_status, train_stop, find_lr.

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

from lab.config import UPLOAD_MAX_AGE_S, UPLOAD_MAX_BYTES
from lab.data import DataError
from lab.ui import augment, classify, insights, lr_range, one_cycle, train
from lab.ui.common import CONTROL_NAMES, TRAIN_CONTROLS, AppContext, has_cuda, shared_mode
from lab.ui.jobs import JobManager

TITLE = "CIFAR-10 super-convergence lab"
CSS = """
.gradio-container {max-width: 1400px !important}
#classify-label {min-height: 120px}
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
    LAB_PUBLIC=1 (lab.ui.common.shared_mode)."""
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


def api_parameters(fn: Callable) -> list[str]:
    """An endpoint's API parameter names: its handler's parameters, less the gr.Request Gradio fills in."""
    return [n for n, p in inspect.signature(fn).parameters.items() if p.annotation is not gr.Request]


class LabBlocks(gr.Blocks):
    """gr.Blocks whose named endpoints tell a caller that sends too few values which parameters are missing.
    (Gradio's own check raises a plain ValueError, which a server without show_error answers with a bare
    `{"error": null}`; a gr.Error's message reaches the caller.)"""

    def validate_inputs(self, block_fn, inputs: list[Any]):
        if len(inputs) < len(block_fn.inputs) and block_fn.api_name:
            names = api_parameters(block_fn.fn)
            missing = names[len(inputs):] if len(names) == len(block_fn.inputs) else []
            raise gr.Error(f"{block_fn.api_name} got {len(inputs)} of its {len(block_fn.inputs)} parameters; missing: "
                           f"{', '.join(missing) or 'the last ones'}. Send every parameter, in order (gradio_client "
                           "fills in the defaults of those you do not name).", print_exception=False)
        super().validate_inputs(block_fn, inputs)


def header(ctx: AppContext) -> str:
    device = "CUDA GPU" if has_cuda() else "CPU only (use a small preset)"
    try:
        data = ctx.manager.data()
        data_line = f"CIFAR-10 from `{data.source}`"
    except DataError:
        data_line = ("**CIFAR-10 not found** — Augment, LR range test, Train and Insights need it (set CIFAR10_DIR); "
                     "Classify works with a checkpoint")
    return (f"# {TITLE}\nA ResNet-9 trained with One Cycle, the way Leslie Smith's *super-convergence* does it — "
            f"look at the augmentation, find the LR range, design the cycle, train, then see what the network "
            f"learned. Device: {device} · {data_line}.")


def api_function(name: str, params: tuple[tuple[str, type], ...], body: Callable[[dict, str | None], Any], doc: str):
    """A handler whose signature is `params` (Gradio names an endpoint's API parameters after its handler's
    signature), calling body({name: value}, session) — so the controls are listed once, in TRAIN_CONTROLS, and
    not spelled again as a parameter list, a dict and a call. A last `request: gr.Request` parameter (which
    Gradio fills in and leaves out of the API) gives the caller's browser session."""
    def handler(*values):
        *values, request = values
        session = getattr(request, "session_hash", None)
        return body(dict(zip((n for n, _ in params), values)), session)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t) for n, t in params]
        + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)],
        return_annotation=str)
    handler.__annotations__ = {**{n: t for n, t in params}, "request": gr.Request, "return": str}
    return handler


def build_app(manager: JobManager | None = None, pretrained: Path | None = None) -> gr.Blocks:
    ctx = AppContext(manager or default_manager())
    if pretrained is not None:
        ctx.pretrained = Path(pretrained)
    preset = train.default_preset()
    pv = train.preset_values(preset)
    # delete_cache: every UPLOAD_MAX_AGE_S, uploads (and other temporary files) older than that are deleted
    with LabBlocks(title=TITLE, delete_cache=(UPLOAD_MAX_AGE_S, UPLOAD_MAX_AGE_S)) as demo:
        gr.Markdown(header(ctx))
        with gr.Tabs():
            with gr.Tab("Augment", id="augment"):
                aug = augment.build(ctx)
            with gr.Tab("LR range test", id="lr"):
                lr = lr_range.build(ctx)
            with gr.Tab("One Cycle", id="one_cycle"):
                oc = one_cycle.build(pv)
            with gr.Tab("Train", id="train"):
                tr = train.build(ctx, preset)
            with gr.Tab("Insights", id="insights") as insights_tab:
                ins = insights.build(ctx)
            with gr.Tab("Classify", id="classify") as classify_tab:
                cls = classify.build(ctx)

        # -- the One Cycle preview follows its controls and the Train tab's subset (steps per epoch)
        preview_inputs = [*oc["controls"], tr["subset"]]
        for c in preview_inputs:
            c.change(one_cycle.preview, preview_inputs, [oc["figure"], oc["summary"]], api_visibility="private",
                     trigger_mode="always_last", show_progress="hidden")

        # -- presets fill the Train tab and the One Cycle tab
        def apply_preset(name):
            v = train.preset_values(name)
            return (v["width"], v["subset"], v["test_subset"], v["epochs"],
                    gr.Slider(maximum=max(0.5, v["epochs"] - 0.5), value=v["peak_epoch"]), v["batch_size"])

        tr["preset"].input(apply_preset, tr["preset"],
                           [tr["width"], tr["subset"], tr["test_subset"], oc["epochs"], oc["peak_epoch"],
                            oc["batch_size"]], api_visibility="private")

        # -- every training control of the three tabs, in TRAIN_CONTROLS order (the train_start API's parameters)
        tabs = {**aug, **oc, **tr}
        controls = [tabs[name] for name in CONTROL_NAMES]

        def train_start(values: dict, session: str | None) -> str:
            return train.start(ctx, session, **values)

        tr["start"].click(api_function("train_start", TRAIN_CONTROLS, train_start,
                                       "Start a training run in the background (returns at once; poll train_status, "
                                       "stop with train_stop). A second start while a job runs returns a 'busy — …' "
                                       "message."),
                          controls, tr["message"], api_name="train_start", concurrency_limit=None, preprocess=False)

        # -- the LR range test runs for the run every control describes, with its own tab's optimizer
        range_own = (("iters", float), ("start_lr", float), ("end_lr", float), ("mode", str), ("optimizer", str))
        range_params = (*range_own, *((n, t) for n, t in TRAIN_CONTROLS if n != "optimizer"))

        def find_lr(values: dict, session: str | None) -> str:
            own = {n: values.pop(n) for n, _ in range_own}
            return lr_range.start(ctx, {**values, "optimizer": own["optimizer"]}, own["iters"], own["start_lr"],
                                  own["end_lr"], own["mode"], own["optimizer"], session)

        lr["run"].click(api_function("find_lr", range_params, find_lr,
                                     "Start the LR range test in the background (poll train_status: kind 'lr_range'; "
                                     "its result holds the curve and the suggested max_lr / min_lr)."),
                        [lr[n] for n, _ in range_own] + [tabs[n] for n, _ in range_params[len(range_own):]],
                        lr["message"], api_name="find_lr", concurrency_limit=None, preprocess=False)

        def stop_range_test(request: gr.Request) -> str:
            return lr_range.stop(ctx, getattr(request, "session_hash", None))

        lr["stop"].click(stop_range_test, None, lr["message"], api_visibility="private", concurrency_limit=None)
        lr["use"].click(lambda: lr_range.use_these(ctx), None,
                        [oc["max_lr"], oc["lr_mode"], oc["min_lr"], oc["optimizer"], lr["message"]],
                        api_visibility="private")

        # -- checkpoint lists are re-read whenever their tab is opened (a run may have finished meanwhile)
        insights_tab.select(ctx.checkpoint_dropdown, ins["checkpoint"], ins["checkpoint"], api_visibility="private")
        classify_tab.select(ctx.checkpoint_dropdown, cls["checkpoint"], cls["checkpoint"], api_visibility="private")

        # -- first paint
        demo.load(aug["show"], aug["controls"], [aug["image"], aug["caption"]], api_visibility="private")
        demo.load(one_cycle.preview, preview_inputs, [oc["figure"], oc["summary"]], api_visibility="private")
        demo.load(one_cycle.zigzag, oc["zz_controls"], [oc["zz_figure"], oc["zz_text"]], api_visibility="private")
    return demo
