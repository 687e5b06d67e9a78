"""The dashboard: one HTML page at ``/`` and ``/dashboard`` that polls the JSON API.

The page and its assets (plain JavaScript modules, CSS, an SVG icon) ship inside the
package (``ucvgl/api/templates`` and ``ucvgl/api/static``); nothing is fetched from
another origin, which the page's Content-Security-Policy also enforces. The page holds no
data: it reads ``/api/v1`` like any client, so it is public even when reads need the token.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from ucvgl.api.deps import SettingsDep
from ucvgl.api.presenters import API
from ucvgl.api.problems import ApiProblem
from ucvgl.shared.enums import JobState, JobType, TrainingMode

API_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = API_DIR / "templates"
STATIC_DIR = API_DIR / "static"
STATIC_URL = "/dashboard/static"

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Everything from this origin only: no CDN, no inline script, no framing (``blob:``
images are the query panel's tiles and panoramas, fetched from this origin with the token)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def page_config(public_reads: bool) -> dict[str, Any]:
    """What the page's script needs to know: API base, job types, states, modes."""
    return {
        "apiBase": API,
        "publicReads": public_reads,
        "jobTypes": [
            {"value": t.value, "needsModel": t.needs_model}
            for t in JobType
            if not t.creates_dataset  # started from /datasets, not the job form
        ],
        "jobStates": [s.value for s in JobState],
        "terminalStates": [s.value for s in JobState if s.is_terminal()],
        "modes": [m.value for m in TrainingMode],
    }


@router.get("/", response_class=HTMLResponse)
@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The dashboard page: jobs with live progress, pseudo-label curves, actions, queries."""
    config = json.dumps(page_config(settings.public_reads), separators=(",", ":"))
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            # '<' escaped so the JSON cannot close its <script> element.
            "config_json": config.replace("<", "\\u003c"),
            "static_url": STATIC_URL,
        },
        headers=SECURITY_HEADERS,
    )


@router.get(STATIC_URL + "/{name}")
def dashboard_asset(name: str) -> FileResponse:
    """One file of ``ucvgl/api/static`` (flat folder; only .js, .css and .svg)."""
    path = STATIC_DIR / name
    if not STATIC_NAME.match(name) or not path.is_file():
        raise ApiProblem(404, f"no dashboard file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)
