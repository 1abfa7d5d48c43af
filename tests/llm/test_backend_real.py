"""The LLM backend without a world (the real-model setting), on a tiny model: text oracle, the
leave-one-out win rates, one batched sampler call per step, frozen log-probs once, the metrics of a
real run, its checkpoint state, and bad input refused up front."""
import pickle

import numpy as np
import pytest
import torch

import algorithms
from llm import backend as backend_mod
from llm import tiny_model, tiny_tokenizer
from llm.backend import LLMBackend, LLMConfig
from llm.oracles import CountingOracle, from_spec
from llm.policy import Policy

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red"]


class LengthOracle(CountingOracle):
    """P(a ≻ b) = sigmoid(len(a) − len(b)) in words: deterministic, antisymmetric, on text."""

    def _prob(self, prompts, a, b):
        d = torch.tensor([len(x.split()) - len(y.split()) for x, y in zip(a, b)], dtype=torch.float64)
        return torch.sigmoid(d)


def _policy(seed=0):
    tok = tiny_tokenizer(WORDS)
    return Policy(tiny_model(tok, seed=seed, max_positions=64, init_std=0.5), tok)


def _prompts(policy):
    v = policy.tokenizer.get_vocab()
    return [[v["the"], v["cat"]], [v["a"], v["big"], v["dog"]]]


def _backend(config=None, oracle=None, **kw):
    pol = _policy()
    cfg = config or LLMConfig(samples=4, max_new_tokens=4, k=2, lr=1e-3)
    return LLMBackend(pol, oracle or LengthOracle(), prompts=_prompts(pol), config=cfg, **kw)


def test_capabilities_and_no_exact_metrics():
    be = _backend()
    assert be.exact_metrics is False
    with pytest.raises(ValueError, match="EnumerableWorld"):
        be.duality_gap(be.reference)


def test_one_step_leave_one_out_batched_and_logprobs_once(monkeypatch):
    be = _backend()
    calls = {"sample": 0, "logprobs": 0}
    real_sample = backend_mod.sample

    def counting_sample(*a, **k):
        calls["sample"] += 1
        return real_sample(*a, **k)

    monkeypatch.setattr(backend_mod, "sample", counting_sample)
    real_tok = LLMBackend._policy_token_logprobs

    def counting_tok(policy, xs, ys):
        calls["logprobs"] += 1
        return real_tok(policy, xs, ys)

    monkeypatch.setattr(LLMBackend, "_policy_token_logprobs", staticmethod(counting_tok))
    r = algorithms.run(algorithms.MPO(), be, 1, record="all")
    # ONE sampler call for all prompts × samples; σ = the anchor: no opponent samples
    assert calls["sample"] == 1
    # at t = 0 anchor = magnet = reference, whose log-probs come from the fit's first forward pass (the
    # live model starts at the anchor): no frozen pass for the step; one for the new policy in extra_metrics
    assert calls["logprobs"] == 1
    step = be._step
    # what the fit recorded for the anchor is what a frozen pass gives
    cached = step.logps[id(step.anchor)][1]
    xs = [be.prompt_ids[i] for i in step.prompt_index]
    frozen = step.anchor.token_logprobs(xs, step.responses, grad=False)[0]
    torch.testing.assert_close(cached, frozen.float(), rtol=0, atol=1e-5)
    K = be.config.samples
    # K(K−1)/2 judgements per prompt at most (identical texts cost none)
    assert 0 < r.state.queries <= 2 * K * (K - 1) // 2
    # the leave-one-out estimate, recomputed by hand
    h = step.g_handle
    for i, rows in step.groups.items():
        for k, r_ in enumerate(rows):
            others = [step.texts[s] for j, s in enumerate(rows) if j != k]
            want = np.mean([torch.sigmoid(torch.tensor(float(len(step.texts[r_].split()) - len(o.split())), dtype=torch.float64)).item()
                            for o in others])
            got = np.mean([be._pair(h.judged, i, step.texts[r_], o) for o in others])
            assert got == pytest.approx(want, abs=1e-12)
    m = r.history
    assert m["kl_ref"][0] == 0 and m["win_rate_ref"][0] == 0.5
    assert np.isfinite(m["kl_ref"][1]) and 0 <= m["win_rate_ref"][1] <= 1
    assert m["tokens"][1] == sum(len(y) for y in step.responses)


def test_extra_metrics_exact_at_the_reference():
    be = _backend()
    algorithms.run(algorithms.MPO(), be, 1, record="all")
    m = be.extra_metrics(be._step.anchor)  # the anchor of step 1 is the reference
    assert m["kl_ref"] == 0.0 and m["win_rate_ref"] == 0.5


def test_checkpoint_state_is_compact_and_round_trips(tmp_path):
    be = _backend()
    r = algorithms.run(algorithms.MPO(), be, 2, checkpoint=tmp_path / "c.pkl", record="all")
    sd = be.state_dict()
    assert len(pickle.dumps(sd)) < 10_000  # RNG + counters, no weights
    be2 = _backend()
    be2.load_state_dict(sd)
    assert be2.queries == be.queries and be2.tokens == be.tokens
    assert torch.equal(be2.generator.get_state(), be.generator.get_state())
    fp = be.fingerprint()
    assert fp == be2.fingerprint() and fp["llm_config"]["samples"] == 4
    assert r.state.t == 2


def test_autocast_bf16_path_runs_on_cpu():
    be = _backend(LLMConfig(samples=3, max_new_tokens=3, k=1, lr=1e-3, autocast=True))
    r = algorithms.run(algorithms.MMD(), be, 1, record="all")
    assert np.isfinite(r.history["loss"][1])


def test_pg_realiser_selectable_for_any_algorithm():
    for name in ("mmd", "nash_md", "omwu"):
        be = _backend(LLMConfig(samples=3, max_new_tokens=3, realiser="pg", k=1, lr=1e-3))
        r = algorithms.run(algorithms.make(name), be, 2, record="all")
        assert np.isfinite(r.history["loss"][1:]).all(), name


def test_annotators_text_oracle_runs():
    be = _backend(oracle=from_spec("annotators"))
    r = algorithms.run(algorithms.MPO(), be, 1, record="all")
    assert r.state.queries > 0


def test_mpo_adaptive_refused_without_a_world():
    be = _backend()
    with pytest.raises(ValueError, match="exact"):
        algorithms.run(algorithms.MPO(refresh="adaptive"), be, 1)


@pytest.mark.parametrize("kw,needle", [
    (dict(samples=1), "samples"), (dict(samples=0), "samples"), (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(prompts_per_step=0), "prompts_per_step"), (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"),
    (dict(temperature=0.0), "temperature"), (dict(top_p=0.0), "top_p"), (dict(realiser="ppo"), "realiser"),
    (dict(samples="4"), "samples"), (dict(lora_r=0), "lora_r"),
])
def test_config_refused(kw, needle):
    with pytest.raises(ValueError, match=f"LLMConfig.{needle}"):
        LLMConfig(**kw)


def test_bad_prompts_refused():
    pol = _policy()
    with pytest.raises(ValueError, match=r"prompts\[0\].*load_prompts"):
        LLMBackend(pol, LengthOracle(), prompts=["hello"])
    with pytest.raises(ValueError, match=r"prompts\[1\].*vocabulary"):
        LLMBackend(pol, LengthOracle(), prompts=[[4, 5], [4, 10_000]])
    with pytest.raises(ValueError, match=r"prompts\[0\].*vocabulary"):
        LLMBackend(pol, LengthOracle(), prompts=[[-1]])
    with pytest.raises(ValueError, match=r"prompts\[0\].*at least one token"):
        LLMBackend(pol, LengthOracle(), prompts=[[]])
    with pytest.raises(ValueError, match="prompts"):
        LLMBackend(pol, LengthOracle(), prompts=[])
    with pytest.raises(ValueError, match="oracle"):
        LLMBackend(pol, None, prompts=_prompts(pol))
    with pytest.raises(ValueError, match="context"):
        LLMBackend(pol, LengthOracle(), prompts=_prompts(pol), config=LLMConfig(max_new_tokens=63))


def test_text_prompts_and_decoding():
    from llm.data import Prompt

    pol = _policy()
    ids = _prompts(pol)
    be = LLMBackend(pol, LengthOracle(), prompts=[Prompt("the cat", ids[0]), Prompt("a big dog", ids[1])],
                    config=LLMConfig(samples=2, max_new_tokens=3, k=1, lr=1e-3))
    assert be.prompt_texts == ["the cat", "a big dog"]
    be2 = _backend()
    assert be2.prompt_texts == ["the cat", "a big dog"]  # id prompts are decoded for the oracle
