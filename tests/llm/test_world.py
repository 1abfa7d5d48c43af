"""EnumerableWorld: exact distributions, induced game, duality gap, sampling support."""

import numpy as np
import pytest
import torch

from llm import EnumerableWorld, Policy


@pytest.fixture(scope="module")
def peaked(world):
    return world.make_policy(seed=4, init_std=0.5)


def test_responses_and_induced_game(world, rps):
    n = len(rps)
    assert world.n_responses == n**2
    assert all(len(r) == 2 and set(r) <= set(world.content_ids) for r in world.responses)
    assert len({tuple(r) for r in world.responses}) == world.n_responses
    c = world.classes
    for i in range(world.n_responses):
        for j in range(world.n_responses):
            assert world.P_resp[i, j] == rps[c[i], c[j]]
    # "first" rule: a response's class is its first token's action
    assert [world.token_action[r[0]] for r in world.responses] == c.tolist()


def test_sum_rule_and_several_tokens_per_action(rps):
    w = EnumerableWorld(rps, response_len=2, tokens_per_action=2, n_prompts=2, class_rule="sum")
    assert w.n_responses == 36 and len(w.prompts) == 2
    acts = [[w.token_action[t] for t in r] for r in w.responses]
    assert w.classes.tolist() == [sum(a) % 3 for a in acts]
    assert np.bincount(w.classes).tolist() == [12, 12, 12]
    with pytest.raises(ValueError, match="class_rule"):
        EnumerableWorld(rps, class_rule="last")
    with pytest.raises(ValueError, match="too many"):
        EnumerableWorld(rps, response_len=12)


def test_exact_distribution_is_normalised_and_matches_logprobs(world, peaked):
    dist = world.exact_distribution(peaked)
    assert dist.dtype == torch.float64 and dist.shape == (world.n_responses,)
    assert dist.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert dist.max() > 2 / world.n_responses  # not uniform, so the checks bite
    prompts = [world.prompts[0]] * world.n_responses
    lp = peaked.sequence_logprobs(prompts, world.responses, padding_side="left", grad=False)
    assert torch.allclose(dist, lp.double().exp(), atol=1e-6)


def test_exact_logprobs_carry_gradients(world):
    pi = world.make_policy(seed=5, init_std=0.5)
    lp = world.exact_logprobs(pi)
    assert lp.requires_grad
    (lp.exp() * torch.arange(world.n_responses)).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pi.parameters())


def test_action_distribution_and_duality_gap(world, peaked, rps):
    dist = world.exact_distribution(peaked)
    q = world.action_distribution(peaked)
    assert q.sum().item() == pytest.approx(1.0, abs=1e-5)
    want_q = [dist[torch.as_tensor(world.classes == k)].sum().item() for k in range(3)]
    assert np.allclose(q.numpy(), want_q)
    gap = world.duality_gap(peaked)
    # the world renormalises its float32 distribution (off by ~6e-8) before the exact metric
    assert gap == pytest.approx(2 * (rps @ q.numpy()).max() - 1, abs=1e-7)
    assert gap > 0
    # The RPS equilibrium: x ∝ solves P x = 1/2; spread it over responses by class.
    A = np.vstack([rps - 0.5, np.ones(3)])
    x = np.linalg.lstsq(A, np.r_[np.zeros(3), 1.0], rcond=None)[0]
    eq = torch.as_tensor(x[world.classes] / np.bincount(world.classes)[world.classes])
    assert world.duality_gap(eq) == pytest.approx(0.0, abs=1e-9)


def test_sampling_stays_on_the_enumerated_support(world, peaked):
    out = world.sample(peaked, 200, generator=0)
    idx = [world.index_of(r) for r in out]  # raises if a response is not listed
    assert len(idx) == 200
    mix = world.sample_mixture(peaked, world.make_policy(seed=6), 0.5, 50, generator=0)
    assert all(world.index_of(r) >= 0 for r in mix)


def test_world_oracle_is_the_induced_game(world):
    # the oracle judges text: responses decoded as the backend decodes them
    oracle = world.oracle()
    n = world.n_responses
    texts = [world.tokenizer.decode(r, skip_special_tokens=True) for r in world.responses]
    x = world.tokenizer.decode(world.prompts[0], skip_special_tokens=True)
    a = [texts[i] for i in range(n) for _ in range(n)]
    b = [texts[j] for _ in range(n) for j in range(n)]
    got = oracle.prob([x] * n * n, a, b).numpy().reshape(n, n)
    assert np.array_equal(got, world.P_resp)
    with pytest.raises(ValueError, match="not a response"):
        oracle.prob([x], ["<eos>"], [texts[0]])
    with pytest.raises(ValueError, match="decode token ids first"):
        oracle.prob([x], [world.responses[0]], [texts[0]])


def test_unrestricted_policy_is_rejected(world):
    free = Policy(world.make_model(), world.tokenizer)
    with pytest.raises(ValueError, match="restricted to this world's content tokens"):
        world.exact_distribution(free)
    snap = world.make_policy().snapshot()
    assert world.exact_distribution(snap).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_mixture_sampler_has_the_token_level_distribution(world, peaked):
    mu = world.make_policy(seed=7, init_std=0.5)
    w = 0.4
    token_level = world.mixture_distribution(peaked, mu, w)
    assert token_level.sum().item() == pytest.approx(1.0, abs=1e-5)
    n = 4000
    counts = torch.zeros(world.n_responses, dtype=torch.float64)
    for r in world.sample_mixture(peaked, mu, w, n, generator=11):
        counts[world.index_of(r)] += 1
    se = (token_level * (1 - token_level) / n).sqrt()
    assert ((counts / n - token_level).abs() <= 4.5 * se + 1e-3).all()
    # The sequence-level geometric mixture is a different distribution for L = 2 ...
    seq_level = world.exact_distribution(peaked) ** (1 - w) * world.exact_distribution(mu) ** w
    seq_level /= seq_level.sum()
    assert (seq_level - token_level).abs().max() > 1e-3


def test_token_and_sequence_mixtures_agree_for_single_token_responses(rps):
    w1 = EnumerableWorld(rps, response_len=1, tokens_per_action=2)
    pi, mu = w1.make_policy(seed=1, init_std=0.5), w1.make_policy(seed=2, init_std=0.5)
    seq_level = w1.exact_distribution(pi) ** 0.7 * w1.exact_distribution(mu) ** 0.3
    assert torch.allclose(w1.mixture_distribution(pi, mu, 0.3), seq_level / seq_level.sum(), atol=1e-6)
