"""Reading CycleGAN checkpoints (``cyclegan_last.pt``) and building their generators."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ucvgl.shared.errors import ConfigError

from .config import CycleGANConfig
from .networks import ResnetGenerator

CHECKPOINT_NAME = "cyclegan_last.pt"
CHECKPOINT_FORMAT = "ucvgl-cyclegan-v1"
_REQUIRED_KEYS = ("format", "config", "epoch", "g_ab", "g_ba", "d_a", "d_b")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`ucvgl.services.cyclegan.train_cyclegan`.

    Raises:
        ConfigError: the file is missing, unreadable, or not a CycleGAN checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"CycleGAN checkpoint {path} does not exist; train the imaging projection first "
            f"(train_cyclegan / `ucvgl cyclegan`) or pass the path of its {CHECKPOINT_NAME}"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"CycleGAN checkpoint {path} is corrupt or truncated ({_first_line(exc)}); delete it "
            f"and train again (training restarts from scratch without it)"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{path} is not a ucvgl CycleGAN checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            f"pass the {CHECKPOINT_NAME} written by train_cyclegan"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise ConfigError(f"CycleGAN checkpoint {path} lacks {missing}; delete it and train again")
    return state


def checkpoint_config(state: dict[str, Any], path: Path) -> CycleGANConfig:
    """The :class:`CycleGANConfig` stored in a loaded checkpoint."""
    try:
        return CycleGANConfig.from_dict(dict(state["config"]))
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"CycleGAN checkpoint {path} has an invalid config ({exc})") from exc


def load_generator(
    checkpoint: Path, device: str | torch.device = "cpu", direction: str = "ab"
) -> nn.Module:
    """The trained generator of a checkpoint, in eval mode on ``device``.

    Args:
        checkpoint: a ``cyclegan_last.pt``.
        device: where to place the generator.
        direction: ``"ab"`` (BEV -> fake satellite, the default) or ``"ba"``.

    Returns:
        A :class:`ResnetGenerator` mapping [B, 3, S, S] in [-1, 1] to [B, 3, S, S] in [-1, 1];
        its training size S is ``generator.train_size``, the side it translates whole
        images at ``generator.translate_size`` (``CycleGANConfig.translate_size``).
    """
    if direction not in ("ab", "ba"):
        raise ValueError(f"direction must be 'ab' or 'ba', got {direction!r}")
    state = load_checkpoint(checkpoint, map_location="cpu")
    cfg = checkpoint_config(state, Path(checkpoint))
    generator = ResnetGenerator(3, 3, ngf=cfg.ngf, n_blocks=cfg.n_blocks)
    try:
        generator.load_state_dict(state[f"g_{direction}"])
    except RuntimeError as exc:
        raise ConfigError(
            f"CycleGAN checkpoint {checkpoint} does not match its own config ({exc}); "
            f"delete it and train again"
        ) from exc
    generator.train_size = cfg.size  # type: ignore[assignment]
    generator.translate_size = cfg.translate_size  # type: ignore[assignment]
    return generator.to(device).eval()
