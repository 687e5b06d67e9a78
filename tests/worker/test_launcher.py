"""The multi-process job launcher: how many processes a job gets, and two gloo ranks under
torch's launcher returning a result, a cancellation and a rank's error."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from service_fixtures import make_folder_dataset

from ucvgl.shared.errors import ConfigError, JobCancelled
from ucvgl.worker.launcher import (
    LaunchFailed,
    LaunchPlan,
    LaunchSpec,
    plan_launch,
    run_distributed,
)

HERE = Path(__file__).resolve().parent


def test_plan_defaults_to_every_gpu_and_refuses_more(settings):
    four = lambda: 4  # noqa: E731
    cuda = settings.model_copy(update={"device": "auto"})
    assert plan_launch(cuda, "pipeline", {}, cuda_count=four) == LaunchPlan(4, "cuda")
    assert plan_launch(cuda, "pipeline", {"gpus": 2}, cuda_count=four) == LaunchPlan(2, "cuda")
    assert plan_launch(cuda, "cold_start", {}, cuda_count=four).processes == 1
    assert plan_launch(cuda, "pipeline", {"device": "cuda:3"}, cuda_count=four).processes == 1
    with pytest.raises(ConfigError, match=r"params.gpus: 5 asked for, this worker has 4"):
        plan_launch(cuda, "pipeline", {"gpus": 5}, cuda_count=four)
    with pytest.raises(ConfigError, match="params.gpus"):
        plan_launch(cuda, "pipeline", {"gpus": 0}, cuda_count=four)
    with pytest.raises(ConfigError, match="pins the job to one GPU"):
        plan_launch(cuda, "pipeline", {"gpus": 2, "device": "cuda:0"}, cuda_count=four)


def test_a_daemonic_worker_runs_one_gpu_jobs_in_their_own_process(settings):
    """A Celery prefork child may not start DataLoader workers: its one-GPU jobs run
    under the launcher, in a process of their own; several GPUs and CPU jobs as before."""
    one, four, none = (lambda: 1), (lambda: 4), (lambda: 0)  # noqa: E731
    cuda = settings.model_copy(update={"device": "auto"})
    yes = lambda: True  # noqa: E731
    for job in ("pipeline", "cold_start", "evaluate"):
        plan = plan_launch(cuda, job, {}, cuda_count=one, daemonic=yes)
        assert plan == LaunchPlan(1, "cuda", own_process=True) and plan.launched
        assert not plan.distributed
        assert not plan_launch(cuda, job, {}, cuda_count=one, daemonic=lambda: False).launched
    pinned = plan_launch(cuda, "pipeline", {"device": "cuda:2"}, cuda_count=four, daemonic=yes)
    assert pinned == LaunchPlan(1, "cuda:2", own_process=True)
    assert plan_launch(cuda, "pipeline", {}, cuda_count=four, daemonic=yes) == LaunchPlan(4, "cuda")
    cpu = plan_launch(cuda, "pipeline", {}, cuda_count=none, daemonic=yes)
    assert cpu == LaunchPlan(1, "cpu") and not cpu.launched


def test_plan_on_a_cpu_worker(settings):
    none = lambda: 0  # noqa: E731
    cpu = settings.model_copy(update={"device": "auto"})
    assert plan_launch(cpu, "pipeline", {}, cuda_count=none) == LaunchPlan(1, "cpu")
    with pytest.raises(ConfigError, match="UCVGL_DDP_CPU_PROCESSES"):
        plan_launch(cpu, "pipeline", {"gpus": 2}, cuda_count=none)
    two = cpu.model_copy(update={"ddp_cpu_processes": 2})
    plan = plan_launch(two, "supervised", {}, cuda_count=none)
    assert plan == LaunchPlan(2, "cpu") and plan.backend == "gloo" and plan.distributed


class RecordingProgress:
    """Keeps every update; ``check_cancelled`` raises once ``cancel`` is set."""

    def __init__(self, cancel_when_waiting: bool = True) -> None:
        self.updates: list[tuple[str, float, str]] = []
        self.cancel = threading.Event()
        self.cancel_when_waiting = cancel_when_waiting
        self.on_waiting = lambda: None

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.updates.append((stage, fraction, message))
        if stage == "waiting":
            self.on_waiting()
            if self.cancel_when_waiting:
                self.cancel.set()

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled("cancelled by the test")


def _launch(
    settings,
    tmp_path: Path,
    behaviour: str,
    monkeypatch,
    worker_pid: int | None = None,
    plan: LaunchPlan = LaunchPlan(2, "cpu"),
) -> tuple:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    root = make_folder_dataset(tmp_path / "data" / "tiny")
    spec = LaunchSpec(
        runner="dist_runner:run_job",
        job_type="pipeline",
        params={"behaviour": behaviour},
        run_dir=str(tmp_path / "run"),
        dataset_root=str(root),
        dataset_format="folder",
        dataset_name="tiny",
        load_options={},
        worker_pid=worker_pid,
    )
    progress = RecordingProgress(cancel_when_waiting=worker_pid is None)
    threads = settings.model_copy(update={"torch_threads": 1})
    run = lambda: run_distributed(plan, spec, progress, threads, poll_s=0.1)  # noqa: E731
    return run, progress


def test_two_gloo_ranks_return_rank_zeros_result(settings, tmp_path, monkeypatch):
    run, progress = _launch(settings, tmp_path, "sum", monkeypatch)
    result = run()
    assert result["sum"] == 3.0  # 1 + 2: both ranks took part in the all-reduce
    assert result["images"] == 3
    assert result["launch"] == {"world_size": 2, "backend": "gloo"}
    assert ("summing", 0.5, "rank 0") in progress.updates  # rank 0's progress, forwarded


def test_a_job_in_its_own_process_may_start_loader_workers(settings, tmp_path, monkeypatch):
    """What ``own_process`` is for: the launched rank is not daemonic, so its DataLoaders
    get workers (``loader_workers`` gives 0 in a daemonic process)."""
    import multiprocessing

    monkeypatch.delenv("UCVGL_NUM_WORKERS", raising=False)
    plan = LaunchPlan(1, "cpu", own_process=True)
    run, _ = _launch(settings, tmp_path, "loader_workers", monkeypatch, plan=plan)
    result = run()
    assert result["daemon"] is False and result["launch"]["world_size"] == 1
    expected = max(0, min(8, len(os.sched_getaffinity(0)) - 1))
    assert result["loader_workers"] == expected
    assert not multiprocessing.current_process().daemon  # (the test itself is not either)


@pytest.mark.slow
def test_cancel_stops_every_rank(settings, tmp_path, monkeypatch):
    run, progress = _launch(settings, tmp_path, "wait_cancel", monkeypatch)
    with pytest.raises(JobCancelled):
        run()
    assert progress.cancel.is_set()
    assert (tmp_path / "run" / ".launch" / "cancel").exists()


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_with_its_error(settings, tmp_path, monkeypatch):
    run, _ = _launch(settings, tmp_path, "fail_rank1", monkeypatch)
    with pytest.raises(LaunchFailed, match="rank 1: ValueError: rank one broke"):
        run()


@pytest.mark.slow
def test_ranks_leave_when_the_worker_is_gone(settings, tmp_path, monkeypatch):
    """The ranks of a job whose worker died stop instead of running on (60 s of waiting
    would end in a result; a rank that saw its worker gone ends the launch without one)."""
    import subprocess

    worker = subprocess.Popen(["sleep", "300"])
    threading.Thread(target=worker.wait, daemon=True).start()  # reaped: no zombie left
    run, progress = _launch(settings, tmp_path, "wait_cancel", monkeypatch, worker.pid)
    progress.on_waiting = worker.kill  # the "worker" dies while the ranks run
    with pytest.raises(LaunchFailed, match="without a result"):
        run()
    assert any(stage == "waiting" for stage, _, _ in progress.updates)
    assert not progress.cancel.is_set()
