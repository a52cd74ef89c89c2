"""How far the once-computed layers' BatchNorm running variances are from the authors' layers'.

    python benchmarks/bn_running_stats.py [--plain] [--batch 32] [--updates 1]

Our encoder conv1 + BN, spike generator conv + BN and denoiser conv1 + BN run once on their
T-constant input ``[B, C, h, w]``; the authors' layers run on the T copies ``[T*B, C, h, w]``. In
training, BatchNorm updates its running variance with the unbiased variance ``v * n / (n - 1)``, n
the samples per channel, so the sample count matters. This script builds random paper-size networks
in the authors' layout (tests/test_official.py), imports them, runs ``--updates`` training-mode
forward passes of both in float64 on the same random batches, and prints the largest relative
difference of each running variance. ``--plain`` swaps in plain ``nn.BatchNorm2d`` updates (the
code before ConstantInputBatchNorm2d) to show the deviation it had: about ``(1 - 1/T) / (B*h*w)``
of the variance per update, 6e-4 for a 7x7 map at batch 32 and T=16.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import test_faithful_training as ref  # noqa: E402
from spiking_diffusion import spiking  # noqa: E402
from spiking_diffusion.checkpoint import load_checkpoint  # noqa: E402
from spiking_diffusion.official import DENOISER_TABLE, VQVAE_TABLE, import_official  # noqa: E402

LAYERS = {"vqsvae": ["encoder.bn1", "asg.bn", "encoder.block2.1"], "denoiser": ["bn1", "conv2.1"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain", action="store_true", help="plain nn.BatchNorm2d updates (the deviation before)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--updates", type=int, default=1)
    args = p.parse_args()
    if args.plain:
        spiking.ConstantInputBatchNorm2d.forward = nn.BatchNorm2d.forward
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    off = ref.make_official(tmp, T=16, K=128, D=16, hidden=(32, 64), widths=(64, 128, 256, 512, 256))
    for m in [*off.vq.modules(), *off.den.modules()]:
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1                       # the authors' layers: BatchNorm's default
    vq, den, _ = load_checkpoint(import_official(off.vq_path, off.den_path, tmp / "ckpt", data_variance=0.0949))
    vq, den, rvq, rden = (m.double().train() for m in (vq, den, off.vq, off.den))
    T = rvq.T
    for m in (rvq.memout, rvq.vq_layer.memout):
        m.coef.copy_((0.8 ** torch.arange(T - 1, -1, -1, dtype=torch.float64)).view(T, 1, 1, 1, 1))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i in range(args.updates):
            images = torch.rand(args.batch, 1, 28, 28, generator=g, dtype=torch.float64)
            vq.losses(images)
            ref.ref_vq_losses(rvq, images, 0.0949)
            x0 = torch.randint(0, 128, (args.batch, 7, 7), generator=g)
            ref._PriorObjective(den, "reweighted_elbo")(x0, torch.Generator().manual_seed(i))
            ref.ref_prior_loss(rden, x0, torch.Generator().manual_seed(i))
    for name, ours, theirs in (("vqsvae", vq.state_dict(), ref._ref_state(rvq, VQVAE_TABLE, "SNN_VQVAE")),
                               ("denoiser", den.state_dict(), ref._ref_state(rden, DENOISER_TABLE, "DummyModel"))):
        for layer in LAYERS[name]:
            k = f"{layer}.running_var"
            rel = float(((ours[k] - theirs[k]).abs() / theirs[k]).max())
            print(f"{'plain BN' if args.plain else 'ours'}  batch {args.batch}  updates {args.updates}  "
                  f"{name}.{k}: max relative difference {rel:.2g}")


if __name__ == "__main__":
    main()
