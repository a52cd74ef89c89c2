"""A training run's folder and processes: what ``--resume`` needs and checks.

``training_state.safetensors`` (:data:`STATE_NAME`) holds the weights, the optimiser, the step, the
weight average and every process's random generators, in one file renamed into place; its metadata
records the run's :class:`~spiking_diffusion.train.TrainConfig`. :func:`check_run_folder` refuses,
before anything is written, a fresh run over a run or a checkpoint and a resumed run whose settings
would change what it trains on (:data:`RESUME_FIXED`), and fills the settings left unset (a resumed
run's own, else :data:`FRESH_DEFAULTS`). The rest joins torchrun's processes.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel

from .checkpoint import atomic_write_file, saved_files
from .config import CODEBOOK_INITS, PRESETS
from .devices import resolve_device
from .diffusion import LOSS_KINDS
from .errors import CheckpointError
from .sampling import torch_seed

if TYPE_CHECKING:  # only for the annotations: train.py imports this module
    from .train import TrainConfig

STATE_NAME = "training_state.safetensors"

# Settings a run may leave unset (None): a resumed run keeps its own, a fresh run takes these. So
# `--resume` alone goes on exactly as the run last went: its own epochs, batch, seed, data root, ... (a
# given --lr or --ema is said and changes the run; a given setting of RESUME_FIXED must be the run's own).
# Not among them, so given each time: --device, --threads, --save-every, --log-every, --time-limit.
FRESH_DEFAULTS = {"epochs": 1.0, "batch_size": 32, "lr": 1e-3, "ema": 0.0, "weight_decay": 1e-3, "seed": 0,
                  "loss": LOSS_KINDS[0], "codebook_init": CODEBOOK_INITS[0], "input_mode": None, "limit": None,
                  "data_root": "data", "download": True}


# What a resumed run must share with its snapshot, per stage: these settings decide what the run trains
# on and what one step is. TrainConfig field -> command-line flag. Left unset, each is the run's own.
# Free to change on --resume: --epochs (how far to go), --lr and --ema (said when they change),
# --vqsvae (train-prior says when the tokens change; train-decoder refuses other tokens), and where /
# how the run goes (--device, --threads, --data-root, --save-every, --log-every).
RESUME_FIXED = {
    "vqsvae": {"dataset": "--dataset", "limit": "--limit", "batch_size": "--batch-size", "seed": "--seed",
               "preset": "--preset", "weight_decay": "--weight-decay", "codebook_init": "--codebook-init"},
    "prior": {"dataset": "--dataset", "limit": "--limit", "batch_size": "--batch-size", "seed": "--seed",
              "preset": "--preset", "input_mode": "--input-mode", "loss": "--loss", "weight_decay": "--weight-decay"},
    "decoder": {"dataset": "--dataset", "limit": "--limit", "batch_size": "--batch-size", "seed": "--seed",
                "weight_decay": "--weight-decay"},
}


def world_size() -> int:
    """Processes in this run (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank (torchrun's RANK; 0 without torchrun): rank 0 writes and prints."""
    return int(os.environ.get("RANK", "0"))


def _setting(name: str, settings: dict):
    """A setting as it acts: an unset --input-mode is the preset's."""
    value = settings.get(name)
    if name == "input_mode" and value is None and settings.get("preset") in PRESETS:
        return PRESETS[settings["preset"]].denoiser.input_mode
    return value


def _snapshot_info(path: Path) -> dict:
    """The metadata of a training-state file (step, train_config, world, ...), without its tensors."""
    try:
        with safe_open(str(path), "pt") as f:
            return json.loads(f.metadata()["json"])
    except Exception as e:
        raise CheckpointError(f"cannot resume: {path} is unreadable ({e})") from None


def check_run_folder(cfg: TrainConfig, **defaults) -> tuple[TrainConfig, dict | None]:
    """Before anything is written: a fresh run must not overwrite a run or a checkpoint, and
    ``--resume`` must find a snapshot of the same stage, settings (:data:`RESUME_FIXED`) and number of
    processes. Returns ``cfg`` with its unset (None) settings filled, from the snapshot on a resumed
    run, else from :data:`FRESH_DEFAULTS` and ``defaults`` (a stage's own, e.g. ``preset``), and the
    snapshot's metadata (None for a fresh run). Raises :class:`CheckpointError` with one line naming
    each changed setting and both values."""
    resolve_device(cfg.device)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file; a run needs a folder (new, or a run's to --resume)")
    state = out / STATE_NAME
    defaults = {**FRESH_DEFAULTS, **defaults}
    if not cfg.resume:
        if state.is_file():  # never overwrite a run someone made
            raise CheckpointError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        made = saved_files(out)
        if made:             # nor a finished checkpoint (a bundled model, an import): its first snapshot would
            raise CheckpointError(f"{out} already holds a checkpoint ({', '.join(made)}) but no {STATE_NAME}; a new "
                                  "run would overwrite it: choose another --out (or, if it is a run stopped before its "
                                  "first snapshot was complete, remove the folder)")
        return _filled(cfg, defaults), None
    if not state.is_file():
        raise CheckpointError(f"--resume: no {STATE_NAME} in {out}")
    info = _snapshot_info(state)
    saved = info.get("train_config", {})
    cfg = _filled(cfg, {k: saved.get(k, v) for k, v in defaults.items()})
    stage = saved.get("stage")
    if stage and stage != cfg.stage:
        raise CheckpointError(f"cannot resume: {state} is a {stage} run, not a {cfg.stage} run")
    now = asdict(cfg)
    changed = []
    for name, flag in RESUME_FIXED[cfg.stage].items():
        if name not in saved:  # a snapshot older than the setting
            continue
        old, new = _setting(name, saved), _setting(name, now)
        if old != new:
            changed.append(f"{flag} {_show(new)} differs from the run's {_show(old)}")
    world, saved_world = world_size(), info.get("world")
    if saved_world is not None and saved_world != world:
        changed.append(f"{world} process(es) differ from the run's {saved_world} (each process has its own share of "
                       "a batch and its own random stream)")
    if changed:
        raise CheckpointError(f"cannot resume {out}: " + "; ".join(changed) + ". These settings decide what the run "
                              "trains on and what a step is: give the run's values, or train into a new --out")
    return cfg, info


def finished(cfg: TrainConfig, snapshot: dict | None) -> bool:
    """Before the data is loaded or tokenised: whether a resumed run has already trained the
    ``--epochs`` asked (it says so); fewer are refused (:func:`check_epochs`). False for a fresh
    run, and for a snapshot too old to record its steps per epoch (the loop checks those)."""
    if snapshot is None or not snapshot.get("steps_per_epoch"):
        return False
    return check_epochs(cfg, snapshot["steps_per_epoch"], snapshot["step"])


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The steps ``--epochs`` asks for, counted from the run's start (at least one)."""
    return max(1, int(round(cfg.epochs * steps_per_epoch)))


def check_epochs(cfg: TrainConfig, steps_per_epoch: int, done: int) -> bool:
    """Whether the ``done`` steps of a resumed run are the ``--epochs`` asked (said: nothing to do).
    Fewer are refused with :class:`CheckpointError` naming both. ``steps_per_epoch`` is the run's
    (a folder data set given another size under a new ``--data-root`` counts by the old one here)."""
    total = total_steps(cfg, steps_per_epoch)
    trained = f"has already trained {_steps(done)} (epochs {done / steps_per_epoch:g})"
    if total < done:
        raise CheckpointError(f"cannot resume {cfg.out}: --epochs {cfg.epochs:g} is {_steps(total)} of {cfg.batch_size} "
                              f"images, but the run {trained}; pass --epochs above {done / steps_per_epoch:g} to train on")
    if total == done and process_rank() == 0:
        print(f"{cfg.out} {trained}: nothing to do; pass a larger --epochs to train on")
    return total == done


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _filled(cfg: TrainConfig, values: dict) -> TrainConfig:
    """``cfg`` with each of ``values`` where ``cfg`` leaves it unset (None)."""
    return replace(cfg, **{k: v for k, v in values.items() if getattr(cfg, k) is None})


def _show(value) -> str:
    return "none" if value is None else str(value)


# --- distributed helpers ---------------------------------------------------------------------
def dist_setup(device: str):
    """Join the process group when launched by torchrun. Returns (rank, world, device)."""
    resolve_device(device)  # a missing device says so, before any process group waits on it
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1, torch.device(device)
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device(device)


def wrap_for_processes(model: nn.Module, world: int, dev: torch.device) -> nn.Module:
    """``model`` itself on one process; else wrapped in DistributedDataParallel (gradients averaged)."""
    if world == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


# --- the training-state file ---------------------------------------------------------------------
def gather_rng_states(gen: torch.Generator, world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(training generator, torch's global generator) states of every process, in rank order (all ranks
    must call this together)."""
    mine = (gen.get_state(), torch.get_rng_state())
    if world == 1:
        return [mine]
    states: list = [None] * world
    dist.all_gather_object(states, mine)
    return states


def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, gen: torch.Generator,
               meta: dict, ema: AveragedModel | None = None,
               rng_states: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
    """Write the training state: weights, optimiser, step, the weight average and every process's random
    generators (``rng.train.R`` / ``rng.torch.R`` for rank R; ``rng.train`` / ``rng.torch`` are rank 0's,
    as older snapshots hold them). One file, renamed into place."""
    rng_states = rng_states or [(gen.get_state(), torch.get_rng_state())]
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    opt_sd = opt.state_dict()
    for pid, st in opt_sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    for rank, (train_state, torch_state) in enumerate(rng_states):
        tensors[f"rng.train.{rank}"], tensors[f"rng.torch.{rank}"] = train_state, torch_state
    tensors["rng.train"], tensors["rng.torch"] = (s.clone() for s in rng_states[0])  # safetensors refuses shared memory
    info = {"step": step, "param_groups": opt_sd["param_groups"], "rng_device": gen.device.type,
            "world": len(rng_states), **meta}
    atomic_write_file(path, lambda f: save_file(tensors, f, metadata={"json": json.dumps(info)}))


def load_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
               ema: AveragedModel | None = None, expected_stage: str | None = None, rank: int = 0) -> dict:
    """Restore what :func:`save_state` wrote; process ``rank`` takes its own random generators."""
    try:
        with safe_open(str(path), "pt") as f:
            info = json.loads(f.metadata()["json"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"cannot resume: {path} is unreadable ({e})") from None
    stage = info.get("train_config", {}).get("stage")
    if expected_stage and stage and stage != expected_stage:
        raise CheckpointError(f"cannot resume: {path} is a {stage} run, not a {expected_stage} run")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if ema is not None and any(k.startswith("ema.") for k in tensors):  # else it starts from here
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as e:   # e.g. a --vqsvae with another codebook size than the run's
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(f"cannot resume: {path} does not match the model this run builds ({first}); "
                              "resume with the run's own settings, or start a new --out") from None
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    own = f"rng.train.{rank}" if f"rng.train.{rank}" in tensors else "rng.train" if rank == 0 else None
    if own is None:  # a multi-process snapshot from before per-rank states: only rank 0's stream was kept
        gen.manual_seed(torch_seed(gen.initial_seed() + info["step"]))
        print(f"note: {path} holds no random state for process {rank} (written before per-process states); "
              "it goes on with a fresh random stream (the run is no longer bit-for-bit the one-go run)")
    elif info.get("rng_device", "cpu") == gen.device.type:  # snapshots before this key were all CPU runs
        gen.set_state(tensors[own])
        torch.set_rng_state(tensors[own.replace("train", "torch")])
    else:  # saved on another device (CPU <-> CUDA): that generator's stream cannot go on here
        gen.manual_seed(torch_seed(gen.initial_seed() + info["step"]))
        torch.set_rng_state(tensors[own.replace("train", "torch")])
        print(f"note: {path} was saved on another device; training goes on with a fresh random stream "
              "(the weights and optimiser carry over, the run is no longer bit-for-bit the one-go run)")
    return info
