"""What running model work from several threads costs, and what one compute thread gives back.

    python benchmarks/bench_threads.py [--checkpoint assets/mnist] [--runs 3]

PyTorch's CPU ops run in parallel through OpenMP (libgomp), which keeps a pool of workers for every
thread that has run a parallel op; with more such threads than cores its workers sleep between
ops (see spiking_diffusion/compute.py). Each case runs in a fresh process, the cases interleaved
run by run; medians are printed:

1. an in-place op on 100k floats (``v.mul_(0.5).add_(x)``, microseconds per op) from the only thread
   that runs ops, and from a second thread after the first has run one;
2. 16 images of the checkpoint with its own sampler (trace and a per-step callback, as the studio
   asks): the model loaded in the main thread and sampled in another (the studio before
   ``compute.start``), and with ``compute.start()`` before loading (every job on one thread).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
import torch
case, checkpoint = sys.argv[2], sys.argv[3]

def op_time():
    v, x = torch.zeros(16, 128, 7, 7), torch.ones(16, 128, 7, 7)   # 100k floats: above the parallel grain
    for _ in range(200):
        v.mul_(0.5).add_(x)
    start = time.perf_counter()
    for _ in range(2000):
        v.mul_(0.5).add_(x)
    return (time.perf_counter() - start) / 4000 * 1e6

def in_thread(fn):
    out = []
    th = threading.Thread(target=lambda: out.append(fn()))
    th.start(); th.join()
    return out[0]

if case == "op, one thread":
    result = op_time()
elif case == "op, a second thread":
    torch.ones(100_000).add_(1)            # the main thread runs one parallel op (it now has a pool)
    result = in_thread(op_time)
else:
    from spiking_diffusion import SpikingDiffusionPipeline, compute
    if case == "generation, one compute thread":
        compute.start()
    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint)

    def generate():
        pipe(16, seed=0, trace=True, callback=lambda state: None)     # warm-up
        start = time.perf_counter()
        pipe(16, seed=1, trace=True, callback=lambda state: None)
        return time.perf_counter() - start
    result = in_thread(generate)           # (the studio's sampler thread)
print(json.dumps(result))
"""

CASES = [("op, one thread", "us"), ("op, a second thread", "us"),
         ("generation, loaded in main, sampled in a thread", "s"), ("generation, one compute thread", "s")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "assets" / "mnist"))
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    times: dict[str, list[float]] = {case: [] for case, _ in CASES}
    for r in range(a.runs):
        for case, _ in CASES:
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), case, a.checkpoint],
                                 capture_output=True, text=True, check=True)
            times[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"run {r + 1}: " + ", ".join(f"{case} {times[case][-1]:.3g}" for case, _ in CASES), flush=True)
    print(f"\nmedians over {a.runs} runs ({a.checkpoint}, 16 images with its own sampler; torch threads as default):")
    for case, unit in CASES:
        print(f"  {case}: {statistics.median(times[case]):.3g} {unit}")


if __name__ == "__main__":
    main()
