"""A test-only job runner with ``pipeline.run_job``'s signature and result shape.

It lets the worker tests run real Celery workers quickly: it reports progress, honours
cancellation, fails on request, and writes the files a real result points at (a model
checkpoint, a labels CSV, an index manifest) from the dataset's real ids.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any


def run_job(
    job_type: str, dataset: Any, params: dict[str, Any], run_dir: Path, progress: Any
) -> dict[str, Any]:
    """Fake ``ucvgl.services.pipeline.run_job``."""
    steps, delay = int(params.get("steps", 3)), float(params.get("sleep", 0.0))
    if job_type in os.environ.get("FAKE_RUNNER_SLOW_TYPES", "").split(","):
        steps, delay = 200, 0.1  # a long job for cancellation tests through a real worker
    for i in range(steps):
        progress.check_cancelled()
        progress.update(job_type, (i + 1) / steps, f"step {i + 1}/{steps}")
        time.sleep(delay)
    if params.get("fail"):
        raise ValueError(f"fake failure requested: {params['fail']}")
    result: dict[str, Any] = {"steps": steps, "mode": "unsupervised", "preset": "tiny"}
    split = dataset.split("train")
    if job_type in ("cold_start", "pipeline"):
        model_path = run_dir / "model" / "selected.pt"
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model_path.write_bytes(b"weights")
        result["model_path"] = str(model_path)
    if job_type in ("amm_round", "pipeline"):
        labels_path = run_dir / "labels" / "round_001.csv"
        labels_path.parent.mkdir(parents=True, exist_ok=True)
        with open(labels_path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ground_id", "satellite_id", "margin", "similarity", "correct"])
            for g, gid in enumerate(split.ground_ids):
                s = (g + 1) % len(split.satellite_ids) if g == 0 else g  # one wrong label
                writer.writerow([gid, split.satellite_ids[s], 0.1 + 0.05 * g, 0.8, int(s == g)])
        n = len(split.ground_ids)
        result["rounds"] = [
            {
                "round": 1,
                "threshold": 0.05,
                "mutual": n + 1,
                "labels": n,
                "correct": n - 1,
                "margin_histogram": {"edges": [0.0, 0.5, 1.0], "counts": [n, 0]},
                "labels_path": str(labels_path),
            }
        ]
    if job_type in ("index", "pipeline"):
        index_dir = run_dir / "index"
        index_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"kind": "flat", "count": len(split.satellite_ids)}
        (index_dir / "manifest.json").write_text(json.dumps(manifest))
        result["index_dir"] = str(index_dir)
    if job_type in ("evaluate", "pipeline"):
        result["recall"] = {"r1": 50.0, "r5": 100.0, "r10": 100.0, "r1p": 100.0}
    return result
