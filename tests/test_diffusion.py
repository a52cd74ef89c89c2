"""Absorbing diffusion: the forward process, the losses, and the sampler (with fake and real denoisers)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spiking_diffusion import AbsorbingDiffusion
from spiking_diffusion.sampling import SamplerConfig as S

torch.set_num_threads(1)

K, N = 32, 49


@pytest.fixture
def diffusion():
    return AbsorbingDiffusion(K, 7)


class FakeDenoiser:
    """Deterministic logits that depend on the tokens (so the sampler's feedback matters); records
    every call's time values and batch size."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.base = torch.randn(K, 7, 7, generator=g) * 2             # [K, 7, 7]
        self.mix = torch.randn(K + 1, K, generator=g)                  # token id -> logit shift
        self.times: list[torch.Tensor] = []

    def __call__(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert tokens.ndim == 3 and t.shape == (tokens.shape[0],)
        self.times.append(t.clone())
        shift = self.mix[tokens.roll(1, dims=2)].permute(0, 3, 1, 2)   # [B, K, 7, 7]: the left neighbour
        return self.base + 0.5 * shift + 0.01 * t.view(-1, 1, 1, 1)


# --- forward process -------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [7, 25, 49])
def test_q_sample_masks_at_rate_t_over_n(diffusion, t):
    g = torch.Generator().manual_seed(t)
    x0 = torch.randint(0, K, (2000, 7, 7), generator=g)
    x_t, mask = diffusion.q_sample(x0, torch.full((2000,), t), generator=g)
    p, n = t / N, mask.numel()
    se = math.sqrt(p * (1 - p) / n)
    assert abs(float(mask.float().mean()) - p) <= 4 * se + 1e-12
    assert torch.all(x_t[mask] == diffusion.mask_id)
    assert torch.equal(x_t[~mask], x0[~mask])
    # independent per position: every position is masked at about the same rate
    per_pos = mask.float().mean(0)
    assert float((per_pos - p).abs().max()) <= 5 * math.sqrt(p * (1 - p) / 2000) + 1e-12


def test_q_sample_rate_per_image(diffusion):
    """Each image uses its own t."""
    t = torch.tensor([0, N] * 500)
    _, mask = diffusion.q_sample(torch.zeros(1000, 7, 7, dtype=torch.long), t)
    assert not mask[0::2].any() and mask[1::2].all()


def test_sample_time_is_uniform_on_1_to_n(diffusion):
    t = diffusion.sample_time(20000, "cpu", torch.Generator().manual_seed(0))
    assert int(t.min()) == 1 and int(t.max()) == N
    counts = torch.bincount(t, minlength=N + 1)[1:].float()
    expected = 20000 / N
    assert float((counts - expected).abs().max()) < 5 * math.sqrt(expected)


def _loss_at(diffusion, monkeypatch, t_value, kind, logits_fn, x0):
    """The loss with every image at time ``t_value`` and the mask it drew (same generator seed)."""
    monkeypatch.setattr(diffusion, "sample_time", lambda b, d, g=None: torch.full((b,), t_value))
    loss = diffusion.loss(logits_fn, x0, kind, generator=torch.Generator().manual_seed(5))
    _, mask = diffusion.q_sample(x0, torch.full((x0.shape[0],), t_value), torch.Generator().manual_seed(5))
    return loss, mask


def test_loss_matches_its_definition(diffusion, monkeypatch):
    x0 = torch.randint(0, K, (8, 7, 7))
    uniform = lambda x, t: torch.zeros(x.shape[0], K, 7, 7)          # cross-entropy ln K everywhere
    for t in (1, 10, 30):
        loss, mask = _loss_at(diffusion, monkeypatch, t, "reweighted_elbo", uniform, x0)
        per_image = mask.flatten(1).sum(1).float() * math.log(K)
        expected = ((1 - t / N) * per_image / (49 * math.log(2))).mean()
        assert torch.allclose(loss, expected, rtol=1e-5), t
        loss, _ = _loss_at(diffusion, monkeypatch, t, "elbo", uniform, x0)
        assert torch.allclose(loss, ((N / t) * per_image / (49 * math.log(2))).mean(), rtol=1e-5), t


def test_reweighted_weight_is_zero_at_t_equal_n(diffusion, monkeypatch):
    x0 = torch.randint(0, K, (4, 7, 7))
    random_logits = lambda x, t: torch.randn(x.shape[0], K, 7, 7)
    loss, mask = _loss_at(diffusion, monkeypatch, N, "reweighted_elbo", random_logits, x0)
    assert mask.all() and float(loss) == 0.0
    # the ELBO weighs t = N by N/t = 1: all 49 tokens at ln K bits each -> log2 K per token
    uniform = lambda x, t: torch.zeros(x.shape[0], K, 7, 7)
    loss, _ = _loss_at(diffusion, monkeypatch, N, "elbo", uniform, x0)
    assert abs(float(loss) - math.log2(K)) < 1e-5


def test_loss_kinds(diffusion, make_tiny_models):
    _, den = make_tiny_models()
    den.train()
    x0 = torch.randint(0, K, (6, 7, 7))
    for kind in ("reweighted_elbo", "elbo"):
        loss = diffusion.loss(den, x0, kind, generator=torch.Generator().manual_seed(0))
        assert loss.ndim == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
        den.zero_grad()
        loss.backward()
        assert den.conv1.weight.grad is not None and den.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="loss must be one of reweighted_elbo, elbo; got 'l2'"):
        diffusion.loss(den, x0, "l2")


# --- sampling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["random", "confidence"])
@pytest.mark.parametrize("steps", [1, 2, 10, 49])
def test_sampling_unmasks_everything_once(diffusion, steps, order):
    fake = FakeDenoiser()
    g = torch.Generator().manual_seed(steps)
    tokens, trace = diffusion.sample(fake, 5, steps, S(1.0), g, order=order, trace=True)
    assert tokens.shape == (5, 7, 7) and not (tokens == diffusion.mask_id).any()
    assert int(tokens.min()) >= 0 and int(tokens.max()) < K
    assert len(trace) == steps and [s.index for s in trace.steps] == list(range(steps))
    unmasked = trace.stack("unmasked")                                    # [S, 5, 7, 7]
    states = trace.stack("tokens")                                        # [S, 5, 7, 7]
    assert unmasked.shape == states.shape == (steps, 5, 7, 7)
    assert np.array_equal(unmasked.sum(0), np.ones((5, 7, 7)))          # each position exactly once
    done = np.cumsum(unmasked, 0) > 0
    assert np.array_equal(states != diffusion.mask_id, done)             # masked exactly where not yet chosen
    final = tokens.numpy()
    assert np.array_equal(states[-1], final)
    for s in trace.steps:                                                 # a written token never changes
        assert np.array_equal(s.tokens[s.unmasked], final[s.unmasked])
        assert np.array_equal(s.pred_sampled[s.unmasked], final[s.unmasked])
        assert s.pred_argmax.shape == (5, 7, 7)
    if order == "confidence":   # a linear schedule: floor(49 (s-1) / S) positions still masked
        left = [(st.tokens == diffusion.mask_id).sum((1, 2)) for st in trace.steps]
        for i, s in enumerate(range(steps, 0, -1)):
            assert np.all(left[i] == (49 * (s - 1)) // steps)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_follows_the_categorical(diffusion, temperature):
    """Tokens are drawn from softmax(logits / temperature) (one step: every position at once)."""
    logits = torch.linspace(-2.0, 1.0, K)                                 # the same at every position
    fixed = lambda x, t: logits.view(1, K, 1, 1).expand(x.shape[0], K, 7, 7)
    tokens, _ = diffusion.sample(fixed, 400, 1, S(temperature), torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens.flatten(), minlength=K).float() / tokens.numel()
    p = torch.softmax(logits / temperature, 0)
    se = (p * (1 - p) / tokens.numel()).sqrt()
    assert torch.all((freq - p).abs() <= 5 * se + 1e-4), (freq, p)


@pytest.mark.parametrize("steps", [1, 2, 7, 10, 49])
def test_denoiser_time_stays_on_training_scale(diffusion, steps):
    fake = FakeDenoiser()
    _, trace = diffusion.sample(fake, 3, steps, S(1.0), torch.Generator().manual_seed(0), trace=True)
    expected = [s * N / steps for s in range(steps, 0, -1)]
    assert len(fake.times) == steps
    for t, e in zip(fake.times, expected):
        assert torch.allclose(t.float(), torch.full((3,), e))
    assert [st.t for st in trace.steps] == pytest.approx(expected)
    assert fake.times[0][0] == N                                          # starts at the fully masked time


def test_callback_once_per_step(diffusion):
    seen = []
    tokens, trace = diffusion.sample(FakeDenoiser(), 2, 10, S(1.0), torch.Generator().manual_seed(0),
                                     callback=seen.append)
    assert trace is None
    assert [s.index for s in seen] == list(range(10)) and all(s.num_steps == 10 for s in seen)
    assert np.array_equal(seen[-1].tokens, tokens.numpy())


def test_skip_idle_is_exact_and_skips(diffusion):
    g = lambda: torch.Generator().manual_seed(3)
    full, lazy = FakeDenoiser(), FakeDenoiser()
    a, _ = diffusion.sample(full, 4, 49, S(0.8), g())
    b, _ = diffusion.sample(lazy, 4, 49, S(0.8), g(), skip_idle=True)
    assert torch.equal(a, b)
    assert sum(len(t) for t in lazy.times) < sum(len(t) for t in full.times)


def test_skip_idle_with_a_trace_keeps_each_images_latest_prediction(diffusion):
    """A watched run skips idle images too (after a first step for all); its trace marks who was
    denoised and carries each image's latest prediction over the steps that skipped it."""
    g = lambda: torch.Generator().manual_seed(3)
    full, lazy = FakeDenoiser(), FakeDenoiser()
    a, full_trace = diffusion.sample(full, 4, 49, S(0.8), g(), trace=True)
    b, trace = diffusion.sample(lazy, 4, 49, S(0.8), g(), skip_idle=True, trace=True)
    assert torch.equal(a, b)
    assert [len(t) for t in full.times] == [4] * 49
    calls = [len(t) for t in lazy.times]
    assert calls[0] == 4 and sum(calls) < 4 * 49                            # the first step: every image
    denoised = trace.stack("denoised")                                    # [S, 4]
    assert denoised[0].all() and not denoised.all()
    assert [int(d.sum()) for d in denoised if d.any()] == calls
    unmasked = trace.stack("unmasked").reshape(49, 4, -1).any(2)         # [S, 4]
    assert np.array_equal(denoised[1:], unmasked[1:])                     # exactly the images that unmask
    for i in range(1, 49):
        for img in np.nonzero(~denoised[i])[0]:
            for name in ("pred_sampled", "pred_argmax"):
                assert np.array_equal(getattr(trace.steps[i], name)[img], getattr(trace.steps[i - 1], name)[img])
        for img in np.nonzero(denoised[i])[0]:                            # same draws as the full run
            assert np.array_equal(trace.steps[i].pred_sampled[img], full_trace.steps[i].pred_sampled[img])


def test_temperature_sharpens(diffusion):
    """The lowest temperature samples the argmax of well-separated logits; the prediction trace agrees."""
    fake = FakeDenoiser()
    _, trace = diffusion.sample(lambda x, t: 100 * fake(x, t), 3, 5, S(0.01), torch.Generator().manual_seed(0), trace=True)
    for s in trace.steps:
        assert np.array_equal(s.pred_sampled[s.unmasked], s.pred_argmax[s.unmasked])


class TimeTempDenoiser(FakeDenoiser):
    """Logits that only the temperature shapes: a bump on token 0, the same everywhere."""

    def __call__(self, x, t):
        super().__call__(x, t)
        logits = torch.zeros(x.shape[0], K, 7, 7)
        logits[:, 0] = 5.0
        return logits


def test_temperature_schedule_is_linear_from_start_to_end(diffusion):
    from spiking_diffusion.diffusion import temperature_at

    assert [temperature_at(i, 5, 1.0, 0.2) for i in range(5)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert temperature_at(3, 5, 0.7) == 0.7 and temperature_at(0, 1, 0.7, 0.1) == 0.7
    g = lambda: torch.Generator().manual_seed(4)
    const, _ = diffusion.sample(TimeTempDenoiser(), 50, 10, S(0.8), g())
    same, _ = diffusion.sample(TimeTempDenoiser(), 50, 10, S(0.8, temperature_end=0.8), g())
    assert torch.equal(const, same)                                       # start == end: the constant
    # one step samples everything at the start temperature; a cold end only matters later
    cold_late, _ = diffusion.sample(TimeTempDenoiser(), 200, 1, S(5.0, temperature_end=0.01), g())
    hot, _ = diffusion.sample(TimeTempDenoiser(), 200, 1, S(5.0), g())
    assert torch.equal(cold_late, hot)
    # many steps, ending cold: the share of the bump token rises over the constant hot sampler
    hot, _ = diffusion.sample(TimeTempDenoiser(), 200, 20, S(5.0), g())
    cooled, _ = diffusion.sample(TimeTempDenoiser(), 200, 20, S(5.0, temperature_end=0.05), g())
    assert (cooled == 0).float().mean() > (hot == 0).float().mean() + 0.2   # expected 0.38 vs 0.08


def test_corrector_rounds_resample_a_few_cells_after_the_last_step(diffusion):
    g = lambda: torch.Generator().manual_seed(6)
    plain, plain_trace = diffusion.sample(FakeDenoiser(), 6, 10, S(0.8), g(), trace=True)
    fake = FakeDenoiser()
    corrected, trace = diffusion.sample(fake, 6, 10, S(0.8, corrector_steps=4, corrector_cells=3,
                                                                    corrector_temperature=0.5), g(), trace=True)
    assert len(trace) == 14 and [s.kind for s in trace.steps] == ["unmask"] * 10 + ["correct"] * 4
    assert [s.index for s in trace.steps] == list(range(14))
    assert np.array_equal(trace.steps[9].tokens, plain.numpy())          # the unmasking part is unchanged
    assert np.array_equal(trace.steps[-1].tokens, corrected.numpy())
    assert [t[0].item() for t in fake.times[10:]] == [3 * N / 49] * 4     # the time of 3 masked cells
    before = trace.steps[9].tokens
    for st in trace.steps[10:]:
        assert (st.unmasked.reshape(6, -1).sum(1) == 3).all()             # exactly 3 cells per image
        changed = st.tokens != before
        assert not changed[~st.unmasked].any()                            # nothing else changes
        assert np.array_equal(st.tokens[st.unmasked], st.pred_sampled[st.unmasked])
        before = st.tokens
    assert not np.array_equal(corrected.numpy(), plain.numpy())


def test_corrector_moves_towards_the_likely_tokens(diffusion):
    """A cold corrector on a denoiser that prefers token 0: more 0s than the hot sampler left."""
    g = lambda: torch.Generator().manual_seed(7)
    hot, _ = diffusion.sample(TimeTempDenoiser(), 100, 5, S(5.0), g())
    fixed, _ = diffusion.sample(TimeTempDenoiser(), 100, 5, S(5.0, corrector_steps=20, corrector_cells=10,
                                                                  corrector_temperature=0.5), g())
    assert (hot == 0).float().mean() < 0.15 and (fixed == 0).float().mean() > 0.6


def test_sampler_rejects_bad_arguments(diffusion):
    fake = FakeDenoiser()
    for kwargs, word in [({"num_steps": 0}, "steps"), ({"num_steps": 50}, "steps"),
                         ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
                         ({"temperature_end": 0.0}, "temperature"), ({"top_p": 0.0}, "top_p"),
                         ({"corrector_steps": -1}, "corrector"), ({"corrector_cells": 0}, "corrector"),
                         ({"corrector_cells": 50}, "corrector"), ({"corrector_temperature": 0.0}, "corrector"),
                         ({"order": "raster"}, "order")]:
        steps = kwargs.pop("num_steps", 49)
        order = kwargs.pop("order", "random")
        with pytest.raises(ValueError, match=word):   # the config refuses its values when made
            diffusion.sample(fake, 1, steps, S(**kwargs), order=order)


# --- sampling through the pipeline (the real tiny denoiser) ---------------------------------------------
def test_pipeline_sampling_seeded(tiny_pipeline):
    a = tiny_pipeline(num_images=3, steps=10, seed=1)
    b = tiny_pipeline(num_images=3, steps=10, seed=1)
    c = tiny_pipeline(num_images=3, steps=10, seed=2)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.images, b.images)
    assert not np.array_equal(a.tokens, c.tokens)
    assert a.images.shape == (3, 28, 28, 1) and a.images.dtype == np.uint8
    assert a.tokens.shape == (3, 7, 7) and not (a.tokens == tiny_pipeline.mask_id).any()


@pytest.mark.parametrize("order,extra", [("random", {}), ("confidence", {}),
                                         ("random", dict(temperature_end=0.3, top_p=0.8, corrector_steps=5))])
def test_pipeline_fast_equals_reference(tiny_pipeline, order, extra):
    fast = tiny_pipeline(num_images=4, steps=49, seed=3, order=order, fast=True, **extra)
    slow = tiny_pipeline(num_images=4, steps=49, seed=3, order=order, fast=False, **extra)
    assert np.array_equal(fast.tokens, slow.tokens)
    assert np.array_equal(fast.images, slow.images)


def test_pipeline_time_and_callback(tiny_pipeline, monkeypatch):
    times = []
    real = tiny_pipeline._denoise

    def spy(tokens, t):
        times.append(t.tolist())
        return real(tokens, t)

    monkeypatch.setattr(tiny_pipeline, "_denoise", spy)
    calls = []
    out = tiny_pipeline(num_images=2, steps=7, seed=0, callback=calls.append, trace=True)
    assert len(calls) == 7 and len(out.trace) == 7
    assert [ts[0] for ts in times] == pytest.approx([s * 49 / 7 for s in range(7, 0, -1)])
    assert all(len(set(ts)) == 1 for ts in times)


def test_sample_runs_all_n_steps_by_default_whatever_n():
    short = AbsorbingDiffusion(K, 7, num_diffusion_steps=20)             # N = 20, not the grid's 49
    fake = FakeDenoiser()
    tokens, _ = short.sample(fake, 2, generator=torch.Generator().manual_seed(0))
    assert len(fake.times) == 20 and fake.times[0][0] == 20 and tokens.max() < K
    assert AbsorbingDiffusion(K, 7).N == 49 and AbsorbingDiffusion(K, 2).N == 4


@pytest.mark.parametrize("kwargs,message", [
    ({"num_images": 0}, "num_images must be an integer >= 1"),
    ({"num_images": True}, "num_images must be an integer >= 1"),
    ({"num_images": 2.5}, "num_images"),
    ({"num_images": 2, "num_steps": float("nan")}, r"steps must be an integer in 1\.\.49"),
    ({"num_images": 2, "num_steps": float("inf")}, r"steps must be an integer in 1\.\.49"),
    ({"num_images": 2, "num_steps": 50}, r"steps must be an integer in 1\.\.49"),
    ({"num_images": 2, "sampler": {"temperature": 1.0}}, "sampler must be a SamplerConfig"),
])
def test_sample_refuses_bad_arguments_before_any_call(diffusion, kwargs, message):
    from spiking_diffusion import SettingError

    fake = FakeDenoiser()
    with pytest.raises(SettingError, match=message):
        diffusion.sample(fake, order="confidence", trace=True, **kwargs)
    assert fake.times == []


def test_training_settings_are_checked_when_made():
    from spiking_diffusion import SettingError
    from spiking_diffusion.train import TrainConfig

    with pytest.raises(SettingError, match="loss must be one of"):
        TrainConfig(stage="prior", out="unused", loss="l2")               # refused before any data is read
    with pytest.raises(SettingError, match="codebook_init must be one of normal, data"):
        TrainConfig(stage="vqsvae", out="unused", codebook_init="kmeans")
