"""Reconstruction figures of VQ-SVAE checkpoints, no prior needed: to follow a VQ-SVAE's training.

    python benchmarks/recon_metrics.py --data-root DATA CHECKPOINT [CHECKPOINT ...] [--images 1000]

For each checkpoint (a VQ-SVAE alone, a run folder's snapshot, or a full checkpoint), one JSON line:
MSE and SSIM of its reconstructions of the first ``--images`` test images, and the offline classifier
metrics (Fréchet distance, precision, recall, confident, class entropy) of its reconstructions of
``--images`` train-split images held out of the classifier's training, against the test split:
the figures ``evaluate`` reports as ``reconstructed_heldout`` (report.json), which bound what a prior
on these tokens can reach. The checkpoints must share a data set.
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
from spiking_diffusion.data import DataError, load_images  # noqa: E402
from spiking_diffusion.evaluate import EvalConfig, Reference, classifier_metrics, reconstructions  # noqa: E402
from spiking_diffusion.evaluation.run import heldout_images, reconstruction_scores  # noqa: E402


def one_data_set(pipes) -> str:
    """The data set all ``pipes`` were trained on (their figures compare on the same images); exits
    naming them when they differ."""
    datasets = [pipe.info.get("dataset", "mnist") for pipe in pipes]
    if len(set(datasets)) > 1:
        raise SystemExit(f"the checkpoints were trained on different data sets ({', '.join(datasets)}): give one at a time")
    return datasets[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data-root", default="data")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch = EvalConfig().batch_size
    pipes = [SpikingDiffusionPipeline.from_pretrained(ck) for ck in args.checkpoints]
    dataset = one_data_set(pipes)
    clf = load_classifier(find_classifier_dir(dataset))
    test = load_images(dataset, args.data_root, train=False, download=False)
    ref = Reference.of(clf, test.images)
    try:
        held = heldout_images(clf, args.data_root, args.images, download=False)   # [n, C, H, W] uint8
    except DataError as e:
        raise SystemExit(f"the classifier holds its images out of {clf.cfg.dataset!r}, which is not available: {e}")
    for ck, pipe in zip(args.checkpoints, pipes):
        t0 = time.time()
        scores = reconstruction_scores(pipe, test, args.images, batch)[0]
        m = classifier_metrics(clf, reconstructions(pipe, held, batch)[0], ref)
        info = pipe.info
        print(json.dumps(dict(checkpoint=ck, steps=info.get("steps"), epochs=info.get("epochs"),
                              mse=round(scores["mse"], 5), ssim=round(scores["ssim"], 4),
                              **{k: round(float(v), 3) for k, v in m.items()}, seconds=round(time.time() - t0, 1))),
              flush=True)


if __name__ == "__main__":
    main()
