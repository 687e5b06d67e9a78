"""Evaluation splits by name, per dataset format, and the rule that none is trained on.

Names (``--eval-split``, API ``params.eval_split``, ``report.json``'s ``recall_per_split``):

| format | names | dataset split read | training pool |
|---|---|---|---|
| cvusa | ``val`` | ``val`` (val-19zl.csv) | ``train`` |
| cvact | ``val``, ``test`` | ``val`` (valSet), ``test`` (``ANU_data_test/``) | ``train`` |
| vigor | ``same_area``, ``cross_area`` | ``test`` of that protocol | ``train`` of that protocol |
| folder | ``val``, ``test`` | the ``split`` column | ``train`` |

VIGOR's protocol decides the training pool too (cross-area trains on NewYork + Seattle only),
so one run evaluates one VIGOR protocol. Pure Python (the API imports it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ucvgl.shared.errors import ConfigError

if TYPE_CHECKING:
    from ucvgl.services.datasets.index import ViewSplit

EVAL_SPLITS: dict[str, tuple[str, ...]] = {
    "cvusa": ("val",),
    "cvact": ("val", "test"),
    "vigor": ("same_area", "cross_area"),
    "folder": ("val", "test"),
}
VIGOR_PROTOCOL_OF = {"same_area": "same_area", "cross_area": "cross_area"}
SHARED_GALLERY_FORMATS = ("vigor", "folder")
"""Formats whose splits may share satellite tiles (VIGOR same-area's gallery of all tiles of
the cities; the folder layout's unpaired tiles): only panoramas must be disjoint there."""


def parse_eval_splits(value: str | Sequence[str] | None) -> list[str] | None:
    """``"val,test"``, ``["val", "test"]`` or repeated options -> ``["val", "test"]``.

    None or empty -> None (the default split).
    """
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"eval_split: expected split names, got {item!r}")
        for name in item.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names or None


def check_eval_splits(fmt: str, names: Iterable[str]) -> list[str]:
    """The names, checked against the format's list; ConfigError naming the allowed ones."""
    allowed = EVAL_SPLITS.get(fmt)
    if allowed is None:
        raise ConfigError(f"eval_split: unknown dataset format {fmt!r}")
    names = list(names)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ConfigError(
            f"eval_split: {', '.join(map(repr, bad))} is not an evaluation split of a {fmt} "
            f"dataset; choose from {', '.join(allowed)}"
        )
    if fmt == "vigor" and len(set(names)) > 1:
        raise ConfigError(
            "eval_split: same_area and cross_area train on different pools (cross-area trains "
            "on NewYork + Seattle only); evaluate one VIGOR protocol per run"
        )
    return names


def vigor_protocol(names: Sequence[str] | None) -> str | None:
    """The VIGOR protocol a list of (checked) VIGOR eval split names needs, or None."""
    if not names:
        return None
    return VIGOR_PROTOCOL_OF.get(names[0])


def dataset_split_name(fmt: str, name: str) -> str:
    """The dataset split an evaluation split name reads (VIGOR protocols -> ``test``)."""
    return "test" if fmt == "vigor" else name


def check_not_trained_on(fmt: str, train: ViewSplit, split: ViewSplit, name: str) -> None:
    """Refuse an evaluation split that shares items with the training pool.

    Panoramas must never be shared. Satellite tiles must not be shared either, except in
    :data:`SHARED_GALLERY_FORMATS`, whose splits search one common gallery by design (there
    the evaluation panoramas' own tiles may be unlabelled gallery items of the pool).

    Raises:
        ConfigError: naming the split, the shared kind and a few shared files.
    """
    shared = sorted(set(map(str, train.ground_paths)) & set(map(str, split.ground_paths)))
    kind = "panoramas"
    if not shared and fmt not in SHARED_GALLERY_FORMATS:
        kind = "satellite tiles"
        shared = sorted(set(map(str, train.satellite_paths)) & set(map(str, split.satellite_paths)))
    if shared:
        raise ConfigError(
            f"eval_split {name!r}: {len(shared)} {kind} of it are also in the training pool "
            f"(e.g. {', '.join(shared[:3])}); evaluating a split never trains on it: fix the "
            "dataset's split files"
        )
