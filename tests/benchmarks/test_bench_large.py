"""Benchmark 2: one large game. Seconds per MMD step on an n×n random preference game against the
memory-bandwidth floor: the bytes of P one step must read, divided by the bandwidth of a large copy
measured in the same session (STREAM convention: bytes read + bytes written, per second).

One MMD step reads P once (the win rates Pπ); everything else is O(n). The run loop's metrics read P
again (the duality gap needs Pπ and πᵀP), so this times the step alone (record=[], average=False)."""
import functools

import pytest

from .common import BACKENDS, DEVICE, IDS, CopyBandwidth, StepLoop, add_note, add_row, best_time, threads

TABLE = "2. One large game: seconds per MMD step vs the memory-bandwidth floor"


@functools.lru_cache(maxsize=1)
def _copy():
    return CopyBandwidth()


@functools.lru_cache(maxsize=1)
def _game(n):
    import games

    return games.make("random", n=n, seed=0)


@pytest.mark.parametrize("backend,dtype,nthreads", BACKENDS, ids=IDS)
@pytest.mark.parametrize("n", [1000, 4096, 8192])
def test_large_game_step(benchmark, n, backend, dtype, nthreads):
    import algorithms
    import games

    torch = pytest.importorskip("torch") if backend == "torch" else None
    before = torch.get_num_threads() if torch else None
    if torch and nthreads:
        torch.set_num_threads(nthreads)
    try:
        device = DEVICE if backend == "torch" else None
        be = games.ExactBackend(_game(n), backend=backend, device=device, dtype=dtype)
        loop = StepLoop(algorithms.MMD(), be)
        k = max(3, min(200, int(2e9 / (8 * n * n))))
        copy, bws, times = _copy(), [], []
        benchmark.pedantic(lambda: times.append(best_time(lambda: loop(k), rounds=1, warmup=0, device=device or "cpu")),
                           setup=lambda: bws.append(copy()), rounds=5, warmup_rounds=1)
        per_step = min(times) / k
        nth = torch.get_num_threads() if torch else threads("numpy")
    finally:
        if torch:
            torch.set_num_threads(before)
    item = 4 if dtype == "float32" else 8
    bw = max(bws)
    floor = n * n * item / bw
    benchmark.extra_info.update(s_per_step=per_step, floor_s=floor, fraction=floor / per_step)
    add_row(TABLE, n=n, backend=backend if backend == "numpy" else f"torch {DEVICE}", dtype=dtype or "float64",
            threads=nth, **{"ms/step": per_step * 1e3, "MB of P read": n * n * item / 1e6,
                            "copy GB/s": bw / 1e9, "floor ms": floor * 1e3, "fraction of floor": floor / per_step})
    add_note(TABLE, "copy GB/s: a numpy copy of 512 MiB timed between the rounds of each row (best of 5), "
                    "(bytes read + bytes written) / s. floor = bytes of P / copy bandwidth; fraction = floor / "
                    "measured step time (> 1 only if P sits in cache). The step alone (record=[], average=False): "
                    "a recorded step also reads P twice more for the duality gap.")
