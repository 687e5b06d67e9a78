"""Helpers shared by the benchmark scripts: tables, JSON results, memory and GEMM rate.

Benchmarks are scripts, never part of the test run. Each prints a table and writes a JSON
file under ``benchmarks/results/`` (ignored by git) with the machine it ran on.

The scale benchmarks (``matching.py``, ``evaluate.py``) run every method in a fresh worker
process (:func:`run_method`) so that peak memory is per method; the worker side times the
method between two GEMM-rate measurements (:func:`measure_method`). Both share the
arguments of :func:`add_scale_args` (device, dtype, sizes of the planted features...).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

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


DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")


def torch_dtype(name: str):
    """The torch dtype called ``name`` (one of :data:`DTYPES`)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {name!r}")
    return getattr(torch, name)


def measure_gemm_flops(
    m: int = 4096,
    n: int = 4096,
    k: int = 1024,
    repeats: int = 5,
    device: str = "cpu",
    stat: str = "median",
    dtype: str = "float32",
    inner: int = 10,
) -> float:
    """Matrix-multiply rate (FLOP/s) of ``[m,k] @ [k,n]`` in ``dtype`` on ``device``.

    This is the "GEMM floor" rate: any exact all-pairs similarity method must do at least
    2*m*n*k flops per block. ``stat='median'`` of ``repeats`` timed runs (after one
    warm-up) is robust on a shared machine; ``'best'`` gives the peak rate. On CUDA each
    timed run is ``inner`` back-to-back multiplies between two CUDA events (one multiply
    of this shape takes well under a millisecond there); half dtypes are CUDA only.
    """
    import statistics

    import torch

    if stat not in ("median", "best"):
        raise ValueError(f"stat must be 'median' or 'best', got {stat!r}")
    tdtype = torch_dtype(dtype)
    if device == "cpu" and dtype != "float32":
        raise ValueError("the CPU rate is measured in float32 only")
    a = torch.randn(m, k, device=device, dtype=tdtype)
    b = torch.randn(n, k, device=device, dtype=tdtype)
    out = torch.empty(m, n, device=device, dtype=tdtype)
    torch.mm(a, b.T, out=out)
    times = []
    if device == "cpu":
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b.T, out=out)
            times.append(time.perf_counter() - t)
    else:
        for _ in range(2):  # warm-up: clocks up, kernels loaded
            torch.mm(a, b.T, out=out)
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                torch.mm(a, b.T, out=out)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0 / inner)
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


def planted_features(n: int, dim: int, noise: float, seed: int):
    """Planted pairs: gallery [n, dim] ~ N(0, I), queries are noisy copies.

    Query i = gallery[positives[i]] + noise * N(0, I).

    Generated in chunks of 8192 rows: the only full-size tensors are the two outputs (at
    1M x 1024 that is 4 GB each, float32, on the host), no N x d temporaries.

    Returns:
        query float32 [n, dim], gallery float32 [n, dim], positives int64 [n] (a permutation).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    gallery = torch.randn(n, dim, generator=gen)
    positives = torch.randperm(n, generator=gen)
    query = torch.empty(n, dim)
    for c in range(0, n, 8192):
        idx = positives[c : c + 8192]
        query[c : c + len(idx)] = gallery[idx]
        query[c : c + len(idx)].add_(torch.randn(len(idx), dim, generator=gen), alpha=noise)
    return query, gallery, positives


def add_set_option(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """``--set KEY=VALUE`` (repeatable; ``args.set``): preset overrides, as ``ucvgl pipeline
    --set``; parse them with ``ucvgl.services.preset_overrides.parse_set_options``."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"preset override of {applies_to} (repeatable), as `ucvgl pipeline --set`",
    )


def add_scale_args(parser: argparse.ArgumentParser, methods: Sequence[str]) -> None:
    """Arguments shared by the scale benchmarks and passed on to their workers."""
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--noise", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where `ours` (and the baselines that can) compute; default cpu",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="compute dtype of `ours`; float16/bfloat16 need --device cuda",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per worker, seconds")
    parser.add_argument("--worker", choices=tuple(methods), help=argparse.SUPPRESS)


def check_scale_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill defaults and refuse impossible device/dtype choices with an argparse error."""
    if args.threads is None:
        args.threads = os.cpu_count() or 1
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.dtype != "float32" and args.device != "cuda":
        parser.error(f"--dtype {args.dtype} needs --device cuda (the CPU computes in float32 only)")
    if args.device == "cuda" and not args.worker:  # workers: the parent checked (and a
        import torch  # CPU-only worker of a CUDA run should not initialise CUDA)

        if not torch.cuda.is_available():
            parser.error(
                "--device cuda: CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use --device cpu"
            )


def worker_argv(
    args: argparse.Namespace, method: str, n: int, extra: Sequence[str] = ()
) -> list[str]:
    """The worker command line for ``method`` at size ``n`` (the shared arguments)."""
    return [
        "--worker",
        method,
        "--n",
        str(n),
        "--dim",
        str(args.dim),
        "--noise",
        str(args.noise),
        "--seed",
        str(args.seed),
        "--block-size",
        str(args.block_size),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        *extra,
    ]


def run_method(
    script: Path, args: argparse.Namespace, method: str, n: int, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Run one method at one size in a fresh worker; return its row (failures as a note)."""
    print(f"running {method} at N={n} ...", flush=True)
    row = run_worker(script, worker_argv(args, method, n, extra), timeout=args.timeout)
    row.setdefault("n", n)
    row.setdefault("method", method)
    if "error" in row:
        row["note"] = row.pop("error")
    print(json.dumps(row), flush=True)
    return row


def setup_worker(threads: int, faiss_threads: bool = False) -> None:
    """Thread counts of a worker process (torch, and faiss's OpenMP when asked)."""
    import torch

    torch.set_num_threads(threads)
    if faiss_threads:
        try:
            import faiss

            faiss.omp_set_num_threads(threads)
        except ImportError:
            pass


def measure_method(
    run: Callable[[], T], *, n: int, dim: int, device: str = "cpu", dtype: str = "float32"
) -> tuple[T, dict[str, Any]]:
    """Time ``run()`` between two GEMM-rate measurements in this process.

    ``device``/``dtype`` are where and how the method computes: the GEMM floor is
    ``2 * n * n * dim`` flops at the BEST [4096, dim] x [dim, 4096] rate measured in this
    process (the fastest of the timed multiplies just before and just after the run: a
    loaded machine only lowers a rate, and a lowered rate would give ratios below 1.0).
    On CUDA the run is followed by a synchronize, and ``peak_gpu_mb`` is
    torch.cuda.max_memory_allocated during the run (memory allocated outside torch, e.g.
    by faiss, is not seen).

    Returns:
        run()'s value and the fields seconds, peak_rss_mb (host, whole process so far),
        inputs_rss_mb (host peak before the run), peak_gpu_mb (CUDA only), gemm_gflops,
        gemm_gflops_before_after, gemm_floor_s, ratio_to_floor, cpu_cores_used, device,
        dtype.
    """
    cuda = device == "cuda"
    rss_inputs = peak_rss_mb()
    rate_before = measure_gemm_flops(4096, 4096, dim, device=device, dtype=dtype, stat="best")
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    value = run()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    fields: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "inputs_rss_mb": rss_inputs,
    }
    if cuda:
        fields["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    rate_after = measure_gemm_flops(4096, 4096, dim, device=device, dtype=dtype, stat="best")
    rate = max(rate_before, rate_after)
    floor = 2.0 * n * n * dim / rate
    fields.update(
        {
            "gemm_gflops": rate / 1e9,
            "gemm_gflops_before_after": [rate_before / 1e9, rate_after / 1e9],
            "gemm_floor_s": floor,
            "ratio_to_floor": seconds / floor,
            "cpu_cores_used": cpu / seconds,
        }
    )
    return value, fields


def result_columns(metrics: Sequence[str], device: str) -> list[str]:
    """Table columns of a scale benchmark; device, dtype and GPU memory on CUDA runs."""
    where = ["device", "dtype"] if device == "cuda" else []
    gpu = ["peak_gpu_mb"] if device == "cuda" else []
    return [
        "n",
        "method",
        *where,
        "seconds",
        "peak_rss_mb",
        *gpu,
        *metrics,
        "gemm_gflops",
        "gemm_floor_s",
        "ratio_to_floor",
        "cpu_cores_used",
        "note",
    ]


def finish(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    metrics: Sequence[str],
    *,
    hidden: Sequence[str] = ("worker",),
    tables: Sequence[tuple[list[dict[str, Any]], Sequence[str]]] = (),
    **payload: Any,
) -> Path:
    """Print the results table (and ``tables``), write results/<args.name>.json."""
    table = print_table(rows, result_columns(metrics, args.device))
    for extra_rows, columns in tables:
        if extra_rows:
            print_table(extra_rows, columns)
    return write_json(
        args.name,
        {
            "args": {k: v for k, v in vars(args).items() if k not in hidden},
            "rows": rows,
            **payload,
            "table": table,
        },
    )


def selection_summary(selection: dict | None) -> dict | None:
    """The criterion-vs-recall part of a report's ``selection`` (None without it)."""
    if not selection or "spearman_r1" not in selection:
        return None
    return {
        "spearman_r1": selection["spearman_r1"],
        "spearman_r5": selection.get("spearman_r5"),
        "chosen": selection.get("chosen"),
        "best_by_recall": selection.get("best_by_recall"),
        "candidates": [
            {k: c.get(k) for k in ("name", "r1", "r5")}
            | {"criterion": (c.get("criterion") or {}).get("score")}
            for c in selection.get("candidates", [])
        ],
    }
