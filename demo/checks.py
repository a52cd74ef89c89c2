"""The studio's input checks: a value from a control or the API either passes, or the caller gets a
message naming the control and what it accepts (``gr.Error`` through :func:`friendly`)."""
from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from spiking_diffusion import SpikingDiffusionError

from .guards import echo, is_empty, user_error
from .media import InputError

MAX_SEED = 2**31 - 1        # seeds are 0..MAX_SEED (what numpy and torch both accept)
MAX_UPLOAD = "20mb"         # the largest upload (--max-upload): a phone's JPEG photo (12 MP: 3-15 MB) passes


def friendly(fn):
    """Turn library and input errors into ``gr.Error`` messages."""
    def convert(e):
        return user_error(str(e))

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*a, **k):
            try:
                yield from fn(*a, **k)
            except (SpikingDiffusionError, InputError, ValueError) as e:
                raise convert(e) from None
        return gen

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except (SpikingDiffusionError, InputError, ValueError) as e:
            raise convert(e) from None
    return wrapper


def _as_float(value, name: str) -> float:
    """``value`` as a float (inf for a whole number past the doubles, refused then as out of range), or
    :class:`InputError` naming ``name`` when it is no number."""
    try:
        return float(value)
    except OverflowError:
        return math.inf
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number; got {echo(value)}") from None


def check_int(value, name: str, lo: int, hi: int) -> int:
    """``value`` as a whole number in ``lo..hi``, or :class:`InputError` naming ``name`` and the range."""
    if is_empty(value):
        raise InputError(f"{name} is empty: enter a whole number in {lo}..{hi}")
    v = _as_float(value, name)
    if not np.isfinite(v) or v != int(v) or not lo <= v <= hi:
        raise InputError(f"{name} must be a whole number in {lo}..{hi}; got {echo(value)}")
    return int(v)


def check_float(value, name: str, lo: float, hi: float) -> float:
    """``value`` as a finite number in ``lo..hi``, or :class:`InputError` naming ``name`` and the range."""
    if is_empty(value):
        raise InputError(f"{name} is empty: enter a number in {lo}..{hi}")
    v = _as_float(value, name)
    if not np.isfinite(v) or not lo <= v <= hi:
        raise InputError(f"{name} must be a number in {lo}..{hi}; got {echo(value)}")
    return v


def check_all(**checks) -> dict:
    """Run each check (``name=callable`` returning the checked value): the values by name, or one
    :class:`InputError` naming every refused value, so that a form with three wrong boxes gets one
    message listing the three instead of the first."""
    values, problems = {}, []
    for name, check in checks.items():
        try:
            values[name] = check()
        except (InputError, ValueError) as e:               # a library SettingError is a ValueError
            problems.append(str(e))
    if problems:
        raise InputError("; ".join(problems))
    return values
