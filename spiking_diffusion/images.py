"""Image layouts and value types in one place.

The models take float images ``[N, C, H, W]`` in [0, 1] (channels first, as PyTorch convolutions
do); the pipeline returns uint8 images ``[N, H, W, C]`` (channels last, as PIL, numpy, imageio and
the studio show them); the data sets are stored as uint8 ``[N, C, H, W]`` tensors.
"""
from __future__ import annotations

import numpy as np
import torch


def to_uint8(images) -> np.ndarray:
    """Float ``[N,C,H,W]`` in [0,1] (tensor or array) -> uint8 ``[N,H,W,C]`` numpy (rounded, clipped)."""
    x = torch.as_tensor(images)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_float(images, channels_last: bool = True) -> torch.Tensor:
    """uint8 images (tensor or array) -> float32 ``[N,C,H,W]`` tensor in [0,1]. ``channels_last``:
    the input is ``[N,H,W,C]`` (the pipeline's output); else already ``[N,C,H,W]`` (the data sets)."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    return (channels_first(x) if channels_last else x).float() / 255.0


def channels_first(images):
    """``[N,H,W,C]`` -> ``[N,C,H,W]`` (same type and dtype; a view where possible)."""
    return images.transpose(0, 3, 1, 2) if isinstance(images, np.ndarray) else images.permute(0, 3, 1, 2)


def channels_last(images):
    """``[N,C,H,W]`` -> ``[N,H,W,C]`` (same type and dtype; a view where possible)."""
    return images.transpose(0, 2, 3, 1) if isinstance(images, np.ndarray) else images.permute(0, 2, 3, 1)
