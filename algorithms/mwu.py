"""MWU / Hedge — exact SPPO (Wu et al., arXiv 2405.00675)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import AlgorithmMixin, State, as_param, check, check_derived, check_per_game, check_step, payoff_scale, prox_step


@dataclass(frozen=True)
class MWU(AlgorithmMixin):
    """Multiplicative weights, the exact form of SPPO's update.

    Update:  π_{t+1}(y) ∝ π_t(y) · exp(η · P(y ≻ π_t))          (SPPO eq. 4.2; η its step)

    Mapping onto ℓ_new = a·ℓ_anchor + b·ℓ_magnet + c·g(σ): anchor π_t, σ = π_t, (a, b, c) = (1, 0, η).
    One oracle query per step. Converges only on average (O(1/√T) with η = Θ(1/√T)); the last
    iterate cycles or drifts to the boundary on intransitive games.
    Default η = 0.05/L (0.1 on a [0, 1] preference matrix with L = ½).
    """

    eta: float | None = None
    name = "mwu"

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="MWU")

    def bind(self, backend):
        check_per_game(backend, "MWU", eta=self.eta)
        eta = 0.05 / payoff_scale(backend) if self.eta is None else self.eta
        check_derived(backend, "MWU", eta=(eta, self.eta is not None))
        check_step(backend, "MWU", eta=eta)
        return self.replace(eta=as_param(eta))

    def step(self, backend, state):
        g = backend.win_rates(state.policy)
        return State(prox_step(backend, state.policy, None, g, 1.0, 0.0, self.eta), state.t + 1)
