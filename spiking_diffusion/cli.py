"""Command line: ``python -m spiking_diffusion <command> ...`` (also the ``spiking-diffusion`` script).

Commands: train-vqsvae, train-prior, train-decoder, sample, import-official, push-to-hub, evaluate,
average, train-classifier. ``--checkpoint`` takes a local folder or a Hugging Face Hub repo id (owner/name).
A user error prints one line (``error: ...``) and exits with status 2, with no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import CODEBOOK_INITS, DEFAULT_PRESET, PRESETS
from .data import DATASETS
from .diffusion import LOSS_KINDS
from .devices import use_threads
from .errors import Setting, SpikingDiffusionError
from .runs import FRESH_DEFAULTS
from .sampling import ORDERS, SETTINGS


def _train_args(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--out", required=True, help="run directory (checkpoint + training state + log)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="data set (default: mnist for the VQ-SVAE, the VQ-SVAE's for the prior; with --resume: "
                        "the run's)")
    p.add_argument("--data-root", default=None,
                   help=f"where torchvision finds / downloads the data (default: {FRESH_DEFAULTS['data_root']}; "
                        "with --resume: the run's)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="let torchvision download a missing data set (default: yes; with --resume: as the run did)")
    if stage != "decoder":
        p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help=f"model sizes (default: {DEFAULT_PRESET} for a new VQ-SVAE, the --vqsvae checkpoint's for "
                            "the prior; with --resume: the run's)")
    p.add_argument("--epochs", type=float, default=None,
                   help="how far to train, counted from the run's start "
                        f"(default: {FRESH_DEFAULTS['epochs']:g}; with --resume: the run's)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch, split over processes "
                        f"(default: {FRESH_DEFAULTS['batch_size']}; with --resume: the run's)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate (default: {FRESH_DEFAULTS['lr']:g}; with --resume: the run's, and a given one "
                        "replaces it)")
    p.add_argument("--ema", type=float, default=None,
                   help="save an exponential moving average of the weights with this decay (e.g. 0.999); 0: off "
                        f"(default: {FRESH_DEFAULTS['ema']:g}; with --resume: the run's, and a given one replaces it)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"AdamW's weight decay (default: {FRESH_DEFAULTS['weight_decay']:g}; "
                        "with --resume: the run's)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"seed of the initial weights, batches and noise (default: {FRESH_DEFAULTS['seed']}; "
                        "with --resume: the run's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training images (default: all; with --resume: the run's)")
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training, with a snapshot (go on with --resume)")
    p.add_argument("--log-every", type=int, default=50)
    _add_threads_argument(p)
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from the run's last snapshot, with its own settings where none is given "
                        "(not --device, --threads, --save-every, --log-every, --time-limit)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    if stage == "vqsvae":
        p.add_argument("--codebook-init", choices=CODEBOOK_INITS, default=None,
                       help="codebook start: N(0,1) as in the paper, or distinct encoder outputs "
                            f"(fewer dead codes) (default: {FRESH_DEFAULTS['codebook_init']}; "
                            "with --resume: the run's)")
    if stage == "decoder":
        p.add_argument("--vqsvae", required=True,
                       help="checkpoint whose spike generator + decoder train on (a prior in it is kept)")
    if stage == "prior":
        p.add_argument("--vqsvae", required=True, help="trained VQ-SVAE checkpoint directory")
        p.add_argument("--input-mode", choices=["index", "embedding"], default=None,
                       help="denoiser input: the paper's raw token index, or learned embeddings (default: the "
                            "preset's; with --resume: the run's)")
        p.add_argument("--loss", choices=LOSS_KINDS, default=None,
                       help=f"training loss (default: {FRESH_DEFAULTS['loss']}, the authors'; "
                            "with --resume: the run's)")
        p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                       help="start from this trained prior (same layers, embedding input), its codes renumbered "
                            "to this VQ-SVAE's by how they co-occur on the training images")


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

    from .images import channels_first, channels_last
    from .pipeline import SpikingDiffusionPipeline

    if args.nrow is not None:
        Setting("nrow", int, 1, None, "--nrow").check(args.nrow, by_label=True)
    out = _output_stem(Path(args.out))
    if out.name in ("", ".", ".."):
        raise SpikingDiffusionError(f"--out must end in a file name (e.g. samples/mnist, which writes samples/mnist.png "
                                    f"and .npy); got {args.out!r}")
    png, npy = out.with_name(out.name + ".png"), out.with_name(out.name + ".npy")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise SpikingDiffusionError(f"cannot write to {out.parent}: {e.strerror}") from None
    use_threads(args.threads)
    pipe = SpikingDiffusionPipeline.from_pretrained(args.checkpoint, device=args.device)
    res = pipe(num_images=args.num_images, steps=args.steps, seed=args.seed, order=args.order,
               **sampling_arguments(args))
    grid = make_grid(channels_first(torch.from_numpy(res.images)), nrow=args.nrow or int(np.ceil(np.sqrt(len(res.images)))),
                     padding=2, pad_value=255)
    Image.fromarray(channels_last(grid[None])[0].numpy().squeeze()).save(png)
    np.save(npy, res.images)
    print(f"{len(res.images)} images in {res.seconds:.2f} s -> {png} and {npy}")


def _output_stem(out: Path) -> Path:
    """``sample --out``'s path less a ``.png`` / ``.npy`` ending, if it has one; any other dot stays
    part of the name (``run-v1.5`` writes ``run-v1.5.png``, where ``Path.with_suffix`` would drop
    ``.5``)."""
    return out.with_name(out.stem) if out.suffix.lower() in (".png", ".npy") else out


def _add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's, one per core; on a machine busy with other work, "
                        "1 is often many times faster)")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per sampler setting (--temperature, --temperature-end, --top-p, --corrector-steps,
    --corrector-cells, --corrector-temperature, --guidance); every default: the checkpoint's (None here)."""
    for s in SETTINGS.values():
        p.add_argument("--" + s.name.replace("_", "-"), type=s.kind, default=None, help=s.help)


def sampling_arguments(args: argparse.Namespace) -> dict:
    """The sampler settings given on the command line (None where not given)."""
    return {name: getattr(args, name) for name in SETTINGS}


def _import_official(args) -> None:
    from .official import import_official

    path = import_official(args.vqvae, args.denoiser, args.out, dataset=args.dataset, data_variance=args.data_variance)
    print(f"converted -> {path}")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``evaluate`` (defaults: :class:`~spiking_diffusion.evaluate.EvalConfig`'s)."""
    from .checkpoint import CODE_USAGE_NAME
    from .evaluate import EvalConfig

    d = EvalConfig()
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (config.json + model.safetensors)")
    p.add_argument("--data-root", default="data", help="folder holding the data sets")
    p.add_argument("--out", required=True, help="output folder for report.json, summary.md, samples.png")
    p.add_argument("--num-samples", type=int, default=d.num_samples)
    p.add_argument("--steps", type=int, default=d.steps, help="sampling steps (default: all N, 49 for 7x7)")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--order", choices=ORDERS, default=d.order)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--dataset", default=None, help="override the checkpoint's data set")
    p.add_argument("--classifier", default=None, help="classifier folder (default: assets/classifiers/<dataset>)")
    p.add_argument("--inception-weights", action="append", default=[], metavar="PATH",
                   help="pt_inception-2015-12-05 .pth (standard FID) or torchvision inception_v3 state dict "
                        "(the paper's protocol); may be given twice")
    p.add_argument("--fid-samples", type=int, default=d.fid_samples)
    p.add_argument("--paper-samples", type=int, default=d.paper_samples)
    p.add_argument("--temperatures", nargs="+", default=list(d.temperatures),
                   help="temperature sweep: T or START..END each (top-p as evaluated)")
    p.add_argument("--top-ps", type=float, nargs="+", default=list(d.top_ps), help="top-p sweep (temperatures as evaluated)")
    p.add_argument("--corrector-sweep", type=int, nargs="+", default=list(d.corrector_sweep),
                   help="sweep over corrector rounds (the rest as evaluated)")
    p.add_argument("--steps-sweep", type=int, nargs="+", default=d.steps_sweep,
                   help="sweep over sampling steps (default: N/7, N/4, N/2, N: 7 13 25 49 for 7x7)")
    p.add_argument("--sweep-samples", type=int, default=d.sweep_samples)
    p.add_argument("--no-sweeps", action="store_true")
    p.add_argument("--recon-samples", type=int, default=None,
                   help="test images for the reconstruction MSE / SSIM and the codebook usage (default: all)")
    p.add_argument("--device", default=d.device)
    _add_threads_argument(p)
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--record", action="store_true",
                   help="write headline metrics (replacing all older ones) and the evaluated sampling settings (its new defaults) into the "
                        f"checkpoint's config.json and test code usage into {CODE_USAGE_NAME}")
    return p


def _evaluate(args: argparse.Namespace) -> dict:
    from .evaluate import evaluate

    use_threads(args.threads)
    return evaluate(
        args.checkpoint, args.data_root, args.out, num_samples=args.num_samples, steps=args.steps,
        **sampling_arguments(args), seed=args.seed, order=args.order, batch_size=args.batch_size,
        dataset=args.dataset, classifier=args.classifier, inception_weights=list(args.inception_weights),
        fid_samples=args.fid_samples, paper_samples=args.paper_samples, sweeps=not args.no_sweeps,
        temperatures=tuple(args.temperatures), top_ps=tuple(args.top_ps), corrector_sweep=tuple(args.corrector_sweep),
        steps_sweep=None if args.steps_sweep is None else tuple(args.steps_sweep), sweep_samples=args.sweep_samples, recon_samples=args.recon_samples,
        device=args.device, download=not args.no_download, record=args.record)


def add_train_classifier_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``train-classifier``."""
    p.add_argument("--dataset", required=True, help="data set name (mnist, fashion-mnist, cifar10-folder, ...)")
    p.add_argument("--data-root", default="data", help="folder holding the data sets (torchvision layout)")
    p.add_argument("--out", default=None, help="output folder (default: assets/classifiers/<dataset>, the one "
                                               "evaluate scores with)")
    p.add_argument("--replace", action="store_true",
                   help="train in place of the classifier already in --out (refused without it)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--holdout", type=int, default=10000,
                   help="train images kept out of training (the floor), at most a fifth of the train split (default: 10000)")
    p.add_argument("--max-steps", type=int, default=None)
    _add_threads_argument(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-download", action="store_true")
    return p


def _train_classifier(args: argparse.Namespace) -> dict:
    from .checkpoint import saved_files
    from .classifier import TrainClassifierConfig, default_classifier_dir, train_classifier

    tcfg = TrainClassifierConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, holdout=args.holdout,
                                 max_steps=args.max_steps, threads=args.threads)
    out = Path(args.out or default_classifier_dir(args.dataset))
    if out.exists() and not out.is_dir():
        raise SpikingDiffusionError(f"--out {out} is a file; a classifier is saved as a folder")
    if not args.replace and saved_files(out):
        raise SpikingDiffusionError(f"{out} already holds a classifier (evaluate scores with the one in "
                                    f"assets/classifiers/<dataset>); pass --replace to train one in its place, or "
                                    "choose another --out")
    _, info = train_classifier(args.dataset, args.data_root, out, tcfg=tcfg, download=not args.no_download,
                               device=args.device)
    return info


def _average(args) -> None:
    from .averaging import average_priors

    out = average_priors(args.checkpoints, args.out, args.weights)
    print(f"averaged {len(args.checkpoints)} priors -> {out}")


def _push_to_hub(args) -> None:
    from .hub import push_to_hub

    url = push_to_hub(args.checkpoint, args.repo, private=args.private or None, commit_message=args.message)
    print(f"pushed {args.checkpoint} -> {url}")


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
    p.add_argument("--out", required=True,
                   help="output path: writes PATH.png (a grid) and PATH.npy (the images, uint8 [N,H,W,C]); "
                        "a .png or .npy ending is dropped first")
    p.add_argument("--num-images", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: all N, 49 for 7x7)")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", choices=ORDERS, default="random")
    p.add_argument("--nrow", type=int, default=None, help="images per row of the .png grid (default: a square grid)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    _add_threads_argument(p)
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

    p = sub.add_parser("push-to-hub", help="upload a checkpoint folder to the Hugging Face Hub")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--repo", required=True, help="Hub repo id owner/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=_push_to_hub)

    p = sub.add_parser("evaluate", help="metrics report (JSON + markdown) for a checkpoint")
    add_evaluate_arguments(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("average", help="average the weights of priors trained from one start (a model soup; "
                                      "not in the paper)")
    p.add_argument("--checkpoints", nargs="+", required=True,
                   help="two or more local checkpoint folders: priors sharing one VQ-SVAE")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one per checkpoint (default: equal)")
    p.add_argument("--out", required=True, help="folder for the averaged checkpoint")
    p.set_defaults(func=_average)

    p = sub.add_parser("train-classifier", help="train the small CNN used by the offline evaluation")
    add_train_classifier_arguments(p)
    p.set_defaults(func=_train_classifier)
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
