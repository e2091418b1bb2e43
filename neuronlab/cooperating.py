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
* :func:`layer_accuracies` (and :func:`layer_accuracies_from_responses`): the layer classifiers' accuracy,
  layer by layer;
* :func:`path_sum_gradients` and :func:`count_active_paths`: the SGD update of every weight as a sum over
  active paths (the seed's formula), to be compared with autograd.

There is no public code for the paper; this module is our reference implementation of its measures. The
chapter's experiments (the depth and width grids, label noise) are in
:mod:`neuronlab.experiments.ch04_cooperating`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classwise import check_labels
from .probe import collect_responses, resolve_layers

__all__ = [
    "relu_layers",
    "ActivationPatterns",
    "activation_patterns",
    "layer_perplexity",
    "LayerPerplexity",
    "NodeClassifiers",
    "layer_accuracies",
    "layer_accuracies_from_responses",
    "path_sum_gradients",
    "count_active_paths",
    "MODES",
]

#: The three readings of a node as a classifier (:class:`NodeClassifiers`).
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
        index = index.cpu().numpy() if isinstance(index, torch.Tensor) else index
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
def _labels_array(labels: Union[torch.Tensor, np.ndarray], n: int, num_classes: Optional[int]
                  ) -> Tuple[np.ndarray, int]:
    """:func:`neuronlab.classwise.check_labels`, then the labels as an ``int64`` NumPy array (for the sort)."""
    labels, k = check_labels(labels, n, num_classes)
    return labels.cpu().numpy().astype(np.int64, copy=False), k


def _distinct_keyed_rows(bits: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct (class, pattern) rows and their counts: each sample is one fixed-size byte string (the class
    as 4 big-endian bytes, then the pattern), so one sort of those strings groups them."""
    keyed = np.ascontiguousarray(np.concatenate([labels.astype(">u4").view(np.uint8).reshape(-1, 4), bits], axis=1))
    return np.unique(keyed.view(np.dtype((np.void, keyed.shape[1]))).ravel(), return_counts=True)


def _class_of_rows(rows: np.ndarray) -> np.ndarray:
    """The class stored in the first 4 bytes of each keyed row."""
    as_bytes = np.frombuffer(rows.tobytes(), dtype=np.uint8).reshape(len(rows), rows.dtype.itemsize)  # also for 0 rows
    return as_bytes[:, :4].copy().view(">u4").ravel().astype(np.int64)


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

    Args:
        patterns: the layer's patterns over ``N`` samples (:func:`activation_patterns`).
        labels: ``[N]`` class indices (tensor or integer array, checked by
            :func:`neuronlab.classwise.check_labels`).
        num_classes: :math:`K`; default ``labels.max() + 1``.

    Example:
        >>> import torch
        >>> responses = torch.eye(5).repeat_interleave(3, dim=0)
        >>> five = ActivationPatterns.from_responses(responses)
        >>> layer_perplexity(five, torch.zeros(15, dtype=torch.long))  # 5 patterns
        array([5.])
        >>> labels = torch.tensor([0] * 12 + [2] * 3)
        >>> layer_perplexity(five, labels, num_classes=3)  # 4 patterns; none; 1
        array([ 4., nan,  1.])
    """
    labels, k = _labels_array(labels, len(patterns), num_classes)
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
        labels, _ = _labels_array(labels, len(patterns), self.num_classes)
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
        a = self._check(activations)
        y, _ = check_labels(labels, a.shape[0], self.num_classes, every_class=True)  # P(c | node) needs every class
        onehot = F.one_hot(y.cpu(), self.num_classes).double()
        counts = onehot.sum(0)
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

    def _check(self, activations: torch.Tensor) -> torch.Tensor:
        if not isinstance(activations, torch.Tensor) or activations.dim() != 2:
            raise ValueError("activations must be a [samples, nodes] tensor of post-ReLU values")
        a = activations.detach().double().cpu()
        if not torch.isfinite(a).all():
            raise ValueError("activations contain NaN or inf")
        if (a < 0).any():
            raise ValueError("activations are negative somewhere: pass post-ReLU outputs (the on/off reading "
                             "needs a ReLU layer)")
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
        labels, _ = check_labels(labels, activations.shape[0], self.num_classes)
        return (self.layer_proba(activations, mode).argmax(1) == labels.cpu()).double().mean().item()


def layer_accuracies(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                     y_eval: torch.Tensor, num_classes: int, layers: Optional[Iterable[str]] = None,
                     modes: Sequence[str] = MODES, bins: int = 64) -> List[Dict[str, Any]]:
    """Fit :class:`NodeClassifiers` per ReLU layer on ``(x_train, y_train)``, evaluate on ``(x_eval, y_eval)``.

    The responses are recorded with :func:`neuronlab.probe.collect_responses` (on the model's device,
    returned on the CPU), so the model may sit on a GPU.

    Returns:
        list: one row per layer and mode, in layer order, each ``{"layer", "depth", "mode", "accuracy",
        "node_accuracy"}`` with the layer classifier's accuracy (``"accuracy"``) and the mean accuracy of
        its single nodes (``"node_accuracy"``: each node's own argmax prediction); ``depth`` counts the
        hidden layers from 1. ``pandas.DataFrame(rows)`` makes it a table.
    """
    names = relu_layers(model, layers)
    return layer_accuracies_from_responses(collect_responses(model, x_train, names, reduce="flatten"), y_train,
                                           collect_responses(model, x_eval, names, reduce="flatten"), y_eval,
                                           num_classes, modes, bins)


def layer_accuracies_from_responses(train_responses: Mapping[str, torch.Tensor], y_train: torch.Tensor,
                                    eval_responses: Mapping[str, torch.Tensor], y_eval: torch.Tensor,
                                    num_classes: int, modes: Sequence[str] = MODES, bins: int = 64
                                    ) -> List[Dict[str, Any]]:
    """:func:`layer_accuracies` from responses already recorded (``{layer: [N, nodes]}`` post-ReLU values,
    in layer order), e.g. when the same recording also serves :func:`activation_patterns`."""
    rows = []
    y_eval = y_eval.cpu()
    for depth, name in enumerate(train_responses, start=1):
        nc = NodeClassifiers(num_classes, bins=bins).fit(train_responses[name], y_train)
        for mode in modes:
            node_pred = nc.node_proba(eval_responses[name], mode).argmax(-1)  # [N, nodes]
            rows.append({"layer": name, "depth": depth, "mode": mode,
                         "accuracy": nc.accuracy(eval_responses[name], y_eval, mode),
                         "node_accuracy": (node_pred == y_eval[:, None]).double().mean().item()})
    return rows


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


def _check_path_inputs(linears: List[nn.Linear], x: torch.Tensor, need_samples: bool) -> None:
    """The batch of the path view: a real tensor ``[N, ...]`` whose flattened rows fit the first layer."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of inputs, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch [N, features] (or [N, ...], flattened), got shape {tuple(x.shape)}: "
                         "a single sample needs x[None]")
    if x.dtype.is_complex:
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    features = math.prod(x.shape[1:])
    if features != linears[0].in_features:
        raise ValueError(f"x has {features} features per sample (shape {tuple(x.shape)}) but the first layer takes "
                         f"{linears[0].in_features}: pass inputs of the model's size")
    if need_samples and x.shape[0] == 0:
        raise ValueError("x holds no sample: the update is a mean over the batch, pass at least one sample")
    if x.dtype.is_floating_point and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf: the on/off pattern of a NaN is undefined; clean the data first")


def count_active_paths(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Per layer ``i``, an ``[N, n_i]`` tensor: how many paths from node ``j`` of layer ``i`` to an output node
    are active for each sample (every hidden node on the path is on). Output nodes have one path each; a
    hidden node that is off has none, one that is on has as many as all nodes of the next layer together.
    ``x`` is sent to the model's device, where the counts are returned. ``x`` is checked first: a real
    tensor ``[N, ...]`` without NaN/inf whose flattened rows have the first layer's size."""
    linears = _relu_mlp_weights(model)
    _check_path_inputs(linears, x, need_samples=False)
    device = linears[0].weight.device
    with torch.no_grad():
        a, ons = x.flatten(1).to(device), []
        for layer in linears[:-1]:
            z = layer(a)
            ons.append((z > 0).double())
            a = torch.relu(z)
    counts = [torch.ones(x.shape[0], linears[-1].out_features, dtype=torch.float64, device=device)]
    for on in reversed(ons):
        counts.insert(0, on * counts[0].sum(1, keepdim=True))
    return counts


def path_sum_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1.0, *,
                       max_paths: int = 1_000_000) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
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
    The result equals ``-lr * grad`` from autograd: the test suite and the chapter check this. ``x`` and
    ``y`` are sent to the model's device, where the updates are returned (as autograd's gradients are).

    **Size guard.** Layer :math:`i` has :math:`\prod_{g \ge i} n_g` paths to the output (:math:`n_g` the
    width of layer :math:`g`), and each costs an index row plus two float64 numbers per sample, so the
    function first counts :math:`\sum_i \prod_{g \ge i} n_g` and refuses (``ValueError``, saying the
    count and the limit) above ``max_paths`` (default one million, which takes a few times
    :math:`8N` MB for a batch of :math:`N`). A 4-5-4-3 network has 60 + 12 + 3 = 75 paths; an
    MLP 784-100-100-10 has :math:`10^5 + 10^3 + 10`. Raise ``max_paths`` only with the memory for it.

    **Checks.** Also before any work: ``x`` is a real tensor ``[N, ...]`` with ``N >= 1``, no NaN/inf and
    the first layer's number of features (integer inputs are converted to float64, as everything here
    is); ``y`` holds ``N`` integer labels (any integer dtype) in ``0..K-1`` for the ``K`` outputs
    (:func:`neuronlab.classwise.check_labels`); ``lr`` is a finite number.
    """
    linears = _relu_mlp_weights(model)
    _check_path_inputs(linears, x, need_samples=True)
    y, _ = check_labels(y, x.shape[0], linears[-1].out_features)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number, got {lr!r}")
    if isinstance(max_paths, bool) or not isinstance(max_paths, numbers.Integral) or max_paths < 1:
        raise ValueError(f"max_paths must be a positive integer, got {max_paths!r}")
    widths = [layer.out_features for layer in linears]
    n_paths = sum(math.prod(widths[i:]) for i in range(len(widths)))
    if n_paths > max_paths:
        raise ValueError(f"path_sum_gradients would enumerate {n_paths:,} paths through the layers of widths "
                         f"{widths}, more than max_paths={max_paths:,} (each path costs an index row and two "
                         "float64 numbers per sample). The path view is meant for tiny networks: use "
                         "autograd for this one, or raise max_paths if the memory is there.")
    device = linears[0].weight.device
    with torch.no_grad():
        a = [x.flatten(1).double().to(device)]
        zs = []
        for layer in linears:
            z = a[-1] @ layer.weight.double().T
            if layer.bias is not None:
                z = z + layer.bias.double()
            zs.append(z)
            a.append(torch.relu(z))
        h = torch.softmax(zs[-1], dim=1)
        target = F.one_hot(y.to(device), h.shape[1]).double()
        error = target - h  # (y - h) at the output, [B, n_N]
        n_layers = len(linears)
        sizes = [layer.out_features for layer in linears]
        updates = []
        for i in range(n_layers):  # 0-based layer index
            # every path from a node of layer i to an output node: [P, n_layers - i] node indices
            paths = torch.cartesian_prod(*[torch.arange(s, device=device) for s in sizes[i:]]).reshape(-1, n_layers - i)
            gate = torch.ones(x.shape[0], paths.shape[0], dtype=torch.float64, device=device)
            for step, g in enumerate(range(i, n_layers - 1)):  # T(z) of the hidden nodes on the path
                gate = gate * (zs[g][:, paths[:, step]] > 0).double()
            weight = torch.ones(paths.shape[0], dtype=torch.float64, device=device)
            for step, r in enumerate(range(i + 1, n_layers), start=1):  # W_r[I(r), I(r-1)] along the path
                weight = weight * linears[r].weight.double()[paths[:, step], paths[:, step - 1]]
            contribution = gate * weight[None, :] * error[:, paths[:, -1]]  # [B, P]
            delta = torch.zeros(x.shape[0], sizes[i], dtype=torch.float64, device=device)
            delta.index_add_(1, paths[:, 0], contribution)  # sum over the paths that start at node j
            d_weight = lr * delta.T @ a[i] / x.shape[0]
            d_bias = lr * delta.mean(0) if linears[i].bias is not None else None
            updates.append((d_weight, d_bias))
    return updates
