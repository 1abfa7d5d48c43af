"""EGPO — Extragradient Preference Optimization (Zhou, Fazel, Du; arXiv 2503.08942)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation as V

from .base import (AlgorithmMixin, State, as_param, check, check_derived, check_per_game, check_regularisation, check_step, payoff_scale,
                   refuse_unless)
from .mirror_prox import extragradient_step


@dataclass(frozen=True)
class EGPO(AlgorithmMixin):
    """Extragradient on the β-regularised game, in EGPO's logit-space parametrisation.

    Update (θ = log π up to a constant; η the step, β the KL-to-π_ref weight):
        θ_{t+½} = (1 − ηβ)·θ_t + ηβ·θ_ref + η·P π_t
        θ_{t+1} = (1 − ηβ)·θ_t + ηβ·θ_ref + η·P π_{t+½}
    Mapping: anchor π_t, magnet π_ref, σ = π_t then π_{t+½}, (a, b, c) = (1 − ηβ, ηβ, η).
    Two queries per step. (Same family as Nash-MP: EGPO's η = Nash-MP's η/(β(1+η)).)
    Converges linearly to π*_β: KL(π*_β‖π_t) ≤ (1 − ηβ)^t·KL(π*_β‖π_0) for η ≤ 1/(β+L)
    (the predictive-update bound of Cen, Wei & Chi 2021 in our L).
    Defaults: β = 0.2·L, η = 1/(β+L). Requires ηβ ≤ 1; ``guarantee=True`` refuses η > 1/(β+L).
    """

    eta: float | None = None
    beta: float | None = None
    guarantee: bool = False
    name = "egpo"
    queries_per_step = 2

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="EGPO")
        check("beta", self.beta, positive=True, algo="EGPO")
        V.boolean(self.guarantee, "guarantee", "EGPO")

    def bind(self, backend):
        L = payoff_scale(backend)
        check_per_game(backend, "EGPO", eta=self.eta, beta=self.beta)
        check_regularisation("beta", self.beta, backend, "EGPO")
        beta = np.asarray(0.2 * L if self.beta is None else self.beta)
        bound = 1 / (beta + L)
        eta = np.asarray(bound if self.eta is None else self.eta)
        check_derived(backend, "EGPO", beta=(beta, self.beta is not None), eta=(eta, self.eta is not None))
        check_step(backend, "EGPO", eta=eta)
        refuse_unless(eta * beta <= 1, "eta", eta, f"it must be <= 1/beta = {as_param(1 / beta)!r}: "
                      f"eta*beta = {as_param(eta * beta)!r} > 1 puts negative weight on π_t", "EGPO")
        if self.guarantee:
            refuse_unless(eta <= bound * (1 + V.tolerance()), "eta", eta,
                          f"with guarantee=True it must lie in the proven range η ≤ 1/(β+L) = {as_param(bound)!r}; "
                          "lower eta or pass guarantee=False", "EGPO")
        return self.replace(eta=as_param(eta), beta=as_param(beta))

    def coefficients(self):
        eb = as_param(np.asarray(self.eta) * np.asarray(self.beta))
        return as_param(1 - np.asarray(eb)), eb, self.eta

    def step(self, backend, state):
        return State(extragradient_step(backend, state.policy, *self.coefficients()), state.t + 1)

    def regularization(self, state):
        return (self.beta, None)
