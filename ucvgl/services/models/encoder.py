"""Image encoders for the two views: a timm backbone followed by SAFA (or average pooling).

``TwoViewModel`` holds one encoder for ground panoramas and one for satellite (or fake
satellite) tiles, plus the learnable temperature of the contrastive loss. Backbones come
from timm with ``pretrained=False`` unless a LOCAL weights file is given; finding that file
(timm's hub tag through huggingface_hub, a folder) is ``weights.resolve_weights``, before
any model is built.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from ucvgl.services.models.safa import SAFA
from ucvgl.shared.errors import ConfigError

logger = logging.getLogger(__name__)

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)


class EncoderConfig(BaseModel):
    """Everything needed to rebuild a ``TwoViewModel`` (saved inside checkpoints).

    Sizes are (H, W) in pixels of the images fed to each encoder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = Field("convnext_atto", min_length=1, description="any timm model name")
    safa: bool = True
    safa_branches: int = Field(8, ge=1)
    shared_weights: bool = False
    ground_size: tuple[int, int] = (128, 256)
    satellite_size: tuple[int, int] = (128, 128)
    weights: Path | None = Field(None, description="local timm backbone weights file")
    weights_tag: str | None = Field(
        None,
        description="timm pretrained tag of the weights (the backbone is built as "
        "<backbone>.<tag>, so timm's data config (mean, std) is the tag's)",
    )
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    standardise_input: bool = Field(
        False,
        description="shift each channel of each input image to mean 0 and unit variance "
        "before the backbone (invariance to per-view exposure and white balance)",
    )

    ground_rows: tuple[float, float] | None = Field(
        None,
        description="rows (top, bottom) of each stored panorama the ground encoder reads, as "
        "fractions of its height, cut before the resize to ground_size (beyond the image is "
        "black); None = the whole panorama. Set by a run adapted from a source of another "
        "vertical layout (ucvgl.services.panorama_view)",
    )

    satellite_scale: float | None = Field(
        None,
        gt=0.0,
        description="each tile (and fake satellite image) is read resampled to cover this "
        "many times its ground extent (above 1: shrunk into a black border; below 1: its "
        "centre enlarged); None = as it is. Chosen by a run adapted from a source that "
        "learnt tiles of another extent (ucvgl.services.tile_scale)",
    )

    @field_validator("ground_rows")
    @classmethod
    def _rows_ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"ground_rows needs top < bottom (fractions), got {v}")
        return v

    @field_validator("ground_size", "satellite_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < 1:
            raise ValueError(f"image size must be positive (H, W), got {v}")
        return v


@dataclass
class WeightsReport:
    """What loading a local backbone weights file did."""

    path: Path
    method: str  # "timm" (pretrained_cfg_overlay) or "state_dict" (fallback loader)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)


def timm_name(name: str, tag: str | None) -> str:
    """``name.tag`` when timm knows that pretrained tag, else ``name``."""
    import timm

    if tag and "." not in name and f"{name}.{tag}" in timm.list_pretrained(f"{name}.{tag}"):
        return f"{name}.{tag}"
    return name


def create_backbone(
    name: str,
    *,
    weights: Path | None = None,
    drop_path_rate: float = 0.0,
    tag: str | None = None,
) -> tuple[nn.Module, WeightsReport | None]:
    """A timm backbone whose ``forward`` returns its final feature map [B, C, h, w].

    The classifier is removed and pooling disabled (``num_classes=0, global_pool=''``); for
    ConvNeXt the head's LayerNorm is still applied to the map. With ``weights`` the LOCAL
    file is loaded through timm's ``pretrained_cfg_overlay=dict(file=...)`` (offline in timm
    1.0.x; raw state dicts or {'state_dict'|'model': ...} wrappers, .pth or .safetensors,
    original FB/OpenCLIP ConvNeXt names remapped) with ``pretrained_strict=True`` on the full
    model, then the classifier is dropped. (timm's own load is NOT strict once num_classes
    differs from the checkpoint, and only logs missing keys, hence the strict load here.)
    With ``tag`` (a timm pretrained tag) the model is built as ``name.tag``: timm's data
    config (mean, std) and checkpoint filter are the tag's.
    If that fails, the tensors whose names and shapes match are loaded with
    ``strict=False`` and the missing/ignored keys are reported (``WeightsReport`` and a log
    warning); a file sharing fewer than half of the backbone's tensors is a ConfigError.

    Raises:
        ConfigError: unknown backbone, missing weights file, or weights of another model.
    """
    import timm

    extra: dict[str, Any] = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm backbone {name!r}; see timm.list_models()")
    name = timm_name(name, tag)
    if weights is None:
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", **extra)
        return model, None

    weights = Path(weights)
    if not weights.is_file():
        raise ConfigError(
            f"backbone weights file {weights} does not exist; give a local timm checkpoint "
            f"of {name!r} or weights=None for random initialisation"
        )
    try:
        model = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(weights)),
            pretrained_strict=True,
            **extra,
        )
        model.reset_classifier(0, global_pool="")
        return model, WeightsReport(path=weights, method="timm")
    except Exception as exc:  # noqa: BLE001 - any strict-load failure falls back to a partial load
        logger.info(
            "strict load of %s into %s failed (%s); trying a partial load", weights, name, exc
        )
    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", **extra)
    return model, _load_partial(model, name, weights)


def _load_partial(model: nn.Module, name: str, path: Path) -> WeightsReport:
    """Load the tensors of ``path`` whose names and shapes match ``model``; report the rest."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ConfigError(f"cannot read backbone weights {path}: {exc}") from exc
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(matching) < 0.5 * len(own):
        raise ConfigError(
            f"backbone weights {path} do not match timm model {name!r}: only "
            f"{len(matching)} of its {len(own)} tensors have a counterpart of the same "
            f"name and shape (is the file for another backbone?)"
        )
    result = model.load_state_dict(matching, strict=False)
    unexpected = sorted(k for k in state if k not in matching)
    missing = sorted(result.missing_keys)
    logger.warning(
        "loaded %d tensors from %s into %s; missing %d (%s), ignored %d (%s)",
        len(matching),
        path,
        name,
        len(missing),
        missing[:5],
        len(unexpected),
        unexpected[:5],
    )
    return WeightsReport(path, "state_dict", missing, unexpected)


def standardise_images(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Each channel of each image to mean 0, standard deviation 1: [B, 3, H, W] -> same.

    A per-view gain and offset per channel (exposure, white balance, and the dataset
    normalisation itself) leaves the result unchanged, so the two views' colour
    differences never reach the backbone.
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


class ViewEncoder(nn.Module):
    """Backbone + SAFA (or global average pooling) + L2 normalisation for one view.

    Args:
        backbone: timm model name (a CNN whose features are a [B, C, h, w] map).
        input_size: (H, W) of the images this encoder will see; SAFA's size is derived from
            it by a dry run at construction.
        safa: SAFA head (True) or global average pooling (False).
        safa_branches: number of SAFA spatial maps.
        weights: optional local backbone weights file.
        weights_tag: timm pretrained tag of ``weights`` (see :func:`create_backbone`).
        drop_path_rate: stochastic depth of the backbone.
        standardise_input: per-image, per-channel standardisation of the input (see
            :func:`standardise_images`).
        shared_backbone: reuse this backbone module instead of creating one (shared weights).

    Attributes:
        feature_channels (C), feature_hw ((h, w)), embed_dim (C*K or C), data_config (timm's
        mean/std/interpolation), weights_report (None or a ``WeightsReport``).
    """

    def __init__(
        self,
        backbone: str,
        input_size: tuple[int, int],
        *,
        safa: bool = True,
        safa_branches: int = 8,
        weights: Path | None = None,
        weights_tag: str | None = None,
        drop_path_rate: float = 0.0,
        standardise_input: bool = False,
        shared_backbone: nn.Module | None = None,
    ) -> None:
        super().__init__()
        import timm.data

        self.standardise_input = bool(standardise_input)

        if shared_backbone is None:
            self.backbone, self.weights_report = create_backbone(
                backbone, weights=weights, drop_path_rate=drop_path_rate, tag=weights_tag
            )
        else:
            self.backbone, self.weights_report = shared_backbone, None
        self.input_size = (int(input_size[0]), int(input_size[1]))
        c, h, w = self._probe_feature_shape(backbone)
        self.feature_channels, self.feature_hw = c, (h, w)
        self.head: nn.Module = SAFA(h * w, safa_branches) if safa else nn.AdaptiveAvgPool2d(1)
        self.embed_dim = c * safa_branches if safa else c
        self.data_config: dict[str, Any] = timm.data.resolve_model_data_config(self.backbone)

    def _probe_feature_shape(self, name: str) -> tuple[int, int, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                out = self.backbone(torch.zeros(1, 3, *self.input_size))
        except Exception as exc:
            raise ConfigError(
                f"backbone {name!r} cannot encode images of size {self.input_size} (H, W): {exc}"
            ) from exc
        finally:
            self.backbone.train(was_training)
        if out.ndim != 4:
            raise ConfigError(
                f"backbone {name!r} gives features of shape {tuple(out.shape)}; a CNN with a "
                f"[B, C, h, w] feature map is required"
            )
        return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])

    def forward_features(self, x: Tensor) -> Tensor:
        """Backbone feature map of x [B, 3, H, W] -> [B, C, h, w]."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """Embed x [B, 3, H, W] -> L2-normalised [B, embed_dim]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        if self.standardise_input:
            x = standardise_images(x)
        pooled = self.head(self.forward_features(x)).flatten(1)
        return F.normalize(pooled, dim=-1)


class TwoViewModel(nn.Module):
    """Ground and satellite encoders plus the learnable contrastive temperature.

    ``logit_scale`` is ln(scale), initialised to ln(1/0.07); ``clamped_logit_scale()`` caps
    it at ln(100) and is what the loss should receive (``SymmetricInfoNCE`` takes the LOG of
    the scale). ``forward`` returns the scale itself, exp(clamped_logit_scale()).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        common = dict(
            safa=config.safa,
            safa_branches=config.safa_branches,
            drop_path_rate=config.drop_path_rate,
            standardise_input=config.standardise_input,
            weights_tag=config.weights_tag,
        )
        self.ground_encoder = ViewEncoder(
            config.backbone, config.ground_size, weights=config.weights, **common
        )
        if not config.shared_weights:
            self.satellite_encoder = ViewEncoder(
                config.backbone, config.satellite_size, weights=config.weights, **common
            )
        else:
            sat = ViewEncoder(
                config.backbone,
                config.satellite_size,
                shared_backbone=self.ground_encoder.backbone,
                **common,
            )
            if not config.safa or sat.feature_hw == self.ground_encoder.feature_hw:
                sat = self.ground_encoder  # one module for both views
            # else: the backbone is shared but SAFA's weights depend on the feature-map size,
            # so the satellite view keeps its own SAFA head.
            self.satellite_encoder = sat
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    @property
    def embed_dim(self) -> int:
        """Dimension D of both views' embeddings."""
        return self.ground_encoder.embed_dim

    @property
    def data_config(self) -> dict[str, Any]:
        """timm data config (mean, std, interpolation) of the backbone."""
        return self.ground_encoder.data_config

    def clamped_logit_scale(self) -> Tensor:
        """ln(scale) capped at ln(100), a scalar tensor (gradient flows below the cap)."""
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX)

    def embed_ground(self, x: Tensor) -> Tensor:
        """Ground panoramas [B, 3, Hg, Wg] -> L2-normalised [B, D]."""
        return self.ground_encoder(x)

    def embed_satellite(self, x: Tensor) -> Tensor:
        """Satellite (or fake satellite) tiles [B, 3, Hs, Ws] -> L2-normalised [B, D]."""
        return self.satellite_encoder(x)

    def forward(self, ground: Tensor, satellite: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (g [B, D], s [B', D], scale = exp(clamped logit_scale), a scalar)."""
        return (
            self.embed_ground(ground),
            self.embed_satellite(satellite),
            self.clamped_logit_scale().exp(),
        )


def build_model(cfg: EncoderConfig) -> TwoViewModel:
    """Build the two-view model described by ``cfg``."""
    return TwoViewModel(cfg)
