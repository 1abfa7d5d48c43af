"""MMD — Magnetic Mirror Descent (Sokota et al., arXiv 2206.05825, ICLR 2023)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import AlgorithmMixin, as_param, check, prox_step, require


@dataclass(frozen=True)
class MagnetState:
    policy: object
    magnet: object
    t: int = 0


def mmd_step(backend, policy, magnet, eta, alpha):
    """One MMD step: π_{t+1} ∝ [π_t · ρ^{ηα} · exp(η g(π_t))]^{1/(1+ηα)}. Shared by MMD and MPO."""
    g = backend.win_rates(policy)
    d = 1 + eta * alpha
    return prox_step(backend, policy, magnet, g, 1 / d, eta * alpha / d, eta / d)


def resolve_mmd(backend, eta, alpha, guarantee, algo):
    """Defaults α = 0.2·L and η = α/L² (the proven bound), and the guarantee check."""
    L = backend.lipschitz
    alpha = 0.2 * np.asarray(L) if alpha is None else alpha
    if eta is None and np.any(np.asarray(alpha) == 0):
        raise ValueError(f"{algo}: with alpha=0 there is no magnet and no default step (η ≤ α/L² = 0); "
                         "pass eta explicitly (this is then plain mirror descent, i.e. MWU)")
    bound = np.asarray(alpha) / np.asarray(L) ** 2
    eta = bound if eta is None else eta
    if guarantee:
        require(
            np.asarray(eta) <= bound * (1 + 1e-12),
            f"{algo}: eta={eta!r} is outside the proven range η ≤ α/L² = {as_param(bound)!r} for this game "
            f"(L = {as_param(L)!r}, the game's payoff range/2); lower eta or pass guarantee=False",
        )
    return as_param(eta), as_param(alpha)


@dataclass(frozen=True)
class MMD(AlgorithmMixin):
    """Magnetic Mirror Descent with a fixed magnet ρ.

    Update (paper eq. for the simplex, reward form):
        π_{t+1}(y) ∝ [ π_t(y) · ρ(y)^{ηα} · exp(η · P(y ≻ π_t)) ]^{1/(1+ηα)}

    Mapping: anchor π_t, magnet ρ, σ = π_t, (a, b, c) = (1, ηα, η)/(1+ηα). One query per step.
    Converges (last iterate) to the α-regularised NE, the magnet-weighted logit QRE
    π*_α ∝ ρ·exp(Pπ*_α/α), linearly: KL(π*_α‖π_t) ≤ (1+ηα)^{−t}·KL(π*_α‖π_0) when η ≤ α/L²
    (Thm 3.4; L = ½·max payoff range of a row or column, ≤ ½ for preference matrices).

    Defaults: α = 0.2·L, η = α/L². ``magnet``: probabilities (a pair for a zero-sum game); the
    game's reference by default. ``guarantee=True`` refuses η > α/L².
    """

    eta: float | None = None
    alpha: float | None = None
    magnet: object = None
    guarantee: bool = False
    name = "mmd"

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="MMD")
        check("alpha", self.alpha, nonneg=True, algo="MMD")

    def bind(self, backend):
        eta, alpha = resolve_mmd(backend, self.eta, self.alpha, self.guarantee, "MMD")
        return self.replace(eta=eta, alpha=alpha)

    def init(self, backend, policy):
        if self.magnet is None:
            return MagnetState(policy, backend.reference, 0)
        parts = self.magnet if isinstance(self.magnet, tuple) else (self.magnet,)
        if any(isinstance(p, (list, np.ndarray)) and np.any(np.asarray(p) <= 0) for p in parts):
            raise ValueError("MMD: the magnet must be strictly positive (a KL anchor with a zero entry makes the "
                             "regularised game undefined); mix in a little uniform mass")
        return MagnetState(policy, backend.from_probs(self.magnet), 0)

    def step(self, backend, state):
        new = mmd_step(backend, state.policy, state.magnet, self.eta, self.alpha)
        return MagnetState(new, state.magnet, state.t + 1)

    def regularization(self, state):
        return (self.alpha, state.magnet)
