"""Insights tab: how a checkpoint (a run's, or the bundled one) does on the test set — accuracy, confusion
matrix, per-class accuracy — and its most confident mistakes with Grad-CAM overlays.

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


def gallery(ev: Evaluated, layer: str, opacity: float, target: str, count: int) -> list[tuple[np.ndarray, str]]:
    """The `count` most confident mistakes: Grad-CAM overlay (for the predicted or the true class) + caption."""
    idx = ev.evaluation.misclassified(int(count))
    if len(idx) == 0:
        return []
    probs = ev.evaluation.probs[idx]
    preds, trues = probs.argmax(1), ev.evaluation.labels[idx]
    targets = preds if target == TARGETS[0] else trues
    cams = ins.gradcam(ev.model, ev.images[idx], [int(t) for t in targets], layer)
    return [(ins.cam_overlay(ev.images[i], cam, float(opacity)),
             f"{CLASSES[t]} → {CLASSES[p]} {100 * pr[p]:.0f}%")
            for i, cam, p, t, pr in zip(idx, cams, preds, trues, probs)]


def analyse(ctx: AppContext, checkpoint, n_test, layer, opacity, target, count):
    """Evaluate button → (summary, confusion figure, per-class figure, gallery)."""
    try:
        ev = evaluate(ctx, checkpoint, n_test)
    except DataError:  # the tab's notice says what is missing and how to provide it: not twice
        return (error_md("CIFAR-10 is not available on this server, so there is no test set to evaluate on (see the "
                         "notice above)."),
                plots.empty_figure("no test data"), plots.empty_figure("no test data"), [])
    except (ValueError, runs_mod.CheckpointError) as e:
        return error_md(str(e)), plots.empty_figure("no checkpoint"), plots.empty_figure("no checkpoint"), []
    return (summary(ev), plots.confusion_figure(ev.evaluation.confusion()),
            plots.per_class_figure(ev.evaluation.per_class_accuracy()),
            gallery(ev, layer, opacity, target, count))


def regallery(ctx: AppContext, checkpoint, n_test, layer, opacity, target, count):
    """Grad-CAM controls changed: redraw the gallery from the cached evaluation (nothing if not evaluated yet)."""
    try:
        f = runs_mod.checkpoint_file(checkpoint) if checkpoint else None
        if f is None or not f.is_file() or _eval_key(ctx, f, n_test) not in ctx.cache:
            return gr.skip()
        return gallery(evaluate(ctx, checkpoint, n_test), layer, opacity, target, count)
    except (DataError, ValueError, runs_mod.CheckpointError):
        return gr.skip()


def build(ctx: AppContext) -> dict:
    gr.Markdown("Pick a run (or the bundled checkpoint) and press **Evaluate**: accuracy on the test set, where "
                "the errors fall, and the most confident mistakes with Grad-CAM heat maps (pytorch-grad-cam) — "
                "which pixels pushed the network towards the class you pick.")
    if ctx.data_message():
        gr.Markdown(ctx.data_message())
    choices = ctx.checkpoint_choices()
    with gr.Row():
        ckpt = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="checkpoint", scale=4,
                           elem_id="insights-checkpoint")
        refresh = gr.Button("↻", scale=0, min_width=50)
        n_test = gr.Slider(100, 10_000, value=10_000 if has_cuda() else 1000, step=100, label="test images", scale=2)
        go = gr.Button("Evaluate", variant="primary", scale=1, elem_id="insights-evaluate")
    if not choices:
        gr.Markdown(NO_CHECKPOINT)
    summary_md = gr.Markdown(elem_id="insights-summary")
    with gr.Row():
        confusion = gr.Plot(plots.empty_figure("press Evaluate"), label="confusion matrix", elem_id="confusion-plot")
        per_class = gr.Plot(plots.empty_figure("press Evaluate"), label="per-class accuracy",
                            elem_id="per-class-plot")
    gr.Markdown("#### Most confident mistakes, with Grad-CAM\nEach caption reads *true class → predicted "
                "class, confidence*; the most confident mistakes come first.")
    with gr.Row():
        layer = gr.Dropdown(list(ins.CAM_LAYERS), value="layer3",
                            label="layer (layer3: 4×4, most semantic … prep: 32×32, edges)")
        opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="heat-map opacity")
        target = gr.Radio(list(TARGETS), value=TARGETS[0], label="CAM for the")
        count = gr.Slider(4, 48, value=16, step=4, label="images")
    mistakes = gr.Gallery(label="misclassified test images", columns=6, height="auto", object_fit="contain",
                          elem_id="mistakes-gallery")
    inputs = [ckpt, n_test, layer, opacity, target, count]
    go.click(lambda *a: analyse(ctx, *a), inputs, [summary_md, confusion, per_class, mistakes],
             api_visibility="private")
    for c in (layer, opacity, target, count):
        c.change(lambda *a: regallery(ctx, *a), inputs, mistakes, api_visibility="private",
                 trigger_mode="always_last")
    refresh.click(ctx.checkpoint_dropdown, ckpt, ckpt, api_visibility="private")
    return {"checkpoint": ckpt, "refresh": refresh, "go": go, "summary": summary_md, "confusion": confusion,
            "per_class": per_class, "gallery": mistakes}
