"""Sampling: next-token formulas, KV-cache forward counts, reproducibility, EOS."""

import pytest
import torch

from llm import MixtureDecoder, Policy, mixture_next_token_logits, next_token_logits, sample, sample_mixture

PROMPTS = [[1, 4, 5, 6], [1, 7], [1, 8, 9, 10, 11, 12]]


def raw_last_logits(model, prompt):
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt])).logits[0, -1].double()


def test_next_token_logits_match_unbatched(policy):
    got = next_token_logits(policy, PROMPTS)
    want = torch.stack([raw_last_logits(policy.model, p) for p in PROMPTS])
    assert torch.allclose(got.double(), want, atol=1e-5)


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_mixture_next_token_distribution_is_the_formula(policy, other_policy, w):
    got = torch.softmax(mixture_next_token_logits(policy, other_policy, PROMPTS, w).double(), -1)
    want = torch.stack(
        [
            torch.softmax((1 - w) * raw_last_logits(policy.model, p) + w * raw_last_logits(other_policy.model, p), -1)
            for p in PROMPTS
        ]
    )
    assert torch.allclose(got, want, atol=1e-6)


def test_mixture_restriction_renormalises_over_allowed(world):
    pi, mu = world.make_policy(seed=1, init_std=0.5), world.make_policy(seed=2, init_std=0.5)
    prompt = world.prompts[0]
    got = torch.softmax(mixture_next_token_logits(pi, mu, [prompt], 0.4)[0].double(), -1)
    ids = list(world.content_ids)
    mixed = 0.6 * raw_last_logits(pi.model, prompt)[ids] + 0.4 * raw_last_logits(mu.model, prompt)[ids]
    assert torch.allclose(got[ids], torch.softmax(mixed, -1), atol=1e-6)
    assert got.sum().item() == pytest.approx(1.0) and got[ids].sum().item() == pytest.approx(1.0)


def count_calls(policy):
    """Wrap the model's forward to record the input shape and cache use of each call."""
    calls = []
    original = policy.model.forward

    def counting(*args, **kwargs):
        cached = kwargs.get("cache", kwargs.get("past_key_values")) is not None
        calls.append((tuple(kwargs["input_ids"].shape), cached))
        return original(*args, **kwargs)

    policy.model.forward = counting
    return calls


@pytest.mark.parametrize("mixture", [False, True])
def test_one_forward_per_token_per_model_with_cache(world, mixture):
    pi, mu = world.make_policy(seed=1, init_std=0.5).snapshot(), world.make_policy(seed=2, init_std=0.5).snapshot()
    calls_pi, calls_mu = count_calls(pi), count_calls(mu)
    steps = 5  # EOS is masked out in the world, so every response is exactly 5 tokens
    prompts = [world.prompts[0]] * 3
    if mixture:
        out = sample_mixture(pi, mu, prompts, 0.5, steps, generator=0)
    else:
        out = sample(pi, prompts, steps, generator=0)
    assert all(len(r) == steps for r in out)
    for calls in [calls_pi, calls_mu] if mixture else [calls_pi]:
        assert len(calls) == steps
        assert calls[0] == ((3, 2), False)  # the whole prompt, no cache yet
        assert all(c == ((3, 1), True) for c in calls[1:])  # one new token, cached
    if not mixture:
        assert calls_mu == []


def test_cached_sampling_matches_exact_distribution(world):
    pi = world.make_policy(seed=3, init_std=0.5)
    exact = world.exact_distribution(pi)
    n = 4000
    counts = torch.zeros(world.n_responses, dtype=torch.float64)
    for r in world.sample(pi, n, generator=123):
        counts[world.index_of(r)] += 1
    # Every cell within 4.5 standard errors of its exact probability.
    se = (exact * (1 - exact) / n).sqrt()
    assert ((counts / n - exact).abs() <= 4.5 * se + 1e-3).all()


def test_seeded_sampling_is_reproducible(policy):
    a = sample(policy, PROMPTS, 6, generator=7)
    b = sample(policy, PROMPTS, 6, generator=torch.Generator().manual_seed(7))
    assert a == b
    assert sample(policy, PROMPTS * 4, 6, generator=8) != sample(policy, PROMPTS * 4, 6, generator=9)


def test_mixture_endpoints_are_the_pure_policies(policy, other_policy):
    for w, pure in [(0.0, policy), (1.0, other_policy)]:
        mixed = sample_mixture(policy, other_policy, PROMPTS, w, 5, generator=3)
        assert mixed == sample(pure, PROMPTS, 5, generator=3)


def test_stops_at_eos_and_strips_padding(model, tokenizer):
    eos = tokenizer.eos_token_id
    eager = Policy(model, tokenizer, allowed_token_ids=[eos, 4, 5])  # EOS often sampled
    out = sample(eager, [[1, 6]] * 64, 6, generator=0)
    assert any(r[-1] == eos for r in out) and any(eos not in r for r in out)
    for r in out:
        assert 1 <= len(r) <= 6
        assert eos not in r[:-1] and tokenizer.pad_token_id not in r
        assert len(r) == 6 or r[-1] == eos


def test_all_finished_stops_early(model, tokenizer):
    only_eos = Policy(model, tokenizer, allowed_token_ids=[tokenizer.eos_token_id]).snapshot()
    calls = count_calls(only_eos)
    assert sample(only_eos, PROMPTS, 10, generator=0) == [[2]] * 3
    assert len(calls) == 1


def test_sampling_errors(policy, world):
    with pytest.raises(ValueError, match=r"length 65 .*limit of 64"):
        sample(policy, [[1] * 61], 4)
    with pytest.raises(ValueError, match=r"w = 1.5 is not allowed"):
        sample_mixture(policy, policy, PROMPTS, 1.5, 3)
    with pytest.raises(ValueError, match="do not intersect"):
        a = Policy(policy.model, policy.tokenizer, allowed_token_ids=[4])
        b = Policy(policy.model, policy.tokenizer, allowed_token_ids=[5])
        sample_mixture(a, b, PROMPTS, 0.5, 3)
    assert sample(policy, PROMPTS, 0) == [[], [], []]
    with pytest.raises(ValueError, match="one weight per policy"):
        MixtureDecoder([policy], [0.5, 0.5])
