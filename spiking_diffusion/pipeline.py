"""The pipeline: load a checkpoint, generate, encode, decode, look at spikes.

This is the public API the studio and the benchmarks use; nothing outside the library needs
model internals. Every model call, and each step of a generation, runs as one job of
:mod:`~spiking_diffusion.compute` (one at a time, because spiking neurons keep membrane state during
a forward pass): concurrent calls from several threads are safe and give exactly what the same calls
give one by one (each call has its own seeded generator), and concurrent generations interleave step
by step. A server calls :func:`spiking_diffusion.compute.start` first, so that the jobs run on one
thread (why: see that module).

Generation has two paths (``fast``): the fast one uses :class:`~spiking_diffusion.fast.FastDenoiser`
(stateless, same spikes as the reference) and skips images that unmask nothing at a step; the
reference one (``fast=False``) is the paper's math written plainly (see ``fast.py``).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import compute
from .checkpoint import CODE_USAGE_NAME, copy_code_usage, load_checkpoint_with_guide, read_config, save_checkpoint
from .config import check_prior_fits, compare_with_paper
from .devices import resolve_device
from .diffusion import AbsorbingDiffusion, GenerationTrace, StepState, guided
from .errors import SettingError, SpikingDiffusionError
from .fast import FastDenoiser, reference_decode, reference_logits
from .hub import push_to_hub, resolve_checkpoint
from .images import to_uint8
from .sampling import SamplerConfig, check_num_images, check_order, check_sampler, check_seed, check_steps
from .spiking import record_spikes

MAX_IMAGES = 1024   # images per call (a batch's activations grow with it; more: call again with other seeds)


def _one_job(method):
    """Run ``method`` (its input checks, tensor work and model calls) as one :func:`compute.run` job."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        return compute.run(method, *args, **kwargs)
    return call


@dataclass
class PipelineOutput:
    images: np.ndarray                 # uint8 [N, H, W, C]
    tokens: np.ndarray                 # int64 [N, h, w]
    trace: Optional[GenerationTrace]   # per-step record when asked (trace=True)
    seconds: float = 0.0


@dataclass
class SpikeReport:
    """Spikes seen while encoding / decoding, all numpy.

    asg: [T,N,D,h,w] adaptive spike generator trains; encoder: [T,N,D,h,w] encoder output
    spikes (None when only tokens were given); spikes / membrane: per LIF layer ``[T,N,C,H,W]``;
    firing_rates: mean firing rate per LIF layer.
    """

    asg: np.ndarray
    encoder: Optional[np.ndarray]
    tokens: np.ndarray
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    membrane: dict[str, np.ndarray] = field(default_factory=dict)
    firing_rates: dict[str, float] = field(default_factory=dict)


def _stored_sampler(info: dict[str, Any]) -> SamplerConfig:
    """The sampler settings a checkpoint's ``info`` stores (the paper's for those it lacks)."""
    try:
        return SamplerConfig.from_info(info)
    except SettingError as e:
        raise SpikingDiffusionError(f"the checkpoint's stored sampling settings are invalid: {e}") from None


GUIDE_RECORD = ("preset", "steps", "epochs", "batch_size", "ema", "seed", "trained_at")  # info kept of a guide


class SpikingDiffusionPipeline:
    """VQ-SVAE + spiking denoiser + absorbing diffusion (+ the denoiser's guide prior, when it has one:
    see :meth:`set_guide`)."""

    def __init__(self, vqsvae, denoiser=None, config: dict | None = None, device: str = "cpu", guide=None):
        self.device = resolve_device(device)  # DeviceError (one line) when this machine lacks it
        self.vqsvae = vqsvae.to(self.device).eval()
        self.denoiser = None if denoiser is None else denoiser.to(self.device).eval()
        if denoiser is not None:
            check_prior_fits(vqsvae.cfg, denoiser.cfg)   # SettingError: its tokens are not this VQ-SVAE's
        if guide is not None:
            self._check_guide(guide)
        self.guide = None if guide is None else guide.to(self.device).eval()
        self.config = config or {"info": {}, "metrics": {}}
        self.path: Path | None = None                   # the folder it was loaded from (from_pretrained)
        N = None if denoiser is None else denoiser.cfg.num_diffusion_steps   # the time scale it was trained on
        self.scheduler = AbsorbingDiffusion(vqsvae.cfg.codebook_size, vqsvae.cfg.latent_size, N)
        self._fast: dict[str, FastDenoiser] = {}   # "denoiser" / "guide" -> its fast path (made on first use)

    # --- loading and saving ---------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str = "cpu", revision: str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False,
                        token: str | bool | None = None) -> "SpikingDiffusionPipeline":
        """Load a checkpoint folder (config.json + model.safetensors), or a Hugging Face Hub repo
        ``owner/name`` when no such local folder exists (downloaded into the Hugging Face cache;
        ``revision``, ``cache_dir``, ``local_files_only``, ``token`` as in ``huggingface_hub``;
        ``HF_HUB_OFFLINE=1`` uses the cache only). Raises :class:`CheckpointError`."""
        resolve_device(device)  # a missing device says so before anything is downloaded
        path = resolve_checkpoint(name_or_path, revision, cache_dir, local_files_only, token)

        def load():   # its tensor copies are parallel ops: one job, on the thread that runs the model's
            vqsvae, denoiser, guide, config = load_checkpoint_with_guide(path, device)
            return cls(vqsvae, denoiser, config, device, guide=guide)
        pipe = compute.run(load)
        pipe.path = path
        return pipe

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | bool | None = None,
                    commit_message: str | None = None) -> str:
        """Save this pipeline to a temporary folder and upload it to the Hub repo ``repo_id``
        (see :func:`spiking_diffusion.hub.push_to_hub`). Returns the commit's URL."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "checkpoint")
            return push_to_hub(folder, repo_id, private=private, token=token, commit_message=commit_message)

    def save_pretrained(self, path: str | Path, info: dict | None = None, metrics: dict | None = None) -> Path:
        """Write this pipeline as a checkpoint folder ``path`` (config.json + model.safetensors, see
        :func:`~spiking_diffusion.checkpoint.save_checkpoint`), with its info and metrics updated by
        ``info`` / ``metrics``, and the test split's ``code_usage.json`` when it was loaded with one.
        Returns the folder (with the guide prior, if any). Raises :class:`SpikingDiffusionError` when
        the info's sampling settings are invalid (nothing is written: ``pipe()`` could not sample with
        them, e.g. guidance without a guide), and
        :class:`CheckpointError` when ``path`` cannot be written."""
        merged_info = {**self.info, **(info or {})}
        try:
            self._check_can_guide(SamplerConfig.from_info(merged_info).check_grid(self.latent_size ** 2))
        except SettingError as e:
            raise SpikingDiffusionError(f"save_pretrained: the info's sampling settings are invalid, nothing was "
                                        f"written: {e}") from None
        merged_metrics = {**self.metrics, **(metrics or {})}
        folder = compute.run(save_checkpoint, path, self.vqsvae, self.denoiser, merged_info, merged_metrics,
                             guide=self.guide)
        copy_code_usage(self.path, folder)
        return folder

    def set_guide(self, guide: "SpikingDiffusionPipeline | None") -> None:
        """Give this pipeline's prior a guide for autoguidance (``SamplerConfig.guidance``; Karras et
        al. 2024, not in the paper): the prior of ``guide``, a pipeline whose VQ-SVAE tokenises as
        this one's (a weaker prior trained on the same tokens, e.g. ``train-prior --preset guide``).
        :meth:`save_pretrained` stores it beside the prior, with the guide's training record (its
        preset, steps, epochs, batch size, seed; from its info) as ``info["guide_trained"]``. None
        removes both, and sets a stored guidance weight to 0 (the sampler can no longer guide). Raises
        :class:`SpikingDiffusionError` when either has no prior, the tokens or the diffusion steps differ."""
        if guide is None:
            compute.run(self._drop_guide)
            return
        from .train import same_tokens   # (train imports this module's neighbours, not this module)

        self._need_denoiser()
        if not isinstance(guide, SpikingDiffusionPipeline) or guide.denoiser is None:
            raise SpikingDiffusionError("set_guide takes a SpikingDiffusionPipeline with a prior (denoiser), "
                                        "e.g. SpikingDiffusionPipeline.from_pretrained('runs/guide'), or None")
        if not same_tokens(self.vqsvae, guide.vqsvae):
            raise SpikingDiffusionError("the guide's VQ-SVAE tokenises differently from this pipeline's: a guide "
                                        "must be a prior trained on the same tokens (train-prior --vqsvae of this one)")
        self._check_guide(guide.denoiser)
        record = {k: guide.info[k] for k in GUIDE_RECORD if k in guide.info}
        compute.run(self._attach_guide, guide.denoiser, {**record, "from": str(guide.path or "memory")})

    def _attach_guide(self, denoiser, trained: dict) -> None:
        self.guide = denoiser.to(self.device).eval()
        self.config.setdefault("info", {})["guide_trained"] = trained

    def _drop_guide(self) -> None:
        self.guide = None
        info = self.config.setdefault("info", {})
        info.pop("guide_trained", None)
        if info.get("guidance"):
            info["guidance"] = 0.0

    # --- facts ----------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        return self.config.get("info", {})

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config.get("metrics", {})

    @property
    def architecture(self) -> dict[str, str]:
        """Which parts are the paper's architecture, in words: ``{"vqsvae": ..., "denoiser": ...}``
        (see :func:`~spiking_diffusion.config.compare_with_paper`)."""
        return compare_with_paper(self.vqsvae.cfg, getattr(self.denoiser, "cfg", None))

    @property
    def sampling_defaults(self) -> SamplerConfig:
        """The sampler settings chosen for this checkpoint when it was evaluated (``evaluate
        --record`` stores them in its info): what ``pipe()`` uses. A checkpoint that stores none
        gets the paper's sampler (:meth:`SamplerConfig.paper`)."""
        return _stored_sampler(self.info)

    @staticmethod
    def read_sampling_defaults(path: str | Path) -> SamplerConfig:
        """:attr:`sampling_defaults` of the local checkpoint folder ``path``, read from its
        config.json without loading the weights (milliseconds, where loading takes seconds).
        Raises :class:`~spiking_diffusion.errors.CheckpointError` for a folder that is not a
        checkpoint, :class:`SpikingDiffusionError` for invalid stored settings."""
        return _stored_sampler(read_config(path).get("info", {}))

    @staticmethod
    def stores_guide(path: str | Path) -> bool:
        """Whether the local checkpoint folder ``path`` stores a guide prior (:meth:`set_guide`), read
        from its config.json without loading the weights. Raises
        :class:`~spiking_diffusion.errors.CheckpointError` for a folder that is not a checkpoint."""
        return read_config(path).get("guide") is not None

    def sampling_settings(self, sampler: SamplerConfig | None = None, **overrides) -> SamplerConfig:
        """``sampler`` (default: :attr:`sampling_defaults`) with the ``overrides`` that are not None
        (names as :class:`SamplerConfig`'s fields); a temperature given without an end temperature
        is constant. Checked against this model's grid."""
        base = self.sampling_defaults if sampler is None else check_sampler(sampler)
        return base.override(self.latent_size ** 2, **overrides)

    @property
    def codebook_size(self) -> int:
        return self.vqsvae.cfg.codebook_size

    @property
    def mask_id(self) -> int:
        return self.scheduler.mask_id

    @property
    def latent_size(self) -> int:
        """Side of the token grid (7 for 28x28 images: the encoder downsamples by 4)."""
        return self.vqsvae.cfg.latent_size

    @property
    def membrane_decay(self) -> float:
        """Decay per time step of the quantiser's membrane read-out M(s) (0.8 in the paper)."""
        return self.vqsvae.cfg.membrane_decay

    @property
    def psp_tau(self) -> float:
        """tau_s of the spike-train loss's PSP filter."""
        return self.vqsvae.cfg.psp_tau

    @property
    def num_diffusion_steps(self) -> int:
        """N, the diffusion's training time scale: sampling steps lie in 1..N (49 for 7x7)."""
        return self.scheduler.N

    @property
    def image_channels(self) -> int:
        return self.vqsvae.cfg.in_channels

    def test_code_usage(self) -> dict | None:
        """The test split's code usage that ``evaluate --record`` wrote beside the checkpoint
        (``code_usage.json``: split, dataset, images, counts [K], per_position [h*w][K]), or None
        when the pipeline was not loaded from a directory or the file is not there."""
        path = self.path
        if path is None or not (path / CODE_USAGE_NAME).is_file():
            return None
        try:
            return json.loads((path / CODE_USAGE_NAME).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SpikingDiffusionError(f"{path / CODE_USAGE_NAME} is not valid JSON: {e}") from None

    # --- input checks ---------------------------------------------------------------------
    def _images(self, images) -> torch.Tensor:
        if isinstance(images, (str, os.PathLike, bytes)):
            raise SpikingDiffusionError(f"images must be an array or tensor [N, C, H, W]; got a file ({images!r:.80}): "
                                        "pipe.prepare_image(path) reads a picture into one")
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        self.vqsvae.check_images(x)               # shape, floats, finite, in [0, 1]: SettingError
        return x.to(self.device, torch.float32)

    def _tokens(self, tokens, allow_mask: bool = False) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(tokens) if not torch.is_tensor(tokens) else tokens)
        if torch.is_floating_point(t) or t.dtype == torch.bool:
            raise SpikingDiffusionError("tokens must be integers")
        try:
            self.vqsvae.check_tokens(t, allow_mask=allow_mask)
        except ValueError as e:
            masked = not allow_mask and t.numel() and int(t.max()) == self.mask_id
            hint = f" ({self.mask_id} is the mask id: decode(tokens, allow_mask=True) takes it)" if masked else ""
            raise SpikingDiffusionError(f"{e}{hint}") from None
        return t.to(self.device, torch.long)

    def _need_denoiser(self):
        if self.denoiser is None:
            raise SpikingDiffusionError("this checkpoint holds only a VQ-SVAE; train a prior (train-prior) to generate")

    def prepare_image(self, picture, invert: str = "auto") -> tuple[np.ndarray, str]:
        """Any picture (file path, bytes, PIL image, array) -> (float32 ``[1, C, 28, 28]`` in [0, 1]
        ready for :meth:`encode`, a note of what was done), framed as this model's data set was
        (see :mod:`~spiking_diffusion.image_input`). Raises SpikingDiffusionError."""
        from .image_input import prepare_image

        return prepare_image(picture, self.image_channels, self.info.get("dataset"), invert,
                             size=self.vqsvae.cfg.image_size)

    # --- the model calls --------------------------------------------------------------------
    @_one_job
    @torch.inference_mode()
    def encode(self, images) -> torch.Tensor:
        """Float images ``[N,C,H,W]`` in [0,1] -> tokens ``[N,h,w]``."""
        return self.vqsvae.encode(self._images(images))

    @_one_job
    @torch.inference_mode()
    def decode(self, tokens, allow_mask: bool = False) -> torch.Tensor:
        """Tokens ``[N,h,w]`` -> float images ``[N,C,H,W]`` in [0,1]. With ``allow_mask``,
        positions holding the mask id decode from a zero vector (the 'committed so far' view)."""
        return self.vqsvae.decode(self._tokens(tokens, allow_mask), self.mask_id if allow_mask else None)

    @_one_job
    @torch.inference_mode()
    def decode_uint8(self, tokens, allow_mask: bool = False) -> np.ndarray:
        """:meth:`decode` as uint8 images ``[N,H,W,C]`` (numpy, what the pipeline's output holds)."""
        return to_uint8(self.decode(tokens, allow_mask=allow_mask))

    @_one_job
    @torch.inference_mode()
    def denoiser_logits(self, tokens, t) -> torch.Tensor:
        """Tokens ``[B,h,w]`` (mask id K where masked) and times ``t``, one number for every image or
        ``[B]`` (floats on the training scale, 0 < t <= N: the denoiser's input time; training draws t in
        1..N, and a corrector round of few cells on a model whose N is below its cell count asks for less
        than 1) -> logits ``[B,K,h,w]`` (float32), by the fast path.
        Raises :class:`SpikingDiffusionError` for tokens or times that do not fit."""
        self._need_denoiser()
        x = self._tokens(tokens, allow_mask=True)
        return self._denoise(x, self._times(t, len(x)))

    def _times(self, t, n: int) -> torch.Tensor:
        """``t`` as a float32 tensor ``[n]`` on this device: one number (every image's) or one time per
        image, each with 0 < t <= N (0: nothing masked, a time the denoiser never sees)."""
        N = self.num_diffusion_steps
        accepted = f"one number or one time per image ({n}), each 0 < t <= {N}"
        try:
            t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        except (TypeError, ValueError, RuntimeError):
            raise SpikingDiffusionError(f"t must be numbers ({accepted}); got {t!r}") from None
        t = t.repeat(n) if t.dim() == 0 else t.reshape(-1)                      # [n]
        if t.shape[0] != n:
            raise SpikingDiffusionError(f"t must be {accepted}; got {t.shape[0]} times")
        if not torch.isfinite(t).all() or (t <= 0).any() or (t > N).any():
            raise SpikingDiffusionError(f"t must lie in 0 < t <= {N} (the training time scale); got {t.tolist()[:8]}")
        return t

    def _check_guide(self, guide) -> None:
        """A guide prior (a ``SpikingDenoiser``) fits: this pipeline has a prior, the guide's tokens fit
        the VQ-SVAE, and it counts the prior's N diffusion steps (it is called at the prior's times)."""
        self._need_denoiser()
        check_prior_fits(self.vqsvae.cfg, guide.cfg)
        if guide.cfg.num_diffusion_steps != self.denoiser.cfg.num_diffusion_steps:
            raise SpikingDiffusionError(f"the guide prior counts {guide.cfg.num_diffusion_steps} diffusion steps and "
                                        f"the prior {self.denoiser.cfg.num_diffusion_steps}: a guide must share the prior's")

    def _check_can_guide(self, sampler: SamplerConfig) -> None:
        """Raises :class:`SettingError` for a guidance weight above 0 without a guide prior."""
        if sampler.guidance and self.guide is None:
            raise SettingError(f"guidance {sampler.guidance:g} needs a guide prior and this checkpoint has none "
                               "(set_guide gives it one); guidance=0 samples without")

    @_one_job
    def _fast_call(self, role: str, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``role`` ("denoiser" or "guide") through its fast path, made again when the model is replaced."""
        model, fast = getattr(self, role), self._fast.get(role)
        if fast is None or fast.model is not model:
            fast = self._fast[role] = FastDenoiser(model)
        return fast(tokens, t)

    def _denoise(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The fast denoiser (same spikes as the reference, logits within float32 rounding; fast.py)."""
        return self._fast_call("denoiser", tokens, t)

    def _denoise_guide(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._fast_call("guide", tokens, t)

    @_one_job
    def _denoise_guide_reference(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return reference_logits(self.guide, tokens, t)

    @_one_job
    def _denoise_reference(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The plain denoiser forward (input repeated over T, conv6 at every step)."""
        return reference_logits(self.denoiser, tokens, t)

    @_one_job
    def _decode_reference(self, tokens: torch.Tensor) -> torch.Tensor:
        return reference_decode(self.vqsvae, tokens)

    # --- generation -----------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, num_images: int = 16, steps: int | None = None, temperature: float | None = None, seed: int = 0,
                 order: str = "random", trace: bool = False, fast: bool = True,
                 callback: Callable[[StepState], None] | None = None,
                 temperature_end: float | None = None, top_p: float | None = None, corrector_steps: int | None = None,
                 corrector_cells: int | None = None, corrector_temperature: float | None = None,
                 guidance: float | None = None, sampler: SamplerConfig | None = None) -> PipelineOutput:
        """Generate ``num_images`` images ``[N,H,W,C]`` uint8, 1..:data:`MAX_IMAGES` (1,024) per call (for
        more, call again with other seeds). Same seed, same images (on the same machine).

        The sampler: ``sampler`` (a :class:`~spiking_diffusion.sampling.SamplerConfig`; default:
        :attr:`sampling_defaults`, the settings chosen for this checkpoint), with any of
        ``temperature``, ``temperature_end``, ``top_p``, ``corrector_*``, ``guidance`` given here
        replacing its value (a temperature given alone is constant; guidance > 0 needs a checkpoint
        with a guide prior, :meth:`set_guide`, and costs the guide's denoiser calls besides). The paper's sampler is
        ``pipe(sampler=SamplerConfig.paper())``. steps: 1..N sampling steps (default: all N).
        order: 'random' (the paper) or 'confidence' (MaskGIT). seed: a whole number in 0..2**63-1.
        fast=True runs the fast denoiser and skips it for images that unmask nothing at a step
        (exact: the random draws do not depend on it); fast=False is the plain reference path
        (every image at every step, the paper's forward and decoding written plainly). Both give
        the same tokens for a seed and images within 1e-5 (before the uint8 rounding), on the CPU
        (tested), but where float rounding flips a spike: one code of the bundled models
        (``mnist-small``'s 103) decodes up to 0.16 apart (docs/faithfulness.md); a GPU's kernels may
        round differently. A seed fixes the whole batch: image i of
        ``pipe(16, seed=0)`` is not ``pipe(1, seed=0)``'s image, as each step draws its noise for
        all images at once.
        Raises :class:`SpikingDiffusionError` (:class:`SettingError` for a setting) on bad input.
        """
        import time

        self._need_denoiser()
        num_images = check_num_images(num_images, MAX_IMAGES)
        steps = check_steps(self.num_diffusion_steps if steps is None else steps, self.num_diffusion_steps)
        order, seed = check_order(order), check_seed(seed)
        settings = self.sampling_settings(sampler, temperature=temperature, temperature_end=temperature_end,
                                          top_p=top_p, corrector_steps=corrector_steps,
                                          corrector_cells=corrector_cells, corrector_temperature=corrector_temperature,
                                          guidance=guidance)
        self._check_can_guide(settings)
        denoise = guided(self._denoise if fast else self._denoise_reference,
                         self._denoise_guide if fast else self._denoise_guide_reference, settings.guidance)
        start = time.perf_counter()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        tokens, record = self.scheduler.sample(   # each step one job; the callback runs between them
            denoise, num_images, steps, settings, gen, self.device,
            order=order, skip_idle=fast, callback=callback, trace=trace, run=compute.run)
        images = self.decode_uint8(tokens) if fast else compute.run(lambda: to_uint8(self._decode_reference(tokens)))
        return PipelineOutput(images, tokens.cpu().numpy(), record, time.perf_counter() - start)

    @_one_job
    @torch.inference_mode()
    def decode_trace(self, trace: GenerationTrace, image: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """For image ``image`` of a trace: (committed [S,H,W,C] uint8, predicted [S,H,W,C] uint8),
        the images decoded from the tokens committed so far and from each step's latest sampled prediction."""
        n = trace.stack("tokens").shape[1]
        if isinstance(image, bool) or not isinstance(image, (int, np.integer)) or not 0 <= image < n:
            raise SpikingDiffusionError(f"image must be a whole number in 0..{n - 1} (the trace's images); got {image!r}")
        committed = torch.as_tensor(trace.stack("tokens")[:, image])                    # [S, h, w]
        predicted = torch.as_tensor(trace.stack("pred_sampled")[:, image])               # [S, h, w]
        return self.decode_uint8(committed, allow_mask=True), self.decode_uint8(predicted, allow_mask=True)

    # --- spikes -----------------------------------------------------------------------------
    @_one_job
    @torch.inference_mode()
    def spikes(self, images=None, tokens=None, membrane: bool = False) -> SpikeReport:
        """Spikes of the VQ-SVAE for given images (encoder + ASG + decoder) or tokens (ASG + decoder).
        Recording does not change any output; neuron state is reset after each pass."""
        if (images is None) == (tokens is None):
            raise SpikingDiffusionError("give either images or tokens")
        with record_spikes(self.vqsvae, membrane=membrane) as rec:
            enc = None
            if images is not None:
                enc_t, tok = self.vqsvae.encode_with_spikes(self._images(images))  # [T,N,D,h,w], [N,h,w]
                enc = enc_t.cpu().numpy()
            else:
                tok = self._tokens(tokens)
            asg = self.vqsvae.spike_trains(tok)                                         # [T, N, D, h, w]
            self.vqsvae.decode(tok)
        return SpikeReport(
            asg=asg.cpu().numpy(), encoder=enc, tokens=tok.cpu().numpy(),
            spikes={k: v.cpu().numpy() for k, v in rec.spikes.items()},
            membrane={k: v.cpu().numpy() for k, v in rec.membrane.items()},
            firing_rates=rec.firing_rates())

    @_one_job
    @torch.inference_mode()
    def denoiser_spikes(self, tokens, t, guide: bool = False) -> dict[str, float]:
        """Firing rate (spikes per neuron per time step, 0..1) of each LIF layer of the denoiser (with
        ``guide``: of its guide prior) for one call on tokens ``[B,h,w]`` (mask id K where masked) at
        times ``t``, a number or ``[B]`` (as in :meth:`denoiser_logits`). Raises
        :class:`SpikingDiffusionError` for input that does not fit or a guide this pipeline lacks."""
        self._need_denoiser()
        if guide and self.guide is None:
            raise SpikingDiffusionError("this pipeline has no guide prior (set_guide gives it one)")
        model = self.guide if guide else self.denoiser
        x = self._tokens(tokens, allow_mask=True)
        t = self._times(t, len(x))
        with record_spikes(model) as rec:
            model(x, t)
        return rec.firing_rates()
