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


@pytest.mark.timeout(400)
def test_two_processes_stay_in_sync(tmp_path, subprocess_env, python_exe):
    """The two ranks are started the way ``torchrun --standalone --nproc_per_node 2`` starts them (the
    env:// variables), without the launcher process: one interpreter fewer on a small machine."""
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**subprocess_env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}
        procs.append(subprocess.Popen([python_exe, str(WORKER), str(tmp_path)], env=env, cwd=tmp_path,
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
    vq, _, _ = load_checkpoint(tmp_path / "vq")
    _, den, config = load_checkpoint(tmp_path / "prior")
    assert _param_hash(vq) == reports[0]["vqsvae"]
    assert _param_hash(den) == reports[0]["prior"]
    assert config["info"]["steps"] == 2 and config["info"]["batch_size"] == 16
