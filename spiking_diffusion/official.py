"""Import the authors' released weights (GitHub Arktis2022/Spiking-Diffusion) into a checkpoint.

The authors save ``torch.save(model.state_dict())`` of two networks:

* ``SNN_VQVAE`` (``model.pth``): ``encoder.snn_convs`` / ``decoder.snn_convs`` Sequentials
  (conv, BN, LIF, ...), ``vq_layer`` (alpha, embeddings, the 1x1 conv + BN + LIF "poisson" =
  our adaptive spike generator) and two ``memout.coef`` buffers ``[T,1,1,1,1]`` holding
  ``decay^(T-1-t)``: they give T and the membrane decay and are then dropped.
* ``DummyModel`` (``diff_model.pth``, optional): ``conv1..conv5`` = (conv, BN, LIF), ``conv6.0``.

Every key is mapped through an explicit table, and each tensor's shape is checked against
our model before anything is written. Their math equals ours (see tests/test_official.py);
one difference stays: their sampler gives the denoiser the raw step value as ``t``, which is
the training scale only when sampling with all N = 49 steps (ours always uses that scale).
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import load_checked, save_checkpoint
from .config import PRESETS, DenoiserConfig, VQSVAEConfig
from .denoiser import SpikingDenoiser
from .errors import CheckpointError
from .vqsvae import VQSVAE

# their module path -> ours (the suffix after it, .weight / .running_mean / ..., is kept)
VQVAE_TABLE = {
    "encoder.snn_convs.0": "encoder.conv1",          # Conv2d(C -> c1, 3, stride 2)
    "encoder.snn_convs.1": "encoder.bn1",            # BatchNorm2d(c1)   (.2 is a LIF)
    "encoder.snn_convs.3": "encoder.block2.0",       # Conv2d(c1 -> c2, 3, stride 2)
    "encoder.snn_convs.4": "encoder.block2.1",       # BatchNorm2d(c2)   (.5 is a LIF)
    "encoder.snn_convs.6": "encoder.block3.0",       # Conv2d(c2 -> D, 1)
    "encoder.snn_convs.7": "encoder.block3.1",       # BatchNorm2d(D)    (.8 is a LIF)
    "vq_layer.alpha": "quantizer.alpha",             # scalar
    "vq_layer.embeddings": "quantizer.codebook",     # Embedding [K, D]
    "vq_layer.poisson.0": "asg.conv",                # Conv2d(D -> D, 1)
    "vq_layer.poisson.1": "asg.bn",                  # BatchNorm2d(D)    (.2 is a LIF)
    "decoder.snn_convs.0": "decoder.block1.0",       # ConvTranspose2d(D -> c2, 3, stride 2)
    "decoder.snn_convs.1": "decoder.block1.1",       # BatchNorm2d(c2)
    "decoder.snn_convs.3": "decoder.block2.0",       # ConvTranspose2d(c2 -> c1, 3, stride 2)
    "decoder.snn_convs.4": "decoder.block2.1",       # BatchNorm2d(c1)
    "decoder.snn_convs.6": "decoder.out",            # ConvTranspose2d(c1 -> C, 3)
}
COEF_KEYS = ("vq_layer.memout.coef", "memout.coef")  # [T,1,1,1,1], checked then dropped

DENOISER_TABLE = {
    "conv1.0": "conv1", "conv1.1": "bn1",            # Conv2d(2 -> w1) + BN
    **{f"conv{i}.{j}": f"conv{i}.{j}" for i in range(2, 6) for j in (0, 1)},  # conv2..conv5
    "conv6.0": "conv6",                              # Conv2d(w5 + w1 -> K), no BN
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reason(e: Exception) -> str:
    """A short reason from torch.load's (often many-line) error."""
    if isinstance(e, pickle.UnpicklingError):
        return "not a torch.save file of plain tensors (garbage, or it holds code, which is refused)"
    if isinstance(e, EOFError) or not str(e).strip():
        return "the file ends early (empty or truncated)"
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0].split('. ')[0][:160]}"


def load_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a ``torch.save``d state dict (raw, or under 'state_dict' / 'model'; DDP 'module.' stripped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage, pickled code, ...: one clear line
        raise CheckpointError(f"cannot read {path} as a PyTorch state dict: {_reason(e)}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CheckpointError(f"{path} does not hold a state dict (a dict of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _map_keys(sd: dict[str, torch.Tensor], table: dict[str, str], path, what: str) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in sd.items():
        src = next((p for p in table if key == p or key.startswith(p + ".")), None)
        if src is None:
            unknown.append(key)
        else:
            out[table[src] + key[len(src):]] = value
    if unknown:
        raise CheckpointError(f"{path} is not the authors' {what} state dict: unknown keys {unknown[:5]}")
    return out


def _need(sd, key, ndim, path, what):
    if key not in sd:
        raise CheckpointError(f"{path} is not the authors' {what} state dict: missing key {key!r}")
    if sd[key].ndim != ndim:
        raise CheckpointError(f"{path}: {key} has shape {list(sd[key].shape)}, expected {ndim} dimensions")
    return sd[key].shape


def _time_and_decay(sd, path) -> tuple[int, float]:
    """T and the membrane decay from the ``coef = decay^(T-1-t)`` buffers (both must agree)."""
    coefs = [sd[k].reshape(-1).double() for k in COEF_KEYS if k in sd]
    if len(coefs) != len(COEF_KEYS):
        raise CheckpointError(f"{path} is not the authors' SNN_VQVAE state dict: missing {list(COEF_KEYS)}")
    T = coefs[0].numel()
    decay = float(coefs[0][-2] / coefs[0][-1]) if T > 1 else VQSVAEConfig.membrane_decay  # T=1: any decay fits
    want = decay ** torch.arange(T - 1, -1, -1, dtype=torch.float64)
    if any(c.numel() != T or not torch.allclose(c, want, rtol=1e-5) for c in coefs):
        raise CheckpointError(f"{path}: memout.coef buffers are not one decay^(T-1-t) series; cannot map them")
    return T, round(decay, 6)


def vqvae_config(sd, path, in_channels: int | None = None) -> VQSVAEConfig:
    """Infer the VQ-SVAE config from the authors' tensor shapes."""
    c1, C = _need(sd, "encoder.snn_convs.0.weight", 4, path, "SNN_VQVAE")[:2]   # [c1, C, 3, 3]
    c2 = _need(sd, "encoder.snn_convs.3.weight", 4, path, "SNN_VQVAE")[0]        # [c2, c1, 3, 3]
    K, D = _need(sd, "vq_layer.embeddings.weight", 2, path, "SNN_VQVAE")          # [K, D]
    if in_channels is not None and in_channels != C:
        raise CheckpointError(f"{path}: the encoder expects {C}-channel images, not {in_channels}-channel")
    T, decay = _time_and_decay(sd, path)
    return VQSVAEConfig(in_channels=C, time_steps=T, hidden_channels=(c1, c2), codebook_size=K,
                        code_dim=D, membrane_decay=decay)


def denoiser_config(sd, path, vq: VQSVAEConfig) -> DenoiserConfig:
    """Infer the denoiser config from conv shapes ([out, in, 3, 3]); T and K come from the VQ-SVAE."""
    w = [_need(sd, f"conv{i}.0.weight", 4, path, "DummyModel")[0] for i in range(1, 6)]
    K = _need(sd, "conv6.0.weight", 4, path, "DummyModel")[0]                    # [K, w5 + w1, 3, 3]
    if K != vq.codebook_size:
        raise CheckpointError(f"{path}: the denoiser predicts {K} codes but the VQ-SVAE codebook holds "
                              f"{vq.codebook_size}")
    return DenoiserConfig(codebook_size=K, latent_size=vq.latent_size, time_steps=vq.time_steps,
                          widths=tuple(int(x) for x in w), input_mode="index")


def import_official(vqvae_path, denoiser_path, out_dir, dataset: str | None = None,
                    in_channels: int | None = None, data_variance: float | None = None) -> Path:
    """Convert the authors' ``model.pth`` (+ ``diff_model.pth``, or None for a VQ-SVAE only
    checkpoint) into a checkpoint folder ``out_dir``. Nothing is written unless every key and
    shape checks out.

    ``data_variance``: the variance of the training images (pixels in [0, 1]) that divides the
    reconstruction MSE. The authors keep it as a plain attribute, outside the state dict; without it
    the checkpoint records None (unknown): inference does not need it, ``train-decoder`` takes it
    from its training images, and the VQ-SVAE's losses refuse to run without it.
    """
    vq_sd = load_state_dict(vqvae_path)
    vq_cfg = replace(vqvae_config(vq_sd, vqvae_path, in_channels), data_variance=data_variance)  # the config checks it
    vqsvae = VQSVAE(vq_cfg)
    body = {k: v for k, v in vq_sd.items() if k not in COEF_KEYS}
    load_checked(vqsvae, _map_keys(body, VQVAE_TABLE, vqvae_path, "SNN_VQVAE"), f"{vqvae_path} (the authors' SNN_VQVAE)")

    denoiser = None
    if denoiser_path is not None:
        den_sd = load_state_dict(denoiser_path)
        denoiser = SpikingDenoiser(denoiser_config(den_sd, denoiser_path, vq_cfg))
        load_checked(denoiser, _map_keys(den_sd, DENOISER_TABLE, denoiser_path, "DummyModel"),
                     f"{denoiser_path} (the authors' DummyModel)")

    paper = PRESETS["paper"]
    is_paper = (vq_cfg.time_steps, vq_cfg.hidden_channels, vq_cfg.codebook_size, vq_cfg.code_dim) == \
        (paper.vqsvae.time_steps, paper.vqsvae.hidden_channels, paper.vqsvae.codebook_size, paper.vqsvae.code_dim) \
        and (denoiser is None or denoiser.cfg.widths == paper.denoiser.widths)
    files = {"vqvae": str(vqvae_path), "vqvae_sha256": _sha256(Path(vqvae_path))}
    if denoiser_path is not None:
        files.update(denoiser=str(denoiser_path), denoiser_sha256=_sha256(Path(denoiser_path)))
    info = {"source": "official", "repository": "https://github.com/Arktis2022/Spiking-Diffusion",
            "files": files, "dataset": dataset, "preset": "paper" if is_paper else None}
    return save_checkpoint(out_dir, vqsvae.eval(), None if denoiser is None else denoiser.eval(), info=info)
