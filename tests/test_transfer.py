"""Starting a prior from another prior with a different codebook (``train-prior --init-from``)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import build_tiny_models
from spiking_diffusion.checkpoint import save_checkpoint
from spiking_diffusion.denoiser import SpikingDenoiser
from spiking_diffusion.errors import SpikingDiffusionError
from spiking_diffusion.train import TrainConfig, train_prior
from spiking_diffusion.transfer import align_codes, transfer_prior

torch.set_num_threads(1)


def _old_prior() -> SpikingDenoiser:
    return build_tiny_models(input_mode="embedding", seed=3)[1]


def test_align_codes_counts_pairs_and_purity():
    new = np.array([[[0, 1], [1, 2]]])
    old = np.array([[[5, 4], [4, 4]]])
    a = align_codes(new, old, 3, 6)
    assert a.counts[0, 5] == 1 and a.counts[1, 4] == 2 and a.counts[2, 4] == 1 and a.counts.sum() == 4
    assert a.purity == 1.0                           # every new code always meets one old code
    assert np.allclose(a.new_given_old[:, 4], [0, 2 / 3, 1 / 3])
    mixed = align_codes(np.array([[[0, 0]]]), np.array([[[1, 2]]]), 1, 3)
    assert mixed.purity == 0.5
    with pytest.raises(SpikingDiffusionError, match="token grids"):
        align_codes(new, old[:, :1], 3, 6)


def test_a_renumbered_codebook_gives_the_same_predictions_renumbered():
    """New code perm[i] is old code i: the transferred prior must predict exactly the old one's
    logits, renumbered (the split log-share is log 1 = 0 for a one-to-one alignment)."""
    old = _old_prior()
    K = old.cfg.codebook_size
    perm = torch.from_numpy(np.random.default_rng(0).permutation(K))
    g = torch.Generator().manual_seed(0)
    old_tokens = torch.randint(0, K, (64, 7, 7), generator=g)
    old_tokens[:, 0, 0] = torch.arange(64) % K                         # every code seen at least once
    new_tokens = perm[old_tokens]
    torch.manual_seed(7)
    new = transfer_prior(old, SpikingDenoiser(old.cfg).eval(), align_codes(new_tokens, old_tokens, K, K))
    masked = old_tokens.clone()
    masked[:, 3:] = K                                                  # some cells masked (the mask id is kept)
    t = torch.full((64,), 20)
    with torch.no_grad():
        want = old(masked, t)                                          # [B, K, 7, 7]
        got = new(torch.where(masked == K, masked, perm[masked.clamp_max(K - 1)]), t)
    assert torch.allclose(got[:, perm], want, atol=1e-5)


def test_codes_the_data_never_shows_get_no_probability():
    old = _old_prior()
    K = old.cfg.codebook_size
    tokens = torch.randint(0, 4, (8, 7, 7))                           # only codes 0..3 occur
    new = transfer_prior(old, SpikingDenoiser(old.cfg).eval(), align_codes(tokens, tokens, K, K))
    with torch.no_grad():
        logits = new(tokens, torch.full((8,), 10))                    # [B, K, h, w]
    assert torch.all(logits[:, 4:] == -20.0)
    assert logits.softmax(1)[:, 4:].sum(1).max() < 1e-6


def test_transfer_refuses_other_layers_and_the_raw_index_input():
    old = _old_prior()
    wider = SpikingDenoiser(replace(old.cfg, widths=tuple(w * 2 for w in old.cfg.widths)))
    a = align_codes(np.zeros((1, 7, 7)), np.zeros((1, 7, 7)), old.cfg.codebook_size, old.cfg.codebook_size)
    with pytest.raises(SpikingDiffusionError, match="widths"):
        transfer_prior(old, wider, a)
    index = build_tiny_models(input_mode="index")[1]
    with pytest.raises(SpikingDiffusionError, match="--input-mode embedding"):
        transfer_prior(index, SpikingDenoiser(index.cfg), a)


def test_init_from_starts_the_run_and_is_kept_on_resume(tmp_path, capsys, monkeypatch):
    from spiking_diffusion import train

    calls = []
    real = train.tokenize
    monkeypatch.setattr(train, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    vq, _ = build_tiny_models(seed=1)
    donor = tmp_path / "donor"
    save_checkpoint(donor, build_tiny_models(seed=2)[0], _old_prior(), info={"dataset": "synthetic"})
    base = tmp_path / "vq"
    save_checkpoint(base, vq, None, info={"dataset": "synthetic", "preset": "tiny"})
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "run"), vqsvae=str(base), preset="tiny",
                      input_mode="embedding", init_from=str(donor), limit=64, batch_size=16, epochs=0.5,
                      save_every=1, progress=False)
    train_prior(cfg)
    assert "prior starts from" in capsys.readouterr().out
    assert len(calls) == 2                       # another VQ-SVAE: the run's tokens and the donor's
    info = json.loads((tmp_path / "run" / "config.json").read_text())["info"]
    assert info["init_from"] == str(donor) and 0 < info["init_code_purity"] <= 1
    purity = info["init_code_purity"]
    train_prior(replace(cfg, init_from=None, epochs=0.75, resume=True))   # the flag need not be repeated
    out = capsys.readouterr().out
    assert "prior starts from" not in out                              # the weights come from the snapshot
    info = json.loads((tmp_path / "run" / "config.json").read_text())["info"]
    assert info["init_from"] == str(donor) and info["init_code_purity"] == purity and info["steps"] == 3
    train_prior(replace(cfg, init_from=str(base), epochs=1.0, resume=True))   # another donor: said, not used
    out = capsys.readouterr().out
    assert f"--init-from {base} is ignored" in out
    info = json.loads((tmp_path / "run" / "config.json").read_text())["info"]
    assert info["init_from"] == str(donor) and info["init_code_purity"] == purity and info["steps"] == 4


def test_init_from_a_vqsvae_only_checkpoint_is_refused(tmp_path):
    vq, _ = build_tiny_models(seed=1)
    save_checkpoint(tmp_path / "vq", vq, None, info={"dataset": "synthetic", "preset": "tiny"})
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "run"), vqsvae=str(tmp_path / "vq"), preset="tiny",
                      input_mode="embedding", init_from=str(tmp_path / "vq"), limit=16, batch_size=16,
                      progress=False)
    with pytest.raises(SpikingDiffusionError, match="holds no prior"):
        train_prior(cfg)


def test_a_donor_with_other_layers_is_refused_before_the_data_is_tokenised(tmp_path, monkeypatch):
    from spiking_diffusion import train

    calls = []
    real = train.tokenize
    monkeypatch.setattr(train, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    old = _old_prior()
    wider = SpikingDenoiser(replace(old.cfg, widths=tuple(w * 2 for w in old.cfg.widths)))
    save_checkpoint(tmp_path / "donor", build_tiny_models(seed=2)[0], wider, info={"dataset": "synthetic"})
    save_checkpoint(tmp_path / "vq", build_tiny_models(seed=1)[0], None, info={"dataset": "synthetic", "preset": "tiny"})
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "run"), vqsvae=str(tmp_path / "vq"), preset="tiny",
                      input_mode="embedding", init_from=str(tmp_path / "donor"), limit=16, batch_size=16,
                      progress=False)
    with pytest.raises(SpikingDiffusionError, match="widths"):
        train_prior(cfg)
    assert len(calls) == 1                       # the run's own tokens only, not the donor's


def test_same_tokens_means_the_same_encoder_and_quantizer():
    import copy

    from spiking_diffusion.train import same_tokens

    vq, _ = build_tiny_models(seed=1)
    other = copy.deepcopy(vq)
    with torch.no_grad():
        next(other.decoder.parameters()).add_(0.1)              # train-decoder: the same tokens
    for m in other.encoder.modules():
        if hasattr(m, "num_batches_tracked") and m.num_batches_tracked is not None:
            m.num_batches_tracked += 1                            # an EMA's rounding of the batch counter
    assert same_tokens(vq, other)
    for change in ("codebook", "bn", "time_steps", "decay"):
        other = copy.deepcopy(vq)
        with torch.no_grad():
            if change == "codebook":
                other.quantizer.codebook.weight[0, 0] += 1e-3
            elif change == "bn":
                next(m for m in other.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean += 1e-3
            elif change == "time_steps":
                other.cfg = replace(other.cfg, time_steps=other.cfg.time_steps + 1)
            else:
                other.cfg = replace(other.cfg, membrane_decay=0.5)
        assert not same_tokens(vq, other), change


def _donor_run(tmp_path, monkeypatch, donor_input_mode="embedding"):
    """A VQ-SVAE, a donor prior on it whose decoder has trained on since, and the tokenise calls."""
    from spiking_diffusion import train

    calls = []
    real = train.tokenize
    monkeypatch.setattr(train, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    vq, _ = build_tiny_models(seed=1)
    save_checkpoint(tmp_path / "vq", vq, None, info={"dataset": "synthetic", "preset": "tiny"})
    with torch.no_grad():
        for w in vq.decoder.parameters():
            w.add_(0.01)
    donor = build_tiny_models(input_mode=donor_input_mode, seed=3)[1]
    save_checkpoint(tmp_path / "donor", vq, donor, info={"dataset": "synthetic"})
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "run"), vqsvae=str(tmp_path / "vq"), preset="tiny",
                      input_mode=donor_input_mode, init_from=str(tmp_path / "donor"), limit=64, batch_size=16,
                      epochs=0.25, progress=False)
    return cfg, donor, calls


@pytest.mark.parametrize("input_mode", ["embedding", "index"])
def test_a_donor_on_the_same_vqsvae_starts_the_run_with_its_own_weights(tmp_path, monkeypatch, input_mode):
    """A finished prior trained on (e.g. at a lower learning rate) on its own VQ-SVAE, whose decoder may
    have changed: not tokenised again, every weight copied as it is (also codes the data never shows,
    and also the paper's raw-index input)."""
    from spiking_diffusion import train

    cfg, donor, calls = _donor_run(tmp_path, monkeypatch, input_mode)
    started = {}
    monkeypatch.setattr(train, "_loop", lambda c, objective, *a: started.update(objective.denoiser.state_dict()) or (0, 0.0))
    train_prior(cfg)
    assert len(calls) == 1                       # the run's own tokens, reused as the donor's
    want = donor.state_dict()
    assert started.keys() == want.keys() and all(torch.equal(started[k], want[k]) for k in want)


def test_a_donor_on_the_same_vqsvae_with_other_layers_is_refused(tmp_path, monkeypatch):
    cfg, _, _ = _donor_run(tmp_path, monkeypatch, "index")
    with pytest.raises(SpikingDiffusionError, match="input_mode"):
        train_prior(replace(cfg, input_mode="embedding"))
    assert not (tmp_path / "run" / "config.json").exists()   # nothing trained, no checkpoint written
