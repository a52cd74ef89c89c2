"""Stage 2 network: the spiking denoiser (SDID).

tokens [B,7,7] (mask id = K where masked) and time t [B]  ->  logits [B,K,7,7]

conv1..conv5 are Conv3x3 + BN + LIF on [T,B,C,7,7]; conv6 is a Conv3x3 on the channel
concatenation of conv5's and conv1's spikes; the logits are the mean over T of conv6's output.

Source: Liu et al. 2023, "Spiking-Diffusion" (arXiv 2308.10187), stage 2, the spiking diffusion image
decoder (SDID), with the layer sizes of the authors' code; the learned-embedding input is ours (not
the paper's; see docs/faithfulness.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import DenoiserConfig
from .spiking import ConstantInputBatchNorm2d, conv_bn_lif, lif, repeat_over_time, reset


class SinusoidalTimeEmbedding(nn.Module):
    """Continuous time ``t [B]`` (on the 0..N training scale) -> ``[B, dim]``."""

    def __init__(self, dim: int, max_period: float = 1000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.proj = nn.Linear(2 * half, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None]                     # [B, half]
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=1))   # [B, dim]


class SpikingDenoiser(nn.Module):
    """The SDID. ``input_mode='index'`` is the paper's raw-index input; ``'embedding'`` learns
    token and time embeddings. The input is constant over T, so conv1 + BN runs once (exact, BatchNorm's
    running statistics included)."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        self.T = cfg.time_steps
        w1, w2, w3, w4, w5 = cfg.widths
        if cfg.input_mode == "embedding":
            self.token_embed = nn.Embedding(cfg.codebook_size + 1, cfg.embed_dim)  # +1: mask id
            self.time_embed = SinusoidalTimeEmbedding(cfg.embed_dim)
        self.conv1 = nn.Conv2d(cfg.in_channels, w1, 3, padding=1)
        self.bn1 = ConstantInputBatchNorm2d(w1, repeats=cfg.time_steps)
        self.lif1 = lif()
        self.conv2 = conv_bn_lif(w1, w2)
        self.conv3 = conv_bn_lif(w2, w3)
        self.conv4 = conv_bn_lif(w3, w4)
        self.conv5 = conv_bn_lif(w4, w5)
        self.conv6 = nn.Conv2d(w5 + w1, cfg.codebook_size, 3, padding=1)

    @property
    def mask_id(self) -> int:
        return self.cfg.codebook_size

    def input_features(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``tokens [B,h,w]``, ``t [B]`` -> the static input map ``[B, C_in, h, w]``."""
        B, h, w = tokens.shape
        dtype = self.conv1.weight.dtype                                                   # float32 but in tests
        t = t.to(dtype).view(B, 1, 1, 1)
        if self.cfg.input_mode == "index":
            return torch.cat([tokens.to(dtype).unsqueeze(1), t.expand(B, 1, h, w)], dim=1)  # [B, 2, h, w]
        tok = self.token_embed(tokens).permute(0, 3, 1, 2)                                # [B, E, h, w]
        tim = self.time_embed(t.view(B))[:, :, None, None].expand(-1, -1, h, w)          # [B, E, h, w]
        return torch.cat([tok, tim], dim=1)                                               # [B, 2E, h, w]

    def forward(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The spiking denoiser (SDID): ``tokens [B,h,w]`` long (codes 0..K-1, K = masked) and ``t [B]``
        on the 1..N training scale (a fraction when sampling with fewer steps) -> logits over the K codes
        ``[B, K, h, w]`` for every cell. ``input_mode='index'`` feeds the raw token id as a float (the
        paper's input). Neuron state is reset before returning."""
        try:
            x = self.bn1(self.conv1(self.input_features(tokens, t)))  # [B, w1, h, w]
            s1 = self.lif1(repeat_over_time(x, self.T))                # [T, B, w1, h, w]
            s5 = self.conv5(self.conv4(self.conv3(self.conv2(s1))))    # [T, B, w5, h, w]
            # conv6 is linear, so the mean over T can be taken before it (exact, T times cheaper)
            return self.conv6(torch.cat([s5, s1], dim=2).mean(0))      # [B, K, h, w]
        finally:
            reset(self)
