"""The fast inference path (spiking_diffusion.fast) against the plain reference, and thread safety.

Models are random but made to fire (``randomize_batchnorm``: random BN affine parameters, running
statistics calibrated on one batch), at the tiny preset and at the paper's sizes.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron, surrogate

from spiking_diffusion import SpikingDiffusionPipeline
from spiking_diffusion.fast import FastDenoiser, lif_constant, lif_sequence, reference_decode, reference_logits
from spiking_diffusion.spiking import record_spikes

from model_helpers import firing_rates, random_batch, random_models

torch.set_num_threads(1)


_MODELS: dict = {}


def models(preset="tiny", input_mode="index"):
    key = (preset, input_mode)
    if key not in _MODELS:
        _MODELS[key] = random_models(preset, input_mode=input_mode, calibration_batch=32 if preset == "tiny" else 6)
    return _MODELS[key]


# --- the neuron --------------------------------------------------------------------------------
def test_lif_loop_is_spikingjellys_lif():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 5, 7, 7, generator=g) + 0.8
    x[:, 0, 0] = 1.0 + torch.randn(16, 7, 7, generator=g) * 1e-7      # right at the threshold
    node = neuron.LIFNode(surrogate_function=surrogate.ATan(), step_mode="m")
    with torch.inference_mode():
        ref = node(x)
        assert torch.equal(lif_sequence(x), ref)
        node.reset()
        c = x[0]
        assert torch.equal(lif_constant(c, 16), node(c.expand(16, *c.shape)))
    assert 0.05 < float(ref.mean()) < 0.95


# --- the denoiser ------------------------------------------------------------------------------
@pytest.mark.parametrize("preset,input_mode", [("tiny", "index"), ("tiny", "embedding"), ("paper", "index")])
def test_fast_denoiser_same_spikes_as_reference(preset, input_mode):
    _, den = models(preset, input_mode)
    fast = FastDenoiser(den)
    for B, seed in [(1, 1), (3, 2)]:
        tokens, t = random_batch(den.cfg.codebook_size, B, seed)
        with record_spikes(den) as rec:
            ref = reference_logits(den, tokens, t)
        spikes = {}
        out = fast(tokens, t, record=spikes)
        assert list(rec.spikes) == ["lif1", "conv2.2", "conv3.2", "conv4.2", "conv5.2"]
        for (name, s_ref), s in zip(rec.spikes.items(), spikes.values()):
            assert torch.equal(s_ref, s), name
            assert 0.01 < float(s.mean()) < 0.6, (name, float(s.mean()))   # the model does fire
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(den(tokens, t), ref, atol=1e-4, rtol=0)   # the training forward


def test_fast_denoiser_is_batch_invariant():
    _, den = models("tiny", "embedding")
    fast = FastDenoiser(den)
    tokens, t = random_batch(den.cfg.codebook_size, 5, 3)
    t[:] = 17.0
    whole = fast(tokens, t)
    for rows in ([0], [1, 3], [4, 2, 0]):
        assert torch.equal(fast(tokens[rows], t[rows]), whole[rows])


@pytest.mark.parametrize("input_mode", ["embedding", "index"])
def test_identical_rows_run_once(monkeypatch, input_mode):
    """The all-masked first step gives every image the same input: one row is computed, exactly."""
    _, den = models("tiny", input_mode)
    fast = FastDenoiser(den)
    K, L = den.cfg.codebook_size, den.cfg.latent_size
    tokens, t = torch.full((6, L, L), K), torch.full((6,), 49.0)
    whole = fast(tokens, t, record={})                  # recording spikes: the whole batch, no short cut
    batches = []
    real = fast._conv_bn
    monkeypatch.setattr(fast, "_conv_bn", lambda i, x: batches.append(len(x)) or real(i, x))
    out = fast(tokens, t)
    assert torch.equal(out, whole)
    assert batches[0] == 1                              # conv1 saw one row, not six
    batches.clear()
    tokens[3, 0, 0] = 0                                 # one row differs: the whole batch is computed
    fast(tokens, t)
    assert batches[0] == 6


def test_fast_denoiser_keeps_no_graph_and_needs_eval():
    _, den = models()
    tokens, t = random_batch(den.cfg.codebook_size, 2, 0)
    out = FastDenoiser(den)(tokens, t)
    assert not out.requires_grad
    den.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            FastDenoiser(den)(tokens, t)
        with pytest.raises(ValueError, match="eval"):
            reference_logits(den, tokens, t)
    finally:
        den.eval()


def test_firing_rates_report():
    _, den = models()
    rates = firing_rates(den, *random_batch(den.cfg.codebook_size, 4, 0))
    assert list(rates) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert all(0 < r["rate"] < 1 and 0 <= r["zero_frames"] <= 1 for r in rates.values())


# --- decoding ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_reference_decode_matches_model(preset):
    vq, _ = models(preset)
    tokens = torch.randint(0, vq.cfg.codebook_size, (3, 7, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(vq.decode(tokens), reference_decode(vq, tokens), atol=1e-5, rtol=0)
        masked = tokens.clone()
        masked[:, :3] = vq.cfg.codebook_size
        torch.testing.assert_close(vq.decode(masked, vq.cfg.codebook_size),
                                   reference_decode(vq, masked, vq.cfg.codebook_size), atol=1e-5, rtol=0)


# --- sampling through the pipeline --------------------------------------------------------------
def pipeline(preset="tiny", input_mode="index"):
    vq, den = models(preset, input_mode)
    return SpikingDiffusionPipeline(vq, den)


@pytest.mark.parametrize("input_mode", ["index", "embedding"])
@pytest.mark.parametrize("order", ["random", "confidence"])
@pytest.mark.parametrize("n", [1, 5])
def test_fast_sampling_equals_reference(input_mode, order, n):
    pipe = pipeline("tiny", input_mode)
    for seed in (0, 1):
        fast = pipe(n, 49, 0.8, seed, order=order, fast=True)
        ref = pipe(n, 49, 0.8, seed, order=order, fast=False)
        assert np.array_equal(fast.tokens, ref.tokens)
        # the images agree within 1e-5 (below); rounded to uint8, a value that close to a rounding
        # boundary may land one level apart (seen on an AVX-512 CPU: 1 pixel of 784, 5e-7 apart)
        assert np.abs(fast.images.astype(int) - ref.images.astype(int)).max() <= 1
        tokens = torch.as_tensor(fast.tokens)
        torch.testing.assert_close(pipe.decode(tokens), reference_decode(pipe.vqsvae, tokens), atol=1e-5, rtol=0)


def test_fast_sampling_equals_reference_paper_size():
    pipe = pipeline("paper")
    fast = pipe(2, 4, 0.65, 7, fast=True)
    ref = pipe(2, 4, 0.65, 7, fast=False)
    assert np.array_equal(fast.tokens, ref.tokens)
    assert np.array_equal(fast.images, ref.images)


def test_skipping_really_skips():
    pipe = pipeline()
    calls = {"fast": 0, "ref": 0}
    real_fast, real_ref = pipe._denoise, pipe._denoise_reference

    def spy(kind, real):
        def f(tokens, t):
            calls[kind] += len(tokens)
            return real(tokens, t)
        return f

    pipe._denoise, pipe._denoise_reference = spy("fast", real_fast), spy("ref", real_ref)
    pipe(1, 49, 1.0, 0, fast=True)
    pipe(1, 49, 1.0, 0, fast=False)
    assert calls["ref"] == 49 and 10 < calls["fast"] < 45


# --- threads -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False])
def test_concurrent_generations_equal_sequential(fast, compute_mode):
    """8 threads with different seeds at once give exactly what the same seeds give one by one."""
    pipe = pipeline("tiny", "embedding")
    seeds = list(range(100, 108))
    one_by_one = {s: pipe(3, 20, 0.9, s, fast=fast) for s in seeds}
    results, errors = {}, []
    barrier = threading.Barrier(len(seeds))

    def work(seed):
        try:
            barrier.wait()
            results[seed] = pipe(3, 20, 0.9, seed, fast=fast)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors and len(results) == len(seeds)
    for s in seeds:
        assert np.array_equal(results[s].tokens, one_by_one[s].tokens), s
        assert np.array_equal(results[s].images, one_by_one[s].images), s
    assert len({r.tokens.tobytes() for r in results.values()}) == len(seeds)


def test_jobs_are_per_step(compute_mode):
    """A generation paused between steps (in its callback) does not hold the pipeline: another
    generation runs to the end meanwhile, and the paused one then finishes unchanged."""
    pipe = pipeline()
    expected = pipe(2, 10, 1.0, 5)
    paused, resume = threading.Event(), threading.Event()
    out = {}

    def callback(state):
        if state.index == 3:
            paused.set()
            resume.wait(timeout=60)

    th = threading.Thread(target=lambda: out.setdefault("a", pipe(2, 10, 1.0, 5, callback=callback)))
    th.start()
    assert paused.wait(timeout=60)
    other = pipe(2, 10, 1.0, 6)               # would dead-lock if a job covered a whole generation
    resume.set()
    th.join(timeout=60)
    assert other.tokens.shape == (2, 7, 7)
    assert np.array_equal(out["a"].tokens, expected.tokens)
    assert np.array_equal(out["a"].images, expected.images)
