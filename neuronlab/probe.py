"""Record the responses of chosen layers with forward hooks that are always removed.

Every chapter reads neurons' responses: NSR penalizes them (so gradients must flow through them),
perplexity, IBCI and SVCCA analyse them over whole datasets (so they are detached and concatenated).

.. code-block:: python

    with record(model, ["fc1", "act1"]) as rec:
        logits = model(x)
    rec["act1"]          # the response of every neuron of act1 to every sample of x

A *neuron* is a unit of a dense layer, a channel of a convolution (``reduce="channel_mean"`` averages
it over positions, ``"channel_positions"`` treats each position as a sample) and a feature of a graph
layer (responses are ``[num_nodes, C]``; apply masks yourself, e.g. ``rec["conv1"][data.train_mask]``).
"""

from __future__ import annotations

import difflib
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["LayerNotFoundError", "resolve_layers", "channel_responses", "ResponseRecorder", "record",
           "collect_responses"]

LayerSpec = Union[str, nn.Module, Sequence[Union[str, nn.Module]]]
REDUCTIONS = (None, "flatten", "channel_mean", "channel_positions")


class LayerNotFoundError(KeyError, ValueError):
    """A requested layer is not part of the model."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def resolve_layers(model: nn.Module, layers: LayerSpec) -> Dict[str, nn.Module]:
    """Map layer names and/or modules to ``{name: module}`` (names as in ``model.named_modules()``).

    Duplicates are dropped, order is kept. An unknown name raises :class:`LayerNotFoundError` listing the
    model's layers and the closest match.
    """
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    named = dict(model.named_modules())
    by_module = {id(m): n for n, m in named.items()}
    resolved: Dict[str, nn.Module] = {}
    for layer in layers:
        if isinstance(layer, str):
            if layer not in named or layer == "":
                choices = [n for n in named if n]
                close = difflib.get_close_matches(layer, choices, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise LayerNotFoundError(f"{type(model).__name__} has no layer named {layer!r}.{hint} "
                                         f"Its layers are: {', '.join(choices)}")
            resolved[layer] = named[layer]
        elif isinstance(layer, nn.Module):
            if id(layer) not in by_module:
                raise LayerNotFoundError(f"the {type(layer).__name__} module passed is not part of "
                                         f"{type(model).__name__}; pass a submodule of the model or its name")
            resolved[by_module[id(layer)] or type(layer).__name__] = layer
        else:
            raise TypeError(f"layers must be names or modules, got {type(layer).__name__}")
    if not resolved:
        raise ValueError("no layer requested: pass at least one layer name or module")
    return resolved


def channel_responses(t: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Per-channel responses of a conv output ``[N, C, *spatial]``.

    ``mode="mean"``: average over positions → ``[N, C]``. ``mode="positions"``: every position is a sample
    → ``[N * prod(spatial), C]``. Tensors with 2 dimensions are returned unchanged.
    """
    if t.dim() <= 2:
        return t
    if mode == "mean":
        return t.flatten(2).mean(dim=2)
    if mode == "positions":
        return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])
    raise ValueError(f"mode must be 'mean' or 'positions', got {mode!r}")


def _reduce(t: torch.Tensor, reduce: Optional[str]) -> torch.Tensor:
    if reduce is None:
        return t
    if reduce == "flatten":
        return t.flatten(1)
    if reduce == "channel_mean":
        return channel_responses(t, "mean")
    return channel_responses(t, "positions")


class ResponseRecorder:
    """Context manager that records the outputs of ``layers`` of ``model`` at every forward pass.

    Args:
        model: the network.
        layers: names (as in ``model.named_modules()``), modules, or a list of both.
        detach: detach responses from the autograd graph (``False`` lets a loss on them backpropagate).
        reduce: ``None`` (raw), ``"flatten"`` (``[N, D]``), ``"channel_mean"`` or ``"channel_positions"``
            (see :func:`channel_responses`).
        accumulate: keep the outputs of all forward passes (concatenated on dim 0) instead of the last.

    Hooks are registered on ``__enter__`` and removed on ``__exit__``, also when the body raises.
    Entering a recorder that is already active raises ``RuntimeError``. A layer returning a tuple (an
    RNN, an attention block) is recorded by its first element.
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
        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            out = _reduce(output.detach() if self.detach else output, self.reduce)
            if self.accumulate:
                self._store[name].append(out)
            else:
                self._store[name] = [out]
        return hook

    def __enter__(self) -> "ResponseRecorder":
        if self._handles:
            raise RuntimeError("this ResponseRecorder is already active; create a new one to nest recordings")
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def clear(self) -> None:
        """Forget the recorded responses (hooks stay)."""
        self._store = {name: [] for name in self.layers}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._store:
            raise LayerNotFoundError(f"layer {name!r} is not recorded; recorded layers: {list(self.layers)}")
        chunks = self._store[name]
        if not chunks:
            raise RuntimeError(f"layer {name!r} was not called during the forward pass: is it used in "
                               f"{type(self.model).__name__}.forward()?")
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=0)

    @property
    def responses(self) -> Dict[str, torch.Tensor]:
        """``{layer name: response tensor}`` for every requested layer."""
        return {name: self[name] for name in self.layers}


def record(model: nn.Module, layers: LayerSpec, **kwargs) -> ResponseRecorder:
    """Shorthand for :class:`ResponseRecorder` (``with record(model, "fc1") as rec: ...``)."""
    return ResponseRecorder(model, layers, **kwargs)


def _batches(data, batch_size: int) -> Iterable:
    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor):
        return data[0].split(batch_size)
    return data


@torch.no_grad()
def collect_responses(model: nn.Module, data, layers: LayerSpec, *, batch_size: int = 1000,
                      reduce: Optional[str] = None, device: Optional[Union[str, torch.device]] = None
                      ) -> Dict[str, torch.Tensor]:
    """Responses of ``layers`` over a whole dataset, in eval mode, without gradients, on the CPU.

    ``data`` is a tensor of inputs, an ``(x, y)`` tuple, an iterable of batches (``x`` or ``(x, y)``, e.g. a
    DataLoader), or a PyG ``Data`` (one full-graph forward ``model(data.x, data.edge_index)``). The model's
    train/eval mode is restored afterwards and the hooks are removed, also on error.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    rec = ResponseRecorder(model, layers, reduce=reduce, accumulate=True)
    try:
        with rec:
            if hasattr(data, "edge_index") and hasattr(data, "x"):
                model(data.x.to(device), data.edge_index.to(device))
            else:
                for batch in _batches(data, batch_size):
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    model(x.to(device))
        return {name: t.cpu() for name, t in rec.responses.items()}
    finally:
        model.train(was_training)
