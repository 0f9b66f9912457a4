"""The server's policy: what the app opens with, and what a stranger may ask of a shared server.

Shared-server mode (a Hugging Face Space — SPACE_ID set — or LAB_PUBLIC=1; off locally) turns on the per-job caps
(SHARED_CAPS, check_caps), the runs/ quota (SHARED_RUNS_QUOTA) and session-owned Stop (lab.server.jobs), and turns
off renaming and deleting runs (manage_runs_allowed). Uploads are bounded on every server (UPLOAD_MAX_BYTES,
UPLOAD_MAX_AGE_S; lab.server.uploads bounds their pixels).
"""

from __future__ import annotations

import os
from typing import Any

from lab.config import SPEC_EPOCHS, TEST_IMAGES, TRAIN_IMAGES, ConfigError, TrainConfig

CPU_PRESET, GPU_PRESET = "learner", "spec"  # what the app opens with on each kind of machine (lab.config.PRESETS)
CPU_SWEEP_PRESET = "tiny"  # a sweep trains many runs, two at a time on 2 cores: on a CPU the sweep tab opens with Tiny

# What one visitor's job may cost on a shared server. Each cap is named in the message that refuses a job over it.
# The defaults let the spec recipe run (width 1, batch 512, 24 epochs of 50,000 training + 10,000 test images) and
# nothing much bigger.
SHARED_CAPS = {
    "width": 1.0,
    "batch_size": 512,
    "epochs": 100,  # each epoch writes a checkpoint: bounds the disk churn of a run of tiny epochs
    "image_epochs": (TRAIN_IMAGES + TEST_IMAGES) * SPEC_EPOCHS,  # images seen (trained + evaluated) × epochs
    "range_test_iters": 500,
}
SHARED_RUNS_QUOTA = 2 * 1024**3  # bytes under runs/ on a shared server; the oldest finished runs are pruned
UPLOAD_MAX_BYTES = 20 * 1024**2  # an upload larger than this is refused by the server (Gradio's max_file_size)
UPLOAD_MAX_AGE_S = 3600  # uploads older than this are deleted from Gradio's cache (checked as often)


def shared_mode(environ=None) -> bool:
    """A server strangers use: on by itself on a Hugging Face Space (SPACE_ID is set there) and with
    LAB_PUBLIC=1; off locally. It turns on the per-job caps, the runs/ quota and session-owned Stop."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("SPACE_ID")) or environ.get("LAB_PUBLIC", "").strip().lower() in ("1", "true", "yes")


def manage_runs_allowed(env: dict | None = None) -> bool:
    """Renaming and deleting runs is for a server's own users: on by default, off on a shared server (a Hugging Face
    Space, LAB_PUBLIC=1: shared_mode), where every visitor is a stranger; LAB_MANAGE_RUNS=1 or 0 decides either way."""
    env = os.environ if env is None else env
    choice = env.get("LAB_MANAGE_RUNS", "").strip().lower()
    if choice:
        return choice in ("1", "true", "yes")
    return not shared_mode(env)


def _check(ok: bool, message: str, knob: str) -> None:
    if not ok:
        raise ConfigError(message, knob)


def check_caps(cfg: TrainConfig, train_images: int = TRAIN_IMAGES, test_images: int = TEST_IMAGES,
               iters: int | None = None, caps: dict[str, Any] | None = None) -> None:
    """Refuse a job over a shared server's caps (SHARED_CAPS), naming the cap and what to lower. `iters`: the
    range test's iterations (a range test trains no epochs and evaluates nothing)."""
    caps = SHARED_CAPS if caps is None else caps
    where = "this shared server's cap"
    _check(cfg.width <= caps["width"], f"width {cfg.width:g} is above {where} of {caps['width']:g}; lower the "
           "width (caps apply only on a shared server: run the lab on your own machine for more)", "width")
    _check(cfg.batch_size <= caps["batch_size"], f"batch size {cfg.batch_size} is above {where} of "
           f"{caps['batch_size']}; lower the batch size", "batch_size")
    if iters is not None:
        _check(iters <= caps["range_test_iters"], f"{iters} range-test iterations are above {where} of "
               f"{caps['range_test_iters']}; run fewer iterations", "iters")
        return
    epochs = cfg.schedule.epochs
    _check(epochs <= caps["epochs"], f"{epochs} epochs are above {where} of {caps['epochs']}; train fewer epochs",
           "epochs")
    seen = (min(cfg.subset or train_images, train_images) + min(cfg.test_subset or test_images, test_images))
    _check(seen * epochs <= caps["image_epochs"],
           f"{seen:,} images (training + test) × {epochs} epochs = {seen * epochs:,} image-epochs, above {where} "
           f"of {caps['image_epochs']:,}; use fewer images or fewer epochs", "epochs")


def check_total(cfgs, train_images: int = TRAIN_IMAGES, test_images: int = TEST_IMAGES,
                caps: dict[str, Any] | None = None) -> None:
    """Refuse a job of several runs (Compare schedules) over a shared server's caps: each run within them
    (check_caps), and all of them together within one job's image-epochs — the comparison may cost what the largest
    single run a visitor may start costs, not that many times over (one job at a time serves every visitor)."""
    caps = SHARED_CAPS if caps is None else caps
    for cfg in cfgs:
        check_caps(cfg, train_images, test_images, caps=caps)
    seen = sum((min(c.subset or train_images, train_images) + min(c.test_subset or test_images, test_images))
               * c.schedule.epochs for c in cfgs)
    _check(seen <= caps["image_epochs"],
           f"{len(cfgs)} runs × their images (training + test) × epochs = {seen:,} image-epochs, above this shared "
           f"server's cap of {caps['image_epochs']:,} for one job; compare at One Cycle's LR only (4 runs), or use "
           "fewer images or epochs", "epochs")
