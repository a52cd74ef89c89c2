"""Training is as faithful as inference: one training step of ours against an independent
implementation of the authors' layout, in float64, on identical weights and batches.

The reference networks come from tests/test_official.py (the authors' module names and layout:
every layer runs on ``[T, B, ...]`` tensors, the T-constant input repeated T times, BatchNorm over
T*B samples); their training losses are written here from the model spec. Ours computes the layers
on a T-constant input once (encoder conv1 + BN, the spike generator's conv + BN, the denoiser's
conv1 + BN). Losses, every gradient and every BatchNorm buffer after the step must agree to float64
rounding, the running variances included (BatchNorm updates them with the unbiased variance, so
the sample count T*B*h*w must be the authors').
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from test_official import make_official

from spiking_diffusion import SpikingDiffusionError
from spiking_diffusion.checkpoint import load_checkpoint
from spiking_diffusion.data import load_images
from spiking_diffusion.official import COEF_KEYS, DENOISER_TABLE, VQVAE_TABLE, _map_keys, import_official
from spiking_diffusion.train import TrainConfig, _PriorObjective, train_decoder

torch.set_num_threads(1)
RTOL, ATOL = 1e-10, 1e-13


# --- the authors' training losses, on the reference networks ------------------------------------
def _psp(x: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """p_t = (1 - 1/tau) p_{t-1} + x_t / tau, p_{-1} = 0, over dim 0."""
    out, p = [], torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        p = (1 - 1 / tau) * p + x[t] / tau
        out.append(p)
    return torch.stack(out)


def ref_vq_losses(ref, images: torch.Tensor, data_variance: float, beta: float = 0.25) -> dict:
    T = ref.T
    x = (images - 0.5).unsqueeze(0).repeat(T, 1, 1, 1, 1)               # [T, B, C, 28, 28]
    try:
        enc = ref.encoder.snn_convs(x)                                   # [T, B, D, 7, 7]
        vq = ref.vq_layer
        z = (1 - vq.alpha) * vq.memout(enc) + vq.alpha * enc.sum(0) / T  # [B, D, 7, 7]
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        dist = torch.cdist(flat, vq.embeddings.weight)                   # [B*h*w, K]
        e = vq.embeddings(dist.argmin(1)).view(B, h, w, D).permute(0, 3, 1, 2)
        codebook = F.mse_loss(e, z.detach()) + beta * F.mse_loss(z, e.detach())
        q = z + (e - z).detach()
        asg = vq.poisson(q.unsqueeze(0).repeat(T, 1, 1, 1, 1))           # [T, B, D, 7, 7]
        spike = (_psp(asg) - _psp(enc.detach())).pow(2).mean() + beta * (_psp(asg.detach()) - _psp(enc)).pow(2).mean()
        recon = torch.tanh(ref.memout(ref.decoder.snn_convs(asg)))       # [B, C, 28, 28]
        rec = F.mse_loss(recon, images - 0.5) / data_variance
        return {"total": rec + codebook + spike, "reconstruction": rec, "codebook": codebook, "spike_train": spike}
    finally:
        functional.reset_net(ref)


def ref_prior_loss(ref, x0: torch.Tensor, generator: torch.Generator, N: int = 49) -> torch.Tensor:
    """Reweighted ELBO: masked cross-entropy summed per image, weighted by 1 - t/N, in bits per token."""
    B = x0.shape[0]
    t = torch.randint(1, N + 1, (B,), generator=generator)
    mask = torch.rand(x0.shape, generator=generator) < (t.float() / N).view(-1, 1, 1)
    K = ref.conv6[0].out_channels
    noisy = x0.masked_fill(mask, K)
    logits = ref(noisy.unsqueeze(1).double(), t)                         # [B, K, 7, 7]
    nll = -logits.log_softmax(1).gather(1, x0.unsqueeze(1)).squeeze(1)   # [B, 7, 7]
    per_image = (nll * mask).sum((1, 2)) * (1 - t.double() / N)
    return (per_image / (x0[0].numel() * math.log(2))).mean()


# --- comparison helpers -----------------------------------------------------------------------------
def _ref_state(ref, table, what) -> dict:
    sd = {k: v for k, v in ref.state_dict().items() if k not in COEF_KEYS}
    return _map_keys(sd, table, "reference", what)


def _ref_grads(ref, table, what) -> dict:
    return _map_keys({k: p.grad for k, p in ref.named_parameters() if p.grad is not None}, table, "reference", what)


def _assert_same(ours: dict, theirs: dict, what: str) -> None:
    assert ours.keys() == theirs.keys(), what
    for k in ours:
        torch.testing.assert_close(ours[k].double(), theirs[k].double(), rtol=RTOL, atol=ATOL, msg=lambda m: f"{what} {k}: {m}")


@pytest.fixture
def imported(tmp_path):
    off = make_official(tmp_path)
    for m in [*off.vq.modules(), *off.den.modules()]:  # the authors' layers keep BatchNorm's default momentum
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    out = import_official(off.vq_path, off.den_path, tmp_path / "ckpt", data_variance=0.0949)
    vq, den, _ = load_checkpoint(out)
    return off, vq.double().train(), den.double().train()


def test_vqsvae_training_step_matches_the_authors_layout(imported):
    off, vq, _ = imported
    ref = off.vq.double().train()
    T, decay = ref.T, vq.cfg.membrane_decay
    for m in (ref.memout, ref.vq_layer.memout):  # decay^(T-1-t) in float64, not float32's values cast up
        m.coef.copy_((decay ** torch.arange(T - 1, -1, -1, dtype=torch.float64)).view(T, 1, 1, 1, 1))
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = vq.losses(images)
    theirs = ref_vq_losses(ref, images, vq.cfg.data_variance)
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], rtol=RTOL, atol=ATOL, msg=lambda m: f"loss {k}: {m}")
    assert all(float(v.detach()) > 0 for v in theirs.values())
    ours["total"].backward()
    theirs["total"].backward()
    _assert_same({k: p.grad for k, p in vq.named_parameters()}, _ref_grads(ref, VQVAE_TABLE, "SNN_VQVAE"), "gradient")
    # BatchNorm buffers after the step: running means, running variances (unbiased, over T*B*h*w), counts
    _assert_same(vq.state_dict(), _ref_state(ref, VQVAE_TABLE, "SNN_VQVAE"), "state")
    assert int(vq.encoder.bn1.num_batches_tracked) == int(ref.encoder.snn_convs[1].num_batches_tracked)


def test_prior_training_step_matches_the_authors_layout(imported):
    off, _, den = imported
    ref = off.den.double().train()
    x0 = torch.randint(0, den.cfg.codebook_size, (8, 7, 7), generator=torch.Generator().manual_seed(4))
    ours = _PriorObjective(den, "reweighted_elbo")(x0, torch.Generator().manual_seed(5))["total"]
    theirs = ref_prior_loss(ref, x0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=ATOL)
    ours.backward()
    theirs.backward()
    _assert_same({k: p.grad for k, p in den.named_parameters()}, _ref_grads(ref, DENOISER_TABLE, "DummyModel"), "gradient")
    _assert_same(den.state_dict(), _ref_state(ref, DENOISER_TABLE, "DummyModel"), "state")


# --- the data variance of an imported checkpoint ----------------------------------------------------
def test_imported_checkpoint_gets_its_data_variance_before_training(tmp_path, capsys):
    off = make_official(tmp_path)
    bare = import_official(off.vq_path, None, tmp_path / "bare", dataset="synthetic")
    vq, _, config = load_checkpoint(bare)
    assert config["vqsvae"]["data_variance"] is None                    # the authors' files do not hold it
    with pytest.raises(SpikingDiffusionError, match="data variance is unknown"):
        vq.train().losses(torch.rand(2, 1, 28, 28))
    base = dict(dataset="synthetic", preset="tiny", limit=32, batch_size=16, epochs=0.5, progress=False)
    train_decoder(TrainConfig(stage="decoder", out=str(tmp_path / "dec"), vqsvae=str(bare), **base))
    want = load_images("synthetic", limit=32).variance()
    assert f"data variance {want:.4g}" in capsys.readouterr().out
    assert json.loads((tmp_path / "dec" / "config.json").read_text())["vqsvae"]["data_variance"] == pytest.approx(want)
    # given on import, it is kept
    given = import_official(off.vq_path, None, tmp_path / "given", data_variance=0.0949)
    train_decoder(TrainConfig(stage="decoder", out=str(tmp_path / "dec2"), vqsvae=str(given), **base))
    assert "data variance" not in capsys.readouterr().out
    assert json.loads((tmp_path / "dec2" / "config.json").read_text())["vqsvae"]["data_variance"] == 0.0949
    # an import made before this check (1.0 recorded) is taken as unknown too
    old = tmp_path / "old"
    import shutil
    shutil.copytree(bare, old)
    config = json.loads((old / "config.json").read_text())
    config["vqsvae"]["data_variance"] = 1.0
    (old / "config.json").write_text(json.dumps(config))
    train_decoder(TrainConfig(stage="decoder", out=str(tmp_path / "dec3"), vqsvae=str(old), **base))
    assert json.loads((tmp_path / "dec3" / "config.json").read_text())["vqsvae"]["data_variance"] == pytest.approx(want)
    with pytest.raises(SpikingDiffusionError, match="data variance must be a positive number"):
        import_official(off.vq_path, None, tmp_path / "bad", data_variance=0.0)
