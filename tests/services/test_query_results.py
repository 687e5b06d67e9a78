"""The answer records shared by ``POST /api/v1/query`` and ``ucvgl query``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ucvgl.services.query_results import MATCH_FIELDS, match_record, open_query_image
from ucvgl.shared.errors import DatasetError


def test_a_hit_becomes_the_answer_record():
    hit = {
        "rank": 9,
        "satellite_id": 17,
        "score": np.float32(0.5),
        "path": "/data/w/satellite/t17.png",
        "lat": 45.5,
        "lon": float("nan"),
        "x": None,
        "split": "val",
    }
    record = match_record(2, hit)
    assert tuple(record) == MATCH_FIELDS
    assert record == {
        "rank": 2,
        "satellite_id": "17",
        "score": 0.5,
        "file_name": "t17.png",
        "lat": 45.5,
        "lon": None,  # not finite: unknown, never NaN in JSON
        "x": None,
        "y": None,
    }


def test_query_images_are_checked_and_named(tmp_path):
    good = tmp_path / "pano.png"
    Image.fromarray(np.zeros((8, 16), dtype=np.uint8)).save(good)
    image = open_query_image(good, max_pixels=8 * 16)
    assert image.mode == "RGB" and image.size == (16, 8)
    with pytest.raises(DatasetError, match=r"pano\.png: 16x8 pixels exceeds the limit of 127"):
        open_query_image(good, max_pixels=127)
    with pytest.raises(DatasetError, match="no such image file"):
        open_query_image(tmp_path / "missing.png", max_pixels=100)
