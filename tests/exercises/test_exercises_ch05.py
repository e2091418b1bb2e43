"""Chapter 5's checks: each passes on the notebook's reference solution, fails on the student's skeleton,
and fails on the typical wrong answers (not centring, an unsquared numerator, centring the wrong axis;
a hook left in place, units read as rows, no eval mode, a percentage, a pre-hook on the wrong layer)."""

import json
from pathlib import Path

import pytest
import torch

from neuronlab import exercises
from neuronlab.exercises import ExerciseFailed

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHECKS = {"linear_cka": exercises.ch05.check_linear_cka,
          "ablation_accuracy": exercises.ch05.check_ablation_accuracy}


def test_the_notebook_calls_every_check():
    (path,) = NOTEBOOKS.glob("05_*.ipynb")
    cells = json.loads(path.read_text())["cells"]
    calls = "\n".join("".join(c["source"]) for c in cells
                      if "exercise-check" in c.get("metadata", {}).get("tags", []))
    for name in CHECKS:
        assert f"exercises.ch05.check_{name}({name})" in calls


# ------------------------------------------------------------------------------------------ linear_cka
def _norm(m):
    return torch.linalg.matrix_norm(m)


def cka_not_centred(x, y):
    return float(_norm(y.T @ x) ** 2 / (_norm(x.T @ x) * _norm(y.T @ y)))


def cka_not_squared(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return float(_norm(y.T @ x) / (_norm(x.T @ x) * _norm(y.T @ y)))


def cka_rows_centred(x, y):
    x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    return float(_norm(y.T @ x) ** 2 / (_norm(x.T @ x) * _norm(y.T @ y)))


def cka_squared_denominator(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return float(_norm(y.T @ x) ** 2 / (_norm(x.T @ x) ** 2 * _norm(y.T @ y) ** 2))


def cca_instead(x, y):
    """Mean canonical correlation: invariant to every invertible map, so not CKA."""
    from neuronlab.similarity import cca_similarity
    return cca_similarity(x, y)


@pytest.mark.parametrize("wrong, message", [
    (cka_not_centred, "Centre each column"),
    (cka_not_squared, "without squaring"),
    (cka_rows_centred, "adding a constant"),
    (cka_squared_denominator, "squared the norms in the denominator"),
    (cca_instead, "not blind to such maps"),
])
def test_linear_cka_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        exercises.ch05.check_linear_cka(wrong)


# ----------------------------------------------------------------------------------- ablation_accuracy
def ablation_hook_kept(model, layer, neurons, x, y):
    """Never removes the hook: the next forward pass is still ablated."""
    module = dict(model.named_modules())[layer]
    index = torch.as_tensor(neurons, dtype=torch.long)

    def hook(_module, _inputs, output):
        output = output.clone()
        output[:, index] = 0
        return output

    module.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def ablation_rows(model, layer, neurons, x, y):
    """Zeros samples (rows) instead of units (columns)."""
    module = dict(model.named_modules())[layer]

    def hook(_module, _inputs, output):
        output = output.clone()
        output[list(neurons)] = 0
        return output

    handle = module.register_forward_hook(hook)
    model.eval()
    try:
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()
    finally:
        handle.remove()


def ablation_no_eval(model, layer, neurons, x, y):
    """Evaluates in whatever mode the model is in (dropout stays on)."""
    module = dict(model.named_modules())[layer]
    index = torch.as_tensor(neurons, dtype=torch.long)
    handle = module.register_forward_hook(lambda m, i, o: o.index_fill(1, index, 0.0))
    try:
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()
    finally:
        handle.remove()


def ablation_stays_in_eval(model, layer, neurons, x, y):
    """Calls model.eval() and never restores the mode."""
    module = dict(model.named_modules())[layer]
    index = torch.as_tensor(neurons, dtype=torch.long)
    handle = module.register_forward_hook(lambda m, i, o: o.index_fill(1, index, 0.0))
    model.eval()
    try:
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()
    finally:
        handle.remove()


def ablation_percent(model, layer, neurons, x, y):
    module = dict(model.named_modules())[layer]
    index = torch.as_tensor(neurons, dtype=torch.long)
    handle = module.register_forward_hook(lambda m, i, o: o.index_fill(1, index, 0.0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return 100 * (model(x).argmax(1) == y).double().mean().item()
    finally:
        handle.remove()
        model.train(was_training)


def ablation_pre_hook(model, layer, neurons, x, y):
    """Zeros the layer's *input* (a forward pre-hook): right for a ReLU, wrong for a Linear layer."""
    module = dict(model.named_modules())[layer]
    index = torch.as_tensor(neurons, dtype=torch.long)

    def pre_hook(_module, inputs):
        return (inputs[0].index_fill(1, index, 0.0),)

    handle = module.register_forward_pre_hook(pre_hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()
    finally:
        handle.remove()
        model.train(was_training)


def ablation_weights_zeroed(model, layer, neurons, x, y):
    """Erases the units for good by zeroing the next layer's weights."""
    index = torch.as_tensor(neurons, dtype=torch.long)
    following = {"act1": "fc2", "act2": "fc3", "fc2": "fc3"}[layer]
    with torch.no_grad():
        getattr(model, following).weight[:, index] = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()
    finally:
        model.train(was_training)


def ablation_forgets_ablation(model, layer, neurons, x, y):
    """Registers nothing: the plain model's accuracy."""
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


@pytest.mark.parametrize("wrong, message", [
    (ablation_hook_kept, "remove the hook"),
    (ablation_rows, "units are the columns"),
    (ablation_no_eval, "model.eval"),
    (ablation_stays_in_eval, "left the model in eval mode"),
    (ablation_percent, "not as a percentage"),
    (ablation_pre_hook, "neurons.ablation_curve gives"),
    (ablation_weights_zeroed, "changed the model's weights"),
    (ablation_forgets_ablation, "without ablation"),
])
def test_ablation_accuracy_rejects_typical_mistakes(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        exercises.ch05.check_ablation_accuracy(wrong)
