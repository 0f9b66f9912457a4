"""The augmentation, twice: albumentations pipelines (the reference semantics) and the same ops on batches of
device tensors (the fast path).

Training: pad by `pad` pixels, reflecting the image (OpenCV BORDER_REFLECT_101 = torch's 'reflect': the edge
pixel is not repeated) → random 32×32 crop → horizontal flip with probability `flip_p` → CutOut: with
probability `cutout_p`, one `cutout`×`cutout` hole, wholly inside the image at a uniform position, filled with
the dataset's mean colour (so it is ~0 after normalisation) → Normalize(MEAN, STD) → CHW float tensor.
Test: Normalize → tensor.
"""

from __future__ import annotations

import numpy as np
import torch

from lab.config import AugmentConfig
from lab.data import MEAN, STD, mean_pixel

IMAGE_SIZE = 32


def train_pipeline(cfg: AugmentConfig, seed: int | None = None):
    """The albumentations training pipeline (HWC uint8 RGB in, CHW float32 tensor out)."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    ops = []
    if cfg.pad:
        size = IMAGE_SIZE + 2 * cfg.pad
        ops += [
            A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(height=IMAGE_SIZE, width=IMAGE_SIZE),
        ]
    ops.append(A.HorizontalFlip(p=cfg.flip_p))
    if cfg.cutout:
        ops.append(
            A.CoarseDropout(
                num_holes_range=(1, 1),
                hole_height_range=(cfg.cutout, cfg.cutout),
                hole_width_range=(cfg.cutout, cfg.cutout),
                fill=mean_pixel(),
                p=cfg.cutout_p,
            )
        )
    ops += [A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0), ToTensorV2()]
    return A.Compose(ops, seed=seed)


def test_pipeline():
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    return A.Compose([A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0), ToTensorV2()])


def augment_only(cfg: AugmentConfig, seed: int | None = None):
    """The training pipeline without Normalize/ToTensor: uint8 HWC in and out, for previews."""
    import albumentations as A

    return A.Compose(list(train_pipeline(cfg, seed).transforms)[:-2], seed=seed)


# ----------------------------------------------------------------------------------------------- fast path


class Normalizer:
    """Per-channel constants on the device, made once: building them per batch with torch.tensor(...,
    device=cuda) is a pageable host→device copy, which waits for the GPU's queue to drain — a hidden sync
    that stalls the pipeline every batch."""

    def __init__(self, device: torch.device | str):
        mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        # normalised = uint8 * scale + shift
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std
        # CutOut's fill (the mean colour, rounded to uint8 as albumentations fills it), normalised
        self.fill = torch.tensor(mean_pixel(), device=device, dtype=torch.float32).view(1, 3, 1, 1) * self.scale + self.shift

    def __call__(self, images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """uint8 (B, 3, 32, 32) → normalised `dtype`: the test pipeline on tensors."""
        return (images.float() * self.scale + self.shift).to(dtype)


def to_chw_tensor(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 HWC → (N, 3, 32, 32) uint8 on the device."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).contiguous()


def draw_params(n: int, cfg: AugmentConfig, generator: torch.Generator, device) -> dict[str, torch.Tensor]:
    """Every random choice of one epoch's augmentation at once: crop offsets, flips, CutOut holes."""
    hi = 2 * cfg.pad + 1
    hole_hi = IMAGE_SIZE - cfg.cutout + 1
    r = lambda high: torch.randint(0, high, (n,), generator=generator, device=device)  # noqa: E731
    u = lambda: torch.rand(n, generator=generator, device=device)  # noqa: E731
    return {
        "oy": r(hi), "ox": r(hi),
        "flip": u() < cfg.flip_p,
        "cy": r(hole_hi), "cx": r(hole_hi),
        "cut": (u() < cfg.cutout_p) if cfg.cutout else torch.zeros(n, dtype=torch.bool, device=device),
    }


def crop_flip(padded: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """One gather: a 32×32 crop at (oy, ox) of each padded image, mirrored where flip is set."""
    ar = torch.arange(IMAGE_SIZE, device=padded.device)
    rows = oy[:, None] + ar  # (B, 32)
    cols = ox[:, None] + torch.where(flip[:, None], IMAGE_SIZE - 1 - ar, ar)
    b = torch.arange(padded.shape[0], device=padded.device)[:, None, None, None]
    c = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def cutout_mask(cy: torch.Tensor, cx: torch.Tensor, cut: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, 32, 32) bool: True inside each image's hole."""
    ar = torch.arange(IMAGE_SIZE, device=cy.device)
    in_rows = (ar >= cy[:, None]) & (ar < cy[:, None] + size)
    in_cols = (ar >= cx[:, None]) & (ar < cx[:, None] + size)
    return (in_rows[:, :, None] & in_cols[:, None, :] & cut[:, None, None])[:, None]


def augment_batch(
    padded: torch.Tensor, params: dict[str, torch.Tensor], cfg: AugmentConfig, norm: Normalizer, dtype: torch.dtype
) -> torch.Tensor:
    """Padded uint8 batch + its drawn params → normalised, augmented batch in `dtype`."""
    if cfg.pad:
        x = crop_flip(padded, params["oy"], params["ox"], params["flip"])
    else:  # no crop: the flip alone
        x = torch.where(params["flip"][:, None, None, None], padded.flip(3), padded)
    x = x.float() * norm.scale + norm.shift
    if cfg.cutout:
        x = torch.where(cutout_mask(params["cy"], params["cx"], params["cut"], cfg.cutout), norm.fill, x)
    return x.to(dtype)
