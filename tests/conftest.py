"""Shared helpers for the exact-game tests: reference formulas written independently of the library.

Nothing here calls the code under test except to get a starting point that Newton's method then
refines, so the tests compare the library against these formulas rather than against itself.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings
from scipy.special import log_softmax

import games

# CI replays the same examples every run (a landing must not hinge on a lucky draw); locally
# hypothesis explores new ones each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: the 3×3 intransitive catalogue games with an interior NE (rps is degenerate from uniform: see INIT3)
GAMES3 = ("cyclic3", "perturbed_rps", "dice", "condorcet")
#: a start away from every catalogue NE (uniform *is* the NE of rps and dice)
INIT3 = np.array([0.7, 0.2, 0.1])


def kl_np(p, q):
    """KL(p‖q) over the last axis, 0·log 0 = 0."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(-1)


def lipschitz_np(M):
    """½·(largest payoff range of a row or a column), written out independently of the backend."""
    M = np.asarray(M, float)
    return 0.5 * max(np.ptp(M, axis=-1).max(), np.ptp(M, axis=-2).max())


def _operator(game):
    """(M, sizes): the stacked game operator z ↦ M z (payoff of every action of every slot)."""
    if isinstance(game, games.PreferenceGame):
        return np.asarray(game.P), (game.n,)
    A = np.asarray(game.A)
    m, n = A.shape[-2:]
    M = np.zeros(A.shape[:-2] + (m + n, m + n))
    M[..., :m, m:] = A
    M[..., m:, :m] = -np.swapaxes(A, -1, -2)
    return M, (m, n)


def qre(game, beta, magnet=None, start=None, iters=30):
    """The β-regularised NE π = softmax(log ρ + Mπ/β) per slot, to machine precision.

    Newton's method on (log π, one multiplier per slot), started from ``start`` (default: the
    library's regularized_nash, accurate to its tol, then polished). Batched preference games are supported.
    Returns π (preference game) or (x, y) (zero-sum game).
    """
    M, sizes = _operator(game)
    zs = isinstance(game, games.ZeroSumGame)
    if magnet is None:
        log_rho = np.concatenate([np.broadcast_to(r, M.shape[:-2] + r.shape[-1:]) for r in game.log_reference], -1) \
            if zs else game.log_reference
    else:
        log_rho = np.log(np.concatenate(magnet, -1) if zs else np.asarray(magnet, float))
    if start is None:
        start = games.regularized_nash(game, beta, reference=magnet, tol=1e-10)
    u = np.log(np.concatenate(start, -1) if zs else np.asarray(start, float))
    batch = M.shape[:-2]
    N, k = M.shape[-1], len(sizes)
    S = np.zeros((k, N))
    S[np.repeat(np.arange(k), sizes), np.arange(N)] = 1
    lam = np.zeros(batch + (k,))
    b = np.asarray(beta, float)
    b = b[..., None] if b.ndim else b  # one β per game of a batch
    for _ in range(iters):
        e = np.exp(u)
        Fu = u - log_rho - (M @ e[..., None])[..., 0] / b - lam @ S
        Fc = e @ S.T - 1
        J = np.zeros(batch + (N + k, N + k))
        J[..., :N, :N] = np.eye(N) - M * e[..., None, :] / np.asarray(b)[..., None]
        J[..., :N, N:] = -S.T
        J[..., N:, :N] = S * e[..., None, :]
        d = np.linalg.solve(J, -np.concatenate([Fu, Fc], -1)[..., None])[..., 0]
        u, lam = u + d[..., :N], lam + d[..., N:]
    parts = np.split(u, np.cumsum(sizes)[:-1], axis=-1)
    pis = tuple(np.exp(log_softmax(p, axis=-1)) for p in parts)
    return pis if zs else pis[0]


def fixed_point_residual(P, beta, log_mu, pi):
    """max |log π − log softmax(log μ + Pπ/β)| for a preference game (batched)."""
    q = np.einsum("...ij,...j->...i", P, pi)
    b = np.asarray(beta, float)
    b = b[..., None] if b.ndim else b
    return np.abs(np.log(pi) - log_softmax(log_mu + q / b, axis=-1)).max()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
