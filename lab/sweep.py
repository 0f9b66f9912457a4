"""Many runs through Ray Tune: a grid over TrainConfig fields × seeds, each trial one ordinary run folder.

A sweep is a grid: every combination of the listed values of some TrainConfig fields (max LR, div factor,
optimizer, epochs, width, augmentation knobs, …), each trained once per seed. Ray Tune schedules the trials over
whatever Ray sees — every core and GPU of this machine by default, or a cluster (`address`) — and each trial
calls `lab.experiment.train` into an ordinary run folder, reporting every epoch's metrics to Tune.

Max LR values may be numbers, factors of an LR range test's suggestion ("x0.5": half of what the range test
picks as LRMAX) or the names of its rules ("valley": train at what that rule suggests). The range test runs
once per distinct setup it depends on (network, data, batch, optimizer, augmentation — not the schedule), before
any trial, and its curve is kept with the results: the figure puts it on the same LR axis as the accuracies, so
where the suggestion lands against the sweep's best shows at a glance.

Choices, and why:
- FIFO scheduling, no early stopping. One Cycle's first epochs rank configurations badly: a high max LR is
  still climbing towards its peak, with a worse loss than a low one, when the low one has nearly stopped
  improving; ASHA or median stopping would cut exactly the runs the sweep is there to find.
- The data reaches trials once, through Ray's object store (`ray.put`, handed to `tune.with_parameters`): the
  arrays are shared read-only by every trial on a node instead of pickled into each.
- Each trial gets `cpus_per_trial` CPUs and `gpus_per_trial` GPUs from Tune (`tune.with_resources`): 0.25 GPU
  packs four trials onto one GPU. Torch's CPU threads and the reference loader's worker processes are sized to
  the trial's CPUs, so trials do not oversubscribe the cores they share.
- A diverged trial is a result (this max LR is too high), not a failure: it ends normally with status
  "diverged" and does not count towards a configuration's mean.
- Ctrl-C (SIGINT) goes through Tune's own handler: it stops every trial and saves the experiment state; the
  trials that had not finished are then recorded as stopped (in sweep.json and in their run folders' status),
  and `resume` continues the sweep with Tune.restore: finished trials are kept, unfinished ones start again.
  A trial has no mid-run checkpoint to resume from: lab.experiment.train starts a run from scratch.

A sweep's folder (runs/sweeps/<id>/):
  spec.json               what was asked (base config, grid, seeds, resources, range-test settings) and what it
                          resolved to: the range tests and the configurations with their concrete max LRs. It is
                          written before the first trial, and a resumed sweep trains exactly these.
  tune/                   Ray Tune's experiment state (what Tuner.restore reads)
  runs/<config>_seed<k>/  one ordinary run folder per trial; its config.json names the sweep under "sweep"
  sweep.json, sweep.csv   every trial and, per configuration, the mean ± std over seeds; the best configuration;
                          per range-test rule, how far its LR landed below the best. Rewritten as trials finish.
  sweep.html              the figure (lab.plots.sweep_figure)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import re
import shutil
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab import config as C
from lab.config import ConfigError, TrainConfig
from lab.runs import DEFAULT_ROOT, Run, atomic_write_text, new_run_dir

SWEEP_ROOT = DEFAULT_ROOT / "sweeps"
SPEC, RESULTS_JSON, RESULTS_CSV, FIGURE = "spec.json", "sweep.json", "sweep.csv", "sweep.html"
TUNE_DIR, RUNS_DIR = "tune", "runs"
EPOCH_KEYS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


class SweepError(RuntimeError):
    """The sweep cannot start or go on (no Ray cluster at the address, no sweep to resume); one line."""


# ------------------------------------------------------------------------------------------------ the grid


def _kind(name: str) -> tuple[type, bool]:
    """(value type, whether None is allowed) of a flat knob, from its declaration (lab.config.KNOBS)."""
    knob = C.KNOBS[name]
    kind = {"flag": bool, "whole": int, "images": int, "number": float}.get(knob.value_kind, str)
    return kind, "None" in str(knob.field.type)


# What a grid can vary: the flat knobs (lab.config.FLAT_KNOBS: the CLI's flags, the app's controls and the presets
# use the same names) and whole presets. Not: the seed (the sweep's own axis), the data folder (a sweep loads
# the data once), the device and the loader processes (a trial's come from the resources Tune gives it).
NOT_SWEPT = ("seed", "data_dir", "device", "workers")
FIELDS: dict[str, tuple[type, bool]] = {
    "preset": (str, False), **{n: _kind(n) for n in C.FLAT_KNOBS if n not in NOT_SWEPT}}
SCHEDULE_KNOBS = {n for n, (part, _) in C.FLAT_KNOBS.items() if part == "schedule"}
# What the LR range test does not depend on: a grid over these shares one test (run with the sweep's first seed).
NOT_IN_RANGE_TEST = {"schedule", "seed", "test_subset", "tta", "compile", "compile_mode", "workers", "device", "data_dir"}


def _number(text: str, kind: type, field: str, nullable: bool = False) -> Any:
    t = text.strip()
    if nullable and t.lower() in ("none", "all"):
        return None
    try:
        if kind is bool:
            if t.lower() in ("true", "yes", "on", "1"):
                return True
            if t.lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if kind is int:
            v = float(t)
            if v != int(v):
                raise ValueError
            return int(v)
        if kind is float:
            return float(t)
    except ValueError:
        what = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise ConfigError(f"grid field {field}: {t!r} is not {what}{' (or none)' if nullable else ''}") from None
    return t


def parse_lr(text: str) -> float | str:
    """One max-LR value: a number (0.01), a factor of the range test's suggestion ('x0.5', '×2') or a rule name."""
    t = str(text).strip()
    if t in C.RANGE_TEST_RULES:
        return t
    if t[:1] in ("x", "×", "*"):
        f = _number(t[1:], float, "max_lr")
        if not (math.isfinite(f) and f > 0):
            raise ConfigError(f"grid field max_lr: factor {t!r} must be a positive number")
        return f"x{f:g}"
    v = _number(t, float, "max_lr")
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"grid field max_lr: {t!r} must be a positive number")
    return v


def parse_values(field: str, text: str | Sequence) -> list:
    """A grid field's values from 'a,b,c' (or a list): typed, in order, without repeats."""
    if field not in FIELDS:
        raise ConfigError(f"unknown grid field {field!r}; a grid can vary: {', '.join(FIELDS)}")
    items = [s for s in (text.split(",") if isinstance(text, str) else list(text))]
    if isinstance(text, str):
        items = [s for s in (i.strip() for i in items) if s]
    if field == "max_lr":
        out = []
        for item in items:
            if isinstance(item, str) and item.strip() == "rules":  # shorthand: every range-test rule
                out += list(C.RANGE_TEST_RULES)
            else:
                out.append(parse_lr(item) if isinstance(item, str) else parse_lr(repr(item)))
    else:
        kind, nullable = FIELDS[field]
        out = [_number(i, kind, field, nullable) if isinstance(i, str) else i for i in items]
        if field == "preset":
            unknown = [v for v in out if v not in C.PRESETS]
            if unknown:
                raise ConfigError(f"unknown preset {unknown[0]!r}; the presets are: {', '.join(C.PRESETS)}")
    values = list(dict.fromkeys(out))
    if not values:
        raise ConfigError(f"grid field {field} has no values; give one or more, comma-separated")
    return values


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """`['max_lr=x0.5,x1,x2', 'div_factor=10,25']` → {field: values}."""
    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"grid entry {item!r} must read FIELD=V1,V2,… (e.g. max_lr=0.003,0.01)")
        if name in grid:
            raise ConfigError(f"grid field {name} is given twice; list all its values in one entry")
        grid[name] = parse_values(name, values)
    return grid


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """'3' → seeds 0, 1, 2; '0,5,7' → those seeds."""
    if isinstance(text, int):
        text = str(text)
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"seeds must be a count (3: seeds 0, 1, 2) or a list (0,5,7), got {text!r}") from None
        if len(values) == 1 and "," not in text:
            if values[0] < 1:
                raise ConfigError(f"the seed count must be ≥ 1, got {values[0]}")
            return list(range(values[0]))
    else:
        values = [int(v) for v in text]
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise ConfigError(f"seeds must be distinct whole numbers ≥ 0, got {text!r}")
    return values


@dataclasses.dataclass
class SweepSpec:
    """What to sweep. `base`: the config every trial starts from; `grid`: {field: values} (see FIELDS; max_lr
    values may be 'xF' factors or rule names); `range_test`: the LR range test's keyword arguments (iters,
    start_lr, end_lr, mode, smooth_f, diverge_th, rule), or None for no range test."""

    base: TrainConfig
    grid: dict[str, list]
    seeds: list[int] = dataclasses.field(default_factory=lambda: list(range(C.SWEEP_SEEDS)))
    range_test: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when Ray sees a GPU, else 0
    max_concurrent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "grid": self.grid, "seeds": self.seeds, "range_test": self.range_test,
                "cpus_per_trial": self.cpus_per_trial, "gpus_per_trial": self.gpus_per_trial,
                "max_concurrent": self.max_concurrent}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        return cls(TrainConfig.from_dict(d["base"]), {k: list(v) for k, v in d["grid"].items()}, list(d["seeds"]),
                   d.get("range_test"), d.get("cpus_per_trial", 1.0), d.get("gpus_per_trial"),
                   d.get("max_concurrent"))

    def needs_range_test(self) -> bool:
        return any(isinstance(v, str) for v in self.grid.get("max_lr", []))

    def validate(self) -> None:
        """ConfigError for a sweep that cannot run, before anything starts."""
        from lab.lr_finder import check_settings

        if not self.grid:
            raise ConfigError("the grid is empty: give at least one field to vary (e.g. max_lr=0.003,0.01)")
        for name, values in self.grid.items():
            if name not in FIELDS:
                raise ConfigError(f"unknown grid field {name!r}; a grid can vary: {', '.join(FIELDS)}")
            if not values:
                raise ConfigError(f"grid field {name} has no values; give one or more, comma-separated")
        self.seeds = parse_seeds(self.seeds)
        if self.range_test is None:
            if self.needs_range_test():
                raise ConfigError("max LR factors (x…) and rule names need the LR range test; leave it on")
        else:
            check_settings(**{**self.range_test, "div_factor": self.base.schedule.div_factor})
        if not (isinstance(self.cpus_per_trial, (int, float)) and self.cpus_per_trial > 0):
            raise ConfigError(f"CPUs per trial must be a number > 0, got {self.cpus_per_trial!r}")
        if self.gpus_per_trial is not None and not (isinstance(self.gpus_per_trial, (int, float))
                                                    and 0 <= self.gpus_per_trial):
            raise ConfigError(f"GPUs per trial must be a number ≥ 0 (0.25: four trials per GPU), "
                              f"got {self.gpus_per_trial!r}")
        if self.gpus_per_trial is not None and self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ConfigError(f"GPUs per trial above 1 must be whole, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and not (isinstance(self.max_concurrent, int) and self.max_concurrent >= 1):
            raise ConfigError(f"max concurrent trials must be a whole number ≥ 1, got {self.max_concurrent!r}")
        if self.gpus_per_trial == 0 and self.base.device == "cuda":
            raise ConfigError("--device cuda with 0 GPUs per trial: the trials would see no GPU; "
                              "give --gpus-per-trial (e.g. 1, or 0.25 to pack four per GPU)")
        for combo in self.combos():  # every configuration must build (the LR is checked once resolved)
            self.probe_config(combo)

    def probe_config(self, combo: dict[str, Any]) -> dict[str, Any]:
        """A grid combination's config (TrainConfig.to_dict()), a max LR that only the range test can resolve (a
        factor or a rule name) standing in as 1.0: what the checks, the estimate and the range-test groups need."""
        probe = {k: (1.0 if k == "max_lr" and isinstance(v, str) else v) for k, v in combo.items()}
        return _config_dict(self.base, probe, self.grid)

    def check_data(self, data) -> None:
        """What `train` checks before it starts, for every configuration: the subsets fit the data, the schedule
        has the steps One Cycle needs, the estimated memory fits (lab.experiment.preflight). ConfigError naming
        the configuration, before Ray starts and before any folder is made: a sweep of runs that cannot start
        would otherwise "finish" with every trial failed."""
        from lab.experiment import preflight

        for combo in self.combos():
            cfg = TrainConfig.from_dict(self.probe_config(combo))
            try:
                preflight(cfg, len(data.y_train), len(data.y_test))
            except ConfigError as e:
                what = ", ".join(f"{k}={v}" for k, v in combo.items())
                raise ConfigError(f"the configuration {what} cannot run: {e}", e.knob) from None

    def combos(self) -> list[dict[str, Any]]:
        names = list(self.grid)
        return [dict(zip(names, values)) for values in itertools.product(*(self.grid[n] for n in names))]


def _config_dict(base: TrainConfig, values: dict[str, Any], grid: dict[str, list]) -> dict[str, Any]:
    """The base config with a preset's knobs and then the grid's `values` set, as TrainConfig.to_dict() (seed
    left at the base's); validated."""
    flat = base.flat()
    ref = base.schedule  # the run length the peak epoch was chosen for
    if "preset" in values:
        flat.update(C.PRESETS[values["preset"]].knobs)
        ref = TrainConfig.from_flat(**flat).schedule
    flat.update({k: v for k, v in values.items() if k != "preset"})
    # A grid over epochs keeps the peak at the same share of the run (5 of 24 epochs for the spec), unless the
    # grid sets the peak too.
    if "epochs" in values and "peak_epoch" not in grid:
        flat["peak_epoch"] = ref.peak_epoch * values["epochs"] / ref.epochs
    # A grid over the optimizer without a max LR axis: each optimizer at its own default LRMAX (Adam and SGD
    # live ~10× apart), unless the base config set one of its own.
    if "optimizer" in values and "max_lr" not in values and base.schedule.max_lr == C.default_max_lr(base.optimizer.name):
        flat["max_lr"] = C.default_max_lr(values["optimizer"])
    try:
        return TrainConfig.from_flat(**flat).to_dict()
    except (ConfigError, TypeError) as e:
        what = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        raise ConfigError(f"configuration {what}: {e}") from None


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _range_test_key(cfg: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k not in NOT_IN_RANGE_TEST}, sort_keys=True)


def _folder_name(configuration: dict[str, Any], seed: int) -> str:
    label = re.sub(r"[^A-Za-z0-9._=,+-]+", "", configuration["label"].replace(" ", ""))
    return f"{configuration['key']}_{label}_seed{seed}"[:120]


# ---------------------------------------------------------------------------------------- resolving the grid


def suggestions_for(rt: dict[str, Any], cfg: dict[str, Any]) -> tuple[dict[str, float], str, float]:
    """A range test's suggestions for one configuration's run, its default rule and LRMAX. The curve is shared
    by every configuration of its group, but min_div_run depends on the run's length (epochs × batches per
    epoch), which the group does not fix."""
    from lab.lr_finder import choose, suggest

    steps = cfg["schedule"]["epochs"] * math.ceil(rt["settings"]["train_images"] / cfg["batch_size"])
    suggestions, _ = suggest(rt["lrs"], rt["losses"], run_steps=steps)
    chosen = choose(suggestions, rt["settings"].get("rule", C.RANGE_TEST_RULES[0]))
    return suggestions, (chosen[0] if chosen else rt["rule"]), (chosen[1] if chosen else rt["max_lr"])


def resolve(spec: SweepSpec, range_tests: dict[str, dict[str, Any]] | None = None,
            groups: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The configurations to train, with concrete max LRs, and notes.

    `range_tests`: group id → RangeTest.to_dict(); `groups`: range-test key → group id (see range_test_groups).
    A factor 'xF' becomes F × the range test's LRMAX, a rule name that rule's suggestion. Two values that land
    on the same LR (x1 and the default rule; two rules that agree) make one configuration, which remembers
    both names in `lr_from`. A rule that did not apply is dropped with a note.
    """
    notes: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    for combo in spec.combos():
        lr_value = combo.get("max_lr")
        cfg = spec.probe_config(combo)
        group = groups.get(_range_test_key(cfg)) if groups else None
        rt = (range_tests or {}).get(group or "")
        suggestions, rule, suggested = suggestions_for(rt, cfg) if rt is not None else ({}, None, None)
        lr_from = None
        if isinstance(lr_value, str):
            if rt is None:
                raise SweepError(f"no range test for the configuration {combo}")
            if lr_value.startswith("x"):
                lr = float(lr_value[1:]) * suggested
            elif lr_value in suggestions:
                lr = suggestions[lr_value]
            else:
                notes.append(f"range test {group}: the {lr_value} rule did not apply, so its LR is not trained")
                continue
            lr_from = lr_value
            values = {**combo, "max_lr": lr}
            cfg = _config_dict(spec.base, values, spec.grid)
        else:
            values = dict(combo)
        series = {k: v for k, v in values.items() if k != "max_lr"}
        ident = json.dumps(cfg, sort_keys=True)
        if ident in out:
            if lr_from and lr_from not in out[ident]["lr_from"]:
                out[ident]["lr_from"].append(lr_from)
            continue
        out[ident] = {
            "values": values, "max_lr": cfg["schedule"]["max_lr"], "lr_from": [lr_from] if lr_from else [],
            "series": ", ".join(f"{k}={_fmt(v)}" for k, v in series.items()) or "all",
            "group": group, "config": cfg, "suggestions": suggestions, "rule": rule, "suggested": suggested,
        }
    configurations = sorted(out.values(), key=lambda c: (c["series"], c["max_lr"]))
    for i, c in enumerate(configurations):
        c["key"] = f"c{i:02d}"
        c["label"] = ", ".join(f"{k}={_fmt(v)}" for k, v in c["values"].items())
    if not configurations:
        raise SweepError("no configuration is left to train (" + "; ".join(notes) + ")")
    return configurations, notes


def range_test_groups(spec: SweepSpec) -> dict[str, dict[str, Any]]:
    """range-test key → {"id": g0…, "config": the config the test runs with (the sweep's first seed)}."""
    groups: dict[str, dict[str, Any]] = {}
    for combo in spec.combos():
        cfg = spec.probe_config(combo)
        key = _range_test_key(cfg)
        if key not in groups:
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in combo.items()
                              if k not in SCHEDULE_KNOBS and k != "test_subset")
            groups[key] = {"id": f"g{len(groups)}", "label": label or "all", "config": {**cfg, "seed": spec.seeds[0]}}
    return groups


def estimate(spec: SweepSpec, data) -> Any:
    """How long the sweep should take on this machine (lab.estimate: a step time measured here, per distinct
    width × batch): every trial's run plus the range tests. On a CPU, trials sharing the cores run no faster
    than one after the other, so their times add up; on GPUs they are divided among the trials Ray can run at
    once (`gpus` = what Ray will see here)."""
    import torch

    from lab import estimate as est

    timings: dict[tuple, Any] = {}

    def timing(cfg: TrainConfig):
        key = (cfg.width, cfg.batch_size, cfg.device)
        if key not in timings:
            timings[key] = est.measure(cfg.width, cfg.batch_size, cfg.device)
        return timings[key]

    seconds, device = 0.0, "cpu"
    for combo in spec.combos():
        cfg = TrainConfig.from_dict(spec.probe_config(combo))
        used = data.subset(cfg.subset, cfg.test_subset)
        run = est.for_run(cfg, len(used.y_train), len(used.y_test), timing(cfg))
        seconds, device = seconds + run.seconds * len(spec.seeds), run.device
    tests = 0.0
    if spec.range_test is not None:
        for g in range_test_groups(spec).values():
            cfg = TrainConfig.from_dict(g["config"])
            tests += est.for_range_test(cfg, spec.range_test.get("iters", C.RANGE_TEST_ITERS), timing(cfg)).seconds
    if device == "cuda":
        gpus = max(1.0, float(torch.cuda.device_count()))
        per_trial = spec.gpus_per_trial if spec.gpus_per_trial else 1.0
        seconds /= max(1.0, gpus / per_trial)
    trials = len(spec.combos()) * len(spec.seeds)
    return est.Estimate(seconds + tests, device, f"{trials} trials and the range tests, each timed on this machine")


# ------------------------------------------------------------------------------------------------- summary


def _stats(accs: list[float]) -> tuple[float | None, float | None]:
    if not accs:
        return None, None
    return statistics.mean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)


def summarize(configurations: list[dict[str, Any]], trials: list[dict[str, Any]],
              range_tests: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per configuration, final test accuracy (%) over the seeds that finished: mean ± sample std; the best
    configuration overall and per series (the configurations that differ only in max LR); per series and
    range-test rule, the LR the rule suggested and how many points its accuracy lies below the series' best.

    A configuration's mean counts only trials with status "done"; one with a diverged, stopped or failed seed is
    not `complete`, and the best is chosen among complete configurations (among all when none is complete).
    """
    by_key: dict[str, list[dict[str, Any]]] = {c["key"]: [] for c in configurations}
    for t in trials:
        by_key.setdefault(t["key"], []).append(t)
    rows = []
    for c in configurations:
        ts = sorted(by_key[c["key"]], key=lambda t: t["seed"])
        done = [t for t in ts if t["status"] == "done" and t.get("test_acc") is not None]
        accs = [100 * t["test_acc"] for t in done]
        mean, std = _stats(accs)
        counts: dict[str, int] = {}
        for t in ts:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        rows.append({
            "key": c["key"], "label": c["label"], "series": c["series"], "group": c.get("group"),
            "max_lr": c["max_lr"], "lr_from": list(c.get("lr_from", [])), "values": c["values"],
            "suggestions": c.get("suggestions") or {}, "rule": c.get("rule"), "suggested": c.get("suggested"),
            "mean": mean, "std": std, "n": len(accs), "accs": accs, "seeds": [t["seed"] for t in done],
            "statuses": counts, "complete": bool(ts) and len(done) == len(ts),
        })

    def best_of(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        scored = [r for r in candidates if r["mean"] is not None]
        complete = [r for r in scored if r["complete"]]
        pool = complete or scored
        return max(pool, key=lambda r: r["mean"]) if pool else None

    series_out = []
    for name in dict.fromkeys(r["series"] for r in rows):
        members = [r for r in rows if r["series"] == name]
        best = best_of(members)
        group = members[0]["group"]
        rt = (range_tests or {}).get(group or "")
        # the suggestions for this series' run (configurations written before they were recorded: the test's own)
        suggestions = members[0]["suggestions"] or (rt["suggestions"] if rt else {})
        default_rule = members[0]["rule"] or (rt["rule"] if rt else None)
        suggested = members[0]["suggested"] or (rt["max_lr"] if rt else None)
        rules: dict[str, dict[str, Any]] = {}
        if rt is not None:
            for rule in C.RANGE_TEST_RULES:
                lr = suggestions.get(rule)
                if lr is None:
                    continue
                # the configuration trained at this LR, whichever grid value put it there (x1 is the default rule)
                trained = next((r for r in members if rule in r["lr_from"] or math.isclose(r["max_lr"], lr,
                                                                                            rel_tol=1e-9)), None)
                mean = trained["mean"] if trained else None
                rules[rule] = {
                    "lr": lr, "key": trained["key"] if trained else None, "mean": mean,
                    "std": trained["std"] if trained else None, "n": trained["n"] if trained else 0,
                    "below_best": (best["mean"] - mean) if (best and mean is not None) else None,
                    "lr_over_best": (lr / best["max_lr"]) if best else None,
                }
        series_out.append({"series": name, "group": group, "best": best["key"] if best else None,
                           "best_lr": best["max_lr"] if best else None, "best_mean": best["mean"] if best else None,
                           "best_std": best["std"] if best else None, "rules": rules,
                           "default_rule": default_rule, "suggested": suggested})
    best = best_of(rows)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    return {"configurations": rows, "series": series_out, "best": best["key"] if best else None, "trials": counts}


def to_csv(summary: dict[str, Any]) -> str:
    """One row per configuration: its grid values, max LR, where that LR came from, mean ± std, n, each seed."""
    fields = sorted({k for r in summary["configurations"] for k in r["values"] if k != "max_lr"})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", *fields, "max_lr", "lr_from", "mean_test_acc", "std_test_acc", "n_seeds", "seed_accs",
                "statuses", "best"])
    for r in summary["configurations"]:
        w.writerow([r["key"], *(r["values"].get(f, "") for f in fields), f"{r['max_lr']:.6g}", " ".join(r["lr_from"]),
                    "" if r["mean"] is None else f"{r['mean']:.4f}", "" if r["std"] is None else f"{r['std']:.4f}",
                    r["n"], " ".join(f"{a:.2f}" for a in r["accs"]),
                    " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())),
                    "best" if r["key"] == summary["best"] else ""])
    return buf.getvalue()


def format_summary(doc: dict[str, Any]) -> str:
    """The console table: configurations with mean ± std, the best marked, then each rule against the best."""
    summary = doc["summary"]
    lines = [f"{'configuration':<44} {'max LR':>9} {'test acc %':>15} {'seeds':>5}"]
    for r in summary["configurations"]:
        acc = "—" if r["mean"] is None else f"{r['mean']:.2f} ± {r['std']:.2f}"
        src = f" ({', '.join(r['lr_from'])})" if r["lr_from"] else ""
        other = {k: v for k, v in r["statuses"].items() if k != "done"}
        tail = ("  " + ", ".join(f"{v} {k}" for k, v in other.items())) if other else ""
        mark = "  ← best" if r["key"] == summary["best"] else ""
        lines.append(f"{(r['label'] + src)[:44]:<44} {r['max_lr']:9.3g} {acc:>15} {r['n']:>5}{tail}{mark}")
    for ser in summary["series"]:
        if not ser["rules"]:
            continue
        lines.append(f"range-test rules ({ser['series']}; best {ser['best_lr']:.3g}: {ser['best_mean']:.2f}%)"
                     if ser["best"] else f"range-test rules ({ser['series']})")
        for rule, v in ser["rules"].items():
            acc = "not trained" if v["mean"] is None else f"{v['mean']:.2f}%, {v['below_best']:.2f} below the best"
            default = "  (default)" if rule == ser["default_rule"] else ""
            lines.append(f"  {rule:<11} LR {v['lr']:.3g}: {acc}{default}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- trials


def _threads(cpus: float) -> int:
    return max(1, int(cpus))


def _trial(params: dict[str, Any], *, data, sweep_dir: str, sweep_id: str, cpus: float) -> None:
    """One trial: an ordinary run folder trained by lab.experiment.train, each epoch reported to Tune."""
    import torch
    from ray import tune

    from lab.engine import Diverged
    from lab.experiment import train

    torch.set_num_threads(_threads(cpus))  # the trial's share of the cores, not all of them
    configuration, seed = params["configuration"], params["seed"]
    d = {**configuration["config"], "seed": seed}
    if d.get("workers") is None:  # the reference loader's processes come out of the trial's own CPUs
        d["workers"] = _threads(cpus) - 1
    cfg = TrainConfig.from_dict(d)
    run_dir = Path(sweep_dir) / RUNS_DIR / _folder_name(configuration, seed)
    if run_dir.exists():  # a trial that is started again (resume) trains from scratch: no stale epochs
        shutil.rmtree(run_dir)
    epochs = cfg.schedule.epochs

    def report(event) -> None:
        if event.kind == "epoch":
            rec = {k: event.data[k] for k in EPOCH_KEYS}
            tune.report({**rec, "status": "done" if rec["epoch"] == epochs else "running", "run_dir": str(run_dir)})

    sweep = {"id": sweep_id, "folder": sweep_dir, "configuration": configuration["key"],
             "label": configuration["label"], "lr_from": configuration.get("lr_from", [])}
    try:
        # step_every=0: no per-step events (on a GPU each is a host sync); the loss is checked every epoch
        train(cfg, data, callbacks=[report], run_dir=run_dir, extra_config={"sweep": sweep}, step_every=0)
    except Diverged as e:
        tune.report({"status": "diverged", "error": str(e), "run_dir": str(run_dir)})


def _trial_dirname(trial) -> str:
    return _folder_name(trial.config["configuration"], trial.config["seed"])


def _range_test_task(cfg: dict[str, Any], data, settings: dict[str, Any], cpus: float) -> dict[str, Any]:
    import torch

    from lab.lr_finder import range_test

    torch.set_num_threads(_threads(cpus))
    cfg = {**cfg, "workers": cfg.get("workers") if cfg.get("workers") is not None else _threads(cpus) - 1}
    return range_test(TrainConfig.from_dict(cfg), data, **settings).to_dict()


def _trial_record(configuration: dict[str, Any], seed: int, result: dict[str, Any] | None, tune_status: str,
                  error: str | None, run_dir: Path) -> dict[str, Any]:
    """A trial as sweep.json lists it. Status: done | diverged | error | running | stopped | pending."""
    result = result or {}
    reported = result.get("status")
    if error:
        status = "error"
    elif reported in ("done", "diverged"):
        status = reported
    elif tune_status == "RUNNING":
        status = "running"
    elif (run_dir / "config.json").exists() or result:
        status = "stopped"
    else:
        status = "pending"
    return {"key": configuration["key"], "label": configuration["label"], "seed": seed, "status": status,
            "epoch": result.get("epoch"), "epochs": configuration["config"]["schedule"]["epochs"],
            "test_acc": result.get("test_acc"), "test_loss": result.get("test_loss"),
            "train_loss": result.get("train_loss"), "seconds": result.get("time_total_s"),
            "run_dir": str(run_dir), "error": error or result.get("error")}


# ------------------------------------------------------------------------------------------------ the sweep


class Sweep:
    """A sweep's folder: its spec (with the range tests and configurations it resolved to) and its results."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    @property
    def id(self) -> str:
        return self.path.name

    def state(self) -> dict[str, Any]:
        """spec.json; SweepError (one line) when the folder is not a sweep's or its spec.json is damaged."""
        try:
            state = json.loads((self.path / SPEC).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise SweepError(f"{self.path} holds no {SPEC}: it is not a sweep folder") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise SweepError(f"{self.path / SPEC} cannot be read as a sweep's spec ({e}); it is damaged") from None
        if not isinstance(state, dict) or not isinstance(state.get("spec"), dict):
            raise SweepError(f"{self.path / SPEC} is not a sweep's spec (no \"spec\" mapping in it)")
        return state

    def results(self) -> dict[str, Any] | None:
        path = self.path / RESULTS_JSON
        return json.loads(path.read_text()) if path.exists() else None

    def run_dir(self, configuration: dict[str, Any], seed: int) -> Path:
        return self.path / RUNS_DIR / _folder_name(configuration, seed)

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.path / SPEC, json.dumps(state, indent=2) + "\n")

    def record(self, trials: list[dict[str, Any]], status: str, write_figure: bool = False) -> dict[str, Any]:
        """Summarise `trials` and write sweep.json and sweep.csv (and the figure on request)."""
        state = self.state()
        summary = summarize(state["configurations"], trials, state.get("range_tests"))
        doc = {"id": self.id, "folder": str(self.path), "status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "spec": state["spec"], "range_tests": state.get("range_tests", {}), "notes": state.get("notes", []),
               "summary": summary, "trials": trials}
        atomic_write_text(self.path / RESULTS_JSON, json.dumps(doc, indent=2) + "\n")
        atomic_write_text(self.path / RESULTS_CSV, to_csv(summary))
        if write_figure:
            from lab.plots import sweep_figure

            # plotly.js is embedded (~4.7 MB) so the page opens offline, as the range test's does
            atomic_write_text(self.path / FIGURE, sweep_figure(doc).to_html(include_plotlyjs=True))
        return doc


def _records_from_trials(sweep: Sweep, trials) -> list[dict[str, Any]]:
    out = []
    for trial in trials:
        configuration, seed = trial.config["configuration"], trial.config["seed"]
        err = None
        if trial.status == "ERROR":
            err = (trial.error_file and Path(trial.error_file).exists() and Path(trial.error_file).read_text().strip()
                   .splitlines()[-1]) or "the trial failed"
        out.append(_trial_record(configuration, seed, trial.last_result, trial.status, err,
                                 sweep.run_dir(configuration, seed)))
    return out


class _RecorderHooks:
    """Tune callback on the driver (as _Recorder): rewrites sweep.json as results arrive and prints a line per
    finished trial.

    Tune pickles it with the experiment (tuner.pkl) and a resumed sweep gets that copy back, so it keeps no
    state it could not rebuild: every hook receives all trials, restored ones included.
    """

    def __init__(self, sweep_dir: str):
        self.sweep_dir = sweep_dir

    def _write(self, trials, status: str = "running") -> list[dict[str, Any]]:
        sweep = Sweep(self.sweep_dir)
        records = _records_from_trials(sweep, trials)
        sweep.record(records, status)
        return records

    def on_step_begin(self, iteration, trials, **info):
        # The trials already finished when this process began (a resumed sweep's), counted once; each trial
        # that finishes afterwards adds itself, so the "[k/N]" counter counts up by one per line.
        if not hasattr(self, "_finished_ids"):
            self._finished_ids = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._write(trials)

    def _finished(self, trials, trial) -> None:
        records = self._write(trials)
        rec = next(r for r in records if r["run_dir"].endswith(_trial_dirname(trial)))
        self._finished_ids = getattr(self, "_finished_ids", set()) | {trial.trial_id}
        n_done = len(self._finished_ids)
        acc = f"{100 * rec['test_acc']:.2f}%" if rec["test_acc"] is not None else "no accuracy"
        secs = f", {rec['seconds']:.0f} s" if rec["seconds"] else ""
        why = f" ({rec['error']})" if rec["status"] in ("error", "diverged") and rec["error"] else ""
        print(f"[{n_done}/{len(records)}] {rec['label']} seed {rec['seed']}: {rec['status']}, {acc}{secs}{why}",
              flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finished(trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finished(trials, trial)


def _recorder_class() -> type:
    """_Recorder: _RecorderHooks as a ray.tune.Callback, made on first use. Ray is imported only when a sweep
    runs: importing this module (the app does, for its Sweep tab) must not load Ray, seconds of CPU. The class is
    lab.sweep._Recorder, as a class statement at module level would make it, so pickles of it (Tune's tuner.pkl,
    read back by a resumed sweep) find it by that name: see __getattr__."""
    global _Recorder
    if "_Recorder" not in globals():
        from ray.tune import Callback

        class _Recorder(_RecorderHooks, Callback):  # `global` above: its __qualname__ is "_Recorder"
            __doc__ = _RecorderHooks.__doc__
    return _Recorder


def __getattr__(name: str):
    if name == "_Recorder":  # lab.sweep._Recorder before any sweep ran here: unpickling a resumed sweep's Tuner
        return _recorder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_address(address: str, timeout: float = 5.0) -> None:
    """A quick TCP check that something answers at host:port: ray.init would otherwise wait minutes on an
    address where no cluster runs. 'auto' (the cluster this machine belongs to) is left to Ray."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"cluster address {address!r} must read host:port (e.g. 10.0.0.5:6379), "
                         "ray://host:port or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise SweepError(f"no Ray cluster answers at {address} ({e.strerror or e}); start one there with "
                         "`ray start --head`, or leave out --address to run on this machine") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start Ray on this machine (every CPU and GPU it has) or join the cluster at `address`. Returns whether
    this call started it (a session already running, e.g. the test's, is used as it is)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": False}  # trial output stays in the trials' logs
    if address:
        _check_address(address)
        # the cluster's workers get this very lab package, whatever the nodes have installed
        kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parent)]}
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SweepError(f"could not join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    else:
        # workers started on this machine import lab from the same place as this process
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        # address="local": always a new instance of our own; ray.init() with no address would join a cluster
        # that `ray start` once left its address for, and wait minutes if that cluster has gone
        ray.init(address="local", num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs)
    return True


def _gpus_per_trial(spec: SweepSpec) -> float:
    import ray

    if spec.gpus_per_trial is not None:
        if spec.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) < spec.gpus_per_trial:
            raise SweepError(f"{spec.gpus_per_trial:g} GPUs per trial asked for, but Ray sees "
                             f"{ray.cluster_resources().get('GPU', 0):g} GPUs")
        return float(spec.gpus_per_trial)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _tuner(sweep: Sweep, state: dict[str, Any], data_ref, restore: bool):
    from ray import tune

    spec = state["spec"]
    cpus, gpus = spec["cpus_per_trial"], state["gpus_per_trial"]
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data_ref, sweep_dir=str(sweep.path), sweep_id=sweep.id, cpus=cpus),
        {"cpu": cpus, "gpu": gpus},
    )
    path = sweep.path / TUNE_DIR
    if restore and tune.Tuner.can_restore(str(path)):
        # Finished trials keep their results; unfinished ones (stopped, never started, or crashed) run again.
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=True)
    return tune.Tuner(
        trainable,
        param_space={"configuration": tune.grid_search(state["configurations"]),
                     "seed": tune.grid_search(spec["seeds"])},
        tune_config=tune.TuneConfig(
            # FIFO: every trial runs its whole One Cycle. Early-stopping schedulers (ASHA, median stopping) judge
            # trials by their first epochs, where One Cycle ranks configurations badly (see the module docstring).
            scheduler=tune.schedulers.FIFOScheduler(),
            max_concurrent_trials=spec.get("max_concurrent"),
            # the next trial runs in the process the last one left: torch and the lab are imported once per worker
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(sweep.path), verbose=0,
                                  callbacks=[_recorder_class()(str(sweep.path))],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def _prepare(spec: SweepSpec, sweep: Sweep, state: dict[str, Any], data_ref,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Run the range tests (as Ray tasks with a trial's resources) and resolve the grid into spec.json."""
    import ray

    gpus = state["gpus_per_trial"]
    groups = range_test_groups(spec)
    range_tests: dict[str, dict[str, Any]] = {}
    if spec.range_test is not None:
        settings = dict(spec.range_test)
        log(f"LR range test{'s' if len(groups) > 1 else ''}: {len(groups)} × {settings.get('iters', C.RANGE_TEST_ITERS)} "
            f"iterations")
        task = ray.remote(_range_test_task).options(num_cpus=spec.cpus_per_trial, num_gpus=gpus)
        refs = {g["id"]: task.remote(g["config"], data_ref, settings, spec.cpus_per_trial) for g in groups.values()}
        try:
            # ray.wait with a timeout, not one long ray.get: Python handles a Ctrl-C only between such calls
            pending = list(refs.values())
            while pending:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        except KeyboardInterrupt:
            for ref in refs.values():
                ray.cancel(ref, force=True)
            raise
        for g in groups.values():
            rt = ray.get(refs[g["id"]])
            rt["group"], rt["label"] = g["id"], g["label"]
            range_tests[g["id"]] = rt
            sug = ", ".join(f"{k} {v:.3g}" for k, v in rt["suggestions"].items())
            log(f"  {g['label']}: LRMAX {rt['max_lr']:.3g} ({rt['rule']}); suggestions: {sug or 'none'}")
    configurations, notes = resolve(spec, range_tests, {k: g["id"] for k, g in groups.items()})
    state = {**state, "range_tests": range_tests, "configurations": configurations, "notes": notes}
    sweep.write_state(state)
    return state


def _finish(sweep: Sweep, grid) -> dict[str, Any]:
    """After Tuner.fit: a record for every trial the sweep asked for; unfinished runs marked stopped on disk.

    The records come from the grid the sweep asked for (spec.json), not from Tune's result grid alone: after a
    Ctrl-C, Tune's grid holds only the trials it had created by then (grid search makes them as slots free up,
    so with one trial at a time it may hold just the finished one), and a trial stopped before its first report
    has no config in its result. A trial Tune never created is "pending", and the sweep is then "stopped".
    """
    state = sweep.state()
    seeds = state["spec"]["seeds"]
    # a Result carries its config only in its metrics (none before the first report); its folder is the trial's
    # name (_trial_dirname), which identifies the configuration and seed whatever it reported
    results = {Path(r.path).name: r for r in grid if r.path}
    records = []
    for c in state["configurations"]:
        for seed in seeds:
            result = results.get(_folder_name(c, seed))
            err = None
            if result is not None and result.error is not None:
                text = str(result.error).strip()
                err = text.splitlines()[-1] if text else type(result.error).__name__
            metrics = result.metrics if result is not None else None
            records.append(_trial_record(c, seed, metrics, "", err, sweep.run_dir(c, seed)))
    for rec in records:
        # A stopped trial cannot say so itself: a killed process leaves its folder reading "running", and one whose
        # next report Tune refused ends through an exception, which lab.experiment.train records as "error".
        if rec["status"] == "stopped":
            run = Run(Path(rec["run_dir"]))
            if (run.path / "config.json").exists() and run.config_doc().get("status") in ("running", "error"):
                run.update_config(status="stopped")
    unfinished = sum(r["status"] in ("stopped", "pending", "running") for r in records)
    # a trial that diverged is a result (its LR is too high); one that failed is not: all failed, the sweep failed
    failed = all(r["status"] == "error" for r in records)
    return sweep.record(records, "stopped" if unfinished else "failed" if failed else "done", write_figure=True)


NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,+-]{0,99}")


def check_place(root: str | Path, name: str | None) -> None:
    """A sweep's folder is `name` (one folder name: letters, digits and . _ = , + -, no path) under `root` (a
    folder, or a place one can be made). ConfigError otherwise, before anything is made."""
    if name is not None and not NAME_CHARS.fullmatch(name):
        raise ConfigError(f"sweep name {name!r} must be one folder name (up to 100 letters, digits and . _ = , + -, "
                          "starting with a letter or digit); it cannot name a path")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"the sweeps root {root} is a file; name a folder")
    if name and (root / name / SPEC).exists():
        raise ConfigError(f"{root / name} already holds a sweep; resume it or name a new one")


def create(spec: SweepSpec, root: str | Path = SWEEP_ROOT, name: str | None = None) -> Sweep:
    """Validate `spec` and make the sweep's folder holding its spec.json; nothing runs yet (`resume` runs it).
    The spec goes to disk first, so even a sweep interrupted during its range test can be resumed."""
    spec.validate()
    check_place(root, name)
    if name:
        path = Path(root) / name
        if (path / SPEC).exists():
            raise ConfigError(f"{path} already holds a sweep; resume it or name a new one")
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = new_run_dir(Path(root))
    sweep = Sweep(path)
    sweep.write_state({"id": sweep.id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "spec": spec.to_dict()})
    return sweep


def run(spec: SweepSpec, data=None, *, root: str | Path = SWEEP_ROOT, name: str | None = None,
        address: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a sweep: start (or join) Ray, range-test, train every configuration × seed, write the results.

    Returns the sweep.json document. Its "status" is "stopped" when the sweep was interrupted (Ctrl-C): call
    `resume(doc["folder"])` to go on.
    """
    from lab import data as data_mod

    spec.validate()
    check_place(root, name)
    full = data if data is not None else data_mod.load(spec.base.data_dir)  # a missing dataset fails before Ray starts
    spec.check_data(full)
    connect(address)
    _gpus_per_trial(spec)  # GPUs Ray cannot see fail here, before any folder is made
    sweep = create(spec, root, name)
    return _execute(sweep, spec, full, log, restore=False)


def resume(path: str | Path, data=None, *, address: str | None = None,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Go on with an interrupted sweep: finished trials are kept; the rest run (again, from scratch)."""
    from lab import data as data_mod

    sweep = Sweep(path)
    try:
        spec = SweepSpec.from_dict(sweep.state()["spec"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # ConfigError is a ValueError
        raise SweepError(f"{sweep.path / SPEC} does not describe a sweep this lab can run ({e})") from None
    full = data if data is not None else data_mod.load(spec.base.data_dir)
    connect(address)
    return _execute(sweep, spec, full, log, restore=True)


def _execute(sweep: Sweep, spec: SweepSpec, data, log: Callable[[str], None], restore: bool) -> dict[str, Any]:
    import ray

    # Ray Tune's newer console output prints a status table even at verbose=0; the classic reporter stays quiet
    # at verbose=0, and this module prints its own line per finished trial.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    data_ref = ray.put(data)  # once: every trial and range test reads this one copy
    state = sweep.state()
    if "gpus_per_trial" not in state:  # what Ray sees decides the default, so it is settled once Ray runs
        state["gpus_per_trial"] = _gpus_per_trial(spec)
        sweep.write_state(state)
    if "configurations" not in state:  # a new sweep, or one interrupted before its grid was resolved
        state = _prepare(spec, sweep, state, data_ref, log)
    trials = len(state["configurations"]) * len(spec.seeds)
    log(f"sweep {sweep.id}: {len(state['configurations'])} configurations × {len(spec.seeds)} seeds = {trials} "
        f"trials, "
        f"{spec.cpus_per_trial:g} CPU + {state['gpus_per_trial']:g} GPU each (Ray sees "
        f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs); "
        f"folder {sweep.path}")
    grid = _tuner(sweep, state, data_ref, restore).fit()
    return _finish(sweep, grid)
