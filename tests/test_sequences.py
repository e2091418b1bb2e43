"""Dyck-1 strings (neuronlab.data.sequences) and the bracket-reading network (neuronlab.models.BracketRNN).

The grammar S -> (S) w.p. p | SS w.p. q | empty w.p. r = 1 - p - q is checked against closed forms derived
here, independently of the sampler:

* P(S derives the empty string) = e solves e = r + q e^2 (S -> SS -> empty empty counts too), so
  e = (1 - sqrt(1 - 4 q r)) / (2 q): 2 - sqrt(3) = 0.268 for p = 0.5, q = 0.25, *not* r = 0.25;
* a non-empty word w has P(w) = [p [w = (u)] P(u) + q sum_{w = uv, u, v non-empty} P(u) P(v)] / (1 - 2 q e)
  (the splits with an empty half, u = empty or v = empty, give the 2 q e P(w) moved to the left);
* the length distribution is the power series f(x) = r + p x f(x) + q f(x)^2 (x counts bracket pairs),
  solved by fixed-point iteration on truncated polynomials.

A sampler restricted to a length window draws from these probabilities renormalized over the window.
"""

import inspect
import itertools
import math
import random
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from neuronlab.data import (DYCK_SYMBOLS, DyckBatch, DyckSplits, bracket_depth, dyck1_dataset, dyck1_strings,
                            encode_dyck, is_dyck1, sample_dyck1, sequence_accuracy)
from neuronlab.models import BracketRNN, build_model


# ------------------------------------------------------------------------------ independent references
def plain_depths(string):
    """Depth after each symbol, by a plain loop (the reference for the tensor code)."""
    out, depth = [], 0
    for symbol in string:
        depth += 1 if symbol == "(" else -1
        out.append(depth)
    return out


def balanced_plain(string):
    depths = plain_depths(string)
    return set(string) <= {"(", ")"} and all(d >= 0 for d in depths) and (not depths or depths[-1] == 0)


def dyck_words(length):
    """Every Dyck word of ``length`` symbols, by brute force over all bracket strings."""
    return ["".join(s) for s in itertools.product("()", repeat=length) if balanced_plain("".join(s))]


def empty_probability(p, q):
    r = 1 - p - q
    return (1 - math.sqrt(1 - 4 * q * r)) / (2 * q) if q > 0 else r


def word_probabilities(p, q, max_length):
    """P(S derives w) for every Dyck word of length <= max_length (the grammar is ambiguous: all derivations)."""
    e = empty_probability(p, q)
    prob = {"": e}
    for length in range(2, max_length + 1, 2):
        for word in dyck_words(length):
            nested = 0.0
            if balanced_plain(word[1:-1]) and all(d > 0 for d in plain_depths(word)[:-1]):
                nested = p * prob[word[1:-1]]          # the first "(" is closed by the last ")"
            split = sum(prob[word[:k]] * prob[word[k:]] for k in range(2, length, 2)
                        if balanced_plain(word[:k]))
            prob[word] = (nested + q * split) / (1 - 2 * q * e)
    return prob


def length_series(p, q, pairs, iterations=400):
    """Coefficients of f(x) = r + p x f + q f^2 up to x^pairs: P(length = 2n) for n = 0 .. pairs."""
    r = 1 - p - q
    f = np.zeros(pairs + 1)
    for _ in range(iterations):
        shifted = np.concatenate([[0.0], f[:-1]])
        f = r * np.eye(1, pairs + 1)[0] + p * shifted + q * np.convolve(f, f)[: pairs + 1]
    return f


# ------------------------------------------------------------------------------ the grammar's statistics
def test_closed_forms_agree_with_each_other():
    """The per-word probabilities, summed by length, give the power-series coefficients (two derivations)."""
    for p, q in ((0.5, 0.25), (0.3, 0.4)):
        words = word_probabilities(p, q, 8)
        series = length_series(p, q, 4)
        by_length = [sum(v for w, v in words.items() if len(w) == 2 * n) for n in range(5)]
        np.testing.assert_allclose(by_length, series, rtol=1e-12)
    assert empty_probability(0.5, 0.25) == pytest.approx(2 - math.sqrt(3))


@pytest.mark.parametrize("p, q", [(0.5, 0.25), (0.3, 0.4)])
def test_word_frequencies_follow_the_grammar_conditioned_on_the_window(p, q):
    """All 9 Dyck words of length <= 6, sampled with the window [0, 6]: P(w) / P(|S| <= 6), within 5 sigma."""
    exact = word_probabilities(p, q, 6)
    total = sum(exact.values())
    strings = dyck1_strings(20_000, min_length=0, max_length=6, seed=3, p=p, q=q)
    counts = {w: 0 for w in exact}
    for s in strings:
        counts[s] += 1                                   # a KeyError would mean a string outside the grammar
    for word, probability in exact.items():
        share = probability / total
        sigma = math.sqrt(share * (1 - share) / len(strings))
        assert abs(counts[word] / len(strings) - share) < 5 * sigma, (word, counts[word], share)


def test_empty_string_fraction_is_two_minus_root_three_not_one_minus_p_minus_q():
    """With p = 0.5, q = 0.25 the root picks S -> empty w.p. 0.25, but S -> SS -> empty empty also gives the
    empty string: P(empty) = 2 - sqrt(3) = 0.268, renormalized over the window [0, 40]."""
    series = length_series(0.5, 0.25, 20)
    share = (2 - math.sqrt(3)) / series.sum()
    strings = dyck1_strings(20_000, min_length=0, max_length=40, seed=11)
    observed = sum(s == "" for s in strings) / len(strings)
    sigma = math.sqrt(share * (1 - share) / len(strings))
    assert abs(observed - share) < 5 * sigma
    assert abs(observed - 0.25) > 5 * sigma              # the naive 1 - p - q is distinguishable


def test_test_window_lengths_follow_the_power_series():
    """Lengths in the paper's test window [52, 100] (25 even lengths): a chi-square test against the
    renormalized coefficients of f(x) = r + p x f + q f^2."""
    series = length_series(0.5, 0.25, 50)[26:51]
    expected_share = series / series.sum()
    strings = dyck1_strings(3_000, min_length=52, max_length=100, seed=5)
    counts = np.bincount([len(s) // 2 - 26 for s in strings], minlength=25)
    assert stats.chisquare(counts, expected_share * len(strings)).pvalue > 1e-4


# ------------------------------------------------------------------------------ generation
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), low=st.integers(0, 30), span=st.integers(1, 30),
       unique=st.booleans())
def test_generated_strings_are_balanced_even_and_in_the_window(seed, low, span, unique):
    high = low + span
    strings = dyck1_strings(40, min_length=low, max_length=high, seed=seed, unique=unique and low >= 10)
    assert len(strings) == 40
    assert all(balanced_plain(s) and is_dyck1(s) for s in strings)
    assert all(low <= len(s) <= high and len(s) % 2 == 0 for s in strings)


def test_dataset_has_the_papers_sizes_windows_and_distinct_strings_in_under_two_seconds():
    start = time.perf_counter()
    data = dyck1_dataset()
    seconds = time.perf_counter() - start
    assert seconds < 2.0
    assert isinstance(data, DyckSplits) and data.name == "dyck1"
    assert (len(data.train), len(data.test)) == (5000, 1000)
    for batch, (low, high) in ((data.train, (2, 50)), (data.test, (52, 100))):
        strings = batch.to_strings()
        assert len(set(strings)) == len(strings)         # distinct, as the reference generator keeps them
        assert all(balanced_plain(s) for s in strings)
        assert int(batch.lengths.min()) >= low and int(batch.lengths.max()) <= high
        assert not (batch.lengths % 2).any()
    assert "Suzgun" in data.description and "5000" in data.description and "52-100" in data.description


def test_seeded_generation_is_reproducible_and_the_splits_come_from_independent_streams():
    assert dyck1_strings(50, min_length=2, max_length=50, seed=7) == \
        dyck1_strings(50, min_length=2, max_length=50, seed=7)
    assert dyck1_strings(50, min_length=2, max_length=50, seed=7) != \
        dyck1_strings(50, min_length=2, max_length=50, seed=8)
    base = dyck1_dataset(num_train=200, num_test=50, seed=4)
    again = dyck1_dataset(num_train=200, num_test=50, seed=4)
    assert torch.equal(base.train.tokens, again.train.tokens) and torch.equal(base.test.tokens, again.test.tokens)
    # changing one split's size leaves the other split as it was: two streams, not one shared stream
    assert dyck1_dataset(num_train=200, num_test=80, seed=4).train.to_strings() == base.train.to_strings()
    assert dyck1_dataset(num_train=300, num_test=50, seed=4).test.to_strings() == base.test.to_strings()
    other = dyck1_dataset(num_train=200, num_test=50, seed=5)
    assert other.train.to_strings() != base.train.to_strings()


def test_the_same_generator_state_gives_the_same_string():
    a, b = random.Random(123), random.Random(123)
    assert [sample_dyck1(a, min_length=10, max_length=20) for _ in range(5)] == \
        [sample_dyck1(b, min_length=10, max_length=20) for _ in range(5)]


def test_deep_strings_need_no_recursion():
    """p = 0.9, q = 0.05: long, deeply nested strings, generated under a recursion limit only a little above
    the current stack depth; a recursive generator would need a frame per nesting level."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 60)
    try:
        strings = dyck1_strings(5, min_length=400, max_length=600, seed=0, p=0.9, q=0.05)
    finally:
        sys.setrecursionlimit(limit)
    assert max(max(plain_depths(s)) for s in strings) > 100
    assert all(balanced_plain(s) and 400 <= len(s) <= 600 for s in strings)


def test_unique_strings_are_distinct_and_a_too_small_window_is_refused():
    words = dyck1_strings(14, min_length=8, max_length=8, seed=0, unique=True)
    assert sorted(words) == sorted(dyck_words(8))        # Catalan(4) = 14: all of them
    with pytest.raises(ValueError, match="Only 14 distinct"):
        dyck1_strings(15, min_length=8, max_length=8, seed=0, unique=True)


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=0.0), "p > 0"), (dict(p=0.6, q=0.4), "p \\+ q < 1"), (dict(q=-0.1), "q >= 0"),
    (dict(p=float("nan")), "finite"), (dict(min_length=3, max_length=3), "even length"),
    (dict(min_length=10, max_length=4), "smaller than"), (dict(min_length=-2), "non-negative"),
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(n=-1), "n must"),
])
def test_bad_generation_arguments_are_refused(kwargs, match):
    arguments = dict(n=3, min_length=2, max_length=10, seed=0)
    arguments.update(kwargs)
    n = arguments.pop("n")
    with pytest.raises(ValueError, match=match):
        dyck1_strings(n, **arguments)


def test_sampler_needs_a_random_generator_and_gives_up_after_max_tries():
    with pytest.raises(TypeError, match="random.Random"):
        sample_dyck1(torch.Generator(), min_length=2, max_length=4)
    with pytest.raises(RuntimeError, match="max_tries"):
        sample_dyck1(random.Random(0), min_length=400, max_length=400, max_tries=5)
    with pytest.raises(ValueError, match="train_lengths"):
        dyck1_dataset(train_lengths=50)
    with pytest.raises(ValueError, match="num_test"):
        dyck1_dataset(num_test=0)


# ------------------------------------------------------------------------------ depth, validity, encoding
def test_bracket_depth_hand_cases():
    assert bracket_depth("(()())") == [1, 2, 1, 2, 1, 0]
    assert bracket_depth("") == []
    assert bracket_depth(")(") == [-1, 0]
    assert bracket_depth("((()))()") == [1, 2, 3, 2, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="position 1"):
        bracket_depth("(x)")
    with pytest.raises(TypeError):
        bracket_depth(["(", ")"])


def test_is_dyck1_accepts_balanced_strings_only():
    assert all(is_dyck1(s) for s in ["", "()", "(())", "()()", "(()())"])
    assert not any(is_dyck1(s) for s in [")(", "(()", "())(", "(", ")", "(a)", "[]"])


def test_encoding_of_a_hand_example():
    batch = encode_dyck(["(()())", "()", ""])
    assert batch.tokens.dtype == torch.int64 and batch.targets.dtype == torch.float32
    assert batch.depth.dtype == torch.int64 and batch.mask.dtype == torch.bool
    assert batch.tokens.tolist() == [[0, 0, 1, 0, 1, 1], [0, 1, 0, 0, 0, 0], [0] * 6]
    assert batch.depth.tolist() == [[1, 2, 1, 2, 1, 0], [1, 0, 0, 0, 0, 0], [0] * 6]
    assert batch.targets.tolist() == [[1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0], [0] * 6]
    assert batch.mask.tolist() == [[True] * 6, [True, True] + [False] * 4, [False] * 6]
    assert batch.lengths.tolist() == [6, 2, 0] and len(batch) == 3 and batch.num_steps == 6
    one_hot = batch.one_hot()
    assert one_hot.shape == (3, 6, 2)
    assert torch.equal(one_hot.sum(-1), batch.mask.float())                     # padding rows all zero
    assert torch.equal(one_hot[..., 1], (batch.tokens == 1).float() * batch.mask)
    assert batch.to_strings() == ["(()())", "()", ""]


def test_subset_keeps_rows_and_repads_to_their_longest_string():
    batch = encode_dyck(["(()())", "()", "(())"])
    part = batch.subset([1, 2])
    assert part.to_strings() == ["()", "(())"] and part.num_steps == 4
    assert part.subset(0).to_strings() == ["()"] and part.subset(0).num_steps == 2
    assert batch.subset(torch.tensor([True, False, True])).to_strings() == ["(()())", "(())"]
    assert batch.subset(slice(0, 2)).to_strings() == ["(()())", "()"]
    with pytest.raises(IndexError):
        batch.subset([5])


@pytest.mark.parametrize("strings, match", [
    (["()", ")("], "String 1 .* never opened"),
    (["(())", "()", "(()"], "String 2 .* still open"),
    (["()", "(a)"], "String 1 .*'a' at position 1"),
    (["()", "（）"], "String 1"),
    ([], "no strings"),
])
def test_invalid_strings_are_refused_with_their_index(strings, match):
    with pytest.raises(ValueError, match=match):
        encode_dyck(strings)


def test_prefixes_may_be_encoded_when_asked_and_wrong_types_are_refused():
    batch = encode_dyck(["((((", "(()"], require_balanced=False)
    assert batch.depth.tolist() == [[1, 2, 3, 4], [1, 2, 1, 0]]
    with pytest.raises(TypeError, match="single string"):
        encode_dyck("(())")
    with pytest.raises(TypeError, match="String 1"):
        encode_dyck(["()", 3])


def dyck_word_from(choices):
    """A Dyck word from booleans (True: open; False: close if possible, else open), closed at the end:
    every Dyck word is reached (take its own symbols as the choices)."""
    out, depth = [], 0
    for choice in choices:
        if choice or depth == 0:
            out.append("(")
            depth += 1
        else:
            out.append(")")
            depth -= 1
    return "".join(out) + ")" * depth


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), max_size=40).map(dyck_word_from), min_size=1, max_size=8))
def test_encoded_depths_and_targets_match_a_plain_loop(strings):
    batch = encode_dyck(strings)
    assert batch.num_steps == max(len(s) for s in strings)
    for row, string in enumerate(strings):
        length = len(string)
        assert batch.lengths[row] == length
        assert batch.depth[row, :length].tolist() == bracket_depth(string) == plain_depths(string)
        assert batch.targets[row, :length].tolist() == [float(d > 0) for d in plain_depths(string)]
        assert not batch.mask[row, length:].any() and batch.mask[row, :length].all()
        assert not batch.tokens[row, length:].any() and not batch.depth[row, length:].any()
    assert batch.to_strings() == strings


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet="()", max_size=12) | st.text(alphabet="()x", max_size=4), min_size=1, max_size=6))
def test_encode_accepts_exactly_the_dyck_words_and_names_the_first_other_string(strings):
    if all(balanced_plain(s) for s in strings):
        assert encode_dyck(strings).to_strings() == strings
    else:
        first_bad = next(i for i, s in enumerate(strings) if not balanced_plain(s))
        with pytest.raises(ValueError, match=f"String {first_bad} "):
            encode_dyck(strings)


# ------------------------------------------------------------------------------ sequence accuracy
def test_one_wrong_step_fails_its_string_and_padding_is_ignored():
    batch = encode_dyck(["(()())", "()", "(())"])          # 6 + 2 + 4 = 12 real steps
    logits = batch.targets * 4 - 2                          # right everywhere
    logits[~batch.mask] = 100.0                             # padding: "wrong" (targets 0), must not count
    assert sequence_accuracy(logits, batch) == (1.0, 1.0)
    logits[0, 5] = 3.0                                      # string 0, last step: ")" not allowed, said allowed
    assert sequence_accuracy(logits, batch) == (11 / 12, 2 / 3)
    logits[2, 0] = -3.0
    step, sequence = sequence_accuracy(logits, batch)
    assert step == pytest.approx(10 / 12) and sequence == pytest.approx(1 / 3)
    probabilities = torch.sigmoid(logits)
    assert sequence_accuracy(probabilities, batch, logits=False) == (step, sequence)
    assert sequence_accuracy(logits.unsqueeze(-1), batch) == (step, sequence)    # a model's [N, T, 1]


def test_threshold_is_inclusive_as_in_the_reference_code():
    batch = encode_dyck(["()"])                             # targets [1, 0]
    assert sequence_accuracy(torch.tensor([[0.0, -1.0]]), batch) == (1.0, 1.0)   # sigmoid(0) = 0.5 >= 0.5
    assert sequence_accuracy(torch.tensor([[0.5, 0.5]]), batch, logits=False) == (0.5, 0.0)
    assert sequence_accuracy(torch.tensor([[0.8, 0.7]]), batch, logits=False, threshold=0.75) == (1.0, 1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), threshold=st.floats(0.05, 0.95))
def test_accuracies_match_a_plain_loop(seed, threshold):
    strings = dyck1_strings(12, min_length=0, max_length=16, seed=seed)
    if not any(strings):
        strings[0] = "()"
    batch = encode_dyck(strings)
    generator = torch.Generator().manual_seed(seed)
    probabilities = torch.rand(batch.targets.shape, generator=generator)
    step, sequence = sequence_accuracy(probabilities, batch, logits=False, threshold=threshold)
    right_steps, right_strings, steps = 0, 0, 0
    for row, string in enumerate(strings):
        marks = [(probabilities[row, t].item() >= threshold) == (d > 0) for t, d in enumerate(plain_depths(string))]
        right_steps += sum(marks)
        steps += len(marks)
        right_strings += all(marks)
    assert step == pytest.approx(right_steps / steps) and sequence == pytest.approx(right_strings / len(strings))


def test_accuracy_refuses_bad_predictions():
    batch = encode_dyck(["(())", "()"])
    with pytest.raises(ValueError, match="shape"):
        sequence_accuracy(torch.zeros(2, 3), batch)
    with pytest.raises(ValueError, match="NaN"):
        sequence_accuracy(torch.full((2, 4), float("nan")), batch)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sequence_accuracy(torch.full((2, 4), 2.0), batch, logits=False)
    with pytest.raises(ValueError, match="threshold"):
        sequence_accuracy(torch.zeros(2, 4), batch, threshold=1.0)
    with pytest.raises(ValueError, match="no real steps"):
        sequence_accuracy(torch.zeros(1, 0), encode_dyck([""]))
    with pytest.raises(TypeError, match="DyckBatch"):
        sequence_accuracy(torch.zeros(2, 4), batch.tokens)


def test_batch_fields_must_agree_in_shape():
    batch = encode_dyck(["(())"])
    with pytest.raises(ValueError, match="mask"):
        DyckBatch(batch.tokens, batch.targets, batch.depth, batch.mask[:, :2], batch.lengths)
    assert DYCK_SYMBOLS == ("(", ")")


# ------------------------------------------------------------------------------ BracketRNN
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bracket_rnn_gives_one_logit_per_step_from_tokens_or_one_hot(cell):
    torch.manual_seed(0)
    model = BracketRNN(cell, hidden=5)
    assert isinstance(model.rnn, torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)
    assert model.rnn.batch_first and model.rnn.num_layers == 1 and model.readout.out_features == 1
    batch = encode_dyck(["(()())", "()", "(())"])
    from_tokens = model(batch.tokens)
    assert from_tokens.shape == (3, 6)
    full_one_hot = torch.nn.functional.one_hot(batch.tokens, 2).float()
    torch.testing.assert_close(model(full_one_hot), from_tokens)
    # the batch's one-hot zeroes the padding: only padded steps may differ, real steps are the same
    torch.testing.assert_close(model(batch.one_hot())[batch.mask], from_tokens[batch.mask])


def test_padding_does_not_change_the_real_steps():
    torch.manual_seed(1)
    model = BracketRNN("lstm", hidden=4)
    batch = encode_dyck(["(((())))", "()"])
    alone = model(encode_dyck(["()"]).tokens)
    torch.testing.assert_close(model(batch.tokens)[1, :2], alone[0])


def test_hooks_on_tap_see_the_hidden_states_and_change_only_the_readout():
    torch.manual_seed(2)
    model = BracketRNN("lstm", hidden=6)
    tokens = encode_dyck(["(()())", "(())()"]).tokens
    seen = {}

    def record(module, inputs, output):
        seen["tap"] = output

    def record_rnn(module, inputs, output):
        seen["rnn"] = output

    handles = [model.tap.register_forward_hook(record), model.rnn.register_forward_hook(record_rnn)]
    try:
        model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    assert isinstance(seen["rnn"], tuple)                  # why the tap exists
    hidden = seen["tap"]
    assert hidden.shape == (2, 6, 6)
    torch.testing.assert_close(hidden, seen["rnn"][0])

    def zero_unit(module, inputs, output):
        output = output.clone()
        output[..., 3] = 0.0
        return output

    handle = model.tap.register_forward_hook(zero_unit)
    try:
        ablated = model(tokens)
    finally:
        handle.remove()
    # the recurrence is untouched: the ablated logits are the read-out of the *original* states, unit 3 zeroed
    expected_states = hidden.clone()
    expected_states[..., 3] = 0.0
    torch.testing.assert_close(ablated, model.readout(expected_states).squeeze(-1))


def test_bracket_rnn_refuses_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="lstm"):
        BracketRNN("rnn")
    with pytest.raises(ValueError, match="hidden"):
        BracketRNN("gru", hidden=0)
    model = BracketRNN()
    with pytest.raises(ValueError, match="0 .. 1"):
        model(torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match=r"\[batch, steps, 2\]"):
        model(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="tokens must be"):
        model(torch.zeros(3, dtype=torch.long))


def test_build_model_names_the_bracket_networks():
    lstm = build_model("BracketLSTM-8")
    gru = build_model("bracketgru-3")
    assert isinstance(lstm, BracketRNN) and lstm.cell == "lstm" and lstm.hidden == 8
    assert gru.cell == "gru" and gru.rnn.hidden_size == 3
