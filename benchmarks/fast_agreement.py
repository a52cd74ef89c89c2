"""How far the fast path's outputs are from the plain reference's, on trained checkpoints.

    python benchmarks/fast_agreement.py [CHECKPOINT ...] [--images 16] [--calls 8] [--seed 0]

For each checkpoint (default: every model under ``assets/``), ``--calls`` denoiser calls on random
token grids (masked cells included) at random times 1..N: whether every spike of every LIF layer is
the same on both paths, the largest absolute difference of the logits, and that difference against the
largest logit. The decoder: every code decoded as a whole 7x7 grid of itself on both paths (the model's
once-computed ASG input against the reference's per-step one), the largest pixel difference (images in
[0, 1]) and the codes whose images differ by more than 1e-5, which are codes with a neuron whose input
lies within float rounding of a spiking boundary. One JSON line per checkpoint. The figures quoted in
docs/faithfulness.md and docs/speed.md come from here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from spiking_diffusion import SpikingDiffusionPipeline  # noqa: E402
from spiking_diffusion.fast import FastDenoiser, reference_decode, reference_logits  # noqa: E402
from spiking_diffusion.spiking import record_spikes  # noqa: E402


def agreement(pipe: SpikingDiffusionPipeline, images: int, calls: int, seed: int) -> dict:
    """The fast path against the reference on ``calls`` random batches of ``images`` token grids."""
    g = torch.Generator().manual_seed(seed)
    K, N, side = pipe.codebook_size, pipe.num_diffusion_steps, pipe.latent_size
    fast_denoiser = FastDenoiser(pipe.denoiser)
    same_spikes, logit_diff, logit_size = True, 0.0, 0.0
    for _ in range(calls):
        tokens = torch.randint(0, K + 1, (images, side, side), generator=g)          # [B, h, w], K = masked
        t = torch.randint(1, N + 1, (images,), generator=g).float()                  # [B]
        spikes: dict = {}
        fast = fast_denoiser(tokens, t, record=spikes)                                # [B, K, h, w]
        with torch.inference_mode(), record_spikes(pipe.denoiser) as rec:
            ref = reference_logits(pipe.denoiser, tokens, t)                          # [B, K, h, w]
        if len(rec.spikes) != len(spikes) or not rec.spikes:                         # every LIF layer, both paths
            raise RuntimeError(f"spikes recorded: {len(rec.spikes)} layers by the reference, {len(spikes)} by the fast path")
        same_spikes &= all(torch.equal(a, b) for a, b in zip(rec.spikes.values(), spikes.values()))
        logit_diff = max(logit_diff, float((fast - ref).abs().max()))
        logit_size = max(logit_size, float(ref.abs().max()))
    codes = torch.arange(K)[:, None, None].expand(K, side, side).contiguous()         # [K, h, w]
    with torch.inference_mode():
        diff = (pipe.decode(codes) - reference_decode(pipe.vqsvae, codes)).abs().flatten(1).amax(1)   # [K]
    return {"same_spikes": same_spikes, "logits_max_abs_diff": logit_diff, "logits_max_abs": logit_size,
            "relative": logit_diff / max(logit_size, 1e-12), "images_max_abs_diff": float(diff.max()),
            "codes_decoded_apart": (diff > 1e-5).nonzero().flatten().tolist()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", help="checkpoint directories (default: every model under assets/)")
    ap.add_argument("--images", type=int, default=16, help="token grids per call (default: 16)")
    ap.add_argument("--calls", type=int, default=8, help="calls per checkpoint (default: 8)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1] / "assets"
    for ckpt in args.checkpoints or sorted(str(p.parent) for p in root.glob("*/config.json")):
        pipe = SpikingDiffusionPipeline.from_pretrained(ckpt)
        print(json.dumps({"checkpoint": ckpt, **agreement(pipe, args.images, args.calls, args.seed)}), flush=True)


if __name__ == "__main__":
    main()
