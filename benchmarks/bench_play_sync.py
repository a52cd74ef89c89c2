"""Play's step box against the animation: does the Step box show the frame the browser shows?

    python benchmarks/bench_play_sync.py [--checkpoints assets] [--samples 40]

Launches the app in-process, generates the default model's 16 images, presses Play in Unmasking
and then, ``--samples`` times: reads the Step box, captures the playing GIF on screen (Chromium's
DevTools screenshot of its box, optimised for speed: a few ms), reads the box again, and finds
which of the GIF's frames the capture shows (the least squared difference against every frame
scaled to the capture; frame i is step i + 1). Prints how often the frame shown lay within the
box's two readings, past them (the box behind the picture) or before them (the box ahead), over
the samples off the last frame's hold and the loop's restart.
"""
from __future__ import annotations

import argparse
import base64
import collections
import io

import numpy as np
from PIL import Image

from studio_server import ROOT, unmasking_page  # also puts the repo and tests/ on sys.path


def shown_frame(picture: bytes, frames: list[np.ndarray]) -> int:
    """The index of the GIF frame (grey ``[H, W]``) that a captured ``picture`` of it shows (nearest,
    each frame scaled to the picture's size)."""
    shot = Image.open(io.BytesIO(picture)).convert("L")
    seen = np.asarray(shot, float)                                                          # [h, w]

    def error(i):
        scaled = Image.fromarray(frames[i].astype(np.uint8)).resize(shot.size, Image.BILINEAR)
        return float(np.mean((np.asarray(scaled, float) - seen) ** 2))
    return min(range(len(frames)), key=error)


BOX_JS = "+document.querySelector('#step input[type=number]').value"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "assets"))
    ap.add_argument("--samples", type=int, default=40)
    a = ap.parse_args()

    from playwright.sync_api import expect

    with unmasking_page(a.checkpoints) as page:
        page.locator("#play").click()
        player = page.locator("#player img")
        expect(player).to_be_visible()
        gif = Image.open(io.BytesIO(page.request.get(player.get_attribute("src")).body()))
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("L"), float))
        last = len(frames)
        counts, rows = collections.Counter(), []
        cdp = page.context.new_cdp_session(page)
        r = player.bounding_box()
        clip = {"x": r["x"], "y": r["y"], "width": r["width"], "height": r["height"], "scale": 0.5}
        for _ in range(a.samples):
            before = page.evaluate(BOX_JS)
            shot = cdp.send("Page.captureScreenshot", {"format": "jpeg", "quality": 90, "clip": clip,
                                                       "optimizeForSpeed": True})
            after = page.evaluate(BOX_JS)
            frame = shown_frame(base64.b64decode(shot["data"]), frames) + 1   # the step the picture shows
            rows.append((before, frame, after))
            if last not in (frame, before, after) and after >= before:       # the hold and the loop: no timing
                counts["in step" if before <= frame <= after else "box behind" if frame > after else "box ahead"] += 1
            page.wait_for_timeout(137)                                    # off the 100 ms frame grid
    print("(Step box before, step shown, Step box after):", rows)
    print(f"{len(frames)} frames; of {sum(counts.values())} samples off the hold, the frame shown was within the "
          f"box's values before and after the capture {counts['in step']} times, past them (the box behind) "
          f"{counts['box behind']}, before them (the box ahead) {counts['box ahead']}")


if __name__ == "__main__":
    main()
