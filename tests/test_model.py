"""lab.model: the spec network's shapes, parameter count and layer structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lab.model import Net, ResLayer, count_parameters, flops_per_image, summary


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def test_logits_shape(net):
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_parameter_count(net):
    assert count_parameters(net) == 6_573_120


def test_stage_output_shapes(net):
    x = torch.randn(1, 3, 32, 32)
    shapes = []
    for stage in (net.prep, net.layer1, net.layer2, net.layer3, net.pool):
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 1, 1)]


def test_layer_structure(net):
    kinds = lambda seq: [type(m).__name__ for m in seq]  # noqa: E731
    assert kinds(net.prep) == ["Conv2d", "BatchNorm2d", "ReLU"]
    for pooled in (net.layer1.conv, net.layer2, net.layer3.conv):
        assert kinds(pooled) == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    for layer in (net.layer1, net.layer3):
        assert isinstance(layer, ResLayer)
        assert [kinds(block) for block in layer.res] == [["Conv2d", "BatchNorm2d", "ReLU"]] * 2
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 128, 128, 256, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    assert all(c.bias is None for c in convs) and net.fc.bias is None
    assert isinstance(net.pool, nn.MaxPool2d) and net.pool.kernel_size == 4
    assert (net.fc.in_features, net.fc.out_features) == (512, 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 8


def test_res_layer_adds_the_block_to_its_input(net):
    x = torch.randn(1, 64, 32, 32)
    with torch.no_grad():
        inner = net.layer1.conv(x)
        assert torch.allclose(net.layer1(x), inner + net.layer1.res(inner))


def test_predictions_are_the_softmax_of_the_logits(net):
    from lab.augment import Normalizer, to_chw_tensor
    from lab.insights import predict_proba

    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    p = predict_proba(net, images)
    with torch.no_grad():
        logits = net.eval()(Normalizer("cpu")(to_chw_tensor(images, "cpu"), torch.float32))
    assert p.shape == (3, 10) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.allclose(p, torch.softmax(logits, 1).numpy(), atol=1e-6)
    assert (p.argmax(1) == logits.argmax(1).numpy()).all()


@pytest.mark.parametrize("width, channels", [(0.25, [16, 32, 64, 128]), (0.5, [32, 64, 128, 256])])
def test_width_scales_the_channels(width, channels):
    small = Net(width=width)
    convs = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert [convs[0], convs[1], convs[4], convs[5]] == channels
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_summary_reports_the_parameter_count(net):
    text = summary(net)
    assert "6,573,120" in text
    assert "MaxPool2d" in text and "Linear" in text


def test_flops_match_the_layer_shapes(net):
    def conv(hw, c_in, c_out):
        return 2 * hw * hw * c_out * 9 * c_in

    expected = (conv(32, 3, 64) + conv(32, 64, 128) + 2 * conv(16, 128, 128) + conv(16, 128, 256)
                + conv(8, 256, 512) + 2 * conv(4, 512, 512) + 2 * 512 * 10)
    assert flops_per_image(net) == expected


def test_gradcam_layers_deepest_first(net):
    assert list(net.gradcam_layers) == ["layer3", "layer2", "layer1", "prep"]


def _saved_by_autograd(width: float) -> int:
    """What autograd keeps for the backward pass of one image, counted by torch's saved-tensor hooks (parameters
    left out; a tensor two layers save counts once)."""
    torch.manual_seed(0)
    net = Net(width=width).train()
    weights = {t.untyped_storage().data_ptr() for t in (*net.parameters(), *net.buffers())}
    saved = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(torch.zeros(1, 3, 32, 32))
    return sum(saved.values())


@pytest.mark.parametrize("width", [0.125, 0.3, 1.0, 2.0])
def test_the_activation_formula_is_what_autograd_saves(width):
    from lab.model import activation_bytes

    saved, largest = activation_bytes(width)
    assert saved == _saved_by_autograd(width)
    net = Net(width=width).eval()
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel() * o.element_size()))
             for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert largest == max(outputs)


@pytest.mark.parametrize("side", [8, 16, 20, 24])
def test_smaller_images_pool_over_their_whole_map(net, side):
    """Progressive resizing trains on smaller images: the final pool is then a max over the whole (smaller) map,
    as MaxPool(4) is over a 32 px image's 4×4 map."""
    torch.manual_seed(0)
    net.eval()
    x = torch.randn(2, 3, side, side)
    feats = net.layer3(net.layer2(net.layer1(net.prep(x))))
    expected = net.fc(feats.amax(dim=(2, 3)))
    assert torch.allclose(net(x), expected, atol=1e-6)
    full = torch.randn(2, 3, 32, 32)
    feats = net.layer3(net.layer2(net.layer1(net.prep(full))))
    assert torch.allclose(net(full), net.fc(torch.flatten(net.pool(feats), 1)))  # 32 px: the spec's MaxPool(4)
