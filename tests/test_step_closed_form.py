"""One step of every algorithm equals its update written out by hand (in numpy, from the papers'
notation), on preference games and on zero-sum games; the η → 0 limit is the identity; adding a
constant to the win rates changes nothing; iterates stay on the simplex (hypothesis).

The reference steps below are written over *slots*: one policy π for a preference game (payoff Pπ),
the pair (x, y) for a zero-sum game (payoffs A y and −Aᵀx, both computed from the *current* pair:
simultaneous updates). Log-probabilities throughout, as the library's design asks.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax, logsumexp

import algorithms
import games
from tests.conftest import kl_np, lipschitz_np

lsm = lambda z: log_softmax(z, axis=-1)  # noqa: E731


# -- the game operator, by hand ----------------------------------------------------------------------
def payoffs(game, lp):
    """Per slot, the payoff of every action against the current opponent."""
    pr = [np.exp(l) for l in lp]
    if isinstance(game, games.PreferenceGame):
        return [np.einsum("...ij,...j->...i", game.P, pr[0])]
    A = game.A
    return [A @ pr[1], -(pr[0] @ A)]


def reg_gap(game, lp, alpha, lrho):
    """Gap of the game regularised by α·KL(·‖ρ): Σ_roles α·lse(log ρ + q/α) + α·KL(π‖ρ)."""
    q = payoffs(game, lp)
    if isinstance(game, games.PreferenceGame):  # the column role's payoff is −Pᵀπ = Pπ − 1
        roles = [(q[0], lp[0], lrho[0]), (q[0] - 1, lp[0], lrho[0])]
    else:
        roles = [(q[s], lp[s], lrho[s]) for s in range(2)]
    return sum(alpha * logsumexp(lr + qq / alpha, axis=-1) + alpha * kl_np(np.exp(l), np.exp(lr)) for qq, l, lr in roles)


# -- reference steps, each from its paper's formula ------------------------------------------------
def ref_mwu(game, lp, eta):
    # π_{t+1} ∝ π_t exp(η P(y ≻ π_t))
    return [lsm(l + eta * q) for l, q in zip(lp, payoffs(game, lp))]


def ref_omwu(game, lp, prev_q, eta):
    # π_{t+1} ∝ π_t exp(η (2 g_t − g_{t−1})), g_{−1} := g_0
    q = payoffs(game, lp)
    prev_q = q if prev_q is None else prev_q
    return [lsm(l + eta * (2 * a - b)) for l, a, b in zip(lp, q, prev_q)], q


def ref_mmd(game, lp, lrho, eta, alpha):
    # π_{t+1} ∝ [π_t ρ^{ηα} exp(η q)]^{1/(1+ηα)}
    return [lsm((l + eta * alpha * lr + eta * q) / (1 + eta * alpha)) for l, lr, q in zip(lp, lrho, payoffs(game, lp))]


def ref_nash_md(game, lp, lmu, eta, beta):
    # π^μ ∝ π^{1−ηβ} μ^{ηβ};  π_{t+1} ∝ π^μ exp(η P(y ≻ π^μ))
    mix = [lsm((1 - eta * beta) * l + eta * beta * lm) for l, lm in zip(lp, lmu)]
    return [lsm(m + eta * q) for m, q in zip(mix, payoffs(game, mix))]


def ref_mirror_prox(game, lp, lmu, eta, beta):
    # argmin_π −(1/β)⟨π, q(σ)⟩ + KL(π‖μ) + (1/η)KL(π‖π_k)  ⇒  log π ∝ [log π_k + η log μ + (η/β) q(σ)]/(1+η)
    def prox(sigma):
        return [lsm((l + eta * lm + eta / beta * q) / (1 + eta)) for l, lm, q in zip(lp, lmu, payoffs(game, sigma))]
    return prox(prox(lp))


def ref_egpo(game, lp, lref, eta, beta):
    # θ_{t+½} = (1−ηβ)θ_t + ηβ θ_ref + η q(π_t);  θ_{t+1} = same with q(π_{t+½})
    def half(sigma):
        return [lsm((1 - eta * beta) * l + eta * beta * lr + eta * q) for l, lr, q in zip(lp, lref, payoffs(game, sigma))]
    return half(half(lp))


def ref_inpo(game, lp, lref, eta, tau):
    # π_{t+1} ∝ exp(P(y ≻ π_t)/η) π_ref^{τ/η} π_t^{1−τ/η}   (η an inverse learning rate)
    return [lsm(q / eta + tau / eta * lr + (1 - tau / eta) * l) for l, lr, q in zip(lp, lref, payoffs(game, lp))]


def ref_mnpo(game, hist, lref, eta, tau, lam):
    # log π_{t+1} = (τ/η) log π_ref + (1−τ/η) Σ_j λ_j log π_{t−j} + P(· ≻ π_t)/η,  λ normalised
    lam = np.asarray(lam, float) / np.sum(lam)
    q = payoffs(game, hist[0])
    return [lsm(tau / eta * lref[s] + (1 - tau / eta) * sum(w * h[s] for w, h in zip(lam, hist)) + q[s] / eta)
            for s in range(len(lref))]


# -- fixtures: a preference game with a non-uniform reference, and a zero-sum game ------------------
def pref_case():
    rng = np.random.default_rng(7)
    P = games.make("random", n=6, seed=11).P
    mu = rng.dirichlet(np.ones(6))
    return games.PreferenceGame(P, reference=mu), rng.dirichlet(np.ones(6))


def zs_case():
    rng = np.random.default_rng(8)
    A = rng.normal(size=(4, 5))
    ref = (rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(5)))
    return games.ZeroSumGame(A, reference=ref), (rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(5)))


CASES = {"preference": pref_case, "zero_sum": zs_case}


def setup(algo, game, init):
    be = games.ExactBackend(game)
    algo = algo.bind(be)
    return be, algo, algo.init(be, be.from_probs(init))


def logs(p):
    return [np.asarray(x) for x in p.logp]


def close(lib_policy, ref_lp, tol=1e-12):
    for a, b in zip(logs(lib_policy), ref_lp):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)


# -- one step (several, in fact) equals the closed form -----------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_mwu(case):
    game, init = CASES[case]()
    be, algo, s = setup(algorithms.MWU(eta=0.7), game, init)
    lp = logs(s.policy)
    for _ in range(4):
        s, lp = algo.step(be, s), ref_mwu(game, lp, 0.7)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
def test_omwu_uses_2g_t_minus_g_t_minus_1(case):
    game, init = CASES[case]()
    be, algo, s = setup(algorithms.OMWU(eta=0.6), game, init)
    lp, prev = logs(s.policy), None
    for _ in range(4):
        s = algo.step(be, s)
        lp, prev = ref_omwu(game, lp, prev, 0.6)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
def test_mmd_with_magnet(case):
    game, init = CASES[case]()
    rng = np.random.default_rng(3)
    sizes = (game.n,) if isinstance(game, games.PreferenceGame) else game.sizes
    magnet = tuple(rng.dirichlet(np.ones(k)) for k in sizes)
    mag_arg = magnet[0] if len(magnet) == 1 else magnet
    be, algo, s = setup(algorithms.MMD(eta=0.9, alpha=0.3, magnet=mag_arg), game, init)
    lp = logs(s.policy)
    for _ in range(4):
        s, lp = algo.step(be, s), ref_mmd(game, lp, [np.log(m) for m in magnet], 0.9, 0.3)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
def test_mpo_fixed_period_refreshes_exactly_when_t_mod_K_is_0(case):
    game, init = CASES[case]()
    eta, alpha, K = 0.8, 0.4, 3
    be, algo, s = setup(algorithms.MPO(eta=eta, alpha=alpha, refresh=K), game, init)
    lp = logs(s.policy)
    lrho = lp  # the magnet starts at the initial policy
    for t in range(1, 11):
        lp = ref_mmd(game, lp, lrho, eta, alpha)
        if t % K == 0:
            lrho = lp
        s = algo.step(be, s)
        assert s.t == t
        close(s.policy, lp)
        close(s.magnet, lrho)
    # the magnet moved exactly at t = 3, 6, 9: it is π_9, not π_10
    assert not np.allclose(logs(s.magnet)[0], logs(s.policy)[0])


@pytest.mark.parametrize("case", ["preference", "zero_sum", "batch"])
def test_mpo_adaptive_refresh_rule(case):
    """Refresh ρ_{k+1} ← π_{t+1} iff Gap_α(π_{t+1}; ρ_k) ≤ tol·α·KL(π_{t+1}‖ρ_k), per game."""
    if case == "batch":
        game = games.make("random", n=5, seed=4, batch=6)
        init = np.random.default_rng(2).dirichlet(np.ones(5), size=6)
    else:
        game, init = CASES[case]()
    eta, alpha, tol = 0.8, 0.4, 0.1
    be, algo, s = setup(algorithms.MPO(eta=eta, alpha=alpha, refresh="adaptive", tol=tol), game, init)
    lp = logs(s.policy)
    lrho = lp
    refreshes = 0
    for t in range(1, 61):
        new = ref_mmd(game, lp, lrho, eta, alpha)
        step = sum(kl_np(np.exp(a), np.exp(b)) for a, b in zip(new, lrho))
        mask = reg_gap(game, new, alpha, lrho) <= tol * alpha * step
        lrho = [np.where(np.asarray(mask)[..., None], a, b) for a, b in zip(new, lrho)]
        lp = new
        refreshes += np.sum(mask)
        s = algo.step(be, s)
        close(s.policy, lp)
        close(s.magnet, lrho)
    n_games = 6 if case == "batch" else 1
    assert 0 < refreshes < 60 * n_games  # both branches of the rule were exercised


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("schedule", ["constant", "decreasing", "callable"])
def test_nash_md_mixture_then_step(case, schedule):
    game, init = CASES[case]()
    beta = 0.3
    if schedule == "constant":
        algo, eta_t = algorithms.NashMD(eta=1.5, beta=beta), (lambda t: 1.5)
    elif schedule == "decreasing":
        algo, eta_t = algorithms.NashMD(beta=beta), (lambda t: 2 / (beta * (t + 2)))  # η_t = 2/(β(t+2))
    else:
        algo, eta_t = algorithms.NashMD(beta=beta, schedule=lambda t: 1 / (t + 1)), (lambda t: 1 / (t + 1))
    be, algo, s = setup(algo, game, init)
    lp, lmu = logs(s.policy), logs(be.reference)
    for t in range(5):
        s, lp = algo.step(be, s), ref_nash_md(game, lp, lmu, eta_t(t), beta)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
def test_mirror_prox_half_step_then_full_step(case):
    game, init = CASES[case]()
    be, algo, s = setup(algorithms.MirrorProx(eta=0.7, beta=0.25), game, init)
    lp, lmu = logs(s.policy), logs(be.reference)
    for _ in range(4):
        s, lp = algo.step(be, s), ref_mirror_prox(game, lp, lmu, 0.7, 0.25)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
def test_egpo(case):
    game, init = CASES[case]()
    be, algo, s = setup(algorithms.EGPO(eta=1.2, beta=0.3), game, init)
    lp, lref = logs(s.policy), logs(be.reference)
    for _ in range(4):
        s, lp = algo.step(be, s), ref_egpo(game, lp, lref, 1.2, 0.3)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
def test_inpo_eta_is_an_inverse_learning_rate(case):
    game, init = CASES[case]()
    be, algo, s = setup(algorithms.INPO(eta=2.5, tau=0.4), game, init)
    lp, lref = logs(s.policy), logs(be.reference)
    for _ in range(4):
        s, lp = algo.step(be, s), ref_inpo(game, lp, lref, 2.5, 0.4)
        close(s.policy, lp)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("weights", [(2 / 3, 1 / 3), (3.0, 2.0, 1.0), (1.0,), (0.0, 1.0)])
def test_mnpo_history_weights(case, weights):
    game, init = CASES[case]()
    be, algo, s = setup(algorithms.MNPO(eta=2.0, tau=0.3, weights=weights), game, init)
    lref = logs(be.reference)
    hist = [logs(s.policy)] * len(weights)  # the history starts filled with π_0
    for _ in range(5):
        new = ref_mnpo(game, hist, lref, 2.0, 0.3, weights)
        hist = ([new] + hist)[: len(weights)]
        s = algo.step(be, s)
        close(s.policy, new)


def test_mnpo_with_one_weight_is_inpo():
    game, init = pref_case()
    a = algorithms.run(algorithms.MNPO(eta=2.0, tau=0.3, weights=(1.0,)), game, 20, init=init, record=[20])
    b = algorithms.run(algorithms.INPO(eta=2.0, tau=0.3), game, 20, init=init, record=[20])
    np.testing.assert_allclose(a.policy, b.policy, rtol=0, atol=1e-14)


def test_mpo_refresh_1_is_mwu_with_step_eta_over_1_plus_eta_alpha():
    # magnet = π_t: [π_t·π_t^{ηα}·e^{ηg}]^{1/(1+ηα)} = π_t·e^{ηg/(1+ηα)}
    game, init = pref_case()
    eta, alpha = 0.9, 0.5
    a = algorithms.run(algorithms.MPO(eta=eta, alpha=alpha, refresh=1), game, 30, init=init, record=[30])
    b = algorithms.run(algorithms.MWU(eta=eta / (1 + eta * alpha)), game, 30, init=init, record=[30])
    np.testing.assert_allclose(a.policy, b.policy, rtol=0, atol=1e-13)


# -- documented defaults, from the independently computed L -----------------------------------------------
def test_documented_defaults():
    g = games.make("cyclic3")
    be = games.ExactBackend(g)
    L = lipschitz_np(g.P)
    assert L == pytest.approx(0.4) and be.lipschitz == pytest.approx(L, abs=1e-15)
    z = games.ZeroSumGame(np.array([[3.0, -1.0, 0.0], [0.0, 2.0, -5.0]]))
    assert games.ExactBackend(z).lipschitz == pytest.approx(lipschitz_np(z.A)) == pytest.approx(3.5)
    expect = {
        "mmd": dict(alpha=0.2 * L, eta=0.2 / L),
        "mpo": dict(alpha=0.5 * L, eta=0.5 / L, refresh=10),
        "nash_md": dict(beta=0.2 * L, eta=None, schedule="decreasing"),
        "mirror_prox": dict(beta=0.2 * L, eta=0.2),
        "egpo": dict(beta=0.2 * L, eta=1 / (1.2 * L)),
        "inpo": dict(tau=0.2 * L, eta=(L**2 + (0.2 * L) ** 2) / (0.2 * L)),
        "mnpo": dict(tau=0.2 * L, eta=(L**2 + (0.2 * L) ** 2) / (0.2 * L), weights=(2 / 3, 1 / 3)),
        "mwu": dict(eta=0.05 / L),
        "omwu": dict(eta=0.125 / L),
    }
    for name, hp in expect.items():
        bound = algorithms.make(name).bind(be)
        for k, v in hp.items():
            got = getattr(bound, k)
            assert got == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), (name, k)
    # Nash-MD's constant schedule: η = 0.1/L
    assert algorithms.NashMD(schedule="constant").bind(be).eta == pytest.approx(0.1 / L)


# -- η → 0 ------------------------------------------------------------------------------------------
def test_prox_step_with_a1_b0_c0_is_exactly_the_identity():
    game, init = pref_case()
    be = games.ExactBackend(game)
    pi = be.from_probs(init)
    out = algorithms.prox_step(be, pi, be.reference, be.win_rates(pi), 1.0, 0.0, 0.0)
    np.testing.assert_array_equal(out.logp[0], pi.logp[0] - 0.0)


# The constructors require η > 0, so we test the limit instead: the change made by one step is
# first order in the step, Δ(ε) ≈ ε·D with D ≠ 0, hence Δ(2ε) ≈ 2Δ(ε) and Δ(ε) → 0. A step that kept
# an O(1) part as η → 0 (say, a magnet weight not scaled by η) fails the first check. For INPO and
# MNPO the step is 1/η (η an inverse learning rate), so the limit is η → ∞.
SMALL = {
    "mwu": lambda e: algorithms.MWU(eta=e),
    "omwu": lambda e: algorithms.OMWU(eta=e),
    "mmd": lambda e: algorithms.MMD(eta=e, alpha=0.3),
    "mpo": lambda e: algorithms.MPO(eta=e, alpha=0.3),
    "nash_md": lambda e: algorithms.NashMD(eta=e, beta=0.3),
    "mirror_prox": lambda e: algorithms.MirrorProx(eta=e, beta=0.3),
    "egpo": lambda e: algorithms.EGPO(eta=e, beta=0.3),
    "inpo": lambda e: algorithms.INPO(eta=1 / e, tau=0.3),
    "mnpo": lambda e: algorithms.MNPO(eta=1 / e, tau=0.3),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", SMALL)
def test_vanishing_step_is_the_identity(case, name):
    game, init = CASES[case]()

    def delta(eps):
        be, algo, s = setup(SMALL[name](eps), game, init)
        new = algo.step(be, s)
        return np.concatenate([a - b for a, b in zip(logs(new.policy), logs(s.policy))])

    eps = 1e-7
    d1, d2 = delta(eps), delta(2 * eps)
    assert np.abs(d1).max() < 50 * eps  # tiny step, tiny change
    assert np.abs(d1).max() > 1e-3 * eps  # ... but not no change at all
    np.testing.assert_allclose(d2, 2 * d1, rtol=0, atol=1e-4 * np.abs(d1).max())


# -- adding a constant to the win rates changes nothing ---------------------------------------------------
class ShiftedBackend(games.ExactBackend):
    """Every win-rate query returns q + c (per slot): the update must not notice."""

    shift = 0.0

    def win_rates(self, sigma):
        w = super().win_rates(sigma)
        return games.WinRates(tuple(q + self.shift for q in w.q))


ALL = {
    "mwu": algorithms.MWU(eta=0.7),
    "omwu": algorithms.OMWU(eta=0.6),
    "mmd": algorithms.MMD(eta=0.9, alpha=0.3),
    "mpo": algorithms.MPO(eta=0.8, alpha=0.4, refresh=3),
    "mpo_adaptive": algorithms.MPO(eta=0.8, alpha=0.4, refresh="adaptive"),
    "nash_md": algorithms.NashMD(beta=0.3),
    "mirror_prox": algorithms.MirrorProx(eta=0.7, beta=0.25),
    "egpo": algorithms.EGPO(eta=1.2, beta=0.3),
    "inpo": algorithms.INPO(eta=2.5, tau=0.4),
    "mnpo": algorithms.MNPO(eta=2.0, tau=0.3),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ALL)
def test_constant_added_to_win_rates_changes_nothing(case, name):
    game, init = CASES[case]()
    out = []
    for c in (0.0, 0.37, -5.0):
        be = ShiftedBackend(game)
        be.shift = c
        algo = ALL[name].bind(be)
        s = algo.init(be, be.from_probs(init))
        for _ in range(6):
            s = algo.step(be, s)
        out.append(np.concatenate(logs(s.policy)))
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[2], out[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_zero_sum_game_plus_constant_has_the_same_trajectory(name):
    # A + c shifts the row payoffs by +c and the column payoffs by −c: strategically the same game
    # (and L, a payoff *range*, is unchanged, so the defaults agree too).
    game, init = zs_case()
    a = algorithms.run(ALL[name], game, 25, init=init, record=[25], average=False)
    b = algorithms.run(ALL[name], games.ZeroSumGame(game.A + 3.0, reference=tuple(np.exp(r) for r in game.log_reference)),
                       25, init=init, record=[25], average=False)
    for x, y in zip(a.policy, b.policy):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-11)


# -- iterates stay on the simplex (hypothesis) ------------------------------------------------------------
def _game(kind, seed, n, m):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return games.make("random", n=n, seed=seed)
    if kind == "skew_sharp":  # near-deterministic preferences (entries within e^-50 of 0 or 1)
        return games.make("random_skew", n=n, seed=seed, scale=25.0)
    if kind == "zero_sum_huge":  # payoffs up to 1e6
        return games.ZeroSumGame(rng.uniform(-1e6, 1e6, size=(n, m)))
    if kind == "zero_sum_tiny":  # payoffs of order 1e-6
        return games.ZeroSumGame(1e-6 * rng.normal(size=(n, m)))
    raise AssertionError(kind)


def _assert_on_simplex(be, policy, allowed_zero):
    for s, l in enumerate(policy.logp):
        l = np.asarray(l)
        assert not np.any(np.isnan(l))
        assert np.all(l <= 1e-12)
        p = np.exp(l)
        assert np.all(np.abs(p.sum(-1) - 1) <= 1e-12)
        # −inf only where the initial policy had no mass (an update with anchor weight a = 0, such as
        # Nash-MD's first decreasing step η_0β = 1, may give it mass again; nothing else may remove it)
        assert not np.any(np.isneginf(l) & ~allowed_zero[s]), (s, l)


ALGOS = ["mwu", "omwu", "mmd", "mpo", "nash_md", "mirror_prox", "egpo", "inpo", "mnpo"]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["random", "skew_sharp", "zero_sum_huge", "zero_sum_tiny"]),
       name=st.sampled_from(ALGOS), seed=st.integers(0, 10_000), n=st.integers(2, 7), m=st.integers(2, 7),
       aggressive=st.booleans(), zero_init=st.booleans())
def test_iterates_stay_on_the_simplex(kind, name, seed, n, m, aggressive, zero_init):
    game = _game(kind, seed, n, m)
    be = games.ExactBackend(game)
    L = be.lipschitz
    hp = {}
    if aggressive:  # steps 100× past any guarantee: policies become near-deterministic quickly
        hp = {"mwu": dict(eta=100 / L), "omwu": dict(eta=100 / L), "mmd": dict(eta=100 / L, alpha=0.01 * L),
              "mpo": dict(eta=100 / L, alpha=0.01 * L), "nash_md": dict(eta=50 / L, beta=0.01 * L),
              "mirror_prox": dict(eta=100.0, beta=0.01 * L), "egpo": dict(eta=50 / L, beta=0.01 * L),
              "inpo": dict(eta=0.02 * L, tau=0.01 * L), "mnpo": dict(eta=0.02 * L, tau=0.01 * L)}[name]
    algo = algorithms.make(name, **hp).bind(be)
    rng = np.random.default_rng(seed)
    init = [rng.dirichlet(np.ones(k)) for k in game.sizes]
    if zero_init:
        for p in init:
            p[0] = 0.0
            p /= p.sum()
    allowed = [p == 0 for p in init]
    # init() refuses a start with zero mass (algorithms.base.check_start); the backend must still compute
    # exactly on one (probabilities underflow), so the unchecked init builds the state here
    init_fn = type(algo).init.__wrapped__ if zero_init else type(algo).init
    s = init_fn(algo, be, be.from_probs(init[0] if len(init) == 1 else tuple(init)))
    for _ in range(300):
        s = algo.step(be, s)
    _assert_on_simplex(be, s.policy, allowed)


@pytest.mark.parametrize("name", ALGOS)
def test_long_run_near_deterministic_batch_stays_finite(name):
    """5000 steps on 16 sharp games at 10× the default step (MWU/OMWU/MPO log-probs reach −1e3 to −2.5e3)."""
    game = games.make("random_skew", n=5, seed=3, scale=10.0, batch=16)
    be = games.ExactBackend(game)
    default = algorithms.make(name).bind(be)
    # 10× the default step (÷10 for INPO/MNPO, whose η is an inverse rate; EGPO at its limit ηβ = 1)
    scale = {"inpo": 0.1, "mnpo": 0.1, "egpo": None, "nash_md": None}.get(name, 10)
    if name == "egpo":
        algo = default.replace(eta=1 / np.asarray(default.beta))
    elif name in ("inpo", "mnpo"):
        algo = default.replace(eta=np.maximum(0.1 * np.asarray(default.eta), np.asarray(default.tau)))
    elif scale is None:
        algo = default
    else:
        algo = default.replace(eta=scale * np.asarray(default.eta))
    r = algorithms.run(algo, be, 5000, record=[5000], average=True)
    _assert_on_simplex(be, r.state.algo_state.policy, [np.zeros((16, 5), bool)])
    assert np.all(np.isfinite(r.history["duality_gap"]))
    assert np.all(np.abs(r.average_policy.sum(-1) - 1) <= 1e-12)


def test_per_game_coefficient_zero_with_zero_mass_is_not_nan():
    """Per-game hyperparameters where some game's coefficient is 0 and the policy has zero mass: 0·(−inf) = 0.
    (``init`` refuses such a start — no log-linear algorithm can leave a face — so the state is built by
    hand: the backend must still compute exactly on it, as on any policy whose probabilities underflow.)"""
    g = games.tile(games.make("cyclic3"), 2)
    init = np.array([0.0, 0.5, 0.5])

    def run_from(algo, game):
        be = games.ExactBackend(game)
        # the state by hand: init() refuses a start on a face (check_start); the step must still be exact on one
        return algorithms.run(algo, be, 5, state=algorithms.RunState(algorithms.State(be.from_probs(init), 0)))

    for algo in (algorithms.NashMD(beta=np.array([0.1, 0.2])), algorithms.INPO(eta=np.array([0.3, 0.5]), tau=np.array([0.3, 0.2])),
                 algorithms.EGPO(eta=np.array([10.0, 5.0]), beta=np.array([0.1, 0.2]))):
        r = run_from(algo, g)
        assert np.all(np.isfinite(r.policy)), algo
        np.testing.assert_allclose(r.policy.sum(-1), 1, atol=1e-12)
        solo = run_from(algo.replace(**{k: v[1] for k, v in vars(algo).items() if isinstance(v, np.ndarray)}), g[1])
        np.testing.assert_allclose(r.policy[1], solo.policy, atol=1e-14)
