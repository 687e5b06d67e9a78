"""What a worker process checks and arms before Celery starts, and how it ends.

- :func:`database_problem`: the one line to print when the database is unreachable or not
  migrated (a worker would otherwise log a traceback every few seconds).
- :func:`exit_with_parent`: a ``preexec_fn`` asking Linux to SIGTERM the child when its
  parent dies (``prctl(PR_SET_PDEATHSIG)``); :func:`watch_parent` is the portable fallback
  (a thread polling the parent pid).
- :func:`bound_shutdown`: a warm shutdown (finish the running job) turns cold (SIGQUIT:
  the pool is terminated) after ``timeout_s``, and the process exits after as long again.
- :func:`die_with_pool_parent`: each prefork pool process is SIGKILLed when the worker's
  main process dies.

Nothing here imports Celery or torch at module import (``ucvgl serve`` uses the preexec).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.5


def _safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_problem(url: str, connect_timeout_s: int = 5) -> str | None:
    """One line saying why a worker cannot use the database at ``url``, or None when it can.

    The database must answer and be at the migrations' head revision.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from ucvgl.shared.db import alembic_config, create_db_engine

    shown = _safe_url(url)
    try:
        engine = create_db_engine(url)
        if engine.dialect.name == "postgresql":
            engine.dispose()
            engine = sa.create_engine(url, connect_args={"connect_timeout": connect_timeout_s})
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        finally:
            engine.dispose()
    except Exception as exc:
        return (
            f"refusing to start: the database at {shown} is unreachable ({_first_line(exc)}); "
            "start it or fix UCVGL_DATABASE_URL, then run `ucvgl migrate`"
        )
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if current != head:
        return (
            f"refusing to start: the database at {shown} is not migrated (revision {current}, "
            f"this code needs {head}); run `ucvgl migrate`"
        )
    return None


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).

    Returns:
        True when it is armed.
    """
    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def exit_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``subprocess.Popen(preexec_fn=...)`` arming :func:`set_parent_death_signal`."""

    def preexec() -> None:
        set_parent_death_signal(sig)

    return preexec


def watch_parent(
    parent_pid: int, on_orphan: Callable[[], None], interval_s: float = PARENT_POLL_S
) -> threading.Thread:
    """A daemon thread calling ``on_orphan`` once when this process's parent is no longer
    ``parent_pid`` (it died: the process was re-parented)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        log.warning("parent process %s is gone; shutting the worker down", parent_pid)
        on_orphan()

    thread = threading.Thread(target=watch, name="ucvgl-parent-watch", daemon=True)
    thread.start()
    return thread


def terminate_self() -> None:
    """SIGTERM this process (a Celery worker's warm shutdown)."""
    os.kill(os.getpid(), signal.SIGTERM)


def bound_shutdown(timeout_s: float) -> Callable[..., None]:
    """Connect to Celery's ``worker_shutting_down``: a warm shutdown turns cold after
    ``timeout_s`` and the process exits (code 1) after ``timeout_s`` more.

    Returns:
        The connected receiver (keep a reference or disconnect it in tests).
    """
    from celery.signals import worker_shutting_down

    armed = threading.Event()

    def escalate() -> None:
        time.sleep(timeout_s)
        log.warning("warm shutdown still running after %.0f s; cold shutdown now", timeout_s)
        os.kill(os.getpid(), signal.SIGQUIT)
        time.sleep(timeout_s)
        log.error("cold shutdown still running after %.0f s; exiting", timeout_s)
        os._exit(1)

    def on_shutdown(sender: object = None, how: str = "", **_: object) -> None:
        if armed.is_set():
            return
        armed.set()
        threading.Thread(target=escalate, name="ucvgl-shutdown-bound", daemon=True).start()

    worker_shutting_down.connect(on_shutdown, weak=False)
    return on_shutdown


def die_with_pool_parent() -> Callable[..., None]:
    """Connect to Celery's ``worker_process_init``: each prefork pool process gets SIGKILL
    when the worker's main process dies, so no pool process outlives it."""
    from celery.signals import worker_process_init

    def arm(**_: object) -> None:
        set_parent_death_signal(signal.SIGKILL)

    worker_process_init.connect(arm, weak=False)
    return arm
