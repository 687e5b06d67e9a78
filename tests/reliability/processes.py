"""Real processes for fault tests: Celery workers, a private redis-server, polling helpers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from worker_process import stop_worker, wait_until_ready, worker_env

from ucvgl.shared.config import Settings

HERE = Path(__file__).resolve().parent
stop_process = stop_worker
"""SIGTERM (a worker's warm shutdown), SIGKILL after ``grace_s``; any process."""


def start_worker(
    settings: Settings,
    log_path: Path,
    *,
    runner: str = "pausing_runner:run_job",
    timeout_s: float = 90.0,
    **env: str,
) -> tuple[subprocess.Popen, str]:
    """Start a solo-pool worker of ``reliability_worker_app``; wait for ITS heartbeat row.

    Returns:
        The process and the worker's hostname.
    """
    hostname = f"rel-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    command = [sys.executable, "-m", "celery", "-A", "reliability_worker_app", "worker"]
    command += ["--pool", "solo", "--queues", "gpu,cpu", "--hostname", hostname, "-l", "INFO"]
    full_env = worker_env(settings, RELIABILITY_RUNNER=runner, **env)
    full_env["PYTHONPATH"] = f"{HERE}:{full_env['PYTHONPATH']}"
    full_env["OMP_NUM_THREADS"] = "1"
    log = open(log_path, "a")
    process = subprocess.Popen(command, env=full_env, cwd=log_path.parent, stdout=log, stderr=log)
    wait_until_ready(
        process,
        settings,
        log_path,
        timeout_s,
        hostname=hostname,
        retry_database_errors=True,
        interval_s=0.2,
    )
    return process, hostname


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    """Call ``predicate`` until it returns something truthy; AssertionError after timeout."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` on a free loopback port (never the system one on 6379).

    With ``appendonly`` (as in docker-compose.yml) every write is logged with
    ``appendfsync always``, so queued tasks survive a kill -9 and restart.
    """

    BINARY = "/usr/bin/redis-server"

    def __init__(self, data_dir: Path, *, appendonly: bool = True) -> None:
        self.data_dir, self.appendonly = data_dir, appendonly
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.BINARY) is not None or Path(cls.BINARY).exists()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.BINARY, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.data_dir), "--save", ""]
        if self.appendonly:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        log = open(self.data_dir / "redis.log", "a")
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        wait_for(lambda: self._pings(client), 10, "redis-server to answer")

    @staticmethod
    def _pings(client) -> bool:
        try:
            return bool(client.ping())
        except Exception:
            return False

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed beyond the append-only file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()


class ServerThread:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 20, "uvicorn to start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
