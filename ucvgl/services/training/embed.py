"""Embedding a whole split with one encoder, cached on disk per (weights, images, view).

Evaluation, pseudo-labelling and the label-free model selection all embed the same
images with the same weights more than once; the cache makes the repeats free: images are
decoded again only when the weights changed. Cached embeddings are stored in
``settings.embedding_cache_dtype`` (float16 by default: the embeddings are L2-normalised,
so half precision changes a cosine similarity by about 1e-4) and returned as float32 of
the stored values, so a fresh and a cached result are the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.progress import NullProgress, Progress, report_count
from ucvgl.services.training.data import ImageListDataset, Normalize, make_loader
from ucvgl.shared.fileio import atomic_torch_save

VIEWS = ("ground", "satellite", "fake")


def model_fingerprint(model: nn.Module) -> str:
    """SHA-1 of every tensor of ``model.state_dict()`` (names, shapes and values)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(str(t.dtype).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _paths_fingerprint(paths: Sequence[Path], headings: np.ndarray | None, size) -> str:
    digest = hashlib.sha1()
    for p in paths:
        digest.update(str(p).encode())
        digest.update(b"\0")
    if headings is not None:
        digest.update(np.asarray(headings, dtype=np.float64).tobytes())
    digest.update(str(tuple(size)).encode())
    return digest.hexdigest()


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def embed_images(
    encoder: nn.Module,
    dataset: ImageListDataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    stage: str = "embed",
) -> Tensor:
    """Embed every image of ``dataset`` with ``encoder`` (eval mode, no grad).

    Returns:
        float32 [N, D] on the CPU, in dataset order (one buffer filled batch by batch: no
        list of pieces and no concatenated copy).
    """
    progress = progress or NullProgress()
    device = torch.device(device)
    loader = make_loader(dataset, device=device, batch_size=batch_size)
    was_training = encoder.training
    encoder.eval()
    out: Tensor | None = None
    done = 0
    try:
        with torch.no_grad():
            for images, _ in loader:
                progress.check_cancelled()
                images = images.to(device, non_blocking=True)
                if device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                with _autocast(device):
                    emb = encoder(images)
                if out is None:
                    out = torch.empty(len(dataset), emb.shape[1], dtype=torch.float32)
                out[done : done + len(emb)] = emb.float().cpu()
                done += len(images)
                report_count(progress, stage, done, len(dataset), "images")
    finally:
        encoder.train(was_training)
    if out is None:
        return torch.empty(0, 0)
    return out


def embed_split(
    model: nn.Module,
    split: ViewSplit | None,
    view: str,
    *,
    paths: Sequence[Path] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Embed one view of a split with a ``TwoViewModel``.

    Args:
        model: a ``TwoViewModel`` (its ``config`` gives the image sizes and its data
            config the normalisation).
        split: the split whose 'ground' panoramas or 'satellite' tiles are embedded.
        view: 'ground', 'satellite', or 'fake' (fake satellite images at ``paths``,
            embedded with the satellite encoder).
        paths: the images for view 'fake' (or to override the split's paths).
        batch_size: images per forward pass.
        device: where the encoder runs.
        cache_dir: folder of cached embeddings; the key is the SHA-1 of the weights, the
            image list, the view and the size, so stale entries are never read. With a
            cache the result holds the stored (``settings.embedding_cache_dtype``) values.

    Returns:
        float32 [N, D] L2-normalised embeddings on the CPU.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    headings, rows, scale = None, None, None
    if view == "ground":
        rows = model.config.ground_rows
        size = tuple(model.config.ground_size)
        if paths is None:
            paths, headings = split.ground_paths, split.ground_heading_deg
        encoder = model.ground_encoder
    else:
        size = tuple(model.config.satellite_size)
        scale = model.config.satellite_scale
        if paths is None:
            if view == "fake":
                raise ValueError("view 'fake' needs the fake satellite image paths")
            paths = split.satellite_paths
        encoder = model.satellite_encoder
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha1(
            (
                model_fingerprint(model)
                + view
                + _paths_fingerprint(paths, headings, size)
                + ("" if rows is None else f"rows{rows[0]:.6f},{rows[1]:.6f}")
                + ("" if scale is None else f"scale{scale:.6f}")
            ).encode()
        ).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"{view}-{key}.pt"
        if cache_file.exists():
            return torch.load(cache_file, map_location="cpu", weights_only=True).float()
    mean = model.data_config.get("mean", (0.485, 0.456, 0.406))
    std = model.data_config.get("std", (0.229, 0.224, 0.225))
    dataset = ImageListDataset(
        paths,
        size,
        headings=headings,
        panorama=view == "ground",
        rows=rows,
        scale=scale,
        transform=Normalize(mean, std),
        cache=False,
    )
    emb = embed_images(
        encoder,
        dataset,
        batch_size=batch_size,
        device=device,
        progress=progress,
        stage=f"embed {view}",
    )
    if cache_file is None:
        return emb
    from ucvgl.shared.config import get_settings

    stored = emb.to(getattr(torch, get_settings().embedding_cache_dtype))
    atomic_torch_save(stored, cache_file)
    return stored.float()
