"""Weight averaging of priors ("model soup", Wortsman et al. 2022, "Model soups: averaging weights of
multiple fine-tuned models improves accuracy without increasing inference time").

Priors trained from one start (a ``train-prior --init-from`` fork, snapshots of one run) sit in one
basin of the loss: the average of their weights is often better than either. Not in the
Spiking-Diffusion paper. The priors must be on the same tokens (VQ-SVAEs whose encoder and quantizer
are the same: :func:`~spiking_diffusion.train.same_tokens`) and share their denoiser's settings; the
average has the same size and speed as each.

    python -m spiking_diffusion average --checkpoints A B --weights 0.5 0.5 --out C
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

from .checkpoint import (VQSVAE_METRICS, copy_code_usage, load_checkpoint, load_checkpoint_with_guide, save_checkpoint,
                         saved_files)
from .errors import CheckpointError, SettingError
from .runs import STATE_NAME
from .train import same_tokens
from .transfer import layer_differences

# a source's own training record: not the average's (its sources are listed in ``averaged_from``)
TRAINING_RECORD = ("steps", "epochs", "batch_size", "seed", "trained_at", "ema", "learning_rate", "init_from",
                   "init_code_purity")


def check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """The averaging weights: ``count`` finite numbers > 0, scaled to sum to 1 (``None``: equal).
    Raises :class:`SettingError` for the wrong count or a weight that is not a finite number > 0."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise SettingError(f"the weights need one number per checkpoint ({count}); got {len(weights)}")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise SettingError(f"the weights must be finite numbers > 0; got {weights}")
    top = max(weights)                                   # scaled first: a sum of huge weights would overflow
    return [(w / top) / sum(v / top for v in weights) for w in weights]


def _check_out(out: Path, paths: Sequence[str | Path]) -> None:
    """Refuse an output folder that would overwrite a checkpoint or a run (a source among them)."""
    made = saved_files(out) + ([STATE_NAME] if (out / STATE_NAME).is_file() else [])
    if made or any(out.resolve() == Path(p).resolve() for p in paths):
        raise CheckpointError(f"{out} already holds a checkpoint ({', '.join(made) or 'a source'}); the average "
                              "would overwrite it: choose another --out")


def average_priors(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Write to ``out`` a checkpoint whose denoiser weights are the weighted mean of the priors in
    ``paths`` (local checkpoint folders), and return ``out`` as a Path.

    BatchNorm's running statistics are averaged too: an approximation (the variance of the averaged
    network's activations is not the mean of the variances), which the evaluation then measures. The
    integer step counters are the first prior's. The average keeps the first checkpoint's VQ-SVAE,
    its figures, code usage and guide prior (if any), the data and sampler settings of its info, and lists its sources in
    ``info["averaged_from"]`` (each one's own training record is left out of the average's info).

    Raises :class:`SettingError` for fewer than two checkpoints, one given twice or bad weights, and
    :class:`CheckpointError` for an output folder holding a checkpoint, a checkpoint without a prior,
    a VQ-SVAE that tokenises differently (another encoder or quantizer) or other denoiser settings
    than the first's. Nothing is written then.
    """
    out = Path(out)
    if len(paths) < 2:
        raise SettingError(f"average needs two checkpoints or more; got {len(paths)}")
    weights = check_weights(weights, len(paths))
    seen = {}
    for p in paths:
        if Path(p).resolve() in seen:
            raise SettingError(f"{p} is given twice (as {seen[Path(p).resolve()]} before); to give a checkpoint "
                               "more weight, pass --weights (e.g. --weights 2 1)")
        seen[Path(p).resolve()] = p
    _check_out(out, paths)
    vqsvae, first, guide, config = load_checkpoint_with_guide(paths[0])   # the first's guide is kept
    loaded = [(vqsvae, first, config)] + [load_checkpoint(p) for p in paths[1:]]   # (vqsvae, denoiser, config) each
    for path, (vq, den, _) in zip(paths, loaded):
        if den is None:
            raise CheckpointError(f"{path} holds no prior (denoiser) to average")
        differ = layer_differences(first.cfg, den.cfg)
        if differ:
            said = ", ".join(f"{n} {getattr(den.cfg, n)!r} against {getattr(first.cfg, n)!r}" for n in differ)
            raise CheckpointError(f"{path}'s denoiser settings differ from {paths[0]}'s ({said}): only priors of "
                                  "one architecture can be averaged")
        if not same_tokens(vq, vqsvae):
            raise CheckpointError(f"{path}'s VQ-SVAE differs from {paths[0]}'s in its encoder or quantizer: its "
                                  "tokens mean other codes, so the priors cannot be averaged")
    states = [den.state_dict() for _, den, _ in loaded]
    mean = {k: sum(w * s[k].double() for w, s in zip(weights, states)).to(t.dtype) if t.is_floating_point() else t
            for k, t in states[0].items()}
    first.load_state_dict(mean)
    sources = [{"checkpoint": str(p), "weight": round(w, 6), **{k: c["info"][k] for k in ("steps", "epochs")
                                                                if k in c["info"]}}
               for p, w, (_, _, c) in zip(paths, weights, loaded)]
    info = {k: v for k, v in config["info"].items() if k not in TRAINING_RECORD}
    info.update(stage="prior", averaged_from=sources, averaged_at=time.strftime("%Y-%m-%d %H:%M:%S"))
    vq_metrics = {k: v for k, v in config.get("metrics", {}).items() if k in VQSVAE_METRICS}
    save_checkpoint(out, vqsvae, first, info=info, metrics=vq_metrics, guide=guide)
    copy_code_usage(paths[0], out)                                   # the shared VQ-SVAE's tokens: the same usage
    return out
