"""What several tabs share: the app context, checkpoint choices, a cache of loaded models, small formatters."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lab import runs as runs_mod
from lab.ui.jobs import JobManager

PRETRAINED_LABEL = "bundled ResNet-9 (assets/cifar10_resnet9.pt)"
NO_CHECKPOINT = (
    "**No checkpoint yet.** Get one by training: press **Start** in the *Train* tab (the *Quick CPU* preset takes "
    "a few minutes on a laptop), or run `python -m lab train --width 0.25 --subset 5000 --epochs 3` — every run "
    "saves `runs/<id>/model.pt`, which then appears here (press ↻). The bundled checkpoint, when present, lives "
    "at `assets/cifar10_resnet9.pt`."
)
NO_DATA = "**CIFAR-10 is not available on this server, so this tab cannot work.** {reason}"


def has_cuda() -> bool:
    return torch.cuda.is_available()


def eval_device() -> str:
    return "cuda" if has_cuda() else "cpu"


class ModelCache:
    """Checkpoints loaded with lab.runs.load_checkpoint, keyed by path and modification time (a running run
    rewrites its model.pt every epoch: a newer file is a new entry). Models are eval-mode CPU copies, never
    the model a training thread updates."""

    def __init__(self, size: int = 3):
        self.size = size
        self._items: OrderedDict[tuple[str, float], tuple[Any, Any, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> tuple[Any, Any, dict]:
        p = Path(path)
        f = p / runs_mod.CHECKPOINT if p.is_dir() else p
        key = (str(f.resolve()), f.stat().st_mtime_ns if f.exists() else 0)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        loaded = runs_mod.load_checkpoint(f, "cpu")
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return loaded


@dataclass
class AppContext:
    manager: JobManager
    models: ModelCache = field(default_factory=ModelCache)
    pretrained: Path = runs_mod.PRETRAINED_CHECKPOINT

    @property
    def runs_root(self) -> Path:
        return self.manager.runs_root

    def data_message(self) -> str:
        """'' when the data is there, else a Markdown notice saying what is missing and how to provide it."""
        reason = self.manager.data_error()
        return "" if reason is None else NO_DATA.format(reason=reason)

    def pretrained_metrics(self) -> dict:
        """The bundled checkpoint's recorded metrics (assets/cifar10_resnet9.json), {} when absent."""
        path = self.pretrained.with_suffix(".json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def checkpoint_choices(self) -> list[tuple[str, str]]:
        """(label, path) for the bundled checkpoint (when present) and every run with a model.pt, newest first."""
        out: list[tuple[str, str]] = []
        if self.pretrained.is_file():
            acc = self.pretrained_metrics().get("test_acc")
            label = PRETRAINED_LABEL + (f" · {100 * acc:.2f}% test accuracy" if isinstance(acc, float) else "")
            out.append((label, str(self.pretrained)))
        for run in runs_mod.list_runs(self.runs_root):
            if run.checkpoint.is_file():
                out.append((run_label(run), str(run.path)))
        return out

    def default_checkpoint(self) -> str | None:
        """The bundled checkpoint if it exists, else the newest run's, else None."""
        choices = self.checkpoint_choices()
        return choices[0][1] if choices else None


def run_label(run: runs_mod.Run) -> str:
    """'20250101-120000 · done · 3 ep · 45.2% · w0.25 · adam' — enough to tell runs apart in a list."""
    try:
        doc = run.config_doc()
        cfg = doc.get("config", {})
        status = doc.get("status", "?")
    except runs_mod.CheckpointError:
        return f"{run.name} · unreadable"
    metrics = run.metrics()
    parts = [run.name, status, f"{len(metrics)}/{cfg.get('schedule', {}).get('epochs', '?')} ep"]
    if metrics:
        parts.append(f"{100 * metrics[-1].get('test_acc', float('nan')):.1f}%")
    parts += [f"w{cfg.get('width', '?')}", str(cfg.get("optimizer", {}).get("name", "?"))]
    return " · ".join(parts)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def error_md(message: str) -> str:
    return f"⚠ {message}"
