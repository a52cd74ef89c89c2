"""User-facing errors: one clear message, no deep traceback (the CLI prints just the message)."""


class SpikingDiffusionError(Exception):
    """A problem the user can fix: bad input, a missing data set, a corrupt checkpoint."""


class CheckpointError(SpikingDiffusionError):
    """A checkpoint directory that is missing, corrupt, truncated or does not match its config."""


class DataError(SpikingDiffusionError):
    """A data set that cannot be found or loaded."""


class DeviceError(SpikingDiffusionError):
    """A requested device (e.g. ``cuda``) that this machine or PyTorch build does not have."""


class SettingError(SpikingDiffusionError, ValueError):
    """A setting (of the sampler, of a call) outside its accepted range or of the wrong type."""


def check_choice(name: str, value, choices: tuple):
    """``value`` when it is one of ``choices``; else raises :class:`SettingError` naming them."""
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value
