"""games.conditioning on games whose values are known in closed form, the depth bound, and the
anatomy of the slow MPO run on games.make("random", n=10, seed=0) (issue 13)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import algorithms
import games
from games.conditioning import depth_bound
from tests.conftest import kl_np, lipschitz_np


def h(p):
    """−(1−p)·log(1−p), written out (0 at p = 1)."""
    return 0.0 if p == 1 else -(1 - p) * np.log(1 - p)


# -- closed forms --------------------------------------------------------------------------------------
def test_cyclic3():
    c = games.conditioning(games.make("cyclic3"))
    np.testing.assert_allclose(c.nash, np.array([4, 3, 4]) / 11, rtol=0, atol=1e-15)
    assert c.support.tolist() == [True, True, True]
    assert c.p_min == pytest.approx(3 / 11, abs=1e-15) and c.p_min_action == 1
    assert c.margin == np.inf and c.margin_action == -1 and c.margin_time == 0.0
    assert c.unique and c.strictly_complementary and c.nonsingular
    kl = kl_np(np.array([4, 3, 4]) / 11, np.full(3, 1 / 3))
    assert c.kl_reference == pytest.approx(kl, abs=1e-15)
    assert c.depth == pytest.approx((kl + h(3 / 11)) / (3 / 11), rel=1e-14)
    assert c.lipschitz == pytest.approx(0.4, abs=1e-15)


def test_rps_uniform_equilibrium():
    c = games.conditioning(games.make("rps"))
    np.testing.assert_allclose(c.nash, np.full(3, 1 / 3), rtol=0, atol=1e-15)
    assert c.p_min == pytest.approx(1 / 3, abs=1e-15) and c.unique
    assert abs(c.kl_reference) < 1e-15
    assert c.depth == pytest.approx(-2 * np.log(2 / 3), rel=1e-13)  # h(1/3)/(1/3) = −2·log(2/3)


def test_bradley_terry_pure_equilibrium_and_margins():
    s = np.array([0.3, -1.0, 1.7, 1.1, 0.0])
    c = games.conditioning(games.make("bradley_terry", scores=s))
    np.testing.assert_array_equal(c.nash, np.eye(5)[2])
    assert c.p_min == 1.0 and c.p_min_action == 2
    # against the pure NE (action 2) action j wins with σ(s_j − s_2); the value is ½
    sig = 1 / (1 + np.exp(-(s - s[2])))
    margins = 0.5 - sig
    assert c.margin == pytest.approx(margins[3], abs=1e-15) and c.margin_action == 3  # the runner-up
    assert c.unique
    P = games.make("bradley_terry", scores=s).P
    assert c.lipschitz == pytest.approx(lipschitz_np(P), abs=1e-15)
    assert c.margin_time == pytest.approx(lipschitz_np(P) / margins[3], rel=1e-13)
    assert c.kl_reference == pytest.approx(np.log(5), abs=1e-15) and c.depth == pytest.approx(np.log(5), abs=1e-15)


def test_duplicated_action_makes_the_equilibrium_non_unique():
    # RPS with rock twice: every (a, 1/3 − a, 1/3, 1/3) is an equilibrium
    P = games.make("rps").P[np.ix_([0, 0, 1, 2], [0, 0, 1, 2])]
    c = games.conditioning(games.PreferenceGame(P))
    assert not c.unique
    assert not (c.strictly_complementary and c.nonsingular)
    np.testing.assert_allclose(c.nash[[0, 1]].sum(), 1 / 3, atol=1e-12)


def test_zero_sum_game_with_a_non_unique_column_strategy():
    # the row player is indifferent; the column player's optimal strategies form a segment
    c = games.conditioning(games.ZeroSumGame(np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])))
    assert not c.unique


def test_zero_sum_matching_pennies():
    c = games.conditioning(games.ZeroSumGame(np.array([[1.0, -1.0], [-1.0, 1.0]])))
    for x in c.nash:
        np.testing.assert_allclose(x, [0.5, 0.5], atol=1e-15)
    assert c.unique and c.p_min == pytest.approx(0.5, abs=1e-15) and c.kl_reference == pytest.approx(0, abs=1e-15)


def test_seed0_game_matches_the_issue():
    """games.make("random", n=10, seed=0): NE mass 0.00265 on action 0, off-support margin 8.9e-5."""
    c = games.conditioning(games.make("random", n=10, seed=0))
    assert c.p_min_action == 0 and round(c.p_min, 5) == 0.00265
    assert c.margin_action == 5 and round(c.margin, 6) == 0.000089
    assert c.unique
    # an independent check of the equilibrium: value ½ on the support, margins off it
    g = games.make("random", n=10, seed=0)
    q = g.P @ c.nash
    np.testing.assert_allclose(q[c.support], 0.5, atol=1e-15)
    np.testing.assert_allclose(np.min(0.5 - q[~c.support]), c.margin, atol=1e-15)


def test_batch_equals_single_games():
    g = games.make("random", n=6, seed=3, batch=4)
    cb = games.conditioning(g)
    for b in range(4):
        cs = games.conditioning(g[b])
        for k, v in cs.as_dict().items():
            np.testing.assert_allclose(np.asarray(getattr(cb, k))[b], v, rtol=0, atol=1e-15, err_msg=k)
        np.testing.assert_allclose(cb.nash[b], cs.nash, atol=1e-15)


def test_bad_arguments():
    with pytest.raises(TypeError):
        games.conditioning(np.eye(3))
    with pytest.raises(ValueError, match="tol"):
        games.conditioning(games.make("rps"), tol=0)


# -- the depth bound -------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), spread=st.floats(0.05, 5.0))
def test_depth_bound_holds_for_every_reference(seed, n, spread):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.full(n, spread))
    rho = rng.dirichlet(np.full(n, spread))
    kl = kl_np(pi, rho)
    for i in range(n):
        if pi[i] > 1e-12 and rho[i] > 0:  # (ρ_i = 0 by underflow: KL = ∞ and the bound is void)
            assert np.log(pi[i] / rho[i]) <= depth_bound(kl, pi[i]) + 1e-9


def test_depth_bound_is_attained():
    """ρ that keeps π*'s proportions elsewhere and starves action i attains the bound (up to O(ρ_i))."""
    pi = np.array([0.01, 0.29, 0.7])
    for r0 in (1e-4, 1e-8, 1e-12):
        rho = np.r_[r0, pi[1:] * (1 - r0) / (1 - pi[0])]
        gap = depth_bound(kl_np(pi, rho), pi[0]) - np.log(pi[0] / r0)
        assert 0 <= gap <= 2 * r0 * (1 - pi[0]) / pi[0] + 1e-12


# -- the anatomy of the slow run (a property: where the spike is, not its step) ------------------------------
def _anatomy(steps=13_000, every=10):
    g = games.make("random", n=10, seed=0)
    c = games.conditioning(g)
    i, star = c.p_min_action, c.nash
    be = games.ExactBackend(g)
    algo = algorithms.MPO().bind(be)
    s = algo.init(be, be.reference)
    m = star > 0
    rows = []
    for t in range(1, steps + 1):
        s = algo.step(be, s)
        if t % every == 0:
            lr = np.asarray(s.magnet.logp[0])
            rows.append((t, float(be.duality_gap(s.policy)), float(np.asarray(s.policy.logp[0])[i] - np.log(star[i])),
                         float(np.sum(star[m] * (np.log(star[m]) - lr[m]))), float(np.log(star[i]) - lr[i])))
    return c, np.array(rows)


def test_spike_comes_when_the_starved_action_climbs_back_to_its_equilibrium_mass():
    c, a = _anatomy()
    t, gap, ratio, kl, magnet_depth = a.T
    # the magnet's log-ratio for the smallest-mass action never exceeds the bound its KL allows ...
    assert np.all(magnet_depth <= depth_bound(kl, c.p_min) + 1e-9)
    # ... and the run goes almost all the way down to it: the KL budget is spent on that one action
    k = np.argmax(magnet_depth)
    assert magnet_depth[k] >= 0.9 * depth_bound(kl[k], c.p_min)
    assert magnet_depth[k] > 50  # nats: the depth, not a rounding effect
    # the plateau: small gap while the action is starved, and KL(π*‖ρ_k) does not move (±1%)
    plateau = (t > 1000) & (t < t[k])
    assert np.all(gap[plateau] < 0.01)
    assert np.ptp(kl[plateau]) < 0.01 * kl[plateau].mean()
    # the spike: the largest gap after the deepest point comes as the log-ratio is back near 0
    after = t > t[k]
    j = np.flatnonzero(after)[np.argmax(gap[after])]
    assert gap[j] > 0.1
    assert abs(ratio[j]) < 3.0, ratio[j]
    # ... and KL(π*‖ρ_k), flat before, falls at the spike (the proximal-point progress comes there)
    drop = -np.diff(kl)  # drop[r]: from record r to r + 1
    late = t[1:] > 1000  # after the first, fast phase (KL falls from its start to the plateau)
    jd = np.flatnonzero(late)[np.argmax(drop[late])]
    assert drop[jd] > 100 * np.max(np.abs(drop[plateau[1:]])) and abs(t[jd] - t[j]) < 1500
    assert kl[-1] < 0.9 * kl[plateau].mean()
