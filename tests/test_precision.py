"""Precision by capability (lab.engine.resolve_precision): bf16 autocast on a GPU that has bf16, fp16 autocast with
a GradScaler on one that does not, fp32 on the CPU. The GPU's capability is faked here (this machine has no GPU);
the fp16 path itself runs for real through torch's CPU autocast and CPU GradScaler."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import call_lab, make_cifar, write_npz
from lab.config import ConfigError, OptimizerConfig, ScheduleConfig, TrainConfig
from lab.engine import DeviceError, Precision, fit, make_optimizer, resolve_precision
from lab.experiment import build_loaders
from lab.schedule import OneCycle

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device whose bf16 capability the test sets: fake_gpu(True) is an A100/H100, fake_gpu(False) a T4."""

    def make(bf16: bool, name: str = "Tesla T4"):
        asked = []

        def is_bf16_supported(including_emulation: bool = True):
            asked.append(including_emulation)
            return bf16

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        return asked

    return make


def test_auto_is_fp32_on_the_cpu():
    p = resolve_precision("auto", CPU)
    assert (p.name, p.dtype, p.device_type) == ("fp32", torch.float32, "cpu")
    assert not p.grad_scaler().is_enabled()
    with p.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_auto_is_bf16_on_a_gpu_with_native_bf16(fake_gpu):
    asked = fake_gpu(True, "NVIDIA H100 80GB HBM3")
    p = resolve_precision("auto", CUDA)
    assert (p.name, p.dtype, p.device_type) == ("bf16", torch.bfloat16, "cuda")
    assert asked == [False]  # emulated bf16 (slower than fp32) does not count as having it


def test_auto_is_fp16_with_a_live_grad_scaler_on_a_gpu_without_bf16(fake_gpu):
    fake_gpu(False)
    p = resolve_precision("auto", CUDA)
    assert (p.name, p.dtype) == ("fp16", torch.float16)
    assert Precision("fp16", "cpu").grad_scaler().is_enabled()
    assert not Precision("bf16", "cpu").grad_scaler().is_enabled()  # bf16 keeps fp32's exponent: no scaling


def test_bf16_asked_for_on_a_gpu_without_it_is_refused_with_what_to_use(fake_gpu):
    fake_gpu(False, "Tesla V100-SXM2-16GB")
    with pytest.raises(DeviceError, match=r"Tesla V100-SXM2-16GB\) has no native bf16.*--precision fp16 or auto"):
        resolve_precision("bf16", CUDA)


def test_explicit_choices_are_kept(fake_gpu):
    fake_gpu(True)
    assert [resolve_precision(n, CUDA).name for n in ("bf16", "fp16", "fp32")] == ["bf16", "fp16", "fp32"]
    assert [resolve_precision(n, CPU).name for n in ("bf16", "fp16", "fp32")] == ["bf16", "fp16", "fp32"]


def test_config_and_cli_validate_the_name(tmp_path):
    assert TrainConfig(precision="fp16").precision == "fp16"
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp16, fp32"):
        TrainConfig(precision="fp8")
    proc = call_lab("train", "--precision", "fp8", cwd=tmp_path)
    assert proc.returncode == 2 and "precision must be one of" in proc.stderr and "Traceback" not in proc.stderr


class Amplify(nn.Module):
    """A linear layer whose output is multiplied by 1000: under fp16 autocast with the GradScaler's initial
    scale (65536) the gradient flowing back through it overflows fp16's range (65504), so the first steps' weight
    gradients are inf and the scaler must skip them, halving its scale each time, until they fit."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * 1000.0


def _blobs(n_batches: int, batch: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, 3, (batch,), generator=g)
        out.append((centres[y] + torch.randn(batch, 4, generator=g), y))
    return out


def _weights_after_each_step(precision: Precision, steps: int = 12):
    torch.manual_seed(0)
    model = Amplify()
    opt = make_optimizer(model, OptimizerConfig("sgd"), 1e-4)
    sched = OneCycle(opt, ScheduleConfig(max_lr=1e-4, epochs=1, peak_epoch=0.5), steps)
    initial = model.fc.weight.detach().clone()
    seen = []
    history, status = fit(model, opt, sched, _blobs(steps), _blobs(2, seed=1), 1, CPU, precision=precision,
                          callbacks=[lambda e: seen.append(model.fc.weight.detach().clone()) if e.kind == "step"
                                     else None])
    assert status == "done"
    return initial, seen, history


def test_fp16_training_runs_through_a_grad_scaler_that_skips_overflowing_steps():
    initial, seen, history = _weights_after_each_step(Precision("fp16", "cpu"))
    unchanged = [torch.equal(w, initial) for w in seen]
    assert unchanged[0], "the first fp16 step's gradients overflow: the scaler must skip it"
    assert not unchanged[-1], "once the scale has come down, steps update the weights"
    assert torch.isfinite(seen[-1]).all() and history[-1]["train_loss"] == history[-1]["train_loss"]


def test_fp32_takes_the_same_first_step():
    initial, seen, _ = _weights_after_each_step(Precision("fp32", "cpu"))
    assert not torch.equal(seen[0], initial)  # no scaler, no skipped step: the skip above is the scaler's doing


def test_fast_loader_batches_come_in_the_precision_dtype_and_channels_last():
    cfg = TrainConfig(batch_size=8, device="cpu", loader="fast", precision="bf16")
    train, test = build_loaders(cfg, make_cifar(), CPU, "fast", precision=resolve_precision("bf16", CPU))
    for batches in (train, test):
        x, _ = next(iter(batches))
        assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_a_run_records_its_precision(tmp_path):
    write_npz(tmp_path / "data", make_cifar())
    proc = call_lab("train", "--epochs", "2", "--width", "0.125", "--batch-size", "8", "--device", "cpu",
                    "--loader", "fast", "--precision", "fp16", "--data-dir", str(tmp_path / "data"),
                    "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["precision"] == "fp16" and doc["config"]["precision"] == "fp16"
