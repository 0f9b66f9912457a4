"""Batch streams. Both kinds yield (images, labels) and have a length, so the engine cannot tell them apart.

- reference: a torch DataLoader over the albumentations pipelines, one image at a time on the CPU. The
  semantics every other path is checked against.
- fast: the uint8 dataset lives on the device (150 MB for all of CIFAR-10); each batch is cropped, flipped,
  cut out and normalised by a handful of batched tensor ops, and the epoch is shuffled on the device. On a GPU
  this removes the data pipeline from the critical path; it runs on the CPU too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lab import augment
from lab.config import AugmentConfig, TrainConfig

EVAL_BATCH = 1024  # evaluation holds no activations for backward: a larger batch is cheaper per image


def choose_loader(cfg: TrainConfig, device: torch.device) -> str:
    """The kind of batch stream a run of `cfg` uses on `device`: its own choice, or for "auto" the fast loader on
    CUDA and the reference one elsewhere."""
    if cfg.loader != "auto":
        return cfg.loader
    return "fast" if device.type == "cuda" else "reference"


class AlbumentationsDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(image=self.images[i])["image"], int(self.labels[i])


def _seed_worker(_worker_id: int) -> None:
    """Give each worker process its own augmentation stream. albumentations keeps its RNG inside the Compose,
    which every worker inherits as a copy: unseeded, all workers would replay the same crops, flips and holes.
    torch's per-worker seed derives from the loader's seeded generator, so runs stay repeatable."""
    info = torch.utils.data.get_worker_info()
    transform = info.dataset.transform
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(info.seed % 2**32)


def default_workers() -> int:
    """Loader processes: leave a core to the training loop, and fork none on a 1–2 core machine."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


def reference_loader(
    images: np.ndarray, labels: np.ndarray, batch_size: int, train: bool, cfg: AugmentConfig | None = None,
    seed: int = 0, workers: int | None = None, pin_memory: bool = False,
) -> DataLoader:
    transform = augment.train_pipeline(cfg or AugmentConfig(), seed=seed) if train else augment.test_pipeline()
    workers = default_workers() if workers is None else workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        AlbumentationsDataset(images, labels, transform),
        batch_size=batch_size,
        shuffle=train,
        generator=generator,
        num_workers=workers,
        worker_init_fn=_seed_worker if workers > 0 else None,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=False,
    )


class FastLoader:
    """Device-resident batches; each pass over it is one epoch with fresh augmentation."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, batch_size: int, train: bool, device: torch.device | str,
        cfg: AugmentConfig | None = None, seed: int = 0, dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ):
        self.device = torch.device(device)
        self.cfg = cfg or AugmentConfig()
        self.batch_size, self.train, self.dtype, self.channels_last = batch_size, train, dtype, channels_last
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        if train and self.cfg.pad:
            # reflect-pad once, up front, in uint8 on the host: numpy's "reflect" is OpenCV's BORDER_REFLECT_101
            # (the edge pixel is not repeated), as in the reference pipeline. (torch's reflect pad wants floats:
            # a 1 GB float copy of the training set, ~3× slower on a CPU.)
            p = self.cfg.pad
            images = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        self.images = augment.to_chw_tensor(images, self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.norm = augment.Normalizer(self.device)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if not self.train:
            for i in range(0, n, self.batch_size):
                x = self.norm(self.images[i:i + self.batch_size], self.dtype)
                yield self._finish(x), self.labels[i:i + self.batch_size]
            return
        order = torch.randperm(n, generator=self.generator, device=self.device)
        params = augment.draw_params(n, self.cfg, self.generator, self.device)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            batch_params = {k: v[i:i + self.batch_size] for k, v in params.items()}
            x = augment.augment_batch(self.images[idx], batch_params, self.cfg, self.norm, self.dtype)
            yield self._finish(x), self.labels[idx]
