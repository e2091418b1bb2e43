"""neuronlab.similarity against the definitions: invariances, closed forms, references written differently
(numpy/scipy whitening CCA, the QR route of Kornblith et al., Song et al.'s closed-form unbiased HSIC),
streaming == one-shot, and every input error."""

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from neuronlab import similarity as sim
from neuronlab.probe import collect_responses


def _gaussian(seed, n, d):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(seed, d):
    q, _ = torch.linalg.qr(_gaussian(seed, d, d))
    return q


def _related(seed, n=400, d_x=6, d_y=4, noise=0.5):
    """Two layers that share part of their signal."""
    x = _gaussian(seed, n, d_x)
    y = x @ _gaussian(seed + 1, d_x, d_y) + noise * _gaussian(seed + 2, n, d_y)
    return x, y


# ------------------------------------------------------------------------------------------ reference
def _whitening_cca(x, y):
    """Canonical correlations and x's canonical variates via Sxx^{-1/2} Sxy Syy^{-1/2} (scipy sqrtm)."""
    x = x.numpy() - x.numpy().mean(0)
    y = y.numpy() - y.numpy().mean(0)
    wx = np.linalg.inv(np.real(scipy.linalg.sqrtm(x.T @ x)))
    wy = np.linalg.inv(np.real(scipy.linalg.sqrtm(y.T @ y)))
    u, s, _ = np.linalg.svd(wx @ (x.T @ y) @ wy)
    k = min(x.shape[1], y.shape[1])
    return s[:k], x @ wx @ u[:, :k], x


def _song_unbiased_hsic(k, l):
    """Song et al. (2007), eq. for HSIC_1, written out."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))


# --------------------------------------------------------------------------------------- CKA: values
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_layer_with_itself_is_one(debiased):
    x = _gaussian(0, 50, 7)
    assert sim.linear_cka(x, x, debiased) == pytest.approx(1, abs=1e-12)
    assert sim.rbf_cka(x, x, debiased=debiased) == pytest.approx(1, abs=1e-12)
    assert sim.cka(sim.gram_linear(x), sim.gram_linear(x), debiased) == pytest.approx(1, abs=1e-12)


def test_linear_cka_is_invariant_to_orthogonal_maps_isotropic_scaling_and_translation():
    x, y = _related(0)
    reference = sim.linear_cka(x, y)
    assert 0.1 < reference < 0.99
    moved = 3.7 * y @ _orthogonal(5, y.shape[1]) - 11.0
    assert sim.linear_cka(x, moved) == pytest.approx(reference, abs=1e-10)
    assert sim.linear_cka(x @ _orthogonal(6, x.shape[1]) * 0.01 + 4, y) == pytest.approx(reference, abs=1e-10)
    assert sim.linear_cka(x, moved, debiased=True) == pytest.approx(sim.linear_cka(x, y, debiased=True), abs=1e-10)


def test_linear_cka_is_not_invariant_to_a_general_invertible_map():
    x, y = _related(0)
    stretch = _orthogonal(7, 6) @ torch.diag(torch.logspace(0, 1.5, 6, dtype=torch.float64))
    assert abs(sim.linear_cka(x @ stretch, y) - sim.linear_cka(x, y)) > 0.01


def test_debiased_cka_of_independent_layers_is_near_zero_and_biased_cka_near_d_over_n_plus_d():
    n, d = 256, 10
    biased, debiased = [], []
    for seed in range(8):
        x, y = _gaussian(100 + seed, n, d), _gaussian(200 + seed, n, d)
        biased.append(sim.linear_cka(x, y))
        debiased.append(sim.linear_cka(x, y, debiased=True))
    assert abs(np.mean(debiased)) < 0.01
    assert np.mean(biased) == pytest.approx(d / (n + d), rel=0.2)


def test_measures_are_similarities_not_distances():
    x = _gaussian(0, 300, 5)
    close = x + 0.05 * _gaussian(1, 300, 5)
    unrelated = _gaussian(2, 300, 5)
    for name, measure in sim.MEASURES.items():
        assert measure(x, close) > 0.9 > measure(x, unrelated) + 0.3, name


# ------------------------------------------------------------------------------------- CKA: Gram / HSIC
@pytest.mark.parametrize("debiased", [False, True])
def test_gram_cka_equals_feature_space_linear_cka(debiased):
    x, y = _related(3, n=60, d_x=9, d_y=5, noise=2.0)
    x = x + 5.0  # translation must not matter
    gram_value = sim.cka(sim.gram_linear(x), sim.gram_linear(y), debiased)
    assert gram_value == pytest.approx(sim.linear_cka(x, y, debiased), abs=1e-10)


def test_unbiased_hsic_equals_song_closed_form():
    x, y = _related(4, n=8, d_x=3, d_y=2, noise=1.0)
    for k, l in [(sim.gram_linear(x), sim.gram_linear(y)), (sim.gram_rbf(x), sim.gram_rbf(y))]:
        expected = _song_unbiased_hsic(k.numpy(), l.numpy())
        assert sim.hsic(k, l, unbiased=True) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_biased_hsic_is_trace_khlh_over_n_minus_1_squared():
    x, y = _related(5, n=12, d_x=3, d_y=4, noise=1.0)
    k, l = sim.gram_linear(x).numpy(), sim.gram_rbf(y, bandwidth=1.0).numpy()
    h = np.eye(12) - 1 / 12
    assert sim.hsic(torch.from_numpy(k), torch.from_numpy(l)) == pytest.approx(
        np.trace(k @ h @ l @ h) / 11**2, rel=1e-12)


def test_center_gram_biased_is_hkh_and_unbiased_has_zero_diagonal_and_row_sums():
    k = sim.gram_linear(_gaussian(6, 10, 3)).numpy()
    h = np.eye(10) - 1 / 10
    np.testing.assert_allclose(sim.center_gram(torch.from_numpy(k)).numpy(), h @ k @ h, atol=1e-12)
    u = sim.center_gram(torch.from_numpy(k), unbiased=True).numpy()
    # U-centred matrices have a zero diagonal and zero row sums (Székely & Rizzo 2014, Lemma 1)
    np.testing.assert_allclose(np.diag(u), 0, atol=1e-12)
    np.testing.assert_allclose(u.sum(1), 0, atol=1e-10)


@pytest.mark.parametrize("n", [9, 10])  # 36 pairs (median between two), 45 pairs
def test_gram_rbf_bandwidth_is_a_fraction_of_the_median_pairwise_distance(n):
    x = _gaussian(7, n, 2)
    sq_distances = torch.cdist(x, x) ** 2
    sq_median = float(np.median(sq_distances[torch.triu_indices(n, n, 1).unbind()].numpy()))
    expected = torch.exp(-sq_distances / (2 * 0.7**2 * sq_median))
    torch.testing.assert_close(sim.gram_rbf(x, bandwidth=0.7), expected, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------- CCA
def test_canonical_correlations_match_whitening_reference():
    x, y = _related(8, n=500, d_x=5, d_y=3)
    expected, _, _ = _whitening_cca(x, y)
    rho = sim.canonical_correlations(x, y)
    assert rho.dtype == torch.float64 and rho.shape == (3,)
    np.testing.assert_allclose(rho.numpy(), expected, atol=1e-10)


def test_mean_squared_canonical_correlation_matches_the_qr_route():
    x, y = _related(9, n=300, d_x=4, d_y=7)
    qx, _ = np.linalg.qr(x.numpy() - x.numpy().mean(0))
    qy, _ = np.linalg.qr(y.numpy() - y.numpy().mean(0))
    r2 = np.linalg.norm(qx.T @ qy) ** 2 / 4  # Kornblith et al.'s cca(): mean R^2
    assert float((sim.canonical_correlations(x, y) ** 2).mean()) == pytest.approx(r2, abs=1e-12)


def test_cca_and_svcca_are_invariant_to_invertible_linear_maps():
    x, y = _related(10)
    mix = _gaussian(11, 6, 6) + 3 * torch.eye(6, dtype=torch.float64)
    for measure in (sim.cca_similarity, lambda a, b: sim.svcca_similarity(a, b, keep_variance=1.0)):
        assert measure(x @ mix - 2, 0.3 * y + 1) == pytest.approx(measure(x, y), abs=1e-10)
        assert measure(x, x @ mix) == pytest.approx(1, abs=1e-10)


def test_cca_of_an_ill_conditioned_layer_and_its_invertible_map_is_one():
    n, d = 400, 8
    u, _ = torch.linalg.qr(_gaussian(12, n, d) - _gaussian(12, n, d).mean(0))
    x = (u - u.mean(0)) @ torch.diag(torch.logspace(0, -6, d, dtype=torch.float64)) @ _orthogonal(13, d)
    y = x @ (_gaussian(14, d, d) + 2 * torch.eye(d, dtype=torch.float64))
    rho = sim.canonical_correlations(x, y)
    svcca = sim.svcca_correlations(x, y, keep_variance=1.0)
    assert rho.shape == (d,) and svcca.shape == (d,)
    assert float(rho.min()) > 1 - 1e-6 and float(svcca.min()) > 1 - 1e-6


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), d_x=st.integers(1, 6), d_y=st.integers(1, 6), extra=st.integers(0, 40),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]))
def test_canonical_correlations_lie_in_0_1_descending(seed, d_x, d_y, extra, dtype):
    n = 5 * max(d_x, d_y) + extra
    x, y = _gaussian(seed, n, d_x).to(dtype), _gaussian(seed + 1, n, d_y).to(dtype)
    rho = sim.canonical_correlations(x, y)
    assert rho.dtype == torch.float64 and rho.shape == (min(d_x, d_y),)
    assert bool(((rho >= 0) & (rho <= 1)).all()) and bool((rho[:-1] >= rho[1:]).all())


def test_rank_deficient_layer_gives_as_many_correlations_as_its_rank():
    x = _gaussian(15, 200, 4)
    x = torch.cat([x, x[:, :2] + x[:, 2:3]], 1)  # 6 neurons, rank 4
    rho = sim.canonical_correlations(x, _gaussian(16, 200, 5))
    assert rho.shape == (4,)


def test_svd_reduce_thresholds_squared_singular_values():
    # hand-made spectrum: s = 3, 2, 1, 0.5 -> variance 9, 4, 1, 0.25 (total 14.25)
    u, _ = torch.linalg.qr(_gaussian(17, 50, 4) - _gaussian(17, 50, 4).mean(0))
    u = u - u.mean(0)
    u, _ = torch.linalg.qr(u)
    s = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    x = u @ torch.diag(s) @ _orthogonal(18, 4) + 7.0
    assert sim.svd_reduce(x, 0.9).shape == (50, 2)      # 13/14.25 = 0.912 (by s alone: 5/6.5 = 0.77 -> 3)
    assert sim.svd_reduce(x, 13 / 14.25).shape == (50, 2)  # the smallest k reaching the threshold
    assert sim.svd_reduce(x, 0.95).shape == (50, 3)     # 14/14.25 = 0.982
    assert sim.svd_reduce(x, 1.0).shape == (50, 4)
    reduced = sim.svd_reduce(x, 0.95)
    np.testing.assert_allclose(reduced.norm(dim=0).numpy(), s[:3].numpy(), rtol=1e-12)
    np.testing.assert_allclose(reduced.mean(0).numpy(), 0, atol=1e-12)


def test_svd_reduce_drops_constant_neurons_so_svcca_accepts_them():
    x, y = _related(19)
    padded = torch.cat([x, torch.ones(x.shape[0], 2, dtype=torch.float64)], 1)
    assert sim.svd_reduce(padded, 1.0).shape[1] == 6
    assert sim.svcca_similarity(padded, y, 1.0) == pytest.approx(sim.cca_similarity(x, y), abs=1e-10)


# ------------------------------------------------------------------------------------------- PWCCA
def test_pwcca_weights_match_whitening_reference():
    x, y = _related(20, n=600, d_x=3, d_y=6, noise=1.5)
    rho, variates, centred = _whitening_cca(x, y)
    weights = np.abs(variates.T @ centred).sum(1)
    weights /= weights.sum()
    value, got_weights, got_rho = sim.pwcca(x, y)
    np.testing.assert_allclose(got_rho.numpy(), rho, atol=1e-10)
    np.testing.assert_allclose(got_weights.numpy(), weights, atol=1e-10)
    assert value == pytest.approx(float(weights @ rho), abs=1e-10)


@pytest.mark.parametrize("keep_variance", [None, 0.99])
def test_pwcca_runs_with_either_argument_wider_and_is_symmetric_then(keep_variance):
    x, y = _related(21, d_x=8, d_y=3)
    forward, weights, rho = sim.pwcca(x, y, keep_variance)
    backward = sim.pwcca_similarity(y, x, keep_variance)
    assert forward == pytest.approx(backward, abs=1e-12)
    assert bool((weights >= 0).all()) and float(weights.sum()) == pytest.approx(1, abs=1e-12)
    assert weights.shape == rho.shape
    assert float(rho.min()) <= forward <= float(rho.max())


def test_pwcca_weighs_directions_the_neurons_use():
    # x's neurons all follow one signal that y shares, plus one weak private direction: PWCCA > mean CCA
    g = torch.Generator().manual_seed(22)
    signal = torch.randn(500, 1, generator=g, dtype=torch.float64)
    x = torch.cat([signal + 0.1 * torch.randn(500, 3, generator=g, dtype=torch.float64),
                   0.1 * torch.randn(500, 1, generator=g, dtype=torch.float64)], 1)
    y = torch.cat([signal, torch.randn(500, 5, generator=g, dtype=torch.float64)], 1)
    assert sim.pwcca_similarity(x, y) > sim.cca_similarity(x, y) + 0.2


# --------------------------------------------------------------------------------------- streaming
_X_STREAM, _Y_STREAM = _related(23, n=40, d_x=5, d_y=3, noise=1.0)
_X_STREAM = _X_STREAM + 3.0  # away from zero, so the shift matters


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, 39), max_size=10, unique=True), debiased=st.booleans())
def test_linear_cka_streaming_equals_one_shot_for_any_batch_split(cuts, debiased):
    bounds = [0] + sorted(cuts) + [40]
    stream = sim.LinearCKA(debiased)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        stream.update(_X_STREAM[start:stop], _Y_STREAM[start:stop])
    assert stream.compute() == pytest.approx(sim.linear_cka(_X_STREAM, _Y_STREAM, debiased), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_streaming_merges_and_is_exact_far_from_zero(debiased):
    x, y = _related(24, n=64, d_x=4, d_y=4, noise=1.0)
    left, right = sim.LinearCKA(debiased), sim.LinearCKA(debiased)
    for i in range(0, 30):  # batches of 1 sample, far from zero
        left.update(x[i:i + 1] + 1e3, y[i:i + 1] - 500)
    right.update(x[30:] + 1e3, y[30:] - 500)
    left.merge(right)
    assert left.compute() == pytest.approx(sim.linear_cka(x, y, debiased), abs=1e-9)
    left.reset()
    left.update(x, y)
    assert left.compute() == pytest.approx(sim.linear_cka(x, y, debiased), abs=1e-12)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_cka_with_one_batch_equals_debiased_cka(kernel):
    x, y = _related(25, n=50, d_x=6, d_y=4, noise=1.0)
    stream = sim.MinibatchCKA(kernel)
    stream.update(x, y)
    grams = (sim.gram_linear(x), sim.gram_linear(y)) if kernel == "linear" else (sim.gram_rbf(x), sim.gram_rbf(y))
    assert stream.compute() == pytest.approx(sim.cka(*grams, debiased=True), abs=1e-12)


def test_minibatch_cka_is_a_ratio_of_summed_unbiased_hsics():
    x, y = _related(26, n=90, d_x=5, d_y=5, noise=1.0)
    stream, parts = sim.MinibatchCKA(), []
    for start in range(0, 90, 30):
        k, l = sim.gram_linear(x[start:start + 30]), sim.gram_linear(y[start:start + 30])
        parts.append([sim.hsic(k, l, True), sim.hsic(k, k, True), sim.hsic(l, l, True)])
        stream.update(x[start:start + 30], y[start:start + 30])
    xy, xx, yy = np.sum(parts, 0)
    assert stream.batches == 3
    assert stream.compute() == pytest.approx(xy / math.sqrt(xx * yy), abs=1e-12)


# ------------------------------------------------------------------------------------- layer x layer
@pytest.fixture(scope="module")
def network_responses():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    return collect_responses(model, _gaussian(27, 300, 6).float(), ["1", "3", "4"])


@pytest.mark.parametrize("measure", sorted(sim.MEASURES))
def test_similarity_matrix_of_a_network_with_itself_has_unit_diagonal_and_is_symmetric(network_responses, measure):
    matrix = sim.similarity_matrix(network_responses, measure=measure)
    assert matrix.shape == (3, 3) and matrix.dtype == torch.float64
    np.testing.assert_allclose(matrix.diagonal().numpy(), 1, atol=1e-9)
    assert torch.equal(matrix, matrix.T)


def test_similarity_matrix_of_two_recordings_holds_each_pair_measure(network_responses):
    layers = list(network_responses.values())
    other = [layers[0] ** 2, layers[2]]
    matrix = sim.similarity_matrix(layers, other, measure="svcca", keep_variance=0.9)
    assert matrix.shape == (3, 2)
    for i, a in enumerate(layers):
        for j, b in enumerate(other):
            assert matrix[i, j].item() == sim.svcca_similarity(a, b, keep_variance=0.9)


# ---------------------------------------------------------------------------------------------- errors
ALL_PAIRS = [sim.canonical_correlations, sim.cca_similarity, sim.svcca_correlations, sim.svcca_similarity,
             sim.pwcca, sim.pwcca_similarity, sim.linear_cka, sim.rbf_cka]


@pytest.mark.parametrize("function", ALL_PAIRS, ids=lambda f: f.__name__)
def test_every_measure_rejects_bad_input_with_a_hint(function):
    x, y = _related(28)
    with pytest.raises(ValueError, match=r"\[samples, neurons\].*x\.flatten\(1\).*reduce="):
        function(x.reshape(400, 2, 3), y)
    with pytest.raises(ValueError, match="400 samples and y has 399.*same inputs"):
        function(x, y[1:])
    bad = y.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        function(x, bad)
    with pytest.raises(ValueError, match="1 sample.*at least 2"):
        function(x[:1], y[:1])
    with pytest.raises(TypeError, match="tensor"):
        function(x.tolist(), y)


@pytest.mark.parametrize("function", [sim.canonical_correlations, sim.cca_similarity, sim.pwcca,
                                      sim.pwcca_similarity], ids=lambda f: f.__name__)
def test_cca_rejects_constant_neurons_and_names_them(function):
    x, y = _related(29, d_x=8)
    x[:, [1, 3, 4, 5, 6, 7]] = 2.0
    with pytest.raises(ValueError, match=r"6 constant neuron\(s\) \(indices 1, 3, 4, 5, 6, \.\.\.\).*"
                                         r"x\[:, x\.std\(0\) > 0\].*svcca_similarity"):
        function(x, y)


def test_cca_rejects_fewer_samples_than_neurons_need():
    x, y = _gaussian(30, 10, 5), _gaussian(31, 10, 5)
    for function in (sim.canonical_correlations, sim.cca_similarity, sim.pwcca_similarity):
        with pytest.raises(ValueError, match=r"10 samples for 5 \+ 5 neurons.*at least 1 canonical.*"
                                             r"at least 11 samples"):
            function(x, y)
    with pytest.raises(ValueError, match=r"after the SVD step.*at least 11 samples"):
        sim.svcca_similarity(x, y, keep_variance=1.0)


def test_cca_warns_below_five_samples_per_neuron():
    x, y = _gaussian(32, 30, 10), _gaussian(33, 30, 4)
    for function in (sim.canonical_correlations, sim.svcca_correlations, sim.pwcca):
        with pytest.warns(UserWarning, match="a few times more samples than neurons.*random baseline") as caught:
            function(x, y)
        assert caught[0].filename == __file__  # attributed to the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.canonical_correlations(_gaussian(34, 50, 10), y[:1].expand(50, 4) + _gaussian(35, 50, 4))


def test_cka_rejects_constant_layers_and_degenerate_debiased_estimates():
    x = _gaussian(36, 20, 3)
    constant = torch.full((20, 4), 1.5)
    for function in (sim.linear_cka, sim.rbf_cka):
        with pytest.raises(ValueError, match="y is constant"):
            function(x, constant)
    stream = sim.LinearCKA()
    for row in constant:
        stream.update(row[None], x[:1])
    with pytest.raises(ValueError, match="x is constant"):
        stream.compute()
    # samples with mutually orthogonal responses: the U-centred Gram matrix is 0
    with pytest.raises(ValueError, match="unbiased self-HSIC of x.*<= 0.*debiased=False"):
        sim.linear_cka(torch.eye(6), _gaussian(37, 6, 2), debiased=True)
    with pytest.raises(ValueError, match="unbiased self-HSIC of gram_x"):
        sim.cka(sim.gram_linear(torch.eye(6)), sim.gram_linear(_gaussian(37, 6, 2)), debiased=True)
    with pytest.raises(ValueError, match="debiased CKA needs at least 4"):
        sim.linear_cka(x[:3], x[:3], debiased=True)


def test_gram_functions_reject_non_gram_input():
    x = _gaussian(38, 10, 3)
    with pytest.raises(ValueError, match="square.*gram_linear"):
        sim.cka(x, x)
    with pytest.raises(ValueError, match="not symmetric"):
        sim.hsic(_gaussian(39, 10, 10), sim.gram_linear(x))
    with pytest.raises(ValueError, match="same inputs"):
        sim.cka(sim.gram_linear(x), sim.gram_linear(x[:9]))
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        sim.gram_rbf(x, bandwidth=0)
    with pytest.raises(ValueError, match="median distance.*is 0"):
        sim.gram_rbf(torch.cat([torch.zeros(8, 3), x[:2]]))


@pytest.mark.parametrize("keep_variance", [0, 1.5, -0.1, True, "0.9"])
def test_keep_variance_must_be_a_fraction(keep_variance):
    x, y = _related(40)
    with pytest.raises(ValueError, match=r"keep_variance must be a fraction in \(0, 1\]"):
        sim.svcca_similarity(x, y, keep_variance)


def test_streaming_metrics_reject_misuse():
    x, y = _related(41, n=20)
    with pytest.raises(RuntimeError, match="before any update"):
        sim.LinearCKA().compute()
    with pytest.raises(RuntimeError, match="before any update"):
        sim.MinibatchCKA().compute()
    with pytest.raises(ValueError, match="more than 3.*drop_last=True"):
        sim.MinibatchCKA().update(x[:3], y[:3])
    stream = sim.LinearCKA()
    stream.update(x, y)
    with pytest.raises(ValueError, match="earlier batches had 6 and 4"):
        stream.update(x[:, :5], y)
    with pytest.raises(ValueError, match="kernel must be one of"):
        sim.MinibatchCKA("cosine")


def test_similarity_matrix_rejects_unknown_measures_and_mismatched_layers():
    x, y = _related(42)
    with pytest.raises(ValueError, match=r"unknown measure 'linear-cka' \(did you mean 'linear_cka'\?\).*'svcca'"):
        sim.similarity_matrix([x, y], measure="linear-cka")
    with pytest.raises(ValueError, match=r"different numbers of samples \[300, 400\]"):
        sim.similarity_matrix({"a": x, "b": y[:300]})
    with pytest.raises(TypeError, match=r"one tensor: pass \[responses_a\]"):
        sim.similarity_matrix(x)
    with pytest.raises(ValueError, match="holds no layers"):
        sim.similarity_matrix({})
