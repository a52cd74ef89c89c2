"""Evaluation of a checkpoint, one concern per module:

  metrics             pure functions on features, probabilities and tokens (Fréchet distance, precision
                      / recall, confident share, class entropy, codebook usage, SSIM)
  energy              the energy account of a generation (SOPs vs MACs), shared with the studio
  inception           Inception-v3 features and the FID under two labelled protocols
  classifier_metrics  metrics in the feature space of our own classifier, with the real-data floor
  report              the headline figures and the markdown summary
  run                 :func:`evaluate`: generate, measure, write report.json / summary.md, record

The command line (``python -m spiking_diffusion evaluate``) is in :mod:`spiking_diffusion.cli`.
"""
__all__ = ["EvalConfig", "evaluate"]


def __getattr__(name):
    """``EvalConfig`` and ``evaluate`` load :mod:`.run` (and with it SciPy and the classifier) when first
    asked for, so that ``import spiking_diffusion`` (which reads :mod:`.energy`) stays light."""
    if name in __all__:
        from . import run
        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
