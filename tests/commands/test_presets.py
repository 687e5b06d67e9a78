"""`ucvgl presets list | show`: the resolved settings, as text and JSON."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ucvgl.cli import app
from ucvgl.services.preset_overrides import resolve_preset, settings_json
from ucvgl.services.presets import PRESETS


def test_presets_list_names_every_preset():
    result = CliRunner().invoke(app, ["presets", "list"])
    assert result.exit_code == 0
    assert result.output.split() == list(PRESETS)


def test_presets_show_json_is_the_resolved_preset():
    for fmt in ("cvusa", "cvact", "vigor", "folder"):
        result = CliRunner().invoke(
            app, ["presets", "show", "paper-base", "--format", fmt, "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == settings_json(resolve_preset("paper-base", fmt))
    result = CliRunner().invoke(
        app, ["presets", "show", "cpu", "--json", "--set", "lr=2e-3", "--weights", "hub"]
    )
    shown = json.loads(result.output)
    assert shown["lr"] == 2e-3 and shown["weights"] == "hub" and shown["name"] == "cpu"


def test_presets_show_text_and_errors():
    result = CliRunner().invoke(app, ["presets", "show", "paper-small"])
    assert result.exit_code == 0
    assert any(
        line.split() == ["weights", '"hub:fb_in22k_ft_in1k"'] for line in result.output.splitlines()
    )
    result = CliRunner().invoke(app, ["presets", "show", "huge"])
    assert result.exit_code == 1 and "unknown preset 'huge'" in result.output
    result = CliRunner().invoke(app, ["presets", "show", "cpu", "--format", "kitti"])
    assert result.exit_code != 0 and "--format" in result.output
    result = CliRunner().invoke(app, ["presets", "show", "cpu", "--set", "bacbone=x"])
    assert result.exit_code == 1 and "'bacbone'" in result.output and "backbone" in result.output
