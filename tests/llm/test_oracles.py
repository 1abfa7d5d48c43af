"""Oracles: exact matrices, Bradley–Terry rewards, mixtures, antisymmetry."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForSequenceClassification

from llm import (
    CountingOracle,
    MatrixOracle,
    MixtureOracle,
    PreferenceOracle,
    RewardModelOracle,
    check_antisymmetric,
    validate_preference_matrix,
)

P3 = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
VOCAB = 16


@pytest.fixture(scope="module")
def reward_oracle(tokenizer):
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
        initializer_range=0.5,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(config)
    return RewardModelOracle(model, tokenizer)


def order_matrix(order):
    """Deterministic transitive preferences following ``order`` (best first)."""
    rank = {a: i for i, a in enumerate(order)}
    n = len(order)
    return np.array([[0.5 if i == j else float(rank[i] < rank[j]) for j in range(n)] for i in range(n)])


seqs = st.lists(st.integers(3, VOCAB - 1), min_size=0, max_size=5)
batches = st.integers(1, 4).flatmap(
    lambda b: st.tuples(
        st.lists(st.lists(st.integers(1, VOCAB - 1), min_size=1, max_size=4), min_size=b, max_size=b),
        st.lists(seqs, min_size=b, max_size=b),
        st.lists(seqs, min_size=b, max_size=b),
    )
)


def all_oracles(reward_oracle):
    matrix = MatrixOracle(P3)
    return [matrix, reward_oracle, MixtureOracle([matrix, reward_oracle], [0.3, 0.7])]


@settings(max_examples=30, deadline=None)
@given(batch=batches)
def test_every_oracle_is_antisymmetric(reward_oracle, batch):
    prompts, a, b = batch
    a = [r or [3] for r in a]  # MatrixOracle maps an empty response to action 0; keep both kinds
    for oracle in all_oracles(reward_oracle):
        p_ab, p_ba = oracle.prob(prompts, a, b), oracle.prob(prompts, b, a)
        assert p_ab.dtype == torch.float64 and p_ab.shape == (len(prompts),)
        assert ((p_ab >= 0) & (p_ab <= 1)).all()
        assert torch.allclose(p_ab + p_ba, torch.ones_like(p_ab), atol=1e-9)
        assert check_antisymmetric(oracle, prompts, a, b, atol=1e-9) <= 1e-9
        assert isinstance(oracle, PreferenceOracle)


def test_matrix_oracle_reproduces_its_matrix_exactly():
    n = len(P3)
    oracle = MatrixOracle(P3)  # default rule: first token id mod n
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    got = oracle.prob([[1]] * n * n, [[int(k) + n] for k in i.ravel()], [[int(k)] for k in j.ravel()])
    assert np.array_equal(got.numpy().reshape(n, n), P3)
    assert oracle.queries == n * n

    by_tokens = MatrixOracle.from_token_ids(P3, [[10, 13], [11], [12]])
    got = by_tokens.prob([[1]] * 4, [[10], [13, 4], [11], [12]], [[11], [12], [12], [13]])
    assert got.tolist() == [P3[0, 1], P3[0, 2], P3[1, 2], P3[2, 0]]
    with pytest.raises(ValueError, match="no action token"):
        by_tokens.prob([[1]], [[4]], [[10]])
    with pytest.raises(ValueError, match="two actions"):
        MatrixOracle.from_token_ids(P3, [[10], [10], [12]])


def test_matrix_oracle_validates_matrix_and_rule():
    with pytest.raises(ValueError, match="antisymmetric"):
        MatrixOracle(np.array([[0.5, 0.6], [0.6, 0.5]]))
    with pytest.raises(ValueError, match="square"):
        validate_preference_matrix(np.ones((2, 3)) / 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        validate_preference_matrix(np.array([[0.5, 1.5], [-0.5, 0.5]]))
    with pytest.raises(ValueError, match="outside"):
        MatrixOracle(P3, rule=lambda x, y: 7).prob([[1]], [[4]], [[5]])
    with pytest.raises(ValueError, match="batch sizes differ"):
        MatrixOracle(P3).prob([[1]], [[4], [5]], [[5]])


def test_reward_oracle_is_bradley_terry_on_unpadded_scores(reward_oracle):
    prompts = [[1, 4], [1, 5, 6, 7], [1, 8]]
    a, b = [[9, 2], [10], [11, 12, 13, 2]], [[14], [15, 3, 2], [9]]

    def score(seq):
        with torch.no_grad():
            return reward_oracle.model(input_ids=torch.tensor([seq])).logits.item()

    want = [torch.sigmoid(torch.tensor(score(p + x) - score(p + y))).item() for p, x, y in zip(prompts, a, b)]
    before = reward_oracle.queries
    got = reward_oracle.prob(prompts, a, b)
    assert np.allclose(got.numpy(), want, atol=1e-6)
    assert reward_oracle.queries - before == 3
    # Rewards are not constant, so the test above is not vacuous.
    assert got.std() > 0.01


def test_reward_oracle_pools_last_real_token_even_when_pad_is_eos(reward_oracle, tokenizer):
    # A response ending in the pad id must still be scored at its own last token.
    pad = tokenizer.pad_token_id
    r = reward_oracle.rewards([[1, 4], [1, 4]], [[5, pad], [5, pad, 6, 7]])
    with torch.no_grad():
        want = reward_oracle.model.score(
            reward_oracle.model.model(input_ids=torch.tensor([[1, 4, 5, pad]])).last_hidden_state[0, -1]
        ).item()
    assert r[0].item() == pytest.approx(want, abs=1e-5)


def test_reward_oracle_rejects_multi_label_models(tokenizer):
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, num_labels=2)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelOracle(LlamaForSequenceClassification(config), tokenizer)


def test_mixture_oracle_averages_and_can_be_intransitive():
    orders = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]  # Condorcet: each voter transitive
    voters = [MatrixOracle(order_matrix(o)) for o in orders]
    mix = MixtureOracle(voters, [1 / 3, 1 / 3, 1 / 3])
    p = mix.prob([[1]] * 3, [[0], [1], [2]], [[1], [2], [0]])
    assert (p > 0.5).all()  # 0 ≻ 1 ≻ 2 ≻ 0: a cycle
    assert np.allclose(p.numpy(), 2 / 3)
    assert mix.queries == 3 and all(v.queries == 3 for v in voters)


def test_mixture_oracle_validates_weights():
    m = MatrixOracle(P3)
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureOracle([m, m], [0.5, 0.6])
    with pytest.raises(ValueError, match=">= 0"):
        MixtureOracle([m, m], [1.5, -0.5])
    with pytest.raises(ValueError, match="one weight per oracle"):
        MixtureOracle([m], [0.5, 0.5])


class ConstantOracle(CountingOracle):
    """Broken on purpose: says a wins with probability 0.7 whatever the order."""

    def _prob(self, prompts, a, b):
        return np.full(len(prompts), 0.7)


def test_check_antisymmetric_flags_broken_oracles():
    with pytest.raises(ValueError, match=r"not antisymmetric: P\(a≻b\) \+ P\(b≻a\) = 1.4"):
        check_antisymmetric(ConstantOracle(), [[1]], [[4]], [[5]])

    class OutOfRange(CountingOracle):
        def _prob(self, prompts, a, b):
            return np.full(len(prompts), 1.5)

    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        check_antisymmetric(OutOfRange(), [[1]], [[4]], [[5]])
    assert check_antisymmetric(MatrixOracle(P3), [[1]], [[4]], [[5]]) == 0.0
