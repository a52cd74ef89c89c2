"""The sampler's settings: one home for their defaults, bounds, checks, labels and parsing.

Every entry point reads them from here: the diffusion (:meth:`AbsorbingDiffusion.sample`), the
pipeline (``pipe(...)``, :attr:`SpikingDiffusionPipeline.sampling_defaults`), the command line
(``sample``, ``evaluate``: one flag per :data:`SETTINGS` entry), the evaluation and the studio.

:class:`SamplerConfig` holds the settings of the reverse process beyond the number of steps:

  temperature            the logits are divided by it before sampling (constant, or linear to ...)
  temperature_end        ... this value at the last step (None: constant)
  top_p                  nucleus sampling: draw only from the likeliest tokens holding this much
                         probability (1: off)
  corrector_steps        predictor-corrector rounds after the last step (0: the paper's sampler)
  corrector_cells        cells re-masked and sampled again per corrector round
  corrector_temperature  the temperature of those rounds
  guidance               autoguidance weight w: each denoiser call gives log p + w (log p - log p_guide),
                         p_guide the checkpoint's guide prior (0: off)

``SamplerConfig()`` (= :meth:`SamplerConfig.paper`) is the paper's sampler (Liu et al. 2023,
Sec. 3.3: each masked position unmasked with probability 1/s, no corrector) at temperature 0.65.
A checkpoint stores the settings chosen when it was evaluated (``evaluate --record``) in its
``info``; :meth:`SamplerConfig.from_info` reads them back, and they are what ``pipe()`` uses.

The number of steps, the number of images, the unmasking order and the sampler itself are
arguments of each call, checked here too (:func:`check_steps`, :func:`check_num_images`,
:func:`check_order`, :func:`check_sampler`): steps are bounded by the model (1..N).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import Setting, SettingError, check_choice

PAPER_TEMPERATURE = 0.65            # the paper's sampler (SamplerConfig.paper())
ORDERS = ("random", "confidence")   # the paper's random order; MaskGIT's most confident first
MAX_TEMPERATURE = 5.0               # softmax(logits / 5) is close to uniform: hotter is noise
MIN_TEMPERATURE = 0.001             # the coldest the authors sweep (0.001..1); near the argmax, not exactly it
MIN_TOP_P = 0.01                    # the likeliest code alone, in practice
MAX_GUIDANCE = 4.0                  # Karras et al. 2024 go up to w = 3 (their guidance scale 1 + w)
MAX_CORRECTOR_STEPS = 100           # each of 49 cells is resampled ~10 times at 5 cells per round
CHOICE_TEMPERATURE = 4.5            # order='confidence': MaskGIT's Gumbel noise on the confidence
                                    # ranking, scaled by s/S (s counts down: 4.5 at the first step,
                                    # 4.5/S at the last, which unmasks every cell left anyway)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("temperature", float, MIN_TEMPERATURE, MAX_TEMPERATURE, "Temperature",
            "sampling temperature (default: the checkpoint's, else the paper's "
            f"{PAPER_TEMPERATURE:g}); given alone: constant"),
    Setting("temperature_end", float, MIN_TEMPERATURE, MAX_TEMPERATURE, "Temperature at the last step",
            "temperature at the last step, linear from --temperature", optional=True),
    Setting("top_p", float, MIN_TOP_P, 1.0, "Top-p",
            "nucleus sampling: draw from the likeliest codes holding this much probability (1: off)"),
    Setting("corrector_steps", int, 0, MAX_CORRECTOR_STEPS, "Corrector rounds",
            "corrector rounds after the last step (0: the paper's sampler)"),
    Setting("corrector_cells", int, 1, None, "Cells per corrector round",
            "cells re-masked and sampled again per corrector round"),
    Setting("corrector_temperature", float, MIN_TEMPERATURE, MAX_TEMPERATURE, "Corrector temperature",
            "temperature of the corrector rounds"),
    Setting("guidance", float, 0.0, MAX_GUIDANCE, "Guidance weight",
            "autoguidance weight w: steer the prior away from its weaker guide prior (0: off; needs a checkpoint "
            "with a guide)"),
)}


@dataclass(frozen=True)
class SamplerConfig:
    """The sampler's settings (see the module doc); checked when made, so a config in hand is valid
    (``corrector_cells`` against a grid only in :meth:`check_grid`). Frozen: change with
    :meth:`override`. Raises :class:`SettingError` (a ``ValueError``) on a bad value."""

    temperature: float = PAPER_TEMPERATURE
    temperature_end: float | None = None
    top_p: float = 1.0
    corrector_steps: int = 0
    corrector_cells: int = 5
    corrector_temperature: float = 0.5
    guidance: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, SETTINGS[f.name].check(getattr(self, f.name)))

    # --- making one -------------------------------------------------------------------------
    @classmethod
    def paper(cls) -> "SamplerConfig":
        """The paper's sampler (random order, no corrector, no nucleus) at temperature 0.65."""
        return cls()

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "SamplerConfig":
        """The settings a checkpoint stores in its ``info`` (keys as the fields); the paper's for
        the keys it lacks. Other keys are ignored."""
        return cls(**{k: info[k] for k in SETTINGS if k in info})

    def override(self, positions: int | None = None, **overrides) -> "SamplerConfig":
        """This config with the ``overrides`` that are not None. A temperature given without an end
        temperature is constant. ``positions``: the grid's cell count, when known (checks
        ``corrector_cells`` against it). Unknown names raise :class:`SettingError`."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - set(SETTINGS))
        if unknown:
            raise SettingError(f"unknown sampling settings: {unknown}; known: {', '.join(SETTINGS)}")
        given = {k: SETTINGS[k].check(v, positions) for k, v in given.items()}
        if "temperature" in given and "temperature_end" not in given:
            given["temperature_end"] = None
        out = replace(self, **given)
        return out if positions is None else out.check_grid(positions)

    # --- using one --------------------------------------------------------------------------
    def check_grid(self, positions: int) -> "SamplerConfig":
        """Check ``corrector_cells`` against a grid of ``positions`` cells (49 for 7x7); returns self."""
        SETTINGS["corrector_cells"].check(self.corrector_cells, positions)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The seven settings by name (what a checkpoint's info stores)."""
        return asdict(self)

    def label(self) -> str:
        """One line: 'temperature 1.4..0.1, top-p 1, corrector 60 rounds x 8 cells at temperature 0.05'
        (', guidance 0.5' when guided)."""
        text = f"temperature {temperature_label(self.temperature, self.temperature_end)}, top-p {self.top_p:g}"
        if self.corrector_steps:
            text += (f", corrector {self.corrector_steps} rounds x {self.corrector_cells} cells at "
                     f"temperature {self.corrector_temperature:g}")
        if self.guidance:
            text += f", guidance {self.guidance:g}"
        return text


# --- the per-call arguments ----------------------------------------------------------------------
STEPS = Setting("steps", int, 1, None)             # sampling steps S, in 1..N (the training time scale)
NUM_IMAGES = Setting("num_images", int, 1, None)   # images of one call
SEED = Setting("seed", int, 0, 2**63 - 1)          # a seed: torch's generators take up to 2**64 - 1; a signed 64 bits here


def torch_seed(value: int) -> int:
    """A seed derived by arithmetic (``seed * 7919 + rank``, a generator's seed + a step) as torch's
    generators take it: modulo 2**64, so every seed :data:`SEED` admits works, and the seeds small
    enough for the plain value keep their streams."""
    return int(value) % 2**64


def check_num_images(num_images, most: int | None = None) -> int:
    """The number of images of one call as an int >= 1 (and <= ``most`` when given). Raises
    :class:`SettingError`."""
    return NUM_IMAGES.check(num_images, most)


def check_seed(seed) -> int:
    """A seed as an int in 0..2**63-1 (1.9 is refused, not read as 1). Raises :class:`SettingError`."""
    return SEED.check(seed)


def check_steps(steps, num_diffusion_steps: int) -> int:
    """Sampling steps as an int in 1..N (``num_diffusion_steps``, the training time scale).
    Raises :class:`SettingError`."""
    return STEPS.check(steps, num_diffusion_steps)


def check_sampler(sampler) -> SamplerConfig:
    """``sampler`` itself when it is a :class:`SamplerConfig`, the paper's for None; else raises
    :class:`SettingError`."""
    if sampler is None:
        return SamplerConfig.paper()
    if not isinstance(sampler, SamplerConfig):
        raise SettingError(f"sampler must be a SamplerConfig (e.g. SamplerConfig(temperature=1.0) or SamplerConfig.paper()) "
                           f"or None; got {type(sampler).__name__}")
    return sampler


def check_order(order) -> str:
    """The unmasking order: 'random' (the paper) or 'confidence' (MaskGIT)."""
    return check_choice("order", order, ORDERS)


# --- text ------------------------------------------------------------------------------------------
def parse_temperature(text: str) -> tuple[float, float | None]:
    """"0.8" -> (0.8, None); "1.0..0.5" -> (1.0, 0.5) (linear from the first to the last step).
    Raises :class:`SettingError` on anything else or on values out of bounds."""
    start, sep, end = str(text).partition("..")
    try:
        start, end = float(start), float(end) if sep else None
    except ValueError:
        raise SettingError(f"a temperature is a number or START..END, not {text!r}") from None
    return SETTINGS["temperature"].check(start), SETTINGS["temperature_end"].check(end)


def temperature_label(start: float, end: float | None) -> str:
    """(1.4, 0.1) -> '1.4..0.1'; (0.65, None) -> '0.65'."""
    return f"{start:g}" if end is None or end == start else f"{start:g}..{end:g}"
