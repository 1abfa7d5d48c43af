"""Nash-MP — Nash Mirror Prox (Tiapkin et al., arXiv 2505.19731 v1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation as V

from .base import (AlgorithmMixin, State, as_param, check, check_coefficients, check_derived, check_per_game, check_regularisation,
                   payoff_scale, prox_step, refuse_unless)


def extragradient_step(backend, policy, a, b, c):
    """π_{+½} ∝ π^a·μ^b·e^{c·g(π)}, then π_{+1} ∝ π^a·μ^b·e^{c·g(π_{+½})}: the anchor stays π.
    Shared by Mirror Prox and EGPO, which differ only in how (a, b, c) are parametrised."""
    ref = backend.reference
    half = prox_step(backend, policy, ref, backend.win_rates(policy), a, b, c)
    return prox_step(backend, policy, ref, backend.win_rates(half), a, b, c)


@dataclass(frozen=True)
class MirrorProx(AlgorithmMixin):
    """Mirror Prox (extragradient) on the β-regularised game, in Nash-MP's parametrisation.

    Update (η: the prox weight on KL(·‖π_k); β: the regularisation, paper v1):
        π_{k+½} = argmin_π (1/β)·P(π_k ≻ π) + KL(π‖μ) + (1/η)·KL(π‖π_k)
        π_{k+1} = argmin_π (1/β)·P(π_{k+½} ≻ π) + KL(π‖μ) + (1/η)·KL(π‖π_k)
    Closed form: log π_{k+½} = [log π_k + η·log μ + (η/β)·P(· ≻ π_k)]/(1+η) + c, and likewise
    π_{k+1} with the opponent π_{k+½}.
    Mapping: anchor π_k, magnet μ, σ = π_k then π_{k+½}, (a, b, c) = (1, η, η/β)/(1+η).
    Two queries per step.
    Converges linearly to π*_β. Our rate (derived; the common step s = c satisfies s ≤ 1/(β+L)
    iff η ≤ β/L): KL(π*_β‖π_k) ≤ (1+η)^{−k}·KL(π*_β‖π_0), i.e. (1+η)^{−N/2} over N queries;
    the paper's choice η = β/L (= 2β for preferences in [0, 1], L = ½) gives its (1+2β)^{−N/2}.
    Defaults: β = 0.2·L, η = β/L. ``guarantee=True`` refuses η > β/L.
    """

    eta: float | None = None
    beta: float | None = None
    guarantee: bool = False
    name = "mirror_prox"
    queries_per_step = 2

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="MirrorProx")
        check("beta", self.beta, positive=True, algo="MirrorProx")
        V.boolean(self.guarantee, "guarantee", "MirrorProx")

    def bind(self, backend):
        L = payoff_scale(backend)
        check_per_game(backend, "MirrorProx", eta=self.eta, beta=self.beta)
        check_regularisation("beta", self.beta, backend, "MirrorProx")
        beta = 0.2 * L if self.beta is None else self.beta
        bound = np.asarray(beta) / L
        eta = bound if self.eta is None else self.eta
        check_derived(backend, "MirrorProx", beta=(beta, self.beta is not None), eta=(eta, self.eta is not None))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is what check_coefficients looks for
            coefs = self.replace(eta=as_param(eta), beta=as_param(beta)).coefficients()
        check_coefficients("MirrorProx", "eta and beta", *coefs)
        if self.guarantee:
            refuse_unless(np.asarray(eta) <= bound * (1 + V.tolerance()), "eta", eta,
                          f"with guarantee=True it must lie in the proven range η ≤ β/L = {as_param(bound)!r} "
                          f"(L = {as_param(L)!r}); lower eta or pass guarantee=False", "MirrorProx")
        return self.replace(eta=as_param(eta), beta=as_param(beta))

    def coefficients(self):
        d = 1 + np.asarray(self.eta)
        return as_param(1 / d), as_param(self.eta / d), as_param(np.asarray(self.eta) / (np.asarray(self.beta) * d))

    def step(self, backend, state):
        return State(extragradient_step(backend, state.policy, *self.coefficients()), state.t + 1)

    def regularization(self, state):
        return (self.beta, None)


NashMP = MirrorProx
