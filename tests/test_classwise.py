"""neuronlab.classwise against per-class statistics computed one class at a time."""

import numpy as np
import pytest
import torch

from neuronlab.classwise import (IntraClassVariance, check_labels, class_counts, class_means, class_moments,
                                 class_sums, intra_class_variance, observations)


def _sample(seed, n=60, d=5, k=4):
    g = torch.Generator().manual_seed(seed)
    x = 3.0 + torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return x, y, k


@pytest.mark.parametrize("seed", range(5))
def test_class_moments_equal_one_class_at_a_time(seed):
    x, y, k = _sample(seed)
    counts, means, variances = class_moments(x, y, k)
    sums = class_sums(x, y, k)
    for c in range(k):
        rows = x[y == c]
        assert counts[c] == len(rows) == class_counts(y, k)[c]
        if len(rows):
            assert torch.allclose(sums[c], rows.sum(0))
            assert torch.allclose(means[c], rows.mean(0))
            assert torch.allclose(class_means(x, y, k)[c], rows.mean(0))
            assert torch.allclose(variances[c], rows.var(0, unbiased=False), atol=1e-12)


def test_a_class_without_samples_gets_nan_means():
    means = class_means(torch.ones(3, 2), torch.tensor([0, 0, 2]), 4)
    assert torch.isnan(means[1]).all() and torch.isnan(means[3]).all() and (means[[0, 2]] == 1).all()


@pytest.mark.parametrize("seed", range(3))
def test_streaming_intra_class_variance_equals_the_one_shot_value(seed):
    x, y, k = _sample(seed, n=90)
    whole = intra_class_variance(x, y, k)
    stream = IntraClassVariance(k)
    for part in (slice(0, 7), slice(7, 50), slice(50, 90)):
        stream.update(x[part], y[part])
    streamed = stream.compute()
    for key in ("per_class", "per_neuron", "layer", "counts"):
        assert torch.allclose(streamed[key], whole[key], atol=1e-10, equal_nan=True)
    # sigma_n = sum_j alpha_j Var(X_nj) with alpha the class frequencies
    alpha = torch.bincount(y, minlength=k).double() / len(y)
    reference = sum(alpha[c] * x[y == c].var(0, unbiased=False) for c in range(k) if (y == c).any())
    assert torch.allclose(whole["per_neuron"], reference)
    stream.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        stream.compute()


def test_conv_positions_are_observations_of_their_channel():
    responses = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)  # [N, C, H, W]
    x, y = observations(responses, torch.tensor([0, 1]))
    assert x.shape == (8, 3) and y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert x[:, 1].tolist() == responses[:, 1].flatten().tolist()
    per_class = intra_class_variance(responses, torch.tensor([0, 1]))["per_class"]
    assert torch.allclose(per_class[0], responses[0].flatten(1).var(1, unbiased=False))


def test_check_labels_accepts_arrays_and_says_what_is_wrong():
    labels, k = check_labels(np.array([0, 2, 1]), 3)
    assert labels.dtype == torch.long and k == 3
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        check_labels(torch.tensor([0, 1]), 4)
    with pytest.raises(ValueError, match="integer"):
        check_labels(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="integer"):
        check_labels(np.array([0.5]), 1)
    with pytest.raises(ValueError, match=r"0\.\.1, got values from 0 to 2"):
        check_labels(torch.tensor([0, 2]), 2, num_classes=2)
    with pytest.raises(ValueError, match=r"from -1"):
        check_labels(torch.tensor([-1, 0]), 2)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        check_labels(torch.tensor([0, 2]), 2, every_class=True)
    with pytest.raises(ValueError, match="no samples"):
        check_labels(torch.tensor([], dtype=torch.long), 0)
    with pytest.raises(TypeError):
        check_labels([0, 1], 2)
    empty, k = check_labels(torch.tensor([], dtype=torch.long), 0, num_classes=3)
    assert len(empty) == 0 and k == 3
    with pytest.raises(ValueError, match="responses"):
        class_sums(torch.ones(4), torch.tensor([0, 1, 0, 1]))
