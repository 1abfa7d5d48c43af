"""Exact metrics against their definitions; the LP NE and the regularised NE checked by their own gaps."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import games
from tests.conftest import fixed_point_residual, kl_np, qre


def rand_pi(rng, n, size=None):
    return rng.dirichlet(np.ones(n), size=size)


# -- duality gap, exploitability, KL -------------------------------------------------------------------
def test_duality_gap_of_a_preference_game(rng):
    g = games.make("random", n=6, seed=1)
    pi = rand_pi(rng, 6)
    # DG = max_y (Pπ)_y − min_y (πᵀP)_y, and = 2·max_y (Pπ)_y − 1 since P + Pᵀ = 1
    dg = (g.P @ pi).max() - (pi @ g.P).min()
    assert games.duality_gap(g, pi) == pytest.approx(dg, abs=1e-15)
    assert games.duality_gap(g, pi) == pytest.approx(2 * (g.P @ pi).max() - 1, abs=1e-15)
    assert games.exploitability(g, pi) == pytest.approx(dg / 2, abs=1e-15)


def test_duality_gap_of_a_zero_sum_game(rng):
    A = rng.normal(size=(4, 7))
    g = games.ZeroSumGame(A)
    x, y = rand_pi(rng, 4), rand_pi(rng, 7)
    assert games.duality_gap(g, (x, y)) == pytest.approx((A @ y).max() - (x @ A).min(), abs=1e-14)
    assert games.exploitability(g, (x, y)) == pytest.approx(((A @ y).max() - (x @ A).min()) / 2, abs=1e-14)


def test_gaps_vanish_at_known_equilibria():
    assert games.duality_gap(games.make("cyclic3"), np.array([4, 3, 4]) / 11) == pytest.approx(0, abs=1e-15)
    mp = games.make("matrix_mp")
    assert games.duality_gap(mp, (np.full(2, .5), np.full(2, .5))) == pytest.approx(0, abs=1e-15)


def test_batched_metrics(rng):
    g = games.make("random", n=5, seed=2, batch=7)
    pi = rand_pi(rng, 5, 7)
    dg = games.duality_gap(g, pi)
    assert dg.shape == (7,)
    np.testing.assert_allclose(dg, 2 * np.einsum("bij,bj->bi", g.P, pi).max(-1) - 1, atol=1e-15)
    rg = games.regularized_gap(g, pi, 0.3)
    assert rg.shape == (7,)


def test_kl():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert games.kl(p, q) == pytest.approx(np.log(2), abs=1e-15)  # 0·log 0 = 0
    assert games.kl(q, q) == 0.0
    assert games.kl(q, p) == np.inf
    assert games.kl((p, q), (q, q)) == pytest.approx(np.log(2), abs=1e-15)  # pairs are summed


# -- regularised gap -------------------------------------------------------------------------------------
def reg_gap_pref(P, pi, beta, mu):
    """2·[β·lse(log μ + Pπ/β) + β·KL(π‖μ)] − 1 (max_{π1} J_β(π1, π) − min_{π2} J_β(π, π2))."""
    return 2 * (beta * logsumexp(np.log(mu) + P @ pi / beta) + beta * kl_np(pi, mu)) - 1


def test_regularized_gap_formula(rng):
    g = games.make("random", n=6, seed=5)
    mu = rand_pi(rng, 6)
    pi = rand_pi(rng, 6)
    for beta in (0.01, 0.3, 2.0):
        assert games.regularized_gap(g, pi, beta, reference=mu) == pytest.approx(reg_gap_pref(g.P, pi, beta, mu), abs=1e-14)
    # the game's own reference is the default
    g2 = games.PreferenceGame(g.P, reference=mu)
    assert games.regularized_gap(g2, pi, 0.3) == pytest.approx(reg_gap_pref(g.P, pi, 0.3, mu), abs=1e-14)


def test_regularized_gap_is_the_best_response_value_gap(rng):
    """Check the closed form against a brute-force max over a dense grid of the 3-simplex."""
    g = games.make("cyclic3")
    mu, pi, beta = np.array([0.2, 0.5, 0.3]), np.array([0.6, 0.1, 0.3]), 0.2
    k = 400
    a, b = np.meshgrid(np.linspace(0, 1, k + 1), np.linspace(0, 1, k + 1))
    grid = np.stack([a.ravel(), b.ravel(), 1 - a.ravel() - b.ravel()], -1)
    grid = grid[grid[:, 2] >= -1e-12].clip(0, 1)
    # J_β(π1, π2) = P(π1 ≻ π2) − β·KL(π1‖μ) + β·KL(π2‖μ), over every grid point at once
    best_1 = np.max(grid @ g.P @ pi - beta * kl_np(grid, mu) + beta * kl_np(pi, mu))
    best_2 = np.min(pi @ g.P @ grid.T - beta * kl_np(pi, mu) + beta * kl_np(grid, mu))
    brute = best_1 - best_2
    assert games.regularized_gap(g, pi, beta, reference=mu) == pytest.approx(brute, abs=2e-4)


def test_regularized_gap_of_a_zero_sum_game(rng):
    A = rng.normal(size=(3, 5))
    rx, ry = rand_pi(rng, 3), rand_pi(rng, 5)
    g = games.ZeroSumGame(A, reference=(rx, ry))
    x, y, beta = rand_pi(rng, 3), rand_pi(rng, 5), 0.4
    want = (beta * logsumexp(np.log(rx) + A @ y / beta) + beta * kl_np(x, rx)
            + beta * logsumexp(np.log(ry) - x @ A / beta) + beta * kl_np(y, ry))
    assert games.regularized_gap(g, (x, y), beta) == pytest.approx(want, abs=1e-13)


@settings(max_examples=50, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), beta=st.floats(1e-3, 10))
def test_regularized_gap_is_nonnegative_and_tends_to_the_gap(seed, n, beta):
    rng = np.random.default_rng(seed)
    g = games.PreferenceGame(games.make("random", n=n, seed=seed).P, reference=rand_pi(rng, n))
    pi = rand_pi(rng, n)
    assert games.regularized_gap(g, pi, beta) >= -1e-13
    # β → 0: the regularised gap tends to the original one (β·lse(x/β) → max x)
    assert games.regularized_gap(g, pi, 1e-9) == pytest.approx(games.duality_gap(g, pi), abs=1e-6)


# -- the LP Nash equilibrium ----------------------------------------------------------------------------
def test_lp_ne_of_random_preference_games_verified_by_their_gap():
    g = games.make("random", n=10, seed=0, batch=12)
    ne = games.nash_equilibrium(g)
    assert ne.shape == (12, 10)
    assert np.all(ne >= 0) and np.allclose(ne.sum(-1), 1, atol=1e-12)
    assert np.all(np.einsum("bij,bj->bi", g.P, ne).max(-1) - 0.5 <= 1e-9)


@pytest.mark.parametrize("shape", [(5, 7), (8, 3)])
def test_lp_ne_of_a_zero_sum_game_verified_by_its_gap(shape):
    A = np.random.default_rng(1).normal(size=shape)
    x, y = games.nash_equilibrium(games.ZeroSumGame(A))
    assert (A @ y).max() - (x @ A).min() <= 1e-9


def test_lp_ne_of_kuhn_poker_has_the_known_value():
    A = games.make("kuhn_poker").A
    x, y = games.nash_equilibrium(games.make("kuhn_poker"))
    assert (A @ y).max() - (x @ A).min() <= 1e-8
    assert x @ A @ y == pytest.approx(-1 / 18, abs=1e-8)  # Kuhn poker's value for the first player


def test_lp_ne_of_a_transitive_game_is_pure():
    s = np.array([0.1, 1.5, -0.3, 0.9])
    g = games.make("bradley_terry", scores=s)
    np.testing.assert_allclose(games.nash_equilibrium(g), np.eye(4)[1], atol=1e-9)


# -- the regularised NE ----------------------------------------------------------------------------------
CASES = [("cyclic3", 0.1), ("cyclic3", 0.01), ("perturbed_rps", 0.05), ("condorcet", 0.02), ("dice", 0.3)]


@pytest.mark.parametrize("name,beta", CASES)
def test_regularized_nash_verified_by_its_own_gap(name, beta):
    mu = np.array([0.5, 0.3, 0.2])
    g = games.make(name)
    star = games.regularized_nash(g, beta, reference=mu)
    assert reg_gap_pref(g.P, star, beta, mu) <= 1e-12
    # and it is the equilibrium, to the accuracy a gap of 1e-12 allows (gap ~ distance²)
    np.testing.assert_allclose(star, qre(g, beta, magnet=mu), rtol=0, atol=1e-5)


def test_regularized_nash_solves_the_fixed_point_equation_to_1e_12():
    worst = 0.0
    for name, beta in CASES:
        g = games.make(name)
        star = games.regularized_nash(g, beta)
        worst = max(worst, fixed_point_residual(g.P, beta, g.log_reference, star))
    assert worst <= 1e-12


@pytest.mark.parametrize("name,beta", CASES)
def test_polished_regularised_ne_solves_the_fixed_point_equation(name, beta):
    # π = softmax(log μ + Pπ/β) to 1e-12 (our Newton polish of regularized_nash; used by the rate tests)
    g = games.make(name)
    star = qre(g, beta)
    assert fixed_point_residual(g.P, beta, g.log_reference, star) <= 1e-12
    assert reg_gap_pref(g.P, star, beta, np.exp(g.log_reference)) <= 1e-14


def test_regularized_nash_batched_and_zero_sum():
    g = games.make("random", n=8, seed=1, batch=5)
    star = games.regularized_nash(g, 0.1)
    assert star.shape == (5, 8)
    for b in range(5):
        assert reg_gap_pref(g.P[b], star[b], 0.1, np.full(8, 1 / 8)) <= 1e-12
    A = np.random.default_rng(2).normal(size=(3, 4))
    x, y = games.regularized_nash(games.ZeroSumGame(A), 0.5)
    u = np.full(3, 1 / 3), np.full(4, 1 / 4)
    gap = (0.5 * logsumexp(np.log(u[0]) + A @ y / 0.5) + 0.5 * kl_np(x, u[0])
           + 0.5 * logsumexp(np.log(u[1]) - x @ A / 0.5) + 0.5 * kl_np(y, u[1]))
    assert gap <= 1e-12


def test_regularised_ne_tends_to_the_ne_as_beta_shrinks():
    g = games.make("cyclic3")
    d = [np.abs(qre(g, b) - g.nash).max() for b in (0.1, 0.01, 0.001)]
    assert d[0] > d[1] > d[2] and d[2] < 1e-3
