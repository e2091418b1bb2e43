"""Interactive explorers for Jupyter and Colab (ipywidgets): the top floor of the package.

Each explorer redraws a figure of a chapter as its controls move. The rendered book cannot run Python, so
every notebook shows a static figure with the explorer's default settings beside it.
"""

from __future__ import annotations

from typing import Optional, Union

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from torch import nn

from .experiments.ch01_signals import initialized_mlp
from .experiments.ch03_nsr import FAMILY_DEFAULTS, OFFICIAL_LAMBDAS, family_of, paper_model, steadiness_history
from .plots import plot_signal_profile, plot_steadiness
from .signal import signal_profile


def signal_explorer(x: torch.Tensor, y: torch.Tensor, *, in_features: Optional[int] = None, num_classes: int = 10):
    """Chapter 1: choose depth, width, weight std, activation and initialization; see the signal profile
    (:func:`neuronlab.signal.signal_profile`) of the MLP at initialization on the batch ``(x, y)``.

    Returns the widget (display it as a cell's last line).
    """
    in_features = in_features or int(np.prod(x.shape[1:]))
    controls = {
        "depth": widgets.IntSlider(value=20, min=2, max=60, step=1, description="depth"),
        "width": widgets.IntSlider(value=256, min=16, max=1024, step=16, description="width"),
        "weight_std": widgets.FloatLogSlider(value=0.01, base=10, min=-3, max=0, step=0.1,
                                             description="σ_W (gaussian)"),
        "activation": widgets.Dropdown(options=["relu", "tanh"], value="relu", description="activation"),
        "scheme": widgets.Dropdown(options=["gaussian", "xavier", "he", "lsuv"], value="he", description="init"),
    }
    out = widgets.Output()

    def redraw(**params):
        model = initialized_mlp(params["depth"], params["width"], activation=params["activation"],
                                scheme=params["scheme"], weight_std=params["weight_std"], x=x,
                                in_features=in_features, num_classes=num_classes)
        frame = signal_profile(model, x, y)
        with out:
            out.clear_output(wait=True)
            label = f"{params['scheme']}, {params['activation']}, {params['depth']}×{params['width']}"
            fig = plot_signal_profile({label: frame})
            display(fig)
            plt.close(fig)

    widgets.interactive_output(redraw, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())[:3]), widgets.HBox(list(controls.values())[3:]), out])


def lambda_explorer(data, arch: str = "MLP-4", epochs: int = 15, seed: int = 0,
                    device: Optional[Union[str, torch.device]] = None):
    """Chapter 3: choose NSR's strength lambda, the regularized layer and the memory m; it trains ``arch``
    on ``data`` for ``epochs`` epochs (:func:`neuronlab.experiments.ch03_nsr.steadiness_history`, a few
    seconds on a CPU for MLP-4 on 3,500 digits) and draws :func:`neuronlab.plots.plot_steadiness` against
    the vanilla run (trained once and kept). Trains on ``device`` (the notebook passes ``RUN.device``)."""
    torch.manual_seed(seed)
    layer_names = [n for n, m in paper_model(arch, data).named_modules() if isinstance(m, nn.Linear)]
    cache = {}

    def history(lam, layer, memory):
        key = (lam, layer, memory) if lam else 0
        if key not in cache:
            cache[key] = steadiness_history(data, arch=arch, lam=lam, layer=layer, memory=memory, epochs=epochs,
                                            seed=seed, watch=layer_names, device=device)[1]
        return cache[key]

    def show(lam, layer, memory):
        runs = {"vanilla": history(0.0, layer, memory),
                f"NSR, lambda={lam:.3g}, m={memory}": history(lam, layer, memory)}
        plot_steadiness(runs, layer)
        plt.show()

    return widgets.interact(
        show,
        lam=widgets.FloatLogSlider(value=OFFICIAL_LAMBDAS.get(arch, 1.0), base=10, min=-3, max=2, step=0.25,
                                   description="lambda", continuous_update=False),
        layer=widgets.Dropdown(options=layer_names, value=layer_names[-1], description="layer"),
        memory=widgets.IntSlider(value=FAMILY_DEFAULTS[family_of(arch)]["memory"], min=1, max=20,
                                 description="memory m", continuous_update=False))
