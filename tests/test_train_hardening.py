"""neuronlab.train against bad input and faults (issue 15): every mistake in fit's data or checkpoint gets a
clear error before anything changes, valid inputs of another dtype are converted (and train exactly as the
canonical dtype does), a planted checkpoint cannot run code, and a checkpoint is written durably.

Facts used: a refused call leaves the model's state dict bit-identical and calls no loss term (nothing was
trained); a converted input trains bit-identically to the same values in the canonical dtype; a planted
file's code demonstrably runs when loaded unsafely (the control), and not when fit reads it.
"""

import datetime
import errno
import io
import os
import pickle
import random
import stat
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import neuronlab.train as train
from neuronlab.train import evaluate, fit, predict

CPU = "cpu"
SPLITS = ("train", "val", "test")
NAMES = {"train": "training", "val": "validation", "test": "test"}
FAST = settings(max_examples=30, deadline=None)


def _data(n=24, classes=2, seed=0, features=2):
    """Train/val/test splits of Gaussian points whose labels cycle through ``classes`` (every class present)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, features, generator=g)
    y = torch.arange(3 * n) % classes
    return {s: (x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]) for i, s in enumerate(SPLITS)}


def _linear(classes=2, features=2, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(features, classes)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model, snapshot):
    state = model.state_dict()
    return state.keys() == snapshot.keys() and all(torch.equal(state[k], snapshot[k]) for k in state)


def _refused(error, match, model, data, **kwargs):
    """fit must raise ``error`` matching ``match`` without training a step or changing the model."""
    before, steps = _snapshot(model), []
    kwargs.setdefault("epochs", 2)
    with pytest.raises(error, match=match) as info:
        fit(model, data, progress=False, device=CPU, batch_size=8,
            extra_losses={"seen": lambda ctx: steps.append(ctx.step) or ctx.logits.sum() * 0}, **kwargs)
    assert steps == [], "a training step ran before the error"
    assert _same_state(model, before), "the model changed before the error"
    return info


def _run(model, data, epochs=2, **kwargs):
    history = fit(model, data, epochs=epochs, lr=0.3, batch_size=8, seed=1, progress=False, device=CPU, **kwargs)
    return history.table.drop(columns="time_s"), _snapshot(model)


def _same_run(a, b):
    (table_a, state_a), (table_b, state_b) = a, b
    assert table_a.equals(table_b)
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


# ================================================================================ dtypes that are converted
INT_LABEL_DTYPES = [torch.int8, torch.int16, torch.int32, torch.uint8]


@FAST
@given(dtype=st.sampled_from(INT_LABEL_DTYPES + [torch.bool, torch.float32, torch.float64]),
       classes=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_integer_bool_and_whole_float_labels_train_exactly_as_int64(dtype, classes, seed):
    if dtype == torch.bool:
        classes = 2
    data = _data(classes=classes, seed=seed)
    converted = {s: (x, y.to(dtype)) for s, (x, y) in data.items()}
    assert all(torch.equal(converted[s][1].long(), data[s][1]) for s in SPLITS)  # the same classes
    _same_run(_run(_linear(classes, seed=seed), data), _run(_linear(classes, seed=seed), converted))


@FAST
@given(dtype=st.sampled_from([torch.float64, torch.float16, torch.bfloat16]), seed=st.integers(0, 2**16))
def test_float64_float16_bfloat16_inputs_train_exactly_as_the_same_values_in_float32(dtype, seed):
    data = _data(seed=seed)
    # values that the narrower dtype holds exactly, so the float32 run sees the very same numbers
    exact = {s: (x.to(dtype).float(), y) for s, (x, y) in data.items()}
    other = {s: (x.to(dtype), y) for s, (x, y) in data.items()}
    _same_run(_run(_linear(seed=seed), exact), _run(_linear(seed=seed), other))
    assert all(other[s][0].dtype == dtype for s in SPLITS)  # the caller's data are not modified


def test_a_float64_model_takes_float32_inputs_and_predict_and_evaluate_convert_too():
    data = _data()
    model = _linear().double()
    table, _ = _run(model, data, epochs=1)
    assert np.isfinite(table["train_loss"]).all()
    x, y = data["test"]
    assert predict(model, x).dtype == torch.float64 and torch.equal(predict(model, x), predict(model, x.double()))
    assert evaluate(model, x, y.int()) == evaluate(model, x, y)


def test_numpy_float64_arrays_and_reversed_views_are_accepted():
    data = _data()
    as_numpy = {s: (x.double().numpy()[::-1], y.numpy()[::-1].astype(np.int32)) for s, (x, y) in data.items()}
    flipped = {s: (x.flip(0), y.flip(0)) for s, (x, y) in data.items()}
    _same_run(_run(_linear(), flipped), _run(_linear(), as_numpy))


def test_integer_inputs_go_unchanged_to_a_model_that_takes_them():
    tokens = torch.arange(40) % 7
    data = {"train": (tokens, tokens % 2), "val": (tokens[:10], tokens[:10] % 2)}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 2))
    history = fit(model, data, epochs=30, lr=0.5, batch_size=10, progress=False, device=CPU)
    assert history.table["val_acc"].iloc[-1] == 1.0  # parity of 7 tokens: learnable from an embedding

    class Scales(nn.Module):  # a model that converts 8-bit images itself
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x.float() / 255)

    pixels = (torch.arange(48).reshape(24, 2) * 5 % 256).to(torch.uint8)
    assert len(fit(Scales(), {"train": (pixels, torch.arange(24) % 2)}, epochs=1, progress=False, device=CPU)) == 1


def test_soft_labels_and_custom_losses_keep_their_targets():
    x, y = _data()["train"]
    probabilities = F.one_hot(y, 2).float() * 0.8 + 0.1  # label smoothing: rows sum to 1, not one-hot
    history = fit(_linear(), {"train": (x, probabilities)}, epochs=1, progress=False, device=CPU)
    assert np.isfinite(history.table["train_loss"]).all()
    # with a loss of its own the labels are the loss's business: one-hot MSE targets are fine there
    history = fit(_linear(), {"train": (x, F.one_hot(y, 2).float())}, epochs=1, progress=False, device=CPU,
                  loss_fn=F.mse_loss)
    assert np.isfinite(history.table["train_loss"]).all()


# ================================================================================ inputs refused
@FAST
@given(split=st.sampled_from(SPLITS), value=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
       row=st.integers(0, 23), col=st.integers(0, 1))
def test_nan_or_inf_anywhere_in_the_inputs_is_refused_before_training(split, value, row, col):
    data = _data()
    x = data[split][0].clone()
    x[row, col] = value
    data[split] = (x, data[split][1])
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "run.pt"
        _refused(ValueError, f"the {split} inputs contain NaN or infinite values", _linear(), data,
                 checkpoint=checkpoint)
        assert not checkpoint.exists()


def test_float64_inputs_beyond_the_models_float32_range_are_refused():
    data = _data()
    data["train"] = (data["train"][0].double() * 1e300, data["train"][1])
    _refused(ValueError, r"train inputs are torch.float64 with values beyond the range of torch.float32.*rescale",
             _linear(), data)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.int32, torch.bool])
def test_integer_inputs_of_a_float_model_say_convert_them(dtype):
    data = {s: ((x * 10).to(dtype), y) for s, (x, y) in _data().items()}
    info = _refused(TypeError, rf"the train inputs are {dtype} but the model's weights are torch.float32.*"
                               r"x\.float\(\).*/ 255", _linear(), data)
    assert info.value.__cause__ is not None  # the model's own error is chained


def test_1d_inputs_are_refused_with_the_reshape_advice():
    x, y = torch.randn(24), torch.arange(24) % 2
    # Linear(1, 2) fails on a (2,) batch; Linear(2, 2) silently returns shape (2,) for it
    _refused(ValueError, r"the train inputs are 1-D, shape \(24,\).*x\.reshape\(-1, 1\)", _linear(features=1),
             {"train": (x, y)})
    _refused(ValueError, r"output of shape \(2,\) for 2 training example.*logits of shape \(2, classes\).*"
                         r"x\.reshape\(-1, 1\)", _linear(features=2), {"train": (x, y)})
    assert len(fit(_linear(features=1), {"train": (x.reshape(-1, 1), y)}, epochs=1, progress=False, device=CPU))


def test_inputs_that_do_not_fit_the_model_keep_the_models_error_with_a_note():
    data = _data(features=3)
    info = _refused(RuntimeError, "mat1 and mat2", _linear(features=2), data)
    assert any("shape (2, 3)" in note and "in_features" in note for note in info.value.__notes__)
    # a validation split of another width fails before training, not after the first epoch
    data = _data()
    data["val"] = (torch.randn(24, 5), data["val"][1])
    info = _refused(RuntimeError, "mat1 and mat2", _linear(), data)
    assert any("val inputs" in note for note in info.value.__notes__)


@pytest.mark.parametrize("make, error, match", [
    (lambda: np.array([object()] * 24), TypeError, "numpy array of dtype object"),
    (lambda: [[0.0, 1.0]] * 24, TypeError, "must be a torch.Tensor or a numpy array"),
    (lambda: torch.tensor(1.0), ValueError, r"single number \(a 0-d tensor\)"),
], ids=["numpy object array", "python list", "0-d tensor"])
def test_inputs_that_are_not_an_array_of_numbers(make, error, match):
    _refused(error, match, _linear(), {"train": (make(), torch.arange(24) % 2)})


def test_a_model_with_uninitialized_lazy_layers_is_refused():
    model = nn.Sequential(nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"uninitialized lazy layers.*model\(x\[:2\]\)"):
        fit(model, _data(), epochs=1, progress=False, device=CPU)
    assert model[0].has_uninitialized_params()  # its weights were not drawn


# ================================================================================ labels refused
@FAST
@given(split=st.sampled_from(SPLITS), classes=st.integers(2, 6), index=st.integers(0, 23),
       bad=st.one_of(st.integers(-1000, -1), st.integers(0, 1000)))
def test_a_label_out_of_range_in_any_split_is_refused_before_training(split, classes, index, bad):
    bad = bad if bad < 0 else classes + bad  # outside 0 .. classes - 1
    data = _data(classes=classes)
    y = data[split][1].clone()
    y[index] = bad
    data[split] = (data[split][0], y)
    _refused(ValueError, rf"{NAMES[split]} labels {bad} are out of range: the model has {classes} outputs, so "
                         rf"labels must be 0 \.\. {classes - 1}", _linear(classes), data)


@FAST
@given(classes=st.integers(2, 6), dtype=st.sampled_from([torch.int64, torch.uint8, torch.float32, torch.bool]),
       split=st.sampled_from(SPLITS))
def test_one_hot_labels_are_refused_with_argmax_advice(classes, dtype, split):
    if dtype == torch.bool:
        classes = 2
    data = _data(classes=classes)
    data[split] = (data[split][0], F.one_hot(data[split][1], classes).to(dtype))
    _refused(ValueError, rf"the {NAMES[split]} labels have shape \(24, {classes}\) \(one-hot\): labels must be "
                         r"class indices, shape \(24,\), not one-hot; use y\.argmax\(1\)", _linear(classes), data)


def test_integer_labels_per_position_go_to_a_model_with_per_position_logits():
    """``(N, k)`` integer labels are valid for the cross-entropy when the model returns ``(N, classes, k)``."""
    class PerPosition(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 6)

        def forward(self, x):
            return self.lin(x).reshape(len(x), 2, 3)

    x = _data()["train"][0]
    y = torch.stack([(x[:, 0] > 0).long()] * 3, dim=1)  # one class per position, shape (24, 3)
    torch.manual_seed(0)
    history = fit(PerPosition(), {"train": (x, y)}, epochs=5, lr=0.5, progress=False, device=CPU)
    assert history.table["train_loss"].iloc[-1] < 0.9 * history.table["train_loss"].iloc[0]  # it learns
    # the same labels with a model of (N, classes) logits are refused
    _refused(ValueError, r"training labels have shape \(24, 3\): labels must be class indices", _linear(3),
             {"train": (x, y)})


@FAST
@given(fraction=st.floats(0.01, 0.99), index=st.integers(0, 23), split=st.sampled_from(SPLITS))
def test_fractional_float_labels_are_refused(fraction, index, split):
    data = _data()
    y = data[split][1].float()
    y[index] += fraction
    data[split] = (data[split][0], y)
    _refused(ValueError, rf"{NAMES[split]} labels are torch.float32 with values that are not whole numbers.*"
                         "integer class labels, or a loss_fn", _linear(), data)


@pytest.mark.parametrize("labels, match", [
    (lambda y: torch.where(y == 1, float("nan"), y.float()), "training labels contain NaN or infinite values"),
    (lambda y: y.reshape(-1, 1), r"shape \(24, 1\).*y\.squeeze\(1\)"),
    (lambda y: torch.full((len(y), 3), 1 / 3), r"output of shape \(2, 2\).*logits of shape \(2, 3\)"),
    (lambda y: y - 1, r"training labels -1 are out of range"),
    (lambda y: torch.tensor(1), r"single number \(a 0-d tensor\)"),
], ids=["NaN labels", "(N, 1) labels", "3-class probabilities for 2 outputs", "negative labels", "0-d labels"])
def test_other_malformed_labels(labels, match):
    data = _data()
    data["train"] = (data["train"][0], labels(data["train"][1]))
    _refused(ValueError, match, _linear(), data)


def test_a_model_whose_output_is_not_logits():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x), x

    class Wide(Pair):
        def forward(self, x):
            return self.lin(x).unsqueeze(2)

    _refused(TypeError, "returned a tuple, not a tensor of logits", Pair(), _data())
    _refused(ValueError, r"output of shape \(2, 2, 1\) for 2 training example", Wide(), _data())


# ================================================================================ graphs
def _graph(labels=None, features=None):
    from torch_geometric.data import Data

    x, y = _data(n=20)["train"]
    x = torch.cat([x, x + 1]) if features is None else features
    y = torch.cat([y, y]) if labels is None else labels
    train = torch.arange(40) < 20
    return Data(x=x, y=y, edge_index=torch.stack([torch.arange(39), torch.arange(1, 40)]), train_mask=train,
                val_mask=(~train) & (torch.arange(40) < 30), test_mask=torch.arange(40) >= 30)


class _NodeLinear(nn.Module):
    def __init__(self, features=2, classes=2):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(features, classes)

    def forward(self, x, edge_index):
        return self.lin(x)


def test_graph_labels_are_checked_on_the_labelled_nodes():
    y = torch.cat([torch.arange(20) % 2, torch.arange(20) % 2])
    y_bad = y.clone()
    y_bad[25] = 7  # a validation node
    _refused(ValueError, "validation labels 7 are out of range", _NodeLinear(), _graph(y_bad))
    _refused(ValueError, r"training labels have shape \(20, 2\) \(one-hot\).*y\.argmax\(1\)", _NodeLinear(),
             _graph(F.one_hot(y, 2)))
    _refused(ValueError, r"node features are 1-D.*reshape", _NodeLinear(features=1), _graph(features=torch.randn(40)))
    # whole-number float labels train as int64; unlabelled nodes outside every mask may hold anything
    graph, floats = _graph(y), _graph(y.float())
    graph.test_mask, floats.test_mask = None, None
    floats.y[30:] = float("nan")
    _same_run(_run(_NodeLinear(), graph), _run(_NodeLinear(), floats))
    assert torch.isnan(floats.y[30:]).all()  # the data object is not modified


# ================================================================================ checkpoints: reading
class _Plant:
    """Unpickling this writes a marker file: what a planted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def _checkpointed(path, epochs=1, model=None, **kwargs):
    """A real checkpoint, written with the settings :func:`_refused` resumes with."""
    model = model if model is not None else _linear()
    fit(model, _data(), epochs=epochs, batch_size=8, checkpoint=path, progress=False, device=CPU,
        extra_losses={"seen": lambda ctx: ctx.logits.sum() * 0}, **kwargs)
    return model


def _resume_refused(path, match, model=None, **kwargs):
    """Resuming from ``path`` must fail naming the file, with the model and the file unchanged."""
    model = model if model is not None else _linear(seed=5)
    content = path.read_bytes()
    info = _refused(ValueError, match, model, _data(), checkpoint=path, **kwargs)
    assert str(path) in str(info.value), "the message must name the file"
    assert path.read_bytes() == content
    return info


@pytest.mark.parametrize("form", ["torch zip", "plain pickle"])
def test_a_planted_checkpoint_does_not_run_code(tmp_path, form):
    marker, path = tmp_path / "marker.txt", tmp_path / "run.pt"
    if form == "torch zip":
        torch.save({"format": "neuronlab.train.fit checkpoint", "version": 2, "history": _Plant(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Plant(marker), protocol=2))
    _resume_refused(path, r"cannot resume from the checkpoint .*could run code.*weights_only=True.*Delete the file")
    assert not marker.exists(), "fit ran code from the checkpoint"
    # the control: the plant is live, unsafe loading runs it
    if form == "torch zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.read_text() == "code ran"


def test_an_old_version_1_checkpoint_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"version": 1, "model": _linear().state_dict(), "history": [{"epoch": 1}], "epoch": 1,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}}, path)
    _resume_refused(path, r"old checkpoint \(neuronlab before checkpoint version 2\).*Delete the file to start "
                          r"over \(or pass resume=False")


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    _checkpointed(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _resume_refused(path, "cannot be read.*truncated")
    path.write_text("these are my notes, not a checkpoint\n")
    _resume_refused(path, "not a readable checkpoint|cannot be read")
    torch.save(_linear().state_dict(), path)  # a torch file, but not one of fit's
    _resume_refused(path, r"not a checkpoint written by fit\(\) \(it holds a OrderedDict")
    # resume=False overwrites such a file, as documented
    assert len(fit(_linear(), _data(), epochs=1, checkpoint=path, resume=False, progress=False, device=CPU)) == 1
    assert torch.load(path, weights_only=True)["epoch"] == 1


class _Two(nn.Module):
    """Two models of one class and one parameter count (22) whose state dicts differ in shape."""

    def __init__(self, hidden, pad):
        super().__init__()
        self.a, self.b = nn.Linear(2, hidden), nn.Linear(hidden, 2)
        self.pad = nn.Parameter(torch.zeros(pad))

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_the_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    _checkpointed(path, epochs=1, model=_Two(3, 5))
    _resume_refused(path, r"a.weight: \(3, 2\) in the file, \(4, 2\) in the model", model=_Two(4, 0))
    _resume_refused(path, "other settings.*model", model=_linear())


@pytest.mark.parametrize("damage, match", [
    (lambda s: s.update(version=3), "version 3; this neuronlab reads version 2"),
    (lambda s: s.pop("rng"), r"damaged \(it lacks \['rng'\]\)"),
    (lambda s: s["rng"]["numpy"].update(mt=torch.zeros(3, dtype=torch.int64)), "damaged.*random-number"),
    (lambda s: s.update(history="epochs"), "damaged"),
], ids=["newer version", "no RNG states", "bad NumPy RNG state", "malformed history"])
def test_a_damaged_checkpoint_is_refused(tmp_path, damage, match):
    path = tmp_path / "run.pt"
    _checkpointed(path)
    state = torch.load(path, weights_only=True)
    damage(state)
    torch.save(state, path)
    _resume_refused(path, match)


def test_the_checkpoint_holds_only_what_weights_only_loading_reads(tmp_path):
    path = tmp_path / "run.pt"
    _checkpointed(path, epochs=2, keep_best=True, scheduler="cosine",
                  callbacks=[lambda h, m: h.rows[-1].update(n=np.int64(3), f=np.float32(0.5), b=np.bool_(True))])
    state = torch.load(path, weights_only=True)  # raises if anything else were in it
    assert state["version"] == 2 and state["epoch"] == 2 and len(state["history"]) == 2
    assert {type(state["history"][-1][k]) for k in ("n", "f", "b")} == {int, float, bool}
    assert isinstance(state["rng"]["numpy"]["mt"], torch.Tensor)


# ================================================================================ checkpoints: writing
def test_a_checkpoint_path_that_is_a_folder_or_below_a_file_is_refused_before_epoch_1(tmp_path):
    _refused(ValueError, r"is a folder: pass a file path", _linear(), _data(), checkpoint=tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    _refused(ValueError, r"notes.txt is a file, not a folder", _linear(), _data(),
             checkpoint=tmp_path / "notes.txt" / "sub" / "run.pt")
    _refused(TypeError, "checkpoint must be a file path", _linear(), _data(), checkpoint=3)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_epoch_1(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        _refused(ValueError, r"folder .*ro is not writable.*writable folder", _linear(), _data(),
                 checkpoint=folder / "sub" / "run.pt")
    finally:
        folder.chmod(stat.S_IRWXU)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_folder_no_one_can_write_is_refused_before_epoch_1():
    _refused(ValueError, r"cannot write the checkpoint /proc/neuronlab-no-such/run.pt: the folder /proc .*not "
                         "writable", _linear(), _data(), checkpoint="/proc/neuronlab-no-such/run.pt")


def test_a_finished_run_is_read_without_writing(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    trained = _checkpointed(path, epochs=2)

    def refuse(path):
        raise AssertionError("a finished run needs no writable folder")

    monkeypatch.setattr(train, "_check_writable", refuse)
    model = _linear(seed=9)
    assert len(fit(model, _data(), epochs=2, batch_size=8, checkpoint=path, progress=False, device=CPU,
                   extra_losses={"seen": lambda ctx: ctx.logits.sum() * 0})) == 2
    assert _same_state(model, _snapshot(trained))


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, record_durable_writes):
    events = record_durable_writes()
    _checkpointed(tmp_path / "run.pt", epochs=2)
    expected = ["file", "rename", "folder"] if os.name == "posix" else ["file", "rename"]
    assert events == expected * 2


def test_a_file_system_that_cannot_sync_folders_is_tolerated(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _checkpointed(tmp_path / "run.pt")
    assert torch.load(tmp_path / "run.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(os, "name", "nt")  # no folder to open there: skipped
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("folder fsync attempted"))
    train._fsync_dir(tmp_path)


def test_two_threads_writing_one_checkpoint_never_collide(tmp_path):
    path, errors = tmp_path / "run.pt", []
    states = [{"value": torch.full((1000,), float(i))} for i in range(2)]

    def write(state):
        try:
            for _ in range(20):
                train._save_atomic(state, path)
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=write, args=(s,)) for s in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    value = torch.load(path, weights_only=True)["value"]
    assert torch.equal(value, states[0]["value"]) or torch.equal(value, states[1]["value"])
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporaries left


def test_a_save_that_dies_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    real_save, calls = torch.save, []

    def dying_save(obj, f):
        if isinstance(f, io.BytesIO):  # fit's check, before epoch 1, that the states can be stored safely
            return real_save(obj, f)
        calls.append(1)
        if len(calls) == 2:
            f.write(b"half a checkpoint")
            raise KeyboardInterrupt
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _checkpointed(path, epochs=3)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_a_history_column_a_checkpoint_cannot_hold_is_named_and_the_last_checkpoint_stays(tmp_path):
    path = tmp_path / "run.pt"

    def stamp(history, model):
        if len(history) == 2:
            history.rows[-1]["when"] = datetime.date(2024, 1, 1)

    with pytest.raises(TypeError, match=r"history column 'when' \(epoch 2\).*date.*number or a string"):
        _checkpointed(path, epochs=3, callbacks=[stamp])
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_a_scheduler_whose_state_is_not_plain_is_refused_before_epoch_1(tmp_path):
    class DatedScheduler:
        def __init__(self, optimizer):
            self.optimizer = optimizer

        def step(self):
            pass

        def state_dict(self):
            return {"started": datetime.date(2024, 1, 1)}

        def load_state_dict(self, state):
            pass

    _refused(TypeError, r"cannot checkpoint this run to .*run.pt: the state of the optimizer \(SGD\) or scheduler "
                        r"\(DatedScheduler\)", _linear(), _data(), checkpoint=tmp_path / "run.pt",
             scheduler=DatedScheduler)
    assert not (tmp_path / "run.pt").exists()
    # without a checkpoint the same scheduler trains
    assert len(fit(_linear(), _data(), epochs=1, scheduler=DatedScheduler, progress=False, device=CPU)) == 1


def test_resume_after_the_new_format_is_still_exact(tmp_path):
    """NumPy and Python RNG states stored as tensors and lists restore the very same random numbers."""
    path = tmp_path / "run.pt"

    def draw(model, data):
        return float(np.random.rand() + random.random() + torch.rand(1).item())

    def run(checkpoint, epochs):
        model = _linear(seed=3)
        history = fit(model, _data(), epochs=epochs, batch_size=8, seed=4, checkpoint=checkpoint,
                      metrics={"draw": draw}, progress=False, device=CPU)
        return history.table.drop(columns="time_s"), _snapshot(model)

    straight = run(None, 3)
    run(path, 1)
    _same_run(straight, run(path, 3))
