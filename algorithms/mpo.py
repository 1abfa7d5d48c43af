"""MPO — Magnetic Preference Optimization (Wang et al., arXiv 2410.16714, ICLR 2025)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from games import validation

from .base import AlgorithmMixin, as_param, check, require
from .mmd import MagnetState, mmd_step, resolve_mmd

#: η = FAST_STEP·α/L² for ``eta="fast"`` (4× MMD's proven bound; see the MPO docstring)
FAST_STEP = 4.0
REFRESH_RULES = ("adaptive", "never")


def has_exact_metrics(backend) -> bool:
    """Whether ``backend`` measures gaps and KL exactly (PLAN interface 1: ``backend.exact_metrics``).

    Backends that predate the attribute: the exact backend does; an LLM backend does iff it has an
    enumerable world (then it carries an exact backend of the world's game)."""
    flag = getattr(backend, "exact_metrics", None)
    if flag is not None:
        return bool(flag)
    from games.exact import ExactBackend

    return isinstance(backend, ExactBackend) or getattr(backend, "world", None) is not None


@dataclass(frozen=True)
class MPO(AlgorithmMixin):
    """MMD whose magnet is refreshed to the current policy, so the last iterate reaches the NE of
    the *original* game (a KL proximal-point method: each refresh solves a regularised game).

    Inner step (MMD on the game regularised towards the magnet ρ_k):
        π_{t+1}(y) ∝ [ π_t(y) · ρ_k(y)^{ηα} · exp(η · P(y ≻ π_t)) ]^{1/(1+ηα)}
    Mapping: as MMD, (a, b, c) = (1, ηα, η)/(1+ηα) with magnet ρ_k. One query per step.
    Magnet updates, in this order after each step:
        - ``magnet_lr=λ`` (default 0: off): the moving magnet of the MMD authors' normal-form code
          (github.com/ssokota/mmd, ``mmd/nfg/learners.py``; MMD paper §5 "moving magnet", arXiv
          2206.05825): ρ_{t+1} ∝ ρ_t^{1−λ}·π_t^{λ} every step, with π_t the policy *before* the step
          (their extensive-form learner uses π_{t+1}). Its fixed points have ρ = π, i.e. Pπ constant
          on the support: the Nash equilibria. Not covered by MMD's theorem (the magnet moves while
          the inner game is being solved) nor by MPO's (which refreshes to a solved inner game); on an
          LLM backend every move of the magnet is one more realisation (a fit). The authors use
          α = 1, η = 0.1, λ = 0.05 on their extensive-form games.
        - ``refresh=K`` (int, default 10): ρ ← π_{t+1} when t % K == 0 (a hard refresh; this
          overrides the moving magnet at that step). ``refresh="never"``: no hard refresh (with
          ``magnet_lr`` > 0 this is the authors' moving-magnet MMD; with λ = 0 it is plain MMD with
          the initial policy as magnet).
        - ``refresh="adaptive"``: refresh when the inner game is solved to a tolerance relative to the
          proximal step: Gap_α(π_t; ρ_k) ≤ ``tol``·α·KL(π_t‖ρ_k), per game of a batch. NOT
          RECOMMENDED — measured slower than the fixed period everywhere we tried (iterations to
          gap ≤ 1e-8 and staying there, default α, η): cyclic3 / perturbed_rps / condorcet from a
          random start 730 / 1830 / 860 vs 690 / 1300 / 740 for K = 10; 24 random 10×10 games
          (seed 0, budget 1e5): 8/24 reached vs 17/24. Capping the period at K (refresh when the
          rule fires *or* K steps have passed) made it worse still (the catalogue's cyclic3: 3450,
          random games 8/24; at tol = 1: none): its early refreshes are what hurts, so it cannot
          be repaired by refreshing more often. It needs exact gaps, so ``bind`` refuses it on a
          backend whose ``exact_metrics`` is False (an LLM without an enumerable world).
    Proximal-point inequality (exact inner solves): KL(π*‖ρ_{k+1}) ≤ KL(π*‖ρ_k) − KL(ρ_{k+1}‖ρ_k)
    ⇒ ρ_k → π*, the original NE. The inner MMD rate is linear; the outer loop has no rate free of
    game constants: see ``games.conditioning`` for what makes a game slow (a tiny equilibrium
    probability lets KL(π*‖ρ_k) stall while that action's log-probability dives and recovers).
    K = 1 degenerates to MWU with step η/(1+ηα), which does not converge.

    Step size ``eta``: a number, ``None`` (default: α/L², MMD's proven bound, Thm 3.4) or ``"fast"``
    (η = 4α/L²). The fast step makes each refresh period an *inexact* proximal-point step: what is
    proven is only that the outer iteration converges when the inner errors are summable (Bregman
    proximal point with errors); with η > α/L² the inner MMD contraction (1+ηα)^{−t} is no longer
    proven, so neither is the whole. L is a worst case over the simplex; near an interior
    equilibrium the operator is often much smoother, which is why it works. Measured (iterations to
    gap ≤ 1e-8 and staying there, default α = L/2, K = 10): on 24 random 10×10 games 18/24 reached
    within 1e5 steps vs 17/24, median (unreached = ∞) 15.3k vs 33.6k; on cyclic3 / perturbed_rps /
    condorcet 480 / 780 / 510 vs 560 / 1230 / 660 — never slower on any game we tried.
    ``guarantee=True`` refuses η > α/L² (and so "fast").

    Defaults: α = L/2 (L = payoff range/2), η = α/L², K = 10 (ηαK = 2.5), λ = 0.
    experiments/mpo_refresh.py and experiments/conditioning.py measure the alternatives.
    """

    eta: float | str | None = None
    alpha: float | None = None
    refresh: int | str = 10
    tol: float = 0.1
    magnet_lr: float = 0.0
    guarantee: bool = False
    name = "mpo"

    def __post_init__(self):
        if not (isinstance(self.eta, str) and self.eta == "fast"):
            if isinstance(self.eta, str):
                raise validation.InvalidArgument(
                    f"MPO: eta = {self.eta!r} is not allowed; it must be a finite number > 0, None (α/L²) or 'fast' (4α/L²)")
            check("eta", self.eta, positive=True, algo="MPO")
        check("alpha", self.alpha, positive=True, algo="MPO")
        check("tol", self.tol, positive=True, allow_none=False, algo="MPO")
        validation.param(self.magnet_lr, "magnet_lr", low=0, high=1, allow_none=False, where="MPO")
        if isinstance(self.refresh, str):
            if self.refresh not in REFRESH_RULES:
                raise ValueError(f"MPO: refresh must be a period K >= 1, 'adaptive' or 'never'; got {self.refresh!r}")
        elif isinstance(self.refresh, bool) or not isinstance(self.refresh, (int, np.integer)) or self.refresh < 1:
            raise ValueError(f"MPO: refresh must be a period K >= 1 (an int), 'adaptive' or 'never'; got {self.refresh!r}")

    def bind(self, backend):
        if self.refresh == "adaptive" and not has_exact_metrics(backend):
            raise ValueError(
                f"MPO: refresh='adaptive' needs the exact regularised gap and KL of every iterate, which "
                f"{type(backend).__name__} cannot measure (exact_metrics is False: an LLM backend without an "
                "enumerable world); use a fixed period, e.g. refresh=10")
        alpha = 0.5 * np.asarray(backend.lipschitz) if self.alpha is None else self.alpha
        eta = self.eta
        if isinstance(eta, str):  # "fast"
            require(not self.guarantee, "MPO: eta='fast' (4α/L²) is outside MMD's proven range η ≤ α/L²; "
                    "pass guarantee=False or a smaller eta")
            eta = as_param(FAST_STEP * np.asarray(alpha) / np.asarray(backend.lipschitz) ** 2)
        eta, alpha = resolve_mmd(backend, eta, alpha, self.guarantee, "MPO")
        return self.replace(eta=eta, alpha=alpha)

    def init(self, backend, policy):
        return MagnetState(policy, policy, 0)

    def _moving(self):
        lam = np.asarray(self.magnet_lr, dtype=np.float64)
        return bool(np.any(lam > 0))

    def step(self, backend, state):
        new = mmd_step(backend, state.policy, state.magnet, self.eta, self.alpha)
        t = state.t + 1
        magnet = state.magnet
        if self._moving():
            lam = as_param(self.magnet_lr)
            # ρ_{t+1} ∝ ρ_t^{1−λ} π_t^λ, from the policy the step started at (as the authors' NFG code)
            magnet = backend.realise(((1 - lam, magnet), (lam, state.policy)))
        if self.refresh == "adaptive":
            inner = backend.regularized_gap(new, self.alpha, state.magnet)
            step = backend.kl(new, state.magnet)
            scale = backend.asarray(self.tol * np.asarray(self.alpha))  # per-game α lives where the gaps do
            magnet = backend.where(inner <= scale * step, new, magnet)
        elif self.refresh != "never" and t % self.refresh == 0:
            magnet = new
        return MagnetState(new, magnet, t)

    def regularization(self, state):
        return (self.alpha, state.magnet)
