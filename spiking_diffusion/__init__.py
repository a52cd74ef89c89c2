"""Spiking-Diffusion: a vector-quantised discrete diffusion model built from spiking neurons
(Liu et al. 2023), in PyTorch + SpikingJelly."""
from .config import PRESETS, DenoiserConfig, VQSVAEConfig, get_preset
from .evaluation.energy import denoiser_macs
from .denoiser import SpikingDenoiser
from .diffusion import AbsorbingDiffusion, GenerationTrace, StepState
from .errors import CheckpointError, DataError, DeviceError, SettingError, SpikingDiffusionError
from .pipeline import PipelineOutput, SpikeReport, SpikingDiffusionPipeline
from .sampling import SamplerConfig
from .vqsvae import VQSVAE

__version__ = "0.1.0"
__all__ = [
    "PRESETS", "DenoiserConfig", "VQSVAEConfig", "denoiser_macs", "get_preset", "SpikingDenoiser",
    "AbsorbingDiffusion", "GenerationTrace", "StepState", "CheckpointError", "DataError", "DeviceError",
    "SpikingDiffusionError", "SettingError", "PipelineOutput", "SpikeReport", "SpikingDiffusionPipeline",
    "SamplerConfig", "VQSVAE",
]
