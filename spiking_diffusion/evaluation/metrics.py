"""Evaluation metrics as pure functions on numpy arrays / tensors (no models, no files).

Distribution metrics (on feature vectors): Fréchet distance, precision / recall (k-NN manifolds),
and when a Fréchet distance from few samples means little (:func:`too_few_for_frechet`).
Classifier metrics: confident share, class-coverage entropy. Model metrics: codebook usage (overall
and per latent position), SSIM. The energy account lives in :mod:`.energy`.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F


IMAGINARY_TOLERANCE = 1e-3  # frechet_distance: rounding noise allowed in the root's diagonal, relative


# --- distributions of features ---------------------------------------------------------------
def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, F]`` -> (mean ``[F]``, covariance ``[F, F]``), float64."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need features shaped [N>=2, F]; got {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``||mu1 - mu2||^2 + Tr(s1 + s2 - 2 (s1 s2)^(1/2))``.

    The root of the product is taken with ``scipy.linalg.sqrtm``; imaginary parts left by rounding
    are dropped, and a root whose diagonal is complex beyond ``IMAGINARY_TOLERANCE`` times its largest
    real diagonal entry (times 1 when that is smaller) raises ``ValueError`` instead of giving a wrong
    distance. The product of two covariance
    matrices is in general not symmetric, so the SVD-based "root" ``U sqrt(S) V^T`` that the
    Spiking-Diffusion authors use is not a square root of it (its square is not ``s1 s2``) and
    biases the distance; :func:`frechet_distance_svd` reproduces theirs for comparison only.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("the two distributions have different dimensions")
    with warnings.catch_warnings():  # a singular product is handled below
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # nudge the diagonals
            off = np.eye(len(s1)) * eps
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):  # numerical noise leaves tiny imaginary parts; more means no root
        worst = np.abs(np.diagonal(covmean).imag).max()
        if worst > IMAGINARY_TOLERANCE * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise ValueError(f"the Fréchet distance's matrix root is complex (imaginary part {worst:.3g} on its "
                             "diagonal): the covariances are too ill-conditioned; use more samples")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean), 0.0))


def frechet_distance_svd(mu1, sigma1, mu2, sigma2) -> float:
    """The authors' variant (root of s1 s2 as ``U sqrt(S) V^T`` from an SVD): wrong, kept only so
    our numbers can be set beside theirs under their protocol."""
    u, s, vt = np.linalg.svd(np.asarray(sigma1, np.float64) @ np.asarray(sigma2, np.float64))
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(u @ np.diag(np.sqrt(s)) @ vt))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between two feature sets ``[N, F]`` and ``[M, F]``."""
    return frechet_distance(*feature_stats(real), *feature_stats(fake))


def too_few_for_frechet(n: int, dim: int) -> bool:
    """Whether ``n`` samples are too few for a Fréchet distance in ``dim`` dimensions: the covariance
    of ``n`` samples has rank at most n - 1, so up to ``dim`` samples it is singular, and the distance
    measures the estimate's noise more than the distributions (two samples of one distribution,
    128-d classifier features: about 224 at n=10, 1.7 at n=5,000)."""
    return n <= dim


def _knn_radii(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each point ``[N,F]`` to its k-th nearest neighbour in the same set (itself
    excluded: it is the 0-th): ``[N]``."""
    return torch.cat([torch.cdist(feats[i:i + chunk], feats).topk(k + 1, largest=False).values[:, k]
                      for i in range(0, len(feats), chunk)])


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Whether each point ``[N,F]`` lies within ``radii[j]`` of some centre ``j`` (``[M,F]``): ``[N]`` bool."""
    return torch.cat([(torch.cdist(points[i:i + chunk], centres) <= radii[None]).any(1)
                      for i in range(0, len(points), chunk)])


def precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radius manifolds.

    precision: share of fake samples inside the real manifold (within the k-NN radius of some real
    sample); recall: share of real samples inside the fake manifold. ``[N,F]``, ``[M,F]`` -> floats.
    """
    real = torch.as_tensor(np.asarray(real_feats), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_feats), dtype=torch.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real, r_fake = _knn_radii(real, k, chunk), _knn_radii(fake, k, chunk)
    precision = _covered(fake, real, r_real, chunk).double().mean()
    recall = _covered(real, fake, r_fake, chunk).double().mean()
    return float(precision), float(recall)


# --- classifier-based --------------------------------------------------------------------------
def confident_share(probs: np.ndarray, threshold: float = 0.9) -> float:
    """Share of samples whose top class probability is >= threshold. ``probs [N, C]``."""
    probs = np.asarray(probs)
    return float((probs.max(1) >= threshold).mean()) if len(probs) else float("nan")


def class_coverage_entropy(preds: np.ndarray, num_classes: int) -> float:
    """Entropy of the predicted-class histogram divided by log(num_classes): 1 = every class
    equally often, 0 = one class only. ``preds [N]`` integer classes."""
    counts = np.bincount(np.asarray(preds, dtype=np.int64), minlength=num_classes)[:num_classes]
    p = counts / max(counts.sum(), 1)
    h = -(p[p > 0] * np.log(p[p > 0])).sum()
    return float(h / np.log(num_classes)) + 0.0 if num_classes > 1 else 1.0  # + 0.0: no -0.0


# --- model-based -------------------------------------------------------------------------------
def code_counts(tokens, codebook_size: int) -> np.ndarray:
    """Token grids ``[N, h, w]`` (or ``[N, P]``) -> how often each code sits at each position,
    ``[h*w, K]`` int64. Ids outside 0..K-1 raise ValueError."""
    t = np.asarray(tokens, dtype=np.int64)
    t = t.reshape(len(t), -1)                                                  # [N, P]
    if t.size and (t.min() < 0 or t.max() >= codebook_size):
        raise ValueError(f"token ids must lie in 0..{codebook_size - 1}")
    cells = np.arange(t.shape[1]) * codebook_size + t                          # position-major index
    return np.bincount(cells.ravel(), minlength=t.shape[1] * codebook_size).reshape(t.shape[1], codebook_size)


def usage_stats(counts) -> dict:
    """A usage histogram ``[K]`` -> {perplexity: exp(entropy) in 1..K, dead_codes: codes never used,
    used_fraction, counts: list of K ints}."""
    counts = np.asarray(counts, dtype=np.int64)
    p = counts / max(counts.sum(), 1)
    entropy = -(p[p > 0] * np.log(p[p > 0])).sum()
    return {"perplexity": float(np.exp(entropy)), "dead_codes": int((counts == 0).sum()),
            "used_fraction": float((counts > 0).mean()), "counts": counts.tolist()}


def codebook_usage(tokens, codebook_size: int) -> dict:
    """:func:`usage_stats` of token arrays ``[N, ...]`` (values in 0..K-1)."""
    return usage_stats(code_counts(tokens, codebook_size).sum(0))


def _gaussian_window(size: int, sigma: float, dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]                                # [size, size]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image (Wang et al. 2004, gaussian 11x11 window, sigma 1.5, valid region,
    channels averaged). ``x, y [N,C,H,W]`` floats -> ``[N]``."""
    x, y = x.double(), y.double()
    C = x.shape[1]
    w = _gaussian_window(window, sigma, x.dtype).expand(C, 1, window, window)
    blur = lambda t: F.conv2d(t, w, groups=C)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
