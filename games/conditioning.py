"""How well conditioned a game's Nash equilibrium is, and how slow that makes KL-geometry methods.

``games.conditioning(game)`` returns, per game (one entry per game of a batch), the equilibrium's
support, its smallest support probability p_min, the smallest best-response margin δ off the
support, whether the equilibrium is unique, and the derived quantities below.

Why these predict the speed of MPO, OMWU and every other log-space (KL-proximal) method
--------------------------------------------------------------------------------------------
Such methods keep a policy's *log*-probabilities. The quantity their analysis decreases is
KL(π*‖ρ_k) (MPO: the proximal-point inequality KL(π*‖ρ_{k+1}) ≤ KL(π*‖ρ_k) − KL(ρ_{k+1}‖ρ_k)).
That divergence weights action i's log-ratio by its equilibrium mass π*_i, so it barely constrains an
action with tiny mass: for any ρ with KL(π*‖ρ) ≤ K (grouping the other actions together, the
log-sum inequality gives K ≥ p·log(p/ρ_i) + (1−p)·log(1−p) with p = π*_i),

    log(π*_i / ρ_i) ≤ (K + h(p)) / p,    h(p) = −(1−p)·log(1−p) ≤ p.

With K = KL(π*‖ρ_0) (ρ_0 = the reference, where runs start) this is ``depth``: how many nats
below its equilibrium log-probability the smallest-mass support action may be pushed without the
method's Lyapunov function noticing. Early in a run that action often loses (it is only worth
playing against the full equilibrium), its log-probability falls at a constant rate while the policy
sits at the equilibrium of the game without it (a plateau of small gap), climbs back once the rest
has settled, overshoots — a spike of large gap — and the cycle repeats, shallower each time
(measured on ``games.make("random", n=10, seed=0)``: p_min = 0.00265, the log-ratio reaches ≈ 100
nats, gap spikes of 0.17–0.29; experiments/conditioning.py, figures/conditioning.png). The time a
cycle takes grows with the depth, i.e. with 1/p_min.

The margin δ sets the other clock: an off-support action j loses δ_j per unit of payoff step, so
its log-probability falls by about η·δ_j per step of a log-space method with step η, and the gap
cannot fall below ~its mass. ``margin_time`` = L/δ is that time in steps of size η = 1/L (L = half
the payoff range, the games' Lipschitz constant): reaching a gap ε takes at least about
log(1/ε)·L/δ such steps. A unique equilibrium with δ → 0 or p_min → 0 is close to a degenerate
(non-unique) one; no method has a last-iterate rate free of such constants (lower bounds exist for
methods with long memory, which log-space iterates are).

Uniqueness: by Goldman–Tucker an LP (here: the game) always has a strictly complementary solution
pair, so a unique equilibrium is strictly complementary (every action is on the support or has a
margin δ_j > 0); conversely a strictly complementary equilibrium whose equaliser system on the
supports is nonsingular is unique. The equilibrium is that of ``games.nash_equilibrium`` (LP),
re-solved exactly on its support.

Tolerances are relative: a probability is on the support if > ``support_tol``; a margin counts as
positive if > ``tol`` × the payoff range; the equaliser system is singular if its smallest singular
value is ≤ ``tol`` × its largest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from .core import PreferenceGame, ZeroSumGame
from .equilibria import nash_equilibrium


@dataclass(frozen=True)
class Conditioning:
    """Per-game conditioning of the Nash equilibrium (each field has a leading batch axis when the
    game is a batch; pairs of arrays (row, column) for a zero-sum game where marked).

    nash: the equilibrium π* (pair (x*, y*) for a zero-sum game), exact on its support.
    support: boolean mask(s) of the support (pair for a zero-sum game).
    p_min: the smallest support probability (over both players of a zero-sum game).
    p_min_action: its action (index into the row player's actions; a zero-sum game's column player's
        actions are numbered after the row player's).
    margin: the smallest best-response margin off the support, δ = min_j (v − payoff_j) ≥ 0, in payoff
        units (inf when every action is on the support).
    margin_action: its action (−1 when the support is everything); numbered as p_min_action.
    strictly_complementary: every action is on the support or has margin > tol·payoff range.
    nonsingular: the equaliser system on the supports has a unique solution (equal support sizes and
        a well-conditioned bordered matrix).
    unique: the equilibrium is unique (= strictly_complementary and nonsingular).
    lipschitz: L, half the payoff range (the step scale every method uses).
    kl_reference: KL(π*‖ρ) to the game's reference ρ (where runs start; summed over players).
    depth: (KL(π*‖ρ) + h(p_min))/p_min, the bound on log(π*_i/ρ_i) for the smallest-mass support
        action over every ρ with KL(π*‖ρ) ≤ KL(π*‖reference) (nats; see the module docstring).
    margin_time: L/δ, the steps of size η = 1/L an off-support action needs to lose one nat (0 when
        the support is everything: there is nothing to remove; inf when δ = 0).
    """

    nash: object
    support: object
    p_min: np.ndarray | float
    p_min_action: np.ndarray | int
    margin: np.ndarray | float
    margin_action: np.ndarray | int
    strictly_complementary: np.ndarray | bool
    nonsingular: np.ndarray | bool
    unique: np.ndarray | bool
    lipschitz: np.ndarray | float
    kl_reference: np.ndarray | float
    depth: np.ndarray | float
    margin_time: np.ndarray | float

    def as_dict(self) -> dict:
        """The scalar fields (one value, or one array over the batch, each)."""
        skip = ("nash", "support")
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def depth_bound(kl, p):
    """(KL + h(p))/p with h(p) = −(1−p)·log(1−p): the largest log(π*_i/ρ_i) any ρ with
    KL(π*‖ρ) ≤ KL allows for an action of equilibrium mass p (nats)."""
    kl, p = np.asarray(kl, dtype=np.float64), np.asarray(p, dtype=np.float64)
    h = -xlogy(1 - p, 1 - p)  # 0 at p = 1 (a pure equilibrium)
    return (kl + h) / p


def conditioning(game, *, support_tol: float = 1e-9, tol: float = 1e-9) -> Conditioning:
    """The conditioning of ``game``'s Nash equilibrium (see the module docstring and :class:`Conditioning`).

    ``game``: a PreferenceGame or ZeroSumGame, single or batched (then every field has one entry per
    game). Raises what ``games.nash_equilibrium`` raises (a RuntimeError if the LP fails its check).
    """
    from .validation import number

    support_tol = number(support_tol, "support_tol", low=0, high=1, low_open=True, high_open=True, where="conditioning")
    tol = number(tol, "tol", low=0, high=1, low_open=True, high_open=True, where="conditioning")
    if not isinstance(game, (PreferenceGame, ZeroSumGame)):
        raise TypeError(f"conditioning needs a games.PreferenceGame or games.ZeroSumGame; got {type(game).__name__}")
    if game.batch_shape:
        parts = [_single(game[b], support_tol, tol) for b in range(len(game))]
        out = {}
        for k in Conditioning.__dataclass_fields__:
            vals = [getattr(c, k) for c in parts]
            if isinstance(vals[0], tuple):
                out[k] = tuple(np.stack([v[s] for v in vals]) for s in range(len(vals[0])))
            else:
                out[k] = np.stack([np.asarray(v) for v in vals])
        return Conditioning(**out)
    return _single(game, support_tol, tol)


def _single(game, support_tol, tol) -> Conditioning:
    symmetric = isinstance(game, PreferenceGame)
    A = np.asarray(game.P - 0.5 if symmetric else game.A, dtype=np.float64)
    rng = float(np.max(A) - np.min(A))
    L = 0.5 * max(np.ptp(A, axis=1).max(), np.ptp(A, axis=0).max())
    if symmetric:
        x = y = np.asarray(nash_equilibrium(game), dtype=np.float64)
    else:
        x, y = (np.asarray(v, dtype=np.float64) for v in nash_equilibrium(game))
    Sx, Sy = x > support_tol, y > support_tol
    xs, ys, smin, smax = _equalise(A, Sx, Sy)
    nonsingular = bool(Sx.sum() == Sy.sum() and smin > tol * smax)
    if nonsingular and np.all(xs > 0) and np.all(ys > 0):
        x, y = np.zeros_like(x), np.zeros_like(y)
        x[Sx], y[Sy] = xs, ys
    v = float(x @ A @ y)
    # margins: rows off x's support earn less than v against y; columns off y's support concede more
    row_margin = np.where(Sx, np.inf, v - A @ y)
    col_margin = np.where(Sy, np.inf, x @ A - v)
    margins = row_margin if symmetric else np.concatenate([row_margin, col_margin])
    probs = x if symmetric else np.concatenate([x, y])
    supp = Sx if symmetric else np.concatenate([Sx, Sy])
    delta = float(np.min(margins)) if margins.size else np.inf
    margin_action = int(np.argmin(margins)) if np.isfinite(delta) else -1
    delta = max(delta, 0.0)  # rounding below 0 on a tie is a zero margin
    i_min = int(np.argmin(np.where(supp, probs, np.inf)))
    p_min = float(probs[i_min])
    strict = bool(not np.isfinite(delta) or delta > tol * rng)
    ref = [np.exp(game.log_reference)] if symmetric else [np.exp(r) for r in game.log_reference]
    kl_ref = float(sum(_kl(p, r) for p, r in zip((x,) if symmetric else (x, y), ref)))
    return Conditioning(
        nash=x if symmetric else (x, y),
        support=Sx if symmetric else (Sx, Sy),
        p_min=p_min, p_min_action=i_min, margin=delta, margin_action=margin_action,
        strictly_complementary=strict, nonsingular=nonsingular, unique=bool(strict and nonsingular),
        lipschitz=float(L), kl_reference=kl_ref, depth=float(depth_bound(kl_ref, p_min)),
        margin_time=0.0 if not np.isfinite(delta) else (float(L / delta) if delta > 0 else np.inf),
    )


def _equalise(A, Sx, Sy):
    """Solve the equaliser systems on the supports: y on Sy makes every row of Sx earn the value,
    x on Sx makes every column of Sy concede it; returns (x_S, y_S, σ_min, σ_max) of the bordered
    matrix [[A_SxSy, −1], [1ᵀ, 0]] (σ_min = 0 when the supports differ in size)."""
    k, m = int(Sx.sum()), int(Sy.sum())
    B = np.zeros((k + 1, m + 1))
    B[:k, :m], B[:k, m], B[k, :m] = A[np.ix_(Sx, Sy)], -1.0, 1.0
    s = np.linalg.svd(B, compute_uv=False)
    if k != m:
        return None, None, 0.0, float(s[0])
    rhs = np.r_[np.zeros(k), 1.0]
    try:
        ys = np.linalg.solve(B, rhs)[:m]
        Bt = np.zeros_like(B)
        Bt[:m, :k], Bt[:m, k], Bt[m, :k] = A[np.ix_(Sx, Sy)].T, -1.0, 1.0
        xs = np.linalg.solve(Bt, rhs)[:k]
    except np.linalg.LinAlgError:
        return None, None, 0.0, float(s[0])
    return xs, ys, float(s[-1]), float(s[0])


def _kl(p, q):
    m = p > 0
    return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))
