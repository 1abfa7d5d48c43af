"""Shared pieces of the benchmarks: timers, the hand-written per-game baselines, result tables.

Every benchmark times with ``time.perf_counter`` (best of several rounds, after a warm-up) inside
the function pytest-benchmark times, so the reported numbers do not depend on the fixture's mode,
and appends a row to ``TABLES``; ``conftest.py`` prints them as markdown at the end of the session
(and writes them to ``$NASHLAB_BENCH_MD`` if set).

Environment: NASHLAB_BENCH_DEVICE (torch device, default "cpu"), NASHLAB_BENCH_BUDGET (seconds per
run of the time-to-gap benchmark, default 20).
"""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np

TABLES: dict = defaultdict(list)  # table title -> list of row dicts (columns in insertion order)
NOTES: dict = defaultdict(list)  # table title -> lines printed under it

DEVICE = os.environ.get("NASHLAB_BENCH_DEVICE", "cpu")
BUDGET = float(os.environ.get("NASHLAB_BENCH_BUDGET", "20"))


def add_row(table: str, **row):
    TABLES[table].append(row)


def add_note(table: str, line: str):
    if line not in NOTES[table]:
        NOTES[table].append(line)


def sync(device=DEVICE):
    """Wait for queued GPU work, so a timer measures it (a no-op on the CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def best_time(fn, rounds=5, warmup=1, device=DEVICE):
    """Best wall time of ``fn()`` over ``rounds`` rounds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


#: (backend, dtype, torch intra-op threads) of the backend rows of benchmarks 1 and 2
BACKENDS = [("numpy", None, None), ("torch", "float64", 1), ("torch", "float64", 2), ("torch", "float32", 1),
            ("torch", "float32", 2)]
IDS = ["numpy", "torch64-1t", "torch64-2t", "torch32-1t", "torch32-2t"]


def threads(backend):
    """Threads column: torch's intra-op threads; numpy's elementwise ops run on one thread and its
    BLAS (the matrix-vector product) on OPENBLAS_NUM_THREADS (default: one per core)."""
    if backend == "numpy":
        return f"1, BLAS {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
    import torch

    return str(torch.get_num_threads())


class StepLoop:
    """``k`` algorithm steps on a prebuilt backend, state carried over between calls.

    This is the step alone: no metric recording and no average iterate (``run(..., record=[],
    average=False)`` adds only a few microseconds of bookkeeping per step, plus the two records at
    the ends, each of which reads the matrix two more times for the duality gap).
    """

    def __init__(self, algo, backend):
        self.be = backend
        self.algo = algo.bind(backend)
        self.state = self.algo.init(backend, backend.initial_policy())

    def __call__(self, k):
        s, step, be = self.state, self.algo.step, self.be
        for _ in range(k):
            s = step(be, s)
        self.state = s


# -- the hand-written per-game numpy loop (the baseline a researcher would write) ----------------------
def mmd_loop(P, steps, eta, alpha, refresh=None):
    """Plain numpy MMD (MPO if ``refresh`` = K) on one preference game, log space, uniform start."""
    n = len(P)
    logp = np.full(n, -np.log(n))
    mag = logp.copy()
    d = 1.0 + eta * alpha
    for t in range(1, steps + 1):
        q = P @ np.exp(logp)
        l = (logp + eta * alpha * mag + eta * q) / d
        m = l.max()
        logp = l - (m + np.log(np.exp(l - m).sum()))
        if refresh and t % refresh == 0:
            mag = logp
    return logp


class LoopBaseline:
    """The per-game loop over a few random n×n games; each call times one round of it and returns
    game-iterations per second (the benchmarks interleave it with their own rounds, so both see the
    same machine load)."""

    def __init__(self, algo: str, n: int = 10, games_: int = 4, steps: int = 250):
        import games

        self.P = games.make("random", n=n, seed=0, batch=games_).P
        L = 0.5
        self.alpha = 0.2 * L if algo == "mmd" else 0.5 * L  # the library's defaults (η = α/L²)
        self.eta = self.alpha / L**2
        self.refresh = 10 if algo == "mpo" else None
        self.steps = steps

    def __call__(self) -> float:
        t = best_time(lambda: [mmd_loop(P, self.steps, self.eta, self.alpha, self.refresh) for P in self.P],
                      rounds=1, warmup=0, device="cpu")
        return len(self.P) * self.steps / t


class CopyBandwidth:
    """Memory bandwidth of a large numpy copy, STREAM convention: (bytes read + bytes written) / s.
    Each call times one copy."""

    def __init__(self, nbytes: int = 1 << 29):
        self.src = np.random.default_rng(0).random(nbytes // 8)
        self.dst = np.empty_like(self.src)
        np.copyto(self.dst, self.src)  # touch the pages

    def __call__(self) -> float:
        return 2 * self.src.nbytes / best_time(lambda: np.copyto(self.dst, self.src), rounds=1, warmup=0, device="cpu")


def load_note():
    return "load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + \
        " on a shared 2-core machine (other jobs were running)"


def markdown(title, rows, notes=()):
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    out += [""] + [f"{line}  " for line in notes]
    return "\n".join(out)


def _fmt(v):
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return f"{v:.2e}"
    return str(v)


def all_tables() -> str:
    return "\n\n".join(markdown(t, TABLES[t], NOTES.get(t, ())) for t in sorted(TABLES))
