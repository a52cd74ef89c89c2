"""A training run killed with SIGKILL at random moments and resumed each time ends exactly where an
uninterrupted run ends, and no file of the run folder is ever left half-written.

The run is a tiny prior (its training draws random masks and times, and it writes the token cache):
8 steps per epoch, 3 epochs, a snapshot at every step, so that much of its time goes into writing
files. Each kill lands at a seeded random moment after the process has started training (found by
watching log.jsonl grow), so kills hit steps and writes, not the interpreter's start. After every
kill the folder is checked: each file there loads completely and the log's lines are whole.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from spiking_diffusion import CheckpointError
from spiking_diffusion.checkpoint import load_checkpoint, read_config
from spiking_diffusion.runs import STATE_NAME
from spiking_diffusion.train import TrainConfig, train_prior

torch.set_num_threads(1)

ARGS = ["--preset", "tiny", "--limit", "64", "--batch-size", "8", "--epochs", "3", "--save-every", "1",
        "--log-every", "1", "--threads", "1", "--no-progress"]
STEPS = 24
KILLS = 3


def _log_lines(run) -> list[str]:
    path = run / "log.jsonl"
    return path.read_text().splitlines() if path.is_file() else []


def _check_folder(run) -> None:
    """Every file of the run folder is whole: it loads, to the last byte."""
    if (run / STATE_NAME).is_file():
        with safe_open(str(run / STATE_NAME), "pt") as f:
            info = json.loads(f.metadata()["json"])
            for k in f.keys():
                f.get_tensor(k)
        assert 1 <= info["step"] <= STEPS
    if (run / "config.json").is_file() or (run / "model.safetensors").is_file():
        try:
            load_checkpoint(run)
        except CheckpointError as e:   # killed between the checkpoint's two renames: each file whole, a pair refused
            assert "come from different saves" in str(e)
            read_config(run)
            with safe_open(str(run / "model.safetensors"), "pt") as f:
                [f.get_tensor(k) for k in f.keys()]
    if (run / "tokens_train.npz").is_file():
        with np.load(run / "tokens_train.npz") as z:
            assert z["tokens"].shape == (64, 7, 7) and str(z["digest"])
    for line in _log_lines(run):
        json.loads(line)


def _wait_for_training(proc, run, start_lines: int, deadline: float) -> bool:
    """Wait until the process has logged a step beyond ``start_lines`` lines; False if it ended first."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if len(_log_lines(run)) > start_lines:
            return True
        time.sleep(0.02)
    raise AssertionError("the training process did not start training within the time limit")


@pytest.mark.timeout(900)
def test_killed_and_resumed_run_ends_as_the_uninterrupted_one(tmp_path, tiny_checkpoint, subprocess_env):
    rng = random.Random(0)
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "spiking_diffusion", "train-prior", "--vqsvae", str(tiny_checkpoint),
               "--out", str(run), *ARGS]
    kills, launches = 0, 0
    while True:
        resume = ["--resume"] if (run / STATE_NAME).is_file() else []
        start_lines = len(_log_lines(run))
        proc = subprocess.Popen(command + resume, env=subprocess_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        launches += 1
        try:
            if kills < KILLS and _wait_for_training(proc, run, start_lines, time.monotonic() + 300):
                time.sleep(rng.uniform(0.0, 0.6))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode == -signal.SIGKILL:
            _check_folder(run)
            continue
        assert proc.returncode == 0, err[-3000:]
        break
    assert kills >= 1 and launches == kills + 1

    one = tmp_path / "one"
    cfg = TrainConfig(stage="prior", out=str(one), vqsvae=str(tiny_checkpoint), preset="tiny", limit=64,
                      batch_size=8, epochs=3.0, save_every=1, log_every=1, threads=1, progress=False)
    train_prior(cfg)
    _check_folder(run)
    a, b = load_file(str(one / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a, b = load_file(str(one / STATE_NAME)), load_file(str(run / STATE_NAME))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(line) for line in _log_lines(r)] for r in (one, run)]
    assert [r["step"] for r in logs[1]] == list(range(1, STEPS + 1))       # each step logged once
    assert [r["total"] for r in logs[0]] == [r["total"] for r in logs[1]]  # with the same losses
    info = json.loads((run / "config.json").read_text())["info"]
    assert (info["steps"], info["epochs"]) == (STEPS, 3.0)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
