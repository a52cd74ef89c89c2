"""Spiking building blocks shared by every network: LIF neurons, read-outs and recorders.

All spiking layers run in SpikingJelly's multi-step mode on ``[T, B, C, H, W]`` tensors.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron, surrogate


# The paper's LIF neuron: SpikingJelly's defaults (time constant, threshold, hard reset value).
LIF_TAU = 2.0
LIF_THRESHOLD = 1.0
LIF_V_RESET = 0.0


def lif() -> neuron.LIFNode:
    """The paper's neuron: LIF with SpikingJelly defaults (tau 2, threshold 1, hard reset to 0)
    and the ATan surrogate gradient, in multi-step mode."""
    return neuron.LIFNode(tau=LIF_TAU, v_threshold=LIF_THRESHOLD, v_reset=LIF_V_RESET,
                          surrogate_function=surrogate.ATan(), step_mode="m")


def conv_bn_lif(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    """Conv2d + BatchNorm2d + LIF, all multi-step: ``[T, B, c_in, H, W] -> [T, B, c_out, H', W']``."""
    return nn.Sequential(
        layer.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, step_mode="m"),
        layer.BatchNorm2d(c_out, step_mode="m"),
        lif(),
    )


class ConstantInputBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d of a layer whose input is the same at each of ``repeats`` time steps, run once on
    ``[B, C, H, W]`` instead of on the ``[repeats*B, C, H, W]`` copies the paper's layer sees.

    The output is the same: the copies have the same batch mean and (biased) variance. The running
    variance is not, in training: BatchNorm updates it with the unbiased variance ``v * n / (n - 1)``,
    n the samples per channel, and the copies hold ``repeats`` times more. So in training this layer
    updates its running statistics with ``n = repeats * B * H * W``, exactly as the layer on the T
    copies does (without, the running variance drifts by about ``(1 - 1/T) / (B*H*W)`` of itself:
    6e-4 at batch 32 on a 7x7 map, T=16). Eval mode (running statistics) is plain BatchNorm2d.
    """

    def __init__(self, num_features: int, repeats: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats) or self.repeats == 1:
            return super().forward(x)
        self.num_batches_tracked.add_(1)                      # as nn.BatchNorm2d does
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)  # batch statistics
        with torch.no_grad():
            var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)             # [C], [C]
            n = self.repeats * (x.numel() // x.shape[1])      # samples per channel in the T copies
            self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            self.running_var.mul_(1 - factor).add_(var * (n / (n - 1)), alpha=factor)
        return y


def repeat_over_time(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Direct coding: ``[B, ...] -> [T, B, ...]`` (a view, no copy)."""
    return x.unsqueeze(0).expand(time_steps, *x.shape)


def membrane_output(x: torch.Tensor, decay: float) -> torch.Tensor:
    """M(s) = sum_t decay^(T-1-t) x_t, the newest step weighing 1: ``[T, ...] -> [...]``
    (``decay``: ``VQSVAEConfig.membrane_decay``, the paper's 0.8)."""
    T = x.shape[0]
    coef = decay ** torch.arange(T - 1, -1, -1, dtype=x.dtype, device=x.device)  # [T]
    return torch.tensordot(coef, x, dims=([0], [0]))


def psp(x: torch.Tensor, tau: float) -> torch.Tensor:
    """Post-synaptic potential filter p_t = p_{t-1} + (x_t - p_{t-1}) / tau, p_{-1} = 0: ``[T, ...]``
    (``tau``: ``VQSVAEConfig.psp_tau``, the paper's tau_s = 2)."""
    out, p = [], torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        p = p + (x[t] - p) / tau
        out.append(p)
    return torch.stack(out)


def reset(net: nn.Module) -> None:
    """Reset every neuron's state in ``net`` (must follow every forward pass)."""
    functional.reset_net(net)


@dataclass
class SpikeRecord:
    """What :func:`record_spikes` saw, keyed by the module path of each LIF layer.

    spikes[name]:   ``[T, B, C, H, W]`` float 0/1
    membrane[name]: ``[T, B, C, H, W]`` membrane potential at the end of each step (after any reset)
    """

    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    membrane: dict[str, torch.Tensor] = field(default_factory=dict)

    def firing_rates(self) -> dict[str, float]:
        """Mean firing rate per layer (spikes per neuron per time step)."""
        return {k: float(v.float().mean()) for k, v in self.spikes.items()}


@contextmanager
def record_spikes(net: nn.Module, membrane: bool = False):
    """Record the output spikes (and optionally membrane potentials) of every LIF layer in ``net``.

    Recording only reads tensors, so outputs are unchanged. Yields a :class:`SpikeRecord`.
    """
    rec = SpikeRecord()
    handles, stored = [], []
    for name, m in net.named_modules():
        if isinstance(m, neuron.BaseNode):
            def hook(mod, inp, out, name=name):
                rec.spikes[name] = out.detach().clone()
                if membrane and getattr(mod, "v_seq", None) is not None:
                    rec.membrane[name] = mod.v_seq.detach().clone()
            handles.append(m.register_forward_hook(hook))
            if membrane:
                stored.append((m, m.store_v_seq))
                m.store_v_seq = True
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()
        for m, old in stored:
            m.store_v_seq = old
