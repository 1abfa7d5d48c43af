"""Tests for games/open_spiel_bridge.py (skipped when pyspiel is missing)."""

import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyspiel")

# games/ has no __init__.py of ours; put the repo root on sys.path so the
# namespace package imports however pytest is invoked.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from games import open_spiel_bridge as osb  # noqa: E402
from scipy.optimize import linprog  # noqa: E402


def _game_value(A):
    """Row player's maximin value of A via LP: max v s.t. x^T A >= v."""
    m, n = A.shape
    c = np.zeros(m + 1)
    c[-1] = -1.0
    res = linprog(c,
                  A_ub=np.hstack([-A.T, np.ones((n, 1))]), b_ub=np.zeros(n),
                  A_eq=np.hstack([np.ones((1, m)), np.zeros((1, 1))]),
                  b_eq=[1.0],
                  bounds=[(0, None)] * m + [(None, None)], method="highs")
    assert res.success
    return res.x[-1]


def _gap(A, x, y):
    return np.max(A @ y) - np.min(x @ A)


def _mmd_closed_form(A, x, y, alpha, eta):
    """Simultaneous MMD step with uniform magnet; row player maximises."""
    power = 1.0 / (1.0 + eta * alpha)
    x_new = (x * np.exp(eta * A @ y)) ** power
    y_new = (y * np.exp(-eta * A.T @ x)) ** power
    return x_new / x_new.sum(), y_new / y_new.sum()


# ---------------------------------------------------------------- catalogue

def test_names_contain_expected_and_discovery_is_fast():
    osb._cached_names.cache_clear()
    start = time.perf_counter()
    names = osb.matrix_game_names()
    assert time.perf_counter() - start < 5.0
    for name in ("matrix_rps", "matrix_mp", "kuhn_poker", "blotto"):
        assert name in names
    for excluded in ("matrix_pd", "oshi_zumo", "goofspiel", "leduc_poker"):
        assert excluded not in names
    assert osb.matrix_game_names() == names


def test_every_listed_game_loads_zero_sum_after_shift():
    for name in osb.matrix_game_names():
        A, rows, cols = osb.payoff_matrix(name)
        assert A.dtype == np.float64
        assert A.shape == (len(rows), len(cols))


# ---------------------------------------------------------------- payoffs

def test_rps_orientation():
    A, rows, cols = osb.payoff_matrix("matrix_rps")
    assert rows == cols == ["Rock", "Paper", "Scissors"]
    # Row player's payoff: Paper (row 1) beats Rock (col 0).
    np.testing.assert_array_equal(
        A, [[0, -1, 1], [1, 0, -1], [-1, 1, 0]])


def test_blotto_params():
    A, rows, _ = osb.payoff_matrix("blotto", coins=5, fields=3)
    assert A.shape == (21, 21)
    np.testing.assert_allclose(A, -A.T)  # symmetric game
    assert rows[3] == "[0,3,2]"


def test_kuhn_poker_matrix_and_value():
    A, rows, cols = osb.payoff_matrix("kuhn_poker")
    assert A.shape == (64, 64)
    assert len(rows) == 64 and "\n" not in rows[0]
    assert _game_value(A) == pytest.approx(-1.0 / 18.0, abs=1e-9)


def test_unknown_and_non_zero_sum_names_rejected():
    with pytest.raises(ValueError, match="valid names"):
        osb.payoff_matrix("no_such_game")
    with pytest.raises(ValueError, match="not a two-player zero-sum"):
        osb.payoff_matrix("matrix_pd")
    with pytest.raises(ValueError, match="not a two-player zero-sum"):
        osb.payoff_matrix("matrix_bos")


# ---------------------------------------------------------------- MMD

@pytest.mark.parametrize("alpha,eta", [(0.1, 0.3), (0.5, None), (0.0, 0.2)])
def test_mmd_matches_simultaneous_closed_form(alpha, eta):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 6))
    steps = 5
    xs, ys = osb.mmd_dilated_trajectory(A, alpha, eta, steps)
    assert xs.shape == (steps + 1, 4) and ys.shape == (steps + 1, 6)
    np.testing.assert_allclose(xs[0], np.full(4, 0.25))
    np.testing.assert_allclose(ys[0], np.full(6, 1 / 6))
    # Default stepsize is alpha / max|A|^2.
    eta_used = alpha / np.max(np.abs(A)) ** 2 if eta is None else eta
    for t in range(steps):
        x_next, y_next = _mmd_closed_form(A, xs[t], ys[t], alpha, eta_used)
        np.testing.assert_allclose(xs[t + 1], x_next, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(ys[t + 1], y_next, rtol=1e-10, atol=1e-13)


def test_mmd_is_not_alternating():
    """The y-update uses x_t, not x_{t+1}, so the alternating form fails."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 3))
    alpha, eta = 0.1, 0.5
    xs, ys = osb.mmd_dilated_trajectory(A, alpha, eta, 1)
    power = 1.0 / (1.0 + eta * alpha)
    y_alt = (ys[0] * np.exp(-eta * A.T @ xs[1])) ** power
    assert not np.allclose(ys[1], y_alt / y_alt.sum())


def test_mmd_converges_to_qre_on_rps():
    A, _, _ = osb.payoff_matrix("matrix_rps")
    xs, ys = osb.mmd_dilated_trajectory(A, 0.2, None, 200)
    np.testing.assert_allclose(xs[-1], np.full(3, 1 / 3), atol=1e-6)
    np.testing.assert_allclose(ys[-1], np.full(3, 1 / 3), atol=1e-6)


# ---------------------------------------------------------------- NashConv

def test_nash_conv_equals_duality_gap():
    rng = np.random.default_rng(2)
    cases = []
    for name in ("matrix_rps", "matrix_mp"):
        A, _, _ = osb.payoff_matrix(name)
        cases.append((A, rng.dirichlet(np.ones(A.shape[0])),
                      rng.dirichlet(np.ones(A.shape[1]))))
        uniform = (np.full(A.shape[0], 1 / A.shape[0]),
                   np.full(A.shape[1], 1 / A.shape[1]))
        assert osb.nash_conv(A, *uniform) == pytest.approx(0.0, abs=1e-12)
    A = rng.normal(size=(5, 7))
    cases.append((A, rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(7))))
    for A, x, y in cases:
        assert osb.nash_conv(A, x, y) == pytest.approx(_gap(A, x, y),
                                                       abs=1e-12)
