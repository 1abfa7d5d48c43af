"""Exact metrics on probability vectors (numpy in, numpy out), one value per game of a batch.

All are computed by the exact backend, so the numbers match what ``algorithms.run`` records.
For a preference game pass π; for a zero-sum game pass the pair (x, y).
"""
from __future__ import annotations

import numpy as np

from . import validation as V
from .core import PreferenceGame, ZeroSumGame
from .exact import ExactBackend


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def _backend(game, where):
    if not isinstance(game, (PreferenceGame, ZeroSumGame)):
        V.fail("game", V.kind(game), "it must be a games.PreferenceGame or games.ZeroSumGame "
               "(e.g. games.make('cyclic3'))", where, V.WrongType)
    return ExactBackend(game)


def duality_gap(game, policy):
    """DG = max_y (Pπ)_y − min_y (πᵀP)_y (= 2·max_y (Pπ)_y − 1 for a preference game); for a
    zero-sum pair, max(Ay) − min(xᵀA). Zero exactly at a Nash equilibrium. ``policy``: probabilities
    (zeros allowed), one row per game of a batch or one row for all."""
    be = _backend(game, "duality_gap")
    return _out(be.duality_gap(be.from_probs(policy, where="duality_gap")))


def exploitability(game, policy):
    """Half the duality gap (= NashConv/2; for a preference game max_y P(y ≻ π) − ½)."""
    be = _backend(game, "exploitability")
    return _out(np.asarray(be.host(be.duality_gap(be.from_probs(policy, where="exploitability")))) / 2)


def regularized_gap(game, policy, beta, reference=None):
    """Duality gap of the game regularised by β·KL(·‖reference) (the game's reference by default).

    ``beta`` ≥ 0 (one number, or one per game of a batch; 0 gives the duality gap). ``reference``
    must be strictly positive (a KL anchor with a zero entry makes the regularised game undefined:
    the gap would be +inf wherever π puts mass the anchor does not).
    """
    where = "regularized_gap"
    be = _backend(game, where)
    V.param(beta, "beta", low=0, allow_none=False, where=where)
    V.regularisation(beta, "beta", be.lipschitz, where=where)  # beyond 1e9·L the gap is rounding noise
    ref = None if reference is None else be.from_probs(reference, name="reference", interior=True, where=where)
    return _out(be.regularized_gap(be.from_probs(policy, where=where), beta, ref))


def kl(p, q):
    """KL(p‖q) = Σ p log(p/q) over the last axis (0·log 0 = 0; +inf where q = 0 < p); pairs (x, y)
    are summed. p and q are probabilities of the same length (checked: real, finite, non-negative,
    summing to 1)."""
    if isinstance(p, tuple) or isinstance(q, tuple):
        if not (isinstance(p, tuple) and isinstance(q, tuple) and len(p) == len(q)):
            V.fail("q", q, "p and q must both be probability vectors, or both pairs (x, y) of them", "kl", V.WrongType)
        return sum(kl(a, b) for a, b in zip(p, q))
    p = V.distribution(p, "p", where="kl")
    q = V.distribution(q, "q", size=p.shape[-1], where="kl")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return _out(terms.sum(-1))
