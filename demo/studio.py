"""The studio's logic: model discovery and every handler behind the UI (no layout here).

Handlers take plain values and return plain values / figures, and only use the pipeline's public
API. User mistakes raise ``gr.Error`` with a clear message; the server keeps serving.
"""
from __future__ import annotations

import html
import queue
import random
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from spiking_diffusion import compute
from spiking_diffusion import (DenoiserConfig, SpikingDiffusionError, SpikingDiffusionPipeline, VQSVAEConfig,
                              denoiser_macs)
from spiking_diffusion.evaluation import metrics as M
from spiking_diffusion.evaluation.energy import E_AC_PJ, E_MAC_PJ, expected_denoiser_calls, generation_energy
from spiking_diffusion.checkpoint import CONFIG_NAME, WEIGHTS_NAME, vqsvae_digest
from spiking_diffusion.data import TITLES, DataError, load_images
from spiking_diffusion.images import to_float, to_uint8
from spiking_diffusion.sampling import (MAX_CORRECTOR_STEPS, SETTINGS, SamplerConfig,
                                       temperature_label)
from spiking_diffusion.spiking import LIF_THRESHOLD

from . import frames, media, plots
from .checks import MAX_SEED, MAX_UPLOAD, check_all, check_int, friendly
from .generations import MAX_RUNS, RUN_TTL_S, GenerationStopped, Run, RunStore
from .media import InputError

MAX_CORRECTOR_ROUNDS = MAX_CORRECTOR_STEPS  # corrector rounds offered in the studio (the sampler's bound)
FRAME_CACHE = 256           # decoded (image, step) frames kept per run
ATLAS_COLS = 16             # codes per row of the Codebook's atlas
STAND_IN_IMAGES = 64        # images the Codebook generates for want of the user's (fewer for a slower model)
MIN_STAND_IN = 16           # ... but never fewer than these
NEURON_AXIS = "neuron (D per token cell, cell by cell)"   # the y axis of a raster of every cell's neurons
PREVIEW_EVERY = 9           # after a streamed preview, 9x its making (decode + tile) of sampling: a tenth
STATUS_EVERY = 0.25         # seconds between status lines during the corrector rounds (their grids not streamed)
MAX_EXPORTS = 8             # export folders kept on disk (Gradio copies each into its cache)
SESSIONS = 4096             # browser sessions whose last Generate and Stop presses are kept (the newest)
SLOW_RATIO = 2.0            # a model doing over this many times the default model's denoiser work is said slower
SLOW_ADVICE = "expect it to take longer in proportion"
START_HINT = "Press <b>Generate</b>: the samples fill in here while the diffusion runs."   # the status line at first


def cell_choices(latent: int) -> list[tuple[str, int]]:
    """Dropdown choices ``("row r, col c", r * latent + c)`` for every cell of a latent x latent grid."""
    return [(f"row {r}, col {c}", r * latent + c) for r in range(latent) for c in range(latent)]


@dataclass(frozen=True)
class ModelFacts:
    """What the studio's layout needs to know of a model (read from its config)."""

    latent_size: int = VQSVAEConfig().latent_size                       # token grid side (7)
    num_steps: int = DenoiserConfig.num_diffusion_steps                 # diffusion steps N (49)
    membrane_decay: float = VQSVAEConfig.membrane_decay                 # M(s) decay per step (0.8)
    psp_tau: float = VQSVAEConfig.psp_tau                               # tau_s of the PSP filter (2)

    @property
    def cells(self) -> int:
        return self.latent_size ** 2


def _span(lo: int, hi: int) -> dict:
    """A whole-number slider's maximum and visibility over ``lo..hi``: hidden while it holds one value
    only (one image, one step, one code; Gradio refuses a maximum equal to the minimum, and there is
    nothing to pick)."""
    return dict(maximum=max(hi, lo + 1), visible=hi > lo)


def whole_slider(lo: int, hi: int, value: int, **kw) -> gr.Slider:
    """A whole-number slider over ``lo..hi`` (:func:`_span`): a studio of ``--max-batch 1``, a grid of one cell."""
    return gr.Slider(lo, value=value, step=1, **_span(lo, hi), **kw)


def slider_range(value: int, lo: int, hi: int):
    """A whole-number slider's update to ``lo..hi`` at ``value`` (:func:`_span`)."""
    return gr.update(value=value, **_span(lo, hi))


def discover_models(root: str | Path) -> dict[str, Path]:
    """Every subfolder of ``root`` (or ``root`` itself) holding config.json + model.safetensors."""
    root = Path(root)
    found = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()
             and (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()} if root.is_dir() else {}
    if not found and (root / CONFIG_NAME).is_file():
        found[root.name] = root
    return found


MEASURED = {"classifier_fd": "Fréchet distance", "classifier_precision": "precision",
            "classifier_recall": "recall", "classifier_confident_share": "confident"}   # model info's figures


def _measured(metrics: dict) -> tuple[str, object]:
    """(the model info's figures as "Fréchet distance 16.7, precision 0.881, ...", or "" when none;
    the number of samples they were measured on, or "?")."""
    figures = [f"{label} {metrics[k]:.3g}" for k, label in MEASURED.items() if isinstance(metrics.get(k), (int, float))]
    return ", ".join(figures), (metrics.get("eval_settings") or {}).get("num_samples", "?")


def _cost_row(what: str, cost: dict, digits: int = 1) -> str:
    """One row of the Energy table: the MACs of the network without spikes | the spiking one's ACs + MACs."""
    return (f"| {what} | {cost['ann_macs'] / 1e6:.{digits}f} M MACs | "
            f"{cost['sops'] / 1e6:.2f} M ACs<br>+ {cost['snn_macs'] / 1e6:.2f} M MACs |\n")   # two lines: a narrow column


def _energy_unit(uj: float) -> tuple[float, str, int]:
    """(µJ per unit, unit, decimals shown) that read best for an energy of ``uj`` µJ: µJ, mJ or J."""
    return (1e6, "J", 2) if uj >= 1e6 else (1e3, "mJ", 1) if uj >= 1e3 else (1.0, "µJ", 0)


def _energy(uj: float) -> str:
    """An energy in the unit that reads best: '840 µJ', '207.5 mJ', '1.21 J'."""
    per, unit, digits = _energy_unit(uj)
    return f"{uj / per:,.{digits}f} {unit}"


def _rates(rates: dict) -> str:
    return ", ".join(f"{plots.layer_label(k)} {r:.3f}" for k, r in rates.items())


def _newest(updates: queue.Queue):
    """The (step index, picture or None, seconds) items of ``updates`` until None; when several wait (a
    slow page), only the newest, with the newest picture among them."""
    while (item := updates.get()) is not None:
        while not updates.empty():
            if (newer := updates.get()) is None:
                return
            item = newer if newer[1] is not None else (newer[0], item[1], newer[2])
        yield item


class Studio:
    def __init__(self, checkpoints: str | Path = "assets", max_batch: int = 64, data_dir: str | None = None,
                 max_runs: int = MAX_RUNS, run_ttl: float = RUN_TTL_S, max_upload: str = MAX_UPLOAD):
        compute.start()   # every model call on one thread, whichever Gradio thread asks (see compute.py)
        self.models = discover_models(checkpoints)
        self.max_upload = max_upload    # the largest upload the server takes (said in the Encode tab)
        self.max_batch = max_batch
        self.data_dir = data_dir
        self.runs = RunStore(max_runs, run_ttl)
        self._pipes: dict[str, SpikingDiffusionPipeline] = {}
        self._cache: dict[tuple, object] = {}
        self._digests: dict[str, tuple] = {}        # model -> (its files' mtimes, vqsvae_digest): Model info's
        self._load_lock = threading.Lock()
        self._last_prepared: tuple = (None, None)   # (model, file, invert) -> prepare_image's result, the last one
        self.export_root = Path(tempfile.mkdtemp(prefix="sd_exports_"))
        self._exports_lock = threading.Lock()
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.export_root, True)
        self.generating = 0         # generations whose sampler is still running
        self._generating_lock = threading.Lock()
        # per browser session (the newest SESSIONS): when it last asked for a generation, and last pressed Stop
        self._asked, self._stopped = OrderedDict(), OrderedDict()
        self._made = OrderedDict()      # session -> Run.asked_at of the last run it made

    def close(self):
        """Delete the export folder (also done when the studio is garbage collected or at exit)."""
        self._cleanup()

    @property
    def default_model(self) -> str | None:
        return "mnist" if "mnist" in self.models else next(iter(self.models), None)

    def pipe(self, name: str) -> SpikingDiffusionPipeline:
        if name not in self.models:
            raise InputError(f"unknown model {name!r}; available: {', '.join(self.models) or 'none'}")
        with self._load_lock:
            if name not in self._pipes:
                pipe = SpikingDiffusionPipeline.from_pretrained(self.models[name])
                if pipe.denoiser is not None:   # warm up kernels (the guide's too) so the first click is fast
                    pipe(1, 1, sampler=SamplerConfig(guidance=1.0 if pipe.guide is not None else 0.0))
                self._pipes[name] = pipe
            return self._pipes[name]

    # --- model facts ------------------------------------------------------------------------
    @friendly
    def model_info(self, name: str) -> str:
        """Markdown: what the model is in a few lines (architecture, training, sampler, measured
        figures), then every stored setting in a table."""
        pipe = self.pipe(name)
        beside, cost = self._beside(name, pipe), self._cost_line(name, pipe)
        return (f"**{name}** (folder `{self.models[name].name}`)\n\n{self._summary(pipe)}{self._shared(name)}"
                f"{beside}{cost}\n\n"
                f"<details><summary>All stored settings (the checkpoint's config.json, by its own names)</summary>\n\n{self._settings_table(pipe)}\n\n</details>")

    def _shared(self, name: str) -> str:
        """A Markdown line naming the other models with the same VQ-SVAE weights as model ``name``
        (their tokens, decoders and code usage are the same; only the priors differ); "" for none."""
        own = self._vqsvae_digest(name)
        same = [n for n in self.models if n != name and own is not None and self._vqsvae_digest(n) == own]
        if not same:
            return ""
        return (f"\n- **Shares its VQ-SVAE** with {', '.join(same)}: the same weights, so the same tokens, "
                f"decoder and code usage; only the prior (and so the samples) differs.")

    def _vqsvae_digest(self, name: str) -> str | None:
        """Model ``name``'s :func:`vqsvae_digest`, read once per save of its files (kept by their
        modification times); None for an unreadable checkpoint (its own info says what is wrong)."""
        folder = self.models[name]
        try:
            key = tuple((folder / f).stat().st_mtime_ns for f in (CONFIG_NAME, WEIGHTS_NAME))
            if self._digests.get(name, (None,))[0] != key:
                self._digests[name] = (key, vqsvae_digest(folder))
        except (OSError, SpikingDiffusionError):
            return None
        return self._digests[name][1]

    def _default_pipe(self, name: str) -> SpikingDiffusionPipeline | None:
        """The default model's pipeline to compare model ``name`` with; None for the default model
        itself, or when it fails to load (its own info says what is wrong)."""
        if name == self.default_model or self.default_model not in self.models:
            return None
        try:
            return self.pipe(self.default_model)
        except (InputError, SpikingDiffusionError):
            return None

    def _work_ratio(self, name: str, pipe: SpikingDiffusionPipeline) -> float:
        """How many times the default model's denoiser work one generation with this model does
        (multiply-adds of a dense network with its widths, and of its guide prior where its sampler
        is guided, times the expected denoiser calls of each one's own sampler); 1.0 for the default model, or when either has no prior or fails to load."""
        default = self._default_pipe(name)
        if pipe.denoiser is None or default is None or default.denoiser is None:
            return 1.0

        def work(p):  # multiply-adds per image for one generation with the model's own sampler
            cfg, s = p.denoiser.cfg, p.sampling_defaults
            calls = expected_denoiser_calls(cfg.num_diffusion_steps, cfg.latent_size ** 2) + s.corrector_steps
            guide = denoiser_macs(p.guide.cfg) if s.guidance and p.guide is not None else 0   # beside every call
            return (denoiser_macs(cfg) + guide) * calls
        return work(pipe) / work(default)

    def _slowness(self, name: str, pipe: SpikingDiffusionPipeline) -> str | None:
        """How much slower this model is than the default, as words ("does about 19.8x the denoiser
        work of the default model (mnist)"), when its :meth:`_work_ratio` is over :data:`SLOW_RATIO`
        (a model worth warning of); else None. Model info and the status line both say it."""
        ratio = self._work_ratio(name, pipe)
        if ratio <= SLOW_RATIO:
            return None
        return f"does about {ratio:.1f}x the denoiser work of the default model ({self.default_model})"

    def _cost_line(self, name: str, pipe: SpikingDiffusionPipeline) -> str:
        """A Markdown line for Model info when this model is slow (:meth:`_slowness`), so that
        nobody waits for a slow model unwarned; else ``""``."""
        slowness = self._slowness(name, pipe)
        if slowness is None:
            return ""
        return (f"\n- **Slower**: a generation {slowness}, counting multiply-adds of a dense network with its "
                f"widths times its denoiser calls: {SLOW_ADVICE}.")

    def _beside(self, name: str, pipe: SpikingDiffusionPipeline) -> str:
        """A Markdown line with the default model's measured figures, to set beside those of another
        model of the same data set (two data sets' figures do not compare: each has its own
        classifier), so that a figure reads as good or poor at a glance; else ``""``."""
        default = self._default_pipe(name)
        dataset = pipe.info.get("dataset")
        if default is None or dataset is None or default.info.get("dataset") != dataset:
            return ""
        figures, n = _measured(default.metrics)
        return f"\n- **The default model** ({self.default_model}) on {n} samples: {figures}." if figures else ""

    @staticmethod
    def _summary(pipe: SpikingDiffusionPipeline) -> str:
        """Markdown lines: data, VQ-SVAE, denoiser and sampler, training, measured figures."""
        info, m, arch = pipe.info, pipe.metrics, pipe.architecture
        L, K = pipe.latent_size, pipe.codebook_size
        size, kind = pipe.vqsvae.cfg.image_size, "grey" if pipe.image_channels == 1 else "colour"
        data = TITLES.get(info.get("dataset"), info.get("dataset", "unknown"))
        lines = [f"- **Data**: {data}, {kind} {size}x{size} images, each as a {L}x{L} grid "
                 f"of tokens from K = {K} codes.",
                 f"- **VQ-SVAE** (its spiking neurons run T = {pipe.vqsvae.cfg.time_steps} time steps; the Spikes "
                 f"tab's trains): {arch['vqsvae']}."]
        epochs = {k: info.get(k) for k in ("vqsvae_epochs", "epochs")}
        if pipe.denoiser is None:
            lines.append("- **No denoiser**: this checkpoint encodes and decodes only (no Generate).")
        else:
            lines.append(f"- **Denoiser** (the prior; its own neurons run T = {pipe.denoiser.cfg.time_steps} time "
                         f"steps per diffusion step): {arch['denoiser']}.")
            s = pipe.sampling_defaults
            corr = (f", then {plots.count(s.corrector_steps, 'corrector round')} of {plots.count(s.corrector_cells, 'cell')} at temperature "
                    f"{s.corrector_temperature:g}" if s.corrector_steps else "")
            guide = ""
            if pipe.guide is not None and s.guidance:
                g = pipe.guide.cfg
                guide = (f"; each denoiser call is steered away from a smaller, briefly trained prior's (autoguidance, "
                         f"weight {s.guidance:g}, not in the paper; its layer widths {'-'.join(map(str, g.widths))}, "
                         f"T = {g.time_steps})")
            lines.append(f"- **Sampler** (the Generate tab's defaults): temperature "
                         f"{temperature_label(s.temperature, s.temperature_end)}, top-p {s.top_p:g}{corr}{guide}.")
        own = "prior" if pipe.denoiser is not None else "VQ-SVAE"           # whose run info["epochs"] counts
        trained = list(dict.fromkeys(f"{what} {v:.3g} epochs" for what, v in zip(("VQ-SVAE", own), epochs.values())
                                     if isinstance(v, (int, float))))
        averaged = [a.get("epochs") for a in info.get("averaged_from", [])]   # a weight average of priors
        if averaged:
            each = ", ".join(f"{e:.3g}" if isinstance(e, (int, float)) else "?" for e in averaged)
            trained.append(f"prior: the weight average of {len(averaged)} priors ({each} epochs)")
        guide_epochs = (info.get("guide_trained") or {}).get("epochs") if pipe.guide is not None else None
        if isinstance(guide_epochs, (int, float)):
            trained.append(f"guide prior {guide_epochs:.3g} epochs")
        if trained:
            lines.append(f"- **Trained**: {', '.join(trained)}.")
        figures, n = _measured(m)
        if figures:
            lines.append(f"- **Measured** on {n} samples by the offline classifier (lower distance, higher others "
                         f"are better; see docs/results.md): {figures}.")
        return "\n".join(lines)

    @staticmethod
    def _settings_table(pipe: SpikingDiffusionPipeline) -> str:
        rows = [(f"{part}", text) for part, text in pipe.architecture.items()]
        rows += [("codebook size K", pipe.codebook_size), ("image channels", pipe.image_channels),
                 ("diffusion steps N", pipe.num_diffusion_steps), ("can generate", pipe.denoiser is not None)]
        rows += [(k, v) for k, v in pipe.info.items() if k != "architecture"]
        rows += [(f"metric: {k}", v) for k, v in pipe.metrics.items() if not isinstance(v, (list, dict))]
        # a key may break after an underscore (<wbr>), not inside a word; figures: 4 digits
        return ("| setting | value |\n|---|---|\n"
                + "\n".join(f"| {str(k).replace('_', '_<wbr>')} | {f'{v:.4g}' if isinstance(v, float) else v} |"
                             for k, v in rows))

    def facts(self, name: str | None = None) -> ModelFacts:
        """The grid size, steps and neuron constants of model ``name`` (default: the default model;
        the configs' defaults when there is no model)."""
        name = self.default_model if name is None else name
        if name not in self.models:
            return ModelFacts()
        pipe = self.pipe(name)
        return ModelFacts(pipe.latent_size, pipe.num_diffusion_steps, pipe.membrane_decay, pipe.psp_tau)

    def sampling_defaults(self, name: str | None) -> tuple:
        """(temperature, end temperature, top-p, corrector rounds, cells, temperature, guidance) chosen for a
        model when it was evaluated; the paper's sampler at 0.65 otherwise. Read from the checkpoint's
        config without loading the model, so that the sliders show a newly picked model's settings
        before a click on Generate can read them."""
        return self.slider_values(self.sampler_of(name))

    @staticmethod
    def slider_values(d: SamplerConfig) -> tuple:
        """A sampler's settings as the Generate tab's seven sliders show them (a constant temperature: end = start)."""
        end = d.temperature if d.temperature_end is None else d.temperature_end
        return (d.temperature, end, d.top_p, d.corrector_steps, d.corrector_cells, d.corrector_temperature, d.guidance)

    def sampler_of(self, name: str | None) -> SamplerConfig:
        """The sampler settings chosen for model ``name`` (:meth:`sampling_defaults` as one config)."""
        known = name in self.models
        return SpikingDiffusionPipeline.read_sampling_defaults(self.models[name]) if known else SamplerConfig.paper()

    def has_guide(self, name: str | None) -> bool:
        """Whether model ``name`` stores a guide prior, so that its Guidance weight can be above 0
        (read from its config without loading it)."""
        return name in self.models and SpikingDiffusionPipeline.stores_guide(self.models[name])

    # --- 1. generate ------------------------------------------------------------------------
    @staticmethod
    def random_seed() -> int:
        return random.randint(0, MAX_SEED)

    @friendly
    def check_generate(self, model, num_images, steps, temperature, seed, temperature_end=None, top_p=None,
                       corrector_steps=None, corrector_cells=None, corrector_temperature=None, guidance=None):
        """:meth:`generate`'s arguments checked -> (pipeline, images, steps, seed, sampler settings), or
        the message naming the value that is wrong and what is accepted."""
        pipe = self.pipe(model)
        if pipe.denoiser is None:
            raise InputError(f"{model} has no denoiser: it encodes and decodes only (Encode & reconstruct); "
                             "pick a model that generates")
        given = dict(temperature=temperature, temperature_end=temperature_end, top_p=top_p,
                     corrector_steps=corrector_steps, corrector_cells=corrector_cells,
                     corrector_temperature=corrector_temperature, guidance=guidance)
        cells = {"corrector_cells": pipe.latent_size ** 2}                      # the upper bound the grid sets
        v = check_all(n=lambda: check_int(num_images, "Number of images", 1, self.max_batch),   # the controls' names
                      steps=lambda: check_int(steps, "Steps", 1, pipe.num_diffusion_steps),
                      seed=lambda: check_int(seed, "Seed", 0, MAX_SEED),
                      **{k: (lambda k=k, x=x: SETTINGS[k].check(x, cells.get(k), by_label=True))
                         for k, x in given.items() if x is not None})
        sampling = pipe.sampling_settings(**{k: v[k] for k in given if k in v})
        if sampling.guidance and pipe.guide is None:
            raise InputError(f"{SETTINGS['guidance'].label} {sampling.guidance:g} needs a model with a guide prior and "
                             f"{model} has none: 0 only (autoguidance off)")
        return pipe, v["n"], v["steps"], v["seed"], sampling

    @friendly
    def generate(self, model, num_images, steps, temperature, seed, temperature_end=None, top_p=None,
                 corrector_steps=None, corrector_cells=None, corrector_temperature=None, guidance=None,
                 session: str | None = None):
        """Stream (grid image, status html, run) while the diffusion runs: ``run`` is ``gr.skip()``
        until the last item (the session keeps its last finished run meanwhile, and after a failure),
        then the new :class:`Run`. The temperature moves
        linearly to ``temperature_end`` (default: stays constant); ``top_p``: nucleus sampling;
        corrector rounds after the last step (see the pipeline); ``guidance``: autoguidance (a model
        with a guide prior only). Settings not given: the model's.
        ``session``: the browser session, whose :meth:`stop_generation` ends this generation within a
        step (the last item is then the stopped status line, and no run)."""
        pipe, n, s, seed, sampling = self.check_generate(model, num_images, steps, temperature, seed, temperature_end,
                                                         top_p, corrector_steps, corrector_cells, corrector_temperature,
                                                         guidance)
        total_steps = s + sampling.corrector_steps
        previews: queue.Queue = queue.Queue()  # (step index, tiled preview or None, seconds); None: finished
        stop = threading.Event()   # nobody reads the stream any more
        with self._generating_lock:
            asked = self._asked.get(session, time.monotonic())   # (a queued generation: its press)

        def user_stop() -> bool:   # the session pressed Stop after asking for this generation
            return session is not None and self._stopped.get(session, -1.0) > asked

        if user_stop():            # stopped while it waited in the queue
            yield gr.skip(), self._stopped_status(None, 0, 0.0), gr.skip()
            return
        result = {}
        shown = np.repeat(self._blank(model)[None], n, 0)                               # [n, H, W, C]
        shown_tokens = np.full((n, pipe.latent_size, pipe.latent_size), pipe.mask_id)
        due = 0.0                  # when the next preview may be decoded (perf_counter seconds)

        def on_step(state):
            """In the sampler's thread, between two steps, so that previews never compete with the
            sampler for the cores: queues the first step at once, then a decoded preview when due. A
            corrector round re-draws a few cells of finished grids: the last unmasking step's grids are
            shown through the rounds, whose status line moves on and whose grids are not decoded (each
            preview costs the page and the server about as much again as its decoding; the Unmasking
            view shows every round afterwards)."""
            nonlocal due
            if stop.is_set() or user_stop():   # stop within one step
                raise GenerationStopped
            now = time.perf_counter()
            if state.index == 0:       # nothing decoded yet looks like the blank grid
                previews.put((0, media.tile(shown), now - start))
            elif state.index == total_steps - 1:   # the last step: the result follows at once
                return
            elif now < due and state.index != s - 1:   # (the last unmasking step, before rounds: always)
                return
            elif state.index >= s:     # a corrector round: the status line only
                due = now + STATUS_EVERY
                previews.put((state.index, None, now - start))
            else:
                changed = np.nonzero((state.tokens != shown_tokens).reshape(n, -1).any(1))[0]   # images that moved
                if len(changed):
                    shown[changed] = pipe.decode_uint8(state.tokens[changed], allow_mask=True)
                    shown_tokens[changed] = state.tokens[changed]
                tile = media.tile(shown)
                done = time.perf_counter()
                due = done + max(0.25, PREVIEW_EVERY * (done - now))
                previews.put((state.index, tile, done - start))

        def work():
            try:
                result["out"] = pipe(n, s, seed=seed, trace=True, callback=on_step, sampler=sampling)
            except GenerationStopped:
                pass
            except Exception as e:  # reported below
                result["error"] = e
            finally:
                with self._generating_lock:
                    self.generating -= 1
                previews.put(None)

        start = time.perf_counter()
        with self._generating_lock:
            self.generating += 1
        threading.Thread(target=work, daemon=True, name="sd-generate").start()
        pictured = 0               # the step whose preview the grid shows
        try:  # a closed or abandoned stream (GeneratorExit here) sets ``stop`` in ``finally``
            for index, tile, seconds in _newest(previews):
                pictured = pictured if tile is None else index
                yield (gr.skip() if tile is None else tile), self._status(index + 1, total_steps, seconds, steps=s), gr.skip()
            if "error" in result:
                raise result["error"]
            if "out" not in result and user_stop():   # stopped: the grid keeps its last preview
                yield gr.skip(), self._stopped_status(pictured + 1, total_steps, time.perf_counter() - start), gr.skip()
                return
            out = result["out"]
            run = self.runs.add(Run(model, out.images, out.tokens, out.trace, time.perf_counter() - start, seed=seed,
                                    asked_at=asked, guidance=sampling.guidance))
            self._note_session(self._made, session, asked)
            yield media.tile(out.images), self._done_status(run), run
        finally:
            stop.set()

    def _note_session(self, table: OrderedDict, session: str | None, value=None) -> None:
        """``table[session]`` = ``value`` (default: now), the table capped at the latest :data:`SESSIONS`."""
        if session:
            with self._generating_lock:
                table.pop(session, None)
                table[session] = time.monotonic() if value is None else value
                while len(table) > SESSIONS:
                    table.popitem(last=False)

    def generation_asked(self, session: str | None) -> None:
        """Browser ``session`` pressed Generate (its settings passed): a Stop from now on ends it."""
        self._note_session(self._asked, session)

    def run_superseded(self, session: str | None, run) -> bool:
        """Whether a note about ``run`` (whose samples the views show) is stale for browser ``session``:
        a generation of that session made a newer run since. A note after a model switch can take
        seconds (the new model loads), and a generation can end meanwhile; the note must not then
        overwrite what that generation showed. (A generation still running overwrites the note itself
        with its next status line.)"""
        with self._generating_lock:
            made = self._made.get(session) if session else None
        return made is not None and made != getattr(run, "asked_at", None)

    def stop_generation(self, session: str | None) -> None:
        """Browser ``session`` pressed Stop: its generations asked for before now end within a step,
        a running one with the stopped status line, one still waiting in the queue before it starts."""
        self._note_session(self._stopped, session)

    STOPPED = 'data-state="stopped"'   # the status line of a stopped generation carries this

    @staticmethod
    def _stopped_status(step: int | None, total: int, seconds: float) -> str:
        """The status line of a generation stopped at ``step`` (1-based, of ``total``; None: before it began)."""
        if step is None:
            what = "Stopped before it began: nothing was generated"
        else:
            what = (f"Stopped after {seconds:.1f} s: the grid shows the preview of step {step} of {total}, "
                    "not finished samples")
        return (f'<div id="gen-progress" {Studio.STOPPED}><span>{what}; the other views keep the last finished '
                "samples, if any. Press <b>Generate</b> to start again.</span></div>")

    def _blank(self, model) -> np.ndarray:
        """The decoded all-masked grid ``[H, W, C]`` uint8 (what every preview starts from), cached."""
        key = ("blank", model)
        if key not in self._cache:
            pipe = self.pipe(model)
            L = pipe.latent_size
            self._cache[key] = pipe.decode_uint8(np.full((1, L, L), pipe.mask_id), allow_mask=True)[0]
        return self._cache[key]

    @staticmethod
    def _status(step: int, total: int, seconds: float, done_images: int | None = None, steps: int | None = None,
                model: str | None = None, seed: int | None = None) -> str:
        """The status line: the phase of ``step`` (1-based, of ``total`` = ``steps`` unmasking steps +
        corrector rounds; with rounds also ``step/total``, as its bar counts) while running, what was made
        (by ``model``, from ``seed``) when done."""
        rounds = "" if steps in (None, total) else f" + {plots.count(total - steps, 'corrector round')}"
        kinds = ["unmask"] * (steps or total) + ["correct"] * (total - (steps or total))
        by = (f" (model <b>{html.escape(model)}</b>" + (f", seed {seed}" if seed is not None else "") + ")") if model else ""
        text = (f"done: {plots.count(done_images, 'image')}, {plots.count(steps or total, 'step')}{rounds} in "
                f"{seconds:.2f} s{by}" if done_images
                else f"{frames.step_label(kinds, step)}{f' ({step}/{total} in all)' if rounds else ''} &middot; {seconds:.2f} s")
        state = "done" if done_images else "running"
        return (f'<div id="gen-progress" data-state="{state}" data-step="{step}" data-total="{total}" '
                f'data-seconds="{seconds:.3f}"><progress value="{step}" max="{total}" style="width:100%"></progress>'
                f"<span>{text}</span></div>")

    def _done_status(self, run: Run) -> str:
        """The status line of a finished generation: what was made, by which model from which seed, how fast."""
        n_unmask, _ = frames.phases(run.trace.kinds)
        return self._status(run.num_frames, run.num_frames, run.seconds, run.num_images, n_unmask, run.model, run.seed)

    def generation_failed(self, run) -> str:
        """The status line after a generation that raised (its message is shown beside it)."""
        kept = (f"the last finished samples ({html.escape(run.model)}'s) are still in <b>Unmasking</b>"
                if self.has_run(run) else "no finished samples are kept")
        return (f'<div id="gen-progress" data-state="failed"><span>The generation failed (the message in the corner says why); '
                f"{kept}.</span></div>")

    def samples_note(self, model, run, shown: str | None = None, session: str | None = None, cost: bool = True):
        """The status line after a model change: the finished samples shown are which model's (the
        views keep them until the next generation), and, for a model that does over twice the
        default model's denoiser work, that its generation takes longer (said before Generate).
        ``shown``: the status line now; while it shows a generation running, it stays (that run's
        own done line will name its model); so does the line of a generation of ``session`` that made a
        newer run than ``run`` (:meth:`run_superseded`), also while this note was being made.
        ``cost=False``: without the slow model's sentence, which loads the model (seconds; the studio
        says the rest at once, then all of it)."""
        if (model is None or any(s in (shown or "") for s in ('data-state="running"', self.STOPPED))
                or self.run_superseded(session, run)):
            return gr.skip()
        slow = self._slow_note(model) if cost else ""   # (loads the model: seconds the first time)
        if self.run_superseded(session, run):   # a generation ended meanwhile: its line stays
            return gr.skip()
        if not self.has_run(run):     # nothing generated yet: the first hint, and the note (another model's goes)
            return f"<span>{START_HINT}{' ' + slow if slow else ''}</span>"
        if run.model == model:
            return self._done_status(run)
        others = self.others_samples(model, run, "The samples shown (and in Unmasking and Spikes)")
        return f"<span>{others}{' ' + slow if slow else ''}</span>"

    def done_for_another(self, model, run, shown: str):
        """The status line ``shown`` after a generation that ended with another ``model`` chosen (a
        switch while it ran): its done line, and whose samples these are and how to get ``model``'s;
        nothing to change otherwise."""
        if self.STOPPED in (shown or "") or not self.has_run(run) or run.model == model:
            return gr.skip()
        return f"{shown} <span>{self.others_samples(model, run, 'These samples')}</span>"

    def _slow_note(self, model) -> str:
        """The status line's sentence when ``model`` is slow (:meth:`_slowness`); ``""`` otherwise,
        or when it does not load."""
        try:
            slowness = self._slowness(model, self.pipe(model))
        except (InputError, SpikingDiffusionError):
            return ""
        if slowness is None:
            return ""
        return f"A generation with <b>{html.escape(str(model))}</b> {html.escape(slowness)}: {SLOW_ADVICE}."

    def others_samples(self, model, run, subject: str) -> str | None:
        """After a model change: the sentence saying that what a view shows (its ``subject``: "These
        spikes") is another model's, and how to get ``model``'s; None when it is ``model``'s (or there is none)."""
        if not self.has_run(run) or model is None or run.model == model:
            return None
        return (f"{subject} are <b>{html.escape(run.model)}</b>'s; press <b>Generate</b> for "
                f"<b>{html.escape(str(model))}</b>'s.")

    # --- 2. unmasking -----------------------------------------------------------------------
    def _need_run(self, run) -> Run:
        return self.runs.get(run)

    def has_run(self, run) -> bool:
        """Whether ``run`` is a generation the views can still show (not missing, not cleared)."""
        try:
            self.runs.get(run)
        except InputError:
            return False
        return True

    def no_run_note(self, run, shows: str) -> str | None:
        """None when ``run`` is a live generation; else what to do, for a view that ``shows`` that
        (a note in the view rather than an error: opening a view early is no mistake)."""
        try:
            self.runs.get(run)
        except InputError as e:
            return (f"**No samples yet.** Generate images (Generate tab): this view then shows {shows}."
                    if not isinstance(run, Run) else f"**No samples to show:** {e}.")
        return None

    def _frame(self, run: Run, image: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(committed, predicted) ``[H, W, C]`` uint8 of one image at one step (1-based): only what the
        view shows is decoded; the last :data:`FRAME_CACHE` frames of a run are kept."""
        key = (image, step)
        if key not in run.frames:
            st = run.trace.steps[step - 1]
            both = self.pipe(run.model).decode_uint8(np.stack([st.tokens[image], st.pred_sampled[image]]),
                                                     allow_mask=True)
            run.frames[key] = (both[0], both[1])
            while len(run.frames) > FRAME_CACHE:
                run.frames.popitem(last=False)
        run.frames.move_to_end(key)
        return run.frames[key]

    def _cell_note(self, run: Run, image: int, step: int, r: int, c: int) -> str:
        """The selected cell as text: where it is, its code and when it was unmasked / corrected."""
        trace, mask = run.trace, run.trace.mask_id
        code = int(trace.steps[step - 1].tokens[image, r, c])
        history = [i + 1 for i, st in enumerate(trace.steps) if st.unmasked[image, r, c]]
        unmasked = [i for i in history if trace.steps[i - 1].kind == "unmask"]
        corrected = [i for i in history if trace.steps[i - 1].kind == "correct"]
        kinds = trace.kinds
        when = (f"unmasked at {frames.step_label(kinds, unmasked[0])}" if unmasked else "never unmasked")
        if corrected:
            when += (f"; sampled again in {plots.count(len(corrected), 'corrector round')}, at "   # as the step axis counts
                     f"{'step' if len(corrected) == 1 else 'steps'} {', '.join(map(str, corrected))}")
        state = "still **masked**" if code == mask else f"code **{code}**"
        return (f"### row {r}, col {c}\n{state} after step {step}.\n\n{when[0].upper() + when[1:]}. "
                f"Its patch of the image is outlined in blue; the **Spikes** tab shows its spike train.")

    @friendly
    def unmask(self, run, image, step, cell):
        """(token grid image, committed image, predicted image, caption, selected-cell note, step axis
        html) at ``step`` (1-based). Images: uint8; the grid is :func:`frames.token_grid_image` (a click
        at pixel (x, y) picks :meth:`cell_at`), the decoded images have the cell's patch outlined."""
        run, image, step, cell = self.check_unmask(run, image, step, cell)
        trace, L = run.trace, self.pipe(run.model).latent_size
        st = trace.steps[step - 1]
        committed, predicted = self._frame(run, image, step)
        r, c = divmod(cell, L)
        grid = frames.token_grid_image(st.tokens[image], run.trace.mask_id, st.unmasked[image], (r, c),
                                       title=f"Tokens after step {step}/{len(run.trace)}")
        caption = self._caption(run, image, step)
        run.shown = (image, step)
        return (grid, frames.outline_patch(media.show(committed, 8), (r, c), L),
                frames.outline_patch(media.show(predicted, 8), (r, c), L), caption,
                self._cell_note(run, image, step, r, c), frames.step_axis_html(trace.kinds, step))

    def shown_frame(self, run):
        """(image, step) the Unmasking view shows, for its sliders after a refused value (the box may
        show a value Gradio clamped, or the refused one); before any generation, the sliders' first
        values (image 0, the default model's last step); unchanged when the run drew nothing yet or was
        released (the sliders keep its ranges)."""
        if run is None:
            return 0, self.facts().num_steps
        return (gr.skip(), gr.skip()) if not self.has_run(run) or run.shown is None else run.shown

    def unmask_if_any(self, run, image, step, cell):
        """:meth:`unmask`, or nothing changed when there is no live run (its toast was raised already)."""
        return self.unmask(run, image, step, cell) if self.has_run(run) else (gr.skip(),) * 6

    @friendly
    def check_unmask(self, run, image, step, cell) -> tuple[Run, int, int, int]:
        """(run, image, step, cell) checked for :meth:`unmask`, or the message why not."""
        run = self._need_run(run)
        L = self.pipe(run.model).latent_size
        return (run, check_int(image, "Image", 0, run.num_images - 1), check_int(step, "Step", 1, run.num_frames),
                check_int(cell if cell is not None else 0, "Token cell", 0, L * L - 1))

    def _caption(self, run: Run, image: int, step: int) -> str:
        """What happened at ``step`` of image ``image``, naming the phase (unmasking / corrector)."""
        st, total = run.trace.steps[step - 1], len(run.trace)
        n_unmask, n_correct = frames.phases(run.trace.kinds)
        masked = int((st.tokens[image] == run.trace.mask_id).sum())
        N = self.pipe(run.model).num_diffusion_steps           # the training scale of t: t/N of the cells masked
        time = f"diffusion time t = {st.t:.1f} of {N}: the denoiser expects about {st.t / N:.0%} of the cells masked"
        changed = int(st.unmasked[image].sum())
        who = f"Model **{run.model}**, image {image}: "
        if st.kind == "correct":
            ended = run.trace.steps[n_unmask - 1].tokens[image]                   # [h, w] when unmasking ended
            moved = int((st.tokens[image] != ended).sum())
            return (f"{who}Step **{step}/{total}**, corrector round {step - n_unmask}/{n_correct} (after the "
                    f"{plots.count(n_unmask, 'unmasking step')}; {time}): **{plots.count(changed, 'cell')}** re-masked and "
                    f"sampled again given all the others (red). So far the corrector has changed **{moved}** of the "
                    f"{ended.size} cells the unmasking left at step {n_unmask}: compare the two steps to see what it fixed.")
        then = f"; {plots.count(n_correct, 'corrector round')} follow{'s' if n_correct == 1 else ''}" if n_correct else ""
        idle = ""
        if not st.denoised[image]:   # skipped: nothing to unmask in this image
            made = max((i + 1 for i, s in enumerate(run.trace.steps[:step]) if s.denoised[image]), default=None)
            why = "No cell was chosen" if masked + changed else "Every cell was already unmasked"
            idle = f" {why}, so the denoiser did not run for this image" + (
                f": the prediction is the one of step {made}." if made else ".")
        # the paper's order: each cell still masked is chosen with probability 1/(steps left), so the share
        # masked follows t/N only on average (a single image's count wanders around it)
        left = n_unmask - step + 1
        return (f"{who}Step **{step}/{total}**, unmasking step {step}/{n_unmask}{then} ({time}; this image's input "
                f"had {masked + changed} of {st.tokens[image].size}): **{plots.count(changed, 'cell')}** unmasked at this "
                f"step (red; each masked cell is chosen with probability 1/{left}), **{masked}** still masked "
                f"(grey).{idle}")

    @friendly
    def cell_at(self, run, x, y) -> int | None:
        """The token cell (``row * latent + col``) under pixel (x, y) of the Unmasking grid image
        (None: outside the cells)."""
        run = self._need_run(run)
        return frames.cell_at(float(x), float(y), self.pipe(run.model).latent_size)

    @friendly
    def image_at(self, run, x, y, grid=None) -> int | None:
        """The generated image under pixel (x, y) of the Generate tab's sample grid ``[H, W, 3]``
        (None: a gap, or a grid that is not ``run``'s: a preview of a generation still running, or
        left by one that failed)."""
        run = self._need_run(run)
        if grid is not None and not np.array_equal(np.asarray(grid), media.tile(run.images)):
            return None
        _, h, w, _ = run.images.shape
        return media.tile_index(float(x), float(y), run.num_images, h, w)

    @staticmethod
    def gallery(run) -> list:
        """The run's images for the Unmasking view's picker: ``[(image [H*3, W*3(, C)], 'image i')]``."""
        if not isinstance(run, Run) or run.released:
            return []
        return [(media.show(im, 3), f"image {i}") for i, im in enumerate(run.images)]

    @friendly
    def animation(self, run, image) -> str:
        """The whole run of image ``image`` as a looping GIF (path) at :data:`frames.ANIMATION_FPS`
        frames per second (:meth:`_animation_frames`)."""
        run = self._need_run(run)
        image = check_int(image, "Image", 0, run.num_images - 1)
        done = run.animations.get(image)
        if done:
            try:
                return self._replay_copy(Path(done))            # played before: the same GIF, not made again
            except FileNotFoundError:                            # its export folder was rotated away: made again
                pass
        made = frames.write_gif(self._animation_frames(run, image), self._export_folder() / "unmasking-play.gif")
        run.animations[image] = str(made)
        return str(self._replay_copy(made))                      # (its folder is rotated like the exports')

    @staticmethod
    def _replay_copy(gif: Path) -> Path:
        """A copy of ``gif`` under a name of its own, beside it (the last such copy removed): a browser
        shown the same address again carries on its earlier playing of it, while Play's script times
        the frames from the load (the Step slider follows them). Raises FileNotFoundError when ``gif``
        is gone. Writing into its folder also keeps the folder from being rotated away first."""
        for old in gif.parent.glob("unmasking-play-*.gif"):     # Gradio serves its own copy of each
            old.unlink(missing_ok=True)
        return Path(shutil.copyfile(gif, gif.parent / f"unmasking-play-{uuid.uuid4().hex[:8]}.gif"))

    @friendly
    def check_export(self, run, image) -> tuple[Run, int]:
        """(run, image) checked for :meth:`export`, or the message why not."""
        run = self._need_run(run)
        return run, check_int(image, "Image", 0, run.num_images - 1)

    @friendly
    def export(self, run, image):
        """(GIF path, MP4 path) of one image's whole run, the frames Play shows, named after the model,
        seed and image (a download, or a link still shown under a later run, says which run it is). The
        studio keeps the last :data:`MAX_EXPORTS` export folders (Gradio serves copies from its own cache)."""
        run, image = self.check_export(run, image)
        pics, folder = self._animation_frames(run, image), self._export_folder()
        name = f"unmasking-{run.label(image, '-', '')}"
        gif, played = folder / f"{name}.gif", run.animations.get(image)
        if played and Path(played).is_file():
            shutil.copyfile(played, gif)                         # Play's GIF of these frames: encoded once
        else:
            frames.write_gif(pics, gif)                          # Play's own writer and timing
        mp4 = media.write_mp4(pics, folder / f"{name}.mp4", frames.ANIMATION_FPS, frames.HOLD_S)
        return str(gif), str(mp4)

    def _animation_frames(self, run: Run, image: int) -> list[np.ndarray]:
        """Per step of image ``image``: the token grid, the committed and the predicted image, the step
        axis with its unmasking and corrector phases, and a caption naming the phase and the run
        (model, seed, image) (RGB frames)."""
        committed, predicted = self._whole(run, image)                               # [S, H, W, C] each
        kinds = run.trace.kinds
        pics = []
        for i, st in enumerate(run.trace.steps):
            grid = frames.token_grid_image(st.tokens[image], run.trace.mask_id, st.unmasked[image],
                                           title=f"Tokens after step {i + 1}/{len(kinds)}")
            changed = int(st.unmasked[image].sum())
            what = "re-masked and sampled again" if st.kind == "correct" else "unmasked"
            idle = "" if st.denoised[image] else " (no denoiser call)"
            caption = f"{frames.step_label(kinds, i + 1)}: {plots.count(changed, 'cell')} {what}{idle}"
            pics.append(frames.animation_frame(grid, media.show(committed[i], 8), media.show(predicted[i], 8),
                                               kinds, i + 1, caption, credit=run.label(image)))
        return pics

    def _whole(self, run: Run, image: int) -> tuple[np.ndarray, np.ndarray]:
        """(committed, predicted) ``[S, H, W, C]`` uint8 of every step of one image, decoded once for
        Play and Export together (only the last image asked for is kept)."""
        if run.whole is None or run.whole[0] != image:
            run.whole = (image, *self.pipe(run.model).decode_trace(run.trace, image))
        return run.whole[1], run.whole[2]

    def _export_folder(self) -> Path:
        with self._exports_lock:
            folders = sorted(self.export_root.iterdir(), key=lambda p: p.stat().st_mtime)
            for old in folders[: max(0, len(folders) - MAX_EXPORTS + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            folder = self.export_root / uuid.uuid4().hex[:12]
            folder.mkdir()
        return folder

    # --- 3. spikes --------------------------------------------------------------------------
    def spikes_on_open(self, run, image, cell):
        """:meth:`spikes` for the tab opening by itself: with no live run it shows what to do (no error)."""
        note = self.no_run_note(run, "the spike trains behind the sample and token cell you pick (also from "
                                     "the Unmasking tab)")
        return (None,) * 6 + (note,) if note else self.spikes(run, image, cell)

    SPIKES_OTHERS = "These spikes"          # the subject of the Spikes note's line on another model's samples
    ENERGY_OTHERS = "These figures"         # ... and of the Energy note's

    def whose_note(self, model, run, note, subject: str):
        """A view's ``note`` with the line saying that what it shows (``subject``: "These spikes") is
        not the selected ``model``'s (and how to get that model's) when it is not, without it when it
        is; nothing to change with no note."""
        if not note or not self.has_run(run):
            return gr.skip()
        base = note.split(f"\n\n{subject} are ")[0]
        other = self.others_samples(model, run, subject)
        return f"{base}\n\n{other}" if other else base

    def whose_spikes(self, model, run, note):
        """:meth:`whose_note` for the Spikes note."""
        return self.whose_note(model, run, note, self.SPIKES_OTHERS)

    @friendly
    def check_spikes(self, run, image, cell) -> tuple[Run, int, int]:
        """(run, image, cell) checked for :meth:`spikes`, or the message why not."""
        run = self._need_run(run)
        L = self.pipe(run.model).latent_size
        return run, check_int(image, "Image", 0, run.num_images - 1), check_int(cell, "Token cell", 0, L * L - 1)

    @friendly
    def spikes(self, run, image, cell):
        run, image, cell = self.check_spikes(run, image, cell)
        pipe = self.pipe(run.model)
        L = pipe.latent_size
        r, c = divmod(cell, L)
        rep = pipe.spikes(tokens=run.tokens[image:image + 1], membrane=True)
        enc = pipe.spikes(images=to_float(run.images[image:image + 1]))
        T, _, D, h, w = rep.asg.shape
        asg = rep.asg[:, 0]                                                      # [T, D, h, w]
        cell_fig = plots.raster(asg[:, :, r, c], f"ASG spike trains at row {r}, col {c}", "channel")
        labels = [f"row {p // w}, col {p % w}, ch {d}" for p in range(h * w) for d in range(D)]
        all_fig = plots.raster(asg.transpose(0, 2, 3, 1).reshape(T, -1), f"All {h * w}x{D} ASG neurons",
                               NEURON_AXIS, labels, height=420)
        enc_fig = plots.raster(enc.encoder[:, 0, :, r, c], f"Encoder spikes at row {r}, col {c} (image re-encoded)", "channel")
        layers = {k: v for k, v in enc.spikes.items() if k.startswith("encoder")} | rep.spikes
        layers = {plots.layer_label(k): v for k, v in layers.items()}                   # named once for both plots
        maps = plots.rate_maps({k: v.mean(axis=(0, 1, 2)) for k, v in layers.items()})
        rates = plots.bars({k: float(v.mean()) for k, v in layers.items()}, "Mean firing rate per layer", "rate")
        key = next(k for k in rep.membrane if k.startswith("asg"))
        mem = plots.membrane_traces(rep.membrane[key][:, 0, :, r, c], LIF_THRESHOLD, asg[:, :, r, c],
                                    f"ASG membrane potential at row {r}, col {c}")
        note = (f"Model **{run.model}**, image {image}, token cell row {r}, col {c} (code {int(run.tokens[image, r, c])}). "
                f"T = {T} time steps, {D} channels per cell.")
        return cell_fig, all_fig, enc_fig, maps, rates, mem, note

    # --- 4. codebook ------------------------------------------------------------------------
    def _test_usage(self, model):
        """(label, per-position counts ``[h*w, K]``) of the model's test split, or None: the usage that
        ``evaluate --record`` saved beside the checkpoint, else up to 1,000 test images from ``--data``."""
        key = ("test", model)
        if key not in self._cache:
            pipe = self.pipe(model)
            self._cache[key] = self._recorded_usage(pipe) or self._data_usage(pipe, model)
        return self._cache[key]

    @staticmethod
    def _recorded_usage(pipe):
        try:
            saved = pipe.test_code_usage()
        except SpikingDiffusionError:
            return None
        if not isinstance(saved, dict):
            return None
        per_pos = np.asarray(saved.get("per_position", []))
        if per_pos.shape != (pipe.latent_size ** 2, pipe.codebook_size) or per_pos.dtype.kind not in "iu":
            return None  # not this model's grid / codebook
        return f"test set ({saved.get('images', '?')} images, recorded by evaluate)", per_pos

    def _data_usage(self, pipe, model):
        if not self.data_dir:
            return None
        name = str(pipe.info.get("dataset", model))
        try:
            imgs = load_images(name, self.data_dir, train=False, download=False, limit=1000).images
            # to_float of 250 images is a parallel op: in the job, on the compute thread (compute.py)
            toks = np.concatenate([compute.run(lambda i=i: pipe.encode(to_float(imgs[i:i + 250], channels_last=False)))
                                   .numpy() for i in range(0, len(imgs), 250)])
        except (DataError, SpikingDiffusionError):
            return None
        return f"test set ({len(toks)} images)", M.code_counts(toks, pipe.codebook_size)

    def _stand_in_count(self, model) -> int:
        """How many images the Codebook generates for want of the user's: STAND_IN_IMAGES for a model
        as fast as the default, fewer for a slower one (in proportion to its work, at least
        MIN_STAND_IN), so that a slow model's first Codebook view takes not much longer than the
        default's (mnist-paper, about 27x the default's work per image with each one's own sampler, gets
        the floor of 16 images: about 7x the default's time)."""
        ratio = self._work_ratio(model, self.pipe(model))
        return max(MIN_STAND_IN, min(STAND_IN_IMAGES, round(STAND_IN_IMAGES / ratio)))

    def _sample_usage(self, model) -> tuple[int, np.ndarray]:
        """(images, code counts ``[h*w, K]``) of :meth:`_stand_in_count` images generated with the
        model's own settings, seed 0 (cached)."""
        key = ("generated", model)
        if key not in self._cache:
            pipe, n = self.pipe(model), self._stand_in_count(model)
            self._cache[key] = n, M.code_counts(pipe(n, seed=0).tokens, pipe.codebook_size)
        return self._cache[key]

    def _atlas(self, model):
        key = ("atlas", model)
        if key not in self._cache:
            pipe = self.pipe(model)
            K = pipe.codebook_size
            L = pipe.latent_size
            toks = np.broadcast_to(np.arange(K)[:, None, None], (K, L, L)).copy()
            imgs = pipe.decode_uint8(toks)
            self._cache[key] = imgs
        return self._cache[key]

    CODEBOOK_EMPTY = "Press **Compute usage** for this model's code usage."   # the view after a model change
    CODEBOOK_COMPUTING = ("**Computing the code usage...** A model's first time takes seconds, up to about a minute "
                          "for a slow one: every code is decoded and, without a generation of yours, sample images "
                          "are made.")

    @friendly
    def codebook(self, model, run, code=None):
        """(usage bars, per-position heatmaps, stats markdown, atlas image, usage state, code slider). The
        slider keeps ``code`` when some source uses it, else moves to the most used code whose decoded
        grid is not flat (a dead code, or the background's code, decodes to nothing to look at)."""
        pipe = self.pipe(model)
        K = pipe.codebook_size
        test = self._test_usage(model)
        usage = dict([test] if test else [])                                  # label -> counts [h*w, K]
        stand_in = 0                                                          # images generated for want of the user's
        if isinstance(run, Run) and run.model == model and not run.released:
            usage[f"generated ({plots.count(len(run.tokens), 'image')})"] = M.code_counts(run.tokens, K)
        elif pipe.denoiser is not None:
            stand_in, generated = self._sample_usage(model)                   # how many images, [h*w, K]
            usage[f"generated ({stand_in} images, seed 0)"] = generated
        counts = {k: v.sum(0) for k, v in usage.items()}
        stats = [f"Code usage of **{html.escape(model)}**'s codebook (K = {K}):\n",
                 "| source | codes used | dead codes | perplexity |", "|---|---|---|---|"]
        dead = []                                                             # per source, in the table's order
        for name, c in counts.items():
            s = M.usage_stats(c)
            dead.append(s["dead_codes"])
            stats.append(f"| {name} | {K - s['dead_codes']}/{K} | {s['dead_codes']} | {s['perplexity']:.1f} |")
        stats.append("\nA code no image of a source uses counts as dead there.")
        if test is not None and len(dead) > 1:                                # the test set's row first, then generated
            test_dead, gen_dead = dead[:2]
            if gen_dead > test_dead:   # what the table shows, said only when it shows it
                stats[-1] += (f" The generated images leave {gen_dead - test_dead} more codes unused than the test set: "
                              "fewer images meet fewer of the rare codes, and the prior may avoid some.")
        if stand_in:
            slower = " (fewer for a slower model)" if stand_in < STAND_IN_IMAGES else ""
            stats.append(f"\nWith no generation of yours on this model, {stand_in} images{slower} were generated once "
                         "with its own settings (seed 0) to compare with; generate in the Generate tab to see your own.")
        if test is None:
            stats.append("\nTest-set usage is not available: record it with `python -m spiking_diffusion "
                         "evaluate --checkpoint DIR --out OUT --record` (writes `code_usage.json` beside the "
                         "checkpoint), or start the studio with `--data DIR` (torchvision layout, e.g. "
                         "`DIR/MNIST/raw/t10k-images-idx3-ubyte`).")
        tiles = self._atlas(model)                                                # [K, H, W, C] uint8
        atlas = frames.code_atlas_image(tiles, cols=ATLAS_COLS)
        total = sum(counts.values()) if counts else np.zeros(K)                  # [K] uses over all sources
        keep = code is not None and 0 <= int(code) < K and total[int(code)] > 0
        tiles = tiles.reshape(K, -1)                                              # [K, H*W*C]
        drawn = np.where(np.ptp(tiles, axis=1) > 32, total, -1)                   # flat tiles (background) last
        shown = int(code) if keep else int(np.argmax(drawn if drawn.max() > 0 else total))
        return (plots.usage_bars(counts), plots.usage_heatmaps(usage), "\n".join(stats), atlas, usage,
                slider_range(shown, 0, K - 1))

    def code_at(self, model, x, y) -> int | None:
        """The code under pixel (x, y) of the Codebook's atlas (:meth:`codebook`: ATLAS_COLS codes a row at
        frames.ATLAS_SCALE x, numbered); None on a gap or a number."""
        tiles = self._atlas(model)                                               # [K, H, W, C]
        K, h, w, _ = tiles.shape
        return frames.code_at(float(x), float(y), K, h, w, cols=ATLAS_COLS)

    @friendly
    def check_code(self, model, code) -> int:
        """``code`` as a whole number in the model's codebook, or the message why not."""
        return check_int(code, "code", 0, self.pipe(model).codebook_size - 1)

    @friendly
    def code(self, model, usage, code):
        pipe = self.pipe(model)
        code = self.check_code(model, code)
        img = media.show(self._atlas(model)[code], 8)
        L = pipe.latent_size
        shares = {k: (v[:, code] / np.maximum(v.sum(1), 1)).reshape(L, L) for k, v in (usage or {}).items()}  # [L, L]
        return img, plots.where_used(shares, code)

    # --- 5. encode --------------------------------------------------------------------------
    def _prepared(self, model, image, invert):
        """(pipeline, model input ``[1, C, H, W]`` in [0, 1], note) for :meth:`encode`, or the message
        saying what is wrong with the picture or the settings."""
        pipe = self.pipe(model)
        if invert not in ("auto", "yes", "no"):
            raise InputError(f"Invert colours must be 'auto', 'yes' or 'no'; got {invert!r}")
        drawn = isinstance(image, dict)
        if drawn:  # a sketchpad / image editor value
            image = image.get("composite")
        # the studio checks a picture, then encodes it: a file (Gradio's uploads never change) is read once
        key = (model, image, invert) if isinstance(image, str) else None
        last_key, last = self._last_prepared
        if key is None or key != last_key:
            try:
                last = pipe.prepare_image(image, invert=invert)
            except SpikingDiffusionError as e:   # named like an upload Gradio could not read (demo.guards)
                box = "Draw" if drawn else "Upload"
                what = ("your drawing" if drawn else f"the uploaded image {Path(image).name}"
                        if isinstance(image, (str, Path)) else "the picture")
                raise InputError(f"{box}: could not use {what}: {e}") from None
            self._last_prepared = (key, last)
        x, note = last
        return pipe, x.copy(), note

    @friendly
    def check_encode(self, model, image, invert="auto") -> None:
        """Nothing, or the message :meth:`encode` would give about the picture or the settings (the
        picture is read as it reads it): the studio checks before it encodes."""
        self._prepared(model, image, invert)

    @friendly
    def encode(self, model, image, invert="auto"):
        """Any picture (file path, PIL image, array, a sketchpad's dict) -> the views of its encoding.
        The picture is read by the pipeline's :meth:`prepare_image` (every file kind, the data
        set's framing); ``invert``: 'auto', 'yes' or 'no'."""
        pipe, x, note = self._prepared(model, image, invert)
        source = ("your drawing" if isinstance(image, dict) else             # a file's name, as code: no Markdown in it
                  f"`{html.escape(Path(image).name).replace('`', '')}`" if isinstance(image, (str, Path)) else "the picture")
        rep = pipe.spikes(images=x)
        tokens = rep.tokens[0]
        recon = pipe.decode_uint8(rep.tokens)[0]
        shown = to_uint8(x)[0]
        T, _, D, h, w = rep.encoder.shape
        enc = plots.raster(rep.encoder[:, 0].transpose(0, 2, 3, 1).reshape(T, -1), "Encoder output spikes (all neurons)",
                           NEURON_AXIS, height=380)
        asg = plots.raster(rep.asg[:, 0].transpose(0, 2, 3, 1).reshape(T, -1), "ASG spikes for its tokens",
                           NEURON_AXIS, height=380)
        return (media.show(shown, 8), plots.token_grid(tokens, pipe.mask_id, title=f"Its {h}x{w} tokens"),
                media.show(recon, 8), enc, asg,
                f"Input ({source}, model {html.escape(model)}): {note}. Tokens: {plots.count(len(np.unique(tokens)), 'distinct code')}.")

    # --- 6. learn: the teaching handlers are demo/learn.py's; the energy of the session's run ---------------
    @friendly
    def energy(self, run):
        """(markdown, bar figure): the energy account of the run, as ``evaluate`` reports it
        (:func:`spiking_diffusion.evaluation.energy.generation_energy`), with the denoiser calls
        counted in the run's trace and firing rates at 7 of its steps on up to 16 of its images. With
        no live generation: a note saying what to do, and no figure."""
        note = self.no_run_note(run, "the energy estimate of your last generation")
        if note:
            return note, None
        run = self._need_run(run)
        pipe = self.pipe(run.model)
        S, rounds = frames.phases(run.trace.kinds)
        n = run.num_images
        cells = int(run.trace.steps[S].unmasked[0].sum()) if rounds else None    # re-masked per corrector round
        e = generation_energy(pipe, run.tokens, S, corrector_steps=rounds, max_images=16, points=7, trace=run.trace,
                              corrector_cells=cells, guidance=run.guidance)
        p, den, dec, corr = e["per_image"], e["denoiser_per_call"], e["decode_per_image"], e.get("denoiser_per_corrector_call")
        ann_uj, snn_uj = n * p["ann_energy_pj"] / 1e6, n * p["snn_energy_pj"] / 1e6
        calls = e["denoiser_calls_per_image"] * n
        what = plots.count(S, "step") + (f" + {plots.count(rounds, 'corrector round')}" if rounds else "")
        rates = _rates(e["firing_rates"]["denoiser_sampling"]) + (
            f" (unmasking steps); {_rates(e['firing_rates']['denoiser_corrector'])} (corrector rounds)" if rounds else "")
        md = (f"Model **{html.escape(run.model)}**, seed {run.seed}: **{plots.count(n, 'image')}, {what}** -> "
              f"{plots.count(round(calls), 'denoiser call')} on the fast path "
              f"(an image skips steps that unmask nothing{f'; {n * rounds} of them in corrector rounds' if rounds else ''}), "
              f"then one decoding per image.\n\n| | ANN | SNN |\n|---|---|---|\n"
              + _cost_row(f"one denoiser call, an unmasking step (T = {pipe.denoiser.cfg.time_steps})", den)
              + (_cost_row(f"one denoiser call, a corrector round ({plots.count(cells, 'cell')} masked)", corr) if rounds else "")
              + (_cost_row(f"its guide prior, at every call (autoguidance, T = {pipe.guide.cfg.time_steps})",
                           e["guide_per_call"]) if "guide_per_call" in e else "")
              + _cost_row(f"one decoding (T = {pipe.vqsvae.cfg.time_steps})", dec, digits=2) +
              f"| whole generation | **{_energy(ann_uj)}** | **{_energy(snn_uj)}** |\n\n"
              f"ANN: the same network without spikes, every connection a multiply-add (MAC, {E_MAC_PJ} pJ) once "
              f"per call. SNN: the input layers' MACs once, then an addition (AC, {E_AC_PJ} pJ) per spike per "
              f"outgoing connection at each of the T time steps.\n\n"
              f"Mean denoiser firing rates: {rates}. "
              f"Estimated saving: **{ann_uj / snn_uj:.1f}x** (a textbook estimate, the same account as `evaluate`'s "
              f"report, which lists its assumptions; memory access is not counted).")
        per, unit, _ = _energy_unit(max(ann_uj, snn_uj))   # the chart in the table's unit
        return md, plots.bars({"ANN": ann_uj / per, "SNN": snn_uj / per}, f"Energy of this generation ({unit})", unit)
