"""Benchmark 4: time to reach duality gap 1e-6 against solving the game exactly by LP (HiGHS).

Random n×n preference games; MPO, OMWU and one regularised method (Nash-MP / Mirror Prox), default
hyperparameters, numpy float64. The gap is checked every 10 steps (a record: two more passes over
P); a run stops at gap ≤ 1e-6 or after NASHLAB_BENCH_BUDGET seconds, and then reports the gap it
reached. The LP: one HiGHS solve of max v s.t. (P−½)ᵀx ≥ v (a symmetric game needs one), and
``games.nash_equilibrium`` (two LPs, support polish, verification) for reference."""
import functools
import time

import numpy as np
import pytest
from scipy.optimize import linprog

from .common import BUDGET, add_note, add_row

TABLE = "4. Time to duality gap 1e-6 vs HiGHS LP"
TOL = 1e-6


@functools.lru_cache(maxsize=1)
def _game(n):
    import games

    return games.make("random", n=n, seed=0)


def _one_lp(A):
    m, n = A.shape
    c = np.zeros(m + 1)
    c[-1] = -1
    res = linprog(c, A_ub=np.hstack([-A.T, np.ones((n, 1))]), b_ub=np.zeros(n),
                  A_eq=np.hstack([np.ones((1, m)), np.zeros((1, 1))]), b_eq=[1],
                  bounds=[(0, None)] * m + [(None, None)], method="highs")
    assert res.status == 0
    return np.clip(res.x[:m], 0, None) / np.clip(res.x[:m], 0, None).sum()


@functools.lru_cache(maxsize=None)
def _lp_times(n):
    import games

    g = _game(n)
    t = time.perf_counter()
    x = _one_lp(g.P - 0.5)
    t_lp = time.perf_counter() - t
    t = time.perf_counter()
    games.nash_equilibrium(g)
    t_ne = time.perf_counter() - t
    return t_lp, games.duality_gap(g, x), t_ne


@pytest.mark.parametrize("n", [100, 500, 1000])
@pytest.mark.parametrize("algo", ["mpo", "omwu", "mirror_prox"])
def test_time_to_gap(benchmark, algo, n):
    import algorithms

    g = _game(n)
    t_lp, gap_lp, t_ne = _lp_times(n)
    out = {}

    def go():
        t0 = time.perf_counter()
        stop = lambda t, state, m: bool(np.all(m["duality_gap"] <= TOL)) or time.perf_counter() - t0 > BUDGET
        r = algorithms.run(algorithms.make(algo), g, 10**6, record=10, average=False, callbacks=[stop])
        out.update(t=time.perf_counter() - t0, steps=r.steps, gap=float(r.history["duality_gap"][-1]))

    benchmark.pedantic(go, rounds=1, iterations=1)
    reached = out["gap"] <= TOL
    benchmark.extra_info.update(out, lp_s=t_lp)
    add_row(TABLE, n=n, algorithm=algo, **{"reached 1e-6": "yes" if reached else "no", "steps": out["steps"],
                                           "time s": out["t"], "gap reached": out["gap"], "LP s (HiGHS)": t_lp,
                                           "LP gap": gap_lp, "nash_equilibrium s": t_ne,
                                           "time / LP": out["t"] / t_lp if reached else "—"})
    add_note(TABLE, f"budget {BUDGET:g} s per run (NASHLAB_BENCH_BUDGET); random games (games.make('random', n, seed=0)).")
