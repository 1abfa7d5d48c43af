"""Benchmark 1: many small games at once. MMD and MPO on B random 10×10 preference games, as one
batch, against the plain per-game numpy loop (``common.mmd_loop``) timed in the same session."""
import functools

import pytest

from .common import BACKENDS, DEVICE, IDS, LoopBaseline, StepLoop, add_note, add_row, best_time, threads

TABLE = "1. Batched random 10×10 games: game-iterations per second"
SIZES = (1, 64, 4096, 65536)
# (backend, dtype, torch threads or None for the default)


@functools.lru_cache(maxsize=2)
def _game(B):
    import games

    return games.make("random", n=10, seed=0, batch=B)


@pytest.mark.parametrize("backend,dtype,nthreads", BACKENDS, ids=IDS)
@pytest.mark.parametrize("B", SIZES)
@pytest.mark.parametrize("algo", ["mmd", "mpo"])
def test_batched_small_games(benchmark, algo, B, backend, dtype, nthreads):
    import algorithms
    import games

    torch = pytest.importorskip("torch") if backend == "torch" else None
    before = torch.get_num_threads() if torch else None
    if torch and nthreads:
        torch.set_num_threads(nthreads)
    try:
        device = DEVICE if backend == "torch" else None
        be = games.ExactBackend(_game(B), backend=backend, device=device, dtype=dtype)
        loop = StepLoop(algorithms.make(algo), be)
        k = max(5, min(2000, 1_000_000 // B))
        baseline, base_rates, times = LoopBaseline(algo), [], []
        benchmark.pedantic(lambda: times.append(best_time(lambda: loop(k), rounds=1, warmup=0, device=device or "cpu")),
                           setup=lambda: base_rates.append(baseline()), rounds=7, warmup_rounds=1)
        per_step = min(times) / k
        nth = torch.get_num_threads() if torch else threads("numpy")
    finally:
        if torch:
            torch.set_num_threads(before)
    rate = B / per_step
    base = max(base_rates)
    benchmark.extra_info.update(game_iterations_per_s=rate, loop_rate=base, speedup=rate / base)
    add_row(TABLE, algorithm=algo.upper(), backend=backend if backend == "numpy" else f"torch {DEVICE}",
            dtype=dtype or "float64", threads=nth, B=B, **{"ms/step": per_step * 1e3, "game-it/s": rate,
                                                           "loop game-it/s": base, "× per-game loop": rate / base})
    add_note(TABLE, "per-game loop: the hand-written numpy MMD (MPO: + magnet refresh every 10 steps) step loop of "
                    "common.mmd_loop on 4 games × 250 steps, timed between the rounds of each row (best of 7), so "
                    "both see the same machine load.")
    add_note(TABLE, "timed: the algorithm's step alone on a prebuilt backend (no metric records, no average "
                    "iterate), best of 7 rounds; numpy runs its elementwise ops on one thread.")
