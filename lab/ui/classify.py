"""Classify tab: upload any image (or take one with the webcam, or paste one from the clipboard), see it as the
network sees it (32×32), get the top-k classes and a class activation map (Grad-CAM, Grad-CAM++, EigenCAM, …).

Uploads are read by lab.insights (any size, any PIL mode, first frame of an animation); an empty, truncated or
non-image file gives a clear message instead of an exception, and the server carries on. Every handler that
takes the image passes it through checked_image first: a client names its image by a path on the server, and
only Gradio's upload folder and the bundled examples may be named.
"""

from __future__ import annotations

import base64
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder  # where Gradio puts uploads (GRADIO_TEMP_DIR, else <tmp>/gradio)

from lab import insights as ins
from lab import runs as runs_mod
from lab.data import CLASSES
from lab.server import uploads
from lab.ui.common import NO_CHECKPOINT, AppContext, error_md

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
TOP = "top prediction"
VIEW = 160  # display size of the 32×32 input and its CAM
# A data URL of an upload at the cap: base64 takes 4 characters per 3 bytes, plus its "data:image/…;base64," header
DATA_URL_MAX_CHARS = 4 * -(-uploads.MAX_UPLOAD_BYTES // 3) + 256


class AnyImage(gr.Image):
    """gr.Image that hands the raw upload (a path, or bytes for a pasted data URL) to the app instead of
    decoding it with PIL first, so the app, not a generic error, tells the user what is wrong with a file.
    The path is whatever the client sent: the handlers decide whether it may be read (checked_image).
    A template of gr.Image: the browser shows the usual image component."""

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if getattr(payload, "path", None) is None and url and url.startswith("data:"):
            # the upload cap holds for a pasted image too, judged from its length before anything is decoded
            if len(url) > DATA_URL_MAX_CHARS:
                raise gr.Error(f"the pasted image is about {len(url) * 3 / 4 / 2**20:.0f} MB, over this server's "
                               f"{uploads.MAX_UPLOAD_BYTES / 2**20:.0f} MB limit for an upload; send a smaller image",
                               print_exception=False)
            return base64.b64decode(url.split(",", 1)[1]) if "," in url else b""
        return payload.path


def examples() -> list[str]:
    return sorted(str(p) for p in EXAMPLES.glob("*.png")) if EXAMPLES.is_dir() else []


def checked_image(image):
    """The image argument of a handler, unchanged if the app may read it: bytes (a pasted data URL), or a file
    in Gradio's upload folder (every upload lands there, and so does every example the browser sends) or among
    the bundled examples. Anything else: ImageError with one message, whether or not the file exists.

    Gradio 6 checks a path only when the payload carries meta {"_type": "gradio.FileData"} (then it refuses
    any file outside its upload folder itself); a payload without meta reaches AnyImage.preprocess untouched,
    so this check is the one that holds for every request."""
    return uploads.check_upload(image, (get_upload_folder(), EXAMPLES))


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
    message) for a bad upload, a path the app may not read (checked_image) or no checkpoint."""
    if image is None:
        raise ValueError("no image: upload one (PNG, JPEG, GIF, BMP, TIFF, WebP …) or pick an example")
    x = uploads.prepare_upload(checked_image(image))  # ImageError is a ValueError
    model, _, _ = load_model(ctx, checkpoint)
    return ins.classify(model, x, int(top_k))


def view(ctx: AppContext, image, checkpoint, top_k, layer, opacity, cam_for, method="gradcam"):
    """Everything the tab shows for one image: (32×32 view, label confidences, CAM overlay, message)."""
    if image is None:
        return None, None, None, "Upload an image, take one with the webcam, paste one, or pick an example below."
    try:
        # the CAM settings first: a request may come from any client, not only from these dropdowns
        if method not in ins.CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(ins.CAM_METHODS)}")
        if layer not in ins.CAM_LAYERS:
            raise ValueError(f"unknown CAM layer {layer!r}; choose one of {', '.join(ins.CAM_LAYERS)}")
        if cam_for not in (None, TOP, *CLASSES):
            raise ValueError(f"CAM for {cam_for!r}? choose {TOP!r} or a class: {', '.join(CLASSES)}")
        x, (w, h) = uploads.read_upload(checked_image(image))
        model, cfg, metrics = load_model(ctx, checkpoint)
    except ValueError as e:
        return None, None, None, error_md(str(e))
    probs = ins.classify(model, x)
    top = list(probs)[: int(top_k)]
    target = CLASSES.index(top[0]) if cam_for in (None, TOP) else CLASSES.index(cam_for)
    cam = ins.gradcam(model, x[None], [target], layer, method)[0]
    overlay = ins.cam_overlay(x, cam, float(opacity), size=VIEW)
    acc = metrics.get("test_acc")
    about = f" (test accuracy {100 * acc:.1f}% when saved)" if isinstance(acc, (int, float)) else ""
    cam_about = ins.CAM_METHODS[method]
    whose = f" for *{CLASSES[target]}*" if cam_about.uses_target else " (the same for every class)"
    resized, caution = uploads.resize_note(w, h)
    msg = (f"Prediction: **{top[0]}** ({100 * probs[top[0]]:.1f}%). {cam_about.label}{whose} at {layer}. "
           f"Model: width {cfg.width:g}{about}. {resized}")
    if caution:
        msg = error_md(caution) + "\n\n" + msg
    return ins.upscale(x, VIEW), {k: probs[k] for k in top}, overlay, msg


def build(ctx: AppContext) -> dict:
    gr.Markdown("Upload a photo of an airplane, car, bird, cat, deer, dog, frog, horse, ship or truck — any size, "
                "any format Pillow reads — or take one with your webcam, or paste one from the clipboard (the "
                "buttons under the image box). The network sees it at 32×32 (centre square), as CIFAR-10 images "
                "are.")
    choices = ctx.checkpoint_choices()
    with gr.Row():
        ckpt = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="checkpoint", scale=4)
        refresh = gr.Button("↻", scale=0, min_width=50)
    notice = gr.Markdown("" if choices else NO_CHECKPOINT)
    with gr.Row():
        with gr.Column(scale=2):
            # The webcam and the clipboard reach the server as an uploaded file too (Gradio uploads the snapshot
            # or the pasted image), so AnyImage and every check on uploads apply to them alike.
            image = AnyImage(label="your image", type="filepath", image_mode=None,
                             sources=["upload", "webcam", "clipboard"], height=280, elem_id="classify-input")
            if examples():
                gr.Examples(examples=[[p] for p in examples()], inputs=[image], label="examples (synthetic drawings)",
                            elem_id="classify-examples")
            # two dropdowns a row at most: three in this column cut "top prediction" and "Grad-CAM++" short
            with gr.Row():
                method = gr.Dropdown([(m.label, k) for k, m in ins.CAM_METHODS.items()], value="gradcam",
                                     label="CAM method", elem_id="classify-method")
                layer = gr.Dropdown(list(ins.CAM_LAYERS), value="layer3", label="CAM layer")
            cam_for = gr.Dropdown([TOP, *CLASSES], value=TOP, label="CAM for")
            with gr.Row():
                top_k = gr.Slider(1, 10, value=3, step=1, label="top-k")
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heat-map opacity")
            button = gr.Button("Classify", variant="primary", elem_id="classify-button")
        with gr.Column(scale=3):
            with gr.Row():
                seen = gr.Image(label="as the network sees it (32×32)", interactive=False, height=VIEW + 40,
                                format="png", elem_id="classify-seen", buttons=["download", "fullscreen"])
                cam = gr.Image(label="class activation map", interactive=False, height=VIEW + 40, format="png",
                               elem_id="classify-cam", buttons=["download", "fullscreen"])
            label = gr.Label(label="top classes", num_top_classes=10, elem_id="classify-label")
            message = gr.Markdown(elem_id="classify-message")
    inputs = [image, ckpt, top_k, layer, opacity, cam_for, method]
    outputs = [seen, label, cam, message]

    def show(image, ckpt, top_k, layer, opacity, cam_for, method):
        return view(ctx, image, ckpt, top_k, layer, opacity, cam_for, method)

    button.click(show, inputs, outputs, api_visibility="private")
    image.change(show, inputs, outputs, api_visibility="private", trigger_mode="always_last")
    for c in (top_k, layer, opacity, cam_for, method, ckpt):
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
            "message": message, "notice": notice, "button": button, "method": method}
