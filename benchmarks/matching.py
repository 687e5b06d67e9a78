"""Benchmark: mutual matching at scale, ours vs the authors' dense NumPy method vs faiss.

    .venv/bin/python benchmarks/matching.py --sizes 10000,35000,100000 --dim 1024

Features are random with planted true pairs: satellite tiles ~ N(0, I), ground image i =
tile perm[i] + noise * N(0, I) (noise 7 gives a true-pair cosine of ~0.14, about the
largest random cosine at d = 1024, so mutual matching is neither trivial nor hopeless).
Every method runs in a fresh subprocess on the same features (same seed), so its peak RSS
(which includes the 2 x N x d float32 inputs) is its own. Reported:

* time of the matching itself (feature generation excluded),
* peak RSS of the process,
* pairs found and their precision against the planted truth,
* the GEMM floor: 2 * N * N * d flops at the float32 torch.mm rate ([4096, d] x [d, 4096],
  median of 5) measured in the same worker just before and just after its run (mean of
  the two: on a shared machine the rate moves with the load), and the ratio time / floor,
* the CPU cores the method actually got (CPU time / wall time), a measure of the load.

Methods: ``ours`` (ucvgl.services.matching.mutual_match, streaming blocks), ``dense``
(the authors' approach: a full N x N similarity matrix plus an N x N partition copy for
the top-2; skipped above --dense-max because it needs 8 * N^2 bytes), ``faiss``
(IndexFlatIP, k = 2 search in both directions; this is the baseline library call, not
our faiss backend). Pairs of all methods are compared where more than one ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    cpu_seconds,
    measure_gemm_flops,
    peak_rss_mb,
    print_table,
    run_worker,
    write_json,
)

METHODS = ("ours", "dense", "faiss")


def make_features(n: int, dim: int, noise: float, seed: int):
    """Planted pairs, generated in chunks (no N x d temporaries). Returns torch tensors."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    sat = torch.randn(n, dim, generator=gen)
    perm = torch.randperm(n, generator=gen)
    ground = torch.empty(n, dim)
    for c in range(0, n, 8192):
        idx = perm[c : c + 8192]
        ground[c : c + len(idx)] = sat[idx]
        ground[c : c + len(idx)].add_(torch.randn(len(idx), dim, generator=gen), alpha=noise)
    return ground, sat, perm.numpy()


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


def _pairs_faiss(ground, sat) -> tuple[np.ndarray, np.ndarray]:
    """faiss exact inner-product search, k = 2 in both directions."""
    import faiss

    g = ground.numpy() / np.linalg.norm(ground.numpy(), axis=1, keepdims=True)
    s = sat.numpy() / np.linalg.norm(sat.numpy(), axis=1, keepdims=True)
    sat_index = faiss.IndexFlatIP(s.shape[1])
    sat_index.add(s)
    _, g_nn = sat_index.search(g, 2)
    ground_index = faiss.IndexFlatIP(g.shape[1])
    ground_index.add(g)
    _, s_nn = ground_index.search(s, 2)
    g_best, s_best = g_nn[:, 0], s_nn[:, 0]
    mutual = s_best[g_best] == np.arange(len(g))
    return np.nonzero(mutual)[0], g_best[mutual]


def _pairs_ours(ground, sat, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    from ucvgl.services.matching import mutual_match

    res = mutual_match(ground, sat, block_size=block_size, device="cpu")
    return res.ground_idx.numpy(), res.satellite_idx.numpy()


def worker(args: argparse.Namespace) -> None:
    """Run one method on one size; print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    ground, sat, truth = make_features(args.n, args.dim, args.noise, args.seed)
    rss_inputs = peak_rss_mb()
    rate_before = measure_gemm_flops(4096, 4096, args.dim)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if args.worker == "ours":
        gi, si = _pairs_ours(ground, sat, args.block_size)
    elif args.worker == "dense":
        gi, si = _pairs_dense(ground, sat)
    else:
        gi, si = _pairs_faiss(ground, sat)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    peak = peak_rss_mb()
    if args.save_pairs:
        np.save(args.save_pairs, np.stack([gi, si]).astype(np.int64))
    rate_after = measure_gemm_flops(4096, 4096, args.dim)
    rate = (rate_before + rate_after) / 2
    floor = 2.0 * args.n * args.n * args.dim / rate
    print(
        json.dumps(
            {
                "n": args.n,
                "method": args.worker,
                "seconds": seconds,
                "peak_rss_mb": peak,
                "inputs_rss_mb": rss_inputs,
                "pairs": int(len(gi)),
                "correct": int((truth[gi] == si).sum()),
                "gemm_gflops": rate / 1e9,
                "gemm_gflops_before_after": [rate_before / 1e9, rate_after / 1e9],
                "cpu_cores_used": cpu / seconds,
                "gemm_floor_s": floor,
                "ratio_to_floor": seconds / floor,
                "block_size": args.block_size if args.worker == "ours" else None,
                "threads": args.threads,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,35000,100000")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--noise", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--dense-max", type=int, default=20000, help="largest N for the dense method"
    )
    parser.add_argument("--faiss-max", type=int, default=10**9, help="largest N for faiss")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per worker, seconds")
    parser.add_argument("--name", default="matching", help="results/<name>.json")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save-pairs", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is None:
        import os

        args.threads = os.cpu_count() or 1
    if args.worker:
        worker(args)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
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
                if method == "dense" and n > args.dense_max:
                    gib = 2 * 4 * n * n / 2**30
                    rows.append(
                        {
                            "n": n,
                            "method": method,
                            "note": f"skipped: needs 2 x N^2 float32 = {gib:.0f} GiB",
                        }
                    )
                    continue
                if method == "faiss" and n > args.faiss_max:
                    rows.append({"n": n, "method": method, "note": "skipped (--faiss-max)"})
                    continue
                pairs_path = Path(tmp) / f"{method}_{n}.npy"
                common = [
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
                    "--save-pairs",
                    str(pairs_path),
                ]
                print(f"running {method} at N={n} ...", flush=True)
                result = run_worker(script, ["--worker", method, *common], timeout=args.timeout)
                result.setdefault("n", n)
                result.setdefault("method", method)
                if "error" in result:
                    result["note"] = result.pop("error")
                else:
                    result["precision"] = result["correct"] / max(result["pairs"], 1)
                    pair_files[method] = pairs_path
                rows.append(result)
                print(json.dumps(result), flush=True)
            if "ours" in pair_files:
                ours = np.load(pair_files["ours"])
                for other in ("dense", "faiss"):
                    if other in pair_files:
                        same = bool(np.array_equal(ours, np.load(pair_files[other])))
                        checks.append(
                            {"n": n, "compared": f"ours vs {other}", "identical_pairs": same}
                        )
                        print(f"N={n}: ours pairs == {other} pairs: {same}", flush=True)
    columns = [
        "n",
        "method",
        "seconds",
        "peak_rss_mb",
        "pairs",
        "precision",
        "gemm_gflops",
        "gemm_floor_s",
        "ratio_to_floor",
        "cpu_cores_used",
        "note",
    ]
    table = print_table(rows, columns)
    if checks:
        print_table(checks, ["n", "compared", "identical_pairs"])
    write_json(
        args.name,
        {
            "args": {k: v for k, v in vars(args).items() if k not in ("worker", "n", "save_pairs")},
            "rows": rows,
            "checks": checks,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
