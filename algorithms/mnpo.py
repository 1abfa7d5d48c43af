"""MNPO — Multiplayer Nash Preference Optimization, TD form (Wu et al., arXiv 2509.23102)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation as V

from .base import AlgorithmMixin, as_param, check, prox_step
from .inpo import resolve_inpo


@dataclass(frozen=True)
class HistoryState:
    policy: object
    history: tuple  # (π_t, π_{t−1}, …), as many as there are weights
    t: int = 0


@dataclass(frozen=True)
class MNPO(AlgorithmMixin):
    """Time-dependent MNPO: the prox centre is a weighted geometric mean of past policies.

    Update (the fixed point of the paper's squared loss, eq. 17 / the released trainer):
        log π_{t+1} = (τ/η)·log π_ref + (1 − τ/η)·Σ_j λ_j·log π_{t−j} + (1/η)·P(· ≻ π_t) + c
    with history weights λ (normalised to sum 1), η an inverse learning rate, τ/η the code's
    ``ratio``. Mapping: anchor Σ_j λ_j log π_{t−j} (several terms), magnet π_ref, σ = π_t,
    a_j = (1 − τ/η)·λ_j, b = τ/η, c = 1/η. One query per step. λ = (1,) is exactly INPO.
    Fixed point: π*_τ ∝ π_ref·exp(Pπ*_τ/τ), the τ-regularised NE. The paper proves only an
    average-iterate guarantee; the last iterate converges for the defaults on our catalogue (tested).
    Defaults: τ = 0.2·L, η = (L² + τ²)/τ (as INPO), λ = (2/3, 1/3).
    """

    eta: float | None = None
    tau: float | None = None
    weights: tuple = (2 / 3, 1 / 3)
    name = "mnpo"

    def __post_init__(self):
        check("eta", self.eta, positive=True, algo="MNPO")
        check("tau", self.tau, positive=True, algo="MNPO")
        rule = "it must be a non-empty sequence of non-negative numbers with a positive sum (history weights λ)"
        if isinstance(self.weights, (str, bytes)) or not isinstance(self.weights, (list, tuple, np.ndarray)):
            V.fail("weights", self.weights, rule, "MNPO", V.WrongType)
        w = V.real_array(self.weights, "weights", ndim=1, where="MNPO") if len(self.weights) else np.zeros(0)
        if len(w) == 0 or np.any(w < 0) or w.sum() <= 0:
            V.fail("weights", self.weights, rule, "MNPO")
        object.__setattr__(self, "weights", tuple(float(x) for x in w / w.sum()))

    def bind(self, backend):
        eta, tau = resolve_inpo(backend, self.eta, self.tau, False, "MNPO")
        return self.replace(eta=eta, tau=tau)

    def init(self, backend, policy):
        return HistoryState(policy, (policy,) * len(self.weights), 0)

    def step(self, backend, state):
        r = np.asarray(self.tau) / np.asarray(self.eta)
        g = backend.win_rates(state.policy)
        past = [(as_param((1 - r) * lam), p) for lam, p in zip(self.weights, state.history) if lam > 0]
        a0, anchor = past[0]
        new = prox_step(backend, anchor, backend.reference, g, a0, as_param(r), as_param(1 / np.asarray(self.eta)),
                        extra=tuple(past[1:]))
        return HistoryState(new, ((new,) + state.history)[: len(self.weights)], state.t + 1)

    def regularization(self, state):
        return (self.tau, None)
