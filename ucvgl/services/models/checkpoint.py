"""Saving and loading ``TwoViewModel`` checkpoints (config + weights + temperature + extra).

The file is a ``torch.save``d dict::

    {"format": "ucvgl.two_view_model", "version": 1,
     "config": EncoderConfig as JSON-compatible dict,
     "state_dict": model.state_dict(),   # includes logit_scale
     "extra": {...}}                     # optimizer state, epoch, curriculum...

It is written atomically, and read back with ``torch.load(weights_only=True)``, so ``extra``
must hold only tensors, numbers, strings, None and lists/tuples/dicts of them (optimizer and
scheduler ``state_dict()``s qualify).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ucvgl.services.models.encoder import EncoderConfig, TwoViewModel, build_model
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.fileio import atomic_torch_save

CHECKPOINT_FORMAT = "ucvgl.two_view_model"
CHECKPOINT_VERSION = 1


def save_model(
    model: TwoViewModel, path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (config, all parameters and buffers incl. logit_scale) and ``extra``.

    Returns the path written.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(payload, path)


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[TwoViewModel, dict[str, Any]]:
    """Rebuild a ``TwoViewModel`` from a ``save_model`` file.

    The model is rebuilt from the saved config WITHOUT reloading the backbone weights file
    named there (the saved state dict replaces them, and that file may not exist here);
    ``model.config`` is the saved config unchanged.

    Returns:
        (model on ``map_location``, the ``extra`` dict).

    Raises:
        ConfigError: the file is missing, unreadable, not a ucvgl model checkpoint, or its
            weights do not fit the saved config.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(
            f"model checkpoint {path} is corrupt or not a torch file (re-save it with "
            f"ucvgl.services.models.save_model): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{path} is not a ucvgl two-view model checkpoint (no format={CHECKPOINT_FORMAT!r})"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(
            f"{path} has checkpoint version {payload.get('version')}; this ucvgl reads "
            f"version {CHECKPOINT_VERSION}"
        )
    try:
        config = EncoderConfig.model_validate(payload["config"])
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError or KeyError
        raise ConfigError(f"{path} holds an invalid model config: {exc}") from exc
    model = build_model(config.model_copy(update={"weights": None}))
    model.config = config
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(f"{path}: weights do not fit the saved config: {exc}") from exc
    return model.to(map_location), payload.get("extra") or {}
