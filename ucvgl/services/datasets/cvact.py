"""CVACT reader (Liu & Li, Canberra): ACT_data.mat plus two image folders, and CVACT_test.

Layout::

    <root>/ACT_data.mat
    <root>/ANU_data_small/streetview/<id>_grdView.jpg              1664x832 panoramas
    <root>/ANU_data_small/satview_polish/<id>_satView_polish.jpg    1200x1200 tiles
    <root>/ANU_data_test/streetview/<id>_grdView.jpg               optional CVACT_test
    <root>/ANU_data_test/satview_polish/<id>_satView_polish.jpg

(``streetview/`` and ``satview_polish/`` directly under the root are accepted too.)

``ACT_data.mat`` (MATLAB v5) holds ``panoIds`` (a char array, one id per row, space padded,
or a cell array of strings), ``utm`` [N, 2] (easting, northing in metres) and the structs
``trainSet.trainInd`` / ``valSet.valInd``: 1-based row indices into ``panoIds``.
Splits "train" and "val" (and "test" when ``ANU_data_test/`` exists, paired by id from the
file names). Pairs are one-to-one, and ``satellite_xy = ground_xy = utm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ucvgl.services.datasets.index import CrossViewDataset, ViewSplit
from ucvgl.services.datasets.layout import _is_cvact, check_root, layout_error
from ucvgl.services.datasets.validation import (
    FileChecker,
    IssueCollector,
    list_images,
    reader_progress,
    validate_image_headers,
)
from ucvgl.services.progress import NullProgress, Progress
from ucvgl.shared.errors import DatasetError

MAT_NAME = "ACT_data.mat"
GROUND_SUFFIX = "_grdView.jpg"
SATELLITE_SUFFIX = "_satView_polish.jpg"
SPLIT_STRUCTS: dict[str, tuple[str, str]] = {
    "train": ("trainSet", "trainInd"),
    "val": ("valSet", "valInd"),
}


@dataclass
class ActMetadata:
    """The contents of ACT_data.mat that the reader uses.

    Attributes:
        pano_ids: one id per row of the .mat, length N.
        utm: float64 [N, 2] (easting, northing) metres.
        split_indices: 0-based row indices per split name ("train", "val").
    """

    pano_ids: list[str]
    utm: np.ndarray
    split_indices: dict[str, np.ndarray]


def _unwrap(value: Any) -> Any:
    """Strip the 1x1 object arrays MATLAB structs and cells come wrapped in."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def _struct_field(struct: Any, field: str) -> Any:
    """``struct.field`` for every shape loadmat returns a MATLAB struct in.

    Handles record arrays (default, [1, 1] or 0-d with ``squeeze_me``), ``mat_struct``
    objects (``struct_as_record=False``) and plain dicts.
    """
    struct = _unwrap(struct)
    if isinstance(struct, dict):
        return struct[field]
    if isinstance(struct, np.ndarray) and struct.dtype.names is not None:
        if field not in struct.dtype.names:
            raise KeyError(field)
        return _unwrap(struct[field].reshape(-1)[0] if struct[field].size == 1 else struct[field])
    if isinstance(struct, np.void) and struct.dtype.names is not None:
        return _unwrap(struct[field])
    if hasattr(struct, "_fieldnames"):
        return getattr(struct, field)
    raise KeyError(field)


def _as_strings(value: Any) -> list[str]:
    """A MATLAB char array (rows) or cell array of strings as a list of stripped strings."""
    arr = np.asarray(value)
    if arr.dtype.kind in ("U", "S"):
        if arr.ndim == 0:
            return [str(arr.item()).strip()]
        if arr.ndim == 2 and arr.dtype.itemsize // max(arr.dtype.alignment, 1) == 1:
            # A char matrix loaded with chars_as_strings=False: one character per cell.
            return ["".join(row).strip() for row in arr.astype(str)]
        return [str(s).strip() for s in arr.reshape(-1)]
    if arr.dtype == object:
        out = []
        for item in arr.reshape(-1):
            item = _unwrap(item)
            if isinstance(item, np.ndarray):
                item = "".join(item.astype(str).reshape(-1)) if item.size else ""
            out.append(str(item).strip())
        return out
    raise DatasetError(f"panoIds has an unexpected type {arr.dtype} (expected strings)")


def _as_indices(value: Any) -> np.ndarray:
    """MATLAB index vector (any of [N, 1], [1, N], [N], nested objects) as float64 [N]."""
    value = _unwrap(value)
    arr = np.asarray(value)
    if arr.dtype == object:
        parts = [np.asarray(_unwrap(v), dtype=np.float64).reshape(-1) for v in arr.flat]
        arr = np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(arr, dtype=np.float64).reshape(-1)


def read_act_mat(path: Path, issues: IssueCollector) -> ActMetadata:
    """Read ACT_data.mat; out-of-range split indices become issues (and are dropped).

    Raises:
        DatasetError: the file cannot be read or lacks ``panoIds``/``utm``/a split struct.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DatasetError(
            f"{path}: MATLAB v7.3 files are not supported; re-save it with save(..., '-v7')"
        ) from exc
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on corrupt files
        raise DatasetError(f"{path}: cannot read the MATLAB file ({exc})") from exc
    missing = [k for k in ("panoIds", "utm") if k not in mat]
    if missing:
        raise DatasetError(f"{path}: missing variable(s) {', '.join(missing)}")
    pano_ids = _as_strings(mat["panoIds"])
    utm = np.asarray(mat["utm"], dtype=np.float64)
    if utm.ndim != 2 or utm.shape != (len(pano_ids), 2):
        if utm.ndim == 2 and utm.shape == (2, len(pano_ids)):
            utm = utm.T
        else:
            raise DatasetError(
                f"{path}: utm has shape {utm.shape}, expected ({len(pano_ids)}, 2) "
                "(one row per panoIds entry)"
            )
    n = len(pano_ids)
    split_indices: dict[str, np.ndarray] = {}
    for split, (struct_name, field) in SPLIT_STRUCTS.items():
        if struct_name not in mat:
            raise DatasetError(f"{path}: missing struct {struct_name} (with field {field})")
        try:
            raw = _as_indices(_struct_field(mat[struct_name], field))
        except KeyError:
            raise DatasetError(f"{path}: struct {struct_name} has no field {field}") from None
        ok = np.isfinite(raw) & (raw == np.round(raw)) & (raw >= 1) & (raw <= n)
        for k in np.flatnonzero(~ok)[:1000]:
            issues.add(
                path,
                None,
                f"{struct_name}.{field}[{k + 1}] = {raw[k]:g} is not an index in 1..{n}",
            )
            issues.drop((split, "index", int(k)))
        for k in np.flatnonzero(~ok)[1000:]:
            issues.drop((split, "index", int(k)))
        split_indices[split] = raw[ok].astype(np.int64) - 1
    return ActMetadata(pano_ids=pano_ids, utm=utm, split_indices=split_indices)


def _image_dir(root: Path) -> Path:
    """The folder holding ``streetview/`` and ``satview_polish/``."""
    for base in (root / "ANU_data_small", root):
        if (base / "streetview").is_dir() and (base / "satview_polish").is_dir():
            return base
    raise layout_error(
        root,
        "cvact",
        "ANU_data_small/streetview/ and ANU_data_small/satview_polish/ "
        "(or streetview/ and satview_polish/ under the root)",
    )


@dataclass
class _Row:
    key: tuple
    pano_id: str
    ground_path: Path
    satellite_path: Path
    xy: np.ndarray


def _mat_split_rows(
    split: str,
    meta: ActMetadata,
    image_dir: Path,
    mat_path: Path,
    issues: IssueCollector,
    files: FileChecker,
) -> list[_Row]:
    rows = []
    seen: set[str] = set()
    struct_name, field = SPLIT_STRUCTS[split]
    for k, idx in enumerate(meta.split_indices[split]):
        pano_id = meta.pano_ids[idx]
        key = (split, "entry", k)
        if not pano_id:
            issues.add(mat_path, None, f"panoIds row {idx + 1} ({struct_name}.{field}) is empty")
            issues.drop(key)
            continue
        if pano_id in seen:
            issues.add(mat_path, None, f"{struct_name}.{field} lists panorama id {pano_id!r} twice")
            issues.drop(key)
            continue
        seen.add(pano_id)
        ground = image_dir / "streetview" / f"{pano_id}{GROUND_SUFFIX}"
        sat = image_dir / "satview_polish" / f"{pano_id}{SATELLITE_SUFFIX}"
        for kind, path in (("panorama", ground), ("satellite tile", sat)):
            if not files.exists(path):
                issues.add(path, None, f"{kind} file is missing (id {pano_id!r}, {split} split)")
                issues.drop(key)
        rows.append(_Row(key, pano_id, ground, sat, meta.utm[idx]))
    return rows


def _ids_in(folder: Path, suffix: str) -> dict[str, Path]:
    return {
        p.name[: -len(suffix)]: p
        for p in list_images(folder)
        if p.parent == folder and p.name.endswith(suffix)
    }


def _test_split(
    root: Path, meta: ActMetadata, issues: IssueCollector
) -> tuple[ViewSplit, list[tuple[tuple, Path]], list[str]]:
    """CVACT_test from ``ANU_data_test/``: panoramas and tiles paired by their id.

    Returns the split (unfiltered), (key, path) pairs to validate, and the ground keys.
    """
    test_dir = root / "ANU_data_test"
    for sub in ("streetview", "satview_polish"):
        if not (test_dir / sub).is_dir():
            raise layout_error(root, "cvact", f"ANU_data_test/{sub}/ (ANU_data_test/ exists)")
    grounds = _ids_in(test_dir / "streetview", GROUND_SUFFIX)
    sats = _ids_in(test_dir / "satview_polish", SATELLITE_SUFFIX)
    row_of = {pid: i for i, pid in enumerate(meta.pano_ids)}
    ground_ids = sorted(grounds)
    sat_ids = sorted(sats)
    sat_index = {sid: i for i, sid in enumerate(sat_ids)}
    positives = np.full(len(ground_ids), -1, dtype=np.int64)
    for i, gid in enumerate(ground_ids):
        if gid in sat_index:
            positives[i] = sat_index[gid]
        else:
            issues.add(
                grounds[gid],
                None,
                f"no satellite tile ANU_data_test/satview_polish/{gid}{SATELLITE_SUFFIX} "
                "for this panorama",
            )
            issues.drop(("test", "ground", gid))

    def xy(ids: list[str]) -> np.ndarray:
        out = np.full((len(ids), 2), np.nan)
        for i, pid in enumerate(ids):
            if pid in row_of:
                out[i] = meta.utm[row_of[pid]]
        return out

    split = ViewSplit(
        ground_ids=ground_ids,
        ground_paths=[grounds[g] for g in ground_ids],
        satellite_ids=sat_ids,
        satellite_paths=[sats[s] for s in sat_ids],
        positives=positives,
        satellite_xy=xy(sat_ids),
        ground_xy=xy(ground_ids),
    )
    todo = [(("test", "ground", g), grounds[g]) for g in ground_ids]
    todo += [(("test", "satellite", s), sats[s]) for s in sat_ids]
    return split, todo, ground_ids


def _filter_test_split(split: ViewSplit, issues: IssueCollector) -> ViewSplit:
    """Drop bad tiles (re-indexing positives) and bad or unpaired panoramas."""
    keep_sat = [not issues.is_dropped(("test", "satellite", s)) for s in split.satellite_ids]
    new_index = np.cumsum(keep_sat) - 1
    sat_ids = [s for s, k in zip(split.satellite_ids, keep_sat, strict=True) if k]
    sat_paths = [p for p, k in zip(split.satellite_paths, keep_sat, strict=True) if k]
    g_keep = []
    positives = []
    for i, gid in enumerate(split.ground_ids):
        pos = int(split.positives[i])
        if issues.is_dropped(("test", "ground", gid)):
            continue
        if pos < 0 or not keep_sat[pos]:
            issues.drop(("test", "ground", gid))
            continue
        g_keep.append(i)
        positives.append(int(new_index[pos]))
    return ViewSplit(
        ground_ids=[split.ground_ids[i] for i in g_keep],
        ground_paths=[split.ground_paths[i] for i in g_keep],
        satellite_ids=sat_ids,
        satellite_paths=sat_paths,
        positives=np.asarray(positives, dtype=np.int64),
        satellite_xy=_nan_to_none(split.satellite_xy[np.asarray(keep_sat, dtype=bool)]),
        ground_xy=_nan_to_none(split.ground_xy[g_keep]),
    )


def _nan_to_none(xy: np.ndarray) -> np.ndarray | None:
    return None if xy.size == 0 or np.isnan(xy).all() else xy


def read_cvact(
    root: Path,
    *,
    skip_invalid: bool = False,
    validate_images: bool = False,
    name: str | None = None,
    progress: Progress | None = None,
) -> CrossViewDataset:
    """Read a CVACT tree into splits "train", "val" (and "test" with ANU_data_test/).

    Args:
        root: the CVACT folder (holding ``ACT_data.mat``).
        skip_invalid: drop bad entries instead of raising.
        validate_images: also open every image header with Pillow.
        name: the dataset name (default: the folder name).
        progress: reports progress and is polled for cancellation.

    Raises:
        DatasetError: the layout is not CVACT, the .mat is unreadable, or problems were
            found and not skipped.
    """
    root = check_root(root)
    progress = progress or NullProgress()
    if not _is_cvact(root):
        raise layout_error(root, "cvact", MAT_NAME)
    image_dir = _image_dir(root)
    issues, files = IssueCollector(root), FileChecker()
    read, check = reader_progress(progress, validate_images)
    read.update("read CVACT", 0.0, MAT_NAME)
    mat_path = root / MAT_NAME
    meta = read_act_mat(mat_path, issues)
    progress.check_cancelled()
    read.update("read CVACT", 0.5, "splits")
    rows = {
        split: _mat_split_rows(split, meta, image_dir, mat_path, issues, files)
        for split in SPLIT_STRUCTS
    }
    test = None
    todo: list[tuple[tuple, Path]] = []
    if (root / "ANU_data_test").is_dir():
        test, test_todo, _ = _test_split(root, meta, issues)
        todo += test_todo
    read.update("read CVACT", 1.0)
    if validate_images:
        todo += [
            (r.key, path)
            for split_rows in rows.values()
            for r in split_rows
            if not issues.is_dropped(r.key)
            for path in (r.ground_path, r.satellite_path)
        ]
        validate_image_headers(todo, issues, progress=check)
    splits: dict[str, ViewSplit] = {}
    for split, split_rows in rows.items():
        kept = [r for r in split_rows if not issues.is_dropped(r.key)]
        xy = np.asarray([r.xy for r in kept], dtype=np.float64).reshape(-1, 2)
        splits[split] = ViewSplit(
            ground_ids=[r.pano_id for r in kept],
            ground_paths=[r.ground_path for r in kept],
            satellite_ids=[r.pano_id for r in kept],
            satellite_paths=[r.satellite_path for r in kept],
            positives=np.arange(len(kept), dtype=np.int64),
            satellite_xy=xy,
            ground_xy=xy.copy(),
        )
    if test is not None:
        splits["test"] = _filter_test_split(test, issues)
    report = issues.finish(skip_invalid, f"CVACT dataset at {root}")
    progress.update("read CVACT", 1.0)
    return CrossViewDataset(
        name=name or root.name,
        format="cvact",
        root=root,
        panorama="full",
        splits=splits,
        report=report,
    )
