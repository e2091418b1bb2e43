"""Record the responses of chosen layers with forward hooks that are always removed.

Every chapter reads neurons' responses: NSR penalizes them (so gradients must flow through them),
perplexity, IBCI and SVCCA analyse them over whole datasets (so they are detached and concatenated).

.. code-block:: python

    with record(model, ["fc1", "act1"]) as rec:
        logits = model(x)
    rec["act1"]          # the response of every neuron of act1 to every sample of x

    # a whole dataset, detached, on the CPU:
    acts = collect_responses(model, test_loader, "act1")["act1"]

A layer's *response* is its forward output (a forward hook sees ``output = layer(input)``):

* a *neuron* is a unit of a dense layer (responses ``[N, D]``), a channel of a convolution (responses
  ``[N, C, H, W]``; ``reduce="channel_mean"`` averages each channel over positions → ``[N, C]``,
  ``reduce="channel_positions"`` treats every position as a sample → ``[N * H * W, C]``) or a feature
  of a graph layer (responses ``[num_nodes, C]``, left unchanged by every ``reduce``: apply node masks
  yourself, e.g. ``rec["conv1"][data.train_mask]``);
* a layer whose output is a tuple (an RNN's ``(output, h_n)``, an attention block's
  ``(output, weights)``) is recorded by the tuple's first element;
* a module called several times in one forward pass (a shared activation) is recorded at each call:
  the last call without ``accumulate``, all calls concatenated with it.

Hooks live only inside the ``with`` block: they are removed on exit, also when the body raises, so a
model never keeps stray hooks (as in Captum, whose attribution methods always remove theirs).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = ["LayerNotFoundError", "resolve_layers", "channel_responses", "ResponseRecorder", "record",
           "RecordingTerm", "collect_responses", "is_graph", "forward_call_order", "output_layer"]

LayerSpec = Union[str, nn.Module, Sequence[Union[str, nn.Module]]]
REDUCTIONS = (None, "flatten", "channel_mean", "channel_positions")


class LayerNotFoundError(KeyError, ValueError):
    """A requested layer is not part of the model (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


def resolve_layers(model: nn.Module, layers: LayerSpec) -> Dict[str, nn.Module]:
    """Map layer names and/or modules to ``{name: module}``, names as in ``model.named_modules()``.

    Args:
        model: the network.
        layers: a name (``"fc1"``, ``"layer2.0.conv1"``, ``"features.block1"``), a submodule of ``model``,
            or a list mixing both.

    Returns:
        ``{name: module}`` in the order requested, duplicates (the same name twice, or a module and its
        name) dropped. A module is named by its first name in ``model.named_modules()``; ``model`` itself
        (name ``""``) is named by its class.

    Raises:
        LayerNotFoundError: an unknown name (the message lists the model's layer names and the closest
            match) or a module that is not inside ``model``.
        TypeError: an entry that is neither a string nor a module.
        ValueError: no layer at all.
    """
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    named = dict(model.named_modules())
    by_module: Dict[int, str] = {}
    for name, module in named.items():
        by_module.setdefault(id(module), name)
    resolved: Dict[str, nn.Module] = {}
    for layer in layers:
        if isinstance(layer, str):
            if layer not in named or layer == "":
                choices = [n for n in named if n]
                close = difflib.get_close_matches(layer, choices, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise LayerNotFoundError(f"{type(model).__name__} has no layer named {layer!r}.{hint} "
                                         f"Its layers are: {', '.join(choices)}")
            name, module = layer, named[layer]
        elif isinstance(layer, nn.Module):
            if id(layer) not in by_module:
                raise LayerNotFoundError(f"the {type(layer).__name__} module passed is not part of "
                                         f"{type(model).__name__}; pass a submodule of the model or its name")
            name, module = by_module[id(layer)] or type(layer).__name__, layer
        else:
            raise TypeError(f"layers must be names or modules, got {type(layer).__name__}")
        if all(module is not m for m in resolved.values()):
            resolved[name] = module
    if not resolved:
        raise ValueError("no layer requested: pass at least one layer name or module")
    return resolved


def channel_responses(t: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    r"""Per-channel responses of a convolution output ``t`` of shape ``[N, C, *spatial]``.

    Args:
        t: the layer output, ``[N, C, H, W]`` (or ``[N, C, L]``, ``[N, C, D, H, W]``).
        mode: ``"mean"``: a channel's response to a sample is its mean over positions,
            :math:`r_{nc} = \frac{1}{HW} \sum_{h,w} t_{nchw}`, giving ``[N, C]``. ``"positions"``: every
            position of every sample is a sample of the channel, giving ``[N * H * W, C]`` with row
            ``n * H * W + h * W + w`` equal to ``t[n, :, h, w]``.

    Tensors with at most 2 dimensions (dense and graph layers) are returned unchanged.
    """
    if mode not in ("mean", "positions"):
        raise ValueError(f"mode must be 'mean' or 'positions', got {mode!r}")
    if t.dim() <= 2:
        return t
    if mode == "mean":
        return t.flatten(2).mean(dim=2)
    return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])


def _reduce(t: torch.Tensor, reduce: Optional[str]) -> torch.Tensor:
    if reduce is None:
        return t
    if reduce == "flatten":
        return t.flatten(1) if t.dim() > 2 else t
    if reduce == "channel_mean":
        return channel_responses(t, "mean")
    return channel_responses(t, "positions")


class ResponseRecorder:
    """Context manager that records the outputs of ``layers`` of ``model`` at every forward pass.

    Args:
        model: the network.
        layers: names (as in ``model.named_modules()``), modules, or a list of both (see
            :func:`resolve_layers`).
        detach: detach responses from the autograd graph (the default). ``False`` keeps the graph, so a
            loss computed on a response backpropagates into the model (NSR, Jacobian penalties).
        reduce: ``None`` (raw output), ``"flatten"`` (``[N, ...]`` → ``[N, D]``), ``"channel_mean"``
            (``[N, C, H, W]`` → ``[N, C]``) or ``"channel_positions"`` (→ ``[N * H * W, C]``); see
            :func:`channel_responses`. Outputs with 2 dimensions (dense, graph layers) are left unchanged.
        accumulate: keep the outputs of all forward passes, concatenated on dim 0, instead of the last.

    Hooks are registered on ``__enter__`` (which also forgets earlier responses) and removed on
    ``__exit__``, also when the body raises. Entering a recorder that is already active raises
    ``RuntimeError`` (use a second recorder to nest recordings); exiting one that is not active, or
    calling :meth:`remove` twice, does nothing. A recorder can be entered again after it exited.
    Responses stay readable after the ``with`` block.

    Example::

        with ResponseRecorder(model, "fc3", detach=False) as rec:
            logits = model(x)
        penalty = rec["fc3"].var(dim=0).sum()   # differentiable
    """

    def __init__(self, model: nn.Module, layers: LayerSpec, *, detach: bool = True, reduce: Optional[str] = None,
                 accumulate: bool = False):
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.detach = detach
        self.reduce = reduce
        self.accumulate = accumulate
        self._store: Dict[str, List[torch.Tensor]] = {name: [] for name in self.layers}
        self._handles: list = []

    def _hook(self, name: str):
        as_it_is = not self.detach and self.reduce is None and not self.accumulate

        def hook(module, inputs, output):
            if as_it_is and type(output) is torch.Tensor:  # a loss term's hot path: nothing to convert
                self._store[name] = [output]
                return
            if isinstance(output, (tuple, list)) and output:
                output = output[0]
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returned a {type(output).__name__}, not a tensor: record a "
                                "submodule that returns a tensor")
            out = _reduce(output.detach() if self.detach else output, self.reduce)
            if self.accumulate:
                self._store[name].append(out)
            else:
                self._store[name] = [out]
        return hook

    def latest(self, name: str) -> Optional[torch.Tensor]:
        """The last forward call's output of layer ``name`` while the recorder is active, else ``None``
        (also for an unknown name, no forward pass yet, or ``accumulate`` with several calls). No error:
        for a loss term's hot path, which falls back to ``recorder[name]`` and its clear errors."""
        chunks = self._store.get(name) if self._handles else None
        return chunks[0] if chunks and len(chunks) == 1 else None

    @property
    def active(self) -> bool:
        """Whether the hooks are registered (inside the ``with`` block)."""
        return bool(self._handles)

    def __enter__(self) -> "ResponseRecorder":
        if self._handles:
            raise RuntimeError("this ResponseRecorder is already active; create a new one to nest recordings")
        self.clear()
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False  # never swallow the body's exception

    def remove(self) -> None:
        """Remove the hooks (idempotent; ``__exit__`` calls it)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def clear(self) -> None:
        """Forget the recorded responses (the hooks, if active, stay)."""
        self._store = {name: [] for name in self.layers}

    def __contains__(self, name: str) -> bool:
        return name in self.layers

    def __getitem__(self, name: str) -> torch.Tensor:
        """The response of layer ``name``: the last forward call's output, or all calls' (``accumulate``)."""
        if name not in self._store:
            raise LayerNotFoundError(f"layer {name!r} is not recorded; recorded layers: {list(self.layers)}")
        chunks = self._store[name]
        if not chunks:
            raise RuntimeError(f"layer {name!r} was not called during the forward pass: is it used in "
                               f"{type(self.model).__name__}.forward()? (Or no forward pass ran inside the "
                               "with block.)")
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=0)

    @property
    def responses(self) -> Dict[str, torch.Tensor]:
        """``{layer name: response tensor}`` for every requested layer, in the order requested.

        Raises ``RuntimeError`` if a requested layer was not called during the forward pass.
        """
        return {name: self[name] for name in self.layers}

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return (f"ResponseRecorder({type(self.model).__name__}, layers={list(self.layers)}, detach={self.detach}, "
                f"reduce={self.reduce!r}, accumulate={self.accumulate}, {state})")


def record(model: nn.Module, layers: LayerSpec, **kwargs) -> ResponseRecorder:
    """Record the responses of ``layers`` inside a ``with`` block: ``with record(model, "fc1") as rec: ...``.

    Shorthand for :class:`ResponseRecorder` (same keyword arguments: ``detach``, ``reduce``,
    ``accumulate``).
    """
    return ResponseRecorder(model, layers, **kwargs)


class RecordingTerm:
    """Base of the loss terms that read layer responses through a :class:`ResponseRecorder` kept in
    ``self._recorder`` (with the autograd graph): a context manager whose hooks live inside the ``with``
    block only. :class:`neuronlab.nsr.NeuronSteadiness` and :class:`neuronlab.regularizers.ActivationL1`
    build on it."""

    _recorder: ResponseRecorder

    def __enter__(self):
        self._recorder.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        self._recorder.remove()
        return False

    def remove(self) -> None:
        """Remove the hooks (``__exit__`` does this)."""
        self._recorder.remove()


def is_graph(data) -> bool:
    """Whether ``data`` is a graph (a PyG ``Data`` with ``x`` and ``edge_index``) rather than dense inputs.

    The one place the package decides graph-or-dense: models take ``model(x, edge_index)`` and train on
    node masks, dense models take ``model(x)`` and train on batches. A mapping (e.g. a dict of splits) is
    never a graph.
    """
    return not isinstance(data, Mapping) and getattr(data, "edge_index", None) is not None and hasattr(data, "x")


def forward_call_order(model: nn.Module, x: torch.Tensor, layers: Sequence[Tuple[str, nn.Module]]) -> List[str]:
    """Names of ``layers`` in the order one forward pass of ``model(x)`` calls them.

    Definition order (``named_modules``) can differ from call order; layer-by-layer methods (LSUV, the
    neuron campaign) must follow the call order. Layers the pass never calls come last, in the given
    order. The hooks are removed also when the forward pass raises.
    """
    order: List[str] = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: order.append(name)) for name, module in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    seen = dict.fromkeys(order)
    return list(seen) + [name for name, _ in layers if name not in seen]


def output_layer(model: nn.Module) -> str:
    """The name of the model's output layer: ``convL`` for the graph networks of :mod:`neuronlab.models`
    (``num_layers`` convolutions), otherwise the last ``nn.Linear``."""
    if hasattr(model, "num_layers") and hasattr(model, f"conv{model.num_layers}"):
        return f"conv{model.num_layers}"
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: name the output layer yourself")
    return linears[-1]


def _batches(data, batch_size: int) -> Iterable:
    """Split ``data`` into batches of inputs (or graphs); see :func:`collect_responses`."""
    if is_graph(data):
        return [data]
    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor):
        return data[0].split(batch_size)
    if isinstance(data, torch.utils.data.TensorDataset):
        return data.tensors[0].split(batch_size)
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        return torch.utils.data.DataLoader(data, batch_size=batch_size)
    return data


def _forward(model: nn.Module, batch, device) -> None:
    if is_graph(batch):
        model(batch.x.to(device), batch.edge_index.to(device))
        return
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a batch of input tensors (x or (x, y)), got {type(x).__name__}")
    model(x.to(device))


@torch.no_grad()
def collect_responses(model: nn.Module, data, layers: LayerSpec, *, batch_size: int = 1000,
                      reduce: Optional[str] = None, device: Optional[Union[str, torch.device]] = None
                      ) -> Dict[str, torch.Tensor]:
    """Responses of ``layers`` over a whole dataset, in eval mode, without gradients, on the CPU.

    Args:
        model: the network (not moved: it stays where it is).
        data: one of

            * a tensor of inputs, split into batches of ``batch_size``;
            * an ``(x, y)`` tuple of tensors or a ``TensorDataset`` (the first tensor is the input);
            * another map-style ``Dataset`` (wrapped in a ``DataLoader`` of ``batch_size``);
            * an iterable of batches, e.g. a ``DataLoader``, yielding ``x`` or ``(x, y, ...)``;
            * a PyG ``Data`` graph: one full-graph forward ``model(data.x, data.edge_index)`` (responses
              cover all nodes; select ``data.train_mask`` etc. yourself). An iterable of graphs
              (a PyG loader) gives one forward per graph.
        layers: names and/or modules, see :func:`resolve_layers`.
        batch_size: batch size used when ``data`` is a tensor, a tuple or a dataset.
        reduce: as in :class:`ResponseRecorder`.
        device: where inputs are sent (default: the device of the model's first parameter).

    Returns:
        ``{layer name: tensor}``, the batches' responses concatenated on dim 0, detached, on the CPU
        (each batch is moved to the CPU as soon as it is computed).

    The model runs under ``torch.no_grad()`` in eval mode (dropout off, BatchNorm running statistics);
    its previous train/eval mode is restored afterwards and the hooks are removed, also on error.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    recorder = ResponseRecorder(model, layers, reduce=reduce)
    chunks: Dict[str, List[torch.Tensor]] = {name: [] for name in recorder.layers}
    was_training = model.training
    model.eval()
    try:
        with recorder:
            for batch in _batches(data, batch_size):
                recorder.clear()
                _forward(model, batch, device)
                for name, response in recorder.responses.items():
                    chunks[name].append(response.cpu())
    finally:
        model.train(was_training)
    if not any(chunks.values()):
        raise ValueError("data gave no batch: nothing was recorded")
    return {name: torch.cat(parts, dim=0) for name, parts in chunks.items()}
