"""Timings of what people wait for, each as a ratio measured in one run on one machine.

``python scripts/bench.py`` prints every table; the chapters' cost sections call the same functions.

* :func:`nsr_table`: a training step of MLP-4 (784-256-100-10, batch 100, SGD) with
  :class:`~neuronlab.nsr.NeuronSteadiness` on the logits at each memory :math:`m`, beside the official
  code's first-in-first-out scheme (:class:`FifoSteadiness`) and the cheapest possible extra term
  (:class:`SquareTerm`, ``lam * mean(x**2)``), all as ratios to the plain cross-entropy step.
* :func:`campaign_table`: Neuron Campaign initialization of a network against one training epoch of it.
* :func:`perplexity_table`: activation patterns and layer perplexity of 10 layers x 100 nodes x 60,000
  samples against the forward pass that records them.
* :func:`similarity_table`: linear CKA, SVCCA and PWCCA of two 500-neuron layers on 10,000 samples
  against the forward pass that records them.

Timed variants run in the same process on the same inputs, interleaved (step by step, or repeat by
repeat), so a drift in the machine's speed hits them alike; a table reports medians. Timings on a machine
that is busy with other work are not comparable with anything: run on an idle one.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import campaign, cooperating, models, similarity
from ..nsr import NeuronSteadiness
from ..probe import collect_responses

__all__ = ["MEMORIES", "machine", "SquareTerm", "FifoSteadiness", "step_time", "interleaved_times", "nsr_table",
           "nsr_summary", "campaign_table", "perplexity_table", "similarity_table", "main"]

#: The memories :math:`m` of :func:`nsr_table` (official: 5 for MLPs, 1 for CNNs).
MEMORIES = (1, 5, 20, 50)


def machine(device: Optional[str] = None) -> Dict[str, object]:
    """What the timings ran on: processor, logical CPUs, PyTorch's threads, versions and the device."""
    device = torch.device(device or "cpu")
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    except OSError:
        pass
    return {"cpu": name, "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


class _OutputHook:
    """Keeps the last output of one layer (with its graph); the hook is removed by :meth:`remove`."""

    def __init__(self, model: nn.Module, layer: str):
        self.handle = model.get_submodule(layer).register_forward_hook(self._keep)
        self.response: Optional[torch.Tensor] = None

    def _keep(self, module, inputs, output):
        self.response = output

    def remove(self) -> None:
        self.handle.remove()


class SquareTerm(_OutputHook):
    """The cheapest extra loss term on a layer, ``lam * mean(x**2)``: the floor any extra term pays."""

    def __init__(self, model: nn.Module, layer: str, lam: float = 0.1):
        super().__init__(model, layer)
        self.lam = lam

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        return self.lam * self.response.square().mean()


class FifoSteadiness(_OutputHook):
    """NSR as the official code computes it, for comparison only: the detached responses and labels of the
    last ``memory`` batches kept in a list, the class means by a scatter over their concatenation each
    step, then ``lam * mean((x - mu[y])**2)``. Its cost grows with ``memory``."""

    def __init__(self, model: nn.Module, layer: str, num_classes: int, lam: float, memory: int):
        super().__init__(model, layer)
        self.num_classes, self.lam, self.memory = num_classes, lam, memory
        self.queue: List = []

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        x = self.response
        self.queue.insert(0, (x.detach(), y))
        del self.queue[self.memory:]
        past = torch.cat([r for r, _ in self.queue])
        labels = torch.cat([t for _, t in self.queue])
        sums = x.new_zeros(self.num_classes, past.shape[1]).index_add_(0, labels, past)
        counts = torch.bincount(labels, minlength=self.num_classes).clamp_min(1)
        means = sums / counts[:, None]
        return self.lam * ((x - means[y]) ** 2).mean()


def step_time(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              term=None, device=None) -> float:
    """Wall time of one training step (cross-entropy, plus ``term.loss(y)`` when given); on CUDA the
    device is synchronized before and after, so the time covers the kernels, not just their launch."""
    sync = torch.cuda.synchronize if device is not None and torch.device(device).type == "cuda" else None
    if sync:
        sync(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    if term is not None:
        loss = loss + term.loss(y)
    loss.backward()
    optimizer.step()
    if sync:
        sync(device)
    return time.perf_counter() - start


def interleaved_times(models_: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer], terms: Sequence,
                      x: torch.Tensor, y: torch.Tensor, repeats: int, warmup: int = 10, device=None
                      ) -> List[List[float]]:
    """Step times of several variants (a model copy, its optimizer and its extra term each), taken in
    turn step by step so that drifts in the machine's speed hit them alike; ``warmup`` untimed steps."""
    times: List[List[float]] = [[] for _ in models_]
    for step in range(warmup + repeats):
        for i, (model, optimizer, term) in enumerate(zip(models_, optimizers, terms)):
            elapsed = step_time(model, optimizer, x, y, term, device)
            if step >= warmup:
                times[i].append(elapsed)
    return times


def _nsr_case(case: str, model: nn.Module, layer: str, x, y, memory: int, repeats: int, device) -> Dict:
    """One round of one case: plain, the square term, NeuronSteadiness and the FIFO, interleaved."""
    copies = [copy.deepcopy(model).to(device) for _ in range(4)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in copies]
    square = SquareTerm(copies[1], layer)
    fifo = FifoSteadiness(copies[3], layer, 10, 0.1, memory)
    try:
        with NeuronSteadiness(copies[2], layer, num_classes=10, lam=0.1, memory=memory) as nsr:
            times = interleaved_times(copies, optimizers, [None, square, nsr, fifo], x, y, repeats,
                                      device=device)
    finally:
        square.remove()
        fifo.remove()
    plain, square_s, nsr_s, fifo_s = (statistics.median(t) for t in times)
    return {"case": case, "memory": memory, "plain_ms": 1e3 * plain, "square_ratio": square_s / plain,
            "nsr_ratio": nsr_s / plain, "fifo_ratio": fifo_s / plain, "nsr_extra_us": 1e6 * (nsr_s - plain),
            "nsr_over_fifo": nsr_s / fifo_s}


def nsr_table(memories: Sequence[int] = MEMORIES, *, repeats: int = 300, rounds: int = 3, cnn: bool = True,
              device: Optional[str] = None, seed: int = 0) -> pd.DataFrame:
    """NSR's cost per training step: one row per case and round.

    Cases: MLP-4 with NSR on the logits at each memory in ``memories``; with ``cnn`` also the small CNN
    with NSR on ``fc2`` at :math:`m = 1` (the official CNN setting; ``max(20, repeats // 10)`` steps).
    Columns: ``plain_ms`` (median plain step), the ratios to it of the step with the square term
    (``square_ratio``, the floor of any extra term), with :class:`~neuronlab.nsr.NeuronSteadiness`
    (``nsr_ratio``) and with the FIFO (``fifo_ratio``), ``nsr_extra_us`` and ``nsr_over_fifo``.
    ``frame.attrs["machine"]`` says where it ran (:func:`machine`)."""
    device = torch.device(device or "cpu")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(100, 784, generator=generator).to(device)
    y = torch.randint(0, 10, (100,), generator=generator).to(device)
    images = torch.randn(100, 1, 28, 28, generator=generator).to(device)
    torch.manual_seed(seed)
    mlp, cnn_model = models.paper_mlp("MLP-4"), models.SmallCNN()
    rows = []
    for round_ in range(1, rounds + 1):
        for memory in memories:
            rows.append({"round": round_, **_nsr_case(f"MLP-4, m={memory}", mlp, "fc3", x, y, memory, repeats,
                                                      device)})
        if cnn:
            rows.append({"round": round_, **_nsr_case("SmallCNN, m=1", cnn_model, "fc2", images, y, 1,
                                                      max(20, repeats // 10), device)})
    frame = pd.DataFrame(rows)
    frame.attrs["machine"] = machine(str(device))
    return frame


def nsr_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case of :func:`nsr_table` (in order): the median over rounds of every column, the smallest
    and largest NSR ratio, and whether NSR was faster than the FIFO in every round (``beats_fifo``)."""
    groups = frame.groupby("case", sort=False)
    columns = ["memory", "plain_ms", "square_ratio", "nsr_ratio", "fifo_ratio", "nsr_extra_us", "nsr_over_fifo"]
    summary = groups[columns].median()
    summary["nsr_ratio_min"] = groups["nsr_ratio"].min()
    summary["nsr_ratio_max"] = groups["nsr_ratio"].max()
    summary["beats_fifo"] = groups["nsr_over_fifo"].max() < 1
    summary["memory"] = summary["memory"].astype(int)
    summary["rounds"] = groups.size()
    summary.attrs = dict(frame.attrs)
    return summary


def _interleaved_seconds(tasks: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median wall time of each task, the tasks run in turn ``repeats`` times after one untimed call."""
    for task in tasks.values():
        task()
    times: Dict[str, List[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def campaign_table(architectures: Sequence[str] = ("IBCI-3",), data=None, *, repeats: int = 5, seed: int = 0
                   ) -> pd.DataFrame:
    """Neuron Campaign initialization against one training epoch, per network (one row each).

    ``data``: a dataset of :func:`neuronlab.data.load_dataset` (default ``"mnist-5k"``). The campaign is
    :func:`neuronlab.campaign.campaign_` on the training split with its defaults; the epoch is the
    chapter-2 protocol (:func:`neuronlab.experiments.ch02_campaign.fit_protocol`, SGD, batch 100, the
    validation and test errors recorded), both on the CPU, interleaved, medians over ``repeats``.
    ``"IBCI-3"`` is 784-256-100-10; names as :func:`neuronlab.models.build_model` takes them."""
    from . import ch02_campaign
    from ..data import load_dataset

    data = load_dataset("mnist-5k") if data is None else data
    rows = []
    for arch in architectures:
        model = models.build_model(arch, data)
        x = data.x_train

        def campaign_once(model=model):
            campaign.campaign_(model, x, data.y_train, generator=torch.Generator().manual_seed(seed))

        def epoch_once(model=model):
            ch02_campaign.fit_protocol(model, data, epochs=1, seed=seed)

        seconds = _interleaved_seconds({"campaign": campaign_once, "epoch": epoch_once}, repeats)
        widths = getattr(model, "widths", None)
        rows.append({"network": "-".join(map(str, widths)) if widths else arch,
                     "campaign_s": seconds["campaign"], "epoch_s": seconds["epoch"],
                     "campaign_over_epoch": seconds["campaign"] / seconds["epoch"],
                     "train_samples": len(data.y_train)})
    frame = pd.DataFrame(rows)
    frame.attrs["machine"] = machine()
    return frame


def _against_recording(tasks: Dict[str, Callable[[], object]], repeats: int, shape: str) -> pd.DataFrame:
    """The tasks' median seconds (interleaved) and their ratio to the ``record`` task, as a table."""
    seconds = _interleaved_seconds(tasks, repeats)
    frame = pd.DataFrame({"step": list(seconds), "seconds": list(seconds.values())})
    frame["ratio"] = frame["seconds"] / seconds["record"]
    frame.attrs["machine"] = machine()
    frame.attrs["shape"] = shape
    return frame


def perplexity_table(layers: int = 10, width: int = 100, samples: int = 60_000, *, repeats: int = 3,
                     seed: int = 0) -> pd.DataFrame:
    """Chapter 4's analysis of ``layers`` ReLU layers of ``width`` nodes on ``samples`` inputs (MNIST's
    size by default), against the forward pass of a 784-wide-input MLP that records those layers.

    Rows: ``record`` (the forward pass, :func:`neuronlab.probe.collect_responses`), ``patterns`` (binary
    activation patterns, :meth:`neuronlab.cooperating.ActivationPatterns.from_responses`) and
    ``perplexity`` (:func:`neuronlab.cooperating.layer_perplexity` of every layer); ``seconds`` and
    ``ratio`` to ``record``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = models.MLP([784] + [width] * layers + [10])
    x = torch.randn(samples, 784, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    names = cooperating.relu_layers(model)
    responses = collect_responses(model, x, names)
    patterns = [cooperating.ActivationPatterns.from_responses(responses[name]) for name in names]
    tasks = {
        "record": lambda: collect_responses(model, x, names),
        "patterns": lambda: [cooperating.ActivationPatterns.from_responses(responses[n]) for n in names],
        "perplexity": lambda: [cooperating.layer_perplexity(p, labels, 10) for p in patterns],
    }
    return _against_recording(tasks, repeats, f"{layers} layers x {width} nodes x {samples:,} samples")


def similarity_table(neurons: int = 500, samples: int = 10_000, *, repeats: int = 3, seed: int = 0
                     ) -> pd.DataFrame:
    """Chapter 5's layer comparisons of two ``neurons``-wide layers on ``samples`` inputs, against the
    forward pass that records them (the two hidden linear layers of a 784-``neurons``-``neurons``-10
    MLP, before their ReLU).

    Rows: ``record``, ``linear_cka`` (feature space, :func:`neuronlab.similarity.linear_cka`),
    ``svcca`` (:func:`neuronlab.similarity.svcca_similarity`, 99 % of the variance kept) and ``pwcca``
    (:func:`neuronlab.similarity.pwcca_similarity`); ``seconds`` and ``ratio`` to ``record``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = models.MLP([784, neurons, neurons, 10])
    x = torch.randn(samples, 784, generator=generator)
    names = ["fc1", "fc2"]  # before the ReLU: no dead (constant) neuron, which CCA cannot take
    responses = collect_responses(model, x, names)
    first, second = (responses[name] for name in names)
    tasks = {
        "record": lambda: collect_responses(model, x, names),
        "linear_cka": lambda: similarity.linear_cka(first, second),
        "svcca": lambda: similarity.svcca_similarity(first, second),
        "pwcca": lambda: similarity.pwcca_similarity(first, second),
    }
    return _against_recording(tasks, repeats, f"2 layers x {neurons} neurons x {samples:,} samples")


TABLES = ("nsr", "campaign", "perplexity", "similarity")


def _positive_int(text: str) -> int:
    """``text`` as a count: an integer of at least 1 (an ``argparse`` type with a clear message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give a count of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, pd.DataFrame]:
    """Parse ``argv`` (every count is checked before anything is timed), print the tables and return
    them by name."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="*", metavar="TABLE",
                        help=f"which tables ({', '.join(TABLES)}; default all)")
    parser.add_argument("--repeats", type=_positive_int, default=300,
                        help="timed NSR steps per variant and round (at least 1)")
    parser.add_argument("--rounds", type=_positive_int, default=3, help="NSR rounds (at least 1)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="PyTorch's CPU threads (default: PyTorch's choice)")
    parser.add_argument("--device", default=None, help="device for the NSR table (e.g. cuda)")
    args = parser.parse_args(argv)
    for table in args.tables:
        if table not in TABLES:
            parser.error(f"unknown table {table!r}: choose from {', '.join(TABLES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = args.tables or list(TABLES)
    info = machine(args.device)
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['threads']} PyTorch threads, "
          f"torch {info['torch']}, device {info['device']}")
    out: Dict[str, pd.DataFrame] = {}
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.precision", 3):
        if "nsr" in wanted:
            out["nsr"] = nsr_summary(nsr_table(repeats=args.repeats, rounds=args.rounds, device=args.device))
            print("\nNSR: step time with each term / plain step (medians over rounds)")
            print(out["nsr"].to_string())
        if "campaign" in wanted:
            out["campaign"] = campaign_table()
            print("\nNeuron Campaign initialization / one training epoch (mnist-5k)")
            print(out["campaign"].to_string(index=False))
        if "perplexity" in wanted:
            out["perplexity"] = perplexity_table()
            print(f"\nLayer perplexity, {out['perplexity'].attrs['shape']} (ratio to recording the responses)")
            print(out["perplexity"].to_string(index=False))
        if "similarity" in wanted:
            out["similarity"] = similarity_table()
            print(f"\nCKA / SVCCA / PWCCA, {out['similarity'].attrs['shape']} (ratio to recording the responses)")
            print(out["similarity"].to_string(index=False))
    return out
