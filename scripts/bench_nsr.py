"""Time one training step with and without the NSR term, in one run, and print the ratio.

    python scripts/bench_nsr.py            # MLP-4 (784-256-100-10, batch 100; m = 5 and 50) and the small CNN

All variants run in the same process on the same batches (warm-up first), each on its own copy of the
model, interleaved step by step and over several rounds, so the ratios are not skewed by the machine's
load drifting between separate runs. Besides
``NeuronSteadiness`` it times a first-in-first-out implementation in the style of the official code (the
raw detached responses and labels of the last m batches kept in a list, class means by scatter-mean over
their concatenation), to show what the running class sums buy. Not part of the test suite.
"""

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from neuronlab import models
from neuronlab.nsr import NeuronSteadiness


def step_time(model, optimizer, x, y, nsr=None, device=None):
    """Wall time of one training step (cross-entropy, plus ``nsr.loss`` when given); on CUDA the device is
    synchronized before and after, so the time covers the kernels, not just their launch."""
    sync = torch.cuda.synchronize if device is not None and torch.device(device).type == "cuda" else None
    if sync:
        sync(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    if nsr is not None:
        loss = loss + nsr.loss(y)
    loss.backward()
    optimizer.step()
    if sync:
        sync(device)
    return time.perf_counter() - start


def interleaved_times(models, optimizers, terms, x, y, repeats, warmup=10, device=None):
    """Step times of several variants (a model copy, its optimizer and its extra term each), taken in turn
    step by step so that drifts in the machine's speed hit them alike; ``warmup`` untimed steps first."""
    times = [[] for _ in models]
    for step in range(warmup + repeats):
        for i, (model, optimizer, term) in enumerate(zip(models, optimizers, terms)):
            elapsed = step_time(model, optimizer, x, y, term, device)
            if step >= warmup:
                times[i].append(elapsed)
    return times


class FifoSteadiness:
    """The official code's scheme, for comparison only: raw responses of the last ``memory`` batches."""

    def __init__(self, model, layer, num_classes, lam, memory):
        self.num_classes, self.lam, self.memory = num_classes, lam, memory
        self.queue = []
        self.handle = dict(model.named_modules())[layer].register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.response = output

    def loss(self, y):
        self.queue.insert(0, (self.response.detach(), y))
        del self.queue[self.memory:]
        past = torch.cat([r for r, _ in self.queue])
        labels = torch.cat([t for _, t in self.queue])
        sums = torch.zeros(self.num_classes, past.shape[1]).index_add_(0, labels, past)
        counts = torch.bincount(labels, minlength=self.num_classes).clamp_min(1)
        means = sums / counts[:, None]
        return self.lam * ((self.response - means[y]) ** 2).mean()

    def remove(self):
        self.handle.remove()


def bench(name, model, layer, x, y, repeats, memory):
    """Median step time of plain training, NeuronSteadiness and the FIFO, each on its own copy of the model,
    the three variants interleaved step by step so that drifts in the machine's speed hit them alike."""
    copies = [copy.deepcopy(model) for _ in range(3)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in copies]
    fifo = FifoSteadiness(copies[2], layer, 10, 0.1, memory)
    try:
        with NeuronSteadiness(copies[1], layer, num_classes=10, lam=0.1, memory=memory) as nsr:
            times = interleaved_times(copies, optimizers, [None, nsr, fifo], x, y, repeats)
    finally:
        fifo.remove()
    plain, ours, official = (statistics.median(t) for t in times)
    print(f"{name:<34} plain {1e3 * plain:7.3f} ms | NeuronSteadiness {1e3 * ours:7.3f} ms, ratio "
          f"{ours / plain:.3f}, {1e6 * (ours - plain):+5.0f} us | FIFO {1e3 * official:7.3f} ms, "
          f"ratio {official / plain:.3f}")
    return ours / plain, official / plain


def positive_int(text):
    """``text`` as a count: an integer of at least 1 (``argparse`` type; a clear message otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give a count of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of at least 1")
    return value


def main(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``; ``--repeats`` and ``--rounds`` must be at least 1, checked
    before anything is timed) and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=positive_int, default=300,
                        help="timed steps per variant and round (at least 1; the CNN gets max(20, repeats // 10))")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="alternate the variants this many times (at least 1)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    x, y = torch.randn(100, 784), torch.randint(0, 10, (100,))
    images = torch.randn(100, 1, 28, 28)
    ratios = {"MLP-4": [], "MLP-4, m=50": [], "SmallCNN": []}
    for _ in range(args.rounds):
        ratios["MLP-4"].append(bench("MLP-4, NSR on the logits (m=5)", models.paper_mlp("MLP-4"), "fc3", x, y,
                                     args.repeats, 5))
        ratios["MLP-4, m=50"].append(bench("MLP-4, NSR on the logits (m=50)", models.paper_mlp("MLP-4"), "fc3",
                                           x, y, args.repeats, 50))
        ratios["SmallCNN"].append(bench("SmallCNN, NSR on fc2 (m=1)", models.SmallCNN(), "fc2", images, y,
                                        max(20, args.repeats // 10), 1))
    for key, values in ratios.items():
        ours, fifo = zip(*values)
        print(f"{key}: median step-time ratio over {len(values)} rounds: NeuronSteadiness "
              f"{statistics.median(ours):.3f}, FIFO {statistics.median(fifo):.3f}")


if __name__ == "__main__":
    main()
