"""Weight averaging of priors ("model soup", Wortsman et al. 2022, "Model soups: averaging weights of
multiple fine-tuned models improves accuracy without increasing inference time").

Priors trained on from one start (a ``train-prior --init-from`` fork, snapshots of one run) sit in
one basin of the loss: the average of their weights is often better than either. Not in the
Spiking-Diffusion paper. The priors must share their VQ-SVAE exactly (the same weights: the same
token numbering) and their denoiser's settings; the average has the same size and speed as each.

    python -m spiking_diffusion average --checkpoints A B --weights 0.5 0.5 --out C
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import CheckpointError, SettingError


def check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """The averaging weights: ``count`` positive numbers, scaled to sum to 1 (``None``: equal).
    Raises :class:`SettingError` for the wrong count or a weight <= 0."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise SettingError(f"--weights needs one number per checkpoint ({count}); got {len(weights)}")
    if not all(w > 0 for w in weights):
        raise SettingError(f"--weights must all be > 0; got {weights}")
    return [w / sum(weights) for w in weights]


def average_priors(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Write to ``out`` a checkpoint whose denoiser weights are the weighted mean of the priors in
    ``paths`` (BatchNorm's running statistics averaged too; its step counters taken from the first),
    with the first checkpoint's VQ-SVAE, info and sampler settings, and ``info["averaged_from"]``.

    Raises :class:`SettingError` for fewer than two checkpoints or bad weights, and
    :class:`CheckpointError` for a checkpoint without a prior, another VQ-SVAE (config or weights)
    or other denoiser settings than the first's.
    """
    if len(paths) < 2:
        raise SettingError(f"average needs two checkpoints or more; got {len(paths)}")
    weights = check_weights(weights, len(paths))
    loaded = [load_checkpoint(p) for p in paths]                   # (vqsvae, denoiser, config) each
    vqsvae, first, config = loaded[0]
    vq_state = vqsvae.state_dict()
    for path, (vq, den, cfg) in zip(paths, loaded):
        if den is None:
            raise CheckpointError(f"{path} holds no prior (denoiser) to average")
        if den.cfg != first.cfg:
            raise CheckpointError(f"{path}'s denoiser settings differ from {paths[0]}'s: only priors of one "
                                  "architecture can be averaged")
        if vq.cfg != vqsvae.cfg or any(not torch.equal(t, vq_state[k]) for k, t in vq.state_dict().items()):
            raise CheckpointError(f"{path}'s VQ-SVAE differs from {paths[0]}'s: its tokens mean other codes, "
                                  "so the priors cannot be averaged")
    states = [den.state_dict() for _, den, _ in loaded]
    mean = {k: sum(w * s[k].double() for w, s in zip(weights, states)).to(t.dtype) if t.is_floating_point() else t
            for k, t in states[0].items()}                          # integer buffers: the first's step counts
    first.load_state_dict(mean)
    sources = [{"checkpoint": str(p), "weight": round(w, 6), "steps": c["info"].get("steps"),
                "epochs": c["info"].get("epochs")} for p, w, (_, _, c) in zip(paths, weights, loaded)]
    info = {**config["info"], "stage": "prior (weight average)", "averaged_from": sources}
    return save_checkpoint(out, vqsvae, first, info=info, metrics={})
