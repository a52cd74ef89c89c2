"""The Learn view's handlers: one LIF neuron, direct and rate coding, the PSP filter and the
quantiser's dual coding, each a pure function of its sliders (no model) returning (figure, note).
Every input is checked against its slider's range (:data:`LEARN_RANGES`, the sliders' own)."""
from __future__ import annotations

import numpy as np

from spiking_diffusion import teaching

from . import plots
from .checks import MAX_SEED, check_float, check_int, friendly

LEARN_RANGES = {            # the Learn view's settings: each slider's range and its handler's check
    "Input current": (-1, 4), "Threshold": (0.1, 3), "Time constant tau": (1, 20), "Time steps": (4, 100),
    "Pixel value": (0, 1), "Time steps T": (1, 64), "Spike rate": (0, 1), "Time constant tau_s": (1, 10), "Mix a": (0, 1)}
LEARN_INPUTS = {            # each Learn handler's inputs, in order: a LEARN_RANGES name, "Seed", or None (not a number)
    "lif": ("Input current", "Threshold", "Time constant tau", None, "Time steps"),
    "coding": ("Pixel value", "Time steps T", "Seed"),
    "psp": ("Spike rate", "Time constant tau_s", "Time steps", "Seed"),
    "quantizer": ("Spike rate", "Mix a", "Time steps T", "Seed")}
WHOLE = {"Time steps", "Time steps T", "Seed"}   # whole numbers; the other settings are real numbers


def learn_args(view: str, *values) -> tuple:
    """The inputs of Learn handler ``view``, checked (:data:`LEARN_INPUTS`, :data:`LEARN_RANGES`): time
    steps and seeds as whole numbers, the rest as floats. Raises :class:`InputError`."""
    def one(name, value):
        if name is None:
            return value
        lo, hi = (0, MAX_SEED) if name == "Seed" else LEARN_RANGES[name]
        return (check_int if name in WHOLE else check_float)(value, name, lo, hi)
    return tuple(one(name, v) for name, v in zip(LEARN_INPUTS[view], values, strict=True))


@friendly
def check(view: str, *values) -> None:
    """Raise the message a Learn handler would for these inputs (the UI checks before it redraws)."""
    learn_args(view, *values)


@friendly
def lif(current, threshold, tau, reset, steps):
    current, threshold, tau, reset, steps = learn_args("lif", current, threshold, tau, reset, steps)
    x = np.full(steps, current)
    x[: steps // 10] = 0.0  # a short rest before the current switches on
    h, v, s = teaching.lif_simulate(x, threshold, tau, reset)
    rest = steps // 10
    note = (f"{plots.count(int(s.sum()), 'spike')} in {steps} steps (rate {s.mean():.2f}); "
            + (f"the current is off for the first {plots.count(rest, 'step')}, a rest before it switches on."
               if rest else "the current is on from the first step."))
    return plots.lif_figure(x, h, v, s, threshold), note


@friendly
def coding(pixel, steps, seed):
    p, T, seed = learn_args("coding", pixel, steps, seed)
    direct = teaching.direct_code(p, T)
    _, _, lif_out = teaching.lif_simulate(4 * direct + 1)  # a first-layer unit: weight 4, bias 1
    rate = teaching.rate_code(p, T, seed)
    fig = plots.coding_figure({"rate-coded input": rate, "LIF output, direct input 4(p-0.5)+1": lif_out},
                              f"Pixel {p:.2f} over T = {T} steps")
    return fig, (f"Direct coding feeds the value {p - 0.5:+.2f} (pixel - 0.5) at every step; a first-layer "
                 f"LIF neuron (weight 4, bias 1) turns it into {plots.count(int(lif_out.sum()), 'spike')}. "
                 f"Rate coding spikes with probability {p:.2f}: {int(rate.sum())} of {T} steps here.")


@friendly
def psp(rate, tau, steps, seed):
    rate, tau, steps, seed = learn_args("psp", rate, tau, steps, seed)
    s = teaching.rate_code(rate, steps, seed)
    p = teaching.psp_filter(s, tau)
    return plots.psp_figure(s, p, tau)


@friendly
def quantizer(rate, alpha, steps, seed, decay: float):
    """The dual coding of one neuron whose membrane read-out decays by ``decay`` per step."""
    rate, a, T, seed = learn_args("quantizer", rate, alpha, steps, seed)
    s = teaching.rate_code(rate, T, seed)
    d = teaching.dual_code(s, a, decay)
    alphas = np.linspace(0, 1, 21)
    zs = [teaching.dual_code(s, x, decay)["z"] for x in alphas]
    fig = plots.quantizer_figure(s, decay ** np.arange(T - 1, -1, -1), alphas, zs, a, d["z"], decay)
    return fig, (f"M(s) = {d['membrane']:.3f} (recent spikes weigh most), firing rate = {d['rate']:.3f}, "
                 f"so z = (1 - {a:.2f}) x {d['membrane']:.3f} + {a:.2f} x {d['rate']:.3f} = **{d['z']:.3f}**.")
