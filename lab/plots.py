"""Pure functions: data → plotly figure. No training, no files, no Gradio.

Each takes plain Python data (lists, dicts, numpy arrays, the dicts lab.schedule and the engine produce) and
returns a plotly Figure, so the app, notebooks and tests can all call them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.data import CLASSES

if TYPE_CHECKING:
    from lab.lr_finder import RangeTest

TEMPLATE = "plotly_white"
HEIGHT = 360
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
# Runs compared on one plot: 24 colours that stay apart, handed out by run_colours.
RUN_COLOURS = tuple(plotly.colors.qualitative.Dark24)
X_AXES = ("epoch", "time")  # what the training curves are drawn against


def _layout(fig: go.Figure, title: str | None = None, height: int = HEIGHT, legend_below: bool = False) -> go.Figure:
    """The house style. Subplot figures put the legend below the plots, clear of the subplot titles."""
    legend = (dict(orientation="h", yanchor="top", y=-0.22, x=0) if legend_below
              else dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_layout(template=TEMPLATE, height=height + (40 if legend_below else 0), title=title, legend=legend,
                      margin=dict(l=60, r=30, t=60 if title or legend_below else 30, b=90 if legend_below else 50))
    return fig


def empty_figure(message: str = "no data yet", height: int = HEIGHT) -> go.Figure:
    """A blank figure carrying a message in its middle (so a plot area never shows stale curves)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height)


# ----------------------------------------------------------------------------------------------- schedules


def schedule_figure(curve: Mapping[str, Sequence], peak_epoch: float | None = None,
                    title: str | None = None) -> go.Figure:
    """Per-step LR (left axis) and momentum / Adam β1 (right axis) against epochs, from lab.schedule.preview."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = curve["epoch"]
    fig.add_trace(go.Scatter(x=x, y=curve["lr"], name="learning rate", mode="lines",
                             line=dict(color=COLORS[0], width=2)), secondary_y=False)
    moms = curve.get("momentum") or []
    if any(m is not None for m in moms):
        fig.add_trace(go.Scatter(x=x, y=moms, name="momentum / β1", mode="lines",
                                 line=dict(color=COLORS[1], width=2, dash="dot")), secondary_y=True)
    if peak_epoch is not None:
        fig.add_vline(x=peak_epoch, line=dict(color="#999", dash="dash", width=1),
                      annotation_text=f"peak (epoch {peak_epoch:g})", annotation_position="top right")
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="learning rate", exponentformat="e", secondary_y=False)
    fig.update_yaxes(title_text="momentum / β1", secondary_y=True, showgrid=False)
    return _layout(fig, title)


def zigzag_figure(curve: Mapping[str, Sequence], title: str | None = "Triangular cyclic LR (the zig-zag)") -> go.Figure:
    """The triangular CLR curve from lab.schedule.triangular."""
    fig = go.Figure(go.Scatter(x=curve["step"], y=curve["lr"], mode="lines", name="learning rate",
                               line=dict(color=COLORS[2], width=2)))
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text="learning rate", exponentformat="e")
    return _layout(fig, title, height=300)


# ------------------------------------------------------------------------------------------------ training


SCHEDULE_COLOURS = {"one-cycle": COLORS[3], "constant": COLORS[7], "step": COLORS[0], "cosine": COLORS[2]}


def compare_figure(curves: Mapping[str, Mapping[str, Any]], title: str | None = None) -> go.Figure:
    """Schedules compared (lab.compare.curves): each schedule's best run, test accuracy per epoch (left) and the LR
    of every step (right, log axis: a step schedule falls by decades), both against epochs, one colour per
    schedule. `curves`: schedule → {"label", "epochs": metrics records, "lr": {"epoch", "lr"}}."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy (%)", "learning rate per step"),
                        horizontal_spacing=0.1)
    for i, (name, c) in enumerate(curves.items()):
        colour = SCHEDULE_COLOURS.get(name, COLORS[i % len(COLORS)])
        width = 3 if name == "one-cycle" else 2
        records = [r for r in c.get("epochs", []) if r.get("test_acc") is not None]
        # an epoch's record is its end: the curve starts at epoch 0 only in the LR plot, where every step has an LR
        fig.add_trace(go.Scatter(x=[r["epoch"] for r in records], y=[100 * r["test_acc"] for r in records],
                                 mode="lines+markers", name=c.get("label", name), legendgroup=name,
                                 line=dict(color=colour, width=width)), row=1, col=1)
        lr = c.get("lr") or {}
        fig.add_trace(go.Scatter(x=lr.get("epoch", []), y=lr.get("lr", []), mode="lines", name=c.get("label", name),
                                 legendgroup=name, showlegend=False, line=dict(color=colour, width=width)),
                      row=1, col=2)
    if not curves:
        fig.add_annotation(text="the curves appear as the comparison's runs finish", x=0.5, y=0.5, xref="paper",
                           yref="paper", showarrow=False, font=dict(size=14, color="#888"))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(type="log", row=1, col=2)
    return _layout(fig, title, legend_below=True)


def _epoch_x(step: Mapping[str, Any]) -> float:
    """A step event's position in epochs (1.0 = the end of epoch 1)."""
    return step["epoch"] - 1 + step["step"] / step["steps_per_epoch"]


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with weight `weight` in [0, 1), debiased so the
    first points are not dragged towards 0. Non-finite values pass through and do not enter the average."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight!r}")
    out, last, n = [], 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(v)
            continue
        last, n = last * weight + (1 - weight) * v, n + 1
        out.append(last / (1 - weight ** n))
    return out


def _time_unit(seconds: float) -> tuple[float, str]:
    """(divisor, unit) that keeps a time axis' numbers short."""
    return (1, "s") if seconds < 300 else (60, "min") if seconds < 3 * 3600 else (3600, "h")


def elapsed_of(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """Seconds since training began at each epoch record: its own "elapsed" when recorded, else the running sum
    of the epochs' "seconds" (records written before "elapsed" existed)."""
    out, total = [], 0.0
    for r in records:
        total += float(r.get("seconds") or 0.0)
        e = r.get("elapsed")
        out.append(float(e) if isinstance(e, (int, float)) else total)
    return out


def run_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour for each run, from its place in `names` — every run on the server, oldest first — so a run keeps
    its colour whichever others are drawn beside it."""
    return {name: RUN_COLOURS[i % len(RUN_COLOURS)] for i, name in enumerate(names)}


def _check_view(smoothing: float, x: str) -> None:
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing!r}")


def training_figure(steps: Sequence[Mapping[str, Any]], epochs: Sequence[Mapping[str, Any]],
                    title: str | None = None, *, log_loss: bool = False, smoothing: float = 0.0,
                    x: str = "epoch") -> go.Figure:
    """Loss, accuracy and LR of one run as it trains: per-step train loss and LR from the engine's step events,
    per-epoch train/test loss and accuracy from its epoch records. As in TensorBoard: `log_loss` puts the loss on
    a log axis (one spike no longer flattens the rest), `smoothing` draws the per-step loss smoothed (smooth())
    over its faint raw curve, and `x` is "epoch" or "time" (seconds since training began)."""
    _check_view(smoothing, x)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy (%)", "learning rate"),
                        horizontal_spacing=0.08)
    span = max([s.get("elapsed") or 0 for s in steps] + elapsed_of(epochs) + [0])
    div, unit = _time_unit(span)
    if steps:
        xs = ([_epoch_x(s) for s in steps] if x == "epoch"
              else [(s.get("elapsed") or 0) / div for s in steps])
        loss = [s["loss"] for s in steps]
        fig.add_trace(go.Scatter(x=xs, y=loss, mode="lines", name="train loss (step)",
                                 line=dict(color=COLORS[0], width=1), opacity=0.25 if smoothing else 0.45),
                      row=1, col=1)
        if smoothing:
            fig.add_trace(go.Scatter(x=xs, y=smooth(loss, smoothing), mode="lines",
                                     name=f"train loss (step, smoothed {smoothing:g})",
                                     line=dict(color=COLORS[0], width=2)), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=[s["lr"] for s in steps], mode="lines", name="LR",
                                 line=dict(color=COLORS[2], width=2), showlegend=False), row=1, col=3)
        if any("acc" in s for s in steps):  # (runs recorded before step accuracy was logged have none)
            fig.add_trace(go.Scatter(x=xs, y=[100 * s["acc"] if "acc" in s else None for s in steps], mode="lines",
                                     name="train acc (step: the epoch so far)", opacity=0.45,
                                     line=dict(color=COLORS[0], width=1)), row=1, col=2)
    if epochs:
        ex = [e["epoch"] for e in epochs] if x == "epoch" else [t / div for t in elapsed_of(epochs)]
        fig.add_trace(go.Scatter(x=ex, y=[e["train_loss"] for e in epochs], mode="lines+markers",
                                 name="train loss", line=dict(color=COLORS[0], width=2)), row=1, col=1)
        fig.add_trace(go.Scatter(x=ex, y=[e["test_loss"] for e in epochs], mode="lines+markers",
                                 name="test loss", line=dict(color=COLORS[1], width=2)), row=1, col=1)
        fig.add_trace(go.Scatter(x=ex, y=[100 * e["train_acc"] for e in epochs], mode="lines+markers",
                                 name="train acc", line=dict(color=COLORS[0], width=2, dash="dot")), row=1, col=2)
        fig.add_trace(go.Scatter(x=ex, y=[100 * e["test_acc"] for e in epochs], mode="lines+markers",
                                 name="test acc", line=dict(color=COLORS[1], width=2, dash="dot")), row=1, col=2)
    if not steps and not epochs:
        fig.add_annotation(text="no run yet — press Start", x=0.5, y=0.5, xref="paper", yref="paper",
                           showarrow=False, font=dict(size=14, color="#888"))
    fig.update_xaxes(title_text="epoch" if x == "epoch" else f"time ({unit})", rangemode="tozero")
    fig.update_yaxes(exponentformat="e", row=1, col=3)
    if log_loss:
        fig.update_yaxes(type="log", **log_ticks([s["loss"] for s in steps] +
                                                 [e.get(k) for e in epochs for k in ("train_loss", "test_loss")]),
                         row=1, col=1)
    return _layout(fig, title, legend_below=True)


def log_ticks(values: Sequence[float]) -> dict[str, Any]:
    """tickvals/ticktext for a log axis over `values`: 1-2-5 steps written in full ("0.5", "0.2"). Plotly's own
    log ticks write the steps between powers of ten as bare digits, so 0.5 and 0.2 read "5" and "2" (issue 20)."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    if not finite:
        return {}
    lo, hi = math.floor(math.log10(min(finite))), math.ceil(math.log10(max(finite)))
    ticks = [m * 10.0 ** p for p in range(lo, hi + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if min(finite) / 2 <= t <= max(finite) * 2] or ticks
    return {"tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks]}


def runs_overlay_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str | None = None, *,
                        colours: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None,
                        log_loss: bool = False, x: str = "epoch") -> go.Figure:
    """Several runs' per-epoch curves on shared axes: test accuracy, test loss (solid) and train loss (dotted).
    `runs` maps a run's name to its metrics.jsonl records; `colours` (run_colours) and `labels` (legend text) map
    the same names — a run missing from `colours` takes a colour by its place in `runs`. `log_loss` and `x` as in
    training_figure."""
    _check_view(0.0, x)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy (%)", "loss (solid: test, dotted: train)"),
                        horizontal_spacing=0.1)
    span = max([max(elapsed_of(r), default=0) for r in runs.values()] + [0])
    div, unit = _time_unit(span)
    shown = 0
    for i, (name, records) in enumerate(runs.items()):
        if not records:
            continue
        shown += 1
        color = (colours or {}).get(name) or RUN_COLOURS[i % len(RUN_COLOURS)]
        label = (labels or {}).get(name, name)
        ex = [r["epoch"] for r in records] if x == "epoch" else [t / div for t in elapsed_of(records)]
        fig.add_trace(go.Scatter(x=ex, y=[100 * r["test_acc"] for r in records], mode="lines+markers", name=label,
                                 legendgroup=name, line=dict(color=color, width=2)), row=1, col=1)
        fig.add_trace(go.Scatter(x=ex, y=[r["test_loss"] for r in records], mode="lines+markers", name=label,
                                 legendgroup=name, showlegend=False, line=dict(color=color, width=2)), row=1, col=2)
        fig.add_trace(go.Scatter(x=ex, y=[r["train_loss"] for r in records], mode="lines", name=label,
                                 legendgroup=name, showlegend=False, line=dict(color=color, width=1, dash="dot")),
                      row=1, col=2)
    if not shown:
        fig.add_annotation(text="pick runs with finished epochs to compare", x=0.5, y=0.5, xref="paper",
                           yref="paper", showarrow=False, font=dict(size=14, color="#888"))
    fig.update_xaxes(title_text="epoch" if x == "epoch" else f"time ({unit})")
    if log_loss:
        fig.update_yaxes(type="log", **log_ticks([r.get(k) for rs in runs.values() for r in rs
                                                  for k in ("test_loss", "train_loss")]), row=1, col=2)
    return _layout(fig, title, legend_below=True)


# ------------------------------------------------------------------------------------------------ insights


def confusion_figure(matrix: np.ndarray, classes: Sequence[str] = CLASSES, normalize: bool = True,
                     title: str | None = None) -> go.Figure:
    """Heatmap of a (C, C) count matrix, rows = true class, columns = predicted. normalize: each cell as a
    share of its true class (a row sums to 100%, so classes with fewer test images compare fairly), written
    in percent; else raw counts. The hover gives both."""
    m = np.asarray(matrix, dtype=np.int64)
    totals = m.sum(1, keepdims=True)
    share = np.divide(m, totals, out=np.zeros(m.shape, dtype=float), where=totals > 0)
    if normalize:
        # whole percents fit a cell of a 10×10 grid; a share that rounds to 0 is still a mistake: "<1"
        text = [[("<1" if 0 < v < 0.005 else f"{100 * v:.0f}") for v in row] for row in share]
        z, bar, zmax = share * 100, "% of true class", 100
    else:
        text, z, bar, zmax = m.astype(str).tolist(), m, "images", None
    fig = go.Figure(go.Heatmap(
        z=z, x=list(classes), y=list(classes), colorscale="Blues", text=text, texttemplate="%{text}",
        customdata=np.dstack([m, share * 100]),
        hovertemplate="true %{y}, predicted %{x}<br>%{customdata[0]} images, %{customdata[1]:.1f}% of %{y}"
                      "<extra></extra>",
        colorbar=dict(title=bar), zmin=0, zmax=zmax,
    ))
    fig.update_yaxes(autorange="reversed", title_text="true class")
    fig.update_xaxes(title_text="predicted class", side="bottom")
    title = title or ("Confusion matrix, % of each true class" if normalize else "Confusion matrix, image counts")
    return _layout(fig, title, height=480)


def most_confused_figure(pairs: Sequence[tuple[int, int, int]], totals: Sequence[int] | None = None,
                         classes: Sequence[str] = CLASSES, limit: int = 12,
                         title: str | None = "Most confused pairs (true → predicted)") -> go.Figure:
    """Horizontal bars of the `limit` most frequent confusions, most frequent on top, from
    Evaluation.most_confused ((true, predicted, count), most first); `totals` (images per true class) adds each
    count's share of its class."""
    shown = list(pairs)[:limit]
    if not shown:
        return empty_figure("no mistakes: nothing is confused", height=340)
    labels = [f"{classes[t]} → {classes[p]}" for t, p, _ in shown]
    counts = [c for _, _, c in shown]
    text = [f"{c}" + (f" ({100 * c / totals[t]:.1f}% of {classes[t]})" if totals is not None and totals[t] else "")
            for t, _, c in shown]
    fig = go.Figure(go.Bar(x=counts, y=labels, orientation="h", marker_color=COLORS[3], text=text,
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x} images<extra></extra>"))
    fig.update_yaxes(autorange="reversed", automargin=True)  # room for the longest "class → class" label
    # the counts are written beside their bars, at a readable size: leave them room on the right
    fig.update_xaxes(title_text="images", range=[0, max(counts) * (1.45 if totals is not None else 1.15)])
    return _layout(fig, title, height=max(260, 60 + 28 * len(shown)))


def per_class_figure(accuracy: Mapping[str, float], title: str | None = "Per-class accuracy") -> go.Figure:
    names = list(accuracy)
    values = [100 * v if v is not None and not math.isnan(v) else None for v in accuracy.values()]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=COLORS[0],
                           text=[f"{v:.1f}%" if v is not None else "–" for v in values], textposition="outside"))
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 115])
    return _layout(fig, title, height=340)


# ----------------------------------------------------------------------------------------------- LR range test

SUGGESTION_COLOURS = {"loss_min": "#ff7f0e", "valley": "#d62728", "steepest": "#2ca02c", "min_div_10": "#9467bd",
                      "knee": "#17becf", "min_div_run": "#000000"}
SUGGESTION_LABELS = {"loss_min": "loss minimum", "valley": "valley", "steepest": "steepest descent",
                     "min_div_10": "loss minimum ÷ 10", "knee": "knee (90% of the fall)",
                     "min_div_run": "loss minimum ÷ run margin"}


def _vline(x: float, y0: float, y1: float, name: str, colour: str, dash: str, width: float = 1.5) -> go.Scatter:
    # A two-point trace rather than a layout shape: it lives in data coordinates on the log axis, shows in the
    # legend (a click hides it) and has a hover label.
    return go.Scatter(x=[x, x], y=[y0, y1], mode="lines", name=name, line={"color": colour, "dash": dash,
                      "width": width}, hovertemplate=f"{name}<br>LR %{{x:.3g}}<extra></extra>")


def lr_finder_figure(result: RangeTest | dict[str, Any]) -> go.Figure:
    """Smoothed training loss against LR (log axis) with each suggestion, LRMAX and LRMIN marked."""
    d = result if isinstance(result, dict) else result.to_dict()
    lrs, losses = list(d.get("lrs", [])), list(d.get("losses", []))
    suggestions: dict[str, float] = d.get("suggestions", {})
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lrs, y=losses, mode="lines", name="loss (smoothed)", line={"color": "#1f77b4"},
                             hovertemplate="LR %{x:.3g}<br>loss %{y:.4f}<extra></extra>"))
    visible = _visible_range(losses)
    if visible:
        y0, y1 = visible
        fig.update_yaxes(range=[y0, y1])
        for name, lr in suggestions.items():
            colour = SUGGESTION_COLOURS.get(name, "#7f7f7f")
            label = f"{SUGGESTION_LABELS.get(name, name)}: {lr:.2e}"
            fig.add_trace(_vline(lr, y0, y1, label, colour, "dot"))
            i = min(range(len(lrs)), key=lambda j: abs(math.log(lrs[j]) - math.log(lr)))
            if abs(math.log(lrs[i]) - math.log(lr)) < 1e-9:  # a point of the curve: mark it (not min ÷ 10)
                fig.add_trace(go.Scatter(x=[lr], y=[losses[i]], mode="markers", showlegend=False,
                                         marker={"color": colour, "size": 10},
                                         hovertemplate=f"{label}<br>loss %{{y:.4f}}<extra></extra>"))
        if d.get("max_lr"):
            rule = d.get("rule", "?")
            fig.add_trace(_vline(d["max_lr"], y0, y1, f"LRMAX ({SUGGESTION_LABELS.get(rule, rule)}): {d['max_lr']:.2e}",
                                 "#000000", "solid", 2.5))
        if d.get("min_lr"):
            fig.add_trace(_vline(d["min_lr"], y0, y1, f"LRMIN: {d['min_lr']:.2e}", "#000000", "dash"))
    s = d.get("settings", {})
    # the setup is s["config"] (a TrainConfig.to_dict()); tests saved before it was recorded name the optimizer alone
    optimizer = s["config"]["optimizer"]["name"] if "config" in s else s.get("optimizer")
    what = f" — {optimizer}, {s.get('iterations_run', len(lrs))} iterations" if optimizer else ""
    fig.update_layout(
        title=f"LR range test{what}", xaxis_title="learning rate (log scale)", yaxis_title="training loss (smoothed)",
        template="plotly_white", hovermode="closest", legend={"x": 0.01, "y": 0.01, "xanchor": "left",
                                                             "yanchor": "bottom"},
    )
    fig.update_xaxes(type="log", exponentformat="power")
    return fig


# ------------------------------------------------------------------------------------------------ sweeps


def sweep_figure(doc: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """A sweep (lab.sweep's sweep.json document): final test accuracy against max LR (log axis), mean ± std over
    seeds per series (the configurations that differ only in max LR) with each seed as a faint dot and the best
    starred; on the same LR axis, the range test's smoothed loss (right axis) and each rule's suggestion as a
    dotted line, so where the suggestion lands against the sweep's best shows at a glance."""
    summary = doc.get("summary", {})
    rows = summary.get("configurations", [])
    range_tests: Mapping[str, Any] = doc.get("range_tests", {}) or {}
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    scored = [r for r in rows if r.get("mean") is not None]
    accs = [a for r in scored for a in r["accs"]]
    lo, hi = (min(accs), max(accs)) if accs else (0.0, 100.0)
    pad = max(1.0, 0.1 * (hi - lo))
    y0, y1 = max(0.0, lo - pad), min(100.0, hi + pad)
    series = list(dict.fromkeys(r["series"] for r in rows))
    best_keys = {s["best"] for s in summary.get("series", []) if s.get("best")}
    for i, name in enumerate(series):
        colour = COLORS[i % len(COLORS)]
        members = sorted((r for r in scored if r["series"] == name), key=lambda r: r["max_lr"])
        label = "test accuracy" + (f" ({name})" if len(series) > 1 or name != "all" else "")
        fig.add_trace(go.Scatter(
            x=[r["max_lr"] for r in members], y=[r["mean"] for r in members], mode="lines+markers", name=label,
            error_y=dict(type="data", array=[r["std"] for r in members], visible=True), legendgroup=name,
            line=dict(color=colour, width=2), marker=dict(size=8),
            customdata=[[r["n"], r["std"], ", ".join(r["lr_from"]) or "grid"] for r in members],
            hovertemplate="max LR %{x:.3g}<br>%{y:.2f}% ± %{customdata[1]:.2f} over %{customdata[0]} seeds"
                          "<br>from %{customdata[2]}<extra></extra>"), secondary_y=False)
        fig.add_trace(go.Scatter(
            x=[r["max_lr"] for r in members for _ in r["accs"]], y=[a for r in members for a in r["accs"]],
            mode="markers", marker=dict(color=colour, size=5, opacity=0.35), legendgroup=name, showlegend=False,
            hovertemplate="max LR %{x:.3g}<br>one seed: %{y:.2f}%<extra></extra>"), secondary_y=False)
        for r in members:
            if r["key"] in best_keys:
                fig.add_trace(go.Scatter(
                    x=[r["max_lr"]], y=[r["mean"]], mode="markers", legendgroup=name,
                    name=f"best: {r['max_lr']:.3g} → {r['mean']:.2f}%",
                    marker=dict(symbol="star", size=18, color=colour, line=dict(color="#000", width=1)),
                    hovertemplate="best max LR %{x:.3g}<br>%{y:.2f}%<extra></extra>"), secondary_y=False)
    loss_range: list[float] = []
    for j, (gid, rt) in enumerate(range_tests.items()):
        lrs, losses = list(rt.get("lrs", [])), list(rt.get("losses", []))
        if not lrs:
            continue
        many = len(range_tests) > 1
        fig.add_trace(go.Scatter(
            x=lrs, y=losses, mode="lines", name="range-test loss" + (f" ({rt.get('label', gid)})" if many else ""),
            line=dict(color="#7f7f7f", width=1.5, dash=("solid", "dash", "dot", "dashdot")[j % 4]),
            hovertemplate="LR %{x:.3g}<br>smoothed loss %{y:.4f}<extra></extra>"), secondary_y=True)
        finite = [v for v in losses if math.isfinite(v)]
        if finite:  # as in lr_finder_figure: the descent and a little above the start, not the blow-up
            lo_l = min(finite)
            hi_l = max(finite[: finite.index(lo_l) + 1])
            p = 0.08 * (hi_l - lo_l) or 0.1
            loss_range = [min(loss_range[0], lo_l - p) if loss_range else lo_l - p,
                          max(loss_range[1], hi_l + 3 * p) if loss_range else hi_l + 3 * p]
    # Each series' suggestions: the range test's curve is shared, but min_div_run depends on the run's length,
    # so a grid over epochs gives each series its own; a line drawn once for all series that share it.
    drawn: set[tuple[str, float]] = set()
    for ser in summary.get("series", []):
        for name, rule in ser.get("rules", {}).items():
            lr = rule["lr"]
            if (name, lr) in drawn:
                continue
            drawn.add((name, lr))
            default = name == ser.get("default_rule")
            text = f"{SUGGESTION_LABELS.get(name, name)}{' (default)' if default else ''}: {lr:.2e}"
            if len(series) > 1:
                text += f" ({ser['series']})"
            fig.add_trace(_vline(lr, y0, y1, text, SUGGESTION_COLOURS.get(name, "#7f7f7f"),
                                 "solid" if default else "dot", 2.5 if default else 1.5), secondary_y=False)
    if loss_range:
        fig.update_yaxes(range=loss_range, secondary_y=True)
    if title is None:
        title = "Sweep: final test accuracy against max LR"
        tops = [s for s in summary.get("series", []) if s.get("best")]
        if len(tops) == 1:
            s = tops[0]
            title = f"Best max LR {s['best_lr']:.3g}: {s['best_mean']:.2f}% ± {s['best_std']:.2f}"
            d = s.get("rules", {}).get(s.get("default_rule") or "")
            if d and d.get("mean") is not None:
                title += (f"; the range test's {s['default_rule']} ({d['lr']:.3g}): {d['mean']:.2f}% "
                          f"({d['below_best']:.2f} below)")
    # The x range spans the trained LRs and the suggestions (×4 either side), not the range test's whole sweep
    # from 1e-7, which would squeeze the accuracies into a corner; the rest of the curve is a zoom-out away.
    xs = [r["max_lr"] for r in rows] + [lr for _, lr in drawn]
    xs = [x for x in xs if x and x > 0]
    if xs:
        fig.update_xaxes(range=[math.log10(min(xs) / 4), math.log10(max(xs) * 4)])
    fig.update_xaxes(type="log", exponentformat="power", title_text="max LR (log scale)")
    fig.update_yaxes(title_text="final test accuracy (%), mean ± std over seeds", range=[y0, y1], secondary_y=False)
    fig.update_yaxes(title_text="range-test loss (smoothed)", showgrid=False, secondary_y=True)
    return _layout(fig, title, height=460, legend_below=True)


def _visible_range(losses: Sequence[float]) -> tuple[float, float] | None:
    """(low, high) of a range-test curve's descent: from its minimum to a little above where it started, leaving
    out the blow-up at the end, which would flatten everything interesting into a line (zoom out to see it)."""
    finite = [v for v in losses if math.isfinite(v)]
    if not finite:
        return None
    lo = min(finite)
    hi = max(finite[: finite.index(lo) + 1])
    pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 0.1
    return lo - pad, min(hi + 3 * pad, max(finite) + pad)


def lr_finder_overlay(tests: Mapping[str, Mapping[str, Any]], colours: Mapping[str, str] | None = None,
                      labels: Mapping[str, str] | None = None,
                      title: str | None = "LR range tests compared") -> go.Figure:
    """Several range tests' loss-vs-LR curves on one log axis, each with its LRMAX marked by a dot of its colour.
    `tests` maps a name to a saved test (RangeTest.to_dict()); `colours` and `labels` as in runs_overlay_figure."""
    fig = go.Figure()
    ranges = []
    for i, (name, d) in enumerate(tests.items()):
        lrs, losses = list(d.get("lrs") or []), list(d.get("losses") or [])
        if not lrs:
            continue
        colour = (colours or {}).get(name) or RUN_COLOURS[i % len(RUN_COLOURS)]
        label = (labels or {}).get(name, name)
        fig.add_trace(go.Scatter(x=lrs, y=losses, mode="lines", name=label, legendgroup=name,
                                 line={"color": colour, "width": 2},
                                 hovertemplate=f"{label}<br>LR %{{x:.3g}}<br>loss %{{y:.4f}}<extra></extra>"))
        r = _visible_range(losses)
        if r:
            ranges.append(r)
        max_lr = d.get("max_lr")
        if max_lr and lrs[0] <= max_lr <= lrs[-1]:
            j = min(range(len(lrs)), key=lambda k: abs(math.log(lrs[k]) - math.log(max_lr)))
            fig.add_trace(go.Scatter(x=[max_lr], y=[losses[j]], mode="markers", legendgroup=name, showlegend=False,
                                     marker={"color": colour, "size": 11, "line": {"color": "#000", "width": 1}},
                                     hovertemplate=f"{label}<br>LRMAX %{{x:.3g}} ({d.get('rule', '?')})"
                                                   "<extra></extra>"))
    if ranges:
        fig.update_yaxes(range=[min(r[0] for r in ranges), max(r[1] for r in ranges)])
    else:
        fig.add_annotation(text="pick saved range tests to compare", x=0.5, y=0.5, xref="paper", yref="paper",
                           showarrow=False, font=dict(size=14, color="#888"))
    fig.update_xaxes(type="log", exponentformat="power", title_text="learning rate (log scale)")
    fig.update_yaxes(title_text="training loss (smoothed)")
    return _layout(fig, title)
