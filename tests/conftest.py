"""Shared pytest configuration: markers, the slow-test switch, and isolated settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests decode images on the test's own thread unless they ask for DataLoader workers (the
# streaming tests do): a worker process per loader would slow every tiny training test.
os.environ.setdefault("UCVGL_NUM_WORKERS", "0")

REAL_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-pairs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests in CI unless UCVGL_RUN_SLOW=1."""
    if os.environ.get("CI", "").lower() in ("1", "true") and not os.environ.get("UCVGL_RUN_SLOW"):
        skip = pytest.mark.skip(reason="slow test: set UCVGL_RUN_SLOW=1 to run it in CI")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings isolated in ``tmp_path`` (work dir, data root, SQLite database)."""
    from ucvgl.shared.config import get_settings

    monkeypatch.setenv("UCVGL_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("UCVGL_DATA_ROOTS", str(tmp_path / "data"))
    (tmp_path / "data").mkdir(exist_ok=True)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def one_torch_thread():
    """One torch CPU thread for the test, restored after it: tiny models run fastest
    single-threaded, and on the two shared cores several OpenMP threads per process slow
    them down many times over. Packages opt in with an autouse fixture that requests it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_world():
    """``generate_world`` at the tests' small sizes (32 x 64 panoramas, 32 px tiles, one
    process): ``make_world(out, format, n_train, n_val, seed=0, **more)`` -> the world."""
    from ucvgl.services.synth import generate_world

    def make(out: Path, format: str, n_train: int, n_val: int, seed: int = 0, **more) -> Path:
        return generate_world(
            out,
            format,
            n_train,
            n_val,
            seed=seed,
            pano_size=(32, 64),
            sat_size=32,
            workers=1,
            **more,
        )

    return make


@pytest.fixture
def real_pairs_dir() -> Path:
    """The shared folder of 47 real pairs; skips the test when it is absent."""
    if not (REAL_PAIRS / "pairs.csv").exists():
        pytest.skip(f"real pairs not available at {REAL_PAIRS}")
    return REAL_PAIRS
