"""neuronlab.probe: recorded responses equal hand computations; hooks never leak."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuronlab.models import GCN, MLP, SmallCNN
from neuronlab.probe import LayerNotFoundError, channel_responses, collect_responses, record, resolve_layers


def _no_hooks(model):
    return all(len(m._forward_hooks) == 0 for m in model.modules())


def test_recorded_responses_equal_hand_computation():
    torch.manual_seed(0)
    model, x = MLP([6, 5, 3]), torch.randn(4, 6)
    with record(model, ["fc1", model.act1]) as rec:
        model(x)
    expected = x @ model.fc1.weight.T + model.fc1.bias
    assert torch.allclose(rec["fc1"], expected, atol=1e-6)
    assert torch.allclose(rec["act1"], expected.clamp(min=0), atol=1e-6)
    assert not rec["fc1"].requires_grad and _no_hooks(model)


def test_hooks_are_removed_when_the_body_raises():
    model = MLP([6, 5, 3])
    with pytest.raises(RuntimeError, match="boom"):
        with record(model, "fc1"):
            model(torch.randn(2, 6))
            raise RuntimeError("boom")
    assert _no_hooks(model)


def test_undetached_response_carries_the_gradient():
    torch.manual_seed(0)
    model, x = MLP([6, 5, 3]), torch.randn(4, 6)
    with record(model, "fc1", detach=False) as rec:
        model(x)
    rec["fc1"].pow(2).sum().backward()
    # d/dW sum((xW^T + b)^2) = 2 (xW^T + b)^T x
    z = x @ model.fc1.weight.detach().T + model.fc1.bias.detach()
    assert torch.allclose(model.fc1.weight.grad, 2 * z.T @ x, atol=1e-5)


def test_channel_reductions():
    t = torch.randn(2, 3, 4, 5)
    assert torch.allclose(channel_responses(t, "mean"), t.mean(dim=(2, 3)))
    positions = channel_responses(t, "positions")
    assert positions.shape == (2 * 4 * 5, 3)
    assert torch.equal(positions[4 * 5 + 7], t[1, :, 1, 2])  # sample 1, position (1, 2) -> row 20 + 7
    model = SmallCNN()
    with record(model, "conv1", reduce="channel_mean") as rec:
        model(torch.randn(2, 1, 28, 28))
    assert rec["conv1"].shape == (2, 32)


def test_accumulate_and_collect_over_batches_match_one_full_pass():
    torch.manual_seed(0)
    model, x = MLP([6, 5, 3], dropout=0.5), torch.randn(10, 6)
    model.eval()
    with record(model, "act1") as rec:
        model(x)
    full = rec["act1"]
    with record(model, "act1", accumulate=True) as rec:
        model(x[:4]), model(x[4:])
    assert torch.allclose(rec["act1"], full)
    model.train()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(10)), batch_size=3)
    collected = collect_responses(model, loader, ["act1"])
    assert torch.allclose(collected["act1"], full) and model.training and _no_hooks(model)


def test_graph_layer_responses_cover_all_nodes():
    from torch_geometric.data import Data

    graph = Data(x=torch.randn(3, 4), edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    model = GCN(4, 8, 2)
    out = collect_responses(model, graph, ["conv1", "act1"])
    assert out["conv1"].shape == (3, 8) and torch.equal(out["act1"], out["conv1"].clamp(min=0))


def test_unknown_and_uncalled_layers_give_clear_errors():
    model = MLP([6, 5, 3])
    with pytest.raises(LayerNotFoundError, match="Did you mean 'fc1'"):
        resolve_layers(model, "fc_1")
    with pytest.raises(LayerNotFoundError, match="not part of"):
        resolve_layers(model, nn.Linear(2, 2))

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    net = Skips()
    with record(net, ["used", "unused"]) as rec:
        net(torch.randn(1, 2))
    with pytest.raises(RuntimeError, match="not called during the forward pass"):
        rec["unused"]


def test_reentering_an_active_recorder_is_an_error():
    model = MLP([6, 5, 3])
    rec = record(model, "fc1")
    with rec:
        with pytest.raises(RuntimeError, match="already active"):
            rec.__enter__()
    assert _no_hooks(model)
