"""An independent high-precision reference for regularised equilibria (mpmath, 50 digits).

Newton's method on the fixed-point equations ℓ_s = log softmax(log ρ_s + (M e^ℓ)_s / β) per policy
slot s, with M the stacked game operator ([P] for a preference game, [[0, A], [−Aᵀ, 0]] for a
zero-sum game). Written without the library: only the start point comes from it, and Newton
converges quadratically to the root from there whatever its accuracy, which we check by the
residual of the 50-digit solution.
"""
from __future__ import annotations

import mpmath as mp
import numpy as np


def _stacked(game):
    import games

    if isinstance(game, games.PreferenceGame):
        return np.asarray(game.P, float), [np.asarray(game.log_reference, float)]
    A = np.asarray(game.A, float)
    m, n = A.shape
    M = np.zeros((m + n, m + n))
    M[:m, m:], M[m:, :m] = A, -A.T
    return M, [np.asarray(r, float) for r in game.log_reference]


def qre_mp(game, beta, log_start, dps: int = 50, iters: int = 80):
    """(log π* as mpf list, residual of the solution) for one game; ``log_start``: log-probabilities
    (concatenated over slots) to start Newton from."""
    mp.mp.dps = dps
    M, log_refs = _stacked(game)
    sizes = [len(r) for r in log_refs]
    slot = np.repeat(np.arange(len(sizes)), sizes)
    N = len(slot)
    Mm = [[mp.mpf(float(M[i, j])) for j in range(N)] for i in range(N)]
    lr = [mp.mpf(float(x)) for r in log_refs for x in r]
    b = mp.mpf(float(beta))
    ell = [mp.mpf(float(x)) for x in log_start]

    def evaluate(ell):
        pi = [mp.exp(x) for x in ell]
        z = [lr[i] + mp.fsum(Mm[i][j] * pi[j] for j in range(N)) / b for i in range(N)]
        lse, s = {}, [None] * N
        for k in set(slot.tolist()):
            idx = [i for i in range(N) if slot[i] == k]
            zmax = max(z[i] for i in idx)
            lse[k] = zmax + mp.log(mp.fsum(mp.exp(z[i] - zmax) for i in idx))
            for i in idx:
                s[i] = mp.exp(z[i] - lse[k])
        F = [ell[i] - (z[i] - lse[slot[i]]) for i in range(N)]
        return pi, s, F

    for _ in range(iters):
        pi, s, F = evaluate(ell)
        J = mp.matrix(N, N)
        for i in range(N):
            for j in range(N):
                # ∂z_k/∂ℓ_j = M_kj π_j/β;  ∂(z_i − lse(z))/∂z_k = δ_ik − [slot k = slot i]·s_k
                dz = Mm[i][j] - mp.fsum(s[k] * Mm[k][j] for k in range(N) if slot[k] == slot[i])
                J[i, j] = (1 if i == j else 0) - dz * pi[j] / b
        d = mp.lu_solve(J, mp.matrix([-f for f in F]))
        ell = [ell[i] + d[i] for i in range(N)]
        if max(abs(x) for x in d) < mp.mpf(10) ** (-(dps - 8)):
            break
    _, _, F = evaluate(ell)
    return ell, max(abs(f) for f in F)
