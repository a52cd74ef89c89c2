"""Inception-v3 features and the Fréchet Inception Distance under two labelled protocols.

'standard': pytorch-fid's FID weights (1008 classes, TF-ported pooling), pool3 2048-d, bilinear 299x299,
generated vs the whole test split. 'paper': the authors' protocol (torchvision ImageNet inception_v3,
1,280 generated vs 1,280 test images). Each is computed only when its weights are at hand (given
files, or the torch hub cache); nothing is downloaded here.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import metrics as M

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"   # pytorch-fid's port of the TF FID Inception
TV_WEIGHTS = "inception_v3_google-0cc3c7bd.pth"         # torchvision's ImageNet inception_v3 (IMAGENET1K_V1)
INCEPTION_SIZE = 299                                    # both protocols resize bilinearly to 299x299
FEATURE_DIM = 2048                                      # pool3 features
PROTOCOLS = {
    "standard": "standard FID (pytorch-fid Inception weights, pool3 2048-d, bilinear 299x299, "
                "generated vs the whole test split, scipy sqrtm)",
    "paper": "the authors' protocol (torchvision ImageNet inception_v3, 1,280 generated vs the first 1,280 test images, "
             "bilinear 299x299, grey repeated to 3 channels); 'fid' uses scipy sqrtm, 'fid_svd_root' their SVD root",
}


def _load_state(path, mmap: bool = False) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def weights_kind(state: dict) -> str:
    """'standard' for pytorch-fid's FID weights (1008 classes, no aux head), 'paper' for torchvision's."""
    fc = state.get("fc.weight")
    if fc is None:
        raise ValueError("not an Inception-v3 state dict (no fc.weight)")
    return "standard" if fc.shape[0] == 1008 else "paper"


def find_inception_weights(paths=()) -> tuple[dict[str, str], list[str]]:
    """Given files plus the torch hub cache -> ({protocol: path}, messages about unusable files)."""
    found, notes = {}, []
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [Path(p) for p in paths] + [hub / FID_WEIGHTS, hub / TV_WEIGHTS]
    for p in candidates:
        if not p.is_file():
            if str(p) in map(str, paths):
                notes.append(f"inception weights {p} not found")
            continue
        try:
            found.setdefault(weights_kind(_load_state(p, mmap=True)), str(p))
        except Exception as e:  # unreadable or not an Inception state dict
            notes.append(f"inception weights {p} unusable: {type(e).__name__}: {str(e)[:200]}")
    return found, notes


def inception_net(path, kind: str) -> nn.Module:
    """torchvision inception_v3 with the given weights; ``fc`` replaced by Identity so the net returns
    the 2048-d pooled features. 'standard' also switches the pooling of Mixed_5b..7c to pytorch-fid's
    FID blocks (average pools that do not count padding; max pool in Mixed_7c)."""
    from torchvision.models import inception_v3

    state = _load_state(path)
    if kind == "standard":
        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008, transform_input=False)
    else:  # the authors' inception_v3(pretrained=True): transform_input on, aux head present
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    net.load_state_dict(state)
    if kind == "standard":
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7b"):
            # avg_pool(count_include_pad=False) = avg_pool(count_include_pad=True) / avg_pool(ones)
            getattr(net, name).branch_pool.register_forward_pre_hook(
                lambda m, a: (a[0] / F.avg_pool2d(torch.ones_like(a[0][:1, :1]), 3, 1, 1),))
        seen = {}
        net.Mixed_7c.register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
        net.Mixed_7c.branch_pool.register_forward_pre_hook(lambda m, a: (F.max_pool2d(seen.pop("x"), 3, 1, 1),))
    net.fc = nn.Identity()
    return net.eval()


@torch.inference_mode()
def inception_features(net: nn.Module, images: torch.Tensor, batch_size: int = 32, device="cpu") -> np.ndarray:
    """Float images ``[N,C,28,28]`` in [0,1] -> ``[N,2048]``: bilinear to 299x299, grey repeated to 3
    channels, scaled to [-1,1] (both protocols feed 2x-1)."""
    net = net.to(device)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        out.append(net(2 * x - 1).double().cpu())
    return torch.cat(out).numpy()


HUB_CACHE = "$TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints"


def inception_section(cfg, fake: torch.Tensor, test, log, console=None) -> dict:
    """Both protocols' FIDs of generated images ``fake [N,C,H,W]`` (floats in [0,1]) against the
    test split (``test``: :class:`~spiking_diffusion.data.ImageSet`); ``cfg``: the evaluation's
    settings (inception_weights, fid_samples, paper_samples, inception_batch, seed, device).
    ``log`` gets the lines a report keeps; ``console`` (default: ``log``) this machine's paths too."""
    console = log if console is None else console
    found, notes = find_inception_weights(cfg.inception_weights)
    for n in notes:
        log(n)
    section = {}
    for kind in ("standard", "paper"):
        entry = {"protocol": PROTOCOLS[kind], "fid": None}
        if kind not in found:
            want = FID_WEIGHTS if kind == "standard" else TV_WEIGHTS
            # the report keeps no machine's path (reports are shared); the log names this machine's folder
            entry["message"] = (f"{kind} FID not computed: no {'pytorch-fid FID' if kind == 'standard' else 'torchvision ImageNet'} "
                                f"Inception weights ({want}); pass --inception-weights PATH or place the file in "
                                f"torch's hub cache ({HUB_CACHE})")
            log(entry["message"])
            console(f"(torch's hub cache on this machine: {Path(torch.hub.get_dir()) / 'checkpoints'})")
            section[kind] = entry
            continue
        t0 = time.time()
        net = inception_net(found[kind], kind)
        console(f"{kind} FID: Inception weights {found[kind]}")            # the report names the file only
        n_cap = cfg.fid_samples if kind == "standard" else cfg.paper_samples
        n = min(n_cap, len(fake)) if kind == "standard" else min(n_cap, len(fake), len(test))
        # the paper's: the first n test images (the authors' first 40 batches of 32 of an unshuffled test loader)
        ref_idx = np.arange(len(test) if kind == "standard" else n)
        log(f"{kind} FID: Inception features of {n} generated and {len(ref_idx)} test images ...")
        f_fake = inception_features(net, fake[:n], cfg.inception_batch, cfg.device)
        f_real = inception_features(net, test.floats(torch.as_tensor(ref_idx)), cfg.inception_batch, cfg.device)
        stats = (*M.feature_stats(f_real), *M.feature_stats(f_fake))
        entry.update(fid=M.frechet_distance(*stats), n_generated=n, n_reference=len(ref_idx), weights=Path(found[kind]).name,
                     seconds=round(time.time() - t0, 1))
        if kind == "paper":
            entry["fid_svd_root"] = M.frechet_distance_svd(*stats)
        if kind == "standard" and n < 10000:
            entry["note"] = f"only {n} generated images: FID is biased upwards at small sample counts"
        if M.too_few_for_frechet(n, FEATURE_DIM):
            entry["note"] = "; ".join(filter(None, [entry.get("note"), (
                f"{n} images for {FEATURE_DIM}-d features: a singular covariance, the FID measures the "
                "estimate's noise as much as the model")]))
        log(f"{kind} FID = {entry['fid']:.2f}")
        section[kind] = entry
    return section
