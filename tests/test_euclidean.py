"""The Euclidean comparators (projected OGDA and extragradient): the projection, closed-form steps,
fixed points, the simplex, the proven step ranges, the registry marker and the refusal on a backend
without probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import algorithms
import games
from algorithms.euclidean import lipschitz2, project_simplex
from tests.conftest import GAMES3
from tests.test_step_closed_form import CASES, _game, payoffs, setup


def proj_bisect(v):
    """Projection onto the simplex by bisection on θ in Σ max(v − θ, 0) = 1 (independent of the library's sort)."""
    v = np.asarray(v, float)
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0).sum() > 1:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0)


# -- the projection -----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9), scale=st.floats(1e-3, 1e3))
def test_projection_matches_bisection_and_torch(seed, n, scale):
    v = np.random.default_rng(seed).normal(size=(3, n)) * scale
    x = project_simplex(v)
    for row, xr in zip(v, x):
        np.testing.assert_allclose(xr, proj_bisect(row), rtol=0, atol=1e-12 * max(1.0, scale))
    np.testing.assert_allclose(x.sum(-1), 1, atol=1e-12)
    assert np.all(x >= 0)
    np.testing.assert_allclose(project_simplex(torch.tensor(v)).numpy(), x, rtol=0, atol=1e-14)


def test_projection_fixes_simplex_points_and_ignores_constant_shifts():
    p = np.random.default_rng(1).dirichlet(np.ones(6), size=4)
    np.testing.assert_allclose(project_simplex(p), p, rtol=0, atol=1e-15)
    v = np.random.default_rng(2).normal(size=(4, 6))
    np.testing.assert_allclose(project_simplex(v + 3.7), project_simplex(v), rtol=0, atol=1e-14)


# -- the Lipschitz constant ---------------------------------------------------------------------------------
def test_two_action_preference_games_have_a_constant_operator():
    g = games.PreferenceGame(np.array([[0.5, 0.8], [0.2, 0.5]]))
    assert lipschitz2(g) == pytest.approx(0, abs=1e-15)
    be = games.ExactBackend(g)
    assert algorithms.OGDA().bind(be).eta == pytest.approx(0.125 / be.lipschitz)
    algorithms.OGDA(eta=1e6, guarantee=True).bind(be)  # every step is in range
    r = algorithms.run(algorithms.OGDA(), g, 50, record=[50])
    assert r.history["duality_gap"][-1] == 0  # the pure equilibrium (action 0), exactly


def test_lipschitz2_closed_forms():
    # RPS: A = P − ½ is a normal skew-symmetric circulant with eigenvalues 0, ±i·√3/2
    assert lipschitz2(games.make("rps")) == pytest.approx(np.sqrt(3) / 2, abs=1e-14)
    # matching pennies: on differences (d, −d) the payoff is ±2d: the norm of [[1,−1],[−1,1]] restricted is 2
    assert lipschitz2(games.ZeroSumGame(np.array([[1.0, -1.0], [-1.0, 1.0]]))) == pytest.approx(2.0, abs=1e-14)
    g = games.make("random", n=5, seed=1, batch=3)
    np.testing.assert_allclose(lipschitz2(g), [lipschitz2(g[b]) for b in range(3)], rtol=1e-14)


# -- closed-form steps --------------------------------------------------------------------------------------
def probs_of(policy):
    return [np.exp(np.asarray(l)) for l in policy.logp]


def q_of(game, probs):
    with np.errstate(divide="ignore"):
        return payoffs(game, [np.log(p) for p in probs])


@pytest.mark.parametrize("case", CASES)
def test_extragradient_step(case):
    game, init = CASES[case]()
    eta = 0.3
    be, algo, s = setup(algorithms.Extragradient(eta=eta), game, init)
    z = probs_of(s.policy)
    for _ in range(6):
        half = [proj_bisect(p + eta * g) for p, g in zip(z, q_of(game, z))]
        z = [proj_bisect(p + eta * g) for p, g in zip(z, q_of(game, half))]
        s = algo.step(be, s)
        for a, b in zip(probs_of(s.policy), z):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_ogda_step(case):
    game, init = CASES[case]()
    eta = 0.4
    be, algo, s = setup(algorithms.OGDA(eta=eta), game, init)
    z = zhat = probs_of(s.policy)
    for _ in range(6):
        g = q_of(game, z)
        zhat = [proj_bisect(p + eta * gg) for p, gg in zip(zhat, g)]
        z = [proj_bisect(p + eta * gg) for p, gg in zip(zhat, g)]
        s = algo.step(be, s)
        for a, b in zip(probs_of(s.policy), z):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_queries_per_step():
    g = games.make("cyclic3")
    assert algorithms.run(algorithms.Extragradient(), g, 5).history["queries"][-1] == 10
    assert algorithms.run(algorithms.OGDA(), g, 5).history["queries"][-1] == 5


# -- fixed points and convergence ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ogda", "extragradient"])
@pytest.mark.parametrize("game_name", GAMES3 + ("rps",))
def test_nash_equilibrium_is_fixed(name, game_name):
    g = games.make(game_name)
    ne = games.nash_equilibrium(g)
    be, algo, s = setup(algorithms.make(name), g, ne)
    for _ in range(3):
        s = algo.step(be, s)
    # rounding of z + η·q: a few ulps of |η·q| (η·q ≈ 4.6 on dice, whose payoffs differ by 1/9 only)
    tol = 8 * np.finfo(float).eps * (1 + algo.eta * np.abs(g.P @ ne).max())
    np.testing.assert_allclose(be.to_numpy(s.policy), ne, rtol=0, atol=tol)
    near = 0.98 * ne + 0.02 * np.array([1.0, 0, 0])
    be, algo, s = setup(algorithms.make(name), g, near)
    assert np.abs(be.to_numpy(algo.step(be, s).policy) - near).max() > 1e-5


@pytest.mark.parametrize("name", ["ogda", "extragradient"])
def test_pure_equilibrium_on_the_boundary_is_fixed(name):
    g = games.make("bradley_terry", scores=[0.0, 2.0, 1.0])
    be, algo, s = setup(algorithms.make(name), g, np.array([0.0, 1.0, 0.0]))
    np.testing.assert_array_equal(be.to_numpy(algo.step(be, s).policy), [0.0, 1.0, 0.0])


@pytest.mark.parametrize("name", ["ogda", "extragradient"])
def test_converge_on_cyclic3_and_a_zero_sum_game(name):
    # OGDA's proven step 1/(8L₂) is 7× smaller than extragradient's default: measured 1.7e-11 and 5e-6
    steps, tol = {"ogda": (3000, (1e-10, 1e-5)), "extragradient": (1000, (1e-12, 1e-12))}[name]
    r = algorithms.run(algorithms.make(name), games.make("cyclic3"), steps, record=[steps], init=[0.7, 0.2, 0.1])
    assert r.history["duality_gap"][-1] < tol[0]
    z = games.ZeroSumGame(np.array([[0.0, -1, 3], [1, 0, -3], [-3, 3, 0]]))
    r = algorithms.run(algorithms.make(name), z, steps, record=[steps])
    assert r.history["duality_gap"][-1] < tol[1]


# -- the simplex, batches, torch ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["random", "skew_sharp", "zero_sum_huge", "zero_sum_tiny"]), name=st.sampled_from(["ogda", "extragradient"]),
       seed=st.integers(0, 10_000), n=st.integers(2, 7), m=st.integers(2, 7), big=st.booleans())
def test_iterates_stay_on_the_simplex(kind, name, seed, n, m, big):
    game = _game(kind, seed, n, m)
    be = games.ExactBackend(game)
    algo = algorithms.make(name, eta=100 / be.lipschitz if big else None).bind(be)
    rng = np.random.default_rng(seed)
    init = [rng.dirichlet(np.ones(k)) for k in game.sizes]
    s = algo.init(be, be.from_probs(init[0] if len(init) == 1 else tuple(init)))
    for _ in range(50):
        s = algo.step(be, s)
    for p in probs_of(s.policy):
        assert np.all(p >= 0) and abs(p.sum() - 1) < 1e-12 and not np.any(np.isnan(p))


@pytest.mark.parametrize("name", ["ogda", "extragradient"])
def test_batch_on_torch_equals_single_games_on_numpy(name):
    g = games.make("random", n=6, seed=5, batch=3)
    rt = algorithms.run(algorithms.make(name), g, 60, backend="torch", record=[60])
    for b in range(3):
        rn = algorithms.run(algorithms.make(name), g[b], 60, record=[60])
        np.testing.assert_allclose(rt.policy[b], rn.policy, rtol=0, atol=1e-13)


# -- step ranges, the registry, and the LLM refusal ----------------------------------------------------------
def test_defaults_at_the_proven_edges():
    g = games.make("random", n=5, seed=0)
    be = games.ExactBackend(g)
    L2 = lipschitz2(g)
    assert algorithms.OGDA().bind(be).eta == pytest.approx(1 / (8 * L2), rel=1e-14)
    assert algorithms.Extragradient().bind(be).eta == pytest.approx(0.9 / L2, rel=1e-14)
    with pytest.raises(ValueError, match="proven range"):
        algorithms.OGDA(eta=1.01 / (8 * L2), guarantee=True).bind(be)
    with pytest.raises(ValueError, match="proven range"):
        algorithms.Extragradient(eta=1 / L2, guarantee=True).bind(be)  # the range is open: η < 1/L₂
    algorithms.OGDA(eta=1 / (8 * L2), guarantee=True).bind(be)


def test_registry_marks_them_exact_only():
    assert set(algorithms.EXACT_ONLY) == {"ogda", "extragradient"}
    assert not set(algorithms.available()) & set(algorithms.EXACT_ONLY)
    assert set(algorithms.available(comparators=True)) >= {"ogda", "extragradient", "mpo"}
    assert algorithms.get("eg") is algorithms.Extragradient and algorithms.get("projected-ogda") is algorithms.OGDA


class NoProbabilities:
    """A backend with the LLM backend's interface but no explicit probabilities."""

    lipschitz = 0.5
    exact_metrics = False
    queries = 0

    def initial_policy(self, init=None):
        return object()


@pytest.mark.parametrize("name", ["ogda", "extragradient"])
def test_refused_on_a_backend_without_probabilities(name):
    with pytest.raises(ValueError, match="exact backend only"):
        algorithms.make(name).bind(NoProbabilities())


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "fast"])
def test_bad_eta(bad):
    with pytest.raises(ValueError, match="eta"):
        algorithms.OGDA(eta=bad)
    with pytest.raises(ValueError, match="eta"):
        algorithms.Extragradient(eta=bad)
