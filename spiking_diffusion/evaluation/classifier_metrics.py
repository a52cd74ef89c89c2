"""Offline metrics in the feature space of our own small classifier (:mod:`spiking_diffusion.classifier`).

Against the test split: Fréchet distance of the 128-d features, precision / recall (k-NN manifolds),
the share of confidently classified samples and the class-coverage entropy. The same metrics of
real held-out images at the same sample count give the floor of each figure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metrics as M


@dataclass
class Reference:
    """Classifier features of the test split: all ``[N,F]``, their stats, and a seeded order."""

    feats: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    order: np.ndarray

    @classmethod
    def of(cls, clf, test_images, seed: int = 0) -> "Reference":
        feats, _ = clf.embed(test_images)
        return cls(feats, *M.feature_stats(feats), np.random.default_rng(seed).permutation(len(feats)))


def classifier_metrics(clf, images, ref: Reference, k: int = 3) -> dict:
    """Images (uint8 NHWC or float NCHW) -> {n, fd, precision, recall, confident_share, class_entropy}.
    Precision/recall use as many test images as there are samples (the k-NN radii depend on N)."""
    feats, probs = clf.embed(images)
    n = len(feats)
    real = ref.feats[ref.order[:min(n, len(ref.feats))]]
    p, r = M.precision_recall(real, feats, k)
    return {"n": n, "fd": M.frechet_distance(ref.mu, ref.sigma, *M.feature_stats(feats)), "precision": p,
            "recall": r, "confident_share": M.confident_share(probs, 0.9),
            "class_entropy": M.class_coverage_entropy(probs.argmax(1), clf.cfg.num_classes)}


def few_samples_message(n: int, dim: int, floor: float | None = None, floor_n: int | None = None) -> str:
    """The warning for a Fréchet distance from ``n`` <= ``dim`` samples, with the real-data floor."""
    text = (f"only {n} samples for {dim}-d classifier features: the Fréchet distance comes from a singular "
            "covariance and measures the estimate's noise more than the model")
    if floor is not None:
        text += f" (real held-out images at n={floor_n} give {floor:.2f}, the floor at this count)"
    return text + f"; use --num-samples {dim + 1} or more (thousands for a figure to quote)"
