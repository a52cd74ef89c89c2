"""Kept for ``from spiking_diffusion.evaluate import ...``: the evaluation lives in
:mod:`spiking_diffusion.evaluation` (one module per concern); these are its public names."""
from .errors import SpikingDiffusionError
from .evaluation.classifier_metrics import Reference, classifier_metrics
from .evaluation.inception import (FID_WEIGHTS, INCEPTION_SIZE, PROTOCOLS, TV_WEIGHTS, find_inception_weights,
                                   inception_features, inception_net, inception_section, weights_kind)
from .evaluation.report import headline, sampling_label, summary_markdown
from .evaluation.run import EvalConfig, evaluate, generate, model_section, reconstructions, write_code_usage
from .images import to_float as nchw
from .sampling import parse_temperature, temperature_label

__all__ = [
    "SpikingDiffusionError", "Reference", "classifier_metrics", "FID_WEIGHTS", "INCEPTION_SIZE", "PROTOCOLS",
    "TV_WEIGHTS", "find_inception_weights", "inception_features", "inception_net", "inception_section",
    "weights_kind", "headline", "sampling_label", "summary_markdown", "EvalConfig", "evaluate", "generate",
    "model_section", "reconstructions", "write_code_usage", "nchw", "parse_temperature", "temperature_label",
]
