import os
import sys
import warnings
from pathlib import Path

# Tests always run in the quick profile and never touch a user's data folder by accident.
os.environ.setdefault("NEURONLAB_PROFILE", "quick")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
