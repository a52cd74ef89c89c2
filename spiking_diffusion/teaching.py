"""Small pure functions for teaching and inspecting the model (numpy in, numpy out).

Used by the studio's Learn and Codebook views; none of them touches a network.
"""
from __future__ import annotations

import numpy as np

from .config import DenoiserConfig

PJ_PER_AC, PJ_PER_MAC = 0.9, 4.6  # 45 nm energy per accumulate / multiply-accumulate (32-bit float)


def lif_simulate(current, threshold: float = 1.0, tau: float = 2.0, reset: str = "hard",
                 v_reset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A LIF neuron with SpikingJelly's update (decay_input, hard or soft reset).

    ``current [T]`` -> (membrane after charging ``[T]``, membrane after reset ``[T]``, spikes ``[T]``).
    Charging: ``H_t = V_{t-1} + (X_t - (V_{t-1} - v_reset)) / tau``; spike when ``H_t >= threshold``;
    hard reset sets V to ``v_reset``, soft reset subtracts the threshold.
    """
    if tau < 1:
        raise ValueError(f"tau must be >= 1; got {tau}")
    if reset not in ("hard", "soft"):
        raise ValueError(f"reset must be 'hard' or 'soft', not {reset!r}")
    x = np.asarray(current, dtype=float).reshape(-1)
    h, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    vt = v_reset
    for t, xt in enumerate(x):
        ht = vt + (xt - (vt - v_reset)) / tau
        st = float(ht >= threshold)
        vt = (v_reset if st else ht) if reset == "hard" else ht - st * threshold
        h[t], v[t], s[t] = ht, vt, st
    return h, v, s


def rate_code(value: float, steps: int, seed: int = 0) -> np.ndarray:
    """Rate coding of an intensity in [0, 1]: a Bernoulli spike per step with probability ``value``."""
    rng = np.random.default_rng(seed)
    return (rng.random(steps) < float(np.clip(value, 0, 1))).astype(float)


def direct_code(value: float, steps: int) -> np.ndarray:
    """Direct coding as the model does it: the pixel shifted to [-0.5, 0.5], fed at every step."""
    return np.full(steps, float(value) - 0.5)


def psp_filter(spikes, tau: float = 2.0) -> np.ndarray:
    """``p_t = p_{t-1} + (s_t - p_{t-1}) / tau`` over the first axis (same as ``spiking.psp``)."""
    s = np.asarray(spikes, dtype=float)
    out, p = np.zeros_like(s), np.zeros_like(s[0])
    for t in range(len(s)):
        p = p + (s[t] - p) / tau
        out[t] = p
    return out


def dual_code(spikes, alpha: float, decay: float = 0.8) -> dict[str, float]:
    """The quantiser's input for one neuron: ``z = (1 - a) M(s) + a mean(s)``."""
    s = np.asarray(spikes, dtype=float).reshape(-1)
    weights = decay ** np.arange(len(s) - 1, -1, -1)
    m, rate = float(weights @ s), float(s.mean()) if len(s) else 0.0
    return {"membrane": m, "rate": rate, "z": (1 - alpha) * m + alpha * rate}


def code_usage(tokens, codebook_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Token grids ``[N,h,w]`` -> (counts ``[K]``, per-position counts ``[h*w, K]``)."""
    t = np.asarray(tokens).reshape(len(tokens), -1)                        # [N, P]
    if t.size and (t.min() < 0 or t.max() >= codebook_size):
        raise ValueError(f"token ids must lie in 0..{codebook_size - 1}")
    per_pos = np.zeros((t.shape[1], codebook_size), dtype=np.int64)
    np.add.at(per_pos, (np.broadcast_to(np.arange(t.shape[1]), t.shape), t), 1)
    return per_pos.sum(0), per_pos


def usage_stats(counts) -> dict[str, float]:
    """Dead codes (never used) and perplexity ``exp(H(p))`` of a usage histogram."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    p = c[c > 0] / total if total else np.array([1.0])
    return {"dead": int((c == 0).sum()), "used": int((c > 0).sum()), "perplexity": float(np.exp(-(p * np.log(p)).sum()))}


def denoiser_layer_macs(cfg: DenoiserConfig) -> list[int]:
    """MACs per image per denoiser call for conv1..conv6, counted densely over T steps."""
    hw = cfg.latent_size ** 2
    w1, w2, w3, w4, w5 = cfg.widths
    pairs = [(cfg.in_channels, w1), (w1, w2), (w2, w3), (w3, w4), (w4, w5), (w5 + w1, cfg.codebook_size)]
    return [9 * a * b * hw * cfg.time_steps for a, b in pairs]


def energy_estimate(cfg: DenoiserConfig, rates: list[float], calls: int) -> dict[str, float]:
    """Energy of ``calls`` denoiser calls (one image each), in microjoules.

    ``rates``: firing rates of the LIF layers after conv1..conv5. conv1 sees real values (MACs);
    every later conv does one accumulate per input spike per connection (ACs). conv6 reads the
    concatenation of conv5 and conv1 outputs. The ANN figure counts every connection as a MAC.
    """
    if len(rates) != 5:
        raise ValueError("rates must hold the five firing rates of conv1..conv5")
    macs = denoiser_layer_macs(cfg)
    w1, w5 = cfg.widths[0], cfg.widths[4]
    in_rates = [rates[0], rates[1], rates[2], rates[3], (w5 * rates[4] + w1 * rates[0]) / (w5 + w1)]
    acs = sum(m * r for m, r in zip(macs[1:], in_rates))
    snn = calls * (macs[0] * PJ_PER_MAC + acs * PJ_PER_AC) * 1e-6
    ann = calls * sum(macs) * PJ_PER_MAC * 1e-6
    return {"calls": calls, "macs_per_call": float(sum(macs)), "acs_per_call": float(acs),
            "snn_uj": snn, "ann_uj": ann, "ratio": ann / snn if snn else float("inf")}
