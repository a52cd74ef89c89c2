"""Shared by the browser benchmarks: the studio served in this process on a free loopback port."""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)


def launch_studio(checkpoints: str):
    """Build ``app.py``'s studio on ``checkpoints`` and serve it without blocking -> (demo, url);
    call ``demo.close()`` when done."""
    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = app.parse_args(["--checkpoints", checkpoints, "--port", str(port)])
    demo = app.make_app(args)
    _, url, _ = demo.launch(**app.launch_kwargs(args), prevent_thread_lock=True, quiet=True, inbrowser=False)
    return demo, url


@contextlib.contextmanager
def unmasking_page(checkpoints: str, corrector: int | None = None, timeout_ms: int = 120_000):
    """The studio served in this process, headless Chromium (Debian's, via Playwright) on it, 16 images
    generated (``corrector``: that many corrector rounds instead of the model's own) and the Unmasking
    tab open -> the page; the browser and the studio are closed after."""
    from playwright.sync_api import expect, sync_playwright
    from test_browser import CHROMIUM, FLAGS

    demo, url = launch_studio(checkpoints)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_ms)
            expect.set_options(timeout=timeout_ms)
            page.goto(url)
            if corrector is not None:
                page.get_by_text("More sampling settings", exact=True).click()
                page.locator("#corrector-steps input[type=range]").fill(str(corrector))
            page.locator("#generate-btn").click()
            expect(page.locator('#gen-progress[data-state="done"]')).to_be_attached(timeout=300_000)
            page.get_by_role("tab", name="Unmasking").click()
            expect(page.locator("#phase-axis")).to_be_attached()
            yield page
            browser.close()
    finally:
        demo.close()
