"""project_dataset: one BEV file per panorama, resumable, atomic, cancellable, north-aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.projection import BEVParams, panorama_to_bev, project_dataset
from ucvgl.shared.errors import ConfigError, DatasetError, JobCancelled


def _write_pano(path: Path, rng: np.random.Generator, hw=(16, 32)) -> np.ndarray:
    pixels = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _split(paths: list[Path], headings=None) -> ViewSplit:
    return ViewSplit(
        ground_ids=[p.stem for p in paths],
        ground_paths=paths,
        satellite_ids=[],
        satellite_paths=[],
        ground_heading_deg=None if headings is None else np.asarray(headings, np.float32),
    )


@pytest.fixture
def dataset(tmp_path, settings) -> CrossViewDataset:
    rng = np.random.default_rng(0)
    root = tmp_path / "data" / "world"
    train = [root / "pano" / f"g{i}.png" for i in range(5)]
    val = [root / "pano" / f"v{i}.png" for i in range(2)]
    for i, p in enumerate(train + val):
        _write_pano(p, rng, (16, 32) if i % 2 == 0 else (8, 16))  # two sizes
    splits = {"train": _split(train), "val": _split(val + train[:1])}  # g0 in both splits
    return CrossViewDataset(
        name="world", format="folder", root=root, panorama="full", splits=splits
    )


class _Recorder:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.updates: list[tuple[str, float, str]] = []
        self.checks = 0
        self.cancel_after = cancel_after

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.updates.append((stage, fraction, message))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled("stop")


def test_writes_one_bev_per_panorama_matching_the_projection(dataset, tmp_path):
    out = tmp_path / "bev"
    params = BEVParams(out_size=12)
    progress = _Recorder()
    paths = project_dataset(dataset, out, params, batch_size=3, progress=progress)
    stems = [p.stem for p in paths]
    assert stems == ["g0", "g1", "g2", "g3", "g4", "v0", "v1"]  # g0 once
    assert all(p.parent == out and p.suffix == ".png" and p.is_file() for p in paths)
    assert progress.updates[-1][1] == pytest.approx(1.0)
    assert progress.checks == 3  # between batches of 3
    # Each file is the projection of its panorama, rounded to 8 bits.
    pano = np.asarray(Image.open(dataset.splits["train"].ground_paths[1]))
    x = torch.from_numpy(pano.copy()).permute(2, 0, 1)[None].float() / 255
    expected = panorama_to_bev(x, params)[0].permute(1, 2, 0).numpy() * 255
    written = np.asarray(Image.open(paths[1])).astype(np.float64)
    assert written.shape == (12, 12, 3)
    assert np.abs(written - expected).max() <= 0.5 + 1e-3


def test_rerun_skips_finished_files_and_never_trusts_temporaries(dataset, tmp_path):
    out = tmp_path / "bev"
    params = BEVParams(out_size=8)
    first = project_dataset(dataset, out, params, splits=["train"])
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    first[2].unlink()  # as if the run had been killed before writing it
    (out / f".{first[2].name}.abc.tmp").write_bytes(b"\x89PNG half")  # a killed write
    progress = _Recorder()
    second = project_dataset(dataset, out, params, splits=["train"], progress=progress)
    assert second == first
    assert progress.updates[0][2].startswith("4/5 already")
    assert Image.open(first[2]).size == (8, 8)
    for p in first:
        if p != first[2]:
            assert p.stat().st_mtime_ns == mtimes[p]
    with pytest.raises(ConfigError, match="other parameters"):
        project_dataset(dataset, out, BEVParams(fov_deg=160, out_size=8), splits=["train"])


def test_cancel_between_batches_leaves_only_complete_files(dataset, tmp_path):
    out = tmp_path / "bev"
    with pytest.raises(JobCancelled):
        project_dataset(
            dataset, out, BEVParams(out_size=8), batch_size=2, progress=_Recorder(cancel_after=1)
        )
    done = sorted(out.glob("*.png"))
    assert [p.stem for p in done] == ["g0", "g1"]
    assert all(Image.open(p).size == (8, 8) for p in done)
    assert not list(out.glob(".*.tmp"))


def test_heading_rolls_the_panorama_to_north(tmp_path, settings):
    rng = np.random.default_rng(1)
    north = tmp_path / "north" / "p.png"
    pixels = _write_pano(north, rng, (16, 32))
    east = tmp_path / "east" / "q.png"
    east.parent.mkdir()
    # The same scene with its centre column looking east (heading 90): roll left 8 columns.
    Image.fromarray(np.roll(pixels, -8, axis=1)).save(east)
    ds = CrossViewDataset(
        "h", "folder", tmp_path, "full", {"a": _split([north]), "b": _split([east], [90.0])}
    )
    a, b = project_dataset(ds, tmp_path / "out", BEVParams(out_size=10))
    np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_jpeg_output_and_errors(dataset, tmp_path):
    paths = project_dataset(dataset, tmp_path / "j", BEVParams(out_size=8), image_format="jpg")
    assert all(p.suffix == ".jpg" and Image.open(p).format == "JPEG" for p in paths)
    clash = dataset.splits["train"].ground_paths[0].parent.parent / "other" / "g0.png"
    _write_pano(clash, np.random.default_rng(2))
    dataset.splits["extra"] = _split([clash])
    with pytest.raises(DatasetError, match="share the file stem 'g0'"):
        project_dataset(dataset, tmp_path / "k", BEVParams(out_size=8))
    broken = clash.parent / "broken.png"
    broken.write_bytes(b"not an image")
    dataset.splits["extra"] = _split([broken])
    with pytest.raises(DatasetError, match="broken.png"):
        project_dataset(dataset, tmp_path / "k", BEVParams(out_size=8), splits=["extra"])
    with pytest.raises(KeyError, match="no split 'test'"):
        project_dataset(dataset, tmp_path / "k", BEVParams(out_size=8), splits=["test"])
