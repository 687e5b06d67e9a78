"""What a person looks at beside a query's answer: a run's tiles and a dataset's panoramas.

Torch-free (the API process reads it). Tiles are read from a saved index's ``ids.json``
(ids and metadata, without loading faiss); panoramas from the dataset, each with the id of
its true tile in that index when the dataset has ground truth. Files are only ever handed
out from inside the data roots (:func:`inside_roots`: links resolved, so neither ``..``
nor a symbolic link leads out).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ucvgl.services.datasets.index import CrossViewDataset
from ucvgl.shared.errors import UcvglError

IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
"""Image files that may be served, by suffix, with their media types."""

IDS_FILE = "ids.json"
"""Written by ``SatelliteIndex.save``: ``{"ids": [...], "metadata": [{"path", ...}]}``."""


class PathRefused(UcvglError):
    """A file outside the data roots, or not an image, was asked for."""


def inside_roots(path: str | Path, roots: Sequence[Path]) -> Path:
    """The real path of the image file ``path`` when it lies inside one of ``roots``.

    Raises:
        PathRefused: the file (links resolved) is outside every root, or not an image.
        FileNotFoundError: there is no such file.
    """
    real = Path(path).resolve(strict=True)
    if not real.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    if not any(real.is_relative_to(Path(root).resolve()) for root in roots):
        raise PathRefused(f"{Path(path).name} lies outside the data roots")
    if real.suffix.lower() not in IMAGE_TYPES:
        raise PathRefused(f"{Path(path).name} is not an image file ({sorted(IMAGE_TYPES)})")
    return real


@dataclass
class TileTable:
    """The tiles of a saved index: ids and metadata (``path``, ``split``, coordinates)."""

    ids: list[str]
    metadata: list[dict[str, Any]]

    @classmethod
    def read(cls, index_dir: Path) -> TileTable:
        """Read ``index_dir/ids.json``.

        Raises:
            FileNotFoundError: the index folder has no ``ids.json`` (not built yet).
        """
        payload = json.loads((Path(index_dir) / IDS_FILE).read_text())
        ids = [str(i) for i in payload["ids"]]
        metadata = payload.get("metadata") or [{} for _ in ids]
        return cls(ids, metadata)

    def path_of(self, tile_id: str) -> Path | None:
        """The file of tile ``tile_id`` as recorded in the index, None when unknown."""
        try:
            path = self.metadata[self.ids.index(tile_id)].get("path")
        except ValueError:
            return None
        return None if path is None else Path(path)

    def ids_by_path(self) -> dict[str, str]:
        """Tile id per recorded file path."""
        return {
            str(m["path"]): tile_id
            for tile_id, m in zip(self.ids, self.metadata, strict=True)
            if m.get("path")
        }


@dataclass(frozen=True)
class Panorama:
    """One ground panorama of a dataset, with its true tile in an index when known."""

    split: str
    position: int
    ground_id: str
    path: Path
    heading_deg: float | None
    true_satellite_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``file_name`` instead of the full path)."""
        return {
            "split": self.split,
            "position": self.position,
            "ground_id": self.ground_id,
            "file_name": self.path.name,
            "heading_deg": self.heading_deg,
            "true_satellite_id": self.true_satellite_id,
        }


def split_order(dataset: CrossViewDataset) -> list[str]:
    """The dataset's split names, held-out splits before ``train``."""
    return sorted(dataset.splits, key=lambda name: (name == "train", name))


def panoramas(dataset: CrossViewDataset, tiles: TileTable, split: str) -> list[Panorama]:
    """The panoramas of ``split`` with the index id of each one's true tile (or None).

    Raises:
        KeyError: naming the splits that exist, when ``split`` is not one.
    """
    view = dataset.split(split)
    by_path = tiles.ids_by_path()
    out = []
    for i, (ground_id, path) in enumerate(zip(view.ground_ids, view.ground_paths, strict=True)):
        true_id = None
        if view.positives is not None and view.positives[i] >= 0:
            true_id = by_path.get(str(view.satellite_paths[int(view.positives[i])]))
        heading = None
        if view.ground_heading_deg is not None and math.isfinite(view.ground_heading_deg[i]):
            heading = float(view.ground_heading_deg[i])
        out.append(Panorama(split, i, str(ground_id), Path(path), heading, true_id))
    return out
