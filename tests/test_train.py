"""Training runs: the run folder, seeding, and resuming exactly where a snapshot left off."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from spiking_diffusion.train import TrainConfig, train_prior, train_vqsvae

torch.set_num_threads(1)

# 64 synthetic images in batches of 16: 4 steps per epoch
BASE = dict(dataset="synthetic", preset="tiny", limit=64, batch_size=16, progress=False, log_every=1)


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _resume_matches_one_go(tmp_path, train, cfg: TrainConfig):
    """6 steps in one go vs 3 steps (snapshot, stop) + resume to 6: identical weights and log."""
    one = tmp_path / "one"
    train(replace(cfg, out=str(one), epochs=1.5, save_every=100))
    split = tmp_path / "split"
    train(replace(cfg, out=str(split), epochs=0.75, save_every=3))     # stops at step 3 with a snapshot
    assert json.loads((split / "config.json").read_text())["info"]["steps"] == 3
    half = _weights(split)
    # a crash after logging steps 4-5 but before the next snapshot: those lines must not stay twice
    with open(split / "log.jsonl", "a") as f:
        for s in (4, 5):
            f.write(json.dumps({"step": s, "total": -1.0}) + "\n")
    torch.rand(100)                                                       # disturb the global RNG
    train(replace(cfg, out=str(split), epochs=1.5, save_every=3, resume=True))

    for run in (one, split):
        for name in ("config.json", "model.safetensors", "training_state.safetensors", "log.jsonl"):
            assert (run / name).is_file(), (run, name)
    a, b = _weights(one), _weights(split)
    assert not _same(half, b)                                             # the resumed run did train
    assert _same(a, b)
    log_a, log_b = _log(one), _log(split)
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5, 6]              # no duplicated steps
    assert [r["total"] for r in log_a] == [r["total"] for r in log_b]     # the same losses, step by step
    assert json.loads((split / "config.json").read_text())["info"]["steps"] == 6


def test_vqsvae_resume_is_exact(tmp_path):
    _resume_matches_one_go(tmp_path, train_vqsvae, TrainConfig(stage="vqsvae", out="", **BASE))


def test_prior_resume_is_exact(tmp_path, tiny_checkpoint):
    cfg = TrainConfig(stage="prior", out="", vqsvae=str(tiny_checkpoint), **{**BASE, "dataset": None})
    _resume_matches_one_go(tmp_path, train_prior, cfg)
    assert (tmp_path / "split" / "tokens_train.npz").is_file()


def test_seed_determines_the_run(tmp_path):
    cfg = TrainConfig(stage="vqsvae", out="", epochs=0.5, **BASE)
    train_vqsvae(replace(cfg, out=str(tmp_path / "a")))
    torch.rand(100)                                                       # whatever ran before
    train_vqsvae(replace(cfg, out=str(tmp_path / "b")))
    train_vqsvae(replace(cfg, out=str(tmp_path / "c"), seed=1))
    a, b, c = (_weights(tmp_path / n) for n in "abc")
    assert _same(a, b)
    assert not _same(a, c)


def test_resume_without_state_fails(tmp_path):
    from spiking_diffusion import CheckpointError

    with pytest.raises(CheckpointError, match="resume"):
        train_vqsvae(TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), resume=True, **BASE))


def test_ema_checkpoint_holds_the_average_and_resumes_exactly(tmp_path, tiny_checkpoint):
    cfg = TrainConfig(stage="prior", out="", vqsvae=str(tiny_checkpoint), ema=0.5, **{**BASE, "dataset": None})
    _resume_matches_one_go(tmp_path, train_prior, cfg)
    state = load_file(str(tmp_path / "one" / "training_state.safetensors"))
    saved = _weights(tmp_path / "one")
    name = next(k for k in saved if k.startswith("denoiser.") and k.endswith("weight"))
    raw = state["model." + name]                                          # _PriorObjective.denoiser.*
    ema = state["ema.module." + name]
    assert torch.equal(saved[name], ema)                                  # the checkpoint is the average
    assert not torch.equal(saved[name], raw)                              # ... not the last weights


def test_resume_with_a_new_lr_uses_it(tmp_path):
    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, save_every=2, **BASE)
    train_vqsvae(cfg)
    train_vqsvae(replace(cfg, epochs=1.0, lr=1e-5, resume=True))
    state_file = tmp_path / "r" / "training_state.safetensors"
    from safetensors import safe_open
    with safe_open(str(state_file), "pt") as f:
        groups = json.loads(f.metadata()["json"])["param_groups"]
    assert [g["lr"] for g in groups] == [1e-5]
