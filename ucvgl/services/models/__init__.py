"""Two-view encoders (timm backbone + SAFA), their config and checkpoints."""

from ucvgl.services.models.checkpoint import load_model, save_model
from ucvgl.services.models.encoder import (
    EncoderConfig,
    TwoViewModel,
    ViewEncoder,
    WeightsReport,
    build_model,
)
from ucvgl.services.models.safa import SAFA

__all__ = [
    "SAFA",
    "EncoderConfig",
    "TwoViewModel",
    "ViewEncoder",
    "WeightsReport",
    "build_model",
    "load_model",
    "save_model",
]
