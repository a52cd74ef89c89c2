"""Autoguidance: a prior steered away from a weaker guide prior on the same tokens (sampler setting
``guidance``), the guide stored in the checkpoint beside the prior."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import build_tiny_models
from spiking_diffusion import SpikingDiffusionError, SpikingDiffusionPipeline
from spiking_diffusion.averaging import average_priors
from spiking_diffusion.checkpoint import load_guide, save_checkpoint
from spiking_diffusion.diffusion import guided
from spiking_diffusion.errors import CheckpointError, SettingError
from spiking_diffusion.sampling import SamplerConfig


@pytest.fixture
def guided_pipeline(tiny_pipeline):
    """The tiny pipeline with another random prior (same tokens) as its guide."""
    guide = SpikingDiffusionPipeline(tiny_pipeline.vqsvae, build_tiny_models(seed=2)[1])
    tiny_pipeline.set_guide(guide)
    return tiny_pipeline


def test_guided_logits_are_log_p_plus_w_times_the_log_ratio():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 3, 3, generator=g), torch.randn(2, 5, 3, 3, generator=g)
    x, t = torch.zeros(2, 3, 3, dtype=torch.long), torch.ones(2)
    p, q = torch.log_softmax(a, 1), torch.log_softmax(b, 1)
    out = guided(lambda *_: a, lambda *_: b, 0.5)(x, t)
    assert torch.allclose(out, 1.5 * p - 0.5 * q, atol=1e-6)
    den = lambda *_: a  # noqa: E731
    assert guided(den, lambda *_: b, 0.0) is den                 # weight 0: the denoiser itself
    # the guided distribution is p^(1+w) / q^w, normalised (Karras et al. 2024)
    want = p.exp() ** 1.5 / q.exp() ** 0.5
    assert torch.allclose(out.softmax(1), want / want.sum(1, keepdim=True), atol=1e-5)


def test_guidance_changes_the_samples_and_zero_is_the_unguided_sampler(guided_pipeline, tiny_pipeline):
    plain = SpikingDiffusionPipeline(tiny_pipeline.vqsvae, tiny_pipeline.denoiser)     # no guide
    base = plain(8, seed=3).tokens
    assert (guided_pipeline(8, seed=3, guidance=0.0).tokens == base).all()
    strong = guided_pipeline(8, seed=3, guidance=2.0).tokens
    assert (strong != base).any()
    # the fast path and the reference path draw the same tokens when guided too
    assert (guided_pipeline(8, seed=3, guidance=2.0, fast=False).tokens == strong).all()


def test_guidance_without_a_guide_is_refused(tiny_pipeline, tmp_path):
    with pytest.raises(SettingError, match="guidance 0.5 needs a guide prior and this checkpoint has none"):
        tiny_pipeline(2, guidance=0.5)
    with pytest.raises(SettingError, match=r"guidance must be a number in \[0, 4\]; got -1"):
        SamplerConfig(guidance=-1)
    with pytest.raises(SpikingDiffusionError, match="nothing was written: guidance 0.5 needs a guide prior"):
        tiny_pipeline.save_pretrained(tmp_path / "x", info={"guidance": 0.5})
    assert not (tmp_path / "x").exists()


def test_a_guide_must_share_the_tokens(tiny_pipeline):
    other_vq, other_den = build_tiny_models(seed=5)
    with pytest.raises(SpikingDiffusionError, match="tokenises differently"):
        tiny_pipeline.set_guide(SpikingDiffusionPipeline(other_vq, other_den))
    with pytest.raises(SpikingDiffusionError, match="with a prior"):
        tiny_pipeline.set_guide(SpikingDiffusionPipeline(tiny_pipeline.vqsvae))
    other = build_tiny_models(seed=2)[1]
    other.cfg = replace(other.cfg, num_diffusion_steps=25)                      # another time scale
    with pytest.raises(SpikingDiffusionError, match="counts 25 diffusion steps and the prior 49"):
        tiny_pipeline.set_guide(SpikingDiffusionPipeline(tiny_pipeline.vqsvae, other))
    assert tiny_pipeline.guide is None                                          # nothing changed
    with pytest.raises(CheckpointError, match="only beside a prior"):
        save_checkpoint("unused", tiny_pipeline.vqsvae, None, guide=tiny_pipeline.denoiser)


def test_the_guide_and_its_weight_are_saved_and_loaded(guided_pipeline, tiny_checkpoint, tmp_path):
    assert load_guide(tiny_checkpoint) is None                                  # a checkpoint without one
    folder = guided_pipeline.save_pretrained(tmp_path / "g", info={"guidance": 1.5})
    loaded = SpikingDiffusionPipeline.from_pretrained(folder)
    assert loaded.sampling_defaults.guidance == 1.5
    assert loaded.sampling_defaults.label().endswith(", guidance 1.5")
    for name, value in guided_pipeline.guide.state_dict().items():
        assert torch.equal(loaded.guide.state_dict()[name], value), name
    assert loaded.info["guide_trained"]["from"] == "memory"                    # where the guide came from
    loaded.set_guide(None)
    assert "guide_trained" not in loaded.info and loaded.info["guidance"] == 0            # it cannot guide now
    assert load_guide(loaded.save_pretrained(tmp_path / "none")) is None and loaded(2, seed=1).tokens.shape == (2, 7, 7)
    loaded = SpikingDiffusionPipeline.from_pretrained(folder)
    assert (loaded(4, seed=1).tokens == guided_pipeline(4, seed=1, guidance=1.5).tokens).all()
    # an average of priors keeps the first one's guide (the same tokens)
    avg = average_priors([folder, tiny_checkpoint], tmp_path / "avg")
    assert load_guide(avg) is not None and load_guide(tmp_path / "avg").cfg == guided_pipeline.guide.cfg


def test_sample_command_takes_guidance_and_refuses_it_without_a_guide(tiny_checkpoint, tmp_path, capsys):
    from spiking_diffusion.cli import main

    code = main(["sample", "--checkpoint", str(tiny_checkpoint), "--num-images", "2", "--guidance", "0.5",
                 "--out", str(tmp_path / "s.png")])
    assert code != 0 and "needs a guide prior" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def test_a_decoder_trained_on_keeps_the_prior_s_guide(guided_pipeline, tmp_path):
    from spiking_diffusion.train import TrainConfig, train_decoder

    folder = guided_pipeline.save_pretrained(tmp_path / "g", info={"dataset": "synthetic"})
    out = train_decoder(TrainConfig(stage="decoder", out=str(tmp_path / "d"), vqsvae=str(folder), epochs=0.25,
                                    dataset="synthetic", limit=64, batch_size=16, progress=False))
    assert load_guide(out).cfg == guided_pipeline.guide.cfg


def test_the_energy_account_counts_the_guide_at_every_call(guided_pipeline):
    from spiking_diffusion.evaluation.energy import generation_energy

    tokens = guided_pipeline(4, seed=0, guidance=1.0).tokens
    plain = generation_energy(guided_pipeline, tokens, 49, max_images=4, points=3)
    guided_e = generation_energy(guided_pipeline, tokens, 49, max_images=4, points=3, guidance=1.0)
    calls, g = guided_e["denoiser_calls_per_image"], guided_e["guide_per_call"]
    assert "guide_per_call" not in plain and g["snn_energy_pj"] > 0
    for key in ("sops", "snn_energy_pj", "ann_energy_pj"):
        assert guided_e["per_image"][key] == pytest.approx(plain["per_image"][key] + g[key] * calls)
    assert "the guide prior at every call" in guided_e["assumptions"]


def test_the_studio_s_guidance_weight_follows_the_model_s_guide(guided_pipeline, tmp_path):
    import demo.studio as S

    guided_pipeline.save_pretrained(tmp_path / "guided", info={"guidance": 0.75})   # its own weight
    guided_pipeline.set_guide(None)
    guided_pipeline.save_pretrained(tmp_path / "plain")
    st = S.Studio(tmp_path, max_batch=4)
    try:
        assert st.has_guide("guided") and not st.has_guide("plain") and not st.has_guide("no such model")
        assert st.sampling_defaults("guided")[-1] == 0.75 and st.sampling_defaults("plain")[-1] == 0.0
        with pytest.raises(S.gr.Error, match="Guidance weight 0.5 needs a model with a guide prior and plain has "
                                             "none: 0 only"):
            st.check_generate("plain", 2, 6, 0.65, 0, guidance=0.5)
        with pytest.raises(S.gr.Error, match=r"Guidance weight must be a number in \[0, 4\]; got 9"):
            st.check_generate("guided", 2, 6, 0.65, 0, guidance=9)
        assert st.check_generate("guided", 2, 6, 0.65, 0)[-1].guidance == 0.75    # not given: the model's
        assert st.check_generate("guided", 2, 6, 0.65, 0, guidance=0)[-1].guidance == 0.0
        *_, (_, _, run) = st.generate("guided", 2, 6, 0.65, 0, guidance=2.0)
        assert run.guidance == 2.0 and "its guide prior, at every call" in st.energy(run)[0]
        assert "autoguidance, weight 0.75" in st.model_info("guided") and "autoguidance" not in st.model_info("plain")
    finally:
        st.close()
