"""``load_dataset`` reports one overall fraction that never steps back (job progress bars)."""

from __future__ import annotations

import pytest

from ucvgl.services.datasets import SUPPORTED_FORMATS, load_dataset


class _Recorder:
    """A :class:`~ucvgl.services.progress.Progress` that keeps every update."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, float, str]] = []

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.updates.append((stage, fraction, message))

    def check_cancelled(self) -> None:
        return None


def _build(trees, fmt: str, root) -> None:
    {
        "cvusa": lambda p: trees.cvusa(p),
        "cvact": lambda p: trees.cvact(p, ["a", "b", "c"], [1, 2], [3], test_ids=["t1"]),
        "vigor": lambda p: trees.vigor(p, cities=("Chicago", "Seattle")),
        "folder": lambda p: trees.folder(p),
    }[fmt](root)


@pytest.mark.parametrize("validate_images", [False, True])
@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_fractions_are_non_decreasing_and_end_at_one(tmp_path, trees, fmt, validate_images):
    _build(trees, fmt, tmp_path)
    rec = _Recorder()
    load_dataset(tmp_path, fmt, validate_images=validate_images, progress=rec)
    fractions = [f for _, f, _ in rec.updates]
    assert len(fractions) >= 2
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert all(b >= a for a, b in zip(fractions, fractions[1:], strict=False)), rec.updates
    assert fractions[-1] == 1.0 and fractions[0] < 1.0
    stages = {s for s, _, _ in rec.updates}
    # the stage text still names each step; validation is a step of its own
    assert ("validate images" in stages) is validate_images
    assert len(stages) == (2 if validate_images else 1)
