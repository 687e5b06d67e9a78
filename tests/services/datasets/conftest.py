"""Builders of tiny dataset trees in each public layout (tiny generated images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (16, 8), value: int = 0) -> Path:
    """A small RGB image of ``size`` (W, H) whose pixels encode ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = np.full((h, w, 3), value % 256, dtype=np.uint8)
    pixels[..., 1] = np.arange(w, dtype=np.uint8)[None, :]
    Image.fromarray(pixels).save(path)
    return path


class Trees:
    """Writers of small datasets in the layouts as the public releases ship them."""

    image = staticmethod(write_image)

    @staticmethod
    def cvusa(root: Path, n_train: int = 3, n_val: int = 2) -> dict[str, list[str]]:
        """CVUSA: splits/{train,val}-19zl.csv, bingmap/19/*.jpg, streetview/panos/*.jpg."""
        ids: dict[str, list[str]] = {"train": [], "val": []}
        (root / "splits").mkdir(parents=True, exist_ok=True)
        k = 0
        for split, n, fname in (
            ("train", n_train, "train-19zl.csv"),
            ("val", n_val, "val-19zl.csv"),
        ):
            lines = []
            for _ in range(n):
                k += 1
                i = f"{k:07d}"
                write_image(root / "bingmap" / "19" / f"{i}.jpg", (12, 12), k)
                write_image(root / "streetview" / "panos" / f"{i}.jpg", (24, 6), k)
                lines.append(
                    f"bingmap/19/{i}.jpg,streetview/panos/{i}.jpg,streetview/annotations/{i}.png"
                )
                ids[split].append(i)
            (root / "splits" / fname).write_text("\n".join(lines) + "\n")
        return ids

    @staticmethod
    def cvact(
        root: Path,
        pano_ids: list[str],
        train_ind: list[int],
        val_ind: list[int],
        *,
        base: str = "ANU_data_small",
        test_ids: list[str] | None = None,
        cell_ids: bool = False,
        write_images: bool = True,
    ) -> np.ndarray:
        """CVACT: a real ACT_data.mat (char-array panoIds, utm, 1-based index structs)."""
        root.mkdir(parents=True, exist_ok=True)
        utm = np.stack(
            [1000.0 + np.arange(len(pano_ids)), 2000.0 + 2 * np.arange(len(pano_ids))], 1
        )
        if cell_ids:
            ids = np.empty((len(pano_ids), 1), dtype=object)
            for i, p in enumerate(pano_ids):
                ids[i, 0] = p
        else:
            width = max(len(p) for p in pano_ids)
            ids = np.array([p.ljust(width) for p in pano_ids])  # MATLAB pads char rows with spaces
        scipy.io.savemat(
            root / "ACT_data.mat",
            {
                "panoIds": ids,
                "utm": utm,
                "trainSet": {"trainInd": np.asarray(train_ind, dtype=np.float64).reshape(-1, 1)},
                "valSet": {"valInd": np.asarray(val_ind, dtype=np.float64).reshape(-1, 1)},
            },
        )
        img_dir = root / base if base else root
        if write_images:
            for k, p in enumerate(pano_ids):
                write_image(img_dir / "streetview" / f"{p}_grdView.jpg", (16, 8), k)
                write_image(img_dir / "satview_polish" / f"{p}_satView_polish.jpg", (8, 8), k)
        else:
            (img_dir / "streetview").mkdir(parents=True, exist_ok=True)
            (img_dir / "satview_polish").mkdir(parents=True, exist_ok=True)
        for k, p in enumerate(test_ids or []):
            write_image(root / "ANU_data_test" / "streetview" / f"{p}_grdView.jpg", (16, 8), k)
            write_image(
                root / "ANU_data_test" / "satview_polish" / f"{p}_satView_polish.jpg", (8, 8), k
            )
        return utm

    @staticmethod
    def vigor(
        root: Path,
        cities: tuple[str, ...] = ("Chicago", "Seattle"),
        n_tiles: int = 4,
        n_train: int = 2,
        n_test: int = 2,
    ) -> dict:
        """VIGOR: <City>/panorama, <City>/satellite, splits/<City>/*.txt (13-field lines)."""
        info: dict = {}
        for c, city in enumerate(cities):
            lat0, lon0 = 40.0 + c, -80.0 - c
            tiles = [
                f"satellite_{lat0 + 0.001 * t:.6f}_{lon0 - 0.001 * t:.6f}.png"
                for t in range(n_tiles)
            ]
            for t, name in enumerate(tiles):
                write_image(root / city / "satellite" / name, (8, 8), t)
            panos, lines = [], {"train": [], "test": []}
            for g in range(n_train + n_test):
                pid = f"{city[:3]}_pano-{g}"
                name = f"{pid},{lat0 + 0.001 * g + 0.0001:.6f},{lon0 - 0.001 * g:.6f},.jpg"
                write_image(root / city / "panorama" / name, (16, 8), g)
                pos = g % n_tiles
                semis = [(pos + j) % n_tiles for j in (1, 2, 3)]
                fields = [name, tiles[pos], f"{g + 0.5}", f"{-g - 0.25}"]
                for j, s in enumerate(semis):
                    fields += [tiles[s], f"{100.0 + 10 * j + g}", f"{-200.0 - g}"]
                line = " ".join(fields)
                lines["train" if g < n_train else "test"].append(line)
                panos.append((pid, name, pos, semis))
            sdir = root / "splits" / city
            sdir.mkdir(parents=True, exist_ok=True)
            (sdir / "satellite_list.txt").write_text("\n".join(tiles) + "\n")
            (sdir / "same_area_balanced_train.txt").write_text("\n".join(lines["train"]) + "\n")
            (sdir / "same_area_balanced_test.txt").write_text("\n".join(lines["test"]) + "\n")
            (sdir / "pano_label_balanced.txt").write_text(
                "\n".join(lines["train"] + lines["test"]) + "\n"
            )
            info[city] = {"tiles": tiles, "panos": panos, "lat0": lat0, "lon0": lon0}
        return info

    @staticmethod
    def folder(root: Path, n_ground: int = 3, n_sat: int = 4, pano_size=(32, 16)) -> None:
        """Folder layout: ground/g{k}.jpg and satellite/s{k}.png only (no CSV)."""
        for k in range(n_ground):
            write_image(root / "ground" / f"g{k}.jpg", pano_size, k)
        for k in range(n_sat):
            write_image(root / "satellite" / f"s{k}.png", (8, 8), k)


@pytest.fixture
def trees() -> type[Trees]:
    """The tree writers."""
    return Trees
