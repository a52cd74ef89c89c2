"""A small CNN classifier per data set, trained by us, used to judge generated images offline.

images [N,C,28,28] in [0,1] --3x(Conv3x3+BN+ReLU), 2 max-pools--> [N,96,7,7]
  --average pool to 3x3, flatten, Linear+ReLU--> features [N,128] --Linear--> logits [N,classes]

``holdout`` images of the training split (at most a fifth of it; a seeded random choice: some data
sets are stored sorted by class; the bundled MNIST and Fashion-MNIST classifiers, trained before that
choice, hold out the last 10,000: ``holdout_seed`` None) are never trained on: they serve as the "real held-out images" that give the floor of
every metric in :mod:`spiking_diffusion.evaluation` (see :func:`holdout_split`).
Saved as a folder with ``config.json`` + ``model.safetensors`` (safetensors only).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write_dir
from .devices import check_threads, resolve_device, use_threads
from .errors import CheckpointError, Setting, SettingError, check_fields
from .sampling import SEED
from .images import channels_first, to_float

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "classifiers"


@dataclass(frozen=True)
class ClassifierConfig:
    dataset: str = "mnist"
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, int, int] = (32, 64, 96)    # conv widths
    grid: int = 3              # the last conv map is average-pooled to grid x grid before the feature layer
    feature_dim: int = 128
    holdout: int = 10000       # train images kept out of training
    holdout_seed: int | None = 0  # seed of the held-out choice; None: the last ``holdout`` images
    info: dict = field(default_factory=dict, compare=False)  # accuracy, epochs, ... (filled on save)


# the accepted range of each training setting, named by its flag (checked when the config is made)
TRAIN_CLASSIFIER_BOUNDS = {s.name: s for s in (
    Setting("epochs", int, 1, None, "--epochs"),
    Setting("batch_size", int, 1, None, "--batch-size"),
    Setting("lr", float, 0, None, "--lr", open_lo=True),
    Setting("weight_decay", float, 0, None),
    Setting("max_steps", int, 1, None, "--max-steps"),
    Setting("holdout", int, 1, None, "--holdout"),   # at most a fifth of the train split is held out
    Setting("feature_dim", int, 1, None),
    Setting("seed", int, 0, SEED.hi),
    Setting("log_every", int, 0, None),              # 0: no progress lines
)}


@dataclass
class TrainClassifierConfig:
    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_steps: int | None = None   # stop early (tests)
    holdout: int = 10000
    feature_dim: int = 128         # width of the feature layer (the Fréchet distance's dimension)
    seed: int = 0
    threads: int | None = None     # torch CPU threads (None: torch's default); checked by devices.check_threads
    log_every: int = 100

    def __post_init__(self):
        check_fields(self, TRAIN_CLASSIFIER_BOUNDS)
        self.threads = check_threads(self.threads)


class Classifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.widths
        block = lambda a, b: [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*block(cfg.in_channels, c1), nn.MaxPool2d(2),
                                  *block(c1, c2), nn.MaxPool2d(2), *block(c2, c3))
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)
        self.embed_layer = nn.Sequential(nn.Flatten(), nn.Linear(c3 * cfg.grid ** 2, cfg.feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N,C,28,28]`` (floats in [0,1] or uint8) -> embedding ``[N, feature_dim]``."""
        if not torch.is_floating_point(x):
            x = to_float(x, channels_last=False)
        return self.embed_layer(self.pool(self.body((x - 0.5) / 0.5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N,C,28,28]`` -> logits ``[N, num_classes]``."""
        return self.head(self.dropout(self.features(x)))

    @torch.inference_mode()
    def embed(self, images, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Images ``[N,C,28,28]`` (uint8 or floats in [0,1]; or uint8 ``[N,H,W,C]`` numpy as the
        pipeline returns them) -> (features ``[N,F]`` float64, probabilities ``[N,classes]`` float64)."""
        x = torch.as_tensor(images)
        if x.ndim == 4 and x.shape[-1] == self.cfg.in_channels and x.shape[1] != self.cfg.in_channels:
            x = channels_first(x)
        self.eval()
        dev = next(self.parameters()).device
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            f = self.features(x[i:i + batch_size].to(dev))
            feats.append(f.double().cpu())
            probs.append(F.softmax(self.head(f), 1).double().cpu())
        if not feats:
            return np.zeros((0, self.cfg.feature_dim)), np.zeros((0, self.cfg.num_classes))
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def save_classifier(path, model: Classifier) -> Path:
    cfg = asdict(model.cfg)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    def write(tmp: Path):
        save_file(tensors, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps({"format": "spiking-diffusion-classifier", **cfg}, indent=2))

    return atomic_write_dir(path, write)


def load_classifier(path, device="cpu") -> Classifier:
    """Load a classifier folder (config.json + model.safetensors) in eval mode."""
    path = Path(path)
    device = resolve_device(device)
    try:
        raw = json.loads((path / CONFIG_NAME).read_text())
        raw.pop("format", None)
        raw["widths"] = tuple(raw["widths"])
        model = Classifier(ClassifierConfig(**raw))
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"classifier {path} cannot be loaded: {e}") from None
    return model.to(device).eval()


def holdout_split(n: int, holdout: int, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (trained on ``[n - holdout]``, held out ``[holdout]``) of a train split of ``n`` images."""
    order = torch.arange(n) if seed is None else torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n - holdout], order[n - holdout:]


def default_classifier_dir(dataset: str) -> Path:
    """Where ``train-classifier`` writes the classifier of ``dataset``: assets/classifiers/<dataset>."""
    return ASSETS / dataset


_SAME_IMAGES = {"cifar10": "cifar10-folder", "cifar10-folder": "cifar10"}   # one data set, two loaders


def find_classifier_dir(dataset: str) -> Path:
    """The bundled classifier that scores ``dataset``: its own folder, or that of the other loader of
    the same images (CIFAR-10's torchvision and JPEG-folder loaders share one classifier)."""
    own, alias = default_classifier_dir(dataset), _SAME_IMAGES.get(dataset)
    if alias and not own.is_dir() and default_classifier_dir(alias).is_dir():
        return default_classifier_dir(alias)
    return own


def _augment(x: torch.Tensor, g: torch.Generator, flip: bool) -> torch.Tensor:
    """Random shift by up to 2 pixels (and horizontal flips for photos): ``[B,C,28,28]``."""
    B = x.shape[0]
    pad = F.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()  # one shift per batch: cheap
    x = pad[:, :, dy:dy + 28, dx:dx + 28]
    if flip:
        f = torch.rand(B, generator=g) < 0.5
        x = torch.where(f.view(B, 1, 1, 1), x.flip(3), x)
    return x


@torch.inference_mode()
def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    _, probs = model.embed(images)
    return float((probs.argmax(1) == labels.numpy()).mean()) if len(labels) else float("nan")


def train_classifier(dataset_name: str, data_root, out_dir, epochs: int = 3, tcfg: TrainClassifierConfig | None = None,
                     download: bool = True, device: str = "cpu", log=print) -> tuple[Classifier, dict]:
    """Train a classifier on the train split (minus ``holdout``), test it on the test split, save it.
    Returns (model, info) with info = {test_accuracy, holdout_accuracy, epochs, steps, params, ...}.
    Raises :class:`SettingError` for a ``holdout`` above a fifth of the train split, before training."""
    from .data import channels_of, load_images

    tcfg = tcfg or TrainClassifierConfig(epochs=epochs)
    device = resolve_device(device)
    torch.manual_seed(tcfg.seed)
    use_threads(tcfg.threads)
    train = load_images(dataset_name, data_root, train=True, download=download)
    test = load_images(dataset_name, data_root, train=False, download=download)
    if len(train) < 5:
        raise SettingError(f"{dataset_name}'s train split holds {len(train)} images: too few to hold any out "
                           "(a fifth of them, at least 1)")
    try:                                   # at most a fifth of the train split is held out (refused, not cut)
        holdout = TRAIN_CLASSIFIER_BOUNDS["holdout"].check(tcfg.holdout, len(train) // 5, by_label=True)
    except SettingError as e:
        raise SettingError(f"{e} (at most a fifth of the {len(train)} training images of {dataset_name})") from None
    fit_idx, held_idx = holdout_split(len(train), holdout, tcfg.seed)
    n_fit = len(fit_idx)
    num_classes = int(max(int(train.labels.max()), int(test.labels.max())) + 1)
    cfg = ClassifierConfig(dataset_name, channels_of(dataset_name), num_classes, feature_dim=tcfg.feature_dim,
                           holdout=holdout, holdout_seed=tcfg.seed)
    model = Classifier(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    steps_per_epoch = math.ceil(n_fit / tcfg.batch_size)
    total = steps_per_epoch * tcfg.epochs if tcfg.max_steps is None else min(tcfg.max_steps, steps_per_epoch * tcfg.epochs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, tcfg.lr, total_steps=max(total, 1), pct_start=0.15)
    g = torch.Generator().manual_seed(tcfg.seed)
    flip = cfg.in_channels == 3
    step, start = 0, time.time()
    while step < total:
        model.train()
        for idx in fit_idx[torch.randperm(n_fit, generator=g)].split(tcfg.batch_size):
            x = _augment(train.floats(idx).to(device), g, flip)
            loss = F.cross_entropy(model(x), train.labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if tcfg.log_every and step % tcfg.log_every == 0:
                log(f"step {step}/{total} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
            if step >= total:
                break
    model.eval()
    info = {"test_accuracy": accuracy(model, test.images, test.labels),
            "holdout_accuracy": accuracy(model, train.images[held_idx], train.labels[held_idx]),
            "epochs": tcfg.epochs, "steps": step, "train_images": n_fit,
            "params": sum(p.numel() for p in model.parameters()), "seconds": round(time.time() - start, 1)}
    model.cfg = ClassifierConfig(**{**asdict(cfg), "info": info})
    model.cpu()
    save_classifier(out_dir, model)
    log(f"{dataset_name}: test accuracy {info['test_accuracy']:.4f}, held-out accuracy "
        f"{info['holdout_accuracy']:.4f} -> {out_dir}")
    return model, info
