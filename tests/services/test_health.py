"""Label-free stage checks: CycleGAN content retention, decoy match check, records."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.health import (
    HealthRecords,
    StageCheck,
    StageFailed,
    assess_cyclegan,
    assess_matches,
    check_cyclegan,
    decoy_paths,
    pairs_floor,
    read_prior,
    retention_floor,
)
from ucvgl.shared.errors import UcvglError


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _blocky(rng, n: int, size: int = 32) -> list[np.ndarray]:
    """Images with a coarse layout (8x8 blocks of random colour), like a BEV's structure."""
    return [
        np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((size // 8, size // 8, 1))).astype(
            np.uint8
        )
        for _ in range(n)
    ]


def _write(folder, images) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:03d}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def test_floors():
    assert retention_floor(1000) == pytest.approx(0.2)
    assert retention_floor(50) == pytest.approx(0.4)  # 20 x chance
    assert retention_floor(10) == pytest.approx(0.8)  # capped below 1
    assert pairs_floor(100) == 10 and pairs_floor(5000) == 50


def test_cyclegan_fakes_equal_to_bevs_pass(tmp_path):
    rng = np.random.default_rng(0)
    images = _blocky(rng, 40)
    bev = _write(tmp_path / "bev", images)
    fake = _write(tmp_path / "fake", images)
    tiles = _write(tmp_path / "tiles", _blocky(rng, 40))
    check = check_cyclegan(bev, fake, tiles)
    assert check.passed and check.action == "ok"
    assert check.numbers["retention"] == 1.0
    assert check.numbers["chance"] == pytest.approx(1 / 40, abs=1e-4)
    assert check.metric == "retention" and check.floor == pytest.approx(0.5)


def test_cyclegan_noise_fakes_fail_and_fall_back(tmp_path):
    rng = np.random.default_rng(1)
    bev = _write(tmp_path / "bev", _blocky(rng, 40))
    noise = [rng.integers(0, 255, (32, 32, 3)).astype(np.uint8) for _ in range(40)]
    fake = _write(tmp_path / "fake", noise)
    tiles = _write(tmp_path / "tiles", _blocky(rng, 40))
    check = check_cyclegan(bev, fake, tiles)
    assert not check.passed and check.action == "fallback"
    assert check.numbers["retention"] < check.floor
    assert "translate" in check.message and "ground <-> BEV" in check.message
    assert "floor" in check.message and "Try:" in check.message
    warned = check_cyclegan(bev, fake, tiles, mode="warn")
    assert warned.action == "warn" and not warned.passed


def test_cyclegan_retention_on_descriptors():
    rng = np.random.default_rng(2)
    bev = _unit(rng.standard_normal((200, 48)))
    tiles = _unit(rng.standard_normal((200, 48)))
    near = _unit(bev + 0.05 * rng.standard_normal(bev.shape))
    assert assess_cyclegan(bev, near, tiles).numbers["retention"] > 0.9
    far = _unit(rng.standard_normal((200, 48)))
    assert assess_cyclegan(bev, far, tiles).numbers["retention"] < 0.05
    with pytest.raises(ValueError, match="one fake per BEV"):
        assess_cyclegan(bev, far[:10], tiles)


def _pool(n: int, signal: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiles, decoys, and queries of which the first ``signal`` are noisy copies of a tile."""
    tiles = _unit(rng.standard_normal((n, 64)))
    decoys = _unit(rng.standard_normal((n, 64)))
    ground = _unit(rng.standard_normal((n, 64)))
    ground[:signal] = _unit(tiles[:signal] + 0.1 * rng.standard_normal((signal, 64)))
    return ground, tiles, decoys


def test_matches_pass_on_planted_pairs():
    rng = np.random.default_rng(3)
    ground, tiles, decoys = _pool(200, 120, rng)
    check = assess_matches(ground, tiles, decoys, threshold_T=0.025, stage="cold_start")
    assert check.passed and check.action == "ok"
    n = check.numbers
    assert n["pairs_at_fdr"] >= 100 and n["estimated_fdr"] <= 0.2
    assert n["mutual_targets"] > n["mutual_decoys"]
    assert n["amm_labels"] <= n["mutual"] <= 200
    assert check.floor == 10


def test_matches_at_chance_stop_unless_the_prior_has_pairs():
    rng = np.random.default_rng(4)
    ground, tiles, decoys = _pool(200, 0, rng)  # no true pair at all
    kw = dict(threshold_T=0.025, stage="cold_start")
    check = assess_matches(ground, tiles, decoys, **kw)
    assert not check.passed and check.action == "stop"
    assert check.numbers["pairs_at_fdr"] < 10
    # decoys match about as often as the real tiles: the false share is estimated high
    assert check.numbers["mutual_decoys"] > 0.5 * check.numbers["mutual_targets"]
    for text in ("stage cold_start", "model_matches", "floor 10", "decoys", "Try:"):
        assert text in check.message
    # After the cold start the projection prior's pairs are a way round...
    assert assess_matches(ground, tiles, decoys, prior={"pairs": 40}, **kw).action == "fallback"
    assert assess_matches(ground, tiles, decoys, prior={"pairs": 3}, **kw).action == "stop"
    # ...never for the selected model; and 'warn' only records.
    final = assess_matches(ground, tiles, decoys, prior={"pairs": 40}, final=True, **kw)
    assert final.action == "stop" and "No model is selected" in final.message
    assert assess_matches(ground, tiles, decoys, mode="warn", **kw).action == "warn"


def test_decoys_are_the_tiles_turned_and_written_once(tmp_path):
    rng = np.random.default_rng(5)
    tiles = _write(tmp_path / "tiles", _blocky(rng, 3, 16))
    out = decoy_paths(tiles, tmp_path / "decoys", 16)
    assert len(out) == 3 and all(p.exists() for p in out)
    a = np.asarray(Image.open(tiles[1]).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(out[1])), a[::-1, ::-1])
    stamp = out[0].stat().st_mtime_ns
    assert decoy_paths(tiles, tmp_path / "decoys", 16) == out
    assert out[0].stat().st_mtime_ns == stamp  # not rewritten
    decoy_paths(tiles, tmp_path / "decoys", 8)  # another size: rewritten
    assert Image.open(out[0]).size == (8, 8)


def _check(stage: str, action: str) -> StageCheck:
    return StageCheck(
        stage, "model_matches", action == "ok", "pairs_at_fdr", {"pairs_at_fdr": 3}, 10.0,
        action, f"stage {stage}: 3 pairs (floor 10)",
    )  # fmt: skip


def test_records_keep_the_latest_outcome_per_check(tmp_path):
    records = HealthRecords(tmp_path)
    assert records.all() == [] and records.failure() is None
    records.put(_check("translate", "ok"))
    records.put(_check("cold_start", "stop"))
    assert records.failure().stage == "cold_start"
    records.put(_check("cold_start", "fallback"))
    assert [c.stage for c in records.all()] == ["translate", "cold_start"]
    assert records.failure() is None
    assert records.get("cold_start", "model_matches").action == "fallback"
    assert StageCheck.from_dict(_check("select", "stop").to_dict()) == _check("select", "stop")
    with pytest.raises(ValueError, match="action"):
        _check("select", "maybe")


def test_stage_failed_carries_the_check(tmp_path):
    check = _check("select", "stop")
    exc = StageFailed(check, [_check("cold_start", "ok"), check], tmp_path / "report.json")
    assert isinstance(exc, UcvglError) and str(exc) == check.message
    result = exc.result()
    assert result["status"] == "failed" and result["failure"]["stage"] == "select"
    assert [c["stage"] for c in result["health"]] == ["cold_start", "select"]


def test_read_prior(tmp_path):
    assert read_prior(tmp_path) is None
    (tmp_path / "prior.json").write_text('{"pairs": 12}')
    assert read_prior(tmp_path) == {"pairs": 12}
    (tmp_path / "prior.json").write_text("{not json")
    assert read_prior(tmp_path) is None
