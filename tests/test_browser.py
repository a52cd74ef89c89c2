"""The studio in headless Chromium (Playwright): generate, scrub, and open every view.

Uses a tiny random checkpoint in a tmp folder. With SD_SCREENSHOTS=1 it saves a screenshot of each
view to docs/screenshots/ (using assets/mnist when that checkpoint exists).
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from test_app import free_port, make_checkpoints

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (/usr/bin/chromium): apt-get install chromium")
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

ROOT = Path(__file__).resolve().parents[1]
SHOTS = os.environ.get("SD_SCREENSHOTS") == "1"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--no-default-browser-check"]
T = 30_000  # ms; plotly renders slowly on 2 shared cores
expect.set_options(timeout=T)

# Records, inside the page, when Generate is clicked and when the status first shows a streamed step / done.
TIMING_JS = """() => {
  window.__t = {};
  const btn = document.querySelector('#generate-btn');
  btn.addEventListener('click', () => {
    const old = document.querySelector('#gen-progress');
    if (old) old.dataset.stale = '1';  // only a new status counts
    window.__t = {click: performance.now()};
  }, {capture: true, once: true});
  new MutationObserver(() => {
    const el = document.querySelector('#gen-progress');
    if (!el || el.dataset.stale || window.__t.click === undefined) return;
    const now = performance.now();
    if (el.dataset.state === 'running' && window.__t.first === undefined) window.__t.first = now;
    if (el.dataset.state === 'done' && window.__t.done === undefined) {
      window.__t.done = now; if (window.__t.first === undefined) window.__t.first = now; }
  }).observe(document.querySelector('#gen-status') || document.body, {subtree: true, childList: true, attributes: true});
}"""


@pytest.fixture(scope="module")
def url(tmp_path_factory, make_tiny_models):
    import app

    real = ROOT / "assets" / "mnist"
    if SHOTS and (real / "model.safetensors").is_file():
        ck = ROOT / "assets"
    else:
        ck = make_checkpoints(tmp_path_factory.mktemp("browser") / "ck", make_tiny_models)
    args = app.parse_args(["--checkpoints", str(ck), "--port", str(free_port())])
    demo = app.make_app(args)
    _, link, _ = demo.launch(**app.launch_kwargs(args), prevent_thread_lock=True, quiet=True, inbrowser=False)
    yield link
    demo.close()


@pytest.fixture(scope="module")
def page(url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(T)
        pg.goto(url)
        expect(pg.locator("#generate-btn")).to_be_visible()
        yield pg
        browser.close()


def shot(page, name):
    if SHOTS:
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()


def generate(page) -> dict:
    """Click Generate and return in-page timings (ms): first streamed step and done."""
    expect(page.locator("#gen-status")).to_be_attached()
    page.evaluate(TIMING_JS)
    page.locator("#generate-btn").click()
    expect(page.locator('#gen-progress[data-state="done"]:not([data-stale])')).to_be_attached(timeout=60_000)
    t = page.evaluate("window.__t")
    return {"first_step_ms": t["first"] - t["click"], "done_ms": t["done"] - t["click"]}


def test_generate_streams_and_finishes(page):
    t = generate(page)
    print(f"\nbrowser: first streamed step {t['first_step_ms']:.0f} ms, done {t['done_ms']:.0f} ms after the click")
    assert 0 < t["first_step_ms"] <= t["done_ms"]
    expect(page.locator("#gen-progress")).to_contain_text("done: 16 images, 49 steps")
    expect(page.locator("#grid img")).to_have_attribute("src", re.compile(r".+"))
    shot(page, "generate")


def test_unmasking_scrub_and_cell_selection(page):
    open_tab(page, "Unmasking")
    caption = page.locator("#unmask-caption")
    expect(caption).to_contain_text(re.compile(r"Step (\d+)/\1\b"), timeout=20_000)  # the last frame
    page.locator("#step input[type=range]").fill("10")
    expect(caption).to_contain_text(re.compile(r"Step 10/\d+\b"))
    expect(page.locator("#token-grid .js-plotly-plot")).to_be_attached()
    expect(page.locator("#committed img")).to_have_attribute("src", re.compile(r".+"))
    cell = page.locator("#cell input")
    cell.click()
    page.get_by_role("option", name="row 1, col 2", exact=True).click()
    shot(page, "unmasking")


def test_spikes_view(page):
    open_tab(page, "Spikes")
    expect(page.locator("#spikes-cell input")).to_have_value("row 1, col 2")  # selected in Unmasking
    expect(page.locator("#spikes-note")).to_contain_text("token cell row 1, col 2")
    for pid in ("raster-cell", "raster-all", "membrane"):
        expect(page.locator(f"#{pid} .js-plotly-plot")).to_be_attached()
    shot(page, "spikes")


def test_codebook_view(page):
    open_tab(page, "Codebook")
    expect(page.locator("#codebook-stats")).to_contain_text("perplexity")
    expect(page.locator("#usage-bars .js-plotly-plot")).to_be_attached()
    expect(page.locator("#atlas img")).to_have_attribute("src", re.compile(r".+"))
    shot(page, "codebook")


def test_encode_view(page, tmp_path):
    import numpy as np
    from PIL import Image

    open_tab(page, "Encode & reconstruct")
    digit = np.zeros((64, 64), np.uint8)
    digit[10:54, 28:36] = 255  # a "1", light on dark
    Image.fromarray(digit).save(tmp_path / "one.png")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "one.png"))
    expect(page.locator("#upload img")).to_be_attached()
    page.locator("#encode-btn").click()
    expect(page.locator("#encode-note")).to_contain_text("read 64x64 L; ink 8x44 scaled into 20x20")
    expect(page.locator("#reconstruction img")).to_have_attribute("src", re.compile(r".+"))
    expect(page.locator("#encode-tokens .js-plotly-plot")).to_be_attached()
    shot(page, "encode")


def test_learn_view(page):
    open_tab(page, "Learn")
    note = page.locator("#lif-note")
    expect(note).to_contain_text("spikes in 40 steps")
    expect(page.locator("#quant-note")).to_contain_text("z = (1 - 0.50)")
    page.locator("#lif-current input[type=range]").fill("0.2")
    expect(note).to_contain_text("0 spikes in 40 steps")  # too weak to reach the threshold
    page.locator("#energy-btn").click()
    expect(page.locator("#energy-note")).to_contain_text("denoiser calls")
    shot(page, "learn")
