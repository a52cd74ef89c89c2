"""Evaluate a checkpoint: sample quality, the model's own figures, and energy.

evaluate(checkpoint_dir, data_root, out_dir) writes ``report.json`` + ``summary.md`` (+ ``samples.png``):
  inception   FID under two labelled protocols, each only when its Inception weights are at hand:
              'standard' (pytorch-fid's FID weights, 10,000 generated vs the test split) and
              'paper' (the authors': 1,280 vs 1,280, bilinear 299x299, torchvision ImageNet inception_v3)
              (:mod:`.inception`)
  classifier  offline, with our own small CNN (spiking_diffusion.classifier): Fréchet distance in its
              feature space, precision/recall (k=3), confident share, class-coverage entropy, for the
              generated images and for real held-out images (the floor), both against the test split
              (:mod:`.classifier_metrics`); with fewer samples than feature dimensions the report warns,
              shows the real-data floor at that count, and ``record`` is refused
  model       VQ-SVAE reconstruction MSE/SSIM and codebook usage on the test split, firing rates per
              layer, synaptic operations and energy per generated image vs a non-spiking equivalent
              (:func:`.energy.generation_energy`)
  sweeps      the classifier metrics over sampling temperatures, top-p, corrector rounds and steps
With ``record``, the headline metrics (in place of all older ones) and the evaluated sampler
settings (the checkpoint's new defaults) go into the checkpoint's config.json, and the test split's code usage into
``code_usage.json`` beside it (the studio's Codebook view reads it). Rendering: :mod:`.report`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CODE_USAGE_NAME, CONFIG_NAME, atomic_write_file, update_metadata
from ..classifier import find_classifier_dir, holdout_split, load_classifier
from ..data import DataError, load_images
from ..errors import Setting, SpikingDiffusionError, check_fields
from ..images import to_float
from ..pipeline import MAX_IMAGES, SpikingDiffusionPipeline
from ..sampling import ORDERS, SEED, SETTINGS, SamplerConfig, check_order, check_steps, parse_temperature, temperature_label
from . import metrics as M
from .classifier_metrics import Reference, classifier_metrics, few_samples_message
from .energy import generation_energy
from .inception import inception_section
from .report import clean, headline, short, summary_markdown


# the accepted range of each count and size of an evaluation, named by its flag (checked when the
# EvalConfig is made, before any work; num_samples and sweep_samples must also exceed k, in evaluate)
EVAL_BOUNDS = {s.name: s for s in (
    Setting("num_samples", int, 1, None, "--num-samples"),
    Setting("seed", int, 0, SEED.hi, "--seed"),
    Setting("batch_size", int, 1, MAX_IMAGES, "--batch-size"),
    Setting("fid_samples", int, 2, None, "--fid-samples"),        # a covariance needs two images at least
    Setting("paper_samples", int, 2, None, "--paper-samples"),
    Setting("inception_batch", int, 1, None),
    Setting("sweep_samples", int, 1, None, "--sweep-samples"),
    Setting("recon_samples", int, 1, None, "--recon-samples"),    # None: the whole test split
    Setting("spike_samples", int, 1, None),
    Setting("k", int, 1, None),
)}


@dataclass
class EvalConfig:
    num_samples: int = 10000          # generated images for the main figures
    steps: int | None = None          # sampling steps (None: all N, the checkpoint's diffusion steps)
    # sampler settings (spiking_diffusion.sampling); None: the checkpoint's sampling_defaults
    temperature: float | None = None
    temperature_end: float | None = None
    top_p: float | None = None
    corrector_steps: int | None = None
    corrector_cells: int | None = None
    corrector_temperature: float | None = None
    guidance: float | None = None
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
    steps_sweep: tuple[int, ...] | None = None  # None: N/7, N/4, N/2 and N, rounded up (7, 13, 25, 49 for 7x7)
    sweep_samples: int = 1000
    recon_samples: int | None = None  # test images for reconstruction / codebook usage (None: all)
    spike_samples: int = 64           # images whose spikes are recorded for firing rates
    k: int = 3                        # k of the k-NN manifolds
    device: str = "cpu"
    download: bool = True             # torchvision may download a missing data set (as the command line)
    record: bool = False              # write headline metrics (config.json) and code_usage.json into the checkpoint

    def __post_init__(self):
        check_fields(self, EVAL_BOUNDS)


def _shown_path(path) -> str:
    """A path as a report shows it: relative to the working folder when inside it (so that reports
    written in a checkout name no machine's folders), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def generate(pipe, n: int, steps: int, sampler: SamplerConfig, seed: int, order: str, batch_size: int, log=None):
    """``n`` samples in batches (batch b seeded from (seed, b)) -> (uint8 images ``[n,H,W,C]``, tokens ``[n,h,w]``)."""
    images, tokens, start = [], [], time.time()
    for b, i in enumerate(range(0, n, batch_size)):
        out = pipe(min(batch_size, n - i), steps=steps, seed=_seed(seed, b), order=order, sampler=sampler)
        images.append(out.images)
        tokens.append(out.tokens)
        if log and (b + 1) % 10 == 0:
            log(f"  {i + len(out.images)}/{n} images ({time.time() - start:.0f}s)")
    return np.concatenate(images), np.concatenate(tokens)


@torch.inference_mode()
def reconstructions(pipe, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 images ``[N,C,H,W]`` -> (encoded and decoded by the VQ-SVAE, floats ``[N,C,H,W]`` in
    [0, 1]; their tokens ``[N,h,w]``), in batches."""
    recs, toks = [], []
    for i in range(0, len(images), batch_size):
        tok = pipe.encode(to_float(images[i:i + batch_size], channels_last=False))    # [b, h, w]
        recs.append(pipe.decode(tok).cpu())                            # [b, C, H, W]
        toks.append(tok.cpu().numpy())
    return torch.cat(recs), np.concatenate(toks)


def reconstruction_scores(pipe, test, n: int, batch_size: int) -> tuple[dict, np.ndarray]:
    """MSE and SSIM (means over images, pixels in [0, 1]) of the VQ-SVAE's reconstructions of the
    first ``n`` images of ``test`` (an ``ImageSet``), and their tokens ``[n,h,w]``."""
    rec, tokens = reconstructions(pipe, test.images[:n], batch_size)                # [n, C, H, W], [n, h, w]
    x = test.floats(slice(0, n))
    return {"mse": float(((rec - x) ** 2).mean()), "ssim": float(M.ssim(rec, x).mean())}, tokens


def heldout_images(clf, data_root, n: int, download: bool = True) -> torch.Tensor:
    """The first ``n`` train-split images held out of the classifier's training, uint8 ``[n,C,H,W]``:
    the real floor of the offline metrics, and what reconstructions are scored on. They are read
    with the classifier's own loader (``clf.cfg.dataset``): the held-out indices are positions in
    it, and CIFAR-10's two loaders (``cifar10``, ``cifar10-folder``) order the images differently,
    so the other loader's images at those positions were mostly in the classifier's training.
    Raises :class:`~spiking_diffusion.data.DataError` when that loader's data is not there."""
    train = load_images(clf.cfg.dataset, data_root, train=True, download=download)
    return train.images[holdout_split(len(train), clf.cfg.holdout, clf.cfg.holdout_seed)[1][:n]]


# --- the model itself -------------------------------------------------------------------------
@torch.inference_mode()
def model_section(pipe, cfg: EvalConfig, test, gen_tokens: np.ndarray, log) -> tuple[dict, np.ndarray]:
    """(the report's model section, the tokens of the test images it encoded ``[n,h,w]``)."""
    K = pipe.codebook_size
    n = len(test) if cfg.recon_samples is None else min(cfg.recon_samples, len(test))
    log(f"reconstruction of {n} test images ...")
    scores, test_tokens = reconstruction_scores(pipe, test, n, cfg.batch_size)
    out = {"recon_images": n, "recon_mse": scores["mse"], "recon_ssim": scores["ssim"],
           "codebook_test": M.codebook_usage(test_tokens, K), "codebook_generated": M.codebook_usage(gen_tokens, K)}

    m = min(cfg.spike_samples, len(test), len(gen_tokens))
    rates_real = pipe.spikes(images=test.floats(slice(0, m))).firing_rates       # encoder + ASG + decoder
    out["firing_rates"] = {"vqsvae_test_images": rates_real}
    if pipe.denoiser is None:
        out["firing_rates"]["vqsvae_generated_tokens"] = pipe.spikes(tokens=gen_tokens[:m]).firing_rates
        return out, test_tokens
    energy = generation_energy(pipe, gen_tokens, cfg.steps, cfg.order, cfg.corrector_steps, cfg.seed, max_images=m,
                               corrector_cells=cfg.corrector_cells, guidance=cfg.guidance)
    out["firing_rates"].update(energy.pop("firing_rates"))
    out["energy"] = energy
    return out, test_tokens


# --- the whole evaluation ---------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    atomic_write_file(path, lambda tmp: Path(tmp).write_text(text))


def _save_grid(images: np.ndarray, path: Path) -> None:
    from torchvision.utils import save_image

    save_image(to_float(images), str(path), nrow=8, padding=1)


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
    summary.md into ``out_dir``. Returns the report. ``checkpoint_dir``: a folder, or a Hub repo id
    (then without ``record``). Raises :class:`SpikingDiffusionError` on bad settings, before any work."""
    w = overrides.pop("inception_weights", None)
    cfg = EvalConfig(**overrides, inception_weights=[w] if isinstance(w, (str, Path)) else list(w or []))
    missing = [str(p) for p in cfg.inception_weights if not Path(p).is_file()]
    if missing:
        raise SpikingDiffusionError(f"--inception-weights {missing[0]}: no such file (a .pth of pt_inception-2015-12-05 "
                                    "or of torchvision's inception_v3); nothing was generated")
    for name in ("num_samples", "sweep_samples") if cfg.sweeps else ("num_samples",):
        if getattr(cfg, name) <= cfg.k:
            raise SpikingDiffusionError(f"{name} must exceed k={cfg.k} (the k-NN manifolds need more samples)")
    start = time.time()
    pipe = SpikingDiffusionPipeline.from_pretrained(checkpoint_dir, device=cfg.device)
    if pipe.denoiser is None:
        raise SpikingDiffusionError("this checkpoint holds only a VQ-SVAE; evaluation needs a trained prior")
    if cfg.record and pipe.path != Path(checkpoint_dir):
        raise SpikingDiffusionError(f"--record writes into the checkpoint folder; {checkpoint_dir} was loaded from the "
                                    "Hugging Face Hub cache: download it into a folder and evaluate that")
    sampling = pipe.sampling_settings(**{k: getattr(cfg, k) for k in SETTINGS})
    N = pipe.num_diffusion_steps
    cfg = replace(cfg, **sampling.to_dict(), steps=check_steps(N if cfg.steps is None else cfg.steps, N),
                  order=check_order(cfg.order), steps_sweep=tuple(
                      check_steps(s, N) for s in (cfg.steps_sweep if cfg.steps_sweep is not None
                                                  else sorted({math.ceil(N / d) for d in (7, 4, 2, 1)}))))
    if cfg.record and (cfg.steps, cfg.order) != (N, ORDERS[0]):
        raise SpikingDiffusionError(
            f"--record refused: the recorded figures would come from {cfg.steps} steps in {cfg.order} order, while the "
            f"checkpoint's users (the studio, sample, pipe()) sample with all {N} steps in random order; evaluate those "
            "to record, or drop --record")
    sweep_temps = [parse_temperature(t) for t in cfg.temperatures] if cfg.sweeps else []
    sweep_settings = [replace(sampling, top_p=p) for p in cfg.top_ps] + \
        [replace(sampling, corrector_steps=c) for c in cfg.corrector_sweep]   # checked before any work
    dataset = cfg.dataset or pipe.info.get("dataset")
    if not dataset:
        raise SpikingDiffusionError("the checkpoint does not name its data set (info['dataset']); pass --dataset")
    own = pipe.info.get("dataset")
    if cfg.record and own and dataset != own:
        raise SpikingDiffusionError(f"--record refused: the checkpoint was trained on {own!r}, and its recorded figures "
                                    f"would come from {dataset!r}; drop --dataset or --record")
    clf_dir = Path(cfg.classifier) if cfg.classifier else find_classifier_dir(dataset)
    clf = load_classifier(clf_dir, cfg.device) if (clf_dir / CONFIG_NAME).is_file() else None
    dim = clf.cfg.feature_dim if clf is not None else None
    few = clf is not None and M.too_few_for_frechet(cfg.num_samples, dim)
    if few and cfg.record:
        raise SpikingDiffusionError(
            f"--record refused: {cfg.num_samples} samples are not more than the classifier's {dim} feature dimensions, "
            "so the Fréchet distance recorded as the model's headline figure would come from a singular covariance; "
            f"use --num-samples {dim + 1} or more (the bundled models' figures use 1,000 or 2,000)")
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

    # (a) Inception-based FIDs, each under its own protocol
    report["inception"] = inception_section(cfg, to_float(images), test, note, console=log)  # no paths in the report

    # (b) offline, with our classifier
    if clf is not None:
        ref = Reference.of(clf, test.images, cfg.seed)
        c = report["classifier"] = {
            "classifier": _shown_path(clf_dir), "classifier_test_accuracy": clf.cfg.info.get("test_accuracy"),
            "reference": f"test split ({len(test)} images)",
            "generated": classifier_metrics(clf, images, ref, cfg.k)}
        try:
            held = heldout_images(clf, data_root, cfg.num_samples, cfg.download)
        except DataError as e:
            held = None
            note(f"the held-out rows are skipped: the classifier holds its images out of {clf.cfg.dataset!r}, "
                 f"which is not available ({e})")
        if held is not None and len(held) <= cfg.k:
            note(f"the held-out rows are skipped: the classifier holds out only {len(held)} images, and the k-NN "
                 f"manifolds need more than k={cfg.k} (train it with a larger --holdout)")
            held = None
        if held is not None:
            c["real_heldout"] = {**classifier_metrics(clf, held, ref, cfg.k),
                                 "what": "train-split images held out of the classifier's training (the floor)"}
            c["reconstructed_heldout"] = {
                **classifier_metrics(clf, reconstructions(pipe, held, cfg.batch_size)[0], ref, cfg.k),
                "what": "the VQ-SVAE's reconstructions of those images (what the encoder's tokens give: the prior "
                        "picks tokens, the decoder draws them). Held out of the classifier only: the VQ-SVAE "
                        "trained on the whole train split, these images included, so this row is its "
                        "training-set reconstruction"}
        if few:   # the figure next to what real data gives at the same count, when there is real data
            floor = {"fd_floor": c["real_heldout"]["fd"], "fd_floor_n": c["real_heldout"]["n"]} if held is not None else {}
            c["generated"].update(floor)
            c["few_samples"] = few_samples_message(cfg.num_samples, dim, *floor.values())
            note(f"warning: {c['few_samples']}")
        for key, name in (("generated", "generated"), ("real_heldout", "real held-out"),
                          ("reconstructed_heldout", "reconstructed held-out")):
            if key in c:
                log(f"classifier metrics: {name} {short(c[key])}")
    else:
        report["classifier"] = None
        note(f"offline classifier metrics skipped: no classifier at {clf_dir} (train one with train-classifier)")

    # (c) the model itself
    report["model"], test_tokens = model_section(pipe, cfg, test, tokens, log)

    # (d) sweeps
    report["sweeps"] = None
    if cfg.sweeps:
        if clf is not None and M.too_few_for_frechet(cfg.sweep_samples, dim):
            note(f"warning: the sweeps' Fréchet distances: {few_samples_message(cfg.sweep_samples, dim)}")
        rows = []
        n_top = len(cfg.top_ps)
        settings = ([("temperature", replace(sampling, temperature=a, temperature_end=b), cfg.steps) for a, b in sweep_temps]
                    + [("top_p", x, cfg.steps) for x in sweep_settings[:n_top]]
                    + [("corrector", x, cfg.steps) for x in sweep_settings[n_top:]]
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
            log(f"sweep {kind}: steps {steps}, {setting.label()}: {short(row)}")
            rows.append(row)
        report["sweeps"] = rows
    report["seconds"] = round(time.time() - start, 1)
    report["headline"] = headline(report)
    report = clean(report)
    _write(out_dir / "report.json", json.dumps(report, indent=2))
    _write(out_dir / "summary.md", summary_markdown(report))
    if cfg.record:  # the evaluated settings become the checkpoint's defaults (studio, sample, pipe())
        update_metadata(checkpoint_dir, info=sampling.to_dict(), metrics=report["headline"], replace_metrics=True)
        write_code_usage(checkpoint_dir, dataset, test_tokens, pipe.codebook_size)
        log(f"recorded headline metrics in {checkpoint_dir}/config.json and test code usage in {CODE_USAGE_NAME}")
    log(f"wrote {out_dir / 'report.json'} and {out_dir / 'summary.md'} ({report['seconds']:.0f}s)")
    return report
