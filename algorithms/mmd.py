"""MMD — Magnetic Mirror Descent (Sokota et al., arXiv 2206.05825, ICLR 2023)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation as V

from .base import (AlgorithmMixin, as_param, check, check_coefficients, check_derived, check_per_game, check_policy_argument, check_regularisation,
                   enter_policy, payoff_scale, prox_step, refuse_unless)


@dataclass(frozen=True)
class MagnetState:
    policy: object
    magnet: object
    t: int = 0


def mmd_coefficients(eta, alpha):
    """(a, b, c) = (1, ηα, η)/(1+ηα), the MMD step's weights on (π_t, ρ, g)."""
    if type(eta) is float and type(alpha) is float:  # the common case, every step: no numpy overhead
        ea = eta * alpha
        d = 1 + ea
        return 1 / d, ea / d, eta / d
    ea = np.asarray(eta) * np.asarray(alpha)
    d = 1 + ea
    return as_param(1 / d), as_param(ea / d), as_param(np.asarray(eta) / d)


def mmd_step(backend, policy, magnet, eta, alpha):
    """One MMD step: π_{t+1} ∝ [π_t · ρ^{ηα} · exp(η g(π_t))]^{1/(1+ηα)}. Shared by MMD and MPO."""
    g = backend.win_rates(policy)
    a, b, c = mmd_coefficients(eta, alpha)
    return prox_step(backend, policy, magnet, g, a, b, c)


def resolve_mmd(backend, eta, alpha, guarantee, algo):
    """Defaults α = 0.2·L and η = α/L² (the proven bound), and the checks MMD and MPO share:
    α within the finite-arithmetic bound α/L ≤ 1/tolerance(dtype) (see ``base.check_regularisation``:
    beyond it the step cannot move and the regularised gap is noise; near 1e154·L the coefficients
    become NaN), every derived value finite and positive, and the guarantee η ≤ α/L² if asked."""
    L = payoff_scale(backend)
    given_eta, given_alpha = eta is not None, alpha is not None
    check_per_game(backend, algo, eta=eta, alpha=alpha)
    check_regularisation("alpha", alpha, backend, algo)
    alpha = 0.2 * L if alpha is None else alpha
    if eta is None and np.any(np.asarray(alpha) == 0):
        V.fail("alpha", as_param(alpha), "alpha = 0 needs an explicit eta: there is then no magnet and no default "
               "step (η ≤ α/L² = 0); pass eta (this is then plain mirror descent, i.e. MWU)", algo)
    bound = np.asarray(alpha) / L / L  # (α/L)/L: α/L² would overflow L² for payoffs beyond 1e154
    eta = bound if eta is None else eta
    check_derived(backend, algo, eta=(eta, given_eta))
    if not given_alpha:
        check_derived(backend, algo, alpha=(alpha, False))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is what check_coefficients looks for
        coefs = mmd_coefficients(eta, alpha)
    check_coefficients(algo, "eta and alpha", *coefs)
    if guarantee:
        refuse_unless(np.asarray(eta) <= bound * (1 + V.tolerance()), "eta", eta,
                      f"with guarantee=True it must lie in the proven range η ≤ α/L² = {as_param(bound)!r} for this game "
                      f"(L = {as_param(L)!r}, the game's payoff range/2); lower eta or pass guarantee=False", algo)
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
        V.boolean(self.guarantee, "guarantee", "MMD")
        object.__setattr__(self, "magnet", check_policy_argument(self.magnet, "magnet", "MMD"))

    def bind(self, backend):
        eta, alpha = resolve_mmd(backend, self.eta, self.alpha, self.guarantee, "MMD")
        return self.replace(eta=eta, alpha=alpha)

    def init(self, backend, policy):
        if self.magnet is None:
            return MagnetState(policy, backend.reference, 0)
        return MagnetState(policy, enter_policy(backend, self.magnet, "magnet", "MMD"), 0)

    def step(self, backend, state):
        new = mmd_step(backend, state.policy, state.magnet, self.eta, self.alpha)
        return MagnetState(new, state.magnet, state.t + 1)

    def regularization(self, state):
        return (self.alpha, state.magnet)
