"""Augment tab: training images beside what the albumentations training pipeline makes of them."""

from __future__ import annotations

import random

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lab import augment
from lab.config import CUTOUT_MAX, PAD_MAX, AugmentConfig, ConfigError, check_seed
from lab.data import CLASSES, DataError
from lab.ui.common import AppContext, error_md, learner_tricks_md, message, number, whole

CELL = 96  # pixels per 32×32 image in the grid (×3, nearest-neighbour: every pixel stays visible)
GAP = 6
LABEL_W = 90
HEADER_H = 24
MAX_IMAGES = 12  # rows of the grid (the slider's range)


def pipeline_text(cfg: AugmentConfig) -> str:
    """The pipeline in words, one op per step, as train_pipeline builds it."""
    ops = []
    if cfg.pad:
        ops.append(f"pad {cfg.pad} px (reflect) → random 32×32 crop")
    ops.append(f"horizontal flip (p={cfg.flip_p:g})")
    if cfg.cutout:
        ops.append(f"CutOut one {cfg.cutout}×{cfg.cutout} hole filled with the mean colour (p={cfg.cutout_p:g})")
    return " → ".join(ops) + " → normalise"


# A CutOut hole wider than this share of the 32-pixel side hides most of the image on many draws (its centre
# falls anywhere in the image; at 32 a centred hole covers all of it): such a draw teaches the network nothing.
CUTOUT_CAUTION = 0.5


def cutout_caution(cfg: AugmentConfig) -> str:
    """A warning for a CutOut hole so large that many training images lose most of their pixels."""
    if cfg.cutout <= CUTOUT_CAUTION * 32 or cfg.cutout_p == 0:
        return ""
    whole = " — centred, it hides the whole image" if cfg.cutout >= 32 else ""
    return (f"  \n⚠ **A {cfg.cutout}×{cfg.cutout} hole covers {cfg.cutout ** 2 / 1024:.0%} of a 32×32 image**"
            f"{whole}: many draws keep too little to learn from. The spec uses 8×8; above "
            f"{int(CUTOUT_CAUTION * 32)} px, expect lower accuracy.")


def grid(originals: np.ndarray, augmented: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
    """One row per image: class name, the original, then its augmented draws; a header names the columns."""
    draws = len(augmented[0]) if augmented else 0
    rows, cols = len(originals), 1 + draws
    width = LABEL_W + cols * (CELL + GAP) + GAP
    height = HEADER_H + rows * (CELL + GAP) + GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    for c, title in enumerate(["original"] + [f"augmented {d + 1}" for d in range(draws)]):
        draw.text((LABEL_W + GAP + c * (CELL + GAP), 4), title, fill=(60, 60, 60), font=font)
    for r in range(rows):
        y = HEADER_H + GAP + r * (CELL + GAP)
        draw.text((6, y + CELL // 2 - 8), labels[r], fill=(30, 30, 30), font=font)
        for c, img in enumerate([originals[r], *augmented[r]]):
            tile = Image.fromarray(img).resize((CELL, CELL), Image.Resampling.NEAREST)
            canvas.paste(tile, (LABEL_W + GAP + c * (CELL + GAP), y))
    return np.asarray(canvas)


def preview(ctx: AppContext, pad: float, cutout: float, cutout_p: float, flip_p: float, seed: float,
            n_images: float = 6, draws: float = 4) -> tuple[np.ndarray | None, str]:
    """(grid image, Markdown caption). The seed picks the images and every random draw of the pipeline. A bad
    setting (a negative seed, an empty box) is one line saying what to fix."""
    try:
        cfg = AugmentConfig(pad=whole("pad", "pad", pad), flip_p=number("flip_p", "flip probability", flip_p),
                            cutout=whole("cutout", "CutOut size", cutout),
                            cutout_p=number("cutout_p", "CutOut probability", cutout_p))
        seed = check_seed(whole("seed", "seed", 0 if seed in (None, "") else seed))
        n_images = whole("n_images", "images", n_images)
        if not 1 <= n_images <= MAX_IMAGES:
            raise ConfigError(f"images must be 1–{MAX_IMAGES}, got {n_images}", "n_images")
    except ConfigError as e:
        return None, error_md(message(e))
    try:
        data = ctx.manager.data()
    except DataError:
        # the tab's notice above already says what is missing and how to provide it: not twice
        return None, error_md("Nothing to show: CIFAR-10 is not available on this server (see the notice above).")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.x_train), size=int(n_images), replace=False)
    originals = data.x_train[idx]
    pipe = augment.augment_only(cfg, seed=seed)
    augmented = [[pipe(image=img)["image"] for _ in range(int(draws))] for img in originals]
    labels = [CLASSES[int(y)] for y in data.y_train[idx]]
    caption = (f"Training images {', '.join(f'#{i}' for i in idx)} (seed {seed}). Pipeline: "
               f"{pipeline_text(cfg)}. The same settings are used when you train in the *Train* tab."
               f"{cutout_caution(cfg)}")
    return grid(originals, augmented, labels), caption


def new_seed() -> int:
    return random.randint(0, 99_999)  # short enough to read and type back


def build(ctx: AppContext, defaults: dict | None = None) -> dict[str, gr.components.Component]:
    """`defaults`: the preset the app opens with (train.preset_values); the augmentation's own defaults otherwise."""
    defaults = defaults or {}
    notice = ctx.data_message()
    gr.Markdown("Each row shows a training image and what the training augmentation makes of it on a few "
                "different draws (the albumentations pipeline the reference loader uses; the fast GPU loader "
                "applies the same ops on tensors).")
    gr.Markdown(learner_tricks_md(), elem_id="augment-tricks")
    if notice:
        gr.Markdown(notice)
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            d = AugmentConfig()
            pad = gr.Slider(0, PAD_MAX, value=defaults.get("pad", d.pad), step=1,
                            label="pad (px, reflect) before the random crop")
            cutout = gr.Slider(0, CUTOUT_MAX, value=defaults.get("cutout", d.cutout), step=1,
                               label="CutOut size (px, 0 = off)")
            cutout_p = gr.Slider(0, 1, value=defaults.get("cutout_p", d.cutout_p), step=0.05, label="CutOut probability")
            flip_p = gr.Slider(0, 1, value=defaults.get("flip_p", d.flip_p), step=0.05,
                               label="horizontal flip probability")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="augment-seed")
            n_images = gr.Slider(1, MAX_IMAGES, value=6, step=1, label="images")
            new = gr.Button("New sample", variant="primary", elem_id="augment-new")
        with gr.Column(scale=3):
            image = gr.Image(label="original | augmented", type="numpy", interactive=False, format="png",
                             elem_id="augment-grid",
                             buttons=["download", "fullscreen"])
            caption = gr.Markdown(elem_id="augment-caption")
    controls = [pad, cutout, cutout_p, flip_p, seed, n_images]

    def show(pad, cutout, cutout_p, flip_p, seed, n_images):
        return preview(ctx, pad, cutout, cutout_p, flip_p, seed, n_images)

    for c in controls:
        c.change(show, controls, [image, caption], api_visibility="private", trigger_mode="always_last",
                 show_progress="minimal")
    new.click(new_seed, None, seed, api_visibility="private")  # the seed's change event redraws
    return {"pad": pad, "cutout": cutout, "cutout_p": cutout_p, "flip_p": flip_p, "image": image,
            "caption": caption, "show": show, "controls": controls}
