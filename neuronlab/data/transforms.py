"""Array and tensor transforms shared by the dataset loaders, and the crop-and-flip augmentation.

Nothing here knows about a particular dataset; every function takes plain arrays or tensors:

* split sizes and seeded, stratified splits: :func:`resolve_size`, :func:`stratified_split_off` and
  :func:`stratified_indices` (used by the image hold-outs and the graph masks alike);
* per-channel standardization with the statistics of one split: :func:`channel_statistics` and
  :func:`standardize_`;
* :func:`random_crop_flip`, the standard CIFAR training augmentation, for a whole batch at once.

This is the bottom of ``neuronlab.data``: it imports nothing from the other modules of the package, and
scikit-learn is imported only when a stratified split is actually drawn.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "resolve_size",
    "stratified_split_off",
    "stratified_indices",
    "channel_statistics",
    "standardize_",
    "random_crop_flip",
]


# --------------------------------------------------------------------------------------------------
# Seeded stratified splits
# --------------------------------------------------------------------------------------------------


def resolve_size(value: Any, total: int, what: str) -> int:
    """A count (int >= 0) or a fraction of ``total`` (0 <= float < 1) as a count.

    Args:
        value: the size as given by the user, e.g. ``500`` or ``0.1``.
        total: the number of samples a fraction refers to.
        what: the argument's name, for the error message (e.g. ``"val_size"``).

    Returns:
        The count; a fraction is rounded to the nearest integer.

    Raises:
        ValueError: a value that is neither a non-negative int nor a float in ``[0, 1)``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{what} must be a count (int >= 0) or a fraction (0 <= float < 1), got {value!r}.")
    if isinstance(value, (float, np.floating)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{what}={value!r}: a float is a fraction of the data and must be in [0, 1); "
                             f"pass an int for a number of samples.")
        return int(round(float(value) * total))
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}.")
    return int(value)


def stratified_split_off(index: np.ndarray, labels: np.ndarray, count: int, rng: np.random.RandomState,
                         what: str, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out of ``count`` entries of ``index``: returns ``(rest, held_out)``.

    Args:
        index: the entries to split (sample or node indices).
        labels: the label of every entry of ``index``, in the same order.
        count: how many entries to hold out; ``0`` holds out nothing (and draws nothing from ``rng``).
        rng: the random state of scikit-learn's ``train_test_split``; successive calls with one ``rng``
            continue its stream, which is what makes a two-stage split reproducible from one seed.
        what: the name of the size being held out, for the error message (e.g. ``"val_size"``).
        name: the dataset's name, for the error message.

    Raises:
        ValueError: the split is impossible (a class too small for the requested sizes); the message
            gives the class counts and says what to change.
    """
    if count == 0:
        return index, index[:0]
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(index, test_size=count, stratify=labels, random_state=rng)
    except ValueError as err:
        present = np.bincount(labels)
        raise ValueError(
            f"Cannot hold out a stratified {what} set of {count} samples from {len(index)} samples of "
            f"{name!r} (class counts {present.tolist()}): {err} A stratified split needs at least one "
            f"sample per class in every split and two samples per class overall; choose a different "
            f"{what}.") from None
    return np.asarray(rest), np.asarray(held)


def stratified_indices(labels: np.ndarray, n_val: int, n_test: int, seed: int, name: str,
                       val_what: str = "val_size", test_what: str = "test_size"
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified ``(train, val, test)`` index arrays; test is held out first, then val.

    Args:
        labels: one integer label per sample.
        n_val: number of validation samples (may be ``0``).
        n_test: number of test samples (may be ``0``).
        seed: seed of the split; the same seed gives the same three index arrays.
        name: the dataset's name, for error messages.
        val_what: what the caller calls the validation size, for error messages.
        test_what: what the caller calls the test size, for error messages.

    Raises:
        ValueError: no training sample would be left, or a class is too small to stratify.
    """
    total = len(labels)
    if n_val + n_test >= total:
        raise ValueError(
            f"{val_what} ({n_val}) + {test_what} ({n_test}) = {n_val + n_test} leaves no training data out of "
            f"{total} samples of {name!r}; choose smaller sizes.")
    rng = np.random.RandomState(seed)
    index = np.arange(total)
    rest, test = stratified_split_off(index, labels, n_test, rng, test_what, name)
    train, val = stratified_split_off(rest, labels[rest], n_val, rng, val_what, name)
    return train, val, test


# --------------------------------------------------------------------------------------------------
# Standardization
# --------------------------------------------------------------------------------------------------


def channel_statistics(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) standard deviation of an image batch ``[N, C, H, W]``.

    A channel with zero spread gets a standard deviation of ``1``, so that standardizing shifts it but
    never divides by zero.

    Returns:
        ``(mean, std)``, each of shape ``[C]``.
    """
    dims = (0, 2, 3)
    mean = x.mean(dim=dims)
    std = x.std(dim=dims, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean, std


def standardize_(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Subtract ``mean`` and divide by ``std``, channel by channel, in place on ``x`` ``[N, C, H, W]``.

    In place because the loaders standardize freshly made tensors that nothing else refers to; a full
    image dataset is not copied once more.

    Returns:
        ``x`` itself.
    """
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------


def random_crop_flip(x: torch.Tensor, padding: int = 4, generator: Optional[torch.Generator] = None,
                     flip_prob: float = 0.5) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once.

    The standard CIFAR training augmentation (pad by 4, crop 32x32 at a random offset, mirror with
    probability 1/2), with an independent offset and flip for every sample, done by one gather on the
    padded batch (advanced indexing; no loop over samples). Apply it to a training batch on any device.

    Args:
        x: a batch ``[N, C, H, W]``.
        padding: zero padding on each side; offsets are uniform in ``0 .. 2 * padding``. ``0`` disables
            cropping.
        generator: a ``torch.Generator`` for reproducible draws (its device is used for the draws);
            ``None`` uses the global CPU generator.
        flip_prob: probability of a horizontal flip per sample (``0`` disables flipping, ``1`` always flips).

    Returns:
        A new tensor with the shape, dtype and device of ``x``.

    Raises:
        ValueError: ``x`` is not 4-D, ``padding`` is negative, or ``flip_prob`` is outside ``[0, 1]``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"random_crop_flip expects a batch tensor [N, C, H, W], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
    if not 0.0 <= float(flip_prob) <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}.")
    n, c, h, w = x.shape
    padding = int(padding)
    draw_device = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=draw_device).to(x.device)
    flip = (torch.rand(n, generator=generator, device=draw_device) < float(flip_prob)).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)          # [N, H]
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)          # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
