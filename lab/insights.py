"""What a trained model gets right and wrong: predictions, per-class accuracy, confusion matrix, the images
with the highest loss and the most confused class pairs (fastai's Interpretation), class activation maps
(pytorch-grad-cam: Grad-CAM, Grad-CAM++, EigenCAM, …).

Everything here works on a model snapshot in eval mode and on uint8 HWC arrays, so callers never touch the
normalisation; it takes arrays, never files (a stranger's upload becomes an array in lab.server.uploads).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from lab.augment import Normalizer, to_chw_tensor
from lab.data import CLASSES
from lab.engine import autocast_for


@torch.no_grad()
def predict_proba(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu",
                  batch_size: int = 1000) -> np.ndarray:
    """(N, 10) class probabilities for (N, 32, 32, 3) uint8 images."""
    device = torch.device(device)
    model.eval()
    norm = Normalizer(device)
    out = []
    for i in range(0, len(images), batch_size):
        x = norm(to_chw_tensor(images[i:i + batch_size], device), torch.float32)
        with autocast_for(device):
            out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(CLASSES)), dtype=np.float32)


@dataclass
class Evaluation:
    labels: np.ndarray  # (N,)
    probs: np.ndarray  # (N, 10)

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean())

    def confusion(self) -> np.ndarray:
        """(10, 10) counts: row = true class, column = predicted class."""
        m = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
        np.add.at(m, (self.labels, self.predictions), 1)
        return m

    def per_class_accuracy(self) -> dict[str, float]:
        m = self.confusion()
        totals = m.sum(1)
        return {c: (float(m[i, i] / totals[i]) if totals[i] else float("nan")) for i, c in enumerate(CLASSES)}

    def losses(self) -> np.ndarray:
        """(N,) cross-entropy of each image, −log p(true class): what training minimises, image by image.
        p is floored at the smallest positive float32, so a probability that underflowed to 0 (possible under
        bf16 autocast) reads as a large finite loss (~87), not inf."""
        p = self.probs[np.arange(len(self.labels)), self.labels].astype(np.float64)
        return -np.log(np.maximum(p, np.finfo(np.float32).tiny))

    def top_losses(self, k: int | None = None, pair: tuple[int, int] | None = None) -> np.ndarray:
        """Indices of the k images with the highest loss, highest first (fastai's Interpretation.top_losses).
        With pair=(true class, predicted class), only the images of that confusion."""
        losses = self.losses()
        idx = np.arange(len(losses))
        if pair is not None:
            true, pred = pair
            idx = np.flatnonzero((self.labels == true) & (self.predictions == pred))
        order = np.argsort(-losses[idx], kind="stable")
        return idx[order][:k]

    def most_confused(self, min_count: int = 1) -> list[tuple[int, int, int]]:
        """(true class, predicted class, count) for every off-diagonal cell of the confusion matrix holding at
        least min_count images, most frequent first (fastai's Interpretation.most_confused; class indices here,
        CLASSES[i] names them)."""
        m = self.confusion()
        np.fill_diagonal(m, 0)
        true, pred = np.nonzero(m >= max(1, int(min_count)))
        pairs = sorted(zip(true.tolist(), pred.tolist(), m[true, pred].tolist()), key=lambda t: (-t[2], t[0], t[1]))
        return [(int(t), int(p), int(c)) for t, p, c in pairs]


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device | str = "cpu") -> Evaluation:
    return Evaluation(np.asarray(labels), predict_proba(model, images, device))


# ------------------------------------------------------------------------------------- class activation maps

CAM_LAYERS = ("layer3", "layer2", "layer1", "prep")  # Net.gradcam_layers, deepest first


@dataclass(frozen=True)
class CamMethod:
    label: str  # as the app shows it
    cls: str  # the pytorch_grad_cam class
    about: str  # one line for a learner: what the map is made of
    uses_target: bool = True  # False: the map is the same whatever class is asked for


# The methods that cost one forward and (at most) one backward pass per batch. The perturbation methods
# (ScoreCAM, AblationCAM) run one forward pass per channel of the layer — 512 at layer3, so 512 × the images —
# which no request to a shared CPU server should be able to ask for; FullGrad needs every layer's bias, which
# this network's convolutions do not have.
CAM_METHODS: dict[str, CamMethod] = {
    "gradcam": CamMethod("Grad-CAM", "GradCAM", "channels weighted by their mean gradient"),
    "gradcam++": CamMethod("Grad-CAM++", "GradCAMPlusPlus", "Grad-CAM with second-order weights: several objects "
                           "of a class show up better"),
    "xgradcam": CamMethod("XGrad-CAM", "XGradCAM", "gradients weighted by the activations, normalised"),
    "hirescam": CamMethod("HiResCAM", "HiResCAM", "activation × gradient element-wise: exactly what raised the score"),
    "layercam": CamMethod("LayerCAM", "LayerCAM", "positive gradients at each position: finer maps at shallow layers"),
    "eigencam": CamMethod("EigenCAM", "EigenCAM", "first principal component of the activations: no gradient, the "
                          "same map for every class", uses_target=False),
    "eigengradcam": CamMethod("EigenGrad-CAM", "EigenGradCAM", "first principal component of activation × gradient"),
}


def snapshot(model: nn.Module) -> nn.Module:
    """A deep copy of the model in eval mode, on the CPU, in fp32, with gradients on: what the CAMs and
    inspection use, never the model a training thread is updating."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    snap = copy.deepcopy(model).to("cpu").float().eval()
    for p in snap.parameters():
        p.requires_grad_(True)
    return snap


def gradcam(model: nn.Module, images: np.ndarray, targets: Sequence[int], layer: str = "layer3",
            method: str = "gradcam") -> np.ndarray:
    """(N, 32, 32) class activation maps in [0, 1] for (N, 32, 32, 3) uint8 images, one target class per image.

    `method` is a key of CAM_METHODS (Grad-CAM by default), each a pytorch-grad-cam class run on a snapshot of
    `model` (so the caller's model is never hooked or switched to eval) at one of Net.gradcam_layers: layer3
    (4×4 map, most semantic) … prep (32×32, edges). Computed in fp32 with autocast off: gradients of a bf16
    model would be too coarse to rank pixels, and a checkpoint trained in bf16 loads as such."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(f"gradcam wants (N, 32, 32, 3) uint8 images, got {images.shape} {images.dtype}")
    if len(targets) != len(images):
        raise ValueError(f"gradcam wants one target class per image, got {len(targets)} for {len(images)}")
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    if len(images) == 0:
        return np.zeros((0, 32, 32), dtype=np.float32)
    snap = snapshot(model)
    layers = snap.gradcam_layers
    if layer not in layers:
        raise ValueError(f"unknown Grad-CAM layer {layer!r}; choose one of {', '.join(layers)}")
    cam_class = getattr(pytorch_grad_cam, CAM_METHODS[method].cls)
    x = Normalizer("cpu")(to_chw_tensor(images, "cpu"), torch.float32)
    with torch.enable_grad(), torch.autocast("cpu", enabled=False), \
            cam_class(model=snap, target_layers=[layers[layer]]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.nan_to_num(np.asarray(maps, dtype=np.float32)).clip(0, 1)


def upscale(image: np.ndarray, size: int = 128) -> np.ndarray:
    """A 32×32 uint8 image blown up with nearest-neighbour: every pixel the network sees, as a square."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST))


def cam_overlay(image: np.ndarray, cam: np.ndarray, opacity: float = 0.5, size: int = 128) -> np.ndarray:
    """The CAM as a jet heat map over the (nearest-upscaled) image: uint8 (size, size, 3). opacity 0 shows only
    the image, 1 only the heat map (pytorch_grad_cam.utils.image.show_cam_on_image)."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity!r}")
    big = upscale(image, size).astype(np.float32) / 255.0
    cam_big = cv2.resize(np.asarray(cam, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(big, cam_big.clip(0, 1), use_rgb=True, image_weight=1.0 - float(opacity))


def original_and_cam(image: np.ndarray, cam: np.ndarray, opacity: float = 0.5, size: int = 128,
                     gap: int = 4) -> np.ndarray:
    """The image and its CAM overlay side by side, a white gap between: uint8 (size, 2·size + gap, 3). The heat
    map hides what it sits on, so the original is shown beside it."""
    out = np.full((size, 2 * size + gap, 3), 255, dtype=np.uint8)
    out[:, :size] = upscale(image, size)
    out[:, size + gap:] = cam_overlay(image, cam, opacity, size)
    return out


def classify(model: nn.Module, image: np.ndarray, top_k: int | None = None) -> dict[str, float]:
    """Class → probability for one (32, 32, 3) uint8 image, most likely first (the top_k of them when given)."""
    probs = predict_proba(model, np.asarray(image, dtype=np.uint8)[None])[0]
    order = np.argsort(-probs)[:top_k]
    return {CLASSES[i]: float(probs[i]) for i in order}
