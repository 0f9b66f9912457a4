"""build_app(): the seven tabs in one gr.Blocks, wired to each other and to one JobManager.

The tabs feed each other: the Augment tab's settings and the One Cycle tab's schedule are what the Train tab
trains with and what the LR range test uses; "use these" in the LR tab fills the One Cycle tab. Named API
endpoints for scripts and tests: classify, train_start, train_status, train_stop, find_lr, sweep_start, sweep_stop.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from lab.data import DataError
from lab.insights import MAX_UPLOAD_BYTES
from lab.ui import augment, classify, insights, lr_range, one_cycle, train
from lab.ui import sweep as sweep_tab
from lab.ui.common import CONTROL_NAMES, TRAIN_CONTROLS, AppContext, has_cuda
from lab.ui.jobs import JobManager
from lab.ui.zerogpu import ZeroGPU, on_zerogpu

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
"""


def theme() -> gr.themes.Theme:
    # System fonts: no request to a font CDN, so the app looks the same offline.
    sans = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    return gr.themes.Soft(primary_hue="indigo", font=sans, font_mono=mono)


def launch_kwargs() -> dict:
    """What app.py passes to launch(): host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT. Gradio
    stops reading an upload past the size the Classify tab accepts (HTTP 413) rather than storing it."""
    return {"theme": theme(), "css": CSS, "max_file_size": MAX_UPLOAD_BYTES}


def default_manager() -> JobManager:
    """The server's job manager: runs under $LAB_RUNS_DIR (default runs/); LAB_DOWNLOAD=1 lets a server without
    the data download CIFAR-10 through torchvision on first use."""
    return JobManager(runs_root=os.environ.get("LAB_RUNS_DIR") or None,
                      download=os.environ.get("LAB_DOWNLOAD", "") in ("1", "true", "yes"))


def header(ctx: AppContext) -> str:
    if ctx.zerogpu is not None:
        device = f"ZeroGPU (each job is one GPU call of at most {ctx.zerogpu.max_call_s} s)"
    else:
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


def api_function(name: str, params: tuple[tuple[str, type], ...], body: Callable[[dict], Any], doc: str,
                 stream: bool = False):
    """A handler whose signature is `params` (Gradio names an endpoint's API parameters after its handler's
    signature), calling body({name: value}) — so the controls are listed once, in TRAIN_CONTROLS, and not
    spelled again as a parameter list, a dict and a call. With `stream`, body returns an iterator and the handler
    is a generator function (Gradio streams what a generator function yields)."""
    if stream:
        def handler(*values):
            yield from body(dict(zip((n for n, _ in params), values)))
    else:
        def handler(*values):
            return body(dict(zip((n for n, _ in params), values)))

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t) for n, t in params],
        return_annotation=str)
    handler.__annotations__ = {**{n: t for n, t in params}, "return": str}
    return handler


def build_app(manager: JobManager | None = None, pretrained: Path | None = None,
              zerogpu: ZeroGPU | None = None) -> gr.Blocks:
    """`zerogpu`: run jobs as GPU calls (default: when this is a ZeroGPU Space); otherwise in a background thread."""
    ctx = AppContext(manager or default_manager())
    if pretrained is not None:
        ctx.pretrained = Path(pretrained)
    ctx.zerogpu = zerogpu if zerogpu is not None else (ZeroGPU(ctx.manager) if on_zerogpu() else None)
    streamed = ctx.zerogpu is not None
    preset = train.default_preset()
    pv = train.preset_values(preset)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(header(ctx))
        with gr.Tabs():
            with gr.Tab("Augment", id="augment"):
                aug = augment.build(ctx, pv)
            with gr.Tab("LR range test", id="lr"):
                lr = lr_range.build(ctx)
            with gr.Tab("One Cycle", id="one_cycle"):
                oc = one_cycle.build(pv)
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
        for c in preview_inputs:
            c.change(one_cycle.preview, preview_inputs, [oc["figure"], oc["summary"]], api_visibility="private",
                     trigger_mode="always_last", show_progress="hidden")

        # -- presets fill every training control of the three tabs but the seed and the device
        tabs = {**aug, **oc, **tr}
        preset_outputs = [tabs[name] for name in train.PRESET_CONTROLS]

        def apply_preset(name):
            v = train.preset_values(name)
            out = {n: v[n] for n in train.PRESET_CONTROLS}
            out["peak_epoch"] = gr.Slider(maximum=max(0.5, v["epochs"] - 0.5), value=v["peak_epoch"])
            return [out[n] for n in train.PRESET_CONTROLS]

        tr["preset"].input(apply_preset, tr["preset"], preset_outputs, api_visibility="private")

        # -- every training control of the three tabs, in TRAIN_CONTROLS order (the train_start API's parameters)
        controls = [tabs[name] for name in CONTROL_NAMES]

        def train_start(values: dict):
            return (train.start_streamed if streamed else train.start)(ctx, **values)

        tr["start"].click(api_function("train_start", TRAIN_CONTROLS, train_start,
                                       "Start a training run in the background (returns at once; poll train_status, "
                                       "stop with train_stop). A second start while a job runs returns a 'busy — …' "
                                       "message. On a ZeroGPU Space the run is one GPU call: this streams its "
                                       "message until the run ends.", stream=streamed),
                          controls, tr["message"], api_name="train_start", concurrency_limit=None)

        # -- the LR range test runs for the run every control describes, with its own tab's optimizer
        range_own = (("iters", float), ("start_lr", float), ("end_lr", float), ("mode", str), ("optimizer", str))
        range_params = (*range_own, *((n, t) for n, t in TRAIN_CONTROLS if n != "optimizer"))

        def find_lr(values: dict):
            own = {n: values.pop(n) for n, _ in range_own}
            return (lr_range.start_streamed if streamed else lr_range.start)(
                ctx, {**values, "optimizer": own["optimizer"]}, own["iters"], own["start_lr"], own["end_lr"],
                own["mode"], own["optimizer"])

        lr["run"].click(api_function("find_lr", range_params, find_lr,
                                     "Start the LR range test in the background (poll train_status: kind 'lr_range'; "
                                     "its result holds the curve and the suggested max_lr / min_lr). On a ZeroGPU "
                                     "Space it is one GPU call, and this streams its message until it ends.",
                                     stream=streamed),
                        [lr[n] for n, _ in range_own] + [tabs[n] for n, _ in range_params[len(range_own):]],
                        lr["message"], api_name="find_lr", concurrency_limit=None)
        lr["stop"].click(lambda: ctx.manager.stop(), None, lr["message"], api_visibility="private",
                         concurrency_limit=None)
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
