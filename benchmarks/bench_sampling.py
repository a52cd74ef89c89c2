"""Sampling speed: the fast path against the plain reference path, side by side in one run.

    python benchmarks/bench_sampling.py [--quick] [--threads 2] [--checkpoint DIR] [--json PATH]

1. ``paper`` preset (a random model whose BatchNorms are set so that neurons fire): 1 image x 49
   steps and 16 images x 49 steps on both paths, interleaved run by run, with the same seed;
   the median time of each, the median of the per-run ratios, whether the tokens agree, and the
   peak memory (``ru_maxrss`` of a fresh subprocess that loads the checkpoint and generates 16
   images on one path).
2. A given checkpoint (``--checkpoint``, default ``assets/mnist`` when it exists, else a random
   ``small``-preset model): 16 images x 49 steps the way the studio asks for them (trace and a
   per-step callback), the total time and the time to the first step (first callback); and the
   plain fast call for comparison.
3. Firing rates of each model's denoiser (what sparsity could skip), and a per-stage profile of
   one denoiser call (``--profile``).

Medians over several runs after a warm-up run; ``--quick`` does fewer. The machine load (1-minute
load average) is printed with the results: numbers measured under load are not comparable.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # model_helpers: random spiking models that fire

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model_helpers import firing_rates, random_batch, random_models  # noqa: E402  (tests/model_helpers.py)
from spiking_diffusion.sampling import SamplerConfig  # noqa: E402

PAPER = SamplerConfig.paper()   # timings use the paper's sampler (T 0.65, no corrector) unless they say otherwise


# --- helpers shared with bench_core.py ----------------------------------------------------------
def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def load() -> float:
    return os.getloadavg()[0]


def median(xs) -> float:
    return float(statistics.median(xs))


def random_checkpoint(preset: str, folder: Path, seed: int = 0) -> Path:
    from spiking_diffusion.checkpoint import save_checkpoint

    vq, den = random_models(preset, seed)
    return save_checkpoint(folder / f"random-{preset}", vq, den, info={"preset": preset, "random": True})


def peak_memory(checkpoint: Path, images: int, steps: int, fast: bool, threads: int) -> dict:
    """Peak resident memory (MB) of a fresh process that loads ``checkpoint`` and generates once:
    ``{"loaded_mb": RSS after loading, "peak_mb": peak RSS}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory", str(checkpoint), "--images", str(images),
           "--steps", str(steps), "--path", "fast" if fast else "reference", "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=str(ROOT))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_child(a) -> None:
    from spiking_diffusion import SpikingDiffusionPipeline

    set_threads(a.threads)
    pipe = SpikingDiffusionPipeline.from_pretrained(a._memory)
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # noqa: E731
    loaded = rss()
    pipe(a.images, a.steps, sampler=PAPER, seed=0, fast=a.path == "fast")
    print(json.dumps({"loaded_mb": round(loaded, 1), "peak_mb": round(_peak_rss_mb(), 1)}))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ``ru_maxrss`` can carry the parent's peak
    over a fork + exec, which would overstate a child's peak)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def table(header: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
        return str(x)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


class CallCounter:
    """Counts the pipeline's denoiser calls and the image rows they evaluate, per path."""

    def __init__(self, pipe):
        self.calls = {"fast": 0, "reference": 0}
        self.rows = {"fast": 0, "reference": 0}
        for kind, name in (("fast", "_denoise"), ("reference", "_denoise_reference")):
            real = getattr(pipe, name)

            def spy(tokens, t, kind=kind, real=real):
                self.calls[kind] += 1
                self.rows[kind] += len(tokens)
                return real(tokens, t)
            setattr(pipe, name, spy)

    def take(self, kind):
        c, r = self.calls[kind], self.rows[kind]
        self.calls[kind] = self.rows[kind] = 0
        return c, r


# --- 1. fast vs reference at the paper preset --------------------------------------------------------
def side_by_side(checkpoint: Path, repeats: dict, threads: int, memory: bool = True) -> dict:
    from spiking_diffusion import SpikingDiffusionPipeline

    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint)
    count = CallCounter(pipe)
    pipe(1, 2, sampler=PAPER, seed=0, fast=True)                                   # warm-up
    pipe(1, 2, sampler=PAPER, seed=0, fast=False)
    count.take("fast"), count.take("reference")
    results = {}
    for n in (1, 16):
        runs = {"fast": [], "reference": [], "ratio": [], "same_tokens": [], "calls": {}, "rows": {}}
        for r in range(repeats[n]):
            out = {}
            for kind in ("fast", "reference"):
                t0 = time.perf_counter()
                out[kind] = pipe(n, 49, sampler=PAPER, seed=r, fast=kind == "fast")
                runs[kind].append(time.perf_counter() - t0)
                c, rows = count.take(kind)
                runs["calls"].setdefault(kind, []).append(c)
                runs["rows"].setdefault(kind, []).append(rows)
            runs["ratio"].append(runs["reference"][-1] / runs["fast"][-1])
            runs["same_tokens"].append(bool(np.array_equal(out["fast"].tokens, out["reference"].tokens)))
            print(f"  [{n} image(s), run {r}] fast {runs['fast'][-1]:.2f} s, reference {runs['reference'][-1]:.2f} s, "
                  f"load {load():.1f}", file=sys.stderr, flush=True)
        results[n] = {
            "fast_s": median(runs["fast"]), "reference_s": median(runs["reference"]),
            "ratio": median(runs["ratio"]), "same_tokens": all(runs["same_tokens"]), "runs": len(runs["fast"]),
            "fast_calls": median(runs["calls"]["fast"]), "fast_rows": median(runs["rows"]["fast"]),
            "reference_calls": median(runs["calls"]["reference"]), "reference_rows": median(runs["rows"]["reference"]),
            "all_fast_s": runs["fast"], "all_reference_s": runs["reference"],
        }
    if memory:
        for kind in ("fast", "reference"):
            results[f"memory_{kind}"] = peak_memory(checkpoint, 16, 49, kind == "fast", threads)
    return results


# --- 2. a checkpoint the way the studio uses it -------------------------------------------------------
def studio_like(checkpoint: Path, repeats: int, reference: bool = True) -> dict:
    from spiking_diffusion import SpikingDiffusionPipeline

    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint)
    chosen = pipe.sampling_defaults                                         # the settings the studio uses
    pipe(1, 1, sampler=PAPER)                                                # warm-up, as the studio does
    pipe(16, 2, seed=0, sampler=chosen)
    totals, firsts, plain, refs = [], [], [], []
    for r in range(repeats):
        first = []
        t0 = time.perf_counter()

        def callback(state, t0=t0, first=first):
            if not first:
                first.append(time.perf_counter() - t0)
        pipe(16, 49, seed=r, trace=True, callback=callback, sampler=chosen)
        totals.append(time.perf_counter() - t0)
        firsts.append(first[0])
        t0 = time.perf_counter()
        pipe(16, 49, seed=r, sampler=chosen)
        plain.append(time.perf_counter() - t0)
        if reference and r == 0:
            t0 = time.perf_counter()
            pipe(16, 49, seed=r, fast=False, sampler=chosen)
            refs.append(time.perf_counter() - t0)
        print(f"  [checkpoint run {r}] studio call {totals[-1]:.2f} s (first step {firsts[-1]:.3f} s), "
              f"plain fast call {plain[-1]:.2f} s, load {load():.1f}", file=sys.stderr, flush=True)
    return {"studio_total_s": median(totals), "first_step_s": median(firsts), "fast_plain_s": median(plain),
            "reference_s": refs[0] if refs else None, "runs": repeats, "all_studio_s": totals, "all_first_s": firsts}


# --- 3. firing rates and a per-stage profile ------------------------------------------------------------
def rates_of(checkpoint: Path) -> dict:
    from spiking_diffusion import SpikingDiffusionPipeline

    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint)
    tokens, t = random_batch(pipe.codebook_size, 16, 0, t=25)
    return firing_rates(pipe.denoiser, tokens, t)


@torch.inference_mode()
def profile_call(checkpoint: Path, batch: int, repeats: int) -> dict:
    """Median seconds of one denoiser call on each path, and of the fast path's stages."""
    import torch.nn.functional as F

    from spiking_diffusion import SpikingDiffusionPipeline
    from spiking_diffusion.fast import FastDenoiser, _bn, _conv, input_features, lif_constant, lif_sequence, reference_logits

    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint)
    den = pipe.denoiser
    fast = FastDenoiser(den)
    tokens, t = random_batch(pipe.codebook_size, batch, 0, t=25)

    def timeit(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return median(ts)

    res = {"reference": timeit(lambda: reference_logits(den, tokens, t)), "fast": timeit(lambda: fast(tokens, t)),
           "model_forward": timeit(lambda: den(tokens, t))}
    # stages of the fast path
    T = den.T
    stage = {"conv": 0.0, "batchnorm": 0.0, "lif": 0.0, "conv6": 0.0}
    blocks = fast.blocks
    for _ in range(repeats):
        x = input_features(den, tokens, t)
        s = s1 = None
        for i, (conv, bn) in enumerate(blocks):
            inp = x if i == 0 else s.flatten(0, 1)
            t0 = time.perf_counter()
            y = _conv(inp, conv.weight, conv.bias)
            t1 = time.perf_counter()
            y = _bn(y, bn)
            t2 = time.perf_counter()
            s = lif_constant(y, T) if i == 0 else lif_sequence(y.unflatten(0, (T, batch)))
            t3 = time.perf_counter()
            stage["conv"] += t1 - t0
            stage["batchnorm"] += t2 - t1
            stage["lif"] += t3 - t2
            s1 = s if i == 0 else s1
        t0 = time.perf_counter()
        m = torch.cat([s, s1], dim=2).mean(0)
        F.conv2d(m, den.conv6.weight, den.conv6.bias, padding=1)
        stage["conv6"] += time.perf_counter() - t0
    res.update({f"fast_{k}": v / repeats for k, v in stage.items()})
    from spiking_diffusion import denoiser_macs

    res["macs_dense"] = denoiser_macs(den.cfg) * batch
    res["gmac_per_s_reference"] = res["macs_dense"] / res["reference"] / 1e9
    return res


# --- main ------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", default=None, help="default: assets/mnist if it exists, else a random small model")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--preset", default="paper", help="preset of the side-by-side part (default: paper)")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--skip-checkpoint", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--profile", action="store_true", help="also time the stages of one denoiser call")
    ap.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--images", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=49, help=argparse.SUPPRESS)
    ap.add_argument("--path", default="fast", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._memory:
        return _memory_child(a)
    set_threads(a.threads)
    rep = {1: 3, 16: 1} if a.quick else {1: 7, 16: 3}
    report = {"threads": a.threads, "torch": torch.__version__, "load_start": load(), "quick": a.quick}
    tmp = tempfile.TemporaryDirectory()
    md = []
    if not a.skip_paper:
        ckpt = random_checkpoint(a.preset, Path(tmp.name))
        print(f"{a.preset} preset: fast vs reference ...", file=sys.stderr, flush=True)
        r = side_by_side(ckpt, rep, a.threads, memory=not a.no_memory)
        report["paper"] = r
        report["paper_rates"] = rates_of(ckpt)
        rows = []
        for n in (1, 16):
            x = r[n]
            rows.append([f"{n} image(s) x 49 steps", x["reference_s"], x["fast_s"], f"{x['ratio']:.2f}x",
                         f"{x['reference_rows']:.0f} / {x['fast_rows']:.0f}", "yes" if x["same_tokens"] else "NO", x["runs"]])
        md.append(f"### {a.preset} preset (random model), fast vs reference, "
                  f"{a.threads} threads\n\n" + table(
                      ["generation", "reference (s)", "fast (s)", "speed-up (median of per-run ratios)",
                       "image-evaluations ref / fast", "same tokens", "runs"], rows))
        if not a.no_memory:
            md.append(table(["peak memory, 16 images x 49 steps", "after loading (MB)", "peak RSS (MB)"],
                            [[k, r[f"memory_{k}"]["loaded_mb"], r[f"memory_{k}"]["peak_mb"]] for k in ("reference", "fast")]))
        if a.profile:
            for b in (1, 16):
                p = profile_call(ckpt, b, 3 if a.quick else 5)
                report[f"paper_profile_{b}"] = p
                md.append(f"one denoiser call, {b} image(s), {a.preset} preset: " + ", ".join(
                    f"{k} {v * 1e3:.1f} ms" for k, v in p.items() if k not in ("macs_dense", "gmac_per_s_reference"))
                    + f"; reference at {p['gmac_per_s_reference']:.1f} GMAC/s (dense count)")
    if not a.skip_checkpoint:
        ckpt = Path(a.checkpoint) if a.checkpoint else ROOT / "assets" / "mnist"
        label = str(ckpt)
        if a.checkpoint is None and not (ckpt / "config.json").is_file():
            ckpt = random_checkpoint("small", Path(tmp.name))
            label = "random small-preset model (assets/mnist not found)"
        print(f"checkpoint {label}: studio-style 16 x 49 ...", file=sys.stderr, flush=True)
        r = studio_like(ckpt, 2 if a.quick else 5)
        r["checkpoint"] = label
        report["checkpoint"] = r
        report["checkpoint_rates"] = rates_of(ckpt)
        md.append(f"### {label}, 16 images x 49 steps, {a.threads} threads\n\n" + table(
            ["measure", "seconds", "target"],
            [["studio call (trace + per-step callback), total", r["studio_total_s"], "<= 3"],
             ["time to the first step (first callback)", r["first_step_s"], "<= 0.3"],
             ["plain fast call (no trace)", r["fast_plain_s"], ""],
             ["reference path (one run)", r["reference_s"] if r["reference_s"] is not None else "-", ""]]))
    for key in ("paper_rates", "checkpoint_rates"):
        if key in report:
            what = f"{a.preset} preset, random" if key == "paper_rates" else report["checkpoint"]["checkpoint"]
            md.append(f"firing rates ({what}; 16 token grids about half masked, t=25): " + ", ".join(
                f"{k} {v['rate']:.3f} (all-zero frames {v['zero_frames']:.2f}, silent channels {v['silent_channels']:.2f})"
                for k, v in report[key].items()))
    report["load_end"] = load()
    md.append(f"load average (1 min) at start {report['load_start']:.1f}, at end {report['load_end']:.1f}; "
              f"torch {torch.__version__}, {a.threads} threads")
    print("\n\n".join(md))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
