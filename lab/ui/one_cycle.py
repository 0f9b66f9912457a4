"""One Cycle tab: design the schedule and see its per-step LR and momentum/β1 without training; the triangular
zig-zag for comparison. The Train tab trains with exactly these settings."""

from __future__ import annotations

import gradio as gr

from lab import plots
from lab import schedule as sched
from lab.config import (ANNEALS, BASE_MOMENTUM, DEFAULT_DIV_FACTOR, IMAGE_SIDE, KNOBS, LOW_RES_MIN, MAX_MOMENTUM,
                        OPTIMIZERS, SCHEDULES, SPEC_BATCH_SIZE, SPEC_EPOCHS, SPEC_PEAK_EPOCH, ConfigError, TrainConfig,
                        default_max_lr)
from lab.ui.common import DIV_FACTOR_RANGE, LR_MODES, error_md, partial_config, round_lr, steps_per_epoch_images

# The peak-epoch slider moves in quarter epochs from PEAK_STEP up to PEAK_STEP before the last epoch's end: even
# a 1-epoch run has a range (0.25–0.75) — a slider whose minimum meets its maximum is an error in Gradio.
PEAK_STEP = 0.25


def preview(max_lr, lr_mode, div_factor, min_lr, epochs, peak_epoch, batch_size, optimizer, anneal,
            cycle_momentum, base_momentum, max_momentum, schedule="one-cycle", subset=None):
    """(figure, Markdown summary) of the schedule these controls describe; on bad input, the figure is skipped
    and the summary says what to fix."""
    # The peak the slider will hold: a shorter run clamps the peak (peak_slider), but that answer comes back on its
    # own round trip and the preview of the new epochs may be computed before it lands. Drawing the clamped peak
    # keeps the summary from showing an error the slider has already fixed (a CI run ended on that error).
    peak_epoch = peak_range(epochs, peak_epoch)[1] if _number(peak_epoch) else peak_epoch
    try:
        run = partial_config(max_lr=max_lr, lr_mode=lr_mode, div_factor=div_factor, min_lr=min_lr, epochs=epochs,
                             peak_epoch=peak_epoch, batch_size=batch_size, optimizer=optimizer, anneal=anneal,
                             cycle_momentum=cycle_momentum, base_momentum=base_momentum, max_momentum=max_momentum,
                             schedule=schedule)
    except ConfigError as e:
        return gr.skip(), error_md(str(e))
    cfg, bs = run.schedule, run.batch_size
    n = steps_per_epoch_images(subset)
    steps = sched.steps_per_epoch(n, bs)
    curve = sched.preview(cfg, steps, optimizer)
    what = "β1" if optimizer == "adam" else "momentum"
    length = (f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)} × {steps} steps ({n:,} images / batch {bs}) = "
              f"{len(curve['lr']):,} steps")
    if cfg.policy != "one-cycle":  # a baseline (beyond the spec): the LR curve is the whole story
        shape = {"constant": f"LR {cfg.max_lr:.3g} throughout",
                 "step": f"LR {cfg.max_lr:.3g}, ÷ 10 after 50% and again after 75% of the steps",
                 "cosine": f"LR {cfg.max_lr:.3g} → {cfg.lr_min:.3g} along a cosine, no warm-up"}[cfg.policy]
        text = f"**{cfg.policy} schedule** (beyond the spec): {shape} · {length} · {what} fixed."
        return plots.schedule_figure(curve, None, title=f"{cfg.policy} schedule: LR and momentum/β1 per step"), text
    mom = (f"{what} cycles {cfg.max_momentum:g} → {cfg.base_momentum:g} → {cfg.max_momentum:g} (opposite to the LR)"
           if cfg.cycle_momentum else f"{what} fixed")
    text = (f"**LRMIN {cfg.lr_min:.3g} → LRMAX {cfg.max_lr:.3g}** at the end of epoch {cfg.peak_epoch:g}, then "
            f"{cfg.anneal} back to {cfg.lr_min:.3g} by the last step · {length} · {mom}.")
    fig = plots.schedule_figure(curve, cfg.peak_epoch, title="One Cycle: LR and momentum/β1 per step")
    return fig, text


def _number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def zigzag(max_lr, lr_mode, div_factor, min_lr, step_size, cycles):
    """The triangular cyclic-LR curve between LRMIN and LRMAX: (figure, message)."""
    try:
        lo = float(min_lr) if lr_mode == "min LR" else float(max_lr) / float(div_factor)
        curve = sched.triangular(lo, float(max_lr), int(step_size), int(cycles))
    except (TypeError, ValueError, ZeroDivisionError) as e:
        return gr.skip(), error_md(str(e))
    return plots.zigzag_figure(curve), (f"Triangular CLR: {int(cycles)} cycles of {2 * int(step_size)} iterations "
                                        f"between {lo:.3g} and {float(max_lr):.3g} — many small cycles, where "
                                        "One Cycle makes one big one.")


def peak_slider(epochs, peak) -> gr.Slider:
    """The peak-epoch slider for a run of `epochs`: its range ends a quarter epoch before the run does, and a
    peak beyond it moves to half an epoch before the end (0.5 for a 1-epoch run)."""
    top, value = peak_range(epochs, peak)
    return gr.Slider(minimum=PEAK_STEP, maximum=top, value=value, step=PEAK_STEP)


def low_res_epochs_for(epochs, low_res_epochs) -> int:
    """Progressive resizing's epochs for a run of `epochs`: at most all but the last (which is always full size),
    so that shortening the run (e.g. the Learner preset's 3 epochs to 2) never leaves an impossible setting. The
    slider's range stays put (a range that shrank to nothing at 1 epoch would be an error badge)."""
    try:
        e, low = max(1, int(float(epochs))), max(0, int(float(low_res_epochs)))
    except (TypeError, ValueError):
        return 0
    return min(low, e - 1)


def peak_range(epochs, peak) -> tuple[float, float]:
    """(slider maximum, peak) for peak_slider; a plain function, as a component made inside Blocks is drawn."""
    try:
        e = max(1, int(float(epochs)))
    except (TypeError, ValueError):
        e = 1
    top = e - PEAK_STEP
    try:
        value = float(peak)
    except (TypeError, ValueError):
        value = top
    if not PEAK_STEP <= value <= top:
        value = min(max(value, PEAK_STEP), e - 0.5) if value > PEAK_STEP else PEAK_STEP
    return top, value


def lr_fields(max_lr, lr_mode, div_factor):
    """(div factor slider, min LR box) for the LRMIN mode: the control that sets LRMIN is editable, the other is
    greyed out; in div-factor mode the min LR box shows the LRMIN that results, so it never shows a stale value."""
    if lr_mode == "min LR":
        return gr.Slider(interactive=False), gr.Number(interactive=True)
    try:
        lo = round_lr(float(max_lr) / float(div_factor))
    except (TypeError, ValueError, ZeroDivisionError):
        return gr.Slider(interactive=True), gr.Number(interactive=False)
    return gr.Slider(interactive=True), gr.Number(value=lo, interactive=False)


def optimizer_default_lr(optimizer):
    """Switching optimizer switches to its default LRMAX (Adam and SGD live at LRs ~40× apart)."""
    return default_max_lr(optimizer)


def build(defaults: dict) -> dict:
    """`defaults`: the preset the app opens with (train.preset_values), so the page shows what Start would train."""
    gr.Markdown("One Cycle (Smith & Topin): the LR climbs from LRMIN to LRMAX by the end of the peak epoch, then "
                "comes back down to LRMIN by the last step, while momentum (SGD) or β1 (Adam) moves the other way. "
                "The preview steps the real scheduler (`lab.schedule`), so it is the curve training will use.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            opt = defaults.get("optimizer", OPTIMIZERS[0])
            optimizer = gr.Radio(list(OPTIMIZERS), value=opt, label="optimizer")
            # LR boxes step by a small amount (the arrow keys and the spinner), not by Gradio's default of 1
            max_lr = gr.Number(value=defaults.get("max_lr", default_max_lr(opt)), label="max LR (LRMAX)", minimum=0,
                               step=0.001, elem_id="oc-max-lr")
            mode = defaults.get("lr_mode", LR_MODES[0])
            lr_mode = gr.Radio(list(LR_MODES), value=mode, label="LRMIN from", elem_id="oc-lr-mode")
            div_factor = gr.Slider(*DIV_FACTOR_RANGE, value=defaults.get("div_factor", DEFAULT_DIV_FACTOR), step=1,
                                   label="div factor (LRMIN = LRMAX / div)", elem_id="oc-div")
            min_lr = gr.Number(value=round_lr(defaults.get("min_lr") or default_max_lr(opt) / DEFAULT_DIV_FACTOR),
                               label="min LR (LRMIN; set it with “LRMIN from: min LR”)", minimum=0, step=0.0001,
                               interactive=mode == "min LR", elem_id="oc-min-lr")
            epochs = gr.Slider(1, 100, value=defaults.get("epochs", SPEC_EPOCHS), step=1, label="epochs",
                               elem_id="oc-epochs")
            top, peak = peak_range(defaults.get("epochs", SPEC_EPOCHS), defaults.get("peak_epoch", SPEC_PEAK_EPOCH))
            peak_epoch = gr.Slider(PEAK_STEP, top, value=peak, step=PEAK_STEP,
                                   label="peak epoch (LR is highest at the end of it)", elem_id="oc-peak")
            batch_size = gr.Slider(16, 2048, value=defaults.get("batch_size", SPEC_BATCH_SIZE), step=16,
                                   label="batch size", elem_id="oc-batch")
            schedule = gr.Radio(list(SCHEDULES), value=defaults.get("schedule", KNOBS["schedule"].default),
                                label="schedule", info=KNOBS["schedule"].help, elem_id="oc-schedule")
            anneal = gr.Radio(list(ANNEALS), value=defaults.get("anneal", ANNEALS[0]), label="anneal")
            cycle_momentum = gr.Checkbox(value=defaults.get("cycle_momentum", True), label="cycle momentum / β1")
            with gr.Row():
                base_momentum = gr.Slider(0.5, 0.99, value=defaults.get("base_momentum", BASE_MOMENTUM), step=0.01,
                                          label="base momentum / β1")
                max_momentum = gr.Slider(0.5, 0.99, value=defaults.get("max_momentum", MAX_MOMENTUM), step=0.01,
                                         label="max momentum / β1")
            with gr.Accordion("Loss and weight decay", open=False):
                weight_decay = gr.Number(value=defaults.get("weight_decay"), minimum=0, elem_id="oc-weight-decay",
                                         label="weight decay (empty: the optimizer's, Adam 0, SGD 5e-4)")
                label_smoothing = gr.Slider(0, 0.5, value=defaults.get("label_smoothing", 0.0), step=0.05,
                                            label="label smoothing", elem_id="oc-label-smoothing")
                logit_scale = gr.Number(value=defaults.get("logit_scale", 1.0), minimum=0, elem_id="oc-logit-scale",
                                        label="logit scale (the loss sees logits × this; 1 = plain cross-entropy)")
            with gr.Accordion("Progressive resizing (beyond the spec)", open=False):
                gr.Markdown("The first epochs train on the augmented images scaled down, which costs (side/32)² of "
                            "the work per image; the last epoch is always full size, as the test images are.")
                with gr.Row():
                    low_res_epochs = gr.Slider(0, 10, value=defaults.get("low_res_epochs", TrainConfig.low_res_epochs), step=1,
                                               label="low-res epochs (0: off)", elem_id="oc-low-res-epochs")
                    low_res = gr.Slider(LOW_RES_MIN, IMAGE_SIDE, value=defaults.get("low_res", TrainConfig.low_res), step=1,
                                        label="low-res side (px)", elem_id="oc-low-res")
        with gr.Column(scale=3):
            summary = gr.Markdown(elem_id="oc-summary")
            figure = gr.Plot(label="One Cycle preview", elem_id="one-cycle-plot")
            with gr.Accordion("Triangular cyclic LR (the zig-zag)", open=True):
                with gr.Row():
                    step_size = gr.Slider(10, 2000, value=500, step=10, label="step size (iterations per half cycle)")
                    cycles = gr.Slider(1, 10, value=3, step=1, label="cycles")
                zz_text = gr.Markdown()
                zz_figure = gr.Plot(label="zig-zag", elem_id="zigzag-plot")
    controls = [max_lr, lr_mode, div_factor, min_lr, epochs, peak_epoch, batch_size, optimizer, anneal,
                cycle_momentum, base_momentum, max_momentum, schedule]
    zz_controls = [max_lr, lr_mode, div_factor, min_lr, step_size, cycles]
    # one listener per output (gr.on), so that answers cannot arrive out of order (see app.py)
    gr.on([c.change for c in zz_controls], zigzag, zz_controls, [zz_figure, zz_text], api_visibility="private",
          trigger_mode="always_last", show_progress="hidden")
    # .input, not .change: only the learner's own change of the epochs moves the peak. A preset sets the epochs and
    # its own peak together (app.apply_preset); a .change listener then also ran with the peak the slider held before
    # the preset's landed, and put it back (issue 20: Tiny kept Learner's 0.75). always_last: the final value of a
    # fast drag is the one the peak follows (the default "once" drops changes that arrive while one is handled).
    epochs.input(peak_slider, [epochs, peak_epoch], peak_epoch, api_visibility="private",
                 trigger_mode="always_last", show_progress="hidden")
    epochs.input(low_res_epochs_for, [epochs, low_res_epochs], low_res_epochs, api_visibility="private",
                 trigger_mode="always_last", show_progress="hidden")
    gr.on([c.change for c in (max_lr, lr_mode, div_factor)], lr_fields, [max_lr, lr_mode, div_factor],
          [div_factor, min_lr], api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    optimizer.input(optimizer_default_lr, optimizer, max_lr, api_visibility="private")
    return {"controls": controls, "zz_controls": zz_controls, "figure": figure, "summary": summary,
            "zz_figure": zz_figure, "zz_text": zz_text, "max_lr": max_lr, "lr_mode": lr_mode,
            "div_factor": div_factor, "min_lr": min_lr, "epochs": epochs, "peak_epoch": peak_epoch,
            "batch_size": batch_size, "optimizer": optimizer, "anneal": anneal, "cycle_momentum": cycle_momentum,
            "base_momentum": base_momentum, "max_momentum": max_momentum, "weight_decay": weight_decay,
            "label_smoothing": label_smoothing, "logit_scale": logit_scale, "low_res_epochs": low_res_epochs,
            "low_res": low_res, "schedule": schedule}
