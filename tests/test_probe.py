"""neuronlab.probe: recorded responses equal hand computations; hooks never leak."""

import pytest
import torch
from torch import nn

from neuronlab.models import GCN, MLP, SmallCNN
from neuronlab.probe import (LayerNotFoundError, channel_responses, collect_responses, forward_call_order, is_graph,
                             output_layer, record, resolve_layers)


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


def test_resolve_layers_keeps_order_drops_duplicates_and_finds_nested_names():
    model = MLP([6, 5, 3])
    resolved = resolve_layers(model, ["act1", "fc1", model.fc1, "act1", model.fc2])
    assert list(resolved) == ["act1", "fc1", "fc2"] and resolved["fc2"] is model.fc2
    assert list(resolve_layers(model, model.act1)) == ["act1"]
    from neuronlab.models import resnet18_cifar, vgg19_cifar

    net = resnet18_cifar(width=4)
    assert resolve_layers(net, "layer2.0.conv1")["layer2.0.conv1"] is net.layer2[0].conv1
    vgg = vgg19_cifar(width=4)
    assert resolve_layers(vgg, "features.block1")["features.block1"] is vgg.features.block1
    with pytest.raises(TypeError):
        resolve_layers(model, [3])
    with pytest.raises(ValueError):
        resolve_layers(model, [])


def test_unknown_name_error_lists_the_layers_and_is_a_key_and_value_error():
    model = MLP([6, 5, 3])
    with pytest.raises(KeyError) as info:
        resolve_layers(model, "conv1")
    assert isinstance(info.value, ValueError)
    assert "flatten, fc1, act1, fc2" in str(info.value)
    with pytest.raises(ValueError, match="no layer named"):
        record(model, "fc9")


def test_flatten_and_channel_positions_match_hand_reshapes():
    torch.manual_seed(0)
    model, x = SmallCNN(channels=(3, 4), hidden=8), torch.randn(2, 1, 28, 28)
    with record(model, "conv1") as raw:
        model(x)
    out = raw["conv1"]
    assert out.shape == (2, 3, 28, 28)
    with record(model, "conv1", reduce="flatten") as flat:
        model(x)
    assert torch.allclose(flat["conv1"], out.reshape(2, -1))
    with record(model, ["conv1", "fc1"], reduce="channel_positions") as pos:
        model(x)
    assert torch.allclose(pos["conv1"], out.permute(0, 2, 3, 1).reshape(-1, 3))
    assert pos["fc1"].shape == (2, 8)  # 2-D outputs are left unchanged
    with pytest.raises(ValueError, match="reduce"):
        record(model, "conv1", reduce="mean")


def test_tuple_outputs_are_recorded_by_their_first_element():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])

    torch.manual_seed(0)
    net, x = Recurrent(), torch.randn(2, 5, 3)
    with record(net, "rnn") as rec:
        net(x)
    assert torch.allclose(rec["rnn"], net.rnn(x)[0])


def test_recorder_lifecycle_exit_without_enter_and_reentry():
    model, x = MLP([6, 5, 3]), torch.randn(2, 6)
    rec = record(model, "fc1")
    rec.__exit__(None, None, None)  # never entered: harmless
    rec.remove()
    with rec:
        assert rec.active and len(model.fc1._forward_hooks) == 1
        model(x)
    assert not rec.active and _no_hooks(model)
    first = rec["fc1"]
    model(x[:1])  # outside the block: not recorded
    assert rec["fc1"].shape == (2, 5) and torch.equal(rec["fc1"], first)
    with rec:  # entered again: earlier responses forgotten
        with pytest.raises(RuntimeError, match="not called"):
            rec["fc1"]
        model(x[:1])
    assert rec["fc1"].shape == (1, 5) and _no_hooks(model)
    rec.clear()
    with pytest.raises(RuntimeError):
        rec.responses


def test_nsr_style_penalty_on_logits_backpropagates_through_accumulated_responses():
    torch.manual_seed(0)
    model, x = MLP([4, 3], activation="linear"), torch.randn(6, 4)
    with record(model, "fc1", detach=False, accumulate=True) as rec:
        model(x[:2]), model(x[2:])
    z = rec["fc1"]
    assert z.shape == (6, 3) and z.requires_grad
    z.sum().backward()
    # d/db sum(xW^T + b) = number of samples for every output unit
    assert torch.allclose(model.fc1.bias.grad, torch.full((3,), 6.0))


def test_collect_responses_accepts_tensors_tuples_and_datasets_and_keeps_eval_mode():
    torch.manual_seed(0)
    model, x = MLP([6, 5, 3], dropout=0.5).eval(), torch.randn(10, 6)
    expected = torch.relu(model.fc1(x)).detach()
    dataset = torch.utils.data.TensorDataset(x, torch.arange(10))
    for data in (x, (x, torch.arange(10)), dataset):
        out = collect_responses(model, data, "act1", batch_size=4)
        assert torch.allclose(out["act1"], expected, atol=1e-6) and not out["act1"].requires_grad
    assert not model.training


def test_collect_responses_restores_mode_and_removes_hooks_on_error():
    model = MLP([6, 5, 3])
    model.train()
    with pytest.raises(RuntimeError):
        collect_responses(model, torch.randn(4, 7), ["fc1"])  # wrong input size
    assert model.training and _no_hooks(model)
    with pytest.raises(ValueError, match="no batch"):
        collect_responses(model, [], ["fc1"])


def test_graphsage_responses_with_a_node_mask():
    from torch_geometric.data import Data

    from neuronlab.models import GraphSAGE

    torch.manual_seed(0)
    graph = Data(x=torch.randn(5, 4), edge_index=torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]]))
    graph.train_mask = torch.tensor([True, False, True, False, True])
    model = GraphSAGE(4, 6, 2, num_layers=3).train()
    with record(model, ["conv2", "act2"]) as rec:
        logits = model(graph.x, graph.edge_index)
    assert logits.shape == (5, 2) and rec["conv2"].shape == (5, 6)
    assert rec["act2"][graph.train_mask].shape == (3, 6)
    assert model.training and _no_hooks(model)


def test_forward_call_order_follows_the_pass_not_the_definition_and_removes_its_hooks():
    class Reversed(nn.Module):
        def __init__(self):
            super().__init__()
            self.second = nn.Linear(4, 2)   # defined first, called last
            self.first = nn.Linear(3, 4)
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.second(self.first(x))

    model = Reversed()
    layers = [(name, m) for name, m in model.named_children()]
    assert [name for name, _ in layers] == ["second", "first", "unused"]
    assert forward_call_order(model, torch.randn(5, 3), layers) == ["first", "second", "unused"]
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError):
        forward_call_order(model, torch.randn(5, 7), layers)  # wrong input size: the hooks still go
    assert all(not m._forward_hooks for m in model.modules())


def test_output_layer_and_graph_detection():
    assert output_layer(MLP([4, 8, 3])) == "fc2"
    with pytest.raises(ValueError, match="no nn.Linear"):
        output_layer(nn.Sequential(nn.ReLU()))

    class Graph:
        x = torch.zeros(3, 2)
        edge_index = torch.zeros(2, 4, dtype=torch.long)

    assert is_graph(Graph()) and not is_graph(torch.zeros(3, 2))
    assert not is_graph({"x": Graph.x, "edge_index": Graph.edge_index})  # a dict of tensors is not a graph
