"""A job runner for launcher tests: joins the gloo group like the pipeline and sums ranks.

``params['behaviour']``: ``sum`` (default) returns the all-reduced sum of ``rank + 1``;
``wait_cancel`` reports stage ``waiting`` and checks for cancellation until it comes;
``fail_rank1`` raises on rank 1 after the all-reduce; ``loader_workers`` (one process, no
group) returns the DataLoader workers the rank's process may start and whether it is daemonic.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def run_job(
    job_type: str, dataset: Any, params: dict[str, Any], run_dir: Path, progress: Any
) -> dict[str, Any]:
    """Join the process group, all-reduce, then behave as ``params['behaviour']`` says."""
    import torch
    import torch.distributed as dist

    from ucvgl.services.training.distributed import init_distributed

    if params.get("behaviour") == "loader_workers":
        import multiprocessing

        from ucvgl.shared.config import Settings

        daemon = multiprocessing.current_process().daemon
        return {"loader_workers": Settings().loader_workers(), "daemon": daemon}
    info = init_distributed("cpu")
    total = torch.tensor([float(info.rank + 1)])
    dist.all_reduce(total)
    progress.update("summing", 0.5, f"rank {info.rank}")
    behaviour = params.get("behaviour", "sum")
    if behaviour == "fail_rank1" and info.rank == 1:
        raise ValueError("rank one broke")
    if behaviour == "wait_cancel":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            progress.update("waiting", 0.6)
            progress.check_cancelled()
            time.sleep(0.05)
    return {"sum": float(total.item()), "images": len(dataset.split("train").ground_paths)}
