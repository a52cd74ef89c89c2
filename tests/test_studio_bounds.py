"""The studio's resources stay bounded: stored runs, decoded frames, exports, abandoned generations."""
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from demo import generations as G
from demo import studio as S
from spiking_diffusion import compute


@pytest.fixture(scope="module")
def studio(tmp_path_factory, make_tiny_models):
    from test_app import make_checkpoints

    st = S.Studio(make_checkpoints(tmp_path_factory.mktemp("ck"), make_tiny_models), max_batch=8, max_runs=2)
    yield st
    st.close()


def run_of(studio, n=2, steps=6, seed=0, rounds=0):
    *_, (grid, status, run) = list(studio.generate("tiny", n, steps, 0.65, seed, corrector_steps=rounds))
    return run


def workers() -> int:
    return sum(t.name == "sd-generate" and t.is_alive() for t in threading.enumerate())


def test_traces_hold_int16_ids(studio):
    run = run_of(studio)
    st = run.trace.steps[0]
    assert st.tokens.dtype == np.int16 and st.pred_sampled.dtype == np.int16 and st.unmasked.dtype == bool
    assert (st.tokens == run.trace.mask_id).any()                      # the mask id survives the cast


def test_the_run_store_keeps_the_latest_runs_only(studio):
    runs = [run_of(studio, seed=i) for i in range(3)]                  # max_runs=2: the first is cleared
    assert runs[0].released and runs[0].trace is None and not runs[2].released and len(studio.runs) == 2
    with pytest.raises(S.gr.Error, match="cleared to free memory .* latest 2 generations"):
        studio.unmask(runs[0], 0, 1, 0)
    assert "Step **1/6**" in studio.unmask(runs[2], 0, 1, 0)[3]
    store = G.RunStore(max_runs=5, ttl=0.05)
    run = store.add(runs[2])
    time.sleep(0.1)
    with pytest.raises(S.InputError, match="generate again"):        # not looked at for longer than the TTL
        store.get(run)


def test_unmasking_decodes_only_the_frame_shown(studio, monkeypatch):
    run = run_of(studio, n=3, steps=8, rounds=3)
    pipe = studio.pipe("tiny")
    decoded, inner = [], pipe.decode
    monkeypatch.setattr(pipe, "decode", lambda t, **k: decoded.append(len(t)) or inner(t, **k))
    _, committed, predicted, caption, _, _ = studio.unmask(run, 1, 10, 24)   # a corrector frame (steps 9..11)
    assert decoded == [2] and "corrector round 2" in caption           # committed + predicted of one frame
    want = S.to_uint8(inner(run.trace.steps[9].tokens[1:2], allow_mask=True))[0]
    assert np.array_equal(committed, S.frames.outline_patch(S.media.show(want, 8), (3, 3), 7))   # cell 24 outlined
    studio.unmask(run, 1, 10, 3)                                       # the same frame again: cached
    assert decoded == [2]


def test_previews_are_decoded_between_steps_and_take_a_tenth(studio, monkeypatch):
    """A streamed preview is decoded between two denoiser calls (never beside one: two sets of matrix
    products on two cores slow both), on the studio's one compute thread as they are, and at most every
    PREVIEW_EVERY x its own cost. The decoder is made slow (50 ms) so that the budget decides."""
    pipe = studio.pipe("tiny")
    spans, denoise, decode = [], pipe._denoise, pipe.decode

    def timed(kind, fn):
        def call(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            spans.append((kind, t0, time.perf_counter(), threading.current_thread().name))
            return out
        return call
    monkeypatch.setattr(pipe, "_denoise", timed("denoise", lambda *a: time.sleep(0.03) or denoise(*a)))
    monkeypatch.setattr(pipe, "decode", timed("decode", lambda t, **k: time.sleep(0.05) or decode(t, **k)))
    t0 = time.perf_counter()
    streamed = list(studio.generate("tiny", 2, 40, 0.65, 0, corrector_steps=30))
    total = time.perf_counter() - t0
    decodes = [s for s in spans if s[0] == "decode"]
    assert {thread for *_, thread in spans} == {compute.THREAD_NAME}   # all of it on the compute thread
    previews = decodes[:-1]                                            # the last: the pipeline's own, of the result
    pictures = [item for item in streamed if isinstance(item[0], np.ndarray)]
    assert 2 <= len(pictures) - 2 <= len(previews)                     # the first step and the result: no decode
    steps = [int(re.search(r'data-step="(\d+)"', item[1]).group(1)) for item in streamed[:-1]]
    assert max(steps) > 40 and len(streamed) > len(pictures)           # the corrector rounds: status lines only
    pictured = [step for item, step in zip(streamed, steps) if isinstance(item[0], np.ndarray)]
    assert max(pictured) == 40                                         # the finished grids stay during the rounds
    for _, a, b, _ in decodes:
        assert not any(k == "denoise" and a < d1 and d0 < b for k, d0, d1, _ in spans)   # never beside a step
    took = [b - a for _, a, b, _ in previews]
    assert sum(took) <= total / (S.PREVIEW_EVERY + 1) + max(took)       # the first comes at once


def test_exports_are_bounded_and_deleted(tmp_path, make_tiny_models, monkeypatch):
    from test_app import make_checkpoints

    monkeypatch.setattr(S, "MAX_EXPORTS", 2)
    st = S.Studio(make_checkpoints(tmp_path / "ck", make_tiny_models), max_batch=4)
    run = run_of(st, n=1, steps=3)
    paths = [st.export(run, 0)[0] for _ in range(4)]
    assert len(list(st.export_root.iterdir())) == 2
    assert not (tmp_path / paths[0]).exists() and (tmp_path / paths[-1]).exists()
    root = st.export_root
    st.close()
    assert not root.exists()


def test_an_abandoned_generation_stops_within_a_step(studio, monkeypatch):
    pipe = studio.pipe("tiny")
    calls, inner = [], pipe._denoise
    monkeypatch.setattr(pipe, "_denoise", lambda *a: calls.append(1) or time.sleep(0.05) or inner(*a))
    gen = studio.generate("tiny", 2, 40, 0.65, 0, corrector_steps=100)
    next(gen)                                                          # the first streamed step
    gen.close()                                                        # the browser tab is closed
    deadline = time.time() + 5
    while workers() and time.time() < deadline:
        time.sleep(0.02)
    assert workers() == 0 and studio.generating == 0
    ran = len(calls)
    time.sleep(0.2)
    assert len(calls) == ran < 20                                      # far fewer than its 140 steps


def test_the_app_caps_malloc_arenas_unless_told_otherwise():
    import platform
    import subprocess
    import sys

    code = "import app, sys; sys.stdout.write(str(app.limit_malloc_arenas()))"
    root = Path(__file__).resolve().parents[1]
    run = lambda env: subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                                     text=True, timeout=120).stdout
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert run(env) == str(glibc)                             # capped where glibc is the allocator
    assert run({**env, "MALLOC_ARENA_MAX": "8"}) == "False"  # an explicit setting wins


def test_freed_memory_is_handed_back_at_most_every_few_seconds(monkeypatch):
    import platform

    from demo import memory

    if not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"):
        assert memory.trim_free_memory() is False                     # nothing to do elsewhere
        return
    monkeypatch.setattr(memory, "_last_trim", -float("inf"))
    assert memory.trim_free_memory(min_interval=60) is True
    assert memory.trim_free_memory(min_interval=60) is False          # rate-limited
    assert memory.trim_free_memory(min_interval=0) is True


def test_adding_a_run_hands_freed_memory_back(monkeypatch):
    calls = []
    monkeypatch.setattr(G, "trim_free_memory", lambda: calls.append(1))
    store = G.RunStore(max_runs=1)
    trace = type("Trace", (), {"__len__": lambda self: 3})()
    for _ in range(2):
        store.add(G.Run("m", np.zeros((2, 4, 4, 1), np.uint8), None, trace, 0.1))
    assert len(store) == 1 and len(calls) == 2


def test_play_and_export_decode_the_whole_run_once(studio, monkeypatch):
    run = run_of(studio, rounds=2)
    pipe = studio.pipe("tiny")
    calls = []
    real = pipe.decode_trace
    monkeypatch.setattr(pipe, "decode_trace", lambda trace, image=0: calls.append(image) or real(trace, image))
    gif = studio.animation(run, 1)
    again = studio.animation(run, 1)             # replayed: the same GIF under a name of its own (the browser restarts it)
    made = Path(run.animations[1])
    assert again != gif and Path(again).read_bytes() == made.read_bytes() and not Path(gif).exists()
    studio.export(run, 1)
    assert calls == [1]                                                 # Play and Export shared one decode
    studio.export(run, 0)
    assert calls == [1, 0]
    shutil.rmtree(made.parent)                                          # its export folder rotated away
    assert Path(studio.animation(run, 1)).is_file() and calls == [1, 0, 1]   # made again, no error
    assert studio.runs.get(run) is run
    run.release()
    assert run.released and run.whole is None and run.animations == {}


def test_a_step_that_skipped_an_image_says_so(studio):
    """The studio's traced run skips images with nothing to unmask; Unmasking names the step whose
    prediction it shows instead, and the frame decodes that prediction."""
    run = run_of(studio, n=2, steps=studio.pipe("tiny").num_diffusion_steps, seed=1)
    denoised = run.trace.stack("denoised")                                # [S, 2]
    assert denoised[0].all() and not denoised.all()
    index, image = (int(v) for v in np.argwhere(~denoised)[0])
    step = index + 1                                                      # 1-based, as the view counts
    made = max(i + 1 for i in range(step) if denoised[i, image])
    caption = studio._caption(run, image, step)
    assert f"did not run for this image: the prediction is the one of step {made}." in caption
    # an image already complete at a step: it was skipped because nothing was left, not by chance
    masked = np.stack([(st.tokens == run.trace.mask_id).reshape(2, -1).sum(1) for st in run.trace.steps])   # [S, 2]
    done_i, done_image = (int(v) for v in np.argwhere((masked == 0) & ~denoised)[0])
    assert "Every cell was already unmasked, so the denoiser did not run" in studio._caption(run, done_image, done_i + 1)
    assert "No cell was chosen" not in studio._caption(run, done_image, done_i + 1)
    t, N = run.trace.steps[index].t, studio.pipe("tiny").num_diffusion_steps   # t says what it means: t/N masked
    assert f"diffusion time t = {t:.1f} of {N}: the denoiser expects about {t / N:.0%} of the cells masked" in caption
    had = int(masked[index - 1, image]) if index else 49                   # what this image's input had masked
    assert f"this image's input had {had} of 49)" in caption
    assert f"each masked cell is chosen with probability 1/{N - index}" in caption   # (all N steps: N - index left)
    assert "did not run" not in studio._caption(run, image, made)
    assert np.array_equal(studio._frame(run, image, step)[1], studio._frame(run, image, made)[1])


def test_a_picked_models_sampler_settings_come_without_loading_it(tmp_path, make_tiny_models, monkeypatch):
    """The model dropdown sets the sliders from the checkpoint's config at once: loading the model
    (seconds) would leave a Generate clicked meanwhile with the previous model's settings."""
    from test_app import make_checkpoints

    from spiking_diffusion import SpikingDiffusionPipeline
    from spiking_diffusion.checkpoint import update_metadata

    folder = make_checkpoints(tmp_path, make_tiny_models)
    update_metadata(folder / "tiny", info={"temperature": 1.0, "temperature_end": 0.6, "corrector_steps": 20})
    st = S.Studio(folder, max_batch=8)
    try:
        def no_loading(*a, **k):
            raise AssertionError("sampling_defaults loaded the model")
        monkeypatch.setattr(SpikingDiffusionPipeline, "from_pretrained", no_loading)
        assert st.sampling_defaults("tiny") == (1.0, 0.6, 1.0, 20, 5, 0.5, 0.0)
        assert st.sampling_defaults("no such model") == (0.65, 0.65, 1.0, 0, 5, 0.5, 0.0)   # the paper's
    finally:
        st.close()


def test_every_temperature_a_checkpoint_may_record_fits_the_sliders(tmp_path, make_tiny_models):
    """A checkpoint may record any temperature the sampler accepts; a slider narrower than that would
    start out of its own range, and the model's own settings would be refused until moved."""
    import gradio as gr
    from test_app import make_checkpoints

    from demo.ui import build_demo
    from spiking_diffusion.checkpoint import update_metadata
    from spiking_diffusion.sampling import MAX_TEMPERATURE, MIN_TEMPERATURE

    folder = make_checkpoints(tmp_path, make_tiny_models)
    for value in (MAX_TEMPERATURE, MIN_TEMPERATURE):
        update_metadata(folder / "tiny", info={"temperature": value, "temperature_end": value,
                                               "corrector_steps": 2, "corrector_temperature": value})
        st = S.Studio(folder, max_batch=8)
        try:
            sliders = {b.elem_id: b for b in build_demo(st).blocks.values() if isinstance(b, gr.Slider)}
            for name in ("temperature", "temperature-end", "corrector-temperature"):
                assert sliders[name].minimum <= sliders[name].value == value <= sliders[name].maximum, (name, value)
        finally:
            st.close()


def test_where_a_code_is_used_is_a_share_of_each_sources_images(tmp_path, make_tiny_models):
    """10,000 test images and 16 generated ones on one scale: as shares of each source's images, not counts."""
    from test_app import make_checkpoints

    st = S.Studio(make_checkpoints(tmp_path, make_tiny_models), max_batch=8)
    try:
        pipe = st.pipe("tiny")
        P, K = pipe.latent_size ** 2, pipe.codebook_size
        usage = {}
        for name, n in (("test", 10000), ("generated", 16)):
            counts = np.zeros((P, K), int)                                   # [positions, K]: n images each
            counts[:, 0], counts[0, 0], counts[0, 3] = n, n // 2, n // 2
            usage[name] = counts
        _, fig = st.code("tiny", usage, 3)
        test, generated = (np.asarray(d.z) for d in fig.data)
        assert test[0, 0] == generated[0, 0] == 0.5 and test.sum() == generated.sum() == 0.5
    finally:
        st.close()


def test_model_info_shows_figures_to_four_digits_under_a_header(tmp_path, make_tiny_models):
    from test_app import make_checkpoints

    from spiking_diffusion.checkpoint import update_metadata

    folder = make_checkpoints(tmp_path, make_tiny_models)
    update_metadata(folder / "tiny", metrics={"fd": 16.83312345678, "precision": 0.8512345678,
                                              "classifier_fd": 16.83312345678, "eval_settings": {"num_samples": 300}})
    st = S.Studio(folder, max_batch=8)
    try:
        md = st.model_info("tiny")
        assert "| setting | value |" in md and "| metric: fd | 16.83 |" in md and "| metric: precision | 0.8512 |" in md
        # above the table, the model in a few lines; the folder's name only (no server path)
        pipe, s = st.pipe("tiny"), st.pipe("tiny").sampling_defaults
        assert (f"- **VQ-SVAE** (its spiking neurons run T = {pipe.vqsvae.cfg.time_steps} time steps; the Spikes tab's "
                f"trains): {pipe.architecture['vqsvae']}.") in md
        assert f"its own neurons run T = {pipe.denoiser.cfg.time_steps} time steps per diffusion step" in md
        assert f"- **Sampler** (the Generate tab's defaults): temperature {s.temperature:g}" in md
        assert "- **Measured** on 300 samples" in md and "Fréchet distance 16.8." in md
        assert md.index("- **Data**") < md.index("| setting |") and str(folder) not in md
        data = st.pipe("tiny").info.get("dataset")
        assert f"- **Data**: {S.TITLES[data]}," in md                 # the data set's name, not its loader's
    finally:
        st.close()


def test_model_info_of_a_vqsvae_only_checkpoint(tmp_path, make_tiny_models):
    """Its own run's epochs are the VQ-SVAE's (not a prior's), and it says it cannot generate."""
    from spiking_diffusion.checkpoint import save_checkpoint

    vq, _ = make_tiny_models(seed=1)
    save_checkpoint(tmp_path / "vq", vq, None, info={"dataset": "synthetic", "epochs": 2.5})
    st = S.Studio(tmp_path, max_batch=8)
    try:
        md = st.model_info("vq")
        assert "- **Trained**: VQ-SVAE 2.5 epochs." in md and "prior" not in md.split("<details>")[0]
        assert "- **No denoiser**" in md and "- **Sampler**" not in md
    finally:
        st.close()


def test_a_click_opens_a_sample_of_a_finished_grid_only(studio):
    from demo import media

    streamed = list(studio.generate("tiny", 4, 6, 0.65, 3))
    run = streamed[-1][2]
    assert isinstance(run, G.Run) and all(item[2] == S.gr.skip() for item in streamed[:-1])   # the session keeps its run
    shown = S.gr.Image(format="png")                                   # what the page sends back: a PNG round trip
    grid = shown.preprocess(shown.postprocess(media.tile(run.images)))  # 2 x 2 images of 28 px, 3x, 2 px gaps
    x, y = 2 + 84 + 2 + 10, 2 + 10                                     # inside image 1
    assert studio.image_at(run, x, y, grid=grid) == 1 == studio.image_at(run, x, y)
    preview = streamed[0][0]                                           # what the grid shows mid-run
    assert studio.image_at(run, x, y, grid=preview) is None
    assert studio.image_at(run, 1, 1, grid=grid) is None               # a gap


def test_export_takes_plays_gif_when_played(studio):
    run = run_of(studio, n=1, steps=3)
    played = Path(studio.animation(run, 0))
    gif, mp4 = map(Path, studio.export(run, 0))
    assert gif != played and gif.read_bytes() == played.read_bytes() and mp4.stat().st_size > 0


def test_animation_frames_name_the_run(studio, monkeypatch):
    """Play's and Export's frames say which model, seed and image made them (a shared GIF says it too)."""
    from demo import frames

    run, credits, draw = run_of(studio, n=2, steps=3, seed=7), [], frames.animation_frame
    monkeypatch.setattr(frames, "animation_frame", lambda *a, **k: credits.append(k.get("credit")) or draw(*a, **k))
    studio.export(run, 1)
    assert credits == ["tiny · seed 7 · image 1"] * 3


def test_views_name_the_model_that_made_the_samples(studio):
    """After a model switch the views keep the last samples: each says whose they are."""
    *_, (grid, status, run) = list(studio.generate("tiny", 2, 6, 0.65, 0, corrector_steps=3))
    assert "done: 2 images, 6 steps + 3 corrector rounds" in status and status.endswith("(model <b>tiny</b>, seed 0)</span></div>")
    assert studio.unmask(run, 1, 4, 24)[3].startswith("Model **tiny**, image 1: Step **4/9**")
    assert studio.shown_frame(run) == (1, 4)                       # where a refused value puts the sliders back
    assert studio.shown_frame(None) == (0, studio.facts().num_steps)         # no run: the sliders' first values
    other = studio.samples_note("other", run)
    assert "<b>tiny</b>'s" in other and "Generate</b> for <b>other</b>'s" in other
    same = studio.samples_note("tiny", run)                      # back on the run's model: its done line again
    assert 'data-state="done"' in same and "done: 2 images, 6 steps + 3 corrector rounds" in same
    assert studio.samples_note("tiny", None) == f"<span>{S.START_HINT}</span>"   # nothing generated: the first hint
    running = studio._status(3, 9, 0.5, steps=6)                    # a generation streaming: its line stays
    assert 'data-state="running"' in running and studio.samples_note("other", None, running) == S.gr.skip()
    assert studio.samples_note("other", run, studio._done_status(run)) == other   # a finished one's: replaced
    assert "no finished samples are kept" in studio.generation_failed(None)
    assert "(tiny's) are still in" in studio.generation_failed(run)
    # a session's generation that made a newer run than the one a note is about: the note is stale
    assert studio.samples_note("other", run, session="s1") == other               # no run of s1's yet: kept
    studio.generation_asked("s1")
    with pytest.raises(Exception):                                                 # a generation that fails
        list(studio.generate("nope", 1, 2, 0.65, 0, session="s1"))
    assert studio.samples_note("other", run, session="s1") == other               # made nothing: the note stays
    *_, (_, _, newer) = list(studio.generate("tiny", 1, 2, 0.65, 0, session="s1"))
    assert studio.samples_note("other", run, session="s1") == S.gr.skip()          # a newer run: dropped
    assert studio.samples_note("other", None, session="s1") == S.gr.skip()
    assert studio.samples_note("other", run, session="s2") == other               # another session's run: kept
    assert "<b>tiny</b>'s" in studio.samples_note("other", newer, session="s1")   # about the newest run: kept
    # the new model loads for seconds while the note is made, and a generation ends meanwhile
    def generation_meanwhile(model):
        studio.generation_asked("s1")                                              # a Generate press
        list(studio.generate("tiny", 1, 2, 0.65, 0, session="s1"))
        return ""
    slow, studio._slow_note = studio._slow_note, generation_meanwhile
    try:
        assert studio.samples_note("other", newer, session="s1") == S.gr.skip()
    finally:
        studio._slow_note = slow


def test_a_corrector_caption_counts_the_cells_changed_since_the_unmasking(studio):
    run = run_of(studio, n=2, steps=6, rounds=3)
    ended, last = run.trace.steps[5].tokens[0], run.trace.steps[8].tokens[0]
    moved = int((ended != last).sum())
    assert f"the corrector has changed **{moved}** of the 49 cells the unmasking left at step 6" in studio._caption(run, 0, 9)


def test_refused_generate_settings_are_named_before_anything_runs(studio):
    with pytest.raises(S.gr.Error, match="Number of images"):
        studio.check_generate("tiny", 2.5, 6, 0.65, 0)
    with pytest.raises(S.gr.Error, match="Seed must be a whole number in 0..2147483647; got -1"):
        studio.check_generate("tiny", 2, 6, 0.65, -1)
    with pytest.raises(S.gr.Error, match=r"Corrector rounds must be an integer in 0..100; got 101"):
        studio.check_generate("tiny", 2, 6, 0.65, 0, corrector_steps=101)   # the label the form shows
    pipe, n, s, seed, sampling = studio.check_generate("tiny", 2, 6, 0.65, 7, corrector_steps=2)
    assert (n, s, seed, sampling.corrector_steps) == (2, 6, 7, 2)
    with pytest.raises(S.gr.Error, match=r"Cells per corrector round must be an integer in 1..49; got 50"):
        studio.check_generate("tiny", 2, 6, 0.65, 0, corrector_cells=50)       # bounded by the 7x7 grid
    with pytest.raises(S.gr.Error) as refused:                               # every refused box named at once
        studio.check_generate("tiny", 999, 2.5, 0.65, -5, top_p=0)
    said = str(refused.value)
    for part in ("Number of images must be a whole number in 1..", "Steps must be a whole number in 1..",
                 "Seed must be a whole number in 0..2147483647; got -5", "Top-p"):
        assert part in said, (part, said)
    with pytest.raises(S.gr.Error, match="Generate some images first"):
        studio.check_spikes(None, 0, 0)


def test_a_model_without_a_denoiser_is_refused_before_generating(tmp_path, make_tiny_models):
    from spiking_diffusion.checkpoint import save_checkpoint

    vq, _ = make_tiny_models(seed=1)
    save_checkpoint(tmp_path / "vq-only", vq, None, info={"dataset": "synthetic"})
    st = S.Studio(tmp_path, max_batch=8)
    try:
        with pytest.raises(S.gr.Error, match="vq-only has no denoiser"):
            st.check_generate("vq-only", 2, 6, 0.65, 0)
    finally:
        st.close()


def test_energies_read_in_the_unit_that_fits():
    from demo.studio import _energy

    assert [_energy(v) for v in (840.2, 207_538, 1.21e6)] == ["840 µJ", "207.5 mJ", "1.21 J"]


def test_a_slow_page_gets_the_newest_status_with_the_newest_picture():
    """Several updates waiting (a slow page): one is streamed, the newest status line, and the grid the
    newest picture among them, even when the newest update (a corrector round) has none."""
    import queue

    updates = queue.Queue()
    for item in [(3, "picture of step 4", 0.1), (6, "picture of step 7", 0.2), (50, None, 0.3), (51, None, 0.4)]:
        updates.put(item)
    threading.Timer(0.3, updates.put, args=(None,)).start()
    assert list(S._newest(updates)) == [(51, "picture of step 7", 0.4)]
