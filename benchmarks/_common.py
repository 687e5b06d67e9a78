"""Helpers shared by the benchmark scripts: tables, JSON results, memory and GEMM rate.

Benchmarks are scripts, never part of the test run. Each prints a table and writes a JSON
file under ``benchmarks/results/`` (ignored by git) with the machine it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Print ``rows`` as a Markdown table with ``columns`` (missing cells blank); return it."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            if value != value:  # NaN
                return "n/a"
            if abs(value) >= 100:
                return f"{value:,.0f}"
            if abs(value) >= 1:
                return f"{value:.2f}"
            return f"{value:.3g}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    table = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = [
        "| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |"
        for line in table
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def machine_info() -> dict[str, Any]:
    """CPU, cores, load average and library versions, stored with every result."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except ImportError:
        pass
    return info


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus machine info and a timestamp) to results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    body = {
        "benchmark": name,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        **payload,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str))
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of THIS process so far, in MB (ru_maxrss is KiB on Linux).

    Run each method in a fresh subprocess (:func:`run_worker`) so the peak is per method.
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / (1024.0 * 1024.0)


def current_rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def measure_gemm_flops(
    m: int = 4096,
    n: int = 4096,
    k: int = 1024,
    repeats: int = 5,
    device: str = "cpu",
    stat: str = "median",
) -> float:
    """Float32 matrix-multiply rate (FLOP/s) of ``[m,k] @ [k,n]`` on ``device``.

    This is the "GEMM floor" rate: any exact all-pairs similarity method must do at least
    2*m*n*k flops per block. ``stat='median'`` of ``repeats`` timed runs (after one
    warm-up) is robust on a shared machine; ``'best'`` gives the peak rate.
    """
    import statistics

    import torch

    if stat not in ("median", "best"):
        raise ValueError(f"stat must be 'median' or 'best', got {stat!r}")
    a = torch.randn(m, k, device=device)
    b = torch.randn(n, k, device=device)
    out = torch.empty(m, n, device=device)
    torch.mm(a, b.T, out=out)
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b.T, out=out)
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    seconds = min(times) if stat == "best" else statistics.median(times)
    return 2.0 * m * n * k / seconds


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(script: Path, args: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python script args...`` in a fresh process; it must print one JSON line last.

    Returns the parsed JSON, or {"error": ...} when the process failed or timed out.
    """
    cmd = [sys.executable, str(script), *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])
