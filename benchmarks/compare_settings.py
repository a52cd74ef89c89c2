"""Offline metrics for several (checkpoint, sampling settings) pairs, one JSON line each.

    python benchmarks/compare_settings.py --data-root DATA --samples 400 \\
        runs/mnist-emb:T=0.65 runs/mnist-idx:T=0.65 runs/mnist-emb:T=1.0..0.5,top_p=0.9,corrector=20

SPEC keys (comma-separated, all optional; unset ones take the checkpoint's ``sampling_defaults``):
T (temperature, or START..END linear over the steps), top_p, corrector (rounds), cells,
corrector_T, order (random|confidence), steps. Used to choose the denoiser input, the sampler and
the sampling defaults (README). Samples and metrics as in ``evaluate`` (batches of 256 seeded from
(seed, batch); the data set's classifier from assets/classifiers; the whole test split;
precision/recall against as many test images as samples, drawn by the seed): ``--seed S`` gives
``evaluate --seed S``'s samples and figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from spiking_diffusion import SpikingDiffusionPipeline  # noqa: E402
from spiking_diffusion.classifier import find_classifier_dir, load_classifier  # noqa: E402
from spiking_diffusion.data import load_images  # noqa: E402
from spiking_diffusion.evaluate import EvalConfig, Reference, classifier_metrics, generate  # noqa: E402
from spiking_diffusion.sampling import parse_temperature  # noqa: E402

KEYS = {"top_p": ("top_p", float), "corrector": ("corrector_steps", int), "cells": ("corrector_cells", int),
        "corrector_T": ("corrector_temperature", float), "guidance": ("guidance", float)}


def parse_spec(spec: str) -> tuple[dict, dict]:
    """'T=1.0..0.5,corrector=20,steps=25' -> (pipeline sampling overrides, {order, steps})."""
    sampling, run = {}, {"order": EvalConfig.order, "steps": EvalConfig.steps}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key == "T":
            sampling["temperature"], sampling["temperature_end"] = parse_temperature(value)
        elif key in KEYS:
            name, kind = KEYS[key]
            sampling[name] = kind(value)
        elif key in ("order", "steps"):
            run[key] = value if key == "order" else int(value)
        else:
            raise SystemExit(f"unknown key {key!r} in {spec!r}")
    return sampling, run


def scorer_for(dataset: str, data_root: str, seed: int) -> tuple:
    """(classifier, reference) scoring samples of ``dataset`` as ``evaluate --seed seed`` does: its
    classifier and test split, with the seed's subset of test images for precision and recall."""
    clf = load_classifier(find_classifier_dir(dataset))
    test = load_images(dataset, data_root, train=False, download=False).images
    return clf, Reference.of(clf, test, seed)


def score(pipe: SpikingDiffusionPipeline, sampling, samples: int, seed: int, scorer: tuple,
          steps: int = EvalConfig.steps, order: str = EvalConfig.order) -> dict:
    """Evaluate's samples (batches seeded from (seed, batch)) with ``sampling``, scored by ``scorer``
    (:func:`scorer_for`): the metrics rounded to 3 decimals and the sampling's seconds."""
    start = time.time()
    images, _ = generate(pipe, samples, steps, sampling, seed, order, EvalConfig().batch_size)
    clf, ref = scorer
    m = classifier_metrics(clf, images, ref)
    return {k: round(float(v), 3) for k, v in m.items()} | {"seconds": round(time.time() - start, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("settings", nargs="+", help="CHECKPOINT:SPEC (see above)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipes: dict[str, SpikingDiffusionPipeline] = {}

    def load(ck: str) -> SpikingDiffusionPipeline:   # each checkpoint loaded once
        if ck not in pipes:
            pipes[ck] = SpikingDiffusionPipeline.from_pretrained(ck)
        return pipes[ck]

    scorers: dict[str, tuple] = {}   # each data set's classifier and test split, read once
    for s in args.settings:
        ck, _, spec = s.partition(":")
        overrides, run = parse_spec(spec)
        pipe = load(ck)
        dataset = pipe.info.get("dataset", "mnist")
        if dataset not in scorers:
            scorers[dataset] = scorer_for(dataset, args.data_root, args.seed)
        row = score(pipe, pipe.sampling_settings(**overrides), args.samples, args.seed, scorers[dataset],
                    run["steps"], run["order"])
        print(json.dumps(dict(checkpoint=ck, spec=spec, **row)), flush=True)


if __name__ == "__main__":
    main()
