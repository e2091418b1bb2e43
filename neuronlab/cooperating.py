r"""DNNs as layers of cooperating classifiers (Davel, Theunissen, Pretorius & Barnard, AAAI 2020).

A ReLU network runs two systems at once. The **discrete** one decides, for every sample, which nodes are
on (:math:`z > 0`): the *activation pattern* of a layer groups samples. The **continuous** one adapts each
node's weights to the samples that reach it. This module measures both, for any model whose hidden
layers are ``nn.ReLU`` modules (e.g. :class:`neuronlab.models.MLP` with ``activation="relu"``):

* :func:`activation_patterns`: the on/off pattern of every ReLU layer over a dataset, bit-packed
  (:class:`ActivationPatterns`, 13 bytes per sample for 100 nodes);
* :func:`layer_perplexity` / :class:`LayerPerplexity`: how many distinct patterns a class uses,
  :math:`P(c, l) = e^{H(c, l)}` with :math:`H(c,l) = -\sum_k \frac{n_k}{N_c}\ln\frac{n_k}{N_c}` over the
  distinct patterns :math:`k` of class :math:`c` at layer :math:`l` (:math:`n_k` samples each);
* :class:`NodeClassifiers`: every node as a classifier :math:`P(\text{class} \mid \text{node})`,
  *discrete* (counts among samples where the node is on / off), *continuous* (a kernel density of the
  activation value per class) or *combined* (continuous when on, discrete when off), and the nodes of a
  layer combined into a layer classifier;
* :func:`path_sum_gradients`: the SGD update of every weight as a sum over active paths (the seed's
  formula), to be compared with autograd;
* :func:`train_cooperating_run` and :func:`label_noise_run`: the experiments of the chapter.

There is no public code for the paper; this module is our reference implementation of its measures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .probe import collect_responses, resolve_layers

__all__ = [
    "relu_layers",
    "ActivationPatterns",
    "activation_patterns",
    "layer_perplexity",
    "LayerPerplexity",
    "NodeClassifiers",
    "layer_accuracies",
    "path_sum_gradients",
    "count_active_paths",
    "corrupt_labels",
    "relu_mlp",
    "train_cooperating_run",
    "label_noise_run",
    "PROFILE_SETTINGS",
    "grid_configs",
]

MODES = ("discrete", "continuous", "combined")


# ------------------------------------------------------------------------------------------- patterns
def relu_layers(model: nn.Module, layers: Optional[Iterable[Union[str, nn.Module]]] = None) -> List[str]:
    """Names of the ``nn.ReLU`` modules of ``model`` (definition order), or check that ``layers`` are ReLUs.

    Raises:
        ValueError: the model has no ReLU module, or a requested layer is not one (its output then has no
            on/off pattern: a tanh or sigmoid node is never exactly off).
    """
    if layers is None:
        names = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
        if not names:
            raise ValueError(f"{type(model).__name__} has no nn.ReLU module: activation patterns need ReLU "
                             "layers (build the MLP with activation='relu')")
        return names
    resolved = resolve_layers(model, list(layers))
    wrong = {name: type(m).__name__ for name, m in resolved.items() if not isinstance(m, nn.ReLU)}
    if wrong:
        raise ValueError(f"layers {wrong} are not nn.ReLU modules, so their outputs have no on/off pattern; "
                         f"pass the ReLU layers, e.g. {relu_layers(model)[:3]}")
    return list(resolved)


@dataclass
class ActivationPatterns:
    """The binary activation patterns of one layer over ``N`` samples, 8 nodes per byte.

    Attributes:
        bits: ``uint8`` array ``[N, ceil(width / 8)]`` (``numpy.packbits`` order, big-endian per byte).
        width: number of nodes.
    """

    bits: np.ndarray
    width: int

    @classmethod
    def from_responses(cls, responses: Union[torch.Tensor, np.ndarray]) -> "ActivationPatterns":
        """Pack ``responses > 0`` (``[N, width]`` post-ReLU activations)."""
        on = (responses > 0)
        on = on.cpu().numpy() if isinstance(on, torch.Tensor) else np.asarray(on)
        if on.ndim != 2:
            raise ValueError(f"responses must be [samples, nodes], got shape {on.shape}")
        return cls(np.packbits(on, axis=1), on.shape[1])

    def __len__(self) -> int:
        return self.bits.shape[0]

    def unpack(self) -> torch.Tensor:
        """``[N, width]`` boolean tensor: which nodes are on."""
        return torch.from_numpy(np.unpackbits(self.bits, axis=1, count=self.width).astype(bool))

    def __getitem__(self, index) -> "ActivationPatterns":
        index = index.numpy() if isinstance(index, torch.Tensor) else index
        return ActivationPatterns(self.bits[index], self.width)

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes


def activation_patterns(model: nn.Module, x: torch.Tensor, layers: Optional[Iterable[str]] = None, *,
                        batch_size: int = 2000) -> Dict[str, ActivationPatterns]:
    """Activation patterns of the ReLU ``layers`` (default: all) of ``model`` on inputs ``x``, in eval mode.

    Recorded with :func:`neuronlab.probe.collect_responses` (hooks removed afterwards) and packed batch by
    batch, so a 60,000-sample dataset through ten 100-node layers takes about 8 MB.
    """
    names = relu_layers(model, layers)
    out: Dict[str, List[np.ndarray]] = {name: [] for name in names}
    width: Dict[str, int] = {}
    for start in range(0, x.shape[0], batch_size):
        responses = collect_responses(model, x[start:start + batch_size], names, batch_size=batch_size,
                                      reduce="flatten")
        for name, r in responses.items():
            packed = ActivationPatterns.from_responses(r)
            out[name].append(packed.bits)
            width[name] = packed.width
    return {name: ActivationPatterns(np.concatenate(parts), width[name]) for name, parts in out.items()}


# ------------------------------------------------------------------------------------------ perplexity
def _check_labels(labels: Union[torch.Tensor, np.ndarray], n: int, num_classes: Optional[int]) -> Tuple[np.ndarray, int]:
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape [{n}] (one per sample), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if n == 0:
        raise ValueError("no samples")
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64), k


def _distinct_keyed_rows(bits: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct (class, pattern) rows and their counts: each sample is one fixed-size byte string (the class
    as 4 big-endian bytes, then the pattern), so one sort of those strings groups them."""
    keyed = np.ascontiguousarray(np.concatenate([labels.astype(">u4").view(np.uint8).reshape(-1, 4), bits], axis=1))
    return np.unique(keyed.view(np.dtype((np.void, keyed.shape[1]))).ravel(), return_counts=True)


def _class_of_rows(rows: np.ndarray) -> np.ndarray:
    """The class stored in the first 4 bytes of each keyed row."""
    return np.frombuffer(rows.tobytes(), dtype=np.uint8).reshape(len(rows), -1)[:, :4].copy().view(">u4").ravel().astype(np.int64)


def _perplexity_from_counts(classes: np.ndarray, counts: np.ndarray, num_classes: int) -> np.ndarray:
    n_class = np.bincount(classes, weights=counts, minlength=num_classes)
    p = counts / n_class[classes]
    entropy = np.bincount(classes, weights=-p * np.log(p), minlength=num_classes)
    perplexity = np.exp(entropy)
    perplexity[n_class == 0] = np.nan
    return perplexity


def layer_perplexity(patterns: ActivationPatterns, labels: Union[torch.Tensor, np.ndarray],
                     num_classes: Optional[int] = None) -> np.ndarray:
    r"""Per-class layer perplexity :math:`P(c,l) = \exp H(c,l)`, a ``[num_classes]`` array.

    :math:`H(c,l) = -\sum_k \frac{n_k}{N_c} \ln \frac{n_k}{N_c}` over the distinct patterns :math:`k`
    that samples of class :math:`c` produce at the layer. :math:`P` is the effective number of patterns a
    class uses: 1 if all its samples share one pattern, :math:`N_c` if every sample has its own, and
    exactly :math:`k` for :math:`k` equally frequent patterns. A class with no sample gets NaN; average
    with ``np.nanmean`` for the paper's class-averaged perplexity.
    """
    labels, k = _check_labels(labels, len(patterns), num_classes)
    rows, counts = _distinct_keyed_rows(patterns.bits, labels)
    return _perplexity_from_counts(_class_of_rows(rows), counts, k)


class LayerPerplexity:
    """Streaming layer perplexity, in the ``update`` / ``compute`` / ``reset`` style of torchmetrics.

    ``update(patterns, labels)`` keeps the distinct (class, pattern) pairs of a batch and their counts;
    ``compute()`` merges them (a pattern seen in two batches counts once, with both counts) and returns
    :func:`layer_perplexity` of everything seen.
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self._rows: List[np.ndarray] = []
        self._counts: List[np.ndarray] = []
        self._width: Optional[int] = None

    def update(self, patterns: ActivationPatterns, labels: Union[torch.Tensor, np.ndarray]) -> None:
        if self._width is not None and patterns.width != self._width:
            raise ValueError(f"patterns have {patterns.width} nodes, earlier batches had {self._width}")
        self._width = patterns.width
        labels, _ = _check_labels(labels, len(patterns), self.num_classes)
        unique, counts = _distinct_keyed_rows(patterns.bits, labels)
        self._rows.append(unique)
        self._counts.append(counts)

    def compute(self) -> np.ndarray:
        if not self._rows:
            raise RuntimeError("LayerPerplexity.compute() called before any update()")
        rows, counts = np.concatenate(self._rows), np.concatenate(self._counts)
        unique, inverse = np.unique(rows, return_inverse=True)
        merged = np.bincount(inverse.ravel(), weights=counts)
        return _perplexity_from_counts(_class_of_rows(unique), merged, self.num_classes)


# ------------------------------------------------------------------------------------ node classifiers
class NodeClassifiers:
    r"""Every node of a layer as a classifier :math:`P(c \mid \text{node})`, and the layer as one classifier.

    ``fit(activations, labels)`` on post-ReLU activations ``[N, nodes]`` of the training set estimates,
    per node and class, with :math:`\pi_c` the class frequencies:

    * **discrete**: :math:`P(c \mid \text{on}) = \frac{n_{c,\text{on}} + \epsilon}{n_\text{on} + K\epsilon}`
      and the same for off, by counting (:math:`\epsilon = 1`, Laplace smoothing);
    * **continuous**: :math:`P(c \mid a) \propto \pi_c\, \hat p(a \mid c)`, with :math:`\hat p` a Gaussian
      kernel density of the activation value :math:`a` over the class's samples (a *binned* KDE: values are
      histogrammed into ``bins`` bins per node and smoothed with a Gaussian kernel whose bandwidth follows
      Silverman's rule for the node, so fitting and evaluating are a few tensor operations);
    * **combined**: the continuous estimate from the samples where the node is on, when it is on; the
      discrete :math:`P(c \mid \text{off})` when it is off.

    **Layer classifier.** The nodes of a layer are combined as a naive Bayes classifier: if the node
    observations :math:`o_1, \dots, o_n` were independent given the class,
    :math:`P(c \mid o_1..o_n) \propto \pi_c \prod_i p(o_i \mid c) \propto \prod_i P(c \mid o_i) / \pi_c^{n-1}`.
    We use this rule because it needs only each node's own estimate (the nodes are the classifiers) and
    turns the layer's evidence into one prediction; its independence assumption makes the probabilities
    overconfident, so use it for the *decision* (accuracy), not as a calibrated probability.
    """

    def __init__(self, num_classes: int, bins: int = 64, smoothing: float = 1.0):
        if num_classes < 2 or bins < 4 or smoothing <= 0:
            raise ValueError("need num_classes >= 2, bins >= 4 and smoothing > 0")
        self.num_classes, self.bins, self.smoothing = num_classes, bins, smoothing
        self.fitted = False

    @staticmethod
    def _kernel(bandwidth_bins: torch.Tensor, bins: int) -> torch.Tensor:
        """``[nodes, bins, bins]`` Gaussian smoothing matrices, one bandwidth (in bins) per node."""
        centres = torch.arange(bins, dtype=torch.float64)
        diff = centres[None, :, None] - centres[None, None, :]
        return torch.exp(-0.5 * (diff / bandwidth_bins[:, None, None]) ** 2)

    def _bin(self, a: torch.Tensor) -> torch.Tensor:
        scaled = (a - self.low) / self.width * self.bins
        return scaled.long().clamp_(0, self.bins - 1)

    def _smoothed_hist(self, a: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[nodes, classes, bins]`` kernel-smoothed counts of the samples where ``mask`` holds."""
        n_nodes = a.shape[1]
        index = self._bin(a)  # [N, nodes]
        hist = torch.zeros(n_nodes, self.num_classes, self.bins, dtype=torch.float64)
        weights = onehot[:, None, :] * mask[:, :, None]  # [N, nodes, K]
        flat = (torch.arange(n_nodes)[None, :] * self.bins + index)  # [N, nodes]
        hist = hist.permute(0, 2, 1).reshape(n_nodes * self.bins, self.num_classes)
        hist.index_add_(0, flat.reshape(-1), weights.reshape(-1, self.num_classes))
        hist = hist.reshape(n_nodes, self.bins, self.num_classes).permute(0, 2, 1)
        return torch.bmm(hist, self.kernel)  # smooth along the bins

    def fit(self, activations: torch.Tensor, labels: torch.Tensor) -> "NodeClassifiers":
        a = self._check(activations, labels)
        y = labels.long().cpu()
        onehot = F.one_hot(y, self.num_classes).double()
        counts = onehot.sum(0)
        if (counts == 0).any():
            missing = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"class(es) {missing} have no training sample: every class needs samples to "
                             "estimate P(class | node)")
        self.prior = counts / counts.sum()
        on = (a > 0).double()
        self.count_on = onehot.T @ on  # [K, nodes]
        self.count_off = onehot.T @ (1 - on)
        self.low = torch.zeros(a.shape[1], dtype=torch.float64)
        self.width = a.max(0).values.clamp_min(1e-12) * (1 + 1e-9)  # the maximum falls in the last bin
        std = a.std(0).clamp_min(1e-12)
        bandwidth = 0.9 * std * a.shape[0] ** (-0.2)  # Silverman's rule of thumb
        self.kernel = self._kernel((bandwidth / self.width * self.bins).clamp_min(0.5), self.bins)
        self.hist_all = self._smoothed_hist(a, onehot, torch.ones_like(on))
        self.hist_on = self._smoothed_hist(a, onehot, on)
        self.fitted = True
        return self

    def _check(self, activations: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not isinstance(activations, torch.Tensor) or activations.dim() != 2:
            raise ValueError("activations must be a [samples, nodes] tensor of post-ReLU values")
        a = activations.detach().double().cpu()
        if not torch.isfinite(a).all():
            raise ValueError("activations contain NaN or inf")
        if (a < 0).any():
            raise ValueError("activations are negative somewhere: pass post-ReLU outputs (the on/off reading "
                             "needs a ReLU layer)")
        if labels is not None:
            _check_labels(labels, a.shape[0], self.num_classes)
        if self.fitted and a.shape[1] != self.count_on.shape[1]:
            raise ValueError(f"fitted on {self.count_on.shape[1]} nodes, got activations of {a.shape[1]}")
        return a

    def node_proba(self, activations: torch.Tensor, mode: str = "combined") -> torch.Tensor:
        """``[N, nodes, K]``: each node's :math:`P(c \\mid \\text{observation})` for each sample."""
        if not self.fitted:
            raise RuntimeError("call fit(activations, labels) first")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        a = self._check(activations)
        eps = self.smoothing
        on = a > 0
        p_on = ((self.count_on + eps) / (self.count_on.sum(0) + eps * self.num_classes)).T  # [nodes, K]
        p_off = ((self.count_off + eps) / (self.count_off.sum(0) + eps * self.num_classes)).T
        discrete = torch.where(on[:, :, None], p_on[None], p_off[None])
        if mode == "discrete":
            return discrete
        hist = self.hist_all if mode == "continuous" else self.hist_on
        index = self._bin(a)  # [N, nodes]
        nodes = torch.arange(a.shape[1])[None, :].expand_as(index)
        dens = hist[nodes, :, index] + 1e-12 * self.prior  # [N, nodes, K]; tiny prior floor for empty bins
        continuous = dens / dens.sum(-1, keepdim=True)
        if mode == "continuous":
            return continuous
        return torch.where(on[:, :, None], continuous, discrete)

    def layer_proba(self, activations: torch.Tensor, mode: str = "combined") -> torch.Tensor:
        """``[N, K]``: the naive-Bayes layer classifier (see the class docstring), normalized per sample."""
        logp = self.node_proba(activations, mode).clamp_min(1e-12).log().sum(1)
        logp = logp - (activations.shape[1] - 1) * self.prior.log()[None, :]
        return torch.softmax(logp, dim=1)

    def accuracy(self, activations: torch.Tensor, labels: torch.Tensor, mode: str = "combined") -> float:
        """Fraction of samples whose layer prediction equals the label."""
        _check_labels(labels, activations.shape[0], self.num_classes)
        return (self.layer_proba(activations, mode).argmax(1) == labels.cpu()).double().mean().item()


def layer_accuracies(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                     y_eval: torch.Tensor, num_classes: int, layers: Optional[Iterable[str]] = None,
                     modes: Sequence[str] = MODES, bins: int = 64) -> pd.DataFrame:
    """Fit :class:`NodeClassifiers` per ReLU layer on ``(x_train, y_train)``, evaluate on ``(x_eval, y_eval)``.

    Returns one row per layer and mode with the layer classifier's accuracy (``"accuracy"``) and the mean
    accuracy of its single nodes (``"node_accuracy"``: each node's own argmax prediction).
    """
    names = relu_layers(model, layers)
    return _accuracy_table(collect_responses(model, x_train, names, reduce="flatten"), y_train,
                           collect_responses(model, x_eval, names, reduce="flatten"), y_eval, num_classes, modes, bins)


def _accuracy_table(train_acts: Mapping[str, torch.Tensor], y_train: torch.Tensor,
                    eval_acts: Mapping[str, torch.Tensor], y_eval: torch.Tensor, num_classes: int,
                    modes: Sequence[str] = MODES, bins: int = 64) -> pd.DataFrame:
    """:func:`layer_accuracies` from responses already recorded (``{layer: [N, nodes]}``, in layer order)."""
    rows = []
    for depth, name in enumerate(train_acts, start=1):
        nc = NodeClassifiers(num_classes, bins=bins).fit(train_acts[name], y_train)
        for mode in modes:
            node_pred = nc.node_proba(eval_acts[name], mode).argmax(-1)  # [N, nodes]
            rows.append({"layer": name, "depth": depth, "mode": mode,
                         "accuracy": nc.accuracy(eval_acts[name], y_eval, mode),
                         "node_accuracy": (node_pred == y_eval.cpu()[:, None]).double().mean().item()})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ path view
def _relu_mlp_weights(model: nn.Module) -> List[nn.Linear]:
    """The linear layers of a plain ReLU MLP (``Linear, ReLU, ..., Linear``), checked."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    others = [type(m).__name__ for m in model.modules()
              if not isinstance(m, (nn.Linear, nn.ReLU, nn.Flatten, nn.Sequential)) and m is not model]
    if not linears or others or len([m for m in model.modules() if isinstance(m, nn.ReLU)]) != len(linears) - 1:
        raise ValueError("the path view needs a plain ReLU MLP (Linear, ReLU, ..., Linear; no BatchNorm, dropout "
                         f"or other activations); got extra modules {others}")
    return linears


def count_active_paths(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Per layer ``i``, an ``[N, n_i]`` tensor: how many paths from node ``j`` of layer ``i`` to an output node
    are active for each sample (every hidden node on the path is on). Output nodes have one path each; a
    hidden node that is off has none, one that is on has as many as all nodes of the next layer together."""
    linears = _relu_mlp_weights(model)
    with torch.no_grad():
        a, ons = x.flatten(1), []
        for layer in linears[:-1]:
            z = layer(a)
            ons.append((z > 0).double())
            a = torch.relu(z)
    counts = [torch.ones(x.shape[0], linears[-1].out_features, dtype=torch.float64)]
    for on in reversed(ons):
        counts.insert(0, on * counts[0].sum(1, keepdim=True))
    return counts


def path_sum_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1.0
                       ) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    r"""SGD updates :math:`(\Delta W_i, \Delta b_i)` of every layer of a ReLU MLP, as sums over paths.

    For a network :math:`z_g = W_g a_{g-1} + b_g`, :math:`a_g = \mathrm{ReLU}(z_g) = z_g T(z_g)` with
    :math:`T(z) = [z > 0]`, softmax output :math:`h_N` and cross-entropy with one-hot targets :math:`y`,
    the seed's formula for the weight from node :math:`k` of layer :math:`i-1` to node :math:`j` of layer
    :math:`i` is

    .. math::
        \Delta W_{i,j,k} = \eta\, a_{i-1,k} \sum_{b} \prod_{g=i}^{N-1} T(z_{g,I(g,b)})
        \prod_{r=i+1}^{N} W_{r,I(r,b),I(r-1,b)}\, (y_{I(N,b)} - h_{N,I(N,b)}),

    where :math:`b` runs over all paths :math:`j = I(i,b) \to I(i+1,b) \to \dots \to I(N,b)` from node
    :math:`j` to an output node. Here every path is enumerated explicitly (as an index tensor, so only tiny
    networks fit), the products are taken along it, and the updates are averaged over the batch (the
    gradient of the *mean* cross-entropy). The bias update is the same sum with :math:`a_{i-1,k} = 1`.
    The result equals ``-lr * grad`` from autograd: the test suite and the chapter check this.
    """
    linears = _relu_mlp_weights(model)
    with torch.no_grad():
        a = [x.flatten(1).double()]
        zs = []
        for layer in linears:
            z = a[-1] @ layer.weight.double().T
            if layer.bias is not None:
                z = z + layer.bias.double()
            zs.append(z)
            a.append(torch.relu(z))
        h = torch.softmax(zs[-1], dim=1)
        target = F.one_hot(y.long(), h.shape[1]).double()
        error = target - h  # (y - h) at the output, [B, n_N]
        n_layers = len(linears)
        sizes = [layer.out_features for layer in linears]
        updates = []
        for i in range(n_layers):  # 0-based layer index
            # every path from a node of layer i to an output node: [P, n_layers - i] node indices
            paths = torch.cartesian_prod(*[torch.arange(s) for s in sizes[i:]]).reshape(-1, n_layers - i)
            gate = torch.ones(x.shape[0], paths.shape[0], dtype=torch.float64)
            for step, g in enumerate(range(i, n_layers - 1)):  # T(z) of the hidden nodes on the path
                gate = gate * (zs[g][:, paths[:, step]] > 0).double()
            weight = torch.ones(paths.shape[0], dtype=torch.float64)
            for step, r in enumerate(range(i + 1, n_layers), start=1):  # W_r[I(r), I(r-1)] along the path
                weight = weight * linears[r].weight.double()[paths[:, step], paths[:, step - 1]]
            contribution = gate * weight[None, :] * error[:, paths[:, -1]]  # [B, P]
            delta = torch.zeros(x.shape[0], sizes[i], dtype=torch.float64)
            delta.index_add_(1, paths[:, 0], contribution)  # sum over the paths that start at node j
            d_weight = lr * delta.T @ a[i] / x.shape[0]
            d_bias = lr * delta.mean(0) if linears[i].bias is not None else None
            updates.append((d_weight, d_bias))
    return updates


# -------------------------------------------------------------------------------------- experiments
def corrupt_labels(labels: torch.Tensor, fraction: float, num_classes: int, generator: torch.Generator
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace the labels of a random ``fraction`` of the samples by a different, uniformly drawn class
    (Zhang et al. 2017 draw uniformly, so a tenth keep their label by chance; we always change it, so that
    "corrupted" means wrong). Returns ``(noisy_labels, corrupted_mask)``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    n = labels.shape[0]
    corrupted = torch.zeros(n, dtype=torch.bool)
    chosen = torch.randperm(n, generator=generator)[: int(round(fraction * n))]
    corrupted[chosen] = True
    shift = torch.randint(1, num_classes, (n,), generator=generator)
    noisy = torch.where(corrupted, (labels + shift) % num_classes, labels)
    return noisy, corrupted


def relu_mlp(in_features: int, depth: int, width: int, num_classes: int, seed: int) -> nn.Module:
    """The paper's network: ``depth`` hidden ReLU layers of ``width`` nodes, Glorot-uniform weights ("normalized
    uniform" initialization), zero biases, no BatchNorm or dropout; seeded."""
    from .init import xavier_
    from .models import MLP

    torch.manual_seed(seed)
    model = MLP([in_features] + [width] * depth + [num_classes], activation="relu")
    return xavier_(model, distribution="uniform", generator=torch.Generator().manual_seed(seed))


def _class_mean_perplexity(patterns: ActivationPatterns, labels: torch.Tensor, num_classes: int,
                           mask: Optional[torch.Tensor] = None) -> Tuple[float, float]:
    """Class-averaged perplexity of the samples in ``mask``, and the same divided by the class sizes."""
    if mask is not None:
        idx = torch.nonzero(mask).flatten()
        if len(idx) == 0:
            return float("nan"), float("nan")
        patterns, labels = patterns[idx], labels[idx]
    perplexity = layer_perplexity(patterns, labels, num_classes)
    sizes = np.bincount(labels.numpy(), minlength=num_classes).astype(float)
    sizes[sizes == 0] = np.nan
    return float(np.nanmean(perplexity)), float(np.nanmean(perplexity / sizes))


def train_cooperating_run(data, *, depth: int, width: int, seed: int, max_epochs: int, lr: float = 1e-3,
                          batch_size: int = 128, patience: int = 5, dataset: Optional[str] = None,
                          **_: object) -> Dict:
    """One point of the depth/width grids: a ``depth`` x ``width`` ReLU MLP (Glorot-uniform weights, no
    BatchNorm, dropout or augmentation) trained with Adam and early stopping on the validation accuracy
    (``patience`` epochs; the best epoch's weights are restored), then analysed.

    Returns a JSON-ready dict: the test error (%), the epochs trained and the best epoch, and per hidden
    layer the class-averaged perplexity on the training set and the layer-classifier test accuracy of the
    three node modes (discrete, continuous, combined).
    """
    from .train import fit

    if dataset is not None and dataset != data.name:
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is {data.name!r}")
    x_train = data.x_train.flatten(1)
    model = relu_mlp(x_train.shape[1], depth, width, data.num_classes, seed)

    def early_stop(history, _model):
        return len(history) - history.best_epoch >= patience

    start = time.perf_counter()
    history = fit(model, data, epochs=max_epochs, lr=lr, optimizer="adam", batch_size=batch_size, seed=seed,
                  progress=False, keep_best=True, callbacks=[early_stop], device="cpu")
    history.restore_best(model)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    names = relu_layers(model)
    train_acts = collect_responses(model, x_train, names, reduce="flatten")  # one pass serves both measures
    perplexity = [_class_mean_perplexity(ActivationPatterns.from_responses(a), data.y_train, data.num_classes)[0]
                  for a in train_acts.values()]
    accuracies = _accuracy_table(train_acts, data.y_train,
                                 collect_responses(model, data.x_test.flatten(1), names, reduce="flatten"),
                                 data.y_test, data.num_classes)
    by_mode = {mode: accuracies.loc[accuracies["mode"] == mode, "accuracy"].tolist() for mode in MODES}
    node_acc = accuracies.loc[accuracies["mode"] == "combined", "node_accuracy"].tolist()
    return {"test_error": float(history.test_error_at_best), "best_epoch": int(history.best_epoch),
            "epochs_trained": len(history), "perplexity": perplexity, "layer_accuracy": by_mode,
            "node_accuracy_combined": node_acc, "train_seconds": train_seconds,
            "analysis_seconds": time.perf_counter() - start}


def label_noise_run(data, *, fraction: float, seed: int, epochs: int, depth: int = 6, width: int = 100,
                    lr: float = 1e-3, batch_size: int = 128, track_every: int = 5, dataset: Optional[str] = None,
                    **_: object) -> Dict:
    """Train on labels of which ``fraction`` are corrupted (:func:`corrupt_labels`), without early stopping,
    and follow the two systems for clean and corrupted training samples every ``track_every`` epochs.

    Tracked per epoch: test error; training error on clean samples (against their true labels) and on
    corrupted samples (against their *noisy* labels: 0 means memorized). Per hidden layer: class-averaged
    perplexity of clean and of corrupted samples (grouped by training label), divided by the class sizes
    so the two groups compare (1: every sample has its own pattern); and the accuracy of the combined
    layer classifier fitted on the noisy training set, on clean and on corrupted samples (again against
    the training labels: how far into the network the noise is memorized).
    """
    from .train import fit

    if dataset is not None and dataset != data.name:
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is {data.name!r}")
    x_train = data.x_train.flatten(1)
    noisy, corrupted = corrupt_labels(data.y_train, fraction, data.num_classes, torch.Generator().manual_seed(seed))
    train_data = {"train": (x_train, noisy), "val": (data.x_val.flatten(1), data.y_val),
                  "test": (data.x_test.flatten(1), data.y_test)}
    model = relu_mlp(x_train.shape[1], depth, width, data.num_classes, seed)
    track: List[Dict] = []

    def follow(history, net):
        epoch = len(history)
        if epoch % track_every and epoch != 1:
            return False
        names = relu_layers(net)
        output = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
        acts = collect_responses(net, x_train, names + [output], reduce="flatten")  # one pass for everything
        pred = acts.pop(output).argmax(1)
        clean = ~corrupted
        row = {"epoch": epoch, "test_error": 100 * (1 - history.rows[-1]["test_acc"]),
               "train_error_clean": 100 * (pred[clean] != data.y_train[clean]).double().mean().item(),
               "train_error_corrupted": 100 * (pred[corrupted] != noisy[corrupted]).double().mean().item()
               if corrupted.any() else float("nan"),
               "perplexity_clean": [], "perplexity_corrupted": [], "layer_acc_clean": [], "layer_acc_corrupted": []}
        for name in names:
            patterns = ActivationPatterns.from_responses(acts[name])
            row["perplexity_clean"].append(_class_mean_perplexity(patterns, noisy, data.num_classes, clean)[1])
            row["perplexity_corrupted"].append(_class_mean_perplexity(patterns, noisy, data.num_classes, corrupted)[1])
            nc = NodeClassifiers(data.num_classes).fit(acts[name], noisy)
            hit = (nc.layer_proba(acts[name]).argmax(1) == noisy).double()
            row["layer_acc_clean"].append(hit[clean].mean().item())
            row["layer_acc_corrupted"].append(hit[corrupted].mean().item() if corrupted.any() else float("nan"))
        track.append(row)
        return False

    fit(model, train_data, epochs=epochs, lr=lr, optimizer="adam", batch_size=batch_size, seed=seed,
        progress=False, callbacks=[follow], device="cpu")
    return {"track": track, "corrupted": int(corrupted.sum())}


#: Settings of the chapter's experiments per profile. ``quick``: mnist-5k on a CPU, a thinned grid;
#: ``full``: the paper's grids (depth 1-10 x 100 nodes, width 20-200 x 10 layers) on full MNIST.
PROFILE_SETTINGS = {
    "quick": dict(dataset="mnist-5k", depths=[1, 2, 4, 6, 8, 10], widths=[20, 50, 100, 200], seeds=[0, 1],
                  max_epochs=40, noise_fractions=[0.0, 0.2, 0.4], noise_epochs=60, noise_seeds=[0], track_every=10),
    "full": dict(dataset="mnist", depths=list(range(1, 11)), widths=list(range(20, 201, 20)), seeds=[0, 1, 2],
                 max_epochs=300, noise_fractions=[0.0, 0.2, 0.4, 0.6, 0.8], noise_epochs=300, noise_seeds=[0, 1, 2],
                 track_every=10),
}


def grid_configs(dataset: str, depths: Sequence[int], widths: Sequence[int], seeds: Sequence[int], max_epochs: int,
                 lr: float = 1e-3, batch_size: int = 128, patience: int = 5) -> List[Dict]:
    """Run configurations of the two grids: ``depth x 100`` nodes for each depth, and ``10 x width`` for each
    width (the 10 x 100 network belongs to both and is listed once)."""
    shapes = [(d, 100) for d in depths] + [(10, w) for w in widths]
    shapes = list(dict.fromkeys(shapes))
    return [dict(dataset=dataset, depth=d, width=w, seed=s, max_epochs=max_epochs, lr=lr, batch_size=batch_size,
                 patience=patience) for d, w in shapes for s in seeds]
