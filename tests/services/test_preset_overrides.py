"""Preset overrides: keys checked, values parsed by the field type, file then --set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ucvgl.services.preset_overrides import (
    OverrideError,
    allowed_keys,
    parse_set_options,
    preset_from_settings,
    resolve_preset,
    settings_json,
)
from ucvgl.services.presets import PRESETS, get_preset
from ucvgl.shared.errors import ConfigError


def test_values_are_parsed_by_the_field_type():
    p = resolve_preset(
        "paper-small",
        "cvact",
        {
            "ground_size": "112,224",  # tuple[int, int]
            "satellite_size": "112",  # int
            "lr": "3e-4",  # float
            "hard_negatives": "false",  # bool
            "backbone": "convnext_tiny",  # str
            "amm_threshold": "{cvact: 0.03, vigor: 0.04}",  # dict[str, float] | None
            "amm_max_rounds": "40",  # int | None
            "cyclegan": {"epochs": 2},  # dict[str, Any], typed (YAML / JSON)
            "weights": "none",
        },
    )
    assert p.name == "paper-small"
    assert p.ground_size == (112, 224) and p.satellite_size == 112
    assert p.lr == pytest.approx(3e-4) and p.hard_negatives is False
    assert p.backbone == "convnext_tiny" and p.weights == "none"
    assert p.amm_threshold == {"cvact": 0.03, "vigor": 0.04}
    assert p.amm_max_rounds == 40 and p.cyclegan == {"epochs": 2}
    assert p.threshold_for("cvact") == pytest.approx(0.03)
    # untouched fields keep the preset's values
    assert p.batch_size == PRESETS["paper-small"].batch_size
    assert resolve_preset("cpu", None, {"amm_max_rounds": "none"}).amm_max_rounds is None
    assert resolve_preset("cpu", None, {"ground_size": [64, 128]}).ground_size == (64, 128)
    assert resolve_preset("cpu", None, {"ground_size": "64x128"}).ground_size == (64, 128)


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        ({"batchsize": "8"}, "batchsize", "allowed: amm_epochs_per_round"),
        ({"name": "x"}, "name", "choose another preset"),
        ({"lr": "fast"}, "lr", "float"),
        ({"batch_size": "1.5"}, "batch_size", "int"),
        ({"batch_size": True}, "batch_size", "int"),
        ({"hard_negatives": "maybe"}, "hard_negatives", "bool"),
        ({"ground_size": "1,2,3"}, "ground_size", "2 values"),
        ({"amm_threshold": "[1, 2]"}, "amm_threshold", "mapping"),
        ({"backbone": 3}, "backbone", "str"),
    ],
)
def test_bad_overrides_name_the_key(overrides, key, says):
    with pytest.raises(OverrideError) as info:
        resolve_preset("cpu", None, overrides)
    assert info.value.key == key
    assert repr(key) in str(info.value) and says in str(info.value)


def test_unknown_key_lists_every_allowed_one():
    with pytest.raises(OverrideError) as info:
        resolve_preset("tiny", None, {"nope": 1})
    for key in allowed_keys():
        assert key in str(info.value)
    assert "weights" in allowed_keys() and "name" not in allowed_keys()


def test_the_presets_own_checks_still_run():
    with pytest.raises(ConfigError, match="photometric"):
        resolve_preset("cpu", None, {"photometric": "wild"})


def test_config_file_then_set_options(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("batch_size: 16\nlr: 0.0005\nground_size: [64, 128]\nsafa: false\n")
    sets = parse_set_options(["batch_size=24", "weights=hub:fb_in1k"])
    p = resolve_preset("paper-base", "vigor", sets, config)
    assert (p.batch_size, p.lr, p.ground_size, p.safa) == (24, 5e-4, (64, 128), False)
    assert p.weights == "hub:fb_in1k"
    config.write_text("batch_size: 16\nlearning_rate: 1\n")
    with pytest.raises(OverrideError, match=r"learning_rate.*mine.yaml"):
        resolve_preset("cpu", None, None, config)
    config.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_preset("cpu", None, None, config)
    with pytest.raises(ConfigError, match="no such file"):
        resolve_preset("cpu", None, None, tmp_path / "nowhere.yaml")
    with pytest.raises(OverrideError, match="key=value"):
        parse_set_options(["batch_size"])


def test_saved_settings_rebuild_the_same_preset():
    p = resolve_preset("cpu", "cvusa", {"lr": "2e-3", "ground_size": "64,128"})
    again = preset_from_settings("cpu", settings_json(p), "cvusa")
    assert again == p
    # an older run.json without a field keeps the preset's value for it
    partial = {k: v for k, v in settings_json(p).items() if k != "weights"}
    assert preset_from_settings("cpu", partial, "cvusa").weights == get_preset("cpu").weights


def test_paper_presets_default_to_the_papers_imagenet_weights():
    assert get_preset("paper-small").weights == "hub:fb_in22k_ft_in1k"
    assert get_preset("paper-base").weights == "hub:fb_in22k_ft_in1k_384"
    assert get_preset("tiny").weights == "none" and get_preset("cpu").weights == "none"
    for name in PRESETS:  # CVACT is the paper presets' own format: same sizes and weights
        resolved = get_preset(name).for_format("cvact")
        assert (resolved.ground_size, resolved.weights) == (
            get_preset(name).ground_size,
            get_preset(name).weights,
        )


def test_resolution_imports_no_torch():
    code = (
        "import sys\n"
        "from ucvgl.services.preset_overrides import resolve_preset\n"
        "resolve_preset('paper-base', 'cvact', {'lr': '1e-3'})\n"
        "print('HEAVY', sorted(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
