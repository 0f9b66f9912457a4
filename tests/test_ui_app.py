"""lab.ui.app.build_app: the Blocks, their named endpoints, and a server without the data or a checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from conftest import REPO
from lab import data as data_mod
from lab.ui.app import API_DEFAULTS, api_parameters, build_app, launch_kwargs
from lab.server.jobs import JobManager

API = {"classify", "train_start", "train_status", "train_stop", "find_lr", "sweep_start", "sweep_stop", "compare_start"}


def _descendants(block):
    for child in getattr(block, "children", []):
        yield child
        yield from _descendants(child)


def _missing():
    raise data_mod.DataNotFoundError("CIFAR-10 not found: searched data/ (test). Set CIFAR10_DIR.")


def test_importing_the_app_loads_no_ray():
    """Ray costs seconds of CPU to import: it loads when a sweep starts (in the job's own process), not with the
    app, whose Sweep tab imports lab.sweep."""
    code = "import sys, lab.ui.app; print(any(m == 'ray' or m.startswith('ray.') for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_the_range_test_endpoint_takes_every_training_control(tmp_path):
    from lab.ui.common import CONTROL_NAMES

    demo = build_app(JobManager(runs_root=tmp_path / "runs", data_loader=_missing), pretrained=tmp_path / "none.pt")
    params = {fn.api_name: [p.name for p in api_parameters(fn.fn)] for fn in demo.fns.values()
              if fn.api_name in ("train_start", "find_lr")}
    # the controls keep their names and order; "confirm" (for long CPU jobs) is new, last and optional
    assert params["train_start"] == [*CONTROL_NAMES, "confirm"]
    assert params["find_lr"][:5] == ["iters", "start_lr", "end_lr", "mode", "optimizer"]
    assert params["find_lr"][-1] == "confirm"
    assert set(params["find_lr"]) == set(CONTROL_NAMES) | {"iters", "start_lr", "end_lr", "mode", "confirm"}
    for fn in demo.fns.values():
        if fn.api_name in params:
            assert len(fn.inputs) == len(params[fn.api_name])


def test_without_data_or_checkpoint_the_app_builds_and_says_what_is_missing(tmp_path):
    demo = build_app(JobManager(runs_root=tmp_path / "runs", data_loader=_missing), pretrained=tmp_path / "none.pt")
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert API <= public and public == API  # everything else is the UI's own wiring
    text = "\n".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "**CIFAR-10 not found**" in text and "Classify works with a checkpoint" in text
    notice = "CIFAR-10 is not available on this server"
    tabs_with_notice = {tab.label for tab in demo.blocks.values() if isinstance(tab, gr.Tab)
                        if any(notice in str(b.value) for b in _descendants(tab) if isinstance(b, gr.Markdown))}
    assert tabs_with_notice == {"Augment", "LR range test", "Train", "Sweep", "Insights"}  # the tabs that need the data
    assert "No checkpoint yet" in text and "python -m lab train" in text
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Augment", "LR range test", "One Cycle", "Train", "Sweep", "Insights", "Classify"]
    assert isinstance(launch_kwargs()["theme"], gr.themes.Base)


def test_classify_takes_uploads_webcam_and_clipboard_through_one_stable_endpoint(tmp_path):
    import inspect

    from lab.ui.classify import AnyImage

    demo = build_app(JobManager(runs_root=tmp_path / "runs", data_loader=_missing), pretrained=tmp_path / "none.pt")
    (fn,) = [fn for fn in demo.fns.values() if fn.api_name == "classify"]
    assert list(inspect.signature(fn.fn).parameters) == ["image"] and len(fn.inputs) == 1
    image = fn.inputs[0]
    # the webcam snapshot and the pasted image arrive as uploads: the same raw pass-through and checks apply
    assert isinstance(image, AnyImage) and image.sources == ["upload", "webcam", "clipboard"]


def test_shared_server_mode_is_on_on_a_space_and_with_lab_public_only():
    from lab.server.policy import shared_mode

    assert shared_mode({"SPACE_ID": "someone/cifar10-lab"}) and shared_mode({"LAB_PUBLIC": "1"})
    assert not shared_mode({}) and not shared_mode({"LAB_PUBLIC": "0"}) and not shared_mode({"SPACE_ID": ""})


def test_a_call_missing_parameters_is_told_which(tmp_path):
    from lab.ui.common import CONTROL_NAMES

    demo = build_app(JobManager(runs_root=tmp_path / "runs", data_loader=_missing), pretrained=tmp_path / "none.pt")
    fn = next(fn for fn in demo.fns.values() if fn.api_name == "train_start")
    n = len(CONTROL_NAMES) + 1  # and confirm
    with pytest.raises(gr.Error) as e:
        demo.validate_inputs(fn, [0.125, 256])
    message = e.value.message
    assert message.startswith(f"train_start got 2 of its {n} parameters; missing: test_subset, seed, device")
    required = [name for name in CONTROL_NAMES if name not in API_DEFAULTS]
    assert CONTROL_NAMES[:len(required)] == tuple(required)  # the optional ones come last
    assert f"missing: {', '.join(required[2:])}. Send" in message  # the optional last ones are not missing
    demo.validate_inputs(fn, [None] * n)  # all there: no complaint (the handler checks values)
    # a script written before the optional parameters (the loss controls, confirm) existed: they take defaults
    first_api = [None] * len(required)
    demo.validate_inputs(fn, first_api)
    assert len(first_api) == n and first_api[-1] is False


def test_uploads_are_capped_and_their_cache_is_cleaned(tmp_path):
    from lab.server.policy import UPLOAD_MAX_AGE_S, UPLOAD_MAX_BYTES

    assert launch_kwargs()["max_file_size"] == UPLOAD_MAX_BYTES
    demo = build_app(JobManager(runs_root=tmp_path / "runs", data_loader=_missing), pretrained=tmp_path / "none.pt")
    assert demo.delete_cache == (UPLOAD_MAX_AGE_S, UPLOAD_MAX_AGE_S)


def test_the_header_names_the_data_and_a_shared_server_hides_where_it_lives(cifar10, runs_root):
    """Issue 21: the page header showed a visitor the server's absolute path to CIFAR-10."""
    from lab.server.jobs import JobManager
    from lab.ui.app import header
    from lab.ui.common import AppContext

    for shared in (False, True):
        ctx = AppContext(JobManager(runs_root=runs_root, data_loader=lambda: cifar10, shared=shared))
        line = header(ctx)
        shown = f"`{Path(cifar10.source).name}`" if shared else f"`{cifar10.source}`"
        assert f"CIFAR-10 from {shown}" in line
        assert (str(Path(cifar10.source).parent) in line) is (not shared)
