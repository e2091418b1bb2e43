"""neuronlab.data.transforms: the crop-and-flip augmentation, stratified splits and standardization."""

import numpy as np
import pytest
import torch

from neuronlab.data import random_crop_flip
from neuronlab.data.transforms import (channel_statistics, resolve_size, standardize_, stratified_indices,
                                       stratified_split_off)


# ---------------------------------------------------------------------------------------------- augmentation


def test_random_crop_flip_identity_flip_and_shape():
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(random_crop_flip(x, padding=0, flip_prob=0.0), x)
    assert torch.equal(random_crop_flip(x, padding=0, flip_prob=1.0), x.flip(-1))
    out = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    again = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_crop_flip_draws_an_independent_valid_crop_per_sample():
    image = torch.arange(1.0, 1 + 2 * 6 * 6).reshape(1, 2, 6, 6)   # distinct non-zero pixel values
    batch = image.repeat(64, 1, 1, 1)
    out = random_crop_flip(batch, padding=2, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(image[0], (2, 2, 2, 2))
    candidates = {}
    for dy in range(5):
        for dx in range(5):
            crop = padded[:, dy:dy + 6, dx:dx + 6]
            candidates[(dy, dx, False)] = crop
            candidates[(dy, dx, True)] = crop.flip(-1)
    seen = set()
    for sample in out:
        match = [key for key, crop in candidates.items() if torch.equal(sample, crop)]
        assert match, "every output must be a zero-padded crop of the input, possibly mirrored"
        seen.add(match[0])
    assert len(seen) > 20                                  # 50 possible outcomes, 64 independent draws
    assert {flip for _, _, flip in seen} == {True, False}
    with pytest.raises(ValueError):
        random_crop_flip(torch.rand(3, 32, 32))


# ---------------------------------------------------------------------------------------------- splits


def test_resolve_size_counts_and_fractions():
    assert resolve_size(300, 1000, "val_size") == 300
    assert resolve_size(0.25, 1797, "val_size") == round(0.25 * 1797)
    assert resolve_size(np.int64(7), 10, "val_size") == 7
    for bad, match in ((True, "count"), ("5", "count"), (-1, ">= 0"), (1.0, "fraction")):
        with pytest.raises(ValueError, match=match):
            resolve_size(bad, 10, "val_size")


def test_stratified_indices_partition_keep_class_shares_and_are_seeded():
    labels = np.repeat(np.arange(4), 25)                                  # 4 classes of 25 samples
    train, val, test = stratified_indices(labels, 20, 40, seed=3, name="toy")
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))   # a partition
    # test is held out first (40 % of every class), then val from the rest (20 of 60: a third of each)
    assert np.bincount(labels[test]).tolist() == [10] * 4 and np.bincount(labels[val]).tolist() == [5] * 4
    again = stratified_indices(labels, 20, 40, seed=3, name="toy")
    other = stratified_indices(labels, 20, 40, seed=4, name="toy")
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test)))
    assert not np.array_equal(other[2], test)
    with pytest.raises(ValueError, match="leaves no training data"):
        stratified_indices(labels, 50, 50, seed=0, name="toy")
    with pytest.raises(ValueError, match="stratified"):
        stratified_indices(labels, 2, 0, seed=0, name="toy")            # fewer than one per class


def test_holding_out_nothing_leaves_the_random_stream_alone():
    rng = np.random.RandomState(0)
    index = np.arange(10)
    rest, held = stratified_split_off(index, index % 2, 0, rng, "val_size", "toy")
    assert rest is index and held.shape == (0,)
    # an empty hold-out draws nothing, so a later split from the same stream is unchanged
    assert rng.randint(1000) == np.random.RandomState(0).randint(1000)


# ---------------------------------------------------------------------------------------------- standardization


def test_channel_statistics_and_standardize_in_place():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 4, 4, generator=g) * torch.tensor([1.0, 2.0, 0.0]).view(1, 3, 1, 1) + 7
    mean, std = channel_statistics(x)
    assert torch.allclose(mean, x.transpose(0, 1).reshape(3, -1).mean(1))
    assert std[2] == 1.0                              # a constant channel is shifted, never divided by 0
    assert standardize_(x, mean, std) is x
    assert torch.allclose(x[:, :2].mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(x[:, :2].std(dim=(0, 2, 3), correction=0), torch.ones(2), atol=1e-5)
    assert (x[:, 2] == 0).all()
