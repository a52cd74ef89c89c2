"""Negative ELBO (bits per token) of priors on their VQ-SVAE's training tokens: how well a prior fits.

    python benchmarks/prior_elbo.py --data-root data CHECKPOINT [CHECKPOINT ...] [--init-from DONOR]

Each checkpoint's denoiser is scored on its own VQ-SVAE's tokens of ``--images`` training images
(a seeded random subset; ``--loss elbo``, the absorbing diffusion's bound, divided by log 2). With
``--init-from DONOR`` the first checkpoint's VQ-SVAE is also scored with DONOR's prior renumbered to
its codes (what ``train-prior --init-from`` starts from, before any step). A uniform guess over
K codes scores log2(K) (7.0 for K=128).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from spiking_diffusion import SpikingDiffusionPipeline  # noqa: E402
from spiking_diffusion.data import load_images  # noqa: E402
from spiking_diffusion.denoiser import SpikingDenoiser  # noqa: E402
from spiking_diffusion.diffusion import AbsorbingDiffusion  # noqa: E402
from spiking_diffusion.train import tokenize  # noqa: E402
from spiking_diffusion.transfer import align_codes, transfer_prior  # noqa: E402

from recon_metrics import one_data_set  # noqa: E402  (beside this script)


@torch.no_grad()
def bits_per_token(denoiser: SpikingDenoiser, tokens: torch.Tensor, seed: int = 0, batch: int = 256) -> float:
    """Mean negative ELBO of ``tokens [N, h, w]`` under ``denoiser`` (eval mode), in bits per token."""
    cfg = denoiser.eval().cfg
    diffusion = AbsorbingDiffusion(cfg.codebook_size, cfg.latent_size, cfg.num_diffusion_steps)
    g, total = torch.Generator().manual_seed(seed), 0.0
    for i in range(0, len(tokens), batch):
        part = tokens[i:i + batch].long()
        total += diffusion.loss(denoiser, part, "elbo", g).item() * len(part)
    return total / len(tokens)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data-root", default="data")
    p.add_argument("--images", type=int, default=2048, help="training images scored")
    p.add_argument("--init-from", default=None, help="a donor prior, renumbered to the first checkpoint's codes")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipes = [SpikingDiffusionPipeline.from_pretrained(c) for c in args.checkpoints]
    data = load_images(one_data_set(pipes), args.data_root, train=True, download=False)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[:args.images]
    scored = [tokenize(pipe.vqsvae, data.images[pick]) for pipe in pipes]         # [n, h, w] each
    for ck, pipe, tokens in zip(args.checkpoints, pipes, scored):
        print(f"{ck}: {bits_per_token(pipe.denoiser, tokens):.3f} bits per token")
    if args.init_from:
        donor = SpikingDiffusionPipeline.from_pretrained(args.init_from)
        new = pipes[0]
        alignment = align_codes(tokenize(new.vqsvae, data.images), tokenize(donor.vqsvae, data.images),
                                new.codebook_size, donor.codebook_size)   # on every training image, as train-prior
        start = transfer_prior(donor.denoiser, SpikingDenoiser(new.denoiser.cfg), alignment)
        print(f"{args.init_from} renumbered to {args.checkpoints[0]}'s codes (purity {alignment.purity:.3f}): "
              f"{bits_per_token(start, scored[0]):.3f} bits per token")


if __name__ == "__main__":
    main()
