"""The CycleGAN's unpaired data: the original resize-and-crop."""

from __future__ import annotations

import torch

from ucvgl.services.cyclegan.data import UnpairedImageDataset


def test_resize_and_crop_gives_random_crops_of_the_resized_image(image_dirs):
    bev, sat = image_dirs
    data = UnpairedImageDataset(bev, sat, 32, seed=0, flip=False, load_size=40)
    whole = UnpairedImageDataset(bev, sat, 40, seed=0, flip=False)
    crops = []
    for epoch in range(6):
        data.set_epoch(epoch)
        item = data[0]["a"]
        assert item.shape == (3, 32, 32)
        full = whole[0]["a"]
        found = [
            (t, left)
            for t in range(9)
            for left in range(9)
            if torch.allclose(full[:, t : t + 32, left : left + 32], item)
        ]
        assert found  # a window of the image resized to load_size
        crops.append(found[0])
    assert len(set(crops)) > 1  # the window moves between epochs
