"""Benchmark: mutual matching at scale, ours vs the authors' dense NumPy method vs faiss.

    .venv/bin/python benchmarks/matching.py --sizes 10000,35000,100000 --dim 1024
    .venv/bin/python benchmarks/matching.py --device cuda --dtype float32   # adds N = 1M

Features are random with planted true pairs: satellite tiles ~ N(0, I), ground image i =
tile perm[i] + noise * N(0, I) (noise 7 gives a true-pair cosine of ~0.14, about the
largest random cosine at d = 1024, so mutual matching is neither trivial nor hopeless).
Every method runs in a fresh subprocess on the same features (same seed, generated on the
host), so its peak RSS (which includes the 2 x N x d float32 inputs) is its own. Reported:

* time of the matching itself (feature generation excluded),
* peak RSS of the process and, for methods on CUDA, peak GPU memory
  (torch.cuda.max_memory_allocated; for faiss, the device memory it holds after the
  search, from cudaMemGetInfo, since faiss allocates outside torch),
* pairs found and their precision against the planted truth,
* the GEMM floor: 2 * N * N * d flops at the torch.mm rate ([4096, d] x [d, 4096]) where
  the method computes (the CPU in float32, or the GPU in the compute dtype, timed with
  CUDA events): the BEST rate of the timed multiplies in the same worker just before and
  just after its run (a loaded machine only lowers a rate), and the ratio time / floor,
* ``passes``: how many N x N similarity products the method computes. ``ours`` and
  ``dense`` compute one and take the top-2 along both axes from it; faiss's library call
  has no such mode and runs two full searches (ground -> tiles, tiles -> ground), so its
  ``ratio_to_floor`` counts both and ``ratio_per_pass`` (= ratio / passes) compares the
  speed of one search with ours like for like,
* the CPU cores the method actually got (CPU time / wall time), a measure of the load.

Methods: ``ours`` (ucvgl.services.matching.mutual_match, streaming blocks, on --device in
--dtype), ``dense`` (the authors' approach: a full N x N similarity matrix plus an N x N
partition copy for the top-2 in NumPy; always on the CPU in float32, as the authors run
it; skipped above --dense-max because it needs 8 * N^2 bytes), ``faiss`` (exact
inner-product search, k = 2 in both directions: IndexFlatIP on the CPU; with --device cuda
GpuIndexFlatIP when this faiss has GPUs, float16 storage for --dtype float16, else
float32; this is the baseline library call, not our faiss backend). Pairs of all methods
are compared where more than one ran (with --dtype float16/bfloat16, near-ties may differ).

Sizes default to 10k, 35k, 100k, plus 1M with --device cuda (``ours`` only by default:
--dense-max 20000, --faiss-max 100000 on CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    add_scale_args,
    check_scale_args,
    finish,
    measure_method,
    planted_features,
    run_method,
    setup_worker,
    torch_dtype,
)

METHODS = ("ours", "dense", "faiss")
CPU_SIZES = "10000,35000,100000"
CUDA_SIZES = "10000,35000,100000,1000000"


def _pairs_dense(ground, sat) -> tuple[np.ndarray, np.ndarray]:
    """The authors' approach: dense N x N similarity in NumPy, a second N x N for top-2."""
    g = ground.numpy()
    s = sat.numpy()
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    sim = g @ s.T  # N x N float32
    g_best = sim.argmax(axis=1)
    s_best = sim.argmax(axis=0)
    top2 = np.partition(sim, -2, axis=1)[:, -2:]  # second N x N matrix
    margin = top2[:, 1] - top2[:, 0]
    mutual = s_best[g_best] == np.arange(len(g))
    del margin
    return np.nonzero(mutual)[0], g_best[mutual]


def faiss_dtype(dtype: str) -> str:
    """faiss GPU stores float32 or float16 vectors (no bfloat16)."""
    return "float16" if dtype == "float16" else "float32"


def _pairs_faiss(
    ground, sat, device: str = "cpu", dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """faiss exact inner-product search, k = 2 in both directions.

    Returns ground indices, satellite indices of the mutual pairs, and on CUDA the device
    memory (MB) held with both indexes searched (None on the CPU).
    """
    import faiss

    g = ground.numpy() / np.linalg.norm(ground.numpy(), axis=1, keepdims=True)
    s = sat.numpy() / np.linalg.norm(sat.numpy(), axis=1, keepdims=True)
    held_mb = None
    if device == "cuda":
        import torch

        free_before = torch.cuda.mem_get_info()[0]
        resources = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = torch.cuda.current_device()
        config.useFloat16 = faiss_dtype(dtype) == "float16"

        def flat_ip(dim: int):
            return faiss.GpuIndexFlatIP(resources, dim, config)
    else:

        def flat_ip(dim: int):
            return faiss.IndexFlatIP(dim)

    sat_index = flat_ip(s.shape[1])
    sat_index.add(s)
    _, g_nn = sat_index.search(g, 2)
    ground_index = flat_ip(g.shape[1])
    ground_index.add(g)
    _, s_nn = ground_index.search(s, 2)
    if device == "cuda":
        held_mb = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
    g_best, s_best = g_nn[:, 0], s_nn[:, 0]
    mutual = s_best[g_best] == np.arange(len(g))
    return np.nonzero(mutual)[0], g_best[mutual], held_mb


def _pairs_ours(ground, sat, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    from ucvgl.services.matching import mutual_match

    res = mutual_match(
        ground,
        sat,
        block_size=args.block_size,
        device=args.device,
        compute_dtype=torch_dtype(args.dtype),
    )
    return res.ground_idx.numpy(), res.satellite_idx.numpy()


def worker(args: argparse.Namespace) -> None:
    """Run one method on one size; print one JSON line."""
    setup_worker(args.threads, faiss_threads=True)
    ground, sat, perm = planted_features(args.n, args.dim, args.noise, args.seed)
    truth = perm.numpy()
    faiss_where = (
        (args.device, faiss_dtype(args.dtype)) if args.device == "cuda" else ("cpu", "float32")
    )
    methods = {  # where it computes (device, dtype), and the run returning (gi, si, GPU MB)
        "ours": ((args.device, args.dtype), lambda: (*_pairs_ours(ground, sat, args), None)),
        "dense": (("cpu", "float32"), lambda: (*_pairs_dense(ground, sat), None)),
        "faiss": (faiss_where, lambda: _pairs_faiss(ground, sat, *faiss_where)),
    }
    (device, dtype), run = methods[args.worker]
    (gi, si, held_mb), fields = measure_method(
        run, n=args.n, dim=args.dim, device=device, dtype=dtype
    )
    notes = []
    if args.worker == "faiss" and args.dtype == "bfloat16":
        notes.append("faiss has no bfloat16: float32")
    if held_mb is not None:
        fields["peak_gpu_mb"] = held_mb
        notes.append("GPU MB: held after the search (faiss allocates outside torch)")
    if args.save_pairs:
        np.save(args.save_pairs, np.stack([gi, si]).astype(np.int64))
    correct = int((truth[gi] == si).sum())
    passes = 2 if args.worker == "faiss" else 1  # faiss: one full search each way
    fields["passes"] = passes
    fields["ratio_per_pass"] = fields["ratio_to_floor"] / passes
    row = {
        "n": args.n,
        "method": args.worker,
        **fields,
        "pairs": int(len(gi)),
        "correct": correct,
        "precision": correct / max(len(gi), 1),
        "block_size": args.block_size if args.worker == "ours" else None,
        "threads": args.threads,
    }
    if notes:
        row["note"] = "; ".join(notes)
    print(json.dumps(row))


def skip_reason(method: str, n: int, args: argparse.Namespace) -> str | None:
    """Why ``method`` does not run at size ``n`` (None: it runs)."""
    if method == "dense" and n > args.dense_max:
        gib = 2 * 4 * n * n / 2**30
        return f"skipped: needs 2 x N^2 float32 = {gib:.0f} GiB"
    if method == "faiss":
        if n > args.faiss_max:
            return "skipped (--faiss-max)"
        try:
            import faiss
        except ImportError:
            return "skipped: faiss is not installed"
        if args.device == "cuda" and (
            not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1
        ):
            return "skipped: faiss has no GPU support in this install"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=None, help=f"default: {CPU_SIZES} (cpu), {CUDA_SIZES} (cuda)"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--dense-max", type=int, default=20000, help="largest N for the dense method"
    )
    parser.add_argument(
        "--faiss-max",
        type=int,
        default=None,
        help="largest N for faiss (default: no limit on cpu, 100000 on cuda)",
    )
    parser.add_argument("--name", default="matching", help="results/<name>.json")
    add_scale_args(parser, METHODS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save-pairs", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_scale_args(parser, args)
    if args.worker:
        worker(args)
        return
    if args.sizes is None:
        args.sizes = CUDA_SIZES if args.device == "cuda" else CPU_SIZES
    if args.faiss_max is None:
        args.faiss_max = 100_000 if args.device == "cuda" else 10**9
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    rows: list[dict] = []
    checks: list[dict] = []
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            pair_files: dict[str, Path] = {}
            for method in methods:
                reason = skip_reason(method, n, args)
                if reason:
                    rows.append({"n": n, "method": method, "note": reason})
                    continue
                pairs_path = Path(tmp) / f"{method}_{n}.npy"
                row = run_method(script, args, method, n, ["--save-pairs", str(pairs_path)])
                if "pairs" in row:
                    pair_files[method] = pairs_path
                rows.append(row)
            if "ours" in pair_files:
                ours = np.load(pair_files["ours"])
                for other in ("dense", "faiss"):
                    if other in pair_files:
                        same = bool(np.array_equal(ours, np.load(pair_files[other])))
                        checks.append(
                            {"n": n, "compared": f"ours vs {other}", "identical_pairs": same}
                        )
                        print(f"N={n}: ours pairs == {other} pairs: {same}", flush=True)
    finish(
        args,
        rows,
        ["pairs", "precision", "passes", "ratio_per_pass"],
        hidden=("worker", "n", "save_pairs"),
        tables=[(checks, ["n", "compared", "identical_pairs"])],
        checks=checks,
    )


if __name__ == "__main__":
    main()
