"""The spec network: a ResNet-9-style net (David Page's "DAWNBench" design).

    PrepLayer  Conv3×3(64) → BN → ReLU                                      32×32
    Layer1     X = Conv3×3(128) → MaxPool2 → BN → ReLU;  out = X + ResBlock(X)  16×16
    Layer2     Conv3×3(256) → MaxPool2 → BN → ReLU                            8×8
    Layer3     X = Conv3×3(512) → MaxPool2 → BN → ReLU;  out = X + ResBlock(X)  4×4
    MaxPool(4) → FC(512 → 10)

ResBlock = Conv-BN-ReLU-Conv-BN-ReLU at constant width. Convolutions carry no bias (BN follows each), and the
FC layer carries none either: 6,573,120 parameters at width 1. `forward` returns logits (the loss takes
logits); predictions apply the SoftMax to them (lab.insights.predict_proba).
"""

from __future__ import annotations

import torch
from torch import nn

from lab.data import CLASSES


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ResBlock(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(conv_bn(channels, channels), conv_bn(channels, channels))


class ResLayer(nn.Module):
    """X = Conv → MaxPool → BN → ReLU; out = X + ResBlock(X)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv_bn(c_in, c_out, pool=True)
        self.res = ResBlock(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x + self.res(x)


def channels(width: float = 1.0) -> list[int]:
    """The four stages' channels at a width multiplier (64, 128, 256, 512 at width 1)."""
    return [max(1, round(n * width)) for n in (64, 128, 256, 512)]


class Net(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = len(CLASSES)):
        super().__init__()
        c = channels(width)
        self.width = width
        self.prep = conv_bn(3, c[0])
        self.layer1 = ResLayer(c[0], c[1])
        self.layer2 = conv_bn(c[1], c[2], pool=True)
        self.layer3 = ResLayer(c[2], c[3])
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(c[3], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        # A 32 px image leaves a 4×4 map, and the spec's MaxPool(4) is a max over all of it. Progressive resizing's
        # smaller training images (TrainConfig.low_res) leave a smaller map: the same max over the whole map.
        x = self.pool(x) if x.shape[-1] == 4 else torch.amax(x, dim=(2, 3), keepdim=True)
        return self.fc(torch.flatten(x, 1))

    @property
    def gradcam_layers(self) -> dict[str, nn.Module]:
        """Layers worth a Grad-CAM, deepest first (4×4, 8×8, 16×16, 32×32 maps)."""
        return {"layer3": self.layer3, "layer2": self.layer2, "layer1": self.layer1, "prep": self.prep}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summary(model: nn.Module | None = None, batch_size: int = 1) -> str:
    """A layer table with output shapes and parameter counts (torchinfo)."""
    from torchinfo import summary as torchinfo_summary

    model = model if model is not None else Net()
    stats = torchinfo_summary(
        model,
        input_size=(batch_size, 3, 32, 32),
        col_names=("output_size", "num_params"),
        depth=3,
        device="cpu",
        verbose=0,
    )
    return str(stats)


def describe(width: float = 1.0) -> str:
    """The layer table of the network at `width` and its parameter count: what `python -m lab summary` prints
    and the app's Train tab shows."""
    model = Net(width=width)
    return (f"{summary(model)}\n{count_parameters(model):,} parameters at width {width:g} (convolutions and the "
            "FC layer carry no bias)")


def flops_per_image(model: nn.Module) -> int:
    """Multiply-adds ×2 of one forward pass, counted from the conv and linear layers' shapes."""
    total = 0
    hooks = []

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += 2 * out[0].numel() * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += 2 * out[0].numel() * m.in_features

    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32, device=p.device, dtype=p.dtype))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total


def activation_bytes(width: float = 1.0) -> tuple[int, int]:
    """(bytes one training image's forward pass keeps for the backward pass, bytes of the largest single layer
    output), in fp32, at this width; lab.estimate.peak_memory turns them into a peak.

    A formula from the layer shapes, per image, in floats (4 bytes; a max-pool's int64 indices count as 2):
    the input image; per Conv-BN-ReLU block, the conv's output (BN's input) and the ReLU's output (the next
    conv's input — one tensor, saved once), and with a pool the conv's full-size output (the pool's input), the
    pooled output and its indices; each residual sum (the next layer's input); the final 4×4 pool's output and
    indices; and each BN's saved mean and inverse std (per channel: counted per image, a slight over-count).
    tests/test_model.py checks it against what autograd actually saves (torch's saved-tensor hooks) at several
    widths: 3,214,848 bytes at width 1, 0.41 MB at width 0.125, 6.4 MB at width 2.
    """
    c0, c1, c2, c3 = channels(width)

    def block(c: int, side: int, pool: bool) -> int:  # `side`: the block's output side
        if pool:
            return c * (2 * side) ** 2 + c * side * side * (1 + 2 + 1)
        return 2 * c * side * side

    floats = (3 * 32 * 32
              + block(c0, 32, False)
              + block(c1, 16, True) + 2 * block(c1, 16, False) + c1 * 16 * 16
              + block(c2, 8, True)
              + block(c3, 4, True) + 2 * block(c3, 4, False) + c3 * 4 * 4
              + c3 * (1 + 2)
              + 2 * (c0 + 3 * c1 + c2 + 3 * c3))  # the eight BNs' mean and inverse std
    return 4 * floats, 4 * max(c0, c1) * 32 * 32
