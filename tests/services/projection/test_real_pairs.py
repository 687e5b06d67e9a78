"""The projection on real CVACT and CVUSA pairs (skipped when the shared imagery is absent).

Descriptor: an 8x8 colour thumbnail, mean-centred and L2-normalised, compared by cosine.
The BEV (FOV 170 / 175 degrees, camera ~2 m high) covers only about +-23 m / +-46 m around
the camera while a tile spans far more, so besides the whole tile we compare with its
central 60%. Run with ``-s`` to see the numbers. Measured when written (thumb8):

    CVACT (15 pairs) whole tile: own 0.167 vs others 0.158 (no signal); centre 60%: own
        0.205 vs others 0.119, mean rank 5.8 (chance 8.0); correct orientation 0.205 vs
        0.096 / 0.085 / 0.157 for BEVs turned 90 / 180 / 270 degrees.
    CVUSA (26 pairs) whole tile: own 0.342 vs others 0.123, mean rank 7.7 (chance 13.5),
        R@1 23%; correct orientation 0.342 vs 0.081 / 0.141 / 0.119.

The assertions are the parts that hold with a clear margin: CVUSA on the whole tile, CVACT
on the tile centre.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ucvgl.services.projection import default_bev_params, panorama_to_bev

pytestmark = pytest.mark.realdata

SIZE = 64


def _thumb(image: np.ndarray) -> np.ndarray:
    """[S, S, 3] uint8 -> mean-centred, unit-norm 8x8x3 thumbnail."""
    small = Image.fromarray(image).resize((8, 8), Image.BILINEAR)
    v = np.asarray(small, dtype=np.float64).reshape(-1) / 255.0
    v -= v.mean()
    return v / np.linalg.norm(v)


def _centre(tile: Image.Image, fraction: float) -> np.ndarray:
    w, h = tile.size
    cw, ch = w * fraction, h * fraction
    box = (round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2), round((h + ch) / 2))
    return np.asarray(tile.crop(box).resize((SIZE, SIZE), Image.BILINEAR))


def _load(real_pairs_dir: Path, dataset: str):
    with open(real_pairs_dir / "pairs.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == dataset]
    params = default_bev_params(dataset.lower(), SIZE)
    bevs, tiles = [], []
    for row in rows:
        pano = np.asarray(Image.open(real_pairs_dir / row["ground"]).convert("RGB"))
        x = torch.from_numpy(pano.copy()).permute(2, 0, 1)[None].float() / 255
        bev = panorama_to_bev(x, params)
        assert bev.shape == (1, 3, SIZE, SIZE)
        assert torch.isfinite(bev).all()
        bevs.append((bev[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        tiles.append(Image.open(real_pairs_dir / row["satellite"]).convert("RGB"))
    return bevs, tiles


def _scores(bevs, sats, label: str) -> dict[str, float]:
    b = np.stack([_thumb(x) for x in bevs])
    s = np.stack([_thumb(x) for x in sats])
    sim = b @ s.T
    n = len(bevs)
    own = np.diag(sim)
    others = (sim.sum(1) - own) / (n - 1)
    rank = (sim > own[:, None]).sum(1) + 1
    turned = [  # the same BEVs turned by k quarter turns, against their own tiles
        float(np.mean([_thumb(np.rot90(x, k).copy()) @ t for x, t in zip(bevs, s, strict=True)]))
        for k in (1, 2, 3)
    ]
    out = {
        "n": n,
        "own": float(own.mean()),
        "others": float(others.mean()),
        "mean_rank": float(rank.mean()),
        "chance_rank": (n + 1) / 2,
        "r1": float((rank == 1).mean()),
        "turned_90_180_270": turned,
    }
    print(f"\n{label}: " + ", ".join(f"{k}={np.round(v, 3).tolist()}" for k, v in out.items()))
    return out


@pytest.mark.parametrize("dataset", ["CVUSA", "CVACT"])
def test_bevs_resemble_their_own_tiles(real_pairs_dir, dataset):
    bevs, tiles = _load(real_pairs_dir, dataset)
    whole = _scores(bevs, [_centre(t, 1.0) for t in tiles], f"{dataset} whole tile")
    centre = _scores(bevs, [_centre(t, 0.6) for t in tiles], f"{dataset} tile centre 60%")
    checked = whole if dataset == "CVUSA" else centre
    assert checked["own"] > checked["others"] + 0.05
    assert checked["mean_rank"] < checked["chance_rank"] - 1.5
    # North up, east right: the BEV as projected matches better than any turned copy.
    assert checked["own"] > max(checked["turned_90_180_270"]) + 0.03
