"""The bundled checkpoint loads on the CPU and reproduces its recorded accuracy."""

import json

import pytest
import torch

from lab import insights
from lab.model import Net, count_parameters
from lab.runs import PRETRAINED_CHECKPOINT, PRETRAINED_METRICS, load_checkpoint


def test_checkpoint_is_small_fp16_and_the_spec_network():
    assert PRETRAINED_CHECKPOINT.stat().st_size <= 15 * 1024 * 1024
    doc = torch.load(PRETRAINED_CHECKPOINT, map_location="cpu", weights_only=True)
    floats = [v for v in doc["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    model, cfg, _ = load_checkpoint(PRETRAINED_CHECKPOINT)
    assert cfg.width == 1.0 and cfg.batch_size == 512 and cfg.schedule.epochs == 24
    assert count_parameters(model) == count_parameters(Net()) == 6_573_120


def test_reproduces_recorded_accuracy_on_first_1000_test_images(cifar10):
    recorded = json.loads(PRETRAINED_METRICS.read_text())
    assert recorded["test_images"] == 10_000 and recorded["test_acc"] >= 0.93
    data = cifar10
    assert data.sha256 == recorded["data_sha256"]  # the same pixels and labels it was trained and measured on
    model, _, _ = load_checkpoint(PRETRAINED_CHECKPOINT, "cpu")
    acc = insights.evaluate(model, data.x_test[:1000], data.y_test[:1000], "cpu").accuracy
    assert abs(acc - recorded["test_acc_first_1000"]) <= 0.005
