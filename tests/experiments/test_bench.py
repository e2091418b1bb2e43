"""The benchmark (neuronlab.experiments.bench, scripts/bench.py): what it compares must compute the same thing,
its tables have the promised shape and statistics. Timings themselves are not asserted (they need an idle
machine); the tables run with a few steps only."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from neuronlab import models
from neuronlab.data import load_dataset
from neuronlab.experiments import bench
from neuronlab.nsr import NeuronSteadiness

REPO = Path(__file__).resolve().parents[2]


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("memory", [1, 3])
def test_the_fifo_it_times_computes_the_same_loss_and_gradients_as_neuron_steadiness(memory):
    """Otherwise the comparison would not be fair: same penalty, same gradients, step after step."""
    torch.manual_seed(0)
    ours_model = models.MLP([6, 8, 4])
    fifo_model = models.MLP([6, 8, 4])
    fifo_model.load_state_dict(ours_model.state_dict())
    fifo = bench.FifoSteadiness(fifo_model, "fc2", num_classes=4, lam=0.3, memory=memory)
    try:
        with NeuronSteadiness(ours_model, "fc2", num_classes=4, lam=0.3, memory=memory) as nsr:
            for step in range(2 * memory + 2):
                x = torch.randn(10, 6, generator=gen(step))
                y = torch.randint(0, 4, (10,), generator=gen(40 + step))
                ours_out, fifo_out = ours_model(x), fifo_model(x)
                ours, theirs = nsr.loss(y), fifo.loss(y)
                assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
                torch.testing.assert_close(torch.autograd.grad(ours, ours_out)[0],
                                           torch.autograd.grad(theirs, fifo_out)[0])
    finally:
        fifo.remove()
    assert not fifo_model.fc2._forward_hooks


def test_the_square_term_is_lambda_times_the_mean_square():
    model = models.MLP([3, 5, 2])
    term = bench.SquareTerm(model, "fc1", lam=0.25)
    x = torch.randn(7, 3, generator=gen(1))
    model(x)
    expected = 0.25 * (model.fc1(x) ** 2).sum() / (7 * 5)
    assert term.loss(None).item() == pytest.approx(expected.item(), rel=1e-6)
    term.remove()
    assert not model.fc1._forward_hooks


def test_step_time_trains_and_interleaved_times_times_every_variant_in_turn():
    torch.manual_seed(0)
    copies = [models.MLP([4, 6, 3]) for _ in range(2)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in copies]
    x, y = torch.randn(16, 4, generator=gen(2)), torch.randint(0, 3, (16,), generator=gen(3))
    before = F.cross_entropy(copies[0](x), y).item()
    times = bench.interleaved_times(copies, optimizers, [None, bench.SquareTerm(copies[1], "fc1")], x, y,
                                    repeats=5, warmup=2)
    assert [len(t) for t in times] == [5, 5] and all(s > 0 for t in times for s in t)
    assert F.cross_entropy(copies[0](x), y).item() < before  # 7 real SGD steps were taken


def test_nsr_table_and_its_summary():
    frame = bench.nsr_table(memories=(1, 2), repeats=2, rounds=2, cnn=False)
    assert list(frame["case"]) == ["MLP-4, m=1", "MLP-4, m=2"] * 2 and list(frame["round"]) == [1, 1, 2, 2]
    for column in ("square_ratio", "nsr_ratio", "fifo_ratio", "nsr_over_fifo"):
        assert (frame[column] > 0).all()
    assert frame["nsr_over_fifo"].tolist() == pytest.approx((frame["nsr_ratio"] / frame["fifo_ratio"]).tolist())
    assert frame.attrs["machine"]["threads"] == torch.get_num_threads()
    summary = bench.nsr_summary(frame)
    assert list(summary.index) == ["MLP-4, m=1", "MLP-4, m=2"] and summary["rounds"].tolist() == [2, 2]
    assert summary["memory"].tolist() == [1, 2]


def test_nsr_summary_by_hand():
    frame = pd.DataFrame({"case": ["a", "a", "a", "b"], "round": [1, 2, 3, 1], "memory": [5, 5, 5, 50],
                          "plain_ms": [1.0, 2.0, 3.0, 1.0], "square_ratio": [1.0, 1.1, 1.2, 1.0],
                          "nsr_ratio": [1.3, 1.1, 1.2, 1.1], "fifo_ratio": [1.2, 1.3, 1.4, 1.5],
                          "nsr_extra_us": [1.0, 2.0, 3.0, 4.0], "nsr_over_fifo": [1.3 / 1.2, 1.1 / 1.3, 1.2 / 1.4,
                                                                                  1.1 / 1.5]})
    summary = bench.nsr_summary(frame)
    a, b = summary.loc["a"], summary.loc["b"]
    assert (a.nsr_ratio, a.nsr_ratio_min, a.nsr_ratio_max, a.plain_ms, a.rounds) == (1.2, 1.1, 1.3, 2.0, 3)
    assert not a.beats_fifo and b.beats_fifo  # a lost to the FIFO in round 1


def test_campaign_table_on_mnist_5k():
    digits = load_dataset("mnist-5k", seed=0)
    frame = bench.campaign_table(["IBCI-2"], digits, repeats=1)
    row = frame.iloc[0]
    assert row.network == "784-100-10"
    assert row.campaign_over_epoch == pytest.approx(row.campaign_s / row.epoch_s)
    assert row.train_samples == len(digits.y_train)


def test_analysis_tables_are_ratios_to_recording_the_responses():
    perplexity = bench.perplexity_table(layers=3, width=8, samples=200, repeats=1)
    assert perplexity["step"].tolist() == ["record", "patterns", "perplexity"]
    assert perplexity.set_index("step").loc["record", "ratio"] == 1.0
    assert perplexity.attrs["shape"] == "3 layers x 8 nodes x 200 samples"
    similarity = bench.similarity_table(neurons=6, samples=100, repeats=1)
    assert similarity["step"].tolist() == ["record", "linear_cka", "svcca", "pwcca"]
    assert (similarity["ratio"] > 0).all() and similarity.set_index("step").loc["record", "ratio"] == 1.0


def test_the_script_prints_the_machine_and_a_table():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "perplexity", "--threads", "1"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    assert out.startswith("machine: ") and "1 PyTorch threads" in out and "perplexity" in out
