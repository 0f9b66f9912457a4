"""The fast (device-resident, batched) path must be the albumentations reference in distribution.

Every image here is the same "coordinate" picture: R = 8·x, G = 8·y, B = 128. From an augmented copy the crop
offset, the flip and the CutOut hole can be read back exactly (the hole is the only place where B = 114, the
mean colour's blue), so the two paths' random choices can be compared directly.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from lab import augment
from lab.config import AugmentConfig
from lab.data import MEAN, STD, mean_pixel
from lab.loaders import FastLoader, reference_loader

N = 3000
P_FLOOR = 1e-3  # a correct implementation fails a test at this level one time in a thousand


def coordinate_images(n: int) -> np.ndarray:
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([8 * x, 8 * y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return np.repeat(img[None], n, axis=0)


def to_uint8(batch: torch.Tensor) -> np.ndarray:
    """Undo Normalize: (B, 3, 32, 32) normalised → (B, 32, 32, 3) uint8."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x = (batch.float().cpu() * std + mean) * 255.0
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decode(img: np.ndarray) -> dict:
    """Crop offset, flip and hole of one augmented coordinate image (pad 4)."""
    hole = img[..., 2] == mean_pixel()[2]
    out = {"cut": bool(hole.any())}
    if hole.any():
        rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
        out.update(cy=rows[0], cx=cols[0], h=len(rows), w=len(cols), area=int(hole.sum()))
    # (12,12)-(12,13) and (20,20)-(20,21) cannot both lie in one 8×8 hole
    r, c = (12, 12) if not hole[12, 12:14].any() else (20, 20)
    g, a, b = int(img[r, c, 1]), int(img[r, c, 0]), int(img[r, c + 1, 0])
    out["flip"] = b < a
    out["oy"] = g // 8 - (r - 4)
    out["ox"] = a // 8 - (c - 4) - (31 - 2 * c if out["flip"] else 0)
    return out


def sample(kind: str, cfg: AugmentConfig, seed: int = 0) -> list[dict]:
    images, labels = coordinate_images(N), np.zeros(N, dtype=np.int64)
    if kind == "reference":
        batches = reference_loader(images, labels, 500, True, cfg, seed=seed, workers=0)
    else:
        batches = FastLoader(images, labels, 500, True, "cpu", cfg, seed=seed)
    return [decode(img) for x, _ in batches for img in to_uint8(x)]


@pytest.fixture(scope="module")
def cifar_train_sample(cifar10):
    return cifar10.x_train[:2000]


@pytest.fixture(scope="module")
def both():
    cfg = AugmentConfig(pad=4, flip_p=0.5, cutout=8, cutout_p=0.7)
    return cfg, sample("reference", cfg, seed=1), sample("fast", cfg, seed=1)


def _two_sample(a: list[int], b: list[int], values: range) -> float:
    table = np.array([[sum(1 for v in s if v == k) for k in values] for s in (a, b)])
    table = table[:, table.sum(0) > 0]
    return stats.chi2_contingency(table)[1]


@pytest.mark.parametrize("key", ["oy", "ox"])
def test_crop_offsets_uniform_and_equal(both, key):
    _, ref, fast = both
    for s in (ref, fast):
        values = [d[key] for d in s]
        assert min(values) == 0 and max(values) == 8
        counts = np.bincount(values, minlength=9)
        assert stats.chisquare(counts).pvalue > P_FLOOR
    assert _two_sample([d[key] for d in ref], [d[key] for d in fast], range(9)) > P_FLOOR


def test_flip_rate(both):
    cfg, ref, fast = both
    sigma = (cfg.flip_p * (1 - cfg.flip_p) / N) ** 0.5
    for s in (ref, fast):
        assert abs(np.mean([d["flip"] for d in s]) - cfg.flip_p) < 4 * sigma


def test_cutout_rate_size_and_position(both):
    cfg, ref, fast = both
    sigma = (cfg.cutout_p * (1 - cfg.cutout_p) / N) ** 0.5
    for s in (ref, fast):
        holes = [d for d in s if d["cut"]]
        assert abs(len(holes) / N - cfg.cutout_p) < 4 * sigma
        assert {(d["h"], d["w"], d["area"]) for d in holes} == {(8, 8, 64)}  # whole 8×8 holes, always inside
        for key in ("cy", "cx"):
            counts = np.bincount([d[key] for d in holes], minlength=25)
            assert len(counts) == 25 and stats.chisquare(counts).pvalue > P_FLOOR
    for key in ("cy", "cx"):
        assert _two_sample([d[key] for d in ref if d["cut"]], [d[key] for d in fast if d["cut"]], range(25)) > P_FLOOR


def test_flip_only_without_pad():
    cfg = AugmentConfig(pad=0, flip_p=1.0, cutout=0)
    img = coordinate_images(4)
    x = next(iter(FastLoader(img, np.zeros(4, dtype=np.int64), 4, True, "cpu", cfg)))[0]
    assert np.array_equal(to_uint8(x), img[:, :, ::-1])
    ref = augment.train_pipeline(cfg, seed=0)(image=img[0])["image"]
    assert np.array_equal(to_uint8(ref[None])[0], img[0, :, ::-1])


def test_per_channel_statistics_match_on_real_images(cifar_train_sample):
    images = cifar_train_sample[:2000]
    labels = np.zeros(len(images), dtype=np.int64)
    cfg = AugmentConfig()
    ref = torch.cat([x for x, _ in reference_loader(images, labels, 500, True, cfg, seed=0, workers=0)])
    fast = torch.cat([x for x, _ in FastLoader(images, labels, 500, True, "cpu", cfg, seed=0)])
    assert ref.shape == fast.shape == (len(images), 3, 32, 32)
    for dims in [(0, 2, 3)]:
        assert torch.allclose(ref.mean(dims), fast.mean(dims), atol=0.02)
        assert torch.allclose(ref.std(dims), fast.std(dims), atol=0.02)


def test_test_batches_equal_reference_exactly(cifar_train_sample):
    images = cifar_train_sample[:300]
    labels = np.arange(300) % 10
    ref = torch.cat([x for x, _ in reference_loader(images, labels, 128, False, workers=0)])
    fast_batches = list(FastLoader(images, labels, 128, False, "cpu"))
    fast = torch.cat([x for x, _ in fast_batches])
    assert torch.allclose(ref, fast, atol=1e-5)
    assert torch.equal(torch.cat([y for _, y in fast_batches]), torch.from_numpy(labels))


def test_fixed_seed_repeats_and_other_seed_differs():
    images = coordinate_images(64)
    labels = np.arange(64) % 10

    def first(seed):
        return next(iter(FastLoader(images, labels, 32, True, "cpu", seed=seed)))

    (a, ya), (b, yb), (c, _) = first(3), first(3), first(4)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)


def test_epochs_differ_and_cover_every_image_once():
    images = coordinate_images(100)
    labels = np.arange(100)
    loader = FastLoader(images, labels, 32, True, "cpu", seed=0)
    assert len(loader) == 4
    e1 = torch.cat([y for _, y in loader])
    e2 = torch.cat([y for _, y in loader])
    assert sorted(e1.tolist()) == list(range(100)) == sorted(e2.tolist())
    assert not torch.equal(e1, e2)


def test_dtype_and_memory_format():
    loader = FastLoader(coordinate_images(8), np.zeros(8, dtype=np.int64), 8, True, "cpu",
                        dtype=torch.bfloat16, channels_last=True)
    x, _ = next(iter(loader))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_reference_workers_draw_different_augmentations_repeatably():
    # identical images: any two equal batches would mean two workers replay one augmentation stream
    images, labels = coordinate_images(16), np.zeros(16, dtype=np.int64)

    def batches():
        return [x for x, _ in reference_loader(images, labels, 4, True, AugmentConfig(), seed=5, workers=2)]

    first = batches()
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(a, b) for a, b in zip(first, batches()))
