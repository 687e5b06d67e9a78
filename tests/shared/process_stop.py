"""Stopping a child process the tests started: SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM (a worker's warm shutdown, a server's orderly stop), SIGKILL after ``grace_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
