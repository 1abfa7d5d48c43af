"""Preference oracles: P(a ≻ b | x) for batches of response pairs.

Every oracle returns a float64 tensor of shape (B,) and counts the pairs it has
judged in ``queries``. All of them must be antisymmetric,
P(a ≻ b) + P(b ≻ a) = 1; ``check_antisymmetric`` tests a user oracle for it.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from .policy import TokenSeqs, check_lengths, pad_batch

Rule = Callable[[Sequence[int], Sequence[int]], int]


@runtime_checkable
class PreferenceOracle(Protocol):
    """Anything with ``prob(prompts, a, b) -> (B,) float64`` and a ``queries`` count."""

    queries: int

    def prob(self, prompts: TokenSeqs, responses_a: TokenSeqs, responses_b: TokenSeqs) -> torch.Tensor: ...


class CountingOracle:
    """Base class: validates the batch, counts queries, returns float64 tensors."""

    def __init__(self):
        self.queries = 0

    def prob(self, prompts: TokenSeqs, responses_a: TokenSeqs, responses_b: TokenSeqs) -> torch.Tensor:
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError(
                f"batch sizes differ: {len(prompts)} prompts, {len(responses_a)} a, {len(responses_b)} b"
            )
        self.queries += len(prompts)
        if not prompts:
            return torch.zeros(0, dtype=torch.float64)
        probs = torch.as_tensor(self._prob(prompts, responses_a, responses_b), dtype=torch.float64)
        # Always CPU: probabilities of different oracles mix without device juggling.
        return probs.reshape(-1).cpu()

    def _prob(self, prompts, responses_a, responses_b):  # pragma: no cover - abstract
        raise NotImplementedError


def validate_preference_matrix(P) -> np.ndarray:
    """P as float64, validated by the one set of rules every preference game obeys
    (``games.PreferenceGame``: square, entries in [0, 1], P + Pᵀ = 1, diagonal ½)."""
    from games import PreferenceGame

    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"preference matrix must be square (n x n), got shape {P.shape}")
    return np.array(PreferenceGame(P).P)


class MatrixOracle(CountingOracle):
    """P(a ≻ b) = P[act(a), act(b)] with act = ``rule(prompt, response)``.

    Default rule: the first response token id modulo n (an empty response is
    action 0). ``from_token_ids`` builds the rule from token ids per action.
    """

    def __init__(self, P, rule: Rule | None = None):
        super().__init__()
        self.P = validate_preference_matrix(P)
        self.n = self.P.shape[0]
        self.rule = rule if rule is not None else self._first_token_mod_n

    def _first_token_mod_n(self, prompt, response) -> int:
        return int(response[0]) % self.n if len(response) else 0

    @classmethod
    def from_token_ids(cls, P, action_token_ids: Sequence[Sequence[int]]) -> "MatrixOracle":
        """Action k = the action whose id list holds the response's first token."""
        table: dict[int, int] = {}
        for action, ids in enumerate(action_token_ids):
            for tok in ids:
                if table.setdefault(int(tok), action) != action:
                    raise ValueError(f"token id {tok} is listed for two actions")
        if len(action_token_ids) != np.asarray(P).shape[0]:
            raise ValueError("need one token id list per action (row of P)")

        def rule(prompt, response):
            if not len(response) or int(response[0]) not in table:
                raise ValueError(f"response {list(response)} starts with no action token")
            return table[int(response[0])]

        return cls(P, rule)

    def actions(self, prompts: TokenSeqs, responses: TokenSeqs) -> np.ndarray:
        acts = np.array([self.rule(p, r) for p, r in zip(prompts, responses)], dtype=np.int64)
        if len(acts) and (acts.min() < 0 or acts.max() >= self.n):
            raise ValueError(f"rule returned an action outside 0..{self.n - 1}")
        return acts

    def _prob(self, prompts, responses_a, responses_b):
        return self.P[self.actions(prompts, responses_a), self.actions(prompts, responses_b)]


class RewardModelOracle(CountingOracle):
    """Bradley–Terry oracle P(a ≻ b) = sigmoid(r(x, a) − r(x, b)).

    ``model`` is a transformers sequence-classification model with one label;
    r(x, y) is its score on the concatenation prompt+response. If the policy
    tokenizes differently, pass ``policy_tokenizer``: ids are decoded with it
    and re-encoded with ``tokenizer``.
    """

    def __init__(self, model, tokenizer, *, policy_tokenizer=None, batch_size: int = 64):
        super().__init__()
        if getattr(model.config, "num_labels", 1) != 1:
            raise ValueError(f"reward model must have num_labels=1, got {model.config.num_labels}")
        if tokenizer.pad_token_id is None:
            raise ValueError("reward tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.policy_tokenizer = policy_tokenizer
        self.batch_size = batch_size

    def _encode(self, prompt, response) -> list[int]:
        if self.policy_tokenizer is None:
            return list(prompt) + list(response)
        text = self.policy_tokenizer.decode(list(prompt) + list(response))
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def rewards(self, prompts: TokenSeqs, responses: TokenSeqs) -> torch.Tensor:
        """(B,) float64 rewards r(x, y)."""
        seqs = [self._encode(p, r) for p, r in zip(prompts, responses)]
        if any(not s for s in seqs):
            raise ValueError("cannot score an empty prompt+response")
        check_lengths(self.model, map(len, seqs))
        return torch.cat([self._score(seqs[i : i + self.batch_size]) for i in range(0, len(seqs), self.batch_size)])

    def _score(self, seqs) -> torch.Tensor:
        device = next(self.model.parameters()).device
        ids, attn, pos = pad_batch(seqs, self.tokenizer.pad_token_id, "right", device)
        last = attn.sum(-1) - 1
        rows = torch.arange(len(seqs), device=device)
        head = getattr(self.model, "score", None)
        if isinstance(head, torch.nn.Module) and self.model.base_model is not self.model:
            # Pool the last real token ourselves: the built-in pooling looks for
            # the last non-pad id, which is wrong when pad == eos ends a response.
            hidden = self.model.base_model(input_ids=ids, attention_mask=attn, position_ids=pos).last_hidden_state
            scores = head(hidden[rows, last])
        else:
            if self.model.config.pad_token_id is None:
                self.model.config.pad_token_id = self.tokenizer.pad_token_id
            scores = self.model(input_ids=ids, attention_mask=attn).logits
        return scores.reshape(len(seqs)).double()

    def _prob(self, prompts, responses_a, responses_b):
        # Score each distinct (prompt, response) once, in a canonical (sorted)
        # order: swapping a and b then reproduces bit-identical rewards, so
        # antisymmetry holds to float64 rounding rather than to batch noise.
        keys_a = [(tuple(p), tuple(r)) for p, r in zip(prompts, responses_a)]
        keys_b = [(tuple(p), tuple(r)) for p, r in zip(prompts, responses_b)]
        unique = sorted(set(keys_a) | set(keys_b))
        r = self.rewards([k[0] for k in unique], [k[1] for k in unique])
        index = {k: i for i, k in enumerate(unique)}
        ra = r[[index[k] for k in keys_a]]
        rb = r[[index[k] for k in keys_b]]
        return torch.sigmoid(ra - rb)


class MixtureOracle(CountingOracle):
    """Σ_k w_k·P_k(a ≻ b): antisymmetric if each P_k is, and generally intransitive."""

    def __init__(self, oracles: Sequence[PreferenceOracle], weights: Sequence[float]):
        super().__init__()
        weights = np.asarray(weights, dtype=np.float64)
        if len(oracles) == 0 or weights.shape != (len(oracles),):
            raise ValueError(f"need one weight per oracle, got {len(weights)} weights for {len(oracles)} oracles")
        if (weights < 0).any() or abs(weights.sum() - 1) > 1e-8:
            raise ValueError(f"mixture weights must be >= 0 and sum to 1, got {weights.tolist()}")
        self.oracles, self.weights = list(oracles), weights

    def _prob(self, prompts, responses_a, responses_b):
        total = torch.zeros(len(prompts), dtype=torch.float64)
        for w, oracle in zip(self.weights, self.oracles):
            if w > 0:
                p = torch.as_tensor(oracle.prob(prompts, responses_a, responses_b), dtype=torch.float64)
                total = total + w * p.reshape(-1).cpu()
        return total


def check_antisymmetric(
    oracle: PreferenceOracle, prompts: TokenSeqs, a: TokenSeqs, b: TokenSeqs, atol: float = 1e-6
) -> float:
    """Raise ValueError unless P(a≻b) + P(b≻a) = 1 and P ∈ [0, 1] on these pairs.

    Returns the largest violation |P(a≻b) + P(b≻a) − 1|. Costs 2·B queries.
    """
    p_ab = torch.as_tensor(oracle.prob(prompts, a, b), dtype=torch.float64).reshape(-1)
    p_ba = torch.as_tensor(oracle.prob(prompts, b, a), dtype=torch.float64).reshape(-1)
    if p_ab.shape != (len(prompts),) or p_ba.shape != (len(prompts),):
        raise ValueError(f"oracle must return one probability per pair, got shapes {tuple(p_ab.shape)}")
    for p in (p_ab, p_ba):
        if not torch.isfinite(p).all() or (p < -atol).any() or (p > 1 + atol).any():
            raise ValueError("oracle returned probabilities outside [0, 1] (or NaN)")
    err = (p_ab + p_ba - 1).abs()
    worst = int(err.argmax()) if len(err) else 0
    if len(err) and err[worst] > atol:
        raise ValueError(
            f"oracle is not antisymmetric: P(a≻b) + P(b≻a) = {float(p_ab[worst] + p_ba[worst]):.6g} "
            f"(should be 1, atol {atol}) for pair {worst}: a={list(a[worst])}, b={list(b[worst])}"
        )
    return float(err.max()) if len(err) else 0.0
