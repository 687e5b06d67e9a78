"""The dashboard page and its assets: served, typed, self-contained (no external URL)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from ucvgl.api.dashboard import STATIC_DIR, STATIC_URL
from ucvgl.api.main import create_app
from ucvgl.shared.config import Settings
from ucvgl.shared.enums import JobType

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
XML_NAMESPACES = {"http://www.w3.org/2000/svg"}
"""Identifiers, never fetched: the SVG namespace that createElementNS needs."""

URL_PATTERN = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s"'`)<>]+""", re.IGNORECASE)
JS_IMPORT = re.compile(r"""\bfrom\s+["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']""")


class AssetLinks(HTMLParser):
    """Collects src/href attributes and the inline JSON config of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.inline_scripts: list[dict[str, str | None]] = []
        self._in_script: dict[str, str | None] | None = None
        self.config_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "action"):
            if values.get(name):
                self.links.append((tag, str(values[name])))
        if tag == "script" and not values.get("src"):
            self._in_script = values

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self.inline_scripts.append(self._in_script)
            if self._in_script.get("id") == "dashboard-config":
                self.config_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def parse_page(html: str) -> AssetLinks:
    parser = AssetLinks()
    parser.feed(html)
    return parser


def static_files() -> list[str]:
    return sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file())


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_page_is_served_as_html_with_a_strict_policy(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<title>ucvgl dashboard</title>" in response.text
    page = parse_page(response.text)
    # The only inline script is JSON data (CSP would block an executable one).
    assert [s.get("type") for s in page.inline_scripts] == ["application/json"]
    config = json.loads(page.config_text)
    assert config["apiBase"] == "/api/v1"
    assert config["publicReads"] is True
    offered = {t["value"]: t["needsModel"] for t in config["jobTypes"]}
    assert offered == {t.value: t.needs_model for t in JobType if not t.creates_dataset}
    assert "register" not in offered and "synthetic" not in offered


def test_every_asset_the_page_loads_is_served_with_its_content_type(client: TestClient) -> None:
    page = parse_page(client.get("/").text)
    assets = [url for tag, url in page.links if tag in ("script", "link")]
    assert f"{STATIC_URL}/dashboard.js" in assets and f"{STATIC_URL}/dashboard.css" in assets
    seen: set[str] = set()
    queue = list(assets)
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert response.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
        if suffix == ".js":  # follow the module imports ("./api.js" is relative to the file)
            for match in JS_IMPORT.finditer(response.text):
                target = match.group(1) or match.group(2)
                assert target.startswith("./"), f"{url} imports {target!r}, not a local module"
                queue.append(url.rsplit("/", 1)[0] + "/" + target.removeprefix("./"))
    served = {url.rsplit("/", 1)[-1] for url in seen}
    assert served == set(static_files()), "a static file is unused or a used one is missing"


def test_no_external_urls_in_the_page_or_its_assets(client: TestClient) -> None:
    texts = {"/": client.get("/").text}
    for name in static_files():
        texts[name] = client.get(f"{STATIC_URL}/{name}").text
    for name, text in texts.items():
        urls = {m.group(0).rstrip(".,;") for m in URL_PATTERN.finditer(text)}
        assert urls <= XML_NAMESPACES, f"{name} names external URLs: {sorted(urls)}"
        assert "@import" not in text and "url(" not in text, name
    for tag, url in parse_page(texts["/"]).links:
        local = url.startswith("#") or (url.startswith("/") and not url.startswith("//"))
        assert local, (tag, url)


@pytest.mark.parametrize("name", ["missing.js", "dashboard.py", "..%2Fmain.py", "DASHBOARD.JS"])
def test_unknown_or_unsafe_asset_names_are_404_problems(client: TestClient, name: str) -> None:
    response = client.get(f"{STATIC_URL}/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_page_is_public_even_when_reads_need_the_token(settings: Settings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"public_reads": False})))
    page = client.get("/")
    assert page.status_code == 200
    assert json.loads(parse_page(page.text).config_text)["publicReads"] is False
    assert client.get(f"{STATIC_URL}/dashboard.js").status_code == 200
    assert client.get("/api/v1/jobs").status_code == 401
