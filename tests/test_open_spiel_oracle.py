"""open_spiel as an oracle: its MMD (MMDDilatedEnt) and NashConv agree with ours where both apply."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyspiel")

import algorithms  # noqa: E402
import games  # noqa: E402
from games import open_spiel_bridge as osb  # noqa: E402

MATRICES = {
    # from uniform, RPS stays at its uniform NE: this one checks the fixed point only
    "matrix_rps": lambda: osb.payoff_matrix("matrix_rps")[0],
    "matrix_brps": lambda: osb.payoff_matrix("matrix_brps")[0],
    "perturbed_rps_raw": lambda: np.array([[0.0, -1, 3], [1, 0, -3], [-3, 3, 0]]),
    "random_5x7": lambda: np.random.default_rng(0).normal(size=(5, 7)),
}


@pytest.mark.parametrize("name", MATRICES)
@pytest.mark.parametrize("alpha,frac", [(0.1, 1.0), (0.5, 0.3)])
def test_mmd_matches_open_spiel_step_by_step(name, alpha, frac):
    A = MATRICES[name]()
    eta = frac * alpha / np.abs(A).max() ** 2  # open_spiel's default step, or a fraction of it
    steps = 60
    xs, ys = osb.mmd_dilated_trajectory(A, alpha, eta, steps)
    be = games.ExactBackend(games.ZeroSumGame(A))  # uniform magnet, uniform start: as open_spiel
    algo = algorithms.MMD(eta=eta, alpha=alpha).bind(be)
    s = algo.init(be, be.initial_policy())
    moved = 0.0
    for t in range(1, steps + 1):
        s = algo.step(be, s)
        x, y = be.to_numpy(s.policy)
        np.testing.assert_allclose(x, xs[t], rtol=0, atol=1e-10, err_msg=f"x at t={t}")
        np.testing.assert_allclose(y, ys[t], rtol=0, atol=1e-10, err_msg=f"y at t={t}")
        moved = max(moved, np.abs(x - xs[0]).max())
    if name != "matrix_rps":
        assert moved > 1e-2  # a real trajectory, not a fixed point


@pytest.mark.parametrize("name", ["matrix_rps", "matrix_mp", "matrix_brps", "blotto", "kuhn_poker"])
def test_exploitability_is_half_of_open_spiels_nash_conv(name):
    g = games.make(name)
    A = osb.payoff_matrix(name)[0]
    np.testing.assert_array_equal(g.A, A)
    rng = np.random.default_rng(1)
    m, n = A.shape
    for _ in range(3):
        x, y = rng.dirichlet(0.5 * np.ones(m)), rng.dirichlet(0.5 * np.ones(n))
        assert games.exploitability(g, (x, y)) == pytest.approx(osb.nash_conv(A, x, y) / 2, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", ["matrix_mp", "matrix_brps", "kuhn_poker"])
def test_lp_ne_has_zero_nash_conv(name):
    A = osb.payoff_matrix(name)[0]
    x, y = games.nash_equilibrium(games.make(name))
    assert osb.nash_conv(A, x, y) <= 1e-8
