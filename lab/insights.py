"""What a trained model gets right and wrong: predictions, per-class accuracy, confusion matrix, misclassified.

Everything here works on a model snapshot in eval mode and on uint8 HWC images, so callers never touch the
normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
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

    def misclassified(self, limit: int | None = None) -> np.ndarray:
        """Indices of wrong predictions, most confident mistakes first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        order = np.argsort(-self.probs[wrong].max(1), kind="stable")
        return wrong[order][:limit]


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device | str = "cpu") -> Evaluation:
    return Evaluation(np.asarray(labels), predict_proba(model, images, device))
