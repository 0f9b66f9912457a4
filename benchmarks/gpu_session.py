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

# Candidates per optimizer: the flags of one accuracy run each (the first session's sweep)
CANDIDATES = {
    "adam": ["--max-lr 0.002", "--max-lr 0.005", "--max-lr 0.01", "--max-lr 0.02"],
    "sgd": ["--max-lr 0.2", "--max-lr 0.4", "--max-lr 0.8"],
}
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
    ap.add_argument("--compile-mode", default="default")
    ap.add_argument("--adam", default=None, help="';'-separated candidate flag strings for Adam")
    ap.add_argument("--sgd", default=None, help="';'-separated candidate flag strings for SGD")
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
        bench("speed_compile", ["--bench-loaders", "fast", "--compile", args.compile_mode])

    candidates = dict(CANDIDATES)
    for opt in ("adam", "sgd"):
        if getattr(args, opt) is not None:
            candidates[opt] = [c for c in getattr(args, opt).split(";") if c.strip()]
    best: dict[str, str] = {}
    if "sweep" in stages:
        for opt, flag_sets in candidates.items():
            results = {}
            for flags in flag_sets:
                if left() < run_seconds * 1.5:
                    print(f"skipping {opt} {flags}: {left():.0f}s left", flush=True)
                    continue
                name = f"sweep_{opt}_" + "_".join(f.lstrip("-") for f in shlex.split(flags))
                r = bench(name, ["--accuracy", "--seeds", "1", "--optimizer", opt, *shlex.split(flags), *extra])
                if r:
                    results[flags] = r["mean"]
                    run_seconds = max(r["rows"][0]["wall_s"], 5.0)
            if results:
                best[opt] = max(results, key=results.get)
                print(f"best {opt}: {best[opt]} ({100 * results[best[opt]]:.2f}%)", flush=True)

    if "seeds" in stages:
        for opt in ("adam", "sgd"):
            flags = best.get(opt) or (candidates[opt][0] if len(candidates[opt]) == 1 else None)
            if flags is None:
                continue
            if left() < run_seconds * SEEDS * 1.2:
                print(f"skipping {opt} seeds: {left():.0f}s left, need ~{run_seconds * SEEDS:.0f}s", flush=True)
                continue
            cmd = ["--accuracy", "--seeds", str(SEEDS), "--optimizer", opt, *shlex.split(flags), *extra]
            if opt == "adam":
                cmd += ["--save-best", str(out / "cifar10_resnet9.pt")]
            bench(f"seeds_{opt}", cmd)
    print(f"\nsession done in {time.monotonic() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
