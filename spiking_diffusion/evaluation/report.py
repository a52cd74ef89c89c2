"""The evaluation report: the headline figures a checkpoint records, and the markdown summary.

Pure functions of the report dict that :func:`spiking_diffusion.evaluation.run.evaluate` builds
(and writes as report.json).
"""
from __future__ import annotations

import math

import numpy as np

from ..sampling import SETTINGS, SamplerConfig

SHORT_KEYS = ("fd", "precision", "recall", "confident_share", "class_entropy", "token_perplexity")


def clean(x):
    """JSON-safe: numpy -> python, NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def short(d: dict) -> str:
    """'fd 1.234, precision 0.800, ...' for the metrics a dict holds."""
    return ", ".join(f"{k} {d[k]:.3f}" for k in SHORT_KEYS if isinstance(d.get(k), float))


def sampling_label(s: dict) -> str:
    """One line for a dict holding the sampler settings (see :meth:`SamplerConfig.label`)."""
    return SamplerConfig.from_info(s).label()


def headline(report: dict) -> dict:
    """The figures worth recording in a checkpoint's metrics."""
    s, h = report["settings"], {}
    for kind, key in (("standard", "fid_standard"), ("paper", "fid_paper_protocol")):
        entry = report["inception"][kind]
        if entry.get("fid") is not None:
            h[key] = entry["fid"]
            h[key + "_n"] = entry["n_generated"]
    if report["classifier"]:
        g = report["classifier"]["generated"]
        h.update({f"classifier_{k}": g[k] for k in ("fd", "precision", "recall", "confident_share", "class_entropy")})
    m = report["model"]
    h.update(recon_mse=m["recon_mse"], recon_ssim=m["recon_ssim"], codebook_perplexity=m["codebook_test"]["perplexity"],
             dead_codes=m["codebook_test"]["dead_codes"])      # the checkpoint's VQSVAE_METRICS
    if "energy" in m:
        h["energy_uj_per_image"] = m["energy"]["per_image"]["snn_energy_pj"] / 1e6
        h["energy_ratio_vs_ann"] = m["energy"]["per_image"]["energy_ratio"]
    h["eval_settings"] = {k: s[k] for k in ("num_samples", "steps", *SETTINGS, "seed", "order")}
    h["eval_settings"]["recon_images"] = m["recon_images"]        # what the recon_* and codebook figures measured
    if report["classifier"]:                                        # whose features the classifier_* figures are in
        h["eval_settings"]["classifier"] = report["classifier"]["classifier"]
    return h


def summary_markdown(r: dict) -> str:
    """The report as markdown (summary.md)."""
    f = lambda v, d=3: "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
    s = r["settings"]
    lines = [f"# Evaluation of `{r['checkpoint']}` ({r['dataset']})", "",
             f"{r['generation']['n']} samples, steps={s['steps']}, {sampling_label(s)}, seed={s['seed']}, "
             f"order={s['order']}; {f(r['generation']['seconds_per_image'], 4)} s per image; total {r['seconds']:.0f} s.", "",
             "## Inception FID (each under its own protocol; not comparable with each other)", ""]
    for kind, e in r["inception"].items():
        val = f"**{f(e['fid'], 2)}** (n={e.get('n_generated')} vs {e.get('n_reference')})" if e["fid"] is not None else e["message"]
        extra = f"; with the authors' SVD root: {f(e['fid_svd_root'], 2)}" if e.get("fid_svd_root") is not None else ""
        lines += [f"- {kind}: {val}{extra}  ", f"  _{e['protocol']}_"]
    lines += ["", "## Offline, with our classifier (against the test split)", ""]
    if r["classifier"]:
        c = r["classifier"]
        lines += [f"Classifier `{c['classifier']}` (test accuracy {f(c['classifier_test_accuracy'], 4)}).", ""]
        if c.get("few_samples"):
            lines += [f"**Warning:** {c['few_samples']}.", ""]
        lines += ["| images | n | Fréchet dist. | precision | recall | confident >= 0.9 | class entropy |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, key in (("generated", "generated"), ("real held-out (floor)", "real_heldout"),
                          ("held-out, VQ-SVAE reconstructions (the encoder's tokens)", "reconstructed_heldout")):
            if key not in c:       # no held-out images (the report's messages say why)
                continue
            g = c[key]
            fd = f(g["fd"])
            if g.get("fd_floor") is not None:
                fd += f" (floor at n={g['fd_floor_n']}: {f(g['fd_floor'])})"
            lines.append(f"| {name} | {g['n']} | {fd} | {f(g['precision'])} | {f(g['recall'])} | "
                         f"{f(g['confident_share'])} | {f(g['class_entropy'])} |")
    else:
        lines.append("Skipped: no classifier.")
    m = r["model"]
    lines += ["", "## The model", "",
              f"- VQ-SVAE reconstruction on {m['recon_images']} test images: MSE {f(m['recon_mse'], 5)}, SSIM {f(m['recon_ssim'])}",
              f"- codebook on the test split: perplexity {f(m['codebook_test']['perplexity'], 1)}, dead codes "
              f"{m['codebook_test']['dead_codes']}; in generated tokens: perplexity {f(m['codebook_generated']['perplexity'], 1)}, "
              f"dead codes {m['codebook_generated']['dead_codes']}", "", "Mean firing rates:", ""]
    for group, rates in m["firing_rates"].items():
        lines.append(f"- {group}: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    if "energy" in m:
        e, p = m["energy"], m["energy"]["per_image"]
        lines += ["", f"Energy per generated image: {p['sops'] / 1e6:.1f} M SOPs + {p['snn_macs'] / 1e6:.2f} M MACs = "
                      f"{p['snn_energy_pj'] / 1e6:.2f} uJ, vs {p['ann_macs'] / 1e6:.1f} M MACs = {p['ann_energy_pj'] / 1e6:.2f} uJ "
                      f"for the non-spiking equivalent (ratio {f(p['energy_ratio'])}).  ", f"_{e['assumptions']}_"]
    if r["sweeps"]:
        lines += ["", "## Sweeps", "", "Temperatures START..END move linearly over the steps; the corrector runs "
                  f"{s['corrector_cells']} cells per round at temperature {s['corrector_temperature']}.", "",
                  "| sweep | temperature | top-p | corrector rounds | steps | n | Fréchet dist. | precision | recall | confident | class entropy | token perplexity |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for w in r["sweeps"]:
            lines.append(f"| {w['sweep']} | {w['temperature']} | {w['top_p']} | {w['corrector_steps']} | {w['steps']} | {w['n']} | {f(w.get('fd'))} | {f(w.get('precision'))} | "
                         f"{f(w.get('recall'))} | {f(w.get('confident_share'))} | {f(w.get('class_entropy'))} | {f(w['token_perplexity'], 1)} |")
    if r["messages"]:
        lines += ["", "## Messages", ""] + [f"- {msg}" for msg in r["messages"]]
    return "\n".join(lines) + "\n"
