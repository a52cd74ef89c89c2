"""Data sets as uint8 tensors ``[N, C, 28, 28]`` plus labels ``[N]``.

Through torchvision (downloads on by default, ``root`` = ``--data-root``): mnist, fashion-mnist,
kmnist, emnist-letters (stored transposed by EMNIST: turned the right way up here) and cifar10
(resized to 28x28, 3 channels). ``cifar10-folder`` reads CIFAR-10 from an ImageFolder layout
(``ROOT/cifar10-jpg/{train,test}/<class>/*.jpg``). ``synthetic`` draws small labelled shapes for
tests and smoke runs, with no files at all.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .images import channels_first, to_float

DATASETS = ("mnist", "fashion-mnist", "kmnist", "emnist-letters", "cifar10", "cifar10-folder", "synthetic")
CHANNELS = {"cifar10": 3, "cifar10-folder": 3}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "kmnist": "KMNIST", "emnist-letters": "EMNIST letters",
          "cifar10": "CIFAR-10", "cifar10-folder": "CIFAR-10 (read from image folders)", "synthetic": "synthetic shapes"}
EXPECTED_FILES = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion-mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "kmnist": "KMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "emnist-letters": "EMNIST/raw/emnist-letters-{train,test}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch}",
    "cifar10-folder": "cifar10-jpg/{train,test}/<class>/*.jpg",
}
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
CLASS_NAMES["cifar10-folder"] = CLASS_NAMES["cifar10"]


@dataclass
class ImageSet:
    images: torch.Tensor   # uint8 [N, C, 28, 28]
    labels: torch.Tensor   # int64 [N]
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def floats(self, idx=slice(None)) -> torch.Tensor:
        """Float images in [0, 1]: ``[n, C, 28, 28]``."""
        return to_float(self.images[idx], channels_last=False)

    def variance(self) -> float:
        """Variance of the pixels in [0, 1] (divides the reconstruction MSE)."""
        x = to_float(self.images, channels_last=False)
        return float(x.var())


def channels_of(name: str) -> int:
    return CHANNELS.get(name, 1)


def _torchvision_set(name: str, root: str, train: bool, download: bool):
    import torchvision.datasets as tvd

    if name == "mnist":
        return tvd.MNIST(root, train=train, download=download)
    if name == "fashion-mnist":
        return tvd.FashionMNIST(root, train=train, download=download)
    if name == "kmnist":
        return tvd.KMNIST(root, train=train, download=download)
    if name == "emnist-letters":
        return tvd.EMNIST(root, split="letters", train=train, download=download)
    if name == "cifar10":
        return tvd.CIFAR10(root, train=train, download=download)
    raise AssertionError(name)


def _resize_to_28(x: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, 3, 28, 28]`` (bilinear, antialiased)."""
    import torch.nn.functional as F

    t = channels_first(torch.from_numpy(x)).float()
    out = F.interpolate(t, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _image_folder(root: str, train: bool) -> ImageSet:
    import torchvision.datasets as tvd

    folder = Path(root) / "cifar10-jpg" / ("train" if train else "test")
    if not folder.is_dir():
        raise FileNotFoundError(folder)
    cache_dir = Path(os.environ.get("SD_CACHE", Path.home() / ".cache" / "spiking_diffusion"))
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    cache = cache_dir / f"cifar10-folder-{'train' if train else 'test'}-{key}.npz"
    # the class folders' names and modification times, kept in the cache: images added to or removed
    # from a class folder rebuild it (an image edited in place does not: delete the cache file then)
    stamp = repr(sorted((d.name, d.stat().st_mtime_ns) for d in os.scandir(folder) if d.is_dir()))
    try:
        with np.load(cache) as z:
            if "stamp" in z.files and str(z["stamp"]) == stamp:
                return ImageSet(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), "cifar10-folder")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):   # none yet, or a broken one: rebuilt
        pass
    ds = tvd.ImageFolder(str(folder))
    imgs = np.stack([np.asarray(ds.loader(p).convert("RGB")) for p, _ in ds.samples])  # [N, 32, 32, 3]
    labels = np.array([y for _, y in ds.samples], dtype=np.int64)
    images = _resize_to_28(imgs).numpy()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, images=images, labels=labels, stamp=np.array(stamp))
    except OSError:
        pass
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), "cifar10-folder")


def synthetic(n: int = 256, channels: int = 1, seed: int = 0) -> ImageSet:
    """Small labelled shapes (4 classes: bar, cross, box, blob) with random position and size."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((n, channels, 28, 28), np.uint8)
    labels = g.integers(0, 4, n)
    for i, c in enumerate(labels):
        cy, cx, r = g.integers(9, 19), g.integers(9, 19), g.integers(4, 8)
        if c == 0:
            m = (abs(xx - cx) <= 1) & (abs(yy - cy) <= r)
        elif c == 1:
            m = ((abs(xx - cx) <= 1) | (abs(yy - cy) <= 1)) & (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
        elif c == 2:
            m = (np.maximum(abs(xx - cx), abs(yy - cy)) == r)
        else:
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        images[i, :, m] = 255
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), "synthetic")


def load_images(name: str, root: str | os.PathLike = "data", train: bool = True, download: bool = True,
                limit: int | None = None) -> ImageSet:
    """Load a whole split as uint8 tensors. Missing data -> :class:`DataError` naming the files."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "synthetic":
        s = synthetic(limit or 256, seed=0 if train else 1)
        return s
    root = str(root)
    try:
        if name == "cifar10-folder":
            s = _image_folder(root, train)
        else:
            ds = _torchvision_set(name, root, train, download)
            if name == "cifar10":
                images, labels = _resize_to_28(np.asarray(ds.data)), torch.as_tensor(ds.targets)
            else:
                images, labels = ds.data.unsqueeze(1), torch.as_tensor(ds.targets)  # [N, 1, 28, 28]
                if name == "emnist-letters":
                    images = images.transpose(2, 3).contiguous()  # EMNIST stores images transposed
                    labels = labels - 1                           # letters are labelled 1..26
            s = ImageSet(images.to(torch.uint8), labels.long(), name)
    except DataError:
        raise
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError, ... when data is missing
        how = "it could not be downloaded" if download else "downloads are off (--no-download)"
        raise DataError(f"data set {name!r} not found under {root!r} and {how}: expected "
                        f"{root}/{EXPECTED_FILES[name]} ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if limit is not None:
        s = ImageSet(s.images[:limit], s.labels[:limit], s.name)
    return s
