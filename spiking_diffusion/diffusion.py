"""Absorbing-state discrete diffusion over the token grid (the "scheduler").

Forward process: mask each token with probability t/N (t uniform in 1..N). Reverse process:
start fully masked; at step s (S down to 1) each still-masked position is chosen with
probability 1/s and receives a token sampled from the denoiser's prediction. With fewer steps
than N, the denoiser is given the time on its training scale, t = s * N / S.

Optional corrector rounds (not in the paper; predictor-corrector sampling, a Gibbs step on the
learned prior): after the last step, re-mask a few random cells and sample them again, given
all the others, at a lower temperature. Off by default (``corrector_steps=0``). The sampler's
settings, their defaults and bounds live in :mod:`spiking_diffusion.sampling`.

Source: absorbing-state discrete diffusion (Austin et al. 2021, D3PM), sampled and trained as in
Bond-Taylor et al. 2022 ("Unleashing Transformers": the 1/s unmasking, the reweighted ELBO), which
Spiking-Diffusion (Liu et al. 2023, stage 2) runs over the VQ-SVAE's tokens with N = 49.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import check_choice
from .sampling import CHOICE_TEMPERATURE, SamplerConfig, check_num_images, check_order, check_sampler, check_steps

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (tokens [B,h,w], t [B]) -> logits [B,K,h,w]


def guided(denoise: DenoiseFn, guide: DenoiseFn, weight: float) -> DenoiseFn:
    """Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"; not in
    the Spiking-Diffusion paper): a denoiser whose log-probabilities are pushed away from a weaker prior's
    on the same tokens, log p + w (log p - log p_guide) ``[B, K, h, w]``. The weaker prior over-draws
    what both find easy; the difference spreads the samples and sharpens them. ``weight`` 0: ``denoise``."""
    if not weight:
        return denoise

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(denoise(x, t).float(), 1)                        # [B, K, h, w]
        log_q = torch.log_softmax(guide(x, t).float(), 1)                          # [B, K, h, w]
        return log_p + weight * (log_p - log_q)
    return call


@dataclass
class StepState:
    """One sampling step. Arrays are numpy; ``tokens`` holds the mask id where still masked.

    tokens [B,h,w] int16 after this step (B images); unmasked [B,h,w] bool (chosen at this step);
    pred_argmax / pred_sampled [B,h,w] int16: each image's latest prediction for every position
    (made at this step where ``denoised``, else at its last step that called the denoiser);
    denoised [B] bool: the images the denoiser ran for at this step (all of them, except with
    ``skip_idle`` in the random order's unmasking steps after the first: only those that unmask
    something); t: the time given to the denoiser (training scale). kind: "unmask" (one of the
    ``num_steps`` steps) or "correct" (a corrector round after them, whose ``unmasked`` cells were
    re-masked and sampled again).
    """

    index: int
    num_steps: int
    t: float
    tokens: np.ndarray
    unmasked: np.ndarray
    pred_argmax: np.ndarray
    pred_sampled: np.ndarray
    denoised: np.ndarray
    kind: str = "unmask"


@dataclass
class GenerationTrace:
    """Every step of one sampling run (see :class:`StepState`), plus stacking helpers."""

    mask_id: int
    steps: list[StepState] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def kinds(self) -> list[str]:
        """Each step's kind in order: ``"unmask"`` (the paper's steps), then ``"correct"`` (corrector rounds)."""
        return [s.kind for s in self.steps]

    def stack(self, name: str) -> np.ndarray:
        """Stack a per-step field over steps: e.g. ``stack('tokens') -> [S, N, h, w]``."""
        return np.stack([getattr(s, name) for s in self.steps])


def compact(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with integer ids in the smallest dtype holding them (int16 for codebooks of
    up to 32,767 codes): a trace of 64 images x 109 steps takes 2.4 MB instead of 8.6 MB."""
    if a.dtype.kind in "iu" and a.size and -2**15 <= a.min() and a.max() < 2**15:
        return a.astype(np.int16)
    return a.copy()


def temperature_at(step: int, num_steps: int, start: float, end: float | None = None) -> float:
    """Sampling temperature at step ``step`` (0-based) of ``num_steps``: constant ``start``, or linear
    from ``start`` (first step) to ``end`` (last step)."""
    if end is None or num_steps == 1:
        return start
    return start + (end - start) * step / (num_steps - 1)


def gumbel_noise(u: torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1) (0 is clamped to 1e-20) -> Gumbel(0, 1) noise of the same shape
    (argmax(logits + noise) samples)."""
    return -torch.log((-torch.log(u.clamp(1e-20, 1.0))).clamp_(min=1e-20))


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep, per position, the most likely tokens whose probabilities add up to ``top_p``; the
    rest get -inf. ``logits [B,K,h,w]`` -> same shape. The most likely token always stays."""
    if top_p >= 1:
        return logits
    probs, order = torch.softmax(logits, 1).sort(1, descending=True)                   # [B, K, h, w]
    drop_sorted = probs.cumsum(1) - probs >= top_p     # the mass before a token already reaches top_p
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)


LOSS_KINDS = ("reweighted_elbo", "elbo")   # the prior's training losses (AbsorbingDiffusion.loss)


def check_loss_kind(kind) -> str:
    """``kind`` when it names a training loss of :data:`LOSS_KINDS`; else raises :class:`SettingError`."""
    return check_choice("the loss", kind, LOSS_KINDS)


class AbsorbingDiffusion:
    """Forward masking, training losses and sampling for a K-symbol grid with mask id K."""

    def __init__(self, codebook_size: int, latent_size: int = 7, num_diffusion_steps: int | None = None):
        """``num_diffusion_steps``: N, the training time scale (t in 1..N); None: the grid's cell
        count (49 for 7x7, the paper's N)."""
        self.K = codebook_size
        self.mask_id = codebook_size
        self.shape = (latent_size, latent_size)
        self.N = latent_size * latent_size if num_diffusion_steps is None else num_diffusion_steps

    # --- forward process ------------------------------------------------------------------
    def sample_time(self, batch: int, device, generator=None) -> torch.Tensor:
        """t uniform in 1..N: ``[B]`` long."""
        return torch.randint(1, self.N + 1, (batch,), device=device, generator=generator)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, generator=None):
        """Mask each token of ``x0 [B,h,w]`` (long, codes 0..K-1) with probability t/N, ``t [B]``
        on the 1..N scale. Returns (x_t ``[B,h,w]`` with masked cells = K, mask ``[B,h,w]`` bool)."""
        u = torch.rand(x0.shape, device=x0.device, generator=generator)      # [B, h, w]
        mask = u < (t.float() / self.N).view(-1, 1, 1)                       # [B, h, w]
        return x0.masked_fill(mask, self.mask_id), mask

    def loss(self, denoise: DenoiseFn, x0: torch.Tensor, kind: str = "reweighted_elbo", generator=None):
        """Cross-entropy on the masked positions, per image in bits per token, averaged over the batch
        (a scalar). ``denoise(x_t [B,h,w], t [B]) -> logits [B,K,h,w]``; ``x0 [B,h,w]`` long codes.

        ``reweighted_elbo`` weighs by (1 - t/N), the authors' training loss (so t = N, everything
        masked, weighs 0); ``elbo`` by N/t (the variational bound). Raises :class:`SettingError` (a
        ValueError) for another ``kind``.
        """
        check_loss_kind(kind)
        B = x0.shape[0]
        t = self.sample_time(B, x0.device, generator)
        x_t, mask = self.q_sample(x0, t, generator)
        logits = denoise(x_t, t)                                             # [B, K, h, w]
        ce = F.cross_entropy(logits, x0, reduction="none")                   # [B, h, w]
        ce = (ce * mask).flatten(1).sum(1)                                   # [B]
        if kind == "reweighted_elbo":
            w = 1 - t.to(ce.dtype) / self.N
        else:                                                                # "elbo"
            w = self.N / t.to(ce.dtype)
        return (w * ce / (x0[0].numel() * math.log(2))).mean()

    # --- reverse process ------------------------------------------------------------------
    def training_time(self, step: int, num_steps: int) -> float:
        """Time on the training scale for sampling step ``step`` (num_steps..1) of ``num_steps``."""
        return step * self.N / num_steps

    @torch.inference_mode()
    def sample(
        self,
        denoise: DenoiseFn,
        num_images: int,
        num_steps: int | None = None,
        sampler: SamplerConfig | None = None,
        generator: torch.Generator | None = None,
        device="cpu",
        order: str = "random",
        skip_idle: bool = False,
        callback: Callable[[StepState], None] | None = None,
        trace: bool = False,
        run: Callable[..., Any] | None = None,
    ):
        """Sample token grids ``[num_images, h, w]`` (long, codes 0..K-1); returns (tokens, trace or
        None). num_steps: the sampling steps S in 1..N (None: N), step s seeing time s*N/S.

        sampler: temperature (schedule), nucleus and corrector settings
        (:class:`~spiking_diffusion.sampling.SamplerConfig`; None: the paper's sampler at 0.65).
        The temperature moves linearly from ``temperature`` at the first step to
        ``temperature_end`` at the last when that is set; ``top_p`` draws each position only from
        its most likely tokens whose probabilities (after the temperature) add up to it;
        ``corrector_steps`` rounds after the last step each re-mask ``corrector_cells`` random cells
        per image and sample them again at ``corrector_temperature`` (and ``top_p``), the denoiser
        seeing the time of that many masked cells.
        order: 'random' (the paper: each masked position unmasked with probability 1/s) or
        'confidence' (MaskGIT-style: the most confident predictions first, linear schedule).
        skip_idle: call the denoiser only for images that unmask something at this step (exact:
        the random draws do not depend on it; ignored for order='confidence', which ranks every
        image's predictions). A trace or callback then gets each image's latest prediction
        (:class:`StepState`); the first step runs for every image, so that each has one.
        The random draws per step are fixed (uniforms for positions, Gumbel noise for tokens),
        so a seed gives the same result whatever the options that do not change the math. They are
        drawn for the whole batch at once: image i of a batch of 16 is not image 0 of a batch of 1.
        run: how each step's tensor work is run, ``run(fn, *args)`` -> ``fn(*args)`` (default: at
        once); the pipeline passes :func:`~spiking_diffusion.compute.run`, so that each step is one
        job and the callback runs in the caller's thread between two of them.
        Raises :class:`~spiking_diffusion.errors.SettingError` (a ValueError) on bad settings.
        """
        sampler = check_sampler(sampler)
        num_steps = check_steps(self.N if num_steps is None else num_steps, self.N)
        num_images = check_num_images(num_images)
        sampler.check_grid(self.shape[0] * self.shape[1])
        order = check_order(order)
        record = GenerationTrace(self.mask_id) if trace else None
        steps = self._steps(denoise, num_images, num_steps, sampler, generator, device, order, skip_idle,
                            watched=trace or callback is not None)
        run = run or (lambda fn, *args: fn(*args))
        try:   # the generator is advanced by one job at a time, each waited for before the next
            while True:
                kind, item = run(next, steps)          # one step (or corrector round) of tensor work
                if kind == "done":
                    return item, record
                if record is not None:
                    record.steps.append(item)
                if callback is not None:
                    callback(item)
        finally:   # (a job too: after an interrupted wait, the step may still be running)
            run(steps.close)

    def _steps(self, denoise: DenoiseFn, n: int, num_steps: int, sampler: SamplerConfig, generator, device,
               order: str, skip_idle: bool, watched: bool) -> Iterator[tuple[str, Any]]:
        """:meth:`sample`'s work, one step or corrector round per item: ("step", its StepState, or None
        when nobody watches), and last ("done", the token grids ``[n, h, w]``)."""
        temperature, temperature_end, top_p = sampler.temperature, sampler.temperature_end, sampler.top_p
        h, w = self.shape
        x = torch.full((n, h, w), self.mask_id, dtype=torch.long, device=device)

        def state(**fields) -> tuple[str, StepState]:
            """One step's record (tensors -> numpy, token ids as int16)."""
            return "step", StepState(**{k: compact(v.cpu().numpy()) if torch.is_tensor(v) else v
                                        for k, v in fields.items()})

        if watched:
            latest_arg, latest_smp = x.clone(), x.clone()  # each image's latest prediction [B, h, w]
        for i, s in enumerate(range(num_steps, 0, -1)):
            t_val = self.training_time(s, num_steps)
            temp = temperature_at(i, num_steps, temperature, temperature_end)
            u = torch.rand((n, h, w), device=device, generator=generator)                   # [B, h, w]
            gumbel = gumbel_noise(torch.rand((n, self.K, h, w), device=device, generator=generator))  # [B, K, h, w]
            masked = x == self.mask_id                                                        # [B, h, w]
            if order == "random":   # the paper's: each masked cell with probability 1/s, before the denoiser runs
                chosen = masked & (u < 1.0 / s)                                               # [B, h, w]
            rows = torch.arange(n, device=device)                       # the images the denoiser runs for
            if skip_idle and order == "random" and not (watched and i == 0):
                rows = chosen.flatten(1).any(1).nonzero().flatten()     # only those that unmask something
            if len(rows):
                t = torch.full((len(rows),), t_val, device=device)
                logits = nucleus(denoise(x[rows], t).float() / temp, top_p)                          # [R, K, h, w]
                smp = (logits + gumbel[rows]).argmax(1)                                       # [R, h, w]
                if watched:
                    latest_smp[rows], latest_arg[rows] = smp, logits.argmax(1)
                if order == "confidence":   # MaskGIT: chosen after the denoiser, by its draws' confidence
                    chosen = self._most_confident(logits, smp, masked, u, s, num_steps)       # [B, h, w]
                pred_smp = x.clone()
                pred_smp[rows] = smp
                x = torch.where(chosen, pred_smp, x)
            if watched:
                denoised = np.zeros(n, bool)
                denoised[rows.cpu().numpy()] = True
                yield state(index=i, num_steps=num_steps, t=t_val, tokens=x, unmasked=chosen, pred_argmax=latest_arg,
                            pred_sampled=latest_smp, denoised=denoised)
            else:
                yield "step", None
        assert not (x == self.mask_id).any(), "sampling must end with every position unmasked"
        for r in range(sampler.corrector_steps):
            x, chosen, logits, smp, t_corr = self._correct(denoise, x, sampler.corrector_cells,
                                                           sampler.corrector_temperature, top_p, generator)
            if watched:
                yield state(index=num_steps + r, num_steps=num_steps, t=t_corr, tokens=x, unmasked=chosen,
                            pred_argmax=logits.argmax(1), pred_sampled=smp, denoised=np.ones(n, bool), kind="correct")
            else:
                yield "step", None
        yield "done", x

    @staticmethod
    def _most_confident(logits, smp, masked, u, s: int, num_steps: int) -> torch.Tensor:
        """order='confidence' (MaskGIT, Chang et al. 2022) at step ``s`` of ``num_steps``: the masked
        cells whose drawn tokens ``smp`` are likeliest under ``logits [B,K,h,w]``, as many as leave
        floor(h*w*(s-1)/S) cells masked. Gumbel noise from ``u`` on the confidence, scaled by s/S (s counts
        down, so it fades over the steps), keeps the order diverse. ``smp``, ``masked``, ``u``: ``[B,h,w]`` -> chosen ``[B,h,w]`` bool."""
        n, h, w = smp.shape
        conf = torch.log_softmax(logits, 1).gather(1, smp.unsqueeze(1)).squeeze(1)           # [B, h, w]
        conf = conf + CHOICE_TEMPERATURE * (s / num_steps) * gumbel_noise(u)                  # [B, h, w]
        conf = conf.masked_fill(~masked, -math.inf)
        keep_masked = int(math.floor(h * w * (s - 1) / num_steps))
        n_new = masked.flatten(1).sum(1) - keep_masked                                        # [B]
        ranks = conf.flatten(1).argsort(1, descending=True).argsort(1).view(n, h, w)          # [B, h, w]
        return masked & (ranks < n_new.view(n, 1, 1))

    def _correct(self, denoise: DenoiseFn, x: torch.Tensor, cells: int, temperature: float, top_p: float, generator):
        """One corrector round on complete grids ``x [B,h,w]``: re-mask ``cells`` random cells per
        image and sample them again given the rest. Returns (new x, chosen [B,h,w], logits
        [B,K,h,w], sampled prediction [B,h,w], the time given to the denoiser)."""
        n, (h, w) = x.shape[0], self.shape
        t = cells * self.N / (h * w)                                  # the time of that many masked cells
        u = torch.rand((n, h * w), device=x.device, generator=generator)
        gumbel = gumbel_noise(torch.rand((n, self.K, h, w), device=x.device, generator=generator))
        chosen = torch.zeros_like(u, dtype=torch.bool).scatter_(1, u.argsort(1)[:, :cells], True).view(n, h, w)
        x_in = x.masked_fill(chosen, self.mask_id)                                            # [B, h, w]
        logits = nucleus(denoise(x_in, torch.full((n,), t, device=x.device)).float() / temperature, top_p)  # [B, K, h, w]
        smp = (logits + gumbel).argmax(1)                                                     # [B, h, w]
        return torch.where(chosen, smp, x), chosen, logits, smp, t
