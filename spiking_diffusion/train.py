"""Training for both stages, on one process or many (torchrun + DistributedDataParallel).

A run directory ``--out DIR`` holds the model checkpoint (config.json + model.safetensors, usable
at once), ``training_state.safetensors`` (weights, optimiser, step, RNG, the weight average: what
``--resume`` needs, one file renamed into place; see :mod:`.runs`, which also checks a resumed
run's settings and joins torchrun's processes) and ``log.jsonl`` (one line of losses per logged step).
With ``--ema DECAY`` the checkpoint holds an exponential moving average of the weights (and of the
BatchNorm statistics), the usual trick for diffusion models; the raw weights stay in the state.
Stage 2 also caches the training set's tokens in ``tokens_train.npz``. ``train_decoder`` goes on
training a checkpoint's spike generator and decoder with its encoder and codebook frozen.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .checkpoint import (TOKEN_METRICS, VQSVAE_METRICS, atomic_write_file, copy_code_usage, load_checkpoint,
                         load_checkpoint_with_guide, remove_partial_writes, save_checkpoint)
from .config import DEFAULT_PRESET, check_codebook_init, get_preset
from .data import channels_of, load_images
from .devices import check_threads, use_threads
from .denoiser import SpikingDenoiser
from .diffusion import AbsorbingDiffusion, check_loss_kind
from .errors import CheckpointError, Setting, SettingError, SpikingDiffusionError, check_fields
from .sampling import SEED, torch_seed
from . import runs
from .spiking import reset
from .transfer import align_codes, check_transferable, layer_differences, transfer_prior
from .vqsvae import VQSVAE


# the accepted range of each numeric training setting (None, where allowed, is checked by the run:
# a resumed run's own value, else runs.FRESH_DEFAULTS'), named by its command-line flag
TRAIN_BOUNDS = {s.name: s for s in (
    Setting("epochs", float, 0, None, "--epochs", open_lo=True),
    Setting("batch_size", int, 1, None, "--batch-size"),
    Setting("lr", float, 0, None, "--lr", open_lo=True),
    Setting("ema", float, 0, 1, "--ema", open_hi=True),            # 0: no average
    Setting("weight_decay", float, 0, None, "--weight-decay"),
    Setting("seed", int, 0, SEED.hi, "--seed"),
    Setting("limit", int, 1, None, "--limit"),
    Setting("save_every", int, 1, None, "--save-every"),
    Setting("log_every", int, 1, None, "--log-every"),
)}


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in the checkpoint's info."""

    stage: str                     # "vqsvae", "prior" or "decoder"
    out: str
    # A setting left None is a resumed run's own, else runs.FRESH_DEFAULTS' (dataset and preset: the stage's).
    dataset: str | None = None     # default: mnist (stage 1), the VQ-SVAE's data set (stage 2)
    data_root: str | None = None   # default "data"
    download: bool | None = None   # default True: torchvision may download the data set
    preset: str | None = None      # default: small (stage 1), the --vqsvae checkpoint's (stage 2); unused by "decoder"
    input_mode: str | None = None  # denoiser input: "index" (paper) or "embedding" (default: the preset's)
    vqsvae: str | None = None      # stage 2 and "decoder": the trained VQ-SVAE checkpoint
    epochs: float | None = None    # how far to train, counted from the run's start (default 1)
    batch_size: int | None = None  # global batch (split over processes; default 32)
    lr: float | None = None        # default 1e-3; a given one changes a resumed run from its step on
    ema: float | None = None       # decay of the weight average saved as the checkpoint; 0: off (default, as lr)
    weight_decay: float | None = None  # default 1e-3
    loss: str | None = None        # default "reweighted_elbo", the authors'
    codebook_init: str | None = None  # "normal" (the paper's, default) or "data": see config.CODEBOOK_INITS
    seed: int | None = None        # default 0
    device: str = "cpu"
    limit: int | None = None       # use only the first N training images (default: all)
    save_every: int = 500          # steps between snapshots
    log_every: int = 50
    resume: bool = False
    progress: bool = True
    threads: int | None = None
    init_from: str | None = None   # prior: start from this trained prior, renumbered to our codes (transfer.py)
    time_limit: float | None = None  # minutes of training in this process; then a snapshot and a clean stop

    def __post_init__(self):       # refused when made, before any data is loaded or tokenised
        check_fields(self, TRAIN_BOUNDS)
        if self.loss is not None:
            check_loss_kind(self.loss)
        if self.codebook_init is not None:
            check_codebook_init(self.codebook_init)
        self.threads = check_threads(self.threads)
        t = self.time_limit
        if t is not None and (isinstance(t, bool) or not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0)):
            raise SettingError(f"the time limit must be a positive number of minutes (e.g. 30), not {t!r}")


# --- the loop ----------------------------------------------------------------------------------
class _PriorObjective(nn.Module):
    """Wraps the denoiser so DDP sees the diffusion loss as one forward pass."""

    def __init__(self, denoiser: SpikingDenoiser, kind: str):
        super().__init__()
        self.denoiser = denoiser
        self.diffusion = AbsorbingDiffusion(denoiser.cfg.codebook_size, denoiser.cfg.latent_size,
                                            denoiser.cfg.num_diffusion_steps)
        self.kind = kind

    def forward(self, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        loss = self.diffusion.loss(self.denoiser, x0, self.kind, generator)
        return {"total": loss}


class _DecoderObjective(nn.Module):
    """The VQ-SVAE's losses with the encoder and codebook frozen and in eval mode, as at inference:
    every image keeps its tokens, so a prior trained on them stays valid. Trains the ASG + decoder."""

    def __init__(self, vqsvae: VQSVAE):
        super().__init__()
        self.vqsvae = vqsvae
        for frozen in (vqsvae.encoder, vqsvae.quantizer):
            frozen.requires_grad_(False)

    def train(self, mode: bool = True) -> "_DecoderObjective":
        super().train(mode)
        self.vqsvae.encoder.eval()    # BatchNorm keeps its running statistics: the tokens stay put
        self.vqsvae.quantizer.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vqsvae.losses(images)


def _batches(n: int, batch: int, rank: int, world: int, seed: int, epoch: int):
    """Index batches of one epoch, identical on every process, each process taking its share."""
    g = torch.Generator().manual_seed(torch_seed(seed * 100003 + epoch))
    perm = torch.randperm(n, generator=g)
    per = batch // world
    for i in range(n // batch):
        yield perm[i * batch + rank * per: i * batch + (rank + 1) * per]


def _loop(cfg: TrainConfig, model: nn.Module, data: torch.Tensor, to_input, save_model, meta: dict,
          snap: dict | None):
    """Generic loop: ``data`` [N, ...] on CPU, ``to_input(batch)`` -> model input on device;
    ``save_model(step, trained)`` writes the checkpoint of ``trained`` (the model or its average);
    ``snap``: the snapshot :func:`.runs.check_run_folder` found to resume (None: a fresh run)."""
    rank, world, dev = runs.dist_setup(cfg.device)
    if cfg.batch_size % world:
        raise SpikingDiffusionError(f"--batch-size {cfg.batch_size} must be divisible by the {world} processes")
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    model.to(dev)
    gen = torch.Generator(device=dev).manual_seed(torch_seed(cfg.seed * 7919 + rank))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    steps_per_epoch = len(data) // cfg.batch_size
    if steps_per_epoch == 0:
        raise SpikingDiffusionError(f"{len(data)} training images are fewer than one batch of {cfg.batch_size}")
    total = runs.total_steps(cfg, steps_per_epoch)
    step = 0
    log_path = out / "log.jsonl"
    if snap is not None:
        done = snap["step"]
        if runs.check_epochs(cfg, steps_per_epoch, done):  # a snapshot older than "steps_per_epoch" is checked here
            return done, 0.0
        saved = snap.get("train_config", {})
        step = runs.load_state(out / runs.STATE_NAME, model, opt, gen, ema, cfg.stage, rank)["step"]
        old_lr = opt.param_groups[0]["lr"]
        for group in opt.param_groups:  # the same --lr continues the run exactly; another one changes it
            group["lr"] = cfg.lr
        if rank == 0 and old_lr != cfg.lr:
            print(f"note: --lr {cfg.lr:g} replaces the run's {old_lr:g} from step {step} on (on purpose: "
                  "the run is no longer the one it would have been)")
        if rank == 0 and saved.get("ema", cfg.ema) != cfg.ema:
            print(f"note: --ema {cfg.ema:g} replaces the run's {saved['ema']:g} from step {step} on"
                  + (" (the average begins with this run's next step)" if not saved["ema"] else ""))
    if rank == 0 and log_path.is_file():
        # drop log lines past the snapshot we resume from (a fresh run: the lines of a run stopped before
        # its first snapshot), so that each step is logged once
        lines = [l for l in log_path.read_text().splitlines() if _logged_step(l) <= step]
        atomic_write_file(log_path, lambda f: Path(f).write_text("".join(l + "\n" for l in lines)))
    ddp = runs.wrap_for_processes(model, world, dev)
    model.train()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_partial_writes(out)  # left by a process killed while writing
    bar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, desc=f"train {cfg.stage}", unit="step", dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0

    def snapshot():
        rng_states = runs.gather_rng_states(gen, world)  # every process's generators, gathered on every process
        if rank != 0:
            return
        model.eval()
        save_model(step, ema.module if ema is not None else model)
        runs.save_state(out / runs.STATE_NAME, model, opt, step, gen,
                        {"train_config": asdict(cfg), "steps_per_epoch": steps_per_epoch, **meta}, ema, rng_states)
        model.train()

    out_of_time = False
    while step < total and not out_of_time:
        epoch, skip = divmod(step, steps_per_epoch)
        for i, idx in enumerate(_batches(len(data), cfg.batch_size, rank, world, cfg.seed, epoch)):
            if i < skip:
                continue
            losses = ddp(*to_input(data[idx].to(dev), gen))
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            seen += cfg.batch_size
            out_of_time = step < total and _past(cfg.time_limit, t0, world, dev)
            if step % cfg.log_every == 0 or step == total or out_of_time:
                logged = _mean_over_processes(losses, world)   # (every process takes part)
                if rank == 0:
                    rec = {"step": step, "epoch": step / steps_per_epoch,
                           "images_per_s": seen / (time.perf_counter() - t0), **logged}
                    with open(log_path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
            if rank == 0:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}")
            if step % cfg.save_every == 0 or step == total or out_of_time:
                snapshot()
            if out_of_time and rank == 0:
                (bar.write if bar is not None else print)(
                    f"time limit of {cfg.time_limit:g} min reached at step {step} (epoch {step / steps_per_epoch:.2f} "
                    f"of {cfg.epochs:g}): snapshot written; go on with --resume")
            if step >= total or out_of_time:
                break
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
    return step, seen / max(time.perf_counter() - t0, 1e-9)


def _mean_over_processes(losses: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """One step's losses (each a scalar over this process's share of the batch) averaged over the
    processes: the global batch's, as log.jsonl records them. Every process must call it."""
    values = torch.stack([v.detach().float() for v in losses.values()])                  # [L]
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip(losses, values.tolist()))


def _past(limit_min: float | None, t0: float, world: int, dev: torch.device) -> bool:
    """Whether ``limit_min`` minutes have passed since ``t0``; every process gets rank 0's answer, so
    all of them stop after the same step."""
    if limit_min is None:
        return False
    past = time.perf_counter() - t0 > 60.0 * limit_min
    if world == 1:
        return past
    flag = torch.tensor([float(past)], device=dev)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _logged_step(line: str) -> float:
    """The step of one log.jsonl line; a line cut short (a crash while appending it) counts as past any step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def _info(cfg: TrainConfig, step: int, steps_per_epoch: int, extra: dict | None = None) -> dict:
    return {"dataset": cfg.dataset, "preset": cfg.preset, "steps": step,
            "epochs": round(step / steps_per_epoch, 3), "batch_size": cfg.batch_size,
            "seed": cfg.seed, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {})}


def train_vqsvae(cfg: TrainConfig) -> Path:
    """Stage 1: train the VQ-SVAE on ``cfg.dataset``; writes a VQ-SVAE-only checkpoint to cfg.out."""
    use_threads(cfg.threads)  # before any work (tokenising, codebook init), not only in the loop
    cfg, snapshot = runs.check_run_folder(cfg, preset=DEFAULT_PRESET, dataset="mnist")  # before anything is loaded
    if runs.finished(cfg, snapshot):
        return Path(cfg.out)
    data = load_images(cfg.dataset, cfg.data_root, train=True, download=cfg.download, limit=cfg.limit)
    preset = get_preset(cfg.preset, in_channels=channels_of(cfg.dataset) if cfg.dataset != "synthetic" else 1)
    vq_cfg = replace(preset.vqsvae, data_variance=data.variance())
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    model = VQSVAE(vq_cfg)
    if cfg.codebook_init == "data" and not cfg.resume:
        init_codebook_from_data(model, data.floats(slice(0, 1024)), cfg.seed)
    spe = len(data) // cfg.batch_size

    def save_model(step, trained: VQSVAE):
        save_checkpoint(cfg.out, trained, None, _info(cfg, step, spe, {"stage": "vqsvae", "ema": cfg.ema}))
        copy_code_usage(None, cfg.out)                            # new tokens: no older usage describes them

    step, speed = _loop(cfg, model, data.images, lambda x, g: (x.float() / 255.0,), save_model, {}, snapshot)
    if runs.process_rank() == 0:     # one line for the run, not one per process
        print(f"VQ-SVAE: {step} steps at {speed:.1f} images/s -> {cfg.out}")
    return Path(cfg.out)


@torch.no_grad()
def init_codebook_from_data(model: VQSVAE, images: torch.Tensor, seed: int) -> None:
    """Set the codebook to K distinct dual-coded encoder outputs of ``images [n,C,H,W]``.

    Against codebook collapse: codes drawn from N(0,1) mostly lie far from the encoder's
    non-negative outputs and are never chosen. Deterministic for a seed, so DDP ranks agree.
    Only the codebook changes (BatchNorm statistics are restored).
    """
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    z = model.quantizer.dual_code(model.encoder(images))                  # [n, D, h, w]
    reset(model)
    rows = torch.unique(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=0)  # [u, D]
    g = torch.Generator().manual_seed(seed)
    K = model.cfg.codebook_size
    pick = rows[torch.randperm(len(rows), generator=g)[:K]]
    if len(pick) < K:  # fewer distinct outputs than codes: jitter copies
        extra = pick[torch.randint(len(pick), (K - len(pick),), generator=g)]
        pick = torch.cat([pick, extra + 0.01 * torch.randn(extra.shape, generator=g)])
    saved["quantizer.codebook.weight"] = pick.clone()
    model.load_state_dict(saved)


@torch.inference_mode()
def tokenize(vqsvae: VQSVAE, images: torch.Tensor, batch: int = 256, device="cpu") -> torch.Tensor:
    """uint8 images ``[N,C,H,W]`` -> tokens ``[N,h,w]``: int16 to keep the cache small, int32 for a
    codebook of more than 32,768 codes (whose ids int16 would wrap to negative numbers)."""
    out = [vqsvae.encode(images[i:i + batch].to(device).float() / 255.0).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).to(torch.int16 if vqsvae.cfg.codebook_size <= 2**15 else torch.int32)


def _state_digest(modules, salt: str = "") -> str:
    """A digest of exactly these modules' tensors (BatchNorm's batch counter, which an EMA may round,
    plays no part in evaluation)."""
    h = hashlib.sha1(salt.encode())
    for part in modules:
        for k, v in part.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _token_digest(vqsvae: VQSVAE) -> str:
    """A digest of what decides a VQ-SVAE's tokens: its time steps, membrane decay, and exactly its
    encoder and quantizer tensors. A re-save, or a decoder trained on (``train-decoder``), keeps it."""
    return _state_digest((vqsvae.encoder, vqsvae.quantizer), f"{vqsvae.cfg.time_steps}-{vqsvae.cfg.membrane_decay}")


def _save_tokens(path: str, tokens: torch.Tensor, digest: str) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add .npz to a name
        np.savez(f, tokens=tokens.numpy(), digest=digest)


def _check_dataset_fits(vqsvae: VQSVAE, dataset: str, trained_on: str | None, source: str) -> None:
    """Refuse a data set whose images the VQ-SVAE of ``source`` cannot encode (another channel count),
    before anything is loaded, and say so when it is another data set than the one it was trained on
    (``trained_on``; the new checkpoint's info records ``dataset``). Raises :class:`SettingError`."""
    if channels_of(dataset) != vqsvae.cfg.in_channels:
        raise SettingError(f"--dataset {dataset} has {channels_of(dataset)}-channel images, but {source}'s VQ-SVAE "
                           f"encodes {vqsvae.cfg.in_channels}-channel ones (it was trained on {trained_on or 'unknown data'}): "
                           "leave --dataset out to use its own data set")
    if trained_on and dataset != trained_on and runs.process_rank() == 0:
        print(f"note: {source}'s VQ-SVAE was trained on {trained_on}; this run trains on {dataset} and its "
              f"checkpoint records {dataset}")


def train_prior(cfg: TrainConfig) -> Path:
    """Stage 2: tokenise the training set with the VQ-SVAE (cached), train the denoiser, and write a
    full checkpoint (VQ-SVAE + denoiser) to cfg.out."""
    use_threads(cfg.threads)  # before any work (tokenising, codebook init), not only in the loop
    if not cfg.vqsvae:
        raise SpikingDiffusionError("train-prior needs --vqsvae DIR (a trained VQ-SVAE checkpoint)")
    vqsvae, _, vq_config = load_checkpoint(cfg.vqsvae, cfg.device)
    own_preset = vq_config["info"].get("preset") or DEFAULT_PRESET  # a full checkpoint's: its prior's
    inherited = cfg.preset is None
    cfg, snapshot = runs.check_run_folder(cfg, preset=own_preset,  # before the cache is written
                                          dataset=vq_config["info"].get("dataset") or "mnist")
    if runs.finished(cfg, snapshot):
        return Path(cfg.out)
    dataset = cfg.dataset
    _check_dataset_fits(vqsvae, dataset, vq_config["info"].get("dataset"), cfg.vqsvae)
    if inherited and snapshot is None and runs.process_rank() == 0:
        print(f"note: the denoiser takes the preset of {cfg.vqsvae}: {cfg.preset} (pass --preset to choose)")
    if snapshot is not None:          # --init-from only starts a run: a resumed run keeps the one it began with
        began = snapshot.get("train_config", {}).get("init_from")
        if cfg.init_from and cfg.init_from != began and runs.process_rank() == 0:
            print(f"note: --init-from {cfg.init_from} is ignored: {cfg.out} resumes from its snapshot")
        cfg = replace(cfg, init_from=began)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "tokens_train.npz"
    digest = f"{_token_digest(vqsvae)}-{dataset}-{cfg.limit}"
    cached = np.load(cache) if cache.is_file() else None
    data = None                       # the training images, loaded only when needed
    if cached is not None and str(cached["digest"]) == digest:
        tokens = torch.from_numpy(cached["tokens"])
    else:
        data = load_images(dataset, cfg.data_root, train=True, download=cfg.download, limit=cfg.limit)
        tokens = tokenize(vqsvae, data.images, device=cfg.device)
        if cfg.resume and cached is not None and not np.array_equal(cached["tokens"], tokens.numpy()):
            print(f"note: --vqsvae {cfg.vqsvae} gives other tokens than the run's cache: the prior goes on "
                  "training on the new ones")  # same tokens (e.g. after train-decoder): nothing changes
        if runs.process_rank() == 0:  # one writer when several processes share the run folder
            atomic_write_file(cache, lambda f: _save_tokens(f, tokens, digest))
    preset = get_preset(cfg.preset, input_mode=cfg.input_mode)
    L = vqsvae.cfg.latent_size      # the paper's N: one diffusion step per latent cell (49 for 7x7)
    den_cfg = replace(preset.denoiser, codebook_size=vqsvae.cfg.codebook_size, latent_size=L, num_diffusion_steps=L * L)
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    denoiser = SpikingDenoiser(den_cfg)
    start = {}  # where the weights began: in the checkpoint's info and the snapshot's metadata
    if cfg.init_from:
        start["init_from"] = str(cfg.init_from)
        if snapshot is None:
            start["init_code_purity"] = _start_from_prior(denoiser, vqsvae, cfg, tokens, data)
        elif "init_code_purity" in snapshot:  # a resumed run's weights come from its snapshot
            start["init_code_purity"] = snapshot["init_code_purity"]
    objective = _PriorObjective(denoiser, cfg.loss)
    spe = len(tokens) // cfg.batch_size
    src = vq_config["info"]  # a full checkpoint (e.g. from train-decoder) keeps its VQ-SVAE's record under vqsvae_*
    own = {k[7:]: v for k, v in src.items() if k.startswith("vqsvae_")} if src.get("stage") == "prior" else src
    later = src if own is not src else {}     # a full checkpoint's decoder training after its prior, added
    vq_info = {f"vqsvae_{k}": own.get(k, 0) + later.get(k, 0) for k in ("decoder_steps", "decoder_epochs")
               if k in own or k in later}
    vq_info.update({f"vqsvae_{k}": v for k, v in own.items() if k in ("steps", "epochs", "preset")})
    # the VQ-SVAE's own figures only: a full checkpoint's sample figures belong to its old prior
    vq_metrics = {k: v for k, v in vq_config.get("metrics", {}).items() if k in VQSVAE_METRICS}

    def save_model(step, trained: _PriorObjective):
        save_checkpoint(cfg.out, vqsvae, trained.denoiser, _info(cfg, step, spe, {"stage": "prior", "ema": cfg.ema, **start, **vq_info}),
                        vq_metrics)
        copy_code_usage(cfg.vqsvae, cfg.out)                      # the VQ-SVAE's tokens, so their usage

    step, speed = _loop(cfg, objective, tokens, lambda x, g: (x.long(), g), save_model, start, snapshot)
    if runs.process_rank() == 0:
        print(f"prior: {step} steps at {speed:.1f} images/s -> {cfg.out}")
    return out


def _start_from_prior(denoiser: SpikingDenoiser, vqsvae: VQSVAE, cfg: TrainConfig, tokens: torch.Tensor,
                      data=None) -> float:
    """``--init-from``: write the other prior's weights into ``denoiser``. Returns the alignment's
    purity (the share of cells whose old code is the most frequent one for their new code).

    - A donor on this run's VQ-SVAE (the same encoder and quantizer, so the same tokens: a finished
      run trained on at another learning rate, even after ``train-decoder``) must have the same
      layers; its weights are copied as they are, whatever its input mode (purity 1).
    - A donor on another VQ-SVAE: the same training images (``data``, loaded here when the run's
      tokens came from its cache) are tokenised with its VQ-SVAE, and its weights are renumbered to
      our codes (see :mod:`.transfer`; embedding input only).
    Raises ``SpikingDiffusionError`` when the donor holds no prior or its layers do not fit."""
    device = cfg.device if runs.world_size() == 1 else "cpu"   # each rank does this before it has its own device
    old_vq, old_den, old_config = load_checkpoint(cfg.init_from, device)
    if old_den is None:
        raise SpikingDiffusionError(f"--init-from {cfg.init_from} holds no prior (a VQ-SVAE only); give a full checkpoint")
    if same_tokens(old_vq, vqsvae):
        differ = layer_differences(old_den.cfg, denoiser.cfg)
        if differ:
            raise SpikingDiffusionError(
                f"--init-from {cfg.init_from} is a prior on this VQ-SVAE, but its {', '.join(differ)} differ from this "
                "run's: give the --preset and --input-mode it was trained with")
        denoiser.load_state_dict(old_den.state_dict())
        if runs.process_rank() == 0:
            print(f"prior starts from {cfg.init_from}: a prior on the same tokens, its weights as they are")
        return 1.0
    check_transferable(old_den.cfg, denoiser.cfg)          # before the slow tokenising
    other = old_config["info"].get("dataset")
    if other and other != cfg.dataset and runs.process_rank() == 0:
        print(f"note: --init-from {cfg.init_from} was trained on {other}, this run on {cfg.dataset}: its codes "
              "are aligned on this run's images all the same")
    if data is None:
        data = load_images(cfg.dataset, cfg.data_root, train=True, download=cfg.download, limit=cfg.limit)
    old_tokens = tokenize(old_vq, data.images, device=device)                         # [N, h, w]
    alignment = align_codes(tokens, old_tokens, denoiser.cfg.codebook_size, old_den.cfg.codebook_size)
    transfer_prior(old_den.cpu(), denoiser, alignment)
    if runs.process_rank() == 0:
        print(f"prior starts from {cfg.init_from}: codes aligned on {len(tokens)} training images "
              f"(purity {alignment.purity:.3f})")
    return round(alignment.purity, 4)


def same_tokens(a: VQSVAE, b: VQSVAE) -> bool:
    """Whether two VQ-SVAEs tokenise alike (the same :func:`_token_digest`)."""
    return _token_digest(a) == _token_digest(b)


def train_decoder(cfg: TrainConfig) -> Path:
    """Go on training the spike generator + decoder of checkpoint ``cfg.vqsvae`` with its encoder
    and codebook frozen (tokens unchanged, so its prior, if any, is kept as it is); writes the
    checkpoint, with the same denoiser and info plus ``decoder_steps`` / ``decoder_epochs``, to cfg.out."""
    use_threads(cfg.threads)  # before any work (tokenising, codebook init), not only in the loop
    if not cfg.vqsvae:
        raise SpikingDiffusionError("train-decoder needs --vqsvae DIR (a trained checkpoint)")
    # the prior and its guide stay with the VQ-SVAE (the tokens do not change)
    vqsvae, denoiser, guide, config = load_checkpoint_with_guide(cfg.vqsvae, cfg.device)
    cfg, snapshot = runs.check_run_folder(cfg, dataset=config["info"].get("dataset") or "mnist")
    dataset = cfg.dataset
    _check_dataset_fits(vqsvae, dataset, config["info"].get("dataset"), cfg.vqsvae)
    if Path(cfg.vqsvae).resolve() == Path(cfg.out).resolve():
        raise SpikingDiffusionError(f"--vqsvae and --out are both {cfg.out}: train the decoder into another folder")
    # the run's frozen encoder + codebook and its prior come from --vqsvae: a resumed run must be given the same
    source = {"vqsvae_tokens": _token_digest(vqsvae), "prior": None if denoiser is None else _state_digest((denoiser,))}
    changed = [k for k, v in source.items() if k in (snapshot or {}) and snapshot[k] != v]  # older snapshots: unchecked
    if changed:
        began = (snapshot.get("train_config") or {}).get("vqsvae")
        what = "other tokens" if "vqsvae_tokens" in changed else "another prior (or none)"
        raise CheckpointError(f"cannot resume {cfg.out}: --vqsvae {cfg.vqsvae} gives {what} than the checkpoint the run "
                              f"began from ({began}), so the resumed checkpoint would pair a prior with a VQ-SVAE it "
                              "was not trained for: give the run's --vqsvae, or train into a new --out")
    if runs.finished(cfg, snapshot):
        return Path(cfg.out)
    data = load_images(dataset, cfg.data_root, train=True, download=cfg.download, limit=cfg.limit)
    if vqsvae.cfg.data_variance is None or (config["info"].get("source") == "official" and vqsvae.cfg.data_variance == 1.0):
        # an import of the authors' weights (1.0: imported before None marked it unknown): their code divides
        # the reconstruction MSE by the training images' variance, so this run does too
        variance = data.variance()
        vqsvae.cfg = vqsvae.quantizer.cfg = replace(vqsvae.cfg, data_variance=variance)
        print(f"note: {cfg.vqsvae} records no data variance (an import of the authors' weights, or a config built "
              f"by hand); using the training images' data variance {variance:.4g}, as the authors' training does")
    objective = _DecoderObjective(vqsvae)
    spe = len(data) // cfg.batch_size

    before = config["info"]  # a decoder trained on before: this run's steps add to its (as the run began)
    done_steps, done_epochs = (snapshot or {}).get("decoder_before") or (before.get("decoder_steps", 0),
                                                                         before.get("decoder_epochs", 0.0))

    def save_model(step, trained: _DecoderObjective):
        info = {**before, "decoder_steps": done_steps + step, "decoder_epochs": round(done_epochs + step / spe, 3),
                "decoder_ema": cfg.ema, "decoder_from": str(cfg.vqsvae)}
        tokens_only = {k: v for k, v in config["metrics"].items() if k in TOKEN_METRICS}  # the rest: the old decoder
        save_checkpoint(cfg.out, trained.vqsvae, denoiser, info, tokens_only, guide=guide)
        copy_code_usage(cfg.vqsvae, cfg.out)                      # the tokens are unchanged, so is their usage

    step, speed = _loop(cfg, objective, data.images, lambda x, g: (x.float() / 255.0,), save_model,
                        {**source, "decoder_before": [done_steps, done_epochs]}, snapshot)
    if runs.process_rank() == 0:
        print(f"decoder: {step} steps at {speed:.1f} images/s -> {cfg.out}")
    return Path(cfg.out)
