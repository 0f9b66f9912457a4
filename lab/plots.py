"""Pure functions: data → plotly figure. Nothing here trains, loads or writes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

if TYPE_CHECKING:
    from lab.lr_finder import RangeTest

SUGGESTION_COLOURS = {"loss_min": "#ff7f0e", "valley": "#d62728", "steepest": "#2ca02c", "min_div_10": "#9467bd"}
SUGGESTION_LABELS = {"loss_min": "loss minimum", "valley": "valley", "steepest": "steepest descent", "min_div_10": "loss minimum ÷ 10"}


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
    finite = [v for v in losses if math.isfinite(v)]
    if finite:
        # The y range covers the descent and a little above the start, not the blow-up at the end, which would
        # flatten everything interesting into a line (zoom out to see it).
        lo = min(finite)
        hi = max(finite[: finite.index(lo) + 1])
        pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 0.1
        y0, y1 = lo - pad, min(hi + 3 * pad, max(finite) + pad)
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
            fig.add_trace(_vline(d["max_lr"], y0, y1, f"LRMAX ({d.get('rule', '?')}): {d['max_lr']:.2e}",
                                 "#000000", "solid", 2.5))
        if d.get("min_lr"):
            fig.add_trace(_vline(d["min_lr"], y0, y1, f"LRMIN: {d['min_lr']:.2e}", "#000000", "dash"))
    s = d.get("settings", {})
    what = f" — {s['optimizer']}, {s.get('iterations_run', len(lrs))} iterations" if "optimizer" in s else ""
    fig.update_layout(
        title=f"LR range test{what}", xaxis_title="learning rate (log scale)", yaxis_title="training loss (smoothed)",
        template="plotly_white", hovermode="closest", legend={"x": 0.01, "y": 0.01, "xanchor": "left",
                                                             "yanchor": "bottom"},
    )
    fig.update_xaxes(type="log", exponentformat="power")
    return fig
