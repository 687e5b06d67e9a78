"""Schemathesis (every check) against a real ``ucvgl serve`` on SQLite and PostgreSQL.

The run is time-bounded (``UCVGL_FUZZ_SECONDS``, default 45 s per database) with a fixed
seed; any finding outside ``schemathesis_baseline.json`` fails the test, and every entry of
that file must say why it is accepted.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from fuzzing import (
    baseline_entries,
    schemathesis_command,
    seed_pipeline_rows,
    start_server,
    stop_server,
)
from service_fixtures import API_TOKEN

pytest.importorskip("schemathesis", reason="schemathesis is not installed (the dev extra)")

FUZZ_SECONDS = int(os.environ.get("UCVGL_FUZZ_SECONDS", "45"))


def test_every_baseline_entry_says_why_it_is_accepted():
    for entry in baseline_entries():
        assert len(str(entry.get("reason", "")).strip()) > 20, entry


@pytest.mark.timeout(FUZZ_SECONDS + 240)
def test_schemathesis_finds_nothing_outside_the_baseline(service_settings, tiny_dataset, tmp_path):
    ids = seed_pipeline_rows(service_settings, tiny_dataset["id"])
    assert ids["round"] and ids["index"]
    server, url = start_server(service_settings, API_TOKEN, tmp_path / "serve.log")
    try:
        command = schemathesis_command(url, API_TOKEN, FUZZ_SECONDS, tmp_path / "report")
        result = subprocess.run(  # in tmp_path: Schemathesis writes its cache in its cwd
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=FUZZ_SECONDS + 180,
            check=False,
        )
    finally:
        stop_server(server)
    output = result.stdout + result.stderr
    print(output[output.find("SUMMARY") :])  # shown with -rP: operations, phases, cases
    assert result.returncode == 0, output[-12000:]
    assert "No issues found" in output or "passed" in output, output[-4000:]
