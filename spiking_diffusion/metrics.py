"""Kept for ``from spiking_diffusion import metrics``: the pure metrics live in
:mod:`spiking_diffusion.evaluation.metrics`, the energy account in :mod:`spiking_diffusion.evaluation.energy`."""
from .evaluation.energy import (E_AC_PJ, E_MAC_PJ, LayerCost, denoiser_layers, energy, expected_denoiser_calls,  # noqa: F401
                                vqsvae_decode_layers, vqsvae_encode_layers)
from .evaluation.metrics import (class_coverage_entropy, code_counts, codebook_usage, confident_share,  # noqa: F401
                                 feature_stats, fid_from_features, frechet_distance, frechet_distance_svd,
                                 precision_recall, ssim, too_few_for_frechet, usage_stats)
