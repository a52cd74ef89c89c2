"""Offline metrics for several (checkpoint, temperature, order, steps) settings, one line each.

    python benchmarks/compare_settings.py --data-root DATA --samples 400 \
        runs/mnist-emb:0.65:random:49 runs/mnist-idx:0.65:random:49 ...

Used to choose the denoiser input, the default temperature and the sampler (README). Metrics
against the first 2,000 test images in the data set's classifier feature space (assets/classifiers).
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
from spiking_diffusion import metrics as M  # noqa: E402
from spiking_diffusion.classifier import load_classifier  # noqa: E402
from spiking_diffusion.data import load_images  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("settings", nargs="+", help="CHECKPOINT:TEMPERATURE:ORDER:STEPS")
    p.add_argument("--data-root", default="data")
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    first = SpikingDiffusionPipeline.from_pretrained(args.settings[0].split(":")[0])
    dataset = first.info.get("dataset", "mnist")
    clf = load_classifier(Path(__file__).resolve().parents[1] / "assets" / "classifiers" / dataset)
    real_f, _ = clf.embed(load_images(dataset, args.data_root, train=False, download=False).floats(slice(0, 2000)))
    for s in args.settings:
        ck, temp, order, steps = s.split(":")
        pipe = SpikingDiffusionPipeline.from_pretrained(ck)
        t0 = time.time()
        out = pipe(num_images=args.samples, steps=int(steps), temperature=float(temp), seed=args.seed, order=order)
        f, prob = clf.embed(out.images)
        prec, rec = M.precision_recall(real_f[: 2 * args.samples], f, k=3)
        print(json.dumps(dict(checkpoint=ck, temperature=float(temp), order=order, steps=int(steps),
                              confident=round(M.confident_share(prob), 3),
                              class_entropy=round(M.class_coverage_entropy(prob.argmax(1), prob.shape[1]), 3),
                              precision=round(prec, 3), recall=round(rec, 3),
                              frechet=round(M.fid_from_features(real_f, f), 1), seconds=round(time.time() - t0, 1))),
              flush=True)


if __name__ == "__main__":
    main()
