"""Evaluate a checkpoint: sample quality, the model's own figures, and energy.

evaluate(checkpoint_dir, data_root, out_dir) writes ``report.json`` + ``summary.md`` (+ ``samples.png``):
  inception   FID under two labelled protocols, each only when its Inception weights are at hand:
              'standard' (pytorch-fid's FID weights, 10,000 generated vs the test split) and
              'paper' (the authors': 1,280 vs 1,280, bilinear 299x299, torchvision ImageNet inception_v3)
  classifier  offline, with our own small CNN (spiking_diffusion.classifier): Fréchet distance in its
              feature space, precision/recall (k=3), confident share, class-coverage entropy, for the
              generated images and for real held-out images (the floor), both against the test split
  model       VQ-SVAE reconstruction MSE/SSIM and codebook usage on the test split, firing rates per
              layer, synaptic operations and energy per generated image vs a non-spiking equivalent
With ``record``, the headline metrics go into the checkpoint's config.json and the test split's code
usage into ``code_usage.json`` beside it (the studio's Codebook view reads it).
  sweeps      the classifier metrics over sampling temperatures and numbers of sampling steps
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import metrics as M
from .checkpoint import CODE_USAGE_NAME, atomic_write_file, update_metadata
from .classifier import default_classifier_dir, holdout_split, load_classifier
from .config import denoiser_macs
from .data import load_images
from .errors import SpikingDiffusionError
from .pipeline import MAX_IMAGES, SpikingDiffusionPipeline
from .sampling import SETTINGS, SamplerConfig, parse_temperature, temperature_label

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"   # pytorch-fid's port of the TF FID Inception
TV_WEIGHTS = "inception_v3_google-0cc3c7bd.pth"         # torchvision's ImageNet inception_v3 (IMAGENET1K_V1)
INCEPTION_SIZE = 299                                    # both protocols resize bilinearly to 299x299
PROTOCOLS = {
    "standard": "standard FID (pytorch-fid Inception weights, pool3 2048-d, bilinear 299x299, "
                "generated vs the whole test split, scipy sqrtm)",
    "paper": "the authors' protocol (torchvision ImageNet inception_v3, 1,280 generated vs 1,280 test images, "
             "bilinear 299x299, grey repeated to 3 channels); 'fid' uses scipy sqrtm, 'fid_svd_root' their SVD root",
}


@dataclass
class EvalConfig:
    num_samples: int = 10000          # generated images for the main figures
    steps: int = 49
    # sampler settings (spiking_diffusion.sampling); None: the checkpoint's sampling_defaults
    temperature: float | None = None
    temperature_end: float | None = None
    top_p: float | None = None
    corrector_steps: int | None = None
    corrector_cells: int | None = None
    corrector_temperature: float | None = None
    seed: int = 0
    order: str = "random"
    batch_size: int = 256
    dataset: str | None = None        # default: the checkpoint's info['dataset']
    classifier: str | None = None     # default: assets/classifiers/<dataset>
    inception_weights: list[str] = field(default_factory=list)  # files; the torch hub cache is searched too
    fid_samples: int = 10000          # standard protocol
    paper_samples: int = 1280         # the authors' protocol
    inception_batch: int = 32
    sweeps: bool = True
    temperatures: tuple[str, ...] = ("0.3", "0.5", "0.65", "0.8", "1.0")  # "T" or "START..END"; top_p as chosen
    top_ps: tuple[float, ...] = ()    # a top-p sweep at the chosen temperatures
    corrector_sweep: tuple[int, ...] = ()  # a sweep over corrector rounds, the rest as chosen
    steps_sweep: tuple[int, ...] = (7, 13, 25, 49)
    sweep_samples: int = 1000
    recon_samples: int | None = None  # test images for reconstruction / codebook usage (None: all)
    spike_samples: int = 64           # images whose spikes are recorded for firing rates
    k: int = 3                        # k of the k-NN manifolds
    device: str = "cpu"
    download: bool = False
    record: bool = False              # write headline metrics (config.json) and code_usage.json into the checkpoint


def _seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def sampling_label(s: dict) -> str:
    """One line for a dict of sampler settings (see :meth:`SamplerConfig.label`)."""
    return SamplerConfig.from_info(s).label()


def generate(pipe, n: int, steps: int, sampler: SamplerConfig, seed: int, order: str, batch_size: int, log=None):
    """``n`` samples in batches (batch b seeded from (seed, b)) -> (uint8 images ``[n,H,W,C]``, tokens ``[n,h,w]``)."""
    images, tokens, start = [], [], time.time()
    batch_size = max(1, min(batch_size, MAX_IMAGES))
    for b, i in enumerate(range(0, n, batch_size)):
        out = pipe(min(batch_size, n - i), steps=steps, seed=_seed(seed, b), order=order, sampler=sampler)
        images.append(out.images)
        tokens.append(out.tokens)
        if log and (b + 1) % 10 == 0:
            log(f"  {i + len(out.images)}/{n} images ({time.time() - start:.0f}s)")
    return np.concatenate(images), np.concatenate(tokens)


def nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N,H,W,C]`` -> float ``[N,C,H,W]`` in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


# --- Inception -------------------------------------------------------------------------------
def _load_state(path, mmap: bool = False) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def weights_kind(state: dict) -> str:
    """'standard' for pytorch-fid's FID weights (1008 classes, no aux head), 'paper' for torchvision's."""
    fc = state.get("fc.weight")
    if fc is None:
        raise ValueError("not an Inception-v3 state dict (no fc.weight)")
    return "standard" if fc.shape[0] == 1008 else "paper"


def find_inception_weights(paths=()) -> tuple[dict[str, str], list[str]]:
    """Given files plus the torch hub cache -> ({protocol: path}, messages about unusable files)."""
    found, notes = {}, []
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [Path(p) for p in paths] + [hub / FID_WEIGHTS, hub / TV_WEIGHTS]
    for p in candidates:
        if not p.is_file():
            if str(p) in map(str, paths):
                notes.append(f"inception weights {p} not found")
            continue
        try:
            found.setdefault(weights_kind(_load_state(p, mmap=True)), str(p))
        except Exception as e:  # unreadable or not an Inception state dict
            notes.append(f"inception weights {p} unusable: {type(e).__name__}: {str(e)[:200]}")
    return found, notes


def inception_net(path, kind: str) -> nn.Module:
    """torchvision inception_v3 with the given weights; ``fc`` replaced by Identity so the net returns
    the 2048-d pooled features. 'standard' also switches the pooling of Mixed_5b..7c to pytorch-fid's
    FID blocks (average pools that do not count padding; max pool in Mixed_7c)."""
    from torchvision.models import inception_v3

    state = _load_state(path)
    if kind == "standard":
        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008, transform_input=False)
    else:  # the authors' inception_v3(pretrained=True): transform_input on, aux head present
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    net.load_state_dict(state)
    if kind == "standard":
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7b"):
            # avg_pool(count_include_pad=False) = avg_pool(count_include_pad=True) / avg_pool(ones)
            getattr(net, name).branch_pool.register_forward_pre_hook(
                lambda m, a: (a[0] / F.avg_pool2d(torch.ones_like(a[0][:1, :1]), 3, 1, 1),))
        seen = {}
        net.Mixed_7c.register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
        net.Mixed_7c.branch_pool.register_forward_pre_hook(lambda m, a: (F.max_pool2d(seen.pop("x"), 3, 1, 1),))
    net.fc = nn.Identity()
    return net.eval()


@torch.inference_mode()
def inception_features(net: nn.Module, images: torch.Tensor, batch_size: int = 32, device="cpu") -> np.ndarray:
    """Float images ``[N,C,28,28]`` in [0,1] -> ``[N,2048]``: bilinear to 299x299, grey repeated to 3
    channels, scaled to [-1,1] (both protocols feed 2x-1)."""
    net = net.to(device)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        out.append(net(2 * x - 1).double().cpu())
    return torch.cat(out).numpy()


def inception_section(cfg: EvalConfig, fake: torch.Tensor, test, log) -> dict:
    found, notes = find_inception_weights(cfg.inception_weights)
    for n in notes:
        log(n)
    section = {}
    for kind in ("standard", "paper"):
        entry = {"protocol": PROTOCOLS[kind], "fid": None}
        if kind not in found:
            want = FID_WEIGHTS if kind == "standard" else TV_WEIGHTS
            entry["message"] = (f"{kind} FID not computed: no {'pytorch-fid FID' if kind == 'standard' else 'torchvision ImageNet'} "
                                f"Inception weights ({want}); pass --inception-weights PATH or place the file in "
                                f"{Path(torch.hub.get_dir()) / 'checkpoints'}")
            log(entry["message"])
            section[kind] = entry
            continue
        t0 = time.time()
        net = inception_net(found[kind], kind)
        n_cap = cfg.fid_samples if kind == "standard" else cfg.paper_samples
        n = min(n_cap, len(fake)) if kind == "standard" else min(n_cap, len(fake), len(test))
        ref_idx = (np.arange(len(test)) if kind == "standard"
                   else np.random.default_rng(cfg.seed).permutation(len(test))[:n])
        log(f"{kind} FID: Inception features of {n} generated and {len(ref_idx)} test images ...")
        f_fake = inception_features(net, fake[:n], cfg.inception_batch, cfg.device)
        f_real = inception_features(net, test.floats(torch.as_tensor(ref_idx)), cfg.inception_batch, cfg.device)
        stats = (*M.feature_stats(f_real), *M.feature_stats(f_fake))
        entry.update(fid=M.frechet_distance(*stats), n_generated=n, n_reference=len(ref_idx), weights=found[kind],
                     seconds=round(time.time() - t0, 1))
        if kind == "paper":
            entry["fid_svd_root"] = M.frechet_distance_svd(*stats)
        if kind == "standard" and n < 10000:
            entry["note"] = f"only {n} generated images: FID is biased upwards at small sample counts"
        log(f"{kind} FID = {entry['fid']:.2f}")
        section[kind] = entry
    return section


# --- classifier-based metrics -----------------------------------------------------------------
@dataclass
class Reference:
    """Classifier features of the test split: all ``[N,F]``, their stats, and a seeded order."""

    feats: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    order: np.ndarray

    @classmethod
    def of(cls, clf, test_images, seed: int = 0) -> "Reference":
        feats, _ = clf.embed(test_images)
        return cls(feats, *M.feature_stats(feats), np.random.default_rng(seed).permutation(len(feats)))


def classifier_metrics(clf, images, ref: Reference, k: int = 3) -> dict:
    """Images (uint8 NHWC or float NCHW) -> {n, fd, precision, recall, confident_share, class_entropy}.
    Precision/recall use as many test images as there are samples (the k-NN radii depend on N)."""
    feats, probs = clf.embed(images)
    n = len(feats)
    real = ref.feats[ref.order[:min(n, len(ref.feats))]]
    p, r = M.precision_recall(real, feats, k)
    return {"n": n, "fd": M.frechet_distance(ref.mu, ref.sigma, *M.feature_stats(feats)), "precision": p,
            "recall": r, "confident_share": M.confident_share(probs, 0.9),
            "class_entropy": M.class_coverage_entropy(probs.argmax(1), clf.cfg.num_classes)}


@torch.inference_mode()
def reconstructions(pipe, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 images ``[N,C,H,W]`` -> (encoded and decoded by the VQ-SVAE, floats ``[N,C,H,W]`` in
    [0, 1]; their tokens ``[N,h,w]``), in batches."""
    recs, toks = [], []
    for i in range(0, len(images), batch_size):
        tok = pipe.encode(images[i:i + batch_size].float() / 255.0)    # [b, h, w]
        recs.append(pipe.decode(tok).cpu())                            # [b, C, H, W]
        toks.append(tok.cpu().numpy())
    return torch.cat(recs), np.concatenate(toks)


# --- the model itself -------------------------------------------------------------------------
@torch.inference_mode()
def model_section(pipe, cfg: EvalConfig, test, gen_tokens: np.ndarray, log) -> tuple[dict, np.ndarray]:
    """(the report's model section, the tokens of the test images it encoded ``[n,h,w]``)."""
    vq_cfg, K = pipe.vqsvae.cfg, pipe.codebook_size
    n = len(test) if cfg.recon_samples is None else min(cfg.recon_samples, len(test))
    log(f"reconstruction of {n} test images ...")
    rec, test_tokens = reconstructions(pipe, test.images[:n], cfg.batch_size)  # [n, C, H, W], [n, h, w]
    x = test.floats(slice(0, n))
    out = {"recon_images": n, "recon_mse": float(((rec - x) ** 2).mean()), "recon_ssim": float(M.ssim(rec, x).mean()),
           "codebook_test": M.codebook_usage(test_tokens, K), "codebook_generated": M.codebook_usage(gen_tokens, K)}

    m = min(cfg.spike_samples, len(test), len(gen_tokens))
    rates_real = pipe.spikes(images=test.floats(slice(0, m))).firing_rates       # encoder + ASG + decoder
    rates_gen = pipe.spikes(tokens=gen_tokens[:m]).firing_rates                    # ASG + decoder
    out["firing_rates"] = {"vqsvae_test_images": rates_real, "vqsvae_generated_tokens": rates_gen}
    if pipe.denoiser is None:
        return out, test_tokens
    den_cfg, N, S = pipe.denoiser.cfg, pipe.num_diffusion_steps, cfg.steps
    # the denoiser's inputs while sampling: at step s a position is still masked with probability s/S
    g = np.random.default_rng(cfg.seed)
    x0 = gen_tokens[:m]
    acc: dict[str, float] = {}
    for s in range(S, 0, -1):
        xt = np.where(g.random(x0.shape) < s / S, pipe.mask_id, x0)
        for name, r in pipe.denoiser_spikes(xt, np.full(len(x0), s * N / S)).items():
            acc[name] = acc.get(name, 0.0) + r / S
    out["firing_rates"]["denoiser_sampling"] = acc

    unmasking = M.expected_denoiser_calls(S, vq_cfg.latent_size ** 2) if cfg.order == "random" else float(S)
    calls = unmasking + cfg.corrector_steps  # corrector rounds: one call each, counted at the same firing rates
    den = M.energy(M.denoiser_layers(den_cfg), acc, den_cfg.time_steps)
    dec = M.energy(M.vqsvae_decode_layers(vq_cfg), rates_gen, vq_cfg.time_steps)
    per_image = {key: den[key] * calls + dec[key] for key in ("sops", "snn_macs", "snn_energy_pj", "ann_macs", "ann_energy_pj")}
    per_image["energy_ratio"] = per_image["snn_energy_pj"] / per_image["ann_energy_pj"]
    out["energy"] = {
        "assumptions": f"{M.E_AC_PJ} pJ per AC (one per spike per outgoing connection), {M.E_MAC_PJ} pJ per MAC; "
                       "direct-coded input layers count as MACs once; the non-spiking equivalent runs every layer "
                       f"once per call; {calls:.2f} denoiser calls per image ({unmasking:.2f} expected for steps={S}, "
                       f"order={cfg.order}, idle steps skipped, + {cfg.corrector_steps} corrector rounds at the "
                       "sampling firing rates)",
        "denoiser_calls_per_image": calls, "denoiser_per_call": den, "decode_per_image": dec, "per_image": per_image,
        "denoiser_dense_macs_over_T": denoiser_macs(den_cfg)}
    return out, test_tokens


# --- the whole evaluation ---------------------------------------------------------------------
def _clean(x):
    """JSON-safe: numpy -> python, NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _write(path: Path, text: str) -> None:
    atomic_write_file(path, lambda tmp: Path(tmp).write_text(text))


def write_code_usage(checkpoint_dir, dataset: str, tokens: np.ndarray, codebook_size: int) -> Path:
    """Write the code usage of test-split tokens ``[n,h,w]`` to ``checkpoint_dir/code_usage.json``:
    {split, dataset, images, counts [K], per_position [h*w][K]}."""
    per_position = M.code_counts(tokens, codebook_size)
    path = Path(checkpoint_dir) / CODE_USAGE_NAME
    _write(path, json.dumps({"split": "test", "dataset": dataset, "images": len(tokens),
                             "counts": per_position.sum(0).tolist(), "per_position": per_position.tolist()}))
    return path


def evaluate(checkpoint_dir, data_root, out_dir, log=print, **overrides) -> dict:
    """Run the evaluation (options: the fields of :class:`EvalConfig`) and write report.json and
    summary.md into ``out_dir``. Returns the report."""
    w = overrides.pop("inception_weights", None)
    cfg = EvalConfig(**overrides, inception_weights=[w] if isinstance(w, (str, Path)) else list(w or []))
    for name in ("num_samples", "sweep_samples") if cfg.sweeps else ("num_samples",):
        if getattr(cfg, name) <= cfg.k:
            raise SpikingDiffusionError(f"{name} must exceed k={cfg.k} (the k-NN manifolds need more samples)")
    start = time.time()
    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint_dir, device=cfg.device)
    if pipe.denoiser is None:
        raise SpikingDiffusionError("this checkpoint holds only a VQ-SVAE; evaluation needs a trained prior")
    sampling = pipe.sampling_settings(**{k: getattr(cfg, k) for k in SETTINGS})
    cfg = replace(cfg, **sampling.to_dict())
    sweep_temps = [parse_temperature(t) for t in cfg.temperatures] if cfg.sweeps else []
    dataset = cfg.dataset or pipe.info.get("dataset")
    if not dataset:
        raise SpikingDiffusionError("the checkpoint does not name its data set (info['dataset']); pass --dataset")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test = load_images(dataset, data_root, train=False, download=cfg.download)
    report = {"checkpoint": str(checkpoint_dir), "dataset": dataset, "settings": asdict(cfg), "messages": []}

    def note(msg):
        report["messages"].append(msg)
        log(msg)

    log(f"generating {cfg.num_samples} images (steps={cfg.steps}, {sampling.label()}) ...")
    t0 = time.time()
    images, tokens = generate(pipe, cfg.num_samples, cfg.steps, sampling, cfg.seed, cfg.order, cfg.batch_size, log)
    report["generation"] = {"n": len(images), "seconds": round(time.time() - t0, 1),
                            "seconds_per_image": (time.time() - t0) / len(images)}
    _save_grid(images[:64], out_dir / "samples.png")
    fake = nchw(images)

    # (a) Inception-based FIDs, each under its own protocol
    report["inception"] = inception_section(cfg, fake, test, note)

    # (b) offline, with our classifier
    clf_dir = Path(cfg.classifier) if cfg.classifier else default_classifier_dir(dataset)
    alias = {"cifar10": "cifar10-folder", "cifar10-folder": "cifar10"}.get(dataset)  # same images, two loaders
    if not cfg.classifier and alias and not clf_dir.is_dir() and default_classifier_dir(alias).is_dir():
        clf_dir = default_classifier_dir(alias)
    clf = None
    if (clf_dir / "config.json").is_file():
        clf = load_classifier(clf_dir, cfg.device)
        ref = Reference.of(clf, test.images, cfg.seed)
        train = load_images(dataset, data_root, train=True, download=cfg.download)
        held = train.images[holdout_split(len(train), clf.cfg.holdout, clf.cfg.holdout_seed)[1][:cfg.num_samples]]
        report["classifier"] = {
            "classifier": str(clf_dir), "classifier_test_accuracy": clf.cfg.info.get("test_accuracy"),
            "reference": f"test split ({len(test)} images)",
            "generated": classifier_metrics(clf, images, ref, cfg.k),
            "real_heldout": {**classifier_metrics(clf, held, ref, cfg.k),
                             "what": "train-split images held out of the classifier's training (the floor)"},
            "reconstructed_heldout": {**classifier_metrics(clf, reconstructions(pipe, held, cfg.batch_size)[0], ref, cfg.k),
                                      "what": "the VQ-SVAE's reconstructions of those images (what the encoder's "
                                              "tokens give: the prior picks tokens, the decoder draws them)"}}
        for key, name in (("generated", "generated"), ("real_heldout", "real held-out"),
                          ("reconstructed_heldout", "reconstructed held-out")):
            log(f"classifier metrics: {name} {_short(report['classifier'][key])}")
    else:
        report["classifier"] = None
        note(f"offline classifier metrics skipped: no classifier at {clf_dir} (train one with train-classifier)")

    # (c) the model itself
    report["model"], test_tokens = model_section(pipe, cfg, test, tokens, log)

    # (d) sweeps
    report["sweeps"] = None
    if cfg.sweeps:
        rows = []
        settings = ([("temperature", replace(sampling, temperature=a, temperature_end=b), cfg.steps) for a, b in sweep_temps]
                    + [("top_p", replace(sampling, top_p=p), cfg.steps) for p in cfg.top_ps]
                    + [("corrector", replace(sampling, corrector_steps=c), cfg.steps) for c in cfg.corrector_sweep]
                    + [("steps", sampling, int(s)) for s in cfg.steps_sweep])
        measured: dict[tuple, dict] = {}   # a setting in two sweeps is generated and measured once
        for kind, setting, steps in settings:
            key = (steps, setting)
            if key not in measured:
                t0 = time.time()
                imgs, toks = generate(pipe, cfg.sweep_samples, steps, setting, cfg.seed + 1, cfg.order, cfg.batch_size)
                m = {"n": len(imgs), "token_perplexity": M.codebook_usage(toks, pipe.codebook_size)["perplexity"]}
                if clf is not None:
                    m.update(classifier_metrics(clf, imgs, ref, cfg.k))
                measured[key] = {**m, "seconds": round(time.time() - t0, 1)}
            row = {"sweep": kind, "temperature": temperature_label(setting.temperature, setting.temperature_end),
                   "top_p": setting.top_p, "corrector_steps": setting.corrector_steps, "steps": steps,
                   **measured[key]}
            log(f"sweep {kind}: steps {steps}, {setting.label()}: {_short(row)}")
            rows.append(row)
        report["sweeps"] = rows
    report["seconds"] = round(time.time() - start, 1)
    report["headline"] = headline(report)
    report = _clean(report)
    _write(out_dir / "report.json", json.dumps(report, indent=2))
    _write(out_dir / "summary.md", summary_markdown(report))
    if cfg.record:  # the evaluated settings become the checkpoint's defaults (studio, sample)
        update_metadata(checkpoint_dir, info=sampling.to_dict(), metrics=report["headline"])
        write_code_usage(checkpoint_dir, dataset, test_tokens, pipe.codebook_size)
        log(f"recorded headline metrics in {checkpoint_dir}/config.json and test code usage in {CODE_USAGE_NAME}")
    log(f"wrote {out_dir / 'report.json'} and {out_dir / 'summary.md'} ({report['seconds']:.0f}s)")
    return report


def _short(d: dict) -> str:
    keys = ("fd", "precision", "recall", "confident_share", "class_entropy", "token_perplexity")
    return ", ".join(f"{k} {d[k]:.3f}" for k in keys if isinstance(d.get(k), float))


def _save_grid(images: np.ndarray, path: Path) -> None:
    from torchvision.utils import save_image

    save_image(nchw(images), str(path), nrow=8, padding=1)


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
             dead_codes=m["codebook_test"]["dead_codes"])
    if "energy" in m:
        h["energy_uj_per_image"] = m["energy"]["per_image"]["snn_energy_pj"] / 1e6
        h["energy_ratio_vs_ann"] = m["energy"]["per_image"]["energy_ratio"]
    h["eval_settings"] = {k: s[k] for k in ("num_samples", "steps", *SETTINGS, "seed", "order")}
    return h


def summary_markdown(r: dict) -> str:
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
        lines += [f"Classifier `{c['classifier']}` (test accuracy {f(c['classifier_test_accuracy'], 4)}).", "",
                  "| images | n | Fréchet dist. | precision | recall | confident >= 0.9 | class entropy |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, key in (("generated", "generated"), ("real held-out (floor)", "real_heldout"),
                          ("held-out, VQ-SVAE reconstructions (the encoder's tokens)", "reconstructed_heldout")):
            g = c[key]
            lines.append(f"| {name} | {g['n']} | {f(g['fd'])} | {f(g['precision'])} | {f(g['recall'])} | "
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
