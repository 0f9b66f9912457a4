"""LR range test (Smith 2015) through torch-lr-finder: where LRMAX and LRMIN come from when the spec says FIND.

The test trains a throwaway copy of the network for `iters` batches while the LR grows from `start_lr` to
`end_lr` (exponentially by default), recording the smoothed training loss at each LR. It stops early once the
smoothed loss exceeds `diverge_th` × the best loss so far.

What training would use, the test uses: the same batches (loader kind, augmentation, batch size, subset, seed),
a network with the same initial weights (built after the same seeding), an optimizer of the same kind and
weight decay, the same loss (lab.engine.Loss: label smoothing and logit scale included), and the same precision
(lab.engine.resolve_precision: bf16 autocast on a GPU that has it, fp16 autocast with training's loss scaling on
one that does not, fp32 on the CPU), its batches in channels_last as the engine feeds them.

Nothing training owns is touched. The test builds its own model (or deep-copies one given to it) and its own
optimizer, and throws both away; torch-lr-finder's reset() is never needed. (It also refuses an optimizer that
a scheduler already touched — OneCycleLR leaves `initial_lr` in the param groups — so sharing training's
optimizer would not even work once a run has started.)

Suggestions, computed from the recorded curve by `suggest` (a pure function):
  min_div_run the default: the LR of the lowest loss ÷ a margin that grows with the length of the run the LR is
              for — fastai's ÷10 once the run trains on at least 30% as many batches as the test saw
              (lab.config.RANGE_TEST_FULL_MARGIN_AT), proportionally less for a shorter run, never ÷ less than 1.
  loss_min    the LR of the lowest (smoothed) loss: Smith's rule for One Cycle's maximum LR, the largest LR at
              which the loss is still falling.
  min_div_10  the LR of the lowest loss, ÷ 10 (fastai's older rule, meant for a constant LR).
  knee        the lowest LR at which the loss has made 90% of its fall, from the plateau at tiny LRs down to the
              minimum (lab.config.RANGE_TEST_KNEE): where the curve levels off.
  valley      fastai's rule (its default since fastai 2.4): take the longest decreasing run of the curve and
              pick the point about half way down it.
  steepest    torch-lr-finder's rule: the LR where the loss falls fastest per iteration (argmin of
              np.gradient of the loss).
Before any rule, the first tenth of the curve and its last few points are trimmed (the start is dominated by the
smoothing's warm-up, the end by the blow-up), as fastai does, and the curve is cut at the first NaN/inf; the
rules built on the minimum keep the tail, where the minimum usually sits.

Why min_div_run is the default: sweeps of whole runs trained at every rule's suggestion (`python -m lab sweep`;
the tables and figures are in benchmarks/RESULTS.md, "Does the range test pick the right LR?" and "Why
min_div_run is the default"). No fixed fraction of the loss minimum served every run: on the long spec recipe the
loss minimum sits by the best LR and min ÷ 10 a little below it; on the short Quick preset the loss minimum lands
far too high and min ÷ 10 is best; the shortest, Tiny, wants an LR between the two. A run spends only some of its
steps near its peak LR: a long run needs the margin, a very short one has too few steps there to go unstable and
needs the large steps to get anywhere. So the margin follows the run's length measured in the test's batches —
how much training the loss minimum was found after. The curve's shape alone (knee) cannot tell Tiny from Quick:
their curves level off alike. When the default cannot apply (the loss still falling at the end, or a bare curve
without the run's length), the next rule in lab.config.RANGE_TEST_RULES that applied is used, and if none can (too
few points, the loss never fell), LRMAX falls back to the optimizer's default (lab.config.DEFAULT_MAX_LR) with a
note saying so. LRMIN = LRMAX / div_factor, the schedule's default div factor unless told otherwise.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch_lr_finder.lr_finder as tlf
from torch import nn

from lab import config as C
from lab import data as data_mod
from lab.config import DEFAULT_MAX_LR, ConfigError, TrainConfig
from lab.engine import Loss, make_optimizer, to_model_layout
from lab.experiment import device_name, prepare

# The test's defaults, its rules (the first is the default, the rest the fallback order) and LR modes are
# lab.config's RANGE_TEST_*: the CLI and the app declare their flags and controls from the same names.
MIN_POINTS = 5  # fewer points than this after trimming: no rule applies
# What makes a finished test's LRMAX doubtful (caveats()): fewer recorded points than TRUSTED_POINTS (the rules
# trim a tenth at the start and a few at the end, and fastai's default test has 100), a loss that fell by less
# than WEAK_DROP over the curve, or an LRMAX in the lowest LOW_END share (log scale) of the LRs tested, where the
# network has barely started to learn.
TRUSTED_POINTS = 50
WEAK_DROP = 0.02
LOW_END = 0.2

Progress = Callable[[int, float, float], None]


@dataclass
class RangeTest:
    lrs: list[float]  # the recorded curve: LR of each iteration …
    losses: list[float]  # … and the smoothed training loss torch-lr-finder recorded for it (finite values only)
    suggestions: dict[str, float]  # rule → LR; a rule that cannot apply is absent, with the reason in notes
    max_lr: float
    min_lr: float
    rule: str  # the rule max_lr came from, or "fallback"
    notes: list[str] = field(default_factory=list)
    status: str = "done"  # "done" | "diverged" (stopped early by the threshold) | "stopped" (on request)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs), "losses": list(self.losses), "suggestions": dict(self.suggestions),
            "max_lr": self.max_lr, "min_lr": self.min_lr, "rule": self.rule, "notes": list(self.notes),
            "status": self.status, "settings": dict(self.settings), "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RangeTest:
        return cls(list(d["lrs"]), list(d["losses"]), dict(d["suggestions"]), d["max_lr"], d["min_lr"], d["rule"],
                   list(d.get("notes", [])), d.get("status", "done"), dict(d.get("settings", {})),
                   d.get("seconds", 0.0))


# ------------------------------------------------------------------------------------------ suggestion rules


def _steepest(lrs: np.ndarray, losses: np.ndarray) -> tuple[float | None, str | None]:
    grad = np.gradient(losses)
    i = int(grad.argmin())
    if grad[i] >= 0:
        return None, "steepest: the loss never falls over the tested range"
    return float(lrs[i]), None


def _valley(lrs: np.ndarray, losses: np.ndarray) -> tuple[float | None, str | None]:
    # lds[i]: length of the longest strictly decreasing subsequence of the curve ending at point i (fastai's loop,
    # with the inner loop vectorised).
    n = len(losses)
    lds = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
    end = int(lds.argmax())  # the first point that ends a longest valley
    length = int(lds[end])
    if length < 3:
        return None, "valley: the loss never falls for more than two points in a row"
    # fastai: start = end - length (one before the valley's first point when it is contiguous; clamped here so
    # a valley starting at the first point cannot index from the end), then 1/3 + 1/6 of the way down.
    start = max(end - length, 0)
    sections = (end - start) / 3
    return float(lrs[start + int(sections) + int(sections / 2)]), None


def _loss_min(lrs: np.ndarray, losses: np.ndarray) -> tuple[float | None, str | None]:
    # Only the start is trimmed for this rule: the minimum usually sits just before the blow-up, in the tail
    # the other rules drop.
    i = int(losses.argmin())
    if i == len(losses) - 1:
        return None, ("loss_min: the loss was lowest at the last point, so the minimum was not reached; "
                      "raise the end LR")
    return float(lrs[i]), None


def _min_div_10(lrs: np.ndarray, losses: np.ndarray, tested_from: float) -> tuple[float | None, str | None]:
    lr = float(lrs[int(losses.argmin())]) / 10
    if lr < tested_from:
        return None, (f"min_div_10: the lowest loss is at LR {lr * 10:.3g}, and a tenth of it ({lr:.3g}) lies below "
                      f"the tested range (from {tested_from:.3g}); start the test lower")
    return lr, None


def _knee(lrs: np.ndarray, losses: np.ndarray, fraction: float) -> tuple[float | None, str | None]:
    # The fall is measured from the highest point before the minimum (the plateau at tiny LRs) down to the
    # minimum; like loss_min, only the start of the curve is trimmed.
    i = int(losses.argmin())
    if i == len(losses) - 1:
        return None, ("knee: the loss was lowest at the last point, so its whole fall is not known; "
                      "raise the end LR")
    top = float(losses[: i + 1].max())
    if top <= losses[i]:
        return None, "knee: the loss never falls over the tested range"
    threshold = losses[i] + (1 - fraction) * (top - losses[i])
    return float(lrs[int(np.argmax(losses[: i + 1] <= threshold))]), None


def run_margin(run_steps: int, test_batches: int) -> float:
    """min_div_run's divisor: the full margin (÷10) once the run trains on at least RANGE_TEST_FULL_MARGIN_AT ×
    the batches the test saw, proportionally less for a shorter run, never below 1."""
    share = run_steps / max(test_batches, 1)
    return min(C.RANGE_TEST_MARGIN, max(1.0, C.RANGE_TEST_MARGIN * share / C.RANGE_TEST_FULL_MARGIN_AT))


def _min_div_run(lrs: np.ndarray, losses: np.ndarray, tested_from: float, run_steps: int | None,
                 test_batches: int) -> tuple[float | None, str | None]:
    # A run spends only a few of its steps near its peak LR. A long one (the spec: 2,352 steps, 12× the test's
    # batches) needs fastai's margin below the loss minimum; a very short one (Tiny: 16 steps) has too few steps
    # at the peak to go unstable, and needs the large steps to get anywhere. benchmarks/RESULTS.md has the sweeps.
    if run_steps is None:
        return None, "min_div_run: the run's length is not known (range_test knows it from the config)"
    i = int(losses.argmin())
    if i == len(losses) - 1:
        return None, ("min_div_run: the loss was lowest at the last point, so the minimum was not reached; "
                      "raise the end LR")
    lr = float(lrs[i]) / run_margin(run_steps, test_batches)
    if lr < tested_from:
        return None, f"min_div_run: {lr:.3g} lies below the tested range (from {tested_from:.3g}); start the test lower"
    return lr, None


def suggest(
    lrs: Sequence[float], losses: Sequence[float], *, skip_start: int | None = None, skip_end: int | None = None,
    run_steps: int | None = None,
) -> tuple[dict[str, float], list[str]]:
    """Suggested LRs from a range-test curve: ({rule: LR}, notes). Every LR lies within the tested range.

    A rule that cannot apply is left out and a note says why. The curve is cut at its first NaN/inf loss, then
    trimmed: `skip_start` points at the start (default a tenth of the curve, as fastai) and `skip_end` at the end
    (default 5, fewer on short curves). `run_steps`: the optimizer steps of the run the LR is for (epochs ×
    batches per epoch), which min_div_run needs. Raises ValueError only for malformed input (lengths differ, LRs
    not increasing or not positive).
    """
    lr_arr = np.asarray(lrs, dtype=np.float64)
    loss_arr = np.asarray(losses, dtype=np.float64)
    if lr_arr.shape != loss_arr.shape or lr_arr.ndim != 1:
        raise ValueError(f"lrs and losses must be two lists of the same length, got {lr_arr.shape} and "
                         f"{loss_arr.shape}")
    if len(lr_arr) and (not np.all(np.isfinite(lr_arr)) or lr_arr.min() <= 0 or np.any(np.diff(lr_arr) <= 0)):
        raise ValueError("lrs must be positive, finite and increasing")
    notes: list[str] = []
    bad = np.flatnonzero(~np.isfinite(loss_arr))
    if len(bad):
        i = int(bad[0])
        notes.append(f"the loss became {loss_arr[i]} at point {i + 1} (LR {lr_arr[i]:.3g}); the curve is cut there")
        lr_arr, loss_arr = lr_arr[:i], loss_arr[:i]
    n = len(loss_arr)
    skip_start = n // 10 if skip_start is None else skip_start
    skip_end = min(5, n // 4) if skip_end is None else skip_end
    lr_t, loss_t = lr_arr[skip_start:n - skip_end], loss_arr[skip_start:n - skip_end]
    if len(loss_t) < MIN_POINTS:
        notes.append(f"only {len(loss_t)} usable points of {n} (after trimming {skip_start} at the start and "
                     f"{skip_end} at the end); the rules need {MIN_POINTS}: run more iterations")
        return {}, notes

    suggestions: dict[str, float] = {}
    for name, (lr, why) in (
        ("min_div_run", _min_div_run(lr_arr[skip_start:], loss_arr[skip_start:], float(lr_arr[0]), run_steps, n)),
        ("loss_min", _loss_min(lr_arr[skip_start:], loss_arr[skip_start:])),
        ("steepest", _steepest(lr_t, loss_t)),
        ("valley", _valley(lr_t, loss_t)),
        ("min_div_10", _min_div_10(lr_arr[skip_start:], loss_arr[skip_start:], float(lr_arr[0]))),
        ("knee", _knee(lr_arr[skip_start:], loss_arr[skip_start:], C.RANGE_TEST_KNEE)),
    ):
        if lr is not None:
            suggestions[name] = lr
        else:
            notes.append(why)

    drop = (loss_t[0] - loss_t.min()) / abs(loss_t[0]) if loss_t[0] else 0.0
    if drop < 0.02:
        notes.append(f"the loss fell by only {100 * drop:.1f}% over the curve: the suggestions are weak; widen the "
                     "LR range or run more iterations")
    if len(loss_arr) and int(loss_arr[skip_start:].argmin()) == len(loss_arr) - 1 - skip_start:
        notes.append(f"the loss was still falling at the highest LR used ({lr_arr[-1]:.3g}): raise the end LR")
    return suggestions, notes


def caveats(result: RangeTest | dict[str, Any]) -> list[str]:
    """Reasons not to take a finished test's LRMAX at face value, in words a person can act on; [] when there are
    none. The app shows them at its "use these" button and asks before applying such an LRMAX."""
    doc = result if isinstance(result, dict) else result.to_dict()
    lrs, losses = list(doc.get("lrs") or []), list(doc.get("losses") or [])
    settings = doc.get("settings") or {}
    out: list[str] = []
    if doc.get("status") == "stopped":
        out.append(f"the test was stopped after {len(lrs)} of {settings.get('iters', '?')} iterations, so the loss "
                   "may not have reached its minimum yet")
    if doc.get("rule") == "fallback":
        out.append(f"no rule applied to the curve: LRMAX {doc.get('max_lr', 0):.3g} is the optimizer's default, not "
                   "a measurement")
    elif settings.get("rule") and doc.get("rule") != settings["rule"]:
        out.append(f"the {settings['rule']} rule did not apply; LRMAX comes from the {doc.get('rule')} rule")
    if len(lrs) < TRUSTED_POINTS:
        out.append(f"only {len(lrs)} points were recorded; run at least {TRUSTED_POINTS} iterations for a curve the "
                   "rules can read")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:
        first = finite[len(finite) // 10]
        drop = (first - min(finite)) / abs(first) if first else 0.0
        if drop < WEAK_DROP:
            out.append(f"the loss fell by only {100 * max(drop, 0):.1f}% over the whole test: widen the LR range or "
                       "run more iterations")
    lo, hi = settings.get("start_lr") or (lrs[0] if lrs else None), settings.get("end_lr") or (lrs[-1] if lrs else None)
    max_lr = doc.get("max_lr")
    if doc.get("rule") != "fallback" and lo and hi and max_lr and hi > lo:
        share = math.log(max_lr / lo) / math.log(hi / lo)
        if share < LOW_END:
            out.append(f"LRMAX {max_lr:.3g} lies at the very start of the tested range ({lo:.3g} → {hi:.3g}), where "
                       "the network has barely begun to learn")
    return out


def choose(suggestions: dict[str, float], rule: str = C.RANGE_TEST_RULES[0]) -> tuple[str, float] | None:
    """(rule, LR) for LRMAX: `rule` when it applied, else the first of RANGE_TEST_RULES that did; None when none
    did."""
    for name in (rule, *C.RANGE_TEST_RULES):
        if name in suggestions:
            return name, suggestions[name]
    return None


# ------------------------------------------------------------------------------------------------ the test


class Batches(tlf.TrainDataLoaderIter):
    """prepare()'s batch stream as torch-lr-finder's batch source, with a progress report and a stop check.

    torch-lr-finder takes a DataLoader or a TrainDataLoaderIter subclass (its public extension point); our
    FastLoader is no DataLoader, so both loader kinds come through here. The stream restarts (a fresh,
    reshuffled epoch) when it runs out.

    The library has no per-iteration callback, but it fetches exactly one batch at the start of every
    iteration, after the previous iteration's (LR, smoothed loss) went into finder.history. So fetching is
    where this reports what is new in the history, honours the stop flag, and ends the test at a non-finite
    loss (NaN never trips the library's `loss > threshold × best` check, and smoothing would carry it to the
    end). The last iteration is reported by `flush` once the library's loop has ended.
    """

    def __init__(self, batches: Iterable, device: torch.device, finder: tlf.LRFinder,
                 progress: Progress | None = None, stop: threading.Event | None = None):
        super().__init__(batches, auto_reset=True)
        self.device, self.finder, self.progress, self.stop = device, finder, progress, stop
        self.reported = 0

    def flush(self) -> None:
        lrs, losses = self.finder.history["lr"], self.finder.history["loss"]
        while self.reported < len(losses):
            if self.progress is not None:
                self.progress(self.reported + 1, float(lrs[self.reported]), float(losses[self.reported]))
            self.reported += 1

    def __next__(self):
        self.flush()
        losses = self.finder.history["loss"]
        if losses and not math.isfinite(losses[-1]):
            raise _Stop("non_finite")
        if self.stop is not None and self.stop.is_set():
            raise _Stop("stopped")
        return super().__next__()

    def inputs_labels_from_batch(self, batch):
        x, y = batch
        return to_model_layout(x.to(self.device, non_blocking=True)), y  # as the engine feeds the model


class _Stop(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@contextmanager
def _quiet_library():
    """Silence torch-lr-finder's own tqdm bar and prints ("Stopping early…", "…See the graph with
    {finder_name}.plot()") for the length of one test: our callers draw their own progress, and we write our own
    notes. The library has no switch for either (range_test takes no verbosity argument), so the names are
    shadowed in its module only: nothing else in the process — the CLI's own bars, other threads' output — is
    affected, as it would be by redirecting sys.stdout/stderr."""
    saved = tlf.tqdm
    tlf.tqdm = lambda iterable, *a, **k: iterable
    tlf.print = lambda *a, **k: None
    try:
        yield
    finally:
        tlf.tqdm = saved
        del tlf.print


def check_settings(iters: int = C.RANGE_TEST_ITERS, start_lr: float = C.RANGE_TEST_START_LR,
                   end_lr: float = C.RANGE_TEST_END_LR, mode: str = C.RANGE_TEST_MODES[0],
                   smooth_f: float = C.RANGE_TEST_SMOOTH_F, diverge_th: float = C.RANGE_TEST_DIVERGE_TH,
                   div_factor: float = C.DEFAULT_DIV_FACTOR, rule: str = C.RANGE_TEST_RULES[0]) -> None:
    """Raise ConfigError, with a message a person can act on, for settings the range test cannot run with."""
    def finite_positive(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0

    if not (isinstance(iters, int) and not isinstance(iters, bool) and iters >= 2):
        raise ConfigError(f"range-test iterations must be a whole number ≥ 2, got {iters!r}", "iters")
    if not finite_positive(start_lr):
        raise ConfigError(f"start LR must be a positive number, got {start_lr!r}", "start_lr")
    if not (finite_positive(end_lr) and start_lr < end_lr):
        raise ConfigError(f"the range test needs 0 < start LR < end LR, got {start_lr!r} and {end_lr!r}; raise the "
                          "end LR or lower the start LR", "end_lr")
    if mode not in C.RANGE_TEST_MODES:
        raise ConfigError(f"range-test mode must be one of {', '.join(C.RANGE_TEST_MODES)}, got {mode!r}", "mode")
    if not (isinstance(smooth_f, (int, float)) and 0 <= smooth_f < 1):
        raise ConfigError(f"smoothing factor must lie in [0, 1) (0: no smoothing), got {smooth_f!r}")
    if not (finite_positive(diverge_th) and diverge_th > 1):
        raise ConfigError(f"divergence threshold must be a number > 1 (× the best loss), got {diverge_th!r}")
    if not (finite_positive(div_factor) and div_factor > 1):
        raise ConfigError(f"div factor must be a number > 1 (LRMIN = LRMAX / div factor), got {div_factor!r}")
    if rule not in C.RANGE_TEST_RULES:
        raise ConfigError(f"unknown LRMAX rule {rule!r}; choose one of: {', '.join(C.RANGE_TEST_RULES)}")


def range_test(
    cfg: TrainConfig,
    data: data_mod.Cifar10 | None = None,
    *,
    iters: int = C.RANGE_TEST_ITERS,
    start_lr: float = C.RANGE_TEST_START_LR,
    end_lr: float = C.RANGE_TEST_END_LR,
    mode: str = C.RANGE_TEST_MODES[0],
    smooth_f: float = C.RANGE_TEST_SMOOTH_F,
    diverge_th: float = C.RANGE_TEST_DIVERGE_TH,
    div_factor: float | None = None,
    rule: str = C.RANGE_TEST_RULES[0],
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    model: nn.Module | None = None,
) -> RangeTest:
    """Run the LR range test for the run `cfg` describes and suggest LRMAX / LRMIN.

    `data`: CIFAR-10 (loaded from cfg.data_dir when None); cfg.subset applies. `div_factor`: default the
    schedule's. `progress(iteration, lr, loss)` is called after each iteration (iteration counts from 1; the loss
    is the smoothed one that is recorded, inf at a diverging iteration). `stop`: set it to end the test early;
    the curve so far is kept and suggested from. `model`: start from these weights (deep-copied, never
    modified) instead of a fresh network.
    """
    div_factor = cfg.schedule.div_factor if div_factor is None else div_factor
    check_settings(iters, start_lr, end_lr, mode, smooth_f, diverge_th, div_factor, rule)
    t0 = time.perf_counter()
    # the same setup as training (lab.experiment.prepare): the same batches and initial weights; no test set
    prepared = prepare(cfg, data, with_test=False, model=model)
    device, net = prepared.device, prepared.model
    optimizer = make_optimizer(net, cfg.optimizer, start_lr)
    criterion = Loss.of(cfg)  # training's loss, temperature and label smoothing included
    amp: dict[str, Any] = {}
    # training's autocast, and its GradScaler (live for fp16, a pass-through for bf16)
    if prepared.precision.name != "fp32":
        amp = {"amp_backend": "torch", "amp_config": {"device_type": prepared.precision.device_type,
                                                      "dtype": prepared.precision.dtype},
               "grad_scaler": prepared.precision.grad_scaler()}

    finder = tlf.LRFinder(net, optimizer, criterion, device=device, **amp)
    batches = Batches(prepared.train_batches, device, finder, progress, stop)
    status = "done"
    with _quiet_library():
        try:
            finder.range_test(batches, start_lr=start_lr, end_lr=end_lr, num_iter=iters, step_mode=mode,
                              smooth_f=smooth_f, diverge_th=diverge_th)
        except _Stop as e:
            status = e.why
    batches.flush()

    lrs = [float(v) for v in finder.history["lr"]]
    losses = [float(v) for v in finder.history["loss"]]
    notes: list[str] = []
    if status == "stopped":
        notes.append(f"stopped on request after {len(lrs)} of {iters} iterations")
    elif status == "non_finite" or (losses and not math.isfinite(losses[-1])):
        status = "diverged"
        notes.append(f"diverged at iteration {len(lrs)} (LR {lrs[-1]:.3g}): the loss became non-finite")
    elif len(lrs) < iters:
        status = "diverged"
        notes.append(f"diverged at iteration {len(lrs)} (LR {lrs[-1]:.3g}): the smoothed loss {losses[-1]:.3g} "
                     f"passed {diverge_th:g} × the best {finder.best_loss:.3g}")
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    cut = finite[-1] + 1 if finite else 0
    lrs, losses = lrs[:cut], losses[:cut]  # a non-finite point can only be the last: the test ends there

    run_steps = cfg.schedule.epochs * len(prepared.train_batches)  # the run this LR is for
    suggestions, why = suggest(lrs, losses, run_steps=run_steps)
    notes += why
    chosen = choose(suggestions, rule)
    if chosen is None:
        fallback = DEFAULT_MAX_LR[cfg.optimizer.name]
        notes.append(f"no rule applied, so LRMAX falls back to the {cfg.optimizer.name} default {fallback:g}")
        chosen = ("fallback", fallback)
    elif chosen[0] != rule:
        notes.append(f"the {rule} rule did not apply; LRMAX comes from the {chosen[0]} rule")
    name, max_lr = chosen
    if name == "min_div_run":
        n = len(lrs)
        notes.append(f"min_div_run: the loss minimum {suggestions['loss_min']:.3g} ÷ {run_margin(run_steps, n):.3g}, "
                     f"for a run of {run_steps} batches ({run_steps / n:.2f} × the test's {n})")
    settings = {
        "iters": iters, "start_lr": start_lr, "end_lr": end_lr, "mode": mode, "smooth_f": smooth_f,
        "diverge_th": diverge_th, "div_factor": div_factor, "rule": rule, "iterations_run": len(finder.history["lr"]),
        "train_images": len(prepared.data.y_train), "run_steps": run_steps, "loader": prepared.loader,
        "device": device_name(device),
        "config": cfg.to_dict(),  # the whole setup the curve was measured with
        "pretrained": model is not None,
    }
    del finder, batches, prepared, net, optimizer  # the throwaway copies: nothing of them outlives the test
    return RangeTest(lrs, losses, suggestions, max_lr, max_lr / div_factor, name, notes, status, settings,
                     time.perf_counter() - t0)
