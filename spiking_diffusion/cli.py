"""Command line: ``python -m spiking_diffusion <command> ...`` (also the ``spiking-diffusion`` script).

Commands: train-vqsvae, train-prior, train-decoder, sample, import-official, evaluate, train-classifier.
A user error prints one line (``error: ...``) and exits with status 2, with no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import PRESETS
from .data import DATASETS
from .errors import SpikingDiffusionError


def _train_args(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--out", required=True, help="run directory (checkpoint + training state + log)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="data set (default: mnist for the VQ-SVAE, the VQ-SVAE's for the prior)")
    p.add_argument("--data-root", default="data", help="where torchvision finds / downloads the data")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download data")
    if stage != "decoder":
        p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32, help="global batch, split over processes")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (with --resume: replaces the run's)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="save an exponential moving average of the weights with this decay (e.g. 0.999); 0: off")
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue exactly from the run's last snapshot")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    if stage == "vqsvae":
        p.add_argument("--codebook-init", choices=["normal", "data"], default="normal",
                       help="codebook start: N(0,1) as in the paper, or distinct encoder outputs "
                            "(fewer dead codes)")
    if stage == "decoder":
        p.add_argument("--vqsvae", required=True,
                       help="checkpoint whose spike generator + decoder train on (a prior in it is kept)")
    if stage == "prior":
        p.add_argument("--vqsvae", required=True, help="trained VQ-SVAE checkpoint directory")
        p.add_argument("--input-mode", choices=["index", "embedding"], default=None,
                       help="denoiser input: the paper's raw token index, or learned embeddings")
        p.add_argument("--loss", choices=["reweighted_elbo", "elbo"], default="reweighted_elbo")


def _train(args, stage: str) -> None:
    from .train import TrainConfig, train_decoder, train_prior, train_vqsvae

    fields = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    cfg = TrainConfig(stage=stage, **fields)
    {"vqsvae": train_vqsvae, "prior": train_prior, "decoder": train_decoder}[stage](cfg)


def _sample(args) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    from .pipeline import SpikingDiffusionPipeline

    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise SpikingDiffusionError(f"cannot write to {out.parent}: {e.strerror}") from None
    pipe = SpikingDiffusionPipeline.from_pretrained(args.checkpoint, device=args.device)
    res = pipe(num_images=args.num_images, steps=args.steps, seed=args.seed, order=args.order,
               **pipe.sampling_settings(**sampling_arguments(args)))
    grid = make_grid(torch.from_numpy(res.images).permute(0, 3, 1, 2), nrow=args.nrow or int(np.ceil(np.sqrt(len(res.images)))),
                     padding=2, pad_value=255)
    Image.fromarray(grid.permute(1, 2, 0).numpy().squeeze()).save(out.with_suffix(".png"))
    np.save(out.with_suffix(".npy"), res.images)
    print(f"{len(res.images)} images in {res.seconds:.2f} s -> {out.with_suffix('.png')} and {out.with_suffix('.npy')}")


SAMPLING_ARGUMENTS = {  # pipeline argument -> (type, help); every default: the checkpoint's (sampling_defaults)
    "temperature": (float, "sampling temperature (default: the checkpoint's, else 0.65); given alone: constant"),
    "temperature_end": (float, "temperature at the last step, linear from --temperature"),
    "top_p": (float, "nucleus sampling: draw from the likeliest codes holding this much probability (1: off)"),
    "corrector_steps": (int, "corrector rounds after the last step (0: the paper's sampler)"),
    "corrector_cells": (int, "cells re-masked and sampled again per corrector round"),
    "corrector_temperature": (float, "temperature of the corrector rounds"),
}


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """--temperature, --temperature-end, --top-p, --corrector-steps/-cells/-temperature."""
    for name, (kind, text) in SAMPLING_ARGUMENTS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)


def sampling_arguments(args: argparse.Namespace) -> dict:
    """The sampling settings given on the command line (None where not given)."""
    return {name: getattr(args, name) for name in SAMPLING_ARGUMENTS}


def _import_official(args) -> None:
    from .official import import_official

    path = import_official(args.vqvae, args.denoiser, args.out, dataset=args.dataset, data_variance=args.data_variance)
    print(f"converted -> {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spiking-diffusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-vqsvae", help="stage 1: train the VQ-SVAE")
    _train_args(p, "vqsvae")
    p.set_defaults(func=lambda a: _train(a, "vqsvae"))

    p = sub.add_parser("train-prior", help="stage 2: tokenise the data and train the spiking denoiser")
    _train_args(p, "prior")
    p.set_defaults(func=lambda a: _train(a, "prior"))

    p = sub.add_parser("train-decoder", help="train a checkpoint's spike generator + decoder on, "
                       "encoder and codebook frozen (same tokens: its prior stays valid)")
    _train_args(p, "decoder")
    p.set_defaults(func=lambda a: _train(a, "decoder"))

    p = sub.add_parser("sample", help="generate images: a PNG grid and a .npy of uint8 images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output path without suffix (writes .png and .npy)")
    p.add_argument("--num-images", type=int, default=16)
    p.add_argument("--steps", type=int, default=49)
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", choices=["random", "confidence"], default="random")
    p.add_argument("--nrow", type=int, default=None)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.set_defaults(func=_sample)

    p = sub.add_parser("import-official", help="convert state dicts saved by the authors' code")
    p.add_argument("--vqvae", required=True, help="the authors' VQ-VAE state dict (model.pth)")
    p.add_argument("--denoiser", default=None, help="the authors' denoiser state dict (diff_model.pth)")
    p.add_argument("--out", required=True)
    p.add_argument("--dataset", default=None, help="data set the weights were trained on (recorded)")
    p.add_argument("--data-variance", type=float, default=None,
                   help="variance of the training images in [0, 1] (divides the reconstruction loss; not in the "
                        "authors' files; default: unknown, train-decoder then takes it from its training images)")
    p.set_defaults(func=_import_official)

    from . import classifier, evaluate

    p = sub.add_parser("evaluate", help="metrics report (JSON + markdown) for a checkpoint")
    evaluate.add_arguments(p)
    p.set_defaults(func=evaluate.run)

    p = sub.add_parser("train-classifier", help="train the small CNN used by the offline evaluation")
    classifier.add_train_classifier_arguments(p)
    p.set_defaults(func=classifier.run_train_classifier)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SpikingDiffusionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
