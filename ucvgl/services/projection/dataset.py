"""Project every panorama of a dataset to a BEV image on disk.

Layout: one file per panorama, ``out_dir/<panorama file stem>.png``, flat (a panorama that
appears in several splits is projected once; two different panoramas with the same stem are
an error). PNG is lossless, so the CycleGAN that reads these images sees no JPEG artefacts;
it is written with zlib level 1 (fast; about a quarter larger than level 6). ``image_format
='jpg'`` writes JPEG quality 95 instead, about 5x smaller.

The parameters are recorded in ``out_dir/bev_params.json``; a later run into the same folder
with different parameters is refused (its BEVs would silently mix two projections).

Resumable: a file that already exists is skipped. Files are written atomically (temporary
file + rename), so a killed run never leaves a truncated image under the final name; at
worst it leaves a hidden ``.<name>.*.tmp`` file, which is never mistaken for a result.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ucvgl.services.datasets.images import load_panorama
from ucvgl.services.datasets.index import CrossViewDataset
from ucvgl.services.progress import NullProgress, Progress, report_count
from ucvgl.services.projection.geometry import BEVParams, BEVProjector
from ucvgl.shared.errors import ConfigError, DatasetError
from ucvgl.shared.fileio import atomic_write, atomic_write_text

ImageFormat = Literal["png", "jpg"]
STAGE = "project"
PARAMS_FILE = "bev_params.json"


def bev_output_path(out_dir: Path, panorama_path: Path, image_format: ImageFormat = "png") -> Path:
    """Where the BEV of ``panorama_path`` is written: ``out_dir/<stem>.<png|jpg>``."""
    return Path(out_dir) / f"{Path(panorama_path).stem}.{image_format}"


def _panoramas(
    dataset: CrossViewDataset, splits: Iterable[str] | None
) -> list[tuple[Path, float | None]]:
    """Unique (path, heading) of the panoramas of ``splits`` (all when None), in order."""
    names = list(dataset.splits) if splits is None else list(splits)
    seen: dict[Path, int] = {}
    items: list[tuple[Path, float | None]] = []
    for name in names:
        split = dataset.split(name)
        headings = split.ground_heading_deg
        for i, path in enumerate(split.ground_paths):
            path = Path(path)
            if path in seen:
                continue
            heading = None if headings is None else float(headings[i])
            seen[path] = len(items)
            items.append((path, heading))
    return items


def _check_unique_stems(items: Sequence[tuple[Path, float | None]]) -> None:
    by_stem: dict[str, Path] = {}
    for path, _ in items:
        other = by_stem.setdefault(path.stem, path)
        if other != path:
            raise DatasetError(
                f"two panoramas share the file stem {path.stem!r} ({other} and {path}); "
                "their BEVs would overwrite each other in one output folder: project the "
                "splits into separate folders (splits=...)"
            )


def _record_params(out_dir: Path, params: BEVParams, image_format: ImageFormat) -> None:
    """Write ``out_dir/bev_params.json``, or check that it matches ``params``."""
    record = {"params": asdict(params), "image_format": image_format}
    path = out_dir / PARAMS_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable projection record ({exc}); delete it") from exc
        if previous != record:
            raise ConfigError(
                f"{out_dir} holds BEVs made with other parameters ({path}: {previous}); "
                f"now asked for {record}. Use another output folder or empty this one."
            )
        return
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True))


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 [3, H, W] in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _to_image(bev: torch.Tensor) -> Image.Image:
    """float [3, S, S] in [0, 1] -> PIL RGB (rounded, clamped)."""
    array = bev.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), mode="RGB")


def _save(image: Image.Image, path: Path, image_format: ImageFormat) -> None:
    if image_format == "png":
        atomic_write(path, lambda fh: image.save(fh, format="PNG", compress_level=1))
    else:
        atomic_write(path, lambda fh: image.save(fh, format="JPEG", quality=95, subsampling=0))


def project_dataset(
    dataset: CrossViewDataset,
    out_dir: Path,
    params: BEVParams,
    *,
    splits: Sequence[str] | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    image_format: ImageFormat = "png",
    num_threads: int = 4,
    progress: Progress = NullProgress(),
) -> list[Path]:
    """Write the BEV of every panorama of ``dataset`` to ``out_dir/<stem>.png``.

    Panoramas are loaded north-aligned (``load_panorama`` with the split's headings), batched
    by image size and projected with one cached grid per size. Existing outputs are skipped.

    Args:
        dataset: the dataset index.
        out_dir: output folder (created).
        params: projection parameters (see :func:`bev_params_for_dataset`).
        splits: split names to project; None = all splits.
        batch_size: panoramas projected per step.
        device: torch device for the projection.
        image_format: 'png' (lossless, default) or 'jpg' (quality 95).
        num_threads: threads that decode panoramas and encode BEVs (Pillow releases the GIL).
        progress: reports stage 'project'; cancelled between batches.

    Returns:
        The output path of every panorama, in dataset order (skipped ones included).

    Raises:
        DatasetError: an unreadable panorama, or two panoramas with the same file stem.
        ConfigError: ``out_dir`` holds BEVs made with other parameters.
        JobCancelled: when ``progress`` asks to stop (finished files stay valid).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    out_dir = Path(out_dir)
    items = _panoramas(dataset, splits)
    _check_unique_stems(items)
    out_dir.mkdir(parents=True, exist_ok=True)
    _record_params(out_dir, params, image_format)
    outputs = [bev_output_path(out_dir, path, image_format) for path, _ in items]
    pending = [i for i, out in enumerate(outputs) if not out.exists()]
    total = len(items)
    done = total - len(pending)
    progress.update(STAGE, done / total if total else 1.0, f"{done}/{total} already projected")

    projector = BEVProjector(params)
    threads = max(1, min(num_threads, batch_size, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(pending), batch_size):
            progress.check_cancelled()
            chunk = pending[start : start + batch_size]
            images = list(pool.map(lambda i: load_panorama(*items[i]), chunk))
            groups: dict[tuple[int, int], list[int]] = defaultdict(list)
            for k, image in enumerate(images):
                groups[(image.height, image.width)].append(k)
            saves = []
            for members in groups.values():
                batch = torch.stack([_to_tensor(images[k]) for k in members]).to(device)
                with torch.no_grad():
                    bevs = projector(batch).cpu()
                for k, bev in zip(members, bevs, strict=True):
                    target = outputs[chunk[k]]
                    saves.append(pool.submit(_save, _to_image(bev), target, image_format))
            for future in saves:
                future.result()
            done += len(chunk)
            report_count(progress, STAGE, done, total, "panoramas", f"{done}/{total} panoramas")
    return outputs
