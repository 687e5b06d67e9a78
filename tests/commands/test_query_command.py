"""``ucvgl query`` on a tiny pipeline run: the API's answer, the index built when missing,
and errors that name the folder or file at fault."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from service_fixtures import add_indexed_run
from typer.testing import CliRunner

from ucvgl.cli import app
from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database, upgrade_database

N_TRAIN, N_VAL = 24, 12
K = 3


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread."""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, make_world) -> tuple[Path, Path]:
    """A finished tiny supervised run (seconds) whose index folder was removed."""
    import torch

    from ucvgl.services.pipeline import run_pipeline

    torch.set_num_threads(1)
    world = make_world(tmp_path_factory.mktemp("world") / "cvact", "cvact", N_TRAIN, N_VAL)
    run = tmp_path_factory.mktemp("runs") / "sup"
    run_pipeline(world, "cvact", "supervised", "tiny", run, device="cpu")
    shutil.rmtree(run / "index")
    return world, run


def panoramas(world: Path, n: int) -> list[Path]:
    return sorted((world / "ANU_data_small" / "streetview").glob("*.jpg"))[:n]


def api_answer(settings: Settings, tmp_path: Path, run: Path, images: list[Path], **form) -> dict:
    """``POST /api/v1/query`` on an index row of ``run`` (the app's own retriever loader)."""
    from fastapi.testclient import TestClient

    from ucvgl.api.main import create_app

    url = f"sqlite:///{tmp_path / 'api.sqlite'}"
    upgrade_database(url)
    database = Database.from_url(url)
    with database.session() as session:
        add_indexed_run(
            session,
            dataset={"name": "tiny", "format": "cvact", "root_path": str(run)},
            run_dir=run,
            index_dir=run / "index",
            size=N_TRAIN + N_VAL,
        )
    database.dispose()
    app_settings = settings.model_copy(update={"database_url": url, "device": "cpu"})
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images]
    with TestClient(create_app(app_settings)) as client:
        response = client.post(
            "/api/v1/query", files=files, data={k: str(v) for k, v in form.items()}
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_cli_answers_what_the_api_answers_and_builds_the_missing_index(
    tiny_run, settings, tmp_path
):
    world, run = tiny_run
    images = panoramas(world, 3)
    assert not (run / "index").exists()
    cli = CliRunner().invoke(
        app,
        ["query", "--run", str(run), "--k", str(K), "--heading", "90", "--json", "--device", "cpu"]
        + [str(p) for p in images],
    )
    assert cli.exit_code == 0, cli.output
    assert (run / "index" / "manifest.json").is_file()  # built because it was missing
    body = json.loads(cli.stdout)
    assert body["k"] == K and [r["file_name"] for r in body["results"]] == [p.name for p in images]

    api = api_answer(settings, tmp_path, run, images, k=K, heading=90)
    assert [r["file_name"] for r in api["results"]] == [p.name for p in images]
    for mine, theirs in zip(body["results"], api["results"], strict=True):
        assert len(mine["matches"]) == K
        for a, b in zip(mine["matches"], theirs["matches"], strict=True):
            assert {key: a[key] for key in a if key != "score"} == {
                key: b[key] for key in b if key != "score"
            }
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["file_name"].endswith("_satView_polish.jpg")
            assert a["x"] is not None and a["y"] is not None  # CVACT's UTM coordinates
        scores = [m["score"] for m in mine["matches"]]
        assert scores == sorted(scores, reverse=True)
        assert len({m["satellite_id"] for m in mine["matches"]}) == K

    # The heading rolls the panorama: without it the scores differ (same index, no rebuild).
    plain = CliRunner().invoke(
        app,
        ["query", "--run", str(run), "--k", str(K), "--json", "--device", "cpu", str(images[0])],
    )
    assert plain.exit_code == 0, plain.output
    unrolled = [m["score"] for m in json.loads(plain.stdout)["results"][0]["matches"]]
    assert unrolled != pytest.approx([m["score"] for m in body["results"][0]["matches"]], abs=1e-6)

    # The table: one row per tile with its file name and score.
    text = CliRunner().invoke(
        app, ["query", "--run", str(run), "--k", "2", "--device", "cpu", str(images[0])]
    )
    assert text.exit_code == 0, text.output
    first = json.loads(plain.stdout)["results"][0]["matches"][0]
    assert first["file_name"] in text.stdout and f"{first['score']:.4f}" in text.stdout


def test_errors_name_the_folder_or_file_at_fault(tiny_run, tmp_path):
    world, run = tiny_run
    image = str(panoramas(world, 1)[0])
    runner = CliRunner()

    missing = runner.invoke(app, ["query", "--run", str(tmp_path / "no-run"), image])
    assert missing.exit_code == 1
    assert f"{tmp_path / 'no-run'}: no such run folder" in missing.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_run = runner.invoke(app, ["query", "--run", str(empty), image])
    assert not_a_run.exit_code == 1 and f"{empty}: not a run folder" in not_a_run.stderr

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "run.json").write_text(json.dumps({"mode": "unsupervised"}))
    (stopped / "report.json").write_text(
        json.dumps({"status": "failed", "failure": {"stage": "cold_start"}})
    )
    unfinished = runner.invoke(app, ["query", "--run", str(stopped), image])
    assert unfinished.exit_code == 1
    assert f"{stopped}: the run has no selected model" in unfinished.stderr
    assert "failed at stage cold_start" in unfinished.stderr

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    bad = runner.invoke(app, ["query", "--run", str(run), image, str(broken)])
    assert bad.exit_code == 1
    assert f"{broken}: not a readable image" in bad.stderr

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(image).read_bytes()[:300])
    cut = runner.invoke(app, ["query", "--run", str(run), str(truncated)])
    assert cut.exit_code == 1 and f"{truncated}: not a readable image" in cut.stderr

    gone = runner.invoke(app, ["query", "--run", str(run), str(tmp_path / "gone.jpg")])
    assert gone.exit_code == 1 and f"{tmp_path / 'gone.jpg'}: no such image file" in gone.stderr
