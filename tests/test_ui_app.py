"""lab.ui.app.build_app: the Blocks, their named endpoints, and a server without the data or a checkpoint."""

from __future__ import annotations

import gradio as gr

from lab import data as data_mod
from lab.ui.app import build_app, launch_kwargs
from lab.ui.jobs import JobManager

API = {"classify", "train_start", "train_status", "train_stop", "find_lr"}


def test_without_data_or_checkpoint_the_app_builds_and_says_what_is_missing(tmp_path):
    def missing():
        raise data_mod.DataNotFoundError("CIFAR-10 not found: searched data/ (test). Set CIFAR10_DIR.")

    demo = build_app(JobManager(runs_root=tmp_path / "runs", data_loader=missing), pretrained=tmp_path / "none.pt")
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert API <= public and public == API  # everything else is the UI's own wiring
    text = "\n".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "**CIFAR-10 not found**" in text and "Classify works with a checkpoint" in text
    assert text.count("CIFAR-10 is not available on this server") == 4  # Augment, LR range test, Train, Insights
    assert "No checkpoint yet" in text and "python -m lab train" in text
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Augment", "LR range test", "One Cycle", "Train", "Insights", "Classify"]
    assert isinstance(launch_kwargs()["theme"], gr.themes.Base)
