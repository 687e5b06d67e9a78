"""Benchmark: recall@k at CVACT_test scale in bounded memory vs concatenate-everything.

    .venv/bin/python benchmarks/evaluate.py --n 92802 --dim 1024 --dense-n 20000
    .venv/bin/python benchmarks/evaluate.py --device cuda --dtype float32

Features: gallery tiles ~ N(0, I); query i = tile positives[i] + noise * N(0, I), generated
on the host. Each method runs in a fresh subprocess (peak RSS per method, inputs
included; on CUDA also peak GPU memory, torch.cuda.max_memory_allocated):

* ``ours``: ucvgl.services.evaluation.recall_at_k on --device in --dtype (streaming
  blocks, rank = count of strictly more similar tiles, no top-k, no [Q, S] matrix);
* ``concat``: Sample4Geo's evaluation: the [Q, S] similarity matrix built in query
  chunks of 1000 and concatenated (32 GiB at 92,802), then a Python loop over queries
  counting tiles more similar than the positive. As in Sample4Geo, the chunk products run
  on --device (float32) and each chunk is moved to the host before the concatenation;
  the loop runs on the host. Run only at ``--dense-n`` where it fits.

Both run at ``--dense-n`` and must give identical recalls in float32 (with --dtype
float16/bfloat16 near-ties may rank differently); ours also runs at ``--n``. The GEMM
floor is 2 * N * N * d flops at the torch.mm rate where the method computes (see
benchmarks/matching.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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

METHODS = ("ours", "concat")
KEYS = ("r1", "r5", "r10", "r1p")


def recall_concat(
    query, gallery, positives, ks=(1, 5, 10), step: int = 1000, device: str = "cpu"
) -> dict:
    """Sample4Geo's calculate_scores: concatenate the full similarity matrix, loop queries."""
    import torch

    q = torch.nn.functional.normalize(query.to(device), dim=-1)
    g = torch.nn.functional.normalize(gallery.to(device), dim=-1)
    chunks = [(q[i : i + step] @ g.T).cpu() for i in range(0, len(q), step)]
    similarity = torch.cat(chunks, dim=0)  # [Q, S] on the host
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
    setup_worker(args.threads)
    query, gallery, positives = planted_features(args.n, args.dim, args.noise, args.seed)
    if args.worker == "ours":
        from ucvgl.services.evaluation import recall_at_k

        where = (args.device, args.dtype)

        def run() -> dict:
            return recall_at_k(
                query,
                gallery,
                positives,
                block_size=args.block_size,
                device=args.device,
                compute_dtype=torch_dtype(args.dtype),
            )
    else:
        where = (args.device, "float32")

        def run() -> dict:
            return recall_concat(query, gallery, positives, device=args.device)

    result, fields = measure_method(run, n=args.n, dim=args.dim, device=where[0], dtype=where[1])
    row = {"n": args.n, "method": args.worker, **fields}
    row.update({k: float(result[k]) for k in KEYS})
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=92802, help="queries = tiles at scale")
    parser.add_argument(
        "--dense-n", type=int, default=20000, help="shared size for both (0: ours at --n only)"
    )
    parser.add_argument("--name", default="evaluate", help="results/<name>.json")
    add_scale_args(parser, METHODS)
    args = parser.parse_args()
    check_scale_args(parser, args)
    if args.worker:
        worker(args)
        return
    script = Path(__file__).resolve()
    runs = [(args.dense_n, "concat"), (args.dense_n, "ours")] if args.dense_n > 0 else []
    rows = [run_method(script, args, method, n) for n, method in [*runs, (args.n, "ours")]]
    concat_at_n = 4 * args.n * args.n / 2**30
    rows.append(
        {
            "n": args.n,
            "method": "concat",
            "note": f"skipped: [Q, S] float32 matrix = {concat_at_n:.0f} GiB",
        }
    )
    shared = [r for r in rows if r["n"] == args.dense_n and "r1" in r]
    # the same counts give percentages equal up to float rounding; one query apart is 100 / N
    same = len(shared) == 2 and all(abs(shared[0][k] - shared[1][k]) < 1e-9 for k in KEYS)
    caveat = "" if args.dtype == "float32" else f" (ours in {args.dtype}: near-ties may differ)"
    print(f"N={args.dense_n}: ours == concat recalls: {same}{caveat}", flush=True)
    finish(args, rows, KEYS, identical_at_shared_size=same)


if __name__ == "__main__":
    main()
