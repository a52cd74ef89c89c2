"""The networks: shapes, configs, neuron resets, the exact shortcuts, and that training lowers the losses."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from spiking_diffusion import PRESETS, AbsorbingDiffusion, DenoiserConfig, SpikingDenoiser, VQSVAE, VQSVAEConfig, \
    denoiser_macs, get_preset
from spiking_diffusion.data import load_images
from spiking_diffusion.spiking import lif, membrane_output, psp, repeat_over_time, reset

torch.set_num_threads(1)


def _images(n: int, channels: int = 1) -> torch.Tensor:
    return load_images("synthetic", limit=n).floats().expand(-1, channels, -1, -1).contiguous()


# --- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_vqsvae_shapes(make_tiny_models, channels):
    vq, _ = make_tiny_models(in_channels=channels)
    cfg = vq.cfg
    x = _images(5, channels)
    with torch.no_grad():
        spikes, tokens = vq.encode_with_spikes(x)
        images = vq.decode(tokens)
        trains = vq.spike_trains(tokens)
        recon = vq.reconstruct(x)
    T, D = cfg.time_steps, cfg.code_dim
    assert spikes.shape == (T, 5, D, 7, 7)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert 0 < spikes.mean() < 1                     # the fixture's model really spikes
    assert tokens.shape == (5, 7, 7) and tokens.dtype == torch.long
    assert 0 <= int(tokens.min()) and int(tokens.max()) < cfg.codebook_size
    assert torch.equal(vq.encode(x), tokens)
    assert images.shape == (5, channels, 28, 28)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert trains.shape == (T, 5, D, 7, 7)
    assert set(trains.unique().tolist()) <= {0.0, 1.0}
    assert recon.shape == x.shape
    losses = vq.losses(x)
    assert set(losses) >= {"total", "reconstruction", "codebook", "spike_train", "mse"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.allclose(losses["total"], losses["reconstruction"] + losses["codebook"] + losses["spike_train"])


def test_vqsvae_losses_need_the_data_variance():
    """A config from a preset does not know its data's variance: the loss refuses to run rather than
    divide the MSE by a made-up 1.0 (10x lighter than the paper's weighting on MNIST)."""
    from spiking_diffusion import SpikingDiffusionError

    cfg = get_preset("tiny").vqsvae
    assert cfg.data_variance is None
    x = _images(2)
    with pytest.raises(SpikingDiffusionError, match="data variance is unknown"):
        VQSVAE(cfg).losses(x)
    losses = VQSVAE(replace(cfg, data_variance=0.25)).losses(x)
    assert torch.allclose(losses["reconstruction"], losses["mse"] / 0.25)
    for bad in (0.0, -0.1, float("nan"), "0.1", True):      # True would divide the loss by 1
        with pytest.raises(SpikingDiffusionError, match="data variance must be a positive number"):
            replace(cfg, data_variance=bad)
    kept = replace(cfg, data_variance=np.float32(0.25)).data_variance  # images.var() of a numpy array
    assert type(kept) is float and kept == 0.25


@pytest.mark.parametrize("input_mode", ["index", "embedding"])
def test_denoiser_logits_shape(make_tiny_models, input_mode):
    _, den = make_tiny_models(input_mode=input_mode)
    K = den.cfg.codebook_size
    tokens = torch.randint(0, K + 1, (3, 7, 7))     # K is the mask id
    tokens[0] = K                                    # one fully masked grid
    with torch.no_grad():
        logits = den(tokens, torch.tensor([49, 10, 1]))
    assert logits.shape == (3, K, 7, 7)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert den.mask_id == K
    # the input reaches the output: a different grid gives different logits
    with torch.no_grad():
        other = den(torch.zeros_like(tokens), torch.tensor([49, 10, 1]))
    assert not torch.allclose(logits, other)


def test_denoiser_input_features(make_tiny_models):
    _, den = make_tiny_models()
    tokens = torch.randint(0, 33, (2, 7, 7))
    feats = den.input_features(tokens, torch.tensor([3.5, 49.0]))
    assert feats.shape == (2, 2, 7, 7)
    assert torch.equal(feats[:, 0], tokens.float())          # channel 0: the raw index
    assert torch.all(feats[0, 1] == 3.5) and torch.all(feats[1, 1] == 49.0)  # channel 1: t


# --- configs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip(name):
    for mode in ("index", "embedding"):
        p = get_preset(name, in_channels=3, input_mode=mode)
        for cfg, cls in ((p.vqsvae, VQSVAEConfig), (p.denoiser, DenoiserConfig)):
            assert cls.from_dict(cfg.to_dict()) == cfg
            assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg   # lists back to tuples
    assert get_preset(name, in_channels=3).vqsvae.in_channels == 3


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown"):
        VQSVAEConfig.from_dict({**VQSVAEConfig().to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="input_mode"):
        DenoiserConfig(input_mode="onehot")
    with pytest.raises(ValueError, match="5 channel counts"):
        DenoiserConfig(widths=(1, 2, 3))
    with pytest.raises(ValueError, match="preset"):
        get_preset("huge")


def test_model_config_sizes_are_kept_as_their_checked_numbers():
    """A size given as 128.0 or "128" is kept as the int 128 (it was accepted as given, and building
    the model then failed in torch.empty)."""
    for given in (128.0, "128"):
        cfg = VQSVAEConfig(codebook_size=given, time_steps=given)
        assert (cfg.codebook_size, cfg.time_steps) == (128, 128) and type(cfg.codebook_size) is int
    assert type(DenoiserConfig(num_diffusion_steps=49.0).num_diffusion_steps) is int


@pytest.mark.parametrize("cls, bad, words", [
    (VQSVAEConfig, {"time_steps": 0}, "time_steps must be an integer >= 1"),
    (VQSVAEConfig, {"psp_tau": 0}, "psp_tau must be a number > 0"),
    (VQSVAEConfig, {"codebook_size": 0}, "codebook_size must be an integer >= 1"),
    (VQSVAEConfig, {"membrane_decay": -1}, r"membrane_decay must be a number in \(0, 1\]"),
    (VQSVAEConfig, {"image_size": 30}, "image_size must be a multiple of 4"),
    (VQSVAEConfig, {"hidden_channels": (32, 0)}, "hidden_channels must hold 2 channel counts"),
    (DenoiserConfig, {"time_steps": 0}, "time_steps must be an integer >= 1"),
    (DenoiserConfig, {"codebook_size": 0}, "codebook_size must be an integer >= 1"),
    (DenoiserConfig, {"widths": (64, 128, 0, 128, 64)}, "widths must hold 5 channel counts"),
    (DenoiserConfig, {"num_diffusion_steps": 0}, "num_diffusion_steps must be an integer >= 1")])
def test_model_configs_refuse_sizes_that_cannot_run(cls, bad, words):
    """Each used to be accepted and fail later: T=0 with an IndexError deep in the model, image_size 30
    with a latent grid of 7 in the config and 8x8 tokens from the encoder."""
    from spiking_diffusion.errors import SettingError
    with pytest.raises(SettingError, match=words):
        cls(**bad)


def test_paper_preset_is_the_paper():
    p = PRESETS["paper"]
    assert (p.vqsvae.time_steps, p.vqsvae.codebook_size, p.vqsvae.code_dim) == (16, 128, 16)
    assert p.vqsvae.hidden_channels == (32, 64) and p.vqsvae.commitment_cost == 0.25
    assert p.denoiser.widths == (64, 128, 256, 512, 256) and p.denoiser.input_mode == "index"
    assert p.denoiser.num_diffusion_steps == 49


def test_compare_with_paper_names_every_difference(tmp_path):
    from spiking_diffusion.checkpoint import save_checkpoint
    from spiking_diffusion.config import compare_with_paper
    from spiking_diffusion.pipeline import SpikingDiffusionPipeline

    paper = PRESETS["paper"]
    assert compare_with_paper(replace(paper.vqsvae, in_channels=3, data_variance=0.2), paper.denoiser) == \
        {"vqsvae": "the paper's", "denoiser": "the paper's"}
    compact = get_preset("small", input_mode="embedding").denoiser
    said = compare_with_paper(paper.vqsvae, compact)
    assert said["vqsvae"] == "the paper's"
    assert said["denoiser"].startswith("not the paper's:")
    assert "4 time steps (paper: 16)" in said["denoiser"]
    assert "input a learned embedding of each token (paper: the raw token index)" in said["denoiser"]
    assert "layer widths 64-128-128-128-64 (paper: 64-128-256-512-256)" in said["denoiser"]
    # embed_dim only matters with the embedding input: the paper's raw index ignores it
    assert compare_with_paper(paper.vqsvae, replace(paper.denoiser, embed_dim=64))["denoiser"] == "the paper's"
    embedded = replace(paper.denoiser, input_mode="embedding", embed_dim=64)
    assert "token embeddings of 64 numbers" in compare_with_paper(paper.vqsvae, embedded)["denoiser"]
    assert "membrane decay 0.75 (paper: 0.8)" in compare_with_paper(replace(paper.vqsvae, membrane_decay=0.75))["vqsvae"]
    # N follows the paper's rule, one diffusion step per latent cell, whatever the grid
    assert "25 diffusion steps N (paper: 49, one per cell)" in \
        compare_with_paper(paper.vqsvae, replace(paper.denoiser, num_diffusion_steps=25))["denoiser"]
    assert compare_with_paper(paper.vqsvae, replace(paper.denoiser, latent_size=8, num_diffusion_steps=64))["denoiser"] \
        == "the paper's"
    assert compare_with_paper(PRESETS["small"].vqsvae) == \
        {"vqsvae": "not the paper's: 4 time steps (paper: 16), channel widths 16-32 (paper: 32-64)"}
    # every checkpoint says it in its config.json, and the pipeline reads the same
    save_checkpoint(tmp_path / "m", VQSVAE(paper.vqsvae), SpikingDenoiser(replace(compact, time_steps=2)))
    info = json.loads((tmp_path / "m" / "config.json").read_text())["info"]
    assert info["architecture"]["vqsvae"] == "the paper's" and "2 time steps (paper: 16)" in info["architecture"]["denoiser"]
    assert SpikingDiffusionPipeline.from_pretrained(tmp_path / "m").architecture == info["architecture"]


def test_denoiser_macs_hand_count():
    pairs = [(2, 64), (64, 128), (128, 256), (256, 512), (512, 256), (256 + 64, 128)]
    hand = 9 * 49 * 16 * sum(a * b for a, b in pairs)
    assert denoiser_macs(PRESETS["paper"].denoiser) == hand
    # embedding mode: conv1 sees 2 * embed_dim channels
    emb = replace(PRESETS["paper"].denoiser, input_mode="embedding")
    pairs[0] = (2 * emb.embed_dim, 64)
    assert denoiser_macs(emb) == 9 * 49 * 16 * sum(a * b for a, b in pairs)
    # and the count agrees with the network's own convolutions
    den = SpikingDenoiser(PRESETS["paper"].denoiser)
    convs = [den.conv1, den.conv2[0], den.conv3[0], den.conv4[0], den.conv5[0], den.conv6]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 64), *[(a, b) for a, b in pairs[1:]]]


# --- neuron state ---------------------------------------------------------------------------------
def test_identical_calls_give_identical_outputs(make_tiny_models):
    vq, den = make_tiny_models()
    x = _images(4)
    with torch.no_grad():
        s1, tok1 = vq.encode_with_spikes(x)
        s2, tok2 = vq.encode_with_spikes(x)
        im1, im2 = vq.decode(tok1), vq.decode(tok1)
        a1, a2 = vq.spike_trains(tok1), vq.spike_trains(tok1)
        tokens = torch.randint(0, 33, (4, 7, 7))
        t = torch.tensor([1, 7, 25, 49])
        l1, l2 = den(tokens, t), den(tokens, t)
    assert torch.equal(s1, s2) and torch.equal(tok1, tok2)
    assert torch.equal(im1, im2) and torch.equal(a1, a2)
    assert torch.equal(l1, l2)


def test_every_public_call_resets_neurons(make_tiny_models, unreset_neurons):
    vq, den = make_tiny_models()
    x = _images(3)
    # the check can fail: a raw forward of a spiking block leaves membrane potentials behind
    with torch.no_grad():
        vq.encoder(x)
    assert unreset_neurons(vq)
    reset(vq)
    assert not unreset_neurons(vq)

    calls = {
        "encode": lambda: vq.encode(x),
        "encode_with_spikes": lambda: vq.encode_with_spikes(x),
        "decode": lambda: vq.decode(torch.randint(0, 32, (3, 7, 7))),
        "decode(mask)": lambda: vq.decode(torch.full((3, 7, 7), 32), mask_id=32),
        "spike_trains": lambda: vq.spike_trains(torch.randint(0, 32, (3, 7, 7))),
        "reconstruct": lambda: vq.reconstruct(x),
        "losses": lambda: vq.losses(x)["total"].backward(),
    }
    for name, call in calls.items():
        call()
        assert not unreset_neurons(vq), f"VQSVAE.{name} left neuron state behind"
    den(torch.randint(0, 33, (3, 7, 7)), torch.tensor([1, 20, 49]))
    assert not unreset_neurons(den)
    # an exception in the middle of a forward pass (after neurons have charged) still resets
    def boom(*_):
        assert unreset_neurons(den) or unreset_neurons(vq)             # the state to clear is there
        raise RuntimeError("boom")

    for net, block, call in ((den, den.conv5, lambda: den(torch.randint(0, 33, (3, 7, 7)), torch.tensor([1, 2, 3]))),
                             (vq, vq.decoder.block2, lambda: vq.decode(torch.randint(0, 32, (3, 7, 7))))):
        handle = block.register_forward_hook(boom)
        with pytest.raises(RuntimeError, match="boom"):
            call()
        handle.remove()
        assert not unreset_neurons(net)


# --- the exact shortcuts ------------------------------------------------------------------------
def test_encoder_first_conv_once_equals_T_copies(make_tiny_models):
    vq, _ = make_tiny_models()
    enc, T = vq.encoder, vq.cfg.time_steps
    x = _images(6)
    with torch.no_grad():
        fast = vq.encode_with_spikes(x)[0]
        # naive: T identical copies of the image through conv1 + BN, step by step
        copies = repeat_over_time(x - 0.5, T)                                # [T, B, C, 28, 28]
        conv = torch.stack([enc.bn1(enc.conv1(copies[t])) for t in range(T)])
        naive = enc.block3(enc.block2(enc.lif1(conv)))
        reset(vq)
    assert naive.shape == fast.shape and naive.sum() > 0
    assert torch.equal(naive, fast)


def test_decoder_membrane_before_last_conv_equals_after(make_tiny_models):
    vq, _ = make_tiny_models()
    dec = vq.decoder
    with torch.no_grad():
        trains = vq.spike_trains(torch.randint(0, 32, (4, 7, 7)))           # [T, 4, D, 7, 7]
        fast = dec(trains)
        reset(vq)                                     # the bare decoder module does not reset itself
        s = dec.block2(dec.block1(trains))                                   # [T, 4, c1, 28, 28]
        per_step = torch.stack([dec.out(s[t]) for t in range(s.shape[0])])  # last conv at every step
        naive = torch.tanh(membrane_output(per_step, vq.cfg.membrane_decay))
        reset(vq)
    assert s.sum() > 0
    assert (naive - fast).abs().max() < 1e-5


def test_denoiser_conv6_mean_before_equals_after(make_tiny_models):
    for mode in ("index", "embedding"):
        _, den = make_tiny_models(input_mode=mode)
        tokens = torch.randint(0, 33, (4, 7, 7))
        t = torch.tensor([3, 12, 30, 49])
        with torch.no_grad():
            fast = den(tokens, t)
            feats = repeat_over_time(den.input_features(tokens, t), den.T)   # T copies of the input
            x = torch.stack([den.bn1(den.conv1(feats[i])) for i in range(den.T)])
            s1 = den.lif1(x)
            s5 = den.conv5(den.conv4(den.conv3(den.conv2(s1))))
            cat = torch.cat([s5, s1], dim=2)
            naive = torch.stack([den.conv6(cat[i]) for i in range(den.T)]).mean(0)
            reset(den)
        assert s5.sum() > 0
        assert (naive - fast).abs().max() < 1e-5, mode


def test_membrane_output_and_psp_match_their_definitions():
    x = torch.rand(5, 3, 4)
    m = sum(0.8 ** (4 - t) * x[t] for t in range(5))                       # newest step weighs 1
    assert torch.allclose(membrane_output(x, 0.8), m, atol=1e-6)
    p, ref = torch.zeros(3, 4), []
    for t in range(5):
        p = p + (x[t] - p) / 2.0
        ref.append(p)
    assert torch.allclose(psp(x, 2.0), torch.stack(ref), atol=1e-6)


# --- training lowers the losses -------------------------------------------------------------
def _falls(losses: list[float], k: int = 5) -> tuple[float, float]:
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def test_vqsvae_loss_falls():
    torch.manual_seed(0)
    data = load_images("synthetic", limit=64)
    cfg = replace(get_preset("tiny").vqsvae, data_variance=data.variance())
    vq = VQSVAE(cfg).train()
    opt = torch.optim.AdamW(vq.parameters(), lr=3e-3, weight_decay=1e-3)
    losses = []
    for step in range(30):
        idx = torch.arange(16) + 16 * (step % 4)
        loss = vq.losses(data.floats(idx))["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = _falls(losses)
    assert last < 0.8 * first, (first, last)


def test_prior_loss_falls():
    torch.manual_seed(0)
    den = SpikingDenoiser(get_preset("tiny").denoiser).train()
    diffusion = AbsorbingDiffusion(32, 7)
    g = torch.Generator().manual_seed(0)
    grids = torch.randint(0, 32, (4, 7, 7), generator=g)
    x0 = grids.repeat(8, 1, 1)                                               # 32 grids, 4 distinct

    def held_out() -> float:  # the same draws of t and masks every time
        with torch.no_grad():
            ge = torch.Generator().manual_seed(123)
            return sum(float(diffusion.loss(den, x0, generator=ge)) for _ in range(4)) / 4

    before = held_out()
    opt = torch.optim.AdamW(den.parameters(), lr=3e-3, weight_decay=1e-3)
    losses = []
    for _ in range(40):
        loss = diffusion.loss(den, x0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = _falls(losses, 8)
    after = held_out()
    assert last < first, (first, last)
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("current, period", [(2.5, 1), (2.0, 1), (1.5, 2), (4 / 3 + 1e-4, 2), (1.2, 3), (1.1, 4),
                                             (1.0, 0), (0.5, 0)])
def test_constant_input_gives_a_regular_train(current, period):
    """What the Spikes view says of the ASG: the paper's LIF (tau 2, threshold 1, hard reset) driven by
    the same input at every step fires every ``period``-th step, first at t = period - 1 (0: never)."""
    node = lif()
    spikes = node(torch.full((16, 1), current))[:, 0]                      # [T]
    reset(node)
    expected = torch.zeros(16)
    if period:
        expected[period - 1::period] = 1
    assert torch.equal(spikes, expected)


@pytest.mark.parametrize("bad, words", [
    (lambda x: (x * 255).to(torch.uint8), "divide by 255"),          # a picture's 0..255 pixels
    (lambda x: x * 255, r"lie in \[0, 1\]; got 0\.\."),              # the same as floats
    (lambda x: x[:, :, 1:], r"\[N, 1, 28, 28\]"),
    (lambda x: x.masked_fill(x > 0.5, float("nan")), "finite")])
def test_the_vqsvae_refuses_images_it_cannot_read_at_every_call(make_tiny_models, bad, words):
    """encode / encode_with_spikes / reconstruct used to run on uint8 pixels without a word (about
    10% of the tokens then differ from the same picture as floats)."""
    from spiking_diffusion.errors import SettingError
    vq, _ = make_tiny_models()
    x = bad(_images(2))
    for call in (vq.encode, vq.encode_with_spikes, vq.reconstruct, vq.losses):     # and training's losses
        with pytest.raises(SettingError, match=words):
            call(x)
    with pytest.raises(SettingError, match="must be a torch tensor"):
        vq.encode(_images(2).numpy())


def test_an_unknown_preset_is_a_setting_error_naming_the_presets():
    from spiking_diffusion import SettingError, get_preset

    with pytest.raises(SettingError, match=r"preset must be one of guide, paper, small, tiny; got 'huge'"):
        get_preset("huge")


def test_the_image_folder_cache_follows_the_folders_images(tmp_path, monkeypatch):
    """CIFAR-10 as JPEG folders (cifar10-folder) is decoded once and cached; the cache was keyed on the
    path alone, so images added to a class folder were silently not seen."""
    import os

    from PIL import Image

    monkeypatch.setenv("SD_CACHE", str(tmp_path / "cache"))
    for cls, n in (("cat", 2), ("dog", 1)):
        (tmp_path / "cifar10-jpg" / "test" / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "cifar10-jpg" / "test" / cls / f"{i}.png")
    first = load_images("cifar10-folder", tmp_path, train=False)
    assert len(first) == 3 and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert len(load_images("cifar10-folder", tmp_path, train=False)) == 3                 # read from the cache
    new = tmp_path / "cifar10-jpg" / "test" / "dog" / "9.png"
    Image.new("RGB", (32, 32)).save(new)
    os.utime(new.parent, ns=(10**18, 10**18))        # the class folder's time moves on (coarse clocks too)
    again = load_images("cifar10-folder", tmp_path, train=False)
    assert len(again) == 4 and again.labels.tolist().count(1) == 2
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1                         # rebuilt in place
