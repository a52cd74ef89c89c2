"""Metric functions against known answers."""
import numpy as np
import pytest
import scipy.linalg
import torch

from spiking_diffusion import AbsorbingDiffusion, get_preset
from spiking_diffusion import metrics as M
from spiking_diffusion import denoiser_macs
from spiking_diffusion.evaluation.energy import corrector_firing_rates
from spiking_diffusion.sampling import SamplerConfig

torch.set_num_threads(1)  # more threads spin and run far slower on a small shared machine


def _spd(n, seed):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


def test_frechet_identical_is_zero():
    mu, s = np.arange(5.0), _spd(5, 0)
    assert M.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_frechet_1d_closed_form():
    # N(m1, a^2) vs N(m2, b^2): (m1 - m2)^2 + (a - b)^2
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_non_commuting_matches_symmetric_form():
    s1, s2 = _spd(6, 1), _spd(6, 2)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    tr = np.sqrt(np.linalg.eigvalsh(r1 @ s2 @ r1)).sum()   # Tr sqrt(s1^1/2 s2 s1^1/2) = Tr sqrt(s1 s2)
    want = np.trace(s1) + np.trace(s2) - 2 * tr
    assert M.frechet_distance(np.zeros(6), s1, np.zeros(6), s2) == pytest.approx(want, rel=1e-8)
    # the authors' SVD "root" is not a root of the non-symmetric product: it gives another number
    assert abs(M.frechet_distance_svd(np.zeros(6), s1, np.zeros(6), s2) - want) > 1e-3 * want


def test_frechet_refuses_a_complex_root_and_drops_rounding_noise(monkeypatch):
    s1, s2 = _spd(4, 3), _spd(4, 4)
    want = M.frechet_distance(np.zeros(4), s1, np.zeros(4), s2)
    root = scipy.linalg.sqrtm(s1 @ s2)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a: root + 1e-9j)        # rounding noise: dropped
    assert M.frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(want, rel=1e-8)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a: root + 0.5j * np.eye(4))   # no real root
    with pytest.raises(ValueError, match="matrix root is complex"):
        M.frechet_distance(np.zeros(4), s1, np.zeros(4), s2)


def test_feature_stats_and_fid_from_features():
    x = np.random.default_rng(0).normal(size=(500, 3))
    mu, s = M.feature_stats(x)
    assert mu.shape == (3,) and s.shape == (3, 3)
    assert M.fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert M.fid_from_features(x, x + 2.0) == pytest.approx(12.0, rel=1e-6)


def test_precision_recall_identical_and_disjoint():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert M.precision_recall(x, x, k=3) == (1.0, 1.0)
    assert M.precision_recall(x, x + 1000.0, k=3) == (0.0, 0.0)
    # fakes collapsed onto one real point: precise but no recall
    p, r = M.precision_recall(x, np.repeat(x[:1], 50, 0), k=3)
    assert p == 1.0 and r < 0.1


def test_confident_share_and_class_entropy():
    probs = np.array([[0.95, 0.05], [0.5, 0.5], [0.05, 0.95], [0.9, 0.1]])
    assert M.confident_share(probs, 0.9) == 0.75
    assert M.class_coverage_entropy(np.arange(40) % 4, 4) == pytest.approx(1.0)
    assert str(M.class_coverage_entropy(np.zeros(40), 4)) == "0.0"
    assert 0 < M.class_coverage_entropy([0, 0, 0, 1], 4) < 1


def test_codebook_usage():
    u = M.codebook_usage(np.arange(64).reshape(4, 4, 4) % 16, 16)
    assert u["perplexity"] == pytest.approx(16.0) and u["dead_codes"] == 0 and u["used_fraction"] == 1.0
    u = M.codebook_usage(np.array([1, 1, 2, 2]), 8)
    assert u["perplexity"] == pytest.approx(2.0) and u["dead_codes"] == 6 and sum(u["counts"]) == 4
    with pytest.raises(ValueError, match="0..7"):
        M.codebook_usage(np.array([1, 8]), 8)


def test_code_counts_per_position_and_usage_stats():
    tok = np.array([[[0, 1], [1, 1]], [[0, 0], [1, 3]]])
    per_pos = M.code_counts(tok, 4)
    assert per_pos.shape == (4, 4) and per_pos.dtype == np.int64
    assert per_pos.tolist() == [[2, 0, 0, 0], [1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 1]]
    st = M.usage_stats(per_pos.sum(0))
    assert st["counts"] == [3, 4, 0, 1] and st["dead_codes"] == 1 and 1 < st["perplexity"] < 3
    assert st == M.codebook_usage(tok, 4)
    assert M.usage_stats(np.ones(8))["perplexity"] == pytest.approx(8)
    assert M.usage_stats(np.zeros(8))["perplexity"] == 1.0
    for bad in (-1, 4):
        with pytest.raises(ValueError):
            M.code_counts(np.where(tok == 3, bad, tok), 4)


def test_ssim():
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(M.ssim(x, x), torch.ones(3, dtype=torch.float64))
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    s = M.ssim(x, noisy)
    assert (s < 0.9).all() and (s > -1).all()
    assert M.ssim(torch.rand(2, 3, 28, 28), torch.rand(2, 3, 28, 28)).shape == (2,)


def test_energy_counts():
    p = get_preset("paper")
    layers = M.denoiser_layers(p.denoiser)
    assert sum(l.macs for l in layers) * p.denoiser.time_steps == denoiser_macs(p.denoiser)
    names = {"lif1", "conv2.2", "conv3.2", "conv4.2", "conv5.2"}
    e0 = M.energy(layers, dict.fromkeys(names, 0.0), 16)
    assert e0["sops"] == 0 and e0["snn_energy_pj"] == pytest.approx(layers[0].macs * M.E_MAC_PJ)
    e1 = M.energy(layers, dict.fromkeys(names, 1.0), 16)
    assert e1["sops"] == 16 * sum(l.macs for l in layers[1:])
    assert e1["ann_energy_pj"] == pytest.approx(e1["ann_macs"] * M.E_MAC_PJ)
    with pytest.raises(KeyError):
        M.energy(layers, {}, 16)
    assert [l.source for l in M.vqsvae_decode_layers(p.vqsvae)] == [None, "asg.lif", "decoder.block1.2", "decoder.block2.2"]


def test_corrector_firing_rates_see_what_a_corrector_round_sees():
    """cells random cells masked per grid, at the time of that many masked cells (the sampler's _correct)."""
    seen = {}

    class Pipe:
        mask_id, num_diffusion_steps = 32, 98                         # N = 2 x the 49 cells

        def denoiser_spikes(self, tokens, t):
            seen.update(tokens=tokens, t=t)
            return {"lif1": 0.1}

    grids = np.random.default_rng(0).integers(0, 32, (5, 7, 7))
    assert corrector_firing_rates(Pipe(), grids, 8, seed=3) == {"lif1": 0.1}
    masked = seen["tokens"] == 32
    assert (masked.reshape(5, -1).sum(1) == 8).all() and np.array_equal(seen["tokens"][~masked], grids[~masked])
    assert np.allclose(seen["t"], 8 * 98 / 49) and len(seen["t"]) == 5


def test_expected_denoiser_calls_matches_the_sampler():
    sched = AbsorbingDiffusion(8, 7)
    rows = []

    def denoise(x, t):
        rows.append(len(x))
        return torch.zeros(len(x), 8, 7, 7)

    sched.sample(denoise, 400, 49, SamplerConfig(temperature=1.0), torch.Generator().manual_seed(0), skip_idle=True)
    assert sum(rows) / 400 == pytest.approx(M.expected_denoiser_calls(49, 49), rel=0.02)
    assert M.expected_denoiser_calls(1, 49) == 1.0
