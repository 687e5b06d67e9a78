"""``scripts/gpu_check.sh`` in its CPU dry run writes every JSON file with its keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_writes_its_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCVGL_")}
    env.update(UCVGL_GPU_CHECK_CPU="1", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["mode"] == "cpu dry run"
    names = [s["name"] for s in summary["steps"]]
    assert names == ["cuda_tests", "matching_bf16", "evaluate_bf16", "pipeline"]
    assert all(s["status"] == 0 for s in summary["steps"]), summary
    tests = json.loads((out / "cuda_tests.json").read_text())
    assert tests["tests"] > 0 and tests["failures"] == 0 and tests["errors"] == 0
    matching = json.loads((out / "matching_bf16.json").read_text())
    (row,) = matching["rows"]
    assert row["method"] == "ours" and row["pairs"] > 0 and row["ratio_to_floor"] > 0
    evaluate = json.loads((out / "evaluate_bf16.json").read_text())
    (ours,) = [r for r in evaluate["rows"] if r["method"] == "ours"]
    assert ours["n"] == 2000 and {"r1", "r5", "r10", "r1p"} <= set(ours)
    pipeline = json.loads((out / "pipeline.json").read_text())
    assert pipeline["status"] == "ok" and pipeline["recall"]["evaluated"] == 8
    stages = {s["name"] for s in pipeline["stages"]}
    assert {"cyclegan", "cold_start", "amm", "evaluate", "index"} <= stages
    assert not list((REPO / "benchmarks" / "results").glob("gpu_check_*.json"))
