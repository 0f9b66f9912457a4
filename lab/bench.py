"""Speed and accuracy benchmarks, driven through the same entry point as every other run (lab.experiment.train).

speed:    the reference (albumentations, per image on the CPU) and fast (device-resident, batched) loaders,
          measured in the same process: seconds per epoch, images/s, achieved TFLOP/s and the share of
          training time spent waiting for the next batch.
accuracy: the full recipe over several seeds: per-seed final test accuracy, mean ± std, wall time.
end to end: `python -m lab train …` as its own process per seed, timed from its start to its exit — interpreter
          start, imports, data loading, training and every evaluation — with the final test accuracy read from
          its run folder: what a user waits for, e.g. a preset's promise (`--preset learner --end-to-end`).

Timing notes. Device work is asynchronous: every figure comes from the engine's per-epoch records, whose epoch
boundaries synchronise with the device (the loss is read there). A warm-up epoch on the same shapes runs first
and is not counted, so cuDNN's kernel search and torch.compile's compilation stay out of the numbers (their
cost is reported as "warm-up s"). "Data wait" is host time spent inside next(batches) plus the copy to the
device: for the reference loader it is the time the GPU starves; for the fast loader it is the time to queue
the batched augmentation kernels.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lab import data as data_mod
from lab.config import TrainConfig
from lab.experiment import Result, train
from lab.model import Net, flops_per_image
from lab.runs import Run


def _with_epochs(cfg: TrainConfig, epochs: int) -> TrainConfig:
    schedule = cfg.schedule
    # keep the peak at the same share of the run
    shorter = dataclasses.replace(schedule, epochs=epochs, peak_epoch=schedule.peak_epoch * epochs / schedule.epochs)
    return dataclasses.replace(cfg, schedule=shorter)


def _row(name: str, result: Result, cfg: TrainConfig, warmup_s: float) -> dict[str, Any]:
    history = result.history
    fwd = flops_per_image(Net(width=cfg.width))
    n_train, n_test = result.extra["data"]["train_images"], result.extra["data"]["test_images"]
    train_s = sum(r["train_seconds"] for r in history)
    total_s = sum(r["seconds"] for r in history)
    flops = len(history) * (3 * fwd * n_train + fwd * n_test)  # backward ≈ 2 × forward
    return {
        "loader": name,
        "device": result.extra["device"],
        "epochs": len(history),
        "train_images": n_train,
        "s_per_epoch": statistics.median(r["seconds"] for r in history),
        "total_s": total_s,
        "images_per_s": len(history) * n_train / train_s,
        "tflops": flops / total_s / 1e12,
        "data_wait": sum(r["data_seconds"] for r in history) / train_s,
        "warmup_s": warmup_s,
        "test_acc": history[-1]["test_acc"],
    }


def timed_run(cfg: TrainConfig, data: data_mod.Cifar10, warmup: bool = True) -> tuple[Result, float]:
    """(result of the timed run, seconds of the untimed warm-up epoch)."""
    warmup_s = 0.0
    if warmup:
        start = time.perf_counter()
        train(_with_epochs(cfg, 1), data, step_every=0)
        warmup_s = time.perf_counter() - start
    return train(cfg, data, step_every=0), warmup_s


def speed(cfg: TrainConfig, data: data_mod.Cifar10, loaders: list[str], reference_epochs: int | None = None,
          log=print) -> list[dict[str, Any]]:
    rows = []
    for kind in loaders:
        run_cfg = dataclasses.replace(cfg, loader=kind)
        if kind == "reference" and reference_epochs:
            run_cfg = _with_epochs(run_cfg, reference_epochs)
        result, warmup_s = timed_run(run_cfg, data, warmup=torch.cuda.is_available() and cfg.device != "cpu")
        rows.append(_row(kind, result, run_cfg, warmup_s))
        log(f"  {kind}: {rows[-1]['total_s']:.2f}s for {rows[-1]['epochs']} epochs")
    return rows


def format_speed(rows: list[dict[str, Any]]) -> str:
    head = (f"| {'loader':<9} | {'epochs':>6} | {'s/epoch':>8} | {'total s':>8} | {'images/s':>9} | "
            f"{'TFLOP/s':>7} | {'data wait':>9} | {'warm-up s':>9} | {'test acc':>8} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(f"| {r['loader']:<9} | {r['epochs']:>6} | {r['s_per_epoch']:>8.3f} | {r['total_s']:>8.2f} | "
                     f"{r['images_per_s']:>9.0f} | {r['tflops']:>7.2f} | {100 * r['data_wait']:>8.1f}% | "
                     f"{r['warmup_s']:>9.1f} | {100 * r['test_acc']:>7.2f}% |")
    if len(rows) == 2 and rows[0]["loader"] == "reference":
        lines.append(f"\nfast / reference images/s: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.1f}×")
    return "\n".join(lines)


def accuracy(cfg: TrainConfig, data: data_mod.Cifar10, seeds: list[int], log=print,
             save_best: str | Path | None = None) -> dict[str, Any]:
    rows = []
    best_acc = -1.0
    for seed in seeds:
        run_cfg = dataclasses.replace(cfg, seed=seed)
        start = time.perf_counter()
        result = train(run_cfg, data, step_every=0)
        wall = time.perf_counter() - start
        acc = result.final["test_acc"]
        row = {"seed": seed, "test_acc": acc, "wall_s": wall, "train_s": sum(r["seconds"] for r in result.history)}
        if cfg.tta:
            row["test_acc_tta"] = result.final["test_acc_tta"]
        rows.append(row)
        log(f"  seed {seed}: {100 * acc:.2f}%" + (f" (flip TTA {100 * row['test_acc_tta']:.2f}%)" if cfg.tta else "")
            + f"  {wall:.1f}s")
        if save_best and acc > best_acc:
            save_pretrained(result, run_cfg, data, Path(save_best))
        best_acc = max(best_acc, acc)
    out = {"config": cfg.to_dict(), "rows": rows}
    for suffix in ("", "_tta") if cfg.tta else ("",):
        accs = [r["test_acc" + suffix] for r in rows]
        out["mean" + suffix] = statistics.mean(accs)
        out["std" + suffix] = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return out


def format_accuracy(name: str, summary: dict[str, Any]) -> str:
    lines = [f"{name}: " + ", ".join(f"seed {r['seed']} {100 * r['test_acc']:.2f}% ({r['wall_s']:.1f}s)"
                                     for r in summary["rows"])]
    lines.append(f"{name}: mean {100 * summary['mean']:.2f}% ± {100 * summary['std']:.2f} (std) over "
                 f"{len(summary['rows'])} seeds; mean wall {statistics.mean(r['wall_s'] for r in summary['rows']):.1f}s")
    if "mean_tta" in summary:  # always beside the plain figure, never instead of it
        lines.append(f"{name}: with flip TTA, mean {100 * summary['mean_tta']:.2f}% ± {100 * summary['std_tta']:.2f}")
    return "\n".join(lines)


def save_pretrained(result: Result, cfg: TrainConfig, data: data_mod.Cifar10, path: Path) -> dict[str, Any]:
    """The fp16 checkpoint plus a JSON beside it with its config and its accuracy, measured from the saved file
    (on all test images with the run's device, and on the first 1,000 on the CPU as the tests check it)."""
    from lab.insights import evaluate
    from lab.runs import atomic_write_text, load_checkpoint, save_checkpoint

    save_checkpoint(path, result.model, cfg, result.final, half=True)
    model, _, _ = load_checkpoint(path, result.device)
    full = evaluate(model, data.x_test, data.y_test, result.device).accuracy
    cpu_model, _, _ = load_checkpoint(path, "cpu")
    first = evaluate(cpu_model, data.x_test[:1000], data.y_test[:1000], "cpu").accuracy
    doc = {
        "config": cfg.to_dict(),
        "test_acc": full,
        "test_images": int(len(data.y_test)),
        "test_acc_first_1000": first,
        "measured": {"all": f"fp16 checkpoint loaded as float32, evaluated on {result.extra['device']}",
                     "first_1000": "fp16 checkpoint loaded as float32, evaluated on the CPU"},
        "train_history": result.history,
        "data_sha256": result.extra["data"]["sha256"],
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    return doc


def end_to_end(train_argv: list[str], seeds: list[int], log=print) -> dict[str, Any]:
    """Run `python -m lab train TRAIN_ARGV --seed S` once per seed, each as a fresh process, and time it from spawn
    to exit. Beside the wall time: the process's CPU time (user + system, all its threads) and the 1-minute load
    average before and after. On a shared machine other work stretches the wall time but not the CPU time, so
    CPU seconds ÷ cores is what the run would take alone if its threads kept every core busy (a lower bound)."""
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        path for path in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if path)}
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        for seed in seeds:
            run_dir = Path(tmp) / f"seed-{seed}"
            cmd = [sys.executable, "-m", "lab", "train", *train_argv, "--seed", str(seed), "--run-dir", str(run_dir)]
            load_before = os.getloadavg()[0]
            cpu_before = _children_cpu_seconds()
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - start
            cpu = _children_cpu_seconds() - cpu_before
            load_after = os.getloadavg()[0]
            if proc.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd[1:])}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
            run = Run(run_dir)  # the run folder the training process wrote, read as every reader reads it
            config, last = run.config_doc(), run.metrics()[-1]
            rows.append({"seed": seed, "test_acc": last["test_acc"], "test_images": config["data"]["test_images"],
                         "train_images": config["data"]["train_images"], "epochs": last["epoch"],
                         "wall_s": wall, "cpu_s": cpu, "train_s": config["seconds"], "device": config["device"],
                         "load_before": load_before, "load_after": load_after})
            log(f"  seed {seed}: {100 * last['test_acc']:.2f}% on {rows[-1]['test_images']:,} test images, "
                f"{wall:.1f} s wall, {cpu:.1f} CPU s (load {load_before:.2f} → {load_after:.2f})")
    accs = [r["test_acc"] for r in rows]
    return {"command": ["python", "-m", "lab", "train", *train_argv], "rows": rows, "mean": statistics.mean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "cpu_count": os.cpu_count()}


def _children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished children, all their threads
    return usage.ru_utime + usage.ru_stime


def format_end_to_end(summary: dict[str, Any]) -> str:
    head = (f"| {'seed':>4} | {'test acc':>8} | {'test images':>11} | {'wall s':>7} | {'CPU s':>7} | "
            f"{'in train() s':>12} | {'load avg before → after':>23} |")
    lines = [head, "|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|"]
    for r in summary["rows"]:
        lines.append(f"| {r['seed']:>4} | {100 * r['test_acc']:>7.2f}% | {r['test_images']:>11,} | {r['wall_s']:>7.1f} | "
                     f"{r['cpu_s']:>7.1f} | {r['train_s']:>12.1f} | {r['load_before']:>10.2f} → {r['load_after']:<10.2f} |")
    walls = [r["wall_s"] for r in summary["rows"]]
    lines.append(f"\nmean {100 * summary['mean']:.2f}% ± {100 * summary['std']:.2f} (std) over {len(walls)} seed(s); "
                 f"wall {min(walls):.1f}–{max(walls):.1f} s on {summary['rows'][0]['device']} "
                 f"({summary['cpu_count']} CPU cores visible)")
    return "\n".join(lines)
