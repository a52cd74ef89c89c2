"""Frame rate of the Unmasking view's Play animation, as the browser shows it.

    python benchmarks/bench_animation.py [--checkpoints assets] [--corrector 10] [--seconds 6] [--runs 3]

Launches the app in-process on a free port, generates 16 images (49 steps + ``--corrector``
rounds) in headless Chromium (Debian's, via Playwright), clicks Play and records the page with
Chromium's screencast (CDP ``Page.startScreencast``: one event per frame the compositor paints).
Each painted frame is cropped to the player and its step read from the black marker on the
animation's step axis; it prints the Play latency (click -> first frame shown), the distinct
animation frames seen per second (a lower bound: the screencast itself captures only a few frames a
second on 2 cores), the speed at which the animation advances (steps per second: the GIF's 10 when
the browser shows every frame in time) and the longest gap between two new frames seen.
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import time

import numpy as np

from studio_server import ROOT, unmasking_page  # also puts the repo and tests/ on sys.path)


def marker_step(frame: np.ndarray, total: int) -> int | None:
    """The step a frame of the animation shows: where the black marker sits on its step axis."""
    from demo.frames import PHASE_COLORS

    rgb = frame[..., :3].astype(int)
    colored = np.zeros(rgb.shape[:2], bool)
    for col in PHASE_COLORS.values():                          # the played part of the axis, full colour
        colored |= np.abs(rgb - np.array(col)).sum(2) < 60
    row = int(np.argmax(colored.sum(1)))                      # the axis: the row with most phase colour
    line = rgb[row].sum(1)
    xs = np.nonzero(line < 3 * 245)[0]                         # the whole strip: anything not white
    black = np.nonzero(line < 150)[0]                          # the marker
    if len(xs) < 10 or not len(black):
        return None
    return int(np.clip((black.mean() - xs.min()) / (xs.max() - xs.min() + 1) * total, 0, total - 1)) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "assets"))
    ap.add_argument("--corrector", type=int, default=10, help="corrector rounds after the 49 steps")
    ap.add_argument("--seconds", type=float, default=6.0, help="recording time per run")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()

    from PIL import Image
    from playwright.sync_api import expect

    results = []
    with unmasking_page(a.checkpoints, corrector=a.corrector) as page:
        total = 49 + a.corrector
        cdp = page.context.new_cdp_session(page)
        for run in range(a.runs):
            frames: list[tuple[float, bytes]] = []

            def on_frame(ev):
                frames.append((time.perf_counter(), ev["data"]))
                cdp.send("Page.screencastFrameAck", {"sessionId": ev["sessionId"]})

            cdp.on("Page.screencastFrame", on_frame)
            page.locator("#play").scroll_into_view_if_needed()
            click = time.perf_counter()
            page.locator("#play").click()
            page.locator("#player img").wait_for()
            page.evaluate("() => document.querySelector('#player img').scrollIntoView({block: 'center'})")
            cdp.send("Page.startScreencast", {"format": "jpeg", "quality": 70, "everyNthFrame": 1})
            box = page.locator("#player img").bounding_box()
            page.wait_for_timeout(a.seconds * 1000)
            cdp.send("Page.stopScreencast")
            cdp.remove_listener("Page.screencastFrame", on_frame)
            steps = []
            for t, data in frames:
                img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                x0, y0 = int(box["x"]), int(box["y"])
                crop = img[max(0, y0):y0 + int(box["height"]), max(0, x0):x0 + int(box["width"])]
                steps.append((t, marker_step(crop, total)))
            shown = [(t, s) for t, s in steps if s is not None]
            if os.environ.get("SD_BENCH_DEBUG"):
                print([s for _, s in shown])
            new = [shown[0]] + [b for a_, b in zip(shown, shown[1:]) if b[1] != a_[1]] if shown else []
            if len(new) < 2:
                print(f"run {run + 1}: too few frames read ({len(frames)} painted)")
                continue
            span = new[-1][0] - new[0][0]
            fps = (len(new) - 1) / span
            # the animation's speed: slope of the step shown over time (a loop back to step 1 unwrapped)
            ts = np.array([t for t, _ in new]); st = np.array([s_ for _, s_ in new], float)
            st += total * np.concatenate([[0], np.cumsum(np.diff(st) < -total / 2)])
            rate = float(np.polyfit(ts - ts[0], st, 1)[0])
            gap = max(b[0] - a_[0] for a_, b in zip(new, new[1:]))
            latency = new[0][0] - click
            results.append((fps, rate, gap, latency))
            print(f"run {run + 1}: {len(frames)} painted frames, {len(new)} distinct animation frames in {span:.2f} s: "
                  f"{fps:.1f} frames/s seen, the animation advancing {rate:.1f} steps/s, longest gap {gap * 1000:.0f} ms, "
                  f"play latency {latency:.2f} s")
            page.locator("#pause").click()
            expect(page.locator("#token-grid")).to_be_visible()
    if results:
        med = [statistics.median(r[i] for r in results) for i in range(4)]
        print(f"median over {len(results)} runs: {med[0]:.1f} distinct frames/s seen, animation at {med[1]:.1f} steps/s, "
              f"longest gap {med[2] * 1000:.0f} ms, play latency (click -> first frame) {med[3]:.2f} s")


if __name__ == "__main__":
    main()
