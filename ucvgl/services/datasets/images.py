"""Reading dataset images with clear errors, a pixel limit, and north-aligned panoramas.

Pillow's own decompression-bomb guard is a process-wide setting
(``PIL.Image.MAX_IMAGE_PIXELS``); this module does not change it but checks every image
against ``settings.max_image_pixels`` before decoding it.

Panorama orientation: an equirectangular panorama covers 360 degrees left to right, with
azimuth growing clockwise (seen from above) from left to right. ``heading_deg`` is the
azimuth of its centre column, in degrees clockwise from north. :func:`load_panorama` rolls
the image so that north is at the centre column: the column that looks north sits
``heading_deg / 360 * W`` columns left of the centre, so every column moves RIGHT by
``round(heading_deg / 360 * W)`` (``numpy.roll(pixels, +shift, axis=1)``; equivalently,
the view is rotated left by ``heading_deg``). A panorama whose centre looks east
(heading 90) therefore has its north column, W/4, moved to W/2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ucvgl.shared.config import get_settings
from ucvgl.shared.errors import DatasetError


def _pixel_limit() -> int:
    return int(get_settings().max_image_pixels)


def _too_large(size: tuple[int, int], limit: int) -> str | None:
    w, h = size
    if w * h > limit:
        return (
            f"image is {w}x{h} = {w * h} pixels, more than the limit of {limit} "
            "(settings.max_image_pixels, env UCVGL_MAX_IMAGE_PIXELS)"
        )
    return None


def _open_or_reason(path: Path) -> Image.Image | str:
    """The lazily opened image (header only), or why it cannot be opened."""
    if not path.is_file():
        return "image file is missing"
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:
        return f"image is too large to open safely ({exc})"
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return f"image file is unreadable (not a valid image): {exc}"
    reason = _too_large(image.size, _pixel_limit())
    if reason is not None:
        image.close()
        return reason
    return image


def _open(path: Path) -> Image.Image:
    """Open ``path`` lazily, raising a DatasetError naming it when that fails."""
    opened = _open_or_reason(Path(path))
    if isinstance(opened, str):
        raise DatasetError(f"{path}: {opened}")
    return opened


def check_image_header(path: Path) -> str | None:
    """Why ``path`` cannot be used as an image (missing, unreadable, too large), or None.

    Only the header is read, so truncated files are not detected here (see
    :func:`load_rgb`).
    """
    opened = _open_or_reason(Path(path))
    if isinstance(opened, str):
        return opened
    opened.close()
    return None


def load_rgb(path: Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Load an image fully decoded as RGB.

    Args:
        path: an image file Pillow can read (jpg, png, webp, tif...).
        draft_size: (W, H) the caller will resize to. A JPEG at least twice as large is
            decoded at 1/2, 1/4 or 1/8 scale in the DCT (``Image.draft``), never below
            this size: several times faster than a full decode followed by the resize.
            Other formats ignore it.

    Returns:
        A PIL image in mode "RGB" (smaller than the file when ``draft_size`` allowed it).

    Raises:
        DatasetError: naming ``path`` when the file is missing, unreadable, truncated or
            larger than ``settings.max_image_pixels``.
    """
    path = Path(path)
    image = _open(path)
    try:
        with image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (int(draft_size[0]), int(draft_size[1])))
            image.load()
            return image.convert("RGB")
    except OSError as exc:
        what = "truncated" if "truncat" in str(exc).lower() else "unreadable"
        raise DatasetError(f"{path}: image file is {what} ({exc})") from exc


def roll_to_north(image: Image.Image, heading_deg: float) -> Image.Image:
    """Roll an equirectangular panorama so that north is at its centre column.

    Args:
        image: a 360-degree panorama whose centre column looks at ``heading_deg``.
        heading_deg: degrees clockwise from north of the centre column.

    Returns:
        The panorama with every column moved right by ``round(heading_deg / 360 * W)``
        (wrapping around).
    """
    width = image.width
    shift = int(round(float(heading_deg) / 360.0 * width)) % width
    if shift == 0:
        return image
    pixels = np.asarray(image)
    return Image.fromarray(np.roll(pixels, shift, axis=1), mode=image.mode)


def load_panorama(
    path: Path, heading_deg: float | None = None, draft_size: tuple[int, int] | None = None
) -> Image.Image:
    """Load a ground panorama as RGB, rolled so that north is at the centre column.

    Args:
        path: the panorama file (equirectangular, 360 degrees wide).
        heading_deg: the azimuth of its centre column in degrees clockwise from north;
            None or NaN means the panorama is already north-aligned.
        draft_size: (W, H) for JPEG draft decoding, see :func:`load_rgb` (the roll is
            applied to the decoded size).

    Returns:
        An RGB PIL image of the file's size (or a draft scale of it), north at column W/2.

    Raises:
        DatasetError: as :func:`load_rgb`.
    """
    image = load_rgb(path, draft_size)
    if heading_deg is None or not np.isfinite(heading_deg):
        return image
    return roll_to_north(image, heading_deg)
