r"""Dyck-1 bracket strings for next-symbol prediction (chapter 5), generated in code: nothing is downloaded.

The setup is that of Suzgun, Gehrmann, Belinkov & Shieber (2019), "LSTM Networks Can Perform Dynamic
Counting" (ACL Workshop on Deep Learning and Formal Languages), whose generator is
``tasks/dyck_generator.py`` of the same group's repository ``suzgunmirac/marnns``:

* strings come from the probabilistic context-free grammar

  .. math::

      S \to (\,S\,) \;\text{w.p. } p, \qquad S \to S\,S \;\text{w.p. } q, \qquad
      S \to \varepsilon \;\text{w.p. } 1 - p - q,

  with :math:`p = 0.5`, :math:`q = 0.25`;
* 5,000 distinct training strings of length 2-50 and 1,000 distinct test strings of length 52-100 (a Dyck
  string has even length, so these are the *even* lengths in each range: 25 of them in each);
* after every symbol the network predicts whether ``")"`` may come next, i.e. whether the depth (open
  brackets not yet closed) after that symbol is positive; ``"("`` is always allowed, so for Dyck-1 this
  one bit is the whole multi-hot target of the original code;
* a string counts as correct only if *every* step is predicted right (threshold 0.5 on a sigmoid).

How this module differs from the reference generator: the reference caps the *recursion* at the maximum
length and returns the empty string for a sub-tree that would overflow (so an over-long derivation is
silently cut short rather than rejected), and it recurses (``sys.setrecursionlimit(5000)``). Here a whole
derivation is generated iteratively and *rejected* as soon as it cannot end inside the length window, so
the strings follow the grammar's distribution conditioned on the window exactly, and there is no recursion
limit. As in the reference, :func:`dyck1_dataset` keeps distinct strings only (``unique=True``).

Tokens are ``0 = "("`` and ``1 = ")"`` (:data:`DYCK_SYMBOLS`); a batch is a :class:`DyckBatch` of padded
``[strings, steps]`` tensors, datapoints first, with a ``mask`` of the real steps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Iterable, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .registry import check_seed

__all__ = [
    "DYCK_SYMBOLS",
    "sample_dyck1",
    "dyck1_strings",
    "bracket_depth",
    "is_dyck1",
    "DyckBatch",
    "encode_dyck",
    "DyckSplits",
    "dyck1_dataset",
    "sequence_accuracy",
]

#: The two symbols of Dyck-1; a symbol's token is its index here (``0 = "("``, ``1 = ")"``).
DYCK_SYMBOLS: Tuple[str, str] = ("(", ")")

_OPEN, _CLOSE = DYCK_SYMBOLS
_EXPAND, _EMIT_CLOSE = 0, 1          # the two kinds of pending work in the iterative derivation


def _check_grammar(p: float, q: float) -> Tuple[float, float]:
    for value, what in ((p, "p"), (q, "q")):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(value):
            raise ValueError(f"{what} must be a finite probability, got {value!r}.")
    if not (p > 0 and q >= 0 and p + q < 1):
        raise ValueError(f"The Dyck-1 grammar needs p > 0, q >= 0 and p + q < 1 (so that S -> epsilon has "
                         f"positive probability), got p={p}, q={q}; the paper uses p=0.5, q=0.25.")
    return float(p), float(q)


def _check_window(min_length: int, max_length: int) -> Tuple[int, int]:
    for value, what in ((min_length, "min_length"), (max_length, "max_length")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{what} must be a non-negative integer, got {value!r}.")
    if max_length < min_length:
        raise ValueError(f"max_length ({max_length}) is smaller than min_length ({min_length}); "
                         f"pass e.g. min_length=2, max_length=50.")
    if min_length % 2 and min_length == max_length:
        raise ValueError(f"Dyck-1 strings have even length, and the window [{min_length}, {max_length}] "
                         f"holds no even length: widen it (e.g. max_length={max_length + 1}).")
    return int(min_length), int(max_length)


def _dyck_word_count(min_length: int, max_length: int) -> int:
    """The number of distinct Dyck-1 strings with a length in the window (Catalan numbers)."""
    return sum(math.comb(2 * k, k) // (k + 1) for k in range((min_length + 1) // 2, max_length // 2 + 1))


def _derive(draw, p: float, p_plus_q: float, max_length: int) -> Union[str, None]:
    """One derivation from S, left to right, or ``None`` as soon as it must exceed ``max_length``."""
    out: List[str] = []
    todo = [_EXPAND]                 # a stack: the last item is the next thing to do
    open_closes = 0                  # pending ")" on the stack: each will add one symbol
    while todo:
        if todo.pop() == _EMIT_CLOSE:
            out.append(_CLOSE)
            open_closes -= 1
            continue
        u = draw()
        if u < p:                    # S -> ( S )
            out.append(_OPEN)
            open_closes += 1
            if len(out) + open_closes > max_length:
                return None          # the string will be too long whatever the rest of the derivation does
            todo.append(_EMIT_CLOSE)
            todo.append(_EXPAND)
        elif u < p_plus_q:           # S -> S S
            todo.append(_EXPAND)
            todo.append(_EXPAND)
        # else S -> epsilon: nothing to do
    return "".join(out)


def sample_dyck1(generator: random.Random, *, min_length: int, max_length: int, p: float = 0.5,
                 q: float = 0.25, max_tries: int = 100_000) -> str:
    r"""One Dyck-1 string from the PCFG of Suzgun et al. (2019), its length in ``[min_length, max_length]``.

    .. math::

        S \to (\,S\,) \;\text{w.p. } p, \qquad S \to S\,S \;\text{w.p. } q, \qquad
        S \to \varepsilon \;\text{w.p. } 1 - p - q

    The derivation runs iteratively (an explicit stack, leftmost symbol first), so long strings cannot hit
    Python's recursion limit. A derivation is abandoned as soon as the symbols written plus the ``")"``
    still owed exceed ``max_length``, and a finished string shorter than ``min_length`` is drawn again:
    this is rejection sampling, so the result follows the grammar's distribution *conditioned on the
    window* exactly. With ``p + 2q = 1`` (the paper's values) the grammar is critical: it always ends,
    but its expected length is infinite, which is why the early abandon matters.

    Args:
        generator: a ``random.Random`` instance, the only source of randomness.
        min_length: shortest accepted length (Dyck strings have even length, so an odd bound is
            effectively rounded up).
        max_length: longest accepted length.
        p: probability of :math:`S \to (S)`, ``> 0``.
        q: probability of :math:`S \to SS`, ``>= 0``, with ``p + q < 1``.
        max_tries: derivations to try before giving up.

    Returns:
        A balanced string of ``"("`` and ``")"``.

    Raises:
        TypeError: ``generator`` is not a ``random.Random``.
        ValueError: bad probabilities, a window without an even length, or ``max_tries < 1``.
        RuntimeError: no string fell into the window in ``max_tries`` derivations (the window is too far
            out in the tail of the length distribution for these ``p``, ``q``).

    Example:
        >>> import random
        >>> s = sample_dyck1(random.Random(0), min_length=4, max_length=8)
        >>> len(s) in (4, 6, 8) and is_dyck1(s)
        True
    """
    if not isinstance(generator, random.Random):
        raise TypeError(f"generator must be a random.Random (e.g. random.Random(0)), got "
                        f"{type(generator).__name__}.")
    p, q = _check_grammar(p, q)
    min_length, max_length = _check_window(min_length, max_length)
    if isinstance(max_tries, bool) or not isinstance(max_tries, (int, np.integer)) or max_tries < 1:
        raise ValueError(f"max_tries must be a positive integer, got {max_tries!r}.")
    draw, p_plus_q = generator.random, p + q
    for _ in range(int(max_tries)):
        string = _derive(draw, p, p_plus_q, max_length)
        if string is not None and len(string) >= min_length:
            return string
    raise RuntimeError(f"No Dyck-1 string of length {min_length}-{max_length} in {max_tries} derivations "
                       f"with p={p}, q={q}: raise max_tries, widen the window, or raise p (longer strings).")


def dyck1_strings(n: int, *, min_length: int, max_length: int, seed: int, p: float = 0.5, q: float = 0.25,
                  unique: bool = False) -> List[str]:
    """``n`` Dyck-1 strings drawn by :func:`sample_dyck1` from one ``random.Random(seed)``.

    Randomness comes from Python's ``random.Random(seed)`` (Mersenne Twister) only, so the list is the same
    on every machine and torch version for the same arguments.

    Args:
        n: number of strings (``0`` gives an empty list).
        min_length: shortest length; the strings' lengths are the *even* numbers in the window.
        max_length: longest length.
        seed: integer in ``[0, 2**32)``.
        p: probability of ``S -> (S)``.
        q: probability of ``S -> SS``.
        unique: keep drawing until ``n`` *distinct* strings are found (what the reference generator does);
            this draws without replacement, so short strings are rarer than under the grammar.

    Returns:
        The strings, in the order they were drawn.

    Raises:
        ValueError: bad ``n``, seed, window or probabilities; with ``unique``, more strings asked for than
            the window holds (its size is a sum of Catalan numbers).
        RuntimeError: the window is too unlikely (see :func:`sample_dyck1`), or, with ``unique``, new
            strings became too rare to find.

    Example:
        >>> dyck1_strings(3, min_length=2, max_length=2, seed=0)
        ['()', '()', '()']
        >>> sorted(dyck1_strings(2, min_length=4, max_length=4, seed=0, unique=True))
        ['(())', '()()']
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    seed = check_seed(seed)
    p, q = _check_grammar(p, q)
    min_length, max_length = _check_window(min_length, max_length)
    if not isinstance(unique, (bool, np.bool_)):
        raise ValueError(f"unique must be True or False, got {unique!r}.")
    if unique and max_length < 400:           # larger windows hold astronomically many strings
        available = _dyck_word_count(min_length, max_length)
        if n > available:
            raise ValueError(f"Only {available} distinct Dyck-1 strings have a length in [{min_length}, "
                             f"{max_length}], fewer than n={n}: widen the window or pass unique=False.")
    generator = random.Random(seed)
    strings: List[str] = []
    seen = set()
    repeats_left = 1_000 * int(n) + 100_000   # a bound on duplicate draws, so a near-exhausted window ends
    while len(strings) < n:
        string = sample_dyck1(generator, min_length=min_length, max_length=max_length, p=p, q=q)
        if unique:
            if string in seen:
                repeats_left -= 1
                if repeats_left < 0:
                    raise RuntimeError(f"Found only {len(strings)} distinct strings of length {min_length}-"
                                       f"{max_length}: new ones became too rare; ask for fewer or widen it.")
                continue
            seen.add(string)
        strings.append(string)
    return strings


def bracket_depth(string: str) -> List[int]:
    """Bracket depth after each symbol: the number of ``"("`` minus the number of ``")"`` so far.

    The depth may go negative (``")("`` gives ``[-1, 0]``); :func:`is_dyck1` uses that to reject a string.

    Args:
        string: a string of ``"("`` and ``")"``.

    Returns:
        One integer per symbol.

    Raises:
        TypeError: ``string`` is not a ``str``.
        ValueError: a character other than ``"("`` and ``")"``.

    Example:
        >>> bracket_depth("(()())")
        [1, 2, 1, 2, 1, 0]
    """
    if not isinstance(string, str):
        raise TypeError(f"bracket_depth needs a str of '(' and ')', got {type(string).__name__}.")
    depth, depths = 0, []
    for position, symbol in enumerate(string):
        if symbol == _OPEN:
            depth += 1
        elif symbol == _CLOSE:
            depth -= 1
        else:
            raise ValueError(f"Character {symbol!r} at position {position} of {_short(string)} is not a bracket: "
                             f"Dyck-1 strings hold only '(' and ')'.")
        depths.append(depth)
    return depths


def is_dyck1(string: str) -> bool:
    """Whether ``string`` is a Dyck-1 word: only brackets, no prefix with more ``")"`` than ``"("``, and
    balanced at the end. The empty string is one.

    Raises:
        TypeError: ``string`` is not a ``str``.

    Example:
        >>> is_dyck1("(()())"), is_dyck1(")("), is_dyck1("(()")
        (True, False, False)
    """
    if not isinstance(string, str):
        raise TypeError(f"is_dyck1 needs a str, got {type(string).__name__}.")
    if set(string) - set(DYCK_SYMBOLS):
        return False
    depths = bracket_depth(string)
    return not depths or (min(depths) >= 0 and depths[-1] == 0)


def _short(string: str, limit: int = 40) -> str:
    return repr(string if len(string) <= limit else string[: limit - 3] + "...")


@dataclass(repr=False, eq=False)
class DyckBatch:
    """Bracket strings as padded ``[strings, steps]`` tensors for next-symbol prediction.

    Built by :func:`encode_dyck`. Row ``i`` holds string ``i`` in its first ``lengths[i]`` steps; the rest
    is padding (token 0, target 0, depth 0, ``mask`` False). ``T`` is the longest length. Use
    :meth:`one_hot` for network inputs, :meth:`subset` for a part of the batch, :meth:`to` for a device.
    """

    #: Tokens ``[N, T]`` (``0 = "("``, ``1 = ")"``), ``int64``, padded with 0.
    tokens: torch.Tensor
    #: ``[N, T]`` float: 1 where ``")"`` may follow the symbol (the depth after it is positive), else 0.
    targets: torch.Tensor
    #: ``[N, T]`` ``int64``: the bracket depth after each symbol (0 on padding).
    depth: torch.Tensor
    #: ``[N, T]`` bool: True on the real symbols, False on padding.
    mask: torch.Tensor
    #: ``[N]`` ``int64``: the length of every string.
    lengths: torch.Tensor

    def __post_init__(self):
        shape = tuple(self.tokens.shape)
        if len(shape) != 2:
            raise ValueError(f"tokens must be [strings, steps], got shape {shape}.")
        for field in fields(self)[1:4]:
            value = getattr(self, field.name)
            if tuple(value.shape) != shape:
                raise ValueError(f"{field.name} has shape {tuple(value.shape)}, tokens {shape}: they must match.")
        if tuple(self.lengths.shape) != shape[:1]:
            raise ValueError(f"lengths must have shape ({shape[0]},), got {tuple(self.lengths.shape)}.")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def num_steps(self) -> int:
        """``T``, the number of (padded) steps."""
        return int(self.tokens.shape[1])

    def one_hot(self) -> torch.Tensor:
        """The inputs one-hot, ``[N, T, 2]`` float32; padding steps are all zero."""
        encoded = F.one_hot(self.tokens, num_classes=len(DYCK_SYMBOLS)).to(torch.float32)
        return encoded * self.mask.unsqueeze(-1).to(torch.float32)

    def subset(self, index: Union[int, slice, Sequence[int], torch.Tensor]) -> "DyckBatch":
        """The strings at ``index`` (int, slice, list of ints, index or boolean tensor), re-padded to their
        own longest length.

        Raises:
            IndexError: an index out of range (as tensor indexing raises it).
        """
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            index = [int(index)]
        if not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.tokens.device)
            if index.dtype != torch.bool:
                index = index.long()
        lengths = self.lengths[index]
        steps = int(lengths.max()) if lengths.numel() else 0
        return DyckBatch(*(t[index][:, :steps] for t in (self.tokens, self.targets, self.depth, self.mask)),
                         lengths=lengths)

    def to(self, device: Union[str, torch.device]) -> "DyckBatch":
        """A copy with every tensor on ``device``."""
        return DyckBatch(*(getattr(self, f.name).to(device) for f in fields(self)))

    def to_strings(self) -> List[str]:
        """The bracket strings back, one per row."""
        rows = self.tokens.cpu().tolist()
        return ["".join(DYCK_SYMBOLS[t] for t in row[:length]) for row, length in zip(rows, self.lengths.tolist())]

    def __repr__(self) -> str:
        lengths = self.lengths.float()
        span = f"{int(self.lengths.min())}-{int(self.lengths.max())}" if len(self) else "-"
        mean = f"{float(lengths.mean()):.1f}" if len(self) else "-"
        return f"DyckBatch(strings={len(self)}, steps={self.num_steps}, lengths={span}, mean_length={mean})"


def encode_dyck(strings: Iterable[str], *, require_balanced: bool = True) -> DyckBatch:
    """Encode bracket strings as a :class:`DyckBatch`: tokens, targets, depths, mask and lengths.

    The target after a symbol is 1 exactly when ``")"`` may follow, i.e. when the depth after it is
    positive (``"("`` may always follow). The depths come from one cumulative sum over the padded batch.

    Args:
        strings: a list (or other iterable) of strings of ``"("`` and ``")"``; empty strings are allowed
            (a row of padding).
        require_balanced: also reject strings that end with brackets still open; pass ``False`` to encode
            prefixes (e.g. ``"(((("`` to probe a depth-tracking unit beyond the training depths).

    Returns:
        A :class:`DyckBatch` on the CPU.

    Raises:
        TypeError: ``strings`` is a single ``str`` (wrap it in a list), or holds something other than
            ``str``.
        ValueError: no strings; a string with another character, or one whose depth goes below 0, or
            (with ``require_balanced``) one that does not end at depth 0; the message names the first such
            string by its index.

    Example:
        >>> batch = encode_dyck(["(())", "()"])
        >>> batch.tokens
        tensor([[0, 0, 1, 1],
                [0, 1, 0, 0]])
        >>> batch.targets
        tensor([[1., 1., 1., 0.],
                [1., 0., 0., 0.]])
        >>> batch.mask.sum(1)
        tensor([4, 2])
    """
    if isinstance(strings, (str, bytes)):
        raise TypeError("encode_dyck needs a list of strings; got a single string: pass [string].")
    strings = list(strings)
    if not strings:
        raise ValueError("encode_dyck got no strings: pass a non-empty list such as ['(())', '()'].")
    wrong = next((i for i, s in enumerate(strings) if not isinstance(s, str)), None)
    if wrong is not None:
        raise TypeError(f"String {wrong} is a {type(strings[wrong]).__name__}, not a str of '(' and ')'.")
    lengths = torch.tensor([len(s) for s in strings], dtype=torch.int64)
    ends = torch.cumsum(lengths, 0)
    # one code point per character, whatever the characters are
    codes = torch.from_numpy(np.frombuffer("".join(strings).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
                             .astype(np.int64))
    opens, closes = codes == ord(_OPEN), codes == ord(_CLOSE)
    foreign = ~(opens | closes)
    num_strings, num_steps = len(strings), int(lengths.max())
    rows = torch.repeat_interleave(torch.arange(num_strings), lengths)
    columns = torch.arange(codes.numel()) - torch.repeat_interleave(ends - lengths, lengths)
    has_foreign = torch.zeros(num_strings, dtype=torch.bool).index_put_((rows[foreign],), torch.tensor(True))
    tokens = torch.zeros(num_strings, num_steps, dtype=torch.int64)
    tokens[rows, columns] = closes.long()
    mask = torch.arange(num_steps).unsqueeze(0) < lengths.unsqueeze(1)
    steps = torch.where(tokens == 1, -1, 1) * mask                     # +1 per "(", -1 per ")", 0 on padding
    depth = torch.cumsum(steps, dim=1)
    below = (depth < 0).any(dim=1)
    final = depth[:, -1] if num_steps else torch.zeros(num_strings, dtype=torch.int64)
    invalid = has_foreign | below | ((final != 0) if require_balanced else False)
    if invalid.any():
        which = int(invalid.nonzero()[0])               # the first invalid string, whatever its fault
        if has_foreign[which]:
            position = next(i for i, symbol in enumerate(strings[which]) if symbol not in DYCK_SYMBOLS)
            raise ValueError(f"String {which} ({_short(strings[which])}) has {strings[which][position]!r} at "
                             f"position {position}: Dyck-1 strings hold only '(' and ')'.")
        if below[which]:
            position = int((depth[which] < 0).nonzero()[0])
            raise ValueError(f"String {which} ({_short(strings[which])}) closes a bracket that was never opened "
                             f"(depth -1 at position {position}): it is not a Dyck-1 string.")
        raise ValueError(f"String {which} ({_short(strings[which])}) ends with {int(final[which])} bracket(s) still "
                         f"open; pass require_balanced=False to encode prefixes.")
    depth = depth * mask
    return DyckBatch(tokens=tokens, targets=(depth > 0).to(torch.float32), depth=depth, mask=mask,
                     lengths=lengths)


@dataclass(repr=False, eq=False)
class DyckSplits:
    """The training and test strings of a sequence task, encoded, with the protocol in words."""

    #: Training strings.
    train: DyckBatch
    #: Test strings, longer than the training strings (a test of generalization in length).
    test: DyckBatch
    #: Short name, e.g. ``"dyck1"``.
    name: str
    #: The protocol in one paragraph (grammar, sizes, lengths, seed and its source).
    description: str

    def __repr__(self) -> str:
        return f"DyckSplits(name={self.name!r}, train={self.train!r}, test={self.test!r})"


def dyck1_dataset(*, num_train: int = 5000, train_lengths: Tuple[int, int] = (2, 50), num_test: int = 1000,
                  test_lengths: Tuple[int, int] = (52, 100), seed: int = 0, p: float = 0.5, q: float = 0.25,
                  unique: bool = True) -> DyckSplits:
    """The Dyck-1 next-symbol task of Suzgun et al. (2019): short training strings, longer test strings.

    Defaults are the paper's: 5,000 training strings of even length 2-50, 1,000 test strings of even
    length 52-100, grammar ``p=0.5``, ``q=0.25``, distinct strings within each split (``unique``, as the
    reference generator keeps them). The two splits are drawn from two independent ``random.Random``
    streams, whose seeds are spawned from ``seed`` by ``numpy.random.SeedSequence``, so changing the size
    of one split leaves the other unchanged.

    Args:
        num_train: number of training strings.
        train_lengths: ``(shortest, longest)`` training length.
        num_test: number of test strings.
        test_lengths: ``(shortest, longest)`` test length.
        seed: integer in ``[0, 2**32)``.
        p: probability of ``S -> (S)``.
        q: probability of ``S -> SS``.
        unique: distinct strings within each split.

    Returns:
        A :class:`DyckSplits` named ``"dyck1"``.

    Raises:
        ValueError: bad sizes, windows, seed or probabilities (see :func:`dyck1_strings`).

    Example:
        >>> data = dyck1_dataset(num_train=20, num_test=5, seed=1)
        >>> len(data.train), len(data.test), int(data.test.lengths.min()) >= 52
        (20, 5, True)
    """
    seed = check_seed(seed)
    for value, what in ((num_train, "num_train"), (num_test, "num_test")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}.")
    windows = []
    for value, what in ((train_lengths, "train_lengths"), (test_lengths, "test_lengths")):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"{what} must be a pair (shortest, longest), e.g. (2, 50); got {value!r}.")
        windows.append(_check_window(*value))
    train_seed, test_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    train = dyck1_strings(num_train, min_length=windows[0][0], max_length=windows[0][1], seed=train_seed,
                          p=p, q=q, unique=unique)
    test = dyck1_strings(num_test, min_length=windows[1][0], max_length=windows[1][1], seed=test_seed,
                         p=p, q=q, unique=unique)
    kind = "distinct " if unique else ""
    description = (f"Dyck-1 next-symbol prediction (Suzgun, Gehrmann, Belinkov & Shieber 2019; generator of "
                   f"suzgunmirac/marnns): strings from the PCFG S -> (S) w.p. {p:g}, SS w.p. {q:g}, empty "
                   f"w.p. {1 - p - q:g}, kept when their length falls in the window; {num_train} {kind}training "
                   f"strings of even length {windows[0][0]}-{windows[0][1]} and {num_test} {kind}test strings "
                   f"of even length {windows[1][0]}-{windows[1][1]}, seed {seed}. After every symbol, predict "
                   f"whether ')' may follow (depth > 0); a string is correct only if every step is.")
    return DyckSplits(train=encode_dyck(train), test=encode_dyck(test), name="dyck1", description=description)


def sequence_accuracy(probabilities_or_logits: torch.Tensor, batch: DyckBatch, *, logits: bool = True,
                      threshold: float = 0.5) -> Tuple[float, float]:
    r"""Step accuracy and whole-string accuracy of next-symbol predictions (Suzgun et al., 2019).

    A step is predicted "``)`` allowed" when its probability is at least ``threshold`` (the reference
    code's ``>= 0.5``), with :math:`\sigma(\text{logit})` as the probability when ``logits``. Padding
    steps are ignored.

    .. math::

        \text{step} = \frac{\#\{\text{right real steps}\}}{\#\{\text{real steps}\}}, \qquad
        \text{sequence} = \frac{\#\{\text{strings with every real step right}\}}{\#\{\text{strings}\}}

    An empty string has no step to get wrong and counts as right.

    Args:
        probabilities_or_logits: ``[N, T]`` predictions, one per step, the shape of ``batch.targets``
            (a model's ``[N, T, 1]`` output is accepted too).
        batch: the :class:`DyckBatch` the predictions are for.
        logits: the predictions are logits (``True``) or probabilities in ``[0, 1]`` (``False``).
        threshold: probability from which a step counts as "``)`` allowed", in ``(0, 1)``.

    Returns:
        ``(step_accuracy, sequence_accuracy)``, two floats in ``[0, 1]``.

    Raises:
        ValueError: a shape other than the batch's, NaN, probabilities outside ``[0, 1]``, a threshold
            outside ``(0, 1)``, or a batch without real steps.

    Example:
        >>> batch = encode_dyck(["(())", "()"])
        >>> right = batch.targets * 2 - 1              # logits with the right sign
        >>> sequence_accuracy(right, batch)
        (1.0, 1.0)
        >>> right[0, 1] = -1.0                         # one wrong step in string 0
        >>> sequence_accuracy(right, batch)
        (0.8333333333333334, 0.5)
    """
    if not isinstance(batch, DyckBatch):
        raise TypeError(f"batch must be a DyckBatch (from encode_dyck), got {type(batch).__name__}.")
    scores = torch.as_tensor(probabilities_or_logits).detach()
    if scores.dim() == 3 and scores.shape[-1] == 1:
        scores = scores.squeeze(-1)
    if tuple(scores.shape) != tuple(batch.targets.shape):
        raise ValueError(f"predictions have shape {tuple(scores.shape)}, the batch's targets "
                         f"{tuple(batch.targets.shape)}: pass one prediction per step of every string.")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
    scores = scores.to(torch.float64)
    mask = batch.mask.to(scores.device)
    if torch.isnan(scores[mask]).any():
        raise ValueError("predictions hold NaN on real steps: check the model's output.")
    if logits:
        probabilities = torch.sigmoid(scores)
    else:
        if ((scores[mask] < 0) | (scores[mask] > 1)).any():
            raise ValueError("probabilities must lie in [0, 1]; pass logits=True for raw model outputs.")
        probabilities = scores
    total_steps = int(mask.sum())
    if total_steps == 0:
        raise ValueError("the batch has no real steps (only empty strings): nothing to score.")
    wrong = ((probabilities >= threshold) != (batch.targets.to(scores.device) > 0.5)) & mask
    step_accuracy = (total_steps - int(wrong.sum())) / total_steps
    sequence_accuracy_ = float((~wrong.any(dim=1)).to(torch.float64).mean())
    return step_accuracy, sequence_accuracy_
