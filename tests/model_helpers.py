"""Helpers for tests and benchmarks (not part of the library): random spiking models that fire, and
per-layer firing statistics of the fast denoiser. Benchmarks import this module from ``tests/``."""
from __future__ import annotations

import torch
import torch.nn as nn

from spiking_diffusion.denoiser import SpikingDenoiser
from spiking_diffusion.fast import FastDenoiser
from spiking_diffusion.spiking import reset


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
