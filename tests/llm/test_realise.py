"""Realisers: micro-batching and ranks give the full-batch gradient; in the enumerable world the
regression realises the exact log-linear step and the policy gradient moves towards it."""
import numpy as np
import pytest
import torch

import games
from llm import EnumerableWorld, Policy, sample, tiny_model, tiny_tokenizer
from llm import snapshots as S
from llm.realise import PolicyGradientRealiser, RegressionRealiser, StepBatch, make_realiser

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast"]


# -- a small text-free batch on a tiny LM ------------------------------------------------------------
def tiny_live(lora=None, seed=0):
    tok = tiny_tokenizer(WORDS)
    torch.manual_seed(seed)
    return S.prepare(Policy(tiny_model(tok, seed=seed, init_std=0.5), tok), lora_r=lora)


def sampled_batch(live, n_prompts=4, k=3, length=5, seed=0):
    """K samples per prompt from the live policy; a random win-rate part; anchor + a magnet term."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [[1] + torch.randint(4, 16, (2 + i % 3,), generator=gen).tolist() for i in range(n_prompts)]
    rows_p = [p for p in prompts for _ in range(k)]
    ys = sample(live, rows_p, length, generator=seed)
    ys = [y if y else [5] for y in ys]
    group = [i for i in range(n_prompts) for _ in range(k)]
    g = 0.5 * torch.rand(len(ys), generator=gen, dtype=torch.float64)
    magnet = S.snapshot(live)
    with torch.no_grad():
        for p in S.trainable_parameters(live):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    anchor = S.snapshot(live)
    return anchor, StepBatch.build(rows_p, ys, group, [1.0 / k] * len(ys), g, [(0.8, anchor), (0.2, magnet)])


def params_of(live):
    return torch.cat([p.detach().flatten() for p in S.trainable_parameters(live)])


def params_of_snapshot(live, snap):
    return torch.cat([snap.model.tensors[n].flatten() for n, p in live.model.named_parameters() if p.requires_grad])


def fit_from(anchor, live, batch, realiser):
    S.load_into(live, anchor)
    stats = realiser.fit(live, batch)
    return params_of(live), stats


@pytest.mark.parametrize("kind", ["regression", "pg"])
@pytest.mark.parametrize("lora", [None, 4])
def test_micro_batches_equal_the_full_batch(kind, lora):
    live = tiny_live(lora)
    anchor, batch = sampled_batch(live)
    opts = dict(optimizer="adamw", lr=1e-3, steps=3)
    full, s_full = fit_from(anchor, live, batch, make_realiser(kind, micro_batch=4, **opts))
    micro, s_micro = fit_from(anchor, live, batch, make_realiser(kind, micro_batch=1, **opts))
    assert s_full["passes"] == 3 and s_micro["passes"] == 12
    start = params_of_snapshot(live, anchor)
    assert (full - start).abs().max() > 1e-4  # it moved
    # Adam divides by √v: where a gradient is ~0 float32 summation order shows; 1e-5 is 0.3% of the move
    torch.testing.assert_close(micro, full, rtol=0, atol=1e-5)
    # the gradient itself: one SGD step from the anchor, micro-batched or not
    sgd = dict(optimizer="sgd", lr=0.1, steps=1, max_grad_norm=None)
    a, _ = fit_from(anchor, live, batch, make_realiser(kind, micro_batch=4, **sgd))
    b, _ = fit_from(anchor, live, batch, make_realiser(kind, micro_batch=1, **sgd))
    torch.testing.assert_close(b - start, a - start, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s_micro["losses"], s_full["losses"], rtol=1e-4)


@pytest.mark.parametrize("kind", ["regression", "pg"])
@pytest.mark.parametrize("minibatch", [None, 2])
def test_start_term_equals_the_anchor_term(kind, minibatch):
    """The anchor's log-probs taken from the fit's first pass (start_coef) instead of a frozen pass (a
    policy term): the same fit — with minibatches too, where the later ones' come from a no-grad pass
    before the first update. The recorded log-probs are the anchor's."""
    live = tiny_live(4)
    anchor, batch = sampled_batch(live)
    (c, lp_anchor), magnet_term = batch.policy_terms
    started = StepBatch(batch.prompts, batch.responses, batch.group, batch.weights, batch.g, [magnet_term],
                        batch.mask, start_coef=c)
    opts = dict(optimizer="adamw", lr=1e-3, steps=3, minibatch=minibatch, micro_batch=1)
    real = make_realiser(kind, **opts)
    a, sa = fit_from(anchor, live, batch, real)
    b, sb = fit_from(anchor, live, started, make_realiser(kind, **opts))
    assert (a - params_of_snapshot(live, anchor)).abs().max() > 1e-4  # it moved
    # float32 log-probs of a train-mode pass vs a frozen pass differ in the last bits; Adam's 1/√v shows
    # that where a gradient is ~0 (as in test_micro_batches_equal_the_full_batch)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sb["losses"], sa["losses"], rtol=1e-5)
    rec = make_realiser(kind, **opts)
    fit_from(anchor, live, started, rec)
    torch.testing.assert_close(rec.take_start_logps(), lp_anchor, rtol=0, atol=1e-5)
    assert rec.take_start_logps() is None  # handed over once
    assert "tensor" not in repr(rec)


@pytest.mark.parametrize("kind", ["regression", "pg"])
def test_two_ranks_sum_to_the_one_rank_gradient(kind):
    """Losses are normalised by the GLOBAL number of prompts: SGD steps of two halves add up."""
    live = tiny_live()
    anchor, batch = sampled_batch(live)
    opts = dict(optimizer="sgd", lr=0.1, steps=1, max_grad_norm=None)
    start = params_of_snapshot(live, anchor)
    full, _ = fit_from(anchor, live, batch, make_realiser(kind, **opts))
    deltas = []
    for half in ([0, 1], [2, 3]):
        part = batch.select(half)
        part.n_groups_global = batch.n_groups
        got, _ = fit_from(anchor, live, part, make_realiser(kind, **opts))
        deltas.append(got - start)
    assert deltas[0].abs().max() > 1e-3 and deltas[1].abs().max() > 1e-3
    torch.testing.assert_close(deltas[0] + deltas[1], full - start, rtol=1e-4, atol=1e-6)


def test_accelerator_path_matches_plain():
    accelerate = pytest.importorskip("accelerate")
    live = tiny_live()
    anchor, batch = sampled_batch(live)
    real = make_realiser("regression", lr=1e-3, steps=2, micro_batch=2)
    plain, _ = fit_from(anchor, live, batch, real)
    S.load_into(live, anchor)
    real.fit(live, batch, accelerator=accelerate.Accelerator(cpu=True))
    torch.testing.assert_close(params_of(live), plain, rtol=0, atol=1e-7)


def test_minibatches_take_more_steps_and_bounded_passes():
    live = tiny_live()
    anchor, batch = sampled_batch(live)
    _, stats = fit_from(anchor, live, batch, make_realiser("regression", minibatch=2, micro_batch=1, steps=4))
    assert stats["passes"] == 8 and len(stats["losses"]) == 4
    assert stats["lr"] == 2.5e-7  # the full fine-tuning default
    lora = tiny_live(lora=2)
    anchor, batch = sampled_batch(lora)
    _, stats = fit_from(anchor, lora, batch, make_realiser("pg"))
    assert stats["lr"] == 1.25e-5  # the LoRA default


# -- the enumerable world: one realised step against the exact log-linear step -------------------------
def world_batch(world, live, magnet, a=0.8, b=0.2, c=0.7, weights="uniform"):
    """Every listed response of every prompt; g = c·P_resp·π_anchor exactly; anchor = live's weights."""
    anchor = S.snapshot(live)
    P, Y, grp, w, g = [], [], [], [], []
    for i, x in enumerate(world.prompts):
        pa = world.exact_distribution(anchor, i).double()
        gi = torch.as_tensor(world.P_resp) @ pa
        P += [x] * world.n_responses
        Y += world.responses
        grp += [i] * world.n_responses
        g += (c * gi).tolist()
        w += [1 / world.n_responses] * world.n_responses if weights == "uniform" else pa.tolist()
    return anchor, StepBatch.build(P, Y, grp, w, g, [(a, anchor), (b, magnet)])


def kl_to_target(world, live, batch):
    """KL(π* ‖ π_live), mean over prompts, π* = softmax(target) over the listed responses."""
    target = torch.log_softmax(batch.target.view(len(world.prompts), -1), -1)
    got = torch.stack([torch.log(world.exact_distribution(live, i).double()) for i in range(len(world.prompts))])
    return float((target.exp() * (target - got)).sum(-1).mean())


def world_setup(response_len, lora=None):
    world = EnumerableWorld(games.make("cyclic3").P, response_len=response_len, n_prompts=2)
    torch.manual_seed(0)
    live = S.prepare(world.make_policy(seed=0, init_std=0.5), lora_r=lora)
    return world, live, world.make_policy(seed=1, init_std=0.5)


@pytest.mark.parametrize("lora", [None, 4])
def test_lbfgs_regression_realises_the_exact_step(lora):
    world, live, magnet = world_setup(1, lora)
    anchor, batch = world_batch(world, live, magnet)
    before = kl_to_target(world, live, batch)
    stats = make_realiser("regression", optimizer="lbfgs").fit(live, batch)
    after = kl_to_target(world, live, batch)
    # measured: KL 2.9e-2 → 3e-8 (full), the loss ~3e-12: float32 log-probs are the floor
    assert before > 1e-2 and after < 1e-6 and stats["loss"] < 1e-9


@pytest.mark.parametrize("variant", ["kl", "rt"])
def test_policy_gradient_moves_towards_the_exact_step(variant):
    """One on-policy step with the exact expectation (rows weighted by π_anchor) lowers KL(π*‖π);
    many steps converge to π* for one-token responses, where token level is sequence level."""
    world, live, magnet = world_setup(1)
    anchor, batch = world_batch(world, live, magnet, weights="anchor")
    before = kl_to_target(world, live, batch)
    PolicyGradientRealiser(variant=variant, baseline="mean", optimizer="sgd", lr=0.02, steps=1).fit(live, batch)
    one = kl_to_target(world, live, batch)
    assert one < before
    S.load_into(live, anchor)
    PolicyGradientRealiser(variant=variant, baseline="mean", lr=1e-3, steps=300).fit(live, batch)
    many = kl_to_target(world, live, batch)
    assert many < 1e-5 < before  # measured ~2e-8 for both variants


def test_policy_gradient_with_sampled_responses_moves_towards_the_exact_step():
    """K samples per prompt from the anchor, uniform weights, leave-one-out baseline."""
    world, live, magnet = world_setup(1)
    anchor, exact = world_batch(world, live, magnet)
    rows_p = [x for x in world.prompts for _ in range(64)]
    ys = sample(anchor, rows_p, 1, generator=0)
    idx = {tuple(y): i for i, y in enumerate(world.responses)}
    g = [float(exact.g[i * world.n_responses + idx[tuple(y)]]) for i, x in enumerate(world.prompts)
         for y in ys[i * 64:(i + 1) * 64]]
    batch = StepBatch.build(rows_p, ys, [i for i in range(2) for _ in range(64)], [1 / 64] * 128, g,
                            [(0.8, anchor), (0.2, magnet)])
    before = kl_to_target(world, live, exact)
    PolicyGradientRealiser(lr=1e-3, steps=20).fit(live, batch)
    assert kl_to_target(world, live, exact) < 0.5 * before


def test_bad_input():
    with pytest.raises(ValueError, match="kind"):
        make_realiser("ppo")
    with pytest.raises(ValueError, match="lr"):
        make_realiser("regression", lr=0)
    with pytest.raises(ValueError, match="optimizer"):
        make_realiser("pg", optimizer="lbfgs")
    with pytest.raises(ValueError, match="micro_batch"):
        RegressionRealiser(micro_batch=0)
    with pytest.raises(ValueError, match="variant"):
        PolicyGradientRealiser(variant="ppo")
    with pytest.raises(ValueError, match="sum to 1"):
        StepBatch([[1]], [[5]], [0], [0.5], [0.0], [], [[True]])
    live = tiny_live()
    anchor, batch = sampled_batch(live)
    with pytest.raises(ValueError, match="frozen"):
        RegressionRealiser().fit(anchor, batch)
