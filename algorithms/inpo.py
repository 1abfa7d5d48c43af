"""INPO — Iterative Nash Policy Optimization (Zhang et al., arXiv 2407.00617, ICLR 2025)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation as V

from .base import (AlgorithmMixin, State, as_param, check, check_derived, check_per_game, check_regularisation, check_step, payoff_scale,
                   prox_step, refuse_unless)


def resolve_inpo(backend, eta, tau, guarantee, algo):
    """Defaults τ = 0.2·L and η = (L² + τ²)/τ (INPO's step mapped onto MMD's proven η_MMD ≤ τ/L²)."""
    L = payoff_scale(backend)
    given_eta, given_tau = eta is not None, tau is not None
    check_per_game(backend, algo, eta=eta, tau=tau)
    check_regularisation("tau", tau, backend, algo)
    tau = np.asarray(0.2 * L if tau is None else tau)
    bound = L * (L / tau) + tau  # = (L² + τ²)/τ, without overflowing L² for payoffs beyond 1e154
    eta = np.asarray(bound if eta is None else eta)
    check_derived(backend, algo, tau=(tau, given_tau), eta=(eta, given_eta))
    check_step(backend, algo, **{"1/eta": 1 / eta})
    refuse_unless(tau <= eta, "tau", tau, f"it must be <= eta (tau={as_param(tau)!r} > eta={as_param(eta)!r} puts negative "
                  "weight on π_t; eta is an inverse learning rate)", algo)
    if guarantee:
        refuse_unless(eta >= bound * (1 - V.tolerance()), "eta", eta,
                      f"with guarantee=True it must lie in the proven range η ≥ (L²+τ²)/τ = {as_param(bound)!r} "
                      "(η is an INVERSE learning rate: larger is slower and safer); raise eta or pass guarantee=False", algo)
    return as_param(eta), as_param(tau)


@dataclass(frozen=True)
class INPO(AlgorithmMixin):
    """Online mirror descent on the τ-regularised game; η is an *inverse* learning rate (paper eq. 5).

    Update:  π_{t+1}(y) ∝ exp(P(y ≻ π_t)/η) · π_ref(y)^{τ/η} · π_t(y)^{1−τ/η}
    Mapping: anchor π_t, magnet π_ref, σ = π_t, (a, b, c) = (1 − τ/η, τ/η, 1/η). One query per step.
    This is MMD with α = τ and MMD step η_MMD where 1/η = η_MMD/(1+η_MMD·τ); so it converges
    linearly to π*_τ, KL(π*_τ‖π_t) ≤ (1 − τ/η)^t·KL(π*_τ‖π_0), when η ≥ (L² + τ²)/τ.
    Defaults: τ = 0.2·L, η = (L² + τ²)/τ. Requires τ ≤ η; ``guarantee=True`` refuses η < (L²+τ²)/τ.
    """

    eta: float | None = None
    tau: float | None = None
    guarantee: bool = False
    name = "inpo"

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="INPO")
        check("tau", self.tau, positive=True, algo="INPO")
        V.boolean(self.guarantee, "guarantee", "INPO")

    def bind(self, backend):
        eta, tau = resolve_inpo(backend, self.eta, self.tau, self.guarantee, "INPO")
        return self.replace(eta=eta, tau=tau)

    def step(self, backend, state):
        r = as_param(np.asarray(self.tau) / np.asarray(self.eta))
        g = backend.win_rates(state.policy)
        new = prox_step(backend, state.policy, backend.reference, g, as_param(1 - np.asarray(r)), r,
                        as_param(1 / np.asarray(self.eta)))
        return State(new, state.t + 1)

    def regularization(self, state):
        return (self.tau, None)
