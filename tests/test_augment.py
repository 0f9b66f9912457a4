"""lab.augment, the albumentations pipelines (the reference semantics): shapes, crop, flip, CutOut, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab import augment
from lab.config import AugmentConfig
from lab.data import MEAN, STD, mean_pixel

MEAN_A = np.array(MEAN, dtype=np.float32)
STD_A = np.array(STD, dtype=np.float32)


def structured_image() -> np.ndarray:
    """Every pixel different from its mirror image and from the CutOut fill (values stay below 100)."""
    i, j, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    return ((i * 3 + j * 2 + c * 7) % 100).astype(np.uint8)


def normalized(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (3, H, W) float32, by the formula."""
    return ((img.astype(np.float32) / 255 - MEAN_A) / STD_A).transpose(2, 0, 1)


def fill_value() -> np.ndarray:
    return (np.array(mean_pixel(), dtype=np.float32) / 255 - MEAN_A) / STD_A


def test_train_pipeline_gives_a_normalized_chw_float_tensor():
    out = augment.train_pipeline(AugmentConfig(), seed=0)(image=structured_image())["image"]
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


@pytest.mark.parametrize("seed", range(5))
def test_cutout_hole_is_exactly_8x8_of_the_fill_and_the_flip_mirrors(seed):
    img = structured_image()
    cfg = AugmentConfig(pad=0, flip_p=1.0, cutout=8, cutout_p=1.0)
    out = augment.train_pipeline(cfg, seed=seed)(image=img)["image"].numpy()
    fill = fill_value()[:, None, None]
    in_hole = np.isclose(out, fill, atol=1e-5).all(axis=0)  # (32, 32)
    rows, cols = np.nonzero(in_hole)
    assert in_hole.sum() == 64
    assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7  # one 8×8 square, wholly inside
    expected = normalized(img[:, ::-1])  # the mirror image
    np.testing.assert_allclose(out[:, ~in_hole], expected[:, ~in_hole], atol=1e-5)


def test_cutout_position_varies():
    cfg = AugmentConfig(pad=0, flip_p=0.0, cutout=8, cutout_p=1.0)
    corners = set()
    for seed in range(8):
        out = augment.train_pipeline(cfg, seed=seed)(image=structured_image())["image"].numpy()
        rows, cols = np.nonzero(np.isclose(out, fill_value()[:, None, None], atol=1e-5).all(axis=0))
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 1


def test_cutout_fill_is_about_zero_after_normalization():
    assert np.abs(fill_value()).max() < 0.01


def test_no_flip_and_no_cutout_is_normalization_alone():
    cfg = AugmentConfig(pad=0, flip_p=0.0, cutout=0)
    img = structured_image()
    out = augment.train_pipeline(cfg, seed=0)(image=img)["image"].numpy()
    np.testing.assert_allclose(out, normalized(img), atol=1e-5)


def test_cutout_probability_zero_leaves_no_hole():
    cfg = AugmentConfig(pad=0, flip_p=0.0, cutout=8, cutout_p=0.0)
    img = structured_image()
    out = augment.train_pipeline(cfg, seed=0)(image=img)["image"].numpy()
    np.testing.assert_allclose(out, normalized(img), atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_padded_crop_is_a_32x32_window_of_the_reflect_padded_image(seed):
    img = structured_image()
    cfg = AugmentConfig(pad=4, flip_p=0.0, cutout=0)
    out = augment.augment_only(cfg, seed=seed)(image=img)["image"]
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")  # BORDER_REFLECT_101: no repeated edge
    windows = [(y, x) for y in range(9) for x in range(9) if np.array_equal(padded[y:y + 32, x:x + 32], out)]
    assert windows, "the output is no crop of the reflect-padded image"


def test_crops_vary_with_the_seed():
    cfg = AugmentConfig(pad=4, flip_p=0.0, cutout=0)
    outs = {augment.augment_only(cfg, seed=s)(image=structured_image())["image"].tobytes() for s in range(8)}
    assert len(outs) > 1


def test_test_pipeline_is_just_normalization():
    img = structured_image()
    out = augment.test_pipeline()(image=img)["image"]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), normalized(img), atol=1e-5)


def test_augment_only_is_the_train_pipeline_without_normalization():
    cfg = AugmentConfig()
    names = [type(t).__name__ for t in augment.augment_only(cfg).transforms]
    assert names == ["PadIfNeeded", "RandomCrop", "HorizontalFlip", "CoarseDropout"]
    out = augment.augment_only(cfg, seed=0)(image=structured_image())["image"]
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
