"""Configuration dataclasses and presets.

Every size of the model lives here. ``PRESETS`` maps a preset name to a pair of
(VQSVAEConfig, DenoiserConfig); ``paper`` is exactly the paper's model.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import Setting, SettingError, check_choice


def _from_dict(cls, data: dict[str, Any]):
    """Build a dataclass from a dict, refusing unknown keys with a clear message."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = dict(data)
    for f in fields(cls):  # JSON turns tuples into lists
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)


CODEBOOK_INITS = ("normal", "data")  # the codebook's start: nn.Embedding's N(0, 1) (the paper), or encoder outputs


def check_codebook_init(init) -> str:
    """``init`` when it names a codebook start of :data:`CODEBOOK_INITS`; else raises :class:`SettingError`."""
    return check_choice("codebook_init", init, CODEBOOK_INITS)


# the accepted range of each size and constant of the two models (checked when a config is made)
_VQSVAE_BOUNDS = (Setting("in_channels", int, 1, None), Setting("image_size", int, 4, None),
                  Setting("time_steps", int, 1, None), Setting("codebook_size", int, 1, None),
                  Setting("code_dim", int, 1, None), Setting("commitment_cost", float, 0, None),
                  Setting("alpha_init", float, 0, 1), Setting("membrane_decay", float, 0, 1, open_lo=True),
                  Setting("psp_tau", float, 0, None, open_lo=True))
_DENOISER_BOUNDS = (Setting("codebook_size", int, 1, None), Setting("latent_size", int, 1, None),
                    Setting("time_steps", int, 1, None), Setting("embed_dim", int, 1, None),
                    Setting("num_diffusion_steps", int, 1, None))


def _check_sizes(cfg, bounds, widths: str, count: int) -> None:
    """Raise :class:`SettingError` unless every field named in ``bounds`` lies in its range (each then
    kept as its checked int or float) and ``widths`` holds ``count`` whole numbers >= 1."""
    for setting in bounds:   # the checked value kept: 128.0 or "128" becomes 128 (a frozen dataclass: set directly)
        object.__setattr__(cfg, setting.name, setting.check(getattr(cfg, setting.name)))
    w = getattr(cfg, widths)
    if not isinstance(w, (tuple, list)) or len(w) != count or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in w):
        raise SettingError(f"{widths} must hold {count} channel counts, whole numbers >= 1; got {w!r}")


@dataclass(frozen=True)
class VQSVAEConfig:
    """Stage 1: the vector-quantised spiking VAE."""

    in_channels: int = 1          # 1 for grey data sets, 3 for CIFAR-10
    image_size: int = 28          # images are 28x28; the latent grid is image_size // 4
    time_steps: int = 16          # T, simulation steps of every spiking layer
    hidden_channels: tuple[int, int] = (32, 64)  # encoder widths (decoder mirrors them)
    codebook_size: int = 128      # K
    code_dim: int = 16            # D
    commitment_cost: float = 0.25  # beta
    alpha_init: float = 0.5       # initial mix of firing rate in the dual coding
    membrane_decay: float = 0.8   # weight decay per step of M(s)
    psp_tau: float = 2.0          # tau_s of the PSP filter
    data_variance: float | None = None  # variance of the training pixels in [0, 1], divides the reconstruction
                                        # MSE; None: not known yet (train_vqsvae sets it from the data)

    def __post_init__(self):
        _check_sizes(self, _VQSVAE_BOUNDS, "hidden_channels", 2)
        if self.image_size % 4:
            raise SettingError(f"image_size must be a multiple of 4 (two stride-2 layers down to the latent grid); "
                               f"got {self.image_size}")
        v = self.data_variance   # a numpy float is kept as a float (config.json); a bool is no variance
        if v is not None and not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
            raise SettingError(f"the data variance must be a positive number (e.g. 0.0949 for MNIST), not {v!r}")
        if v is not None:
            object.__setattr__(self, "data_variance", float(v))

    @property
    def latent_size(self) -> int:
        return self.image_size // 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VQSVAEConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class DenoiserConfig:
    """Stage 2: the spiking denoiser (SDID).

    ``input_mode='index'`` is the paper's input: the raw token index and ``t`` as two
    float channels. ``'embedding'`` learns a token embedding and a time embedding instead.
    """

    codebook_size: int = 128      # K (the mask id is K)
    latent_size: int = 7
    time_steps: int = 16          # T
    widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 256)
    input_mode: str = "index"     # "index" (paper) or "embedding"
    embed_dim: int = 32           # channels of the token/time embeddings (embedding mode)
    num_diffusion_steps: int = 49  # N, the training time scale (t in 1..N; sampling steps in 1..N). The
                                   # paper's: the latent grid's cell count (train_prior sets latent_size ** 2)

    def __post_init__(self):
        check_choice("input_mode", self.input_mode, ("index", "embedding"))
        _check_sizes(self, _DENOISER_BOUNDS, "widths", 5)

    @property
    def in_channels(self) -> int:
        return 2 if self.input_mode == "index" else 2 * self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DenoiserConfig":
        return _from_dict(cls, data)


def check_prior_fits(vqsvae: VQSVAEConfig, denoiser: DenoiserConfig) -> None:
    """Raise :class:`SettingError` when a prior cannot run on a VQ-SVAE's tokens: its codebook size K
    (the token ids it reads and predicts; K is the mask id) or its latent grid differ."""
    for name, ours, theirs in (("codebook size K", denoiser.codebook_size, vqsvae.codebook_size),
                               ("latent grid", denoiser.latent_size, vqsvae.latent_size)):
        if ours != theirs:
            raise SettingError(f"the prior's {name} is {ours} but its VQ-SVAE's is {theirs}: a prior runs only "
                               "on the tokens of the VQ-SVAE it was trained on")


@dataclass(frozen=True)
class Preset:
    name: str
    vqsvae: VQSVAEConfig
    denoiser: DenoiserConfig
    description: str = ""


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "paper",
        VQSVAEConfig(time_steps=16, hidden_channels=(32, 64), codebook_size=128, code_dim=16),
        DenoiserConfig(time_steps=16, widths=(64, 128, 256, 512, 256), codebook_size=128),
        "The paper's sizes: T=16, K=128 codes of 16 dims, denoiser 64-128-256-512-256.",
    ),
    "small": Preset(
        "small",
        VQSVAEConfig(time_steps=4, hidden_channels=(16, 32), codebook_size=128, code_dim=16),
        DenoiserConfig(time_steps=4, widths=(64, 128, 128, 128, 64), codebook_size=128),
        "CPU preset of the bundled models: T=4, half-width VQ-SVAE, denoiser 64-128-128-128-64.",
    ),
    "guide": Preset(
        "guide",
        VQSVAEConfig(time_steps=4, hidden_channels=(16, 32), codebook_size=128, code_dim=16),
        DenoiserConfig(time_steps=4, widths=(32, 64, 64, 64, 32), codebook_size=128, input_mode="embedding",
                       embed_dim=16),
        "A prior to guide another (autoguidance, train-prior only): half the small denoiser's widths, "
        "trained briefly.",
    ),
    "tiny": Preset(
        "tiny",
        VQSVAEConfig(time_steps=4, hidden_channels=(8, 16), codebook_size=32, code_dim=8),
        DenoiserConfig(time_steps=2, widths=(16, 16, 16, 16, 16), codebook_size=32),
        "For tests and smoke runs only.",
    ),
}
DEFAULT_PRESET = "small"  # a new VQ-SVAE's (train-vqsvae); a prior's is its VQ-SVAE checkpoint's


def get_preset(name: str, in_channels: int = 1, input_mode: str | None = None) -> Preset:
    """Return a preset adapted to the data's channel count (and optionally the denoiser input)."""
    check_choice("preset", name, tuple(sorted(PRESETS)))
    p = PRESETS[name]
    from dataclasses import replace

    vq = replace(p.vqsvae, in_channels=in_channels)
    den = p.denoiser if input_mode is None else replace(p.denoiser, input_mode=input_mode)
    return Preset(p.name, vq, den, p.description)


# fields that describe the data, not the architecture: never compared with the paper's values (N is
# compared with the paper's rule instead, one step per latent cell)
_DATA_FIELDS = {"in_channels", "image_size", "data_variance", "latent_size", "num_diffusion_steps"}


# a setting and its value in words, for readers who do not know the dataclasses
_PHRASES = {"time_steps": "{} time steps", "hidden_channels": "channel widths {}", "widths": "layer widths {}",
            "codebook_size": "{} codes", "code_dim": "codes of {} numbers", "input_mode": "input {}",
            "embed_dim": "token embeddings of {} numbers"}
_VALUES = {("input_mode", "index"): "the raw token index", ("input_mode", "embedding"): "a learned embedding of each token"}


def _words(name: str, value) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return _VALUES.get((name, value), str(value))


def _differences(cfg, paper, skip: set[str]) -> list[str]:
    return [_PHRASES.get(f.name, f.name.replace("_", " ") + " {}").format(_words(f.name, mine))
            + f" (paper: {_words(f.name, theirs)})"
            for f in fields(cfg) if f.name not in _DATA_FIELDS | skip
            and (mine := getattr(cfg, f.name)) != (theirs := getattr(paper, f.name))]


def compare_with_paper(vqsvae: VQSVAEConfig, denoiser: DenoiserConfig | None = None) -> dict[str, str]:
    """Which parts of a model are the paper's architecture (the ``paper`` preset), in words.

    Returns ``{"vqsvae": ..., "denoiser": ...}`` (no ``denoiser`` key for a VQ-SVAE-only model),
    each "the paper's" or "not the paper's: <setting> (paper: <value>), ..." in words, e.g. "4 time
    steps (paper: 16), layer widths 64-128-128-128-64 (paper: 64-128-256-512-256)". Data-dependent
    fields (channels, image size, data variance) are not compared; the diffusion steps N are compared
    with the paper's rule, one per latent cell. Written into every checkpoint's
    info (``architecture``) and shown by the studio's model info.
    """
    paper = PRESETS["paper"]
    out = {"vqsvae": _differences(vqsvae, paper.vqsvae, set())}
    if denoiser is not None:
        skip = {"embed_dim"} if denoiser.input_mode == "index" else set()
        out["denoiser"] = _differences(denoiser, paper.denoiser, skip)
        cells = denoiser.latent_size ** 2     # the paper's N: one diffusion step per latent cell
        if denoiser.num_diffusion_steps != cells:
            out["denoiser"].append(f"{denoiser.num_diffusion_steps} diffusion steps N (paper: {cells}, one per cell)")
    return {part: "the paper's" if not diff else "not the paper's: " + ", ".join(diff) for part, diff in out.items()}
