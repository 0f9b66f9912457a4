"""How much memory one training step takes on the CPU, against what autograd saves: the measurement behind
lab.estimate.PEAK_OVER_SAVED (the peak-memory estimate that refuses runs that would not fit).

For one (width, batch): the network and Adam are built, two warm-up steps at batch 2 taken, then one step at the
batch is measured twice over:
- tensor peak: the most bytes live tensors held at once during the step, from torch's profiler (each op's own
  allocations and frees, in the order the ops ran) — exact and repeatable;
- RSS growth: how far the process's peak resident memory (getrusage) rose over the step — what the machine
  actually gave, the allocator's overhead included; it varies from run to run (and reads 0 when the step
  reused memory freed earlier, e.g. after imports).
Both are set against lab.model.activation_bytes (what autograd keeps per image) × batch. One configuration per
process (the peak RSS never goes down), e.g.:

    for a in "0.25 256" "0.5 128" "1 64" "1 128"; do python benchmarks/memory_probe.py --width ${a% *} --batch ${a#* }; done
"""

from __future__ import annotations

import argparse
import gc
import json
import resource

import torch
from torch.profiler import ProfilerActivity, profile

from lab.model import Net, activation_bytes


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default %(default)s)")
    p.add_argument("--batch", type=int, default=128, help="images in the measured step (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = p.parse_args()
    torch.set_num_threads(1)  # one thread: no per-thread scratch buffers in the measurement
    torch.manual_seed(0)
    net = Net(width=args.width).train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def step(batch: int) -> None:
        x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(2)
    step(2)  # Adam's state now exists: what remains is the step itself
    gc.collect()
    before = peak_rss()
    step(args.batch)
    grown = peak_rss() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(args.batch)
    live = tensor_peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        tensor_peak = max(tensor_peak, live)
    saved = activation_bytes(args.width)[0] * args.batch
    out = {"width": args.width, "batch": args.batch, "tensor_peak_bytes": tensor_peak, "rss_growth_bytes": grown,
           "saved_bytes": saved, "tensor_peak_over_saved": tensor_peak / saved, "rss_over_saved": grown / saved}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"width {args.width:g} batch {args.batch}: autograd saved {saved / 2**20:.0f} MiB; tensor peak "
              f"{tensor_peak / 2**20:.0f} MiB ({tensor_peak / saved:.2f}×), RSS growth {grown / 2**20:.0f} MiB "
              f"({grown / saved:.2f}×)")


if __name__ == "__main__":
    main()
