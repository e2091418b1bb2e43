"""neuronlab: neuron-level methods for understanding and training deep networks.

One module per concern (see the book's API page):

* :mod:`neuronlab.config` -- profiles (``quick``/``full``), seeds, devices, the data folder
* :mod:`neuronlab.data` -- ``load_dataset(name)``: offline and downloadable datasets
* :mod:`neuronlab.models` -- the papers' MLPs, a small CNN, CIFAR ResNet-18 / VGG-19, GCN, GraphSAGE
* :mod:`neuronlab.probe` -- record layer responses with forward hooks that are always removed
* :mod:`neuronlab.train` -- a small seeded, resumable training loop
* :mod:`neuronlab.runs` -- save every finished run of a sweep; resume after a crash
* :mod:`neuronlab.init` -- Xavier, He, orthogonal, LSUV
* :mod:`neuronlab.campaign` -- Chapter 2: Neuron Campaign initialization (IBCI)
* :mod:`neuronlab.nsr` -- Chapter 3: Neuron Steadiness Regularization and intra-class statistics
* :mod:`neuronlab.regularizers` -- L1, L2, Jacobian and orthogonality terms NSR is compared with
* :mod:`neuronlab.cooperating` -- Chapter 4: activation patterns, layer perplexity, nodes as classifiers
* :mod:`neuronlab.signal` -- Chapter 1: vanishing and exploding signals

Submodules are imported lazily so that ``import neuronlab`` stays fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("config", "data", "models", "probe", "train", "runs", "init", "signal", "campaign", "nsr", "regularizers", "cooperating")
__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'neuronlab' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
