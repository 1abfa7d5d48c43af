"""The exact oracle of a finite game: P(a ≻ b) = P[act(a), act(b)] over response texts."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .base import CountingOracle

Rule = Callable[[str, str], int]


def validate_preference_matrix(P) -> np.ndarray:
    """P as float64, validated by the one set of rules every preference game obeys
    (``games.PreferenceGame``: square, entries in [0, 1], P + Pᵀ = 1, diagonal ½)."""
    from games import PreferenceGame

    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"preference matrix must be square (n x n), got shape {P.shape}")
    return np.array(PreferenceGame(P).P)


class MatrixOracle(CountingOracle):
    """P(a ≻ b | x) = P[rule(x, a), rule(x, b)]: a response text belongs to an action of a game.

    ``rule(prompt_text, response_text) -> int`` in 0..n−1 (an :class:`~llm.world.EnumerableWorld`
    tokenizes the text with its word-level tokenizer and looks the response up, see
    ``EnumerableWorld.oracle``). Exact: the probabilities are the matrix entries (float64), and
    P[i, i] = ½ makes different responses of one action tie.

    Errors: ValueError for an invalid matrix or a rule returning an action outside 0..n−1.
    """

    def __init__(self, P, rule: Rule):
        super().__init__()
        self.P = validate_preference_matrix(P)
        self.n = self.P.shape[0]
        if not callable(rule):
            raise TypeError(f"MatrixOracle: rule = {rule!r} is not allowed; it must be a function "
                            "rule(prompt_text, response_text) -> action index")
        self.rule = rule

    @classmethod
    def from_words(cls, P, action_words) -> "MatrixOracle":
        """Action k = the action whose word list holds the response's first whitespace-separated word."""
        P = validate_preference_matrix(P)
        if len(action_words) != P.shape[0]:
            raise ValueError(f"need one word list per action (row of P): {P.shape[0]}, got {len(action_words)}")
        table: dict[str, int] = {}
        for action, words in enumerate(action_words):
            for w in words:
                if table.setdefault(str(w), action) != action:
                    raise ValueError(f"word {w!r} is listed for two actions")

        def rule(prompt: str, response: str) -> int:
            words = response.split()
            if not words or words[0] not in table:
                raise ValueError(f"response {response!r} starts with no action word")
            return table[words[0]]

        return cls(P, rule)

    def actions(self, prompts, responses) -> np.ndarray:
        """(B,) action of each response."""
        acts = np.array([int(self.rule(x, y)) for x, y in zip(prompts, responses)], dtype=np.int64)
        if len(acts) and (acts.min() < 0 or acts.max() >= self.n):
            raise ValueError(f"MatrixOracle rule returned an action outside 0..{self.n - 1}")
        return acts

    def _judge(self, prompts, a, b):
        # Looked up in both orders as given: the matrix itself was checked antisymmetric, and its
        # exact entries (not 1 − P[j, i], which differs in the last bit) keep this oracle equal to
        # the exact backend's game.
        return torch.from_numpy(self.P[self.actions(prompts, a), self.actions(prompts, b)].copy())
