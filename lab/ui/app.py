"""build_app(): the six tabs in one gr.Blocks, wired to each other and to one JobManager.

The tabs feed each other: the Augment tab's settings and the One Cycle tab's schedule are what the Train tab
trains with and what the LR range test uses; "use these" in the LR tab fills the One Cycle tab. Named API
endpoints for scripts and tests: classify, train_start, train_status, train_stop, find_lr.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from lab.data import DataError
from lab.insights import MAX_UPLOAD_BYTES
from lab.ui import augment, classify, insights, lr_range, one_cycle, train
from lab.ui.common import AppContext, has_cuda
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
    """What app.py passes to launch(): host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT. Gradio
    stops reading an upload past the size the Classify tab accepts (HTTP 413) rather than storing it."""
    return {"theme": theme(), "css": CSS, "max_file_size": MAX_UPLOAD_BYTES}


def default_manager() -> JobManager:
    """The server's job manager: runs under $LAB_RUNS_DIR (default runs/); LAB_DOWNLOAD=1 lets a server without
    the data download CIFAR-10 through torchvision on first use."""
    return JobManager(runs_root=os.environ.get("LAB_RUNS_DIR") or None,
                      download=os.environ.get("LAB_DOWNLOAD", "") in ("1", "true", "yes"))


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


def build_app(manager: JobManager | None = None, pretrained: Path | None = None) -> gr.Blocks:
    ctx = AppContext(manager or default_manager())
    if pretrained is not None:
        ctx.pretrained = Path(pretrained)
    preset = train.default_preset()
    pv = train.preset_values(preset)
    with gr.Blocks(title=TITLE) as demo:
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

        # -- training: every control of the three tabs, by name (these names are the train_start API's)
        controls = {"width": tr["width"], "subset": tr["subset"], "test_subset": tr["test_subset"],
                    "seed": tr["seed"], "device": tr["device"], "loader": tr["loader"], "max_lr": oc["max_lr"],
                    "lr_mode": oc["lr_mode"], "div_factor": oc["div_factor"], "min_lr": oc["min_lr"],
                    "epochs": oc["epochs"], "peak_epoch": oc["peak_epoch"], "batch_size": oc["batch_size"],
                    "optimizer": oc["optimizer"], "anneal": oc["anneal"], "cycle_momentum": oc["cycle_momentum"],
                    "base_momentum": oc["base_momentum"], "max_momentum": oc["max_momentum"], "pad": aug["pad"],
                    "cutout": aug["cutout"], "cutout_p": aug["cutout_p"], "flip_p": aug["flip_p"]}

        def train_start(width: float, subset: float, test_subset: float, seed: float, device: str, loader: str,
                        max_lr: float, lr_mode: str, div_factor: float, min_lr: float, epochs: float,
                        peak_epoch: float, batch_size: float, optimizer: str, anneal: str, cycle_momentum: bool,
                        base_momentum: float, max_momentum: float, pad: float, cutout: float, cutout_p: float,
                        flip_p: float) -> str:
            """Start a training run in the background (returns at once; poll train_status, stop with train_stop).
            A second start while a job runs returns a 'busy — …' message."""
            return train.start(ctx, width=width, subset=subset, test_subset=test_subset, seed=seed, device=device,
                               loader=loader, max_lr=max_lr, lr_mode=lr_mode, div_factor=div_factor, min_lr=min_lr,
                               epochs=epochs, peak_epoch=peak_epoch, batch_size=batch_size, optimizer=optimizer,
                               anneal=anneal, cycle_momentum=cycle_momentum, base_momentum=base_momentum,
                               max_momentum=max_momentum, pad=pad, cutout=cutout, cutout_p=cutout_p, flip_p=flip_p)

        tr["start"].click(train_start, list(controls.values()), tr["message"], api_name="train_start",
                          concurrency_limit=None)

        # -- the LR range test uses the same run settings, with its own optimizer
        range_keys = ["width", "subset", "seed", "device", "loader", "batch_size", "pad", "cutout", "cutout_p",
                      "flip_p", "div_factor"]

        def find_lr(iters: float, start_lr: float, end_lr: float, mode: str, optimizer: str, width: float,
                    subset: float, seed: float, device: str, loader: str, batch_size: float, pad: float,
                    cutout: float, cutout_p: float, flip_p: float, div_factor: float) -> str:
            """Start the LR range test in the background (poll train_status: kind 'lr_range'; its result holds
            the curve and the suggested max_lr / min_lr)."""
            run = dict(width=width, subset=subset, seed=seed, device=device, loader=loader, batch_size=batch_size,
                       pad=pad, cutout=cutout, cutout_p=cutout_p, flip_p=flip_p)
            # LRMIN = the found LRMAX / the One Cycle tab's div factor, as "use these" will set it
            return lr_range.start(ctx, run, iters, start_lr, end_lr, mode, optimizer, div_factor)

        lr["run"].click(find_lr, [lr["iters"], lr["start_lr"], lr["end_lr"], lr["mode"], lr["optimizer"],
                                  *(controls[k] for k in range_keys)], lr["message"], api_name="find_lr",
                        concurrency_limit=None)
        lr["stop"].click(lambda: ctx.manager.stop(), None, lr["message"], api_visibility="private",
                         concurrency_limit=None)
        lr["use"].click(lambda: lr_range.use_these(ctx), None,
                        [oc["max_lr"], oc["lr_mode"], oc["min_lr"], oc["optimizer"], lr["message"]],
                        api_visibility="private")

        # -- checkpoint lists are re-read whenever their tab is opened (a run may have finished meanwhile)
        insights_tab.select(lambda cur: insights.checkpoint_dropdown(ctx, cur), ins["checkpoint"],
                            ins["checkpoint"], api_visibility="private")
        classify_tab.select(lambda cur: insights.checkpoint_dropdown(ctx, cur), cls["checkpoint"],
                            cls["checkpoint"], api_visibility="private")

        # -- first paint
        demo.load(aug["show"], aug["controls"], [aug["image"], aug["caption"]], api_visibility="private")
        demo.load(one_cycle.preview, preview_inputs, [oc["figure"], oc["summary"]], api_visibility="private")
        demo.load(one_cycle.zigzag, oc["zz_controls"], [oc["zz_figure"], oc["zz_text"]], api_visibility="private")
    demo.lab_context = ctx  # for tests and scripts
    return demo
