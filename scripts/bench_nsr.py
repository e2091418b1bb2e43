"""Time one training step with and without the NSR term, in one run, and print the ratio.

    python scripts/bench_nsr.py            # MLP-4 (784-256-100-10, batch 100) and the small CNN

Both variants run interleaved in the same process on the same batches (warm-up first), so the ratio is
not skewed by the machine's load drifting between two separate runs. Not part of the test suite.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from neuronlab import models
from neuronlab.nsr import NeuronSteadiness


def step_time(model, optimizer, x, y, nsr=None):
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    if nsr is not None:
        loss = loss + nsr.loss(y)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def bench(name, model, layer, x, y, repeats, memory):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    plain, regularized = [], []
    with NeuronSteadiness(model, layer, num_classes=10, lam=0.1, memory=memory) as nsr:
        for _ in range(10):  # warm-up
            step_time(model, optimizer, x, y, nsr)
        for _ in range(repeats):
            regularized.append(step_time(model, optimizer, x, y, nsr))
    for _ in range(10):
        step_time(model, optimizer, x, y)
    for _ in range(repeats):
        plain.append(step_time(model, optimizer, x, y))
    a, b = statistics.median(plain), statistics.median(regularized)
    print(f"{name:<32} plain {1e3 * a:7.3f} ms  with NSR {1e3 * b:7.3f} ms  ratio {b / a:.3f}")
    return b / a


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the two variants this many times")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    x, y = torch.randn(100, 784), torch.randint(0, 10, (100,))
    images = torch.randn(100, 1, 28, 28)
    ratios = {"mlp": [], "cnn": []}
    for _ in range(args.rounds):
        ratios["mlp"].append(bench("MLP-4, NSR on the logits (m=5)", models.paper_mlp("MLP-4"), "fc3", x, y,
                                   args.repeats, 5))
        ratios["cnn"].append(bench("SmallCNN, NSR on fc2 (m=1)", models.SmallCNN(), "fc2", images, y,
                                   max(20, args.repeats // 10), 1))
    for key, values in ratios.items():
        print(f"{key}: median ratio over {len(values)} rounds {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
