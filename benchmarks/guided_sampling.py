"""Autoguidance with any guide prior, and a corrector whose cells per round shrink (an experiment).

    python benchmarks/guided_sampling.py --data-root data --samples 1000 --seed 0 \\
        assets/mnist --guide OTHER_PRIOR --weight 1.0 --cells 20..2 --spec T=1.1..0.1

Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"; not in the
paper; the library's sampler setting ``guidance``): each denoiser call of the checkpoint's prior becomes
log p + w (log p - log p_guide), where p_guide is a weaker prior on the same VQ-SVAE's tokens. Here the
guide is any such checkpoint (``--guide``, e.g. a ``train-prior --preset guide`` snapshot, or an
earlier snapshot of the same run), in place of the one the checkpoint stores. A
corrector schedule ``--cells A..B`` re-masks A cells in the first corrector round and B in the last,
linearly between (the library re-masks the same number every round). The rest is the checkpoint's own
sampler. Samples and metrics as in ``compare_settings.py`` (``--seed S`` gives ``evaluate --seed S``'s
protocol), one JSON line. Results: docs/experiments.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from compare_settings import parse_spec, score, scorer_for  # noqa: E402
from spiking_diffusion import SpikingDiffusionPipeline  # noqa: E402


def shrinking_corrector(correct, rounds: int, first: int, last: int):
    """A scheduler's corrector round ``correct(denoise, x, cells, ...)`` re-masking ``first`` cells in
    round 1 down (or up) to ``last`` in round ``rounds``, linearly; the count passed in is ignored."""
    done = [0]

    def call(denoise, x, _cells, *args):
        r = done[0] % rounds
        done[0] += 1
        return correct(denoise, x, round(first + (last - first) * r / max(rounds - 1, 1)), *args)
    return call


def sampler_pipeline(checkpoint: str, guide: str | None, cells: str | None,
                     rounds: int | None = None, unguided_corrector: bool = False) -> SpikingDiffusionPipeline:
    """The checkpoint's pipeline with ``guide``'s prior as its guide (None: its own, if any) and its
    corrector rounds scheduled over ``rounds`` (default: the checkpoint's own corrector rounds);
    ``unguided_corrector``: the corrector rounds call the prior alone (the unmasking steps stay guided)."""
    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint)
    if guide:
        pipe.set_guide(SpikingDiffusionPipeline.from_pretrained(guide))
    if unguided_corrector:
        correct = pipe.scheduler._correct
        pipe.scheduler._correct = lambda denoise, *a, **k: correct(pipe._denoise, *a, **k)
    if cells:
        first, last = (int(v) for v in cells.split(".."))
        rounds = rounds or pipe.sampling_settings().corrector_steps
        pipe.scheduler._correct = shrinking_corrector(pipe.scheduler._correct, rounds, first, last)
    return pipe


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--guide", help="the weaker prior's checkpoint (the same VQ-SVAE)")
    p.add_argument("--weight", type=float, default=None, help="guidance weight w (0: none; default: the checkpoint's)")
    p.add_argument("--cells", help="corrector cells per round, FIRST..LAST (default: the checkpoint's, every round)")
    p.add_argument("--unguided-corrector", action="store_true",
                   help="guide the unmasking steps only: the corrector rounds call the prior alone")
    p.add_argument("--spec", default="", help="sampler overrides as in compare_settings.py, e.g. T=1.2..0.1")
    p.add_argument("--data-root", default="data")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides, run = parse_spec(args.spec)
    if args.weight is not None:                     # --weight over a spec's guidance=
        overrides["guidance"] = args.weight
    pipe = sampler_pipeline(args.checkpoint, args.guide, args.cells, rounds=overrides.get("corrector_steps"),
                            unguided_corrector=args.unguided_corrector)
    sampling = pipe.sampling_settings(**overrides)
    if args.guide and not sampling.guidance:
        raise SystemExit(f"--guide {args.guide} with guidance 0 ({args.checkpoint} stores none): give --weight W > 0")
    scorer = scorer_for(pipe.info.get("dataset", "mnist"), args.data_root, args.seed)
    row = score(pipe, sampling, args.samples, args.seed, scorer, run["steps"], run["order"])
    print(json.dumps(dict(checkpoint=args.checkpoint, guide=args.guide, weight=sampling.guidance, cells=args.cells,
                          unguided_corrector=args.unguided_corrector, spec=args.spec, **row)))


if __name__ == "__main__":
    main()
