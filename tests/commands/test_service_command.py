"""``ucvgl worker``: an unknown queue name is refused before the database or Celery is touched."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ucvgl.cli import app


def said(output: str) -> str:
    """The CLI's output as one line of words (typer's error box drawn away, wraps undone)."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def test_worker_refuses_an_unknown_queue_before_checking_the_database_or_building_the_app(
    settings, monkeypatch
):
    import ucvgl.worker.celery_app as celery_app
    from ucvgl.worker import startup

    def must_not_run(*args, **kwargs):
        raise AssertionError("reached past the queue check")

    monkeypatch.setattr(startup, "database_problem", must_not_run)
    monkeypatch.setattr(celery_app, "create_celery_app", must_not_run)
    result = CliRunner().invoke(app, ["worker", "--queues", "gpu,gpus"])
    assert result.exit_code == 2, result.output
    assert "queues must be a comma list of ['cpu', 'gpu'], got 'gpu,gpus'" in said(result.output)


@pytest.mark.parametrize("queues", ["", " , "])
def test_worker_refuses_an_empty_queue_list(settings, queues):
    result = CliRunner().invoke(app, ["worker", "--queues", queues])
    assert result.exit_code == 2 and "queues must be a comma list" in said(result.output)
