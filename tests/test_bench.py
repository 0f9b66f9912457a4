"""`python -m lab bench --end-to-end`: each seed is a separate `python -m lab train` process, timed from start to
exit, its accuracy read back from its run folder; bench's own options are not passed on to train."""

from __future__ import annotations

import json
import re

import pytest

from conftest import make_cifar, run_lab, write_npz
from lab.cli import _train_argv, parse


def test_bench_options_stay_with_bench_and_training_flags_go_to_train():
    args = parse(["bench", "--end-to-end", "--seeds=3", "--width", "0.25", "--json", "out.json", "--seed", "4",
                  "--tta", "--preset", "tiny", "--accuracy"])
    assert _train_argv(args) == ["--width", "0.25", "--tta", "--preset", "tiny"]


@pytest.mark.slow
def test_end_to_end_times_each_seed_as_its_own_process(tmp_path):
    data = tmp_path / "data"
    write_npz(data, make_cifar())
    proc = run_lab("bench", "--end-to-end", "--seeds", "2", "--epochs", "2", "--width", "0.125", "--batch-size", "8",
                   "--device", "cpu", "--loader", "fast", "--data-dir", str(data), "--json", "e2e.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"^\|\s+(\d+) \|\s+([\d.]+)% \|\s+(\d+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+([\d.]+) \|",
                      proc.stdout, re.M)
    assert [r[0] for r in rows] == ["0", "1"] and all(r[2] == "6" for r in rows)  # all 6 synthetic test images
    doc = json.loads((tmp_path / "e2e.json").read_text())
    assert doc["command"][:4] == ["python", "-m", "lab", "train"] and "--seeds" not in doc["command"]
    for row, printed in zip(doc["rows"], rows):
        # start-to-exit wall time includes the interpreter, imports and data, so it exceeds train()'s own seconds
        assert row["wall_s"] > row["train_s"] > 0 and row["cpu_s"] > 0
        assert f"{100 * row['test_acc']:.2f}" == printed[1]
    assert not (tmp_path / "runs").exists()  # the timed runs' folders are temporary
