"""A device the machine lacks is named as missing (not reported as a corrupt checkpoint), everywhere."""
from __future__ import annotations

import pytest
import torch

from spiking_diffusion import DeviceError, SpikingDiffusionPipeline
from spiking_diffusion.checkpoint import load_checkpoint
from spiking_diffusion.classifier import load_classifier
from spiking_diffusion.cli import main
from spiking_diffusion.devices import resolve_device
from spiking_diffusion.train import TrainConfig, train_prior, train_vqsvae


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, even where a GPU is present."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_resolve_device_accepts_the_cpu_and_names_what_is_missing(no_cuda):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=f"device '{name}' is missing") as err:
            resolve_device(name)
        assert "\n" not in str(err.value) and "--device cpu" in str(err.value)
    with pytest.raises(DeviceError, match="'tpu' is not a device name"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="'meta' is not supported"):
        resolve_device("meta")


def test_a_cuda_index_beyond_the_devices_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"'cuda:3' is missing: this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_loading_on_a_missing_device_says_it_is_missing(no_cuda, tiny_checkpoint, tmp_path):
    for load in (lambda: load_checkpoint(tiny_checkpoint, "cuda"),
                 lambda: SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint, device="cuda"),
                 lambda: load_classifier(tmp_path, "cuda")):
        with pytest.raises(DeviceError, match="'cuda' is missing") as err:
            load()
        assert "corrupt" not in str(err.value)
    vq, den, config = load_checkpoint(tiny_checkpoint)
    with pytest.raises(DeviceError, match="missing"):
        SpikingDiffusionPipeline(vq, den, config, device="cuda")


def test_cli_and_training_refuse_a_missing_device_before_writing(no_cuda, tiny_checkpoint, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "s"), "--device", "cuda"]) == 2
    assert "device 'cuda' is missing" in capsys.readouterr().err
    base = dict(preset="tiny", limit=32, batch_size=16, progress=False, device="cuda")
    with pytest.raises(DeviceError, match="missing"):
        train_vqsvae(TrainConfig(stage="vqsvae", out=str(tmp_path / "v"), dataset="synthetic", **base))
    with pytest.raises(DeviceError, match="missing"):
        train_prior(TrainConfig(stage="prior", out=str(tmp_path / "p"), vqsvae=str(tiny_checkpoint), **base))
    assert not (tmp_path / "v").exists() and not (tmp_path / "p").exists() and not (tmp_path / "s.png").exists()
