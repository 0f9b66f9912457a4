"""What several tabs share: the app context, the one mapping from the app's controls to a TrainConfig, the one
cache (models and evaluations), checkpoint choices and small formatters. Tabs import this, never each other."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import torch

from lab import data as data_mod
from lab import estimate as estimate_mod
from lab import runs as runs_mod
from lab.config import (DEFAULT_DIV_FACTOR, KNOBS, LEARNER_TRICKS, STATUS_HEADINGS, TEST_IMAGES, TRAIN_IMAGES, ConfigError,
                        TrainConfig)
from lab.engine import resolve_device
from lab.server.jobs import JobManager
from lab.server.runner import Runner, local_inference_device

PRETRAINED_LABEL = "bundled ResNet-9 (assets/cifar10_resnet9.pt)"
NO_CHECKPOINT = (
    "**No checkpoint yet.** Get one by training: press **Start** in the *Train* tab (on a CPU the *Learner* preset "
    "reaches ~81.5% in about 3 minutes), or run `python -m lab train --preset learner --device cpu` — every run "
    "saves `runs/<id>/model.pt`, which then appears here (press ↻). The bundled checkpoint, when present, lives "
    "at `assets/cifar10_resnet9.pt`."
)
NO_DATA = "**CIFAR-10 is not available on this server, so this tab cannot work.** {reason}"
# What the person running the server can do; the app takes no command-line flags, so these are its two switches.
DATA_HOWTO = ("Whoever runs this server can set `CIFAR10_DIR` to a folder holding `cifar10.npz`, "
              "`cifar-10-batches-py/` or `cifar-10-python.tar.gz` (from https://www.cs.toronto.edu/~kriz/cifar.html) "
              "and restart the app, or restart it with `LAB_DOWNLOAD=1` to download CIFAR-10 (about 170 MB) on "
              "first use.")

# The training controls of the Augment, One Cycle and Train tabs, in the order the train_start API takes them
# (these names are its public parameter names), with the type each arrives as: every knob declared with an `app`
# place (lab.config.knob), and lr_mode, the one control that is not a knob — whether LRMIN comes from the div factor
# or min LR — at its own place.
LR_MODES = ("div factor", "min LR")
LR_MODE_PLACE = 7
_ARRIVES_AS = {"number": float, "whole": float, "images": float, "choice": str, "flag": bool}
_APP_KNOBS = sorted((k for k in KNOBS.values() if k.app is not None), key=lambda k: k.app)
TRAIN_CONTROLS: tuple[tuple[str, type], ...] = tuple(
    (name, kind) for _, name, kind in sorted([(k.app, k.name, _ARRIVES_AS[k.value_kind]) for k in _APP_KNOBS]
                                             + [(LR_MODE_PLACE, "lr_mode", str)]))
CONTROL_NAMES = tuple(name for name, _ in TRAIN_CONTROLS)
# Parameters added to train_start and find_lr after their first release may be left out by an API caller
# (scripts written against the first API keep working): they take the lab's defaults.
API_OPTIONAL = {k.name: k.default for k in _APP_KNOBS if k.api_optional}
DIV_FACTOR_RANGE = (2, 1000)  # the One Cycle tab's div-factor slider; a preset beyond it is shown as its min LR


def message(e: Exception) -> str:
    """One readable line for a refused input, naming the control's API parameter when one is at fault."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    knob = getattr(e, "knob", None)
    return f"{text} (`{knob}`)" if knob else text


def _empty(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def number(name: str, label: str, value) -> float:
    """A control's number (the browser sends floats, an API caller anything): ConfigError naming `name`."""
    if _empty(value):
        raise ConfigError(f"{label} is empty; enter a number", name)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{label} must be a number, got {value!r:.60}", name)
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"{label} must be a number, got {value!r:.60}", name) from None
    if not math.isfinite(v):
        raise ConfigError(f"{label} must be a finite number, got {value!r:.60}", name)
    return v


def whole(name: str, label: str, value) -> int:
    v = number(name, label, value)
    if v != int(v):
        raise ConfigError(f"{label} must be a whole number, got {value!r:.60}", name)
    return int(v)


def _images(name: str, label: str, value) -> int | None:
    """0 or empty → None (all images); otherwise a whole number ≥ 1."""
    if _empty(value):
        return None
    v = number(name, label, value)
    if v != int(v) or v < 0:
        raise ConfigError(f"{label} must be a whole number of images (0 = all), got {value!r:.60}", name)
    return int(v) or None


def choice(name: str, label: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{label} must be one of {', '.join(choices)}, got {value!r:.60}", name)
    return value


def flag(name: str, label: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{label} is on or off: true or false, got {value!r:.60}", name)
    return value


def train_config(**controls) -> TrainConfig:
    """The app's training controls (TRAIN_CONTROLS, all of them, by name) → a validated TrainConfig; ConfigError
    with a readable message naming the control otherwise. The one place the app turns controls into a config:
    every value is checked here (type and range, by the kind its knob declares), so a job that starts can run."""
    missing = [n for n in CONTROL_NAMES if n not in controls]
    unknown = [n for n in controls if n not in CONTROL_NAMES]
    if missing or unknown:
        raise ConfigError(f"training controls missing {missing} / unknown {unknown}")
    use_min = choice("lr_mode", "LRMIN from", controls["lr_mode"], LR_MODES) == "min LR"
    # LRMIN comes from one of two controls; the other one's value is not read (it may be empty)
    knobs: dict[str, Any] = {"min_lr": None} if not use_min else {"div_factor": DEFAULT_DIV_FACTOR}
    for knob in _APP_KNOBS:
        name, value, words = knob.name, controls[knob.name], knob.words
        if name in knobs:
            continue
        kind = knob.value_kind
        if knob.empty_is_default and _empty(value):
            knobs[name] = None  # empty: the default this knob takes from others (weight decay: the optimizer's)
        elif kind == "images":
            knobs[name] = _images(name, words, value)
        elif kind == "whole":
            knobs[name] = whole(name, words, value)
        elif kind == "choice":
            knobs[name] = choice(name, words, value, knob.choices)
        elif kind == "number":
            knobs[name] = number(name, words, value)
        else:
            knobs[name] = flag(name, words, value)
    return TrainConfig.from_flat(**knobs)


def partial_config(**controls) -> TrainConfig:
    """Some of the controls (one tab's) → a validated TrainConfig, the rest at the lab's defaults."""
    return train_config(**{**control_defaults(), **controls})


def control_defaults() -> dict[str, Any]:
    """Every training control at the lab's defaults (TrainConfig()), as the app would send them."""
    knobs = TrainConfig().flat()
    out = {name: knobs.get(name) for name in CONTROL_NAMES if name != "lr_mode"}
    out["lr_mode"] = LR_MODES[0]
    return out


def learner_tricks_md() -> str:
    """What each beyond-spec trick of the Learner preset buys, one line each (lab.config.LEARNER_TRICKS, measured in
    benchmarks/RESULTS.md)."""
    return ("<small>The **Learner** preset's tricks beyond the spec, as measured (benchmarks/RESULTS.md, “How the "
            "recipe was found”, seed 0, all 10,000 test images):  \n"
            + "  \n".join(f"· {line}" for line in LEARNER_TRICKS.values()) + "</small>")


def has_cuda() -> bool:
    return torch.cuda.is_available()


def eval_device() -> str:
    """Where the app's own inference runs (Insights, Classify): lab.server.runner.local_inference_device."""
    return local_inference_device()


T = TypeVar("T")


class LRUCache:
    """A small thread-safe least-recently-used cache: `get(key, make)` returns the cached value or makes,
    stores and returns it. The app keeps loaded checkpoints and evaluations in one; keys include the file's
    modification time, so a run that rewrites its model.pt every epoch makes a new entry."""

    def __init__(self, size: int = 6):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def peek(self, key: Hashable) -> Any | None:
        """The cached value, or None."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: Hashable, value: T) -> T:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return self.put(key, make())  # made outside the lock: loading or evaluating can take seconds


def file_key(path: str | Path) -> tuple[str, int]:
    """(resolved path, modification time) of a checkpoint: what the cache keys it by."""
    f = runs_mod.checkpoint_file(path)
    return str(f.resolve()), f.stat().st_mtime_ns if f.exists() else 0


@dataclass
class AppContext:
    manager: JobManager
    cache: LRUCache = field(default_factory=LRUCache)
    pretrained: Path = runs_mod.PRETRAINED_CHECKPOINT
    # what runs the jobs the tabs start, stop and watch (lab.server.runner); default: a thread of this server
    runner: Runner | None = None
    # one timing probe at a time: two at once would each measure half the machine
    probe_lock: threading.Lock = field(default_factory=threading.Lock)
    # (device, width, probe batch) → lab.estimate.StepTime; bounded, as the API accepts any width
    timings: LRUCache = field(default_factory=lambda: LRUCache(32))
    # whether visitors may rename and delete runs (lab.server.policy.manage_runs_allowed); downloads are always allowed
    manage_runs: bool = True

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = Runner(self.manager)

    @property
    def runs_root(self) -> Path:
        return self.manager.runs_root

    def load_model(self, path: str | Path):
        """(eval-mode CPU model, its config, its recorded metrics) of a checkpoint file or run folder, cached.
        These are copies loaded from disk, never the model a training thread updates."""
        f = runs_mod.checkpoint_file(path)
        return self.cache.get(("model", *file_key(f)), lambda: runs_mod.load_checkpoint(f, "cpu"))

    def data_message(self) -> str:
        """'' when the data is there, else a Markdown notice saying what is missing and how the server's operator
        can provide it (environment variables: the app takes no flags)."""
        reason = self.manager.data_error()
        if reason is None:
            return ""
        if reason.startswith("CIFAR-10 not found"):  # DataNotFoundError: nothing found, as opposed to a bad file
            places = ", ".join(f"`{d}/`" for d in data_mod.search_dirs(self.manager.data_dir))
            tried = ("the download failed (the server log says why)" if self.manager.download
                     else "downloading is switched off")
            reason = f"Searched {places}; {tried}. {DATA_HOWTO}"
        return NO_DATA.format(reason=reason)

    def timing(self, width: float, batch_size: int, device: str):
        """The measured step time (lab.estimate.StepTime) of the network at `width` on `device`, cached per
        server and measured again once stale (StepTime.stale: old, or the machine's load has moved); None when it
        is not measured yet and a job runs: a probe (a few real steps, some seconds at width 1 on two CPU cores)
        never runs beside a job, whose speed it would both slow and misread — a stale one then stands, and says
        when and under what load it was taken."""
        dev = resolve_device(device).type
        probe = estimate_mod.PROBE_BATCH if dev == "cpu" else min(batch_size, estimate_mod.PROBE_BATCH_CUDA)
        key = (dev, float(width), probe)
        with self.probe_lock:
            cached = self.timings.peek(key)
            busy = self.manager.busy_message()
            if cached is not None and (busy or not cached.stale(load=estimate_mod.load_average())):
                return cached
            if busy:
                return None
            return self.timings.put(key, self.measure(width, batch_size, dev))

    # the probe itself (a seam: tests put a fixed StepTime in its place)
    measure = staticmethod(lambda width, batch_size, device: estimate_mod.measure(width, batch_size, device))

    def estimate_run(self, cfg: TrainConfig):
        """How long training `cfg` would take here (lab.estimate.Estimate), or None when no timing is at hand."""
        t = self.timing(cfg.width, cfg.batch_size, cfg.device)
        if t is None:
            return None
        return estimate_mod.for_run(cfg, min(cfg.subset or TRAIN_IMAGES, TRAIN_IMAGES),
                                    min(cfg.test_subset or TEST_IMAGES, TEST_IMAGES), t)

    def estimate_range_test(self, cfg: TrainConfig, iters: int):
        t = self.timing(cfg.width, cfg.batch_size, cfg.device)
        return None if t is None else estimate_mod.for_range_test(cfg, iters, t)

    def pretrained_metrics(self) -> dict:
        """The bundled checkpoint's recorded metrics (the JSON beside it), {} when absent."""
        return runs_mod.recorded_metrics(self.pretrained)

    def checkpoint_choices(self) -> list[tuple[str, str]]:
        """(label, path) for the bundled checkpoint (when present) and every run with a model.pt, newest first."""
        out: list[tuple[str, str]] = []
        if self.pretrained.is_file():
            acc = self.pretrained_metrics().get("test_acc")
            label = PRETRAINED_LABEL + (f" · {100 * acc:.2f}% test accuracy" if isinstance(acc, float) else "")
            out.append((label, str(self.pretrained)))
        for run in runs_mod.list_runs(self.runs_root):
            summary = run.summary()
            if summary.has_checkpoint:
                out.append((run_label(summary), str(run.path)))
        return out

    def default_checkpoint(self) -> str | None:
        """The bundled checkpoint if it exists, else the newest run's, else None."""
        choices = self.checkpoint_choices()
        return choices[0][1] if choices else None

    def checkpoint_dropdown(self, current: str | None = None) -> gr.Dropdown:
        """The checkpoint picker re-read from disk, keeping the current choice while it still exists."""
        choices = self.checkpoint_choices()
        values = [c[1] for c in choices]
        value = current if current in values else (values[0] if values else None)
        return gr.Dropdown(choices=choices, value=value)


def run_label(s: runs_mod.RunSummary) -> str:
    """'20250101-120000 · done · 3/3 ep · 45.2% · w0.25 · adam' — enough to tell runs apart in a list; a run
    with a title starts 'title (20250101-120000)'."""
    if s.status == "unreadable":
        return f"{s.name} · unreadable"
    parts = [f"{s.title} ({s.name})" if s.title else s.name, s.status, f"{s.epochs_done}/{s.epochs} ep"]
    if s.test_acc is not None:
        parts.append(f"{100 * s.test_acc:.1f}%")
    parts += [f"w{s.width:g}", str(s.optimizer)]
    return " · ".join(parts)


def heading(status: str) -> str:
    """The bold word a status line starts with."""
    return f"**{STATUS_HEADINGS.get(status, status)}**"


def steps_per_epoch_images(subset) -> int:
    """Training images per epoch for a 'training images' control (0, empty or too many: all of them)."""
    try:
        n = int(subset or 0)
    except (TypeError, ValueError):
        n = 0
    return n if 0 < n < TRAIN_IMAGES else TRAIN_IMAGES


# Durations ('10 h 39 min', never a clock-like '10:38:56') for elapsed time, ETAs and estimates: the one
# formatter, kept in the core (lab.estimate) because the command line prints the same figures.
fmt_seconds = estimate_mod.format_duration


def round_lr(lr: float) -> float:
    """An LR as a person would type it: three significant figures (0.0658, not 0.06579332246575682)."""
    return float(f"{lr:.3g}")


def error_md(message: str) -> str:
    return f"⚠ {message}"


def launch(ctx: AppContext, start: Callable[[], Any], started: Callable[[Any], str], held: str) -> str | Any:
    """A tab's Start through the server's runner, and what the tab then shows: `start()` checks the input and calls
    ctx.runner.start (a Launch); `started(launch)` is the "started" line; `held` says what to do with a long job
    held back for confirmation. A refused start (busy, no data, bad input, too long) is one Markdown line. A
    streaming runner (the job lasts one request) gets an iterator of lines as the job reports, else one line."""
    from lab.data import DataError
    from lab.engine import DeviceError
    from lab.server.jobs import Busy
    from lab.server.runner import TooLong

    say = (lambda text: iter([text])) if ctx.runner.streams else (lambda text: text)
    try:
        launched = start()
    except Busy as e:
        return say(error_md(str(e)))
    except DataError:
        return say(ctx.data_message())  # in the app's words: the app takes no --data-dir
    except (ConfigError, DeviceError, TooLong, OSError) as e:
        return say(error_md(message(e)))
    if launched.held:
        return say(held.format(estimate=launched.estimate))
    head = started(launched) + launched.note
    if launched.updates is None:
        return head
    return (f"{head}  \n{heading(job.status)} — {job.message or job.progress()}" for job in launched.updates)
