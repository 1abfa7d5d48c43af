"""Each algorithm's target equilibrium is a fixed point of its step (and a nearby point is not).

- MWU, OMWU, MPO (magnet = NE): the LP Nash equilibrium of the original game.
- MMD: the QRE π*_α ∝ ρ·exp(Pπ*_α/α) for its magnet ρ.
- Nash-MP, EGPO, INPO, MNPO: the β-regularised NE π*_β.
- Nash-MD: *not* π*_β with a constant step. Derivation: at π = π*_β (log π* = log μ + Pπ*/β + c)
  the mixture is m = π*^{1−ηβ}μ^{ηβ} ∝ π*·exp(−ηPπ*), so the step gives
      log π' = log π* + η·P(m − π*) + const,   m − π* = −η·π*⊙(Pπ* − ½) + O(η²),
  a displacement of order η² (not 0). The constant-step fixed point π̄_η instead solves
  π̄ ∝ μ·exp(P m(π̄)/β), at distance O(η/β) from π*_β. With the decreasing schedule the
  displacement at π*_β is ≈ −η_t²·P[π*⊙(Pπ* − ½)] → 0: a fixed point only asymptotically.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import fsolve
from scipy.special import log_softmax

import algorithms
import games
from algorithms.base import State
from tests.conftest import GAMES3, kl_np, qre


def step_once(algo, game, policy, t=0):
    """Bind, start at ``policy`` (for MPO/MNPO the magnet/history start there too), take one step."""
    be = games.ExactBackend(game)
    algo = algo.bind(be)
    s = algo.init(be, be.from_probs(policy))
    if t:
        s = State(s.policy, t)
    return be.to_numpy(algo.step(be, s).policy)


def centred(v):
    return v - v.mean(-1, keepdims=True)


UNREG = {"mwu": algorithms.MWU(), "omwu": algorithms.OMWU(), "mpo": algorithms.MPO(),
         "mpo_adaptive": algorithms.MPO(refresh="adaptive")}


@pytest.mark.parametrize("name", UNREG)
@pytest.mark.parametrize("game_name", GAMES3 + ("rps",))
def test_nash_equilibrium_is_fixed_for_unregularised_methods(name, game_name):
    g = games.make(game_name)
    ne = games.nash_equilibrium(g)
    np.testing.assert_allclose(step_once(UNREG[name], g, ne), ne, rtol=0, atol=1e-14)
    # a perturbed point is not fixed (so the check above can fail)
    near = 0.98 * ne + 0.02 * np.array([1.0, 0, 0])
    assert np.abs(step_once(UNREG[name], g, near) - near).max() > 1e-5


@pytest.mark.parametrize("name", UNREG)
def test_nash_equilibrium_is_fixed_on_a_zero_sum_game(name):
    g = games.ZeroSumGame(np.array([[0.0, -1, 3], [1, 0, -3], [-3, 3, 0]]))
    x, y = games.nash_equilibrium(g)
    nx, ny = step_once(UNREG[name], g, (x, y))
    np.testing.assert_allclose(nx, x, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ny, y, rtol=0, atol=1e-14)


@pytest.mark.parametrize("game_name", GAMES3)
def test_mmd_qre_for_its_magnet_is_fixed(game_name):
    g = games.make(game_name)
    magnet, alpha = np.array([0.5, 0.3, 0.2]), 0.07
    star = qre(g, alpha, magnet=magnet)
    algo = algorithms.MMD(eta=0.6, alpha=alpha, magnet=magnet)
    np.testing.assert_allclose(step_once(algo, g, star), star, rtol=0, atol=1e-14)
    # the QRE for another magnet (here: the uniform reference) is not fixed
    other = qre(g, alpha)
    assert np.abs(step_once(algo, g, other) - other).max() > 1e-4


def test_mmd_qre_is_fixed_on_a_zero_sum_game():
    rng = np.random.default_rng(5)
    g = games.ZeroSumGame(rng.normal(size=(4, 6)))
    magnet = (rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(6)))
    star = qre(g, 0.3, magnet=magnet)
    out = step_once(algorithms.MMD(eta=0.5, alpha=0.3, magnet=magnet), g, star)
    for a, b in zip(out, star):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


REG = {
    "mirror_prox": lambda b: algorithms.MirrorProx(beta=b, eta=0.8),
    "egpo": lambda b: algorithms.EGPO(beta=b, eta=1.5),
    "inpo": lambda b: algorithms.INPO(tau=b, eta=1.3),
    "mnpo": lambda b: algorithms.MNPO(tau=b, eta=1.3, weights=(0.5, 0.3, 0.2)),
}


@pytest.mark.parametrize("name", REG)
@pytest.mark.parametrize("game_name", GAMES3)
def test_regularised_methods_fix_the_regularised_ne(name, game_name):
    beta = 0.1
    mu = np.array([0.2, 0.5, 0.3])
    g = games.PreferenceGame(games.make(game_name).P, reference=mu)
    star = qre(g, beta)
    np.testing.assert_allclose(step_once(REG[name](beta), g, star), star, rtol=0, atol=1e-14)
    # the original NE is not (β-bias): every regularised method moves away from it
    ne = games.nash_equilibrium(g)
    assert np.abs(step_once(REG[name](beta), g, ne) - ne).max() > 1e-4


# -- Nash-MD ---------------------------------------------------------------------------------------
def nash_md_biased_point(g, eta, beta, start):
    """Solve π̄ ∝ μ·exp(P m(π̄)/β), m(π) ∝ π^{1−ηβ}μ^{ηβ}: the constant-step fixed point (by fsolve)."""
    lmu, w = g.log_reference, eta * beta

    def res(z):  # z: logits of actions 1..n−1 relative to action 0
        lp = log_softmax(np.r_[0.0, z])
        m = np.exp(log_softmax((1 - w) * lp + w * lmu))
        return (lp - log_softmax(lmu + g.P @ m / beta))[1:]

    z = fsolve(res, np.log(start[1:] / start[0]), xtol=1e-15, full_output=True)[0]  # no warnings: checked below
    assert np.abs(res(z)).max() < 1e-14
    return np.exp(log_softmax(np.r_[0.0, z]))


@pytest.mark.parametrize("game_name", ["cyclic3", "perturbed_rps", "condorcet"])
def test_nash_md_constant_step_fixes_its_biased_point_not_the_regularised_ne(game_name):
    g = games.make(game_name)
    beta, eta = 0.1, 2.0
    star = qre(g, beta)
    algo = algorithms.NashMD(eta=eta, beta=beta)
    # π*_β moves, by the derived amount η·P(m − π*) (m ∝ π*·exp(−ηPπ*))
    m = np.exp(log_softmax(np.log(star) - eta * g.P @ star))
    moved = step_once(algo, g, star)
    np.testing.assert_allclose(centred(np.log(moved) - np.log(star)), centred(eta * g.P @ (m - star)), rtol=0, atol=1e-13)
    assert np.abs(moved - star).max() > 1e-4
    # ... while π̄_η is fixed, and visibly biased
    bar = nash_md_biased_point(g, eta, beta, star)
    np.testing.assert_allclose(step_once(algo, g, bar), bar, rtol=0, atol=1e-13)
    assert kl_np(star, bar) > 1e-5
    # the bias is O(η/β): KL(π*‖π̄_η) ∝ η² for small η
    k1 = kl_np(star, nash_md_biased_point(g, 0.2, beta, star))
    k2 = kl_np(star, nash_md_biased_point(g, 0.1, beta, star))
    assert 3.5 < k1 / k2 < 4.5


@pytest.mark.parametrize("game_name", ["cyclic3", "perturbed_rps", "condorcet"])
def test_nash_md_decreasing_schedule_fixes_the_regularised_ne_only_asymptotically(game_name):
    g = games.make(game_name)
    beta = 0.1
    star = qre(g, beta)
    v = centred(-g.P @ (star * (g.P @ star - 0.5)))  # predicted displacement / η_t²
    assert np.abs(v).max() > 1e-4  # π*_β ≠ μ here, so the O(η²) term is really there
    for t in (10, 100, 1000, 10_000):
        eta_t = 2 / (beta * (t + 2))
        d = centred(np.log(step_once(algorithms.NashMD(beta=beta), g, star, t=t)) - np.log(star))
        # d = η_t²·v + O(η_t³)
        np.testing.assert_allclose(d / eta_t**2, v, rtol=0, atol=20 * eta_t * np.abs(v).max())
