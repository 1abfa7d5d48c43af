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


# -- several end ids (issue 8.2) ---------------------------------------------------------------

import copy  # noqa: E402
import logging  # noqa: E402
import warnings  # noqa: E402

from llm import EnumerableWorld  # noqa: E402
from llm.sampling import SamplingConfig, nucleus  # noqa: E402

GREEDY = 1e-9  # top_p this small keeps only the most likely token: greedy decoding
PROMPTS5 = [[1, 4, 5, 6], [1, 7], [1, 8, 9, 10, 11, 12], [1, 13], [1, 14, 15]]


def end_ids_policy(model, tokenizer, ids):
    model = copy.deepcopy(model)
    model.config.eos_token_id = ids
    model.generation_config.eos_token_id = ids
    return Policy(model, tokenizer)


def cut(row, ends):
    for i, t in enumerate(row):
        if t in ends:
            return row[: i + 1]
    return row


def test_greedy_stops_on_every_end_id_like_transformers_generate(model, tokenizer):
    n = 12
    free = end_ids_policy(model, tokenizer, None)
    free.tokenizer = copy.deepcopy(tokenizer)
    free.tokenizer.eos_token = None
    assert free.eos_token_ids == ()
    long = sample(free, PROMPTS5, n, top_p=GREEDY)
    assert all(len(r) == n for r in long)
    # A second end id that greedy decoding meets mid-response in some row.
    counts = torch.bincount(torch.tensor([t for r in long for t in r[1:-1] if t != 2]), minlength=16)
    second = int(counts.argmax())
    ends = (2, second)
    policy = end_ids_policy(model, tokenizer, list(ends))
    ours = sample(policy, PROMPTS5, n, top_p=GREEDY, batch_size=2)
    assert ours == [cut(r, ends) for r in long]
    assert any(r[-1] == second and len(r) < n for r in ours)  # the second id did stop a row early
    for prompt, got in zip(PROMPTS5, ours):
        with torch.no_grad():
            out = policy.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n, pad_token_id=0)
        assert got == cut(out[0, len(prompt):].tolist(), ends)


@pytest.mark.parametrize("mixture", [False, True])
def test_sampling_stops_at_the_first_of_any_end_id(model, tokenizer, other_policy, mixture):
    ends = (2, 9)
    policy = end_ids_policy(model, tokenizer, list(ends))
    policy.allowed_token_ids = (2, 4, 9)  # end ids often drawn
    prompts = [[1, 6]] * 300
    if mixture:
        mu = Policy(other_policy.model, tokenizer, allowed_token_ids=(2, 4, 9))
        out = sample_mixture(policy, mu, prompts, 0.5, 5, generator=0, batch_size=64)
    else:
        out = sample(policy, prompts, 5, generator=0, batch_size=64)
    last = [r[-1] for r in out]
    assert last.count(9) > 20 and last.count(2) > 20
    for r in out:
        assert not set(r[:-1]) & set(ends)
        assert len(r) == 5 or r[-1] in ends
    lp = policy.sequence_logprobs(prompts, out, grad=False)
    assert torch.isfinite(lp).all()  # log-probs accept exactly what the sampler produces


# -- batching, temperature, top_p ----------------------------------------------------------------


def test_batching_across_prompts_changes_no_greedy_output(policy):
    one_by_one = [sample(policy, [p], 8, top_p=GREEDY)[0] for p in PROMPTS5]
    assert sample(policy, PROMPTS5, 8, top_p=GREEDY) == one_by_one
    assert sample(policy, PROMPTS5, 8, top_p=GREEDY, batch_size=2) == one_by_one


def test_batch_size_chunks_the_forward_calls(world):
    pi = world.make_policy(seed=1, init_std=0.5).snapshot()
    calls = count_calls(pi)
    out = sample(pi, [world.prompts[0]] * 5, 3, generator=0, batch_size=2)
    assert len(out) == 5 and all(len(r) == 3 for r in out)
    assert [c[0][0] for c in calls] == [2, 2, 2, 2, 2, 2, 1, 1, 1]  # 3 chunks × 3 tokens


def one_token_world():
    from .conftest import P_RPS

    return EnumerableWorld(P_RPS, response_len=1, tokens_per_action=2)


def frequencies(world, out):
    counts = torch.zeros(world.n_responses, dtype=torch.float64)
    for r in out:
        counts[world.index_of(r)] += 1
    return counts / len(out)


@pytest.mark.parametrize("temperature,top_p", [(0.5, 1.0), (2.0, 1.0), (1.0, 0.6)])
def test_temperature_and_top_p_sample_the_stated_distribution(temperature, top_p):
    world = one_token_world()
    pi = world.make_policy(seed=4, init_std=0.5)
    logits = raw_last_logits(pi.model, world.prompts[0])[list(world.content_ids)] / temperature
    probs = torch.softmax(logits, -1)
    # nucleus written out: the most likely tokens until their mass reaches top_p
    order = probs.argsort(descending=True)
    keep = torch.zeros_like(probs, dtype=torch.bool)
    mass = 0.0
    for i in order.tolist():
        keep[i] = True
        mass += probs[i].item()
        if mass >= top_p:
            break
    want = torch.where(keep, probs, 0.0)
    want = want / want.sum()
    n = 6000
    out = sample(pi, [world.prompts[0]] * n, 1, generator=11, temperature=temperature, top_p=top_p)
    got = frequencies(world, out)
    se = (want * (1 - want) / n).sqrt()
    assert ((got - want).abs() <= 4.5 * se + 1e-3).all()
    if top_p < 1:
        assert (got[~keep] == 0).all() and (~keep).any()


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    logits = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()
    kept = lambda p: torch.isfinite(nucleus(logits, p)).tolist()  # noqa: E731
    assert kept(0.7) == [False, True, False, True]
    assert kept(0.81) == [True, True, False, True]
    assert kept(1e-9) == [False, True, False, False]
    assert kept(1.0) == [True] * 4
    assert torch.equal(nucleus(logits, 0.7)[[1, 3]], logits[[1, 3]])


def test_sampling_config_validates_and_records(policy, other_policy):
    cfg = SamplingConfig(32, temperature=0.7, top_p=0.9, batch_size=16)
    assert cfg.as_dict() == {"max_new_tokens": 32, "temperature": 0.7, "top_p": 0.9, "batch_size": 16}
    assert not cfg.is_exact and SamplingConfig(8).is_exact
    assert cfg.sample(policy, PROMPTS, generator=3) == sample(policy, PROMPTS, 32, generator=3, temperature=0.7,
                                                              top_p=0.9, batch_size=16)
    assert cfg.sample_mixture(policy, other_policy, PROMPTS, 0.2, generator=3) == sample_mixture(
        policy, other_policy, PROMPTS, 0.2, 32, generator=3, temperature=0.7, top_p=0.9, batch_size=16)
    for kwargs, match in [
        (dict(temperature=0.0), "temperature = 0.0 is not allowed"),
        (dict(top_p=0.0), "top_p = 0.0 is not allowed"),
        (dict(top_p=1.5), "top_p = 1.5 is not allowed"),
        (dict(batch_size=0), "batch_size = 0 is not allowed"),
    ]:
        with pytest.raises(ValueError, match=match):
            SamplingConfig(8, **kwargs)
    with pytest.raises(ValueError, match="max_new_tokens = -1 is not allowed"):
        SamplingConfig(-1)


def test_sampling_options_are_checked_before_any_work(policy):
    calls = count_calls(policy.snapshot())
    with pytest.raises(ValueError, match="temperature = -1.0 is not allowed"):
        sample(policy, PROMPTS, 3, temperature=-1.0)
    with pytest.raises(ValueError, match="batch_size = 0 is not allowed"):
        sample_mixture(policy, policy, PROMPTS, 0.5, 3, batch_size=0)
    assert calls == []


# -- the KV-cache keyword (issue 8.8) ------------------------------------------------------------


class OldStyleModel(torch.nn.Module):
    """A model with the pre-5.x forward signature (``past_key_values``, ``num_logits_to_keep``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.generation_config = inner.generation_config

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, num_logits_to_keep=0):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=past_key_values, use_cache=use_cache, logits_to_keep=num_logits_to_keep)
        return {"logits": out.logits, "past_key_values": out.cache} if use_cache else {"logits": out.logits}


class _Out(dict):
    __getattr__ = dict.__getitem__


def test_older_transformers_cache_keyword_still_works(policy, other_policy):
    from llm.models import forward_names

    assert forward_names(policy.model) == ("cache", "logits_to_keep")
    old_model = OldStyleModel(policy.model)
    old_model.forward = (lambda f: lambda *a, **k: _Out(f(*a, **k)))(old_model.forward)
    assert forward_names(old_model) == ("past_key_values", "num_logits_to_keep")
    old = Policy(old_model, policy.tokenizer)
    assert sample(old, PROMPTS * 3, 6, generator=5) == sample(policy, PROMPTS * 3, 6, generator=5)
    assert sample_mixture(old, other_policy, PROMPTS, 0.3, 6, generator=5) == \
        sample_mixture(policy, other_policy, PROMPTS, 0.3, 6, generator=5)
    assert torch.equal(old.sequence_logprobs(PROMPTS, [[4, 5]] * 3), policy.sequence_logprobs(PROMPTS, [[4, 5]] * 3))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_no_deprecation_warning_from_cached_sampling(policy, other_policy):
    handler = _Records()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sample(policy, PROMPTS, 5, generator=0)
            sample_mixture(policy, other_policy, PROMPTS, 0.5, 5, generator=0)
            policy.sequence_logprobs(PROMPTS, [[4, 5]] * 3, grad=False)
    finally:
        hf_logger.removeHandler(handler)
    said = [str(w.message) for w in caught] + handler.messages
    assert not [m for m in said if "deprecat" in m.lower() or "past_key_values" in m]


def test_peft_wrapped_models_sample_through_the_same_keyword(policy):
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(copy.deepcopy(policy.model),
                                  peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lora = Policy(wrapped, policy.tokenizer)  # a fresh adapter is the identity (B = 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample(lora, PROMPTS5, 6, top_p=GREEDY)
    assert out == sample(policy, PROMPTS5, 6, top_p=GREEDY)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


# -- finished rows leave the batch ---------------------------------------------------------------


def test_finished_rows_leave_the_batch_without_changing_any_row(model, tokenizer):
    policy = end_ids_policy(model, tokenizer, [2, 9, 12]).snapshot()
    calls = count_calls(policy)
    prompts = PROMPTS5 * 4
    together = sample(policy, prompts, 12, top_p=GREEDY)
    widths = [c[0][0] for c in calls]
    assert widths[0] == 20 and widths[-1] < 20 and widths == sorted(widths, reverse=True)  # the batch shrank
    assert together == [sample(policy, [p], 12, top_p=GREEDY)[0] for p in prompts]


def test_sampling_with_early_ends_matches_the_exact_distribution(model, tokenizer):
    """Every response over {4, 5} of up to 3 tokens, ended by EOS or the limit: 15 in all."""
    import itertools

    policy = Policy(model, tokenizer, allowed_token_ids=[2, 4, 5])
    responses = [[2]] + [list(r) + [2] for n in (1, 2) for r in itertools.product([4, 5], repeat=n)] \
        + [list(r) for r in itertools.product([4, 5], repeat=3)]
    prompt = [1, 6, 7]
    exact = policy.sequence_logprobs([prompt] * len(responses), responses, grad=False).double().exp()
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-5)
    n = 4000
    out = sample(policy, [prompt] * n, 3, generator=21, batch_size=1000)
    index = {tuple(r): i for i, r in enumerate(responses)}
    counts = torch.zeros(len(responses), dtype=torch.float64)
    for r in out:
        counts[index[tuple(r)]] += 1
    se = (exact * (1 - exact) / n).sqrt()
    assert ((counts / n - exact).abs() <= 4.5 * se + 1e-3).all()


def test_per_row_generators_survive_finished_rows_leaving_the_batch(model, tokenizer):
    # data-parallel sampling gives each row its own generator; when finished rows leave the decoder
    # the remaining rows must keep drawing from THEIR generators (a shift would change samples)
    policy = end_ids_policy(model, tokenizer, [2, 9, 12]).snapshot()
    prompts = PROMPTS5 * 4

    def gens():
        return [torch.Generator().manual_seed(1000 + i) for i in range(len(prompts))]

    calls = count_calls(policy)
    together = sample(policy, prompts, 12, generator=gens())
    assert [c[0][0] for c in calls][-1] < len(prompts)  # rows did leave the batch
    alone = [sample(policy, [p], 12, generator=[g])[0] for p, g in zip(prompts, gens())]
    assert together == alone
