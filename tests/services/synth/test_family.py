"""The registry of named synthetic worlds and ``ucvgl synth --world/--set/--list-worlds``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ucvgl.commands.synth import parse_set_options, register
from ucvgl.services.synth import META_FILE, WorldSettings
from ucvgl.services.synth.family import (
    WORLDS,
    generate_named_world,
    get_world,
    registry_table,
    world_names,
)
from ucvgl.services.synth.settings import knob_names
from ucvgl.services.synth.writers import FORMATS, SynthSpec
from ucvgl.shared.errors import ConfigError

SMALL = {"pano_size": (32, 64), "sat_size": 32, "workers": 1}


def test_registry_splits_tuning_and_report_worlds() -> None:
    tune, report = world_names("tune"), world_names("report")
    assert len(tune) >= 3 and len(report) >= 4
    assert set(tune) | set(report) == set(WORLDS) and not set(tune) & set(report)
    assert all(n.startswith("tune-") for n in tune)
    assert all(n.startswith("report-") for n in report)
    import ucvgl.services.synth.family as family

    assert "tuned on ``tune-*`` worlds only" in family.__doc__
    assert "reported on ``report-*`` worlds only" in family.__doc__


def test_every_entry_is_valid_and_worlds_differ_in_settings() -> None:
    for name, w in WORLDS.items():
        assert w.name == name and w.format in FORMATS and w.description
        assert isinstance(w.settings, WorldSettings)
        SynthSpec(  # the spec it generates is valid
            w.format,
            4,
            2,
            w.seed,
            w.pano_size,
            w.sat_size,
            w.band_deg,
            w.cities or (("Chicago",) if w.format == "vigor" else ()),
            None,
            w.jpeg_quality,
            w.settings,
        )
    looks = [(w.settings, w.jpeg_quality) for w in WORLDS.values()]
    assert len(set(looks)) == len(looks)  # not only the seed differs
    assert len({w.seed for w in WORLDS.values()}) == len(WORLDS)
    report = [w for w in WORLDS.values() if w.role == "report"]
    tune = [w for w in WORLDS.values() if w.role == "tune"]
    assert len({w.format for w in report}) >= 3  # reported across layouts
    # some report-world settings occur in no tuning world
    for knob in ("style", "tile_extent_m"):
        seen = {getattr(w.settings, knob) for w in tune}
        assert any(getattr(w.settings, knob) not in seen for w in report), knob
    assert any(not w.settings.record_geometry for w in report)


def test_registry_table_lists_every_world() -> None:
    table = registry_table()
    for name, w in WORLDS.items():
        assert name in table and w.description in table
    assert "record_geometry=False" in table and "style=flat" in table


def test_generate_named_world_uses_the_entry(tmp_path: Path) -> None:
    w = get_world("report-2")
    root = generate_named_world("report-2", tmp_path / "r2", 4, 2, **SMALL)
    meta = json.loads((root / META_FILE).read_text())
    assert meta["format"] == w.format and meta["seed"] == w.seed
    assert meta["params"]["world"] == w.settings.params()
    assert meta["params"]["pano_size"] == [32, 64]
    with pytest.raises(ConfigError, match="unknown synthetic world 'report-99'.*tune-1"):
        generate_named_world("report-99", tmp_path / "x", 4, 2)


def test_generate_named_world_hides_the_geometry_of_unrecorded_worlds(tmp_path: Path) -> None:
    w = get_world("report-1")
    assert not w.settings.record_geometry
    root = generate_named_world("report-1", tmp_path / "r1", 3, 1, **SMALL)
    meta = json.loads((root / META_FILE).read_text())
    assert "camera_height_m" not in meta and "tile_extent_m" not in meta
    assert "bev_fov_deg" not in meta
    assert "camera_height_m" not in meta["params"]["world"]


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keeps "synth" a sub-command
        pass

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["synth", *args])


def test_parse_set_options_types_and_errors() -> None:
    values = parse_set_options(["camera_height_m=2.5", "style=flat", "record_geometry=false"])
    assert values == {"camera_height_m": 2.5, "style": "flat", "record_geometry": False}
    with pytest.raises(ConfigError, match="knob=value"):
        parse_set_options(["camera_height_m"])


def test_cli_set_rejects_unknown_knobs_and_bad_values(cli, tmp_path: Path) -> None:
    out = str(tmp_path / "w")
    result = cli("--out", out, "--set", "fog=3")
    assert result.exit_code == 1
    assert "unknown world knob fog" in result.output
    assert all(k in result.output for k in knob_names())
    result = cli("--out", out, "--set", "camera_height_m=tall")
    assert result.exit_code == 1 and "camera_height_m" in result.output
    result = cli("--out", out, "--set", "style=cartoon")
    assert result.exit_code == 1 and "style must be one of textured, flat" in result.output
    result = cli("--out", out, "--set", "gps_offset_m=-1")
    assert result.exit_code == 1 and "gps_offset_m" in result.output
    result = cli("--out", out, "--world", "report-2", "--seed", "4")
    assert result.exit_code == 1 and "--seed" in result.output
    result = cli("--out", out, "--world", "nowhere-1")
    assert result.exit_code == 1 and "report-1" in result.output
    assert not (tmp_path / "w").exists()


def test_cli_list_worlds(cli) -> None:
    result = cli("--list-worlds")
    assert result.exit_code == 0
    assert all(name in result.output for name in WORLDS)
    assert "tune-* worlds only" in result.output


def test_cli_world_with_set_generates_and_records(cli, tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["--out", str(out), "--train", "3", "--val", "1", "--pano-size", "32x64"]
    result = cli(
        *args, "--sat-size", "32", "--workers", "1", "--world", "tune-2", "--set", "gps_offset_m=2"
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / META_FILE).read_text())
    expected = get_world("tune-2").settings.with_updates({"gps_offset_m": 2.0})
    assert meta["params"]["world"] == expected.params()
    assert meta["format"] == "cvusa" and meta["params"]["jpeg_quality"] == 80
    assert "no longer tune-2" in result.output
    plain = tmp_path / "plain"
    args = ["--out", str(plain), "--train", "3", "--val", "1", "--pano-size", "32x64"]
    result = cli(*args, "--sat-size", "32", "--workers", "1", "--set", "record_geometry=off")
    assert result.exit_code == 0, result.output
    meta = json.loads((plain / META_FILE).read_text())
    assert meta["format"] == "cvact" and "camera_height_m" not in meta
