"""The game catalogue: matrices rebuilt from their definitions, documented equilibria, batches."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import games


def is_valid_preference(P):
    P = np.asarray(P)
    return (np.all((P >= 0) & (P <= 1)) and np.allclose(P + np.swapaxes(P, -1, -2), 1, atol=1e-12, rtol=0)
            and np.allclose(np.diagonal(P, axis1=-2, axis2=-1), 0.5, atol=1e-12, rtol=0))


def equilibrium_violation(P, pi):
    """max_y P(y ≻ π) − ½ (≤ 0 exactly at an NE of the symmetric game)."""
    return np.max(P @ pi) - 0.5


# -- matrices rebuilt from their definitions ---------------------------------------------------------------
def test_perturbed_rps_is_mmds_matrix_min_max_normalised():
    A = np.array([[0, -3, 3], [3, 0, -1], [-3, 1, 0]], float)
    np.testing.assert_allclose(games.make("perturbed_rps").P, (A - A.min()) / (A.max() - A.min()), atol=1e-15)


def test_cyclic3_matrix():
    np.testing.assert_array_equal(games.make("cyclic3").P, [[.5, .1, .8], [.9, .5, .1], [.2, .9, .5]])


def test_dice_from_the_faces_of_non_transitive_dice():
    faces = [(2, 2, 4, 4, 9, 9), (1, 1, 6, 6, 8, 8), (3, 3, 5, 5, 7, 7)]  # A beats B beats C beats A
    P = np.array([[np.mean([a > b for a, b in itertools.product(fi, fj)]) + 0.5 * np.mean(
        [a == b for a, b in itertools.product(fi, fj)]) for fj in faces] for fi in faces])
    np.testing.assert_allclose(games.make("dice").P, P, atol=1e-15)


@pytest.mark.parametrize("eps", [-0.5, -0.2, 0.0, 0.1, 0.3])
def test_condorcet_from_its_three_annotator_types(eps):
    w = (1 / 3 - eps, 1 / 3 + eps / 2, 1 / 3 + eps / 2)
    strict = [(1, 0), (0, 2), (2, 1)]  # type a strictly prefers y_i ≻ y_j, ties elsewhere
    P = np.zeros((3, 3))
    for wa, (i, j) in zip(w, strict):
        Pa = np.full((3, 3), 0.5)
        Pa[i, j], Pa[j, i] = 1.0, 0.0
        P += wa * Pa
    np.testing.assert_allclose(games.make("condorcet", eps=eps).P, P, atol=1e-15)


def test_bradley_terry_from_scores():
    s = np.array([0.3, -1.0, 2.0, 0.5])
    g = games.make("bradley_terry", scores=s)
    np.testing.assert_allclose(g.P, 1 / (1 + np.exp(-(s[:, None] - s[None, :]))), atol=1e-15)
    np.testing.assert_array_equal(g.nash, [0, 0, 1, 0])
    assert games.duality_gap(g, g.nash) == pytest.approx(0, abs=1e-15)


# -- documented equilibria ---------------------------------------------------------------------------------
KNOWN = {
    "rps": np.full(3, 1 / 3),
    "perturbed_rps": np.array([1, 3, 3]) / 7,
    "cyclic3": np.array([4, 3, 4]) / 11,
    "dice": np.full(3, 1 / 3),
}


@pytest.mark.parametrize("name", KNOWN)
def test_catalogue_ne(name):
    g = games.make(name)
    np.testing.assert_allclose(g.nash, KNOWN[name], atol=1e-15)
    assert abs(equilibrium_violation(g.P, KNOWN[name])) <= 1e-15  # an NE, by the definition
    np.testing.assert_allclose(games.nash_equilibrium(g), g.nash, atol=1e-9)


@pytest.mark.parametrize("eps", [-0.5, -0.2, 0.0, 0.1, 0.3])
def test_condorcet_ne(eps):
    g = games.make("condorcet", eps=eps)
    ne = np.array([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps])
    np.testing.assert_allclose(g.nash, ne, atol=1e-15)
    assert abs(equilibrium_violation(g.P, ne)) <= 1e-15
    np.testing.assert_allclose(games.nash_equilibrium(g), ne, atol=1e-9)


@pytest.mark.parametrize("name", ["cyclic3", "perturbed_rps", "condorcet"])
def test_catalogue_ne_is_unique_interior(name):
    # every action of an interior NE earns exactly ½, and the NE solves that linear system uniquely
    P = games.make(name).P
    M = np.vstack([P - 0.5, np.ones(3)])
    sol, *_ = np.linalg.lstsq(M, np.r_[np.zeros(3), 1], rcond=None)
    np.testing.assert_allclose(sol, games.make(name).nash, atol=1e-14)


# -- every name constructs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", games.available())
def test_every_available_game_constructs(name):
    g = games.make(name)
    assert isinstance(g, (games.PreferenceGame, games.ZeroSumGame))
    if isinstance(g, games.PreferenceGame):
        assert is_valid_preference(g.P)
    else:
        assert np.all(np.isfinite(g.A)) and g.A.ndim == 2
    be = games.ExactBackend(g)
    assert be.lipschitz > 0


def test_catalogue_contents():
    names = games.available()
    for n in ("rps", "perturbed_rps", "cyclic3", "dice", "condorcet", "bradley_terry", "bt_mixture", "random",
              "random_skew", "matrix_rps", "matrix_mp", "kuhn_poker"):
        assert n in names
    assert set(games.INTRANSITIVE) <= set(names)
    assert games.make("Cyclic3").name == "cyclic3"  # case and "-" vs "_" do not matter
    assert games.make("perturbed-RPS").name == "perturbed_rps"


def test_open_spiel_games_are_zero_sum_matrix_games():
    g = games.make("matrix_rps")
    np.testing.assert_array_equal(g.A, [[0, -1, 1], [1, 0, -1], [-1, 1, 0]])
    k = games.make("kuhn_poker")
    assert k.A.shape == (64, 64)


# -- batches -----------------------------------------------------------------------------------------------
BATCHED = {
    "random": dict(n=7),
    "random_skew": dict(n=6, scale=2.0),
    "bradley_terry": dict(n=5),
    "bt_mixture": dict(n=5, k=3),
}


@pytest.mark.parametrize("name", BATCHED)
def test_batch_generators(name):
    B = 9
    g = games.make(name, seed=3, batch=B, **BATCHED[name])
    n = BATCHED[name]["n"]
    assert g.P.shape == (B, n, n) and g.batch_shape == (B,) and len(g) == B
    assert is_valid_preference(g.P)
    for b in (0, 4, B - 1):
        gb = g[b]
        assert isinstance(gb, games.PreferenceGame) and gb.P.shape == (n, n) and gb.batch_shape == ()
        np.testing.assert_array_equal(gb.P, g.P[b])
    assert not np.allclose(g.P[0], g.P[1])  # independent draws
    # seeded: the same call gives the same games, another seed other games
    np.testing.assert_array_equal(games.make(name, seed=3, batch=B, **BATCHED[name]).P, g.P)
    assert not np.allclose(games.make(name, seed=4, batch=B, **BATCHED[name]).P, g.P)
    # metrics return one value per game
    pi = np.full((B, n), 1 / n)
    assert np.shape(games.duality_gap(g, pi)) == (B,)
    np.testing.assert_allclose(games.duality_gap(g, pi), [games.duality_gap(g[b], pi[b]) for b in range(B)], atol=1e-15)


def test_random_game_lower_triangle_is_uniform():
    g = games.make("random", n=10, seed=0, batch=400)
    low = g.P[:, np.tril_indices(10, -1)[0], np.tril_indices(10, -1)[1]].ravel()
    assert low.min() >= 0 and low.max() <= 1
    # U(0, 1): mean ½, variance 1/12 (18 000 draws: 5σ bands)
    assert abs(low.mean() - 0.5) < 5 * np.sqrt(1 / 12 / low.size)
    assert abs(low.var() - 1 / 12) < 0.005


def test_single_games_are_not_indexable_and_matrices_are_frozen():
    g = games.make("cyclic3")
    with pytest.raises(TypeError):
        g[0]
    with pytest.raises(TypeError):
        len(g)
    with pytest.raises(ValueError):
        g.P[0, 0] = 0.7  # read-only


def test_zero_sum_batch_indexing():
    A = np.random.default_rng(0).normal(size=(3, 4, 5))
    g = games.ZeroSumGame(A)
    assert g.sizes == (4, 5) and len(g) == 3
    np.testing.assert_array_equal(g[2].A, A[2])


@pytest.mark.parametrize("make", [lambda: games.make("cyclic3"), lambda: games.make("random", n=7, seed=3),
                                  lambda: games.make("kuhn_poker"), lambda: games.ZeroSumGame(np.arange(12.0).reshape(3, 4) ** 1.5)])
def test_lipschitz_constant_by_enumeration(make):
    """L = max over pure-strategy differences e_a − e_b (‖·‖₁ = 2) of ‖M(e_a − e_b)‖∞ / 2, for both players'
    payoff matrices — the ℓ1→ℓ∞ constant on differences of policies, enumerated independently."""
    g = make()
    M = g.P if isinstance(g, games.PreferenceGame) else g.A
    best = 0.0
    for X in (M, M.T):  # the row player's q = A y varies with y's columns; the column player's with x's rows
        for a in range(X.shape[1]):
            for b in range(X.shape[1]):
                best = max(best, np.abs(X[:, a] - X[:, b]).max() / 2)
    assert games.ExactBackend(g).lipschitz == pytest.approx(best, rel=1e-15)
