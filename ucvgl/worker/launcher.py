"""One job on every GPU of a worker: torch's own launcher (``torch.distributed.run``).

The worker process (the parent) starts ``python -m torch.distributed.run --standalone
--nproc_per_node N -m ucvgl.worker.launcher SPEC`` and stays in charge of the job row:

- every rank runs the same job runner as a one-process job (the pipeline's DDP path with
  gathered embeddings, exactly what ``torchrun ... ucvgl pipeline`` runs);
- rank 0 writes its progress to ``progress.json``; the parent forwards it to the job row
  (with heartbeats, as for a one-process job);
- a cancel request seen by the parent creates ``cancel``; every rank's ``check_cancelled``
  raises :class:`JobCancelled` once it exists (checkpoints stay usable, as for one process);
  torch's launcher stops the other ranks when one exits, and the parent kills the process
  group when it does not end within a grace period;
- each rank writes ``outcome-<rank>.json`` (rank 0 with the result); the parent turns it
  into the result, a :class:`JobCancelled`, a :class:`StageFailed` or an error;
- a retried job resumes from the run folder's checkpoints like any other;
- every rank watches the worker process and leaves when it is gone (a killed worker leaves
  no ranks behind; the reaper fails the job as for a one-process job).

The exchange files live in ``RUN_DIR/.launch/`` (cleared at every launch).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ucvgl.shared.config import Settings
from ucvgl.shared.errors import ConfigError, JobCancelled, UcvglError
from ucvgl.shared.fileio import atomic_write_text

log = logging.getLogger(__name__)

DISTRIBUTED_JOB_TYPES = frozenset({"pipeline", "semi", "supervised"})
"""Job types that run every stage through ``PipelineRun.run`` (the CLI's DDP path); the
single-stage jobs always run in one process."""
LAUNCH_DIR = ".launch"
SPEC_FILE = "spec.json"
PROGRESS_FILE = "progress.json"
CANCEL_FILE = "cancel"
LOG_FILE = "torchrun.log"


class LaunchFailed(UcvglError):
    """The distributed job ended without a result (a rank failed or was killed)."""


@dataclass(frozen=True)
class LaunchPlan:
    """How a job runs: ``processes`` ranks on ``device`` ('cuda', 'cuda:N' or 'cpu')."""

    processes: int
    device: str
    own_process: bool = False
    """One rank, but in a process of its own under torch's launcher rather than in the
    worker's (see :func:`plan_launch`)."""

    @property
    def distributed(self) -> bool:
        """True when the job has more than one rank."""
        return self.processes > 1

    @property
    def launched(self) -> bool:
        """True when the job runs under torch's launcher (several ranks, or its own process)."""
        return self.distributed or self.own_process

    @property
    def backend(self) -> str:
        """The process-group backend the ranks join (see ``init_distributed``)."""
        return "nccl" if self.device == "cuda" else "gloo"


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _daemonic() -> bool:
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)


def plan_launch(
    settings: Settings,
    job_type: str,
    params: dict[str, Any],
    *,
    cuda_count: Callable[[], int] = _cuda_count,
    daemonic: Callable[[], bool] = _daemonic,
) -> LaunchPlan:
    """How many processes run this job here (``params.gpus``, default: all this worker has).

    A CUDA worker has ``torch.cuda.device_count()`` GPUs; a CPU worker has
    ``settings.ddp_cpu_processes`` gloo processes (1 unless set, for tests). A job pinned to
    one device (``params.device = 'cuda:N'``) and the single-stage job types run in one
    process.

    A one-process CUDA job of a daemonic worker process (a Celery prefork pool child, the
    default pool) runs in a process of its own under torch's launcher (``own_process``):
    a daemonic process may not start DataLoader workers, so in the worker's process the
    job would decode every image in its training loop and leave the GPU waiting.

    Raises:
        ConfigError: ``params.gpus`` is not a positive integer or asks for more than this
            worker has (naming both numbers).
    """
    gpus = params.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise ConfigError(f"params.gpus: must be a positive integer, got {gpus!r}")
    device = str(params.get("device") or settings.device)
    if device == "auto":
        device = "cuda" if cuda_count() > 0 else "cpu"
    if device.startswith("cuda:"):
        if gpus not in (None, 1):
            raise ConfigError(
                f"params.gpus: {gpus} GPUs asked for, but params.device={device!r} pins the "
                "job to one GPU; leave params.device out (or 'cuda') to use several"
            )
        return LaunchPlan(1, device, own_process=daemonic())
    if device == "cuda":
        have, what = cuda_count(), "CUDA devices"
        advice = f"ask for at most {have} or leave params.gpus out (all of them)"
    else:
        have, what = max(1, settings.ddp_cpu_processes), "GPUs (a CPU worker)"
        advice = (
            "run it on a GPU worker, or set UCVGL_DDP_CPU_PROCESSES on this worker to run "
            "that many gloo processes on its CPU"
        )
    wanted = have if gpus is None else gpus
    if wanted > have:
        raise ConfigError(
            f"params.gpus: {wanted} asked for, this worker has {have} {what}; {advice}"
        )
    one = LaunchPlan(1, device, own_process=device == "cuda" and daemonic())
    if str(getattr(job_type, "value", job_type)) not in DISTRIBUTED_JOB_TYPES:
        return one
    return one if wanted <= 1 else LaunchPlan(wanted, device)


# ---------------------------------------------------------------------- the parent's side
@dataclass(frozen=True)
class LaunchSpec:
    """What every rank needs to run the job (written to ``spec.json``)."""

    runner: str
    """``module:function`` of the job runner (``run_job(type, dataset, params, run_dir,
    progress) -> dict``)."""
    job_type: str
    params: dict[str, Any]
    run_dir: str
    dataset_root: str
    dataset_format: str
    dataset_name: str
    load_options: dict[str, Any]
    worker_pid: int | None = None
    """The worker process that launched the job: every rank leaves when it is gone."""


def runner_spec(runner: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level runner function (what a rank imports)."""
    return f"{runner.__module__}:{runner.__qualname__}"


def launch_spec(
    runner: Callable[..., Any], job_type: str, params: dict[str, Any], run_dir: Path, row: Any
) -> LaunchSpec:
    """What each rank of a multi-process job needs; ``row`` is the job's Dataset row."""
    return LaunchSpec(
        runner=runner_spec(runner),
        job_type=str(getattr(job_type, "value", job_type)),
        params=params,
        run_dir=str(run_dir),
        dataset_root=row.root_path,
        dataset_format=row.format,
        dataset_name=row.name,
        load_options=dict(row.load_options or {}),
        worker_pid=os.getpid(),
    )


def torchrun_command(plan: LaunchPlan, spec_path: Path) -> list[str]:
    """The launcher's command line: one node, ``plan.processes`` ranks, no restarts."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={plan.processes}",
        "--max_restarts=0",
        "--monitor_interval=0.5",
        "-m",
        "ucvgl.worker.launcher",
        str(spec_path),
    ]


def _kill_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the launcher's process group, SIGKILL it after ``grace_s``."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _forward_progress(path: Path, progress: Any, seen: list[float]) -> None:
    """Pass rank 0's latest progress to the job's ``progress`` when the file changed."""
    try:
        mtime = path.stat().st_mtime_ns
        if seen and seen[0] == mtime:
            return
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    seen[:] = [mtime]
    progress.update(str(data["stage"]), float(data["fraction"]), str(data.get("message", "")))


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_distributed(
    plan: LaunchPlan,
    spec: LaunchSpec,
    progress: Any,
    settings: Settings,
    *,
    poll_s: float = 0.5,
    grace_s: float = 30.0,
) -> dict[str, Any]:
    """Run the job as ``plan.processes`` ranks under torch's launcher; rank 0's result.

    ``progress`` is the job's :class:`~ucvgl.worker.job_progress.JobProgress` (or any
    Progress): rank 0's updates are forwarded to it, and its ``check_cancelled`` is asked
    every ``poll_s``.

    Raises:
        JobCancelled: the job was cancelled (the ranks stopped at their next step).
        StageFailed: a label-free stage check stopped the run (its records kept).
        LaunchFailed: a rank failed (its error and the launcher log's last lines).
    """
    folder = Path(spec.run_dir) / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file():
            stale.unlink()
    spec_path = atomic_write_text(folder / SPEC_FILE, json.dumps(asdict(spec), indent=2))
    env = {
        **os.environ,
        "UCVGL_DEVICE": plan.device,
        "UCVGL_TORCH_THREADS": str(settings.torch_threads),
    }
    log_path = folder / LOG_FILE
    log.info("launching %s process(es) (%s) for %s", plan.processes, plan.backend, spec.run_dir)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            torchrun_command(plan, spec_path),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    seen: list[float] = []
    cancelled = False
    try:
        while process.poll() is None:
            time.sleep(poll_s)
            _forward_progress(folder / PROGRESS_FILE, progress, seen)
            if not cancelled:
                try:
                    progress.check_cancelled()
                except JobCancelled:
                    cancelled = True
                    (folder / CANCEL_FILE).touch()
                    deadline = time.monotonic() + grace_s
                    while process.poll() is None and time.monotonic() < deadline:
                        time.sleep(poll_s)
                    _kill_group(process, 5.0)
    finally:
        _kill_group(process, grace_s)  # the parent itself stopped (time limit, shutdown)
    _forward_progress(folder / PROGRESS_FILE, progress, seen)
    return _outcome(folder, plan, process.returncode, cancelled, log_path)


def _outcome(
    folder: Path, plan: LaunchPlan, returncode: int, cancelled: bool, log_path: Path
) -> dict[str, Any]:
    """Rank 0's result, or the exception the ranks' outcome files describe."""
    outcomes = {}
    for rank in range(plan.processes):
        path = folder / f"outcome-{rank}.json"
        if path.exists():
            outcomes[rank] = json.loads(path.read_text())
    first = outcomes.get(0, {})
    if returncode == 0 and first.get("status") == "ok":
        return {**first["result"], "launch": first["launch"]}
    if cancelled or any(o.get("status") == "cancelled" for o in outcomes.values()):
        raise JobCancelled(first.get("message") or "the job was cancelled")
    for outcome in [first, *outcomes.values()]:
        if outcome.get("status") == "stage_failed":
            from ucvgl.services.health import StageCheck, StageFailed

            report = outcome.get("report_path")
            raise StageFailed(
                StageCheck.from_dict(outcome["failure"]),
                [StageCheck.from_dict(c) for c in outcome["health"]],
                Path(report) if report else None,
            )
    errors = [
        f"rank {r}: {o['message']}" for r, o in outcomes.items() if o.get("status") == "error"
    ]
    if errors:
        raise LaunchFailed("; ".join(errors))
    raise LaunchFailed(
        f"the {plan.processes}-process job ({plan.backend}) exited with status {returncode} "
        f"without a result; last lines of {log_path}:\n{_log_tail(log_path)}"
    )


# ---------------------------------------------------------------------- one rank's side
class RankProgress:
    """Progress of one rank: rank 0 writes ``progress.json`` (every ``interval_s`` or on a
    stage change); every rank raises :class:`JobCancelled` once ``cancel`` exists."""

    def __init__(self, folder: Path, rank: int, interval_s: float = 0.25) -> None:
        self.folder, self.rank, self.interval_s = folder, rank, interval_s
        self._last_write, self._last_stage = float("-inf"), None

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Record ``stage`` at ``fraction`` (rank 0 only; throttled)."""
        if self.rank != 0:
            return
        now = time.monotonic()
        if (
            stage == self._last_stage
            and fraction < 1.0
            and now - self._last_write < self.interval_s
        ):
            return
        payload = {"stage": stage, "fraction": float(fraction), "message": message}
        atomic_write_text(self.folder / PROGRESS_FILE, json.dumps(payload))
        self._last_write, self._last_stage = now, stage

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when the parent asked to cancel."""
        if (self.folder / CANCEL_FILE).exists():
            raise JobCancelled("the job was cancelled")


def _plain(value: Any) -> Any:
    """JSON for what a runner's result may hold besides plain types (paths, numpy)."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc``; else kill 0)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _watch_worker(pid: int, interval_s: float = 2.0) -> None:
    """Leave this rank at once when the worker that launched the job is gone (killed or
    crashed): torch's launcher then stops the other ranks, and no rank outlives its job."""
    import threading

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval_s)
        log.error("the worker (pid %s) is gone; this rank stops", pid)
        os._exit(4)

    threading.Thread(target=watch, name="watch-worker", daemon=True).start()


def _write_outcome(folder: Path, rank: int, outcome: dict[str, Any]) -> None:
    atomic_write_text(folder / f"outcome-{rank}.json", json.dumps(outcome, default=_plain))


def _run_rank(spec_path: Path) -> int:
    """Run the job described by ``spec_path`` as this rank; returns the exit status."""
    import importlib

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.health import StageFailed
    from ucvgl.shared.config import get_settings

    folder = spec_path.parent
    rank = int(os.environ.get("RANK", "0"))
    spec = LaunchSpec(**json.loads(spec_path.read_text()))
    if spec.worker_pid is not None:
        _watch_worker(spec.worker_pid)
    get_settings().apply_torch_threads()
    try:
        module, _, name = spec.runner.partition(":")
        runner = getattr(importlib.import_module(module), name)
        dataset = load_dataset(
            Path(spec.dataset_root),
            spec.dataset_format,
            name=spec.dataset_name,
            **spec.load_options,
        )
        progress = RankProgress(folder, rank)
        result = runner(spec.job_type, dataset, spec.params, Path(spec.run_dir), progress)
        launch = _launch_facts()
        result = result if isinstance(result, dict) else {"value": result}
        _write_outcome(folder, rank, {"status": "ok", "result": result, "launch": launch})
    except JobCancelled as exc:
        _write_outcome(folder, rank, {"status": "cancelled", "message": str(exc)})
        return 2
    except StageFailed as exc:
        _write_outcome(folder, rank, {"status": "stage_failed", **exc.result()})
        return 3
    except Exception as exc:
        log.exception("rank %s failed", rank)
        message = f"{type(exc).__name__}: {exc}"
        _write_outcome(folder, rank, {"status": "error", "message": message})
        return 1
    _leave_group()
    return 0


def _launch_facts() -> dict[str, Any]:
    """The process group the job really ran in (world size, backend)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return {"world_size": dist.get_world_size(), "backend": str(dist.get_backend())}
    return {"world_size": 1, "backend": None}


def _leave_group() -> None:
    """Wait for every rank, then tear the process group down (all ranks succeeded)."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    """Entry point of one rank: ``python -m ucvgl.worker.launcher SPEC``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m ucvgl.worker.launcher RUN_DIR/.launch/spec.json")
    logging.basicConfig(level=logging.INFO)
    status = _run_rank(Path(args[0]))
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without C++ static destructors, where a still-joinable gloo thread can abort a
    # rank (see tests/services/training/test_distributed.py); the outcome is written.
    os._exit(status)


if __name__ == "__main__":
    main()
