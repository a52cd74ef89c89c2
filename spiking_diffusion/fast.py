"""Fast inference for the spiking denoiser, and the plain reference it is checked against.

Two ways to compute the same thing:

* :func:`reference_logits` / :func:`reference_decode` are the paper's math written plainly: the
  static input is repeated over the T time steps and goes through every layer at every step
  (conv1 and the ASG T times, conv6 and the decoder's output conv at every step, then the mean
  over T / the membrane read-out), with the model's own SpikingJelly neurons. They use the
  models' stateful modules, so a caller that shares a model between threads must hold a lock.

* :class:`FastDenoiser` is an inference-only forward built from a trained
  :class:`~spiking_diffusion.denoiser.SpikingDenoiser`. It is stateless (membrane potentials
  are local variables), so concurrent calls cannot share neuron state, and it keeps no autograd
  graph. Compared with the reference it

  - runs conv1 + BN once on the T-constant input instead of T times;
  - takes the mean over T before the linear conv6 (T times fewer MACs in conv6);
  - runs each conv on all T steps at once (T folded into the batch, as SpikingJelly does);
  - runs the LIF neurons as a plain in-place loop (no surrogate, no saved charges);
  - computes the time embedding once per distinct time value;
  - computes a batch whose rows are all the same input (tokens and time: a generation's
    all-masked first step) once, for one row.

  Every spike is bit-identical to the reference (the convolutions and BatchNorm see the same
  inputs in the same layout, and the LIF loop does SpikingJelly's arithmetic:
  ``h = v + (x - v) / tau; s = h >= 1; v = h - h * s``); only conv6's summation order differs,
  so logits differ by float32 rounding alone (at most 1.5e-5 on the bundled models' logits of
  size up to 86; ``benchmarks/fast_agreement.py``). Folding BatchNorm into the convolution weights was tried and left
  out: the math is the same but the float rounding is not, and a membrane potential within ~1e-7
  of the threshold then flips a spike now and then (measured: a couple of flips per 16-image call
  at the paper size, moving logits by ~1e-3, beyond the 1e-4 tolerance), and it is not faster
  (BatchNorm is ~1% of a call).

Measured (paper preset, 16 images, 2 threads; ``benchmarks/bench_sampling.py --profile``): the
convolutions are ~90% of a fast call and run at ~100 GMAC/s, close to this CPU's float32 peak;
the LIF loop is ~3%, BatchNorm ~1%. Prepacked oneDNN weights and channels_last gave no gain.
Sparse products over the binary inputs (CSR matmul, embedding_bag over active inputs) were 1.5-4x
slower than the dense conv even at 2% firing (the bundled denoisers' layers fire 1.5-16%), so the remaining
saving is doing fewer calls: the sampler skips images that unmask nothing at a step.

Batch invariance: SpikingJelly-style convs on ``[T*B, C, h, w]`` give the same result for an
image whatever else is in the batch as long as the batch holds at least 2 frames (oneDNN takes
a different path for a batch of one); the fast path pads single-row convs to two rows, so
skipping idle images in the sampler, or computing identical rows once, does not change any image's
spikes. This holds on the CPU (tested); a GPU library may choose another algorithm per batch size.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .denoiser import SpikingDenoiser
from .spiking import LIF_TAU, LIF_THRESHOLD, membrane_output, repeat_over_time, reset

__all__ = ["FastDenoiser", "lif_sequence", "lif_constant", "input_features", "reference_logits", "reference_decode"]


# --- neurons ------------------------------------------------------------------------------------
def _lif_params(node) -> tuple[float, float]:
    """(tau, threshold) of a SpikingJelly LIFNode, checking it is the paper's kind of neuron."""
    tau, thr = float(node.tau), float(node.v_threshold)
    if getattr(node, "v_reset", 0.0) != 0.0 or not getattr(node, "decay_input", True):
        raise ValueError("FastDenoiser supports LIF neurons with decay_input=True and hard reset to 0")
    return tau, thr


def lif_sequence(x: torch.Tensor, tau: float = LIF_TAU, threshold: float = LIF_THRESHOLD, constant: bool = False,
                 steps: int | None = None) -> torch.Tensor:
    """Spikes of LIF neurons (input decay, hard reset to 0, v starts at 0) for inputs ``x``.

    ``x [T, ...] -> spikes [T, ...]`` float 0/1; with ``constant=True``, ``x [...]`` is fed at
    each of ``steps`` steps (no copy). Same arithmetic as SpikingJelly's LIFNode:
    ``h = v + (x_t - v) / tau; s = h >= threshold; v = 0 where s else h``.
    """
    T = steps if constant else x.shape[0]
    shape = x.shape if constant else x.shape[1:]
    out = torch.empty((T, *shape), dtype=x.dtype, device=x.device)
    v = torch.zeros(shape, dtype=x.dtype, device=x.device)
    h = torch.empty_like(v)
    for i in range(T):
        s = out[i]
        torch.sub(x if constant else x[i], v, out=h)
        h.div_(tau).add_(v)                            # h = v + (x - v) / tau (addition commutes exactly)
        torch.ge(h, threshold, out=s)                  # s = h >= threshold, as 0./1.
        torch.addcmul(h, h, s, value=-1.0, out=v)      # hard reset: v = h - h*s (exact: h*s is h or 0)
    return out


def lif_constant(x: torch.Tensor, steps: int, tau: float = LIF_TAU, threshold: float = LIF_THRESHOLD) -> torch.Tensor:
    """Spikes ``[steps, ...]`` of LIF neurons driven by the same input ``x [...]`` at every step."""
    return lif_sequence(x, tau, threshold, constant=True, steps=steps)


# --- inputs ---------------------------------------------------------------------------------------
def input_features(model: SpikingDenoiser, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The denoiser's static input ``[B, C_in, h, w]``, as ``model.input_features`` computes it,
    except that the time embedding is computed once per distinct time value (so a row's features
    do not depend on how many other rows the batch holds)."""
    if model.cfg.input_mode == "index":
        return model.input_features(tokens, t)
    B, h, w = tokens.shape
    times, inverse = torch.unique(t.to(torch.float32).reshape(B), return_inverse=True)
    tim = model.time_embed(times)[inverse]                                             # [B, E]
    tok = model.token_embed(tokens).permute(0, 3, 1, 2)                                # [B, E, h, w]
    return torch.cat([tok, tim[:, :, None, None].expand(-1, -1, h, w)], dim=1)        # [B, 2E, h, w]


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding: int = 1) -> torch.Tensor:
    """conv2d that treats a batch of one like any other batch (oneDNN's batch-1 path rounds
    differently), so a row's output does not depend on the batch size."""
    if x.shape[0] == 1:
        return F.conv2d(x.expand(2, *x.shape[1:]), weight, bias, padding=padding)[:1]
    return F.conv2d(x, weight, bias, padding=padding)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Inference BatchNorm with running statistics (the very kernel the model uses)."""
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# --- the reference --------------------------------------------------------------------------------
@torch.inference_mode()
def reference_logits(model: SpikingDenoiser, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The paper's denoiser forward, written plainly: ``[B,h,w], [B] -> logits [B,K,h,w]``.

    The input is repeated over T and every layer runs at every step, conv6 included; logits are
    the mean over T of conv6's output. Uses the model's own SpikingJelly neurons (resets them)."""
    if model.training:
        raise ValueError("reference_logits needs the model in eval mode (BatchNorm running statistics)")
    T = model.T
    try:
        x = repeat_over_time(input_features(model, tokens, t), T)                   # [T, B, C_in, h, w]
        B = x.shape[1]
        y = model.bn1(model.conv1(x.flatten(0, 1))).unflatten(0, (T, B))             # [T, B, w1, h, w]
        s1 = model.lif1(y)
        s5 = model.conv5(model.conv4(model.conv3(model.conv2(s1))))                  # [T, B, w5, h, w]
        out = model.conv6(torch.cat([s5, s1], dim=2).flatten(0, 1)).unflatten(0, (T, B))  # [T, B, K, h, w]
        return out.mean(0)
    finally:
        reset(model)


@torch.inference_mode()
def reference_decode(vqsvae, tokens: torch.Tensor, mask_id: int | None = None) -> torch.Tensor:
    """The VQ-SVAE's decoding written plainly: tokens ``[N,h,w]`` -> images ``[N,C,H,W]`` in [0,1].

    The code vectors are repeated over T and go through the ASG's conv + BN at every step; the
    decoder's output conv runs at every step before the membrane read-out ``M(.)`` and tanh."""
    T = vqsvae.cfg.time_steps
    asg, dec = vqsvae.asg, vqsvae.decoder
    try:
        e = repeat_over_time(vqsvae.code_vectors(tokens, mask_id), T)                # [T, N, D, h, w]
        N = e.shape[1]
        s = asg.lif(asg.bn(asg.conv(e.flatten(0, 1))).unflatten(0, (T, N)))         # [T, N, D, h, w]
        s = dec.block2(dec.block1(s))                                                # [T, N, c1, H, W]
        out = dec.out(s.flatten(0, 1)).unflatten(0, (T, N))                          # [T, N, C, H, W]
        img = torch.tanh(membrane_output(out, dec.decay))
        return (img + 0.5).clamp(0, 1)
    finally:
        reset(vqsvae)


# --- the fast denoiser ------------------------------------------------------------------------------
class FastDenoiser:
    """Inference-only, stateless forward of a trained :class:`SpikingDenoiser` (see the module doc).

    ``FastDenoiser(model)(tokens, t)`` returns the logits ``[B,K,h,w]``. The model must be in eval
    mode. The parameters are read from the model at each call (nothing is copied).
    """

    def __init__(self, model: SpikingDenoiser):
        self.model = model
        self.T = model.T
        self.lif_params = [_lif_params(n) for n in self._neurons()]   # (tau, threshold) per LIF layer
        m = model   # (conv, bn) of conv1..conv5, looked up once (their tensors are read at every call)
        self.blocks = [(m.conv1, m.bn1)] + [(getattr(m, f"conv{i}")[0], getattr(m, f"conv{i}")[1]) for i in range(2, 6)]

    def _neurons(self):
        m = self.model
        return [m.lif1] + [getattr(m, f"conv{i}")[2] for i in range(2, 6)]

    def _conv_bn(self, i: int, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.blocks[i]
        return _bn(_conv(x, conv.weight, conv.bias), bn)

    @torch.inference_mode()
    def __call__(self, tokens: torch.Tensor, t: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """Logits ``[B,K,h,w]`` for tokens ``[B,h,w]`` (mask id where masked) and times ``t [B]``.
        ``record``, when given, receives the spikes ``[T,B,C,h,w]`` of conv1..conv5 by name."""
        if self.model.training:
            raise ValueError("FastDenoiser needs the model in eval mode (BatchNorm running statistics)")
        if (record is None and len(tokens) > 1 and t.shape == (len(tokens),)
                and bool((tokens == tokens[:1]).all()) and bool((t == t[:1]).all())):
            # every row the same input (the all-masked first step of a generation): one row's forward,
            # exact by the batch invariance below
            return self(tokens[:1], t[:1]).repeat(len(tokens), 1, 1, 1)               # [B, K, h, w]
        T = self.T
        x = input_features(self.model, tokens, t)                                     # [B, C_in, h, w]
        B = x.shape[0]
        tau, thr = self.lif_params[0]
        s1 = lif_constant(self._conv_bn(0, x), T, tau, thr)                            # [T, B, w1, h, w]
        s = s1
        if record is not None:
            record["conv1"] = s1
        for i in range(1, 5):
            tau, thr = self.lif_params[i]
            y = self._conv_bn(i, s.flatten(0, 1))                                      # [T*B, c, h, w]
            s = lif_sequence(y.unflatten(0, (T, B)), tau, thr)                         # [T, B, c, h, w]
            if record is not None:
                record[f"conv{i + 1}"] = s
        # conv6 is linear: the mean over T first, then one conv (T times fewer MACs)
        m = torch.cat([s.mean(0), s1.mean(0)], dim=1)                                  # [B, w5+w1, h, w]
        return _conv(m, self.model.conv6.weight, self.model.conv6.bias)
