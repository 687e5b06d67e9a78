"""Images beside a query's answer: an index's tiles and its dataset's panoramas.

For the dashboard's query panel: the panoramas of the dataset an index was built from
(each with the id of its true tile in that index when the dataset has ground truth) and
the image files of panoramas and tiles. Files are served only from inside the data roots
(``UCVGL_DATA_ROOTS``): a path leading out, by ``..`` or by a link, is refused with 403.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ucvgl.api.bounds import MAX_DB_ID, Offset, PathId
from ucvgl.api.deps import ReadAccess, SessionDep, SettingsDep
from ucvgl.api.job_submission import get_or_404
from ucvgl.api.presenters import API
from ucvgl.api.problems import ApiProblem, problem_responses
from ucvgl.services.datasets.index import CrossViewDataset
from ucvgl.services.gallery import (
    IMAGE_TYPES,
    PathRefused,
    TileTable,
    inside_roots,
    panoramas,
    split_order,
)
from ucvgl.shared.config import Settings
from ucvgl.shared.errors import UcvglError
from ucvgl.shared.models import Dataset, RetrievalIndex

router = APIRouter(
    prefix=f"{API}/indexes",
    tags=["indexes"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),
)

IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {t: {} for t in sorted(set(IMAGE_TYPES.values()))},
        "description": "The image.",
    },
    **problem_responses(403, 409),
}
DATASETS_KEPT = 2
"""Datasets the process keeps loaded for the panorama routes (least recently used go)."""


class PanoramaRead(BaseModel):
    """A ground panorama of the index's dataset."""

    split: str
    position: int = Field(description="Index of the panorama in its split.")
    ground_id: str
    file_name: str
    heading_deg: float | None = Field(
        description="Heading of its centre column (send it with the query), None if north."
    )
    true_satellite_id: str | None = Field(
        description="The index's id of its true tile; None without ground truth."
    )
    image_url: str


class PanoramaPage(BaseModel):
    """A page of the panoramas of one split of the dataset an index was built from."""

    index_id: int
    dataset_id: int
    dataset_name: str
    has_ground_truth: bool
    split: str
    splits: list[str] = Field(description="Every split, held-out ones first.")
    items: list[PanoramaRead]
    total: int
    limit: int
    offset: int


class _DatasetCache:
    """The last :data:`DATASETS_KEPT` datasets read, keyed by their row's reading options."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, CrossViewDataset] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row: Dataset) -> CrossViewDataset:
        from ucvgl.services.datasets import load_dataset

        options = row.load_options or {}
        key = json.dumps([row.id, row.root_path, row.format, options], sort_keys=True)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        dataset = load_dataset(Path(row.root_path), row.format, name=row.name, **options)
        with self._lock:
            self._items[key] = dataset
            while len(self._items) > DATASETS_KEPT:
                self._items.popitem(last=False)
        return dataset


def _dataset_cache(request: Request) -> _DatasetCache:
    state = request.app.state
    if getattr(state, "gallery_datasets", None) is None:
        state.gallery_datasets = _DatasetCache()
    return state.gallery_datasets


def _index_and_dataset(session, index_id: int) -> tuple[RetrievalIndex, Dataset]:
    index = get_or_404(session, RetrievalIndex, index_id, "index")
    return index, index.model.dataset


def _tiles(index: RetrievalIndex) -> TileTable:
    try:
        return TileTable.read(Path(index.path))
    except (OSError, ValueError, KeyError) as exc:
        raise ApiProblem(
            409, f"index {index.id} has no readable tile table in {index.path}: rebuild it"
        ) from exc


def _load(request: Request, dataset: Dataset) -> CrossViewDataset:
    try:
        return _dataset_cache(request).get(dataset)
    except (UcvglError, OSError, ValueError, KeyError) as exc:
        raise ApiProblem(
            409, f"dataset {dataset.id} ({dataset.name}) cannot be read: {exc}"
        ) from exc


def _serve(path: Path, settings: Settings, what: str) -> FileResponse:
    """The image at ``path`` if it lies inside the data roots (403 otherwise)."""
    try:
        real = inside_roots(path, settings.data_roots)
    except PathRefused as exc:
        raise ApiProblem(
            403, f"{what}: {exc}; only files inside the data roots are served"
        ) from exc
    except (FileNotFoundError, OSError) as exc:
        raise ApiProblem(404, f"{what}: its file {path.name} is missing") from exc
    return FileResponse(
        real,
        media_type=IMAGE_TYPES[real.suffix.lower()],
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/{index_id}/panoramas", response_model=PanoramaPage, responses=problem_responses(409))
def list_panoramas(
    index_id: PathId,
    request: Request,
    session: SessionDep,
    split: Annotated[
        str | None, Query(max_length=200, description="Default: held-out first.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> PanoramaPage:
    """Panoramas of the dataset an index was built from, with each one's true tile."""
    index, row = _index_and_dataset(session, index_id)
    tiles = _tiles(index)
    dataset = _load(request, row)
    names = split_order(dataset)
    chosen = split if split is not None else names[0]
    if chosen not in dataset.splits:
        raise ApiProblem(404, f"dataset {row.id} has no split {chosen!r}; it has {names}")
    found = panoramas(dataset, tiles, chosen)
    base = f"{API}/indexes/{index.id}/panoramas/{chosen}"
    return PanoramaPage(
        index_id=index.id,
        dataset_id=row.id,
        dataset_name=row.name,
        has_ground_truth=bool(row.has_ground_truth),
        split=chosen,
        splits=names,
        items=[
            PanoramaRead(**p.to_dict(), image_url=f"{base}/{p.position}/image")
            for p in found[offset : offset + limit]
        ],
        total=len(found),
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{index_id}/panoramas/{split}/{position}/image",
    response_class=FileResponse,
    responses=IMAGE_RESPONSES,
)
def panorama_image(
    index_id: PathId,
    split: Annotated[str, PathParam(max_length=200)],
    position: Annotated[int, PathParam(ge=0, le=MAX_DB_ID)],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    """The image file of one panorama of the index's dataset."""
    _, row = _index_and_dataset(session, index_id)
    dataset = _load(request, row)
    if split not in dataset.splits:
        raise ApiProblem(404, f"dataset {row.id} has no split {split!r}")
    paths = dataset.splits[split].ground_paths
    if position >= len(paths):
        raise ApiProblem(404, f"split {split!r} has {len(paths)} panoramas; no {position}")
    return _serve(Path(paths[position]), settings, f"panorama {split}/{position}")


@router.get("/{index_id}/tile", response_class=FileResponse, responses=IMAGE_RESPONSES)
def tile_image(
    index_id: PathId,
    session: SessionDep,
    settings: SettingsDep,
    satellite_id: Annotated[
        str, Query(min_length=1, max_length=500, description="A tile id of the index.")
    ],
) -> FileResponse:
    """The image file of one satellite tile of an index (as ``/query`` names it)."""
    index = get_or_404(session, RetrievalIndex, index_id, "index")
    path = _tiles(index).path_of(satellite_id)
    if path is None:
        raise ApiProblem(404, f"index {index.id} has no tile {satellite_id!r}")
    return _serve(path, settings, f"tile {satellite_id!r}")
