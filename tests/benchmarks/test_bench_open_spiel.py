"""Benchmark 3: our MMD step against open_spiel's MMDDilatedEnt on the same 100×100 zero-sum game
(uniform magnet, the same α and η; the trajectories are checked to agree before timing)."""
import numpy as np
import pytest

from .common import StepLoop, add_note, add_row, best_time

TABLE = "3. MMD vs open_spiel MMDDilatedEnt, 100×100 zero-sum game"


def test_mmd_vs_open_spiel(benchmark):
    pytest.importorskip("pyspiel")
    from open_spiel.python.algorithms import mmd_dilated

    import algorithms
    import games
    from games import open_spiel_bridge as osb

    A = np.random.default_rng(0).uniform(-1, 1, size=(100, 100))
    alpha = 0.1
    eta = alpha / np.abs(A).max() ** 2  # open_spiel's default stepsize
    xs, ys = osb.mmd_dilated_trajectory(A, alpha, eta, 5)
    be = games.ExactBackend(games.ZeroSumGame(A))
    loop = StepLoop(algorithms.MMD(eta=eta, alpha=alpha), be)
    loop(5)
    x, y = be.to_numpy(loop.state.policy)
    assert np.abs(x - xs[-1]).max() < 1e-12 and np.abs(y - ys[-1]).max() < 1e-12

    mmd = mmd_dilated.MMDDilatedEnt(osb._turn_based_game(A), alpha, eta)
    k_os = 20
    t_os = best_time(lambda: [mmd.update_sequences() for _ in range(k_os)], rounds=3, device="cpu") / k_os
    k = 2000
    times = []
    benchmark.pedantic(lambda: times.append(best_time(lambda: loop(k), rounds=1, warmup=0, device="cpu")),
                       rounds=5, warmup_rounds=1)
    t_ours = min(times) / k
    benchmark.extra_info.update(open_spiel_s=t_os, ours_s=t_ours, ratio=t_os / t_ours)
    add_row(TABLE, game="uniform(−1,1) 100×100", **{"open_spiel ms/iter": t_os * 1e3, "ours µs/iter": t_ours * 1e6,
                                                   "ratio (× faster)": t_os / t_ours})
    add_note(TABLE, "ours: MMD on ZeroSumGame(A), numpy float64, the step alone; open_spiel: "
                    "MMDDilatedEnt.update_sequences() on the turn-based form of the same matrix.")
