"""Realisers: make the live LM policy realise one algorithm step's log-linear target.

An algorithm step asks for ℓ_new = Σ coef·ℓ_policy + c·g (DESIGN §6.3); the backend gathers the
data into a :class:`StepBatch` and a realiser fits the live policy to it:

* ``make_realiser("regression", **options)`` — :class:`RegressionRealiser`: the per-prompt pairwise
  squared loss, minibatched, AdamW by default, LBFGS for the enumerable toy world;
* ``make_realiser("pg", **options)`` — :class:`PolicyGradientRealiser`: MPO's practical
  policy-gradient form of the same target (variants "kl" and "rt").

``stats = realiser.fit(live, batch, accelerator=None)`` trains in place and returns a dict
(loss, losses, grad_norm, seconds, steps, passes, tokens, ...).
"""
from __future__ import annotations

from games import validation as V

from .base import DEFAULT_LR, DEFAULT_STEPS, Realiser
from .batch import StepBatch
from .policy_gradient import PolicyGradientRealiser
from .regression import RegressionRealiser

KINDS = {"regression": RegressionRealiser, "pg": PolicyGradientRealiser}


def make_realiser(kind: str = "regression", **options) -> Realiser:
    """A realiser by name ("regression" or "pg"); options go to its constructor.

    Errors: ValueError naming the option for an unknown kind or a bad option value.
    """
    kind = V.choice(kind, "kind", tuple(KINDS))
    return KINDS[kind](**options)


__all__ = ["DEFAULT_LR", "DEFAULT_STEPS", "KINDS", "PolicyGradientRealiser", "Realiser", "RegressionRealiser",
           "StepBatch", "make_realiser"]
