"""Where one training step's time goes on the GPU (the fast path): CUDA-event timings of the pieces, then the
profiler's top kernels for a few full steps.

    python benchmarks/profile_step.py [--steps 40] [--width 1] [--compile MODE]

Pieces, each timed on its own over --steps steps (median ms per step):
  full      loader batch + forward + backward + optimizer + schedule (what `fit` does)
  model     forward + backward + optimizer on one fixed batch (no loader)
  loader    building augmented batches only
  eval      forward of a 1024-image test batch in eval mode
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lab import data as data_mod
from lab.config import TrainConfig
from lab.engine import autocast_for, make_optimizer
from lab.experiment import prepare
from lab.loaders import EVAL_BATCH
from lab.schedule import OneCycle


def timed(fn, steps: int) -> tuple[float, float]:
    """(median GPU ms per call from CUDA events, host ms per call)."""
    times = []
    t_host = time.perf_counter()
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        times.append((start, end))
    host = (time.perf_counter() - t_host) / steps * 1000
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in times), host


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--compile", default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    cfg = TrainConfig(device="cuda", loader="fast", width=args.width)
    data = data_mod.load()
    p = prepare(cfg, data)
    train_b, test_b, model = p.train_batches, p.test_batches, p.model
    step_model = torch.compile(model, mode=args.compile) if args.compile else model
    opt = make_optimizer(model, cfg.optimizer, cfg.schedule.max_lr)
    sched = OneCycle(opt, cfg.schedule, len(train_b))
    loss_fn = nn.CrossEntropyLoss()

    def batches():
        while True:
            yield from train_b

    it = batches()
    fixed_x, fixed_y = next(it)

    def step(x, y):
        with autocast_for(device):
            loss = loss_fn(step_model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    def full():
        step(*next(it))

    def model_only():
        step(fixed_x, fixed_y)

    def loader_only():
        next(it)

    test_x, _ = next(iter(test_b))

    @torch.no_grad()
    def eval_only():
        step_model.eval()
        with autocast_for(device):
            step_model(test_x)
        step_model.train()

    for fn in (full, model_only, eval_only):  # warm-up: cuDNN search, compilation
        for _ in range(15):
            fn()
    torch.cuda.synchronize()
    rows = [(name, *timed(fn, args.steps)) for name, fn in
            (("full", full), ("model", model_only), ("loader", loader_only), ("eval", eval_only))]
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, width {args.width}, batch "
          f"{cfg.batch_size}, compile {args.compile}, eval batch {EVAL_BATCH}")
    print("| piece  | GPU ms/step (median) | host ms/step |")
    print("|--------|----------------------|--------------|")
    for name, gpu, host in rows:
        print(f"| {name:<6} | {gpu:20.3f} | {host:12.3f} |")
    spe = len(train_b)
    full_ms, eval_ms = rows[0][1], rows[3][1]
    print(f"24 epochs ≈ 24 × ({spe} × {full_ms:.2f} ms + {len(test_b)} × {eval_ms:.2f} ms) = "
          f"{24 * (spe * full_ms + len(test_b) * eval_ms) / 1000:.2f} s")

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            full()
        torch.cuda.synchronize()
    try:
        print(prof.key_averages().table(sort_by="device_time_total", row_limit=22, max_name_column_width=60))
    except Exception:  # older torch names the key cuda_time_total
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
