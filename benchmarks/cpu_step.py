"""The bare training step on the CPU (random data, no loader, no evaluation): images/s for a width, batch size
and mode — what chose the Learner preset's width, batch size and eager mode (benchmarks/RESULTS.md).

    python benchmarks/cpu_step.py --width 0.25 --batch-size 128            # eager
    python benchmarks/cpu_step.py --width 0.25 --batch-size 128 --compile  # torch.compile (inductor's C++)

Prints the time of the first two steps (compilation, with --compile) and the mean of the next --steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from lab.model import Net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    model = Net(width=args.width).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(args.batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    f = torch.compile(model) if args.compile else model

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(f(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    step(), step()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    per = (time.perf_counter() - t) / args.steps
    print(f"width {args.width:g}, batch {args.batch_size}, {'compiled' if args.compile else 'eager'}, "
          f"{torch.get_num_threads()} threads: first 2 steps {first:.1f} s, then {per * 1000:.0f} ms/step, "
          f"{args.batch_size / per:.0f} images/s")


if __name__ == "__main__":
    main()
