"""neuronlab: neuron-level methods for understanding and training deep networks.

Built in floors, each importing only from the floors below (see the book's API page):

1. foundations: :mod:`~neuronlab.config` (profiles, seeds, devices, folders), :mod:`~neuronlab.data`
   (``load_dataset(name)``), :mod:`~neuronlab.models` (``build_model(name, data)``),
   :mod:`~neuronlab.probe` (record layer responses), :mod:`~neuronlab.train` (a seeded, resumable
   training loop), :mod:`~neuronlab.runs` (sweeps that survive a crash), :mod:`~neuronlab.plots`
   (the book's figure style) and :mod:`~neuronlab.book` (numbers and figures glued into the pages)
2. shared statistics: :mod:`~neuronlab.classwise` (labels, class moments, intra-class variance)
3. methods: :mod:`~neuronlab.init` and :mod:`~neuronlab.signal` (Chapter 1), :mod:`~neuronlab.campaign`
   (Chapter 2), :mod:`~neuronlab.nsr` and :mod:`~neuronlab.regularizers` (Chapter 3),
   :mod:`~neuronlab.cooperating` (Chapter 4), :mod:`~neuronlab.similarity`, :mod:`~neuronlab.neurons` and
   :mod:`~neuronlab.rejuvenation` (Chapter 5)
4. :mod:`~neuronlab.experiments`: the papers' tables, grids and runs, one module per chapter, and the
   command line ``python -m neuronlab.experiments``
5. :mod:`~neuronlab.widgets`: interactive explorers

Submodules are imported lazily so that ``import neuronlab`` stays fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("config", "data", "models", "probe", "train", "runs", "plots", "book", "classwise", "init",
               "signal", "campaign", "nsr", "regularizers", "cooperating", "similarity", "neurons", "rejuvenation",
               "experiments", "widgets")
__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'neuronlab' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
