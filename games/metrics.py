"""Exact metrics on probability vectors (numpy in, numpy out), one value per game of a batch.

All are computed by the exact backend, so the numbers match what ``algorithms.run`` records.
For a preference game pass π; for a zero-sum game pass the pair (x, y).
"""
from __future__ import annotations

import numpy as np

from .exact import ExactBackend


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def _backend(game):
    return ExactBackend(game)


def duality_gap(game, policy):
    """DG = max_y (Pπ)_y − min_y (πᵀP)_y (= 2·max_y (Pπ)_y − 1 for a preference game); for a
    zero-sum pair, max(Ay) − min(xᵀA). Zero exactly at a Nash equilibrium."""
    be = _backend(game)
    return _out(be.duality_gap(be.from_probs(policy)))


def exploitability(game, policy):
    """Half the duality gap (= NashConv/2; for a preference game max_y P(y ≻ π) − ½)."""
    return _out(np.asarray(duality_gap(game, policy)) / 2)


def regularized_gap(game, policy, beta, reference=None):
    """Duality gap of the game regularised by β·KL(·‖reference) (the game's reference by default)."""
    be = _backend(game)
    ref = None if reference is None else be.from_probs(reference)
    return _out(be.regularized_gap(be.from_probs(policy), beta, ref))


def kl(p, q):
    """KL(p‖q) = Σ p log(p/q) over the last axis (0·log 0 = 0); pairs are summed."""
    if isinstance(p, tuple):
        return sum(kl(a, b) for a, b in zip(p, q))
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return _out(terms.sum(-1))
