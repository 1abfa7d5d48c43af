"""Nash-MD — Nash Mirror Descent (Munos et al., arXiv 2312.00886, ICML 2024)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation as V

from .base import (AlgorithmMixin, State, as_param, check, check_derived, check_per_game, check_regularisation, check_step, payoff_scale,
                   prox_step, refuse_unless, require)


@dataclass(frozen=True)
class NashMD(AlgorithmMixin):
    """Mirror descent played against the geometric mixture of the policy and the reference μ.

    Update (paper's η_t, τ; here ``eta`` = η_t and ``beta`` = τ, the KL-to-μ weight):
        π_t^μ(y) ∝ π_t(y)^{1−η_tβ} · μ(y)^{η_tβ}
        π_{t+1}(y) ∝ π_t^μ(y) · exp(η_t · P(y ≻ π_t^μ))
    Mapping: anchor π_t, magnet μ, σ = π_t^μ, (a, b, c) = (1 − η_tβ, η_tβ, η_t). One query per step.
    Converges (last iterate) to the β-regularised NE π*_β ∝ μ·exp(Pπ*_β/β):
        - ``schedule="decreasing"`` (default when ``eta`` is None): η_t = 2/(β(t+2)), and
          KL(π*_β‖π_T) ≤ 8/(β²(T+1)) for preference matrices in [0, 1] (Thm 1), i.e. O(1/T);
        - ``schedule="constant"`` (default when ``eta`` is given): a fixed η_t = η leaves an O(η/β) bias;
        - a callable t ↦ η_t.
    Default β = 0.2·L; constant default η = 0.1/L. Requires η_tβ ≤ 1.
    """

    eta: float | None = None
    beta: float | None = None
    schedule: object = None
    name = "nash_md"

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="NashMD")
        check("beta", self.beta, positive=True, algo="NashMD")
        sched = self.schedule
        if sched is None:
            sched = "decreasing" if self.eta is None else "constant"
            object.__setattr__(self, "schedule", sched)
        if not callable(sched) and (not isinstance(sched, str) or sched not in ("decreasing", "constant")):
            V.fail("schedule", sched, "it must be 'decreasing', 'constant' or a function t -> eta_t", "NashMD",
                   V.InvalidArgument if isinstance(sched, str) else V.WrongType)
        if sched == "decreasing" and self.eta is not None:
            raise V.InvalidArgument(f"NashMD: eta = {self.eta!r} is not allowed with the decreasing schedule, which sets eta_t = 2/(beta (t+2)) itself; "
                             "pass schedule='constant' to use a fixed eta, or drop eta")

    def bind(self, backend):
        L = payoff_scale(backend)
        check_per_game(backend, "NashMD", eta=self.eta, beta=self.beta)
        check_regularisation("beta", self.beta, backend, "NashMD")
        beta = as_param(0.2 * L if self.beta is None else self.beta)
        check_derived(backend, "NashMD", beta=(beta, self.beta is not None))
        eta = self.eta
        if self.schedule == "constant":
            eta = as_param(0.1 / L if eta is None else eta)
            check_derived(backend, "NashMD", eta=(eta, self.eta is not None))
            check_step(backend, "NashMD", eta=eta)
            refuse_unless(np.asarray(eta) * np.asarray(beta) <= 1, "eta", eta,
                          f"it must be <= 1/beta = {as_param(1 / np.asarray(beta))!r}: eta*beta = "
                          f"{as_param(np.asarray(eta) * np.asarray(beta))!r} > 1 would put negative weight on π_t", "NashMD")
        return self.replace(eta=eta, beta=beta)

    def eta_at(self, t):
        if self.schedule == "decreasing":
            return 2.0 / (np.asarray(self.beta) * (t + 2))
        if self.schedule == "constant":
            return np.asarray(self.eta)
        return np.asarray(self.schedule(t))

    def step(self, backend, state):
        eta = self.eta_at(state.t)
        if callable(self.schedule):
            V.param(eta, f"schedule({state.t})", low=0, low_open=True, allow_none=False, where="NashMD")
        eta = as_param(eta)
        w = as_param(np.asarray(eta) * np.asarray(self.beta))
        require((np.asarray(w) > 0) & (np.asarray(w) <= 1),
                f"NashMD: the schedule gave eta_t = {eta!r} at t = {state.t}; Nash-MD needs 0 < eta_t*beta <= 1 "
                "(the mixture weight on the reference)")
        mix = backend.mixture(state.policy, backend.reference, w)
        g = backend.win_rates(mix)
        new = prox_step(backend, state.policy, backend.reference, g, as_param(1 - np.asarray(w)), w, eta)
        return State(new, state.t + 1)

    def regularization(self, state):
        return (self.beta, None)
