"""The dashboard's query panel in headless Chromium against the real app and a tiny run.

A person picks a panorama of the index's dataset (or uploads one), asks for the top-k
tiles and sees them as images with rank, score, file and coordinates; the true tile is
marked when the dataset knows it. The page's answer is the API's answer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from service_fixtures import add_indexed_run
from test_dashboard_browser import (  # noqa: F401
    TOKEN,
    WAIT_MS,
    browser,
    open_page,
    start_server,
)

from ucvgl.shared.config import Settings
from ucvgl.shared.db import Database, upgrade_database

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

N_TRAIN, N_VAL = 24, 12


@dataclass
class TinyRun:
    world: Path
    run: Path


@dataclass
class Served:
    url: str
    index_id: int


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, make_world) -> TinyRun:
    """A finished tiny supervised run (seconds) on a CVACT-layout world."""
    import torch

    from ucvgl.services.pipeline import run_pipeline

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    world = make_world(tmp_path_factory.mktemp("data") / "cvact", "cvact", N_TRAIN, N_VAL)
    run = tmp_path_factory.mktemp("work") / "run"
    run_pipeline(world, "cvact", "supervised", "tiny", run, device="cpu")
    torch.set_num_threads(before)
    return TinyRun(world, run)


@pytest.fixture
def served(settings: Settings, tmp_path: Path, tiny_run: TinyRun) -> Iterator[Served]:
    """The app on a loopback port with the run's index registered (data root: the world's)."""
    from ucvgl.api.main import create_app

    url = f"sqlite:///{tmp_path / 'query.sqlite'}"
    upgrade_database(url)
    database = Database.from_url(url)
    with database.session() as session:
        index = add_indexed_run(
            session,
            dataset={"name": "tiny-cvact", "format": "cvact", "root_path": str(tiny_run.world)},
            run_dir=tiny_run.run,
            index_dir=tiny_run.run / "index",
            size=N_TRAIN + N_VAL,
            preset="tiny",
        )
    database.dispose()
    app_settings = settings.model_copy(
        update={
            "database_url": url,
            "api_token": TOKEN,
            "device": "cpu",
            "torch_threads": 1,
            "data_roots": [tiny_run.world.parent],
        }
    )
    server, thread, base = start_server(create_app(app_settings), "query-uvicorn")
    yield Served(base, index.id)
    server.should_exit = True
    thread.join(timeout=10)


def shown_tiles(page: Page) -> list[dict]:
    """The result tiles as the page shows them (waits for every image to load)."""
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#query-results img')];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        timeout=WAIT_MS,
    )
    return page.eval_on_selector_all(
        "#query-results li",
        """items => items.map(li => ({
            id: li.dataset.satelliteId, rank: Number(li.dataset.rank),
            isTrue: li.dataset.true === 'true', text: li.textContent,
            width: li.querySelector('img').naturalWidth }))""",
    )


def api_ids(served: Served, image: bytes, name: str, k: int) -> list[str]:
    response = httpx.post(
        f"{served.url}/api/v1/query",
        files=[("files", (name, image, "image/jpeg"))],
        data={"k": str(k), "index_id": str(served.index_id)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [m["satellite_id"] for m in response.json()["results"][0]["matches"]]


def test_query_panel_shows_the_api_answer_as_tiles_with_the_true_tile_marked(
    browser: Browser,  # noqa: F811
    served: Served,
    tiny_run: TinyRun,
) -> None:
    from playwright.sync_api import expect

    page, console_errors = open_page(browser, served.url + "/")
    expect(page.locator("#query-info")).to_contain_text("panoramas in split val", timeout=WAIT_MS)
    expect(page.locator("#query-panorama option")).to_have_count(N_VAL)
    expect(page.locator("#query-preview")).to_be_visible()
    listing = httpx.get(f"{served.url}/api/v1/indexes/{served.index_id}/panoramas").json()
    first = listing["items"][0]
    assert first["true_satellite_id"] is not None

    # k = 5: the page shows the tiles the API answers, in order, as loaded images.
    page.fill("#query-k", "5")
    page.click("#query-submit")
    expect(page.locator("#query-results li")).to_have_count(5, timeout=WAIT_MS)
    tiles = shown_tiles(page)
    image = httpx.get(served.url + first["image_url"]).content
    assert [t["id"] for t in tiles] == api_ids(served, image, first["file_name"], 5)
    assert [t["rank"] for t in tiles] == [1, 2, 3, 4, 5]
    assert all(t["width"] > 0 and "score" in t["text"] and "x " in t["text"] for t in tiles)
    assert sum(t["isTrue"] for t in tiles) == (
        first["true_satellite_id"] in [t["id"] for t in tiles]
    )
    if os.environ.get("UCVGL_SCREENSHOT_DIR"):
        page.locator("#query-panel").screenshot(
            path=str(Path(os.environ["UCVGL_SCREENSHOT_DIR"]) / "query-panel.png")
        )

    # Every tile of the index: the true one is among them, marked once, and said so.
    page.fill("#query-k", str(N_TRAIN + N_VAL))
    page.click("#query-submit")
    expect(page.locator("#query-results li")).to_have_count(N_TRAIN + N_VAL, timeout=WAIT_MS)
    marked = page.locator("#query-results li.true-tile")
    expect(marked).to_have_count(1)
    expect(marked).to_have_attribute("data-satellite-id", first["true_satellite_id"])
    expect(marked).to_contain_text("true tile")
    rank = marked.get_attribute("data-rank")
    expect(page.locator("#query-info")).to_contain_text(
        f"True tile {first['true_satellite_id']}: rank {rank}."
    )

    # An upload: tiles, but no true tile to mark.
    upload = sorted((tiny_run.world / "ANU_data_small" / "streetview").glob("*.jpg"))[0]
    page.set_input_files("#query-file", str(upload))
    page.fill("#query-k", "3")
    page.click("#query-submit")
    expect(page.locator("#query-info")).to_contain_text(f"uploaded {upload.name}", timeout=WAIT_MS)
    expect(page.locator("#query-results li")).to_have_count(3)
    tiles = shown_tiles(page)
    assert [t["id"] for t in tiles] == api_ids(served, upload.read_bytes(), upload.name, 3)
    assert page.locator("#query-results li.true-tile").count() == 0
    expect(page.locator("#query-info")).to_contain_text("no known true tile")
    expect(page.locator("#alert")).to_be_hidden()
    page.close()
    assert console_errors == []
