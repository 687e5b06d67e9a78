"""docs/paper-settings.md against the resolved paper presets, and ``Preset.for_format``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ucvgl.services.presets import DEFAULT_AMM_THRESHOLD, PRESETS, get_preset
from ucvgl.shared.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "paper-settings.md"
PAPER = ("paper-small", "paper-base")
FORMATS = tuple(DEFAULT_AMM_THRESHOLD)


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table of ``text`` as a list of {header: cell} rows."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _value(cell: str) -> Any:
    """A table cell as a Python value: 224x224 -> [224, 224], true, 0.05, 'continuous'."""
    text = cell.strip().strip("`")
    if re.fullmatch(r"\d+x\d+", text):
        return [int(v) for v in text.split("x")]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _lookup(settings: dict[str, Any], path: str) -> Any:
    value: Any = settings
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"no setting {path!r}"
        value = value[key]
    return list(value) if isinstance(value, tuple) else value


def _checked_rows() -> list[tuple[str, str, str, Any]]:
    """(setting, preset name, format, expected value) for every checked cell of the table."""
    rows = _tables(DOC.read_text(encoding="utf-8"))[0]
    out = []
    for row in rows:
        if not row["field"]:
            continue
        formats, field = FORMATS, row["field"]
        if ":" in field:
            fmts, field = field.split(":")
            formats = tuple(fmts.split(","))
        cells = [c.strip() for c in row["preset"].split(" / ")]
        assert len(cells) in (1, 2), row
        for name, cell in zip(PAPER, cells * (3 - len(cells)), strict=True):
            for fmt in formats:
                out.append((f"{row['setting']} [{field}]", name, fmt, _value(cell)))
    return out


def test_the_docs_table_matches_the_resolved_paper_presets():
    rows = _checked_rows()
    assert len(rows) > 150  # the table was parsed (about 60 rows x presets x formats)
    wrong = []
    for setting, name, fmt, expected in rows:
        field = setting.split("[")[1].rstrip("]")
        got = _lookup(get_preset(name).for_format(fmt).to_dict(), field)
        if got != expected:
            wrong.append(f"{name} {fmt} {setting}: docs {expected!r}, preset {got!r}")
    assert not wrong, "\n".join(wrong)


def test_the_docs_table_names_every_setting_that_the_paper_fixes():
    fields = {r[0].split("[")[1].rstrip("]").split(".")[0] for r in _checked_rows()}
    for required in (
        "ground_size",
        "satellite_size",
        "drop_path_rate",
        "batch_size",
        "lr",
        "amm_lr",
        "amm_schedule",
        "intra_epochs",
        "cross_epochs",
        "amm_rounds",
        "hard_negatives",
        "intra_augment",
        "cyclegan",
        "amm_threshold",
        "bev_fov_deg",
        "coverage_switch",
        "min_epoch_fraction",
        "unlabelled_ratio",
        "unlabelled_after_switch",
    ):
        assert required in fields


def test_every_ablation_of_the_docs_is_a_valid_override():
    ablations = _tables(DOC.read_text(encoding="utf-8"))[1]
    assert len(ablations) == 10
    base = get_preset("paper-small")
    for row in ablations:
        for assignment in re.findall(r"`(\w+)=(\w+)`", row["setting"]):
            key, raw = assignment
            variant = base.replace(**{key: _value(raw)})
            assert getattr(variant, key) != getattr(base, key), row["paper row"]


def test_paper_presets_differ_per_format_and_stay_themselves_on_cvact():
    small = get_preset("paper-small")
    assert small.for_format("cvact").ground_size == small.ground_size == (224, 224)
    vigor = small.for_format("vigor")
    assert (vigor.ground_size, vigor.satellite_size) == ((384, 768), 384)
    assert vigor.threshold_for("vigor") == pytest.approx(0.035)
    assert small.for_format("cvusa").bev_fov_deg == 175.0
    # resolving twice is the same; another format afterwards is an error
    assert vigor.for_format("vigor") is vigor
    with pytest.raises(ConfigError, match="resolved for format 'vigor'"):
        vigor.for_format("cvusa")
    with pytest.raises(ConfigError, match="unknown dataset format"):
        small.for_format("kitti")


def test_overrides_survive_for_format_in_either_order():
    base = get_preset("paper-base")
    before = base.replace(ground_size=(128, 256)).for_format("vigor")
    after = base.for_format("vigor").replace(ground_size=(128, 256))
    assert before.ground_size == after.ground_size == (128, 256)
    assert before.satellite_size == 384  # the untouched fields still follow the format


def test_other_presets_are_unchanged_by_for_format():
    for name in ("tiny", "cpu"):
        for fmt in FORMATS:
            assert PRESETS[name].for_format(fmt) is PRESETS[name]


def test_paper_fov_matches_the_projection_defaults():
    from ucvgl.services.projection.defaults import default_bev_params

    for fmt in FORMATS:
        resolved = get_preset("paper-small").for_format(fmt)
        assert resolved.bev_fov_deg == default_bev_params(fmt).fov_deg
