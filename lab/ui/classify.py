"""Classify tab: upload any image, see it as the network sees it (32×32), get the top-k classes and a Grad-CAM.

Uploads are read by lab.insights (any size, any PIL mode, first frame of an animation); an empty, truncated or
non-image file gives a clear message instead of an exception, and the server carries on.
"""

from __future__ import annotations

import base64
from pathlib import Path

import gradio as gr

from lab import insights as ins
from lab import runs as runs_mod
from lab.data import CLASSES
from lab.ui.common import NO_CHECKPOINT, AppContext, error_md

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
TOP = "top prediction"
VIEW = 160  # display size of the 32×32 input and its CAM


class AnyImage(gr.Image):
    """gr.Image that hands the raw upload (a path, or bytes for a pasted data URL) to the app instead of
    decoding it with PIL first, so the app, not a generic error, tells the user what is wrong with a file.
    A template of gr.Image: the browser shows the usual image component."""

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if getattr(payload, "path", None) is None and url and url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1]) if "," in url else b""
        return payload.path


def examples() -> list[str]:
    return sorted(str(p) for p in EXAMPLES.glob("*.png")) if EXAMPLES.is_dir() else []


def load_model(ctx: AppContext, checkpoint: str | None):
    """(model, cfg, metrics) of the chosen checkpoint, or the default one; ValueError with how to get one."""
    checkpoint = checkpoint or ctx.default_checkpoint()
    if not checkpoint:
        raise ValueError(NO_CHECKPOINT)
    try:
        return ctx.load_model(checkpoint)
    except (runs_mod.CheckpointError, OSError) as e:
        raise ValueError(f"cannot load checkpoint {checkpoint}: {e}") from e


def predict(ctx: AppContext, image, checkpoint: str | None = None, top_k: int = 3) -> dict[str, float]:
    """image (a path, bytes or a PIL image) → {class: confidence}, most likely first. ValueError (a readable
    message) for a bad upload or no checkpoint."""
    if image is None:
        raise ValueError("no image: upload one (PNG, JPEG, GIF, BMP, TIFF, WebP …) or pick an example")
    x = ins.prepare_upload(image)  # ImageError is a ValueError
    model, _, _ = load_model(ctx, checkpoint)
    return ins.classify(model, x, int(top_k))


def view(ctx: AppContext, image, checkpoint, top_k, layer, opacity, cam_for):
    """Everything the tab shows for one upload: (32×32 view, label confidences, Grad-CAM overlay, message)."""
    if image is None:
        return None, None, None, "Upload an image or pick an example below."
    try:
        rgb = ins.to_rgb(ins.open_image(image))
        x = ins.to_network_input(rgb)  # as prepare_upload, keeping the size to say what was done to it
        model, cfg, metrics = load_model(ctx, checkpoint)
    except ValueError as e:
        return None, None, None, error_md(str(e))
    probs = ins.classify(model, x)
    top = list(probs)[: int(top_k)]
    target = CLASSES.index(top[0]) if cam_for in (None, TOP) else CLASSES.index(cam_for)
    cam = ins.gradcam(model, x[None], [target], layer)[0]
    overlay = ins.cam_overlay(x, cam, float(opacity), size=VIEW)
    acc = metrics.get("test_acc")
    about = f" (test accuracy {100 * acc:.1f}% when saved)" if isinstance(acc, (int, float)) else ""
    msg = (f"Prediction: **{top[0]}** ({100 * probs[top[0]]:.1f}%). Grad-CAM for *{CLASSES[target]}* at {layer}. "
           f"Model: width {cfg.width:g}{about}. {resize_note(*rgb.size)}")
    return ins.upscale(x, VIEW), {k: probs[k] for k in top}, overlay, msg


def resize_note(width: int, height: int) -> str:
    """What was done to an upload of this size to make the 32×32 the network sees — with a caution when it had
    fewer pixels than that, as the network then sees a blur and still answers confidently (softmax always does)."""
    side = min(width, height)
    square = "its centre square" if width != height else "it"
    if side > 32:
        return f"The image ({width}×{height}) was cropped to its centre square and shrunk to 32×32."
    if side == 32:
        return f"The image ({width}×{height}) was used as it is{'' if width == height else ' (centre square)'}."
    return (f"⚠ **The image is only {width}×{height} pixels**: {square} was enlarged to 32×32, so the network sees "
            f"a blur with {side}×{side} pixels of detail. Its confidence says nothing about that: take the "
            "prediction with caution and upload a larger image.")


def build(ctx: AppContext) -> dict:
    gr.Markdown("Upload a photo of an airplane, car, bird, cat, deer, dog, frog, horse, ship or truck — any size, "
                "any format Pillow reads. The network sees it at 32×32 (centre square), as CIFAR-10 images are.")
    choices = ctx.checkpoint_choices()
    with gr.Row():
        ckpt = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="checkpoint", scale=4)
        refresh = gr.Button("↻", scale=0, min_width=50)
    notice = gr.Markdown("" if choices else NO_CHECKPOINT)
    with gr.Row():
        with gr.Column(scale=2):
            image = AnyImage(label="your image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             height=280, elem_id="classify-input")
            if examples():
                gr.Examples(examples=[[p] for p in examples()], inputs=[image], label="examples (synthetic drawings)",
                            elem_id="classify-examples")
            with gr.Row():
                top_k = gr.Slider(1, 10, value=3, step=1, label="top-k")
                layer = gr.Dropdown(list(ins.CAM_LAYERS), value="layer3", label="Grad-CAM layer")
            with gr.Row():
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heat-map opacity")
                cam_for = gr.Dropdown([TOP, *CLASSES], value=TOP, label="CAM for")
            button = gr.Button("Classify", variant="primary", elem_id="classify-button")
        with gr.Column(scale=3):
            with gr.Row():
                seen = gr.Image(label="as the network sees it (32×32)", interactive=False, height=VIEW + 40,
                                format="png", elem_id="classify-seen", buttons=["download", "fullscreen"])
                cam = gr.Image(label="Grad-CAM", interactive=False, height=VIEW + 40, format="png",
                               elem_id="classify-cam", buttons=["download", "fullscreen"])
            label = gr.Label(label="top classes", num_top_classes=10, elem_id="classify-label")
            message = gr.Markdown(elem_id="classify-message")
    inputs = [image, ckpt, top_k, layer, opacity, cam_for]
    outputs = [seen, label, cam, message]

    def show(image, ckpt, top_k, layer, opacity, cam_for):
        return view(ctx, image, ckpt, top_k, layer, opacity, cam_for)

    button.click(show, inputs, outputs, api_visibility="private")
    image.change(show, inputs, outputs, api_visibility="private", trigger_mode="always_last")
    for c in (top_k, layer, opacity, cam_for, ckpt):
        c.change(show, inputs, outputs, api_visibility="private", trigger_mode="always_last", show_progress="hidden")

    def refresh_choices(current):
        return ctx.checkpoint_dropdown(current), "" if ctx.checkpoint_choices() else NO_CHECKPOINT

    refresh.click(refresh_choices, ckpt, [ckpt, notice], api_visibility="private")

    def classify(image) -> dict[str, float]:
        """An image (any size, mode or common format) → the network's confidence for each CIFAR-10 class."""
        try:
            return predict(ctx, image, None, len(CLASSES))
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None

    # The scripting endpoint: image in, label confidences out, with the default checkpoint.
    api_button = gr.Button(visible=False)
    api_button.click(classify, image, label, api_name="classify")
    return {"checkpoint": ckpt, "refresh": refresh, "image": image, "seen": seen, "label": label, "cam": cam,
            "message": message, "notice": notice, "button": button}
