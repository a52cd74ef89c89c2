"""The sampler's settings: one dataclass with defaults, bounds, checks, labels and parsing."""
import argparse
import ast
from dataclasses import replace
from pathlib import Path

import pytest

from spiking_diffusion.errors import SettingError, SpikingDiffusionError
from spiking_diffusion.sampling import (SETTINGS, SamplerConfig, check_order, check_steps, parse_temperature,
                                        temperature_label)


def test_defaults_are_the_papers_sampler():
    assert SamplerConfig() == SamplerConfig.paper()
    assert SamplerConfig.paper().to_dict() == {"temperature": 0.65, "temperature_end": None, "top_p": 1.0,
                                               "corrector_steps": 0, "corrector_cells": 5, "corrector_temperature": 0.5,
                                               "guidance": 0.0}
    assert set(SETTINGS) == set(SamplerConfig().to_dict())


@pytest.mark.parametrize("name,bad,good", [
    ("temperature", [0, 0.0009, -1, float("nan"), float("inf"), 5.01, "hot", None, True], [0.001, 0.01, 5, "0.8"]),
    ("temperature_end", [0, 0.0005, float("nan"), 6], [None, 0.001, 0.1, 5]),
    ("top_p", [0, 0.005, 1.5, -0.1], [0.01, 1]),
    ("corrector_steps", [-1, 2.5, 101], [0, 100, 4.0]),
    ("corrector_cells", [0, 1.5], [1, 49, 500]),           # no upper bound without a grid
    ("corrector_temperature", [0, 0.0005, 9], [0.001, 0.05]),
    ("guidance", [-0.1, 4.5, float("nan"), "strong"], [0, 0.5, 4]),
])
def test_every_setting_is_checked_when_made(name, bad, good):
    for v in bad:
        with pytest.raises(SettingError, match=name) as info:
            SamplerConfig(**{name: v})
        assert isinstance(info.value, ValueError) and isinstance(info.value, SpikingDiffusionError)
        assert repr(v) in str(info.value)
    for v in good:
        got = getattr(SamplerConfig(**{name: v}), name)
        assert got == (None if v is None else SETTINGS[name].kind(float(v)))
        assert type(got) is (type(None) if v is None else SETTINGS[name].kind)


def test_cells_are_checked_against_the_grid():
    with pytest.raises(SettingError, match=r"corrector_cells must be an integer in 1\.\.49; got 50"):
        SamplerConfig(corrector_cells=50).check_grid(49)
    with pytest.raises(SettingError, match=r"1\.\.16"):
        SamplerConfig().override(16, corrector_cells=17)
    assert SamplerConfig(corrector_cells=49).check_grid(49).corrector_cells == 49


def test_override_skips_none_and_a_lone_temperature_is_constant():
    base = SamplerConfig(temperature=1.4, temperature_end=0.1, corrector_steps=60)
    assert base.override() == base and base.override(top_p=None) == base
    assert base.override(temperature=0.8) == replace(base, temperature=0.8, temperature_end=None)
    assert base.override(temperature_end=0.2) == replace(base, temperature_end=0.2)
    assert base.override(temperature=1.0, temperature_end=0.5).temperature_end == 0.5
    with pytest.raises(SettingError, match="unknown sampling settings: \\['temprature'\\]"):
        base.override(temprature=1.0)


def test_from_info_reads_the_stored_settings_and_ignores_the_rest():
    info = {"dataset": "mnist", "temperature": 1.4, "temperature_end": 0.1, "corrector_steps": 60}
    assert SamplerConfig.from_info(info) == SamplerConfig(temperature=1.4, temperature_end=0.1, corrector_steps=60)
    assert SamplerConfig.from_info({}) == SamplerConfig.paper()
    with pytest.raises(SettingError, match="top_p"):
        SamplerConfig.from_info({"top_p": 2})


def test_labels_and_parsing():
    assert SamplerConfig().label() == "temperature 0.65, top-p 1"
    assert (SamplerConfig(1.4, 0.1, 1.0, 60, 8, 0.05).label()
            == "temperature 1.4..0.1, top-p 1, corrector 60 rounds x 8 cells at temperature 0.05")
    assert temperature_label(0.8, 0.8) == "0.8" and temperature_label(1.0, 0.5) == "1..0.5"
    assert parse_temperature("1.0..0.5") == (1.0, 0.5) and parse_temperature("0.8") == (0.8, None)
    for bad, word in (("warm", "START..END"), ("0", "temperature"), ("1.0..0", "temperature_end")):
        with pytest.raises(SettingError, match=word):
            parse_temperature(bad)


def test_steps_and_order():
    assert check_steps(7, 49) == 7 and check_order("confidence") == "confidence"
    assert check_steps("7", 49) == 7 and check_steps(7.0, 49) == 7    # as every setting: a form's text too
    for bad in (0, 50, 2.5, True, "seven", float("nan"), float("inf"), None):
        with pytest.raises(SettingError, match=r"steps must be an integer in 1\.\.49"):
            check_steps(bad, 49)
    with pytest.raises(SettingError, match="order"):
        check_order("raster")


def test_the_command_line_has_one_flag_per_setting():
    from spiking_diffusion.cli import add_sampling_arguments, sampling_arguments

    p = argparse.ArgumentParser()
    add_sampling_arguments(p)
    args = p.parse_args(["--temperature", "1.2", "--corrector-cells", "3", "--guidance", "0.5"])
    assert sampling_arguments(args) == {"temperature": 1.2, "temperature_end": None, "top_p": None,
                                        "corrector_steps": None, "corrector_cells": 3, "corrector_temperature": None,
                                        "guidance": 0.5}


def test_no_library_module_imports_the_command_line():
    """cli.py parses arguments and calls the library; nothing in the library imports it (no circles)."""
    root = Path(__file__).resolve().parent.parent / "spiking_diffusion"
    for path in root.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert not any(n == "cli" or n.endswith(".cli") for n in names), path
            if isinstance(node, ast.Import):
                assert not any(a.name.endswith(".cli") for a in node.names), path


def test_a_setting_keeps_whole_numbers_exact_and_refuses_what_it_cannot_hold():
    """Whole numbers are read as ints, not through a float (2**60 + 1 stayed 2**60 before); a float
    setting given an int too large for a float is refused with the setting's message, not an
    OverflowError."""
    import numpy as np

    from spiking_diffusion.errors import Setting

    seed, lr = Setting("seed", int, 0, 2**63 - 1), Setting("lr", float, 0, None, open_lo=True)
    assert seed.check(2**60 + 1) == 2**60 + 1 and seed.check(np.int64(7)) == 7 and seed.check(" 17 ") == 17
    assert seed.check(2**63 - 1) == 2**63 - 1 and seed.check(3.0) == 3 and isinstance(lr.check(1), float)
    for bad in (2**63, -1, 1.9, "1.5", "abc", True, None, float("nan")):
        with pytest.raises(SettingError, match=r"seed must be an integer in 0\.\.9223372036854775807"):
            seed.check(bad)
    for bad in (10**400, "inf", 0):
        with pytest.raises(SettingError, match="lr must be a number > 0"):
            lr.check(bad)
