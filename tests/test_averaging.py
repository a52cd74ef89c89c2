"""Weight averaging of priors (``average``): the weighted mean of the denoisers, one VQ-SVAE, clear refusals."""
from __future__ import annotations

import json

import pytest
import torch

from spiking_diffusion import SpikingDiffusionPipeline
from spiking_diffusion.averaging import average_priors, check_weights
from spiking_diffusion.cli import main
from spiking_diffusion.errors import CheckpointError, SettingError


@pytest.fixture
def priors(tmp_path, make_tiny_models):
    """Two priors on one VQ-SVAE (denoisers from other seeds) and one on another VQ-SVAE."""
    vq, den_a = make_tiny_models(seed=1)
    _, den_b = make_tiny_models(seed=2)
    other_vq, den_c = make_tiny_models(seed=3)
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for path, v, d, steps in zip(paths, (vq, vq, other_vq), (den_a, den_b, den_c), (100, 200, 300)):
        SpikingDiffusionPipeline(v, d).save_pretrained(path, info={"dataset": "mnist", "steps": steps})
    return paths


def test_the_average_is_the_weighted_mean_of_the_denoisers(priors, tmp_path):
    a, b, _ = priors
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
    assert moved > 0                                                           # the two priors did differ
    for k, t in avg.vqsvae.state_dict().items():
        assert torch.equal(t, pa.vqsvae.state_dict()[k]), k                     # the shared VQ-SVAE, as it was
    info = json.loads((out / "config.json").read_text())["info"]
    assert [s["weight"] for s in info["averaged_from"]] == [0.75, 0.25]
    assert [s["steps"] for s in info["averaged_from"]] == [100, 200] and info["stage"] == "prior (weight average)"
    avg(2, 3)                                                                   # and it samples


def test_priors_on_other_vqsvaes_or_bad_weights_are_refused(priors, tmp_path):
    a, b, c = priors
    with pytest.raises(CheckpointError, match="VQ-SVAE differs"):
        average_priors([a, c], tmp_path / "x")
    with pytest.raises(SettingError, match="two checkpoints or more"):
        average_priors([a], tmp_path / "x")
    with pytest.raises(SettingError, match="one number per checkpoint"):
        average_priors([a, b], tmp_path / "x", weights=[1])
    with pytest.raises(SettingError, match="must all be > 0"):
        check_weights([1, 0], 2)
    assert not (tmp_path / "x").exists()                                        # nothing written


def test_cli_average(priors, tmp_path, capsys):
    a, b, c = priors
    assert main(["average", "--checkpoints", str(a), str(b), "--out", str(tmp_path / "avg")]) == 0
    info = json.loads((tmp_path / "avg" / "config.json").read_text())["info"]
    assert [s["weight"] for s in info["averaged_from"]] == [0.5, 0.5]
    assert main(["average", "--checkpoints", str(a), str(c), "--out", str(tmp_path / "bad")]) == 2
    assert "VQ-SVAE differs" in capsys.readouterr().err and not (tmp_path / "bad").exists()
