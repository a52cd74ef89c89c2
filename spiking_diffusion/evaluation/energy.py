"""The energy account: synaptic operations of the spiking networks against the multiply-accumulates
of the same networks run without spikes, per generated image.

Pure part: :class:`LayerCost` lists of the denoiser / VQ-SVAE weight layers, :func:`energy` of one
pass from per-layer firing rates, :func:`expected_denoiser_calls`. :func:`generation_energy` is the
account of a generation (denoiser calls x per-call cost + decoding) that both ``evaluate``'s report
and the studio's energy view show; it measures firing rates through the pipeline's public API.

Assumptions (Horowitz 2014, 45 nm, 32-bit float; as the SNN literature counts): an accumulate costs
0.9 pJ, a multiply-accumulate 4.6 pJ; a spike costs one accumulate per outgoing connection; layers
fed real values (direct-coded input) cost their MACs once per call, as the input is constant over
T; the non-spiking equivalent runs every layer once per call. Memory access is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

E_AC_PJ, E_MAC_PJ = 0.9, 4.6   # 45 nm, 32-bit float: energy per accumulate / multiply-accumulate


# --- per layer ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerCost:
    """One weight layer. ``source``: the LIF layer whose spikes feed it (module path as recorded by
    :func:`spiking_diffusion.spiking.record_spikes`), or None for a layer fed real values once
    (direct-coded input: a MAC layer, run once since its input is constant over T).
    ``macs``: multiply-accumulates of one dense pass (k*k*c_in*c_out per output / input position)."""

    name: str
    source: str | None
    macs: int


def _conv(k, c_in, c_out, hw_out):
    return k * k * c_in * c_out * hw_out * hw_out


def _convt(k, c_in, c_out, hw_in):
    return k * k * c_in * c_out * hw_in * hw_in


def denoiser_layers(cfg) -> list[LayerCost]:
    """Weight layers of the spiking denoiser (``DenoiserConfig``). conv6 reads conv5's and conv1's
    spikes, so it appears as two parts. :func:`denoiser_macs` is T x the sum of their macs."""
    h, (w1, w2, w3, w4, w5), K = cfg.latent_size, cfg.widths, cfg.codebook_size
    return [LayerCost("conv1", None, _conv(3, cfg.in_channels, w1, h)),
            LayerCost("conv2", "lif1", _conv(3, w1, w2, h)),
            LayerCost("conv3", "conv2.2", _conv(3, w2, w3, h)),
            LayerCost("conv4", "conv3.2", _conv(3, w3, w4, h)),
            LayerCost("conv5", "conv4.2", _conv(3, w4, w5, h)),
            LayerCost("conv6[conv5]", "conv5.2", _conv(3, w5, K, h)),
            LayerCost("conv6[conv1]", "lif1", _conv(3, w1, K, h))]


def vqsvae_decode_layers(cfg) -> list[LayerCost]:
    """Weight layers used to decode tokens (``VQSVAEConfig``): ASG + decoder."""
    (c1, c2), D, C, h = cfg.hidden_channels, cfg.code_dim, cfg.in_channels, cfg.latent_size
    return [LayerCost("asg.conv", None, _conv(1, D, D, h)),
            LayerCost("decoder.block1", "asg.lif", _convt(3, D, c2, h)),
            LayerCost("decoder.block2", "decoder.block1.2", _convt(3, c2, c1, 2 * h)),
            LayerCost("decoder.out", "decoder.block2.2", _convt(3, c1, C, 4 * h))]


def vqsvae_encode_layers(cfg) -> list[LayerCost]:
    """Weight layers used to encode images (``VQSVAEConfig``)."""
    (c1, c2), D, C, h = cfg.hidden_channels, cfg.code_dim, cfg.in_channels, cfg.latent_size
    return [LayerCost("encoder.conv1", None, _conv(3, C, c1, 2 * h)),
            LayerCost("encoder.block2", "encoder.lif1", _conv(3, c1, c2, h)),
            LayerCost("encoder.block3", "encoder.block2.2", _conv(1, c2, D, h))]


def energy(layers: list[LayerCost], rates: dict[str, float], time_steps: int) -> dict:
    """SOPs and energy of one pass of a spiking network vs. the same network without spikes.

    A spike of a layer with mean firing rate r reaches, on average, (connections / neurons) targets,
    so SOPs = r * T * macs (an AC each); layers fed real values cost their MACs once. The
    non-spiking equivalent runs every layer once as MACs. Returns per-layer SOPs and totals
    {sops, snn_macs, snn_energy_pj, ann_macs, ann_energy_pj, energy_ratio}."""
    per_layer, sops, snn_macs, ann_macs = {}, 0.0, 0, 0
    for layer in layers:
        ann_macs += layer.macs
        if layer.source is None:
            snn_macs += layer.macs
        else:
            if layer.source not in rates:
                raise KeyError(f"no firing rate recorded for {layer.source!r} (have {sorted(rates)})")
            per_layer[layer.name] = rates[layer.source] * time_steps * layer.macs
            sops += per_layer[layer.name]
    e_snn, e_ann = sops * E_AC_PJ + snn_macs * E_MAC_PJ, ann_macs * E_MAC_PJ
    return {"sops": sops, "snn_macs": snn_macs, "snn_energy_pj": e_snn, "ann_macs": ann_macs,
            "ann_energy_pj": e_ann, "energy_ratio": e_snn / e_ann if e_ann else float("nan"),
            "sops_per_layer": per_layer}


def denoiser_macs(cfg) -> int:
    """Multiply-accumulates per image per denoiser call (``cfg``: a :class:`DenoiserConfig`), counted
    as a dense network over its T steps: T x the MACs of :func:`denoiser_layers`."""
    return cfg.time_steps * sum(layer.macs for layer in denoiser_layers(cfg))


def expected_denoiser_calls(steps: int, positions: int) -> float:
    """Expected denoiser calls per image with random-order sampling when steps that unmask nothing
    are skipped (the pipeline's fast path): each of the grid's ``positions`` cells (49 for 7x7) is
    unmasked at a step drawn uniformly from the ``steps`` steps, so E[steps used] = S (1 - (1 - 1/S)^positions)."""
    return steps * (1 - (1 - 1 / steps) ** positions)


# --- a generation ---------------------------------------------------------------------------------------
TOTALS = ("sops", "snn_macs", "snn_energy_pj", "ann_macs", "ann_energy_pj")


def counted_denoiser_calls(trace) -> float:
    """Denoiser calls per image of a traced generation, as its steps record them (``denoised``): on the
    fast path an image calls the denoiser at a step only when it unmasks something there, except at
    the first step of a traced run, where every image does (for the Unmasking view's predictions);
    each corrector round calls it once per image."""
    n = len(trace.steps[0].denoised)
    return sum(int(np.asarray(s.denoised).sum()) for s in trace.steps) / n


def sampling_firing_rates(pipe, tokens: np.ndarray, steps: int, seed: int = 0, points: int | None = None,
                          guide: bool = False) -> dict[str, float]:
    """Mean firing rate per LIF layer of the denoiser while sampling ``steps`` steps, measured on
    final token grids ``tokens [n,h,w]``: at step s (S..1) each position is still masked with
    probability s/S (the random order's marginal), the denoiser sees time s*N/S. ``points``: measure
    at that many evenly spaced steps only (None: every step). ``guide``: the guide prior's rates."""
    N, S = pipe.num_diffusion_steps, steps
    chosen = set(range(S, 0, -1)) if points is None or points >= S else \
        {int(round(v)) for v in np.linspace(S, 1, points)}
    g = np.random.default_rng(seed)
    acc: dict[str, float] = {}
    for s in range(S, 0, -1):
        xt = np.where(g.random(tokens.shape) < s / S, pipe.mask_id, tokens)         # [n, h, w]
        if s in chosen:
            for name, r in pipe.denoiser_spikes(xt, np.full(len(tokens), s * N / S), guide=guide).items():
                acc[name] = acc.get(name, 0.0) + r / len(chosen)
    return acc


def corrector_firing_rates(pipe, tokens: np.ndarray, cells: int, seed: int = 0) -> dict[str, float]:
    """Mean firing rate per LIF layer of the denoiser in a corrector round on final token grids
    ``tokens [n,h,w]``: ``cells`` random cells of each grid masked, at the time of that many masked
    cells (``cells * N / (h * w)``), as :meth:`AbsorbingDiffusion._correct` calls it. The grids are
    nearly complete there, so the layers fire differently than in the unmasking steps."""
    n, h, w = tokens.shape
    g = np.random.default_rng(seed)
    chosen = np.argsort(g.random((n, h * w)), axis=1)[:, :cells]                      # [n, cells]
    xt = np.asarray(tokens).reshape(n, h * w).copy()
    np.put_along_axis(xt, chosen, pipe.mask_id, axis=1)
    return pipe.denoiser_spikes(xt.reshape(n, h, w), np.full(n, cells * pipe.num_diffusion_steps / (h * w)))


def generation_energy(pipe, tokens: np.ndarray, steps: int, order: str = "random", corrector_steps: int = 0,
                      seed: int = 0, max_images: int = 64, points: int | None = None, trace=None,
                      corrector_cells: int | None = None, guidance: float = 0.0) -> dict:
    """The energy account of a generation of ``tokens [n,h,w]`` with ``steps`` sampling steps (and
    ``corrector_steps`` rounds), per image: denoiser calls x the cost of one call + decoding.

    Firing rates are measured on the first ``max_images`` images (denoiser: see
    :func:`sampling_firing_rates`; decoder: the ASG + decoder on the tokens). The calls per image are
    counted from ``trace`` when given (:func:`counted_denoiser_calls`), else expected: random order
    with idle steps skipped, :func:`expected_denoiser_calls`; confidence order, every step; plus one
    call per corrector round, at the corrector's own firing rates (:func:`corrector_firing_rates`
    with ``corrector_cells``, default the pipeline's stored sampler's). With ``guidance`` > 0 every call
    also runs the guide prior (autoguidance), at its unmasking steps' firing rates.
    Returns {per_image: {sops, snn_macs, snn_energy_pj, ann_macs, ann_energy_pj, energy_ratio},
    denoiser_per_call (an unmasking step's), denoiser_per_corrector_call (with corrector rounds),
    decode_per_image, denoiser_calls_per_image, firing_rates: {denoiser_sampling,
    denoiser_corrector (with corrector rounds), vqsvae_generated_tokens}, assumptions (words),
    denoiser_dense_macs_over_T}."""

    den_cfg, vq_cfg = pipe.denoiser.cfg, pipe.vqsvae.cfg
    x0 = np.asarray(tokens)[:max_images]
    den_rates = sampling_firing_rates(pipe, x0, steps, seed, points)
    dec_rates = pipe.spikes(tokens=x0).firing_rates                                   # ASG + decoder
    if trace is not None:
        calls = counted_denoiser_calls(trace)
        how = "counted in this generation's trace"
    else:
        unmasking = expected_denoiser_calls(steps, vq_cfg.latent_size ** 2) if order == "random" else float(steps)
        calls = unmasking + corrector_steps
        how = f"{unmasking:.2f} expected for steps={steps}, order={order}, idle steps skipped, + {corrector_steps} corrector rounds"
    den = energy(denoiser_layers(den_cfg), den_rates, den_cfg.time_steps)
    dec = energy(vqsvae_decode_layers(vq_cfg), dec_rates, vq_cfg.time_steps)
    rates, corrector, corrected = {"denoiser_sampling": den_rates}, {}, ""
    corr, rounds = den, corrector_steps             # a corrector round costs an unmasking step's unless measured
    if rounds:
        cells = corrector_cells or pipe.sampling_defaults.corrector_cells
        rates["denoiser_corrector"] = corrector_firing_rates(pipe, x0, cells, seed)
        corr = corrector["denoiser_per_corrector_call"] = energy(denoiser_layers(den_cfg), rates["denoiser_corrector"],
                                                                 den_cfg.time_steps)
        corrected = f", the corrector's in one of its rounds ({cells} cells masked)"
    per_image = {key: den[key] * (calls - rounds) + corr[key] * rounds + dec[key] for key in TOTALS}
    guided = {}
    if guidance and pipe.guide is not None:                  # the guide runs beside the prior at every call
        rates["guide_sampling"] = sampling_firing_rates(pipe, x0, steps, seed, points, guide=True)
        g_cfg = pipe.guide.cfg
        g = guided["guide_per_call"] = energy(denoiser_layers(g_cfg), rates["guide_sampling"], g_cfg.time_steps)
        per_image = {key: per_image[key] + g[key] * calls for key in TOTALS}
        corrected += f"; the guide prior at every call ({calls:.2f} calls, its unmasking steps' rates)"
    per_image["energy_ratio"] = per_image["snn_energy_pj"] / per_image["ann_energy_pj"]
    where = "every step" if points is None or points >= steps else f"{points} of the {steps} steps"
    return {
        "assumptions": f"{E_AC_PJ} pJ per AC (one per spike per outgoing connection), {E_MAC_PJ} pJ per MAC; "
                       "direct-coded input layers count as MACs once; the non-spiking equivalent runs every layer "
                       f"once per call; {calls:.2f} denoiser calls per image ({how}); denoiser firing rates at "
                       f"{where}{corrected} on {len(x0)} images; memory access not counted",
        "denoiser_calls_per_image": calls, "denoiser_per_call": den, **corrector, **guided, "decode_per_image": dec,
        "per_image": per_image, "firing_rates": {**rates, "vqsvae_generated_tokens": dec_rates},
        "denoiser_dense_macs_over_T": denoiser_macs(den_cfg)}
