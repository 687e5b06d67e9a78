"""Where a backbone's starting weights come from: none, timm's hub tag, a file or a folder.

The preset field ``weights`` (CLI ``--weights``) is one of:

- ``none``: random initialisation (said explicitly).
- ``hub`` or ``hub:TAG``: timm's pretrained weights ``<backbone>.<TAG>`` (TAG: timm's
  default tag of the backbone). Looked up first in ``Settings.weights_dir``
  (``UCVGL_WEIGHTS_DIR``) when it is set, then through huggingface_hub with its normal
  cache (``HF_HOME``, ``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` reads only the cache),
  downloading when online.
- a weights file (``.safetensors``, ``.pth``, ``.bin``; timm's loader and filters).
- a folder, or ``FOLDER:TAG``: the file of ``<backbone>.<TAG>`` found there by name
  (:func:`folder_candidates`).

:func:`resolve_weights` finds the file (no model is built) so a run can stop before any
work when the weights cannot be had; the loading itself is ``create_backbone`` in
``encoder.py`` (timm's ``pretrained_cfg_overlay=dict(file=...)``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ucvgl.shared.errors import ConfigError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pth.tar", ".bin")
"""Suffixes of a weights file found in a folder, in order of preference."""
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
"""Files of a timm hub repository, in timm's order of preference."""
SCRATCH_HINT = "or train from scratch with --weights none (--set weights=none)"


@dataclass(frozen=True)
class WeightsSpec:
    """A parsed ``weights`` setting: kind ('none', 'hub', 'file', 'folder'), tag, path."""

    kind: str
    tag: str | None = None
    path: Path | None = None


@dataclass(frozen=True)
class ResolvedWeights:
    """The backbone weights one encoder starts from (what ``report.json`` records)."""

    backbone: str
    source: str  # "none", "hub", "file" or "folder"
    tag: str | None = None
    file: Path | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: backbone, source, tag, file (str or None), sha256."""
        return {
            "backbone": self.backbone,
            "source": self.source,
            "tag": self.tag,
            "file": None if self.file is None else str(self.file),
            "sha256": self.sha256,
        }


def parse_weights_spec(spec: str | Path | None) -> WeightsSpec:
    """Parse a ``weights`` setting (see the module docstring)."""
    if spec is None:
        return WeightsSpec("none")
    text = str(spec).strip()
    if not text:
        raise ConfigError("weights: empty; give none, hub, hub:TAG, a weights file or a folder")
    if text.lower() == "none":
        return WeightsSpec("none")
    if text == "hub":
        return WeightsSpec("hub")
    if text.startswith("hub:"):
        tag = text[4:].strip()
        if not tag:
            raise ConfigError("weights: 'hub:' needs a timm tag, e.g. hub:fb_in22k_ft_in1k")
        return WeightsSpec("hub", tag=tag)
    path = Path(text).expanduser()
    if path.is_dir():
        return WeightsSpec("folder", path=path)
    head, sep, tag = text.rpartition(":")
    if sep and tag and "/" not in tag and Path(head).expanduser().is_dir():
        return WeightsSpec("folder", tag=tag, path=Path(head).expanduser())
    return WeightsSpec("file", path=path)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def split_backbone(backbone: str) -> tuple[str, str | None]:
    """('convnext_small', 'fb_in1k') from 'convnext_small.fb_in1k'; tag None without one."""
    name, _, tag = backbone.partition(".")
    return name, tag or None


def default_tag(backbone: str) -> str:
    """timm's pretrained tag for ``backbone`` (its own tag, else timm's default one)."""
    from timm.models import get_pretrained_cfg

    name, tag = split_backbone(backbone)
    if tag:
        return tag
    cfg = get_pretrained_cfg(name)
    if cfg is None or not getattr(cfg, "tag", None):
        raise ConfigError(
            f"timm model {name!r} has no pretrained weights (no pretrained tag); "
            f"give a weights file, {SCRATCH_HINT}"
        )
    return str(cfg.tag)


def folder_candidates(folder: Path, backbone: str, tag: str) -> list[Path]:
    """Files that hold ``<backbone>.<tag>`` in ``folder``, in the order they are tried.

    ``<name>.<tag>.safetensors`` (``.pth``, ``.pth.tar``, ``.bin``), then the folder
    ``<name>.<tag>/`` as ``hf download timm/<name>.<tag> --local-dir`` writes it
    (``model.safetensors``, ``pytorch_model.bin``).
    """
    stem = f"{split_backbone(backbone)[0]}.{tag}"
    files = [folder / f"{stem}{suffix}" for suffix in WEIGHT_SUFFIXES]
    return files + [folder / stem / name for name in HUB_FILENAMES]


def _in_folder(folder: Path, backbone: str, tag: str) -> Path | None:
    return next((p for p in folder_candidates(folder, backbone, tag) if p.is_file()), None)


def _hub_cfg(backbone: str, tag: str):
    """timm's pretrained config of ``<name>.<tag>`` (ConfigError for an unknown tag)."""
    import timm
    from timm.models import get_pretrained_cfg

    name = split_backbone(backbone)[0]
    try:
        cfg = get_pretrained_cfg(f"{name}.{tag}")
    except RuntimeError:  # timm: invalid tag for a known architecture
        cfg = None
    if cfg is None or getattr(cfg, "tag", None) != tag:
        known = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
        raise ConfigError(
            f"weights: timm has no pretrained tag {name}.{tag}; its tags are "
            f"{known or 'none'}; give hub:TAG with one of them, a weights file, {SCRATCH_HINT}"
        )
    return cfg


def _from_hub(backbone: str, tag: str) -> tuple[Path | None, str]:
    """(file, '') from huggingface_hub's cache / download, or (None, where it looked)."""
    from huggingface_hub import constants, hf_hub_download

    cfg = _hub_cfg(backbone, tag)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return None, f"timm gives no Hugging Face hub id for {backbone}.{tag} (url {cfg.url})"
    repo, _, revision = hub_id.partition("@")
    names = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else HUB_FILENAMES
    problems = []
    for filename in names:
        try:
            path = hf_hub_download(repo_id=repo, filename=filename, revision=revision or None)
            return Path(path), ""
        except Exception as exc:  # noqa: BLE001 - offline, missing entry, network: try the next
            problems.append(f"{filename}: {type(exc).__name__}")
    cache = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    offline = " with HF_HUB_OFFLINE=1 (cache only)" if constants.HF_HUB_OFFLINE else ""
    return None, (
        f"the Hugging Face hub repository {repo}{offline}, cache {cache} ({'; '.join(problems)})"
    )


def resolve_weights(
    backbone: str, spec: str | Path | None, *, weights_dir: Path | None = None
) -> ResolvedWeights:
    """Find the starting weights of ``backbone`` for a ``weights`` setting, or say why not.

    Args:
        backbone: timm model name (optionally ``name.tag``).
        spec: the ``weights`` setting (see the module docstring).
        weights_dir: ``Settings.weights_dir``, searched first for ``hub`` weights.

    Returns:
        The resolved source with the file and its SHA-256 (None for ``none``).

    Raises:
        ConfigError: the weights cannot be had: names the tag, every place looked in, and
            ``--weights none``.
    """
    parsed = parse_weights_spec(spec)
    if parsed.kind == "none":
        return ResolvedWeights(backbone, "none")
    if parsed.kind == "file":
        path = parsed.path
        if path is None or not path.is_file():
            raise ConfigError(
                f"weights: backbone weights file {path} does not exist; give an existing "
                f"file of timm model {backbone!r}, hub, a folder, {SCRATCH_HINT}"
            )
        return ResolvedWeights(backbone, "file", None, path.absolute(), sha256_of(path))
    tag = parsed.tag or default_tag(backbone)
    stem = f"{split_backbone(backbone)[0]}.{tag}"
    if parsed.kind == "folder":
        assert parsed.path is not None
        found = _in_folder(parsed.path, backbone, tag)
        if found is None:
            looked = ", ".join(str(p) for p in folder_candidates(parsed.path, backbone, tag))
            raise ConfigError(
                f"weights: no file of {stem} in folder {parsed.path} (looked for {looked}); "
                f"download it (README 'Pretrained backbone weights'), {SCRATCH_HINT}"
            )
        return ResolvedWeights(backbone, "folder", tag, found.absolute(), sha256_of(found))
    looked = []
    if weights_dir is not None:
        found = _in_folder(Path(weights_dir), backbone, tag)
        if found is not None:
            return ResolvedWeights(backbone, "folder", tag, found.absolute(), sha256_of(found))
        looked.append(f"UCVGL_WEIGHTS_DIR {weights_dir} ({stem}.safetensors|.pth|.bin or {stem}/)")
    path, where = _from_hub(backbone, tag)
    if path is not None:
        return ResolvedWeights(backbone, "hub", tag, path.absolute(), sha256_of(path))
    looked.append(where)
    raise ConfigError(
        f"weights: pretrained weights {stem} (timm tag {tag!r}) are not available; looked in "
        f"{'; '.join(looked)}. With internet they are downloaded; without, pre-seed the cache "
        f"(hf download timm/{stem}), put the file in UCVGL_WEIGHTS_DIR, give --weights FILE, "
        f"{SCRATCH_HINT}"
    )
