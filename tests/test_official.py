"""Importing the authors' released weights (spiking_diffusion.official).

A reference network with the authors' module layout and forward math (nn.Sequential
``snn_convs`` of SpikingJelly layers, the VQ layer's "poisson" conv + BN + LIF on the code
vector repeated over T, the DummyModel denoiser computing conv6 at every step, a
MembraneOutputLayer with a ``coef`` buffer) is written here independently of our model, its
state dicts are saved with ``torch.save`` and imported, and both must compute the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from spiking_diffusion import CheckpointError, SpikingDiffusionPipeline
from spiking_diffusion.official import import_official

torch.set_num_threads(1)


# --- the reference: the authors' layout ---------------------------------------------------------
def _lif():
    return neuron.LIFNode(surrogate_function=surrogate.ATan())


class MembraneOutputLayer(nn.Module):
    def __init__(self, T: int, decay: float = 0.8):
        super().__init__()
        self.register_buffer("coef", decay ** torch.arange(T - 1, -1, -1, dtype=torch.float32)[:, None, None, None, None])

    def forward(self, x):                       # [T, B, C, H, W] -> [B, C, H, W]
        return (x * self.coef).sum(0)


class RefVQLayer(nn.Module):
    def __init__(self, T, K, D):
        super().__init__()
        self.T = T
        self.memout = MembraneOutputLayer(T)
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.embeddings = nn.Embedding(K, D)
        self.poisson = nn.Sequential(layer.Conv2d(D, D, kernel_size=1), layer.BatchNorm2d(D), _lif())

    def indices(self, x):                       # encoder spikes [T,B,D,h,w] -> [B,h,w]
        z = (1 - self.alpha) * self.memout(x) + self.alpha * x.sum(0) / self.T
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        E = self.embeddings.weight
        dist = (flat ** 2).sum(1, keepdim=True) + (E ** 2).sum(1) - 2 * flat @ E.t()
        return dist.argmin(1).view(B, h, w)

    def spikes(self, tokens):                   # [B,h,w] -> [T,B,D,h,w]
        q = self.embeddings(tokens).permute(0, 3, 1, 2)
        return self.poisson(q.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))


class RefVQVAE(nn.Module):
    """Module names and math of the authors' SNN_VQVAE (eval path)."""

    def __init__(self, C, T, K, D, c1, c2):
        super().__init__()
        self.T = T
        self.encoder = nn.Module()
        self.encoder.snn_convs = nn.Sequential(
            layer.Conv2d(C, c1, 3, stride=2, padding=1), layer.BatchNorm2d(c1), _lif(),
            layer.Conv2d(c1, c2, 3, stride=2, padding=1), layer.BatchNorm2d(c2), _lif(),
            layer.Conv2d(c2, D, 1, stride=1, padding=0), layer.BatchNorm2d(D), _lif())
        self.vq_layer = RefVQLayer(T, K, D)
        self.decoder = nn.Module()
        self.decoder.snn_convs = nn.Sequential(
            layer.ConvTranspose2d(D, c2, 3, stride=2, padding=1, output_padding=1), layer.BatchNorm2d(c2), _lif(),
            layer.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1), layer.BatchNorm2d(c1), _lif(),
            layer.ConvTranspose2d(c1, C, 3, stride=1, padding=1, output_padding=0))
        self.memout = MembraneOutputLayer(T)
        functional.set_step_mode(self, "m")

    def encode(self, images):                   # [B,C,28,28] in [0,1] -> tokens [B,7,7]
        x = (images - 0.5).unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        try:
            return self.vq_layer.indices(self.encoder.snn_convs(x))
        finally:
            functional.reset_net(self)

    def decode_raw(self, tokens):               # tanh(M(decoder(poisson(e)))) in [-1, 1]
        try:
            return torch.tanh(self.memout(self.decoder.snn_convs(self.vq_layer.spikes(tokens))))
        finally:
            functional.reset_net(self)

    def decode(self, tokens):
        return (self.decode_raw(tokens) + 0.5).clamp(0, 1)


class RefDenoiser(nn.Module):
    """Module names and math of the authors' DummyModel."""

    def __init__(self, T, K, widths):
        super().__init__()
        self.T = T
        w1, w2, w3, w4, w5 = widths
        for i, (a, b) in enumerate([(2, w1), (w1, w2), (w2, w3), (w3, w4), (w4, w5)], start=1):
            setattr(self, f"conv{i}", nn.Sequential(layer.Conv2d(a, b, 3, 1, 1), layer.BatchNorm2d(b), _lif()))
        self.conv6 = nn.Sequential(layer.Conv2d(w5 + w1, K, 3, 1, 1))
        functional.set_step_mode(self, "m")

    def forward(self, x, t):                    # x [B,1,7,7] float token ids, t [B] -> [B,K,7,7]
        t = torch.ones_like(x) * t.float()[:, None, None, None]
        x = torch.cat([x, t], dim=1).unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        try:
            x1 = self.conv1(x)
            x5 = self.conv5(self.conv4(self.conv3(self.conv2(x1))))
            return self.conv6(torch.cat([x5, x1], dim=2)).sum(0) / self.T
        finally:
            functional.reset_net(self)


def _randomise(net: nn.Module, calibrate, gen: torch.Generator) -> None:
    """Random BN stats and affine so that BN is no identity and neurons fire (some, not all)."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None                       # cumulative average over the calibration pass
        m.reset_running_stats()
    net.train()
    with torch.no_grad():
        calibrate()
        for m in bns:
            n = m.num_features
            m.running_mean += 0.2 * torch.randn(n, generator=gen) * m.running_var.sqrt()
            m.running_var *= torch.empty(n).uniform_(0.5, 2.0, generator=gen)
            m.weight.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(torch.empty(n).uniform_(0.0, 1.2, generator=gen))
    net.eval()


def _firing(net: nn.Module, run) -> dict[str, float]:
    rates, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, neuron.BaseNode):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: rates.__setitem__(name, float(o.mean()))))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return rates


@dataclass
class Official:
    vq: RefVQVAE
    den: RefDenoiser
    vq_path: object
    den_path: object
    C: int
    K: int


def make_official(tmp_path, C=1, T=4, K=32, D=8, hidden=(8, 16), widths=(16, 24, 32, 40, 12), seed=0) -> Official:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vq = RefVQVAE(C, T, K, D, *hidden)
    with torch.no_grad():
        vq.vq_layer.alpha.fill_(0.3)
    images = torch.rand(16, C, 28, 28, generator=gen)

    def calibrate_vq():
        x = (images - 0.5).unsqueeze(0).repeat(T, 1, 1, 1, 1)
        vq.decoder.snn_convs(vq.vq_layer.spikes(vq.vq_layer.indices(vq.encoder.snn_convs(x))))
        functional.reset_net(vq)

    _randomise(vq, calibrate_vq, gen)
    den = RefDenoiser(T, K, widths)
    tokens = torch.randint(0, K + 1, (16, 1, 7, 7), generator=gen).float()
    t = torch.randint(1, 50, (16,), generator=gen)
    _randomise(den, lambda: den(tokens, t), gen)
    vq_path, den_path = tmp_path / "model.pth", tmp_path / "diff_model.pth"
    torch.save(vq.state_dict(), vq_path)
    torch.save(den.state_dict(), den_path)
    return Official(vq, den, vq_path, den_path, C, K)


def _check_equal(off: Official, out, batch: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    pipe = SpikingDiffusionPipeline.from_pretrained(out)
    images = torch.rand(batch, off.C, 28, 28, generator=gen)
    tokens = torch.randint(0, off.K, (batch, 7, 7), generator=gen)

    # neurons really fire (and not everywhere) in every layer of the reference
    rates = _firing(off.vq, lambda: (off.vq.encode(images), off.vq.decode_raw(tokens)))
    assert len(rates) == 6 and all(0 < r < 1 for r in rates.values()), rates

    # encode: same tokens
    ours = pipe.encode(images)
    assert torch.equal(ours, off.vq.encode(images))

    # decode: same images, before and after the clamp
    with torch.no_grad():
        ref_raw = off.vq.decode_raw(tokens)
    with torch.inference_mode():
        our_raw = pipe.vqsvae.decoder(pipe.vqsvae.spike_trains(tokens))
        functional.reset_net(pipe.vqsvae)
    assert (ref_raw.abs() < 0.95).float().mean() > 0.05        # not all saturated
    torch.testing.assert_close(our_raw, ref_raw, atol=1e-5, rtol=0)
    torch.testing.assert_close(pipe.decode(tokens), off.vq.decode(tokens), atol=1e-5, rtol=0)

    # denoiser logits with masked positions, at raw step times
    noisy = tokens.clone()
    noisy[torch.rand(noisy.shape, generator=gen) < 0.5] = off.K
    t = torch.randint(1, 50, (batch,), generator=gen)
    rates = _firing(off.den, lambda: off.den(noisy.unsqueeze(1).float(), t))
    assert len(rates) == 5 and all(0 < r < 1 for r in rates.values()), rates
    with torch.no_grad():
        ref_logits = off.den(noisy.unsqueeze(1).float(), t)
    our_logits = pipe.denoiser_logits(noisy, t)
    assert our_logits.shape == (batch, off.K, 7, 7)
    torch.testing.assert_close(our_logits, ref_logits, atol=1e-4, rtol=1e-5)
    return pipe


# --- equality -----------------------------------------------------------------------------------
@pytest.mark.parametrize("C", [1, 3])
def test_small_import_matches_reference(tmp_path, C):
    off = make_official(tmp_path, C=C)
    out = import_official(off.vq_path, off.den_path, tmp_path / "ckpt", dataset="mnist")
    pipe = _check_equal(off, out, batch=4)
    vq, den = pipe.vqsvae.cfg, pipe.denoiser.cfg
    assert (vq.in_channels, vq.time_steps, vq.codebook_size, vq.code_dim, vq.hidden_channels) == (C, 4, 32, 8, (8, 16))
    assert vq.membrane_decay == pytest.approx(0.8)
    assert (den.time_steps, den.widths, den.input_mode, den.codebook_size) == (4, (16, 24, 32, 40, 12), "index", 32)
    info = pipe.info
    assert info["source"] == "official" and info["dataset"] == "mnist" and info["preset"] is None
    assert info["files"]["vqvae"] == str(off.vq_path) and len(info["files"]["denoiser_sha256"]) == 64


def test_paper_shapes_import_matches_reference(tmp_path):
    off = make_official(tmp_path, T=16, K=128, D=16, hidden=(32, 64), widths=(64, 128, 256, 512, 256))
    out = import_official(off.vq_path, off.den_path, tmp_path / "ckpt")
    pipe = _check_equal(off, out, batch=2)
    assert pipe.info["preset"] == "paper"


def test_vqsvae_only_wrapped_and_ddp_prefixed(tmp_path):
    off = make_official(tmp_path)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in off.vq.state_dict().items()}}, wrapped)
    out = import_official(wrapped, None, tmp_path / "ckpt")
    pipe = SpikingDiffusionPipeline.from_pretrained(out)
    assert pipe.denoiser is None and pipe.info["files"].get("denoiser") is None
    tokens = torch.randint(0, off.K, (3, 7, 7))
    torch.testing.assert_close(pipe.decode(tokens), off.vq.decode(tokens), atol=1e-5, rtol=0)


# --- refusals -----------------------------------------------------------------------------------
def _refused(tmp_path, vq_path, den_path, match: str):
    out = tmp_path / "ckpt"
    with pytest.raises(CheckpointError, match=match) as err:
        import_official(vq_path, den_path, out)
    assert "\n" not in str(err.value)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt")]   # no temp folder either
    return str(err.value)


def _save(tmp_path, name, sd):
    path = tmp_path / name
    torch.save(sd, path)
    return path


def test_truncated_and_garbage_files_refused(tmp_path):
    off = make_official(tmp_path)
    data = off.vq_path.read_bytes()
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(data[: len(data) // 2])
    _refused(tmp_path, trunc, None, "cannot read")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 40)
    _refused(tmp_path, off.vq_path, garbage, "cannot read")
    _refused(tmp_path, tmp_path / "absent.pth", None, "not a file")
    _refused(tmp_path, _save(tmp_path, "list.pth", [1, 2, 3]), None, "does not hold a state dict")


def test_wrong_shape_refused(tmp_path):
    off = make_official(tmp_path)
    sd = off.vq.state_dict()
    sd["vq_layer.poisson.0.weight"] = torch.zeros(8, 8, 3, 3)
    msg = _refused(tmp_path, _save(tmp_path, "bad.pth", sd), None, r"asg\.conv\.weight")
    assert "[8, 8, 3, 3]" in msg and "[8, 8, 1, 1]" in msg
    den = off.den.state_dict()
    den["conv3.1.running_mean"] = torch.zeros(5)
    _refused(tmp_path, off.vq_path, _save(tmp_path, "bad_den.pth", den), r"conv3\.1\.running_mean")


def test_missing_unknown_and_mismatched_keys_refused(tmp_path):
    off = make_official(tmp_path)
    sd = off.vq.state_dict()
    del sd["decoder.snn_convs.4.running_var"]
    _refused(tmp_path, _save(tmp_path, "a.pth", sd), None, r"decoder\.block2\.1\.running_var")
    sd = off.vq.state_dict()
    sd["vq_layer.extra.weight"] = torch.zeros(2)
    _refused(tmp_path, _save(tmp_path, "b.pth", sd), None, r"unknown keys \['vq_layer\.extra\.weight'\]")
    sd = off.vq.state_dict()
    del sd["memout.coef"]
    _refused(tmp_path, _save(tmp_path, "c.pth", sd), None, "memout.coef")
    sd = off.vq.state_dict()
    sd["memout.coef"] = torch.ones(4, 1, 1, 1, 1)
    _refused(tmp_path, _save(tmp_path, "d.pth", sd), None, "decay")
    den = off.den.state_dict()
    del den["conv6.0.bias"]
    _refused(tmp_path, off.vq_path, _save(tmp_path, "e.pth", den), r"conv6\.bias")
    # the files swapped: the denoiser is no SNN_VQVAE
    _refused(tmp_path, off.den_path, off.vq_path, "SNN_VQVAE")


def test_inconsistent_files_refused(tmp_path):
    off = make_official(tmp_path)
    out = tmp_path / "ckpt"
    with pytest.raises(CheckpointError, match="expects 1-channel images, not 3-channel"):
        import_official(off.vq_path, None, out, in_channels=3)
    assert not out.exists()
    other = RefDenoiser(4, 16, (16, 24, 32, 40, 12))     # predicts 16 codes, the codebook holds 32
    _refused(tmp_path, off.vq_path, _save(tmp_path, "k16.pth", other.state_dict()), "16 codes")
