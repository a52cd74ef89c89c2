"""Page-level speed of the studio: click Generate -> first streamed step visible -> all steps done.

    python benchmarks/bench_studio.py [--checkpoints assets] [--model mnist] [--images 16] [--steps 49] [--runs 5]

Launches the app in-process on a free port, drives headless Chromium (Debian's, via Playwright)
and times inside the page (performance.now()): from the click to the first streamed status update,
and to the final 'done' update; also the studio's own time (its status line) and the CPU seconds
Chromium used meanwhile (psutil: on a small machine the page competes with the sampler for the
cores). Prints the figures and the median over runs.
"""
from __future__ import annotations

import argparse
import os
import statistics

import psutil

from studio_server import ROOT, launch_studio  # also puts the repo and tests/ on sys.path)


def chromium_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by every running Chromium process."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if "chrom" in (proc.info["name"] or "") and proc.info["cpu_times"] is not None:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "assets"))
    ap.add_argument("--model", default=None, help="default: the studio's default (mnist if present)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=49)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()

    from playwright.sync_api import expect, sync_playwright
    from test_browser import CHROMIUM, FLAGS, TIMING_JS

    demo, url = launch_studio(a.checkpoints)
    firsts, dones, servers, cpus = [], [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.goto(url)
            if a.model:
                page.locator("#model input").fill(a.model)
                page.keyboard.press("Enter")
            page.locator("#num-images input[type=number]").fill(str(a.images))
            page.locator("#num-images input[type=number]").press("Enter")
            page.locator("#steps input[type=number]").fill(str(a.steps))
            page.locator("#steps input[type=number]").press("Enter")
            model = page.locator("#model input").input_value()
            for i in range(a.runs + 1):  # the first run warms the page up and is not counted
                page.evaluate(TIMING_JS)
                cpu = chromium_cpu_seconds()
                page.locator("#generate-btn").click()
                expect(page.locator('#gen-progress[data-state="done"]:not([data-stale])')).to_be_attached()
                t = page.evaluate("window.__t")
                server = float(page.locator("#gen-progress").get_attribute("data-seconds"))
                cpu = chromium_cpu_seconds() - cpu
                if i:
                    firsts.append(t["first"] - t["click"])
                    dones.append(t["done"] - t["click"])
                    servers.append(1000 * server)
                    cpus.append(cpu)
                    print(f"run {i}: first streamed step {firsts[-1]:.0f} ms, done {dones[-1]:.0f} ms "
                          f"(the studio's own generation: {servers[-1]:.0f} ms; Chromium's CPU: {cpu:.1f} s)")
            browser.close()
    finally:
        demo.close()
    print(f"model {model}, {a.images} images, {a.steps} steps, {os.cpu_count()} CPUs: median first step "
          f"{statistics.median(firsts):.0f} ms, median done {statistics.median(dones):.0f} ms, of which the studio's "
          f"generation {statistics.median(servers):.0f} ms, Chromium's CPU {statistics.median(cpus):.1f} s (over {a.runs} runs)")


if __name__ == "__main__":
    main()
