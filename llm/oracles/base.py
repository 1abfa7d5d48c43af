"""The oracle protocol: P(a ≻ b | x) for batches of TEXT pairs (DESIGN §6.4, PLAN interface 3).

``oracle.prob(prompts, a, b)`` takes three equal-length sequences of strings — the user text of
each prompt and two responses — and returns a CPU float64 tensor of shape (B,) with P(a_i ≻ b_i | x_i).
Oracles judge text, so any judge with its own tokenizer works; the policy decodes its token ids
(``tokenizer.decode(ids, skip_special_tokens=True)``) before asking.

Every oracle must be antisymmetric, P(a ≻ b) + P(b ≻ a) = 1 (hence P(a ≻ a) = ½), and count the
pairs it judged in ``queries`` (the sample complexity the algorithms report). :class:`CountingOracle`
gives both *by construction*: it validates the batch, counts it, answers identical pairs with ½,
and asks the subclass's ``_prob`` only for pairs in a canonical order (a < b as strings), returning
1 − P(b ≻ a) for the others. So a subclass is antisymmetric whatever its ``_prob`` does, and a
batch and its swapped copy make exactly the same model calls. :func:`as_oracle` wraps anything
else with a ``prob`` method (or a bare function) so that it is counted and its outputs checked —
but *not* made antisymmetric: :func:`check_antisymmetric` is there to catch such an oracle.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from games.validation import WrongType, fail, tolerance

__all__ = ["PreferenceOracle", "CountingOracle", "CountedOracle", "as_oracle", "check_antisymmetric",
           "check_texts"]


@runtime_checkable
class PreferenceOracle(Protocol):
    """Anything with ``prob(prompts, a, b) -> (B,) float64`` over text and a ``queries`` count."""

    queries: int

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> torch.Tensor: ...


def check_texts(value, name: str, where: str = "") -> list[str]:
    """A sequence of strings, as a list. Token-id lists are refused with a hint: oracles judge text."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        fail(name, value, "it must be a list of strings (one per pair)", where, WrongType)
    out = list(value)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            hint = ""
            if isinstance(v, (list, tuple, np.ndarray, torch.Tensor)):
                hint = ("; oracles judge text: decode token ids first "
                        "(tokenizer.decode(ids, skip_special_tokens=True))")
            fail(f"{name}[{i}]", v, f"it must be a string (got a {type(v).__name__}){hint}", where, WrongType)
    return out


def check_batch(prompts, a, b, where: str = "") -> tuple[list[str], list[str], list[str]]:
    """Three equal-length lists of strings."""
    prompts, a, b = check_texts(prompts, "prompts", where), check_texts(a, "a", where), check_texts(b, "b", where)
    if not len(prompts) == len(a) == len(b):
        raise ValueError(f"{where + ': ' if where else ''}batch sizes differ: {len(prompts)} prompts, "
                         f"{len(a)} a, {len(b)} b (one prompt and two responses per pair)")
    return prompts, a, b


def _as_probs(p, n: int, who: str) -> torch.Tensor:
    """(n,) float64 CPU probabilities, refusing wrong shapes, NaN and values outside [0, 1]."""
    try:
        p = torch.as_tensor(p).detach().to("cpu", torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{who} returned {type(p).__name__}, not probabilities ({e})") from None
    if p.shape != (n,):
        raise ValueError(f"{who} returned {p.numel()} probabilities for {n} pairs (one per pair is required)")
    tol = tolerance(np.float32)  # model-based oracles compute in float32; clip only rounding
    bad = ~torch.isfinite(p) | (p < -tol) | (p > 1 + tol)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{who} returned P = {float(p[i])!r} for pair {i}; probabilities must lie in [0, 1]")
    return p.clamp(0.0, 1.0)


class CountingOracle:
    """Base class of the built-in oracles: validation, counting, antisymmetry by construction.

    Subclasses implement ``_prob(prompts, a, b)`` for pairs with ``a < b`` (string order) and may
    return anything array-like of shape (B,). ``dtype`` is the dtype their probabilities are
    computed in (float64 for rule-based oracles, float32 for models): it sets the tolerance
    :func:`check_antisymmetric` uses by default.
    """

    dtype = torch.float64

    def __init__(self):
        self.queries = 0

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """(B,) float64 CPU tensor of P(a_i ≻ b_i | prompts_i); counts B queries."""
        who = type(self).__name__
        prompts, a, b = check_batch(prompts, a, b, f"{who}.prob")
        self.queries += len(prompts)
        return self._judge(prompts, a, b)

    def _judge(self, prompts, a, b) -> torch.Tensor:
        out = torch.full((len(prompts),), 0.5, dtype=torch.float64)
        fwd = [i for i in range(len(a)) if a[i] < b[i]]
        rev = [i for i in range(len(a)) if a[i] > b[i]]
        rows = fwd + rev
        if rows:
            # one call, every pair in canonical order (first < second)
            lo = [a[i] if a[i] < b[i] else b[i] for i in rows]
            hi = [b[i] if a[i] < b[i] else a[i] for i in rows]
            p = _as_probs(self._prob([prompts[i] for i in rows], lo, hi), len(rows), f"{type(self).__name__}._prob")
            out[fwd] = p[: len(fwd)]
            out[rev] = 1.0 - p[len(fwd):]
        return out

    def _prob(self, prompts: list[str], a: list[str], b: list[str]):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement _prob(prompts, a, b)")

    def __repr__(self):
        return f"{type(self).__name__}(queries={self.queries})"


class CountedOracle(CountingOracle):
    """Wraps a user oracle (an object with ``prob`` or a function ``f(prompts, a, b)``): counts its
    queries and checks its outputs, but judges every pair as the user oracle does (no
    canonicalisation), so :func:`check_antisymmetric` still sees a broken oracle as broken."""

    dtype = torch.float32  # unknown: assume model precision (the looser tolerance)

    def __init__(self, inner, name: str = "oracle"):
        super().__init__()
        self.inner = inner
        self._call = inner.prob if hasattr(inner, "prob") else inner
        self.dtype = getattr(inner, "dtype", CountedOracle.dtype)
        self.name = name

    def _judge(self, prompts, a, b):
        return _as_probs(self._call(prompts, a, b), len(prompts), f"{self.name}.prob")

    def __repr__(self):
        return f"CountedOracle({self.inner!r}, queries={self.queries})"


def as_oracle(oracle, name: str = "oracle", where: str = "") -> CountingOracle:
    """A counted oracle: a :class:`CountingOracle` as it is; anything with a callable ``prob``
    (or a bare function ``f(prompts, a, b)``) wrapped in :class:`CountedOracle`; anything else
    refused (``WrongType`` naming ``name``)."""
    if isinstance(oracle, CountingOracle):
        return oracle
    if isinstance(oracle, type):
        fail(name, oracle, "it must be an oracle instance, not a class (call it first)", where, WrongType)
    if callable(getattr(oracle, "prob", None)) or (callable(oracle) and not hasattr(oracle, "prob")):
        return CountedOracle(oracle, name)
    fail(name, oracle, "it must have a method prob(prompts, a, b) -> (B,) probabilities over text", where, WrongType)


def check_antisymmetric(oracle, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                        atol: float | None = None) -> float:
    """Raise ValueError unless P(a≻b) + P(b≻a) = 1 and P ∈ [0, 1] on every given pair.

    Pairs of identical responses prove nothing about antisymmetry (a judge answering ½ on
    identical responses and 0.9 otherwise would pass), so at least one pair must have a ≠ b;
    every pair is judged in both orders. ``atol`` defaults to the project's tolerance
    (``games.validation.tolerance``) for the dtype the oracle computes in (``oracle.dtype``;
    float32 when unknown). Costs 2·B queries (callers that validate may restore ``queries``).
    Returns the largest violation |P(a≻b) + P(b≻a) − 1|.
    """
    prompts, a, b = check_batch(prompts, a, b, "check_antisymmetric")
    if not any(x != y for x, y in zip(a, b)):
        raise ValueError("check_antisymmetric needs at least one pair of different responses (a[i] != b[i]); "
                         "identical pairs cannot reveal a non-antisymmetric oracle")
    if atol is None:
        atol = tolerance(getattr(oracle, "dtype", torch.float32))
    who = f"{type(oracle).__name__}.prob"
    call = oracle.prob if hasattr(oracle, "prob") else oracle
    p_ab = _as_probs(call(prompts, a, b), len(prompts), who)
    p_ba = _as_probs(call(prompts, b, a), len(prompts), who)
    err = (p_ab + p_ba - 1).abs()
    worst = int(err.argmax())
    if err[worst] > atol:
        raise ValueError(
            f"oracle is not antisymmetric: P(a≻b) + P(b≻a) = {float(p_ab[worst] + p_ba[worst]):.6g} "
            f"(should be 1 within {atol:.2g}) for pair {worst}: a={a[worst]!r}, b={b[worst]!r}")
    return float(err.max())


Rule = Callable[[str, str], int]
