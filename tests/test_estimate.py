"""lab.estimate: durations people read, a step time measured on this machine, and what it scales to."""

from __future__ import annotations

import math

import pytest

from lab import estimate
from lab.config import PRESETS, ScheduleConfig, TrainConfig
from lab.estimate import LONG_JOB_S, StepTime, for_range_test, for_run, format_duration


@pytest.mark.parametrize("seconds,text", [(0, "0 s"), (59.4, "59 s"), (60, "1 min 00 s"), (3599, "59 min 59 s"),
                                          (3600, "1 h 00 min"), (38336, "10 h 39 min"), (None, "–"),
                                          (math.nan, "–"), (math.inf, "–")])
def test_format_duration_reads_as_a_length_of_time(seconds, text):
    assert format_duration(seconds) == text


def test_the_estimate_scales_the_step_time_to_the_run():
    t = StepTime("cpu", 1.0, 32, train_per_image=0.01, eval_per_image=0.002, step_overhead=0.5)
    cfg = TrainConfig(batch_size=100, schedule=ScheduleConfig(epochs=3))
    est = for_run(cfg, 1050, 500, t)  # 11 steps of 100 per epoch, the last one partial
    assert est.seconds == pytest.approx(3 * (11 * (0.5 + 100 * 0.01) + 500 * 0.002))
    assert est.device == "cpu" and not est.long and "3 × 11 steps of 100" in str(est)
    assert est.duration == "under a minute" and str(est).startswith("under a minute on the CPU")
    assert for_range_test(cfg, 40, t).seconds == pytest.approx(40 * (0.5 + 100 * 0.01))
    long = for_run(cfg, 50_000, 10_000, t)
    assert long.long and long.seconds > LONG_JOB_S and long.duration == f"about {format_duration(long.seconds)}"
    low = TrainConfig(batch_size=100, low_res=16, low_res_epochs=2, schedule=ScheduleConfig(epochs=3))
    # two epochs at 16 px do a quarter of the work each, their evaluation too
    assert for_run(low, 1050, 500, t).seconds == pytest.approx(1.5 * (11 * (0.5 + 100 * 0.01) + 500 * 0.002))
    assert "the first 2 at 16 px" in str(for_run(low, 1050, 500, t))
    gpu = StepTime("cuda", 1.0, 512, 1e-5, 1e-6)
    assert not for_run(cfg, 50_000, 10_000, gpu).long  # only a CPU asks before a long job


def test_a_step_time_goes_stale_with_age_or_a_change_of_load():
    t = StepTime("cpu", 1.0, 32, 0.01, 0.002, measured_at=1000.0, load=0.5)
    assert not t.stale(now=1000.0 + estimate.TIMING_MAX_AGE_S - 1, load=1.4)
    assert t.stale(now=1000.0 + estimate.TIMING_MAX_AGE_S + 1, load=0.5)  # old
    assert t.stale(now=1001.0, load=0.5 + estimate.LOAD_SHIFT)  # the machine got busier …
    assert StepTime("cpu", 1.0, 32, 0.01, 0.002, measured_at=1000.0, load=11.0).stale(now=1001.0, load=0.3)  # … idle
    assert StepTime("cpu", 1.0, 32, 0.01, 0.002).stale()  # never measured
    assert "timed on this machine at " in t.when() and "under load 0.50" in t.when()
    assert "under load 0.50" in str(for_run(TrainConfig(), 1000, 100, t))


def test_measure_times_real_steps_without_touching_the_global_rng():
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    t = estimate.measure(0.125, 512, "cpu")
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert t.device == "cpu" and t.batch == estimate.PROBE_BATCH and t.width == 0.125
    assert t.measured_at is not None and not t.stale(load=t.load)
    assert t.train_per_image > 0 and t.eval_per_image > 0 and t.step_overhead >= 0
    assert math.isfinite(t.step_seconds(512)) and t.step_seconds(512) > t.step_seconds(32)
    # the Spec preset on this CPU: the estimate the app and the CLI show before it starts
    spec = PRESETS["spec"].config(device="cpu")
    assert for_run(spec, 50_000, 10_000, t).seconds > 0


def test_the_peak_memory_estimate_is_at_least_what_a_step_takes():
    """The estimate (lab.estimate.peak_memory) against a measurement (benchmarks/memory_probe.py): the most
    bytes live tensors hold during one Adam step at width 0.25, batch 256, from torch's profiler."""
    import json
    import os
    import subprocess
    import sys

    import torch

    from conftest import REPO
    from lab.estimate import peak_memory

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "memory_probe.py"), "--width", "0.25",
                           "--batch", "256", "--json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.strip().splitlines()[-1])["tensor_peak_bytes"]
    cfg = TrainConfig(width=0.25, batch_size=256, device="cpu")
    estimate = peak_memory(cfg, torch.device("cpu"), 50_000, 10_000)
    assert measured <= estimate <= 3 * measured  # safe, and not so loose it refuses what fits
