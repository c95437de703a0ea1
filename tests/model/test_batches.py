"""Training data: crops hold a labelled pixel, augmentation keeps image, labels and regions aligned, passes differ."""

from __future__ import annotations

import numpy as np
import torch

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.model.batches import AugmentedSet, Item, augment, inverse_frequency_weights
from ls_al_backend.model.train_config import TrainConfig


def coded_item(height: int, width: int) -> Item:
    """An item whose image channel 0, labels and region ids all encode the pixel's column."""
    cols = torch.arange(width).repeat(height, 1)
    image = torch.zeros(3, height, width)
    image[0] = cols.float()
    return Item(image, cols.clone(), cols.clone(), torch.ones(width, 2, dtype=torch.bool))


def test_augmentation_keeps_image_labels_and_regions_aligned() -> None:
    config = TrainConfig(crop_size=32, scale=(1.0, 1.0), hflip=True)
    flips = 0
    for seed in range(8):
        out = augment(coded_item(40, 50), np.random.default_rng(seed), config, stride=32)
        assert out.labels.shape == (64, 64) and out.image.shape == (3, 64, 64)
        inside = out.labels != IGNORE
        assert torch.equal(out.image[0][inside].long(), out.labels[inside])
        assert torch.equal(out.region_ids[inside], out.labels[inside])
        assert (out.region_ids[~inside] == -1).all()
        row = out.labels[0][inside[0]]
        flips += int(row[0] > row[-1])
    assert 0 < flips < 8, "horizontal flips happen about half the time"


def test_augmented_crops_divide_by_the_output_stride() -> None:
    config = TrainConfig(crop_size=100, scale=(0.6, 1.4))
    for seed in range(6):
        out = augment(coded_item(150, 90), np.random.default_rng(seed), config, stride=32)
        height, width = out.labels.shape
        assert height % 32 == 0 and width % 32 == 0 and height <= 128 and width <= 128
        assert out.image.shape[-2:] == out.labels.shape == out.region_ids.shape


def test_every_crop_holds_a_labelled_pixel_of_sparse_labels() -> None:
    """One labelled pixel in a corner of a 200x200 image: every 64x64 crop still contains it."""
    labels = torch.full((200, 200), IGNORE, dtype=torch.int64)
    labels[190, 5] = 3
    item = Item(torch.zeros(3, 200, 200), labels, None, None)
    config = TrainConfig(crop_size=64, scale=(1.0, 1.0), hflip=False)
    for seed in range(20):
        out = augment(item, np.random.default_rng(seed), config, stride=32)
        assert out.labels.shape == (64, 64) and int((out.labels == 3).sum()) == 1, seed


def test_crops_of_dense_labels_still_cover_the_whole_image() -> None:
    item = coded_item(40, 200)
    config = TrainConfig(crop_size=32, scale=(1.0, 1.0), hflip=False)
    lefts = {int(augment(item, np.random.default_rng(seed), config, stride=32).labels[0, 0]) for seed in range(60)}
    assert min(lefts) < 20 and max(lefts) > 120, "crop origins spread over the image"


def test_a_second_pass_gets_other_augmentations() -> None:
    item = Item(torch.rand(3, 64, 64), torch.zeros(64, 64, dtype=torch.int64), None, None)
    dataset = AugmentedSet([item], TrainConfig(crop_size=32, seed=0), stride=8, stage=1)
    first, second = dataset[0], dataset[1]
    assert first.image.shape == second.image.shape == (3, 32, 32)
    assert not torch.equal(first.image, second.image)


def test_class_weights_favour_rare_classes_and_the_square_root_favours_them_less() -> None:
    labels = torch.tensor([[0] * 8 + [1] * 2, [0] * 8 + [IGNORE] * 2])  # class 0: 16 pixels, 1: 2, 2: none
    item = Item(torch.zeros(3, 2, 10), labels, None, None)
    inverse = inverse_frequency_weights([item], 3)
    root = inverse_frequency_weights([item], 3, power=0.5)
    for weights in (inverse, root):
        assert weights[2] == 1.0, "a class with no labelled pixel keeps weight 1"
        assert torch.isclose(weights[:2].mean(), torch.tensor(1.0)), "mean 1 over the classes that occur"
    assert torch.isclose(inverse[1] / inverse[0], torch.tensor(8.0)), "inverse share: 16 / 2"
    assert torch.isclose(root[1] / root[0], torch.tensor(8.0).sqrt())
