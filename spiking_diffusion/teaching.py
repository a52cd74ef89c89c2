"""Teaching simulations of single neurons (numpy in, numpy out): LIF, rate / direct coding, the PSP
filter and the quantiser's dual coding.

Used by the studio's Learn view; none of them touches a network. Codebook usage and energy
accounting live in :mod:`spiking_diffusion.metrics`.
"""
from __future__ import annotations

import numpy as np

from .config import VQSVAEConfig
from .spiking import LIF_TAU, LIF_THRESHOLD, LIF_V_RESET

MEMBRANE_DECAY = VQSVAEConfig.membrane_decay   # the paper's 0.8
PSP_TAU = VQSVAEConfig.psp_tau                 # the paper's tau_s = 2


def lif_simulate(current, threshold: float = LIF_THRESHOLD, tau: float = LIF_TAU, reset: str = "hard",
                 v_reset: float = LIF_V_RESET) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A LIF neuron with SpikingJelly's update (decay_input, hard or soft reset).

    ``current [T]`` -> (membrane after charging ``[T]``, membrane after reset ``[T]``, spikes ``[T]``).
    Charging: ``H_t = V_{t-1} + (X_t - (V_{t-1} - v_reset)) / tau``; spike when ``H_t >= threshold``;
    hard reset sets V to ``v_reset``, soft reset subtracts the threshold.

    Computed as the distance below the threshold, ``D_t = threshold - H_t`` (the same update:
    ``D_t = U_{t-1} (1 - 1/tau) + (threshold - v_reset - X_t) / tau`` with ``U = threshold - V``), so
    that a constant input at the threshold, whose membrane only approaches it (``1 - 2^-t`` at tau 2),
    never fires. Charged the plain way, the membrane rounds up to the threshold and fires: at step 54
    (counting from 1) in float64, at step 25 in SpikingJelly's float32 (the models run at most T=16
    steps, where it cannot).
    Raises ValueError for ``tau < 1`` or another reset.
    """
    if tau < 1:
        raise ValueError(f"tau must be >= 1; got {tau}")
    if reset not in ("hard", "soft"):
        raise ValueError(f"reset must be 'hard' or 'soft', not {reset!r}")
    x = np.asarray(current, dtype=float).reshape(-1)
    h, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    u = threshold - v_reset                                    # U_0: how far below the threshold V starts
    for t, xt in enumerate(x):
        drive = threshold - v_reset - xt                       # >= 0: V settles at or under the threshold
        d = u * (1 - 1 / tau) + drive / tau                    # D_t = threshold - H_t
        if u > 0 and drive >= 0 and tau > 1:   # below the threshold with such an input, D stays > 0,
            d = max(d, np.finfo(float).tiny)   # also where u (1 - 1/tau)^t underflows (tau just above 1)
        st = float(d <= 0)
        u = (threshold - v_reset if st else d) if reset == "hard" else d + st * threshold
        h[t], v[t], s[t] = threshold - d, threshold - u, st
    return h, v, s


def rate_code(value: float, steps: int, seed: int = 0) -> np.ndarray:
    """Rate coding of an intensity in [0, 1]: a Bernoulli spike per step with probability ``value``."""
    rng = np.random.default_rng(seed)
    return (rng.random(steps) < float(np.clip(value, 0, 1))).astype(float)


def direct_code(value: float, steps: int) -> np.ndarray:
    """Direct coding as the model does it: the pixel shifted to [-0.5, 0.5], fed at every step."""
    return np.full(steps, float(value) - 0.5)


def psp_filter(spikes, tau: float = PSP_TAU) -> np.ndarray:
    """``p_t = p_{t-1} + (s_t - p_{t-1}) / tau`` over the first axis (same as ``spiking.psp``)."""
    s = np.asarray(spikes, dtype=float)
    out, p = np.zeros_like(s), np.zeros_like(s[0])
    for t in range(len(s)):
        p = p + (s[t] - p) / tau
        out[t] = p
    return out


def dual_code(spikes, alpha: float, decay: float = MEMBRANE_DECAY) -> dict[str, float]:
    """The quantiser's input for one neuron: ``z = (1 - a) M(s) + a mean(s)``."""
    s = np.asarray(spikes, dtype=float).reshape(-1)
    weights = decay ** np.arange(len(s) - 1, -1, -1)
    m, rate = float(weights @ s), float(s.mean()) if len(s) else 0.0
    return {"membrane": m, "rate": rate, "z": (1 - alpha) * m + alpha * rate}
