"""Service commands: ``ucvgl serve`` (API + a local worker), ``ucvgl worker``, ``ucvgl migrate``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

from ucvgl.shared.enums import Queue

log = logging.getLogger("ucvgl.service")

WORKER_SHUTDOWN_TIMEOUT_S = 10.0
"""A worker's warm shutdown turns cold after this, and it exits after as long again."""
WORKER_STOP_GRACE_S = 3 * WORKER_SHUTDOWN_TIMEOUT_S
"""``serve`` SIGKILLs its local worker when it has not stopped by then."""


def check_token_policy(environment: str, api_token: str) -> None:
    """Refuse an empty or default API token outside development (raises ``typer.Exit(2)``)."""
    from ucvgl.shared.config import DEFAULT_API_TOKEN

    if environment != "development" and (not api_token or api_token == DEFAULT_API_TOKEN):
        typer.echo(
            "refusing to start: UCVGL_API_TOKEN is empty or the default "
            f"({DEFAULT_API_TOKEN!r}) while UCVGL_ENVIRONMENT={environment}; "
            "set a long random token, e.g. from `python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'`",
            err=True,
        )
        raise typer.Exit(code=2)


def _parse_queues(queues: str) -> str:
    """``" gpu, cpu"`` -> ``"gpu,cpu"``; BadParameter naming the valid queues otherwise."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    valid = {q.value for q in Queue}
    bad = [q for q in names if q not in valid]
    if not names or bad:
        raise typer.BadParameter(f"queues must be a comma list of {sorted(valid)}, got {queues!r}")
    return ",".join(names)


def _stop(process: subprocess.Popen) -> None:
    """Ask the worker to finish (SIGTERM: warm shutdown), kill it after a grace period."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        log.warning("worker did not stop within %.0f s; killing it", WORKER_STOP_GRACE_S)
        process.kill()
        process.wait()


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``worker`` and ``migrate`` to the CLI."""

    @app.command("migrate")
    def migrate(
        revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
    ) -> None:
        """Create or upgrade the database schema (alembic upgrade head)."""
        from ucvgl.shared.config import get_settings
        from ucvgl.shared.db import current_revision, upgrade_database

        url = get_settings().resolved_database_url
        upgrade_database(url, revision)
        typer.echo(f"database at revision {current_revision(url)}")

    @app.command("worker")
    def worker(
        queues: Annotated[str, typer.Option(help="Comma list of queues: gpu, cpu.")] = "gpu,cpu",
        concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
        pool: Annotated[str, typer.Option(help="Celery pool: prefork, solo, threads.")] = "prefork",
        loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
        shutdown_timeout: Annotated[
            float,
            typer.Option(
                min=0.1,
                help="Seconds a warm shutdown (SIGTERM: finish the job) may take before it "
                "turns cold (the job is stopped); the process exits after as long again.",
            ),
        ] = WORKER_SHUTDOWN_TIMEOUT_S,
        parent_pid: Annotated[
            int | None,
            typer.Option(hidden=True, help="Shut down when this parent process is gone."),
        ] = None,
    ) -> None:
        """Start a Celery worker alone (e.g. a GPU machine joining a shared Redis + database).

        Refuses to start (exit 2, one line) when a queue name is unknown or the database is
        unreachable or not migrated.
        """
        queue_names = _parse_queues(queues)  # before anything slow: a typo fails at once

        from ucvgl.shared.config import get_settings
        from ucvgl.worker import startup

        settings = get_settings()
        problem = startup.database_problem(settings.resolved_database_url)
        if problem is not None:
            typer.echo(problem, err=True)
            raise typer.Exit(code=2)
        startup.bound_shutdown(shutdown_timeout)
        startup.die_with_pool_parent()
        if parent_pid is not None:
            startup.watch_parent(parent_pid, startup.terminate_self)

        from ucvgl.worker.celery_app import create_celery_app

        celery = create_celery_app(settings)
        celery.worker_main(
            [
                "worker",
                "--queues",
                queue_names,
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                "--loglevel",
                loglevel,
                "--hostname",
                f"ucvgl-{os.getpid()}@%h",
            ]
        )

    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
        no_worker: Annotated[
            bool, typer.Option("--no-worker", help="Do not start a local worker.")
        ] = False,
        queues: Annotated[str, typer.Option(help="Queues of the local worker.")] = "gpu,cpu",
    ) -> None:
        """Migrate the database, then run the API and a local Celery worker until Ctrl-C."""
        import uvicorn

        from ucvgl.api.main import create_app
        from ucvgl.shared.config import get_settings
        from ucvgl.shared.db import upgrade_database
        from ucvgl.worker.startup import exit_with_parent

        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        settings = get_settings()
        check_token_policy(settings.environment, settings.api_token)
        upgrade_database(settings.resolved_database_url)
        worker_process = None
        if not no_worker:
            command = [
                sys.executable,
                "-m",
                "ucvgl.cli",
                "worker",
                "--queues",
                _parse_queues(queues),
            ]
            command += ["--parent-pid", str(os.getpid())]
            # The worker dies with serve however serve ends (SIGKILL, a second SIGTERM): the
            # kernel SIGTERMs it (Linux) and its thread watching the parent pid does too.
            worker_process = subprocess.Popen(command, preexec_fn=exit_with_parent())
            log.info("started local worker (pid %s): %s", worker_process.pid, " ".join(command))
        try:
            uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
        finally:
            if worker_process is not None:
                _stop(worker_process)
