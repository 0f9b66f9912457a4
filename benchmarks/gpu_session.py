"""One GPU session's worth of benchmarks, within a deadline: speed (issue: fast path) then accuracy (issue:
accuracy on the GPU). Every stage is a plain `python -m lab bench …` command, printed before it runs, so each
figure in benchmarks/RESULTS.md comes with the exact command that made it.

    python benchmarks/gpu_session.py --out DIR [--deadline SECONDS] [--stages speed,sweep,seeds]

Stages:
  speed  reference vs fast loader (24 epochs fast, fewer for the slow reference), then fast + torch.compile
  sweep  one seed of the spec recipe per candidate max LR (Adam and the SGD preset)
  seeds  the best candidate of each optimizer over 5 seeds; the best Adam seed's checkpoint is saved
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADAM_LRS = [0.002, 0.005, 0.01, 0.02]
SGD_LRS = [0.2, 0.4, 0.8]
SEEDS = 5


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds from start; later stages are skipped")
    ap.add_argument("--stages", default="speed,sweep,seeds")
    ap.add_argument("--reference-epochs", type=int, default=3)
    ap.add_argument("--extra", default="", help="extra flags for every accuracy run")
    ap.add_argument("--common", default="", help="extra flags for every run (e.g. a CPU dry run's small subset)")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    # The device tool returns at most 8 files: per-command JSONs go to a work folder, and one combined
    # results.json (rewritten after every command) plus the checkpoint go to --out.
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_session_"))
    combined: dict[str, dict] = {}
    t0 = time.monotonic()
    run_seconds = 30.0  # a guess for one 24-epoch run until one is measured
    extra = shlex.split(args.extra)
    common = shlex.split(args.common)

    def left() -> float:
        return args.deadline - (time.monotonic() - t0)

    def bench(name: str, flags: list[str]) -> dict | None:
        path = work / f"{name}.json"
        cmd = [sys.executable, "-m", "lab", "bench", "--device", args.device, *common, *flags]
        shown = "python " + " ".join(shlex.quote(c) for c in cmd[1:])
        print(f"\n$ {shown}", flush=True)
        t = time.monotonic()
        try:
            proc = subprocess.run([*cmd, "--json", str(path)], timeout=max(10.0, left()))
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        print(f"[{name}: exit {code}, {time.monotonic() - t:.1f}s, {left():.0f}s left]", flush=True)
        result = json.loads(path.read_text()) if code == 0 and path.exists() else None
        combined[name] = {"command": shown, "exit": code, "seconds": time.monotonic() - t, "result": result}
        (out / "results.json").write_text(json.dumps(combined, indent=2) + "\n")
        return result

    stages = args.stages.split(",")
    if "speed" in stages:
        bench("speed", ["--reference-epochs", str(args.reference_epochs)])
        bench("speed_compile", ["--bench-loaders", "fast", "--compile"])

    best: dict[str, float] = {}
    if "sweep" in stages:
        for opt, lrs in (("adam", ADAM_LRS), ("sgd", SGD_LRS)):
            results = {}
            for lr in lrs:
                if left() < run_seconds * 1.5:
                    print(f"skipping {opt} {lr}: {left():.0f}s left", flush=True)
                    continue
                r = bench(f"sweep_{opt}_{lr:g}", ["--accuracy", "--seeds", "1", "--optimizer", opt,
                                                  "--max-lr", str(lr), *extra])
                if r:
                    results[lr] = r["mean"]
                    run_seconds = max(r["rows"][0]["wall_s"], 5.0)
            if results:
                best[opt] = max(results, key=results.get)
                print(f"best {opt} max LR: {best[opt]:g} ({100 * results[best[opt]]:.2f}%)", flush=True)

    if "seeds" in stages:
        for opt in ("adam", "sgd"):
            lr = best.get(opt)
            if lr is None:
                continue
            if left() < run_seconds * SEEDS * 1.2:
                print(f"skipping {opt} seeds: {left():.0f}s left, need ~{run_seconds * SEEDS:.0f}s", flush=True)
                continue
            flags = ["--accuracy", "--seeds", str(SEEDS), "--optimizer", opt, "--max-lr", str(lr), *extra]
            if opt == "adam":
                flags += ["--save-best", str(out / "cifar10_resnet9.pt")]
            bench(f"seeds_{opt}", flags)
    print(f"\nsession done in {time.monotonic() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
