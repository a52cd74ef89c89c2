"""The studio's layout and event wiring (Gradio 6). Logic lives in :mod:`demo.studio`."""
from __future__ import annotations

import html
import json
import math
import re
import threading
from pathlib import Path
from types import SimpleNamespace as NS

import gradio as gr
import numpy as np
from PIL import Image

from spiking_diffusion.evaluation.energy import E_AC_PJ, E_MAC_PJ
from spiking_diffusion.image_input import MAX_PIXELS
from spiking_diffusion.sampling import MAX_GUIDANCE, SETTINGS
from spiking_diffusion.spiking import LIF_TAU, LIF_THRESHOLD

from . import frames, learn, plots
from .frames import ANIMATION_FPS as FPS
from .checks import MAX_SEED
from .guards import last_message, user_error
from .learn import LEARN_RANGES
from .studio import (ATLAS_COLS, MAX_CORRECTOR_ROUNDS, START_HINT, ModelFacts, Studio, cell_choices, slider_range,
                     whole_slider)

PICKER_COLUMNS = 16   # thumbnails in a row of Unmasking's picker
CSS = (".pixelated img, #player img { image-rendering: pixelated; } .explain { font-size: 0.95em; }"
       # the status line shows Gradio's queue position, but not its endless pulse while streaming (a CPU cost)
       " #gen-status .generating { animation: none !important; }"
       # an upload is shown filling its box (a 28x28 digit was a speck in the middle of it)
       " #upload img { width: 100%; height: 100%; object-fit: contain; }"
       # a labelled picture starts under its label (Gradio floats the label over the picture's top)
       " .pixelated .image-container { padding-top: 30px; box-sizing: border-box; }"
       # Unmasking's cell note keeps a readable width: on a narrow window it goes under the images
       " #cell-info { min-width: 220px !important; flex: 1 1 220px; }"
       # the export boxes, empty, are a line tall, not Gradio's 236 px drop zone (nothing is dropped there)
       " #gif .empty, #mp4 .empty { min-height: 48px; height: 48px; }"
       # the energy table's figures stay whole (a total wrapped mid-number); its row labels wrap
       " #energy-note td:not(:first-child), #energy-note th { white-space: nowrap; }"
       " #energy-note td:first-child { min-width: 11em; }"
       # Model info's stored settings: a key (config.json's name) breaks at its underscores only, not mid-word
       " #model-info td:first-child { word-break: normal; overflow-wrap: normal; }"
       # the picker's captions sit under the thumbnails (Gradio lays them over the image's corner, on the
       # digit), below the gallery's label, and 16 thumbnails fit a row of a laptop screen, however few
       # images there are (Gradio makes as many columns as images: one image filled the row, cropped black)
       " #picker .grid-wrap { padding-top: 26px; }"
       " #picker .thumbnail-item { display: flex; flex-direction: column; height: auto; aspect-ratio: auto; }"
       " #picker .caption-label { position: static; background: none; border: none; padding: 0; margin: 0;"
       " font-size: 0.75em; text-align: center; width: 100%; }"
       f" #picker .grid-container {{ grid-template-columns: repeat({PICKER_COLUMNS}, minmax(64px, 1fr)); }}")

# Gradio 6.31 announces every finished event to screen readers by the key "common.complete", which no
# locale of its own defines, so the reader said "common dot complete"; the words for it (other
# languages fall back to English)
I18N = gr.I18n(en={"common.complete": "Done"})


def theme():
    """Gradio's default look, its bundled text font served at every weight the page uses: the default
    serves 400 and 600 only, so bold text (700) fell back to another font (a bold word looked larger)."""
    return gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 600, 700)),
                                   "ui-sans-serif", "system-ui", "sans-serif"])


INTRO = """# Spiking-Diffusion studio
A vector-quantised spiking VAE turns a 28x28 image into a {L}x{L} grid of discrete **tokens** (codes from
a learned codebook). A **spiking denoiser** generates new token grids by starting fully masked and
unmasking a few cells per step; the spiking decoder turns tokens back into pixels."""
T_MIN, T_MAX = SETTINGS["temperature"].lo, SETTINGS["temperature"].hi  # the sliders take the sampler's bounds
T_STEP = T_MIN        # a slider's values are T_MIN + k * step: each of the sampler's temperatures is one
P_MIN = SETTINGS["top_p"].lo
PX = dict(format="png", elem_classes="pixelated", interactive=False)  # pixel images, shown crisp
PRIVATE = dict(api_visibility="private")                                # UI-only events: no API endpoint
MODEL_JOB = dict(concurrency_id="model")  # events that run a model share one limit (the queue's, --concurrency)
DRAW = dict(show_progress="hidden", **PRIVATE, **MODEL_JOB)             # a redraw of Unmasking after the studio set it
# no slider reset button where its "default" goes stale: Gradio resets to the value the page first showed
# (the first model's settings, the first run's step), not the chosen model's or the run's
NO_RESET = dict(buttons=[])
# a plot drawn while its tab was hidden has no width: a resize event, once a tab is shown, re-fits it
RESIZE_JS = "() => { setTimeout(() => window.dispatchEvent(new Event('resize')), 100); }"


def typed_on_press(button: str, controls) -> tuple[str, str]:
    """JS (install, read) so that the check of the action of button ``#button`` sees ``controls`` as
    their number boxes showed them when it was pressed. A value typed and not yet entered is sent by
    the press itself (the box's blur), and a slider clamps it to its range before the click reads
    it (70 images -> 64): the check passed, and the action ran with a value the user was told was
    refused. ``install`` (run once, on load) notes the boxes' text on the button's pointerdown, before
    the blur; ``read`` (the check's ``js``) sends a noted value where it differs from the control's,
    so the check refuses it, said once with the control's own refusal (:mod:`demo.guards`)."""
    ids = json.dumps([c.elem_id if isinstance(c, (gr.Slider, gr.Number)) else None for c in controls])
    install = f"""() => {{
  const ids = {ids};
  document.addEventListener('pointerdown', (e) => {{
    if (!e.target.closest?.('#{button}')) return;
    (window.__typedAtPress ??= {{}})['{button}'] = {{at: performance.now(), values: ids.map(
      (id) => id && document.querySelector(`#${{id}} input[type=number]`)?.value)}};
  }}, true);
}}"""
    read = f"""(...values) => {{
  const noted = window.__typedAtPress?.['{button}'];
  if (window.__typedAtPress) delete window.__typedAtPress['{button}'];
  if (!noted || performance.now() - noted.at > 2000) return values;       // a keyboard press: no blur
  return values.map((v, i) => {{
    const typed = noted.values[i] ? Number(noted.values[i]) : NaN;
    return Number.isNaN(typed) || typed === v ? v : typed;
  }});
}}"""
    return install, read


def _check_only(check):
    """``check`` as an event with no outputs: it raises its message or returns nothing."""
    def checked(*values):
        check(*values)
    return checked


def _redraw_checked(triggers, check, fn, inputs, outputs, api_name: str, restore=None, remember=None, **kw):
    """When a control changes, run ``check`` on ``inputs`` (no outputs), then, if it passed, ``fn``
    into ``outputs`` (the API endpoint ``api_name``). A refused value (a typed 500) only raises the
    check's toast: the view keeps what it showed, with no error badges on it. (The check goes through
    the queue: Gradio shows no toast for an event outside it.) After a refusal the controls go back to
    what the view shows (Gradio may have left its clamped number, or the refused one, in the box),
    through one of: ``restore`` = (fn, inputs, controls) computes it; ``remember`` = (State from
    :func:`_accepted`, controls among ``inputs``): the check stores the values it accepts there, and
    a refusal puts them back."""
    if restore and remember:
        raise ValueError("_redraw_checked takes restore or remember, not both")
    check_fn, stored = _check_only(check), None
    if remember:                                          # a check that also stores what it accepts
        last, controls = remember
        at = [next(i for i, x in enumerate(inputs) if x is c) for c in controls]   # the controls' places in inputs

        def storing_check(*values):                       # the accepted values, stored by the check itself
            check(*values)
            return [values[i] for i in at]
        check_fn, stored = storing_check, last
        restore = (lambda values: values if len(controls) > 1 else values[0], last, controls)
    checked = gr.on(triggers, check_fn, inputs, stored, trigger_mode="always_last", show_progress="hidden", **PRIVATE)
    if restore:   # (putting back a value that was itself refused fires no change: the box holds it already)
        checked.failure(*restore, show_progress="hidden", **PRIVATE)
    # (a redraw: no progress, and the last move wins; the default "once" drops a redraw mid-drag)
    return checked.success(fn, inputs, outputs, api_name=api_name, **{"show_progress": "hidden",
                                                                      "trigger_mode": "always_last", **kw})


def _session(request) -> str | None:
    """The browser session of an event (Gradio passes ``request``; None for a call without one)."""
    return getattr(request, "session_hash", None)


class _AskedModel:
    """The model each session asked for last (recorded at its model changes, the newest 4,096
    sessions), so that a model job's result for another model can be dropped: two model jobs run at
    once (``--concurrency``), and a slow first model's result could land after, and over, the next
    one's. A session never recorded (an API caller) has nothing dropped."""

    def __init__(self, sessions: int = 4096):
        self.asked, self.sessions, self.lock = {}, sessions, threading.Lock()

    def record(self, model, request: gr.Request | None) -> None:
        key = _session(request)
        with self.lock:
            self.asked.pop(key, None)
            self.asked[key] = model
            while len(self.asked) > self.sessions:
                self.asked.pop(next(iter(self.asked)))

    def stale(self, model, request: gr.Request | None) -> bool:
        with self.lock:
            return self.asked.get(_session(request), model) != model

    def only_latest(self, fn, outputs: int):
        """``fn(model, run, code)`` whose result, or error, is dropped (``outputs`` skips: the view
        keeps what it shows) when the session has asked for another model meanwhile. (Named
        parameters: Gradio puts the request at its parameter's place among the inputs.)"""
        def latest(model, run, code, request: gr.Request):
            try:
                out = fn(model, run, code)
            except gr.Error:
                if self.stale(model, request):
                    return (gr.skip(),) * outputs
                raise
            return (gr.skip(),) * outputs if self.stale(model, request) else out
        return latest


def _accepted(controls) -> gr.State:
    """A State for the last values of ``controls`` a view accepted (their first values to start), for
    :func:`_redraw_checked`'s ``remember``. Make it inside the tab: a State among the Tabs' own
    children is drawn as a tab."""
    return gr.State([c.value for c in controls])


def _explain(text: str):
    return gr.Markdown(text, elem_classes="explain")


def _seed_box(**kw) -> gr.Number:
    """A Seed box: a whole number in 0..MAX_SEED (the API says integer; a typed 3.7 is refused with its
    message by :func:`demo.guards.check_number` before Gradio would round it)."""
    return gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", **kw)


def _learn_slider(label: str, value: float, step: float, elem_id: str):
    """A Learn view slider over its setting's range (the handler checks the same one)."""
    return gr.Slider(*LEARN_RANGES[label], value, step=step, label=label, elem_id=elem_id)


def _refuse_as_typed(controls) -> None:
    """A value typed into one of ``controls`` outside its range is refused at once, with the message
    naming the control and its range (:func:`~demo.guards.guard_inputs` checks it against the
    control's own bounds), and the control shows its last accepted value again. Without this a
    slider clamped it silently in the browser (100 images became 64 without a word). Call it inside
    the tab: its States among the Tabs' own children would be drawn as tabs."""
    for c in controls:
        last = gr.State(c.value)                               # the control's last accepted value
        typed = c.change(lambda v: v, c, last, trigger_mode="always_last", show_progress="hidden", **PRIVATE)
        typed.failure(lambda v: v, last, c, show_progress="hidden", **PRIVATE)


def _generate_tab(S: Studio, F: ModelFacts, model) -> NS:
    """1. Generate: the sampling settings, the seed, the streamed sample grid."""
    with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
        with gr.Row():
            with gr.Column(scale=1):
                n = whole_slider(1, S.max_batch, min(16, S.max_batch), label="Number of images", elem_id="num-images")
                steps = whole_slider(1, F.num_steps, F.num_steps, label="Steps", elem_id="steps",
                                     info="Fewer steps unmask more cells at once: faster, usually worse.")
                t0, t1, p0, c0, c1, c2, g0 = S.sampling_defaults(S.default_model)
                temp = gr.Slider(T_MIN, T_MAX, t0, step=T_STEP, label=SETTINGS["temperature"].label, elem_id="temperature",
                                 **NO_RESET,
                                 info="Low: safe, repetitive codes. High: diverse, noisier. (A lower temperature "
                                      "at the last step and the corrector rounds clean the last steps up: to see "
                                      "the noise, set the temperature at the last step to this one and the "
                                      "corrector rounds to 0, under More sampling settings.)")
                with gr.Accordion("More sampling settings", open=False):
                    temp_end = gr.Slider(T_MIN, T_MAX, t1, step=T_STEP, label=SETTINGS["temperature_end"].label,
                                         elem_id="temperature-end", **NO_RESET,
                                         info="The temperature moves linearly to this; equal: constant.")
                    top_p = gr.Slider(P_MIN, 1.0, p0, step=0.01, label=SETTINGS["top_p"].label, elem_id="top-p", **NO_RESET,
                                      info="Draw each token only from the likeliest codes holding this much "
                                           "probability; 1: from all.")
                    c_steps = gr.Slider(0, MAX_CORRECTOR_ROUNDS, c0, step=1, label=SETTINGS["corrector_steps"].label,
                                        elem_id="corrector-steps", **NO_RESET,
                                        info="After the last step: re-mask a few random cells and sample them again "
                                             "given all the others (not in the paper; 0: the paper's sampler).")
                    # greyed out while there are no rounds: they change nothing then
                    c_cells = whole_slider(1, F.cells, c1, label=SETTINGS["corrector_cells"].label,
                                           elem_id="corrector-cells", interactive=c0 > 0, **NO_RESET)
                    c_temp = gr.Slider(T_MIN, T_MAX, c2, step=T_STEP, label=SETTINGS["corrector_temperature"].label,
                                       elem_id="corrector-temperature", interactive=c0 > 0, **NO_RESET)
                    # greyed out for a model without a guide prior: only 0 is accepted then
                    guide = gr.Slider(0.0, MAX_GUIDANCE, g0, step=0.05, label=SETTINGS["guidance"].label,
                                      elem_id="guidance", interactive=S.has_guide(S.default_model), **NO_RESET,
                                      info="Autoguidance (not in the paper): each step is steered away from what a "
                                           "smaller, briefly trained prior would draw. Sharper, more varied samples; "
                                           "each step also runs that prior. 0: off. Models that store a guide only.")
                # (the sliders have no reset buttons: see NO_RESET)
                own = gr.Button("The model's own sampling settings", size="sm", elem_id="own-settings")
                with gr.Row():
                    seed = _seed_box(elem_id="seed")
                    dice = gr.Button("Random seed", elem_id="dice", scale=0, min_width=120)
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
                    stop = gr.Button("Stop", elem_id="stop-btn", scale=1, min_width=80)
            with gr.Column(scale=2):
                grid = gr.Image(label="Samples (fills in while the diffusion runs; click one to open it in Unmasking)",
                                elem_id="grid", **PX)
                status = gr.HTML(f"<span>{START_HINT}</span>", elem_id="gen-status")
        # End follows Temperature while the two are equal (a constant temperature); a hidden checkbox, not a
        # State, so the browser reads it; inside the tab: anything else among the Tabs' children is drawn as a tab
        constant = gr.Checkbox(t0 == t1, visible=False, elem_id="constant-temperature")
        _refuse_as_typed([n, steps, temp, temp_end, top_p, c_steps, c_cells, c_temp, guide, seed])
    sampling = [temp, temp_end, top_p, c_steps, c_cells, c_temp, guide]
    # a constant temperature stays constant when only Temperature is moved: End follows it until End
    # itself is moved to another value (a schedule); each model's chosen settings say which it is
    def own_settings(m):   # said, as the sliders move: settings changed by hand are replaced too
        sampler = S.sampler_of(m)
        gr.Info(f"The sampling settings are {m}'s own now: {sampler.label()} (More sampling settings).", duration=6)
        return (*(d := S.slider_values(sampler)), d[0] == d[1])
    model.change(own_settings, model, [*sampling, constant], **PRIVATE)
    model.change(lambda m: gr.update(interactive=S.has_guide(m)), model, guide, show_progress="hidden", **PRIVATE)
    own.click(own_settings, model, [*sampling, constant], **PRIVATE)
    # in the browser, so that a click on Generate right after a move sends End as it follows
    # (a value out of range is not followed: Temperature's own refusal says it, once, and End stays)
    temp.input(None, [temp, constant, temp_end], temp_end, js=f"(t, c, e) => c && t >= {T_MIN} && t <= {T_MAX} ? t : e",
               **PRIVATE)
    temp_end.input(None, [temp, temp_end], constant, js="(t, e) => t === e", **PRIVATE)
    c_steps.change(lambda r: [gr.update(interactive=r > 0)] * 2, c_steps, [c_cells, c_temp], show_progress="hidden",
                   **PRIVATE)
    dice.click(S.random_seed, None, seed, api_name="random_seed")
    return NS(inputs=[model, n, steps, temp, seed, *sampling[1:]], go=go, stop=stop, outputs=[grid, status], grid=grid,
              status=status)


def _unmasking_tab(S: Studio, F: ModelFacts, run) -> NS:
    """2. Unmasking: pick an image, scrub or play its steps, click a token cell; export as GIF + MP4."""
    with gr.Tab("Unmasking", id="unmasking", elem_id="tab-unmasking"):
        _explain("Scrub through the sampling steps of one generated image (click one below to follow it). "
                 "Grey cells are still masked, red outlines mark the cells unmasked at this step. **Click a "
                 "cell** of the token grid: its code, its patch of the image (blue) and, in **Spikes**, its "
                 "spike train. **Committed** decodes only the tokens fixed so far (a still-masked cell decodes "
                 "from a zero vector, no code at all, which draws only a flat background: early on the image is "
                 "mostly that background, black for MNIST, and mid-run it shows broken strokes); **prediction** decodes "
                 "the denoiser's latest guess for every cell (only the cells chosen at a step keep their guess, so "
                 "even at the end it can differ from the committed image). **Play** shows every step as an animation.")
        whose = gr.Markdown(elem_id="unmask-whose")   # after a model switch: whose samples these are
        picker = gr.Gallery(label="Generated images (click one)", elem_id="picker", columns=PICKER_COLUMNS, height=128,
                            allow_preview=False, object_fit="contain", elem_classes="pixelated", interactive=False)
        with gr.Row():
            # hidden until a generation shows them over its run's ranges (the widest ranges stay the
            # components' own: the API's calls are checked against them)
            image = gr.Slider(0, max(S.max_batch - 1, 1), 0, step=1, label="Image", elem_id="image-index", visible=False,
                              **NO_RESET)
            step = gr.Slider(1, F.num_steps + MAX_CORRECTOR_ROUNDS, F.num_steps, step=1, label="Step", elem_id="step",
                             visible=False, **NO_RESET)
            cell = gr.Dropdown(cell_choices(F.latent_size), value=F.cells // 2,
                               label="Token cell (or click the grid; also selects it in Spikes)", elem_id="cell")
        # before a generation the step axis (right under the sliders) says why the views are empty
        # (an HTML block: the axis it then shows carries data attributes Play's script reads)
        axis = gr.HTML(re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", S.no_run_note(None, "every step of the image you pick")),
                       elem_id="step-axis")
        with gr.Row():   # Play, Pause and Export: greyed until a generation made a run (the axis says so)
            play, pause = (gr.Button(label, elem_id=label.lower(), interactive=False) for label in ("Play", "Pause"))
        with gr.Row() as still:
            # short labels and one button each: Gradio's buttons sit on the label, and the grid is for clicking
            grid = gr.Image(label=f"{F.latent_size}x{F.latent_size} tokens (click a cell)", elem_id="token-grid",
                            show_label=False, format="png", interactive=False, buttons=[],   # a diagram: smooth scaling
                            min_width=280)   # its codes stay readable: on a narrow window the row wraps instead
            committed = gr.Image(label="Committed, decoded", elem_id="committed", **(PX | dict(buttons=["download"])))
            predicted = gr.Image(label="Prediction, decoded", elem_id="predicted", **(PX | dict(buttons=["download"])))
            cell_note = gr.Markdown(elem_id="cell-info")
        player = gr.Image(label="Every step (tokens | committed | prediction)", elem_id="player", visible=False,
                          interactive=False, show_label=False)
        caption = gr.Markdown(elem_id="unmask-caption")
        with gr.Row():
            export = gr.Button("Export run as GIF + MP4", elem_id="export", interactive=False)
            gif, mp4 = gr.File(label="GIF", elem_id="gif", height=90), gr.File(label="MP4", elem_id="mp4", height=90)
    io = ([run, image, step, cell], [grid, committed, predicted, caption, cell_note, axis])
    # the user's own moves (a drag, a typed value, the reset button: input or release); a value set by
    # the studio (a finished generation, Pause, a click on a sample) is drawn by that event itself, so a
    # new run is drawn once, not once per control it sets
    _redraw_checked([image.input, image.release, step.input, step.release, cell.change], S.check_unmask, S.unmask, *io,
                    api_name="unmask", restore=(S.shown_frame, run, [image, step]), **MODEL_JOB)

    def pick_cell(r, evt: gr.SelectData):  # a click on the grid image: evt.index = [x, y] in its pixels
        cell = S.cell_at(r, *evt.index) if r is not None and evt.index else None
        return gr.skip() if cell is None else cell

    def pick_image(r, st, c, evt: gr.SelectData):  # a click on a thumbnail: evt.index = its position
        if r is None or not isinstance(evt.index, int):
            return (gr.skip(),) * (1 + len(io[1]))
        return evt.index, *S.unmask(r, evt.index, st, c)

    grid.select(pick_cell, run, cell, **PRIVATE)
    picker.select(pick_image, [run, step, cell], [image, *io[1]], **DRAW)
    return NS(image=image, step=step, cell=cell, io=io, play=play, pause=pause, player=player, still=still, whose=whose,
              caption=caption, picker=picker, export=export, files=[gif, mp4], views=[grid, committed, predicted],
              run_buttons=[play, pause, export])


# Play's script, installed once: __sdFrame() is the step the animation shows now (from the time its
# image loaded, the frame rate and the frame count on the step axis: #phase-axis data attributes), or
# 0 when it is not playing; while it plays, the Step slider and the axis marker follow it (drawn in the
# page only: no event is sent, so nothing is redrawn). Pause stops them and returns to the still views
# at that step.
PLAY_JS = """(...args) => {
  if (!window.__sdFrame) {
    document.addEventListener('load', (e) => {
      if (e.target.tagName === 'IMG' && e.target.closest('#player')) e.target.__sdStart = performance.now();
    }, true);
    window.__sdFrame = () => {
      const img = document.querySelector('#player img'), axis = document.querySelector('#phase-axis');
      if (!img || !img.__sdStart || !axis || img.closest('#player').offsetParent === null) return 0;
      const d = axis.dataset, n = +d.unmask + +d.correct;
      const k = Math.floor((performance.now() - img.__sdStart) * +d.fps / 1000) % (n + +d.hold);
      return Math.min(k, n - 1) + 1;
    };
    window.__sdShowStep = (k) => {
      const axis = document.querySelector('#phase-axis'), range = document.querySelector('#step input[type=range]');
      const num = document.querySelector('#step input[type=number]');
      if (num) num.value = k;
      if (range) {
        range.value = k;
        range.style.setProperty('--range_progress', `${100 * (k - +range.min) / (+range.max - +range.min)}%`);
      }
      const marker = axis && axis.querySelector('.axis-marker');
      if (marker) {                                  // where frames.step_axis_html puts it for step k
        marker.style.left = `${100 * (k - 0.5) / (+axis.dataset.unmask + +axis.dataset.correct)}%`;
        marker.title = `step ${k}`;
      }
    };
    // checked 40 times a second, drawn when the frame changes: at the animation's own 10 frames a second
    // the box lagged the picture by a step for up to a frame
    let shownK = 0;
    setInterval(() => { const k = window.__sdFrame(); if (k && k !== shownK) window.__sdShowStep(k); shownK = k; }, 25);
  }
  return args;
}"""
PAUSE_JS = """(step) => {
  const k = window.__sdFrame ? window.__sdFrame() : 0;
  if (!k) return step;                                                  // not playing
  document.querySelector('#player img').__sdStart = 0;                  // the slider stops following here
  window.__sdShowStep(k);
  return k;
}"""


PAUSE_IF_PLAYING_JS = ("() => { if (document.querySelector('#player')?.offsetParent != null) "
                       "document.querySelector('#pause').click(); }")


def _wire_playback(S: Studio, run, u: NS) -> None:
    """Play shows the pre-rendered animation (an animated GIF the browser plays); Pause returns to
    the still views at the frame shown. Export writes the run of the chosen image."""
    def playing(r, wanted):
        if not wanted:            # Pause was pressed while the animation was being made: stay paused
            return gr.skip(), gr.skip(), gr.skip()
        n_unmask, n_correct = (0, 0) if r is None or r.released else _phases(r)
        span = lambda what, first, last: f"{what}s {first}-{last}" if last > first else f"{what} {first}"
        then = f", then {span('corrector round', n_unmask + 1, n_unmask + n_correct)}" if n_correct else ""
        return (gr.update(visible=True), gr.update(visible=False),
                f"Playing every step at {FPS} frames per second: {span('unmasking step', 1, n_unmask)}{then} "
                f"({'blue and orange' if n_correct else 'blue'} on the step axis). **Pause** stops at the frame shown.")

    wanted = gr.State(False)  # Play's wish to show the animation being made; a Pause meanwhile withdraws it
    def making(r, wanted):   # said at once: the animation takes seconds to make (every step decoded and drawn)
        if r is None or r.released or not wanted:
            return gr.skip()
        return f"Making the animation of {plots.count(r.num_frames, 'step')} (a few seconds; one played before: at once)..."

    animating = u.play.click(lambda: True, None, wanted, js=PLAY_JS, **PRIVATE).then(
        making, [run, wanted], u.caption, **PRIVATE).then(S.animation, [run, u.image], u.player, api_name="animate",
                                                          show_progress_on=u.views, **MODEL_JOB)   # (player: hidden)
    animating.success(playing, [run, wanted], [u.player, u.still, u.caption], **PRIVATE)
    # the caption said "making": say where the still view is again (with no samples, the toast said it)
    animating.failure(S.unmask_if_any, *u.io, **DRAW)
    u.pause.click(lambda st: (gr.update(visible=False), gr.update(visible=True), st, False), u.step,
                  [u.player, u.still, u.step, wanted], js=PAUSE_JS, **PRIVATE).then(S.unmask, *u.io, **DRAW)
    # another image picked while one plays: Pause first (the animation shown was the last image's)
    u.image.change(None, None, None, js=PAUSE_IF_PLAYING_JS, **PRIVATE)
    # checked first (an API call with no samples, or a run since released): the toast says so, and the
    # export boxes show no error badges
    _redraw_checked([u.export.click], S.check_export, S.export, [run, u.image], u.files, api_name="export",
                    show_progress="full", trigger_mode="once", **MODEL_JOB)   # seconds of work: shown, done once


def _phases(r) -> tuple[int, int]:
    return frames.phases(r.trace.kinds)


def _spikes_tab(S: Studio, F: ModelFacts, model, run, image) -> NS:
    """3. Spikes: the ASG trains and membranes of one token cell, every layer's firing rates."""
    with gr.Tab("Spikes", id="spikes", elem_id="tab-spikes") as tab:
        _explain("How does a code become spikes? The **adaptive spike generator** (ASG) gives every token cell D "
                 "neurons (16 in the paper) that run for T time steps; the decoder sees only their spikes.\n"
                 "- **Raster** (spike trains): a row is one neuron (a channel of the cell), a column one time step, "
                 "a tick one spike.\n"
                 "- **Membrane trace**: a neuron's voltage charges up, and when it reaches the threshold (dashed) "
                 "the neuron spikes and drops back to 0 (the recording holds the potential after each reset, so a spike "
                 "is drawn as a climb to the threshold; the charge can cross it by more, as the **Learn** tab's "
                 "neuron shows). Up to two channels are drawn bold: the firing channel that fires least (charge, spike, "
                 "reset) and the quiet one that charges highest; the others are grey (hover one for its channel). A trace below 0 has a "
                 "negative input: it never fires.\n"
                 "- **Why the trains are regular**: a neuron's input (a learned mix of its code's numbers) is the "
                 "same at every step, so it fires at a steady rate. An input of 2x the threshold or more fires it at "
                 "every step; from 4/3x to 2x, at every second step (t = 1, 3, 5, ...); a weaker one, more rarely; one "
                 "at or under the threshold, never. Try it with the **Learn** tab's LIF neuron.\n"
                 "- **Encoder spikes**: the generated image encoded again, as the VQ-SVAE's encoder sees it.\n"
                 "- **Firing rate per position**: how often each layer's neurons fire at each place of its own map "
                 "(the encoder shrinks the image to the token grid, the decoder grows it back, so the maps differ in "
                 "size). Two patterns come from the layers' shapes, not from the image: a band along the top and left "
                 "edges of a stride-2 layer's map (only there do its 3x3 kernels reach past the image, into zero "
                 "padding), and a "
                 "checkerboard in the decoder's maps (a stride-2 transposed convolution draws alternate pixels from "
                 "different kernel taps).\n"
                 "- **Mean firing rate per layer**: the share of a layer's neurons that fire at a time step, on average.")
        with gr.Row():
            cell = gr.Dropdown(cell_choices(F.latent_size), value=F.cells // 2, label="Token cell (also selects it in Unmasking)",
                               elem_id="spikes-cell")
            go = gr.Button("Show spikes", elem_id="spikes-btn")
        note = gr.Markdown(elem_id="spikes-note")
        with gr.Row():
            r_cell, r_enc = gr.Plot(show_label=False, elem_id="raster-cell"), gr.Plot(show_label=False, elem_id="raster-encoder")
        r_all = gr.Plot(show_label=False, elem_id="raster-all")
        r_maps = gr.Plot(show_label=False, elem_id="rate-maps")
        with gr.Row():
            r_rates, r_mem = gr.Plot(show_label=False, elem_id="rate-bars"), gr.Plot(show_label=False, elem_id="membrane")
    io = ([run, image, cell], [r_cell, r_all, r_enc, r_maps, r_rates, r_mem, note])
    whose = dict(fn=S.whose_spikes, inputs=[model, run, note], outputs=note, **PRIVATE)   # another model's samples?
    _redraw_checked([go.click], S.check_spikes, S.spikes, *io, api_name="spikes", **MODEL_JOB).then(**whose)
    tab.select(S.spikes_on_open, *io, **PRIVATE, **MODEL_JOB).then(**whose)
    cell.input(S.spikes_on_open, *io, **PRIVATE, **MODEL_JOB).then(**whose)   # a cell set from Unmasking computes when the tab opens
    model.change(**whose)
    return NS(cell=cell)


def _codebook_tab(S: Studio, F: ModelFacts, model, run, usage) -> None:
    """4. Codebook: code usage (test set, generated), the atlas of decoded codes, where a code sits.
    ``usage``: a State holding the usage counts shown (source -> ``[h*w, K]``)."""
    with gr.Tab("Codebook", id="codebook", elem_id="tab-codebook") as tab:
        _explain("Which of the K codes get used? A code never used is **dead**; the **perplexity** "
                 "exp(entropy) is the number of equally used codes that would give the same spread.")
        go = gr.Button("Compute usage", elem_id="codebook-btn")
        stats = gr.Markdown(elem_id="codebook-stats")
        bars = gr.Plot(show_label=False, elem_id="usage-bars")
        heat = gr.Plot(show_label=False, elem_id="usage-heatmap")
        _explain(f"**Code atlas**: every code decoded as a whole {F.latent_size}x{F.latent_size} grid of that one "
                 f"code, {ATLAS_COLS} a row. A code's number is its row's number plus its column's (row "
                 f"{ATLAS_COLS}, column 5: code {ATLAS_COLS + 5}). Click one to see it and where the images use it.")
        with gr.Row():
            atlas = gr.Image(label="Code atlas: code = row + column (click one)", elem_id="atlas", **PX)
            with gr.Column():
                # hidden until a model's usage shows it over its K codes (the widest range stays the slider's
                # own: the API's calls are checked against it); it opens on a used code
                code = gr.Slider(0, 1023, 0, step=1, label="Code", elem_id="code", visible=False, **NO_RESET)
                code_img = gr.Image(label=f"This code in all {F.cells} cells, decoded", elem_id="code-image", **PX)
        where = gr.Plot(show_label=False, elem_id="code-where")
        code_shown = _accepted([code])
    io = ([model, run, code], [bars, heat, stats, atlas, usage, code])

    def pick(m, evt: gr.SelectData):   # a click on the atlas: evt.index = [x, y] -> that code on the slider
        c = S.code_at(m, *evt.index) if evt.index else None
        return gr.skip() if c is None else c
    atlas.select(pick, model, code, **PRIVATE)
    code_io = ([model, usage, code], [code_img, where])
    # another model: the usage shown (and the code decoded beside it) belonged to the last one. It is
    # cleared; with the Codebook open, Compute usage is pressed (in the page) for the new model at once
    click_if_open = ("() => { if (document.querySelector('#tab-codebook')?.offsetParent != null) "
                     "document.querySelector('#codebook-btn').click(); }")
    asked = _AskedModel()                # a model switch mid-computation: the last model asked for wins

    def cleared(m, request: gr.Request):
        asked.record(m, request)
        return None, None, S.CODEBOOK_EMPTY, None, None, gr.skip(), None, None
    model.change(cleared, model, [*io[1], *code_io[1]], **PRIVATE).then(None, None, None, js=click_if_open, **PRIVATE)
    # any change of the code: a drag, a typed number (Enter), arrow keys on the slider (release missed the last two)
    _redraw_checked([code.change], lambda m, u, c: S.check_code(m, c), S.code, *code_io, api_name="code",
                    remember=(code_shown, [code]), **MODEL_JOB)
    # "computing" said at once (in the page): a model's first usage takes seconds
    computing = f"() => {json.dumps(S.CODEBOOK_COMPUTING)}"
    usage_of = asked.only_latest(S.codebook, len(io[1]))
    # a press while one computes is kept, not dropped (the default); the progress shows on the charts, so
    # that the "computing" note above them stays readable (Gradio dims every output it shows progress on)
    last = dict(trigger_mode="always_last", show_progress_on=[io[1][0], io[1][1]])
    for computed in (go.click(None, None, stats, js=computing, **PRIVATE).then(usage_of, *io, api_name="codebook",
                                                                               **last, **MODEL_JOB),
                     tab.select(None, None, stats, js=computing, **PRIVATE).then(usage_of, *io, **last, **PRIVATE,
                                                                                 **MODEL_JOB)):
        computed.success(S.code, *code_io, **PRIVATE, **MODEL_JOB)
        computed.failure(lambda: S.CODEBOOK_EMPTY, None, stats, **PRIVATE)


# The sketchpad: a 280x280 canvas (10x the model's 28x28) and a brush whose stroke, relative to the
# canvas, is as wide as an MNIST digit's stroke in 28x28 (about 2.4 px: twice the ink area over the
# outline length, 1.84 px on 2,000 MNIST test digits, times 4/pi for the pixel outline's staircase).
SKETCH_PX = 280
EDITOR_PX = 360   # the Encode tab's upload and drawing boxes (canvas + toolbars)
MNIST_STROKE_PX = 2.4
BRUSH_RADIUS = round(SKETCH_PX / 28 * MNIST_STROKE_PX / 2)   # gr.Brush sizes are radii (12 px)
# Gradio opens an ImageEditor with no tool chosen and has no setting for it: pick the brush when the
# tab opens and after a clear (retries while the canvas renders).
DRAW_JS = """() => {
  let tries = 0;
  const pick = () => {
    const btn = document.querySelector('#sketch button[aria-label="Brush"], #sketch button[title="Brush"]');
    if (btn) { if (!btn.classList.contains('highlight')) btn.click(); }
    else if (tries++ < 40) setTimeout(pick, 100);
  };
  pick();
}"""


EMPTY_BOX = {"upload": "The Upload box is empty: upload a picture into it first (a drawing is encoded by Encode drawing).",
             "sketch": "The Draw box has no drawing: draw in it first (an uploaded picture is encoded by Encode upload)."}


def _has_ink(sketch) -> bool:
    """Whether a sketchpad value holds a drawing (a composite, file or array, not one flat colour)."""
    img = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if isinstance(img, (str, Path)):
        try:
            with Image.open(img) as im:
                img = np.asarray(im)
        except OSError:
            return True                           # let the encoder's reader say what is wrong
    return img is not None and np.ptp(np.asarray(img)) > 0


REFUSED_UPLOAD = "**Your last upload could not be read**"
SWITCH_FAILED = "**The model changed, and the picture shown could not be encoded with it**"   # (the views emptied)
# the Encode note before any picture is encoded (the views under it are empty until then)
ENCODE_HINT = ("*Nothing encoded yet.* Upload a picture or draw one: the views below then show what the model reads, "
               "its tokens, the reconstruction, the encoder's spikes and the spike generator's trains.")
EMPTY_VIEWS = (ENCODE_HINT, SWITCH_FAILED)   # the starts of the notes shown while the views hold no picture
# the Encode tab's results (model input, tokens, reconstruction) below the upload box: scrolled just into view
SHOW_RESULTS_JS = ("() => { const el = document.querySelector('#reconstruction'); "
                   "if (el && document.querySelector('#upload img')) el.scrollIntoView({block: 'nearest', "
                   "behavior: 'smooth'}); }")   # (an emptied box: no scroll)


def _refused_upload_note(said: str | None, why: str | None) -> str:
    """The Encode note after a refused upload: it says so and why (``why``: the refusal's message,
    which its toast showed only for seconds), above what the views still show (the earlier picture's
    note, once, however many uploads were refused)."""
    said = said or ""
    earlier = (said.split("\n\n", 1)[1:] or [""])[0] if said.startswith(REFUSED_UPLOAD) else said
    head = f"{REFUSED_UPLOAD}: {html.escape(why.removeprefix('Upload: '))}" if why else f"{REFUSED_UPLOAD} (the message said why)"
    if not earlier.strip() or earlier.startswith(EMPTY_VIEWS):          # the views show no picture
        return f"{head}.\n\n{ENCODE_HINT}"
    return f"{head}. The views still show the picture before it.\n\n{earlier}"


def _encode_tab(S: Studio, F: ModelFacts, model) -> NS:
    """5. Encode & reconstruct: an uploaded or drawn picture through the encoder and back; a new
    upload or a finished stroke encodes itself (the buttons re-run)."""
    with gr.Tab("Encode & reconstruct", id="encode", elem_id="tab-encode") as tab:
        _explain("Upload a picture (any image file) or draw one: it is encoded as soon as it arrives (or a stroke "
                 "ends). It is read as you see it (transparent areas become the background) and framed as the model's "
                 "data set was: for MNIST-style models the strokes are cropped, scaled into 20x20 and centred by their "
                 "centre of mass, light on dark (a light border means dark ink: inverted); colour pictures are "
                 f"resized. Then it is encoded to {F.latent_size}x{F.latent_size} tokens and decoded back. Files up to "
                 f"{S.max_upload.upper()} and {MAX_PIXELS / 1e6:.1f} megapixels (e.g. "
                 f"{math.isqrt(MAX_PIXELS)}x{math.isqrt(MAX_PIXELS)}) are read.")
        with gr.Row():
            # the file itself reaches the reader (CMYK, 16-bit, animation, EXIF intact; size read from the header)
            # both one fixed height: the upload's preview no longer shrinks to a strip for a wide picture
            upload = gr.Image(label="Upload", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                              elem_id="upload", height=EDITOR_PX)
            sketch = gr.Sketchpad(label="Draw", type="filepath", canvas_size=(SKETCH_PX, SKETCH_PX), elem_id="sketch",
                                  height=EDITOR_PX,
                                  brush=gr.Brush(default_size=BRUSH_RADIUS, colors=["#000000"], color_mode="fixed"))
        with gr.Row():
            invert = gr.Radio(["auto", "yes", "no"], value="auto", label="Invert colours", elem_id="invert")
            e_up = gr.Button("Encode upload", variant="primary", elem_id="encode-btn")
            e_sk = gr.Button("Encode drawing", elem_id="encode-sketch-btn")
        note = gr.Markdown(ENCODE_HINT, elem_id="encode-note")
        # the picture the view shows, "upload" or "sketch" (Invert encodes it again); inside the tab: anything
        # else among the Tabs' children is drawn as a tab
        source = gr.State("upload")
        with gr.Row():
            shown = gr.Image(label="Model input (28x28)", elem_id="encode-input", **PX)
            tokens = gr.Plot(show_label=False, elem_id="encode-tokens")          # its title names it
            recon = gr.Image(label="Reconstruction", elem_id="reconstruction", **PX)
        with gr.Row():
            enc = gr.Plot(show_label=False, elem_id="encode-raster")             # titled in the plot
            asg = gr.Plot(show_label=False, elem_id="encode-asg")
    out = [shown, tokens, recon, enc, asg, note]
    # every encoding reads the picture first: a refused file only raises its toast (no error badges
    # over the views, which keep the last encoding), and a file that is no picture leaves the upload box
    def given(picture):                      # the picture, or None: an empty box, a sketchpad without ink
        return (picture if _has_ink(picture) else None) if isinstance(picture, dict) else picture

    def check_given(m, picture, inv):
        if given(picture) is not None:
            S.check_encode(m, picture, inv)

    def check_box(name):                     # a button's check: an empty box is named, with the other button
        def check(m, picture, inv):
            if given(picture) is None:
                raise user_error(EMPTY_BOX[name])
            S.check_encode(m, picture, inv)
        return check

    skip = tuple(gr.skip() for _ in out)

    def encode_given(m, picture, inv):       # the views of the picture, or all kept when there is none
        return skip if given(picture) is None else S.encode(m, picture, inv)

    def shown(im, sk, src):                  # the picture the view shows (encoded last)
        return sk if src == "sketch" else im
    checked = dict(show_progress="hidden", trigger_mode="always_last", **PRIVATE)
    for btn, picture, name, api, progress in ((e_up, upload, "upload", "encode", "full"),
                                              (e_sk, sketch, "sketch", "encode_sketch", "hidden")):   # (each stroke)
        # a button: an empty box is refused too (the check names it, and the other button)
        first = btn.click(_check_only(check_box(name)), [model, picture, invert], None, **checked)
        clicked = first.success(S.encode, [model, picture, invert], out, api_name=api, **MODEL_JOB)
        clicked.success(lambda n=name: n, None, source, **PRIVATE)
        # a new upload or stroke encodes itself
        read = picture.change(_check_only(check_given), [model, picture, invert], None, **checked)
        encoded = read.success(lambda m, p, inv, n=name: (*encode_given(m, p, inv), n if given(p) is not None else gr.skip()),
                               [model, picture, invert], [*out, source], trigger_mode="always_last", show_progress=progress,
                               **PRIVATE, **MODEL_JOB)
        if picture is upload:
            for done in (encoded, clicked):    # its results scrolled into view (not a drawing's: the pen stays)
                done.success(None, None, None, js=SHOW_RESULTS_JS, **PRIVATE)
            # a file that could not be read: the box emptied, the note saying the views show the picture before
            # it (a press of the button on an empty box, or a model that fails to load, only raises its toast)
            read.failure(lambda said: (None, _refused_upload_note(said, last_message())), note, [upload, note],
                         **PRIVATE)
    shown_in = [model, upload, sketch, invert, source]
    # another choice of inversion: the picture shown is encoded again
    invert.change(lambda m, im, sk, inv, src: encode_given(m, shown(im, sk, src), inv), shown_in, out,
                  trigger_mode="always_last", **PRIVATE, **MODEL_JOB)
    tab.select(None, None, None, js=DRAW_JS, **PRIVATE)
    sketch.clear(None, None, None, js=DRAW_JS, **PRIVATE)
    # another model: the picture shown is encoded again with it (the views showed the last model's);
    # checked first: a picture this model refuses, or a model that does not load, says so in the note
    switch = model.change(lambda m, im, sk, inv, src: check_given(m, shown(im, sk, src), inv), shown_in, None, **checked)
    switch.success(lambda m, im, sk, inv, src: (None,) * (len(out) - 1) + (ENCODE_HINT,) if given(shown(im, sk, src)) is None
                   else S.encode(m, shown(im, sk, src), inv), shown_in, out, trigger_mode="always_last", **PRIVATE,
                   **MODEL_JOB)
    switch.failure(lambda: (None,) * (len(out) - 1) + (
        f"{SWITCH_FAILED}: {html.escape(last_message() or 'the message said why')}.",), None, out, **PRIVATE)
    return NS(tab=tab)


def _learn_tab(S: Studio, F: ModelFacts, model, run) -> NS:
    """6. Learn: one LIF neuron, direct vs rate coding, the PSP filter, the dual coding, energy."""
    with gr.Tab("Learn", id="learn", elem_id="tab-learn") as tab:
        with gr.Row():
            with gr.Column(scale=1):
                _explain("### A LIF neuron\nA leaky integrate-and-fire neuron's membrane potential V moves "
                         "towards its input X by a share 1/tau of the gap each step, V += (X - V) / tau (the "
                         "paper's SpikingJelly neuron, tau = 2), so a constant input lets V settle at X. Crossing "
                         "the threshold emits a spike; a **hard** reset then sets the potential to 0, a **soft** "
                         "reset subtracts the threshold. A constant input at or below the threshold never "
                         "fires (V only comes ever closer to it; with tau = 1, V = X at once, and an input at "
                         "the threshold fires at every step); bigger ones fire more often.")
                l_i = _learn_slider("Input current", 1.5, 0.05, "lif-current")
                l_th = _learn_slider("Threshold", LIF_THRESHOLD, 0.05, "lif-threshold")
                l_tau = _learn_slider("Time constant tau", LIF_TAU, 0.5, "lif-tau")
                l_reset = gr.Radio(["hard", "soft"], value="hard", label="Reset", elem_id="lif-reset")
                l_T = _learn_slider("Time steps", 40, 1, "lif-steps")
                l_note = gr.Markdown(elem_id="lif-note")
            l_fig = gr.Plot(show_label=False, elem_id="lif-plot", scale=2)
        with gr.Row():
            with gr.Column(scale=1):
                _explain("### Direct versus rate coding\nThis model feeds each pixel **directly**: the "
                         "value (minus 0.5) enters the first layer at every time step, and the first LIF "
                         "layer turns it into spikes (the plot shows that layer's output). **Rate coding** "
                         "instead turns the pixel itself into random input spikes, each step with a "
                         "probability equal to its brightness (the plot shows that input train): two stages "
                         "of a network side by side, not one.")
                k_p = _learn_slider("Pixel value", 0.7, 0.01, "coding-pixel")
                k_T = _learn_slider("Time steps T", 16, 1, "coding-steps")
                k_seed = _seed_box()
                k_note = gr.Markdown(elem_id="coding-note")
            k_fig = gr.Plot(show_label=False, elem_id="coding-plot", scale=2)
        with gr.Row():
            with gr.Column(scale=1):
                _explain("### The PSP filter\nThe spike-train loss compares spike trains after a "
                         "post-synaptic-potential filter: each step the trace keeps 1 - 1/tau_s of its value and a "
                         "spike adds 1/tau_s, so trains that spike at nearly the same times look alike.")
                p_rate = _learn_slider("Spike rate", 0.3, 0.01, "psp-rate")
                p_tau = _learn_slider("Time constant tau_s", F.psp_tau, 0.5, "psp-tau")
                p_T = _learn_slider("Time steps", 32, 1, "psp-steps")
                p_seed = _seed_box()
            p_fig = gr.Plot(show_label=False, elem_id="psp-plot", scale=2)
        with gr.Row():
            with gr.Column(scale=1):
                _explain("### The quantiser's dual coding\nBefore looking up the nearest code, the encoder's "
                         "spikes become one number per neuron: a mix of the **membrane-potential** read-out "
                         "M(s) (recent spikes weigh most) and the **firing rate**, with a learned weight a.")
                q_rate = _learn_slider("Spike rate", 0.4, 0.01, "quant-rate")
                q_a = _learn_slider("Mix a", 0.5, 0.01, "quant-alpha")
                q_T = _learn_slider("Time steps T", 16, 1, "quant-steps")
                q_seed = _seed_box()
                q_note = gr.Markdown(elem_id="quant-note")
            q_fig = gr.Plot(show_label=False, elem_id="quant-plot", scale=2)
        energy = _energy_section(S, model, run)
        lif_in, coding_in = [l_i, l_th, l_tau, l_reset, l_T], [k_p, k_T, k_seed]
        psp_in, quant_in = [p_rate, p_tau, p_T, p_seed], [q_rate, q_a, q_T, q_seed]
        accepted = {view: _accepted(controls) for view, controls in
                    [("lif", lif_in), ("coding", coding_in), ("psp", psp_in), ("quantizer", quant_in)]}
    def quantizer(rate, alpha, steps, seed):   # with the default model's membrane decay
        return learn.quantizer(rate, alpha, steps, seed, F.membrane_decay)

    for view, fn, inputs, outputs in [("lif", learn.lif, lif_in, [l_fig, l_note]),
                                      ("coding", learn.coding, coding_in, [k_fig, k_note]),
                                      ("psp", learn.psp, psp_in, p_fig), ("quantizer", quantizer, quant_in, [q_fig, q_note])]:
        _redraw_checked([c.change for c in inputs], lambda *a, v=view: learn.check(v, *a), fn, inputs, outputs,
                        api_name=view, remember=(accepted[view], inputs))
    tab.select(learn.lif, lif_in, [l_fig, l_note], **PRIVATE).then(learn.coding, coding_in, [k_fig, k_note], **PRIVATE).then(
        learn.psp, psp_in, p_fig, **PRIVATE).then(quantizer, quant_in, [q_fig, q_note], **PRIVATE)
    return energy


ENERGY_STALE = ("A new generation was made: press **Estimate energy of my last generation** for its figures "
                "(those shown were the one before's).")


def _energy_section(S: Studio, model, run) -> NS:
    """The Learn tab's last row: the AC/MAC energy estimate of the session's last generation (its
    note says whose, after a model switch)."""
    with gr.Row():
        with gr.Column(scale=1):
            _explain("### Energy of a generation\nA spiking layer only works when a spike arrives: one "
                     f"addition (AC, ~{E_AC_PJ} pJ) per spike per connection at each of the T steps, "
                     f"against one multiply-add (MAC, ~{E_MAC_PJ} pJ) per connection in an ordinary "
                     "network. Estimated for your last generation.")
            go = gr.Button("Estimate energy of my last generation", elem_id="energy-btn")
            md = gr.Markdown(elem_id="energy-note")
        fig = gr.Plot(show_label=False, elem_id="energy-plot", scale=2)
    whose = dict(fn=lambda m, r, note: S.whose_note(m, r, note, S.ENERGY_OTHERS), inputs=[model, run, md], outputs=md,
                 **PRIVATE)
    go.click(S.energy, run, [md, fig], api_name="energy", **MODEL_JOB).then(**whose)
    model.change(**whose)
    return NS(md=md, fig=fig)


def build_demo(studio: Studio) -> gr.Blocks:
    """The studio: a model picker over six tabs. ``run`` (the session's last generation) links them."""
    S, F = studio, studio.facts()
    with gr.Blocks(title="Spiking-Diffusion studio") as demo:
        # a session's run lives in the studio's bounded store (cap + time to live since last use);
        # Gradio drops a closed session's states after an hour, releasing its run then at the latest
        run = gr.State(None, delete_callback=S.runs.discard)
        usage = gr.State(None, time_to_live=S.runs.ttl)
        gr.Markdown(INTRO.format(L=F.latent_size))
        with gr.Row():
            model = gr.Dropdown(list(S.models), value=S.default_model, label="Model (data set)", elem_id="model", scale=1)
            with gr.Accordion("Model info", open=False):
                info = gr.Markdown(elem_id="model-info")
        if not S.models:
            gr.Markdown("**No checkpoints found.** Put a folder holding `config.json` + `model.safetensors` in the checkpoint folder.")
        demo.load(S.model_info, model, info, api_name="model_info")
        model.change(S.model_info, model, info, **PRIVATE)
        with gr.Tabs() as tabs:
            gen = _generate_tab(S, F, model)
            unmask = _unmasking_tab(S, F, run)
            spikes = _spikes_tab(S, F, model, run, unmask.image)
            _codebook_tab(S, F, model, run, usage)
            _encode_tab(S, F, model)
            learn_views = _learn_tab(S, F, model, run)
        # a finished generation opens its last step in Unmasking (while one streams, and after one
        # fails, the views keep the last finished run); a click on a finished grid opens that sample; Unmasking's cell is Spikes' cell. Gradio's progress
        # (the queue position) shows on the status line only: over the samples it cost the page seconds
        # the settings are checked first: a refused value only raises its toast (the samples and status stay)
        # a press while one runs is kept and runs after it (Gradio's default drops it without a word)
        # in the browser session (Gradio passes ``request``), whose Stop ends the generations it asked for
        # before (running, or waiting in the queue); the parameters keep S.generate's names (the API's)
        def asked(model, num_images, steps, temperature, seed, temperature_end, top_p, corrector_steps,
                  corrector_cells, corrector_temperature, guidance, request: gr.Request = None):
            S.check_generate(model, num_images, steps, temperature, seed, temperature_end, top_p, corrector_steps,
                             corrector_cells, corrector_temperature, guidance)
            S.generation_asked(_session(request))

        def generate(model, num_images, steps, temperature, seed, temperature_end, top_p, corrector_steps,
                     corrector_cells, corrector_temperature, guidance, request: gr.Request = None):
            yield from S.generate(model, num_images, steps, temperature, seed, temperature_end, top_p, corrector_steps,
                                  corrector_cells, corrector_temperature, guidance, session=_session(request))

        def stop(request: gr.Request = None):
            S.stop_generation(_session(request))

        note_typed, read_typed = typed_on_press("generate-btn", gen.inputs)
        demo.load(None, None, None, js=note_typed, **PRIVATE)
        generating = gen.go.click(asked, gen.inputs, None, show_progress="hidden", js=read_typed,
                                  trigger_mode="always_last", **PRIVATE).success(
            generate, gen.inputs, [*gen.outputs, run], api_name="generate", show_progress_on=gen.status,
            trigger_mode="always_last", **MODEL_JOB)
        generating.success(   # a stopped generation made no run: the views stay as they are; a new run
            # empties the export boxes (their files were the last run's) and opens Play, Pause and Export
            lambda r, st: (gr.skip(),) * 8 if S.STOPPED in st else (
                slider_range(0, 0, r.num_images - 1), slider_range(r.num_frames, 1, r.num_frames),
                gr.update(value=S.gallery(r), selected_index=0), None, None,
                *[gr.update(interactive=True)] * len(unmask.run_buttons)),
            [run, gen.status], [unmask.image, unmask.step, unmask.picker, *unmask.files, *unmask.run_buttons],
            **PRIVATE).then(
            lambda r, *a: S.unmask(r, *a) if S.has_run(r) else (gr.skip(),) * len(unmask.io[1]),   # (none yet: a Stop)
            *unmask.io, **DRAW)
        generating.failure(S.generation_failed, run, gen.status, **PRIVATE)
        # an energy estimate shown was the last generation's: a new one replaces it by what to press
        generating.success(lambda note, st: (gr.skip(),) * 2 if not note or S.STOPPED in st else (ENERGY_STALE, None),
                           [learn_views.md, gen.status], [learn_views.md, learn_views.fig], **PRIVATE)
        # Stop ends the generations the session asked for before it: a running one within a step (its last
        # preview stays on the grid, the status line says so), a queued one before it starts
        gen.stop.click(stop, None, None, **PRIVATE)
        # whose samples are shown (a note that waited in the queue past a newer Generate press is dropped)
        def samples_note(m, r, st, request: gr.Request = None):
            return S.samples_note(m, r, st, session=_session(request))

        def samples_note_at_once(m, r, st, request: gr.Request = None):   # without the cost, which loads the model
            return S.samples_note(m, r, st, session=_session(request), cost=False)
        model.change(samples_note_at_once, [model, run, gen.status], gen.status, **PRIVATE).then(
            samples_note, [model, run, gen.status], gen.status, **PRIVATE)
        generating.success(S.done_for_another, [model, run, gen.status], gen.status, **PRIVATE)   # switched while it ran
        # Unmasking says so too (its own line: its redraws leave it), until a generation with this model

        def unmask_whose(m, r, request: gr.Request = None):
            if S.run_superseded(_session(request), r):
                return gr.skip()
            return S.others_samples(m, r, "These samples") or ""
        model.change(unmask_whose, [model, run], unmask.whose, **PRIVATE)
        generating.success(unmask_whose, [model, run], unmask.whose, **PRIVATE)

        def open_sample(r, shown, st, c, evt: gr.SelectData):  # a click on the sample grid: evt.index = [x, y]
            i = S.image_at(r, *evt.index, grid=shown) if r is not None and evt.index else None
            if i is None:  # a gap, or a preview
                return (gr.skip(),) * (2 + len(unmask.io[1]))
            return i, gr.Tabs(selected="unmasking"), *S.unmask(r, i, st, c)

        gen.grid.select(open_sample, [run, gen.grid, unmask.step, unmask.cell], [unmask.image, tabs, *unmask.io[1]],
                        **DRAW)
        # another image: the picker follows, the export boxes empty (their files were the last image's)
        unmask.image.change(lambda i: (gr.update(selected_index=i), None, None), unmask.image,
                            [unmask.picker, *unmask.files], **PRIVATE)
        _wire_playback(S, run, unmask)
        unmask.cell.change(lambda c: c, unmask.cell, spikes.cell, **PRIVATE)
        spikes.cell.input(lambda c: c, spikes.cell, unmask.cell, **PRIVATE)   # the user's pick only: no echo back
        tabs.select(None, None, None, js=RESIZE_JS, **PRIVATE)     # re-fit the opened tab's plots
    for block in demo.blocks.values():   # a screen reader reads each picture the studio makes by its label
        if isinstance(block, gr.Image) and not block.alt_text and block.label:
            block.alt_text = block.label
    return demo
