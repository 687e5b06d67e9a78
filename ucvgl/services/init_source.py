"""``--init-from RUN_DIR``: a finished run's selected model as the starting weights.

A run started from a source model (any mode) loads the source's ``model/selected.pt``
instead of random weights or the cold start. The source must fit the preset of the new
run: same backbone, SAFA settings, shared weights, input sizes and input standardisation
(the weights file would not load otherwise, or would be fed other inputs than it learnt).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ucvgl.shared.errors import ConfigError

if TYPE_CHECKING:
    from ucvgl.services.presets import Preset

SELECTED_MODEL = Path("model") / "selected.pt"
RUN_FILE = "run.json"
FIT_FIELDS = (
    "backbone",
    "safa",
    "safa_branches",
    "shared_weights",
    "ground_size",
    "satellite_size",
    "standardise_input",
)
"""EncoderConfig fields a source model must share with the new run's preset."""


@dataclass(frozen=True)
class SourceModel:
    """The model a run starts from.

    Attributes:
        run_dir: the source run folder (absolute).
        model_file: its selected model (``RUN_DIR/model/selected.pt``).
        sha256: hex digest of that file.
        preset: the source run's preset name (from its run.json), or None.
        mode: the source run's mode, or None.
        dataset: the source run's dataset format and folder (from run.json).
        encoder: the checkpoint's encoder config (backbone, sizes, ...).
    """

    run_dir: Path
    model_file: Path
    sha256: str
    preset: str | None
    mode: str | None
    dataset: dict[str, Any]
    encoder: dict[str, Any]

    @property
    def backbone(self) -> str:
        return str(self.encoder.get("backbone"))

    def to_dict(self) -> dict[str, Any]:
        """JSON form for report.json (``init_from``)."""
        d = asdict(self)
        d["run_dir"], d["model_file"] = str(self.run_dir), str(self.model_file)
        d["backbone"] = self.backbone
        return d


def source_from_dict(data: dict[str, Any]) -> SourceModel:
    """The :class:`SourceModel` of a ``to_dict`` record (as kept in a run's run.json)."""
    return SourceModel(
        run_dir=Path(data["run_dir"]),
        model_file=Path(data["model_file"]),
        sha256=str(data["sha256"]),
        preset=data.get("preset"),
        mode=data.get("mode"),
        dataset=dict(data.get("dataset") or {}),
        encoder=dict(data.get("encoder") or {}),
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_config(path: Path) -> dict[str, Any]:
    """The encoder config saved in a ``save_model`` checkpoint (ConfigError if unreadable)."""
    from ucvgl.services.models import load_model

    model, _ = load_model(path, map_location="cpu")  # validates format, config and weights
    return model.config.model_dump(mode="json")


def resolve_source(run_dir: str | Path) -> SourceModel:
    """The selected model of the run folder ``run_dir``.

    Raises:
        ConfigError: the folder or its ``model/selected.pt`` is missing, or the file is not
            a ucvgl model checkpoint.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise ConfigError(f"--init-from {run_dir}: no such run folder")
    model_file = run_dir / SELECTED_MODEL
    if not model_file.is_file():
        raise ConfigError(
            f"--init-from {run_dir}: the run has no selected model ({model_file} is missing); "
            "finish that run first (run its `ucvgl pipeline` command again) or give another "
            "run folder"
        )
    run_info: dict[str, Any] = {}
    if (run_dir / RUN_FILE).is_file():
        run_info = json.loads((run_dir / RUN_FILE).read_text())
    return SourceModel(
        run_dir=run_dir,
        model_file=model_file,
        sha256=file_sha256(model_file),
        preset=run_info.get("preset"),
        mode=run_info.get("mode"),
        dataset={"format": run_info.get("format"), "data": run_info.get("data")},
        encoder=checkpoint_config(model_file),
    )


def _fit_value(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def check_fits(source: SourceModel, preset: Preset) -> None:
    """Refuse a source whose backbone or input sizes differ from ``preset``'s model.

    Raises:
        ConfigError: naming both models' values of every differing field.
    """
    mine = preset.encoder_config().model_dump(mode="json")
    diff = [
        f
        for f in FIT_FIELDS
        if _fit_value(source.encoder.get(f)) != _fit_value(mine.get(f))
        and not (f == "safa_branches" and not mine.get("safa"))
    ]
    if diff:
        theirs = ", ".join(f"{f}={_fit_value(source.encoder.get(f))}" for f in diff)
        ours = ", ".join(f"{f}={_fit_value(mine.get(f))}" for f in diff)
        raise ConfigError(
            f"--init-from {source.run_dir}: its model ({source.model_file}, preset "
            f"{source.preset!r}: {theirs}) does not fit preset {preset.name!r} ({ours}); "
            f"start with the source's preset (--preset {source.preset}) or one with the same "
            "backbone and image sizes"
        )
