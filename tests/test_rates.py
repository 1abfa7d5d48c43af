"""The proven last-iterate rates hold, with their constants, at every iteration, over random games.

    MMD        KL(π*_α‖π_t) ≤ (1+ηα)^{−t}·KL(π*_α‖π_0)        η ≤ α/L²            (Sokota et al. Thm 3.4)
    Nash-MP    KL(π*_β‖π_k) ≤ (1+η)^{−k}·KL(π*_β‖π_0)         η ≤ β/L             (2 queries per k)
    EGPO       KL(π*_β‖π_t) ≤ (1−ηβ)^t·KL(π*_β‖π_0)           η ≤ 1/(β+L)
    INPO       KL(π*_τ‖π_t) ≤ (1−τ/η)^t·KL(π*_τ‖π_0)          η ≥ (L²+τ²)/τ       (η an inverse rate)
    Nash-MD    KL(π*_β‖π_T) ≤ 8/(β²(T+1))                     η_t = 2/(β(t+2)), P ∈ [0, 1]

L = ½·(largest payoff range of a row or column). π* is computed to machine precision (Newton on
the fixed-point equation), and the only slack is float round-off: ×(1+1e-12) + 1e-13.
Each family is a *batch* of games run through the same code at once; random references and starts.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import algorithms
import games
from tests.conftest import kl_np, qre

B = 16


def family(kind, seed):
    """(game with a random reference, random initial policies) — a batch of B games."""
    rng = np.random.default_rng(seed)
    if kind == "zero_sum":
        A = rng.normal(size=(B, 4, 6)) * rng.uniform(0.1, 3, size=(B, 1, 1))
        ref = (rng.dirichlet(np.ones(4), size=B), rng.dirichlet(np.ones(6), size=B))
        init = (rng.dirichlet(0.5 * np.ones(4), size=B), rng.dirichlet(0.5 * np.ones(6), size=B))
        return games.ZeroSumGame(A, reference=ref), init
    g = {"random": lambda: games.make("random", n=10, seed=seed, batch=B),
         "random_skew": lambda: games.make("random_skew", n=6, seed=seed, scale=3.0, batch=B),
         "bt_mixture": lambda: games.make("bt_mixture", n=5, seed=seed, batch=B)}[kind]()
    return games.PreferenceGame(g.P, reference=rng.dirichlet(np.ones(g.n), size=B)), rng.dirichlet(0.5 * np.ones(g.n), size=B)


def kl_star(star, policy):
    if isinstance(star, tuple):
        return sum(kl_np(a, b) for a, b in zip(star, policy))
    return kl_np(star, policy)


def kl_trajectory(algo, game, init, star, T):
    """KL(π*‖π_t) for t = 0..T, shape (T+1, B), stepping the algorithm directly."""
    be = games.ExactBackend(game)
    algo = algo.bind(be)
    s = algo.init(be, be.from_probs(init))
    out = [kl_star(star, be.to_numpy(s.policy))]
    for _ in range(T):
        s = algo.step(be, s)
        out.append(kl_star(star, be.to_numpy(s.policy)))
    return np.array(out)


def assert_rate(ks, rho, what):
    t = np.arange(len(ks))[:, None]
    bound = rho[None, :] ** t * ks[0] * (1 + 1e-12) + 1e-13
    excess = ks - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (f"{what}: KL_t exceeds the bound at t={worst[0]}, game {worst[1]}: "
                                f"{ks[worst]:.6g} > {bound[worst]:.6g} (KL_0 = {ks[0, worst[1]]:.6g}, rate {rho[worst[1]]:.6g})")
    assert np.all(ks[-1] < ks[0])  # and the runs really moved


def check_all_rates(kind, seed, beta, f, T=150):
    """Every rate with step at fraction ``f`` ∈ (0, 1] of its proven limit (f = 1: the boundary)."""
    game, init = family(kind, seed)
    L = np.asarray(games.ExactBackend(game).lipschitz)
    star = qre(game, beta)
    # MMD (α = β): η = f·α/L²; magnet = the game's reference
    eta = f * beta / L**2
    assert_rate(kl_trajectory(algorithms.MMD(eta=eta, alpha=beta), game, init, star, T), (1 + eta * beta) ** -1.0, "MMD")
    # Nash-MP: η = f·β/L
    eta = f * beta / L
    assert_rate(kl_trajectory(algorithms.MirrorProx(eta=eta, beta=beta), game, init, star, T), (1 + eta) ** -1.0, "Nash-MP")
    # EGPO: η = f/(β+L)
    eta = f / (beta + L)
    assert_rate(kl_trajectory(algorithms.EGPO(eta=eta, beta=beta), game, init, star, T), 1 - eta * beta, "EGPO")
    # INPO (τ = β): η = (L²+τ²)/(τ f) ≥ the proven limit
    eta = (L**2 + beta**2) / (beta * f)
    assert_rate(kl_trajectory(algorithms.INPO(eta=eta, tau=beta), game, init, star, T), 1 - beta / eta, "INPO")


@pytest.mark.parametrize("kind", ["random", "random_skew", "bt_mixture", "zero_sum"])
@pytest.mark.parametrize("beta", [0.05, 0.3])
def test_linear_rates_at_the_step_size_limit(kind, beta):
    check_all_rates(kind, seed=1, beta=beta, f=1.0)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["random", "random_skew", "bt_mixture", "zero_sum"]), seed=st.integers(0, 10_000),
       beta=st.floats(0.02, 2.0), f=st.floats(0.05, 1.0))
def test_linear_rates_property(kind, seed, beta, f):
    check_all_rates(kind, seed, beta, f, T=80)


def test_nash_mp_rate_per_query_with_the_papers_step():
    """η = β/L = 2β on a preference game with L = ½ gives (1+2β)^{−N/2} over N queries."""
    rng = np.random.default_rng(3)
    P = np.array([[0.5, 0.0, 1.0, 0.3], [1.0, 0.5, 0.2, 0.0], [0.0, 0.8, 0.5, 0.6], [0.7, 1.0, 0.4, 0.5]])
    g = games.PreferenceGame(P, reference=rng.dirichlet(np.ones(4)))
    be = games.ExactBackend(g)
    assert be.lipschitz == 0.5
    beta = 0.1
    star = qre(g, beta)
    init = rng.dirichlet(np.ones(4))
    ks = []
    r = algorithms.run(algorithms.MirrorProx(beta=beta), g, 200, init=init, record="all", average=False,
                       callbacks=[lambda t, s, m: ks.append(kl_np(star, be.to_numpy(s.algo_state.policy)))])
    assert r.algorithm.eta == pytest.approx(2 * beta)
    N = r.history["queries"]
    assert np.array_equal(N, 2 * r.history["iteration"])
    ks = np.array(ks)
    assert np.all(ks <= (1 + 2 * beta) ** (-N / 2) * ks[0] * (1 + 1e-12) + 1e-13)


@pytest.mark.parametrize("kind", ["random", "random_skew", "bt_mixture"])
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_nash_md_rate(kind, beta):
    """KL(π*_β‖π_T) ≤ 8/(β²(T+1)) for every T ≥ 1 (entries of P in [0, 1]).

    T ≥ 1: the first step has η_0β = 1, so π_1 ∝ μ·exp(η_0 Pμ) forgets π_0 (π_0 itself is arbitrary).
    """
    game, init = family(kind, seed=2)
    star = qre(game, beta)
    T = 400
    ks = kl_trajectory(algorithms.NashMD(beta=beta), game, init, star, T)
    bound = 8 / (beta**2 * (np.arange(T + 1) + 1))
    assert np.all(ks[1:] <= bound[1:, None] * (1 + 1e-12) + 1e-13)
    assert np.all(ks[-1] < 1e-3 * bound[-1])  # O(1/T) is loose here: the iterates do much better
