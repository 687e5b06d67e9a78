"""``ucvgl project`` on a tiny folder-layout dataset."""

from __future__ import annotations

import json

import numpy as np
import typer
from PIL import Image
from typer.testing import CliRunner

from ucvgl.commands import project as project_command


def _app() -> typer.Typer:
    """An app holding only ``project`` (a callback keeps it a command group)."""
    app = typer.Typer()
    app.callback()(lambda: None)
    project_command.register(app)
    return app


def _folder_dataset(root):
    rng = np.random.default_rng(0)
    (root / "ground").mkdir(parents=True)
    (root / "satellite").mkdir()
    for i in range(3):
        pano = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        Image.fromarray(pano).save(root / "ground" / f"p{i}.png")
        tile = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(tile).save(root / "satellite" / f"s{i}.png")
    return root


def test_project_command_writes_bevs_and_refuses_other_params(tmp_path):
    root = _folder_dataset(tmp_path / "world")
    out = tmp_path / "bev"
    args = ["project", "--data", str(root), "--format", "folder", "--out", str(out)]
    result = CliRunner().invoke(_app(), [*args, "--size", "12", "--fov", "160", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "3 BEV images" in result.output
    written = sorted(out.glob("*.png"))
    assert [p.stem for p in written] == ["p0", "p1", "p2"]
    assert all(Image.open(p).size == (12, 12) for p in written)
    record = json.loads((out / "bev_params.json").read_text())
    assert record["params"]["fov_deg"] == 160 and record["params"]["out_size"] == 12

    again = CliRunner().invoke(_app(), [*args, "--size", "16"])
    assert again.exit_code == 1
    assert "other parameters" in again.output

    missing = CliRunner().invoke(_app(), [*args, "--size", "12", "--fov", "160", "--split", "val"])
    assert missing.exit_code == 1 and "no split 'val'" in missing.output
