"""Dataset readers: CVUSA, CVACT, VIGOR and a generic folder layout, into one index.

``load_dataset(root, format)`` reads any supported layout into a
:class:`CrossViewDataset`; ``detect_format(root)`` guesses the layout;
``load_rgb``/``load_panorama`` read images with clear errors (panoramas rolled to north).
"""

from ucvgl.services.datasets.images import load_panorama, load_rgb
from ucvgl.services.datasets.index import (
    CrossViewDataset,
    ValidationIssue,
    ValidationReport,
    ViewSplit,
)
from ucvgl.services.datasets.layout import SUPPORTED_FORMATS, detect_format
from ucvgl.services.datasets.loader import load_dataset, reader_options
from ucvgl.services.datasets.vigor import VigorOptions

__all__ = [
    "SUPPORTED_FORMATS",
    "CrossViewDataset",
    "ValidationIssue",
    "ValidationReport",
    "VigorOptions",
    "ViewSplit",
    "detect_format",
    "load_dataset",
    "load_panorama",
    "load_rgb",
    "reader_options",
]
