"""Errors shared by every room. Each names the file or field at fault and what to do."""

from __future__ import annotations


class UcvglError(Exception):
    """Base class for every error ucvgl raises on purpose."""


class DatasetError(UcvglError):
    """A dataset on disk does not match its declared layout (missing file, bad line...)."""


class ConfigError(UcvglError):
    """A parameter or setting is invalid."""


class JobCancelled(UcvglError):
    """Raised inside a running stage when its job was cancelled; checkpoints stay usable."""
