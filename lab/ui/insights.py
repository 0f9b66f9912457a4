"""Insights tab: how a checkpoint (a run's, or the bundled one) does on the test set — accuracy, confusion
matrix (counts or normalised), per-class accuracy, the most confused pairs — and, fastai-style, its top losses,
each test image beside its class activation map (Grad-CAM, Grad-CAM++, EigenCAM, … from pytorch-grad-cam).

Every model here is loaded from a checkpoint file (lab.runs.load_checkpoint) and Grad-CAM runs on a deep copy
of it (lab.insights.gradcam), so nothing here touches a model that is training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from lab import insights as ins
from lab import plots
from lab import runs as runs_mod
from lab.data import CLASSES, DataError
from lab.ui.common import NO_CHECKPOINT, AppContext, error_md, eval_device, file_key, has_cuda

TARGETS = ("predicted class", "true class")


@dataclass
class Evaluated:
    model: object
    cfg: object
    metrics: dict
    evaluation: ins.Evaluation
    images: np.ndarray
    label: str


def _eval_key(ctx: AppContext, f: Path, n_test) -> tuple:
    n = max(1, min(int(n_test), len(ctx.manager.data().y_test)))
    return ("evaluation", *file_key(f), n)


def evaluate(ctx: AppContext, checkpoint: str | None, n_test: int) -> Evaluated:
    """Predictions of a checkpoint on the first n_test test images, cached by (file, mtime, n_test).
    Raises ValueError with a readable message when there is no checkpoint, DataError when there is no data."""
    if not checkpoint:
        raise ValueError(NO_CHECKPOINT)
    f = runs_mod.checkpoint_file(checkpoint)
    if not f.is_file():
        raise ValueError(f"{checkpoint} has no checkpoint yet (a run writes model.pt after its first epoch). "
                         + NO_CHECKPOINT)
    data = ctx.manager.data()
    key = _eval_key(ctx, f, n_test)

    def make() -> Evaluated:
        n = key[-1]
        model, cfg, metrics = ctx.load_model(f)
        device = eval_device()
        net = copy.deepcopy(model).to(device) if device != "cpu" else model
        images, labels = data.x_test[:n], data.y_test[:n]
        evaluation = ins.evaluate(net, images, labels, device)
        label = "the bundled checkpoint" if f.resolve() == ctx.pretrained.resolve() else f"run {f.parent.name}"
        return Evaluated(model, cfg, metrics, evaluation, images, label)

    return ctx.cache.get(key, make)


def summary(ev: Evaluated) -> str:
    e = ev.evaluation
    wrong = int((e.predictions != e.labels).sum())
    rec = ev.metrics or {}
    recorded = ""
    if "test_acc" in rec:
        recorded = f" · recorded when it was saved: {100 * rec['test_acc']:.2f}%"
        if "epoch" in rec:
            recorded += f" after epoch {rec['epoch']}"
    return (f"**Test accuracy {100 * e.accuracy:.2f}%** on the first {len(e.labels):,} test images — "
            f"{ev.label} (width {ev.cfg.width:g}, {ev.cfg.optimizer.name}){recorded} · {wrong:,} misclassified.")


MAX_IMAGES = 48  # the gallery's bound: CAMs of 48 images are one batch, a second or two on a CPU
ALL_PAIRS = "all"
MAX_PAIRS = 20  # confused pairs offered as gallery filters
CONFUSION_VIEWS = ("% of each true class", "image counts")


def cam_choices() -> list[tuple[str, str]]:
    return [(m.label, key) for key, m in ins.CAM_METHODS.items()]


def pair_choices(ev: Evaluated | None = None) -> list[tuple[str, str]]:
    """The gallery filter: every image, or one (true, predicted) confusion — the most frequent ones."""
    out = [("every test image, highest loss first", ALL_PAIRS)]
    if ev is not None:
        out += [(f"{CLASSES[t]} → {CLASSES[p]} ({c} image{'s' if c > 1 else ''})", f"{t},{p}")
                for t, p, c in ev.evaluation.most_confused()[:MAX_PAIRS]]
    return out


def parse_pair(value) -> tuple[int, int] | None:
    """'3,5' → (3, 5) (true cat, predicted dog); ALL_PAIRS, '' or None → None; ValueError otherwise."""
    if value in (None, "", ALL_PAIRS):
        return None
    try:
        t, p = (int(v) for v in str(value).split(","))
    except ValueError:
        t = p = -1
    if not (0 <= t < len(CLASSES) and 0 <= p < len(CLASSES)):
        raise ValueError(f"unknown class pair {value!r}: pick one from the list (true class → predicted class)")
    return t, p


def check_gallery(method, layer, opacity, target, count) -> tuple[str, str, float, str, int]:
    """The gallery controls, checked (a request may come from any client): (method, layer, opacity, target,
    count) or ValueError saying which one is wrong and what it may be."""
    if method not in ins.CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(ins.CAM_METHODS)}")
    if layer not in ins.CAM_LAYERS:
        raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(ins.CAM_LAYERS)}")
    if target not in TARGETS:
        raise ValueError(f"CAM for {target!r}? choose {' or '.join(TARGETS)}")
    try:
        opacity, count = float(opacity), float(count)
    except (TypeError, ValueError):
        raise ValueError(f"opacity and images must be numbers, got {opacity!r} and {count!r}") from None
    if not 0 <= opacity <= 1:
        raise ValueError(f"heat-map opacity must lie between 0 and 1, got {opacity:g}")
    if not (1 <= count <= MAX_IMAGES and count == int(count)):
        raise ValueError(f"images must be a whole number from 1 to {MAX_IMAGES}, got {count:g}")
    return method, layer, opacity, target, int(count)


def gallery(ev: Evaluated, method: str, layer: str, opacity: float, target: str, count: int,
            pair: tuple[int, int] | None = None) -> tuple[str, list[tuple[np.ndarray, str]]]:
    """fastai's top losses: the `count` test images with the highest loss (of one confused pair, if given),
    each as the image beside its class activation map, with a caption 'true → predicted confidence · loss';
    and a line saying what is shown."""
    e = ev.evaluation
    idx = e.top_losses(count, pair)
    method_ = ins.CAM_METHODS[method]
    whose = f" for the {target}" if method_.uses_target else ""  # its `about` says it ignores the class
    if pair is None:
        what = f"The {len(idx)} highest losses of {len(e.labels):,} test images"
    else:
        n = int(((e.labels == pair[0]) & (e.predictions == pair[1])).sum())
        what = (f"{CLASSES[pair[0]]} predicted as {CLASSES[pair[1]]}: {len(idx)} of {n} image{'s' * (n != 1)}, "
                "highest loss first")
    note = (f"{what}. Left: the test image; right: its {method_.label} at {layer}{whose} — {method_.about}. "
            "Caption: true class → predicted class, its confidence, and the loss −ln p(true class).")
    if len(idx) == 0:
        return note, []
    probs, losses = e.probs[idx], e.losses()[idx]
    preds, trues = probs.argmax(1), e.labels[idx]
    targets = preds if target == TARGETS[0] else trues
    cams = ins.gradcam(ev.model, ev.images[idx], [int(t) for t in targets], layer, method)
    items = [(ins.original_and_cam(ev.images[i], cam, opacity),
              f"{CLASSES[t]} → {CLASSES[p]} {100 * pr[p]:.0f}% · loss {loss:.2f}")
             for i, cam, p, t, pr, loss in zip(idx, cams, preds, trues, probs, losses)]
    return note, items


def confusion(ev: Evaluated, view: str):
    return plots.confusion_figure(ev.evaluation.confusion(), normalize=view != CONFUSION_VIEWS[1])


def most_confused(ev: Evaluated):
    return plots.most_confused_figure(ev.evaluation.most_confused(), np.bincount(ev.evaluation.labels,
                                                                                 minlength=len(CLASSES)))


def analyse(ctx: AppContext, checkpoint, n_test, view, method, layer, opacity, target, count):
    """Evaluate button → (summary, confusion, per-class, most confused, pair filter, gallery note, gallery)."""
    def failed(message: str, why: str):
        empty = plots.empty_figure(why)
        return (error_md(message), empty, empty, empty, gr.Dropdown(choices=pair_choices(), value=ALL_PAIRS), "",
                [])

    try:
        settings = check_gallery(method, layer, opacity, target, count)
        ev = evaluate(ctx, checkpoint, n_test)
    except DataError:  # the tab's notice says what is missing and how to provide it: not twice
        return failed("CIFAR-10 is not available on this server, so there is no test set to evaluate on (see the "
                      "notice above).", "no test data")
    except (ValueError, runs_mod.CheckpointError) as e:
        return failed(str(e), "nothing evaluated")
    note, items = gallery(ev, *settings)
    return (summary(ev), confusion(ev, view), plots.per_class_figure(ev.evaluation.per_class_accuracy()),
            most_confused(ev), gr.Dropdown(choices=pair_choices(ev), value=ALL_PAIRS), note, items)


def _cached(ctx: AppContext, checkpoint, n_test) -> Evaluated | None:
    """The evaluation Evaluate made for these settings, or None (then a control change waits for Evaluate)."""
    try:
        f = runs_mod.checkpoint_file(checkpoint) if checkpoint else None
        if f is None or not f.is_file() or _eval_key(ctx, f, n_test) not in ctx.cache:
            return None
        return evaluate(ctx, checkpoint, n_test)
    except (DataError, ValueError, TypeError, runs_mod.CheckpointError):
        return None


def regallery(ctx: AppContext, checkpoint, n_test, pair, method, layer, opacity, target, count):
    """A gallery control changed: (note, gallery) redrawn from the cached evaluation; nothing before Evaluate."""
    ev = _cached(ctx, checkpoint, n_test)
    if ev is None:
        return gr.skip(), gr.skip()
    try:
        return gallery(ev, *check_gallery(method, layer, opacity, target, count), parse_pair(pair))
    except ValueError as e:
        return error_md(str(e)), []


def reconfuse(ctx: AppContext, checkpoint, n_test, view):
    """The confusion matrix view changed: redrawn from the cached evaluation; nothing before Evaluate."""
    ev = _cached(ctx, checkpoint, n_test)
    return gr.skip() if ev is None else confusion(ev, view)


def build(ctx: AppContext) -> dict:
    gr.Markdown("Pick a run (or the bundled checkpoint) and press **Evaluate**: accuracy on the test set, where "
                "the errors fall, which classes the network mixes up, and the images it gets most wrong, each "
                "beside a class activation map (pytorch-grad-cam) — which pixels pushed the network towards the "
                "class you pick.")
    if ctx.data_message():
        gr.Markdown(ctx.data_message())
    choices = ctx.checkpoint_choices()
    with gr.Row():
        ckpt = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="checkpoint", scale=4,
                           elem_id="insights-checkpoint")
        refresh = gr.Button("↻", scale=0, min_width=50)
        n_test = gr.Slider(100, 10_000, value=10_000 if has_cuda() else 1000, step=100, label="test images", scale=2,
                           elem_id="insights-n-test")
        go = gr.Button("Evaluate", variant="primary", scale=1, elem_id="insights-evaluate")
    if not choices:
        gr.Markdown(NO_CHECKPOINT)
    summary_md = gr.Markdown(elem_id="insights-summary")
    with gr.Row():
        with gr.Column():
            view = gr.Radio(list(CONFUSION_VIEWS), value=CONFUSION_VIEWS[0], label="confusion matrix shows",
                            elem_id="confusion-view")
            confusion_plot = gr.Plot(plots.empty_figure("press Evaluate"), label="confusion matrix",
                                     elem_id="confusion-plot")
        with gr.Column():
            confused_plot = gr.Plot(plots.empty_figure("press Evaluate"), label="most confused pairs",
                                    elem_id="confused-plot")
            per_class = gr.Plot(plots.empty_figure("press Evaluate"), label="per-class accuracy",
                                elem_id="per-class-plot")
    gr.Markdown("#### Top losses, with class activation maps\nThe test images with the highest loss — the "
                "network's worst mistakes — highest first, each beside its heat map. Pick a confused pair to see "
                "only those.")
    with gr.Row():
        pair = gr.Dropdown(choices=pair_choices(), value=ALL_PAIRS, label="show", scale=2, elem_id="insights-pair")
        method = gr.Dropdown(cam_choices(), value="gradcam", label="CAM method", scale=1, elem_id="insights-method")
        layer = gr.Dropdown(list(ins.CAM_LAYERS), value="layer3", scale=1,
                            label="layer (layer3: 4×4, most semantic … prep: 32×32, edges)")
    with gr.Row():
        opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heat-map opacity")
        target = gr.Radio(list(TARGETS), value=TARGETS[0], label="CAM for the")
        count = gr.Slider(4, MAX_IMAGES, value=16, step=4, label="images")
    note = gr.Markdown(elem_id="mistakes-note")
    mistakes = gr.Gallery(label="top losses: test image | class activation map", columns=4, height="fit-content",
                          object_fit="contain", elem_id="mistakes-gallery")
    go.click(lambda *a: analyse(ctx, *a), [ckpt, n_test, view, method, layer, opacity, target, count],
             [summary_md, confusion_plot, per_class, confused_plot, pair, note, mistakes], api_visibility="private")
    gallery_inputs = [ckpt, n_test, pair, method, layer, opacity, target, count]
    for c in (pair, method, layer, opacity, target, count):
        c.change(lambda *a: regallery(ctx, *a), gallery_inputs, [note, mistakes], api_visibility="private",
                 trigger_mode="always_last")
    view.change(lambda *a: reconfuse(ctx, *a), [ckpt, n_test, view], confusion_plot, api_visibility="private",
                trigger_mode="always_last", show_progress="hidden")
    refresh.click(ctx.checkpoint_dropdown, ckpt, ckpt, api_visibility="private")
    return {"checkpoint": ckpt, "refresh": refresh, "go": go, "summary": summary_md, "confusion": confusion_plot,
            "confusion_view": view, "most_confused": confused_plot, "per_class": per_class, "pair": pair,
            "method": method, "note": note, "gallery": mistakes}
