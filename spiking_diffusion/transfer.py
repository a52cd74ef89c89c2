"""Start a prior from another trained prior whose VQ-SVAE has a different codebook.

A prior learns where codes go on the latent grid. Two VQ-SVAEs trained on the same images code each
picture differently (other code numbers, other boundaries), but position by position their codes overlap
a lot: on MNIST's training set, a cell's code under the paper (T=16) VQ-SVAE names the code the small
(T=4) VQ-SVAE gives the same cell 66% of the time (the alignment's *purity*: each new code's most
frequent old code). :func:`align_codes` counts that overlap on the training tokens;
:func:`transfer_prior` copies a trained denoiser into the new codebook's numbering:

- input embedding of new code ``j``: the old embeddings averaged with weights ``P(old i | new j)``;
- output logits of new code ``j``: the row of its most frequent old code ``i*(j)``, plus
  ``log P(new j | old i*(j))`` so that new codes sharing one old code split its probability;
- every other weight (the spiking layers, BatchNorm statistics, time embedding) as it is.

The result is an initialisation, not a trained model: ``train-prior --init-from`` fine-tunes it.
On MNIST its negative ELBO on the paper tokens (``--loss elbo``, bits per token) is 3.48 before any
step, where a prior trained from scratch for 550 steps (batch 32) is at 7.0, no better than a uniform
guess over 128 codes (the old prior on its own tokens: 1.78).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import numpy as np
import torch

from .denoiser import SpikingDenoiser
from .errors import SpikingDiffusionError


@dataclass(frozen=True)
class CodeAlignment:
    """Co-occurrence of new and old codes at the same cell of the same training image."""

    counts: np.ndarray          # [K_new, K_old] float64: cells where new code j met old code i

    @property
    def purity(self) -> float:
        """Share of cells whose new code's most frequent old code is the old code there (0..1)."""
        return float(self.counts.max(1).sum() / max(self.counts.sum(), 1.0))

    @property
    def old_given_new(self) -> np.ndarray:
        """``P(old i | new j)``: ``[K_new, K_old]``, rows of unused new codes are zero."""
        return self.counts / np.maximum(self.counts.sum(1, keepdims=True), 1.0)

    @property
    def new_given_old(self) -> np.ndarray:
        """``P(new j | old i)``: ``[K_new, K_old]``, columns of unused old codes are zero."""
        return self.counts / np.maximum(self.counts.sum(0, keepdims=True), 1.0)


def align_codes(new_tokens, old_tokens, new_codebook: int, old_codebook: int) -> CodeAlignment:
    """Count, cell by cell, which old code each new code meets. Both ``[N, h, w]`` integer tokens of
    the same N images in the same order. Raises ``SpikingDiffusionError`` when the shapes differ."""
    new = np.asarray(new_tokens, dtype=np.int64)
    old = np.asarray(old_tokens, dtype=np.int64)
    if new.shape != old.shape:
        raise SpikingDiffusionError(f"cannot align codes: token grids {new.shape} and {old.shape} differ "
                                    "(both VQ-SVAEs must code the same images on the same latent grid)")
    pairs = np.bincount(new.ravel() * old_codebook + old.ravel(), minlength=new_codebook * old_codebook)
    return CodeAlignment(pairs.reshape(new_codebook, old_codebook).astype(np.float64))


# DenoiserConfig fields that must match for the weights to carry over (the codebook size may differ)
_SAME = ("latent_size", "time_steps", "widths", "input_mode", "embed_dim", "num_diffusion_steps")


def layer_differences(old, new, names=None) -> list[str]:
    """The :class:`DenoiserConfig` fields (all, or ``names``) whose values differ between two configs
    (lists and tuples compare alike: a config read from JSON has lists)."""
    names = [f.name for f in fields(new)] if names is None else names
    return [n for n in names if tuple(np.atleast_1d(getattr(old, n))) != tuple(np.atleast_1d(getattr(new, n)))]


def check_transferable(old, new) -> None:
    """Raise ``SpikingDiffusionError`` unless a prior with :class:`DenoiserConfig` ``old`` can start one
    with ``new``: the same layers (only the codebook size may differ) and the embedding input (the
    paper's raw-index input gives code numbers no meaning that could carry over)."""
    differ = layer_differences(old, new, _SAME)
    if differ:
        name = differ[0]
        raise SpikingDiffusionError(f"cannot start this prior from the other one: {name} is {getattr(new, name)!r} "
                                    f"here and {getattr(old, name)!r} there (only the codebook size may differ)")
    if new.input_mode != "embedding":
        raise SpikingDiffusionError("starting from another prior needs --input-mode embedding (the raw-index "
                                    "input gives code numbers no meaning that could carry over)")


@torch.no_grad()
def transfer_prior(old: SpikingDenoiser, new: SpikingDenoiser, alignment: CodeAlignment) -> SpikingDenoiser:
    """Write ``old``'s weights into ``new`` (in place, also returned), renumbered by ``alignment``
    (``[K_new, K_old]`` counts). Both on the same device. Raises ``SpikingDiffusionError`` when the
    layers differ (:func:`check_transferable`) or the alignment has the wrong shape.
    """
    check_transferable(old.cfg, new.cfg)
    K_new, K_old = new.cfg.codebook_size, old.cfg.codebook_size
    if alignment.counts.shape != (K_new, K_old):
        raise SpikingDiffusionError(f"code alignment is {alignment.counts.shape}, expected {(K_new, K_old)}")
    state = copy.deepcopy(old.state_dict())
    emb = old.token_embed.weight                                           # [K_old + 1, E], last: mask
    best_np = alignment.counts.argmax(1)                                   # [K_new] i*(j)
    used = torch.from_numpy(alignment.counts.sum(1) > 0).to(emb.device)    # [K_new] codes seen in the data
    best = torch.from_numpy(best_np).to(emb.device)
    mix = torch.from_numpy(alignment.old_given_new).to(emb)                # [K_new, K_old]
    share = torch.from_numpy(alignment.new_given_old[np.arange(K_new), best_np]).to(emb)  # [K_new] P(j | i*(j))
    # codes the data never shows keep their fresh embedding and get a logit of exactly -20
    new_emb = torch.where(used[:, None], mix @ emb[:K_old], new.token_embed.weight[:K_new])  # [K_new, E]
    state["token_embed.weight"] = torch.cat([new_emb, emb[K_old:]])       # [K_new + 1, E], mask row kept
    w6 = old.conv6.weight[best]                                            # [K_new, C, 3, 3]
    state["conv6.weight"] = torch.where(used[:, None, None, None], w6, torch.zeros_like(w6))
    state["conv6.bias"] = torch.where(used, old.conv6.bias[best] + share.clamp_min(1e-6).log(),
                                      torch.full_like(share, -20.0))          # [K_new]
    new.load_state_dict(state)
    return new
