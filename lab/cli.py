"""python -m lab train | find-lr | sweep | evaluate | schedule | bench | runs | summary

Bad input exits non-zero with one line on stderr ("error: …"), never a traceback, and leaves no folder behind:
everything that can be checked (flags, the output folder, the data, the schedule's length, the memory) is
checked before a run folder is made. SIGTERM, like Ctrl-C, ends a run as `stopped` (exit 128 + the signal).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lab import config


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (as Ctrl-C raises KeyboardInterrupt), so that a run ends the same
    way: its finished epochs kept and `stopped` recorded."""

    signum = signal.SIGTERM


def _on_sigterm(signum, _frame) -> None:
    raise Terminated()


def check_out_dir(path: str | os.PathLike, flag: str, may_hold: Sequence[str] | None = None) -> Path:
    """Refuse, before any work, an output folder that is a file, that already holds something (or, with
    `may_hold`, one of those names), or that cannot be made here. Nothing is left behind by the check."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CliError(f"{flag} {path} is a file; name a folder (a new one, or an empty one)")
    if path.is_dir():
        try:
            held = sorted(p.name for p in path.iterdir())
        except OSError as e:
            raise CliError(f"{flag} {path} cannot be read ({e.strerror}); name a folder you can write to") from None
        clash = held if may_hold is None else [n for n in held if n in may_hold]
        if clash:
            what = "holds a run" if "config.json" in clash else f"is not empty (it holds {', '.join(clash[:3])}" + (
                ", …)" if len(clash) > 3 else ")")
            raise CliError(f"{flag} {path} {what}; name a new or empty folder (runs are never overwritten)")
    # Can it be written? Make (and at once remove) a probe in the nearest folder that exists: permission bits
    # say nothing for root, and places like /proc refuse only when asked.
    parent = path if path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".lab-probe-"))
    except OSError as e:
        raise CliError(f"{flag} {path}: cannot create a folder in {parent} ({e.strerror}); name a place you can "
                       "write to") from None
    return path


def _esc(text: object) -> str:
    """Text from data (a preset's label, a list of names) for a help string: argparse %-formats every help
    (for %(default)s), so a bare % in it ("81.5%)") would crash --help; %% prints as %."""
    return str(text).replace("%", "%%")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + error
        raise CliError(f"{message} (see `{self.prog} --help`)")  # prog: "python -m lab" or "python -m lab train"


def _add_knob(p, knob: config.Knob, help: str | None = None) -> None:
    """One config knob as a flag, from its declaration (lab.config.knob): --NAME (or its `flag`), its type, its
    default (shown in the help when it has a value) and its help text."""
    text = _esc(help or knob.help)
    flag = knob.flag or "--" + knob.name.replace("_", "-")
    if knob.value_kind == "flag":  # a switch: --tta turns on what is off, --no-cycle-momentum off what is on
        p.add_argument(flag, dest=knob.name, action="store_false" if knob.default else "store_true", help=text)
        return
    kind = {"number": float, "whole": int, "images": int}.get(knob.value_kind)
    if knob.default is not None:
        text += " (default %(default)s)"
    p.add_argument(flag, dest=knob.name, type=kind, default=knob.default, help=text)


def _add_knobs(p, group: str, skip: Sequence[str] = ()) -> None:
    """Every knob declared in this CLI group (lab.config.CLI_GROUPS), in declaration order."""
    for knob in config.KNOBS.values():
        if knob.cli == group and knob.name not in skip:
            _add_knob(p, knob)


def _add_schedule_flags(p: argparse.ArgumentParser, allow_find: bool = False) -> None:
    g = p.add_argument_group("One Cycle schedule")
    # --max-lr is a number or (train) 'find': a string the command reads (_max_lr), so it is added here
    g.add_argument("--max-lr", default=None,
                   help="LRMAX (default: the optimizer's default, adam %s, sgd %s)"
                   % (config.default_max_lr("adam"), config.default_max_lr("sgd"))
                   + ("; 'find' runs the LR range test first" if allow_find else ""))
    _add_knobs(g, "schedule")
    _add_knobs(g, "batch")


def _max_lr(args) -> float | None:
    """--max-lr as a number; None when not given (the optimizer's default applies)."""
    if args.max_lr is None:
        return None
    try:
        return float(args.max_lr)
    except ValueError:
        raise CliError(f"--max-lr must be a number{' or find' if hasattr(args, 'find_iters') else ''}, "
                       f"got {args.max_lr!r}") from None


def _add_run_flags(p: argparse.ArgumentParser, test: bool = True) -> None:
    p.add_argument("--preset", choices=list(config.PRESETS), default=None,
                   help="start from a preset's settings (lab/config.py PRESETS); flags given explicitly win: "
                        + _esc("; ".join(f"{n}: {pr.label}" for n, pr in config.PRESETS.items())))
    _add_knobs(p, "run", skip=() if test else ("test_subset",))  # the range test evaluates nothing


def train_config(args, max_lr: float | None = None) -> config.TrainConfig:
    """The flags a command has → a TrainConfig (config.TrainConfig.from_flat); flags a command lacks keep the lab's
    defaults (find-lr has no schedule flags: the range test sets its own LRs). `max_lr` overrides --max-lr."""
    knobs = {name: getattr(args, name) for name in config.FLAT_KNOBS if hasattr(args, name)}
    if "compile_mode" in knobs:  # --compile [MODE]: compiling is on when the flag is given
        knobs["compile"] = knobs["compile_mode"] is not None
        knobs["compile_mode"] = knobs["compile_mode"] or config.COMPILE_MODES[0]
    if "max_lr" in knobs:
        knobs["max_lr"] = max_lr if max_lr is not None else _max_lr(args)
        if knobs["max_lr"] is None:
            del knobs["max_lr"]  # the optimizer's default
    return config.TrainConfig.from_flat(**knobs)


def _add_train_flags(p: argparse.ArgumentParser, allow_find: bool = False) -> None:
    _add_schedule_flags(p, allow_find=allow_find)
    _add_run_flags(p)
    _add_knobs(p, "loss")
    _add_knobs(p, "train")
    # --compile [MODE] sets two knobs: compile (on when the flag is given) and compile_mode (train_config)
    p.add_argument("--compile", dest="compile_mode", nargs="?", const=config.COMPILE_MODES[0], default=None,
                   metavar="MODE", help=f"torch.compile the model; MODE: {_esc(', '.join(config.COMPILE_MODES))}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m lab", description="CIFAR-10 super-convergence lab")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train the spec network with One Cycle",
                       description="Train with the spec defaults: batch 512, 24 epochs, One Cycle peaking at "
                                   "epoch 5, Adam. Prints a line per epoch and the run folder.")
    _add_train_flags(p, allow_find=True)
    _add_range_test_flags(p, prefix="find-")
    p.add_argument("--run-dir", default=None,
                   help="this run's folder, new or empty (default: a new folder under runs/)")
    _add_yes_flag(p)
    p.set_defaults(func=cmd_train)

    _add_find_lr_parser(sub)
    _add_sweep_parser(sub)
    _add_compare_parser(sub)

    p = sub.add_parser("evaluate", help="test accuracy and per-class accuracy of a checkpoint")
    p.add_argument("--checkpoint", default=None,
                   help="a model.pt or a run folder (default: the bundled assets/cifar10_resnet9.pt)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on the first N test images (default: all)")
    # `train` reads --subset as training images; here it would silently mean test images, so it is refused
    p.add_argument("--subset", dest="subset_misused", default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help="folder with cifar10.npz, cifar-10-batches-py/ or the .tar.gz (default: $CIFAR10_DIR, ./data)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("schedule", help="preview the per-step LR and momentum/β1 without training")
    _add_schedule_flags(p)
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="default: batches per epoch of the 50,000 training images")
    p.add_argument("--json", action="store_true", help="print {step, epoch, lr, momentum} arrays as JSON")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("runs", help="list the runs in a folder: status, epochs, test accuracy, folder",
                       description="Every run folder under --root, newest first, as Run.summary() reads it: a "
                                   "run whose process died (killed, out of memory) shows as interrupted.")
    p.add_argument("--root", default=None, help="the folder holding the runs (default: $LAB_RUNS_DIR or runs/)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("bench", help="speed of the reference and fast loaders; --accuracy: the recipe over seeds",
                       description="Speed: trains with the reference and the fast loader in one process and "
                                   "prints s/epoch, images/s, TFLOP/s and the data-wait share. --accuracy: "
                                   "trains the recipe once per seed and prints final test accuracy, mean ± std.")
    _add_train_flags(p)
    p.add_argument("--bench-loaders", default="reference,fast",
                   help="loaders to time, comma-separated (default %(default)s)")
    p.add_argument("--reference-epochs", type=int, default=None,
                   help="epochs for the (slow) reference loader; default: --epochs")
    p.add_argument("--accuracy", action="store_true", help="accuracy over seeds instead of speed")
    p.add_argument("--end-to-end", action="store_true",
                   help="time `python -m lab train` with these flags as its own process per seed, from start to "
                        "exit (imports, data, training, evaluation), and read its final test accuracy")
    p.add_argument("--seeds", type=int, default=5, help="with --accuracy: seeds 0..N-1 (default %(default)s)")
    p.add_argument("--save-best", default=None, help="with --accuracy: write the best seed's fp16 checkpoint "
                                                     "here, with a JSON of its accuracy beside it")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("summary", help="layer table with output shapes and parameter count")
    p.add_argument("--width", type=float, default=1.0,
                   help="channel width multiplier, 1 = the spec network (default %(default)s)")
    p.set_defaults(func=cmd_summary)
    return parser


# ------------------------------------------------------------------------------------------------ commands


def _add_yes_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true",  # LONG_JOB_S from lab.config: building the parser imports no torch
                   help=f"start without asking even when the job is expected to take over {config.LONG_JOB_S // 60} min on "
                        "a CPU (the estimate comes from a few training steps timed first)")


def _check_duration(args, cfg: config.TrainConfig, data, range_iters: int = 0, run: bool = True) -> None:
    """Print how long the job should take (a step time measured here: lab.estimate), and on a CPU, before a job
    expected to take over LONG_JOB_S, ask (at a terminal) or stop with how to go on (otherwise) unless --yes."""
    from lab import estimate

    timing = estimate.measure(cfg.width, cfg.batch_size, cfg.device)
    parts = []
    if range_iters:
        parts.append(estimate.for_range_test(cfg, range_iters, timing))
    if run:
        used = data.subset(cfg.subset, cfg.test_subset)
        parts.append(estimate.for_run(cfg, len(used.y_train), len(used.y_test), timing))
    total = estimate.Estimate(sum(p.seconds for p in parts), timing.device, " + ".join(p.what for p in parts))
    _confirm(args, total)


def _confirm(args, total) -> None:
    """Print the estimate; on a CPU, before a job expected to take over LONG_JOB_S, ask (at a terminal) or stop
    with how to go on (otherwise) unless --yes."""
    print(f"expected: {total}", flush=True)
    if not total.long or args.yes:
        return
    ask = (f"this would take {total.duration} on the CPU (a GPU takes seconds to minutes; --preset learner, quick or tiny "
           "are CPU-sized)")
    if sys.stdin.isatty():
        if input(f"{ask}. Start anyway? [y/N] ").strip().lower() in ("y", "yes"):
            return
        raise CliError("not started")
    raise CliError(f"{ask}; pass --yes to start it anyway")


def cmd_train(args) -> int:
    from lab import data as data_mod

    find = _wants_find(args)
    if find and args.min_lr is not None:
        raise CliError("--min-lr cannot be combined with --max-lr find: LRMIN = the found LRMAX / --div-factor")
    # with --max-lr find, the schedule is checked at the optimizer's default LRMAX until the test picks one
    cfg = train_config(args, max_lr=config.default_max_lr(args.optimizer) if find else None)
    if find:
        _find_settings(args, cfg)
    # Everything below is checked before the run folder exists, so a run that cannot start leaves none behind;
    # the cheap checks first (torch is imported only after them: a typo is answered in a fraction of a second).
    if args.run_dir:
        check_out_dir(args.run_dir, "--run-dir")
    else:
        check_out_dir(config.RUNS_DIR, "runs folder", may_hold=())  # it holds other runs: only writable matters
    data = data_mod.load(cfg.data_dir)
    from tqdm import tqdm

    from lab.experiment import preflight, train
    from lab.runs import DEFAULT_ROOT, list_runs, new_run_dir

    preflight(cfg, len(data.y_train), len(data.y_test))  # the device, subsets, schedule length, memory
    _check_duration(args, cfg, data, args.find_iters if find else 0)
    found = None
    if find:  # --max-lr find: the range test picks LRMAX and LRMIN, and its result goes into config.json
        cfg, found = _find_for_train(args, cfg, data)
    if args.run_dir:
        run_dir = check_out_dir(args.run_dir, "--run-dir")  # again: the range test took minutes
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        for stray in list_runs(DEFAULT_ROOT):  # what killed runs left (never touching a live one)
            stray.remove_temporaries()
        run_dir = new_run_dir()
    if found is not None:
        _write_range_test(found, run_dir)
    bar = None

    def progress(event) -> None:
        nonlocal bar
        d = event.data
        if event.kind == "step":
            if bar is None:
                bar = tqdm(total=d["total_steps"], unit="step", leave=False, dynamic_ncols=True)
            bar.n = d["global_step"]
            bar.set_postfix(epoch=d["epoch"], loss=f"{d['loss']:.3f}", lr=f"{d['lr']:.2e}",
                            img_s=f"{d['images_per_s']:.0f}", refresh=False)
            bar.refresh()
        elif event.kind == "epoch":
            line = (f"epoch {d['epoch']:>3}  lr {d['lr']:.2e}  train loss {d['train_loss']:.4f} "
                    f"acc {100 * d['train_acc']:.2f}%  test loss {d['test_loss']:.4f} acc {100 * d['test_acc']:.2f}%"
                    + (f" (flip TTA {100 * d['test_acc_tta']:.2f}%)" if "test_acc_tta" in d else "")
                    + f"  {d['seconds']:.1f}s  {d['images_per_s']:.0f} img/s")
            (bar.write if bar else print)(line)

    print(f"run folder: {run_dir}", flush=True)
    try:
        result = train(cfg, data, callbacks=[progress], run_dir=run_dir,
                       extra_config={"lr_finder": found.to_dict()} if found is not None else None)
    except BaseException:
        if not any(Path(run_dir).iterdir()):  # stopped before the run wrote anything: leave no empty folder
            Path(run_dir).rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
    print(f"{result.status} in {result.seconds:.1f}s on {result.extra['device']} ({result.loader} loader); "
          f"final test accuracy {100 * result.final.get('test_acc', float('nan')):.2f}%")
    print(f"run folder: {run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    if args.subset_misused is not None:
        raise CliError("evaluate takes --test-subset N (the first N test images); --subset means training "
                       "images in train and find-lr")
    if args.test_subset is not None and args.test_subset < 1:
        raise CliError(f"--test-subset must be a whole number of images ≥ 1, got {args.test_subset}")
    from lab import data as data_mod
    from lab import insights
    from lab.engine import resolve_device
    from lab.runs import PRETRAINED_CHECKPOINT, load_checkpoint

    args.checkpoint = args.checkpoint or str(PRETRAINED_CHECKPOINT)
    device = resolve_device(args.device)
    model, cfg, recorded = load_checkpoint(args.checkpoint, device)
    data = data_mod.load(args.data_dir)
    if args.test_subset is not None and args.test_subset > len(data.y_test):
        raise CliError(f"--test-subset {args.test_subset:,} is more than the {len(data.y_test):,} test images in "
                       f"the data; use at most {len(data.y_test):,} (or leave it out for all of them)")
    data = data.subset(test=args.test_subset)
    ev = insights.evaluate(model, data.x_test, data.y_test, device)
    print(f"test accuracy: {100 * ev.accuracy:.2f}% on {len(ev.labels)} test images ({args.checkpoint})")
    for name, acc in ev.per_class_accuracy().items():
        print(f"  {name:<11} {100 * acc:6.2f}%")
    return 0


# The schedule command steps the real scheduler once per step (~70 µs each here) and keeps every LR: 200,000 steps
# (85 spec runs of 24 × 98) take seconds; issue 21's --epochs 1000000 took minutes and gigabytes.
SCHEDULE_PREVIEW_MAX_STEPS = 200_000


def cmd_schedule(args) -> int:
    from lab.schedule import preview, steps_per_epoch

    cfg = train_config(args).schedule  # validates the batch size and the optimizer too
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise CliError(f"--steps-per-epoch must be ≥ 1, got {args.steps_per_epoch}")
    steps = args.steps_per_epoch or steps_per_epoch(config.TRAIN_IMAGES, args.batch_size)
    if cfg.epochs * steps > SCHEDULE_PREVIEW_MAX_STEPS:  # each step is stepped and kept: bound the time and memory
        raise CliError(f"the preview would have {cfg.epochs * steps:,} steps ({cfg.epochs:,} epochs × {steps:,}); it "
                       f"shows at most {SCHEDULE_PREVIEW_MAX_STEPS:,}: use fewer epochs or fewer steps per epoch")
    curve = preview(cfg, steps, args.optimizer)
    if args.json:
        print(json.dumps({"steps_per_epoch": steps, "max_lr": cfg.max_lr, "min_lr": cfg.lr_min, **curve}))
        return 0
    if cfg.policy == "one-cycle":
        print(f"One Cycle: {_count(cfg.epochs, 'epoch')} × {_count(steps, 'step')}, LR {cfg.lr_min:.3g} → "
              f"{cfg.max_lr:.3g} (end of epoch {cfg.peak_epoch:.3g}) → {cfg.lr_min:.3g}, {cfg.anneal} anneal")
    else:  # a baseline schedule (beyond the spec)
        print(f"{cfg.policy} schedule: {_count(cfg.epochs, 'epoch')} × {_count(steps, 'step')}, LR {curve['lr'][0]:.3g} "
              f"→ {curve['lr'][-1]:.3g}")
    print(f"{'epoch':>6} {'step':>6} {'lr':>10} {'momentum':>9}")
    for i in [0, *range(steps - 1, len(curve["lr"]), steps)]:  # the first step, then the last of each epoch
        m = curve["momentum"][i]
        print(f"{curve['epoch'][i]:6.2f} {curve['step'][i]:6d} {curve['lr'][i]:10.3e} {m if m is None else f'{m:9.4f}'}")
    return 0


def cmd_bench(args) -> int:
    from lab import bench
    from lab import data as data_mod
    from lab.runs import atomic_write_text

    cfg = train_config(args)
    if args.reference_epochs is not None and args.reference_epochs < 1:
        raise CliError(f"--reference-epochs must be ≥ 1, got {args.reference_epochs}")
    if args.seeds < 1:
        raise CliError(f"--seeds must be ≥ 1, got {args.seeds}")
    if args.end_to_end:  # each run loads the data itself: that is part of what it times
        train_argv = _train_argv(args)
        print(f"end to end: python -m lab train {' '.join(train_argv)} --seed S, seeds 0..{args.seeds - 1}",
              flush=True)
        result = bench.end_to_end(train_argv, list(range(args.seeds)))
        print(bench.format_end_to_end(result))
    elif args.accuracy:
        data = data_mod.load(cfg.data_dir)
        name = f"{cfg.optimizer.name} max_lr {cfg.schedule.max_lr:g}"
        print(f"accuracy: {name}, {_count(cfg.schedule.epochs, 'epoch')}, batch {cfg.batch_size}, "
              f"seeds 0..{args.seeds - 1}",
              flush=True)
        result = bench.accuracy(cfg, data, list(range(args.seeds)), save_best=args.save_best)
        print(bench.format_accuracy(name, result))
    else:
        data = data_mod.load(cfg.data_dir)
        loaders = [k.strip() for k in args.bench_loaders.split(",") if k.strip()]
        for k in loaders:
            if k not in ("reference", "fast"):
                raise CliError(f"--bench-loaders takes reference and/or fast, got {k!r}")
        print(f"speed: {', '.join(loaders)}; {_count(cfg.schedule.epochs, 'epoch')}, batch {cfg.batch_size}, width "
              f"{cfg.width:g}, subset {cfg.subset or 'all'}, torch {__import__('torch').__version__}", flush=True)
        rows = bench.speed(cfg, data, loaders, args.reference_epochs)
        print(bench.format_speed(rows))
        result = {"config": cfg.to_dict(), "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0


# bench's own options: everything else on its command line is a training flag, passed on by --end-to-end
_BENCH_ONLY = {"accuracy", "end_to_end", "seeds", "save_best", "json", "bench_loaders", "reference_epochs", "seed"}


def _train_argv(args) -> list[str]:
    """bench's command line without bench's own options (and --seed, set per run): the flags for `train`."""
    sub = _subparser(build_parser(), "bench")
    takes_value = {o: a.nargs != 0 for a in sub._actions for o in a.option_strings}
    dest_of = {o: a.dest for a in sub._actions for o in a.option_strings}
    argv, out, i = list(args.argv), [], 0
    argv = argv[argv.index("bench") + 1:] if "bench" in argv else argv
    while i < len(argv):
        token = argv[i]
        option = token.split("=", 1)[0]
        if dest_of.get(option) in _BENCH_ONLY:
            i += 1 if "=" in token or not takes_value.get(option) else 2
            continue
        out.append(token)
        i += 1
    return out


def _count(n: int, word: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def cmd_runs(args) -> int:
    from lab.runs import DEFAULT_ROOT, list_runs

    root = Path(args.root or os.environ.get("LAB_RUNS_DIR") or DEFAULT_ROOT)
    if args.root and not root.is_dir():
        raise CliError(f"--root {root} is not a folder; name the folder that holds the run folders")
    summaries = [run.summary() for run in list_runs(root)]
    if not summaries:
        print(f"no runs in {root}/")
        return 0
    name_w = max(len("run"), *(len(s.name) for s in summaries))
    print(f"{'run':<{name_w}}  {'status':<11}  {'epochs':>7}  {'test acc':>8}  folder")
    for s in summaries:
        epochs = f"{s.epochs_done}/{s.epochs}" if s.epochs is not None else str(s.epochs_done)
        acc = f"{100 * s.test_acc:.2f}%" if isinstance(s.test_acc, (int, float)) else "–"
        print(f"{s.name:<{name_w}}  {s.status:<11}  {epochs:>7}  {acc:>8}  {s.folder}")
    return 0


def cmd_summary(args) -> int:
    from lab.model import describe

    config.TrainConfig(width=args.width)  # validates the width
    print(describe(args.width))
    return 0


# ------------------------------------------------------------------------------------------ LR range test
# `python -m lab find-lr` and `train --max-lr find`; the test itself lives in lab.lr_finder.

def _add_range_test_flags(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The range test's knobs: --iters … for find-lr, --find-iters … for train (same dests)."""
    g = p.add_argument_group("LR range test" + (" (with --max-lr find)" if prefix else ""))
    g.add_argument(f"--{prefix}iters", dest="find_iters", metavar="N", type=int, default=config.RANGE_TEST_ITERS,
                   help="iterations, one batch each (default %(default)s)")
    g.add_argument(f"--{prefix}start-lr", dest="find_start_lr", metavar="LR", type=float, default=config.RANGE_TEST_START_LR,
                   help="first LR (default %(default)g)")
    g.add_argument(f"--{prefix}end-lr", dest="find_end_lr", metavar="LR", type=float, default=config.RANGE_TEST_END_LR,
                   help="last LR (default %(default)g)")
    g.add_argument(f"--{prefix}mode", dest="find_mode", metavar="MODE", default=config.RANGE_TEST_MODES[0],
                   help=f"LR steps: {_esc(' or '.join(config.RANGE_TEST_MODES))} (default %(default)s)")
    g.add_argument(f"--{prefix}smooth-f", dest="find_smooth_f", metavar="F", type=float, default=config.RANGE_TEST_SMOOTH_F,
                   help="loss smoothing factor in [0, 1) (default %(default)s)")
    g.add_argument(f"--{prefix}diverge-th", dest="find_diverge_th", metavar="X", type=float,
                   default=config.RANGE_TEST_DIVERGE_TH,
                   help="stop when the loss passes this × the best loss (default %(default)s)")
    g.add_argument(f"--{prefix}rule", dest="find_rule", metavar="RULE", default=config.RANGE_TEST_RULES[0],
                   help=f"suggestion used as LRMAX: {_esc(', '.join(config.RANGE_TEST_RULES))} (default %(default)s)")


def _add_find_lr_parser(sub) -> None:
    p = sub.add_parser("find-lr", help="LR range test: suggest LRMAX and LRMIN",
                       description="Train a throwaway copy of the network while the LR grows from --start-lr to "
                                   "--end-lr, then suggest LRMAX (by default the loss minimum ÷ a margin that grows "
                                   "with the run's length; also the loss minimum, ÷ 10, the knee, valley, steepest "
                                   "descent) and LRMIN = LRMAX / div factor. Writes lr_finder.json and lr_finder.html.")
    _add_range_test_flags(p)
    _add_run_flags(p, test=False)
    _add_knobs(p, "batch")
    _add_knobs(p, "loss")
    _add_knob(p, config.KNOBS["div_factor"], help="LRMIN = LRMAX / div factor")
    _add_knob(p, config.KNOBS["epochs"], help="epochs of the run the LR is for: the default rule's margin below the loss "
                                         "minimum grows with the run's length")
    p.add_argument("--out", default=None,
                   help="output folder, one without a range test in it (default: a new runs/lr-finder-<time>/)")
    _add_yes_flag(p)
    p.set_defaults(func=cmd_find_lr)


def _wants_find(args) -> bool:
    return isinstance(args.max_lr, str) and args.max_lr.strip().lower() == "find"


def _find_settings(args, cfg: config.TrainConfig) -> dict:
    """range_test's keyword arguments from the flags, checked before any data is loaded."""
    from lab.lr_finder import check_settings

    kw = dict(iters=args.find_iters, start_lr=args.find_start_lr, end_lr=args.find_end_lr, mode=args.find_mode,
              smooth_f=args.find_smooth_f, diverge_th=args.find_diverge_th, div_factor=cfg.schedule.div_factor,
              rule=args.find_rule)
    check_settings(**kw)
    return kw


def _range_test(args, cfg: config.TrainConfig, data):
    """Run the test with a progress bar, print its result; returns the RangeTest."""
    from tqdm import tqdm

    from lab.lr_finder import range_test

    print(f"LR range test: {args.find_iters} iterations, LR {args.find_start_lr:g} → {args.find_end_lr:g} "
          f"({args.find_mode}), {cfg.optimizer.name}, batch {cfg.batch_size}, width {cfg.width:g}, "
          f"{cfg.subset or len(data.y_train)} training images", flush=True)
    bar = tqdm(total=args.find_iters, unit="it", leave=False, dynamic_ncols=True)

    def progress(i: int, lr: float, loss: float) -> None:
        bar.n = i
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{loss:.3f}", refresh=False)
        bar.refresh()

    try:
        result = range_test(cfg, data, **_find_settings(args, cfg), progress=progress)
    finally:
        bar.close()
    s = result.settings
    print(f"{s['iterations_run']} iterations in {result.seconds:.1f}s on {s['device']} ({s['loader']} loader), "
          f"LR {result.lrs[0]:.2e} → {result.lrs[-1]:.2e}" if result.lrs else "no iterations recorded")
    for note in result.notes:
        print(f"note: {note}")
    if result.suggestions:
        print(f"{'suggestion':<12} {'LR':>10}")
        for name, lr in result.suggestions.items():
            print(f"{name:<12} {lr:10.2e}{'   ← LRMAX' if name == result.rule else ''}")
    else:
        print("no suggestion: no rule applied (see the notes)")
    print(f"LRMAX {result.max_lr:.3e} ({result.rule}), LRMIN {result.min_lr:.3e} "
          f"(= LRMAX / {s['div_factor']:g})", flush=True)
    return result


def _write_range_test(result, out) -> None:
    from lab.plots import lr_finder_figure
    from lab.runs import atomic_write_text

    out = Path(out)
    atomic_write_text(out / "lr_finder.json", json.dumps(result.to_dict(), indent=2) + "\n")
    # plotly.js is embedded (~4.7 MB) so the page works offline
    atomic_write_text(out / "lr_finder.html", lr_finder_figure(result).to_html(include_plotlyjs=True))
    print(f"wrote {out / 'lr_finder.json'} and {out / 'lr_finder.html'}")


def _find_for_train(args, cfg: config.TrainConfig, data):
    """train --max-lr find: (the config with the found LRMAX and LRMIN, the RangeTest)."""
    import dataclasses

    result = _range_test(args, cfg, data)
    schedule = dataclasses.replace(cfg.schedule, max_lr=result.max_lr, min_lr=result.min_lr)
    return dataclasses.replace(cfg, schedule=schedule), result


RANGE_TEST_FILES = ("lr_finder.json", "lr_finder.html")


def cmd_find_lr(args) -> int:
    from lab import data as data_mod
    from lab.experiment import preflight
    from lab.runs import DEFAULT_ROOT, new_run_dir

    cfg = train_config(args)
    _find_settings(args, cfg)
    if args.out:
        check_out_dir(args.out, "--out", may_hold=RANGE_TEST_FILES)
    else:
        check_out_dir(DEFAULT_ROOT, "runs folder", may_hold=())
    data = data_mod.load(cfg.data_dir)
    preflight(cfg, len(data.y_train), len(data.y_test), with_test=False)
    _check_duration(args, cfg, data, args.find_iters, run=False)
    result = _range_test(args, cfg, data)
    # only now: no folders for failures (and checked again: the test took minutes)
    out = check_out_dir(args.out, "--out", may_hold=RANGE_TEST_FILES) if args.out else new_run_dir(prefix="lr-finder-")
    _write_range_test(result, out)
    return 0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; with --preset, the preset's knobs become the command's defaults and the command
    line is read again, so that flags given explicitly win over the preset."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):
        sub = _subparser(parser, args.command)
        dests = {a.dest for a in sub._actions}
        sub.set_defaults(**{k: v for k, v in config.PRESETS[args.preset].knobs.items() if k in dests})
        args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # bench --end-to-end passes it on to train
    return args
# ------------------------------------------------------------------------------------------------- sweeps
# `python -m lab sweep`: a grid of runs × seeds through Ray Tune; the work lives in lab.sweep.


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="a grid of runs × seeds through Ray Tune, on this machine or a Ray cluster",
                       description="Train every combination of --grid values once per seed, each trial an ordinary "
                                   "run folder under runs/sweeps/<id>/runs/, spread over this machine's CPUs and "
                                   "GPUs (or a cluster's, --address) by Ray Tune. The training flags set the "
                                   "config every trial starts from. Writes sweep.json, sweep.csv (mean ± std over "
                                   "seeds per configuration) and sweep.html (accuracy against max LR, with the LR "
                                   "range test's curve and suggestions). Ctrl-C stops every trial; --resume goes on.")
    _add_train_flags(p)
    _add_range_test_flags(p, prefix="find-")
    g = p.add_argument_group("sweep")
    g.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="a field and its values, repeatable. FIELD: preset, or a training knob by its flag's "
                        "name with _ (max_lr, div_factor, optimizer, epochs, width, batch_size, pad, cutout, …). "
                        "max_lr values: numbers, xF (F × the range test's LRMAX), rule names "
                        f"({_esc(', '.join(config.RANGE_TEST_RULES))}) or 'rules' for all of them")
    g.add_argument("--seeds", default=str(config.SWEEP_SEEDS),
                   help="a count (3: seeds 0, 1, 2) or a list (0,5,7) (default %(default)s)")
    g.add_argument("--no-range-test", action="store_true",
                   help="skip the LR range test (only with numeric max LRs)")
    g.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPU cores Ray reserves for each trial (default %(default)s)")
    g.add_argument("--gpus-per-trial", type=float, default=None,
                   help="0.25 packs four trials on one GPU (default: 1 when Ray sees a GPU, else 0)")
    g.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    g.add_argument("--address", default=None,
                   help="join the Ray cluster at host:port (or auto) instead of starting Ray on this machine")
    g.add_argument("--root", default=None, help="where sweep folders go (default: runs/sweeps)")
    g.add_argument("--name", default=None, help="this sweep's folder name (default: the date and time)")
    g.add_argument("--resume", default=None, metavar="DIR", help="go on with the interrupted sweep in DIR "
                                                                "(its own settings; other flags are ignored)")
    _add_yes_flag(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    import signal

    from lab import data as data_mod
    from lab import sweep

    # Ctrl-C must reach the sweep even when this process was started with SIGINT ignored (a background job, the
    # app's subprocess): during the range test Python's own handler stops it, then Ray Tune installs its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.resume:
        doc = sweep.resume(args.resume, address=args.address)
    else:
        cfg = train_config(args)
        rt = None if args.no_range_test else {k: v for k, v in _find_settings(args, cfg).items() if k != "div_factor"}
        spec = sweep.SweepSpec(cfg, sweep.parse_grid(args.grid), sweep.parse_seeds(args.seeds), rt,
                               args.cpus_per_trial, args.gpus_per_trial, args.max_concurrent)
        spec.validate()
        sweep.check_place(args.root or sweep.SWEEP_ROOT, args.name)
        data = data_mod.load(cfg.data_dir)
        spec.check_data(data)  # what train checks before it starts, for every configuration
        if not args.address:  # a cluster's machines are not this one: nothing here to time them by
            _confirm(args, sweep.estimate(spec, data))
        doc = sweep.run(spec, data, root=args.root or sweep.SWEEP_ROOT, name=args.name, address=args.address)
    print(sweep.format_summary(doc))
    folder = Path(doc["folder"])
    print(f"wrote {folder / sweep.RESULTS_JSON}, {folder / sweep.RESULTS_CSV} and {folder / sweep.FIGURE}")
    counts = ", ".join(f"{n} {status}" for status, n in doc["summary"]["trials"].items())
    if doc["status"] == "stopped":
        print(f"stopped ({counts}); go on with `python -m lab sweep --resume {folder}`", file=sys.stderr)
        return 130
    failed = [t for t in doc["trials"] if t["status"] == "error"]
    if doc["status"] == "failed":
        print(f"error: every trial failed; the first: {failed[0]['error'] or 'no message'} (logs in {folder})",
              file=sys.stderr)
        return 1
    if failed:
        print(f"warning: {len(failed)} of {len(doc['trials'])} trials failed ({counts}); the first: "
              f"{failed[0]['error'] or 'no message'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------- compare schedules
# `python -m lab compare-schedules`: the configuration under each schedule in turn; the work lives in lab.compare.


def _add_compare_parser(sub) -> None:
    factors = ",".join(f"{f:g}" for f in config.COMPARE_LR_FACTORS)
    p = sub.add_parser("compare-schedules", help="train the configuration under one-cycle, constant, step and cosine",
                       description="Train the configuration the flags describe under each schedule in turn, each at "
                                   "the LR a learner would pick for it: One Cycle at --max-lr (the range test's; "
                                   "'find' runs the test first), every other schedule at the best of --lr-factors × "
                                   f"that LR ({factors}: 3 runs per schedule, 10 in all; --lr-factors 1 is the cheap "
                                   "choice, 4 runs, every schedule at One Cycle's LR, which flatters One Cycle). "
                                   "One seed, one run at a time, into a sweep folder (runs/sweeps/compare-<time>/: "
                                   "sweep.json, sweep.csv, sweep.html, compare.html with the curves, a run folder "
                                   "per run). Prints the result in one sentence.")
    _add_train_flags(p, allow_find=True)
    _add_range_test_flags(p, prefix="find-")
    g = p.add_argument_group("comparison")
    g.add_argument("--lr-factors", default=factors, metavar="F1,F2",
                   help="the other schedules' LRs, as factors of One Cycle's max LR; each is one more run per "
                        "schedule (default %(default)s)")
    g.add_argument("--root", default=None, help="where the comparison's folder goes (default: runs/sweeps)")
    _add_yes_flag(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from lab import compare
    from lab import data as data_mod
    from lab import sweep

    find = _wants_find(args)
    if find and args.min_lr is not None:
        raise CliError("--min-lr cannot be combined with --max-lr find: LRMIN = the found LRMAX / --div-factor")
    factors = compare.parse_factors(args.lr_factors)
    cfg = train_config(args, max_lr=config.default_max_lr(args.optimizer) if find else None)
    if find:
        _find_settings(args, cfg)
    runs = compare.plan(cfg, factors)  # every run builds (a bad LR is said before any data loads)
    root = check_out_dir(args.root or sweep.SWEEP_ROOT, "--root", may_hold=())
    data = data_mod.load(cfg.data_dir)
    from lab import estimate
    from lab.experiment import preflight

    for run in runs:
        preflight(run, len(data.y_train), len(data.y_test))
    timing = estimate.measure(cfg.width, cfg.batch_size, cfg.device)
    used = data.subset(cfg.subset, cfg.test_subset)
    parts = [estimate.for_run(r, len(used.y_train), len(used.y_test), timing) for r in runs]
    if find:
        parts.append(estimate.for_range_test(cfg, args.find_iters, timing))
    _confirm(args, estimate.Estimate(sum(p.seconds for p in parts), timing.device,
                                     f"{len(runs)} runs{' and the range test' if find else ''}, timed on this machine"))
    if find:
        cfg, _ = _find_for_train(args, cfg, data)
    print(f"One Cycle at max LR {cfg.schedule.max_lr:.3g} ({'the range test' if find else '--max-lr'}); "
          f"constant, step and cosine each at the best of {', '.join(f'x{f:g}' for f in factors)} × that LR"
          + (" (one LR: cheaper, and it flatters One Cycle)" if len(factors) == 1 else "")
          + f": {len(runs)} runs", flush=True)
    folder = compare.create(cfg, factors, root)
    doc = compare.run(folder, data)
    print(sweep.format_summary(doc))
    print("\n".join(compare.picks(doc)))
    print(compare.sentence(doc))
    print(f"wrote {folder.path / sweep.RESULTS_JSON}, {folder.path / sweep.RESULTS_CSV}, {folder.path / sweep.FIGURE} "
          f"and {folder.path / compare.HTML}")
    if doc["status"] == "failed":
        failed = [t for t in doc["trials"] if t["status"] == "error"]
        print(f"error: every run failed; the first: {failed[0]['error'] or 'no message'}", file=sys.stderr)
        return 1
    return 130 if doc["status"] == "stopped" else 0


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


# The lab's errors that end a command with exit 1 (missing data or checkpoint, a diverged run, a missing GPU, a
# full disk), by module: main() looks them up only in modules already imported — an error can only come from a
# module that was — so a typo is answered without importing torch (seconds on a busy machine).
EXIT_1 = {"lab.data": ("DataError",), "lab.engine": ("DeviceError", "Diverged"),
          "lab.runs": ("CheckpointError", "DiskFull"), "lab.sweep": ("SweepError",)}


def _exit_code(e: BaseException) -> int | None:
    if isinstance(e, (CliError, config.ConfigError)):
        return 2
    known = tuple(getattr(sys.modules[m], n) for m, names in EXIT_1.items() if m in sys.modules for n in names)
    return 1 if isinstance(e, known) else None


def main(argv: Sequence[str] | None = None) -> int:
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)  # only the main thread may set a handler
    try:
        args = parse(argv)
        return args.func(args)
    except Terminated:
        print("terminated (SIGTERM): the run is recorded as stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        code = _exit_code(e)
        if code is None:
            raise  # a bug: the traceback is what helps
        print(f"error: {e}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
