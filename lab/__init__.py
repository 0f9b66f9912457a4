"""CIFAR-10 super-convergence lab: a headless core (data → augmentation → model → schedule → engine → runs)."""

__version__ = "0.1.0"
