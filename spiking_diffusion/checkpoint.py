"""Checkpoint directories: ``config.json`` + ``model.safetensors`` (safetensors only, never pickle).

config.json = {"format": "spiking-diffusion", "version": 1, "vqsvae": {...},
               "denoiser": {...} or null, "info": {data set, preset, epochs, steps, ...},
               "metrics": {...}, and "guide": {...} when the prior has a guide}
Tensors are stored under ``vqsvae.*`` and ``denoiser.*`` (and ``guide.*``: a weaker prior on the
same tokens that the sampler's autoguidance steers away from, :func:`load_guide`). Each file is written to a temporary
name and renamed into place, so no file is ever half-written. The two files are two renames, so a
save killed between them would pair new weights with an old config: each save therefore writes one
random ``save_id`` into both (config.json's top level and the safetensors header), and loading
refuses a pair whose ids differ. A checkpoint saved before ids existed loads as before.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import DenoiserConfig, VQSVAEConfig, check_prior_fits, compare_with_paper
from .devices import resolve_device
from .errors import CheckpointError

FORMAT, VERSION = "spiking-diffusion", 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
CODE_USAGE_NAME = "code_usage.json"  # optional: the test split's code usage, written by evaluate --record
# the figures in a checkpoint's "metrics" that describe its VQ-SVAE alone: a new prior on that VQ-SVAE
# keeps them all (and none of the old prior's sample figures); a decoder trained on keeps the token ones
TOKEN_METRICS = ("codebook_perplexity", "dead_codes")        # the test split's tokens (the encoder's)
VQSVAE_METRICS = ("recon_mse", "recon_ssim", *TOKEN_METRICS)


def _writable_parent(path: Path) -> None:
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create output folder {parent}: {e.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise CheckpointError(f"output folder {parent} is not writable")


def atomic_write_dir(path: str | os.PathLike, write_fn) -> Path:
    """Run ``write_fn(tmp_dir)`` then move the folder to ``path`` (replacing it) in one rename."""
    path = Path(path)
    _writable_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.resolve().parent))
    try:
        write_fn(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def saved_files(folder) -> list[str]:
    """The files of a saved model (config.json, model.safetensors) that ``folder`` holds: a folder a new
    save would overwrite (checked before a run, an average or a classifier writes there)."""
    return [n for n in (CONFIG_NAME, WEIGHTS_NAME) if (Path(folder) / n).is_file()]


def save_checkpoint(path, vqsvae: nn.Module, denoiser: nn.Module | None = None,
                    info: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                    guide: nn.Module | None = None) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``path``, each atomically (other files in
    the folder, such as a run's training state, stay), both marked with one new ``save_id``.
    ``info["architecture"]`` is (re)written to say which parts are the paper's
    (:func:`~spiking_diffusion.config.compare_with_paper`). ``guide``: the prior's guide (a
    ``SpikingDenoiser`` on the same tokens), stored beside it; only with a ``denoiser``."""
    if guide is not None and denoiser is None:
        raise CheckpointError("a guide prior is stored only beside a prior (denoiser) it guides")
    tensors = {}
    for prefix, module in (("vqsvae", vqsvae), ("denoiser", denoiser), ("guide", guide)):
        if module is not None:
            tensors.update({f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    save_id = uuid.uuid4().hex
    config = {
        "format": FORMAT, "version": VERSION, "save_id": save_id,
        "vqsvae": vqsvae.cfg.to_dict(),
        "denoiser": None if denoiser is None else denoiser.cfg.to_dict(),
        "info": {**(info or {}), "architecture": compare_with_paper(vqsvae.cfg, getattr(denoiser, "cfg", None))},
        "metrics": metrics or {},
        **({} if guide is None else {"guide": guide.cfg.to_dict()}),
    }

    path = Path(path)
    _writable_parent(path / CONFIG_NAME)
    atomic_write_file(path / WEIGHTS_NAME, lambda f: save_file(tensors, f, metadata={"save_id": save_id}))
    atomic_write_file(path / CONFIG_NAME, lambda f: Path(f).write_text(json.dumps(config, indent=2)))
    return path


def new_file_mode() -> int | None:
    """The mode ``open()`` gives a new file now (0666 less the process's umask), read from
    /proc/self/status without touching the umask; None where that is not available (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def atomic_write_file(path: Path, write_fn) -> None:
    """Run ``write_fn(tmp_path)`` then rename the file into place: readers never see half a file.
    The file gets the mode a file made by ``open()`` would (:func:`new_file_mode`): safetensors' own
    temporary file is private, 0600, whatever the umask. Where the mode cannot be read or set (a
    file system without modes), the file is kept as written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_fn(str(tmp))
        mode = new_file_mode()
        if mode is not None:
            with contextlib.suppress(OSError):
                os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: Path) -> None:
    """Remove the temporary files a process killed while writing into ``folder`` leaves: those of
    :func:`atomic_write_file` (``.NAME.tmp``) and safetensors' own (``.tmp`` + 6 characters, written
    beside the file it saves and renamed into place)."""
    for tmp in [*Path(folder).glob(".*.tmp"), *Path(folder).glob(".tmp??????")]:
        tmp.unlink(missing_ok=True)


def read_config(path) -> dict[str, Any]:
    """A checkpoint directory's config.json as a dict. Raises :class:`CheckpointError` when ``path``
    is not a directory, lacks config.json or model.safetensors, or its config is not valid JSON in
    this project's format."""
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory (expected {CONFIG_NAME} and {WEIGHTS_NAME} inside)")
    if not cfg_file.is_file() or not (path / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"checkpoint {path} must hold {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file} is not a spiking-diffusion config")
    return config


def copy_code_usage(source, folder) -> None:
    """Give checkpoint ``folder`` the test split's code usage of checkpoint ``source`` (atomically),
    for a model with the same tokens; without one in ``source`` (or ``source`` None), remove a stale
    one in ``folder``: it would describe another model's tokens."""
    dst = Path(folder) / CODE_USAGE_NAME
    src = None if source is None else Path(source) / CODE_USAGE_NAME
    if src is None or not src.is_file():
        dst.unlink(missing_ok=True)
    elif not (dst.is_file() and src.resolve() == dst.resolve()):
        atomic_write_file(dst, lambda f: shutil.copyfile(src, f))


def _read_weights(path, device=None) -> tuple[str | None, dict[str, torch.Tensor] | None]:
    """(the weights file's save_id or None, its tensors on ``device``; None: the header alone)."""
    try:
        with safe_open(str(Path(path) / WEIGHTS_NAME), framework="pt", device=str(device or "cpu")) as f:
            weights_id = (f.metadata() or {}).get("save_id")
            return weights_id, None if device is None else {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS_NAME} is corrupt or truncated ({e})") from None


def vqsvae_digest(path) -> str:
    """A digest of the VQ-SVAE of checkpoint ``path``: its settings in ``config.json`` (but the data
    variance, a training loss's scale) and every ``vqsvae.*`` tensor, read alone. Two checkpoints with
    the same digest share one VQ-SVAE (the same tokens and decoder; only their priors can differ); the
    same weights run with another T or membrane decay do not. Raises :class:`CheckpointError` for an
    unreadable checkpoint."""
    settings = {k: v for k, v in read_config(path).get("vqsvae", {}).items() if k != "data_variance"}
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    try:
        with safe_open(str(Path(path) / WEIGHTS_NAME), framework="pt", device="cpu") as f:
            for k in sorted(k for k in f.keys() if k.startswith("vqsvae.") and not k.endswith("num_batches_tracked")):
                t = f.get_tensor(k)                    # (BatchNorm's batch counter plays no part in the model)
                h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS_NAME} is corrupt or truncated ({e})") from None
    return h.hexdigest()


def check_same_save(path, config: dict[str, Any] | None = None, weights_id: str | None = None) -> dict[str, Any]:
    """The config of checkpoint ``path`` after checking that its two files come from one save (see
    the module doc); ``config`` / ``weights_id``: already read (else read here, the weights' header
    alone). Raises :class:`CheckpointError`."""
    if config is None:
        config = read_config(path)
        weights_id = _read_weights(path)[0]
    config_id = config.get("save_id")
    if (weights_id or config_id) and weights_id != config_id:
        name = lambda i: i or "none (written before save ids)"
        raise CheckpointError(
            f"checkpoint {path}: its two files come from different saves ({CONFIG_NAME} has save_id "
            f"{name(config_id)}, {WEIGHTS_NAME} has {name(weights_id)}): a save was cut off between the two, or "
            "one file was copied from another checkpoint. Copy both files from one checkpoint; a training run's "
            "folder is whole again at its next snapshot (continue it with --resume)")
    return config


def update_metadata(path, info: dict | None = None, metrics: dict | None = None,
                    replace_metrics: bool = False) -> None:
    """Merge ``info`` into a checkpoint's config.json, and ``metrics`` too, or with ``replace_metrics``
    put ``metrics`` in place of all the old ones (a new evaluation: no old figure outlives it). The
    file is replaced atomically and keeps its ``save_id``. Raises :class:`CheckpointError` (see
    :func:`read_config`)."""
    path = Path(path)
    config = read_config(path)
    config["info"].update(info or {})
    config["metrics"] = {} if replace_metrics else config["metrics"]
    config["metrics"].update(metrics or {})
    atomic_write_file(path / CONFIG_NAME, lambda f: Path(f).write_text(json.dumps(config, indent=2)))


def load_checked(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load ``tensors`` into ``module`` after checking every key and shape (missing or extra keys
    refused); error messages name ``source``."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in expected.items():
        if tensors[k].shape != v.shape:
            raise CheckpointError(f"{source}: {k} has shape {list(tensors[k].shape)}, the model needs {list(v.shape)}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


def _load_into(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path) -> None:
    got = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    load_checked(module, got, f"checkpoint {path} ({prefix[:-1]})")


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint directory -> (vqsvae, denoiser or None, config dict), in eval mode.
    Raises :class:`CheckpointError` for a missing, damaged or inconsistent checkpoint (files from two
    saves, weights that do not fit the config, a prior whose codebook or grid differs from its
    VQ-SVAE's) and :class:`~spiking_diffusion.errors.DeviceError` for a device this machine lacks."""
    vqsvae, denoiser, _, config = load_checkpoint_with_guide(path, device)
    return vqsvae, denoiser, config


def load_guide(path, device="cpu"):
    """The guide prior stored in checkpoint ``path`` (a ``SpikingDenoiser`` in eval mode), or None when
    it stores none. Autoguidance (Karras et al. 2024; not in the Spiking-Diffusion paper) steers the
    checkpoint's prior away from this weaker one on the same tokens (``SamplerConfig.guidance``).
    Raises :class:`CheckpointError` as :func:`load_checkpoint` does."""
    return load_checkpoint_with_guide(path, device)[2] if read_config(path).get("guide") is not None else None


def load_checkpoint_with_guide(path, device="cpu"):
    """:func:`load_checkpoint` with the prior's guide: (vqsvae, denoiser or None, guide or None,
    config), all from one read of the two files (one save). Raises as :func:`load_checkpoint` does."""
    from .denoiser import SpikingDenoiser
    from .vqsvae import VQSVAE

    device = resolve_device(device)
    config = read_config(path)
    try:
        vq_cfg = VQSVAEConfig.from_dict(config["vqsvae"])
        den_cfg = None if config.get("denoiser") is None else DenoiserConfig.from_dict(config["denoiser"])
        guide_cfg = None if config.get("guide") is None else DenoiserConfig.from_dict(config["guide"])
        if guide_cfg is not None and den_cfg is None:
            raise ValueError("a guide prior without a prior to guide")
        for cfg in (den_cfg, guide_cfg):
            if cfg is not None:
                check_prior_fits(vq_cfg, cfg)
    except (KeyError, TypeError, ValueError) as e:           # SettingError is a ValueError
        raise CheckpointError(f"checkpoint {path} has an invalid config: {e}") from None
    weights_id, tensors = _read_weights(path, device)                  # one read of the file
    check_same_save(path, config, weights_id)
    vqsvae = VQSVAE(vq_cfg)
    _load_into(vqsvae, tensors, "vqsvae.", path)
    priors = []
    for cfg, prefix in ((den_cfg, "denoiser."), (guide_cfg, "guide.")):
        model = None if cfg is None else SpikingDenoiser(cfg)
        if model is not None:
            _load_into(model, tensors, prefix, path)
            model.to(device).eval()
        priors.append(model)
    return vqsvae.to(device).eval(), *priors, config
