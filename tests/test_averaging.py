"""Weight averaging of priors (``average``): the weighted mean of the denoisers, one VQ-SVAE, clear refusals."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from spiking_diffusion import SpikingDenoiser, SpikingDiffusionPipeline
from spiking_diffusion.averaging import average_priors, check_weights
from spiking_diffusion.checkpoint import CODE_USAGE_NAME, update_metadata
from spiking_diffusion.cli import main
from spiking_diffusion.errors import CheckpointError, SettingError


@pytest.fixture
def priors(tmp_path, make_tiny_models):
    """Priors a and b on one VQ-SVAE, c on another, d with other denoiser settings, e without a prior.
    (a and b do not share a start, as real priors to average would: the arithmetic is the same.)"""
    vq, den_a = make_tiny_models(seed=1)
    _, den_b = make_tiny_models(seed=2)
    other_vq, den_c = make_tiny_models(seed=3)
    den_b.state_dict()["bn1.num_batches_tracked"].fill_(7)             # b's step counter: not the average's
    paths = {name: tmp_path / name for name in "abcde"}
    wider = SpikingDenoiser(replace(den_a.cfg, time_steps=den_a.cfg.time_steps + 1))
    for name, v, d, steps in [("a", vq, den_a, 100), ("b", vq, den_b, 200), ("c", other_vq, den_c, 300),
                              ("d", vq, wider, 400), ("e", vq, None, 0)]:
        SpikingDiffusionPipeline(v, d).save_pretrained(paths[name], info={"dataset": "mnist", "steps": steps,
                                                                          "trained_at": name, "temperature": 0.9})
    update_metadata(paths["a"], metrics={"recon_mse": 0.01, "classifier_fd": 50.0})
    (paths["a"] / CODE_USAGE_NAME).write_text('{"usage": "of a"}')
    return paths


def test_the_average_is_the_weighted_mean_of_the_denoisers(priors, tmp_path):
    a, b = priors["a"], priors["b"]
    out = average_priors([a, b], tmp_path / "avg", weights=[3, 1])             # scaled to 0.75, 0.25
    pa, pb, avg = (SpikingDiffusionPipeline.from_pretrained(p) for p in (a, b, out))
    sa, sb, s = (p.denoiser.state_dict() for p in (pa, pb, avg))
    moved = 0
    for k, t in s.items():
        if t.is_floating_point():
            assert torch.allclose(t, 0.75 * sa[k] + 0.25 * sb[k], atol=1e-6), k
            moved += int(not torch.equal(sa[k], sb[k]))
        else:
            assert torch.equal(t, sa[k]), k                                    # step counters: the first's
    assert moved > 0 and int(sb["bn1.num_batches_tracked"]) == 7 != int(s["bn1.num_batches_tracked"])
    for k, t in avg.vqsvae.state_dict().items():
        assert torch.equal(t, pa.vqsvae.state_dict()[k]), k                     # the shared VQ-SVAE, as it was
    config = json.loads((out / "config.json").read_text())
    info = config["info"]
    assert [s["weight"] for s in info["averaged_from"]] == [0.75, 0.25]
    assert [s["steps"] for s in info["averaged_from"]] == [100, 200]
    assert info["stage"] == "prior" and info["temperature"] == 0.9            # a's sampler settings
    assert "steps" not in info and "trained_at" not in info                    # a's training record is a's
    assert config["metrics"] == {"recon_mse": 0.01}                            # the VQ-SVAE's figure, not a's samples'
    assert (out / CODE_USAGE_NAME).read_text() == '{"usage": "of a"}'          # the shared tokens' usage
    avg(2, 3)                                                                   # and it samples


@pytest.mark.parametrize("names, weights, error, match", [
    ("ac", None, CheckpointError, "VQ-SVAE differs"),
    ("ad", None, CheckpointError, r"denoiser settings differ .*time_steps"),
    ("ae", None, CheckpointError, "holds no prior"),
    ("a", None, SettingError, "two checkpoints or more"),
    ("aba", None, SettingError, "is given twice .*--weights"),
    ("ab", [1], SettingError, "one number per checkpoint"),
    ("ab", [1, 0], SettingError, "finite numbers > 0"),
    ("ab", [float("inf"), 1], SettingError, "finite numbers > 0"),
])
def test_what_cannot_be_averaged_is_refused_and_nothing_written(priors, tmp_path, names, weights, error, match):
    with pytest.raises(error, match=match):
        average_priors([priors[n] for n in names], tmp_path / "x", weights=weights)
    assert not (tmp_path / "x").exists()


def test_huge_weights_are_scaled_before_their_sum():
    assert check_weights([1e308, 1e308], 2) == [0.5, 0.5]                     # their sum is inf


def test_an_existing_checkpoint_is_never_overwritten(priors):
    a, b = priors["a"], priors["b"]
    before = (a / "model.safetensors").read_bytes()
    for out in (a, priors["c"]):
        with pytest.raises(CheckpointError, match="already holds a checkpoint"):
            average_priors([a, b], out)
    assert (a / "model.safetensors").read_bytes() == before


def test_cli_average(priors, tmp_path, capsys):
    a, b, c = priors["a"], priors["b"], priors["c"]
    assert main(["average", "--checkpoints", str(a), str(b), "--out", str(tmp_path / "avg")]) == 0
    info = json.loads((tmp_path / "avg" / "config.json").read_text())["info"]
    assert [s["weight"] for s in info["averaged_from"]] == [0.5, 0.5]
    assert main(["average", "--checkpoints", str(a), str(c), "--out", str(tmp_path / "bad")]) == 2
    assert "VQ-SVAE differs" in capsys.readouterr().err and not (tmp_path / "bad").exists()
