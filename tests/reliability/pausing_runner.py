"""The real ``pipeline.run_job``, able to stop at a stage so a test can kill the worker there.

With ``PAUSE_AT_STAGE`` set, the first progress update whose stage starts with it writes the
file ``PAUSE_MARKER`` and then blocks (the job's heartbeat thread keeps beating), until the
test kills the process or, with ``PAUSE_RELEASE`` set, until that file exists (then the job
goes on).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ucvgl.services.pipeline import run_job as pipeline_run_job


class PausingProgress:
    """Forwards to ``inner``; blocks at the first update of ``stage_prefix`` until ``release``
    exists (forever without one)."""

    def __init__(
        self, inner: Any, stage_prefix: str, marker: Path, release: Path | None = None
    ) -> None:
        self.inner, self.stage_prefix, self.marker = inner, stage_prefix, marker
        self.release, self.paused = release, False

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.inner.update(stage, fraction, message)
        if self.stage_prefix and stage.startswith(self.stage_prefix) and not self.paused:
            self.paused = True
            self.inner.flush()
            self.marker.write_text(f"{stage} {fraction}\n")
            while self.release is None or not self.release.exists():
                time.sleep(0.2)  # without a release file the test SIGKILLs this process

    def check_cancelled(self) -> None:
        self.inner.check_cancelled()


def run_job(
    job_type: str, dataset: Any, params: dict[str, Any], run_dir: Path, progress: Any
) -> dict[str, Any]:
    """``pipeline.run_job``, pausing at ``PAUSE_AT_STAGE`` when it is set."""
    import torch

    torch.set_num_threads(1)
    stage = os.environ.get("PAUSE_AT_STAGE", "")
    if stage:
        release = os.environ.get("PAUSE_RELEASE")
        progress = PausingProgress(
            progress, stage, Path(os.environ["PAUSE_MARKER"]), Path(release) if release else None
        )
    return pipeline_run_job(job_type, dataset, params, run_dir, progress)


def timed_fake_run_job(
    job_type: str, dataset: Any, params: dict[str, Any], run_dir: Path, progress: Any
) -> dict[str, Any]:
    """The fake runner of tests/worker with ``FAKE_STEPS`` steps of ``FAKE_SLEEP`` seconds."""
    from fake_runner import run_job as fake_run_job

    steps = int(os.environ.get("FAKE_STEPS", "3"))
    delay = float(os.environ.get("FAKE_SLEEP", "0"))
    return fake_run_job(
        job_type, dataset, {**params, "steps": steps, "sleep": delay}, run_dir, progress
    )
