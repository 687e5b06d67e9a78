"""Show a model satellite tiles at the ground extent per tile it learnt on.

A source model learnt tiles of one ground extent (CVUSA-like 91.6 m, CVACT-like 45.7 m...).
Tiles of another extent show every object at another size, and with panoramas cut to its
rows as well (``ucvgl.services.panorama_view``) the source's zero-shot recall moves from
0.8 to 26.4% R@1 (report-2 -> report-4) and 0.8 to 6.6% (report-4 -> report-1) when the
tiles are resampled to its extent (``benchmarks/results/zero_shot_views_*.json``).

``EncoderConfig.satellite_scale`` = source extent / this dataset's extent: the satellite
encoder reads each tile (and each fake satellite image, which covers the same ground)
resampled to cover that many times its ground: above 1 it shrinks into a black border, below
1 its centre is cut and enlarged. An adapted run chooses it label-free among the preset's
``init_tile_scales`` (the scale whose source keeps the most confident pairs against decoys,
``PipelineRun.source_check``), since a dataset's tile extent is often unrecorded.
"""

from __future__ import annotations

from PIL import Image


def rescale_tile(image: Image.Image, scale: float | None) -> Image.Image:
    """``image`` (a square tile) resampled to cover ``scale`` times its ground extent.

    Args:
        image: the tile (W x W; a non-square one is treated per axis).
        scale: above 1 the tile shrinks into a black border of the same size; below 1 its
            centre is cut (and left for the caller's resize to enlarge); None or 1: as is.
    """
    if scale is None or scale == 1.0:
        return image
    if scale <= 0:
        raise ValueError(f"satellite scale must be positive, got {scale}")
    w, h = image.size
    if scale > 1:
        kw, kh = max(1, round(w / scale)), max(1, round(h / scale))
        canvas = Image.new(image.mode, (w, h))
        canvas.paste(image.resize((kw, kh), Image.BILINEAR), ((w - kw) // 2, (h - kh) // 2))
        return canvas
    kw, kh = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (w - kw) // 2, (h - kh) // 2
    return image.crop((left, top, left + kw, top + kh))
