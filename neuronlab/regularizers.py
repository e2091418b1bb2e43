r"""The regularizers NSR is compared with, as loss terms for :func:`neuronlab.train.fit` (``extra_losses``).

Every term is called with the step's :class:`neuronlab.train.StepContext` and returns a scalar tensor:

* :class:`ActivationL1` -- :math:`\lambda \cdot \frac1N\sum_i \lVert h_i \rVert_1` on the responses
  :math:`h` of chosen layers (sparse activity), recorded with forward hooks (a context manager, like
  :class:`neuronlab.nsr.NeuronSteadiness`);
* :class:`WeightL2` -- :math:`\lambda \sum_W \lVert W \rVert_F^2` over weight matrices (every leaf module's
  ``weight`` with at least 2 dimensions: biases and normalization parameters excluded), i.e. weight decay
  written as a loss;
* :class:`JacobianNorm` -- Hoffman, Roberts & Yaida (2019), *Robust learning with Jacobian
  regularization*: :math:`\lambda \cdot \frac12 \lVert J \rVert_F^2` with :math:`J = \partial z/\partial x`
  the input-output Jacobian, estimated with random projections
  :math:`\lVert J\rVert_F^2 \approx \frac{C}{n_\text{proj}} \sum_k \lVert v_k^\top J \rVert^2`,
  :math:`v_k` uniform on the unit sphere of the :math:`C` outputs (unbiased, one extra backward pass
  per projection);
* :class:`WeightOrthogonality` -- :math:`\lambda \sum_W \lVert W W^\top - I \rVert_F^2` (rows of each
  weight, a conv filter flattened, pushed towards orthonormality; for wide-short matrices the smaller
  Gram matrix is used).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from .probe import RecordingTerm, ResponseRecorder

__all__ = ["ActivationL1", "WeightL2", "JacobianNorm", "WeightOrthogonality"]


def _check_lam(lam: float) -> float:
    if not lam >= 0:
        raise ValueError(f"lambda must be a non-negative number, got {lam}")
    return float(lam)


def _weights(model: nn.Module, layers: Optional[Iterable[str]] = None) -> Sequence[torch.Tensor]:
    # every leaf module with a weight matrix: nn.Linear, nn.Conv*, and e.g. the Linear inside PyG convolutions
    found = {name: m.weight for name, m in model.named_modules()
             if not list(m.children()) and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2}
    if layers is None:
        if not found:
            raise ValueError(f"{type(model).__name__} has no weight matrix to regularize")
        return list(found.values())
    layers = list(layers)
    unknown = [n for n in layers if n not in found]
    if unknown:
        raise ValueError(f"unknown weight layer(s) {unknown}; the model's weight layers are {list(found)}")
    return [found[n] for n in layers]


class ActivationL1(RecordingTerm):
    """L1 penalty on the responses of ``layers`` (mean over samples of the L1 norm of each response)."""

    def __init__(self, model: nn.Module, layers, lam: float):
        self.lam = _check_lam(lam)
        self._recorder = ResponseRecorder(model, layers, detach=False, reduce="flatten")

    def __call__(self, ctx=None) -> torch.Tensor:
        if not self._recorder.active:
            raise RuntimeError("ActivationL1 records nothing outside its with-block")
        terms = [r.abs().sum(1).mean() for r in self._recorder.responses.values()]
        return self.lam * torch.stack(terms).sum()


class WeightL2:
    """Squared Frobenius norm of the weight matrices of ``model`` (or of ``layers``), times ``lam``."""

    def __init__(self, model: nn.Module, lam: float, layers: Optional[Iterable[str]] = None):
        self.lam = _check_lam(lam)
        self.weights = _weights(model, layers)

    def __call__(self, ctx=None) -> torch.Tensor:
        return self.lam * sum((w * w).sum() for w in self.weights)


class JacobianNorm:
    """Random-projection estimate of the squared Frobenius norm of the input-output Jacobian.

    Needs the inputs: at each step it runs the model once more on ``ctx.inputs`` with gradients enabled
    for them (dense inputs; not for graphs), then ``n_proj`` vector-Jacobian products with
    ``create_graph=True`` so the penalty is differentiable in the weights.
    """

    def __init__(self, lam: float, n_proj: int = 1, generator: Optional[torch.Generator] = None):
        if n_proj < 1:
            raise ValueError(f"n_proj must be at least 1, got {n_proj}")
        self.lam = _check_lam(lam)
        self.n_proj = n_proj
        self.generator = generator

    def norm_estimate(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\widehat{\\lVert J \\rVert_F^2}` averaged over the batch."""
        x = x.detach().requires_grad_(True)
        out = model(x)
        if out.dim() != 2:
            raise ValueError(f"JacobianNorm needs outputs [N, C], got {tuple(out.shape)}")
        n, c = out.shape
        total = out.new_zeros(())
        for k in range(self.n_proj):
            v = torch.randn(n, c, generator=self.generator).to(out)
            v = v / v.norm(dim=1, keepdim=True)
            (vjp,) = torch.autograd.grad(out, x, grad_outputs=v, create_graph=True)
            total = total + c * vjp.pow(2).flatten(1).sum(1).mean()
        return total / self.n_proj

    def __call__(self, ctx) -> torch.Tensor:
        if isinstance(ctx.inputs, tuple):
            raise ValueError("JacobianNorm works on dense inputs, not on graphs (x, edge_index)")
        return self.lam * 0.5 * self.norm_estimate(ctx.model, ctx.inputs)


class WeightOrthogonality:
    """:math:`\\lambda \\sum_W \\lVert G - I \\rVert_F^2` with :math:`G` the smaller Gram matrix of each weight
    reshaped to ``[out, in * kernel]`` (rows if ``out <= in``, else columns)."""

    def __init__(self, model: nn.Module, lam: float, layers: Optional[Iterable[str]] = None):
        self.lam = _check_lam(lam)
        self.weights = _weights(model, layers)

    def __call__(self, ctx=None) -> torch.Tensor:
        total = 0.0
        for w in self.weights:
            m = w.flatten(1)
            gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
            total = total + (gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)).pow(2).sum()
        return self.lam * total
