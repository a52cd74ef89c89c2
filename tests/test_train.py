"""Training runs: the run folder, seeding, and resuming exactly where a snapshot left off."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from spiking_diffusion.errors import SettingError
from spiking_diffusion.train import TrainConfig, train_decoder, train_prior, train_vqsvae

torch.set_num_threads(1)

# 64 synthetic images in batches of 16: 4 steps per epoch
BASE = dict(dataset="synthetic", preset="tiny", limit=64, batch_size=16, progress=False, log_every=1)


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _resume_matches_one_go(tmp_path, train, cfg: TrainConfig, steps_key: str = "steps", **on_resume):
    """6 steps in one go vs 3 steps (snapshot, stop) + resume to 6 (``on_resume``: settings changed for
    the resumed call): identical weights and log."""
    one = tmp_path / "one"
    train(replace(cfg, out=str(one), epochs=1.5, save_every=100))
    split = tmp_path / "split"
    train(replace(cfg, out=str(split), epochs=0.75, save_every=3))     # stops at step 3 with a snapshot
    assert json.loads((split / "config.json").read_text())["info"][steps_key] == 3
    half = _weights(split)
    # a crash after logging steps 4-5 but before the next snapshot: those lines must not stay twice
    with open(split / "log.jsonl", "a") as f:
        for s in (4, 5):
            f.write(json.dumps({"step": s, "total": -1.0}) + "\n")
    torch.rand(100)                                                       # disturb the global RNG
    train(replace(cfg, out=str(split), epochs=1.5, save_every=3, resume=True, **on_resume))

    for run in (one, split):
        for name in ("config.json", "model.safetensors", "training_state.safetensors", "log.jsonl"):
            assert (run / name).is_file(), (run, name)
    a, b = _weights(one), _weights(split)
    assert not _same(half, b)                                             # the resumed run did train
    assert _same(a, b)
    log_a, log_b = _log(one), _log(split)
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5, 6]              # no duplicated steps
    assert [r["total"] for r in log_a] == [r["total"] for r in log_b]     # the same losses, step by step
    assert json.loads((split / "config.json").read_text())["info"][steps_key] == 6


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


def test_the_largest_seed_trains(tmp_path):
    """Every seed the check admits trains: the seeds derived from it (per process, per epoch) once
    overflowed torch's generators (2**64) after the data was loaded, with a raw traceback."""
    from spiking_diffusion.sampling import SEED, torch_seed
    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "big"), epochs=0.5, **{**BASE, "seed": SEED.hi})
    train_vqsvae(cfg)
    assert json.loads((tmp_path / "big" / "config.json").read_text())["info"]["seed"] == SEED.hi
    assert torch_seed(7 * 7919 + 1) == 7 * 7919 + 1 and torch_seed(2**64 + 5) == 5   # small seeds keep their streams


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


def test_resume_without_lr_or_ema_goes_on_with_the_runs_own(tmp_path, tiny_checkpoint, capsys):
    """--resume without --lr / --ema: the run's 3e-3 and its weight average, not the fresh defaults
    (1e-3, no average: the checkpoint would silently become the raw weights)."""
    cfg = TrainConfig(stage="prior", out="", vqsvae=str(tiny_checkpoint), lr=3e-3, ema=0.5, **{**BASE, "dataset": None})
    _resume_matches_one_go(tmp_path, train_prior, cfg, lr=None, ema=None)
    assert "note:" not in capsys.readouterr().out                       # nothing replaced
    assert any(k.startswith("ema.") for k in load_file(str(tmp_path / "split" / "training_state.safetensors")))


def test_a_new_run_never_overwrites_a_checkpoint(tmp_path, tiny_checkpoint):
    """A fresh run into a folder holding a checkpoint without a training state (a bundled model, an
    import) is refused before anything is written: its first snapshot would replace it."""
    from spiking_diffusion import CheckpointError

    folder = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    for train, stage in ((train_vqsvae, "vqsvae"), (train_prior, "prior"), (train_decoder, "decoder")):
        with pytest.raises(CheckpointError, match="already holds a checkpoint"):
            train(TrainConfig(stage=stage, out=str(folder), vqsvae=str(tiny_checkpoint), **{**BASE, "dataset": None}))
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before


def test_prior_takes_its_vqsvaes_preset_unless_given(tmp_path, tiny_checkpoint, capsys):
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), epochs=0.25,
                      **{**BASE, "dataset": None, "preset": None})
    train_prior(cfg)
    assert json.loads((tmp_path / "p" / "config.json").read_text())["info"]["preset"] == "tiny"
    assert "takes the preset of" in capsys.readouterr().out
    train_prior(replace(cfg, epochs=0.5, resume=True))                     # resumed: the run's, not refused
    assert json.loads((tmp_path / "p" / "config.json").read_text())["info"]["steps"] == 2
    capsys.readouterr()
    train_prior(replace(cfg, out=str(tmp_path / "given"), preset="tiny"))
    assert "takes the preset" not in capsys.readouterr().out


def test_time_limit_stops_with_a_snapshot_and_resume_goes_on_exactly(tmp_path, capsys):
    cfg = TrainConfig(stage="vqsvae", out="", **BASE)
    one = tmp_path / "one"
    train_vqsvae(replace(cfg, out=str(one), epochs=1.5, save_every=100))
    cut = tmp_path / "cut"
    train_vqsvae(replace(cfg, out=str(cut), epochs=1.5, save_every=100, time_limit=1e-9))  # past after the 1st step
    assert json.loads((cut / "config.json").read_text())["info"]["steps"] == 1
    assert (cut / "training_state.safetensors").is_file()
    assert "time limit of 1e-09 min reached at step 1" in capsys.readouterr().out
    train_vqsvae(replace(cfg, out=str(cut), epochs=1.5, save_every=100, resume=True))
    assert [r["step"] for r in _log(cut)] == [1, 2, 3, 4, 5, 6]
    assert _same(_weights(one), _weights(cut))


def test_resume_alone_goes_on_with_every_setting_the_run_began_with(tmp_path, tiny_checkpoint, capsys):
    """`train-prior --out RUN --vqsvae CK --resume`, nothing else: the run's own epochs, batch, seed,
    weight decay, input mode, loss, data set, limit, preset, lr and weight average (not the fresh
    defaults, which would be refused or, for lr and ema, change the run), and the same result as one go."""
    from spiking_diffusion.cli import main

    began = ["--vqsvae", str(tiny_checkpoint), "--dataset", "synthetic", "--preset", "tiny", "--limit", "64",
             "--batch-size", "16", "--seed", "3", "--weight-decay", "0", "--input-mode", "embedding", "--loss",
             "elbo", "--lr", "3e-3", "--ema", "0.5", "--epochs", "1.5", "--no-progress", "--threads", "1",
             "--log-every", "1", "--data-root", str(tmp_path / "images"), "--no-download"]
    one, cut = tmp_path / "one", tmp_path / "cut"
    assert main(["train-prior", "--out", str(one), *began]) == 0
    assert main(["train-prior", "--out", str(cut), *began, "--time-limit", "1e-9"]) == 0  # stops after step 1
    assert json.loads((cut / "config.json").read_text())["info"]["steps"] == 1
    capsys.readouterr()
    assert main(["train-prior", "--out", str(cut), "--vqsvae", str(tiny_checkpoint), "--resume", "--no-progress",
                 "--log-every", "1"]) == 0
    assert "note:" not in capsys.readouterr().out                          # nothing replaced
    info = json.loads((cut / "config.json").read_text())["info"]
    assert (info["steps"], info["epochs"], info["batch_size"], info["seed"]) == (6, 1.5, 16, 3)
    from safetensors import safe_open
    with safe_open(str(cut / "training_state.safetensors"), "pt") as f:
        resumed = json.loads(f.metadata()["json"])["train_config"]
    assert (resumed["data_root"], resumed["download"], resumed["loss"]) == (str(tmp_path / "images"), False, "elbo")
    assert [r["step"] for r in _log(cut)] == [1, 2, 3, 4, 5, 6]
    assert _same(_weights(one), _weights(cut))


def test_the_time_limit_is_in_minutes_and_every_run_ends_on_its_steps(tmp_path, capsys):
    from spiking_diffusion.train import _past
    now = time.perf_counter()
    assert not _past(None, now - 1e6, 1, torch.device("cpu"))
    assert not _past(1.0, now - 59, 1, torch.device("cpu")) and _past(1.0, now - 61, 1, torch.device("cpu"))
    # a limit that passes only on the last step: the run simply ends there, with no "go on" message
    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, save_every=100, **{**BASE, "log_every": 100})
    train_vqsvae(replace(cfg, time_limit=1e-9, epochs=0.25))                    # one step: the last
    assert "time limit" not in capsys.readouterr().out
    # a stop between log lines still logs the step it stopped at
    cut = replace(cfg, out=str(tmp_path / "c"), time_limit=1e-9)
    train_vqsvae(cut)
    assert [r["step"] for r in _log(tmp_path / "c")] == [1]


def test_resume_removes_the_temporary_files_of_a_killed_write(tmp_path):
    # safetensors writes .tmp + 6 characters beside the file, atomic_write_file .NAME.tmp: a kill mid-write
    # leaves them; the resumed run removes them and nothing else
    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, save_every=2, **BASE)
    train_vqsvae(cfg)
    left = [tmp_path / "r" / n for n in (".tmpVRipER", ".model.safetensors.tmp")]
    kept = tmp_path / "r" / "notes.tmp.txt"
    for f in (*left, kept):
        f.write_bytes(b"half")
    train_vqsvae(replace(cfg, epochs=1.0, resume=True))
    assert not any(f.exists() for f in left) and kept.exists()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "10", True])
def test_a_time_limit_must_be_positive_minutes(bad):
    from spiking_diffusion.errors import SettingError
    with pytest.raises(SettingError, match="time limit must be a positive number of minutes"):
        TrainConfig(stage="vqsvae", out="r", time_limit=bad)


@pytest.mark.parametrize("name, bad, words", [
    ("epochs", -3, "--epochs must be a number > 0"), ("epochs", 0, "--epochs must be a number > 0"),
    ("batch_size", 0, "--batch-size must be an integer >= 1"), ("batch_size", 2.5, "--batch-size must be an integer"),
    ("lr", -1, "--lr must be a number > 0"), ("lr", 0, "--lr must be a number > 0"),
    ("ema", 1.0, r"--ema must be a number in \[0, 1\)"), ("ema", -0.1, "--ema must be a number in"),
    ("weight_decay", -1e-3, "--weight-decay must be a number >= 0"), ("seed", -1, "--seed must be an integer in 0..9223372036854775807"),
    ("limit", 0, "--limit must be an integer >= 1"), ("save_every", 0, "--save-every must be an integer >= 1"),
    ("log_every", 0, "--log-every must be an integer >= 1"), ("epochs", float("nan"), "--epochs must be a number")])
def test_bad_training_numbers_are_refused_when_the_config_is_made(name, bad, words):
    """Each used to fail late or not at all: epochs 0 or -3 trained one step and saved a checkpoint,
    save-every / batch-size 0 divided by zero after the data was loaded, lr -1 reached AdamW."""
    from spiking_diffusion import SettingError
    with pytest.raises(SettingError, match=words):
        TrainConfig(stage="prior", out="unused", **{name: bad})


def test_a_bad_training_number_on_the_command_line_changes_nothing(tmp_path, capsys):
    from spiking_diffusion.cli import main
    out = tmp_path / "run"
    assert main(["train-vqsvae", "--out", str(out), "--data-root", str(tmp_path / "no-data"), "--no-download",
                 "--epochs", "0"]) == 2
    assert "--epochs must be a number > 0; got 0" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_whole_number_of_at_least_one(bad):
    from spiking_diffusion import SettingError

    with pytest.raises(SettingError, match="--threads must be a whole number >= 1"):
        TrainConfig(stage="vqsvae", out="unused", threads=bad)


def test_threads_may_be_any_whole_number_type():
    import numpy as np
    threads = TrainConfig(stage="vqsvae", out="unused", threads=np.int64(2)).threads   # a numpy integer: refused before
    assert threads == 2 and type(threads) is int


def test_resume_with_a_new_lr_uses_it(tmp_path):
    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, save_every=2, **BASE)
    train_vqsvae(cfg)
    train_vqsvae(replace(cfg, epochs=1.0, lr=1e-5, resume=True))
    state_file = tmp_path / "r" / "training_state.safetensors"
    from safetensors import safe_open
    with safe_open(str(state_file), "pt") as f:
        groups = json.loads(f.metadata()["json"])["param_groups"]
    assert [g["lr"] for g in groups] == [1e-5]


def test_resume_from_another_device_goes_on_with_a_fresh_random_stream(tmp_path, capsys):
    """A snapshot of a GPU run (its CUDA generator's state) resumed on the CPU: the run goes on, and says so."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, save_every=2, **BASE)
    train_vqsvae(cfg)
    state_file = tmp_path / "r" / "training_state.safetensors"
    with safe_open(str(state_file), "pt") as f:
        info, tensors = json.loads(f.metadata()["json"]), {k: f.get_tensor(k) for k in f.keys()}
    assert info["rng_device"] == "cpu"
    info["rng_device"] = "cuda"                                           # as a snapshot of a GPU run says
    tensors["rng.train"] = torch.zeros(16, dtype=torch.uint8)            # the layout of a CUDA generator's state
    save_file(tensors, str(state_file), metadata={"json": json.dumps(info)})
    before = _weights(tmp_path / "r")
    train_vqsvae(replace(cfg, epochs=1.0, resume=True))
    assert "saved on another device" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["info"]["steps"] == 4
    assert not _same(before, _weights(tmp_path / "r"))


def test_decoder_training_keeps_the_tokens_and_the_prior(tmp_path, tiny_checkpoint):
    from spiking_diffusion.data import load_images
    from spiking_diffusion.pipeline import SpikingDiffusionPipeline

    cfg = TrainConfig(stage="decoder", out="", vqsvae=str(tiny_checkpoint), ema=0.5, **{**BASE, "dataset": None})
    _resume_matches_one_go(tmp_path, train_decoder, cfg, steps_key="decoder_steps")
    before, after = _weights(tiny_checkpoint), _weights(tmp_path / "one")
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"asg", "decoder"}                                  # encoder, codebook, denoiser: as they were
    images = load_images("synthetic", "unused", train=True, limit=64).floats(slice(0, 64))
    old, new = (SpikingDiffusionPipeline.from_pretrained(p) for p in (tiny_checkpoint, tmp_path / "one"))
    assert torch.equal(old.encode(images), new.encode(images))
    assert not torch.equal(old.decode(old.encode(images)), new.decode(new.encode(images)))
    info = json.loads((tmp_path / "one" / "config.json").read_text())["info"]
    assert info["steps"] == 0 and info["preset"] == "tiny"                # the prior's own record is kept
    assert info["decoder_steps"] == 6 and info["decoder_from"] == str(tiny_checkpoint)
    train_decoder(replace(cfg, vqsvae=str(tmp_path / "one"), out=str(tmp_path / "more"), epochs=0.5))
    info = json.loads((tmp_path / "more" / "config.json").read_text())["info"]
    assert (info["decoder_steps"], info["decoder_epochs"]) == (8, 2.0)   # the earlier decoder's 6 steps + 2


def test_decoder_resume_refuses_a_vqsvae_with_other_tokens(tmp_path, tiny_checkpoint):
    """The resumed decoder's encoder and codebook are the snapshot's, its prior --vqsvae's: other
    tokens would pair a prior with a VQ-SVAE it was not trained on. Same tokens (a decoder trained on) go on."""
    from spiking_diffusion import CheckpointError, SpikingDiffusionError, SpikingDiffusionPipeline

    cfg = TrainConfig(stage="decoder", out=str(tmp_path / "dec"), vqsvae=str(tiny_checkpoint), epochs=0.5,
                      save_every=2, **{**BASE, "dataset": None})
    train_decoder(cfg)
    other = train_vqsvae(TrainConfig(stage="vqsvae", out=str(tmp_path / "other"), epochs=0.25, **BASE))
    before = _weights(tmp_path / "dec")
    with pytest.raises(CheckpointError, match="gives other tokens"):
        train_decoder(replace(cfg, vqsvae=str(other), epochs=1.0, resume=True))
    assert _same(before, _weights(tmp_path / "dec"))
    with pytest.raises(SpikingDiffusionError, match="--vqsvae and --out are both"):
        train_decoder(replace(cfg, vqsvae=str(tmp_path / "dec"), epochs=1.0, resume=True))   # same tokens, own steps
    bare = tmp_path / "bare"                                               # the same VQ-SVAE without its prior
    from spiking_diffusion.checkpoint import save_checkpoint
    save_checkpoint(bare, SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint).vqsvae, None, {"dataset": "synthetic"})
    with pytest.raises(CheckpointError, match="another prior"):
        train_decoder(replace(cfg, vqsvae=str(bare), epochs=1.0, resume=True))
    assert _same(before, _weights(tmp_path / "dec"))
    moved = shutil.copytree(tiny_checkpoint, tmp_path / "moved")          # the same checkpoint, moved: goes on
    train_decoder(replace(cfg, vqsvae=str(moved), epochs=1.0, resume=True))
    assert json.loads((tmp_path / "dec" / "config.json").read_text())["info"]["decoder_steps"] == 4


def test_prior_resumes_on_a_decoder_trained_checkpoint(tmp_path, tiny_checkpoint, capsys):
    """train-decoder keeps the tokens, so the prior goes on exactly as it would have, and its
    checkpoints then carry the new decoder."""
    cfg = TrainConfig(stage="prior", out="", vqsvae=str(tiny_checkpoint), **{**BASE, "dataset": None})
    train_prior(replace(cfg, out=str(tmp_path / "one"), epochs=1.5, save_every=100))
    dec = tmp_path / "dec"
    train_decoder(TrainConfig(stage="decoder", out=str(dec), vqsvae=str(tiny_checkpoint), **{**BASE, "dataset": None}))
    split = tmp_path / "split"
    train_prior(replace(cfg, out=str(split), epochs=0.75, save_every=3))
    cache = (split / "tokens_train.npz").stat().st_mtime_ns
    train_prior(replace(cfg, out=str(split), vqsvae=str(dec), epochs=1.5, save_every=3, resume=True))
    assert (split / "tokens_train.npz").stat().st_mtime_ns == cache      # same tokens: not tokenised again
    one, got, new_vq = _weights(tmp_path / "one"), _weights(split), _weights(dec)
    assert all(torch.equal(one[k], got[k]) for k in one if k.startswith("denoiser."))
    assert all(torch.equal(new_vq[k], got[k]) for k in new_vq if k.startswith("vqsvae."))
    assert not torch.equal(one["vqsvae.decoder.out.weight"], got["vqsvae.decoder.out.weight"])
    assert "other tokens" not in capsys.readouterr().out


def test_prior_resumed_on_another_vqsvae_says_the_tokens_changed(tmp_path, tiny_checkpoint, capsys):
    from conftest import build_tiny_models
    from spiking_diffusion.checkpoint import save_checkpoint

    other = tmp_path / "other"
    save_checkpoint(other, build_tiny_models(seed=2)[0], info={"dataset": "synthetic"})
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), epochs=0.5,
                      **{**BASE, "dataset": None})
    train_prior(cfg)
    capsys.readouterr()
    train_prior(replace(cfg, vqsvae=str(other), epochs=1.0, resume=True))
    assert "other tokens" in capsys.readouterr().out


def test_decoder_run_on_a_prior_checkpoint_keeps_the_vqsvaes_own_record(tmp_path, tiny_checkpoint):
    base = {**BASE, "dataset": None}
    prior = train_prior(TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), **base))
    dec = train_decoder(TrainConfig(stage="decoder", out=str(tmp_path / "d"), vqsvae=str(prior), epochs=0.5, **base))
    assert json.loads((dec / "config.json").read_text())["metrics"] == {}  # old metrics: the old decoder's
    again = train_prior(TrainConfig(stage="prior", out=str(tmp_path / "p2"), vqsvae=str(dec), epochs=0.5, **base))
    info = json.loads((again / "config.json").read_text())["info"]
    assert info["vqsvae_steps"] == 0 and info["vqsvae_preset"] == "tiny"   # the VQ-SVAE's, not the first prior's 4
    assert info["vqsvae_decoder_steps"] == 2 and info["steps"] == 2


def test_a_new_prior_keeps_only_its_vqsvaes_own_figures(tmp_path, tiny_checkpoint):
    from spiking_diffusion.checkpoint import update_metadata

    full = shutil.copytree(tiny_checkpoint, tmp_path / "evaluated")
    update_metadata(full, metrics={"classifier_fd": 12.5, "recon_mse": 0.01, "dead_codes": 3}, replace_metrics=True)
    assert json.loads((full / "config.json").read_text())["metrics"] == {
        "classifier_fd": 12.5, "recon_mse": 0.01, "dead_codes": 3}   # the fixture's old "fid" is gone
    (full / "code_usage.json").write_text('{"split": "test"}')        # the test split's usage of these tokens
    prior = train_prior(TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(full), **{**BASE, "dataset": None}))
    # the old prior's sample figure must not pass for the new prior's; the tokens' usage is the same
    assert json.loads((prior / "config.json").read_text())["metrics"] == {"recon_mse": 0.01, "dead_codes": 3}
    assert (prior / "code_usage.json").read_text() == '{"split": "test"}'
    dec = train_decoder(TrainConfig(stage="decoder", out=str(tmp_path / "d"), vqsvae=str(prior), epochs=0.5,
                                    **{**BASE, "dataset": None}))
    assert json.loads((dec / "config.json").read_text())["metrics"] == {"dead_codes": 3}   # a new decoder
    assert (dec / "code_usage.json").is_file()
    stale = tmp_path / "v"
    stale.mkdir()
    (stale / "code_usage.json").write_text('{"split": "test"}')        # left by another model in --out
    train_vqsvae(TrainConfig(stage="vqsvae", out=str(stale), epochs=0.5, **BASE))
    assert not (stale / "code_usage.json").exists()                     # new tokens: their usage is unknown


def test_a_fresh_run_never_overwrites_a_run_and_stages_do_not_mix(tmp_path, tiny_checkpoint):
    from spiking_diffusion import CheckpointError

    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, **BASE)
    train_vqsvae(cfg)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(CheckpointError, match="already holds a training run"):
        train_vqsvae(replace(cfg, seed=1))
    with pytest.raises(CheckpointError, match="is a vqsvae run, not a decoder run"):
        train_decoder(TrainConfig(stage="decoder", out=cfg.out, vqsvae=str(tiny_checkpoint), resume=True,
                                  **{**BASE, "dataset": None}))
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before  # nothing changed
    (tmp_path / "notes.md").write_text("mine")                   # --out naming a file: refused, the file kept
    with pytest.raises(CheckpointError, match=r"notes\.md is a file; a run needs a folder"):
        train_vqsvae(replace(cfg, out=str(tmp_path / "notes.md")))
    assert (tmp_path / "notes.md").read_text() == "mine"


# --- resuming with other settings ---------------------------------------------------------------
def _files(run) -> dict:
    return {p.name: p.read_bytes() for p in run.iterdir()}


def test_resume_refuses_a_changed_setting_and_names_both_values(tmp_path, tiny_checkpoint):
    from spiking_diffusion import CheckpointError

    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=1.0, **BASE)  # 4 steps of 16 images
    train_vqsvae(cfg)
    before = _files(tmp_path / "r")
    # the case: a step of 32 images read against a run of steps of 16
    with pytest.raises(CheckpointError) as err:
        train_vqsvae(replace(cfg, batch_size=32, epochs=2.0, resume=True))
    assert str(err.value).startswith(f"cannot resume {cfg.out}: --batch-size 32 differs from the run's 16")
    assert "\n" not in str(err.value)
    for change, says in [(dict(limit=48), "--limit 48 differs from the run's 64"),
                         (dict(seed=1), "--seed 1 differs from the run's 0"),
                         (dict(dataset="mnist"), "--dataset mnist differs from the run's synthetic"),
                         (dict(preset="small"), "--preset small differs from the run's tiny"),
                         (dict(weight_decay=0.0), "--weight-decay 0.0 differs from the run's 0.001"),
                         (dict(codebook_init="data"), "--codebook-init data differs from the run's normal"),
                         (dict(seed=2, batch_size=8), "--batch-size 8 differs from the run's 16; --seed 2 differs")]:
        with pytest.raises(CheckpointError, match="cannot resume") as err:
            train_vqsvae(replace(cfg, epochs=2.0, resume=True, **change))
        assert says in str(err.value), (change, str(err.value))
    assert _files(tmp_path / "r") == before                              # nothing changed
    prior = TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), epochs=0.5,
                        **{**BASE, "dataset": None})
    train_prior(prior)
    before = _files(tmp_path / "p")
    for change, says in [(dict(loss="elbo"), "--loss elbo differs from the run's reweighted_elbo"),
                         (dict(input_mode="embedding"), "--input-mode embedding differs from the run's index"),
                         (dict(limit=32), "--limit 32 differs from the run's 64")]:
        with pytest.raises(CheckpointError, match=says):
            train_prior(replace(prior, epochs=1.0, resume=True, **change))
    assert _files(tmp_path / "p") == before                              # the token cache too
    train_prior(replace(prior, input_mode="index", epochs=1.0, resume=True))  # the preset's own mode: the same run


def test_resumed_epochs_are_the_data_seen(tmp_path, capsys):
    from spiking_diffusion import CheckpointError

    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=1.0, **BASE)
    train_vqsvae(cfg)
    train_vqsvae(replace(cfg, epochs=2.0, resume=True))
    info = json.loads((tmp_path / "r" / "config.json").read_text())["info"]
    assert (info["steps"], info["epochs"]) == (8, 2.0)
    assert [r["step"] for r in _log(tmp_path / "r")] == list(range(1, 9))
    before = _files(tmp_path / "r")
    with pytest.raises(CheckpointError, match=r"--epochs 1.5 is 6 steps of 16 images, but the run has already "
                                              r"trained 8 steps \(epochs 2\); pass --epochs above 2"):
        train_vqsvae(replace(cfg, epochs=1.5, resume=True))
    capsys.readouterr()
    train_vqsvae(replace(cfg, epochs=2.0, resume=True))                  # a finished run: nothing to do
    assert "already trained 8 steps (epochs 2): nothing to do" in capsys.readouterr().out
    assert _files(tmp_path / "r") == before


def test_too_few_epochs_are_refused_before_the_tokens_are_made(tmp_path, tiny_checkpoint, capsys):
    """A resumed prior asked for fewer epochs than it has trained is refused at once, not after
    tokenising the whole training set (minutes for a T=16 VQ-SVAE on a large data set)."""
    from spiking_diffusion import CheckpointError

    cfg = TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), epochs=1.0,
                      **{**BASE, "dataset": None})
    train_prior(cfg)
    (tmp_path / "p" / "tokens_train.npz").unlink()
    with pytest.raises(CheckpointError, match=r"--epochs 0.5 is 2 steps of 16 images, but the run has already "
                                              r"trained 4"):
        train_prior(replace(cfg, epochs=0.5, resume=True))
    assert not (tmp_path / "p" / "tokens_train.npz").exists()            # refused before the tokens were made
    train_prior(replace(cfg, epochs=None, resume=True))                  # the run's own 1 epoch: done already
    assert "already trained 4 steps (epochs 1): nothing to do" in capsys.readouterr().out
    assert not (tmp_path / "p" / "tokens_train.npz").exists()            # said before the tokens were made


def test_resume_says_when_lr_and_ema_change(tmp_path, capsys):
    cfg = TrainConfig(stage="vqsvae", out=str(tmp_path / "r"), epochs=0.5, **BASE)
    train_vqsvae(cfg)
    capsys.readouterr()
    train_vqsvae(replace(cfg, epochs=1.0, lr=1e-4, ema=0.5, resume=True))
    out = capsys.readouterr().out
    assert "note: --lr 0.0001 replaces the run's 0.001 from step 2 on" in out
    assert "note: --ema 0.5 replaces the run's 0 from step 2 on (the average begins with this run's next step)" in out
    train_vqsvae(replace(cfg, epochs=1.5, lr=1e-4, ema=0.5, resume=True))
    assert "note" not in capsys.readouterr().out                          # the same settings: no note


def test_a_snapshot_from_before_per_process_states_resumes_exactly(tmp_path, tiny_checkpoint):
    """Runs started by the previous code (no rng.*.R keys, no world, a train_config without newer fields)
    still resume, exactly, on one process."""
    import spiking_diffusion.runs as runs_mod

    real = runs_mod.save_state

    def old_save(path, *args, **kwargs):  # what the previous code wrote
        real(path, *args, **kwargs)
        from safetensors import safe_open
        from safetensors.torch import save_file
        with safe_open(str(path), "pt") as f:
            info, tensors = json.loads(f.metadata()["json"]), {k: f.get_tensor(k) for k in f.keys()}
        tensors = {k: v for k, v in tensors.items() if not k.startswith(("rng.train.", "rng.torch."))}
        del info["world"], info["train_config"]["codebook_init"], info["steps_per_epoch"]
        save_file(tensors, str(path), metadata={"json": json.dumps(info)})

    cfg = TrainConfig(stage="prior", out="", vqsvae=str(tiny_checkpoint), **{**BASE, "dataset": None})
    runs_mod.save_state = old_save
    try:
        train_prior(replace(cfg, out=str(tmp_path / "split"), epochs=0.75, save_every=3))
    finally:
        runs_mod.save_state = real
    from safetensors import safe_open
    with safe_open(str(tmp_path / "split" / "training_state.safetensors"), "pt") as f:
        assert "rng.train.0" not in f.keys() and "world" not in json.loads(f.metadata()["json"])
    from spiking_diffusion import CheckpointError
    with pytest.raises(CheckpointError, match="has already trained 3 steps"):   # checked in the loop
        train_prior(replace(cfg, out=str(tmp_path / "split"), epochs=0.5, resume=True))
    train_prior(replace(cfg, out=str(tmp_path / "split"), epochs=1.5, save_every=3, resume=True))
    train_prior(replace(cfg, out=str(tmp_path / "one"), epochs=1.5, save_every=100))
    assert _same(_weights(tmp_path / "one"), _weights(tmp_path / "split"))


def test_threads_apply_before_tokenising(tmp_path, tiny_checkpoint, monkeypatch):
    """--threads holds from the start (tokenising, codebook init), not only in the training loop."""
    import spiking_diffusion.train as train

    seen = []
    real = train.tokenize
    monkeypatch.setattr(train, "tokenize", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cfg = TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), threads=1,
                          **{**BASE, "dataset": None, "epochs": 0.25})
        train_prior(cfg)
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


def test_resume_into_a_model_of_other_sizes_is_a_checkpoint_error(tmp_path):
    """A training state whose weights do not fit the model the run builds (e.g. another codebook size):
    a CheckpointError naming the file, not torch's raw size-mismatch traceback."""
    from spiking_diffusion import CheckpointError
    from spiking_diffusion.runs import load_state, save_state

    small, big = torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)
    gen = torch.Generator().manual_seed(0)
    save_state(tmp_path / "state.safetensors", small, torch.optim.AdamW(small.parameters()), 5, gen, meta={})
    with pytest.raises(CheckpointError, match=r"cannot resume: .*state\.safetensors does not match the model this run builds"):
        load_state(tmp_path / "state.safetensors", big, torch.optim.AdamW(big.parameters()), gen)


def test_tokens_of_a_codebook_beyond_int16_keep_their_ids():
    """tokenize kept token ids as int16 whatever the codebook: ids of a 40,000-code codebook above 32,767
    wrapped to negative numbers in the prior's token cache. They keep their value (int32); a small
    codebook still caches int16."""
    from spiking_diffusion.config import VQSVAEConfig
    from spiking_diffusion.train import tokenize
    from spiking_diffusion.vqsvae import VQSVAE

    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    for K, dtype in ((32, torch.int16), (40_000, torch.int32)):
        vq = VQSVAE(VQSVAEConfig(time_steps=2, hidden_channels=(4, 8), codebook_size=K, code_dim=4)).eval()
        with torch.no_grad():
            vq.quantizer.codebook.weight[:K - 100] += 100.0      # only the last 100 codes lie near the encoder's outputs
        tokens = tokenize(vq, images)
        assert tokens.dtype == dtype
        assert torch.equal(tokens.long(), vq.encode(images.float() / 255.0)) and int(tokens.min()) >= K - 100


def test_a_data_set_the_vqsvae_cannot_encode_is_refused_before_loading(tmp_path, tiny_checkpoint, capsys):
    # the tiny checkpoint encodes 1-channel images: CIFAR-10's 3 channels are refused before any data is
    # looked for (its root does not exist), by train-prior and train-decoder alike, and nothing is written
    for stage, run in (("prior", train_prior), ("decoder", train_decoder)):
        cfg = TrainConfig(stage=stage, out=str(tmp_path / stage), vqsvae=str(tiny_checkpoint), epochs=0.5,
                          **{**BASE, "dataset": "cifar10", "preset": None}, data_root=str(tmp_path / "none"))
        with pytest.raises(SettingError, match=r"--dataset cifar10 has 3-channel images, but .* encodes 1-channel ones "
                                               r"\(it was trained on synthetic\): leave --dataset out"):
            run(cfg)
        assert not (tmp_path / stage).exists()
    # another data set of the same channels is trained on, and the run says so before it looks for it
    cfg = TrainConfig(stage="prior", out=str(tmp_path / "m"), vqsvae=str(tiny_checkpoint), epochs=0.5,
                      **{**BASE, "dataset": "mnist", "preset": None}, data_root=str(tmp_path / "none"), download=False)
    with pytest.raises(Exception, match="MNIST"):
        train_prior(cfg)
    assert "was trained on synthetic; this run trains on mnist and its checkpoint records mnist" in capsys.readouterr().out
