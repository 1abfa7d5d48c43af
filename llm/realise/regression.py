"""Regression realiser: fit log π_θ(y) − log π_θ(y') to the target's differences (DESIGN §6.3).

For the responses y, y' of one prompt, the pairwise squared loss Σ_{y,y'} w_y w_y' (d(y) − d(y'))²
with d = log π_θ − target equals 2·Var_w(d): O(K) instead of O(K²), and the intractable
normaliser cancels. Its minimiser over all distributions on the listed responses is exactly the
log-linear target (IPO/SPPO/INPO-style; reference/mpo_mmd.md §2.4 (c)).
"""
from __future__ import annotations

import torch

from .base import Realiser
from .batch import StepBatch


class RegressionRealiser(Realiser):
    """Per-prompt weighted variance of log π_θ(y) − target(y), averaged over the global prompts.

    Options: see :class:`~llm.realise.base.Realiser`. The reported ``loss`` is the value at the last
    optimiser step (before its update; for LBFGS, at its last evaluation).
    """

    name = "regression"

    def loss(self, live, sub: StepBatch, rows, norm):
        lp, _ = live.token_logprobs(sub.prompts, sub.responses)
        seq = lp.double().sum(-1)
        dev = seq.device
        target = sub.target.to(dev)
        if sub.start_coef:
            target = target + sub.start_coef * self.start_logps(rows, lp, sub.mask).sum(-1)
        d = seq - target
        w, group = sub.weights.to(dev), sub.group.to(dev)
        mean = torch.zeros(sub.n_groups, dtype=d.dtype, device=dev).index_add(0, group, w * d)
        return 2.0 * (w * (d - mean[group]) ** 2).sum() / norm
