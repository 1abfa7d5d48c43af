"""games.regularized_nash against an independent 50-digit Newton solve (issue 8.7, issue 9 class 8).

The stopping rule (see the docstring) accepts a fixed-point residual r ≤ 16·ε·(1 + L/β)², the
rounding floor's estimate with a margin; the answer must then match the high-precision root in log
space to about that floor, for β from 1e-4 (the EGPO paper uses 1e-3 on these games) to 1e6.
"""
from __future__ import annotations

import numpy as np
import pytest

import games
from tests.mp_reference import qre_mp

EPS = np.finfo(np.float64).eps


def _log_policy(pi):
    with np.errstate(divide="ignore"):  # probabilities that underflowed to 0
        return np.log(np.concatenate(pi) if isinstance(pi, tuple) else pi)


def _check_against_mp(game, beta, pi):
    """The library's π*_β matches the 50-digit root: in log space to the rounding floor's estimate
    (times 16, the rule's own margin), and in probabilities to 1e-12 absolutely."""
    L = games.ExactBackend(game).lipschitz
    start = np.maximum(_log_policy(pi), -745.0)  # underflowed entries (π < 1e-323) start from the smallest double
    ell, residual = qre_mp(game, beta, start)
    assert residual < 1e-40  # the reference really is the root
    star = np.array([float(x) for x in ell])
    ours = _log_policy(pi)
    representable = star > -700  # beyond that π* underflows to 0 in float64, and so must ours
    floor = EPS * (1 + L / beta) ** 2
    err = np.max(np.abs(ours[representable] - star[representable]))
    assert err <= 16 * floor, (beta, err, floor)
    np.testing.assert_allclose(np.exp(ours), np.exp(star), rtol=0, atol=1e-12)
    assert np.all(np.exp(ours[~representable]) <= 1e-300)
    return err


@pytest.mark.parametrize("beta", [1e6, 1e2, 1.0, 1e-1, 1e-2, 3e-3, 1e-3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_games_match_a_50_digit_newton_solve(beta, seed):
    g = games.make("random", n=10, seed=seed)
    _check_against_mp(g, beta, games.regularized_nash(g, beta))


def test_the_issue_case_beta_1e_3_is_returned():
    # issue 8.7: this raised "residual 1.61e-11 > tol=1e-11" though the point matched to 8e-13
    g = games.make("random", n=10, seed=0)
    err = _check_against_mp(g, 1e-3, games.regularized_nash(g, 0.001))
    assert err < 1e-10


def test_beta_1e_4_on_a_batch_of_random_games():
    """β = 1e-4 (L/β = 5000): ~10⁵ Mirror Prox steps, run as one batch of three n = 10 games."""
    g = games.make("random", n=10, seed=7, batch=3)
    star = games.regularized_nash(g, 1e-4)
    for b in range(3):
        _check_against_mp(g[b], 1e-4, star[b])


@pytest.mark.parametrize("beta", [3e-3, 1.0, 1e6])
def test_zero_sum_game_matches_a_50_digit_newton_solve(beta):
    A = np.random.default_rng(1).uniform(-1, 1, (6, 5))
    g = games.ZeroSumGame(A)
    _check_against_mp(g, beta, games.regularized_nash(g, beta))


def test_per_game_beta_in_a_batch():
    g = games.make("random", n=10, seed=3, batch=2)
    betas = np.array([1e-3, 10.0])
    star = games.regularized_nash(g, betas)
    for b in range(2):
        _check_against_mp(g[b], betas[b], star[b])


@pytest.mark.parametrize("scale", [1e-9, 1.0, 1e9])
def test_scaling_payoffs_and_beta_together_changes_nothing(scale):
    """π*_β depends on P/β only: payoffs and β scaled together give the same equilibrium, and the
    stopping rule (which depends on β/L only) accepts it at every scale."""
    A = np.random.default_rng(2).uniform(-1, 1, (5, 5))
    x1, y1 = games.regularized_nash(games.ZeroSumGame(A), 1e-2)
    xs, ys = games.regularized_nash(games.ZeroSumGame(scale * A), scale * 1e-2)
    np.testing.assert_allclose(xs, x1, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ys, y1, rtol=1e-9, atol=1e-15)


def test_a_tolerance_below_the_rounding_floor_fails_clearly():
    g = games.make("random", n=10, seed=0)
    with pytest.raises(RuntimeError, match=r"residual .* rounding floor .*tol"):
        games.regularized_nash(g, 1e-3, tol=1e-15, max_steps=30_000)
