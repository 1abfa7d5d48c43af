"""One realisation's data: responses, their weights and the log-linear target's parts (a StepBatch)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepBatch:
    """The data of one realised step ℓ_new = Σ coef·ℓ_policy + g, built by the backend.

    R rows (one response each) in G groups (one per prompt on this rank), T = longest response.

    prompts: R prompt token-id lists. responses: R response token-id lists (sampled from the
    anchor, or every listed response of an enumerable world). group: (R,) long, the prompt index
    0..G−1 of each row. weights: (R,) float64, each group's weights sum to 1 (1/K for K samples;
    the anchor's probabilities when a world lists every response: then a weighted sum over a group
    is the exact expectation under the anchor). g: (R,) float64, Σ_j c_j·ĝ_j(y), the win-rate part
    of the target. policy_terms: (coef, (R, T) per-token log-probs of a frozen policy on the
    responses, 0 on padding) pairs — computed once, without grad. mask: (R, T) bool, real response
    tokens. n_groups_global: prompts over ALL data-parallel ranks (None: G, one rank).
    start_coef: the coefficient of the live policy *as the fit starts* (the anchor, whose weights
    the backend loads into the live model before the fit): its log-probs are not computed here but
    taken by the realiser from the fit's first forward pass (``Realiser.start_logps``), which saves
    one frozen forward over the batch (0: no such term).

    Errors: ValueError when shapes or group weights disagree (checked at construction).
    """

    prompts: list
    responses: list
    group: torch.Tensor
    weights: torch.Tensor
    g: torch.Tensor
    policy_terms: list
    mask: torch.Tensor
    n_groups_global: int | None = None
    start_coef: float = 0.0

    def __post_init__(self):
        self.start_coef = float(self.start_coef)
        R = len(self.responses)
        if len(self.prompts) != R or R == 0:
            raise ValueError(f"StepBatch: {len(self.prompts)} prompts and {R} responses (need equal, ≥ 1)")
        self.group = torch.as_tensor(self.group, dtype=torch.long).cpu()
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64).cpu()
        self.g = torch.as_tensor(self.g, dtype=torch.float64).cpu()
        self.mask = torch.as_tensor(self.mask, dtype=torch.bool).cpu()
        T = max(len(y) for y in self.responses)
        if self.group.shape != (R,) or self.weights.shape != (R,) or self.g.shape != (R,):
            raise ValueError(f"StepBatch: group, weights and g must have shape ({R},)")
        if self.mask.shape != (R, T):
            raise ValueError(f"StepBatch: mask has shape {tuple(self.mask.shape)}, expected ({R}, {T})")
        if int(self.group.min()) < 0 or sorted(set(self.group.tolist())) != list(range(self.n_groups)):
            raise ValueError("StepBatch: group must number the prompts 0..G-1, each used")
        sums = torch.zeros(self.n_groups, dtype=torch.float64).index_add_(0, self.group, self.weights)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6) or bool((self.weights < 0).any()):
            raise ValueError(f"StepBatch: weights must be ≥ 0 and sum to 1 in each group; sums {sums.tolist()}")
        terms = []
        for coef, lp in self.policy_terms:
            lp = torch.as_tensor(lp).detach().to("cpu", torch.float64)
            if lp.shape != (R, T):
                raise ValueError(f"StepBatch: a policy term has shape {tuple(lp.shape)}, expected ({R}, {T})")
            terms.append((float(coef), lp.masked_fill(~self.mask, 0.0)))
        self.policy_terms = terms
        if self.n_groups_global is None:
            self.n_groups_global = self.n_groups
        elif self.n_groups_global < self.n_groups:
            raise ValueError(f"StepBatch: n_groups_global = {self.n_groups_global} < the {self.n_groups} groups here")

    @property
    def n_rows(self) -> int:
        return len(self.responses)

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1

    @property
    def target(self) -> torch.Tensor:
        """(R,) float64 g + Σ coef·log π_i(y): the regression's right-hand side (per sequence), without
        the start term (``start_coef`` · log π_start, added by the realiser once it has those log-probs)."""
        out = self.g.clone()
        for coef, lp in self.policy_terms:
            out += coef * lp.sum(-1)
        return out

    @property
    def tokens(self) -> int:
        """Real response tokens in the batch."""
        return int(self.mask.sum())

    def rows_of(self, groups) -> torch.Tensor:
        """(n,) indices of the rows of the given groups, in row order."""
        keep = torch.zeros(self.n_groups, dtype=torch.bool)
        keep[torch.as_tensor(list(groups), dtype=torch.long)] = True
        return torch.nonzero(keep[self.group]).squeeze(-1)

    def select(self, groups) -> "StepBatch":
        """The sub-batch of the given groups (renumbered 0..n−1, n_groups_global kept)."""
        groups = sorted(set(int(i) for i in groups))
        rows = self.rows_of(groups)
        renum = {g: i for i, g in enumerate(groups)}
        T = max(len(self.responses[r]) for r in rows.tolist())
        return StepBatch(
            prompts=[self.prompts[r] for r in rows.tolist()],
            responses=[self.responses[r] for r in rows.tolist()],
            group=torch.tensor([renum[int(self.group[r])] for r in rows.tolist()]),
            weights=self.weights[rows], g=self.g[rows],
            policy_terms=[(c, lp[rows, :T]) for c, lp in self.policy_terms],
            mask=self.mask[rows, :T], n_groups_global=self.n_groups_global, start_coef=self.start_coef)

    @classmethod
    def build(cls, prompts, responses, group, weights, g, policies=(), *, n_groups_global=None, logps=None):
        """A batch from frozen policies: their per-token log-probs are computed here, once, no grad.

        policies: (coef, Policy) pairs; logps: optional precomputed (coef, (R, T) tensor) pairs.
        """
        T = max(len(y) for y in responses)
        mask = torch.zeros(len(responses), T, dtype=torch.bool)
        for r, y in enumerate(responses):
            mask[r, :len(y)] = True
        terms = list(logps or [])
        for coef, policy in policies:
            lp, m = policy.token_logprobs(prompts, responses, grad=False)
            terms.append((coef, lp.detach().cpu().double()[:, :T]))
        return cls(list(map(list, prompts)), list(map(list, responses)), group, weights, g, terms, mask,
                   n_groups_global)
