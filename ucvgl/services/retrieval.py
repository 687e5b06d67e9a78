"""Geo-localising new ground images against a trained run's satellite index.

A :class:`Retriever` loads the run's selected model and its saved faiss index once (the
server process keeps it in memory) and answers queries: panoramas in, the ``k`` most
similar satellite tiles out, with their ids, scores, files and coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ucvgl.shared.errors import ConfigError


class Retriever:
    """A model and a satellite index, ready to answer queries.

    Args:
        model: the ``TwoViewModel`` whose satellite encoder built the index.
        index: the ``SatelliteIndex`` of the run.
        device: where the ground encoder runs.
        batch_size: panoramas per forward pass.
    """

    def __init__(self, model, index, *, device: str = "cpu", batch_size: int = 32) -> None:
        from ucvgl.services.training.data import Normalize

        if index.dim != model.embed_dim:
            raise ConfigError(
                f"the index holds {index.dim}-d embeddings but the model gives "
                f"{model.embed_dim}-d ones; rebuild the index with this model"
            )
        self.model = model.to(device).eval()
        self.index = index
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.ground_size = tuple(model.config.ground_size)
        self.normalize = Normalize(
            model.data_config.get("mean", (0.485, 0.456, 0.406)),
            model.data_config.get("std", (0.229, 0.224, 0.225)),
        )

    @classmethod
    def from_run(cls, run_dir: Path, device: str = "cpu", batch_size: int = 32) -> Retriever:
        """Load ``run_dir/model/selected.pt`` and ``run_dir/index``.

        Raises:
            ConfigError: when the run has no selected model or no index yet.
        """
        from ucvgl.services.index import SatelliteIndex
        from ucvgl.services.models import load_model
        from ucvgl.services.pipeline import SELECTED_MODEL

        run_dir = Path(run_dir)
        model_path = run_dir / SELECTED_MODEL
        index_dir = run_dir / "index"
        if not model_path.exists():
            raise ConfigError(f"{run_dir} has no selected model ({model_path}); finish the run")
        if not (index_dir / "manifest.json").exists():
            raise ConfigError(f"{run_dir} has no satellite index ({index_dir}); run 'index'")
        model, _ = load_model(model_path, map_location="cpu")
        return cls(model, SatelliteIndex.load(index_dir), device=device, batch_size=batch_size)

    def embed(
        self,
        images: Sequence[Image.Image],
        heading_deg: float | Sequence[float | None] | None = None,
    ) -> np.ndarray:
        """Embed panoramas (rolled to north with their headings) -> float32 [Q, D]."""
        from ucvgl.services.datasets.images import roll_to_north
        from ucvgl.services.panorama_view import cut_rows
        from ucvgl.services.training.data import pil_to_uint8
        from ucvgl.services.training.embed import _autocast

        headings = _headings(heading_deg, len(images))
        tensors = []
        for image, heading in zip(images, headings, strict=True):
            image = image.convert("RGB")
            if heading is not None and np.isfinite(heading):
                image = roll_to_north(image, heading)
            image = cut_rows(image, self.model.config.ground_rows)
            tensors.append(self.normalize(pil_to_uint8(image, self.ground_size)))
        out = []
        with torch.no_grad():
            for start in range(0, len(tensors), self.batch_size):
                batch = torch.stack(tensors[start : start + self.batch_size]).to(self.device)
                with _autocast(self.device):
                    out.append(self.model.embed_ground(batch).float().cpu())
        if not out:
            return np.zeros((0, self.index.dim), dtype=np.float32)
        return torch.cat(out).numpy()

    def query(
        self,
        images: Sequence[Image.Image],
        k: int = 5,
        heading_deg: float | Sequence[float | None] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The ``k`` best tiles of each image, best first.

        Returns:
            One list per image of ``{"rank", "satellite_id", "score", "path", ...}`` with
            ``lat``/``lon`` and/or ``x``/``y`` where the dataset gave coordinates.
        """
        if not images:
            return []
        k = max(1, min(int(k), len(self.index)))
        scores, indices = self.index.search(self.embed(images, heading_deg), k)
        results = []
        for row_scores, row_indices in zip(scores, indices, strict=True):
            hits = []
            for rank, (score, i) in enumerate(zip(row_scores, row_indices, strict=True), 1):
                if i < 0:
                    continue
                meta = dict(self.index.metadata[i]) if self.index.metadata else {}
                hits.append(
                    {"rank": rank, "satellite_id": self.index.ids[i], "score": float(score)} | meta
                )
            results.append(hits)
        return results


def _headings(heading_deg, n: int) -> list[float | None]:
    if heading_deg is None or isinstance(heading_deg, int | float):
        return [heading_deg] * n
    headings = list(heading_deg)
    if len(headings) != n:
        raise ValueError(f"got {len(headings)} headings for {n} images")
    return headings
