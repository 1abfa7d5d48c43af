"""Euclidean comparators: projected optimistic gradient (OGDA) and extragradient, exact backend only.

These move *probabilities* additively and project back onto the simplex — the Euclidean geometry,
which forgets quickly: an action driven to probability 0 returns as soon as its payoff is good again,
where a log-space (KL) method must first climb back up from a very negative log-probability (see
``games.conditioning``). They are here to show what the KL geometry costs on badly conditioned games
(experiments/conditioning.py). They are NOT realisable on the LLM backend: a language model's
policy is a softmax, the Euclidean step is not a log-linear target, and the projection needs every
probability explicitly. ``bind`` refuses a backend without explicit probabilities.

Step range. Both are analysed for the game operator F(z) = (payoff vectors) in the Euclidean norm:
L₂ = ‖Π_m A Π_n‖₂ (spectral norm of the payoff matrix restricted to probability *differences*,
Π_k = I − 11ᵀ/k; A = P for a preference game), computed per game at ``bind`` (``lipschitz2``).
    - Extragradient (Korpelevich 1976): iterates converge to an equilibrium for η < 1/L₂; for
      affine monotone problems over polyhedra (matrix games over simplices) the rate is linear
      (Tseng 1995, J. Comput. Appl. Math. 60) with game-dependent constants; last-iterate gap
      O(1/√T) in general (Cai, Oikonomou & Zheng 2022, arXiv 2204.09228). Default η = 0.5/L₂.
    - OGDA (Wei, Lee, Zhang & Luo, ICLR 2021, arXiv 2006.09517): linear last-iterate convergence
      for bilinear games over polytopes for η ≤ 1/(8L₂), with or without a unique equilibrium.
      Default η = 1/(8L₂), the edge of that range.
``guarantee=True`` refuses steps outside these ranges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import AlgorithmMixin, as_param, check, require


def lipschitz2(game):
    """L₂ = ‖Π_m A Π_n‖₂ per game (A = P for a preference game): the Euclidean Lipschitz constant of
    the game operator on the simplex (a float, or an array over the batch)."""
    A = np.asarray(game.P if hasattr(game, "P") else game.A, dtype=np.float64)
    m, n = A.shape[-2:]
    Pm, Pn = np.eye(m) - 1.0 / m, np.eye(n) - 1.0 / n
    L = np.linalg.norm(Pm @ A @ Pn, ord=2, axis=(-2, -1))
    return as_param(L)


def project_simplex(v):
    """Euclidean projection of each row (last axis) of ``v`` onto the probability simplex.

    Sort-based (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with u sorted decreasingly, the
    number of positive coordinates is ρ = max{j : u_j − (Σ_{i≤j} u_i − 1)/j > 0}, and
    x = max(v − θ, 0) with θ = (Σ_{i≤ρ} u_i − 1)/ρ. Works on numpy arrays and torch tensors.
    """
    if isinstance(v, np.ndarray):
        u = -np.sort(-v, axis=-1)
        css = np.cumsum(u, axis=-1) - 1.0
        j = np.arange(1, v.shape[-1] + 1, dtype=v.dtype)
        rho = np.sum(u - css / j > 0, axis=-1, keepdims=True)  # the condition holds on a prefix
        theta = np.take_along_axis(css, rho - 1, axis=-1) / rho
        return np.maximum(v - theta, 0.0)
    import torch

    u = torch.sort(v, dim=-1, descending=True).values
    css = torch.cumsum(u, dim=-1) - 1.0
    j = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = torch.sum(u - css / j > 0, dim=-1, keepdim=True)
    theta = torch.gather(css, -1, rho - 1) / rho.to(v.dtype)
    return torch.clamp(v - theta, min=0.0)


def _require_probabilities(backend, algo):
    from games.exact import ExactBackend

    if not isinstance(backend, ExactBackend):
        raise ValueError(
            f"{algo}: the Euclidean comparators move probabilities additively and project them onto the "
            f"simplex; {type(backend).__name__} has no explicit probabilities (an LLM policy is a softmax, "
            "and this step is not a log-linear target), so they run on the exact backend only. On an LLM "
            "use a log-space method (mpo, omwu, ...)")


def _policy(backend, probs):
    """The exact backend's policy value for explicit probabilities (log 0 = −inf where projected out)."""
    from games.exact import TabularPolicy

    with np.errstate(divide="ignore"):  # numpy warns on log 0; torch does not
        return TabularPolicy(tuple(backend.ops.log(p) for p in probs))


def _probs(backend, policy):
    return backend.probs(policy)


def _coef(backend, eta):
    """η as a backend array shaped to broadcast over actions (one value per game, or a scalar)."""
    if isinstance(eta, (int, float)):
        return eta
    c = backend.asarray(eta)
    return c if c.ndim == 0 else c[..., None]


def _resolve(self, backend, default_factor, bound_factor, algo):
    _require_probabilities(backend, algo)
    L2 = lipschitz2(backend.game)
    eta = as_param(default_factor / np.asarray(L2)) if self.eta is None else self.eta
    if self.guarantee:
        bound = bound_factor / np.asarray(L2)
        strict = algo == "Extragradient"
        ok = np.asarray(eta) < bound if strict else np.asarray(eta) <= bound * (1 + 1e-12)
        require(ok, f"{algo}: eta={eta!r} is outside the proven range η {'<' if strict else '≤'} "
                    f"{bound_factor:g}/L₂ = {as_param(bound)!r} (L₂ = {L2!r}); lower eta or pass guarantee=False")
    return self.replace(eta=eta)


@dataclass(frozen=True)
class EuclideanState:
    """policy: the played point z_t; anchor: OGDA's secondary sequence ẑ_t (None for extragradient)."""

    policy: object
    anchor: object = None
    t: int = 0


@dataclass(frozen=True)
class Extragradient(AlgorithmMixin):
    """Projected extragradient (Korpelevich 1976) on probabilities — an exact-backend comparator.

    Update (per slot; q(σ) the payoff vector against σ, Pσ for a preference game):
        z_{t+½} = Π_Δ(z_t + η·q(z_t)),    z_{t+1} = Π_Δ(z_t + η·q(z_{t+½}))
    Two queries per step. Not realisable on an LLM (see the module docstring). Step range: η < 1/L₂
    (L₂ per game, see :func:`lipschitz2`); default 0.5/L₂.
    """

    eta: float | None = None
    guarantee: bool = False
    name = "extragradient"
    exact_only = True
    queries_per_step = 2

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="Extragradient")

    def bind(self, backend):
        return _resolve(self, backend, 0.5, 1.0, "Extragradient")

    def init(self, backend, policy):
        _require_probabilities(backend, "Extragradient")
        return EuclideanState(policy, None, 0)

    def _move(self, backend, base, sigma):
        c = _coef(backend, self.eta)
        q = backend.win_rates(sigma).q
        return _policy(backend, tuple(project_simplex(p + c * g) for p, g in zip(_probs(backend, base), q)))

    def step(self, backend, state):
        half = self._move(backend, state.policy, state.policy)
        return EuclideanState(self._move(backend, state.policy, half), None, state.t + 1)


@dataclass(frozen=True)
class OGDA(AlgorithmMixin):
    """Projected optimistic gradient (OGDA, the form of Wei et al. 2021) — an exact-backend comparator.

    Update (per slot; ẑ a secondary sequence, ẑ_0 = z_0):
        ẑ_{t+1} = Π_Δ(ẑ_t + η·q(z_t)),    z_{t+1} = Π_Δ(ẑ_{t+1} + η·q(z_t))
    One query per step (q(z_t) serves both projections). Not realisable on an LLM (see the module
    docstring). Proven: linear last-iterate convergence for η ≤ 1/(8L₂); default η = 1/(8L₂).
    """

    eta: float | None = None
    guarantee: bool = False
    name = "ogda"
    exact_only = True

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="OGDA")

    def bind(self, backend):
        return _resolve(self, backend, 0.125, 0.125, "OGDA")

    def init(self, backend, policy):
        _require_probabilities(backend, "OGDA")
        return EuclideanState(policy, policy, 0)

    def step(self, backend, state):
        c = _coef(backend, self.eta)
        q = backend.win_rates(state.policy).q
        anchor = tuple(project_simplex(p + c * g) for p, g in zip(_probs(backend, state.anchor), q))
        new = tuple(project_simplex(a + c * g) for a, g in zip(anchor, q))
        return EuclideanState(_policy(backend, new), _policy(backend, anchor), state.t + 1)
