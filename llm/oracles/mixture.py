"""A population of preference sources: P(a ≻ b) = Σ_k w_k · P_k(a ≻ b)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from games.validation import fail, real_array, tolerance

from .base import CountingOracle, as_oracle


class MixtureOracle(CountingOracle):
    """Σ_k w_k·P_k(a ≻ b): the preference of a random member of a population (member k drawn with
    probability w_k). Antisymmetric when each P_k is (and by construction here), and in general
    intransitive even when every member is transitive (Condorcet): the reason Nash learning exists.

    oracles: any oracles (user oracles without a query counter are wrapped, see ``as_oracle``);
    weights: one per oracle, ≥ 0, summing to 1 (within the float64 tolerance); default uniform.
    Each member counts the pairs it judges; members with weight 0 are not asked.
    """

    def __init__(self, oracles: Sequence, weights: Sequence[float] | None = None):
        super().__init__()
        if isinstance(oracles, (str, bytes)) or not isinstance(oracles, Sequence) or len(oracles) == 0:
            fail("oracles", oracles, "it must be a non-empty list of oracles", "MixtureOracle")
        self.oracles = [as_oracle(o, f"oracles[{i}]", "MixtureOracle") for i, o in enumerate(oracles)]
        if weights is None:
            weights = np.full(len(self.oracles), 1.0 / len(self.oracles))
        w = real_array(weights, "weights", ndim=1, where="MixtureOracle")
        if w.shape != (len(self.oracles),):
            fail("weights", w.tolist(), f"it needs one weight per oracle ({len(self.oracles)})", "MixtureOracle")
        if (w < 0).any() or abs(w.sum() - 1) > tolerance(np.float64):
            fail("weights", w.tolist(), "weights must be >= 0 and sum to 1", "MixtureOracle")
        self.weights = w
        # the loosest member precision sets the tolerance for checks on the mixture
        self.dtype = torch.float32 if any(o.dtype != torch.float64 for o in self.oracles) else torch.float64

    def _prob(self, prompts, a, b):
        total = torch.zeros(len(prompts), dtype=torch.float64)
        for w, oracle in zip(self.weights, self.oracles):
            if w > 0:
                total += float(w) * oracle.prob(prompts, a, b)
        return total

    def __repr__(self):
        parts = ", ".join(f"{w:g}·{o!r}" for w, o in zip(self.weights, self.oracles))
        return f"MixtureOracle({parts}; queries={self.queries})"
