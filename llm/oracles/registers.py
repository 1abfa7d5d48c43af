"""Rock-paper-scissors over answer registers: a real-text population with a known Nash equilibrium.

Every response y gets a register membership m(y) in the simplex over three registers —
**structured** (lists, headings, line breaks), **formal** (long words) and **casual** (exclamations,
questions, chatty words, emoji) — the softmax of its three register scores, each standardised by
its mean and spread over SmolLM2-135M-Instruct's own answers (``SCALE``), at temperature T:

    m(y) = softmax(((s(y) − μ) / σ) / T),       P(a ≻ b | x) = σ(β · m(a)ᵀ A m(b)),

with A the skew-symmetric cycle of rock-paper-scissors: structured ≻ formal ≻ casual ≻ structured
(A[s, f] = A[f, c] = A[c, s] = 1). It is a general preference model of rank 2 — one GPM block
(arXiv 2410.02197) on hand-made features — so no Bradley–Terry reward represents it, and between
pure registers it is the 3×3 game σ(βA) (:meth:`RegisterPopulation.register_game`) whose Nash
equilibrium is the even mix of registers. That makes a real-model analogue of the duality gap that
is *exact*: P depends on a response only through m(y), so the best response to a policy is a pure
register, and :meth:`RegisterPopulation.exploitability` measures how far a policy's answers are from
the equilibrium, max_r E_{y∼π} P(r ≻ y) − ½ per prompt.

Measured on SmolLM2-135M-Instruct's answers to ``examples/prompts.jsonl`` (16 per prompt, 32 tokens,
temperature 1; β = 2, T = 0.5): register shares 0.29 / 0.39 / 0.32 pooled but 0.14–0.58 per prompt
(10th–90th percentile); 10.9% of the 17,920 triples of answers to one prompt form a preference cycle
and 72% of prompts have no Condorcet winner among their answers; |P − ½| is 0.086 on average and
above 0.25 on 10% of pairs.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch

from games.validation import fail, number

from .annotators import Annotator, words
from .base import CountingOracle, check_texts

#: the registers, in the order of m(y) and of the cycle: each beats the next (and the last the first)
REGISTERS = ("structured", "formal", "casual")
#: the cycle: A[i, i+1] = 1 (register i beats register i+1), A[i+1, i] = −1
CYCLE = np.array([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
#: (mean, standard deviation) of each register score over SmolLM2-135M-Instruct's answers to
#: examples/prompts.jsonl (512 answers, 32 tokens, temperature 1; measured once, fixed here so the
#: population does not change with the policy it judges)
SCALE = ((0.365, 0.838), (0.140, 0.090), (0.342, 0.956))
CASUAL_WORDS = frozenset(("hey", "hi", "hello", "wow", "oh", "lol", "awesome", "cool", "super", "buddy", "lemme",
                          "gonna", "wanna", "alright", "yay", "haha", "okay", "ok", "guys", "fun", "funny", "magic",
                          "imagine", "omg", "yeah", "yep", "sweet", "amazing", "fantastic", "exciting", "wonderful",
                          "love"))
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s", re.M)


def structure_score(prompt: str, response: str) -> float:
    """List items + bold headings (``**…**`` pairs) + ½ per line break (at most 4 counted)."""
    return len(_LIST_ITEM.findall(response)) + response.count("**") / 2 + 0.5 * min(response.count("\n"), 4)


def formality_score(prompt: str, response: str) -> float:
    """Share of words with 8 letters or more (0 for an empty response)."""
    w = words(response)
    return sum(len(t) >= 8 for t in w) / len(w) if w else 0.0


def casualness_score(prompt: str, response: str) -> float:
    """'!' + ½ per '?' + chatty words (``CASUAL_WORDS``) + emoji and pictographs (U+2600 and above)."""
    return (response.count("!") + 0.5 * response.count("?") + sum(t in CASUAL_WORDS for t in words(response))
            + sum(ord(ch) >= 0x2600 for ch in response))


SCORES = (structure_score, formality_score, casualness_score)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(z / 2))  # σ(z), and σ(−z) = 1 − σ(z) exactly in float


class RegisterPopulation(CountingOracle):
    """P(a ≻ b | x) = σ(β · m(a)ᵀ A m(b)) over register memberships (module docstring).

    The prompt is not used: the registers are judged on the answer alone.
    beta: the cycle's strength in logits (pure registers: P = σ(β); β = 2 gives 0.88);
    temperature: T of the memberships (smaller: harder assignment to one register).
    Antisymmetric and counted (:class:`CountingOracle`); float64.
    """

    def __init__(self, beta: float = 2.0, temperature: float = 0.5):
        super().__init__()
        self.beta = number(beta, "beta", low=0, low_open=True, where="RegisterPopulation")
        self.temperature = number(temperature, "temperature", low=0, low_open=True, where="RegisterPopulation")
        # the memberships as annotator-style features: what a Bradley–Terry fit on the population's
        # own features sees (experiments.llm_alignment's FeatureBT)
        self.annotators = [Annotator(name, self._member(i), 1.0) for i, name in enumerate(REGISTERS)]

    def _member(self, i):
        return lambda x, y: float(self.memberships([y])[0, i])

    def memberships(self, responses: Sequence[str]) -> np.ndarray:
        """(B, 3) float64: each response's membership in (structured, formal, casual), rows summing to 1."""
        responses = check_texts(responses, "responses", "RegisterPopulation.memberships")
        s = np.array([[f("", y) for f in SCORES] for y in responses], dtype=np.float64).reshape(len(responses), 3)
        mu, sd = np.array(SCALE).T
        z = (s - mu) / sd / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def _prob(self, prompts, a, b):
        z = self.beta * np.einsum("bi,ij,bj->b", self.memberships(a), CYCLE, self.memberships(b))
        return torch.from_numpy(_sigmoid(z))

    def register_game(self) -> np.ndarray:
        """(3, 3) P(register i ≻ register j) between pure registers: σ(βA), the rock-paper-scissors game
        whose Nash equilibrium is the even mix (1/3, 1/3, 1/3)."""
        return _sigmoid(self.beta * CYCLE)

    def exploitability(self, prompts: Sequence[str], groups: Sequence[Sequence[str]], per_prompt: bool = False):
        """Mean over prompts of max_r mean_{y ∈ groups[i]} P(r ≻ y) − ½: how much the best pure register
        beats a policy whose answers to prompt i are ``groups[i]`` (0 at the equilibrium mix, up to
        σ(β) − ½ for a policy in one pure register); ``per_prompt=True``: the (n_prompts,) array of the
        per-prompt values instead of their mean. Uncounted (it judges prototypes, not pairs of answers)."""
        if len(prompts) != len(groups):
            fail("groups", f"{len(groups)} groups", f"there are {len(prompts)} prompts but {len(groups)} groups: "
                 "give one group of answers per prompt", "RegisterPopulation.exploitability")
        out = []
        for ys in groups:
            m = self.memberships(list(ys))
            p = _sigmoid(self.beta * (CYCLE @ m.T))  # (3 registers, n answers): σ(β e_rᵀ A m(y)) = P(r ≻ y)
            out.append(p.mean(axis=1).max() - 0.5)
        if per_prompt:
            return np.array(out, dtype=np.float64)
        return float(np.mean(out)) if out else float("nan")

    def shares(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
        """(3,) the mean membership of all answers in ``groups``: the policy's mix of registers."""
        flat = [y for ys in groups for y in ys]
        return self.memberships(flat).mean(axis=0) if flat else np.full(3, np.nan)

    def __repr__(self):
        return f"RegisterPopulation(beta={self.beta}, temperature={self.temperature}, queries={self.queries})"
