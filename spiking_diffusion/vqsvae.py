"""Stage 1: the VQ-SVAE (vector-quantised spiking variational auto-encoder).

image [B,C,28,28] --SpikingEncoder--> spikes [T,B,D,7,7] --dual coding--> z [B,D,7,7]
  --nearest code--> tokens [B,7,7] --codebook--> e [B,D,7,7]
  --AdaptiveSpikeGenerator--> spikes [T,B,D,7,7] --SpikingDecoder--> image [B,C,28,28]

Source: Liu et al. 2023, "Spiking-Diffusion" (arXiv 2308.10187), stage 1, the VQ-SVAE: features coded
by both spike firing rate and postsynaptic (membrane) potential, and an adaptive spike generator that
turns code vectors back into spike trains; sizes and losses as in the authors' code. Every difference
and exact shortcut is listed in docs/faithfulness.md.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import layer

from .config import VQSVAEConfig
from .errors import SettingError, SpikingDiffusionError
from .spiking import ConstantInputBatchNorm2d, conv_bn_lif, lif, membrane_output, psp, repeat_over_time, reset


class SpikingEncoder(nn.Module):
    """Conv3x3/2 + BN + LIF, Conv3x3/2 + BN + LIF, Conv1x1 + BN + LIF: ``[B,C,28,28] -> [T,B,D,7,7]``.
    Pixels come in [0, 1]; the encoder centres them (x - 0.5) itself, as the authors' code does.

    The image is a direct (constant) input, so the first conv + BN is computed once and
    repeated over T: exactly what T identical copies would give, T times cheaper (BatchNorm's
    running statistics included: :class:`~spiking_diffusion.spiking.ConstantInputBatchNorm2d`).
    """

    def __init__(self, cfg: VQSVAEConfig):
        super().__init__()
        c1, c2 = cfg.hidden_channels
        self.T = cfg.time_steps
        self.conv1 = nn.Conv2d(cfg.in_channels, c1, 3, stride=2, padding=1)
        self.bn1 = ConstantInputBatchNorm2d(c1, repeats=cfg.time_steps)
        self.lif1 = lif()
        self.block2 = conv_bn_lif(c1, c2, 3, stride=2, padding=1)
        self.block3 = conv_bn_lif(c2, cfg.code_dim, 1, stride=1, padding=0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(images - 0.5))        # [B, c1, 14, 14], pixels shifted to [-0.5, 0.5]
        s = self.lif1(repeat_over_time(x, self.T))    # [T, B, c1, 14, 14]
        s = self.block2(s)                            # [T, B, c2, 7, 7]
        return self.block3(s)                         # [T, B, D, 7, 7]


class DualCodingQuantizer(nn.Module):
    """Dual coding ``z = (1-a) M(s) + a mean_t(s)`` and a codebook of K vectors of D dims.

    Source: the paper's VQ-SVAE coding: M(s), the membrane-potential (PSP-like) read-out, mixed with
    the spike firing rate mean_t(s) by a learned scalar ``a`` (``cfg.alpha_init`` to start); nearest
    code by L2, codebook loss ``||sg[z] - e||^2 + beta ||z - sg[e]||^2`` with a straight-through
    gradient (VQ-VAE, van den Oord et al. 2017)."""

    def __init__(self, cfg: VQSVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.alpha = nn.Parameter(torch.tensor(cfg.alpha_init))
        self.codebook = nn.Embedding(cfg.codebook_size, cfg.code_dim)

    def dual_code(self, spikes: torch.Tensor) -> torch.Tensor:
        """``[T,B,D,h,w] -> [B,D,h,w]``: membrane-potential coding mixed with firing-rate coding."""
        a = self.alpha
        return (1 - a) * membrane_output(spikes, self.cfg.membrane_decay) + a * spikes.mean(0)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (L2) per position: ``[B,D,h,w] -> [B,h,w]`` long."""
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)                       # [B*h*w, D]
        e = self.codebook.weight                                           # [K, D]
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()  # [B*h*w, K]
        return d.argmin(1).view(B, h, w)

    def lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``tokens [B,h,w]`` -> ``[B,D,h,w]``."""
        return self.codebook(tokens).permute(0, 3, 1, 2)

    def forward(self, spikes: torch.Tensor):
        """Returns (e with straight-through gradient [B,D,h,w], tokens [B,h,w], codebook loss)."""
        z = self.dual_code(spikes)                                          # [B, D, h, w]
        tokens = self.nearest(z)                                            # [B, h, w]
        e = self.lookup(tokens)                                             # [B, D, h, w]
        loss = F.mse_loss(e, z.detach()) + self.cfg.commitment_cost * F.mse_loss(z, e.detach())
        e_st = z + (e - z).detach()
        return e_st, tokens, loss


class AdaptiveSpikeGenerator(nn.Module):
    """Conv1x1 + BN + LIF on the quantised map repeated over T: ``[B,D,h,w] -> [T,B,D,h,w]``.

    Source: the paper's adaptive spike generator (ASG): it restores code vectors as spike trains
    for the spiking decoder, trained to match the encoder's trains by the spike-train loss
    (:meth:`VQSVAE.losses`). The input is the same at every step, so conv + BN runs once (exact)
    before the LIF.
    """

    def __init__(self, cfg: VQSVAEConfig):
        super().__init__()
        self.T = cfg.time_steps
        self.conv = nn.Conv2d(cfg.code_dim, cfg.code_dim, 1)
        self.bn = ConstantInputBatchNorm2d(cfg.code_dim, repeats=cfg.time_steps)
        self.lif = lif()

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.lif(repeat_over_time(self.bn(self.conv(e)), self.T))  # [T, B, D, h, w]


class SpikingDecoder(nn.Module):
    """ConvT3x3/2 + BN + LIF, ConvT3x3/2 + BN + LIF, ConvT3x3/1; image = tanh(M(out)).

    ``[T,B,D,7,7] -> [B,C,28,28]`` in [-1, 1]. The last layer is linear, so M(.) is taken
    before it (exact: M(W*s + b) = W*M(s) + b*sum(coef)), T times cheaper.
    """

    def __init__(self, cfg: VQSVAEConfig):
        super().__init__()
        c1, c2 = cfg.hidden_channels
        self.decay = cfg.membrane_decay
        self.block1 = nn.Sequential(
            layer.ConvTranspose2d(cfg.code_dim, c2, 3, stride=2, padding=1, output_padding=1, step_mode="m"),
            layer.BatchNorm2d(c2, step_mode="m"), lif())
        self.block2 = nn.Sequential(
            layer.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1, step_mode="m"),
            layer.BatchNorm2d(c1, step_mode="m"), lif())
        self.out = nn.ConvTranspose2d(c1, cfg.in_channels, 3, stride=1, padding=1)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        s = self.block2(self.block1(spikes))                   # [T, B, c1, 28, 28]
        m = membrane_output(s, self.decay)                     # [B, c1, 28, 28]
        T = s.shape[0]
        bias_scale = sum(self.decay ** k for k in range(T))
        y = F.conv_transpose2d(m, self.out.weight, self.out.bias * bias_scale, stride=1, padding=1)
        return torch.tanh(y)                                   # [B, C, 28, 28]


class VQSVAE(nn.Module):
    """The whole stage-1 model. Every public method resets neuron state before returning."""

    def __init__(self, cfg: VQSVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SpikingEncoder(cfg)
        self.quantizer = DualCodingQuantizer(cfg)
        self.asg = AdaptiveSpikeGenerator(cfg)
        self.decoder = SpikingDecoder(cfg)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise :class:`SettingError` (a ``ValueError``) unless ``images`` is ``[N, C, H, W]`` of this
        model's channels and size, floating point, finite and in [0, 1] (a uint8 picture is 0..255:
        divide by 255 first). Every inference call that takes images checks them here."""
        c, s = self.cfg.in_channels, self.cfg.image_size
        want = f"[N, {c}, {s}, {s}] floats in [0, 1]"
        if not torch.is_tensor(images):
            raise SettingError(f"images must be a torch tensor, {want}; got {type(images).__name__} "
                               "(torch.from_numpy turns an array into one; the pipeline takes arrays too)")
        if images.ndim != 4 or images.shape[1:] != (c, s, s):
            last = " (channels last, as pipe() returns them: spiking_diffusion.images.to_float converts)" \
                if images.ndim == 4 and images.shape[1:] == (s, s, c) else ""
            raise SettingError(f"images must be {want}; got {list(images.shape)}{last}")
        if not torch.is_floating_point(images):
            raise SettingError(f"images must be {want}; got {images.dtype} (0..255 pixels: divide by 255)")
        if images.numel() and (not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise SettingError(f"image values must be finite and lie in [0, 1]; got {float(images.min()):g}.."
                               f"{float(images.max()):g}")

    def check_tokens(self, tokens: torch.Tensor, allow_mask: bool = False) -> None:
        h = self.cfg.latent_size
        if tokens.ndim != 3 or tokens.shape[1:] != (h, h):
            raise ValueError(f"tokens must be [N, {h}, {h}]; got {list(tokens.shape)}")
        hi = self.cfg.codebook_size + (1 if allow_mask else 0)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= hi):
            raise ValueError(f"token ids must lie in 0..{hi - 1}; got {int(tokens.min())}..{int(tokens.max())}")

    # --- training -------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses for ``images [B,C,H,W]`` in [0, 1] (forward, so DDP can wrap it)."""
        return self.losses(images)

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses for ``images [B,C,H,W]`` in [0, 1], each a scalar: total, reconstruction
        (MSE / ``cfg.data_variance``, as in the authors' code), codebook, spike_train (PSP), mse
        (plain, pixels in [-0.5, 0.5]).

        Raises SpikingDiffusionError when ``cfg.data_variance`` is None (a config built by hand or
        from a preset, or an import of the authors' weights): the loss would otherwise be weighted
        differently from the paper's without a word (checked before any work), and
        :class:`SettingError` for images :meth:`check_images` refuses (0..255 pixels would train silently)."""
        self.check_images(images)
        if self.cfg.data_variance is None:
            raise SpikingDiffusionError(
                "the VQ-SVAE's data variance is unknown: set VQSVAEConfig.data_variance to the variance of the "
                "training pixels in [0, 1] (e.g. 0.0949 for MNIST; train-vqsvae and train-decoder take it from the "
                "training images), or for an import of the authors' weights give import-official --data-variance")
        try:
            enc = self.encoder(images)                             # [T, B, D, h, w]
            e, _, codebook_loss = self.quantizer(enc)              # [B, D, h, w]
            asg = self.asg(e)                                      # [T, B, D, h, w]
            tau, beta = self.cfg.psp_tau, self.cfg.commitment_cost
            spike_loss = (psp(asg, tau) - psp(enc.detach(), tau)).pow(2).mean() \
                + beta * (psp(asg.detach(), tau) - psp(enc, tau)).pow(2).mean()
            recon = self.decoder(asg)                              # [B, C, H, W] in [-1, 1]
            mse = F.mse_loss(recon, images - 0.5)
            rec = mse / self.cfg.data_variance
            return {"total": rec + codebook_loss + spike_loss, "reconstruction": rec,
                    "codebook": codebook_loss, "spike_train": spike_loss, "mse": mse}
        finally:
            reset(self)

    # --- inference ------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[N,C,H,W]`` in [0,1] -> tokens ``[N,h,w]`` long."""
        return self.encode_with_spikes(images)[1]

    def encode_with_spikes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N,C,H,W]`` floats in [0, 1] -> (encoder output spikes ``[T,N,D,h,w]``, tokens ``[N,h,w]``).
        Raises :class:`SettingError` for other images (:meth:`check_images`)."""
        self.check_images(images)
        try:
            spikes = self.encoder(images)
            return spikes, self.quantizer.nearest(self.quantizer.dual_code(spikes))
        finally:
            reset(self)

    def code_vectors(self, tokens: torch.Tensor, mask_id: int | None = None) -> torch.Tensor:
        """Code vectors ``[N,D,h,w]``; positions equal to ``mask_id`` get a zero vector."""
        if mask_id is None:
            return self.quantizer.lookup(tokens)
        masked = tokens == mask_id                                  # [N, h, w]
        e = self.quantizer.lookup(tokens.masked_fill(masked, 0))   # [N, D, h, w]
        return e.masked_fill(masked.unsqueeze(1), 0.0)

    def spike_trains(self, tokens: torch.Tensor, mask_id: int | None = None) -> torch.Tensor:
        """Adaptive spike generator's spike trains for ``tokens``: ``[T,N,D,h,w]``."""
        try:
            return self.asg(self.code_vectors(tokens, mask_id))
        finally:
            reset(self)

    def decode(self, tokens: torch.Tensor, mask_id: int | None = None) -> torch.Tensor:
        """tokens ``[N,h,w]`` -> images ``[N,C,H,W]`` in [0,1]. Masked positions decode from zeros.
        Codes are 0..K-1 (or ``mask_id``); this low-level call does not check them (an id out of range
        raises the embedding's IndexError): the pipeline's ``decode`` does, with a clear message."""
        try:
            out = self.decoder(self.asg(self.code_vectors(tokens, mask_id)))  # [N, C, H, W] in [-1, 1]
            return (out + 0.5).clamp(0, 1)
        finally:
            reset(self)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Encode then decode: ``[N,C,H,W] -> [N,C,H,W]`` in [0,1]."""
        return self.decode(self.encode(images))
