"""An enumerable toy world: every response an LM can produce is listed.

Design: responses have a fixed length L over a small set of *content* tokens,
and the world's policies are restricted to exactly those tokens
(``Policy.allowed_token_ids``): logits of every other token, EOS included, are
masked to -inf in both sampling and ``sequence_logprobs``. So sampling with
``max_new_tokens=L`` always yields one of the ``len(content)**L`` listed
responses, and exp(sequence_logprobs) over that list is the policy's exact
response distribution (it sums to 1 without renormalisation), computed with
the same log-probs training uses.

Each content token belongs to an action (class) of a preference matrix P
(n×n); a response's class is given by ``class_rule``. The induced game on
responses is P_resp[i, j] = P[class(i), class(j)].
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np
import torch

from .models import tiny_model, tiny_tokenizer
from .oracles import MatrixOracle, validate_preference_matrix
from .policy import Policy
from .sampling import mixture_sequence_logprobs, sample, sample_mixture

MAX_RESPONSES = 50_000


class EnumerableWorld:
    """Tiny vocabulary, fixed-length responses, exact response distributions.

    Vocabulary: ``<pad> <bos> <eos> <unk>``, prompt tokens ``q0..``, content
    tokens ``a{k}_{j}`` (action k, copy j; ``tokens_per_action`` copies) and
    ``n_filler`` unused tokens ``x0..`` that the restriction masks out.
    Prompt k is ``[<bos>, q{k}]``.

    ``class_rule``: ``"first"`` (the first token's action), ``"sum"`` (sum of
    token actions mod n) or a callable mapping the tuple of token actions to an
    action.
    """

    def __init__(
        self,
        P,
        response_len: int = 1,
        *,
        tokens_per_action: int = 1,
        n_prompts: int = 1,
        n_filler: int = 2,
        class_rule: str | Callable[[tuple[int, ...]], int] = "first",
    ):
        self.P = validate_preference_matrix(P)
        self.n_actions = n = self.P.shape[0]
        if response_len < 1 or tokens_per_action < 1 or n_prompts < 1 or n_filler < 0:
            raise ValueError("response_len, tokens_per_action, n_prompts must be >= 1 and n_filler >= 0")
        n_responses = (n * tokens_per_action) ** response_len
        if n_responses > MAX_RESPONSES:
            raise ValueError(f"{n_responses} responses is too many to enumerate (limit {MAX_RESPONSES})")
        self.response_len = response_len
        prompt_toks = [f"q{k}" for k in range(n_prompts)]
        content_toks = [f"a{k}_{j}" for j in range(tokens_per_action) for k in range(n)]
        filler_toks = [f"x{k}" for k in range(n_filler)]
        self.tokenizer = tiny_tokenizer(prompt_toks + content_toks + filler_toks)
        vocab = self.tokenizer.get_vocab()
        self.content_ids = tuple(vocab[t] for t in content_toks)
        self.token_action = {vocab[t]: int(t[1:].split("_")[0]) for t in content_toks}
        self.prompts = [[self.tokenizer.bos_token_id, vocab[q]] for q in prompt_toks]
        self.responses = [list(r) for r in itertools.product(self.content_ids, repeat=response_len)]
        self._index = {tuple(r): i for i, r in enumerate(self.responses)}
        self._class_rule = self._make_rule(class_rule)
        self.classes = np.array([self._class_of(r) for r in self.responses], dtype=np.int64)
        if self.classes.min() < 0 or self.classes.max() >= n:
            raise ValueError(f"class_rule returned an action outside 0..{n - 1}")
        self.P_resp = self.P[np.ix_(self.classes, self.classes)]

    def _make_rule(self, rule):
        n = self.n_actions
        if rule == "first":
            return lambda acts: acts[0]
        if rule == "sum":
            return lambda acts: sum(acts) % n
        if callable(rule):
            return rule
        raise ValueError(f"class_rule must be 'first', 'sum' or a callable, got {rule!r}")

    def _class_of(self, response) -> int:
        return int(self._class_rule(tuple(self.token_action[t] for t in response)))

    # -- building policies and oracles ----------------------------------------
    @property
    def n_responses(self) -> int:
        return len(self.responses)

    def make_model(self, seed: int = 0, **kwargs):
        """A tiny random Llama over this world's vocabulary (kwargs go to ``tiny_model``)."""
        return tiny_model(self.tokenizer, seed=seed, **kwargs)

    def make_policy(self, model=None, *, seed: int = 0, **kwargs) -> Policy:
        """A policy restricted to the content tokens (builds a tiny model if none given)."""
        model = model if model is not None else self.make_model(seed, **kwargs)
        return Policy(model, self.tokenizer, allowed_token_ids=self.content_ids)

    def index_of(self, response: Sequence[int]) -> int:
        try:
            return self._index[tuple(int(t) for t in response)]
        except KeyError:
            raise ValueError(f"{list(response)} is not a response of this world") from None

    def response_action(self, prompt: Sequence[int], response: Sequence[int]) -> int:
        """Class of a listed response (a ``MatrixOracle`` rule)."""
        return int(self.classes[self.index_of(response)])

    def oracle(self) -> MatrixOracle:
        """The exact preference oracle of the induced game, judging response TEXT.

        A text is tokenized with this world's word-level tokenizer (which round-trips
        ``tokenizer.decode(ids, skip_special_tokens=True)``) and looked up among the listed
        responses; a text that is not one of them is refused (ValueError).
        """
        tokenizer = self.tokenizer

        def action(prompt: str, text: str) -> int:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if tuple(ids) not in self._index:
                raise ValueError(f"response {text!r} is not a response of this world "
                                 f"({self.response_len} content tokens such as {tokenizer.decode(self.responses[0])!r})")
            return int(self.classes[self._index[tuple(ids)]])

        return MatrixOracle(self.P, rule=action)

    # -- exact quantities ----------------------------------------------------
    def _check_policy(self, policy: Policy) -> None:
        if policy.allowed_token_ids != tuple(sorted(self.content_ids)):
            raise ValueError(
                "policy must be restricted to this world's content tokens "
                "(build it with world.make_policy or allowed_token_ids=world.content_ids); "
                "otherwise its mass is not on the enumerated responses"
            )

    def exact_logprobs(self, policy: Policy, prompt: int = 0, *, grad: bool = True) -> torch.Tensor:
        """(N,) log π(y_i | x_prompt) for every listed response (differentiable)."""
        self._check_policy(policy)
        prompts = [self.prompts[prompt]] * self.n_responses
        return policy.sequence_logprobs(prompts, self.responses, grad=grad)

    def exact_distribution(self, policy: Policy, prompt: int = 0, *, grad: bool = False) -> torch.Tensor:
        """(N,) float64 probabilities of every listed response; sums to 1 up to rounding."""
        return torch.exp(self.exact_logprobs(policy, prompt, grad=grad).double())

    def mixture_distribution(self, policy: Policy, mu: Policy, w: float, prompt: int = 0) -> torch.Tensor:
        """(N,) float64 exact distribution of ``sample_mixture`` (token-level π^(1−w)·μ^w).

        Compare with the sequence-level mixture, ∝ π^(1−w)·μ^w over responses:
        equal for ``response_len == 1``, different in general.
        """
        self._check_policy(policy)
        self._check_policy(mu)
        prompts = [self.prompts[prompt]] * self.n_responses
        return torch.exp(mixture_sequence_logprobs(policy, mu, prompts, self.responses, w).double())

    def action_distribution(self, policy: Policy, prompt: int = 0) -> torch.Tensor:
        """(n,) float64 marginal distribution over classes (actions)."""
        dist = self.exact_distribution(policy, prompt)
        out = torch.zeros(self.n_actions, dtype=torch.float64, device=dist.device)
        return out.index_add_(0, torch.as_tensor(self.classes, device=dist.device), dist)

    def duality_gap(self, policy: Policy | torch.Tensor, prompt: int = 0) -> float:
        """2·max_i (P_resp π)_i − 1 for the symmetric game; 0 exactly at a Nash equilibrium.

        Accepts a policy or an (N,) response distribution; computed by ``games.duality_gap``.
        """
        import games

        dist = policy if isinstance(policy, torch.Tensor) else self.exact_distribution(policy, prompt)
        p = dist.detach().double().cpu().numpy()
        return float(games.duality_gap(games.PreferenceGame(self.P_resp), p / p.sum()))

    # -- sampling ------------------------------------------------------------
    def sample(self, policy: Policy, n: int, prompt: int = 0, *, generator=None) -> list[list[int]]:
        """n responses from π(·|x_prompt); each is one of ``self.responses``."""
        self._check_policy(policy)
        return sample(policy, [self.prompts[prompt]] * n, self.response_len, generator=generator)

    def sample_mixture(self, policy: Policy, mu: Policy, w: float, n: int, prompt: int = 0, *, generator=None):
        """n responses from the token-level geometric mixture π^(1−w)·μ^w."""
        self._check_policy(policy)
        self._check_policy(mu)
        return sample_mixture(policy, mu, [self.prompts[prompt]] * n, w, self.response_len, generator=generator)
