"""lab.engine on a tiny model and a tiny synthetic batch stream: events, stop, divergence, evaluation."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from lab.config import OptimizerConfig, ScheduleConfig
from lab.engine import Diverged, Loss, evaluate, fit, make_optimizer, resize_batch, resolve_device
from lab.schedule import OneCycle, preview

CPU = torch.device("cpu")
STEP_KEYS = {"epoch", "step", "steps_per_epoch", "global_step", "total_steps", "loss", "acc", "lr", "images_per_s",
             "elapsed", "eta"}
EPOCH_KEYS = {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "train_seconds",
              "data_seconds", "images_per_s", "elapsed", "eta"}


def blobs(n_batches: int, batch: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three well-separated Gaussian blobs in 4-D: easy to learn."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, 3, (batch,), generator=g)
        out.append((centres[y] + torch.randn(batch, 4, generator=g), y))
    return out


def setup(epochs: int = 3, spe: int = 5, max_lr: float = 0.1, model: nn.Module | None = None):
    torch.manual_seed(0)
    model = model or nn.Linear(4, 3)
    opt = make_optimizer(model, OptimizerConfig("sgd"), max_lr)
    sched = OneCycle(opt, ScheduleConfig(max_lr=max_lr, epochs=epochs, peak_epoch=1), spe)
    return model, opt, sched, blobs(spe), blobs(2, seed=1)


def test_events_and_history():
    model, opt, sched, train, test = setup()
    events = []
    history, status = fit(model, opt, sched, train, test, 3, CPU, callbacks=[events.append])
    assert status == "done"
    steps = [e.data for e in events if e.kind == "step"]
    epochs = [e.data for e in events if e.kind == "epoch"]
    assert {e.kind for e in events} == {"step", "epoch"}
    assert len(steps) == 15 and len(epochs) == 3  # a step event every step on the CPU
    assert all(set(s) == STEP_KEYS for s in steps)
    assert all(set(e) == EPOCH_KEYS for e in epochs)
    assert [s["global_step"] for s in steps] == list(range(1, 16))
    assert [s["step"] for s in steps[:5]] == [1, 2, 3, 4, 5]
    assert steps[0]["total_steps"] == 15 and steps[0]["steps_per_epoch"] == 5
    assert steps[-1]["eta"] == 0.0
    # the last step of an epoch carries the accuracy its epoch record states
    assert [s["acc"] for s in steps if s["step"] == 5] == pytest.approx([e["train_acc"] for e in epochs])
    assert history == epochs
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    # the LR recorded is the one each step used: the schedule's
    expected = preview(ScheduleConfig(max_lr=0.1, epochs=3, peak_epoch=1), 5, optimizer="sgd")["lr"]
    assert [s["lr"] for s in steps] == pytest.approx(expected)
    assert steps[4]["lr"] == pytest.approx(0.1)
    assert epochs[-1]["lr"] == pytest.approx(0.1 / 25)


def test_the_loss_falls_and_accuracy_is_measured():
    model, opt, sched, train, test = setup(epochs=4)
    history, _ = fit(model, opt, sched, train, test, 4, CPU)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] >= 0.9
    for record in history:
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["test_acc"] <= 1
        assert math.isfinite(record["test_loss"]) and record["seconds"] > 0


def test_step_every_spaces_the_step_events():
    model, opt, sched, train, test = setup(epochs=2, spe=5)
    events = []
    fit(model, opt, sched, train, test, 2, CPU, callbacks=[events.append], step_every=3)
    # every third global step, plus each epoch's last step
    assert [e.data["global_step"] for e in events if e.kind == "step"] == [3, 5, 6, 9, 10]


def test_stop_is_honoured_between_steps():
    model, opt, sched, train, test = setup()
    stop = threading.Event()
    events = []

    def stop_after_seven(event):
        events.append(event)
        if event.kind == "step" and event.data["global_step"] == 7:
            stop.set()

    history, status = fit(model, opt, sched, train, test, 3, CPU, callbacks=[stop_after_seven], stop=stop)
    assert status == "stopped"
    assert [e.data["global_step"] for e in events if e.kind == "step"][-1] == 7
    assert len(history) == 1  # the first epoch finished, the second did not
    assert sched.steps_taken == 7


def test_stop_before_the_start_takes_no_step():
    model, opt, sched, train, test = setup()
    stop = threading.Event()
    stop.set()
    before = [p.clone() for p in model.parameters()]
    history, status = fit(model, opt, sched, train, test, 3, CPU, stop=stop)
    assert (history, status) == ([], "stopped")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * float("nan")


@pytest.mark.parametrize("step_every", [1, 4])
def test_nan_loss_raises_diverged(step_every):
    model, opt, sched, train, test = setup(model=NaNModel())
    with pytest.raises(Diverged, match="LR too high") as e:
        fit(model, opt, sched, train, test, 3, CPU, step_every=step_every)
    assert "epoch 1" in str(e.value) and "--max-lr" in str(e.value)


def test_huge_lr_diverges_with_lr_too_high():
    """An exploding loss (here: a deep product of weights at LR 1e6) ends the run, not a NaN history."""
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(6)], nn.Linear(4, 3))
    model, opt, sched, train, test = setup(max_lr=1e6, model=model)
    with pytest.raises(Diverged, match="LR too high"):
        fit(model, opt, sched, train, test, 3, CPU)


def test_evaluate_counts_loss_and_accuracy():
    class Fixed(nn.Module):  # predicts class 0 with logits (log 2, 0, 0) for every input
        def forward(self, x):
            return torch.tensor([[math.log(2), 0.0, 0.0]]).expand(len(x), 3)

    batches = [(torch.zeros(3, 4), torch.tensor([0, 1, 2])), (torch.zeros(1, 4), torch.tensor([0]))]
    result = evaluate(Fixed(), batches, CPU)
    assert result["acc"] == pytest.approx(2 / 4)
    # p(class 0) = 1/2, p(others) = 1/4
    assert result["loss"] == pytest.approx((2 * math.log(2) + 2 * math.log(4)) / 4)


def test_logit_scale_is_a_temperature_of_the_loss_only():
    class Fixed(nn.Module):  # logits (log 2, 0, 0) for every input
        def forward(self, x):
            return torch.tensor([[math.log(2), 0.0, 0.0]]).expand(len(x), 3)

    batches = [(torch.zeros(2, 4), torch.tensor([0, 1]))]
    plain, scaled = evaluate(Fixed(), batches, CPU), evaluate(Fixed(), batches, CPU, loss=Loss(scale=0.5))
    assert scaled["acc"] == plain["acc"] == 0.5  # the argmax does not change
    # logits × 0.5 = (log √2, 0, 0): p(class 0) = √2 / (√2 + 2), p(class 1) = 1 / (√2 + 2)
    z = math.sqrt(2) + 2
    assert scaled["loss"] == pytest.approx((math.log(z / math.sqrt(2)) + math.log(z)) / 2)
    # and training uses it: the same run with another scale takes other steps
    runs = []
    for scale in (1.0, 0.125):
        model, opt, sched, train, test = setup(epochs=2)
        fit(model, opt, sched, train, test, 2, CPU, loss=Loss(scale=scale))
        runs.append(model.weight.detach().clone())
    assert not torch.allclose(runs[0], runs[1])


def test_flip_tta_averages_each_image_with_its_mirror_beside_the_plain_figure():
    class LeftHalf(nn.Module):  # class 1 when the left half of the image is brighter, else class 0
        def forward(self, x):
            left, right = x[..., :2].mean((1, 2, 3)), x[..., 2:].mean((1, 2, 3))
            return torch.stack([right - left + 0.1, left - right], 1)

    x = torch.zeros(2, 1, 2, 4)
    x[0, ..., :2] = 1.0  # brighter left: plain says 1; with its mirror the two logits average to (0.1, 0)
    y = torch.tensor([0, 0])
    out = evaluate(LeftHalf(), [(x, y)], CPU, tta=True)
    assert out["acc"] == 0.5 and out["tta_acc"] == 1.0 and set(out) == {"loss", "acc", "tta_loss", "tta_acc"}
    model, opt, sched, _, _ = setup(epochs=2, spe=3, model=nn.Sequential(nn.Flatten(), nn.Linear(8, 2)))
    history, _ = fit(model, opt, sched, [(x, y)] * 3, [(x, y)], 2, CPU, tta=True)
    assert {"test_acc", "test_acc_tta", "test_loss_tta"} <= set(history[0])


def test_evaluate_restores_training_mode_and_rejects_no_batches():
    model = nn.Linear(4, 3).train()
    evaluate(model, blobs(1), CPU)
    assert model.training
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [], CPU)


def test_optimizer_presets():
    model = nn.Linear(4, 3)
    adam = make_optimizer(model, OptimizerConfig("adam"), 0.01)
    sgd = make_optimizer(model, OptimizerConfig("sgd"), 0.4)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 0
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="--device cpu"):
            resolve_device("cuda")


def test_resize_batch_scales_keeps_dtype_and_layout():
    x = torch.rand(4, 3, 32, 32).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    small = resize_batch(x, 20)
    assert small.shape == (4, 3, 20, 20) and small.dtype == torch.bfloat16
    assert small.is_contiguous(memory_format=torch.channels_last)
    assert resize_batch(x, 32) is x
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(resize_batch(flat, 16), torch.full((1, 3, 16, 16), 0.7))  # a scaled image, not a crop


def test_fit_trains_and_evaluates_each_epoch_at_its_side():
    seen: list[tuple[bool, int]] = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            seen.append((self.training, x.shape[-1]))
            return self.fc(x.mean(dim=(2, 3)))

    images = [(torch.rand(4, 3, 32, 32), torch.randint(0, 2, (4,))) for _ in range(2)]
    model = Recorder()
    opt = make_optimizer(model, OptimizerConfig(), 0.01)
    sched = OneCycle(opt, ScheduleConfig(epochs=3, max_lr=0.01), steps_per_epoch=2)
    history, _ = fit(model, opt, sched, images, images, 3, torch.device("cpu"),
                     image_side=lambda e: 16 if e <= 2 else 32)
    assert [side for training, side in seen if training] == [16, 16, 16, 16, 32, 32]
    assert [side for training, side in seen if not training] == [16, 16, 16, 16, 32, 32]  # 2 test batches an epoch
    assert [r["image_side"] for r in history] == [16, 16, 32]
