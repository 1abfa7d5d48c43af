"""Exact equilibria: the Nash equilibrium by linear programming (scipy HiGHS), polished and
checked by its own gap, and the β-regularised equilibrium by Mirror Prox, checked by its residual.

Every tolerance here is relative to the game's payoff scale (equilibria do not change when payoffs
are scaled or shifted, and neither does any verdict made here): the LP is solved on the payoffs
mapped to [−1, 1], and gaps are compared with ``validation.payoff_tolerance``.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from . import validation as V
from .core import PreferenceGame, ZeroSumGame

#: HiGHS feasibility tolerances, on the payoffs mapped to [−1, 1] (so: relative to the payoff range)
LP_TOL = 1e-10


def _maximin(A):
    """Row player's maximin strategy of xᵀAy and the value, by LP (A: payoffs in [−1, 1])."""
    m, n = A.shape
    # variables (x_1..x_m, v): maximise v s.t. (Aᵀx)_j ≥ v, Σx = 1, x ≥ 0
    c = np.zeros(m + 1)
    c[-1] = -1
    A_ub = np.hstack([-A.T, np.ones((n, 1))])
    A_eq = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=[1], bounds=[(0, None)] * m + [(None, None)],
                  method="highs", options={"primal_feasibility_tolerance": LP_TOL, "dual_feasibility_tolerance": LP_TOL})
    if res.status != 0:  # pragma: no cover - an LP on a bounded simplex is always feasible
        raise RuntimeError(f"LP failed: {res.message}")
    x = np.clip(res.x[:m], 0, None)
    return x / x.sum(), -res.fun


def _polish(A, x, y):
    """Solve the equaliser system on the supports exactly (the LP is accurate to ~LP_TOL only).
    Supports are the entries above 10·LP_TOL: probabilities, so this threshold is scale-free."""
    Sx, Sy = np.flatnonzero(x > 10 * LP_TOL), np.flatnonzero(y > 10 * LP_TOL)
    if len(Sx) != len(Sy):
        return x, y
    k = len(Sx)
    # y on Sy equalises the rows in Sx; x on Sx equalises the columns in Sy: [A_S  −1; 1ᵀ 0]
    M = np.zeros((k + 1, k + 1))
    try:
        M[:k, :k], M[:k, k], M[k, :k] = A[np.ix_(Sx, Sy)], -1, 1
        ys = np.linalg.solve(M, np.r_[np.zeros(k), 1])[:k]
        M[:k, :k] = A[np.ix_(Sx, Sy)].T
        xs = np.linalg.solve(M, np.r_[np.zeros(k), 1])[:k]
    except np.linalg.LinAlgError:
        return x, y
    if np.any(xs < 0) or np.any(ys < 0) or not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        return x, y
    x2, y2 = np.zeros_like(x), np.zeros_like(y)
    x2[Sx], y2[Sy] = xs / xs.sum(), ys / ys.sum()
    return x2, y2


def _gap(A, x, y):
    return float((A @ y).max() - (x @ A).min())


def _normalised(A):
    """A mapped affinely to [−1, 1]: (A − mid)/half-range. Shifting and scaling payoffs changes no
    equilibrium, and the LP's tolerances are then relative to the payoff range. Halves are taken
    first so that payoffs near the float64 limit do not overflow."""
    hi, lo = float(A.max()), float(A.min())
    half = hi / 2 - lo / 2
    if half == 0:
        return np.zeros_like(A)
    return (A - (hi / 2 + lo / 2)) / half


def nash_equilibrium(game, tol: float | None = None):
    """A Nash equilibrium: π for a preference game, the pair (x, y) for a zero-sum game.

    Solved by LP (HiGHS) on the payoffs mapped to [−1, 1], refined by solving the equaliser system
    on the supports, and verified by its own duality gap: it must be at most ``tol`` times the payoff
    range (max − min; default ``tol`` = ``validation.tolerance()`` = 1e-9) plus the rounding floor of
    evaluating the gap (``validation.payoff_tolerance``), else RuntimeError. So the verdict is the same
    at every payoff scale (tested from 1e-12 to 1e12). A preference game is solved on its
    antisymmetric part (P − Pᵀ)/2, exact in floating point (Sterbenz), which is the game itself up to
    the rounding P + Pᵀ = 1 was allowed. Batched games return one row per game.
    """
    if not isinstance(game, (PreferenceGame, ZeroSumGame)):
        V.fail("game", V.kind(game), "it must be a games.PreferenceGame or games.ZeroSumGame "
               "(e.g. games.make('cyclic3'))", "nash_equilibrium", V.WrongType)
    tol = V.number(tol, "tol", low=0, low_open=True, allow_none=True, where="nash_equilibrium")
    if game.batch_shape:
        sols = [nash_equilibrium(game[b], tol) for b in range(len(game))]
        if isinstance(game, PreferenceGame):
            return np.stack(sols)
        return np.stack([s[0] for s in sols]), np.stack([s[1] for s in sols])
    symmetric = isinstance(game, PreferenceGame)
    # the skew part of P − ½: P − Pᵀ is exact (Sterbenz: entries within a factor 2 of each other, or both tiny)
    A = (game.P - game.P.T) / 2 if symmetric else game.A
    An = _normalised(A)
    x, _ = _maximin(An)
    y = x if symmetric else _maximin(-An.T)[0]
    g0 = _gap(An, x, y)
    xp, yp = _polish(An, x, y)
    if _gap(An, xp, yp) <= g0:
        x, y = xp, yp
    if symmetric:
        y = x  # the game is symmetric: x alone is an equilibrium strategy, checked by its own gap
    g = _gap(A, x, y)
    bound = V.payoff_tolerance(A, rtol=tol)
    if not g <= bound:
        span = float(A.max()) / 2 - float(A.min()) / 2
        raise RuntimeError(f"nash_equilibrium: the LP equilibrium has duality gap {g:.3g} > {bound:.3g} "
                           f"(relative to the payoff range: {g / (2 * span):.3g} > tol = {tol or V.tolerance():.3g})")
    return x if symmetric else (x, y)


#: the largest rounding floor of regularized_nash's residual that still certifies an answer
FLOOR_LIMIT = 1e-3


def regularized_nash(game, beta, reference=None, tol: float | None = None, max_steps: int = 1_000_000):
    """The β-regularised NE π*_β ∝ μ·exp(Pπ*_β/β) (a pair for a zero-sum game; one row per game
    of a batch; β may be one value per game). Correct for β from 1e-4·L to 1e9·L at least (L: half
    the largest payoff range of a row or column; ½ for a preference matrix spanning [0, 1]); β below
    about 4.7e-7·L, where the residual's rounding floor (below) exceeds ``FLOOR_LIMIT``, is refused.

    Computed by Mirror Prox (Nash-MP) at its proven step η = β/L, which contracts KL by (1+η) per
    iteration, and judged by the fixed-point residual r = max |log π − log softmax(log μ + q(π)/β)|
    (zero exactly at π*_β; a regularised-gap criterion would leave errors of its square root).

    Stopping rule. r cannot go below rounding: the logits log μ + q/β carry a relative rounding ε
    (float64: 2.2e-16), i.e. about ε·(1 + L/β) absolutely, and the residual map amplifies an error
    in log π by up to its Lipschitz constant ~L/β, so r has a floor of about
    ``floor = ε·(1 + L/β)²`` — growing like 1/β², not 1/β (measured on random 10×10 games: 0.02
    to 0.8 of that estimate for β from 3e-4 to 1e6; β = 1e-3 gives 8e-12 to 4.4e-11, i.e.
    ~1e-17/β²). The run stops once r ≤ ``tol`` (default: ``floor``), or once r has not improved by
    0.1% for max(1000, 10/η) steps (10/η steps of MP shrink the distance to π*_β by e^{-10}, so
    only rounding can stall it that long). The answer is accepted when r ≤ ``tol`` (default:
    16·floor: far above the floor, far below the transient), and its regularised gap is at most
    ``validation.rounding()``·(L + β·(1 + max|log μ|)) per slot (that gap's own rounding floor,
    ∝ β·ε, since it is β·logsumexp(...)); otherwise RuntimeError. Both bounds are scale-free (they
    depend on β/L only, or scale with the payoffs), and the answer matches a 50-digit Newton solve
    to about r (tested: random n = 10 games, β from 1e-4 to 1e6).
    """
    import algorithms  # deferred: the solver *is* our Mirror Prox, written once in algorithms/
    from algorithms.base import check_regularisation

    where = "regularized_nash"
    if not isinstance(game, (PreferenceGame, ZeroSumGame)):
        V.fail("game", V.kind(game), "it must be a games.PreferenceGame or games.ZeroSumGame", where, V.WrongType)
    if V._is_real_scalar(beta) and beta == 0:
        V.fail("beta", beta, "beta must be > 0 (for β = 0, the unregularised equilibrium, use games.nash_equilibrium)", where)
    V.param(beta, "beta", low=0, low_open=True, allow_none=False, where=where)
    tol = V.number(tol, "tol", low=0, low_open=True, allow_none=True, where=where)
    max_steps = V.integer(max_steps, "max_steps", low=1, where=where)
    if reference is not None:
        game = _with_reference(game, reference)
    from .exact import ExactBackend

    if np.ndim(beta) and (not game.batch_shape or np.shape(beta) != game.batch_shape[:1]):
        V.fail("beta", beta, "it must be one number, or one value per game of a batch" + (
            f" ({game.batch_shape[0]} values)" if game.batch_shape else " (this is a single game)"), where)
    be = ExactBackend(game)
    check_regularisation("beta", beta, be, where)
    b = np.asarray(beta, dtype=np.float64)
    L = np.asarray(be.lipschitz, dtype=np.float64)
    floor = V.eps() * (1 + L / b) ** 2
    if np.any(floor > FLOOR_LIMIT):
        # below β ≈ 4.7e-7·L the residual cannot certify even three digits: the run would stop at once
        # and hand back an unchecked answer (β = 1e-108 gave a regularised gap 0.07; found by hypothesis)
        smallest = float(np.max(L)) / (np.sqrt(FLOOR_LIMIT / V.eps()) - 1)
        V.fail("beta", beta, f"it is too small to solve in float64: at β/L = {np.min(b / L):.3g} the fixed-point "
               f"residual cannot go below ε(1 + L/β)² = {np.max(floor):.3g} (it must be ≤ {FLOOR_LIMIT:g}, i.e. "
               f"β ≥ {smallest:.3g} for this game); for the β → 0 limit use games.nash_equilibrium", where)
    stop_at = floor if tol is None else tol
    accept = 16 * floor if tol is None else tol
    every = 25
    window = max(1000, int(np.ceil(10 / np.min(b / L))))
    progress = {"best": np.inf, "since": 0}

    def converged(t, state, metrics):
        r = progress["r"] = _residual(be, state.algo_state.policy, beta)
        worst = float(np.max(r))
        if worst < progress["best"] * 0.999:
            progress["best"], progress["since"] = worst, 0
        else:
            progress["since"] += every
        return bool(np.all(r <= stop_at)) or progress["since"] >= window

    res = algorithms.run(algorithms.MirrorProx(beta=beta), be, max_steps, average=False,
                         progress=False, record=every, callbacks=(converged,))
    r = progress.get("r", np.inf)
    if np.any(r > accept):
        raise RuntimeError(f"{where}: not reached: residual {np.max(r):.3g} > {np.max(accept):.3g} after {res.steps} steps "
                           f"(the rounding floor for β/L = {np.min(b / L):.3g} is about {np.max(floor):.3g}"
                           + (f"; tol = {tol:.3g} may be below it)" if tol is not None else "; raise max_steps)"))
    gap = np.asarray(res.history["regularized_gap"][-1])
    log_mu = max(float(np.max(np.abs(lr))) for lr in game.log_reference)
    gap_tol = V.rounding() * (L + b * (1 + log_mu)) * len(game.sizes)
    if tol is not None:  # a looser residual asked for leaves a gap of at most ~(L + β)·r per slot
        gap_tol = gap_tol + 2 * (L + b) * tol * len(game.sizes)
    if np.any(gap > gap_tol):
        raise RuntimeError(f"{where}: the solution has regularised gap {np.max(gap):.3g} > {np.max(gap_tol):.3g}")
    return res.policy


def _residual(be, policy, beta):
    """max over slots of |log π − log softmax(log μ + q(π)/β)| (zero exactly at π*_β)."""
    inv = 1 / np.asarray(beta, dtype=np.float64)
    inv = float(inv) if inv.ndim == 0 else inv
    target = be.realise(((1.0, be.reference), (inv, be.win_rates(policy))))
    diffs = [np.max(np.abs(np.asarray(be.ops.to_numpy(a - c))), axis=-1) for a, c in zip(policy.logp, target.logp)]
    return np.max(np.stack(diffs), axis=0)


def _with_reference(game, reference):
    import dataclasses

    return dataclasses.replace(game, reference=reference)
