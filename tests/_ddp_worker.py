"""Worker for tests/test_ddp.py: one rank of a 2-process run (env:// variables as torchrun sets them).

Trains both stages on the synthetic set (tiny preset, gloo on CPU), then each rank writes
``OUT/rank{R}.json`` with the world size and a hash of its own parameters after each stage, so
the test can check that the processes stayed in sync.
Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_ddp_worker.py OUT
(the test starts the two ranks itself, with MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE set).

``_ddp_worker.py OUT resume VQSVAE``: the prior on VQSVAE's tokens trained for 2 epochs in one go
(``OUT/one``), and for 1 epoch, stopped, then resumed to 2 epochs (``OUT/split``).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import spiking_diffusion.train as train


def param_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    models = []
    real_loop = train._loop

    totals = {}                              # stage -> this process's loss at each step (its share)

    def loop(cfg, model, *args, **kwargs):   # keep each stage's model to hash it afterwards
        models.append(model)
        forward, mine = model.forward, totals.setdefault(cfg.stage, [])

        def recorded(*a):
            losses = forward(*a)
            mine.append(float(losses["total"].detach()))
            return losses
        model.forward = recorded
        return real_loop(cfg, model, *args, **kwargs)

    train._loop = loop
    common = dict(preset="tiny", limit=32, batch_size=16, epochs=1.0, progress=False, log_every=1, save_every=100)
    train.train_vqsvae(train.TrainConfig(stage="vqsvae", out=str(out / "vq"), dataset="synthetic", **common))
    train.train_prior(train.TrainConfig(stage="prior", out=str(out / "prior"), vqsvae=str(out / "vq"), **common))
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {"rank": rank, "world": world, "vqsvae": param_hash(models[0]), "prior": param_hash(models[1].denoiser),
              "totals": totals}
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


def resume(out: Path, vqsvae: str) -> None:
    torch.set_num_threads(1)
    common = dict(stage="prior", vqsvae=vqsvae, preset="tiny", limit=32, batch_size=16, progress=False,
                  log_every=1, save_every=100)
    train.train_prior(train.TrainConfig(out=str(out / "one"), epochs=2.0, **common))
    train.train_prior(train.TrainConfig(out=str(out / "split"), epochs=1.0, **common))
    torch.rand(10 + 7 * dist.get_rank())                                  # whatever ran in between
    train.train_prior(train.TrainConfig(out=str(out / "split"), epochs=2.0, resume=True, **common))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[2:3] == ["resume"]:
        resume(Path(sys.argv[1]), sys.argv[3])
    else:
        main(Path(sys.argv[1]))
