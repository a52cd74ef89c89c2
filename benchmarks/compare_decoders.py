"""Score several decoders on the same sampled tokens: one JSON line per decoder.

    python benchmarks/compare_decoders.py --data-root DATA --prior assets/mnist --samples 2000 --seed 0 \\
        --tokens runs/mnist-tokens-s0.npz runs/mnist-dec-s1000 runs/mnist-dec-s2000

The prior of ``--prior`` samples ``--samples`` token grids with its own sampler (or ``--spec``, the
keys of ``compare_settings.py``), in evaluate's batches and seeds, so ``--seed 0`` gives evaluate's
tokens. Each DECODER checkpoint's VQ-SVAE (e.g. snapshots of a ``train-decoder`` run) must tokenise
as the prior's does (the same encoder and codebook); its decoder turns the tokens into images, which
are scored like ``evaluate``'s samples. The prior's own VQ-SVAE is scored first.

Sampling is the cost (about 100 denoiser calls an image, against one decoding), so the tokens can be
kept: ``--tokens FILE`` loads them when FILE was written for the same prior, spec, seed and count,
else samples them and writes FILE. The decoders are compared on identical tokens, which takes the
prior's sampling noise out of the comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from compare_settings import parse_spec  # noqa: E402
from spiking_diffusion import SpikingDiffusionPipeline  # noqa: E402
from spiking_diffusion.classifier import find_classifier_dir, load_classifier  # noqa: E402
from spiking_diffusion.data import load_images  # noqa: E402
from spiking_diffusion.evaluate import EvalConfig, Reference, classifier_metrics, generate  # noqa: E402
from spiking_diffusion.images import to_uint8  # noqa: E402
from spiking_diffusion.train import same_tokens  # noqa: E402


def sampled_tokens(pipe, prior: str, spec: str, samples: int, seed: int, path: str | None) -> np.ndarray:
    """``[samples, h, w]`` tokens of the prior's sampler, read from ``path`` when it holds the same run:
    the same prior (its save, and its sampler settings, which ``evaluate --record`` may rewrite in
    place), the same settings, seed and count."""
    overrides, run = parse_spec(spec)
    sampler = pipe.sampling_settings(**overrides)
    key = json.dumps({"prior": str(Path(prior).resolve()), "save_id": pipe.config.get("save_id"),
                      "sampler": sampler.to_dict(), **run, "samples": samples, "seed": seed})
    if path and Path(path).is_file():
        kept = np.load(path)
        if str(kept["key"]) == key:
            return kept["tokens"]
        print(f"note: {path} holds tokens of another run; sampling again", file=sys.stderr)
    t0 = time.time()
    _, tokens = generate(pipe, samples, run["steps"], sampler, seed, run["order"], EvalConfig.batch_size)
    print(f"sampled {samples} token grids in {time.time() - t0:.0f} s", file=sys.stderr)
    if path:
        with open(path, "wb") as f:  # a file object: np.savez would add .npz to the name
            np.savez(f, tokens=tokens, key=key)
    return tokens


@torch.inference_mode()
def decode(pipe, tokens: np.ndarray, batch: int = 256) -> np.ndarray:
    """uint8 images ``[N,H,W,C]`` of ``tokens`` ``[N,h,w]``, as the pipeline's call decodes them."""
    return np.concatenate([to_uint8(pipe.decode(tokens[i:i + batch])) for i in range(0, len(tokens), batch)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("decoders", nargs="*", help="checkpoints whose decoders to score (the prior's own comes first)")
    p.add_argument("--prior", required=True, help="checkpoint whose prior samples the tokens")
    p.add_argument("--spec", default="", help="sampler settings as in compare_settings.py (default: the prior's own)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", help="a .npz file to keep the sampled tokens in (read back when it matches)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = SpikingDiffusionPipeline.from_pretrained(args.prior)
    dataset = prior.info.get("dataset", "mnist")
    clf = load_classifier(find_classifier_dir(dataset))
    ref = Reference.of(clf, load_images(dataset, args.data_root, train=False, download=False).images, args.seed)
    tokens = sampled_tokens(prior, args.prior, args.spec, args.samples, args.seed, args.tokens)
    for ck in [args.prior, *args.decoders]:
        pipe = prior if ck == args.prior else SpikingDiffusionPipeline.from_pretrained(ck)
        if not same_tokens(pipe.vqsvae, prior.vqsvae):
            raise SystemExit(f"{ck}'s VQ-SVAE tokenises differently from {args.prior}'s: its decoder does not read these tokens")
        m = classifier_metrics(clf, decode(pipe, tokens), ref)
        print(json.dumps(dict(decoder=ck, prior=args.prior, spec=args.spec, seed=args.seed, samples=len(tokens),
                              **{k: round(float(v), 4) for k, v in m.items()})), flush=True)


if __name__ == "__main__":
    main()
