"""Exact equilibria: the Nash equilibrium by linear programming (scipy HiGHS), polished and
checked by its own gap, and the β-regularised equilibrium by Mirror Prox, checked by its gap."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from .core import PreferenceGame


def _maximin(A):
    """Row player's maximin strategy of xᵀAy and the value, by LP."""
    m, n = A.shape
    # variables (x_1..x_m, v): maximise v s.t. (Aᵀx)_j ≥ v, Σx = 1, x ≥ 0
    c = np.zeros(m + 1)
    c[-1] = -1
    A_ub = np.hstack([-A.T, np.ones((n, 1))])
    A_eq = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=[1], bounds=[(0, None)] * m + [(None, None)],
                  method="highs", options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:  # pragma: no cover - an LP on a bounded simplex is always feasible
        raise RuntimeError(f"LP failed: {res.message}")
    x = np.clip(res.x[:m], 0, None)
    return x / x.sum(), -res.fun


def _polish(A, x, y):
    """Solve the equaliser system on the supports exactly (the LP is accurate to ~1e-9 only)."""
    Sx, Sy = np.flatnonzero(x > 1e-9), np.flatnonzero(y > 1e-9)
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
    if np.any(xs < 0) or np.any(ys < 0):
        return x, y
    x2, y2 = np.zeros_like(x), np.zeros_like(y)
    x2[Sx], y2[Sy] = xs, ys
    return x2, y2


def _gap(A, x, y):
    return float((A @ y).max() - (x @ A).min())


def nash_equilibrium(game, tol: float = 1e-8):
    """A Nash equilibrium: π for a preference game, the pair (x, y) for a zero-sum game.

    Solved by LP (HiGHS), refined by solving the equaliser system on the supports, and verified
    by its own duality gap (≤ ``tol``, else RuntimeError). Batched games return one row per game.
    """
    if game.batch_shape:
        sols = [nash_equilibrium(game[b], tol) for b in range(len(game))]
        if isinstance(game, PreferenceGame):
            return np.stack(sols)
        return np.stack([s[0] for s in sols]), np.stack([s[1] for s in sols])
    A = game.P - 0.5 if isinstance(game, PreferenceGame) else game.A
    x, _ = _maximin(A)
    y, _ = _maximin(-A.T)
    g0 = _gap(A, x, y)
    xp, yp = _polish(A, x, y)
    if _gap(A, xp, yp) <= g0:
        x, y = xp, yp
    if isinstance(game, PreferenceGame):
        # the game is symmetric: x alone is an equilibrium strategy, checked by its own gap
        g = _gap(A, x, x)
        if g > tol:
            raise RuntimeError(f"LP equilibrium has duality gap {g:.3g} > tol={tol}")
        return x
    g = _gap(A, x, y)
    if g > tol:
        raise RuntimeError(f"LP equilibrium has duality gap {g:.3g} > tol={tol}")
    return x, y


def regularized_nash(game, beta, reference=None, tol: float | None = None, max_steps: int = 1_000_000):
    """The β-regularised NE π*_β ∝ μ·exp(Pπ*_β/β) (a pair for a zero-sum game; one row per game
    of a batch; β may be one value per game).

    Computed by Mirror Prox (Nash-MP) at its proven step η = β/L, which contracts KL by (1+η) per
    iteration, run until the fixed-point residual max |log π − log softmax(log μ + q(π)/β)| is
    ≤ ``tol`` (the regularised gap is quadratic in the distance to π*_β, so a gap tolerance would
    leave errors of its square root). RuntimeError if not reached; the gap is checked as well.
    Default tol: max(1e-12, 1e-14/β), since rounding in q/β sets a floor of about 1e-16/β.
    """
    import algorithms  # deferred: the solver *is* our Mirror Prox, written once in algorithms/

    if not np.all(np.asarray(beta) > 0):
        raise ValueError(f"beta must be > 0 for the regularised equilibrium; got {beta} (use nash_equilibrium for β = 0)")
    if tol is None:
        tol = max(1e-12, 1e-14 / float(np.min(beta)))
    if reference is not None:
        game = _with_reference(game, reference)
    from .exact import ExactBackend

    be = ExactBackend(game)
    residual = {"best": np.inf, "stale": 0}

    def converged(t, state, metrics):
        r = residual["value"] = _residual(be, state.algo_state.policy, beta)
        # stop at tol, or once rounding stalls progress (no new best for 40 checks = 1000 steps)
        if np.max(r) < residual["best"] * 0.999:
            residual["best"], residual["stale"] = np.max(r), 0
        else:
            residual["stale"] += 1
        return bool(np.all(r <= tol)) or residual["stale"] >= 40

    res = algorithms.run(algorithms.MirrorProx(beta=beta), be, max_steps, average=False,
                         progress=False, record=25, callbacks=(converged,))
    r = residual.get("value", np.inf)
    if np.any(r > tol):
        raise RuntimeError(f"regularised NE not reached: residual {np.max(r):.3g} > tol={tol} after {res.steps} steps "
                           "(progress stalled at the rounding floor of q/β: loosen tol for large payoffs or small β)")
    gap = np.asarray(res.history["regularized_gap"][-1])
    if np.any(gap > max(tol, 1e-12)):
        raise RuntimeError(f"regularised NE has regularised gap {np.max(gap):.3g}")
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
