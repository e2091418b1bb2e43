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

import pytest  # noqa: E402


@pytest.fixture
def tiny_mnist_like():
    """Random 784-feature 'images' with 10 balanced classes, in the data form neuronlab.train.fit takes
    (attributes x_/y_ train/val/test, num_classes, name): 200 / 50 / 50 samples."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    return SimpleNamespace(name="tiny", num_classes=10,
                           x_train=torch.randn(200, 784, generator=g), y_train=torch.arange(10).repeat(20),
                           x_val=torch.randn(50, 784, generator=g), y_val=torch.arange(10).repeat(5),
                           x_test=torch.randn(50, 784, generator=g), y_test=torch.arange(10).repeat(5))


@pytest.fixture
def record_durable_writes(monkeypatch):
    """Call it to start recording, in order, every ``os.fsync`` (``"file"`` or ``"folder"``) and every
    ``os.replace`` (``"rename"``); returns the list the events go into. The calls still happen."""
    import stat

    def start():
        events, real_fsync, real_replace = [], os.fsync, os.replace

        def fsync(fd):
            events.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
            real_fsync(fd)

        def replace(src, dst):
            events.append("rename")
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        return events

    return start
