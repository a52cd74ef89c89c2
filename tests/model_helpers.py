"""Helpers for tests and benchmarks (not part of the library): random spiking models that fire, and
per-layer firing statistics of the fast denoiser. Benchmarks import this module from ``tests/``."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from spiking_diffusion.config import get_preset
from spiking_diffusion.denoiser import SpikingDenoiser
from spiking_diffusion.fast import FastDenoiser
from spiking_diffusion.spiking import reset
from spiking_diffusion.vqsvae import VQSVAE


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, calibrate, seed: int = 0, shift: float = 0.3) -> nn.Module:
    """Give a freshly initialised spiking model realistic firing (for tests and benchmarks only).

    Every BatchNorm gets a random scale in [0.5, 1.5) and shift around ``shift``; then
    ``calibrate()`` (a forward pass on some input) runs in train mode with momentum 1, so the
    running statistics normalise each layer's pre-activations. Returns the model in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        C = bn.num_features
        bn.weight.copy_(torch.rand(C, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(C, generator=g) * 0.5 + shift)
        bn.momentum = 1.0
    model.train()
    try:
        calibrate()
    finally:
        reset(model)
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
        model.eval()
    return model


def random_batch(K: int, B: int, seed: int, t: int | None = None):
    """``B`` token grids ``[B,7,7]`` with about t/49 of the positions masked (id K), and their times
    ``[B]`` (uniform in 1..49, or all ``t``)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, K, (B, 7, 7), generator=g)
    tt = torch.randint(1, 50, (B,), generator=g) if t is None else torch.full((B,), t)
    masked = torch.rand(B, 7, 7, generator=g) < tt.view(-1, 1, 1) / 49
    return tokens.masked_fill(masked, K), tt


def random_models(preset: str, seed: int = 0, input_mode: str | None = None, calibration_batch: int = 8):
    """(VQSVAE, SpikingDenoiser) of a preset, random but firing (:func:`randomize_batchnorm`), in eval
    mode; the denoiser calibrated on ``calibration_batch`` random token grids."""
    torch.manual_seed(seed)
    p = get_preset(preset, input_mode=input_mode)
    images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    vq = VQSVAE(replace(p.vqsvae, data_variance=float(images.var())))
    den = SpikingDenoiser(p.denoiser)
    randomize_batchnorm(vq, lambda: vq.losses(images), seed=seed)
    tokens, t = random_batch(p.denoiser.codebook_size, calibration_batch, seed)
    randomize_batchnorm(den, lambda: den(tokens, t), seed=seed)
    return vq, den


@torch.inference_mode()
def firing_rates(model: SpikingDenoiser, tokens: torch.Tensor, t: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per layer of the denoiser: mean firing rate, fraction of all-zero ``(t, image)`` frames and
    of channels silent over the whole batch (what sparsity could skip)."""
    rec: dict = {}
    FastDenoiser(model)(tokens, t, record=rec)
    out = {}
    for name, s in rec.items():
        T, B, C = s.shape[:3]
        out[name] = {
            "rate": float(s.mean()),
            "zero_frames": float((~s.flatten(2).bool().any(2)).float().mean()),
            "silent_channels": float((~s.transpose(0, 2).reshape(C, -1).bool().any(1)).float().mean()),
        }
    return out
