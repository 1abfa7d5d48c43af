"""What every algorithm shares: the log-linear proximal step, parameter checks, and binding.

Every method here is a sequence of steps of one form (DESIGN §3)::

    ℓ_new = a·ℓ_anchor + b·ℓ_magnet + c·g(σ) + const,    g(σ)_y = P(y ≻ σ)

An algorithm is a frozen dataclass holding the papers' hyperparameters. ``bind(backend)`` fills in
the defaults left as ``None`` (they scale with the game's payoff range L, so defaults work on any
payoff scale) and checks the guarantees asked for; ``init(backend, policy)`` makes the state;
``step(backend, state)`` returns the next state. Algorithms never touch arrays or models.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


def prox_step(backend, anchor, magnet, g, a, b, c, extra=()):
    """Realise the policy ∝ anchor^a · magnet^b · exp(c·g) — the one step primitive."""
    terms = [(a, anchor)]
    if magnet is not None:
        terms.append((b, magnet))
    terms.append((c, g))
    terms.extend(extra)
    return backend.realise(tuple(terms))


def _arr(x):
    return np.asarray(x, dtype=np.float64)


def check(name, value, *, positive=False, nonneg=False, allow_none=True, algo=""):
    """Validate a (possibly per-game array) hyperparameter; return it unchanged."""
    where = f"{algo}: " if algo else ""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{where}{name} is required")
    try:
        v = _arr(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}{name} must be a number (or an array of numbers, one per game); got {value!r}") from None
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{where}{name} must be finite; got {value!r}")
    if positive and np.any(v <= 0):
        raise ValueError(f"{where}{name} must be > 0; got {value!r}")
    if nonneg and np.any(v < 0):
        raise ValueError(f"{where}{name} must be >= 0; got {value!r}")
    return value


def as_param(x):
    """Python float for a scalar, numpy array for a per-game batch of values."""
    v = _arr(x)
    return float(v) if v.ndim == 0 else v


def require(cond, message):
    if not np.all(cond):
        raise ValueError(message)


@dataclass(frozen=True)
class State:
    """State of the single-policy methods: the current policy π_t and the iteration t."""

    policy: object
    t: int = 0


class AlgorithmMixin:
    """Small shared conveniences; each algorithm still spells out its own step."""

    #: registry name, and whether the method is regularised (so its β-gap is recorded)
    name = ""
    queries_per_step = 1

    def bind(self, backend):
        """A copy with every ``None`` default resolved for this backend's game, checked."""
        return self

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def init(self, backend, policy):
        return State(policy, 0)

    def regularization(self, state):
        """(β, magnet) of the regularised game this method converges to, or None."""
        return None

    def hparams(self) -> dict:
        """The resolved hyperparameters, for results tables."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float, str, bool)) or v is None:
                out[f.name] = v
            elif isinstance(v, np.ndarray) and v.ndim == 0:
                out[f.name] = float(v)
            elif isinstance(v, np.ndarray):
                out[f.name] = "per-game"
            else:
                out[f.name] = repr(v)
        return out
