"""``ucvgl data check`` / ``ucvgl data formats``, and format detection."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ucvgl.commands.data import register
from ucvgl.services.datasets import SUPPORTED_FORMATS, detect_format, load_dataset
from ucvgl.shared.errors import DatasetError


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keeps "data" a sub-command group
        pass

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_detect_format_for_every_layout(tmp_path, trees):
    trees.cvusa(tmp_path / "cvusa")
    trees.cvact(tmp_path / "cvact", ["a", "b"], [1], [2])
    trees.vigor(tmp_path / "vigor", cities=("Seattle",))
    trees.folder(tmp_path / "folder")
    for fmt in SUPPORTED_FORMATS:
        assert detect_format(tmp_path / fmt) == fmt
        assert load_dataset(tmp_path / fmt, "auto").format == fmt
    (tmp_path / "nothing").mkdir()
    assert detect_format(tmp_path / "nothing") is None
    assert detect_format(tmp_path / "does-not-exist") is None


def test_wrong_format_says_what_is_missing_and_what_it_looks_like(tmp_path, trees):
    trees.cvusa(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, "cvact")
    msg = str(err.value)
    assert "expected ACT_data.mat, which is missing" in msg and "looks like: cvusa" in msg
    with pytest.raises(DatasetError, match="splits/<City>/satellite_list.txt.*looks like: cvusa"):
        load_dataset(tmp_path, "vigor")
    with pytest.raises(DatasetError, match="ground/ and satellite/"):
        load_dataset(tmp_path, "folder")
    with pytest.raises(DatasetError, match="unknown dataset format 'kitti'"):
        load_dataset(tmp_path, "kitti")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing", "cvusa")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="looks like none of the supported formats"):
        load_dataset(tmp_path / "empty", "cvusa")


def test_empty_split_files_are_an_empty_dataset(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train-19zl.csv").write_text("\n")
    with pytest.raises(DatasetError, match=f"no usable panoramas.*{tmp_path}"):
        load_dataset(tmp_path, "cvusa")


def test_check_prints_counts_and_report(tmp_path, trees, cli):
    trees.cvusa(tmp_path, n_train=3, n_val=2)
    result = cli("data", "check", "--data", str(tmp_path), "--format", "cvusa")
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "no problems found" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("val "))
    assert line.split() == ["val", "2", "2", "2"]


def test_check_fails_then_skips(tmp_path, trees, cli):
    ids = trees.cvusa(tmp_path, n_train=3)
    (tmp_path / "bingmap" / "19" / f"{ids['train'][0]}.jpg").unlink()
    result = cli("data", "check", "--data", str(tmp_path))
    assert result.exit_code == 1
    assert "train-19zl.csv:1" in result.output and "--skip-invalid" in result.output
    result = cli("data", "check", "--data", str(tmp_path), "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{") :])
    assert payload["format"] == "cvusa" and payload["splits"]["train"]["ground"] == 2
    assert payload["report"]["skipped"] == 1 and payload["report"]["issues"][0]["line"] == 1


def test_check_vigor_options(tmp_path, trees, cli):
    trees.vigor(tmp_path, cities=("Chicago", "Seattle"))
    result = cli("data", "check", "--data", str(tmp_path), "--format", "vigor",
                 "--cities", "Chicago", "--protocol", "cross_area", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{") :])
    assert list(payload["splits"]) == ["test"]  # Chicago is a cross-area test city


def test_formats_lists_every_layout(cli):
    result = cli("data", "formats")
    assert result.exit_code == 0
    for fmt in SUPPORTED_FORMATS:
        assert f"\n{fmt} " in "\n" + result.output


class _Recorder:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.updates: list[tuple[str, float]] = []
        self.checks = 0
        self.cancel_after = cancel_after

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.updates.append((stage, fraction))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            from ucvgl.shared.errors import JobCancelled

            raise JobCancelled("cancelled")


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_progress_is_reported_and_cancellation_stops_the_read(tmp_path, trees, fmt):
    from ucvgl.shared.errors import JobCancelled

    {
        "cvusa": lambda p: trees.cvusa(p),
        "cvact": lambda p: trees.cvact(p, ["a", "b"], [1], [2]),
        "vigor": lambda p: trees.vigor(p, cities=("Seattle",)),
        "folder": lambda p: trees.folder(p),
    }[fmt](tmp_path)
    rec = _Recorder()
    load_dataset(tmp_path, fmt, validate_images=True, progress=rec)
    assert rec.updates and rec.updates[-1][1] == 1.0 and rec.checks >= 1
    with pytest.raises(JobCancelled):
        load_dataset(tmp_path, fmt, progress=_Recorder(cancel_after=0))


def test_vigor_splits_without_city_folders(tmp_path, trees):
    trees.vigor(tmp_path, cities=("Seattle",))
    (tmp_path / "Seattle").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="a city folder"):
        load_dataset(tmp_path, "vigor")
