"""``ucvgl query``: which satellite tiles match these panoramas, from a run's index.

The answer is the one ``POST /api/v1/query`` gives for the same run: the same retriever
(:class:`ucvgl.services.retrieval.Retriever`), heading roll and answer records
(:func:`ucvgl.services.query_results.match_record`). A run without an index gets one
built first (as the ``index`` job does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

INDEX_MANIFEST = Path("index") / "manifest.json"


def check_run_dir(run: Path) -> None:
    """Refuse a run folder that does not exist or holds no run (error names the folder)."""
    from ucvgl.services.pipeline import REPORT_FILE, RUN_FILE, SELECTED_MODEL
    from ucvgl.shared.errors import ConfigError

    if not run.is_dir():
        raise ConfigError(f"{run}: no such run folder; give the --out folder of 'ucvgl pipeline'")
    if not (run / RUN_FILE).is_file() and not (run / SELECTED_MODEL).is_file():
        raise ConfigError(
            f"{run}: not a run folder (no {RUN_FILE}, no {SELECTED_MODEL}); "
            "give the --out folder of 'ucvgl pipeline'"
        )
    if not (run / SELECTED_MODEL).is_file():
        failure = _failure(run)
        raise ConfigError(
            f"{run}: the run has no selected model ({SELECTED_MODEL}) to query with"
            + (f"; it failed at stage {failure} (see {run / REPORT_FILE})" if failure else "")
            + "; finish it with 'ucvgl pipeline' (same --out) first"
        )


def _failure(run: Path) -> str | None:
    """The stage at which the run's report says it failed, or None."""
    from ucvgl.services.pipeline import REPORT_FILE

    try:
        report = json.loads((run / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    failure = report.get("failure") if report.get("status") == "failed" else None
    return str(failure.get("stage")) if isinstance(failure, dict) else None


def ensure_index(run: Path, device: str | None) -> bool:
    """Build ``run/index`` when it is missing (the ``index`` stage); True when it was built."""
    if (run / INDEX_MANIFEST).is_file():
        return False
    from ucvgl.commands.pipeline import _run_on

    _run_on(run, lambda r, p: r._timed("index", r.index, p), device=device)
    return True


def read_images(images: list[Path], heading: float | None) -> list[Any]:
    """Each panorama as RGB, rolled north by ``heading`` (as the API does with uploads).

    Raises:
        DatasetError: naming the first file that is missing, unreadable or too large.
    """
    from ucvgl.services.datasets.images import roll_to_north
    from ucvgl.services.query_results import open_query_image
    from ucvgl.shared.config import get_settings

    limit = get_settings().max_image_pixels
    pictures = [open_query_image(path, limit) for path in images]
    return pictures if heading is None else [roll_to_north(p, heading) for p in pictures]


def answer(
    run: Path, images: list[Path], pictures: list[Any], k: int, device: str
) -> dict[str, Any]:
    """The top-``k`` tiles of each picture: ``{"run", "k", "results": [{file_name, path,
    matches: [match_record...]}]}`` (``matches`` as ``POST /api/v1/query`` gives them)."""
    from ucvgl.services.query_results import match_record
    from ucvgl.services.retrieval import Retriever

    hits = Retriever.from_run(run, device).query(pictures, k)
    return {
        "run": str(run),
        "k": k,
        "results": [
            {
                "file_name": path.name,
                "path": str(path),
                "matches": [match_record(rank, hit) for rank, hit in enumerate(found, start=1)],
            }
            for path, found in zip(images, hits, strict=True)
        ],
    }


def _coord(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_answer(body: dict[str, Any]) -> str:
    """The answer as a table per image: rank, score, tile id, file and coordinates."""
    lines: list[str] = []
    for result in body["results"]:
        matches = result["matches"]
        tile_w = max([4] + [len(m["satellite_id"]) for m in matches])
        file_w = max([4] + [len(m["file_name"]) for m in matches])
        if lines:
            lines.append("")
        lines.append(f"{result['path']}: top {len(matches)} tiles")
        lines.append(
            f"{'rank':>4}  {'score':>7}  {'tile':<{tile_w}}  {'file':<{file_w}}  "
            f"{'lat':>11} {'lon':>11} {'x':>11} {'y':>12}"
        )
        for m in matches:
            lines.append(
                f"{m['rank']:>4}  {m['score']:>7.4f}  {m['satellite_id']:<{tile_w}}  "
                f"{m['file_name']:<{file_w}}  {_coord(m['lat'], 6):>11} "
                f"{_coord(m['lon'], 6):>11} {_coord(m['x'], 1):>11} {_coord(m['y'], 1):>12}"
            )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``ucvgl query`` to ``app``."""

    @app.command("query")
    def query(
        images: list[Path] = typer.Argument(..., help="Ground panoramas (JPEG/PNG)."),
        run: Path = typer.Option(..., "--run", help="The run folder (ucvgl pipeline --out)."),
        k: int = typer.Option(5, "--k", min=1, max=100, help="Tiles per panorama."),
        heading: float = typer.Option(
            None, "--heading", help="Degrees clockwise from north of the centre column."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
        device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: settings)."),
    ) -> None:
        """Top-k satellite tiles (scores, file names, coordinates) for each panorama.

        Uses the run's selected model and satellite index (built first when missing);
        the same answer as POST /api/v1/query on that run's index.
        """
        from ucvgl.shared.config import get_settings
        from ucvgl.shared.errors import UcvglError

        settings = get_settings()
        settings.apply_torch_threads()
        try:
            check_run_dir(run)
            pictures = read_images(list(images), heading)  # before any slow work
            if ensure_index(run, device):
                typer.echo(f"built the satellite index: {run / 'index'}", err=True)
            body = answer(run, list(images), pictures, k, device or settings.torch_device())
        except UcvglError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(json.dumps(body, indent=2) if as_json else format_answer(body))
