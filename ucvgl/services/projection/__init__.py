"""Correspondence-free geometric projection: ground panorama -> bird's-eye view (Eq. 2)."""

from ucvgl.services.projection.baseline import pixel_retrieval, thumbnail_descriptors
from ucvgl.services.projection.dataset import bev_output_path, project_dataset
from ucvgl.services.projection.defaults import bev_params_for_dataset, default_bev_params
from ucvgl.services.projection.geometry import (
    BEVParams,
    BEVProjector,
    bev_sampling_grid,
    panorama_to_bev,
)

__all__ = [
    "BEVParams",
    "BEVProjector",
    "bev_output_path",
    "bev_params_for_dataset",
    "bev_sampling_grid",
    "default_bev_params",
    "panorama_to_bev",
    "pixel_retrieval",
    "project_dataset",
    "thumbnail_descriptors",
]
