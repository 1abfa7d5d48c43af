"""The LLM backend: the interface the algorithms use, realised on a causal language model.

Nothing algorithmic lives here. An algorithm step asks for

* ``win_rates(σ)`` — a lazy handle on g(σ)_y = P(y ≻ σ), estimated only when a target needs it;
* ``realise(((a, anchor), (b, magnet), (c, g), ...))`` — the policy whose log-probabilities are
  Σ coef·term up to a per-prompt constant. On an LM this is a regression: for responses y, y' to the
  same prompt, fit ``log π_θ(y) − log π_θ(y')`` to ``Σ coef·(term(y) − term(y'))``, policy terms
  contributing log-probability differences and win-rate terms ĝ(y) − ĝ(y'). The intractable
  normaliser cancels. Over all pairs of a prompt's responses with weights w the pairwise squared
  loss equals 2·Var_w(log π_θ − target), which is what we minimise (O(K) instead of O(K²));
  ``k`` optimiser steps per realisation, starting from the anchor's weights.
* ``mixture(π, μ, w)`` — the token-level geometric mixture (see :func:`llm.sampling.sample_mixture`).

Policies are frozen snapshots (values): the anchor, magnet, half step and previous iterates the
algorithms hold stay alive side by side. In an :class:`~llm.world.EnumerableWorld` every response is
listed, so the LM policy's exact distribution, duality gap and regularised gap are computed exactly
at every step, and ``pairs="all"`` / ``win_rates="exact"`` make a realisation deterministic so it can
be compared with the exact backend step by step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .oracles import check_antisymmetric
from .policy import Policy
from .sampling import make_generator, sample, sample_mixture


@dataclass(frozen=True, eq=False)
class Mixture:
    """The token-level geometric mixture π^(1−w)·μ^w of two frozen policies (an opponent)."""

    policy: Policy
    other: Policy
    weight: float


@dataclass(frozen=True, eq=False)
class LMWinRates:
    """g(σ)_y = P(y ≻ σ), for the opponent σ (a policy or a mixture), estimated on demand.

    Estimates are cached on the handle (per prompt and response), so an algorithm that reuses a
    handle — OMWU's g(π_{t−1}) — costs no new samples or queries for responses already judged.
    """

    opponent: object
    cache: dict = field(default_factory=dict, repr=False)


@dataclass
class LLMConfig:
    """How a step is realised on the LM.

    k: optimiser steps per realisation (LBFGS: function evaluations); lr: learning rate (Adam/SGD);
    optimizer: "lbfgs" (default: each realisation is a small smooth least-squares problem that
    quasi-Newton solves to ~1e-14 in 30 evaluations, where 30 Adam steps leave ~1e-3 — measured),
    "adam" or "sgd" (for large models, with minibatches of prompts); samples: responses per prompt
    drawn from the anchor (the regression's pairs); opponents: opponent samples per prompt for ĝ;
    prompts_per_step: prompts per realisation (all prompts if None); pairs: "sampled" (responses
    from the anchor) or "all" (every listed response, uniform weights; needs a world); win_rates:
    "sampled" (oracle queries against opponent samples) or "exact" (P_resp·σ; needs a world);
    max_new_tokens: response length limit when sampling (the world's length by default).
    """

    k: int = 30
    lr: float = 0.05
    samples: int = 16
    opponents: int = 1024
    prompts_per_step: int | None = None
    pairs: str = "sampled"
    win_rates: str = "sampled"
    max_new_tokens: int | None = None
    optimizer: str = "lbfgs"
    seed: int = 0

    def __post_init__(self):
        for name in ("k", "samples", "opponents"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"LLMConfig.{name} must be a positive int; got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"LLMConfig.lr must be > 0; got {self.lr!r}")
        if self.optimizer not in ("adam", "lbfgs", "sgd"):
            raise ValueError(f"LLMConfig.optimizer must be 'adam', 'lbfgs' or 'sgd'; got {self.optimizer!r}")
        if self.pairs not in ("sampled", "all"):
            raise ValueError(f"LLMConfig.pairs must be 'sampled' or 'all'; got {self.pairs!r}")
        if self.win_rates not in ("sampled", "exact"):
            raise ValueError(f"LLMConfig.win_rates must be 'sampled' or 'exact'; got {self.win_rates!r}")


@dataclass
class Timings:
    """Seconds spent per phase, accumulated (reported by experiments/train.py)."""

    sampling: float = 0.0
    oracle: float = 0.0
    loss: float = 0.0


class LLMBackend:
    """Realises algorithm steps on a transformers causal LM (see the module docstring).

    policy: the initial policy (also the reference μ, frozen); oracle: a preference oracle
    (``prob(prompts, a, b)``), checked for antisymmetry before any step; prompts: token-id lists
    (the world's prompts if a world is given); world: an EnumerableWorld for exact metrics.
    """

    lipschitz = 0.5  # preferences lie in [0, 1]; the world's own value when there is one

    def __init__(self, policy: Policy, oracle=None, prompts=None, world=None, config: LLMConfig | None = None):
        self.config = config or LLMConfig()
        self.world = world
        if world is not None:
            world._check_policy(policy)
            prompts = world.prompts if prompts is None else prompts
            oracle = world.oracle() if oracle is None else oracle
        if oracle is None:
            raise ValueError("LLMBackend needs a preference oracle (or a world, whose oracle is used)")
        if not prompts:
            raise ValueError("LLMBackend needs at least one prompt (a list of token-id lists)")
        cfg = self.config
        if (cfg.pairs == "all" or cfg.win_rates == "exact") and world is None:
            raise ValueError("pairs='all' and win_rates='exact' enumerate responses: they need an EnumerableWorld")
        self.max_new_tokens = cfg.max_new_tokens or (world.response_len if world is not None else 32)
        limit = policy.context_limit
        if limit is not None:
            longest = max(len(p) for p in prompts) + self.max_new_tokens
            if longest > limit:
                raise ValueError(
                    f"prompts of up to {max(len(p) for p in prompts)} tokens plus {self.max_new_tokens} new tokens "
                    f"exceed the model's context of {limit} tokens; shorten the prompts or max_new_tokens")
        self.prompts = [list(p) for p in prompts]
        self.oracle = oracle
        self._check_oracle(policy)
        self.live = policy  # trained in place by realise; every returned policy is a snapshot
        self.reference = policy.snapshot()
        self.generator = make_generator(cfg.seed, policy.device)
        self.timings = Timings()
        self._win_rate_calls = 0
        if world is not None:
            from games import ExactBackend, PreferenceGame

            self._exact = ExactBackend(PreferenceGame(world.P_resp, name="world"))
            # the same L (hence the same default steps) as the exact backend on the induced game
            self.lipschitz = self._exact.lipschitz

    # -- validation ---------------------------------------------------------------------------------
    def _check_oracle(self, policy):
        """Refuse an oracle that is not antisymmetric, before any training step."""
        x = self.prompts[0]
        ys = sample(policy, [x] * 4, self.max_new_tokens, generator=make_generator(12345, policy.device))
        before = getattr(self.oracle, "queries", 0)
        check_antisymmetric(self.oracle, [x] * 4, ys, ys[::-1])
        if hasattr(self.oracle, "queries"):
            self.oracle.queries = before  # a validation is not a query of the run

    # -- the interface the algorithms use ---------------------------------------------------------
    def initial_policy(self, init=None):
        if init is not None:
            raise ValueError("the LLM backend starts from its model; pass init=None (load the model you want instead)")
        return self.reference

    @property
    def queries(self) -> int:
        """Oracle pairs judged (sampled win rates) or win-rate evaluations (exact win rates)."""
        if self.config.win_rates == "exact":
            return self._win_rate_calls
        return int(getattr(self.oracle, "queries", 0))

    def win_rates(self, sigma) -> LMWinRates:
        self._win_rate_calls += 1
        return LMWinRates(sigma)

    def mixture(self, policy, other, weight) -> Mixture:
        w = float(weight)
        if w <= 0:
            return policy
        if w >= 1:
            return other
        return Mixture(policy, other, w)

    def asarray(self, x):
        """Numbers as this backend's values (metrics here are Python floats)."""
        return np.asarray(x, dtype=np.float64)

    def where(self, mask, a, b):
        return a if bool(np.all(mask)) else b

    def realise(self, terms):
        """Fit the live model to Σ coef·term (see the module docstring); return a frozen snapshot."""
        terms = [(float(c), t) for c, t in terms if float(c) != 0.0]
        policy_terms = [(c, t) for c, t in terms if not isinstance(t, LMWinRates)]
        g_terms = [(c, t) for c, t in terms if isinstance(t, LMWinRates)]
        if not policy_terms:
            raise ValueError("a realised target needs a policy term (the anchor) to sample responses from")
        anchor = policy_terms[0][1]
        anchor = anchor.policy if isinstance(anchor, Mixture) else anchor
        prompts, responses, weights = self._responses(anchor)
        target = torch.zeros(len(responses), dtype=torch.float64)
        with torch.no_grad():
            for c, p in policy_terms:
                target += c * self._logp(p, prompts, responses)
        for c, g in g_terms:
            target += c * self._g_hat(g, prompts, responses)
        self._fit(anchor, prompts, responses, weights, target)
        return self.live.snapshot()

    # -- realisation internals ----------------------------------------------------------------------
    def _prompt_batch(self):
        n = self.config.prompts_per_step
        if n is None or n >= len(self.prompts):
            return list(range(len(self.prompts)))
        idx = torch.randperm(len(self.prompts), generator=self.generator)[:n]
        return sorted(idx.tolist())

    def _responses(self, anchor):
        """(prompt of each row, responses, weights): K samples per prompt, or every listed response."""
        t0 = time.perf_counter()
        rows_p, rows_y, weights = [], [], []
        for i in self._prompt_batch():
            x = self.prompts[i]
            if self.config.pairs == "all":
                ys = self.world.responses
            else:
                ys = sample(anchor, [x] * self.config.samples, self.max_new_tokens, generator=self.generator)
            rows_p += [x] * len(ys)
            rows_y += [list(y) for y in ys]
            weights += [1.0 / len(ys)] * len(ys)
        self.timings.sampling += time.perf_counter() - t0
        return rows_p, rows_y, torch.tensor(weights, dtype=torch.float64)

    def _logp(self, policy, prompts, responses):
        if isinstance(policy, Mixture):
            lp = policy.policy.sequence_logprobs(prompts, responses, grad=False).double()
            lm = policy.other.sequence_logprobs(prompts, responses, grad=False).double()
            return (1 - policy.weight) * lp + policy.weight * lm
        return policy.sequence_logprobs(prompts, responses, grad=False).double()

    def _opponent_distribution(self, sigma, prompt):
        w = self.world
        pi = w.prompts.index(prompt)
        if isinstance(sigma, Mixture):
            return w.mixture_distribution(sigma.policy, sigma.other, sigma.weight, pi)
        return w.exact_distribution(sigma, pi)

    def _g_hat(self, handle, prompts, responses):
        """ĝ(y) = P(y ≻ σ | x) for every row (cached on the handle)."""
        out = torch.zeros(len(responses), dtype=torch.float64)
        todo = [r for r in range(len(responses)) if (tuple(prompts[r]), tuple(responses[r])) not in handle.cache]
        if todo:
            g = self._g_estimate(handle.opponent, [prompts[r] for r in todo], [responses[r] for r in todo])
            for r, v in zip(todo, g.tolist()):
                handle.cache[(tuple(prompts[r]), tuple(responses[r]))] = v
        for r in range(len(responses)):
            out[r] = handle.cache[(tuple(prompts[r]), tuple(responses[r]))]
        return out

    def _g_estimate(self, sigma, prompts, responses):
        """ĝ(y) = P(y ≻ σ | x): exact (P_resp·σ) or averaged over opponent samples."""
        out = torch.zeros(len(responses), dtype=torch.float64)
        groups = {}
        for r, x in enumerate(prompts):
            groups.setdefault(tuple(x), []).append(r)
        for x, rows in groups.items():
            x = list(x)
            if self.config.win_rates == "exact":
                dist = self._opponent_distribution(sigma, x).cpu()
                g = torch.as_tensor(self.world.P_resp, dtype=torch.float64) @ dist
                out[rows] = g[[self.world.index_of(responses[r]) for r in rows]]
                continue
            t0 = time.perf_counter()
            m = self.config.opponents
            if isinstance(sigma, Mixture):
                zs = sample_mixture(sigma.policy, sigma.other, [x] * m, sigma.weight, self.max_new_tokens,
                                    generator=self.generator)
            else:
                zs = sample(sigma, [x] * m, self.max_new_tokens, generator=self.generator)
            t1 = time.perf_counter()
            # ĝ depends on y's tokens only: judge each distinct response once against the m opponents
            uniq = {}
            for r in rows:
                uniq.setdefault(tuple(responses[r]), []).append(r)
            ys = [list(y) for y in uniq]
            # likewise each distinct opponent response once, weighted by how often it was drawn
            zc = {}
            for z in zs:
                zc[tuple(z)] = zc.get(tuple(z), 0) + 1
            zu = [list(z) for z in zc]
            freq = torch.tensor(list(zc.values()), dtype=torch.float64) / m
            p = self.oracle.prob([x] * (len(ys) * len(zu)), [y for y in ys for _ in zu], zu * len(ys))
            for y_rows, gy in zip(uniq.values(), p.reshape(len(ys), len(zu)) @ freq):
                out[y_rows] = gy
            self.timings.sampling += t1 - t0
            self.timings.oracle += time.perf_counter() - t1
        return out

    def _fit(self, anchor, prompts, responses, weights, target):
        """k optimiser steps on Σ_prompts 2·Var_w(log π_θ − target), from the anchor's weights."""
        t0 = time.perf_counter()
        live = self.live
        live.model.load_state_dict(anchor.model.state_dict())
        live.model.train()
        params = [p for p in live.model.parameters() if p.requires_grad]
        group = torch.tensor(_group_ids(prompts))
        n_groups = int(group.max()) + 1
        target, w = target.float(), weights.float()

        def closure():
            opt.zero_grad(set_to_none=True)
            d = live.sequence_logprobs(prompts, responses) - target
            mean = torch.zeros(n_groups).index_add(0, group, w * d)
            loss = 2 * (w * (d - mean[group]) ** 2).sum() / n_groups
            loss.backward()
            return loss

        cfg = self.config
        if cfg.optimizer == "lbfgs":
            # a small smooth least-squares problem: quasi-Newton solves it in a few dozen evaluations
            opt = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.k, history_size=20, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-10, tolerance_change=1e-14)
            opt.step(closure)
            loss = closure()
        else:
            opt = torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam" else torch.optim.SGD(params, lr=cfg.lr)
            for _ in range(cfg.k):
                loss = closure()
                opt.step()
        live.model.eval()
        self.last_loss = float(loss.detach())
        self.timings.loss += time.perf_counter() - t0

    # -- metrics (exact, in an enumerable world) ------------------------------------------------------
    def _tabular(self, policy, prompt: int = 0):
        if self.world is None:
            raise ValueError("exact metrics need an EnumerableWorld (LLMBackend(..., world=world))")
        from games import TabularPolicy

        if isinstance(policy, Mixture):
            dist = self.world.mixture_distribution(policy.policy, policy.other, policy.weight, prompt)
        else:
            dist = self.world.exact_distribution(policy, prompt)
        with np.errstate(divide="ignore"):
            logp = np.log(dist.detach().cpu().numpy().astype(np.float64))
        return TabularPolicy((logp - np.logaddexp.reduce(logp),))

    def _per_prompt(self, fn, *policies):
        """The mean over the world's prompts of an exact metric of the response distributions."""
        if self.world is None:
            return math.nan
        n = len(self.world.prompts)
        return float(np.mean([fn(*(None if p is None else self._tabular(p, i) for p in policies)) for i in range(n)]))

    def duality_gap(self, policy):
        """Exact duality gap of the LM's response distribution, averaged over prompts (NaN without a world)."""
        return self._per_prompt(self._exact.duality_gap, policy) if self.world is not None else math.nan

    def regularized_gap(self, policy, beta, magnet=None):
        if self.world is None:
            return math.nan
        magnet = self.reference if magnet is None else magnet
        return self._per_prompt(lambda p, m: self._exact.regularized_gap(p, beta, m), policy, magnet)

    def kl(self, p, q):
        return self._per_prompt(self._exact.kl, p, q)

    def from_probs(self, policy):
        """Policies on an LM are models: a given Policy is snapshotted; probabilities are refused."""
        if isinstance(policy, Policy):
            return policy.snapshot()
        raise ValueError("on the LLM backend a policy (e.g. a magnet) is a llm.Policy, not probabilities; "
                         "pass a Policy, or None for the reference model")

    def to_numpy(self, policy):
        """The exact response distribution for prompt 0 (numpy) in a world; the policy itself otherwise."""
        if self.world is None:
            return policy
        return np.exp(self._tabular(policy).logp[0])

    # -- checkpointing ------------------------------------------------------------------------------
    def state_dict(self):
        return {"generator": self.generator.get_state(), "oracle_queries": getattr(self.oracle, "queries", 0),
                "win_rate_calls": self._win_rate_calls, "live": {k: v.clone() for k, v in self.live.model.state_dict().items()}}

    def load_state_dict(self, d):
        self.generator.set_state(d["generator"])
        if hasattr(self.oracle, "queries"):
            self.oracle.queries = d["oracle_queries"]
        self._win_rate_calls = d["win_rate_calls"]
        self.live.model.load_state_dict(d["live"])

    def __repr__(self):
        return f"LLMBackend({self.live!r}, world={self.world is not None}, {self.config})"


def _group_ids(prompts):
    ids, out = {}, []
    for x in prompts:
        out.append(ids.setdefault(tuple(x), len(ids)))
    return out
