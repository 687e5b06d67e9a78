"""Progress and cancellation contract between long-running stages and their callers.

A stage receives a :class:`Progress` and calls ``progress.update(stage, fraction)`` as it
works, and ``progress.check_cancelled()`` between steps (which raises
:class:`ucvgl.shared.errors.JobCancelled` when the caller asked it to stop). The CLI passes
a tqdm-backed implementation, the Celery worker one that writes the job row.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What a long stage reports to: the CLI, a Celery task, or nothing."""

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Report that ``stage`` is ``fraction`` (0..1) done."""

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the caller asked this job to stop."""


class NullProgress:
    """A :class:`Progress` that reports nowhere and never cancels."""

    def update(self, stage: str, fraction: float, message: str = "") -> None:  # noqa: D102
        return None

    def check_cancelled(self) -> None:  # noqa: D102
        return None


class ScaledProgress:
    """Maps a sub-stage's 0..1 onto ``[start, end]`` of a parent :class:`Progress`."""

    def __init__(self, parent: Progress, start: float, end: float, stage: str | None = None):
        self.parent, self.start, self.end, self.stage = parent, start, end, stage

    def update(self, stage: str, fraction: float, message: str = "") -> None:  # noqa: D102
        f = min(max(fraction, 0.0), 1.0)
        self.parent.update(self.stage or stage, self.start + (self.end - self.start) * f, message)

    def check_cancelled(self) -> None:  # noqa: D102
        self.parent.check_cancelled()
