"""Shared fixtures: tiny random models that actually spike, a tiny checkpoint, a pipeline on it.

Everything here is built from the 'tiny' preset and random weights (no data files, no network).
Random weights barely spike (an untrained BatchNorm scales conv outputs below the threshold), so
:func:`excite` sets every BatchNorm's affine parameters to a gain of 2 and a bias of 0.5 and
calibrates its running statistics on one batch: in eval mode about 20% of the neurons then fire,
and comparisons between outputs mean something.
"""
from __future__ import annotations

import os
from dataclasses import replace
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron

from spiking_diffusion import SpikingDenoiser, SpikingDiffusionPipeline, VQSVAE, get_preset
from spiking_diffusion.checkpoint import save_checkpoint
from spiking_diffusion.data import load_images

REPO = Path(__file__).resolve().parent.parent


def excite(model: nn.Module, calibrate, gain: float = 2.0, bias: float = 0.5) -> nn.Module:
    """Make a random spiking model fire: BN gain/bias up, running stats from one train-mode pass."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(m.weight, gain)
            nn.init.constant_(m.bias, bias)
            m.momentum = 1.0           # running stats := the calibration batch's stats
    model.train()
    with torch.no_grad():
        calibrate()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return model.eval()


def build_tiny_models(in_channels: int = 1, input_mode: str = "index", seed: int = 0):
    """(VQSVAE, SpikingDenoiser) from the tiny preset, random but firing, in eval mode."""
    torch.manual_seed(seed)
    p = get_preset("tiny", in_channels=in_channels, input_mode=input_mode)
    images = load_images("synthetic", limit=16).floats()             # [16, 1, 28, 28]
    images = images.expand(-1, in_channels, -1, -1).contiguous()
    vq = VQSVAE(replace(p.vqsvae, data_variance=float(images.var())))
    den = SpikingDenoiser(p.denoiser)
    excite(vq, lambda: vq.losses(images))
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, den.cfg.codebook_size + 1, (16, 7, 7), generator=g)
    t = torch.randint(1, 50, (16,), generator=g)
    excite(den, lambda: den(tokens, t))
    return vq, den


def lif_nodes(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, neuron.BaseNode)]


def neurons_at_rest(model: nn.Module) -> list[str]:
    """Names of LIF layers whose membrane ``v`` is not at its reset value (empty list: all reset)."""
    bad = []
    for name, m in lif_nodes(model):
        v = m.v
        if torch.is_tensor(v):
            if v.numel() and bool((v != m.v_reset).any()):
                bad.append(name)
        elif float(v) != float(m.v_reset):
            bad.append(name)
    return bad


@pytest.fixture(scope="session")
def make_tiny_models():
    """The factory :func:`build_tiny_models` (in_channels, input_mode, seed) -> (vqsvae, denoiser)."""
    return build_tiny_models


@pytest.fixture(scope="session")
def unreset_neurons():
    """The check :func:`neurons_at_rest`: model -> names of LIF layers not at their reset value."""
    return neurons_at_rest


@pytest.fixture
def tiny_models():
    """A fresh (VQSVAE, SpikingDenoiser) pair, tiny preset, 1 channel, 'index' input."""
    return build_tiny_models()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory with a tiny random (but spiking) VQ-SVAE + denoiser. Do not modify:
    copy it (``shutil.copytree``) before corrupting it."""
    vq, den = build_tiny_models(seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, vq, den, info={"dataset": "synthetic", "preset": "tiny", "steps": 0},
                    metrics={"fid": 123.0})
    return path


@pytest.fixture
def tiny_pipeline(tiny_checkpoint) -> SpikingDiffusionPipeline:
    return SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="session")
def subprocess_env() -> dict:
    """Environment for ``python -m spiking_diffusion`` subprocesses: the repo importable, one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


def _restore_compute_mode():
    """Stops the compute thread after a test or module that started it (a Studio starts it), so that
    each test runs in the mode it asks for (the default: jobs in their callers' threads)."""
    from spiking_diffusion import compute

    before = compute.started()
    yield
    if compute.started() and not before:
        compute.stop()


@pytest.fixture(autouse=True)
def compute_mode_per_test():
    yield from _restore_compute_mode()


@pytest.fixture(autouse=True, scope="module")
def compute_mode_per_module():
    yield from _restore_compute_mode()


@pytest.fixture(params=["caller's thread", "compute thread"])
def compute_mode(request):
    """Runs the test with the pipeline's jobs in their callers' threads, then on the compute thread
    (spiking_diffusion.compute.start, as the studio runs); the mode before is restored after."""
    from spiking_diffusion import compute

    before = compute.started()
    (compute.start if request.param == "compute thread" else compute.stop)()
    yield request.param
    (compute.start if before else compute.stop)()
