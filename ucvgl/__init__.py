"""ucvgl: unsupervised cross-view geo-localization (UCVGL, CVPR 2024) as a service."""

__version__ = "0.1.0"
