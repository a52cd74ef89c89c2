"""Every studio endpoint through gradio_client, against a launched app on a tiny random checkpoint."""
import os
import re

for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)

import socket

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

TABS = ["Generate", "Unmasking", "Spikes", "Codebook", "Encode & reconstruct", "Learn"]   # the studio's views
ENDPOINTS = {"/model_info", "/random_seed", "/generate", "/unmask", "/animate", "/export", "/spikes", "/codebook", "/code",
             "/encode", "/encode_sketch", "/lif", "/coding", "/psp", "/quantizer", "/energy"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_checkpoints(root, make_models, dataset="mnist"):
    """A tiny random checkpoint (its neurons do fire: see conftest's build_tiny_models) in ``root/tiny``."""
    from spiking_diffusion import SpikingDiffusionPipeline

    vq, den = make_models(seed=1)
    SpikingDiffusionPipeline(vq, den).save_pretrained(root / "tiny", info={"dataset": dataset, "note": "random weights, for tests"})
    return root


def make_test_set(root, n=40):
    """A fake MNIST in torchvision's raw layout (idx files), n random images per split."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        imgs = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        head = b"".join(v.to_bytes(4, "big") for v in (2051, n, 28, 28))
        (raw / f"{split}-images-idx3-ubyte").write_bytes(head + imgs.tobytes())
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{split}-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.tobytes())
    return root


def launch(tmp, **extra):
    import app

    args = app.parse_args(["--checkpoints", str(tmp / "ck"), "--port", str(free_port()), "--max-batch", "8",
                           "--max-upload", "200kb", "--data", str(tmp / "data")])
    for k, v in extra.items():
        setattr(args, k, v)
    demo = app.make_app(args)
    kw = app.launch_kwargs(args)
    _, url, _ = demo.launch(**kw, prevent_thread_lock=True, quiet=True, inbrowser=False)
    return demo, url


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_tiny_models):
    tmp = tmp_path_factory.mktemp("studio")
    make_checkpoints(tmp / "ck", make_tiny_models)
    make_test_set(tmp / "data")
    demo, url = launch(tmp)
    yield url, tmp, demo
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False, analytics_enabled=False)


@pytest.fixture(scope="module")
def generated(client):
    job = client.submit("tiny", 4, 10, 0.65, 7, api_name="/generate")
    final = job.result()
    return job.outputs(), final


def test_every_endpoint_is_listed(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert ENDPOINTS <= set(endpoints)
    # /generate's parameters keep Studio.generate's names (keyword callers use them), not the wrapper's
    assert [p["parameter_name"] for p in endpoints["/generate"]["parameters"]] == [
        "model", "num_images", "steps", "temperature", "seed", "temperature_end", "top_p", "corrector_steps",
        "corrector_cells", "corrector_temperature", "guidance"]


def test_model_info_and_seed(client):
    md = client.predict("tiny", api_name="/model_info")
    assert "codebook size K | 32" in md and "mnist" in md
    assert "| vqsvae | not the paper's: 4 time steps (paper: 16)" in md  # which parts are the paper's
    seeds = {client.predict(api_name="/random_seed") for _ in range(3)}
    assert all(isinstance(s, (int, float)) and 0 <= s < 2**31 for s in seeds) and len(seeds) > 1


def test_the_running_status_counts_as_its_bar_does():
    """With corrector rounds the bar counts them too: the line gives that count beside the phase's."""
    from demo.studio import Studio
    assert "corrector round 3/60 (52/109 in all) &middot;" in Studio._status(52, 109, 3.0, steps=49)
    assert "unmasking step 47/49 (47/109 in all)" in Studio._status(47, 109, 3.0, steps=49)
    assert "unmasking step 47/49 &middot;" in Studio._status(47, 49, 3.0, steps=49)          # no rounds: one count


def test_generate_streams_then_finishes(generated):
    outputs, final = generated
    assert len(outputs) >= 2  # at least one streamed step before the final result
    assert 'data-state="running"' in outputs[0][1]
    assert 'data-state="done"' in final[1] and "4 images, 10 steps" in final[1]
    img = np.asarray(Image.open(final[0]))
    assert img.ndim == 3 and img.shape[0] > 56


def test_generate_uses_the_sampling_settings(server):
    """End temperature and top-p reach the sampler: the same images as the pipeline with them."""
    from spiking_diffusion import SpikingDiffusionPipeline
    from demo import media

    client = Client(server[0], verbose=False, analytics_enabled=False)   # its own session: keeps the shared run
    pipe = SpikingDiffusionPipeline.from_pretrained(server[1] / "ck" / "tiny")
    grid, status = client.predict("tiny", 3, 6, 1.5, 11, 0.3, 0.5, 4, 2, 0.4, api_name="/generate")
    assert "3 images, 6 steps + 4 corrector rounds" in status
    want = media.tile(pipe(3, 6, 1.5, 11, temperature_end=0.3, top_p=0.5, corrector_steps=4, corrector_cells=2,
                           corrector_temperature=0.4).images)
    other = media.tile(pipe(3, 6, 1.5, 11).images)
    got = np.asarray(Image.open(grid))
    assert got.shape == want.shape and np.array_equal(got.reshape(want.shape), want)
    assert not np.array_equal(want, other)                             # the settings do change the images
    *_, caption, _, axis = client.predict(0, 8, 24, api_name="/unmask")  # frames 7..10: the corrector rounds
    assert "Step **8/10**, corrector round 2/4" in caption and "**2 cells** re-masked" in caption
    assert 'data-unmask="6" data-correct="4"' in axis and "unmasking 1-6" in axis and "corrector 7-10" in axis
    for cell in range(49):                                                # a cell corrected once: "at step 9"
        note = client.predict(0, 10, cell, api_name="/unmask")[4]
        if "sampled again in 1 corrector round," in note:
            assert re.search(r"sampled again in 1 corrector round, at step (7|8|9|10)\.", note), note
            break
    else:
        raise AssertionError("no cell was corrected exactly once")
    md, _ = client.predict(api_name="/energy")                          # corrector calls are counted
    assert "3 images, 6 steps + 4 corrector rounds" in md
    assert "one denoiser call, an unmasking step (T = 2)" in md and "one decoding (T = 4)" in md   # each part's own T
    assert "one denoiser call, a corrector round (2 cells masked)" in md and "(corrector rounds)" in md
    calls = int(md.split("->")[1].split("denoiser calls")[0])
    assert 3 * 6 < calls <= 3 * (6 + 4)                                  # more than the 6 unmasking steps can give


def test_unmask_steps(client, generated):
    grid, committed, predicted, caption, cell, axis = client.predict(1, 3, 10, api_name="/unmask")
    assert "Step **3/10**, unmasking step 3/10" in caption
    assert Image.open(committed).size == (224, 224) and Image.open(predicted).size == (224, 224)
    assert "### row 1, col 3" in cell and 'data-unmask="10" data-correct="0" data-step="3"' in axis
    g = np.asarray(Image.open(grid).convert("RGB"))
    assert g.shape[0] > 7 * 32 and g.shape[1] > 7 * 32                       # 7x7 cells of 32 px and margins
    *_, caption, _, _ = client.predict(1, 10, 10, api_name="/unmask")
    assert "**0** still masked" in caption


def test_unmask_outlines_the_selected_cells_patch(client, generated):
    """The decoded images carry a blue box exactly around the selected cell's 4x4-pixel patch (x8)."""
    from demo.frames import SELECTED

    _, committed, *_ = client.predict(0, 10, 2 * 7 + 5, api_name="/unmask")   # row 2, col 5
    img = np.asarray(Image.open(committed).convert("RGB"))
    blue = np.all(img == SELECTED, axis=2)
    ys, xs = np.nonzero(blue)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2 * 32, 3 * 32 - 1, 5 * 32, 6 * 32 - 1)


def test_animate_plays_every_step_as_a_gif(client, generated):
    gif = client.predict(2, api_name="/animate")
    im = Image.open(gif)
    assert gif.endswith(".gif") and im.n_frames == 10 and im.info["duration"] == 100   # 10 frames per second
    im.seek(im.n_frames - 1)
    assert im.info["duration"] > 100                                          # the last frame is held


def test_export_gif_and_mp4(client, generated):
    gif, mp4 = client.predict(0, api_name="/export")
    # named after the run (model tiny, seed 7, image 0): a link still shown under a later run says whose it is
    assert os.path.basename(gif) == "unmasking-tiny-seed7-image0.gif" and mp4.endswith("unmasking-tiny-seed7-image0.mp4")
    assert Image.open(gif).n_frames >= 10 and os.path.getsize(mp4) > 1000
    played = Image.open(client.predict(0, api_name="/animate"))
    assert Image.open(gif).size == played.size                              # the frames Play shows, labelled


def test_spikes(client, generated):
    *figs, note = client.predict(0, 24, api_name="/spikes")
    assert len(figs) == 6 and all(f["type"] == "plotly" for f in figs)
    assert "row 3, col 3" in note


def test_codebook_and_code(client, generated):
    bars, heat, stats, atlas, *_ = client.predict("tiny", api_name="/codebook")
    assert "test set (40 images)" in stats and "generated (4 images)" in stats and "perplexity" in stats
    assert Image.open(atlas).size[0] > 16 * 28
    img, where = client.predict("tiny", 3, api_name="/code")
    assert Image.open(img).size == (224, 224) and where["type"] == "plotly"


def test_codebook_uses_recorded_test_usage_without_data(tmp_path, make_tiny_models):
    """No --data: the Codebook view shows the usage `evaluate --record` saved, else says it is not available."""
    from demo.studio import Studio
    from spiking_diffusion import metrics as M
    from spiking_diffusion.evaluate import write_code_usage

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    _, _, stats, _, usage, _ = Studio(ck).codebook("tiny", None)
    assert "not available" in stats and "--record" in stats and list(usage) == ["generated (64 images, seed 0)"]
    write_code_usage(ck / "tiny", "mnist", np.zeros((2, 7, 7), int), 16)
    assert "not available" in Studio(ck).codebook("tiny", None)[2]          # another codebook size: ignored
    toks = np.random.default_rng(0).integers(0, 32, (5, 7, 7))
    write_code_usage(ck / "tiny", "mnist", toks, 32)
    _, _, stats, _, usage, _ = Studio(ck).codebook("tiny", None)
    label = "test set (5 images, recorded by evaluate)"
    assert f"| {label} | {len(np.unique(toks))}/32 |" in stats and "not available" not in stats
    assert usage[label].tolist() == M.code_counts(toks, 32).tolist()
    # the Code slider: a used code stays; a dead (or no) code moves to the most used one that draws something
    studio = Studio(ck)
    studio._sample_usage = lambda model: (64, np.zeros((49, 32), int))   # no generated usage: the recorded one alone
    write_code_usage(ck / "tiny", "mnist", toks % 20, 32)             # codes 20..31 dead
    total = M.code_counts(toks % 20, 32).sum(0)
    first, second = np.argsort(-total, kind="stable")[:2]                 # ties in index order, as argmax
    atlas = np.zeros((32, 28, 28, 1), np.uint8)
    atlas[:, 10:18] = 255                                             # every code draws a stroke ...
    atlas[first] = 0                                                  # ... but the most used one: background
    studio._atlas = lambda model: atlas
    for asked, shown in [(5, 5), (25, second), (None, second)]:
        assert studio.codebook("tiny", None, asked)[-1]["value"] == shown
    # the sentence on generated images leaving codes unused: said when the table shows it, not otherwise
    with_dead = np.zeros((49, 32), int)
    with_dead[0, :12] = 1                                             # 20 dead codes (the test set: 12)
    for generated, said in ((with_dead, True), (np.ones((49, 32), int), False)):
        studio._sample_usage = lambda model, g=generated: (64, g)
        assert ("leave 8 more codes unused" in studio.codebook("tiny", None)[2]) == said


def test_spikes_tab_opening_without_samples_says_what_to_do(tmp_path, make_tiny_models):
    """Opening Spikes before generating (or after the run was cleared) shows a note, not an error."""
    from demo.studio import Studio

    studio = Studio(make_checkpoints(tmp_path / "ck", make_tiny_models))
    *figs, note = studio.spikes_on_open(None, 0, 24)
    assert figs == [None] * 6 and "Generate images" in note
    *_, last = studio.generate("tiny", 2, 4, 1.0, 0)
    run = last[-1]
    studio.runs.discard(run)
    *figs, note = studio.spikes_on_open(run, 0, 24)
    assert figs == [None] * 6 and "cleared to free memory" in note


def test_the_spikes_note_says_whose_samples_they_are_after_a_model_switch(tmp_path, make_tiny_models):
    """The Spikes view draws the last generation's samples: with another model selected, its note says
    whose they are and how to get the selected model's (as Generate's status does), and switching
    back takes that line away again."""
    import shutil

    from demo.studio import Studio

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    shutil.copytree(ck / "tiny", ck / "tiny-b")
    studio = Studio(ck)
    *_, last = studio.generate("tiny", 2, 4, 1.0, 0)
    run = last[-1]
    *figs, note = studio.spikes(run, 0, 24)
    assert "Model **tiny**" in note and studio.whose_spikes("tiny", run, note) == note
    other = studio.whose_spikes("tiny-b", run, note)
    assert other == f"{note}\n\nThese spikes are <b>tiny</b>'s; press <b>Generate</b> for <b>tiny-b</b>'s."
    assert studio.whose_spikes("tiny-b", run, other) == other                     # said once
    assert studio.whose_spikes("tiny", run, other) == note                        # back: the line goes
    for empty_view in ("", None):                                                 # nothing drawn: nothing said
        assert studio.whose_spikes("tiny-b", run, empty_view) == {"__type__": "update"}   # gr.skip()
    # a switch while the generation ran: its done line stays, and says whose samples these are
    done = last[1]
    assert "model <b>tiny</b>" in done and studio.done_for_another("tiny", run, done) == {"__type__": "update"}
    assert studio.done_for_another("tiny-b", run, done) == (
        f"{done} <span>These samples are <b>tiny</b>'s; press <b>Generate</b> for <b>tiny-b</b>'s.</span>")


def test_encode_any_picture(client, tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 50, 3), dtype=np.uint8)).save(path)
    shown, tokens, recon, enc, asg, note = client.predict("tiny", handle_file(str(path)), "auto", api_name="/encode")
    assert "read 50x90 colour;" in note and "scaled into 20x20" in note
    assert note.startswith("Input (`rgb.png`, model tiny): ")                      # which picture, which model
    assert Image.open(recon).size == (224, 224) and tokens["type"] == "plotly"


def test_a_refused_first_upload_keeps_the_encode_hint():
    """Refused before anything was encoded: the note says why and still says what to do (not "the
    views still show the picture before it": they show nothing), however many uploads are refused."""
    from demo.ui import ENCODE_HINT, REFUSED_UPLOAD, SWITCH_FAILED, _refused_upload_note

    first = _refused_upload_note(ENCODE_HINT, "Upload: could not use the uploaded image x.png: broken")
    assert first == f"{REFUSED_UPLOAD}: could not use the uploaded image x.png: broken.\n\n{ENCODE_HINT}"
    again = _refused_upload_note(first, "Upload: y.png: broken")
    assert again.startswith(f"{REFUSED_UPLOAD}: y.png: broken.") and again.count(ENCODE_HINT) == 1
    assert "picture before it" in _refused_upload_note("Input (upload, model m): read 28x28.", "z")
    emptied = _refused_upload_note(f"{SWITCH_FAILED}: the model did not load.", "Upload: z.png: broken")   # views empty
    assert emptied == f"{REFUSED_UPLOAD}: z.png: broken.\n\n{ENCODE_HINT}"


def test_encode_sketch(client, tmp_path):
    path = tmp_path / "sketch.png"
    a = np.zeros((280, 280, 4), np.uint8)
    a[100:180, 130:150] = 255
    Image.fromarray(a).save(path)
    sketch = {"background": None, "layers": [], "composite": handle_file(str(path))}
    *_, note = client.predict("tiny", sketch, "auto", api_name="/encode_sketch")
    assert "read 280x280" in note and "transparent areas made black" in note
    assert note.startswith("Input (your drawing, model tiny): ")


@pytest.mark.parametrize("call,match", [
    (("tiny", 0, 10, 0.65, 0, "/generate"), r"Number of images must be a whole number in 1\.\.8; got 0"),
    (("tiny", 9, 10, 0.65, 0, "/generate"), r"Number of images .* 1\.\.8; got 9"),           # more than --max-batch
    (("tiny", 2, 50, 0.65, 0, "/generate"), r"Steps must be a whole number in 1\.\.49; got 50"),
    (("tiny", 2, 10, 0.0, 0, "/generate"), r"Temperature must be a number in 0\.001\.\.5; got 0\.0"),
    (("tiny", 2, 10, 0.65, 0, 0.65, 0.0, "/generate"), "Top-p must be"),    # top-p 0
    (("tiny", 2, 10, 0.65, 0, 9.0, 1.0, "/generate"), "Temperature at the last step must be"),  # off the slider
    (("tiny", 2, 10, 0.65, 0, 0.65, 1.0, 5, 0, 0.5, "/generate"), "Cells per corrector round must be"),
    (("tiny", 2.5, 10, 0.65, 0, "/generate"), "whole number"),
    (("tiny", "2", 10, 0.65, 0, "/generate"), "Number of images must be a whole number in 1..8; got '2'"),
    # a whole number past 2**53: the browser rounds a typed one, so it is echoed rounded
    (("tiny", 2, 10, 0.65, 10 ** 20, "/generate"), r"Seed must be a whole number in 0\.\.\d+; got about 1e\+20$"),
    (("tiny", 2, 10, 0.65, 10 ** 400, "/generate"), r"Seed must be a whole number in 0\.\.\d+; got a 401-digit number$"),
    (("tiny", 2, 10, 1e300, 0, "/generate"), r"Temperature must be a number in 0\.001\.\.5; got 1e\+300$"),
    (("tiny", 2, None, 0.65, 0, "/generate"), "Steps is empty: enter a whole number in 1..49"),
    (("tiny", 2, 10, [0.5], 0, "/generate"), r"Temperature must be a number in 0\.001\.\.5; got \[0\.5\]"),
    (("nope", 2, 10, 0.65, 0, "/generate"), "Model .* must be one of 'tiny'; got 'nope'"),
    ((1.0, 1.0, 0.5, "hard", 40, "/lif"), r"Time constant tau must be a number in 1\.\.20; got 0\.5"),
    ((1.0, 1.0, 2.0, "sideways", 40, "/lif"), "Reset must be one of 'hard', 'soft'; got 'sideways'"),
    ((1.5, 16, 0, "/coding"), r"Pixel value must be a number in 0\.\.1; got 1\.5"),
    (("tiny", None, "auto", "/encode"), "no image"),
    (("tiny", "picture.png", "auto", "/encode"), r"Upload must be an image file"),
    (("tiny", 99, "/code"), "Code must|code must"),
])
def test_bad_inputs_get_clear_messages(client, call, match):
    *args, api = call
    with pytest.raises(Exception, match=match):
        client.predict(*args, api_name=api)


def test_the_number_checks_refuse_numbers_past_the_doubles_by_name():
    """A whole number too large for a float is refused as out of range (it raised OverflowError)."""
    from demo.checks import check_float, check_int
    from demo.media import InputError

    with pytest.raises(InputError, match=r"^Code must be a whole number in 0\.\.127; got a 401-digit number$"):
        check_int(10 ** 400, "Code", 0, 127)
    with pytest.raises(InputError, match=r"^Rate must be a number in 0\.\.1; got about 1e\+20$"):
        check_float(10 ** 20, "Rate", 0, 1)
    assert check_int(np.int64(7), "Code", 0, 127) == 7


GENERIC = "has not enabled verbose error reporting"   # Gradio's message when a component's own code fails


def valid_args(tmp) -> dict:
    """A valid call of every named endpoint with parameters (a run is needed for some)."""
    png = tmp / "ok.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    sketch = {"background": None, "layers": [], "composite": handle_file(str(png))}
    return {"/model_info": ["tiny"], "/generate": ["tiny", 2, 4, 0.65, 0, 0.65, 1.0, 0, 5, 0.5],
            "/unmask": [0, 1, 24], "/export": [0], "/spikes": [0, 24], "/codebook": ["tiny"], "/code": ["tiny", 3],
            "/encode": ["tiny", handle_file(str(png)), "auto"], "/encode_sketch": ["tiny", sketch, "auto"],
            "/lif": [1.5, 1.0, 2.0, "hard", 40], "/coding": [0.7, 16, 0], "/psp": [0.3, 2, 32, 0],
            "/quantizer": [0.4, 0.5, 16, 0]}


def bad_values(tmp) -> list:
    """Strings, None, lists, dicts, NaN-free numbers far out of range and a broken file."""
    bad = tmp / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return ["abc", None, [1, 2], {"a": 1}, 1e12, -1e12, handle_file(str(bad))]


def unclear_answers(client, tmp, every: int = 1) -> tuple[int, list[str]]:
    """Call every named endpoint with each parameter in turn replaced by a bad value (every
    ``every``-th pair of parameter and value, cycling); (calls, the unclear ones). An answer is
    unclear if it is Gradio's generic error, or names neither the control nor the problem."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    bads, calls, unclear, k = bad_values(tmp), 0, [], 0
    for name, args in valid_args(tmp).items():
        labels = [p["label"] for p in api[name]["parameters"]]
        for i in range(len(args)):
            for value in bads:
                k += 1
                if k % every:
                    continue
                call = list(args)
                call[i] = value
                calls += 1
                try:
                    client.predict(*call, api_name=name)
                    msg = "accepted"
                except Exception as e:
                    msg = str(e)
                if GENERIC in msg or not (labels[i] in msg or "no image given" in msg):
                    unclear.append(f"{name} {labels[i]}={value!r}: {msg[:200]}")
    return calls, unclear


def test_every_endpoint_answers_bad_values_clearly(client, generated, tmp_path):
    """Each parameter of each endpoint, given bad values (a sample here; benchmarks/fuzz_api.py sends all)."""
    calls, unclear = unclear_answers(client, tmp_path, every=3)
    assert calls > 90 and unclear == []


def test_corrupt_and_huge_uploads(client, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(Exception, match="could not read the uploaded image bad.png: .*accepted: PNG, JPEG") as e:
        client.predict("tiny", handle_file(str(bad)), "auto", api_name="/encode")
    assert "/" not in str(e.value).split("bad.png")[0].split("image ")[-1] and "gradio" not in str(e.value)  # no server path
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(Exception, match=r"could not read the uploaded image empty.png: the file is empty \(0 bytes\)"):
        client.predict("tiny", handle_file(str(empty)), "auto", api_name="/encode")
    huge = tmp_path / "huge.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(huge)
    with pytest.raises(Exception):  # over --max-upload 200kb: refused at upload
        client.predict("tiny", handle_file(str(huge)), "auto", api_name="/encode")


def test_views_needing_a_run_say_so(server):
    fresh = Client(server[0], verbose=False, analytics_enabled=False)
    for args, api in [((0, 1, 0), "/unmask"), ((0,), "/export"), ((0, 0), "/spikes")]:
        with pytest.raises(Exception, match="Generate some images first"):
            fresh.predict(*args, api_name=api)
    note, fig = fresh.predict(api_name="/energy")       # its only trigger is a button: a note, no error badges
    assert note.startswith("**No samples yet.** Generate images") and fig is None


def test_learn_endpoints(client, generated):
    fig, note = client.predict(1.5, 1.0, 2.0, "hard", 40, api_name="/lif")
    assert fig["type"] == "plotly" and "spikes in 40 steps" in note and "off for the first 4 steps" in note
    assert "the current is on from the first step" in client.predict(1.5, 1.0, 2.0, "hard", 9, api_name="/lif")[1]
    assert "Rate coding spikes with probability 0.70" in client.predict(0.7, 16, 0, api_name="/coding")[1]
    assert client.predict(0.3, 2, 32, 0, api_name="/psp")["type"] == "plotly"
    assert "z = (1 - 0.50)" in client.predict(0.4, 0.5, 16, 0, api_name="/quantizer")[1]
    md, fig = client.predict(api_name="/energy")
    assert "4 images, 10 steps" in md and "µJ" in md


def test_still_serving_after_errors(client):
    assert "codebook size" in client.predict("tiny", api_name="/model_info")


def test_no_checkpoints_and_no_share_by_default(tmp_path):
    import app

    assert app.parse_args([]).share is False and app.parse_args([]).host == "127.0.0.1"
    (tmp_path / "ck").mkdir()
    (tmp_path / "data").mkdir()
    demo, url = launch(tmp_path)
    try:
        c = Client(url, verbose=False, analytics_enabled=False)
        with pytest.raises(Exception):
            c.predict(None, api_name="/model_info")
    finally:
        demo.close()


def test_the_terminal_names_the_apps_share_flag_not_gradios(tmp_path):
    """`python app.py` says where it serves and how to get a public link in this app's words (--share):
    Gradio's own startup line tells the user to edit launch(share=True), which they cannot."""
    import subprocess
    import sys
    import threading

    (tmp_path / "ck").mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--checkpoints", str(tmp_path / "ck"), "--port", str(port)],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = threading.Timer(90, proc.kill)   # a studio that never says so fails the test, not hangs it
    deadline.start()
    try:
        lines = []
        for line in proc.stdout:       # until the studio says it serves (or the process ends)
            lines.append(line)
            if "Studio running on" in line:
                break
        out = "".join(lines)
        assert f"Studio running on http://127.0.0.1:{port}" in out and "python app.py --share" in out, out
        assert "share=True" not in out, out
    finally:
        deadline.cancel()
        proc.terminate()
        proc.wait(timeout=30)


def test_every_studio_option_is_documented():
    """Each `python app.py` flag (and its environment variable) is named in docs/studio.md and in
    app.py's own docstring: --queue-size was in --help only."""
    import re

    import app

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "studio.md"), encoding="utf-8").read()
    source = open(os.path.join(root, "app.py"), encoding="utf-8").read()
    flags = sorted(set(re.findall(r'p\.add_argument\("(--[a-z-]+)"', source)))
    envs = sorted(set(re.findall(r'env\("(SD_[A-Z_]+)"', source)))
    assert len(flags) >= 12 and len(envs) >= 11
    for name in flags + envs:
        assert name in doc, f"{name} is not in docs/studio.md"
        assert name in app.__doc__, f"{name} is not in app.py's docstring"


def test_the_startup_line_says_what_became_of_a_public_link():
    import app

    url = "http://127.0.0.1:7860/"
    assert "a public link: python app.py --share" in app.startup_message(url, False, None)
    said = app.startup_message(url, True, "https://x.gradio.live")
    assert "publicly" in said and "--share" not in said
    assert "could not be made" in app.startup_message(url, True, None)


@pytest.mark.parametrize("argv, words", [
    (["--max-batch", "0"], "--max-batch: must be a whole number >= 1; got '0'"),
    (["--concurrency", "-1"], "--concurrency: must be a whole number >= 1"),
    (["--run-ttl", "nan"], "--run-ttl: must be a number >= 1"),
    (["--port", "http"], "--port: must be a whole number >= 0; got 'http'")])
def test_bad_studio_options_are_refused_with_a_message(argv, words, capsys):
    import app

    with pytest.raises(SystemExit):
        app.parse_args(argv)
    assert words in capsys.readouterr().err


def test_a_bad_environment_setting_is_refused_like_a_flag(monkeypatch, capsys):
    import app

    monkeypatch.setenv("SD_MAX_BATCH", "lots")
    with pytest.raises(SystemExit):
        app.parse_args([])
    assert "--max-batch: must be a whole number >= 1; got 'lots'" in capsys.readouterr().err


def test_a_studio_of_one_image_a_generation_builds(tmp_path, make_tiny_models):
    """--max-batch 1: the sliders over one value hide (Gradio refused building them: maximum == minimum)."""
    import gradio as gr

    from demo.studio import Studio
    from demo.ui import build_demo

    st = Studio(make_checkpoints(tmp_path / "ck", make_tiny_models), max_batch=1)
    try:
        sliders = {b.elem_id: b for b in build_demo(st).blocks.values() if isinstance(b, gr.Slider)}
        assert sliders["num-images"].value == 1 and not sliders["num-images"].visible
        assert not sliders["image-index"].visible and sliders["steps"].visible
    finally:
        st.close()


def test_model_info_names_the_models_sharing_its_vqsvae(tmp_path, make_tiny_models):
    """Two priors on one VQ-SVAE show the same code usage; each model's info says they share it (a
    student took it for a copy-paste bug), and a model with other VQ-SVAE weights is not named."""
    import json
    import shutil

    from demo.studio import Studio
    from spiking_diffusion import SpikingDiffusionPipeline

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    vq, den = make_tiny_models(seed=1)
    _, other_den = make_tiny_models(seed=2)
    SpikingDiffusionPipeline(vq, other_den).save_pretrained(ck / "tiny-prior-b", info={"dataset": "mnist"})
    other_vq, _ = make_tiny_models(seed=3)
    SpikingDiffusionPipeline(other_vq, den).save_pretrained(ck / "tiny-vq-b", info={"dataset": "mnist"})
    shutil.copytree(ck / "tiny", ck / "broken")
    (ck / "broken" / "model.safetensors").write_bytes(b"not weights")
    shutil.copytree(ck / "tiny", ck / "tiny-t8")           # the same weights run for 8 time steps: other tokens
    cfg = json.loads((ck / "tiny-t8" / "config.json").read_text())
    cfg["vqsvae"]["time_steps"] = 8
    (ck / "tiny-t8" / "config.json").write_text(json.dumps(cfg))
    st = Studio(ck, max_batch=8)
    try:
        assert "**Shares its VQ-SVAE** with tiny-prior-b:" in st.model_info("tiny")
        assert "**Shares its VQ-SVAE** with tiny:" in st.model_info("tiny-prior-b")
        assert "Shares its VQ-SVAE" not in st.model_info("tiny-vq-b")
    finally:
        st.close()


def test_studio_reads_grid_steps_and_neuron_constants_from_the_model(tmp_path, make_tiny_models):
    """The layout's grid size, step count and the Learn view's membrane decay come from the checkpoint."""
    import json

    from demo.studio import Studio
    from spiking_diffusion import teaching

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    cfg_path = ck / "tiny" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["vqsvae"]["membrane_decay"], cfg["vqsvae"]["psp_tau"] = 0.5, 3.0
    cfg_path.write_text(json.dumps(cfg))
    studio = Studio(ck)
    facts = studio.facts()
    assert (facts.latent_size, facts.num_steps) == (cfg["vqsvae"]["image_size"] // 4, cfg["denoiser"]["num_diffusion_steps"])
    assert (facts.membrane_decay, facts.psp_tau) == (0.5, 3.0)
    from demo.ui import build_demo

    quantizer = next(f.fn for f in build_demo(studio).fns.values() if f.api_name == "quantizer")   # the Learn view's
    _, note = quantizer(0.4, 0.5, 16, 0)
    want = teaching.dual_code(teaching.rate_code(0.4, 16, 0), 0.5, 0.5)
    assert f"M(s) = {want['membrane']:.3f}" in note and want["membrane"] != teaching.dual_code(teaching.rate_code(0.4, 16, 0), 0.5)["membrane"]


def test_model_info_warns_of_a_model_much_slower_than_the_default(tmp_path, make_tiny_models):
    """A model whose generation does over twice the default's denoiser work says so, with the ratio,
    in its info and on the status line when it is chosen (here the same denoiser, whose stored sampler adds corrector rounds: more calls per image)."""
    import json
    import shutil

    from demo.studio import START_HINT, Studio
    from spiking_diffusion.evaluation.energy import expected_denoiser_calls

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    shutil.copytree(ck / "tiny", ck / "mnist")                        # the default model, by its name
    cfg = json.loads((ck / "tiny" / "config.json").read_text())
    den = cfg["denoiser"]
    calls = expected_denoiser_calls(den["num_diffusion_steps"], den["latent_size"] ** 2)   # the default's per image
    for rounds, said in ((round(2.5 * calls), f"about {1 + round(2.5 * calls) / calls:.1f}x the denoiser work"),
                         (round(calls / 2), None)):                        # 1.5x: not worth a warning
        cfg["info"]["corrector_steps"] = rounds
        (ck / "tiny" / "config.json").write_text(json.dumps(cfg))
        studio = Studio(ck)
        assert studio.default_model == "mnist" and "Slower" not in studio.model_info("mnist")
        info = studio.model_info("tiny")
        assert (said in info and "of the default model (mnist" in info) if said else "Slower" not in info
        note = studio.samples_note("tiny", None)            # switched to, before any generation: the status line
        assert "Press <b>Generate</b>" in note                   # the first hint stays
        assert (said in note and "longer in proportion" in note) if said else "denoiser work" not in note
        if said:                                            # said at once without the cost (loading takes seconds)
            assert studio.samples_note("tiny", None, cost=False) == f"<span>{START_HINT}</span>"
        assert "denoiser work" not in studio.samples_note("mnist", None)  # back on the default: the note goes


def test_model_info_sets_the_default_models_figures_beside_another_of_its_data_set(tmp_path, make_tiny_models):
    """Another model's info adds a line with the default model's measured figures and sample count
    (214 reads as poor beside 16.7), only for a model of the default's data set: two data sets'
    figures do not compare."""
    from demo.studio import Studio
    from spiking_diffusion import SpikingDiffusionPipeline

    vq, den = make_tiny_models(seed=1)
    pipe = SpikingDiffusionPipeline(vq, den)
    for name, dataset, fd, n in (("mnist", "kmnist", 16.7, 2000), ("slow", "kmnist", 214.3, 1000),
                                 ("clothes", "fashion-mnist", 36.6, 2000)):
        pipe.save_pretrained(tmp_path / name, info={"dataset": dataset}, metrics={
            "classifier_fd": fd, "classifier_precision": 0.8, "eval_settings": {"num_samples": n}})
    studio = Studio(tmp_path)
    assert studio.default_model == "mnist"
    slow = studio.model_info("slow")
    assert "on 1000 samples by the offline classifier" in slow and "Fréchet distance 214, precision 0.8." in slow
    assert "- **The default model** (mnist) on 2000 samples: Fréchet distance 16.7, precision 0.8." in slow
    assert "The default model" not in studio.model_info("mnist")                  # the default itself
    assert "The default model" not in studio.model_info("clothes")                # another data set


def test_codebook_generates_fewer_stand_in_images_for_a_slower_model(tmp_path, make_tiny_models, monkeypatch):
    """With no generation of the user's, the Codebook generates 64 images of a model as fast as the
    default, and fewer, in proportion to its work (at least 16), for a slower one: mnist-paper's first
    Codebook view took over 50 s for its 64."""
    import json
    import shutil

    from demo.studio import MIN_STAND_IN, STAND_IN_IMAGES, Studio
    from spiking_diffusion import SpikingDiffusionPipeline
    from spiking_diffusion.evaluation.energy import expected_denoiser_calls

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    shutil.copytree(ck / "tiny", ck / "mnist")                        # the default model, by its name
    cfg = json.loads((ck / "tiny" / "config.json").read_text())
    calls = expected_denoiser_calls(cfg["denoiser"]["num_diffusion_steps"], cfg["denoiser"]["latent_size"] ** 2)
    made, real = [], SpikingDiffusionPipeline.__call__                # the images each generation makes
    monkeypatch.setattr(SpikingDiffusionPipeline, "__call__", lambda self, n, *a, **k: made.append(n) or real(self, n, *a, **k))
    assert 100 > 3 * calls                                            # the sampler's most rounds: over 4x the work
    for rounds, want in ((round(calls), STAND_IN_IMAGES / 2),         # about 2x the work: half the images
                         (100, MIN_STAND_IN)):                        # over 4x: never fewer than the floor
        cfg["info"]["corrector_steps"] = rounds
        (ck / "tiny" / "config.json").write_text(json.dumps(cfg))
        studio = Studio(ck)
        _, _, stats, _, usage, _ = studio.codebook("tiny", None)
        n = round(want)
        assert abs(STAND_IN_IMAGES * calls / (calls + rounds) - want) < 1 or want == MIN_STAND_IN
        assert made[-1] == n and f"generated ({n} images, seed 0)" in usage
        assert f"{n} images (fewer for a slower model) were generated" in stats
    _, _, stats, _, usage, _ = studio.codebook("mnist", None)
    assert made[-1] == STAND_IN_IMAGES and "generated (64 images, seed 0)" in usage and "fewer" not in stats


def test_a_refused_value_is_said_once_per_session():
    """One user action's events refusing one value show one toast: the same message again in the same
    session within the window is invisible (it still stops its event); another session, another
    message or a later time is shown."""
    import time

    import gradio as gr

    from demo.guards import _SaidOnce

    once, mine, theirs = _SaidOnce(window=0.3), object(), object()
    said = lambda state, text: once(state, gr.Error(text))
    assert said(mine, "Image must be ...").visible
    again = said(mine, "Image must be ...")
    assert not again.visible and again.message == "Image must be ..."                # still an error, unseen
    assert said(theirs, "Image must be ...").visible and said(mine, "Step must be ...").visible
    assert said(None, "Image must be ...").visible and said(None, "Image must be ...").visible  # no session
    time.sleep(0.2)
    assert not said(mine, "Image must be ...").visible                              # held back again ...
    time.sleep(0.2)
    assert said(mine, "Image must be ...").visible         # ... but the window counts from the toast shown


def test_corrector_frames_are_reachable_through_the_api(server):
    c = Client(server[0], verbose=False, analytics_enabled=False)
    c.predict("tiny", 1, 49, 0.65, 3, 0.65, 1.0, 3, 5, 0.5, api_name="/generate")     # 49 steps + 3 rounds
    *_, caption, _, _ = c.predict(0, 51, 24, api_name="/unmask")
    assert "Step **51/52**, corrector round 2" in caption
    with pytest.raises(Exception, match=r"Step must be a whole number in 1\.\.52; got 53"):
        c.predict(0, 53, 24, api_name="/unmask")


def test_model_jobs_share_one_concurrency_limit(server):
    demo = server[2]
    heavy = {"generate", "unmask", "animate", "export", "spikes", "codebook", "code", "encode", "encode_sketch", "energy"}
    ids = {fn.api_name: fn.concurrency_id for fn in demo.fns.values() if fn.api_name in heavy}
    assert set(ids) == heavy and set(ids.values()) == {"model"}
    limits = {fn.concurrency_limit for fn in demo.fns.values() if fn.concurrency_id == "model"}
    assert limits == {"default"}                                   # the queue's --concurrency, shared


def test_a_cancelled_generation_stops(server, monkeypatch):
    import threading
    import time

    def workers():
        return sum(t.name == "sd-generate" and t.is_alive() for t in threading.enumerate())

    pipe = server[2].studio.pipe("tiny")
    fast = pipe._denoise

    def slow(*a, **k):  # >= 7 s for the 149 steps: the run cannot end by itself before it is cancelled
        time.sleep(0.05)
        return fast(*a, **k)

    monkeypatch.setattr(pipe, "_denoise", slow)
    c = Client(server[0], verbose=False, analytics_enabled=False)
    job = c.submit("tiny", 8, 49, 0.65, 5, 0.65, 1.0, 100, 5, 0.5, api_name="/generate")   # 149 steps
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    assert job.outputs() and workers() >= 1
    job.cancel()
    deadline = time.time() + 20
    while workers() and time.time() < deadline:
        time.sleep(0.05)
    assert workers() == 0 and server[2].studio.generating == 0


def test_stop_ends_only_its_own_sessions_generation(tmp_path, make_tiny_models):
    """Stop (stop_generation) ends the session's running generation within a step: its last item is the
    stopped status line and no run, its sampler thread ends; another session's generation runs on; a
    generation asked for before the Stop but still waiting in the queue ends before it starts; one asked
    for after it runs."""
    import threading
    import time

    from demo.generations import Run
    from demo.studio import Studio

    studio = Studio(make_checkpoints(tmp_path / "ck", make_tiny_models))
    settings = ("tiny", 4, 49, 0.65, 0, 0.65, 1.0, 100, 5, 0.5)        # 149 steps
    for session in "ab":
        studio.generation_asked(session)
    mine, theirs = studio.generate(*settings, session="a"), studio.generate(*settings, session="b")
    next(mine), next(theirs)                                          # both running
    studio.generation_asked("a")                                      # a second press, queued behind the first
    queued = studio.generate(*settings, session="a")
    time.sleep(0.01)
    studio.stop_generation("a")
    items = list(mine)
    assert 'data-state="stopped"' in items[-1][1] and "the grid shows the preview of step" in items[-1][1]
    assert not any(isinstance(run, Run) for *_, run in items)         # no run: the views keep the last one
    assert [item[1] for item in queued] == [Studio._stopped_status(None, 0, 0.0)]   # ended before it began
    *_, (_, done, finished) = list(theirs)                            # the other session's run finishes
    assert "done:" in done and finished.tokens.shape == (4, 7, 7)
    time.sleep(0.01)
    studio.generation_asked("a")                                      # a press after the Stop runs
    *_, (_, done, _) = list(studio.generate("tiny", 2, 4, 0.65, 0, session="a"))
    assert "done:" in done
    deadline = time.time() + 10
    while any(t.name == "sd-generate" and t.is_alive() for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.02)
    assert studio.generating == 0 and not any(t.name == "sd-generate" and t.is_alive() for t in threading.enumerate())


def test_a_new_generation_keeps_the_last_finished_run_until_it_finishes(server, monkeypatch):
    """Previews of a new generation, and its failure, leave every view on the last finished run."""
    import time

    from spiking_diffusion import SpikingDiffusionError

    c = Client(server[0], verbose=False, analytics_enabled=False)
    c.predict("tiny", 3, 6, 0.65, 1, api_name="/generate")                      # run A: 3 images, 6 steps
    pipe = server[2].studio.pipe("tiny")
    fast, calls = pipe._denoise, []

    def failing(*a, **k):  # streams a few previews, then breaks
        calls.append(1)
        time.sleep(0.05)
        if len(calls) > 8:
            raise SpikingDiffusionError("the denoiser broke")
        return fast(*a, **k)

    monkeypatch.setattr(pipe, "_denoise", failing)
    job = c.submit("tiny", 5, 20, 0.65, 2, api_name="/generate")
    with pytest.raises(Exception, match="the denoiser broke"):
        job.result()
    assert job.outputs() and 'data-state="running"' in job.outputs()[0][1]     # it did stream before failing
    *_, caption, _, axis = c.predict(2, 4, 0, api_name="/unmask")
    assert "Step **4/6**" in caption and 'data-unmask="6"' in axis               # still run A


@pytest.mark.parametrize("kind", ["cmyk jpeg, blue ink on paper", "16-bit grey", "grey+alpha, black ink",
                                  "animated gif", "exif-rotated"])
def test_uploads_of_every_kind_reach_the_model_as_their_grey_png(client, tmp_path, kind):
    from test_image_input import grey_png, kinds

    name, path, grey = next(k for k in kinds(tmp_path) if k[0] == kind)
    plain = client.predict("tiny", handle_file(str(grey_png(grey, tmp_path))), "auto", api_name="/encode")
    got = client.predict("tiny", handle_file(str(path)), "auto", api_name="/encode")
    a, b = (np.asarray(Image.open(r[0]), float) for r in (plain, got))
    assert a.max() == 255 and np.abs(a - b).mean() < 2, name          # the same model input (0..255)


def test_a_huge_picture_is_refused_from_its_header(client, tmp_path):
    from test_image_input import _png_header_only

    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(9400, 9400))                      # 0.1 kB on disk, 88 M pixels
    with pytest.raises(Exception, match="Upload: could not use the uploaded image huge.png: image is 9400x9400 pixels; at most"):
        client.predict("tiny", handle_file(str(path)), "auto", api_name="/encode")


def test_another_model_clears_the_codebook_view(server):
    """The usage shown, and the code drawn beside it, belong to one model: a model change clears them
    (with a line saying how to compute the new one's) instead of mixing two models."""
    import gradio as gr

    demo = server[2]
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    model, stats, where = by_id["model"], by_id["codebook-stats"], by_id["code-where"]
    on_change = [fn for fn in demo.fns.values() if (model._id, "change") in fn.targets]
    clears = [fn for fn in on_change if stats in fn.outputs and where in fn.outputs]
    assert len(clears) == 1
    fn = clears[0]
    out = fn.fn("tiny", None)                                   # (the model asked for; no request here)
    shown = dict(zip([b.elem_id for b in fn.outputs], out))
    assert shown["codebook-stats"] == demo.studio.CODEBOOK_EMPTY and shown["code-where"] is None
    assert shown["usage-bars"] is None and shown["atlas"] is None
    assert any(isinstance(b, gr.State) and v is None for b, v in zip(fn.outputs, out))     # the usage state


def test_the_sampling_sliders_take_the_samplers_bounds(tmp_path, make_tiny_models):
    """Each sampling slider spans what the sampler accepts, on a step grid that reaches both ends and
    the paper's 0.65: a model recording the extremes generates with its own settings."""
    from spiking_diffusion.checkpoint import update_metadata
    from spiking_diffusion.sampling import SETTINGS

    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    ends = {"temperature": 0.001, "temperature_end": 5.0, "top_p": 0.01, "corrector_steps": 100,
            "corrector_cells": 49, "corrector_temperature": 0.001}
    update_metadata(ck / "tiny", info=ends)
    make_test_set(tmp_path / "data")
    demo, url = launch(tmp_path)
    try:
        by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
        for name in ("temperature", "temperature_end", "top_p", "corrector_temperature"):
            b, setting = by_id[name.replace("_", "-")], SETTINGS[name]
            assert (b.minimum, b.maximum) == (setting.lo, setting.hi) and b.value == ends[name]
            for v in (b.minimum, b.maximum, 0.65):
                assert abs((v - b.minimum) / b.step - round((v - b.minimum) / b.step)) < 1e-6   # reachable
        c = Client(url, verbose=False, analytics_enabled=False)
        _, status = c.predict("tiny", 2, 4, ends["temperature"], 0, *[ends[k] for k in list(ends)[1:]],
                              api_name="/generate")
        assert "2 images, 4 steps + 100 corrector rounds" in status
    finally:
        demo.close()


def test_learn_sliders_and_handlers_share_their_ranges(server):
    """Each Learn slider's range is what its handler accepts: its ends pass, just outside is refused."""
    from demo import learn as L

    demo = server[2]
    sliders = [b for b in demo.blocks.values() if getattr(b, "label", None) in L.LEARN_RANGES]
    assert {b.label for b in sliders} == set(L.LEARN_RANGES)
    for b in sliders:
        assert (b.minimum, b.maximum) == L.LEARN_RANGES[b.label]
    assert "spikes in 100 steps" in L.lif(4, 3, 20, "hard", 100)[1]                        # the ends pass
    for call in (lambda: L.lif(4.01, 1, 2, "hard", 40), lambda: L.lif(1, 0.09, 2, "hard", 40),
                 lambda: L.lif(1, 1, 21, "hard", 40), lambda: L.lif(1, 1, 2, "hard", 3),
                 lambda: L.psp(0.3, 10.5, 32, 0), lambda: L.coding(0.5, 65, 0), lambda: L.quantizer(0.4, 1.01, 16, 0, 0.8),
                 lambda: L.check("psp", 0.3, 10.5, 32, 0)):
        with pytest.raises(Exception, match=r"must be a (whole )?number in .*; got"):
            call()
    L.psp(0.3, 10, 100, 0), L.coding(1, 64, 0), L.quantizer(0, 0, 1, 0, 0.8), L.check("psp", 0.3, 10, 100, 0)


def test_redraws_from_a_control_keep_the_last_value(server):
    """A view redrawn as a control moves (after its check) runs for the last value it was given: the
    default trigger mode "once" drops a redraw asked for while one runs (a slider's final position)."""
    redraws = {"unmask", "code", "lif", "coding", "psp", "quantizer"}
    modes = {f.api_name: f.trigger_mode for f in server[2].fns.values() if f.api_name in redraws}
    assert modes == dict.fromkeys(redraws, "always_last")


def test_the_tabs_hold_tabs_only(server):
    """Anything else among gr.Tabs' children (a State made after a tab's block closed) is drawn as a
    tab button: after a few clicks the tab bar repeated the clicked tab and lost another."""
    import gradio as gr

    tabs = [b for b in server[2].blocks.values() if isinstance(b, gr.Tabs)]
    assert tabs and all(isinstance(child, gr.Tab) for t in tabs for child in t.children)
    assert [c.label for c in tabs[0].children] == TABS


def test_every_picture_the_studio_shows_has_alt_text(tmp_path, make_tiny_models):
    """A screen reader reads each picture by its label (Gradio treats an image without one as decorative)."""
    import app
    ck = make_checkpoints(tmp_path / "ck", make_tiny_models)
    demo = app.make_app(app.parse_args(["--checkpoints", str(ck)]))
    images = [c["props"] for c in demo.get_config_file()["components"] if c["type"] == "image"]
    assert len(images) >= 8 and all(p["alt_text"] == p["label"] for p in images)


def test_the_encode_tab_says_the_upload_limits_the_server_runs_with(server):
    """A file over --max-upload is refused by the page before it reaches the studio (Gradio's toast only),
    so the Encode tab says the limits up front: this server's --max-upload (200kb) and the pixel cap."""
    import gradio as gr
    from spiking_diffusion.image_input import MAX_PIXELS

    said = [str(b.value) for b in server[2].blocks.values() if isinstance(b, gr.Markdown) and "Files up to" in str(b.value)]
    assert len(said) == 1 and "Files up to 200KB and 16.8 megapixels (e.g. 4096x4096)" in said[0], said
    assert MAX_PIXELS == 4096 * 4096


def test_max_upload_is_checked_when_the_studio_starts(monkeypatch, capsys):
    """--max-upload is read as Gradio reads it (a whole number and a unit); anything else is refused at
    once with the accepted form (Gradio refused it only after the models had loaded)."""
    import app
    from demo.checks import MAX_UPLOAD

    monkeypatch.delenv("SD_MAX_UPLOAD", raising=False)
    assert app.parse_args([]).max_upload == MAX_UPLOAD == "20mb"                   # a phone's photo fits by default
    assert app.parse_args(["--max-upload", " 7 MB"]).max_upload == "7mb"
    for bad in ("20", "1.5gb", "0mb", "lots"):
        with pytest.raises(SystemExit):
            app.parse_args(["--max-upload", bad])
        assert f"must be a whole number >= 1 and a unit, b, kb, mb, gb or tb (e.g. 20mb); got '{bad}'" in capsys.readouterr().err
