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
import functools
import numbers
from dataclasses import dataclass

import numpy as np

from games import validation as V


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
    """Validate a hyperparameter: a finite real number, or a 1-D array of them (one per game);
    return it unchanged. The rules are ``games.validation.param``'s, the same for every algorithm:
    numbers only (numeric strings, booleans and complex values are refused), and the message names
    the argument, its value and the rule: ``MMD: alpha = -1 is not allowed; it must be ...``."""
    low = 0 if (positive or nonneg) else None
    return V.param(value, name, low=low, low_open=positive, allow_none=allow_none, where=algo)


def payoff_scale(backend) -> np.ndarray:
    """L, the game's payoff scale (½ · largest payoff range of a row or column), as float64."""
    return np.asarray(backend.lipschitz, dtype=np.float64)


def _dtype(backend):
    return getattr(getattr(backend, "ops", None), "dtype", np.float64)


def check_per_game(backend, algo, **given):
    """Per-game hyperparameters (1-D arrays, checked by ``check``) must have one value per game of the
    backend's batch, and agree with each other in length on a single game (where they batch it).
    Checked before anything is derived from them, so the message names the argument given."""
    batch = tuple(getattr(backend, "batch_shape", ()) or ())
    length = batch[0] if batch else None
    first = None
    for name, value in given.items():
        if value is None or np.ndim(value) == 0:
            continue
        k = len(np.asarray(value))
        if length is None:
            length, first = k, name
        if k != length:
            want = (f"{length} values (one per game of the batch)" if batch else
                    f"{length} values, like {first} (per-game values batch a single game)")
            V.fail(name, value, f"it must be one number, or {want}; got {k} values", algo)


def check_regularisation(name, value, backend, algo):
    """The finite-arithmetic bound on a regularisation weight (MMD/MPO α, Nash-MD/Mirror Prox/EGPO
    β, INPO/MNPO τ): value/L ≤ 1/tolerance(dtype) (1e9 in float64, 1.3e5 in float32).

    Why: beyond it the regularised equilibrium π ∝ ρ·exp(Pπ/value) is the magnet to within
    tolerance(dtype) (the exponent varies by at most 2L/value), the game term of a step is below the
    rounding of the log-probabilities it is added to, and the regularised gap, whose rounding floor
    is ≈ value·ε, no longer measures anything — while the step coefficients themselves (ηα and 1+ηα
    at the default η = α/L²) overflow to NaN near value = 1e154·L. A run there cannot move and its
    metrics are noise; a smaller value gives the same answer to within tolerance(dtype)."""
    return V.regularisation(value, name, payoff_scale(backend), _dtype(backend), where=algo)


def check_derived(backend, algo, **values):
    """Every resolved hyperparameter (defaults scale with the game's payoff scale L) must be a finite
    number > 0 (>= 0 for a regularisation of 0); a default that overflows or underflows means the
    payoffs' scale is outside what the arithmetic can carry, and we say so rather than report the
    derived value as if the user had chosen it."""
    L = payoff_scale(backend)
    for name, (value, given) in values.items():
        v = np.asarray(value, dtype=np.float64)
        if np.all(np.isfinite(v)) and np.all(v > 0):
            continue
        if given:
            V.fail(name, value, f"with this game (L = {as_param(L)!r}) it gives a step that is not a finite positive "
                   "number; choose a value on the scale of the payoffs", algo)
        raise V.InvalidArgument(
            f"{algo}: the default {name} derived from the game's payoff scale (L = {as_param(L)!r}, half the largest "
            f"payoff range of a row or column) is {as_param(v)!r}, not a usable finite number > 0: the payoffs' scale is "
            "outside what float arithmetic can carry; rescale the payoffs (equilibria do not change) or pass "
            f"{name} explicitly")


def check_step(backend, algo, factor: float = 1.0, **steps):
    """A step size multiplies payoffs: factor·η·L must stay finite (below 1/16 of float64's largest
    number, so the logits it makes can still be added and normalised). ``factor``: how many times
    the step enters one update (OMWU's optimistic term is 2η·g)."""
    L = payoff_scale(backend)
    big = float(np.finfo(np.float64).max) / 16
    for name, value in steps.items():
        with np.errstate(over="ignore"):  # a bound of +inf (tiny L) is right
            limit = big / (L * factor)
        if np.any(np.abs(np.asarray(value, dtype=np.float64)) > limit):  # factor·|value|·L > big, without overflowing
            V.fail(name, as_param(value), f"times the game's payoff scale L = {as_param(L)!r} it overflows float64 "
                   "in the step's logits; lower it", algo)


def check_coefficients(algo, names, *coefs):
    """The (a, b, c) of a step must be finite: products such as η·α can overflow even when each
    factor is finite. ``names`` says which hyperparameters to lower."""
    if not all(np.all(np.isfinite(np.asarray(c, dtype=np.float64))) for c in coefs):  # computed under np.errstate
        raise V.InvalidArgument(f"{algo}: {names} overflow float64 in the step's coefficients "
                                f"{tuple(as_param(c) for c in coefs)!r}; lower them")


def _is_probs(x):
    return isinstance(x, (list, np.ndarray)) or (hasattr(x, "detach") and hasattr(x, "shape"))


def check_policy_argument(value, name, algo):
    """Check a policy given to a constructor (a magnet) now, before any work, as far as the game is
    not needed: probabilities (or a pair of them) must satisfy the one rule for every policy that
    enters an algorithm — finite, summing to 1, strictly positive. Other objects (an llm.Policy) are
    left to the backend.

    Returns the value to store: probabilities as float64 nested lists (a tuple of two for a pair),
    renormalised — a change within the tolerance of the dtype they were given in, which keeps a
    float32 magnet valid in float64 — so the frozen algorithm holds a plain value, not an array
    that could be mistaken for a per-game hyperparameter or mutated by its owner."""
    if value is None:
        return value
    parts = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and len(value) != 2:
        V.fail(name, value, "it must be probabilities (a pair (x, y) of them for a zero-sum game)", algo)
    out = []
    for i, p in enumerate(parts):
        if _is_probs(p):
            arr = V.distribution(p, name if len(parts) == 1 else f"{name}[{i}]", interior=True, where=algo)
            out.append((arr / arr.sum(-1, keepdims=True)).tolist())
        elif isinstance(p, (str, bytes, numbers.Number)) or p is None:
            V.fail(name, value, "it must be probabilities over the actions (a pair (x, y) of them for a zero-sum game)",
                   algo, V.WrongType)
        else:
            out.append(p)
    return tuple(out) if isinstance(value, tuple) else out[0]


def enter_policy(backend, value, name, algo):
    """A policy argument (e.g. a magnet) as a policy of ``backend``. On the exact backend: probabilities
    under the one rule for policies that enter an algorithm (``ExactBackend.from_probs(..., interior=True)``:
    strictly positive, the right length); elsewhere whatever the backend's ``from_probs`` takes."""
    from games.exact import ExactBackend

    if isinstance(backend, ExactBackend):
        return backend.from_probs(value, name=name, interior=True, where=algo)
    return backend.from_probs(value)


def as_param(x):
    """Python float for a scalar, numpy array for a per-game batch of values."""
    v = _arr(x)
    return float(v) if v.ndim == 0 else v


def require(cond, message):
    if not np.all(cond):
        raise V.InvalidArgument(message)


def refuse_unless(cond, name, value, rule, algo):
    """Refuse ``name = value`` with ``rule`` (the validation message format) unless ``cond`` holds
    everywhere (per-game arrays: for every game)."""
    if not np.all(cond):
        V.fail(name, as_param(value), rule, algo)


@dataclass(frozen=True)
class State:
    """State of the single-policy methods: the current policy π_t and the iteration t."""

    policy: object
    t: int = 0


def check_start(algo, backend, policy):
    """The one rule for the policy an algorithm starts from (``init``; MPO's first magnet is that
    policy too), applied by every log-linear algorithm's ``init``: no zero probabilities. A step
    ℓ_new = a·ℓ_anchor + b·ℓ_magnet + c·g keeps log 0 = −inf forever, so a start on a face of the
    simplex never leaves it (silently: issue 8.5). Backends that can say where a policy has no mass
    (``boundary(policy)``: the exact backend) are checked; others (an LM's policy) have no zeros."""
    find = getattr(backend, "boundary", None)
    hit = find(policy) if find is not None else None
    if hit is not None:
        label, probs, idx = hit
        V.fail(label, V._summary(probs), f"it must be strictly positive for {type(algo).__name__} (entry {list(idx)} is 0): "
               f"{V.INTERIOR_RULE}")


def _checked_init(init):
    @functools.wraps(init)
    def wrapper(self, backend, policy):
        if self.log_linear:
            check_start(self, backend, policy)
        return init(self, backend, policy)

    wrapper.checks_start = True
    return wrapper


class AlgorithmMixin:
    """Small shared conveniences; each algorithm still spells out its own step."""

    #: registry name, and whether the method is regularised (so its β-gap is recorded)
    name = ""
    queries_per_step = 1
    #: every step is log-linear (DESIGN §3), so a start with a zero probability is refused
    #: (``check_start``); a method that can leave a face of the simplex (a Euclidean projection) sets False
    log_linear = True

    def __init_subclass__(cls, **kwargs):
        # every subclass's own init checks its start first: the rule lives here, once, for all of them
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("init")
        if init is not None and not getattr(init, "checks_start", False):
            cls.init = _checked_init(init)

    def bind(self, backend):
        """A copy with every ``None`` default resolved for this backend's game, checked."""
        return self

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @_checked_init
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
