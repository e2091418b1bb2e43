"""Timings of what people wait for, each as a ratio measured in one run on one machine.

    python scripts/bench.py                  # every table (about 3 minutes on 2 CPU cores)
    python scripts/bench.py nsr --threads 2  # NSR per memory m beside the official-style FIFO
    python scripts/bench.py nsr --device cuda

Tables: ``nsr`` (a training step with NeuronSteadiness, the FIFO and the cheapest extra term, per memory
m), ``campaign`` (Neuron Campaign initialization against one training epoch), ``perplexity`` (10 layers
x 100 nodes x 60,000 samples) and ``similarity`` (CKA, SVCCA, PWCCA on 500 neurons x 10,000 samples).
The code is :mod:`neuronlab.experiments.bench`; the book's cost sections call the same functions.
Not part of the test suite: timings need an idle machine.
"""

from neuronlab.experiments.bench import main

if __name__ == "__main__":
    main()
