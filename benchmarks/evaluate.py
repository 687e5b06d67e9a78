"""Benchmark: recall@k at CVACT_test scale in bounded memory vs concatenate-everything.

    .venv/bin/python benchmarks/evaluate.py --n 92802 --dim 1024 --dense-n 20000

Features: gallery tiles ~ N(0, I); query i = tile positives[i] + noise * N(0, I). Each
method runs in a fresh subprocess (peak RSS per method, inputs included):

* ``ours``: ucvgl.services.evaluation.recall_at_k (streaming blocks, rank = count of
  strictly more similar tiles, no top-k, no [Q, S] matrix);
* ``concat``: Sample4Geo's evaluation: the [Q, S] similarity matrix built in query
  chunks and concatenated (32 GiB at 92,802), then a Python loop over queries counting
  tiles more similar than the positive. Run only at ``--dense-n`` where it fits.

Both run at ``--dense-n`` and must give identical recalls; ours also runs at ``--n``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    cpu_seconds,
    measure_gemm_flops,
    peak_rss_mb,
    print_table,
    run_worker,
    write_json,
)

METHODS = ("ours", "concat")
KEYS = ("r1", "r5", "r10", "r1p")


def make_features(n: int, dim: int, noise: float, seed: int):
    """Gallery [n, dim], queries [n, dim] (chunked, no temporaries), positives int64 [n]."""
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


def recall_concat(query, gallery, positives, ks=(1, 5, 10), step: int = 1000) -> dict:
    """Sample4Geo's calculate_scores: concatenate the full similarity matrix, loop queries."""
    import torch

    q = torch.nn.functional.normalize(query, dim=-1)
    g = torch.nn.functional.normalize(gallery, dim=-1)
    chunks = [q[i : i + step] @ g.T for i in range(0, len(q), step)]
    similarity = torch.cat(chunks, dim=0)  # [Q, S]
    del chunks
    top1p = max(1, round(len(g) * 0.01))
    hits = dict.fromkeys(ks, 0)
    hit1p = 0
    for i in range(len(q)):
        gt_sim = similarity[i, positives[i]]
        ranking = int((similarity[i, :] > gt_sim).sum())
        for k in ks:
            hits[k] += ranking < k
        hit1p += ranking < top1p
    out = {f"r{k}": 100.0 * hits[k] / len(q) for k in ks}
    out["r1p"] = 100.0 * hit1p / len(q)
    return out


def worker(args: argparse.Namespace) -> None:
    """Run one method at one size; print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    query, gallery, positives = make_features(args.n, args.dim, args.noise, args.seed)
    rate_before = measure_gemm_flops(4096, 4096, args.dim)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if args.worker == "ours":
        from ucvgl.services.evaluation import recall_at_k

        result = recall_at_k(query, gallery, positives, block_size=args.block_size, device="cpu")
    else:
        result = recall_concat(query, gallery, positives)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    peak = peak_rss_mb()
    rate = (rate_before + measure_gemm_flops(4096, 4096, args.dim)) / 2
    floor = 2.0 * args.n * args.n * args.dim / rate
    row = {"n": args.n, "method": args.worker, "seconds": seconds, "peak_rss_mb": peak}
    row.update({k: float(result[k]) for k in KEYS})
    row.update(
        {
            "gemm_gflops": rate / 1e9,
            "gemm_floor_s": floor,
            "ratio_to_floor": seconds / floor,
            "cpu_cores_used": cpu / seconds,
        }
    )
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=92802, help="queries = tiles at scale")
    parser.add_argument("--dense-n", type=int, default=20000, help="shared size for both")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--noise", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--name", default="evaluate")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    script = Path(__file__).resolve()
    rows = []
    for n, method in ((args.dense_n, "concat"), (args.dense_n, "ours"), (args.n, "ours")):
        print(f"running {method} at N={n} ...", flush=True)
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
        ]
        row = run_worker(script, ["--worker", method, *common], timeout=args.timeout)
        row.setdefault("n", n)
        row.setdefault("method", method)
        if "error" in row:
            row["note"] = row.pop("error")
        rows.append(row)
        print(json.dumps(row), flush=True)
    concat_at_n = 4 * args.n * args.n / 2**30
    rows.append(
        {
            "n": args.n,
            "method": "concat",
            "note": f"skipped: [Q, S] float32 matrix = {concat_at_n:.0f} GiB",
        }
    )
    shared = [r for r in rows if r["n"] == args.dense_n and "r1" in r]
    same = len(shared) == 2 and all(shared[0][k] == shared[1][k] for k in KEYS)
    print(f"N={args.dense_n}: ours == concat recalls: {same}", flush=True)
    columns = [
        "n",
        "method",
        "seconds",
        "peak_rss_mb",
        *KEYS,
        "gemm_gflops",
        "gemm_floor_s",
        "ratio_to_floor",
        "cpu_cores_used",
        "note",
    ]
    table = print_table(rows, columns)
    write_json(
        args.name,
        {
            "args": {k: v for k, v in vars(args).items() if k != "worker"},
            "rows": rows,
            "identical_at_shared_size": same,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
