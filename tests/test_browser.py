"""The studio in headless Chromium (Playwright): generate, scrub, and open every view.

Uses a tiny random checkpoint in a tmp folder. With SD_SCREENSHOTS=1 it saves a screenshot of each
view to docs/screenshots/ (using assets/mnist when that checkpoint exists).
"""
import os
import re
import time
from pathlib import Path

import pytest

from test_app import TABS, free_port, make_checkpoints

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


TINY_B_SAMPLER = dict(temperature=0.9, temperature_end=0.4, top_p=0.95, guidance=0.5)   # the tiny model's: constant 0.65
UNMASK_CALLS = []    # one entry per call of Studio.unmask made by the module's studio
CODEBOOK_CALLS = []  # one entry per call of Studio.codebook (the model), and one per return
CODEBOOK_DONE = []
SLOW_CODEBOOK = set()  # models whose Studio.codebook takes 3 s more (a slow first model)
ENCODE_CALLS = []      # one entry per call of Studio.encode (the model)
GENERATE_CALLS = []    # one entry per generation that passed its check: (num_images, temperature)
SLOW_DENOISER = []     # when not empty, each denoiser call takes 200 ms more (a generation as slow as a big model's)


@pytest.fixture(scope="module")
def url(tmp_path_factory, make_tiny_models):
    import app
    from demo.studio import Studio

    unmask, animation, codebook, encode = Studio.unmask, Studio.animation, Studio.codebook, Studio.encode
    generate = Studio.generate

    def counted_generate(self, model, num_images, steps, temperature, *args, **kw):
        GENERATE_CALLS.append((num_images, temperature))
        yield from generate(self, model, num_images, steps, temperature, *args, **kw)

    def counted(self, *args):
        UNMASK_CALLS.append(args[1:3])          # (image, step)
        return unmask(self, *args)

    def counted_codebook(self, model, *args):
        CODEBOOK_CALLS.append(model)
        if model in SLOW_CODEBOOK:
            time.sleep(3)
        out = codebook(self, model, *args)
        CODEBOOK_DONE.append(model)
        return out

    def counted_encode(self, model, *args):
        ENCODE_CALLS.append(model)
        return encode(self, model, *args)

    def slow(self, *args):                      # as long as a real model's (seconds): a Pause can come first
        time.sleep(1.5)
        return animation(self, *args)

    from spiking_diffusion import SpikingDiffusionPipeline
    denoise = SpikingDiffusionPipeline._denoise

    def slow_denoise(self, *args):
        if SLOW_DENOISER:
            time.sleep(0.2)
        return denoise(self, *args)

    real = ROOT / "assets" / "mnist"
    if SHOTS and (real / "model.safetensors").is_file():
        ck = ROOT / "assets"
    else:
        ck = make_checkpoints(tmp_path_factory.mktemp("browser") / "ck", make_tiny_models)
        from spiking_diffusion import SpikingDiffusionPipeline
        tiny_b = SpikingDiffusionPipeline.from_pretrained(ck / "tiny")   # a second model to switch to, with
        tiny_b.set_guide(SpikingDiffusionPipeline.from_pretrained(ck / "tiny"))   # a guide prior and sampling
        tiny_b.save_pretrained(ck / "tiny-b", info=TINY_B_SAMPLER)               # settings of its own
    args = app.parse_args(["--checkpoints", str(ck), "--port", str(free_port())])
    with pytest.MonkeyPatch.context() as mp:   # for the module's whole life: handlers look it up when called
        mp.setattr(Studio, "unmask", counted)
        mp.setattr(Studio, "animation", slow)
        mp.setattr(Studio, "codebook", counted_codebook)
        mp.setattr(Studio, "encode", counted_encode)
        mp.setattr(Studio, "generate", counted_generate)
        mp.setattr(SpikingDiffusionPipeline, "_denoise", slow_denoise)
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
        pg.on("pageerror", lambda e: PAGE_ERRORS.append(str(e)))   # shown with a failing test (see below)
        pg.on("console", lambda m: m.type == "error" and PAGE_ERRORS.append(m.text))
        pg.goto(url)
        expect(pg.locator("#generate-btn")).to_be_visible()
        yield pg
        browser.close()


PAGE_ERRORS = []


@pytest.fixture(autouse=True)
def page_errors():
    """Print the page's script and console errors since the last test (the first test: since the page
    loaded); pytest shows them if the test fails."""
    yield
    for e in PAGE_ERRORS:
        print("page error:", e)
    PAGE_ERRORS.clear()


def shot(page, name):
    if SHOTS:
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        close_toasts(page)                                   # a test's refused value left its message up
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def close_toasts(page):
    """Close the messages shown (closing one may close the others Gradio grouped with it)."""
    for _ in range(10):
        if not page.locator(".toast-close").count():
            return
        try:
            page.locator(".toast-close").first.click(timeout=2000)
        except playwright.TimeoutError:                      # it closed itself meanwhile
            pass
        page.wait_for_timeout(200)


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()
    expect(page.locator("[role=tab]")).to_have_text(TABS)          # the tab bar stays whole after a click


def set_slider(page, elem_id, value):
    """Move a slider as a drag does and wait until its number box (the value events send) shows it.

    In CI, on a loaded machine, a fill right after the page's first actions was lost: the box stayed
    at 0 for 30 s and every later test lacked its generation; or it showed the value and went back to
    0 a moment later (the slider's first render from the server, late). A lost fill is filled again,
    and the value must still be there half a second after it showed."""
    rng, box = (page.locator(f"#{elem_id} input[type={t}]") for t in ("range", "number"))
    for _ in range(5):
        rng.fill(str(value))
        try:
            expect(box).to_have_value(str(value), timeout=3_000)
            page.wait_for_timeout(500)
            if box.input_value() == str(value):
                return
        except AssertionError:
            pass
        print(f"set_slider: #{elem_id} shows {box.input_value()!r} after filling {value}; again")
    expect(box).to_have_value(str(value))


def generate(page) -> dict:
    """Click Generate and return in-page timings (ms): first streamed step and done."""
    expect(page.locator("#gen-status")).to_be_attached()
    page.evaluate(TIMING_JS)
    page.locator("#generate-btn").click()
    expect(page.locator('#gen-progress[data-state="done"]:not([data-stale])')).to_be_attached(timeout=60_000)
    t = page.evaluate("window.__t")
    return {"first_step_ms": t["first"] - t["click"], "done_ms": t["done"] - t["click"]}


def test_refused_input_before_a_generation_changes_nothing(page):
    """Before any generation: Show spikes says what to do (no error badges on the empty plots), and a
    refused seed names it in a toast as soon as it is typed and the box shows its last accepted value
    again (Generate refusing a bad seed sent anyway: test_app's bad inputs); the status line is untouched."""
    open_tab(page, "Unmasking")                           # the note right under the (empty) view's sliders
    expect(page.locator("#step-axis")).to_contain_text("No samples yet. Generate images (Generate tab)")
    expect(page.locator("#image-index")).to_be_hidden()   # no run: no sliders over made-up ranges
    expect(page.locator("#step")).to_be_hidden()
    for button in ("#play", "#pause", "#export"):         # greyed until there is a run to play or export
        expect(page.locator(button)).to_be_disabled()
    expect(page.locator("#tab-unmasking").get_by_text("Error", exact=True)).to_have_count(0)
    open_tab(page, "Spikes")
    page.locator("#spikes-btn").click()
    expect(page.locator(".toast-body").last).to_contain_text("Generate some images first")
    expect(page.locator("#spikes-note")).to_contain_text("No samples yet")
    expect(page.locator("#tab-spikes").get_by_text("Error", exact=True)).to_have_count(0)
    open_tab(page, "Generate")
    before = page.locator("#gen-status").inner_text()
    seed = page.locator("#seed input")
    for typed in ("-1", "3.7"):                                             # (3.7 is not rounded to seed 4 silently)
        seed.fill(typed)
        seed.press("Tab")
        expect(page.locator(".toast-body").last).to_contain_text(f"Seed must be a whole number in 0..2147483647; got {typed}")
        expect(seed).to_have_value("0")
    expect(page.locator("#gen-status")).to_have_text(before)
    expect(page.locator("#gen-status").get_by_text("Error", exact=True)).to_have_count(0)
    images = page.locator("#num-images input[type=number]")                 # a slider's box: not clamped silently
    images.fill("999")
    images.press("Enter")
    expect(page.locator(".toast-body").last).to_contain_text("Number of images must be a whole number in 1..")
    expect(images).to_have_value("16")
    # typed and not entered, then Generate pressed: the press commits the value and the slider clamps it
    # (999 -> its maximum) before the click is read; the generation ran with the value put back, after
    # the toast said the typed one was refused. Each key is a value ("9" of "999"): a key's refusal may
    # already have put the box back before the press, and the press then generates with what it shows
    if not page.locator("#temperature-end input[type=number]").is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    count, end = images.input_value(), page.locator("#temperature-end input[type=number]").input_value()
    page.evaluate("""() => document.addEventListener('pointerdown', (e) => {   // what the boxes show at the press
      if (e.target.closest?.('#generate-btn')) window.__pressed = ['#num-images', '#temperature'].map(
        (id) => document.querySelector(`${id} input[type=number]`).value); }, true)""")
    for i, (box, typed, said) in enumerate(((images, "999", "Number of images must be a whole number in 1.."),
                                            (page.locator("#temperature input[type=number]"), "0",
                                             "Temperature must be a number in"))):
        calls, status = len(GENERATE_CALLS), page.locator("#gen-status").inner_text()
        box.click()
        box.press("Control+a")
        box.press_sequentially(typed)
        page.locator("#generate-btn").click()
        expect(page.locator(".toast-body").last).to_contain_text(said)
        page.wait_for_timeout(3000)
        expect(box).not_to_have_value(typed)     # a value accepted before (each key is a value: "9" of "999")
        ran, pressed = GENERATE_CALLS[calls:], page.evaluate("window.__pressed")[i]
        print(f"typed {typed!r}, box at the press {pressed!r}: {'ran with ' + str(ran) if ran else 'nothing ran'}")
        if float(pressed) == float(typed):       # the refused value was still in the box: nothing may run
            assert ran == []
        else:                                    # a key's refusal had put the box back: what it showed is used
            assert all(float(call[i]) == float(pressed) for call in ran), (ran, pressed)
        if not ran:
            expect(page.locator("#gen-status")).to_have_text(status)               # nothing ran
    # Temperature's refused 0 was said once: End (which follows a constant temperature) did not take it too
    expect(page.locator(".toast-body").filter(has_text="Temperature at the last step")).to_have_count(0)
    if not page.locator("#temperature-end input[type=number]").is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    expect(page.locator("#temperature-end input[type=number]")).to_have_value(end)
    set_slider(page, "num-images", count)                       # as the tests after this one expect


def test_generate_streams_and_finishes(page):
    if not page.locator("#corrector-steps input[type=range]").is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    if not SHOTS:       # a short corrector phase after the 49 steps; the screenshot keeps the model's own
        set_slider(page, "corrector-steps", 4)
    rounds = page.locator("#corrector-steps input[type=number]").input_value()
    t = generate(page)
    print(f"\nbrowser: first streamed step {t['first_step_ms']:.0f} ms, done {t['done_ms']:.0f} ms after the click")
    assert 0 < t["first_step_ms"] <= t["done_ms"]
    expect(page.locator("#gen-progress")).to_contain_text(f"done: 16 images, 49 steps + {rounds} corrector rounds")
    expect(page.locator("#gen-progress")).to_contain_text(re.compile(r"\(model \S+, seed 0\)$"))    # whose samples, which seed
    expect(page.locator("#grid img")).to_have_attribute("src", re.compile(r".+"))
    for button in ("#play", "#pause", "#export"):         # a run to play and export: no longer greyed
        expect(page.locator(button)).to_be_enabled()
    shot(page, "generate")
    if SHOTS:           # the tests after this one read a run of 49 steps + 4 rounds (53 frames)
        set_slider(page, "corrector-steps", 4)
        generate(page)
        expect(page.locator("#gen-progress")).to_contain_text("done: 16 images, 49 steps + 4 corrector rounds")


def test_a_screen_reader_hears_words_when_an_event_finishes(page):
    """Gradio announces a finished event in an aria-live region by the key "common.complete", which none
    of its locales defines: a screen reader read the key out. The studio gives it words (demo.ui.I18N)."""
    page.evaluate("""() => { window.__said = []; new MutationObserver(ms => { for (const m of ms) {
      const e = m.target.nodeType === 3 ? m.target.parentElement : m.target;
      if (e?.getAttribute?.('aria-live') && e.textContent) window.__said.push(e.textContent); } })
      .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    generate(page)
    # (Gradio may say "Loading" first, and waits up to 5 s to say an event finished)
    page.wait_for_function("() => window.__said.some(s => s === 'Done' || s.includes('common.'))", timeout=T)
    said = page.evaluate("window.__said")
    assert "Done" in said and not any("common." in s for s in said), said


def test_bold_text_uses_the_bundled_font(page):
    """Offline, Gradio's default theme asked Google for its font: bold text fell back to another font
    (a bold word looked larger than its neighbours). The studio serves the bundled faces it uses."""
    faces = page.evaluate("() => document.fonts.ready.then(() => Array.from(document.fonts)"
                          ".filter(f => f.status === 'loaded').map(f => f.family + ' ' + f.weight))")
    assert {"Source Sans Pro 400", "Source Sans Pro 700"} <= set(faces), faces


def natural_click(page, selector, x, y):
    """Click pixel (x, y) of an image's own (natural) pixels, wherever and however large it is shown."""
    img = page.locator(f"{selector} img")
    page.wait_for_function(f"() => (document.querySelector('{selector} img') || {{}}).naturalWidth > 0")
    box = img.bounding_box()
    nat_w = page.evaluate(f"() => document.querySelector('{selector} img').naturalWidth")
    img.click(position={"x": x * box["width"] / nat_w, "y": y * box["width"] / nat_w})


def test_click_a_sample_opens_it_in_unmasking(page):
    from demo.media import tile_index

    # the sample grid tiles 16 images 4 per row, 28x28 at 3x with 2-pixel gaps: image 6 is row 1, col 2
    x, y = 2 + 2 * 86 + 40, 2 + 1 * 86 + 40
    assert tile_index(x, y, 16, 28, 28) == 6
    natural_click(page, "#grid", x, y)
    expect(page.get_by_role("tab", name="Unmasking")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#image-index input[type=number]")).to_have_value("6")
    expect(page.locator("#picker .thumbnail-item").nth(6)).to_have_class(re.compile(r"\bselected\b"))
    page.locator("#picker .thumbnail-item").nth(3).click()                   # the gallery picks too
    expect(page.locator("#image-index input[type=number]")).to_have_value("3")
    # each picker caption sits under its thumbnail, not over the digit; all 16 fit the 1400-px page's row
    thumb = page.locator("#picker .thumbnail-item").nth(15)
    img, label = thumb.locator("img").bounding_box(), thumb.locator(".caption-label").bounding_box()
    assert label["y"] >= img["y"] + img["height"] - 1, (img, label)
    row = page.locator("#picker .grid-wrap").bounding_box()
    assert img["x"] + img["width"] <= row["x"] + row["width"], (img, row)


def test_unmasking_scrub_phases_and_cell_click(page):
    from demo.frames import CELL_PX, GRID_LEFT, GRID_TOP

    open_tab(page, "Unmasking")
    caption = page.locator("#unmask-caption")
    expect(caption).to_contain_text(re.compile(r"Step 53/53, corrector round 4/4"))   # the last frame
    axis = page.locator("#phase-axis")
    expect(axis).to_have_attribute("data-correct", "4")
    expect(axis).to_contain_text("unmasking 1-49")
    expect(axis.locator(".phase-correct")).to_have_attribute("title", "corrector 50-53")   # 4 of 53 steps: too
    expect(page.locator(".phase-legend")).to_contain_text("corrector 50-53")               # narrow, named under it
    set_slider(page, "step", 10)
    expect(caption).to_contain_text(re.compile(r"Step 10/53, unmasking step 10/49"))
    expect(axis).to_have_attribute("data-step", "10")
    # the marker points at step 10 from under the bands (a line across them hid a letter of a band's name)
    # and above the legend
    band, marker = axis.locator(".phase-unmask").bounding_box(), axis.locator(".axis-marker").bounding_box()
    legend = page.locator(".phase-legend").bounding_box()
    assert band["y"] + band["height"] <= marker["y"] + 0.5 and marker["y"] + marker["height"] <= legend["y"] + 0.5
    assert abs(marker["x"] + marker["width"] / 2 - (band["x"] + band["width"] * 9.5 / 49)) < 3, (band, marker)
    expect(page.locator("#committed img")).to_have_attribute("src", re.compile(r".+"))
    natural_click(page, "#token-grid", GRID_LEFT + 2.5 * CELL_PX, GRID_TOP + 1.5 * CELL_PX)   # row 1, col 2
    expect(page.locator("#cell input")).to_have_value("row 1, col 2")
    expect(page.locator("#cell-info")).to_contain_text("row 1, col 2")
    expect(page.locator("#cell-info")).to_contain_text(re.compile(r"code \d+|masked"))
    shot(page, "unmasking")


def test_a_refused_step_puts_the_box_back_to_the_frame_shown(page):
    """Gradio clamps a typed 0 to the slider's 1 in the box (and keeps 2.5 as typed): after the
    refusal's toast the box shows the frame the view still shows."""
    open_tab(page, "Unmasking")
    set_slider(page, "step", 10)
    expect(page.locator("#unmask-caption")).to_contain_text("Step 10/53")
    box = page.locator("#step input[type=number]")
    for typed in ("0", "2.5"):
        box.fill(typed)
        box.press("Enter")
        expect(page.locator(".toast-body").last).to_contain_text("Step must be a whole number in 1..53")
        expect(box).to_have_value("10")
        expect(page.locator("#unmask-caption")).to_contain_text("Step 10/53")


def test_a_refused_value_is_said_once(page):
    """The Image slider feeds its check and the thumbnails' selection: a typed 99 raised the same
    message for each (twice in the toast); it is said once, and the box goes back."""
    expect(page.locator(".toast-body")).to_have_count(0, timeout=20_000)        # earlier messages gone (8 s each):
    box = page.locator("#image-index input[type=number]")                        # Gradio groups the errors shown
    shown = box.input_value()
    box.fill("99")
    box.press("Enter")
    said = "Image must be a whole number in 0..15; got 99"
    expect(page.locator(".toast-body").last).to_contain_text(said)
    seen = []
    for _ in range(12):                                                          # a second one would be up by now
        page.wait_for_timeout(250)
        seen.append("\n".join(t.inner_text() for t in page.locator(".toast-body").all()))
    assert all(text.count(said) == 1 for text in seen), seen
    expect(box).to_have_value(shown)


def test_play_animates_and_pause_returns_to_the_frame_shown(page):
    page.locator("#play").click()
    player = page.locator("#player img")
    expect(player).to_have_attribute("src", re.compile(r"\.gif$"))
    expect(page.locator("#token-grid")).to_be_hidden()
    expect(page.locator("#unmask-caption")).to_contain_text("unmasking steps 1-49, then corrector rounds 50-53")
    # the browser plays it: the picture changes while nothing is sent from the server (a canvas would
    # only see an animated image's first frame, so compare screenshots)
    page.wait_for_function("() => document.querySelector('#player img').complete")
    seen = set()
    for _ in range(4):
        seen.add(page.locator("#player img").screenshot())
        page.wait_for_timeout(300)
    assert len(seen) >= 3
    # the Step slider and the axis marker follow the animation (at 10 frames per second)
    shown = """() => [+document.querySelector('#step input[type=number]').value,
                      document.querySelector('#phase-axis .axis-marker').style.left]"""
    followed = []
    for _ in range(3):
        followed.append(tuple(page.evaluate(shown)))
        page.wait_for_timeout(400)
    assert len(set(followed)) >= 2 and all(1 <= k <= 53 for k, _ in followed), followed   # (53 held 1 s at the end)
    assert all(float(left[:-1]) == pytest.approx(100 * (k - 0.5) / 53, abs=0.01) for k, left in followed), followed
    page.wait_for_timeout(1500)
    first = player.get_attribute("src")
    page.locator("#pause").click()
    expect(page.locator("#token-grid")).to_be_visible()
    expect(page.locator("#player")).to_be_hidden()
    expect(page.locator("#unmask-caption")).to_contain_text(re.compile(r"Step \d+/53"))
    step = int(page.locator("#step input[type=number]").input_value())
    assert 10 < step <= 53                                                      # moved on from step 10 while playing
    page.wait_for_timeout(600)
    assert page.evaluate(shown)[0] == step                                      # and stopped following at the Pause
    expect(page.locator("#unmask-caption")).to_contain_text(f"Step {step}/53")
    # Play again: the animation starts over (a file of its own: the browser carried on the old one's
    # playing, and the slider, timed from a load, was some 70 steps off) and the slider with it
    page.locator("#play").click()
    expect(player).not_to_have_attribute("src", first)
    expect(page.locator("#player")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#player img').complete")
    page.wait_for_timeout(300)
    assert 1 <= page.evaluate(shown)[0] <= 15
    # another image picked while it plays: the animation (of the last image) stops, as at a Pause
    image = page.locator("#image-index input[type=number]")
    picked = image.input_value()
    image.fill("1" if picked != "1" else "2")
    image.press("Enter")
    expect(page.locator("#player")).to_be_hidden()
    expect(page.locator("#token-grid")).to_be_visible()
    image.fill(picked)
    image.press("Enter")
    expect(page.locator("#unmask-caption")).to_contain_text(f"image {picked}:")


def test_a_pause_while_the_animation_is_made_stays_paused(page):
    """Pause pressed before the animation is ready cancels it: it must not start playing afterwards."""
    page.locator("#image-index input[type=number]").fill("3")                  # an image not played yet
    page.locator("#image-index input[type=number]").press("Enter")
    expect(page.locator("#unmask-caption")).to_contain_text("Step")
    step = page.locator("#step input[type=number]").input_value()
    page.locator("#play").click()
    page.wait_for_timeout(300)                                                  # a quick second thought
    page.locator("#pause").click()
    page.wait_for_timeout(4000)                                                 # the animation would be ready
    expect(page.locator("#player")).to_be_hidden()
    expect(page.locator("#token-grid")).to_be_visible()
    assert page.locator("#step input[type=number]").input_value() == step       # where it was, not an old GIF's frame


def calls_after(page, action) -> list:
    """The Unmasking draws that ``action`` caused, once the studio has been quiet for a second."""
    before = len(UNMASK_CALLS)
    action()
    for _ in range(60):
        n = len(UNMASK_CALLS)
        page.wait_for_timeout(1000)
        if len(UNMASK_CALLS) == n > before:
            break
    return UNMASK_CALLS[before:]


def test_each_action_draws_unmasking_once(page):
    """A finished generation, a click on a sample and on a thumbnail each draw Unmasking once (they
    used to set the image and step sliders, whose change events drew it again)."""
    open_tab(page, "Generate")
    if not page.locator("#corrector-steps input[type=range]").is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    set_slider(page, "corrector-steps", 4)                                     # 49 steps + 4 rounds: 53 frames
    open_tab(page, "Unmasking")
    page.locator("#image-index input[type=number]").fill("5")
    page.locator("#image-index input[type=number]").press("Enter")
    expect(page.locator("#image-index input[type=range]")).to_have_value("5")
    set_slider(page, "step", 7)
    expect(page.locator("#unmask-caption")).to_contain_text("Step 7/")
    open_tab(page, "Generate")
    drawn = calls_after(page, lambda: generate(page))
    assert [(int(i), int(s)) for i, s in drawn] == [(0, 53)]                  # the new run's last step, once
    drawn = calls_after(page, lambda: natural_click(page, "#grid", 2 + 86 + 40, 2 + 40))   # image 1
    assert [int(i) for i, _ in drawn] == [1]
    drawn = calls_after(page, lambda: page.locator("#picker .thumbnail-item").nth(4).click())
    assert [int(i) for i, _ in drawn] == [4]
    expect(page.locator("#unmask-caption")).to_contain_text("Step 53/53")


def test_a_constant_temperature_stays_constant_when_only_temperature_moves(page):
    open_tab(page, "Generate")
    shown_end = page.locator("#temperature-end input[type=number]")
    if not shown_end.is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    start = page.locator("#temperature input[type=number]").input_value()
    own_end = shown_end.input_value()
    if not SHOTS:
        assert own_end == start                              # the tiny model's sampler: constant 0.65
    set_slider(page, "temperature-end", start)               # (assets/mnist's, for the screenshots: 1.1..0.1)
    set_slider(page, "temperature", "0.9")
    expect(shown_end).to_have_value("0.9")                   # End follows: still constant
    set_slider(page, "temperature-end", "0.3")               # a schedule, chosen by the user ...
    set_slider(page, "temperature", "1.2")
    page.wait_for_timeout(500)
    expect(shown_end).to_have_value("0.3")                   # ... is kept when Temperature moves
    set_slider(page, "temperature", start)
    set_slider(page, "temperature-end", own_end)             # the model's own again, for the tests after this one
    set_slider(page, "temperature", start)
    expect(shown_end).to_have_value(own_end)


def test_a_failed_generation_says_so_in_its_status(page):
    from spiking_diffusion import SpikingDiffusionError, SpikingDiffusionPipeline

    def broken(self, *a, **k):
        raise SpikingDiffusionError("out of memory (a test)")
    open_tab(page, "Generate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SpikingDiffusionPipeline, "__call__", broken)
        page.locator("#generate-btn").click()
        expect(page.locator('#gen-progress[data-state="failed"]')).to_contain_text("The generation failed")
    expect(page.get_by_text("out of memory (a test)").first).to_be_visible()


def test_spikes_view(page):
    open_tab(page, "Spikes")
    expect(page.locator("#spikes-cell input")).to_have_value("row 1, col 2")  # clicked in Unmasking
    expect(page.locator("#spikes-note")).to_contain_text("token cell row 1, col 2", timeout=90_000)  # slow when loaded
    for pid in ("raster-cell", "raster-all", "membrane"):
        expect(page.locator(f"#{pid} .js-plotly-plot")).to_be_attached()
    shot(page, "spikes")
    for cell in ("row 0, col 3", "row 1, col 2"):          # a cell picked here is Unmasking's cell too
        page.locator("#spikes-cell input").click()
        page.get_by_role("option", name=cell, exact=True).click()
        expect(page.locator("#spikes-note")).to_contain_text(f"token cell {cell}")
        expect(page.locator("#cell input")).to_have_value(cell)


@pytest.mark.skipif(SHOTS, reason="the tiny models' names")
def test_the_spikes_note_says_whose_samples_after_a_model_switch(page):
    """With Spikes open, another model chosen: the note says these are tiny's samples and how to get
    the new model's; back to tiny, the line goes."""
    open_tab(page, "Spikes")
    note = page.locator("#spikes-note")
    expect(note).to_contain_text("token cell row 1, col 2")
    choose_model(page, "tiny-b")
    expect(page.locator(".toast-body").last).to_contain_text("The sampling settings are tiny-b's own now")
    expect(note).to_contain_text("These spikes are tiny's; press Generate for tiny-b's.")
    expect(note).to_contain_text("token cell row 1, col 2")                # the rest of the note stays
    whose = page.locator("#unmask-whose")                                  # Unmasking says it too
    expect(whose).to_contain_text("These samples are tiny's; press Generate for tiny-b's.")
    choose_model(page, "tiny")
    expect(whose).not_to_contain_text("These samples are")
    expect(note).not_to_contain_text("These spikes are")
    expect(note).to_contain_text("token cell row 1, col 2")


def test_codebook_view(page):
    open_tab(page, "Codebook")
    expect(page.locator("#codebook-stats")).to_contain_text("perplexity")
    expect(page.locator("#usage-bars .js-plotly-plot")).to_be_attached()
    expect(page.locator("#atlas img")).to_have_attribute("src", re.compile(r".+"))
    box = page.locator("#code input[type=number]")
    expect(page.locator("#code [data-testid=reset-button]")).to_have_count(0)   # it went to 0, maybe a dead code
    box.fill("3")
    box.press("Enter")                                                       # a typed code redraws at once
    expect(page.locator("#code-where")).to_contain_text(re.compile(r"[Cc]ode 3 is used"))
    box.fill("0")
    box.press("Enter")
    expect(page.locator("#code-where")).to_contain_text(re.compile(r"[Cc]ode 0 is used"))
    box.fill("500")                                                          # refused: a toast, the view stays
    box.press("Enter")
    expect(page.locator(".toast-body").last).to_contain_text(re.compile(r"[Cc]ode must be a whole number in 0\.\.\d+"))
    expect(page.locator("#code-where")).to_contain_text(re.compile(r"[Cc]ode 0 is used"))
    expect(box).to_have_value("0")                                          # the box back to the code shown
    expect(page.locator("#code-where, #code-image").get_by_text("Error", exact=True)).to_have_count(0)
    from demo.frames import ATLAS_SCALE, atlas_origin
    from demo.studio import ATLAS_COLS
    left, top = atlas_origin(int(page.locator("#code input[type=number]").get_attribute("max")) + 1, ATLAS_COLS)
    step = 28 * ATLAS_SCALE + 2                                              # a tile and its gap
    natural_click(page, "#atlas", left + 2 + 2 * step + step // 2, top + 2 + step // 2)   # a click on the atlas: code 2
    expect(box).to_have_value("2")
    expect(page.locator("#code-where")).to_contain_text(re.compile(r"[Cc]ode 2 is used"))
    box.fill("73" if SHOTS else "0")                                        # the picture: a stroke code the digits use
    box.press("Enter")
    expect(page.locator("#code-where")).to_contain_text(re.compile(r"[Cc]ode (73|0) is used"))
    shot(page, "codebook")


@pytest.mark.skipif(SHOTS, reason="the tiny models' names")
def test_another_model_with_the_codebook_open_is_computed_at_once(page):
    """A model switch while the Codebook is open shows the new model's usage (it showed an empty view
    until Compute usage); the session's generation is the first model's, so the new one's is a stand-in.
    On another tab a switch computes nothing (the Codebook computes when it opens)."""
    def choose(name):
        page.locator("#model input").click()
        page.get_by_role("option", name=name, exact=True).click()
        expect(page.locator("#model input")).to_have_value(name)

    open_tab(page, "Codebook")
    stats = page.locator("#codebook-stats")
    expect(stats).to_contain_text("generated (16 images)")
    # tiny-b's guide (as big as its prior) doubles its work: half the default's 64 stand-in images
    for name, source in (("tiny-b", "generated (32 images, seed 0)"), ("tiny", "generated (16 images)")):
        calls = len(CODEBOOK_CALLS)
        choose(name)
        expect(stats).to_contain_text(source)
        assert CODEBOOK_CALLS[calls:] == [name]                           # once, for the new model
    open_tab(page, "Generate")
    calls = len(CODEBOOK_CALLS)
    choose("tiny-b")
    expect(page.locator("#gen-status")).to_contain_text("are tiny's")     # the switch's other events ran
    choose("tiny")
    expect(page.locator("#gen-progress")).to_contain_text("(model tiny, seed ")
    page.wait_for_timeout(1000)
    assert CODEBOOK_CALLS[calls:] == []


@pytest.mark.skipif(SHOTS, reason="the tiny models' names")
def test_the_models_own_sampling_settings_come_back_with_one_button(page):
    """Gradio's slider reset goes back to the value the page first showed (the first model's setting,
    the first run's step), so those sliders have none; one button puts back the chosen model's own."""
    open_tab(page, "Generate")
    if not page.locator("#top-p input[type=range]").is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    for slider in ("temperature", "temperature-end", "top-p", "corrector-steps", "corrector-cells",
                   "corrector-temperature", "guidance", "image-index", "step"):
        expect(page.locator(f"#{slider} [data-testid=reset-button]")).to_have_count(0)
    expect(page.locator("#num-images [data-testid=reset-button]")).to_have_count(1)   # a default that stays right
    box = {k: page.locator(f"#{k.replace('_', '-')} input[type=number]") for k in TINY_B_SAMPLER}
    expect(box["guidance"]).to_be_disabled()                   # tiny stores no guide prior: 0 only
    choose_model(page, "tiny-b")
    for k, v in TINY_B_SAMPLER.items():
        expect(box[k]).to_have_value(str(v))
    expect(box["guidance"]).to_be_enabled()                    # tiny-b's guide
    set_slider(page, "temperature", "1.5")
    set_slider(page, "top-p", "0.5")
    page.locator("#own-settings").click()
    for k, v in TINY_B_SAMPLER.items():
        expect(box[k]).to_have_value(str(v))
    expect(page.locator(".toast-body").last).to_contain_text("The sampling settings are tiny-b's own now")
    choose_model(page, "tiny")
    expect(box["temperature"]).to_have_value("0.65")
    expect(box["temperature_end"]).to_have_value("0.65")
    expect(box["guidance"]).to_have_value("0")
    expect(box["guidance"]).to_be_disabled()


def choose_model(page, name):
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    expect(page.locator("#model input")).to_have_value(name)


@pytest.mark.skipif(SHOTS, reason="the tiny models' names")
def test_a_model_switch_mid_computation_shows_the_new_models_usage(page):
    """Two model jobs run at once: a slow first model's usage, finishing after the next model's, was
    drawn over it (the view then showed the old model's numbers under the new model's name)."""
    open_tab(page, "Generate")
    stats = page.locator("#codebook-stats")
    SLOW_CODEBOOK.add("tiny")
    try:
        done = len(CODEBOOK_DONE)
        open_tab(page, "Codebook")                                       # tiny's usage: 3 s
        expect(stats).to_contain_text("Computing")
        choose_model(page, "tiny-b")                                    # meanwhile: tiny-b's, at once
        expect(stats).to_contain_text("Code usage of tiny-b's codebook")
        deadline = time.time() + T / 1000
        while "tiny" not in CODEBOOK_DONE[done:] and time.time() < deadline:   # tiny's result came back ...
            page.wait_for_timeout(200)
        assert "tiny" in CODEBOOK_DONE[done:]
        page.wait_for_timeout(1000)
        expect(stats).to_contain_text("Code usage of tiny-b's codebook")      # ... and was not drawn
        SLOW_CODEBOOK.clear()
        SLOW_CODEBOOK.add("tiny-b")                                     # two switches in a row, the first slow:
        done = len(CODEBOOK_DONE)
        choose_model(page, "tiny")
        choose_model(page, "tiny-b")                                    # (its Compute usage press is not dropped)
        choose_model(page, "tiny")
        expect(stats).to_contain_text("Code usage of tiny's codebook")
        deadline = time.time() + T / 1000
        while "tiny-b" not in CODEBOOK_DONE[done:] and time.time() < deadline:
            page.wait_for_timeout(200)
        page.wait_for_timeout(1000)
        expect(stats).to_contain_text("Code usage of tiny's codebook")
        expect(page.locator("#tab-codebook").get_by_text("Error", exact=True)).to_have_count(0)
    finally:
        SLOW_CODEBOOK.clear()
        if page.locator("#model input").input_value() != "tiny":
            choose_model(page, "tiny")


def test_encode_view_upload_encodes_itself(page, tmp_path):
    import numpy as np
    from PIL import Image

    open_tab(page, "Encode & reconstruct")
    expect(page.locator("#encode-note")).to_contain_text("Nothing encoded yet. Upload a picture or draw one")
    if not SHOTS:                                   # another model with no picture: the note still says what to do
        choose_model(page, "tiny-b")
        page.wait_for_timeout(1000)
        expect(page.locator("#encode-note")).to_contain_text("Nothing encoded yet. Upload a picture or draw one")
        choose_model(page, "tiny")
    for button, said in (("#encode-btn", "The Upload box is empty"), ("#encode-sketch-btn", "The Draw box has no drawing")):
        page.locator(button).click()                                          # an empty box: named, with the other button
        expect(page.locator(".toast-body").last).to_contain_text(said)
    close_toasts(page)                                                        # (the later tests count their own)
    digit = np.zeros((64, 64), np.uint8)
    digit[10:54, 28:36] = 255  # a "1", light on dark
    Image.fromarray(digit).save(tmp_path / "one.png")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "one.png"))
    expect(page.locator("#encode-note")).to_contain_text("read 64x64 greyscale; ink 8x44 scaled into 20x20")   # no button pressed
    expect(page.locator("#reconstruction img")).to_have_attribute("src", re.compile(r".+"))
    expect(page.locator("#encode-tokens .js-plotly-plot")).to_be_attached()
    shown = page.locator("#upload img").bounding_box()                       # a 64x64 picture fills its box
    assert min(shown["width"], shown["height"]) > 200
    page.locator("#encode-btn").click()                                       # the button still re-runs
    expect(page.locator("#encode-note")).to_contain_text("read 64x64 greyscale; ink 8x44 scaled into 20x20")
    expect(page.locator("#encode-note")).not_to_contain_text("inverted")
    page.locator("#invert").get_by_text("yes", exact=True).click()          # another inversion encodes it again
    expect(page.locator("#encode-note")).to_contain_text("inverted")
    page.locator("#invert").get_by_text("auto", exact=True).click()
    expect(page.locator("#encode-note")).not_to_contain_text("inverted")
    shot(page, "encode")
    if not SHOTS:                            # another model encodes the picture again (it said: press Encode)
        calls = len(ENCODE_CALLS)
        choose_model(page, "tiny-b")
        expect(page.locator("#encode-note")).to_contain_text("model tiny-b): read 64x64 greyscale; ink 8x44 scaled into 20x20")
        deadline = time.time() + T / 1000
        while "tiny-b" not in ENCODE_CALLS[calls:] and time.time() < deadline:
            page.wait_for_timeout(200)
        assert ENCODE_CALLS[calls:] == ["tiny-b"]
        expect(page.locator("#tab-encode").get_by_text("Error", exact=True)).to_have_count(0)
        choose_model(page, "tiny")
        expect(page.locator("#encode-note")).to_contain_text("model tiny): read 64x64 greyscale")   # the switch back is done


def test_a_file_that_is_no_picture_only_raises_its_message(page, tmp_path):
    """An upload that is not a picture: a toast saying what is accepted; the views keep the last
    encoding (they showed red Error badges) and the upload box is emptied (it showed a broken image)."""
    open_tab(page, "Encode & reconstruct")
    note = page.locator("#encode-note")
    expect(note).to_contain_text("read 64x64 greyscale")                             # the last test's encoding
    (tmp_path / "notes.png").write_text("not a picture")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "notes.png"))
    expect(page.locator(".toast-body").last).to_contain_text("notes.png")
    page.wait_for_timeout(1500)                         # a second event's toast would have come (merged: "(2)")
    expect(page.locator(".toast-body").filter(has_text="notes.png")).to_have_count(1)
    expect(page.locator(".toast-body").filter(has_text="notes.png")).not_to_contain_text("(2)")
    expect(note).to_contain_text("Your last upload could not be read")        # said, and why, when the toast has gone
    expect(note).to_contain_text("notes.png: this file is not a picture in a format we can read (accepted: PNG")
    expect(note).to_contain_text("read 64x64 greyscale")
    expect(page.locator("#tab-encode").get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("#reconstruction img")).to_have_attribute("src", re.compile(r".+"))
    expect(page.locator("#upload img")).to_have_count(0)
    # a picture too large, uploaded over one that was read: its box fires twice, the message is said once
    from PIL import Image
    Image.new("L", (64, 64), 0).save(tmp_path / "fine.png")
    Image.new("L", (4100, 4100), 0).save(tmp_path / "toolarge.png")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "fine.png"))
    expect(note).to_contain_text("Input (`fine.png`".replace("`", ""))
    close_toasts(page)                                                             # (Gradio groups messages)
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "toolarge.png"))
    said = "toolarge.png: image is 4100x4100 pixels"
    expect(page.locator(".toast-body").last).to_contain_text(said)
    page.wait_for_timeout(1500)
    assert "\n".join(t.inner_text() for t in page.locator(".toast-body").all()).count(said) == 1
    expect(note).to_contain_text("could not be read: could not use the uploaded image toolarge.png: image is 4100x4100")


def test_sketch_opens_ready_to_draw_and_a_stroke_encodes_itself(page, tmp_path):
    """The brush is chosen on opening; a stroke is about as wide, in the 28x28 model input, as an
    MNIST stroke (about 2.4 px) and encodes itself, even after several uploads (each redraws two spike
    rasters: WebGL ones used up the browser's contexts and took the canvas's, which went blank)."""
    import io

    import numpy as np
    from PIL import Image

    open_tab(page, "Encode & reconstruct")
    for k in range(6):
        Image.fromarray(np.full((20 + k, 30), 40 * k, np.uint8)).save(tmp_path / f"u{k}.png")
        page.locator("#upload input[type=file]").set_input_files(str(tmp_path / f"u{k}.png"))
        expect(page.locator("#encode-note")).to_contain_text(f"read 30x{20 + k}")
    expect(page.locator("#encode-raster .js-plotly-plot")).to_be_attached()
    expect(page.locator("canvas.gl-canvas")).to_have_count(0)                 # no plot holds a WebGL context
    page.locator('#upload button[aria-label="Remove Image"]').click()
    expect(page.locator('#sketch button[aria-label="Brush"]')).to_have_class(re.compile(r"\bhighlight\b"))
    expect(page.get_by_text("select the draw tool", exact=False)).to_have_count(0)
    before = page.locator("#encode-input img").get_attribute("src")
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2      # the 280x280 canvas sits in the middle
    page.mouse.move(cx - 90, cy)
    page.mouse.down()
    for k in range(19):
        page.mouse.move(cx - 90 + 10 * k, cy, steps=2)
    page.mouse.up()
    expect(page.locator("#encode-input img")).not_to_have_attribute("src", before or "none")
    expect(page.locator("#encode-note")).to_contain_text("read 280x280")
    src = page.locator("#encode-input img").get_attribute("src")
    png = page.evaluate("async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))", src)
    x = np.asarray(Image.open(io.BytesIO(bytes(png))).convert("L"))[::8, ::8]   # shown 8x: back to 28x28
    rows = x[:, 10:18]                                                        # the middle of the horizontal stroke
    width = (rows > 127).sum(0).mean()
    print(f"\nsketch stroke: {width:.1f} px wide in 28x28 (MNIST: about 2.4)")
    assert 1.5 <= width <= 3.5
    shot(page, "encode-sketch")


def test_learn_view(page):
    open_tab(page, "Learn")
    note = page.locator("#lif-note")
    expect(note).to_contain_text("spikes in 40 steps")
    expect(page.locator("#quant-note")).to_contain_text("z = (1 - 0.50)")
    set_slider(page, "lif-current", 0.2)
    expect(note).to_contain_text("0 spikes in 40 steps")  # too weak to reach the threshold
    set_slider(page, "lif-current", 1.5)   # back to the default: it fires
    expect(note).to_contain_text(re.compile(r"(?<!\d)[1-9]\d* spikes in 40 steps"))
    steps = page.locator("#lif-steps input[type=number]")                   # a typed value out of range:
    steps.fill("999")
    steps.press("Enter")
    expect(page.locator(".toast-body").last).to_contain_text("Time steps must be a whole number in 4..100")
    expect(note).to_contain_text("spikes in 40 steps")                       # the view stays, no error badges
    expect(steps).to_have_value("40")                                        # and the box shows its value again
    expect(page.locator("#lif-note, #lif-plot").get_by_text("Error", exact=True)).to_have_count(0)
    steps.fill("40")
    steps.press("Enter")
    page.locator("#energy-btn").click()
    energy = page.locator("#energy-note")
    expect(energy).to_contain_text("denoiser calls")
    shot(page, "learn")
    if not SHOTS:                             # whose figures they are: after a switch, and after a new generation
        expect(energy).to_contain_text(re.compile(r"Model tiny, seed \d+: "))
        choose_model(page, "tiny-b")
        expect(energy).to_contain_text("These figures are tiny's; press Generate for tiny-b's.")
        choose_model(page, "tiny")
        expect(energy).not_to_contain_text("These figures are")
        open_tab(page, "Generate")
        generate(page)
        open_tab(page, "Learn")
        expect(energy).to_contain_text("A new generation was made: press Estimate energy of my last generation")
        page.locator("#energy-btn").click()
        expect(energy).to_contain_text("denoiser calls")


def test_one_image_of_one_step_opens_in_unmasking_without_errors(page):
    """One image (or one frame: 1 step, no corrector) leaves nothing to pick: its slider hides, and
    the views draw (Gradio refused a slider whose maximum equalled its minimum: error badges on the
    Unmasking tab). A later run of several images shows both sliders again."""
    open_tab(page, "Generate")
    if not page.locator("#corrector-steps").is_visible():
        page.get_by_text("More sampling settings", exact=True).click()
    rounds = page.locator("#corrector-steps input[type=number]").input_value()
    for elem_id, value in (("num-images", 1), ("steps", 1), ("corrector-steps", 0)):
        set_slider(page, elem_id, value)
    for elem_id in ("corrector-cells", "corrector-temperature"):                # no rounds: nothing to set
        expect(page.locator(f"#{elem_id} input[type=number]")).to_be_disabled()
    generate(page)
    expect(page.locator("#gen-progress")).to_contain_text(re.compile(r"done: 1 image, 1 step in [\d.]+ s \(model"))
    open_tab(page, "Unmasking")
    expect(page.locator("#image-index")).to_be_hidden()
    expect(page.locator("#step")).to_be_hidden()
    expect(page.locator("#committed img")).to_have_attribute("src", re.compile(r".+"))
    expect(page.locator("#tab-unmasking").get_by_text("Error", exact=True)).to_have_count(0)
    columns = "() => getComputedStyle(document.querySelector('#picker .grid-container')).gridTemplateColumns"
    assert len(page.evaluate(columns).split()) == 16      # a thumbnail, not one image across the row (cropped)
    page.locator("#export").click()                       # the export boxes hold this run's files ...
    expect(page.locator("#gif")).to_contain_text(re.compile(r"unmasking-.+-seed\d+-image0\s*\.gif"))
    open_tab(page, "Generate")
    set_slider(page, "corrector-steps", 3)
    expect(page.locator("#corrector-cells input[type=number]")).to_be_enabled()   # rounds: set again
    for elem_id, value in (("num-images", 2), ("steps", 3), ("corrector-steps", int(rounds))):
        set_slider(page, elem_id, value)
    generate(page)
    open_tab(page, "Unmasking")
    expect(page.locator("#image-index")).to_be_visible()
    expect(page.locator("#step")).to_be_visible()
    expect(page.locator("#tab-unmasking").get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("#gif")).not_to_contain_text(".gif")   # ... until a new run: then they are empty
    expect(page.locator("#mp4")).not_to_contain_text(".mp4")
    page.locator("#export").click()                           # and another image empties them too
    expect(page.locator("#gif")).to_contain_text(re.compile(r"image0\s*\.gif"))
    page.locator("#picker img").nth(1).click()
    expect(page.locator("#image-index input[type=number]")).to_have_value("1")
    expect(page.locator("#gif")).not_to_contain_text(".gif")


def test_a_narrow_window_keeps_unmaskings_grid_and_cell_note_readable(page):
    """At 800 px the token grid shrank to 162 px (its codes unreadable) and the cell note to a word a
    line: the grid keeps 280 px and the note goes under the images."""
    open_tab(page, "Unmasking")
    page.set_viewport_size({"width": 800, "height": 900})
    try:
        page.wait_for_timeout(800)
        grid, note = (page.locator(f"#{i}").bounding_box() for i in ("token-grid", "cell-info"))
        assert grid["width"] >= 280 and note["width"] >= 220, (grid, note)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


def test_stop_ends_a_running_generation_and_keeps_the_last_finished_run(page):
    """A generation of a slow model ran for a minute with no way to end it: Stop ends it within a step,
    says so on the status line (the grid holds a preview), and the views keep the last finished run;
    pressed with nothing running it changes nothing."""
    open_tab(page, "Generate")
    for elem_id, value in (("num-images", 4), ("steps", 49)):            # (the last test left 3 steps)
        set_slider(page, elem_id, value)
    generate(page)                                                        # a finished run to keep
    done = page.locator("#gen-progress").inner_text()
    page.locator("#stop-btn").click()                                     # nothing running: nothing changes
    page.wait_for_timeout(1000)
    assert page.locator("#gen-progress").inner_text() == done
    SLOW_DENOISER.append(True)
    try:
        page.locator("#generate-btn").click()
        expect(page.locator('#gen-progress[data-state="running"]')).to_be_attached()
        page.locator("#stop-btn").click()
        expect(page.locator('#gen-progress[data-state="stopped"]')).to_contain_text("the grid shows the preview of step")
        open_tab(page, "Unmasking")                                       # the finished run is still there
        expect(page.locator("#unmask-caption")).to_contain_text("Step")
        expect(page.locator("#tab-unmasking").get_by_text("Error", exact=True)).to_have_count(0)
        open_tab(page, "Generate")
        page.wait_for_timeout(1500)                                       # no later step overwrites the line
        expect(page.locator('#gen-progress[data-state="stopped"]')).to_be_attached()
    finally:
        SLOW_DENOISER.clear()
    generate(page)                                                        # Generate works again after a Stop
    expect(page.locator("#gen-progress")).to_contain_text("done:")
