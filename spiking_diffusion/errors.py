"""User-facing errors: one clear message, no deep traceback (the CLI prints just the message);
and :class:`Setting`, the one range check every setting (sampler, training, model sizes) goes through."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


class SpikingDiffusionError(Exception):
    """A problem the user can fix: bad input, a missing data set, a corrupt checkpoint."""


class CheckpointError(SpikingDiffusionError):
    """A checkpoint directory that is missing, corrupt, truncated or does not match its config."""


class DataError(SpikingDiffusionError):
    """A data set that cannot be found or loaded."""


class DeviceError(SpikingDiffusionError):
    """A requested device (e.g. ``cuda``) that this machine or PyTorch build does not have."""


class SettingError(SpikingDiffusionError, ValueError):
    """A setting (of the sampler, of a call) outside its accepted range or of the wrong type."""


def check_choice(name: str, value, choices: tuple):
    """``value`` when it is one of ``choices``; else raises :class:`SettingError` naming them."""
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


@dataclass(frozen=True)
class Setting:
    """One setting (of the sampler, a training run, a model's size, a call): its type, bounds (both
    included unless ``open_lo`` / ``open_hi``; ``hi=None``: an upper bound given to :meth:`check` by
    the caller, e.g. the grid's cell count for ``corrector_cells``, N for ``steps``; none given: no
    upper bound), and a label for forms or flags and a help line for the command line."""

    name: str
    kind: type                  # int or float
    lo: float
    hi: float | None
    label: str = ""
    help: str = ""
    optional: bool = False      # None allowed (temperature_end: constant temperature)
    open_lo: bool = False       # lo itself refused (a learning rate > 0)
    open_hi: bool = False       # hi itself refused (an average's decay < 1)

    def bounds(self, upper: int | None = None) -> str:
        """'in 1..49', 'in [0.001, 5]', '> 0', ...: the accepted range as words."""
        hi = upper if self.hi is None else self.hi
        if self.kind is int:
            return f"in {int(self.lo)}..{int(hi)}" if hi is not None else f">= {int(self.lo)}"
        if hi is None:
            return f"{'>' if self.open_lo else '>='} {self.lo:g}"
        return f"in {'(' if self.open_lo else '['}{self.lo:g}, {hi:g}{')' if self.open_hi else ']'}"

    def check(self, value, upper: int | None = None, by_label: bool = False):
        """``value`` (a number, or a string holding one) as an ``int`` / ``float`` within the bounds.
        ``upper``: the upper bound when ``hi`` is None (the grid's cell count, N, an image cap).
        Raises :class:`SettingError` naming the setting (``by_label``: by its form label), the accepted
        range and the value."""
        if value is None and self.optional:
            return None
        what = "an integer" if self.kind is int else "a number"
        name = self.label if by_label and self.label else self.name
        got = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "..."
        error = SettingError(f"{name} must be {what} {self.bounds(upper)}; got {got}")
        if isinstance(value, bool) or value is None:
            raise error
        whole = self.kind is int and (isinstance(value, numbers.Integral)
                                      or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()))
        try:   # whole numbers stay exact (a float holds only 53 bits: 2**60 + 1 would become 2**60)
            v = int(value) if whole else float(value)
        except (TypeError, ValueError, OverflowError):
            raise error from None
        hi = upper if self.hi is None else self.hi
        if ((not whole and not math.isfinite(v)) or (self.kind is int and v != int(v)) or v < self.lo or (self.open_lo and v == self.lo)
                or (hi is not None and (v > hi or (self.open_hi and v == hi)))):
            raise error
        return int(v) if self.kind is int else float(v)


def check_fields(config, bounds: dict[str, Setting]) -> None:
    """Check each field of the dataclass ``config`` named in ``bounds`` (None left as it is) and keep
    it as its checked int or float ("32" -> 32). Raises :class:`SettingError` naming the field by its
    label (a command-line flag), before any work."""
    for name, setting in bounds.items():
        if getattr(config, name) is not None:
            setattr(config, name, setting.check(getattr(config, name), by_label=True))
