"""The pipeline's public API: input checks, checkpoints (round trip and every kind of damage), spikes."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spiking_diffusion import CheckpointError, SamplerConfig, SettingError, SpikingDiffusionError, SpikingDiffusionPipeline
from spiking_diffusion.checkpoint import CODE_USAGE_NAME, CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, save_checkpoint, update_metadata
from spiking_diffusion.data import load_images

torch.set_num_threads(1)


def _images(n: int, channels: int = 1) -> torch.Tensor:
    return load_images("synthetic", limit=n).floats().expand(-1, channels, -1, -1).contiguous()


# --- bad input ---------------------------------------------------------------------------------------
BAD_CALLS = [
    ("encode wrong shape", lambda p: p.encode(torch.rand(2, 1, 27, 28)), r"\[N, 1, 28, 28\]"),
    ("encode 3-d", lambda p: p.encode(torch.rand(1, 28, 28)), r"\[N, 1, 28, 28\]"),
    ("encode wrong channels", lambda p: p.encode(torch.rand(2, 3, 28, 28)), r"\[N, 1, 28, 28\]"),
    ("encode ints", lambda p: p.encode(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)), "floats"),
    ("encode out of range", lambda p: p.encode(torch.full((1, 1, 28, 28), 2.0)), r"\[0, 1\]"),
    ("encode nan", lambda p: p.encode(torch.full((1, 1, 28, 28), float("nan"))), "finite"),
    ("decode wrong shape", lambda p: p.decode(torch.zeros(2, 8, 8, dtype=torch.long)), r"\[N, 7, 7\]"),
    ("decode too large", lambda p: p.decode(torch.full((1, 7, 7), 32)), "0..31"),
    ("decode negative", lambda p: p.decode(torch.full((1, 7, 7), -1)), "0..31"),
    ("decode floats", lambda p: p.decode(torch.zeros(1, 7, 7)), "integers"),
    ("decode numpy floats", lambda p: p.decode(np.zeros((1, 7, 7))), "integers"),
    ("temperature 0", lambda p: p(num_images=1, steps=2, temperature=0.0), "temperature"),
    ("temperature < 0", lambda p: p(num_images=1, steps=2, temperature=-1.0), "temperature"),
    ("temperature nan", lambda p: p(num_images=1, steps=2, temperature=float("nan")), "temperature"),
    ("temperature inf", lambda p: p(num_images=1, steps=2, temperature=float("inf")), "temperature"),
    ("temperature str", lambda p: p(num_images=1, steps=2, temperature="hot"), "temperature"),
    ("temperature_end 0", lambda p: p(num_images=1, steps=2, temperature_end=0.0), "temperature_end"),
    ("temperature_end nan", lambda p: p(num_images=1, steps=2, temperature_end=float("nan")), "temperature_end"),
    ("top_p 0", lambda p: p(num_images=1, steps=2, top_p=0.0), "top_p"),
    ("top_p > 1", lambda p: p(num_images=1, steps=2, top_p=1.5), "top_p"),
    ("corrector steps < 0", lambda p: p(num_images=1, steps=2, corrector_steps=-1), "corrector_steps"),
    ("corrector steps float", lambda p: p(num_images=1, steps=2, corrector_steps=2.5), "corrector_steps"),
    ("corrector cells 0", lambda p: p(num_images=1, steps=2, corrector_steps=1, corrector_cells=0), r"corrector_cells .* 1\.\.49"),
    ("corrector temperature 0", lambda p: p(num_images=1, steps=2, corrector_temperature=0.0), "corrector_temperature"),
    ("steps 0", lambda p: p(num_images=1, steps=0), r"steps must be an integer in 1\.\.49"),
    ("steps 50", lambda p: p(num_images=1, steps=50), r"steps must be an integer in 1\.\.49"),
    ("steps float", lambda p: p(num_images=1, steps=2.5), "steps"),
    ("num_images 0", lambda p: p(num_images=0, steps=2), "num_images"),
    ("num_images huge", lambda p: p(num_images=10 ** 6, steps=2), "num_images"),
    ("order", lambda p: p(num_images=1, steps=2, order="raster"), "order"),
    ("logits t count", lambda p: p.denoiser_logits(torch.zeros(2, 7, 7, dtype=torch.long), [1.0]), r"one number or one time per image \(2\)"),
    ("logits t 0-d bad", lambda p: p.denoiser_logits(torch.zeros(2, 7, 7, dtype=torch.long), 0.0), r"t must lie in 0 < t <= 49"),
    ("spikes t count", lambda p: p.denoiser_spikes(torch.zeros(2, 7, 7, dtype=torch.long), [1.0]), "one time per image"),
    ("logits t > N", lambda p: p.denoiser_logits(torch.zeros(1, 7, 7, dtype=torch.long), [50.0]), r"t must lie in 0 < t <= 49"),
    ("logits t = 0", lambda p: p.denoiser_logits(torch.zeros(1, 7, 7, dtype=torch.long), [0.0]), r"t must lie in 0 < t <= 49"),
    ("spikes t nan", lambda p: p.denoiser_spikes(torch.zeros(1, 7, 7, dtype=torch.long), [float("nan")]), r"t must lie in 0 < t <= 49"),
    ("logits t text", lambda p: p.denoiser_logits(torch.zeros(1, 7, 7, dtype=torch.long), ["soon"]), "t must be numbers"),
    ("sampler type", lambda p: p(num_images=1, steps=2, sampler={"temperature": 1.0}),
     r"sampler must be a SamplerConfig \(e\.g\. SamplerConfig\(temperature=1\.0\) or SamplerConfig\.paper\(\)\) or None; got dict"),
    ("encode a file name", lambda p: p.encode("digit.png"), r"got a file \('digit\.png'\): pipe\.prepare_image\(path\)"),
    ("encode channels last", lambda p: p.encode(torch.rand(2, 28, 28, 1)), r"channels last, as pipe\(\) returns them: "
     r"spiking_diffusion\.images\.to_float converts"),
    ("decode the mask id", lambda p: p.decode(torch.full((1, 7, 7), p.codebook_size)),
     r"is the mask id: decode\(tokens, allow_mask=True\) takes it"),
    ("decode_trace image", lambda p: p.decode_trace(p(num_images=2, steps=2, trace=True).trace, image=5),
     r"image must be a whole number in 0\.\.1 \(the trace's images\); got 5"),
    ("spikes neither", lambda p: p.spikes(), "either"),
    ("spikes both", lambda p: p.spikes(images=_images(1), tokens=torch.zeros(1, 7, 7, dtype=torch.long)), "either"),
]


@pytest.mark.parametrize("name,call,message", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_raises_clear_error(tiny_pipeline, name, call, message):
    with pytest.raises(SpikingDiffusionError, match=message) as info:
        call(tiny_pipeline)
    text = str(info.value)
    assert "\n" not in text and len(text) < 300


def test_mask_id_only_with_allow_mask(tiny_pipeline):
    K = tiny_pipeline.codebook_size
    tokens = torch.randint(0, K, (2, 7, 7))
    tokens[:, :3] = tiny_pipeline.mask_id
    with pytest.raises(SpikingDiffusionError, match="token ids"):
        tiny_pipeline.decode(tokens)
    images = tiny_pipeline.decode(tokens, allow_mask=True)
    assert images.shape == (2, 1, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1
    # masked positions decode from zero vectors: a mask differs from any single code
    assert not torch.equal(images, tiny_pipeline.decode(tokens.clamp(max=K - 1)))
    # and a grid with no mask decodes the same either way
    clean = torch.randint(0, K, (2, 7, 7))
    assert torch.equal(tiny_pipeline.decode(clean), tiny_pipeline.decode(clean, allow_mask=True))


def test_generation_needs_a_denoiser(tiny_checkpoint, tmp_path):
    vq, _, _ = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "vq", vq, None, {"stage": "vqsvae"})
    pipe = SpikingDiffusionPipeline.from_pretrained(tmp_path / "vq")
    assert pipe.denoiser is None
    assert pipe.encode(_images(2)).shape == (2, 7, 7)           # the VQ-SVAE alone still works
    with pytest.raises(SpikingDiffusionError, match="train-prior"):
        pipe(num_images=1, steps=2)


# --- public calls: shapes, resets, determinism ------------------------------------------------------
def test_pipeline_calls_reset_neurons_and_repeat(tiny_pipeline, unreset_neurons):
    p = tiny_pipeline
    x = _images(3)
    tokens = p.encode(x)
    r1, r2 = p.spikes(images=x, membrane=True), p.spikes(images=x, membrane=True)
    assert not unreset_neurons(p.vqsvae)
    T, D = p.vqsvae.cfg.time_steps, p.vqsvae.cfg.code_dim
    assert r1.encoder.shape == (T, 3, D, 7, 7) and r1.asg.shape == (T, 3, D, 7, 7)
    assert np.array_equal(r1.tokens, tokens.numpy())
    assert np.array_equal(r1.encoder, r2.encoder) and np.array_equal(r1.asg, r2.asg)
    assert set(r1.spikes) == set(r2.spikes) and len(r1.spikes) == 6
    assert all(np.array_equal(r1.spikes[k], r2.spikes[k]) for k in r1.spikes)
    assert set(r1.membrane) == set(r1.spikes)
    assert all(0 <= v <= 1 for v in r1.firing_rates.values()) and max(r1.firing_rates.values()) > 0
    # recording spikes does not change outputs
    assert torch.equal(p.decode(tokens), p.decode(tokens))
    assert np.array_equal(p.spikes(tokens=tokens).asg, r1.asg)
    assert p.spikes(tokens=tokens).encoder is None

    logits = p.denoiser_logits(tokens, [10.0, 20.0, 49.0])
    assert logits.shape == (3, p.codebook_size, 7, 7)
    # one number is every image's time: the same as the list, for a float, an int and a 0-d tensor
    for same in (20.0, 20, torch.tensor(20.0)):
        assert torch.equal(p.denoiser_logits(tokens, same), p.denoiser_logits(tokens, [20.0] * 3))
    assert not torch.equal(p.denoiser_logits(tokens, 20.0), p.denoiser_logits(tokens, 10.0))
    assert torch.equal(logits, p.denoiser_logits(tokens, [10.0, 20.0, 49.0]))
    rates = p.denoiser_spikes(tokens, [10.0, 20.0, 49.0])
    assert len(rates) == 5 and rates == p.denoiser_spikes(tokens, [10.0, 20.0, 49.0])
    out = p(num_images=2, steps=5, seed=0, trace=True)
    assert not unreset_neurons(p.vqsvae) and not unreset_neurons(p.denoiser)
    committed, predicted = p.decode_trace(out.trace, image=1)
    assert committed.shape == predicted.shape == (5, 28, 28, 1) and committed.dtype == np.uint8
    assert np.array_equal(committed[-1], out.images[1])            # the last committed view is the image
    assert not unreset_neurons(p.vqsvae) and not unreset_neurons(p.denoiser)


def test_three_channel_pipeline(make_tiny_models):
    vq, den = make_tiny_models(in_channels=3)
    pipe = SpikingDiffusionPipeline(vq, den)
    out = pipe(num_images=2, steps=3, seed=0)
    assert out.images.shape == (2, 28, 28, 3) and out.images.dtype == np.uint8
    assert pipe.image_channels == 3
    with pytest.raises(SpikingDiffusionError, match=r"\[N, 3, 28, 28\]"):
        pipe.encode(torch.rand(1, 1, 28, 28))


def test_concurrent_calls_match_sequential(tiny_pipeline):
    seq = [tiny_pipeline(num_images=2, steps=4, seed=s).tokens for s in range(3)]
    got: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda s=s: got.__setitem__(s, tiny_pipeline(num_images=2, steps=4, seed=s).tokens))
               for s in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(np.array_equal(got[s], seq[s]) for s in range(3))


# --- checkpoints -------------------------------------------------------------------------------------
def test_save_load_round_trip(tiny_pipeline, tmp_path):
    p = tiny_pipeline
    out = p.save_pretrained(tmp_path / "copy", info={"note": "x"}, metrics={"is": 2.0})
    q = SpikingDiffusionPipeline.from_pretrained(out)
    assert q.info == {**p.info, "note": "x"} and q.metrics == {**p.metrics, "is": 2.0}
    assert q.info["dataset"] == "synthetic" and q.metrics["fid"] == 123.0
    assert q.vqsvae.cfg == p.vqsvae.cfg and q.denoiser.cfg == p.denoiser.cfg
    for a, b in ((p.vqsvae, q.vqsvae), (p.denoiser, q.denoiser)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = _images(3)
    assert torch.equal(p.encode(x), q.encode(x))
    a, b = p(num_images=3, steps=6, seed=4), q(num_images=3, steps=6, seed=4)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.images, b.images)
    # saving over an existing checkpoint replaces it
    q.save_pretrained(out, info={"note": "y"})
    assert SpikingDiffusionPipeline.from_pretrained(out).info["note"] == "y"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_saved_files_are_as_readable_as_any_file_the_user_makes(tiny_pipeline, tmp_path, umask, mode):
    """safetensors writes through a private (0600) temporary file: a saved checkpoint's weights were
    unreadable to the user's group while config.json was not. Every file gets what open() gives,
    under the umask of the moment."""
    import os
    import stat

    old = os.umask(umask)
    try:
        out = tiny_pipeline.save_pretrained(tmp_path / "shared")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        assert stat.S_IMODE(plain.stat().st_mode) == mode
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            assert stat.S_IMODE((out / name).stat().st_mode) == mode, name
    finally:
        os.umask(old)


@pytest.mark.parametrize("bad", [{"temperature": 0}, {"top_p": 1.5}, {"corrector_cells": 500},
                                 {"corrector_steps": -1}, {"temperature_end": "hot"}])
def test_save_pretrained_refuses_sampling_settings_pipe_cannot_use(tiny_pipeline, tmp_path, bad):
    name = next(iter(bad))
    with pytest.raises(SpikingDiffusionError, match=f"nothing was written: {name} must be"):
        tiny_pipeline.save_pretrained(tmp_path / "bad", info=bad)
    assert not (tmp_path / "bad").exists()
    good = tiny_pipeline.save_pretrained(tmp_path / "good", info={"temperature": 0.9, "corrector_cells": 49})
    assert SpikingDiffusionPipeline.from_pretrained(good).sampling_defaults.corrector_cells == 49


def test_update_metadata_merges(tiny_checkpoint, tmp_path):
    path = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    assert SpikingDiffusionPipeline.from_pretrained(path).sampling_defaults.to_dict() == {   # nothing chosen: the paper's
        "temperature": 0.65, "temperature_end": None, "top_p": 1.0, "corrector_steps": 0, "corrector_cells": 5,
        "corrector_temperature": 0.5, "guidance": 0.0}
    chosen = {"temperature": 0.5, "temperature_end": 0.25, "top_p": 0.9, "corrector_steps": 7, "corrector_cells": 3,
              "corrector_temperature": 0.4, "guidance": 0.0}
    update_metadata(path, info=chosen, metrics={"precision": 0.8})
    update_metadata(path, metrics={"recall": 0.6})
    p = SpikingDiffusionPipeline.from_pretrained(path)
    assert p.info["dataset"] == "synthetic" and p.info["temperature"] == 0.5
    assert p.metrics == {"fid": 123.0, "precision": 0.8, "recall": 0.6}
    assert p.sampling_defaults.to_dict() == chosen
    assert SpikingDiffusionPipeline.read_sampling_defaults(path).to_dict() == chosen   # without loading it
    out = p(num_images=2, steps=4, seed=1, trace=True)     # no sampler arguments: the checkpoint's settings
    assert len(out.trace) == 4 + 7 and np.array_equal(out.trace.steps[-1].tokens, out.tokens)
    assert not [f for f in path.iterdir() if f.name.startswith(".")]   # no temporary files left


def test_call_without_sampler_arguments_uses_the_checkpoints_settings(tiny_checkpoint, tmp_path):
    """pipe() samples with the settings stored for the checkpoint, not the paper's; the paper's
    sampler is sampler=SamplerConfig.paper(); an argument replaces one setting of them."""
    path = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    chosen = SamplerConfig(temperature=1.5, temperature_end=0.3, top_p=0.8, corrector_steps=3, corrector_cells=2,
                           corrector_temperature=0.3)
    update_metadata(path, info=chosen.to_dict())
    p = SpikingDiffusionPipeline.from_pretrained(path)
    run = lambda **k: p(num_images=4, steps=6, seed=2, trace=True, **k)
    default = run()
    assert len(default.trace) == 6 + 3                                    # the stored corrector rounds ran
    assert np.array_equal(default.tokens, run(sampler=chosen).tokens)
    paper = run(sampler=SamplerConfig.paper())
    assert len(paper.trace) == 6 and not np.array_equal(default.tokens, paper.tokens)
    # one argument replaces one setting (a temperature alone is constant); the rest stay the checkpoint's
    hot = run(temperature=1.5)
    assert np.array_equal(hot.tokens, run(sampler=replace(chosen, temperature_end=None)).tokens)
    assert np.array_equal(run(sampler=SamplerConfig.paper(), temperature=1.5).tokens,
                          run(sampler=SamplerConfig(temperature=1.5)).tokens)
    with pytest.raises(SpikingDiffusionError, match="SamplerConfig"):
        run(sampler={"temperature": 1.0})


def test_the_time_scale_is_the_denoisers(make_tiny_models, tmp_path):
    """DenoiserConfig.num_diffusion_steps (N, saved in config.json) sets the sampler's time scale."""
    from spiking_diffusion import SpikingDenoiser

    vq, den = make_tiny_models()
    den25 = SpikingDenoiser(replace(den.cfg, num_diffusion_steps=25))
    den25.load_state_dict(den.state_dict())
    save_checkpoint(tmp_path / "n25", vq, den25.eval())
    p = SpikingDiffusionPipeline.from_pretrained(tmp_path / "n25")
    assert p.num_diffusion_steps == 25 and p.denoiser.cfg.num_diffusion_steps == 25
    assert p(num_images=2, seed=0, trace=True).trace.steps[0].t == 25    # all N steps by default, from t = N
    with pytest.raises(SpikingDiffusionError, match=r"steps must be an integer in 1\.\.25"):
        p(num_images=1, steps=26)
    assert SpikingDiffusionPipeline(vq).num_diffusion_steps == 49           # no denoiser: the grid's cells


def _damage(path, how: str):
    cfg, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if how == "garbage weights":
        weights.write_bytes(b"\x00\x13garbage" * 100)
    elif how == "truncated weights":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "empty weights":
        weights.write_bytes(b"")
    elif how == "missing weights":
        weights.unlink()
    elif how == "missing config":
        cfg.unlink()
    elif how == "invalid json":
        cfg.write_text("{not json")
    elif how == "not our format":
        cfg.write_text(json.dumps({"format": "other"}))
    elif how == "shape mismatch":
        c = json.loads(cfg.read_text())
        c["vqsvae"]["code_dim"] = 4                       # the weights hold 8-dim codes
        cfg.write_text(json.dumps(c))
    elif how == "codebook mismatch":
        c = json.loads(cfg.read_text())
        c["denoiser"]["codebook_size"] = 64
        cfg.write_text(json.dumps(c))
    elif how == "unknown config field":
        c = json.loads(cfg.read_text())
        c["vqsvae"]["bogus"] = 1
        cfg.write_text(json.dumps(c))
    elif how == "weights of another save":            # a save cut off between its two renames
        vq, den, _ = load_checkpoint(path)
        save_checkpoint(path.with_name("resaved"), vq, den)
        shutil.copyfile(path.with_name("resaved") / WEIGHTS_NAME, weights)
    elif how == "missing tensors":
        c = json.loads(cfg.read_text())
        c["denoiser"]["input_mode"] = "embedding"        # needs embedding tables the file lacks
        cfg.write_text(json.dumps(c))
    else:
        raise AssertionError(how)


DAMAGES = ["garbage weights", "truncated weights", "empty weights", "missing weights", "missing config",
           "invalid json", "not our format", "shape mismatch", "codebook mismatch", "unknown config field",
           "missing tensors", "weights of another save"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_checkpoint_raises_checkpoint_error(tiny_checkpoint, tmp_path, how):
    path = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    _damage(path, how)
    with pytest.raises(CheckpointError) as info:
        SpikingDiffusionPipeline.from_pretrained(path)
    assert str(path) in str(info.value) or path.name in str(info.value)


def test_config_and_weights_must_come_from_one_save(tiny_checkpoint, tmp_path):
    path = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    update_metadata(path, info={"note": "kept"})                       # a metadata update keeps the pair whole
    assert SpikingDiffusionPipeline.from_pretrained(path).config["info"]["note"] == "kept"
    _damage(path, "weights of another save")
    with pytest.raises(CheckpointError, match="come from different saves"):
        load_checkpoint(path)
    c = json.loads((path / CONFIG_NAME).read_text())
    del c["save_id"]            # an old config (before save ids) beside new weights: a save cut off too
    (path / CONFIG_NAME).write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="come from different saves"):
        load_checkpoint(path)
    vq, den, _ = load_checkpoint(tiny_checkpoint)                     # neither file has an id: loads
    save_file({f"vqsvae.{k}": v for k, v in vq.state_dict().items()} |
              {f"denoiser.{k}": v for k, v in den.state_dict().items()}, str(path / WEIGHTS_NAME))
    load_checkpoint(path)
    c["save_id"] = "0" * 32                                    # a new config beside weights without an id
    (path / CONFIG_NAME).write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="model.safetensors has none"):
        load_checkpoint(path)
    from spiking_diffusion.hub import push_to_hub
    with pytest.raises(CheckpointError, match="different saves"):               # never uploaded
        push_to_hub(path, "someone/model")


def test_save_pretrained_keeps_the_code_usage_of_its_own_tokens_only(tiny_checkpoint, tmp_path):
    path = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    (path / CODE_USAGE_NAME).write_text('{"split": "test"}')
    SpikingDiffusionPipeline.from_pretrained(path).save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / CODE_USAGE_NAME).read_text() == '{"split": "test"}'
    pipe = SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint)               # no usage recorded
    pipe.save_pretrained(tmp_path / "copy")                                         # over the other model
    assert not (tmp_path / "copy" / CODE_USAGE_NAME).exists()


def test_a_prior_must_fit_its_vqsvae(tiny_checkpoint, tmp_path):
    path = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    c = json.loads((path / CONFIG_NAME).read_text())
    c["vqsvae"]["image_size"] = 32                  # an 8x8 grid under a prior trained on 7x7 tokens
    (path / CONFIG_NAME).write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="latent grid is 7 but its VQ-SVAE's is 8"):
        load_checkpoint(path)
    vq, den, _ = load_checkpoint(tiny_checkpoint)
    with pytest.raises(SettingError, match="codebook size K is 16 but its VQ-SVAE's is 32"):
        SpikingDiffusionPipeline(vq, type(den)(replace(den.cfg, codebook_size=16)))


def test_missing_checkpoint_dir(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        SpikingDiffusionPipeline.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError):
        SpikingDiffusionPipeline.from_pretrained(tmp_path / "file")


def test_save_to_unwritable_place_raises(tiny_pipeline):
    with pytest.raises(CheckpointError):
        tiny_pipeline.save_pretrained("/proc/no/such/place")


@pytest.mark.parametrize("bad", [1.9, -1, "abc", 2**70, True, None])
def test_a_bad_seed_is_refused_not_rounded(tiny_pipeline, bad):
    """seed=1.9 gave seed 1's images, "abc" and 2**70 raised torch's own errors: each is a SettingError
    naming the accepted range now."""
    with pytest.raises(SettingError, match=r"seed must be an integer in 0\.\.9223372036854775807"):
        tiny_pipeline(1, steps=2, seed=bad)
