"""lab.insights: evaluation and Grad-CAM on a snapshot (uploads: test_server_uploads.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lab import insights as ins
from lab.data import CLASSES
from lab.model import Net


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net(width=0.125).eval()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ evaluation


def test_evaluation_confusion_and_per_class():
    probs = np.full((4, 10), 0.01)
    probs[0, 0] = probs[1, 1] = probs[2, 3] = probs[3, 2] = 0.9
    probs[3, 2] = 0.5
    ev = ins.Evaluation(np.array([0, 1, 2, 2]), probs)
    assert ev.accuracy == 0.75
    m = ev.confusion()
    assert m[2, 3] == 1 and m[2, 2] == 1 and m.sum() == 4
    assert ev.per_class_accuracy()["bird"] == 0.5
    assert list(ev.predictions) == [0, 1, 3, 2]  # index 3 is right (argmax 2)


def _evaluation():
    """Six images of classes 0, 0, 1, 1, 2, 3 with known probabilities: three mistakes, 1→0 twice."""
    labels = np.array([0, 0, 1, 1, 2, 3])
    probs = np.full((6, 10), 0.0)
    rows = {0: {0: 0.9, 1: 0.1}, 1: {0: 0.6, 2: 0.4}, 2: {0: 0.7, 1: 0.3}, 3: {0: 0.95, 1: 0.05},
            4: {2: 1.0}, 5: {3: 0.2, 5: 0.8}}
    for i, row in rows.items():
        for c, p in row.items():
            probs[i, c] = p
    return ins.Evaluation(labels, probs)


def test_losses_are_minus_log_p_of_the_true_class_and_never_inf():
    ev = _evaluation()
    assert ev.losses() == pytest.approx(-np.log([0.9, 0.6, 0.3, 0.05, 1.0, 0.2]))
    ev.probs[4, 2] = 0.0  # a probability that underflowed (bf16 softmax) gives a large, finite loss
    assert np.isfinite(ev.losses()).all() and ev.losses()[4] > 80


def test_top_losses_rank_by_loss_and_filter_by_pair():
    ev = _evaluation()
    assert list(ev.top_losses()) == [3, 5, 2, 1, 0, 4]  # losses 3.0, 1.6, 1.2, 0.51, 0.11, 0
    assert list(ev.top_losses(2)) == [3, 5]
    assert list(ev.top_losses(pair=(1, 0))) == [3, 2]  # the two 1 → 0 mistakes, the worse first
    assert list(ev.top_losses(pair=(3, 5))) == [5]
    assert len(ev.top_losses(pair=(4, 4))) == 0


def test_most_confused_counts_off_diagonal_pairs_most_first():
    ev = _evaluation()
    assert ev.most_confused() == [(1, 0, 2), (3, 5, 1)]
    assert ev.most_confused(min_count=2) == [(1, 0, 2)]
    perfect = ins.Evaluation(np.array([0, 1]), np.eye(10)[[0, 1]])
    assert perfect.most_confused() == []


def test_classify_is_sorted_probabilities(net, images):
    probs = ins.classify(net, images[0])
    assert list(probs) == sorted(probs, key=probs.get, reverse=True)
    assert set(probs) == set(CLASSES) and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert len(ins.classify(net, images[0], top_k=3)) == 3


# -------------------------------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize("layer", ins.CAM_LAYERS)
def test_gradcam_gives_one_normalised_32x32_map_per_image(net, images, layer):
    cams = ins.gradcam(net, images, [0, 1, 2], layer)
    assert cams.shape == (3, 32, 32) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1 and np.isfinite(cams).all()


@pytest.mark.parametrize("method", ins.CAM_METHODS)
def test_every_cam_method_is_its_pytorch_grad_cam_class(net, images, method, monkeypatch):
    import pytorch_grad_cam

    cls = getattr(pytorch_grad_cam, ins.CAM_METHODS[method].cls)
    used = []
    forward = cls.forward
    monkeypatch.setattr(cls, "forward", lambda self, *a, **k: used.append(type(self)) or forward(self, *a, **k))
    cams = ins.gradcam(net, images, [0, 1, 2], "layer2", method)
    assert used == [cls]
    assert cams.shape == (3, 32, 32) and cams.dtype == np.float32 and np.isfinite(cams).all()
    assert cams.min() >= 0 and cams.max() <= 1 and cams.max() > 0.5  # each map scaled to its own maximum
    other = ins.gradcam(net, images, [5, 5, 5], "layer2", method)
    # a method that reads gradients answers for the class asked; EigenCAM's map is the same for every class
    assert np.allclose(cams, other) == (not ins.CAM_METHODS[method].uses_target)


def test_methods_differ_from_one_another(net, images):
    maps = {m: ins.gradcam(net, images[:1], [3], "layer1", m) for m in ("gradcam", "gradcam++", "eigencam")}
    assert not np.allclose(maps["gradcam"], maps["gradcam++"]) and not np.allclose(maps["gradcam"], maps["eigencam"])


def test_cams_are_computed_in_fp32_on_a_reduced_precision_model(images):
    torch.manual_seed(0)
    half = Net(width=0.125).eval().to(torch.bfloat16)  # as a bf16-trained checkpoint might hold it
    cams = ins.gradcam(half, images, [0, 1, 2], "layer2")
    assert cams.dtype == np.float32 and np.isfinite(cams).all()
    # the same weights widened to fp32 give the same maps: nothing ran in bf16
    wide = copy.deepcopy(half).float()  # (Module.float() converts in place)
    assert np.allclose(cams, ins.gradcam(wide, images, [0, 1, 2], "layer2"), atol=1e-6)
    assert next(half.parameters()).dtype == torch.bfloat16  # the caller's model is left as it was


def test_gradcam_runs_on_a_snapshot_and_leaves_the_model_alone(images):
    model = Net(width=0.125).train()  # as a training thread would hold it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ins.gradcam(model, images, [1, 2, 3], "layer2")
    assert model.training  # not switched to eval
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # BN running stats untouched: no forward pass in train mode
        assert torch.equal(v, before[k]), k


def test_gradcam_depends_on_the_target_class(net, images):
    a = ins.gradcam(net, images[:1], [0], "layer1")
    b = ins.gradcam(net, images[:1], [7], "layer1")
    assert not np.allclose(a, b)


def test_gradcam_rejects_bad_input(net, images):
    with pytest.raises(ValueError, match="unknown Grad-CAM layer"):
        ins.gradcam(net, images, [0, 0, 0], "fc")
    with pytest.raises(ValueError, match="one target class per image"):
        ins.gradcam(net, images, [0], "layer3")
    with pytest.raises(ValueError, match="uint8"):
        ins.gradcam(net, images.astype(np.float32), [0, 0, 0])
    with pytest.raises(ValueError, match="unknown CAM method 'scorecam'"):
        ins.gradcam(net, images, [0, 0, 0], "layer3", "scorecam")
    assert ins.gradcam(net, images[:0], [], "layer3").shape == (0, 32, 32)


def test_snapshot_is_an_independent_eval_copy():
    model = Net(width=0.125).train()
    snap = ins.snapshot(model)
    assert not snap.training and model.training
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(model.parameters(), snap.parameters()))


def test_cam_overlay_blends_image_and_heat_map(images):
    cam = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    out = ins.cam_overlay(images[0], cam, opacity=0.5, size=128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    plain = ins.cam_overlay(images[0], cam, opacity=0.0, size=64)
    assert np.abs(plain.astype(int) - ins.upscale(images[0], 64).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="opacity"):
        ins.cam_overlay(images[0], cam, opacity=1.5)


def test_original_and_cam_puts_the_image_beside_its_overlay(images):
    cam = np.ones((32, 32), dtype=np.float32)
    out = ins.original_and_cam(images[0], cam, opacity=0.5, size=64, gap=4)
    assert out.shape == (64, 132, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :64], ins.upscale(images[0], 64))
    assert (out[:, 64:68] == 255).all()
    assert np.array_equal(out[:, 68:], ins.cam_overlay(images[0], cam, 0.5, 64))
