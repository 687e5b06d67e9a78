"""The source check's decision (``ucvgl.services.source_check.decide``)."""

from __future__ import annotations

import pytest

from ucvgl.services.presets import get_preset
from ucvgl.services.source_check import decide
from ucvgl.shared.errors import ConfigError


@pytest.mark.parametrize(
    ("source", "prior", "floor", "cold_start"),
    [
        (70, 385, 10.0, True),  # a few confident pairs, far fewer than raw pixels find
        (385, 385, 10.0, False),  # as many as the prior: the source is used as it is
        (400, 385, 10.0, False),
        (9, None, 10.0, True),  # no prior: the floor is the bar
        (10, None, 10.0, False),
        (5, 3, 10.0, True),  # more than a tiny prior, still under the floor
    ],
)
def test_auto_compares_the_source_with_the_prior_and_the_floor(source, prior, floor, cold_start):
    d = decide("auto", source_pairs=source, prior_pairs=prior, floor=floor, max_fdr=0.1)
    assert d.cold_start is cold_start
    assert str(source) in d.reason and ("0.10" in d.reason)
    assert d.to_dict()["source_pairs"] == source


@pytest.mark.parametrize(("setting", "cold_start"), [("skip", False), ("always", True)])
def test_skip_and_always_need_no_measurement(setting, cold_start):
    d = decide(setting, source_pairs=None, prior_pairs=385, floor=10.0, max_fdr=0.1)
    assert d.cold_start is cold_start and d.source_pairs is None and setting in d.reason


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="init_cold_start"):
        decide("sometimes", source_pairs=1, prior_pairs=1, floor=1.0, max_fdr=0.1)
    with pytest.raises(ConfigError, match="init_cold_start"):
        get_preset("tiny").replace(init_cold_start="sometimes")
