"""A rule-based population of annotators over text: a real-text intransitive preference, no model.

Each annotator scores a response by one feature and prefers the higher score,
P_k(a ≻ b) = σ((s_k(x, a) − s_k(x, b)) / τ_k). The built-in three — length, use of a keyword set,
lexical diversity — are each transitive, yet their aggregate is not: on a long repetitive answer
X, a mid-length keyword-stuffed answer Y and a short varied one Z, the three rankings are
X > Y > Z (length), Y > Z > X (keywords) and Z > X > Y (diversity), the Condorcet profile, so
the majority prefers X to Y, Y to Z and Z to X (``tests/llm/test_oracles.py`` shows such a triple).
This makes a real-text game with no Bradley–Terry reward, for tests and demos (``--oracle annotators``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from games.validation import choice, fail, number, real_array, tolerance

from .base import CountingOracle

_WORD = re.compile(r"[a-z0-9']+")

#: words of explanation and structure the keyword annotator rewards (generic instruction prompts)
KEYWORDS = ("because", "example", "first", "second", "finally", "therefore", "step", "specifically",
            "however", "note")


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, apostrophes)."""
    return _WORD.findall(text.lower())


def length_score(prompt: str, response: str) -> float:
    """log(1 + number of words): ratios of lengths matter, not differences."""
    return math.log1p(len(words(response)))


def keyword_score(prompt: str, response: str, keywords: Sequence[str] = KEYWORDS) -> float:
    """Number of distinct keywords used (repeating one does not count twice)."""
    return float(len(set(words(response)) & set(keywords)))


def diversity_score(prompt: str, response: str) -> float:
    """Type-token ratio: distinct words / words (0 for an empty response)."""
    w = words(response)
    return len(set(w)) / len(w) if w else 0.0


@dataclass(frozen=True)
class Annotator:
    """One annotator: ``score(prompt, response) -> float`` and its temperature τ > 0 (score units
    for which a difference of τ gives P = σ(1) ≈ 0.73)."""

    name: str
    score: Callable[[str, str], float]
    temperature: float

    def __post_init__(self):
        number(self.temperature, "temperature", low=0, low_open=True, where=f"Annotator {self.name!r}")
        if not callable(self.score):
            fail("score", self.score, "it must be a function score(prompt, response) -> float",
                 f"Annotator {self.name!r}", TypeError)


def default_annotators(keywords: Sequence[str] = KEYWORDS) -> list[Annotator]:
    """Length (τ = 0.1 in log-words: 10% longer → 0.73), keywords (τ = 0.25: one more → 0.98),
    diversity (τ = 0.05 in type-token ratio)."""
    kw = tuple(k.lower() for k in keywords)
    return [Annotator("length", length_score, 0.1),
            Annotator("keywords", lambda x, y: keyword_score(x, y, kw), 0.25),
            Annotator("diversity", diversity_score, 0.05)]


class AnnotatorPopulation(CountingOracle):
    """P(a ≻ b) aggregated over annotators (default: length, keywords, diversity; equal weights).

    aggregate: ``"mean"`` — Σ_k w_k P_k(a ≻ b), the preference of a randomly drawn annotator — or
    ``"majority"`` — 1 if the weighted majority prefers a (P_k > ½ counts as a vote), 0 if it
    prefers b, ½ on a tie. Both are antisymmetric; exact in float64.
    """

    def __init__(self, annotators: Sequence[Annotator] | None = None, weights=None, aggregate: str = "mean"):
        super().__init__()
        self.annotators = list(default_annotators() if annotators is None else annotators)
        if not self.annotators or not all(isinstance(a, Annotator) for a in self.annotators):
            fail("annotators", annotators, "it must be a non-empty list of Annotator", "AnnotatorPopulation", TypeError)
        n = len(self.annotators)
        w = np.full(n, 1.0 / n) if weights is None else real_array(weights, "weights", ndim=1, where="AnnotatorPopulation")
        if w.shape != (n,) or (w < 0).any() or abs(w.sum() - 1) > tolerance(np.float64):
            fail("weights", w.tolist(), f"it needs {n} weights >= 0 summing to 1", "AnnotatorPopulation")
        self.weights = w
        self.aggregate = choice(aggregate, "aggregate", ("mean", "majority"), "AnnotatorPopulation")

    def votes(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """(K, B) float64: P_k(a_i ≻ b_i) of every annotator (uncounted; for inspection)."""
        out = np.empty((len(self.annotators), len(a)))
        for k, ann in enumerate(self.annotators):
            d = np.array([ann.score(x, y) - ann.score(x, z) for x, y, z in zip(prompts, a, b)], dtype=np.float64)
            out[k] = 0.5 * (1 + np.tanh(d / (2 * ann.temperature)))  # σ(d/τ), symmetric in float
        return out

    def _prob(self, prompts, a, b):
        v = self.votes(prompts, a, b)
        if self.aggregate == "mean":
            return torch.from_numpy(self.weights @ v)
        margin = self.weights @ np.sign(v - 0.5)
        return torch.from_numpy(np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5)))

    def __repr__(self):
        names = ", ".join(a.name for a in self.annotators)
        return f"AnnotatorPopulation([{names}], aggregate={self.aggregate!r}, queries={self.queries})"
