"""The scale benchmarks' shared plumbing (benchmarks/_common.py) and their tiny end-to-end runs.

The benchmarks themselves are never part of the test run; these tests check the helpers
they share (arguments, device/dtype checks, planted features, the worker round trip) and
run both scripts once at a toy size on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import _common  # noqa: E402
from benchmarks import evaluate as evaluate_bench  # noqa: E402
from benchmarks import matching as matching_bench  # noqa: E402

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


def parser_and_args(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int)
    _common.add_scale_args(parser, ("ours", "dense"))
    return parser, parser.parse_args(argv)


def test_planted_features_are_deterministic_noisy_copies():
    # 9000 rows: crosses the 8192-row chunk boundary
    q, g, pos = _common.planted_features(9000, 4, noise=0.0, seed=3)
    assert q.shape == g.shape == (9000, 4) and q.dtype == g.dtype == torch.float32
    assert torch.equal(torch.sort(pos).values, torch.arange(9000))
    assert torch.equal(q, g[pos])  # noise 0: exact copies of the positives
    q2, g2, pos2 = _common.planted_features(9000, 4, noise=0.5, seed=3)
    assert torch.equal(g2, g) and torch.equal(pos2, pos)
    residual = q2 - g2[pos2]
    assert 0.45 < float(residual.std()) < 0.55
    q3, _, _ = _common.planted_features(9000, 4, noise=0.5, seed=3)
    assert torch.equal(q3, q2)


def test_worker_argv_round_trips_through_the_parser():
    _, args = parser_and_args(
        ["--dim", "16", "--noise", "2.5", "--seed", "4", "--block-size", "77", "--threads", "3"]
    )
    argv = _common.worker_argv(args, "dense", 1234, ["--extra-flag"])
    assert argv[-1] == "--extra-flag"
    _, back = parser_and_args(argv[:-1])
    assert back.worker == "dense" and back.n == 1234
    for key in ("dim", "noise", "seed", "block_size", "threads", "device", "dtype"):
        assert getattr(back, key) == getattr(args, key), key


def test_check_scale_args_fills_threads_and_refuses_half_on_cpu(capsys):
    parser, args = parser_and_args([])
    _common.check_scale_args(parser, args)
    assert args.threads >= 1 and args.device == "cpu" and args.dtype == "float32"
    parser, args = parser_and_args(["--dtype", "bfloat16"])
    with pytest.raises(SystemExit) as exc:
        _common.check_scale_args(parser, args)
    assert exc.value.code == 2
    assert "--dtype bfloat16 needs --device cuda" in capsys.readouterr().err


@needs_no_cuda
def test_cuda_request_without_cuda_is_a_clear_argparse_error(capsys):
    parser, args = parser_and_args(["--device", "cuda", "--dtype", "float16"])
    with pytest.raises(SystemExit) as exc:
        _common.check_scale_args(parser, args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "Traceback" not in err


def test_gemm_rate_and_measure_method_on_cpu():
    with pytest.raises(ValueError, match="float32 only"):
        _common.measure_gemm_flops(64, 64, 8, device="cpu", dtype="float16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        _common.torch_dtype("float64")
    value, fields = _common.measure_method(lambda: "done", n=500, dim=8)
    assert value == "done"
    assert fields["device"] == "cpu" and fields["dtype"] == "float32"
    assert "peak_gpu_mb" not in fields
    assert fields["gemm_floor_s"] == pytest.approx(
        2 * 500 * 500 * 8 / (fields["gemm_gflops"] * 1e9)
    )
    assert fields["ratio_to_floor"] == pytest.approx(fields["seconds"] / fields["gemm_floor_s"])
    assert len(fields["gemm_gflops_before_after"]) == 2
    # the floor's rate is the best one measured in this process, never an average
    assert fields["gemm_gflops"] == max(fields["gemm_gflops_before_after"])
    assert fields["peak_rss_mb"] >= fields["inputs_rss_mb"] > 0


def test_result_columns_cpu_tables_unchanged_and_cuda_extras():
    cpu = _common.result_columns(["pairs", "precision"], "cpu")
    assert cpu == [
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
    cuda = _common.result_columns(["r1"], "cuda")
    assert cuda[:6] == ["n", "method", "device", "dtype", "seconds", "peak_rss_mb"]
    assert cuda[6:8] == ["peak_gpu_mb", "r1"]


def test_matching_skip_reasons():
    args = argparse.Namespace(dense_max=20000, faiss_max=100_000, device="cpu")
    assert matching_bench.skip_reason("ours", 10**6, args) is None
    assert "2 x N^2" in matching_bench.skip_reason("dense", 35000, args)
    assert matching_bench.skip_reason("dense", 20000, args) is None
    assert matching_bench.skip_reason("faiss", 200_000, args) == "skipped (--faiss-max)"
    assert matching_bench.skip_reason("faiss", 1000, args) is None
    faiss = pytest.importorskip("faiss")
    if faiss.get_num_gpus() < 1:
        args.device = "cuda"
        assert matching_bench.skip_reason("faiss", 1000, args) == (
            "skipped: faiss has no GPU support in this install"
        )


def _run_main(module, argv: list[str], tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    module.main()
    return json.loads((tmp_path / f"{argv[argv.index('--name') + 1]}.json").read_text())


@pytest.mark.slow
def test_matching_benchmark_tiny_cpu_run(tmp_path, monkeypatch):
    argv = ["--sizes", "400", "--dim", "16", "--noise", "1.0", "--threads", "1"]
    result = _run_main(matching_bench, [*argv, "--name", "tiny_matching"], tmp_path, monkeypatch)
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"ours", "dense", "faiss"}
    for row in rows.values():
        assert "note" not in row, row
        assert row["device"] == "cpu" and row["dtype"] == "float32"
        assert 0 < row["pairs"] <= 400 and row["precision"] > 0.5
    assert rows["ours"]["pairs"] == rows["dense"]["pairs"] == rows["faiss"]["pairs"]
    # faiss searches both ways: two N x N products, counted in its per-pass ratio
    assert [rows[m]["passes"] for m in ("ours", "dense", "faiss")] == [1, 1, 2]
    assert rows["faiss"]["ratio_per_pass"] == pytest.approx(rows["faiss"]["ratio_to_floor"] / 2)
    assert [c["identical_pairs"] for c in result["checks"]] == [True, True]
    assert "worker" not in result["args"] and "save_pairs" not in result["args"]


@pytest.mark.slow
def test_evaluate_benchmark_tiny_cpu_run(tmp_path, monkeypatch):
    argv = ["--n", "500", "--dense-n", "300", "--dim", "16", "--noise", "2.0", "--threads", "1"]
    result = _run_main(evaluate_bench, [*argv, "--name", "tiny_eval"], tmp_path, monkeypatch)
    ran = [r for r in result["rows"] if "r1" in r]
    assert [(r["n"], r["method"]) for r in ran] == [(300, "concat"), (300, "ours"), (500, "ours")]
    assert result["identical_at_shared_size"] is True
    assert 0 < ran[1]["r1"] < 100
