"""neuronlab.data.graphs against independent facts: the cSBM's parameters and PyG's own raw formats.

PubMed, Amazon and WikiCS are tested on tiny files that the tests write in PyG's raw formats (this
machine has no internet); no test ever touches the network.
"""

import math

import pytest
import torch
from datafiles import write_amazon, write_planetoid, write_wikics

from neuronlab.data import load_dataset, make_csbm


# ---------------------------------------------------------------------------------------------- PyG raw files


def test_pubmed_from_tiny_planetoid_raw_files(tmp_path):
    feats, labels, test_index = write_planetoid(tmp_path / "PubMed" / "raw")
    data = load_dataset("pubmed", root=tmp_path, download=False)
    assert data.num_nodes == 530 and data.num_classes == 3 and data.name == "pubmed"
    assert data.train_mask[:6].all() and data.train_mask.sum() == 6
    assert data.val_mask[6:506].all() and data.val_mask.sum() == 500
    assert data.test_mask.sum() == 10 and data.test_mask[520:].all()
    assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()
    # row test_index[k] holds the k-th row of tx (Planetoid's reordering)
    assert torch.allclose(data.x[torch.from_numpy(test_index)], torch.from_numpy(feats[520:]))
    assert data.y[:520].tolist() == labels[:520].tolist()
    assert data.edge_index.shape[1] == 2 * 530     # two distinct out-neighbours per node in the dict


@pytest.mark.parametrize("name, folder", [("amazon-photo", "Photo"), ("amazon-computers", "Computers")])
def test_amazon_from_a_tiny_npz_with_a_seeded_stratified_split(tmp_path, name, folder):
    attr, labels = write_amazon(tmp_path / folder / "raw" / f"amazon_electronics_{folder.lower()}.npz")
    data = load_dataset(name, root=tmp_path, download=False, seed=3)
    assert data.num_nodes == 40 and data.num_classes == 4
    assert torch.equal(data.x, torch.from_numpy(attr))
    assert data.edge_index.shape[1] == 80                         # the ring, made undirected by PyG
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert (masks.sum(0) == 1).all()                              # a partition of the nodes
    assert masks.sum(1).tolist() == [24, 8, 8]                    # 60 / 20 / 20
    assert torch.bincount(data.y[data.train_mask]).tolist() == [6] * 4
    again = load_dataset(name, root=tmp_path, download=False, seed=3)
    other = load_dataset(name, root=tmp_path, download=False, seed=4)
    assert torch.equal(again.train_mask, data.train_mask) and not torch.equal(other.train_mask, data.train_mask)


def test_wikics_from_a_tiny_json_picks_the_requested_official_split(tmp_path):
    n = 30
    content = write_wikics(tmp_path / "WikiCS" / "raw", n=n, splits=3, num_features=4, num_classes=5, test_from=25)
    train, val = content["train_masks"], content["val_masks"]
    data = load_dataset("wikics", root=tmp_path, download=False)
    assert data.train_mask.shape == (n,) and data.train_mask.tolist() == train[0]
    assert data.val_mask.tolist() == val[0] and data.test_mask.sum() == 5
    assert data.edge_index.shape[1] == 2 * n
    assert load_dataset("wikics", root=tmp_path, download=False, split=2).train_mask.tolist() == train[2]
    with pytest.raises(ValueError, match="split"):
        load_dataset("wikics", root=tmp_path, download=False, split=3)


# ---------------------------------------------------------------------------------------------- generated and bundled graphs


def test_csbm_matches_its_parameters():
    n, d, h, signal, f = 2000, 10.0, 0.8, 2.0, 32
    data = load_dataset("csbm", num_nodes=n, avg_degree=d, homophily=h, signal=signal, num_features=f)
    assert data.x.shape == (n, f) and data.y.shape == (n,) and data.num_classes == 2
    src, dst = data.edge_index
    assert not (src == dst).any()                                                    # no self-loops
    forward = set(zip(src.tolist(), dst.tolist()))
    assert forward == {(b, a) for a, b in forward} and len(forward) == len(src)       # undirected, no dups
    edges = len(src) // 2
    # E ~ sum of binomials with mean n d / 2 = 10,000: sd(E) ~ 100, so the mean degree 2E/n has sd ~0.1
    assert abs(2 * edges / n - d) < 0.5
    # homophily is a proportion over ~10,000 edges: sd = sqrt(h (1 - h) / E) ~ 0.004; allow 5 sd (0.02)
    assert abs((data.y[src] == data.y[dst]).float().mean().item() - h) < 0.02
    # class means: noise per coordinate has sd 1/sqrt(F), so the empirical mean of 1,000 nodes is within
    # ~sqrt(F / (F * 1000)) = 0.03 of mu_k; every mu_k has norm `signal`, two are sqrt(2) * signal apart
    means = torch.stack([data.x[data.y == k].mean(0) for k in range(2)])
    assert (means - data.class_means).norm(dim=1).max() < 0.15
    assert abs(means[0].norm().item() - signal) < 0.15
    assert abs((means[0] - means[1]).norm().item() - math.sqrt(2) * signal) < 0.15
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert (masks.sum(0) == 1).all() and masks.sum(1).tolist() == [1200, 400, 400]


def test_csbm_heterophily_many_classes_and_seeds():
    data = make_csbm(num_nodes=3000, num_classes=5, avg_degree=8, homophily=0.1, seed=1)
    src, dst = data.edge_index
    assert torch.bincount(data.y).tolist() == [600] * 5
    assert abs((data.y[src] == data.y[dst]).float().mean().item() - 0.1) < 0.03   # sd ~0.004 on 12,000 edges
    again = load_dataset("csbm", num_nodes=3000, num_classes=5, avg_degree=8, homophily=0.1, seed=1)
    other = load_dataset("csbm", num_nodes=3000, num_classes=5, avg_degree=8, homophily=0.1, seed=2)
    assert torch.equal(again.edge_index, data.edge_index) and torch.equal(again.x, data.x)
    assert not torch.equal(other.y, data.y)
    with pytest.raises(ValueError, match="homophily"):
        load_dataset("csbm", homophily=1.5)
    with pytest.raises(ValueError, match="cannot exceed 1"):
        load_dataset("csbm", num_nodes=40, avg_degree=100)


def test_karate_masks_partition_the_club():
    data = load_dataset("karate")
    assert data.num_nodes == 34 and data.num_classes == 4
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert (masks.sum(0) == 1).all() and masks.sum(1).tolist() == [4, 15, 15]
