"""The one check of a ``--device`` / ``device=`` argument, before anything is loaded onto it.

Without it, asking for CUDA on a machine without it surfaces deep inside torch or safetensors
(e.g. as a "corrupt or truncated" checkpoint). :func:`resolve_device` says what is missing instead.
"""
from __future__ import annotations

import numbers

import torch

from .errors import DeviceError, SettingError


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a ``torch.device``) -> ``torch.device``, checked.

    Raises :class:`DeviceError` (one line) for an unknown name, for CUDA when this torch build or
    machine has none, and for a CUDA index beyond the devices present.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {device!r} is not a device name; use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise DeviceError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda' (or 'cuda:N')")
    if not torch.cuda.is_available():
        why = "this PyTorch build has no CUDA support" if torch.version.cuda is None else \
            "no CUDA device is visible (no NVIDIA GPU or driver, or CUDA_VISIBLE_DEVICES hides it)"
        raise DeviceError(f"device {str(device)!r} is missing: {why}; use --device cpu")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise DeviceError(f"device {str(device)!r} is missing: this machine has {count} CUDA device(s) "
                          f"(cuda:0..cuda:{count - 1})")
    return dev


def check_threads(threads) -> int | None:
    """``threads`` (torch CPU threads; None: torch's default, one per core) when it is a whole
    number >= 1; else raises :class:`SettingError`."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise SettingError(f"--threads must be a whole number >= 1; got {threads!r}")
    return None if threads is None else int(threads)


def use_threads(threads) -> None:
    """Apply ``--threads`` (checked by :func:`check_threads`) to torch; None leaves torch's default."""
    if check_threads(threads):
        torch.set_num_threads(threads)
