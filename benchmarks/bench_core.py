"""Core speed check at the paper preset, next to the authors' reported figures.

    python benchmarks/bench_core.py [--quick] [--threads 2] [--json PATH]

Measures, on random paper-sized models (BatchNorms set so that neurons fire):
- VQ-SVAE training, images/s at batch 32 (forward + backward + AdamW step);
- denoiser training, images/s at batch 32 (absorbing-diffusion loss, backward, AdamW step);
- sampling 16 images x 49 steps: seconds, seconds per step (one denoiser call per step), and the
  peak resident memory of a fresh process doing it (``ru_maxrss``);
- sampling one image x 49 steps.
Sampling is measured on the fast path (the default) and on the plain reference path.
Medians over several runs after a warm-up; ``--quick`` does fewer. Random data (speed only).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_sampling import (PAPER, load, median, peak_memory, random_checkpoint,  # noqa: E402
                            random_models, set_threads, table)

AUTHORS = {"vq_train": "31 img/s", "den_train": "6.3 img/s", "sample16": "44 s", "per_call": "0.90 s",
           "memory16": "2.0 GB", "sample1": "4.05 s"}


def train_speed(model: torch.nn.Module, loss_fn, steps: int) -> float:
    """Images/s of full training steps at batch 32 (median step time, after one warm-up step)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-3)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
        print(f"  step {i}: {time.perf_counter() - t0:.2f} s, load {load():.1f}", file=sys.stderr, flush=True)
    model.eval()
    return 32 / median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-training", action="store_true")
    a = ap.parse_args()
    set_threads(a.threads)
    n_train, n16, n1 = (2, 1, 3) if a.quick else (5, 3, 5)
    res = {"threads": a.threads, "torch": torch.__version__, "load_start": load(), "quick": a.quick}

    from spiking_diffusion import AbsorbingDiffusion, SpikingDiffusionPipeline

    if not a.skip_training:
        vq, den = random_models("paper")
        images = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        print("VQ-SVAE training ...", file=sys.stderr, flush=True)
        res["vq_train_img_s"] = train_speed(vq, lambda: vq.losses(images)["total"], n_train)
        diffusion = AbsorbingDiffusion(den.cfg.codebook_size, den.cfg.latent_size)
        x0 = torch.randint(0, den.cfg.codebook_size, (32, 7, 7), generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(0)
        print("denoiser training ...", file=sys.stderr, flush=True)
        res["den_train_img_s"] = train_speed(den, lambda: diffusion.loss(den, x0, generator=gen), n_train)
        del vq, den

    tmp = tempfile.TemporaryDirectory()
    ckpt = random_checkpoint("paper", Path(tmp.name))
    pipe = SpikingDiffusionPipeline.from_pretrained(ckpt)
    pipe(1, 2, sampler=PAPER, seed=0)
    pipe(1, 2, sampler=PAPER, seed=0, fast=False)
    for kind in ("fast", "reference"):
        for n, reps in ((16, n16 if kind == "fast" else max(1, n16 - 1)), (1, n1)):
            ts = []
            for r in range(reps):
                t0 = time.perf_counter()
                pipe(n, 49, sampler=PAPER, seed=r, fast=kind == "fast")
                ts.append(time.perf_counter() - t0)
                print(f"  sampling {n} x 49 ({kind}) run {r}: {ts[-1]:.2f} s, load {load():.1f}", file=sys.stderr, flush=True)
            res[f"sample{n}_{kind}_s"] = median(ts)
        res[f"memory16_{kind}"] = peak_memory(ckpt, 16, 49, kind == "fast", a.threads)
    res["load_end"] = load()

    def f(key, unit, scale=1.0, fmt="{:.2f}"):
        return (fmt.format(res[key] * scale) + unit) if key in res else "-"

    rows = [
        ["VQ-SVAE training, batch 32", f("vq_train_img_s", " img/s", fmt="{:.1f}"), "", AUTHORS["vq_train"]],
        ["denoiser training, batch 32", f("den_train_img_s", " img/s", fmt="{:.1f}"), "", AUTHORS["den_train"]],
        ["sampling 16 images x 49 steps", f("sample16_fast_s", " s"), f("sample16_reference_s", " s"), AUTHORS["sample16"]],
        ["s per denoiser call (per step, 16 images)", f("sample16_fast_s", " s", 1 / 49, "{:.3f}"),
         f("sample16_reference_s", " s", 1 / 49, "{:.3f}"), AUTHORS["per_call"]],
        ["peak memory, 16 images (process RSS)", f"{res['memory16_fast']['peak_mb'] / 1024:.2f} GB",
         f"{res['memory16_reference']['peak_mb'] / 1024:.2f} GB", AUTHORS["memory16"]],
        ["sampling 1 image x 49 steps", f("sample1_fast_s", " s"), f("sample1_reference_s", " s"), AUTHORS["sample1"]],
    ]
    print(f"### paper preset, {a.threads} threads, torch {torch.__version__}\n")
    print(table(["measure", "ours (fast path)", "ours (reference path)", "authors (paper code)"], rows))
    print(f"\nload average (1 min) at start {res['load_start']:.1f}, at end {res['load_end']:.1f}; "
          f"the memory rows include the Python + torch process itself "
          f"(after loading: {res['memory16_fast']['loaded_mb']:.0f} MB)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
