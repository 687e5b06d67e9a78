"""The query path's torch-free parts, shared by ``POST /api/v1/query`` and ``ucvgl query``.

:class:`ucvgl.services.retrieval.Retriever` finds the tiles; this module reads a query
image from a file and turns each hit into the record both answers show, so the API
process (which never imports torch) and the command line give the same fields.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ucvgl.shared.errors import DatasetError

MATCH_FIELDS = ("rank", "satellite_id", "score", "file_name", "lat", "lon", "x", "y")
"""The fields of one answered tile."""


def match_record(rank: int, hit: dict[str, Any]) -> dict[str, Any]:
    """One hit of ``Retriever.query`` as the answer shows it (:data:`MATCH_FIELDS`).

    ``file_name`` is the tile's file name without its folder; coordinates the dataset did
    not give (or that are not finite) are None.
    """

    def num(key: str) -> float | None:
        value = hit.get(key)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return {
        "rank": int(rank),
        "satellite_id": str(hit["satellite_id"]),
        "score": float(hit["score"]),
        "file_name": Path(str(hit.get("path", ""))).name,
        "lat": num("lat"),
        "lon": num("lon"),
        "x": num("x"),
        "y": num("y"),
    }


def open_query_image(path: Path, max_pixels: int) -> Image.Image:
    """Read the query panorama at ``path`` as RGB, refusing more than ``max_pixels``.

    Raises:
        DatasetError: naming the file when it is missing, not an image, or too large.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise DatasetError(
                    f"{path}: {width}x{height} pixels exceeds the limit of {max_pixels} "
                    "pixels (UCVGL_MAX_IMAGE_PIXELS)"
                )
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc
