"""Distributed training: two CPU processes (DistributedDataParallel, gloo) stay in sync and write one
checkpoint."""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from spiking_diffusion.checkpoint import load_checkpoint

WORKER = Path(__file__).resolve().parent / "_ddp_worker.py"


def _param_hash(module: torch.nn.Module) -> str:   # the same hash as the worker's
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(tmp_path, subprocess_env, python_exe, *args: str) -> list[str]:
    """The two ranks are started the way ``torchrun --standalone --nproc_per_node 2`` starts them (the
    env:// variables), without the launcher process: one interpreter fewer on a small machine."""
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**subprocess_env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}
        procs.append(subprocess.Popen([python_exe, str(WORKER), str(tmp_path), *args], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=360) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in results]


@pytest.mark.timeout(400)
def test_two_processes_stay_in_sync(tmp_path, subprocess_env, python_exe):
    outs = _run_two_ranks(tmp_path, subprocess_env, python_exe)
    assert "prior: " in outs[0] and "steps at" not in outs[1]                 # the run's last line, said once
    reports = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [rep["rank"] for rep in reports] == [0, 1] and all(rep["world"] == 2 for rep in reports)
    assert reports[0]["vqsvae"] == reports[1]["vqsvae"]
    assert reports[0]["prior"] == reports[1]["prior"]

    # one checkpoint per stage (written by rank 0), holding the synchronised weights
    for stage in ("vq", "prior"):
        for name in ("config.json", "model.safetensors", "training_state.safetensors", "log.jsonl"):
            assert (tmp_path / stage / name).is_file(), (stage, name)
        log = [json.loads(line) for line in (tmp_path / stage / "log.jsonl").read_text().splitlines()]
        assert [rec["step"] for rec in log] == [1, 2]                    # logged once, by rank 0
        shares = [rep["totals"]["vqsvae" if stage == "vq" else "prior"] for rep in reports]   # each rank's share's loss
        assert shares[0] != shares[1]                                    # the global batch's: their mean, not rank 0's
        assert [rec["total"] for rec in log] == pytest.approx([(a + b) / 2 for a, b in zip(*shares)], rel=1e-6)
    vq, _, _ = load_checkpoint(tmp_path / "vq")
    _, den, config = load_checkpoint(tmp_path / "prior")
    assert _param_hash(vq) == reports[0]["vqsvae"]
    assert _param_hash(den) == reports[0]["prior"]
    assert config["info"]["steps"] == 2 and config["info"]["batch_size"] == 16


@pytest.mark.timeout(400)
def test_two_processes_resume_exactly(tmp_path, subprocess_env, python_exe, tiny_checkpoint):
    """A 2-process prior run stopped after epoch 1 and resumed ends bit-identical to one never stopped:
    each process gets its own random stream (masks and times) back, not rank 0's."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from spiking_diffusion import CheckpointError
    from spiking_diffusion.train import TrainConfig, train_prior

    _run_two_ranks(tmp_path, subprocess_env, python_exe, "resume", str(tiny_checkpoint))
    one, split = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("one", "split"))
    assert one.keys() == split.keys() and all(torch.equal(one[k], split[k]) for k in one)
    states = [load_file(str(tmp_path / name / "training_state.safetensors")) for name in ("one", "split")]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # optimiser and both random streams too
    assert not torch.equal(states[0]["rng.train.0"], states[0]["rng.train.1"])
    logs = [[json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
            for name in ("one", "split")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4] and [r["total"] for r in logs[0]] == [r["total"] for r in logs[1]]
    with safe_open(str(tmp_path / "split" / "training_state.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["json"])["world"] == 2
    # one process cannot go on with a 2-process run's streams: refused, naming both counts
    with pytest.raises(CheckpointError, match=r"1 process\(es\) differ from the run's 2"):
        train_prior(TrainConfig(stage="prior", out=str(tmp_path / "split"), vqsvae=str(tiny_checkpoint), preset="tiny",
                                limit=32, batch_size=16, epochs=3.0, progress=False, resume=True))
