"""Chapter 5's experiments: finding the neurons that matter and acting on them.

Four experiments, each a run function over a *group* of networks (the cross-model rankings need several
networks trained from different seeds side by side, so one stored run holds the whole group):

* ``"vision"`` -- ReLU networks (MLP quick, MLP and CNN full) trained from several seeds on mnist-5k and
  Fashion-MNIST (:func:`vision_run`): layer x layer similarity (linear CKA, SVCCA, PWCCA) between two
  seeds and of a network with itself, the similarity of each layer to its final self across training,
  six rankings of the last hidden layer (MaxCorr, MinCorr, LinReg, probe, class selectivity,
  conductance), their rank agreement, and ablation curves top-first / bottom-first / random for each;
* ``"memorization"`` -- Morcos et al.'s test (:func:`memorization_run`): networks trained on clean and
  partly randomised labels (chapter 4's :func:`~neuronlab.experiments.ch04_cooperating.corrupt_labels`),
  ablated unit by unit in random order on their training set;
* ``"bracket"`` -- the bracket neuron (:func:`bracket_run`): one-layer LSTMs with 8 units trained on the
  Dyck-1 language (Suzgun et al. 2019's protocol); the unit whose cell state tracks the bracket depth,
  found by correlation, cross-model MaxCorr and a probe; ablated inside the recurrence (and, for contrast,
  only at the read-out) and pushed by a few brackets' worth;
* ``"rejuvenation"`` -- a BatchNorm CNN trained with an L1 penalty on the BatchNorm scales until half its
  parameters are dead, then trained on with and without Neural Rejuvenation (:func:`rejuvenation_run`).

The methods are in :mod:`neuronlab.similarity`, :mod:`neuronlab.neurons` and
:mod:`neuronlab.rejuvenation`; the Dyck-1 data in :mod:`neuronlab.data.sequences`. The papers report few
numbers we can match on this data; :func:`comparison_table` puts their claims beside our measurements and
:func:`reproduction_summary` gives claim-by-claim verdicts by the criteria of :data:`CRITERIA`.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import neurons, similarity
from ..book import count_phrase
from ..cooperating import relu_layers
from ..data import dyck1_dataset, sequence_accuracy
from ..models import BracketRNN, SmallCNN
from ..probe import collect_responses, output_layer
from ..rejuvenation import GammaL1, live_fraction, rejuvenate_, utilization
from ..runs import format_mean_std
from ..train import History, fit
from ._common import ChapterRun, Timer, cached_dataset, history_summary, run_chapter_experiment, setup_chapter
from .ch04_cooperating import corrupt_labels, relu_mlp

__all__ = ["CHAPTER", "TITLE", "SETTINGS", "EXPERIMENTS", "STORED", "RANKINGS", "MEASURES", "setup",
           "vision_network", "train_vision_network", "rank_last_hidden_layer", "ranking_agreement",
           "vision_run", "memorization_run", "masked_bce", "bracket_training_data", "train_bracket_model", "bracket_analysis", "bracket_run",
           "rejuvenation_network", "rejuvenation_run", "experiment_grid", "run_config", "run_experiment",
           "agreement_frame", "ablation_frame", "bracket_table", "memorization_frame", "rejuvenation_frame",
           "rejuvenation_table", "PAPER_FINDINGS", "PAPER_REJUVENATION", "CRITERIA", "VERDICTS", "comparison_table",
           "reproduction_summary", "vision_table", "summary"]

#: The chapter's name in store paths and on the command line.
CHAPTER = "ch05"
#: The chapter's title, as the command line lists it.
TITLE = "Identifying and controlling neurons: similarity, rankings, ablation, control, rejuvenation"
#: Per profile. ``quick``: CPU minutes, offline data (mnist-5k, the Debian Fashion-MNIST, generated Dyck-1
#: strings); ``full``: full MNIST and Fashion-MNIST with MLPs and CNNs, more seeds and longer training, on
#: a GPU when there is one.
SETTINGS = {
    "quick": dict(dataset="mnist-5k", vision_datasets=["mnist-5k", "fashion-mnist"], vision_archs=["mlp"],
                  depth=2, width=128, vision_seeds=[0, 1, 2, 3], vision_max_epochs=30, analysis_samples=2000,
                  conductance_samples=500, conductance_steps=32, ablation_step=8, random_orders=5,
                  memo_fractions=[0.0, 0.5, 1.0], memo_seeds=[0, 1], memo_epochs=150, memo_train_samples=2000,
                  bracket_seeds=[0, 1, 2, 3, 4], bracket_hidden=8, bracket_epochs=3, bracket_batch=4,
                  bracket_train=5000, bracket_test=1000, rejuv_seeds=[0, 1, 2], rejuv_epochs=30, rejuv_lam=2e-2, rejuv_target=0.5,
                  device="cpu"),
    "full": dict(dataset="mnist", vision_datasets=["mnist", "fashion-mnist"], vision_archs=["mlp", "cnn"],
                 depth=2, width=512, vision_seeds=[0, 1, 2, 3, 4], vision_max_epochs=100, analysis_samples=5000,
                 conductance_samples=2000, conductance_steps=50, ablation_step=32, random_orders=10,
                 memo_fractions=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], memo_seeds=[0, 1, 2], memo_epochs=640,
                 memo_train_samples=10000, bracket_seeds=list(range(10)), bracket_hidden=8, bracket_epochs=3,
                 bracket_batch=1, bracket_train=5000, bracket_test=1000, rejuv_seeds=[0, 1, 2], rejuv_epochs=60, rejuv_lam=2e-2,
                 rejuv_target=0.5, device=None),
}
#: The chapter's experiments, in the order of the page (:func:`experiment_grid`).
EXPERIMENTS = ("vision", "memorization", "bracket", "rejuvenation")
#: Every quick-profile experiment ships with the book (``notebooks/results/ch05``): about a quarter of an
#: hour of CPU; the notebook trains one bracket LSTM live.
STORED: Tuple[str, ...] = EXPERIMENTS
#: The six rankings of :func:`rank_last_hidden_layer`, in the order of the chapter's tables.
RANKINGS = ("MaxCorr", "MinCorr", "LinReg", "probe", "selectivity", "conductance")
#: The similarity measures of the vision experiment's heatmaps (:data:`neuronlab.similarity.MEASURES`).
MEASURES = ("linear_cka", "svcca", "pwcca")


def setup(profile: Optional[str] = None, seed: int = 0, runs_dir=None, device: Optional[str] = None,
          smoke: Optional[bool] = None) -> Tuple[Dict[str, Any], ChapterRun]:
    """The notebook's first line: ``SETTINGS, RUN = ch05.setup(PROFILE, SEED, RUNS_DIR)`` (see
    :func:`neuronlab.experiments._common.setup_chapter`; ``smoke``: ``neuronlab.experiments.smoke``)."""
    return setup_chapter(CHAPTER, SETTINGS, profile, seed, runs_dir, device, STORED, smoke=smoke)


# ------------------------------------------------------------------------------------------ vision
def vision_network(arch: str, data, depth: int, width: int, seed: int) -> nn.Module:
    """The vision experiments' network, seeded: ``"mlp"`` is chapter 4's ReLU MLP (``depth`` hidden layers
    of ``width`` nodes, Glorot-uniform, zero biases); ``"cnn"`` is :class:`~neuronlab.models.SmallCNN`
    with ``width`` nodes in its hidden linear layer."""
    if arch == "mlp":
        return relu_mlp(int(np.prod(tuple(data.x_train.shape[1:]))), depth, width, data.num_classes, seed)
    if arch == "cnn":
        torch.manual_seed(seed)
        shape = tuple(data.x_train.shape[1:])
        return SmallCNN(in_channels=shape[0], num_classes=data.num_classes, hidden=width, image_size=shape[-1])
    raise ValueError(f"unknown arch {arch!r}; choose 'mlp' or 'cnn'")


def train_vision_network(data, *, arch: str, depth: int, width: int, seed: int, max_epochs: int,
                         lr: float = 1e-3, batch_size: int = 128, patience: Optional[int] = 5, device=None,
                         snapshots: bool = False, progress: bool = False) -> Tuple[nn.Module, History, List[Dict[str, torch.Tensor]]]:
    """Chapter 4's protocol for the vision networks: Adam, early stopping on the validation accuracy with
    ``patience`` (``None``: all epochs, final weights). With ``snapshots`` the weights after every epoch are
    kept (on the CPU) for the similarity-across-training figure.

    Returns:
        ``(model, history, snapshots)``.
    """
    kept: List[Dict[str, torch.Tensor]] = []
    callbacks = []
    if snapshots:
        callbacks.append(lambda _h, net: kept.append({k: v.detach().cpu().clone()
                                                      for k, v in net.state_dict().items()}))
    model = vision_network(arch, data, depth, width, seed)
    if patience is not None:
        callbacks.append(lambda history, _net: len(history) - history.best_epoch >= patience)
    history = fit(model, data, epochs=max_epochs, lr=lr, optimizer="adam", batch_size=batch_size, seed=seed,
                  progress=progress, keep_best=patience is not None, callbacks=callbacks, device=device)
    if patience is not None:
        history.restore_best(model)
    return model, history, kept


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(pd.Series(a.numpy()).corr(pd.Series(b.numpy()), method="spearman"))


def rank_last_hidden_layer(models: Sequence[nn.Module], layer: str, inputs: torch.Tensor, labels: torch.Tensor,
                           *, conductance_samples: int = 500, conductance_steps: int = 32,
                           seed: int = 0) -> Tuple[Dict[str, neurons.NeuronRanking], torch.Tensor]:
    """The six rankings of ``layer`` (a dense layer: responses ``[samples, neurons]``) of ``models[0]``
    (:data:`RANKINGS`), the cross-model ones against the other models: MaxCorr, MinCorr, LinReg (Bau et al.
    2019), an elastic-net probe of the class (Dalvi et al. 2019), class selectivity (Morcos et al. 2018)
    and the mean conductance for the true class over the first ``conductance_samples`` inputs (Dhamdhere
    et al. 2019, zero baseline). The layer's responses are recorded once per model and shared by the
    rankings that read them (the functional forms of :mod:`neuronlab.neurons`).

    Returns:
        ``(rankings, gap)``: the rankings by name, and the conductance's completeness gap per sample.
    """
    first = models[0]
    responses = [collect_responses(model, inputs, layer)[layer] for model in models]
    n = min(conductance_samples, len(inputs))
    conductance, gap = neurons.layer_conductance(first, layer, inputs[:n], labels[:n], n_steps=conductance_steps)
    rank = neurons.ranking_from_scores
    return {
        "MaxCorr": rank(neurons.max_correlation_scores(responses)[0], method="maxcorr"),
        "MinCorr": rank(neurons.min_correlation_scores(responses)[0], method="mincorr"),
        "LinReg": rank(neurons.linreg_errors(responses)[0], higher_is_better=False, method="linreg"),
        "probe": neurons.ProbeRanking(first, layer, seed=seed).rank(inputs, labels),
        "selectivity": rank(neurons.class_selectivity(responses[0], labels), method="class_selectivity"),
        "conductance": rank(conductance.double().mean(0), method="conductance"),
    }, gap


def ranking_agreement(rankings: Mapping[str, neurons.NeuronRanking]) -> List[List[float]]:
    """Spearman rank correlation between every two rankings' neuron positions (1 = the same order)."""
    positions = {name: r.rank_of().double() for name, r in rankings.items()}
    return [[_spearman(positions[a], positions[b]) for b in rankings] for a in rankings]


def _ablation_counts(width: int, step: int) -> List[int]:
    return sorted(set(list(range(0, width + 1, step)) + [width]))


def _ablation_curves(model: nn.Module, layer: str, rankings: Mapping[str, neurons.NeuronRanking],
                     inputs: torch.Tensor, labels: torch.Tensor, counts: Sequence[int], repeats: int,
                     seed: int) -> Dict[str, List[float]]:
    curves = {}
    for name, ranking in rankings.items():
        curves[f"{name} top"] = neurons.ablation_curve(model, layer, ranking.order, inputs, labels, counts).tolist()
        curves[f"{name} bottom"] = neurons.ablation_curve(model, layer, ranking.order.flip(0), inputs, labels,
                                                          counts).tolist()
    width = len(next(iter(rankings.values())))
    orders = neurons.random_orders(width, repeats, torch.Generator().manual_seed(seed))
    random = torch.stack([neurons.ablation_curve(model, layer, order, inputs, labels, counts) for order in orders])
    curves["random"] = random.mean(0).tolist()
    curves["random std"] = random.std(0).tolist() if repeats > 1 else [0.0] * len(counts)
    return curves


def _hidden_and_output(model: nn.Module) -> List[str]:
    return relu_layers(model) + [output_layer(model)]


def _layer_responses(model: nn.Module, inputs: torch.Tensor, layers: Sequence[str]) -> List[torch.Tensor]:
    # Conv layers: one value per channel (the mean over positions), so every layer is [samples, neurons].
    responses = collect_responses(model, inputs, list(layers))
    return [r.flatten(2).mean(2) if r.dim() == 4 else r for r in responses.values()]


def _similarity_matrices(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor],
                         keep_variance: float = 0.99) -> Dict[str, List[List[float]]]:
    """Layer x layer :data:`MEASURES`. A CCA-based value needs ``n - 1 >= d_x + d_y`` samples for the
    directions SVD keeps (else some canonical correlations are 1 whatever the data): where there are fewer
    (smoke mode's tiny test sets), it is NaN."""
    out = {"linear_cka": similarity.similarity_matrix(list(a), list(b), measure="linear_cka").tolist()}
    n = len(a[0])
    kept_a = [similarity.svd_reduce(x, keep_variance).shape[1] for x in a]
    kept_b = [similarity.svd_reduce(y, keep_variance).shape[1] for y in b]
    for measure in ("svcca", "pwcca"):
        function = similarity.MEASURES[measure]
        out[measure] = [[function(x, y, keep_variance=keep_variance) if n - 1 >= kx + ky else float("nan")
                         for y, ky in zip(b, kept_b)] for x, kx in zip(a, kept_a)]
    return out


def _svcca_or_nan(x: torch.Tensor, y: torch.Tensor, keep_variance: float = 0.99) -> float:
    """SVCCA, or NaN where the samples are too few for the directions kept (see :func:`_similarity_matrices`)."""
    kept = similarity.svd_reduce(x, keep_variance).shape[1] + similarity.svd_reduce(y, keep_variance).shape[1]
    return similarity.svcca_similarity(x, y, keep_variance) if len(x) - 1 >= kept else float("nan")


def vision_run(data, *, dataset: str, arch: str, depth: int, width: int, seeds: Sequence[int], max_epochs: int,
               analysis_samples: int, conductance_samples: int, conductance_steps: int, ablation_step: int,
               random_orders: int, device=None, progress: bool = False) -> Dict[str, Any]:
    """Train one network per seed and analyse them together.

    Measured on the first ``analysis_samples`` test images: the layer x layer similarity of the hidden
    layers and the logits (:data:`MEASURES`) between the first two seeds (``similarity``) and of the first
    network with itself (``self_similarity``; a unit diagonal is the sanity check); for the first network,
    the linear CKA and SVCCA of each layer after every epoch with the same layer at the end
    (``convergence``); the
    rankings of its last hidden layer (:func:`rank_last_hidden_layer`) and their agreement; on the whole
    test set, its accuracy as neurons of that layer are ablated (set to 0) in each ranking's order, in the
    reverse order, and in ``random_orders`` random orders (mean and std).

    Returns:
        :func:`~neuronlab.experiments._common.history_summary` of the first network, plus ``test_errors`` (all
        networks), ``layers``, ``similarity``, ``self_similarity``, ``convergence``, ``rankings`` (each
        ranking's scores), ``ties``, ``agreement``, ``ablation_counts``, ``ablation``, ``conductance_gap``.
    """
    with Timer() as timer:
        trained = [train_vision_network(data, arch=arch, depth=depth, width=width, seed=s, max_epochs=max_epochs,
                                        device=device, snapshots=(i == 0), progress=progress)
                   for i, s in enumerate(seeds)]
        nets = [net.cpu().eval() for net, _, _ in trained]
        x = data.x_test[:analysis_samples].cpu()
        y = data.y_test[:analysis_samples].cpu()
        layers = _hidden_and_output(nets[0])
        responses = [_layer_responses(net, x, layers) for net in nets[:2]]
        similar = _similarity_matrices(responses[0], responses[1] if len(nets) > 1 else responses[0])
        itself = _similarity_matrices(responses[0], responses[0])
        final = responses[0]
        probe_net = copy.deepcopy(nets[0])
        convergence: Dict[str, List[List[float]]] = {"linear_cka": [], "svcca": []}
        for state in trained[0][2]:
            probe_net.load_state_dict(state)
            at_epoch = _layer_responses(probe_net, x, layers)
            convergence["linear_cka"].append([similarity.linear_cka(a, b) for a, b in zip(at_epoch, final)])
            convergence["svcca"].append([_svcca_or_nan(a, b) for a, b in zip(at_epoch, final)])
        last_hidden = relu_layers(nets[0])[-1]
        rankings, gap = rank_last_hidden_layer(nets, last_hidden, x, y, conductance_samples=conductance_samples,
                                               conductance_steps=conductance_steps, seed=seeds[0])
        width_of_layer = len(rankings["MaxCorr"])
        counts = _ablation_counts(width_of_layer, ablation_step)
        curves = _ablation_curves(nets[0], last_hidden, rankings, data.x_test.cpu(), data.y_test.cpu(), counts,
                                  random_orders, seeds[0])
    summary = history_summary(trained[0][1], timer.seconds)
    return {**summary, "test_errors": [float(h.test_error_at_best) for _, h, _ in trained], "layers": layers,
            "similarity": similar, "self_similarity": itself, "convergence": convergence,
            "rankings": {name: r.scores.tolist() for name, r in rankings.items()},
            "ties": {name: int(r.ties) for name, r in rankings.items()},
            "agreement": ranking_agreement(rankings), "ablation_counts": counts, "ablation": curves,
            "conductance_gap": float(gap.abs().max())}


# ---------------------------------------------------------------------------------------- memorization
def memorization_run(data, *, dataset: str, fraction: float, seed: int, epochs: int, depth: int, width: int,
                     train_samples: int, ablation_step: int, random_orders: int, device=None,
                     progress: bool = False) -> Dict[str, Any]:
    """Morcos et al.'s test of reliance on single directions, on chapter 4's ReLU MLP.

    The first ``train_samples`` training images get ``fraction`` of their labels corrupted
    (:func:`~neuronlab.experiments.ch04_cooperating.corrupt_labels`); the network trains on them for
    ``epochs`` epochs without early stopping (long enough to memorize). Then the units of its last hidden
    layer are ablated (set to 0) cumulatively in ``random_orders`` random orders, and the accuracy on the
    training set (against the labels it was trained on) is measured after each ``ablation_step`` units.

    Returns:
        ``history_summary`` keys, ``train_accuracy`` (on the trained labels, nothing ablated),
        ``ablation_counts``, ``ablation`` (mean accuracy over the orders) and ``ablation_std``,
        ``selectivity`` (mean class selectivity of the layer's units, against the trained labels).
    """
    x, y = data.x_train[:train_samples].cpu(), data.y_train[:train_samples].cpu()
    noisy, _ = corrupt_labels(y, fraction, data.num_classes, torch.Generator().manual_seed(seed))
    subset = SimpleNamespace(name=data.name, x_train=x, y_train=noisy, x_val=data.x_val, y_val=data.y_val,
                             x_test=data.x_test, y_test=data.y_test, num_classes=data.num_classes)
    with Timer() as timer:
        model = relu_mlp(int(np.prod(tuple(x.shape[1:]))), depth, width, data.num_classes, seed)
        history = fit(model, subset, epochs=epochs, lr=1e-3, optimizer="adam", batch_size=128, seed=seed,
                      progress=progress, device=device)
        model = model.cpu().eval()
        layer = relu_layers(model)[-1]
        counts = _ablation_counts(width, ablation_step)
        orders = neurons.random_orders(width, random_orders, torch.Generator().manual_seed(seed))
        curves = torch.stack([neurons.ablation_curve(model, layer, order, x, noisy, counts) for order in orders])
        responses = collect_responses(model, x, layer)[layer]
        selectivity = neurons.class_selectivity(responses, noisy, data.num_classes)
    return {**history_summary(history, timer.seconds), "train_accuracy": float(curves[0, 0]),
            "ablation_counts": counts, "ablation": curves.mean(0).tolist(), "ablation_std": curves.std(0).tolist(),
            "selectivity": float(selectivity.mean())}


# -------------------------------------------------------------------------------------------- bracket
def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the real steps of padded strings: targets of padding steps are -1."""
    real = targets >= 0
    return F.binary_cross_entropy_with_logits(logits[real], targets[real])


def bracket_training_data(batch) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """A :class:`~neuronlab.data.DyckBatch` as :func:`neuronlab.train.fit` takes it: one-hot
    strings ``[N, T, 2]`` and per-step targets ``[N, T]`` with -1 on padding (see :func:`masked_bce`)."""
    return {"train": (batch.one_hot(), torch.where(batch.mask, batch.targets, torch.full_like(batch.targets, -1.0)))}


def train_bracket_model(train, *, cell: str = "lstm", hidden: int = 8, seed: int = 0, epochs: int = 3,
                        lr: float = 0.01, batch_size: int = 4, device=None, progress: bool = False,
                        callbacks: Sequence[Any] = ()) -> Tuple[BracketRNN, History]:
    """Suzgun et al.'s protocol: a one-layer RNN predicts at each step whether ")" is allowed next
    (a sigmoid output, :func:`masked_bce` over the real steps), Adam with learning rate ``lr``, ``epochs``
    passes over ``train`` (a :class:`~neuronlab.data.DyckBatch`) in shuffled mini-batches, with
    :func:`neuronlab.train.fit`, seeded. Returns ``(model, history)``, the model in eval mode, on the CPU.

    ``batch_size``: Suzgun et al. update after every string (``batch_size=1``, the full profile; most of a
    minute on 2 CPU cores). The quick profile's batches of 4 take seconds and still learn to generalize to
    the long test strings on most seeds; batches of 32 (three epochs are then too few updates) fail on most
    seeds. ``callbacks``: ``cb(history, model)`` after each epoch, as in :func:`neuronlab.train.fit`."""
    torch.manual_seed(seed)
    model = BracketRNN(cell=cell, hidden=hidden)
    history = fit(model, bracket_training_data(train), epochs=epochs, lr=lr, optimizer="adam",
                  batch_size=batch_size, seed=seed, loss_fn=masked_bce, device=device, progress=progress,
                  callbacks=list(callbacks))
    return model.cpu().eval(), history


def _sequence_scores(logits: torch.Tensor, batch) -> Tuple[float, float]:
    return sequence_accuracy(logits, batch, logits=True)


def _sequence_error(model: nn.Module, batch) -> float:
    """The share of strings (%) with at least one wrong step, the model evaluated on the CPU."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(batch.tokens.to(next(model.parameters()).device)).cpu()
    finally:
        model.train(was_training)
    return 100 * (1 - _sequence_scores(logits, batch)[1])


def bracket_analysis(model: BracketRNN, test, *, push_brackets: float = 3.0) -> Dict[str, Any]:
    """Find and test the depth unit of one trained :class:`~neuronlab.models.BracketRNN` (LSTM).

    On the real steps of ``test``: each unit's Pearson correlation with the depth, for the cell state and for
    the hidden state (:class:`neuronlab.neurons.UnrolledLSTM` records both); the *depth unit* is the unit
    whose cell state has the largest absolute correlation. Interventions, all through the unrolled loop
    that shares the trained weights: the depth unit's cell state set to 0 at every step (inside the
    recurrence), a hook that sets its hidden state to 0 only where the read-out sees it, and the cell of
    each other unit set to 0 (mean over them); the step and sequence accuracy of each. Control: at the
    steps where the depth is 0 (")" not allowed), the share where the model allows ")" (sigmoid > 0.5),
    before and after adding ``push_brackets`` times the cell's slope per bracket (a least-squares fit of
    the cell state on the depth) to the depth unit's cell once, after the first symbol.

    Returns:
        ``depth_unit``, ``cell_correlation`` and ``hidden_correlation`` (one per unit), ``slope``,
        ``step_accuracy`` and ``sequence_accuracy`` (each a dict over the interventions above),
        ``allowed_at_depth_zero`` (before) and ``allowed_at_depth_zero_pushed``, ``trace`` (depth, cell and
        hidden state of the depth unit along the longest test string), and ``cell_states`` (the cell states
        at every real test step, ``[steps, units]``, for the cross-model rankings of :func:`bracket_run`,
        which removes them before the result is stored).
    """
    unrolled = neurons.UnrolledLSTM(model.rnn)
    one_hot = test.one_hot()
    mask = test.mask
    depth = test.depth[mask].double()

    def readout(trace) -> torch.Tensor:
        return model.readout(trace.output).squeeze(-1)

    with torch.no_grad():
        trace = unrolled(one_hot)
        plain_logits = readout(trace)
        cell, hidden = trace.cell[mask], trace.hidden[mask]
        cell_corr = neurons.correlation_with(cell, depth)
        hidden_corr = neurons.correlation_with(hidden, depth)
        unit = int(cell_corr.abs().argmax())
        slope = float(torch.linalg.lstsq(torch.stack([depth, torch.ones_like(depth)], 1),
                                         cell[:, unit].double().unsqueeze(1)).solution[0])
        scores = {"plain": _sequence_scores(plain_logits, test)}
        ablated = readout(unrolled(one_hot, intervention=neurons.StateIntervention(units=[unit], state="cell",
                                                                                    mode="set", values=0.0)))
        scores["cell ablated"] = _sequence_scores(ablated, test)
        with neurons.ablate(model, "tap", [unit]):
            readout_only = model(test.tokens)
        scores["read-out ablated"] = _sequence_scores(readout_only, test)
        others = [_sequence_scores(readout(unrolled(one_hot, intervention=neurons.StateIntervention(
            units=[u], state="cell", mode="set", values=0.0))), test) for u in range(cell.shape[1]) if u != unit]
        scores["other cell ablated"] = tuple(float(np.mean(v)) for v in zip(*others))
        # One shift at the first step: with a counter's forget gate near 1 it is carried along the string,
        # like extra open brackets before it (a shift at every step would add up).
        pushed = readout(unrolled(one_hot, intervention=neurons.StateIntervention(
            units=[unit], state="cell", mode="add", values=push_brackets * slope, steps=slice(0, 1))))
    at_zero = mask & (test.depth == 0)
    allowed_before = float((plain_logits[at_zero] > 0).double().mean())
    allowed_after = float((pushed[at_zero] > 0).double().mean())
    longest = int(test.lengths.argmax())
    steps = int(test.lengths[longest])
    return {"depth_unit": unit, "cell_correlation": cell_corr.tolist(), "hidden_correlation": hidden_corr.tolist(),
            "slope": slope, "step_accuracy": {k: v[0] for k, v in scores.items()},
            "sequence_accuracy": {k: v[1] for k, v in scores.items()},
            "allowed_at_depth_zero": allowed_before, "allowed_at_depth_zero_pushed": allowed_after,
            "trace": {"depth": test.depth[longest, :steps].tolist(),
                      "cell": trace.cell[longest, :steps, unit].tolist(),
                      "hidden": trace.hidden[longest, :steps, unit].tolist()},
            "cell_states": cell}


def bracket_run(*, seeds: Sequence[int], cell: str = "lstm", hidden: int, epochs: int, num_train: int,
                num_test: int, lr: float = 0.01, batch_size: int = 32, device=None,
                progress: bool = False) -> Dict[str, Any]:
    """Train one LSTM per seed on the same Dyck-1 data (:func:`~neuronlab.data.dyck1_dataset`,
    data seed 0) and analyse each (:func:`bracket_analysis`); then rank every network's cell units against
    the others' by MaxCorr and MinCorr (the same test steps in every network) and by an elastic-net probe
    of "depth > 0", and count in how many networks each ranking puts the depth unit first.

    The shared result schema is filled for the first network: ``test_error`` is the share of long test
    strings it gets wrong (after every epoch in ``test_error_curve``), ``val_error`` the same on strings of
    the training lengths drawn independently (``num_test`` of them, data seed 1; short ones repeat training
    strings): the protocol trains a fixed number
    of epochs, so the best epoch is the last."""
    data = dyck1_dataset(num_train=num_train, num_test=num_test, seed=0)
    held_out = dyck1_dataset(num_train=1, num_test=num_test, test_lengths=(2, 50), seed=1).test
    curve: List[float] = []
    with Timer() as timer:
        per_seed, histories = [], []
        for seed in seeds:
            track = [lambda _h, net: curve.append(_sequence_error(net, data.test))] if not histories else []
            model, history = train_bracket_model(data.train, cell=cell, hidden=hidden, seed=seed, epochs=epochs,
                                                 lr=lr, batch_size=batch_size, device=device, progress=progress,
                                                 callbacks=track)
            if not histories:
                val_error = _sequence_error(model, held_out)
            histories.append(history)
            per_seed.append(bracket_analysis(model, data.test))
        cells = [r.pop("cell_states") for r in per_seed]
        depth = data.test.depth[data.test.mask]
        if len(cells) > 1:
            maxcorr = neurons.max_correlation_scores(cells)
            mincorr = neurons.min_correlation_scores(cells)
        for i, result in enumerate(per_seed):
            probe = neurons.train_linear_probe(cells[i], (depth > 0).long(), 2, seed=seeds[i])
            result["probe_top"] = int(neurons.probe_neuron_ordering(probe.weight)[0])
            if len(cells) > 1:
                result["maxcorr_top"] = int(neurons.ranking_from_scores(maxcorr[i]).order[0])
                result["mincorr_top"] = int(neurons.ranking_from_scores(mincorr[i]).order[0])
                result["maxcorr"] = maxcorr[i].tolist()
    return {"test_error": curve[-1], "best_epoch": epochs, "val_error": val_error, "min_test_error": min(curve),
            "epoch_of_min": int(np.argmin(curve)) + 1, "seconds": timer.seconds, "test_error_curve": curve,
            "train_loss_curve": histories[0].table["train_loss"].astype(float).round(5).tolist(),
            "seeds": list(seeds), "per_seed": per_seed}


# --------------------------------------------------------------------------------------- rejuvenation
def rejuvenation_network(data, seed: int, channels: Sequence[int] = (16, 32), hidden: int = 64) -> nn.Module:
    """The rejuvenation experiment's network: :class:`~neuronlab.models.SmallCNN` with BatchNorm after both
    convolutions, seeded."""
    torch.manual_seed(seed)
    shape = tuple(data.x_train.shape[1:])
    return SmallCNN(in_channels=shape[0], num_classes=data.num_classes, channels=tuple(channels), hidden=hidden,
                    image_size=shape[-1], batchnorm=True)


def rejuvenation_run(data, *, dataset: str, seed: int, epochs: int, lam: float, target: float, rejuvenate: bool,
                     lr: float = 0.05, batch_size: int = 64, device=None, progress: bool = False) -> Dict[str, Any]:
    """Neural Rejuvenation's protocol (Qiao et al. 2019) on a small BatchNorm CNN.

    Phase 1: SGD (momentum 0.9) on the cross-entropy plus ``lam`` times the L1 norm of the BatchNorm scales
    (:class:`neuronlab.rejuvenation.GammaL1`) until the parameter utilization falls to ``target`` or below
    (or ``epochs`` run out). Phase 2, for the remaining epochs, with a fresh optimizer and no penalty (the
    official code switches the sparsity term off): with ``rejuvenate``, the dead neurons are revived first
    (:func:`neuronlab.rejuvenation.rejuvenate_`); without it, training simply goes on.

    Returns:
        ``history_summary`` keys over both phases, ``rejuvenated_at`` (the epoch, or ``None``),
        ``revived`` (neurons per BatchNorm layer), and per epoch ``utilization``, ``live_fraction``,
        ``test_error_per_epoch``.
    """
    model = rejuvenation_network(data, seed)
    track: Dict[str, List[float]] = {"utilization": [], "live_fraction": [], "test_error_per_epoch": []}

    def follow(history: History, net: nn.Module) -> bool:
        track["utilization"].append(utilization(net))
        track["live_fraction"].append(live_fraction(net))
        track["test_error_per_epoch"].append(100 * (1 - float(history.table["test_acc"].iloc[-1])))
        return False

    def sparse_enough(history: History, net: nn.Module) -> bool:   # after follow, which measured it
        return track["utilization"][-1] <= target

    optimizer = lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9)  # noqa: E731
    with Timer() as timer:
        first = fit(model, data, epochs=epochs, optimizer=optimizer, batch_size=batch_size, seed=seed,
                    extra_losses={"gamma_l1": GammaL1(model, lam)}, callbacks=[follow, sparse_enough],
                    progress=progress, device=device)
        done = len(first)
        revived: Dict[str, int] = {}
        if rejuvenate and done < epochs:
            revived = rejuvenate_(model, generator=torch.Generator().manual_seed(seed))
        history = first
        if done < epochs:
            history = fit(model, data, epochs=epochs - done, optimizer=optimizer, batch_size=batch_size,
                          seed=seed + 1, callbacks=[follow], progress=progress, device=device)
    curve = track["test_error_per_epoch"]
    return {"test_error": curve[-1], "best_epoch": len(curve), "val_error": 100 * (1 - float(history.best["val_acc"])),
            "min_test_error": min(curve), "epoch_of_min": int(np.argmin(curve)) + 1, "seconds": timer.seconds,
            "test_error_curve": curve, "train_loss_curve": first.table["train_loss"].astype(float).round(5).tolist()
            + (history.table["train_loss"].astype(float).round(5).tolist() if history is not first else []),
            "rejuvenated_at": done if (rejuvenate and done < epochs) else None,
            "revived": {k: int(v) for k, v in revived.items()}, **track}


# ------------------------------------------------------------------------------------------- the grids
def experiment_grid(name: str, profile: str = "quick") -> List[Dict[str, Any]]:
    """The run configurations of experiment ``name`` (one of ``EXPERIMENTS``) in ``profile``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    s = SETTINGS[profile]
    if name == "vision":
        return [dict(dataset=d, arch=a, depth=s["depth"], width=s["width"], seeds=list(s["vision_seeds"]),
                     max_epochs=s["vision_max_epochs"], analysis_samples=s["analysis_samples"],
                     conductance_samples=s["conductance_samples"], conductance_steps=s["conductance_steps"],
                     ablation_step=s["ablation_step"], random_orders=s["random_orders"])
                for d in s["vision_datasets"] for a in s["vision_archs"]]
    if name == "memorization":
        return [dict(dataset=s["dataset"], fraction=f, seed=seed, epochs=s["memo_epochs"], depth=s["depth"],
                     width=s["width"], train_samples=s["memo_train_samples"], ablation_step=s["ablation_step"],
                     random_orders=s["random_orders"]) for f in s["memo_fractions"] for seed in s["memo_seeds"]]
    if name == "bracket":
        return [dict(seeds=list(s["bracket_seeds"]), cell="lstm", hidden=s["bracket_hidden"],
                     epochs=s["bracket_epochs"], batch_size=s["bracket_batch"], num_train=s["bracket_train"],
                     num_test=s["bracket_test"])]
    return [dict(dataset=s["dataset"], seed=seed, epochs=s["rejuv_epochs"], lam=s["rejuv_lam"],
                 target=s["rejuv_target"], rejuvenate=r) for seed in s["rejuv_seeds"] for r in (False, True)]


def run_config(config: Mapping[str, Any], device=None, progress: bool = False) -> Dict[str, Any]:
    """Train one configuration of any experiment on ``device`` (the run function is chosen by its keys)."""
    config = dict(config)
    if "num_train" in config:
        return bracket_run(**config, device=device, progress=progress)
    flatten = config.get("arch", "mlp") == "mlp" and "lam" not in config
    data = cached_dataset(config["dataset"], flatten=flatten)
    if "seeds" in config:
        return vision_run(data, **config, device=device, progress=progress)
    if "fraction" in config:
        return memorization_run(data, **config, device=device, progress=progress)
    return rejuvenation_run(data, **config, device=device, progress=progress)


def run_experiment(name: str, run: ChapterRun, progress: Optional[bool] = None) -> pd.DataFrame:
    """Run (or resume, or read back) experiment ``name`` into ``run``'s store; returns its table (one row per
    run: the configuration, then the result, nested dicts as dotted columns)."""
    return run_chapter_experiment(experiment_grid(name, run.profile), name, run, run_config, progress)


# ------------------------------------------------------------------------------------------ the tables
def _row(table: pd.DataFrame, **where: Any) -> pd.Series:
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    if len(rows) != 1:
        raise ValueError(f"expected one run with {where}, found {len(rows)}")
    return rows.iloc[0]


def _dotted(row: pd.Series, prefix: str) -> Dict[str, Any]:
    """The entries of a result dict that the run table flattened into ``prefix.key`` columns."""
    return {c[len(prefix) + 1:]: row[c] for c in row.index if c.startswith(prefix + ".")}


def agreement_frame(table: pd.DataFrame, dataset: str, arch: str = "mlp") -> pd.DataFrame:
    """The rank agreement (Spearman) between the six rankings of one vision run, as a square frame."""
    row = _row(table, dataset=dataset, arch=arch)
    names = list(RANKINGS)
    return pd.DataFrame(np.array(row["agreement"], dtype=float), index=names, columns=names)


def ablation_frame(table: pd.DataFrame, dataset: str, arch: str = "mlp") -> pd.DataFrame:
    """One vision run's ablation curves, tidy: ``ranking``, ``direction`` (``top``, ``bottom``, ``random``),
    ``ablated`` (neurons), ``accuracy`` (%) and ``std`` (random orders only)."""
    row = _row(table, dataset=dataset, arch=arch)
    counts = row["ablation_counts"]
    rows = []
    curves = _dotted(row, "ablation")
    for key, values in curves.items():
        if key == "random std":
            continue
        ranking, direction = (key.rsplit(" ", 1) if key != "random" else ("random", "random"))
        std = curves.get("random std") if key == "random" else [float("nan")] * len(counts)
        rows += [dict(ranking=ranking, direction=direction, ablated=k, accuracy=100 * a, std=100 * s)
                 for k, a, s in zip(counts, values, std)]
    return pd.DataFrame(rows)


def memorization_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The memorization runs' ablation curves, tidy: ``fraction``, ``seed``, ``ablated``, ``accuracy`` (%,
    on the trained labels), ``normalized`` (accuracy / accuracy with nothing ablated)."""
    rows = []
    for _, row in table.iterrows():
        curve = np.asarray(row["ablation"], dtype=float)
        rows += [dict(fraction=row["fraction"], seed=row["seed"], ablated=k, accuracy=100 * a,
                      normalized=a / curve[0]) for k, a in zip(row["ablation_counts"], curve)]
    return pd.DataFrame(rows)


def bracket_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per bracket network (seed): the depth unit, its cell and hidden correlation with the depth,
    whether MaxCorr / MinCorr / the probe rank it first, the sequence accuracy (%) on the long test strings
    plain, with the depth cell ablated inside the recurrence, with its hidden state ablated at the read-out
    only, with another unit's cell ablated (mean), and the share of depth-0 steps where ")" is allowed
    before and after the push."""
    row = table.iloc[0]
    out = []
    for seed, r in zip(row["seeds"], row["per_seed"]):
        unit = r["depth_unit"]
        acc = r["sequence_accuracy"]
        out.append({"seed": seed, "depth unit": unit, "|ρ| cell": abs(r["cell_correlation"][unit]),
                    "|ρ| hidden": abs(r["hidden_correlation"][unit]),
                    "MaxCorr first": r.get("maxcorr_top") == unit, "MinCorr first": r.get("mincorr_top") == unit,
                    "probe first": r["probe_top"] == unit, "plain (%)": 100 * acc["plain"],
                    "cell ablated (%)": 100 * acc["cell ablated"], "read-out ablated (%)": 100 * acc["read-out ablated"],
                    "other cell ablated (%)": 100 * acc["other cell ablated"],
                    "')' at depth 0 (%)": 100 * r["allowed_at_depth_zero"],
                    "')' at depth 0, pushed (%)": 100 * r["allowed_at_depth_zero_pushed"]})
    return pd.DataFrame(out)


def rejuvenation_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The rejuvenation runs per epoch, tidy: ``seed``, ``rejuvenate``, ``epoch``, ``utilization``,
    ``live_fraction``, ``test_error`` (%)."""
    rows = []
    for _, row in table.iterrows():
        for e, (u, live, err) in enumerate(zip(row["utilization"], row["live_fraction"],
                                               row["test_error_per_epoch"]), start=1):
            rows.append(dict(seed=row["seed"], rejuvenate=bool(row["rejuvenate"]), epoch=e, utilization=u,
                             live_fraction=live, test_error=err))
    return pd.DataFrame(rows)


def rejuvenation_table(table: pd.DataFrame) -> pd.DataFrame:
    """With and without rejuvenation: final test error (mean ± std over seeds), final utilization, the epoch
    utilization reached the target, neurons revived."""
    out = []
    for rejuvenate, group in table.groupby("rejuvenate"):
        out.append({"training": "with rejuvenation" if rejuvenate else "without", "n": len(group),
                    "test error (%)": format_mean_std(group["test_error"].mean(), group["test_error"].std()),
                    "final utilization": np.mean([u[-1] for u in group["utilization"]]),
                    "final live neurons": np.mean([u[-1] for u in group["live_fraction"]])})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------- papers and verdicts
#: What the papers claim (qualitatively where they give no number we could match on this data).
PAPER_FINDINGS = {
    "cka-diagonal": ("CKA matches corresponding layers across seeds",
                     "Kornblith et al. (2019): for networks trained from different seeds, linear CKA is "
                     "highest between corresponding layers (CCA-based measures less reliably so)"),
    "bottom-up": ("lower layers converge first",
                  "Raghu et al. (2017): layers converge to their final representation bottom-up"),
    "rank-agreement": ("rankings agree on the important neurons",
                       "Bau et al. (2019): correlation-based rankings across models find the neurons whose "
                       "ablation hurts most; Dalvi et al. (2019): probe rankings likewise"),
    "top-hurts-more": ("top-ranked neurons matter more than bottom-ranked",
                       "Bau et al. (2019), Fig. 4: ablating top-ranked neurons hurts far more than bottom-ranked"),
    "memorizers-fragile": ("memorizing networks rely more on single directions",
                           "Morcos et al. (2018): networks trained on randomised labels degrade faster as "
                           "units are ablated"),
    "depth-unit": ("a unit counts the brackets",
                   "Suzgun et al. (2019): small LSTMs learn Dyck-1 by a counter; one hidden unit can suffice"),
    "rejuvenation": ("rejuvenation restores utilization and accuracy",
                     "Qiao et al. (2019): VGG-19 on CIFAR-10, error 5.44 → 4.19 % at half the parameters"),
}
#: The paper's VGG-19 on CIFAR-10 (Qiao et al. 2019, their table), test error in % without and with Neural
#: Rejuvenation.
PAPER_REJUVENATION = {"without": 5.44, "with": 4.19}
#: The criterion by which each claim's verdict is decided (:func:`reproduction_summary`).
CRITERIA = {
    "cka-diagonal": "reproduces if every layer's most similar layer in the other seed is its own (linear CKA) on "
                    "every dataset; partly if on most layers",
    "bottom-up": "reproduces if the first hidden layer is closer to its final self than the last hidden layer "
                 "after the first epoch, on every dataset by SVCCA and by linear CKA; partly if in some",
    "rank-agreement": "reproduces if the mean Spearman agreement between the six rankings is above 0.5; partly "
                      "if above 0.2",
    "top-hurts-more": "reproduces if, with half the layer ablated, top-first leaves lower accuracy than "
                      "bottom-first for at least five of the six rankings on every dataset; partly if for most",
    "memorizers-fragile": "reproduces if, with half the layer ablated, normalized accuracy falls monotonically "
                          "with the fraction of randomised labels",
    "depth-unit": "reproduces if in every network a unit's cell state correlates with the depth (|ρ| > 0.9) and "
                  "ablating it inside the recurrence drops sequence accuracy by more than half",
    "rejuvenation": "reproduces if the rejuvenated networks end with higher utilization and lower mean test error "
                    "than those trained on without it; partly if only the utilization",
}
#: The three verdicts, as the chapter words them.
VERDICTS = ("reproduces", "partly", "does not reproduce")


def _verdict(full: bool, part: bool) -> str:
    return VERDICTS[0] if full else VERDICTS[1] if part else VERDICTS[2]


def _half_index(counts: Sequence[int]) -> int:
    return int(np.argmin(np.abs(np.asarray(counts) - counts[-1] / 2)))


def _evidence(tables: Mapping[str, pd.DataFrame]) -> Dict[str, Tuple[str, str]]:
    out: Dict[str, Tuple[str, str]] = {}
    vision = tables.get("vision")
    if vision is not None and len(vision):
        own, matched, early = [], 0, []
        top_wins, agreements = [], []
        for _, row in vision.iterrows():
            cka = np.array(row["similarity.linear_cka"], dtype=float)
            hits = int((cka.argmax(1) == np.arange(len(cka))).sum())
            own.append(hits == len(cka))
            matched += hits
            for measure in ("svcca", "linear_cka"):
                conv = np.array(row[f"convergence.{measure}"], dtype=float)
                early.append(conv[0, 0] > conv[0, len(conv[0]) - 2])
            curves = _dotted(row, "ablation")
            half = _half_index(row["ablation_counts"])
            top_wins.append(sum(curves[f"{r} top"][half] < curves[f"{r} bottom"][half] for r in RANKINGS))
            agree = np.array(row["agreement"], dtype=float)
            agreements.append(agree[~np.eye(len(agree), dtype=bool)].mean())
        layers = sum(len(np.array(r["similarity.linear_cka"])) for _, r in vision.iterrows())
        out["cka-diagonal"] = (_verdict(all(own), matched > layers / 2),
                               f"{count_phrase(matched, layers)} layers most similar to their own counterpart")
        out["bottom-up"] = (_verdict(all(early), any(early)),
                            f"first hidden layer closer to its final self than the last after epoch 1 in "
                            f"{count_phrase(int(sum(early)), len(early))} comparisons (data sets x SVCCA, CKA)")
        mean_agree = float(np.mean(agreements))
        out["rank-agreement"] = (_verdict(mean_agree > 0.5, mean_agree > 0.2),
                                 f"mean Spearman agreement {mean_agree:.2f}")
        out["top-hurts-more"] = (_verdict(all(w >= 5 for w in top_wins), all(w >= 4 for w in top_wins)),
                                 "top-first below bottom-first at half ablation for "
                                 + ", ".join(f"{w} of 6" for w in top_wins) + " rankings")
    memo = tables.get("memorization")
    if memo is not None and len(memo):
        frame = memorization_frame(memo)
        half = frame["ablated"].unique()[_half_index(sorted(frame["ablated"].unique()))]
        at_half = frame[frame["ablated"] == half].groupby("fraction")["normalized"].mean().sort_index()
        monotone = bool(np.all(np.diff(at_half.values) < 0))
        out["memorizers-fragile"] = (_verdict(monotone, at_half.values[-1] < at_half.values[0]),
                                     "normalized accuracy at half ablation: " + ", ".join(
                                         f"{100 * f:.0f} % random {v:.2f}" for f, v in at_half.items()))
    bracket = tables.get("bracket")
    if bracket is not None and len(bracket):
        rows = bracket_table(bracket)
        strong = bool((rows["|ρ| cell"] > 0.9).all())
        broken = bool((rows["cell ablated (%)"] < rows["plain (%)"] / 2).all())
        out["depth-unit"] = (_verdict(strong and broken, strong or broken),
                             f"|ρ| > 0.9 in {count_phrase(int((rows['|ρ| cell'] > 0.9).sum()), len(rows))} networks; "
                             f"ablation halves accuracy in "
                             f"{count_phrase(int((rows['cell ablated (%)'] < rows['plain (%)'] / 2).sum()), len(rows))}")
    rejuv = tables.get("rejuvenation")
    if rejuv is not None and len(rejuv):
        by = rejuv.groupby("rejuvenate")
        util = by["utilization"].apply(lambda s: np.mean([u[-1] for u in s]))
        err = by["test_error"].mean()
        if True in util.index and False in util.index:
            out["rejuvenation"] = (_verdict(util[True] > util[False] and err[True] < err[False],
                                            util[True] > util[False]),
                                   f"utilization {util[False]:.2f} → {util[True]:.2f}, test error "
                                   f"{err[False]:.2f} → {err[True]:.2f} %")
    return out


def comparison_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The papers' claims beside our measurements: one row per claim for which ``tables`` (experiment name ->
    :func:`run_experiment`'s table) has runs, with what the paper reports and what our runs show."""
    evidence = _evidence(tables)
    return pd.DataFrame([{"claim": PAPER_FINDINGS[k][0], "paper": PAPER_FINDINGS[k][1], "ours": text}
                         for k, (_, text) in evidence.items()])


def reproduction_summary(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Claim-by-claim verdicts (:data:`VERDICTS`) by the criteria of :data:`CRITERIA`, with the evidence."""
    evidence = _evidence(tables)
    return pd.DataFrame([{"key": k, "claim": PAPER_FINDINGS[k][0], "verdict": verdict, "criterion": CRITERIA[k],
                          "evidence": text} for k, (verdict, text) in evidence.items()])


def vision_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per vision run: data, network, seeds, test error (mean ± std over the seeds), the mean rank
    agreement between the six rankings, and the accuracy (%) with half the last hidden layer ablated
    top-first and bottom-first by MaxCorr and at random."""
    out = []
    for _, row in table.iterrows():
        errors = np.asarray(row["test_errors"], dtype=float)
        agree = np.array(row["agreement"], dtype=float)
        curves = _dotted(row, "ablation")
        half = _half_index(row["ablation_counts"])
        out.append({"data": row["dataset"], "network": row["arch"], "n": len(errors),
                    "test error (%)": format_mean_std(errors.mean(), errors.std(ddof=1) if len(errors) > 1 else 0),
                    "rank agreement": agree[~np.eye(len(agree), dtype=bool)].mean(),
                    "MaxCorr top-first, half (%)": 100 * curves["MaxCorr top"][half],
                    "MaxCorr bottom-first, half (%)": 100 * curves["MaxCorr bottom"][half],
                    "random, half (%)": 100 * curves["random"][half]})
    return pd.DataFrame(out).round(2)


def summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """What the command line prints for experiment ``name``: :func:`vision_table`, the memorization runs'
    normalized accuracy at half ablation, :func:`bracket_table` or :func:`rejuvenation_table`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    if not len(table):
        return pd.DataFrame()
    if name == "vision":
        return vision_table(table)
    if name == "memorization":
        frame = memorization_frame(table)
        half = sorted(frame["ablated"].unique())[_half_index(sorted(frame["ablated"].unique()))]
        return (frame[frame["ablated"] == half].groupby("fraction")[["accuracy", "normalized"]].mean()
                .reset_index().round(3))
    if name == "bracket":
        return bracket_table(table).round(3)
    return rejuvenation_table(table).round(3)
