"""docker-compose.yml, Dockerfile.gpu and .dockerignore, checked against the real code.

There is no Docker engine here, so the containers are not started; instead every command
they run is parsed by the real ``ucvgl`` CLI, every ``UCVGL_*`` variable they set must be a
setting, and the worker's healthcheck snippet is run against a real heartbeat row.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

from ucvgl.cli import app as cli_app
from ucvgl.shared.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile.gpu").read_text()
SERVICES = COMPOSE["services"]
UCVGL_SERVICES = ("migrate", "api", "worker-gpu")
SAMPLE_ENV = {"UCVGL_API_TOKEN": "a" * 64, "POSTGRES_PASSWORD": "b" * 48}

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^{}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``, innermost first."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op == "-":
            return arg
        raise KeyError(f"{name} is required: {arg}")

    while VARIABLE.search(text):
        text = VARIABLE.sub(one, text)
    return text


def service_env(name: str) -> dict[str, str]:
    return {k: interpolate(str(v), SAMPLE_ENV) for k, v in SERVICES[name]["environment"].items()}


def parse_cli(args: list[str]) -> None:
    """Parse ``ucvgl <args>`` with the real command (raises on unknown options or values)."""
    group = typer.main.get_command(cli_app)
    ctx = group.make_context("ucvgl", list(args), resilient_parsing=False)
    with ctx:
        name, command, rest = group.resolve_command(ctx, list(args))
        command.make_context(name, rest, parent=ctx)


def dockerfile_json(instruction: str) -> list[str]:
    match = re.search(rf"^{instruction} (\[.*\])\s*$", DOCKERFILE, re.MULTILINE)
    assert match, f"Dockerfile.gpu has no exec-form {instruction}"
    return json.loads(match.group(1))


@pytest.mark.parametrize("service", UCVGL_SERVICES)
def test_compose_commands_parse_with_the_real_cli(service: str) -> None:
    command = SERVICES[service]["command"]
    parse_cli(command)
    assert SERVICES[service]["build"]["dockerfile"] == "Dockerfile.gpu"


def test_dockerfile_entrypoint_and_default_command_parse() -> None:
    entrypoint = dockerfile_json("ENTRYPOINT")
    assert entrypoint[-1] == "ucvgl"
    parse_cli(dockerfile_json("CMD"))


def test_parse_cli_names_an_unknown_flag() -> None:
    """The compose/Dockerfile checks above would catch a stale flag: it is refused by name."""
    with pytest.raises(Exception) as refused:  # noqa: B017 - typer's vendored click error
        parse_cli(["serve", "--no-such-flag"])
    assert type(refused.value).__name__ == "NoSuchOption"
    assert refused.value.option_name == "--no-such-flag"  # type: ignore[attr-defined]


def run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m ucvgl.cli <args>`` with its work folder in ``tmp_path``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("UCVGL_")},
        "UCVGL_WORK_DIR": str(tmp_path / "work"),
        "UCVGL_DATA_ROOTS": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "ucvgl.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )


def test_ucvgl_serve_with_an_unknown_flag_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    done = run_cli(["serve", "--no-such-flag"], tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "No such option: --no-such-flag" in done.stderr
    assert "Usage: python -m ucvgl.cli serve" in done.stderr
    assert not (tmp_path / "work").exists()  # no database, broker or worker was made


def test_ucvgl_worker_names_a_bad_queue_with_our_message(tmp_path: Path) -> None:
    done = run_cli(["worker", "--queues", "gpu,tpu"], tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "queues must be a comma list of ['cpu', 'gpu'], got 'gpu,tpu'" in done.stderr
    assert "celery@" not in done.stdout + done.stderr  # no worker started


@pytest.mark.parametrize("service", UCVGL_SERVICES)
def test_every_ucvgl_variable_is_a_setting_and_parses(service: str) -> None:
    env = service_env(service)
    fields = {f"UCVGL_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith("UCVGL_") and k not in fields)
    assert unknown == [], f"{service} sets variables no setting reads: {unknown}"
    kwargs = {k.removeprefix("UCVGL_").lower(): v for k, v in env.items() if k in fields}
    settings = Settings.model_validate(kwargs)
    assert settings.environment == "production"
    assert settings.api_token == SAMPLE_ENV["UCVGL_API_TOKEN"]
    assert settings.database_url.startswith("postgresql+psycopg://ucvgl:")
    assert settings.database_url.endswith("@postgres:5432/ucvgl")
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.data_roots == [Path("/data"), Path("/datasets")]
    assert settings.work_dir == Path("/work")


def test_dockerfile_env_names_are_settings() -> None:
    fields = {f"UCVGL_{name.upper()}" for name in Settings.model_fields}
    names = set(re.findall(r"\b(UCVGL_[A-Z_]+)=", DOCKERFILE))
    assert names and names <= fields


@pytest.mark.parametrize("secret", sorted(SAMPLE_ENV))
def test_secrets_are_required_not_defaulted(secret: str) -> None:
    env = {k: v for k, v in SAMPLE_ENV.items() if k != secret}
    for service in UCVGL_SERVICES:
        values = " ".join(str(v) for v in SERVICES[service]["environment"].values())
        with pytest.raises(KeyError, match=secret):
            interpolate(values, env)


def test_service_wiring() -> None:
    api = SERVICES["api"]
    assert "--no-worker" in api["command"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for dependency in ("postgres", "redis"):
        assert api["depends_on"][dependency]["condition"] == "service_healthy"
        assert "healthcheck" in SERVICES[dependency]
    worker = SERVICES["worker-gpu"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["flower"]["profiles"] == ["monitoring"]
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


def test_dockerfile_pins_the_torch_of_setup_sh_and_installs_the_gpu_extra() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    torch, vision = re.search(r"torch==(\S+) torchvision==(\S+?)\"", setup).groups()
    assert f"ARG TORCH_VERSION={torch}\n" in DOCKERFILE
    assert f"ARG TORCHVISION_VERSION={vision}\n" in DOCKERFILE
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"CUDA_IMAGE=nvidia/cuda:12\.[0-9.]+-cudnn-runtime-ubuntu22\.04", DOCKERFILE)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'gpu = \["faiss-gpu-cu12', pyproject)
    assert 'pip install ".[gpu]"' in DOCKERFILE and "faiss-gpu-cu12" in DOCKERFILE
    assert re.search(r"^USER ucvgl$", DOCKERFILE, re.MULTILINE)


def test_api_healthcheck_path_answers(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from ucvgl.api.main import create_app

    path = re.search(r"http://127\.0\.0\.1:8000(/\w+)", DOCKERFILE).group(1)
    assert TestClient(create_app(settings)).get(path).status_code == 200


def test_worker_healthcheck_snippet_finds_this_hosts_heartbeat(tmp_path: Path) -> None:
    from ucvgl.shared.db import Database, upgrade_database
    from ucvgl.shared.jobs.liveness import beat

    snippet = SERVICES["worker-gpu"]["healthcheck"]["test"][-1]
    url = f"sqlite:///{tmp_path / 'health.sqlite'}"
    upgrade_database(url)
    env = {"UCVGL_DATABASE_URL": url, "UCVGL_WORK_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def check() -> int:
        run = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True)
        return run.returncode

    database = Database.from_url(url)
    try:
        beat(database, "ucvgl-1@some-other-host", "cpu,gpu")
        assert check() == 1
        beat(database, f"ucvgl-7@{socket.gethostname()}", "cpu,gpu")
        assert check() == 0
    finally:
        database.dispose()


def test_dockerignore_keeps_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!ucvgl/"} <= set(lines)
    assert "**/.env" in lines
