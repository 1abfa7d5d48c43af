"""Policy-gradient realiser: MPO's practical form (arXiv 2410.16714) of the SAME log-linear target.

The target ℓ* ∝ Σ_i c_i ℓ_i + g is the maximiser of the variational objective

    F(π) = E_{y∼π}[ g(y) + Σ_i c_i log π_i(y) − log π(y) ] = −KL(π ‖ π*) + const,

i.e. (with Σ c_i = 1) c·E_π[ĝ] − Σ_i c_i KL(π ‖ π_i): the win-rate reward with KL penalties to
the anchor (the previous policy) and the magnet (DESIGN §6.3). Responses are samples of the
anchor, which the live policy starts from, so the first step is on-policy; later steps reweight
each token by the ratio π_θ(y_t|·)/π_old(y_t|·) (PPO's token-level surrogate; optionally clipped).
Two variants (reference/mpo_mmd.md §2.4 (a), (b)):

* ``"kl"`` (MPO): REINFORCE on the reward r = g (− (Σc_i − 1)·log π_old(y) when the coefficients
  do not sum to 1: the entropy part of F) with a leave-one-out baseline, plus token-level KL
  penalties Σ_i c_i·Σ_t ½(log π_θ(y_t) − log π_i(y_t))² on the sampled tokens (weighted by the
  detached token ratio once off-policy). The gradient of
  ½(ℓ_θ − ℓ_i)² is (ℓ_θ − ℓ_i)·∇ℓ_θ, whose expectation is the gradient of the per-position KL
  with the visited prefixes held fixed; the effect of a token on the later positions' KL is
  dropped — exact for one-token responses, a bias otherwise (MPO's "token-level MMD").
* ``"rt"`` (MPO-RT): the KL terms folded into the reward — per-token rewards
  κ_t = Σ_i c_i ℓ_i(y_t) − ℓ_θ(y_t) (detached) summed to go, plus g: the exact score-function
  gradient of F on-policy (an unbiased, higher-variance estimate).

Baselines: "loo" (default) — each sample's baseline is the mean return of the OTHER samples of its
prompt (RLOO: unbiased for i.i.d. samples; with weights w it is the weighted mean of the others,
(Σ_j w_j R_j − w_k R_k)/(1 − w_k)); "mean" — the group's weighted mean (exact when the rows list
every response weighted by the anchor's probabilities, as in the enumerable world; biased by a
factor (K−1)/K for K samples).
"""
from __future__ import annotations

import torch

from games import validation as V

from .base import Realiser
from .batch import StepBatch


def _group_sum(values, group, n):
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, group, values)


class PolicyGradientRealiser(Realiser):
    """REINFORCE/PPO-style realiser of the log-linear target (see the module docstring).

    variant: "kl" (default, MPO) or "rt" (KL folded into the reward). baseline: "loo" or "mean".
    clip: PPO ratio clip ε (None: no clipping; the KL to the anchor already keeps the policy near
    the samples' policy). LBFGS is not offered: the loss is a stochastic surrogate.
    Other options: :class:`~llm.realise.base.Realiser`.
    """

    name = "pg"
    needs_start = True
    optimizers = ("adamw", "sgd")

    def __init__(self, *, variant: str = "kl", baseline: str = "loo", clip: float | None = None, **options):
        super().__init__(**options)
        self.variant = V.choice(variant, "variant", ("kl", "rt"))
        self.baseline = V.choice(baseline, "baseline", ("loo", "mean"))
        self.clip = V.number(clip, "clip", low=0.0, low_open=True, allow_none=True)

    def _baseline(self, ret, w, group, n):
        """(R,) baseline of each row's total return (see the module docstring)."""
        mean = _group_sum(w * ret, group, n)[group]
        if self.baseline == "mean":
            return mean
        others = (1.0 - w).clamp_min(1e-12)
        return (mean - w * ret) / others

    def loss(self, live, sub: StepBatch, rows, norm):
        lp, _ = live.token_logprobs(sub.prompts, sub.responses)
        lp = lp.double()
        dev = lp.device
        T = lp.shape[1]
        mask = sub.mask.to(dev)
        old = self.start_logps(rows, lp, sub.mask)  # the sampling policy's: the first pass is on-policy
        w, group, n = sub.weights.to(dev), sub.group.to(dev), sub.n_groups
        g = sub.g.to(dev)
        terms = [(c, t.to(dev)) for c, t in sub.policy_terms]
        if sub.start_coef:
            terms.append((sub.start_coef, old.masked_fill(~mask, 0.0)))
        cur = lp.detach()
        if self.variant == "rt":
            kappa = (sum(c * t for c, t in terms) - cur).masked_fill(~mask, 0.0) if terms else -cur
            to_go = kappa.flip(-1).cumsum(-1).flip(-1)  # Σ_{s ≥ t} κ_s
            ret = g + to_go[:, 0]
            adv = (g[:, None] + to_go - self._baseline(ret, w, group, n)[:, None]).masked_fill(~mask, 0.0)
        else:
            excess = sum(c for c, _ in terms) - 1.0
            ret = g - excess * cur.sum(-1)
            adv = (ret - self._baseline(ret, w, group, n))[:, None].expand_as(lp).masked_fill(~mask, 0.0)
        ratio = torch.exp(lp - old).masked_fill(~mask, 0.0)
        surrogate = ratio * adv
        if self.clip is not None:
            clipped = ratio.clamp(1.0 - self.clip, 1.0 + self.clip) * adv
            surrogate = torch.minimum(surrogate, clipped)
        per_row = -surrogate.sum(-1)
        if self.variant == "kl":
            # off-policy steps weight each token's penalty by its (detached) ratio, so the penalty's
            # gradient stays Σ_t E_θ[(ℓ_θ − ℓ_i)∇ℓ_θ] at the sampled prefixes
            weight = ratio.detach()
            for c, t in terms:
                per_row = per_row + c * (weight * 0.5 * (lp - t) ** 2).masked_fill(~mask, 0.0).sum(-1)
        return (w * per_row).sum() / norm
