"""The LLM backend: the interface the algorithms use, wired to a causal LM. No algorithm code here.

An algorithm step (DESIGN §3) asks for

* ``win_rates(σ)`` — a lazy handle on ĝ(σ)_y = P(y ≻ σ | x), estimated only when a target needs it;
* ``realise(((a, anchor), (b, magnet), (c, g), ...))`` — the policy with log-probabilities
  Σ coef·term up to a per-prompt constant;
* ``mixture(π, μ, w)`` — the token-level geometric mixture (an opponent; see :mod:`llm.sampling`).

One realisation (DESIGN §6.3), in this order:

1. **Responses.** K = ``samples`` responses per prompt from the anchor (the first policy term), ALL
   prompts × samples in ONE sampler call (batched across prompts); or, in an enumerable world with
   ``pairs="all"``, every listed response with uniform weights.
2. **Win rates.** ĝ(y) = P(y ≻ σ | x), judged by the oracle on TEXT (responses decoded with
   ``tokenizer.decode(ids, skip_special_tokens=True)``, prompts as the user's text). When σ is the
   anchor itself the step's own samples serve as σ's samples, leave-one-out:
   ĝ(y_i) = 1/(K−1)·Σ_{j≠i} P(y_i ≻ y_j), so K samples cost K(K−1)/2 judgements per prompt (each
   unordered pair once; P(y_j ≻ y_i) = 1 − P(y_i ≻ y_j) by the oracle's antisymmetry; identical
   texts are ½ without a query). Otherwise (or with ``opponents=m``) samples of σ per prompt are drawn once per
   handle (one batched call) and kept on the handle, so a handle reused later (OMWU's g(π_{t−1}))
   needs no new samples, and pairs already judged are not judged again.
3. **Frozen log-probs.** Per-token log-probs of every policy term on the responses, once, without
   grad (a policy appearing twice — anchor = magnet after an MPO refresh — once).
4. **Fit.** The anchor's weights (or adapter) are loaded into the live model and the selected
   realiser (``llm.realise``: ``"regression"`` or ``"pg"``, for every algorithm) fits it to the
   :class:`~llm.realise.StepBatch`; the result is returned as a frozen snapshot (``llm.snapshots``:
   LoRA adapter tensors over ONE shared base, or a state dict).

Exact metrics exist only in an :class:`~llm.world.EnumerableWorld` (``exact_metrics``), where every
response is listed: the LM policy's exact response distribution, duality gap and regularised gap.
A real run records :meth:`extra_metrics` instead (estimators documented there). Time per phase is
kept in :attr:`timings` (sampling / oracle / logprobs / fit).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from games import validation as V

from .policy import Policy, gather_logprobs
from .sampling import make_generator, sample, sample_mixture

WHERE = "LLMConfig"


@dataclass(frozen=True, eq=False)
class Mixture:
    """The token-level geometric mixture π^(1−w)·μ^w of two frozen policies (an opponent)."""

    policy: Policy
    other: Policy
    weight: float


@dataclass(eq=False)
class LMWinRates:
    """ĝ(σ)_y = P(y ≻ σ | x) for the opponent σ (a policy or a mixture), estimated on demand.

    ``samples[i]`` holds σ's sampled response texts for prompt i once drawn (or the step's own
    samples when σ was the anchor: leave-one-out), ``judged`` the oracle's answers per (prompt,
    a text, b text), ``exact[i]`` the world's exact ĝ vector — all kept so that a handle used again
    (OMWU's g(π_{t−1})) costs no new samples and no repeated judgements.
    """

    opponent: object
    samples: dict = field(default_factory=dict, repr=False)
    judged: dict = field(default_factory=dict, repr=False)
    exact: dict = field(default_factory=dict, repr=False)


@dataclass
class LLMConfig:
    """How a step is realised on the LM (every field checked here, before any work).

    samples: responses per prompt drawn from the anchor (K ≥ 2: with one response per prompt the
        pairwise regression has no pair and the leave-one-out win rate no opponent).
    opponents: None (default): σ's samples are the step's own when σ is the anchor (leave-one-out,
        K(K−1)/2 judgements per prompt), else ``samples`` fresh samples of σ per prompt; an int m:
        always m fresh samples of σ per prompt (more judgements, a less noisy ĝ: K·m per prompt).
    max_new_tokens: response length limit (None: the world's response length, else 32); ≥ 1.
    temperature, top_p: the sampler's (recorded with the results; 1.0 = the policy itself, which
        the algorithms' targets assume).
    prompts_per_step: prompts per realisation, drawn without replacement each step (None: all).
    pairs: "sampled" (responses from the anchor) or "all" (every listed response; needs a world).
    win_rates: "sampled" (oracle judgements) or "exact" (P_resp·σ; needs a world).
    realiser: "regression" or "pg" (``llm.realise``); optimizer / lr / k: the realiser's optimiser,
        learning rate and steps per realisation (None: the realiser's defaults — except in a world,
        where the default is LBFGS, which solves each small realisation to ~1e-14); realiser_options:
        further keyword arguments for :func:`llm.realise.make_realiser`.
    lora_r, lora_alpha, target_modules: LoRA (``llm.snapshots.prepare``); None = full fine-tuning.
    snapshot_device: where full-fine-tuning snapshots live (e.g. "cpu" to spare GPU memory).
    gradient_checkpointing: recompute activations in the fit's backward pass (``llm.snapshots.prepare``);
        None = on for full fine-tuning of a real model, off for LoRA and in a world. On SmolLM2-135M
        (8 prompts × 4 samples × 32 tokens, 2 CPU threads) it took full fine-tuning from 4.60 to
        4.13 GiB at +17% time (benchmarks.md, "LLM 0").
    sample_batch_size, logprob_batch_size: rows per sampler / no-grad forward call (memory bound).
    autocast: bfloat16 autocast for sampling, log-probs and the fit (None: on when the model is on
        CUDA in float32).
    seed: the backend's sampling generator.
    """

    samples: int = 16
    opponents: int | None = None
    max_new_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    prompts_per_step: int | None = None
    pairs: str = "sampled"
    win_rates: str = "sampled"
    realiser: str = "regression"
    optimizer: str | None = None
    lr: float | None = None
    k: int | None = None
    realiser_options: dict = field(default_factory=dict)
    lora_r: int | None = None
    lora_alpha: float | None = None
    target_modules: tuple | None = None
    snapshot_device: str | None = None
    gradient_checkpointing: bool | None = None
    sample_batch_size: int | None = None
    logprob_batch_size: int = 16
    autocast: bool | None = None
    seed: int = 0

    def __post_init__(self):
        def name(f):
            return f"LLMConfig.{f}"

        self.samples = V.integer(self.samples, name("samples"), low=2)
        self.opponents = V.integer(self.opponents, name("opponents"), low=1, allow_none=True)
        self.max_new_tokens = V.integer(self.max_new_tokens, name("max_new_tokens"), low=1, allow_none=True)
        self.temperature = V.number(self.temperature, name("temperature"), low=0, low_open=True)
        self.top_p = V.number(self.top_p, name("top_p"), low=0, high=1, low_open=True)
        self.prompts_per_step = V.integer(self.prompts_per_step, name("prompts_per_step"), low=1, allow_none=True)
        self.pairs = V.choice(self.pairs, name("pairs"), ("sampled", "all"))
        self.win_rates = V.choice(self.win_rates, name("win_rates"), ("sampled", "exact"))
        self.realiser = V.choice(self.realiser, name("realiser"), ("regression", "pg"))
        if self.optimizer is not None and not isinstance(self.optimizer, str):
            V.fail(name("optimizer"), self.optimizer, "it must be an optimiser name (e.g. 'adamw', 'lbfgs') or None")
        if self.lr is not None:
            self.lr = V.number(self.lr, name("lr"), low=0, low_open=True)
        self.k = V.integer(self.k, name("k"), low=1, allow_none=True)
        if not isinstance(self.realiser_options, dict):
            V.fail(name("realiser_options"), self.realiser_options, "it must be a dict of keyword arguments")
        self.lora_r = V.integer(self.lora_r, name("lora_r"), low=1, allow_none=True)
        if self.lora_alpha is not None:
            self.lora_alpha = V.number(self.lora_alpha, name("lora_alpha"), low=0, low_open=True)
        if self.target_modules is not None:
            self.target_modules = tuple(self.target_modules)
        if self.gradient_checkpointing is not None:
            self.gradient_checkpointing = V.boolean(self.gradient_checkpointing, name("gradient_checkpointing"))
        self.sample_batch_size = V.integer(self.sample_batch_size, name("sample_batch_size"), low=1, allow_none=True)
        self.logprob_batch_size = V.integer(self.logprob_batch_size, name("logprob_batch_size"), low=1)
        if self.autocast is not None:
            self.autocast = V.boolean(self.autocast, name("autocast"))
        self.seed = V.integer(self.seed, name("seed"), low=0)

    def resolved_gradient_checkpointing(self, model, world=None) -> bool:
        """gradient_checkpointing with None resolved: on for full fine-tuning of a real model (no
        world) that supports it, off for LoRA and in the enumerable world (tiny models: nothing to save)."""
        if self.gradient_checkpointing is not None:
            return self.gradient_checkpointing
        inner = getattr(model, "get_base_model", lambda: model)()
        supported = bool(getattr(inner, "supports_gradient_checkpointing", False))
        return self.lora_r is None and world is None and supported


@dataclass
class Timings:
    """Seconds spent per phase, accumulated over the run (checkpointed with the backend)."""

    sampling: float = 0.0
    oracle: float = 0.0
    logprobs: float = 0.0
    fit: float = 0.0
    metrics: float = 0.0

    @property
    def total(self) -> float:
        return self.sampling + self.oracle + self.logprobs + self.fit + self.metrics


@dataclass
class _Step:
    """What the last realisation saw: reused by :meth:`LLMBackend.extra_metrics`."""

    prompt_index: list  # (R,) index into backend.prompts of each row
    responses: list  # (R,) response token ids
    texts: list  # (R,) decoded responses
    groups: dict  # prompt index -> list of rows
    anchor: object
    logps: dict  # id(policy) -> (policy, (R,) float64 sequence log-probs, no grad)
    g_handle: object  # the win-rate handle whose samples are the rows (leave-one-out), or None
    stats: dict
    result: object = None  # the snapshot realise returned
    n_global: int | None = None  # prompts of the step over all ranks (None: this rank's)


def _rows(prompt_index: list) -> list[tuple[int, int]]:
    """(prompt, k) of each row: k counts the rows of the same prompt (the per-row generators' coordinates)."""
    seen: dict = {}
    out = []
    for i in prompt_index:
        out.append((i, seen.get(i, 0)))
        seen[i] = seen.get(i, 0) + 1
    return out


def _timed(timings: Timings, phase: str):
    @contextlib.contextmanager
    def cm():
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(timings, phase, getattr(timings, phase) + time.perf_counter() - t0)

    return cm()


class LLMBackend:
    """Realises algorithm steps on a transformers causal LM (see the module docstring).

    policy: the initial policy (the reference μ); it becomes the live, trained module (with LoRA,
        a peft model over its frozen base). oracle: a text preference oracle (interface
        ``prob(prompts, a, b)`` on strings; ``llm.oracles.from_spec`` builds one), checked for
        antisymmetry before any step. prompts: ``llm.data.Prompt`` objects (text + ids) or token-id
        lists (the world's prompts if a world is given). world: an EnumerableWorld for exact metrics.
    parallel: this process's place in a data-parallel run (``llm.distributed.setup()``; default: one
        process): each step's prompts are sharded over the ranks, gradients all-reduced, metrics and
        counters summed (see :mod:`llm.distributed`).
    Errors (ValueError, naming the argument) are raised here, before any step.
    """

    lipschitz = 0.5  # preferences lie in [0, 1]; the world's own value when there is one
    #: metrics that measure wall-clock time: the only entries of extra_metrics that differ between a
    #: resumed and an uninterrupted run (everything else is bit-identical)
    TIMING_METRICS = ("seconds", "sampling_s", "oracle_s", "logprobs_s", "fit_s")

    def __init__(self, policy: Policy, oracle=None, prompts=None, world=None, config: LLMConfig | None = None,
                 parallel=None):
        from . import distributed, snapshots

        self.parallel = parallel if parallel is not None else distributed.SINGLE

        if config is not None and not isinstance(config, LLMConfig):
            V.fail("config", config, "it must be an llm.LLMConfig (or None for the defaults)", where="LLMBackend",
                   cls=V.WrongType)
        if not isinstance(policy, Policy):
            V.fail("policy", policy, "it must be an llm.Policy (llm.Policy.from_pretrained(path))", where="LLMBackend",
                   cls=V.WrongType)
        self.config = cfg = config or LLMConfig()
        self.world = world
        if world is not None:
            world._check_policy(policy)
            prompts = world.prompts if prompts is None else prompts
            oracle = world.oracle() if oracle is None else oracle
        if oracle is None:
            raise ValueError("LLMBackend: oracle = None is not allowed; give a preference oracle "
                             "(llm.oracles.from_spec('annotators'), ...) or a world, whose oracle is used")
        from .oracles import as_oracle

        oracle = as_oracle(oracle, "oracle", "LLMBackend")  # counted; a user function is wrapped
        if (cfg.pairs == "all" or cfg.win_rates == "exact") and world is None:
            raise ValueError("LLMBackend: pairs='all' and win_rates='exact' enumerate responses; they need an "
                             "EnumerableWorld (world=...)")
        self.tokenizer = policy.tokenizer
        self.prompt_ids, self.prompt_texts = self._check_prompts(prompts, policy)
        self.max_new_tokens = cfg.max_new_tokens or (world.response_len if world is not None else 32)
        limit = policy.context_limit
        longest = max(len(p) for p in self.prompt_ids)
        if limit is not None and longest + self.max_new_tokens > limit:
            raise ValueError(
                f"LLMBackend: prompts of up to {longest} tokens plus max_new_tokens = {self.max_new_tokens} exceed "
                f"the model's context of {limit} tokens; shorten the prompts or max_new_tokens")
        # every rank holds the same number of each step's prompts (DDP runs the same passes everywhere)
        self.parallel.check_divides(min(cfg.prompts_per_step or len(self.prompt_ids), len(self.prompt_ids)),
                                    "prompts per step (--prompts-per-step, or all prompts)")
        self.oracle = oracle
        # LoRA's A matrices are drawn from torch's global RNG: draw them from the seed, so a run is a
        # function of its configuration (and a re-issued command after a kill rebuilds the same base)
        self.gradient_checkpointing = cfg.resolved_gradient_checkpointing(policy.model, world)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.live = snapshots.prepare(policy, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                          target_modules=cfg.target_modules, snapshot_device=cfg.snapshot_device,
                                          gradient_checkpointing=self.gradient_checkpointing)
        self.reference = snapshots.reference(self.live)
        self.realiser = self._make_realiser()
        self.generator = make_generator(cfg.seed, self.live.device)
        self.timings = Timings()
        self.tokens = 0  # response tokens sampled (anchor and opponent samples)
        self._win_rate_calls = 0
        self._eval_queries = 0
        self._draws = 0  # sampling events so far (the same on every rank): seeds of the per-row generators
        self._queries_offset = 0  # judgements of the other ranks (0 in one process)
        self._step: _Step | None = None
        self._check_oracle()
        if world is not None:
            from games import ExactBackend, PreferenceGame

            self._exact = ExactBackend(PreferenceGame(world.P_resp, name="world"))
            # the same L (hence the same default steps) as the exact backend on the induced game
            self.lipschitz = self._exact.lipschitz

    @property
    def writes_checkpoints(self) -> bool:
        """Whether ``algorithms.run`` writes this process's checkpoints: rank 0 only (every rank holds the same state)."""
        return self.parallel.is_main

    @property
    def last_stats(self) -> dict:
        """The last realisation's fit statistics (the realiser's: loss, grad_norm, seconds, ...)."""
        return {} if self._step is None else dict(self._step.stats)

    # -- capabilities -------------------------------------------------------------------------------
    @property
    def exact_metrics(self) -> bool:
        """Whether duality gaps are exact (only in an enumerable world, where every response is listed)."""
        return self.world is not None

    # -- validation -----------------------------------------------------------------------------------
    @staticmethod
    def _check_prompts(prompts, policy):
        """(token-id lists, texts) from ``llm.data.Prompt`` objects or token-id lists, checked."""
        where = "LLMBackend"
        if prompts is None or isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__len__") or len(prompts) == 0:
            V.fail("prompts", prompts, "it must be a non-empty list of llm.data.Prompt (llm.data.load_prompts) or of "
                   "token-id lists", where)
        vocab = getattr(policy.model.config, "vocab_size", None) or len(policy.tokenizer)
        ids, texts = [], []
        for i, p in enumerate(prompts):
            text = None
            if hasattr(p, "ids") and hasattr(p, "text"):
                text, p_ids = p.text, p.ids
            elif isinstance(p, (str, bytes)) or not hasattr(p, "__len__"):
                V.fail(f"prompts[{i}]", p, "a prompt must be an llm.data.Prompt or a list of token ids; load text "
                       "prompts with llm.data.load_prompts(path, tokenizer)", where, V.WrongType)
            else:
                p_ids = p
            try:
                p_ids = [int(t) for t in p_ids]
                ok = all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in
                         (p.ids if hasattr(p, "ids") else p))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                V.fail(f"prompts[{i}]", p, "token ids must be integers", where, V.WrongType)
            if not p_ids:
                V.fail(f"prompts[{i}]", p, "a prompt needs at least one token (e.g. BOS) to condition on", where)
            bad = [t for t in p_ids if not 0 <= t < vocab]
            if bad:
                V.fail(f"prompts[{i}]", p, f"token id {bad[0]} is outside the model's vocabulary 0..{vocab - 1}", where)
            ids.append(p_ids)
            texts.append(text if text is not None else policy.tokenizer.decode(p_ids, skip_special_tokens=True))
        return ids, texts

    def _check_oracle(self):
        """Refuse an oracle that is not antisymmetric, before any training step: pairs of DIFFERENT
        responses sampled from the model for the first prompt, judged in both orders."""
        from .oracles import check_antisymmetric

        before = getattr(self.oracle, "queries", 0)
        gen = make_generator(12345, self.live.device)
        spent = self.timings.sampling
        ys = self._sample(self.live, [self.prompt_ids[0]] * 6, generator=gen, count=False)
        self.timings.sampling = spent  # a validation is not the run's time either
        texts = list(dict.fromkeys(self._decode(ys)))
        if len(texts) < 2:  # a peaked model: listed responses (world) or two fixed different texts
            extra = self.world.responses[:6] if self.world is not None else None
            texts = list(dict.fromkeys(texts + (self._decode(extra) if extra else ["Yes.", "No, I do not think so."])))
        if len(texts) >= 2:
            a, b = texts[:-1], texts[1:]
            check_antisymmetric(self.oracle, [self.prompt_texts[0]] * len(a), a, b)
        if hasattr(self.oracle, "queries"):
            self.oracle.queries = before  # a validation is not a query of the run

    def _make_realiser(self):
        from .realise import make_realiser

        cfg = self.config
        opts = dict(cfg.realiser_options)
        optimizer = cfg.optimizer or ("lbfgs" if self.world is not None and cfg.realiser == "regression" else None)
        for key, value in (("optimizer", optimizer), ("lr", cfg.lr), ("steps", cfg.k)):
            if value is not None:
                opts.setdefault(key, value)
        return make_realiser(cfg.realiser, **opts)

    # -- small helpers ------------------------------------------------------------------------------------
    def _autocast(self):
        dev = self.live.device
        on = self.config.autocast
        if on is None:
            on = dev.type == "cuda" and next(self.live.model.parameters()).dtype == torch.float32
        if not on:
            return contextlib.nullcontext()
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)

    def _decode(self, responses) -> list[str]:
        return [self.tokenizer.decode(list(y), skip_special_tokens=True) for y in responses]

    def _sample(self, policy, prompts, *, generator=None, count=True, mixture=None, rows=None, stream="responses",
                draw=0):
        """Samples for ``prompts``; with ``rows`` (global prompt index, sample index) per prompt, each row
        draws from its own generator seeded by (seed, stream, draw, row) (``llm.distributed``): the same
        samples whatever the number of ranks or the batching."""
        cfg = self.config
        gen = self.generator if generator is None else generator
        if rows is not None:
            gen = self.parallel.row_generators(cfg.seed, stream, draw, rows)
        kw = dict(generator=gen, temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.sample_batch_size)
        with _timed(self.timings, "sampling"), self._autocast():
            if mixture is not None:
                ys = sample_mixture(mixture.policy, mixture.other, prompts, mixture.weight, self.max_new_tokens, **kw)
            else:
                ys = sample(policy, prompts, self.max_new_tokens, **kw)
        if count:
            self.tokens += sum(len(y) for y in ys)
        return [list(y) for y in ys]

    # -- the interface the algorithms use ---------------------------------------------------------------
    def initial_policy(self, init=None):
        if init is not None:
            V.fail("init", init, "the LLM backend starts from its model; pass init=None (load the model you want "
                   "instead)", "LLMBackend")
        return self.reference

    @property
    def queries(self) -> int:
        """Oracle pairs judged for training (sampled win rates) or win-rate evaluations (exact ones)."""
        if self.config.win_rates == "exact":
            return self._win_rate_calls
        return int(getattr(self.oracle, "queries", 0)) - self._eval_queries + self._queries_offset

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
        from . import snapshots
        from .realise import StepBatch

        terms = [(float(c), t) for c, t in terms if float(c) != 0.0]
        policy_terms = [(c, t) for c, t in terms if not isinstance(t, LMWinRates)]
        g_terms = [(c, t) for c, t in terms if isinstance(t, LMWinRates)]
        if not policy_terms:
            raise ValueError("a realised target needs a policy term (the anchor) to sample responses from")
        anchor = policy_terms[0][1]
        anchor = anchor.policy if isinstance(anchor, Mixture) else anchor
        # the previous step holds its anchor and frozen log-probs: drop them before this step's fit
        # (with full fine-tuning, one model copy less at the peak)
        self._step = None
        q0, tok0 = int(getattr(self.oracle, "queries", 0)), self.tokens
        step = self._responses(anchor)
        R = len(step.responses)
        device = self.live.device
        g = torch.zeros(R, dtype=torch.float64)
        for c, h in g_terms:
            g += c * self._g_hat(h, step)
        T = max((len(y) for y in step.responses), default=0)
        terms_out, start_coef = [], 0.0
        for c, p in policy_terms:
            if p is anchor and id(anchor) not in step.logps:
                # the live model holds the anchor's weights when the fit starts: the realiser takes these
                # log-probs from its first forward pass instead of a frozen pass of its own
                start_coef += c
                continue
            tok = self._token_logprobs(p, step)
            terms_out.append((c, tok.to(device)))
        mask = torch.zeros(R, T, dtype=torch.bool)
        for r, y in enumerate(step.responses):
            mask[r, : len(y)] = True
        group = torch.empty(R, dtype=torch.long)
        weights = torch.empty(R, dtype=torch.float64)
        for gi, (i, rows) in enumerate(step.groups.items()):
            group[rows] = gi
            weights[rows] = 1.0 / len(rows)
        batch = StepBatch(prompts=[self.prompt_ids[i] for i in step.prompt_index], responses=step.responses,
                          group=group.to(device), weights=weights.to(device), g=g.to(device),
                          policy_terms=terms_out, mask=mask.to(device), n_groups_global=step.n_global,
                          start_coef=start_coef)
        snapshots.load_into(self.live, anchor)
        par = self.parallel
        with _timed(self.timings, "fit"), self._autocast(), par.training(self.live):
            stats = self.realiser.fit(self.live, batch, accelerator=par.accelerator)
        start = self.realiser.take_start_logps()
        if start is not None and id(anchor) not in step.logps:  # the anchor's log-probs, for the metrics
            step.logps[id(anchor)] = (anchor, start.float())
        step.stats = dict(stats or {})
        if par.world_size > 1:  # the realiser's loss is this rank's share: sum it; count every rank's work
            dq, dt = int(getattr(self.oracle, "queries", 0)) - q0, self.tokens - tok0
            tot = par.sum({"loss": step.stats.get("loss", math.nan), "queries": dq, "tokens": dt})
            step.stats["loss"] = tot["loss"]
            self._queries_offset += int(tot["queries"]) - dq
            self.tokens += int(tot["tokens"]) - dt
        new = snapshots.snapshot(self.live)
        step.result = new
        self._step = step
        return new

    # -- realisation internals ----------------------------------------------------------------------------
    def _prompt_batch(self):
        n = self.config.prompts_per_step
        if n is None or n >= len(self.prompt_ids):
            return list(range(len(self.prompt_ids)))
        idx = torch.randperm(len(self.prompt_ids), generator=self.generator, device=self.generator.device)[:n]
        return sorted(idx.tolist())

    def _responses(self, anchor) -> _Step:
        """The step's rows: K samples per prompt (ONE sampler call for all prompts), or every listed response.
        With several ranks, this rank's shard of the step's prompts."""
        everything = self._prompt_batch()
        idx = self.parallel.shard(everything)
        draw = self._draws
        self._draws += 1
        if self.config.pairs == "all":
            ys_per = {i: [list(y) for y in self.world.responses] for i in idx}
            rows_i = [i for i in idx for _ in ys_per[i]]
            rows_y = [y for i in idx for y in ys_per[i]]
        else:
            K = self.config.samples
            rows_i = [i for i in idx for _ in range(K)]
            rows_y = self._sample(anchor, [self.prompt_ids[i] for i in rows_i], rows=_rows(rows_i), draw=draw)
        groups: dict = {}
        for r, i in enumerate(rows_i):
            groups.setdefault(i, []).append(r)
        return _Step(rows_i, rows_y, self._decode(rows_y), groups, anchor, {}, None, {}, n_global=len(everything))

    def _token_logprobs(self, policy, step: _Step) -> torch.Tensor:
        """(R, T) per-token log-probs of a frozen policy on the step's responses, once per policy, no grad."""
        key = id(policy)
        if key in step.logps:
            return step.logps[key][1]
        R = len(step.responses)
        T = max((len(y) for y in step.responses), default=0)
        out = torch.zeros(R, T, dtype=torch.float32)
        n = self.config.logprob_batch_size
        from . import snapshots

        with _timed(self.timings, "logprobs"), torch.no_grad(), self._autocast(), snapshots.active(policy):
            for s in range(0, R, n):
                rows = range(s, min(R, s + n))
                xs = [self.prompt_ids[step.prompt_index[r]] for r in rows]
                ys = [step.responses[r] for r in rows]
                lp = self._policy_token_logprobs(policy, xs, ys)
                out[s: s + len(ys), : lp.shape[1]] = lp.float().cpu()
        step.logps[key] = (policy, out)
        return out

    @staticmethod
    def _policy_token_logprobs(policy, prompts, responses):
        if isinstance(policy, Mixture):
            lp, targets, mask = policy.policy.response_logits(prompts, responses, grad=False)
            lm, _, _ = policy.other.response_logits(prompts, responses, grad=False)
            mixed = (1 - policy.weight) * lp + policy.weight * lm.to(lp.device)
            mixed = policy.other.restrict(policy.policy.restrict(mixed))
            return gather_logprobs(mixed, targets, mask)
        return policy.token_logprobs(prompts, responses, grad=False)[0]

    def _g_hat(self, handle: LMWinRates, step: _Step) -> torch.Tensor:
        """(R,) ĝ(y) = P(y ≻ σ | x) for every row of the step (see the module docstring)."""
        R = len(step.responses)
        out = torch.zeros(R, dtype=torch.float64)
        if self.config.win_rates == "exact":
            for i, rows in step.groups.items():
                if i not in handle.exact:
                    dist = self._opponent_distribution(handle.opponent, i).cpu()
                    handle.exact[i] = torch.as_tensor(self.world.P_resp, dtype=torch.float64) @ dist
                out[rows] = handle.exact[i][[self.world.index_of(step.responses[r]) for r in rows]]
            return out
        draw = self._draws  # counted whether or not this rank samples: the count stays the same on every rank
        self._draws += 1
        own = self.config.pairs == "sampled" and self.config.opponents is None and handle.opponent is step.anchor
        need = [i for i in step.groups if i not in handle.samples]
        if need and own:
            for i in need:
                handle.samples[i] = [step.texts[r] for r in step.groups[i]]
            if step.g_handle is None:
                step.g_handle = handle
        elif need:
            m = self.config.opponents or self.config.samples
            rows_i = [i for i in need for _ in range(m)]
            xs = [self.prompt_ids[i] for i in rows_i]
            sigma = handle.opponent
            zs = self._sample(sigma, xs, mixture=sigma if isinstance(sigma, Mixture) else None, rows=_rows(rows_i),
                              stream="opponents", draw=draw)
            zt = self._decode(zs)
            for i in need:
                handle.samples[i] = [zt[r] for r, j in enumerate(rows_i) if j == i]
        loo = own and handle is step.g_handle
        # every (prompt, a, b) pair this estimate needs, judged once in ONE oracle call
        self._judge(handle.judged, [(i, step.texts[r], z) for i, rows in step.groups.items() for r in rows
                                    for z in handle.samples[i]])
        for i, rows in step.groups.items():
            zs = handle.samples[i]
            for k, r in enumerate(rows):
                vals = [self._pair(handle.judged, i, step.texts[r], z) for j, z in enumerate(zs) if not (loo and j == k)]
                out[r] = sum(vals) / len(vals)
        return out

    @staticmethod
    def _pair(judged, i, a, b) -> float:
        if a == b:
            return 0.5
        if (i, a, b) in judged:
            return judged[(i, a, b)]
        return 1.0 - judged[(i, b, a)]

    def _judge(self, judged, triples):
        """Judge each needed unordered pair of different texts once (antisymmetry gives the other order)."""
        todo = {}
        for i, a, b in triples:
            if a == b or (i, a, b) in judged or (i, b, a) in judged or (i, b, a) in todo:
                continue
            todo[(i, a, b)] = None
        if not todo:
            return
        keys = list(todo)
        with _timed(self.timings, "oracle"):
            p = self.oracle.prob([self.prompt_texts[i] for i, _, _ in keys], [a for _, a, _ in keys],
                                 [b for _, _, b in keys])
        for key, v in zip(keys, p.double().cpu().tolist()):
            judged[key] = v

    def _opponent_distribution(self, sigma, prompt_index):
        w = self.world
        if isinstance(sigma, Mixture):
            return w.mixture_distribution(sigma.policy, sigma.other, sigma.weight, prompt_index)
        return w.exact_distribution(sigma, prompt_index)

    # -- metrics of a real run (no world needed) -----------------------------------------------------------
    def extra_metrics(self, policy) -> dict:
        """Cheap estimates for a real run, recorded by ``algorithms.run`` at every record point.

        loss: the realiser's final loss of the last step. kl_ref: sequence-level KL(π‖μ) to the
        reference and win_rate_ref: P(π ≻ μ) under the oracle, both estimated on the last step's
        responses y_i (sampled from the anchor π_a) with self-normalised importance weights per
        prompt, w^π_i ∝ π(y_i)/π_a(y_i) and w^μ_i ∝ μ(y_i)/π_a(y_i):
        KL ≈ Σ_i w^π_i (log π(y_i) − log μ(y_i)), win ≈ Σ_{i≠j} w^π_i w^μ_j P(y_i ≻ y_j) / Σ_{i≠j} w^π_i w^μ_j,
        averaged over the step's prompts. It costs one no-grad forward of π on the step's responses
        (μ's and π_a's log-probs are reused when the step already computed them) and reuses the
        step's leave-one-out judgements (pairs not yet judged are judged and not counted as training
        queries). Reliable while π stays close to π_a (one step); exact at π = μ (KL 0, win ½).
        queries: training judgements so far; tokens: response tokens sampled; seconds: time in the
        backend's phases; sampling_s / oracle_s / logprobs_s / fit_s: the breakdown (cumulative).
        """
        t = self.timings
        out = {"tokens": float(self.tokens), "seconds": t.total, "sampling_s": t.sampling, "oracle_s": t.oracle,
               "logprobs_s": t.logprobs, "fit_s": t.fit}
        step = self._step
        if policy is self.reference:
            out.update(loss=math.nan if step is None else float(step.stats.get("loss", math.nan)),
                       kl_ref=0.0, win_rate_ref=0.5)
            return out
        if step is None:
            out.update(loss=math.nan, kl_ref=math.nan, win_rate_ref=math.nan)
            return out
        out["loss"] = float(step.stats.get("loss", math.nan))
        t0 = time.perf_counter()
        kl, win = self._estimate_vs_reference(policy, step)
        if self.parallel.world_size > 1:  # this rank's prompts' mean → the mean over every rank's prompts
            m = self.parallel.mean({"kl_ref": kl, "win_rate_ref": win}, weight=len(step.groups))
            kl, win = m["kl_ref"], m["win_rate_ref"]
        self.timings.metrics += time.perf_counter() - t0
        out.update(kl_ref=kl, win_rate_ref=win, seconds=self.timings.total)
        return out

    def _estimate_vs_reference(self, policy, step: _Step):
        seq = {}
        for name, p in (("pi", policy), ("mu", self.reference), ("a", step.anchor)):
            seq[name] = self._token_logprobs(p, step).double().sum(-1)
        judged = step.g_handle.judged if step.g_handle is not None else {}
        before = getattr(self.oracle, "queries", 0)
        self._judge(judged, [(i, step.texts[r], step.texts[s]) for i, rows in step.groups.items()
                             for r in rows for s in rows if r < s])
        self._eval_queries += getattr(self.oracle, "queries", 0) - before
        kls, wins = [], []
        for i, rows in step.groups.items():
            wp = torch.softmax(seq["pi"][rows] - seq["a"][rows], 0)
            wm = torch.softmax(seq["mu"][rows] - seq["a"][rows], 0)
            kls.append(float((wp * (seq["pi"][rows] - seq["mu"][rows])).sum()))
            num = den = 0.0
            for j, r in enumerate(rows):
                for k, s in enumerate(rows):
                    if j != k:
                        ww = float(wp[j] * wm[k])
                        num += ww * self._pair(judged, i, step.texts[r], step.texts[s])
                        den += ww
            wins.append(num / den if den > 0 else math.nan)
        return float(np.mean(kls)), float(np.mean(wins))

    # -- exact metrics (in an enumerable world) ------------------------------------------------------------
    def _need_world(self, what):
        if self.world is None:
            raise ValueError(f"LLMBackend.{what} is exact and needs an EnumerableWorld (LLMBackend(..., world=world)); "
                             "a real run records extra_metrics instead (backend.exact_metrics is False)")

    def _tabular(self, policy, prompt: int = 0):
        self._need_world("metrics")
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
        n = len(self.world.prompts)
        return float(np.mean([fn(*(None if p is None else self._tabular(p, i) for p in policies)) for i in range(n)]))

    def duality_gap(self, policy):
        """Exact duality gap of the LM's response distribution, averaged over the world's prompts."""
        self._need_world("duality_gap")
        return self._per_prompt(self._exact.duality_gap, policy)

    def regularized_gap(self, policy, beta, magnet=None):
        self._need_world("regularized_gap")
        magnet = self.reference if magnet is None else magnet
        return self._per_prompt(lambda p, m: self._exact.regularized_gap(p, beta, m), policy, magnet)

    def kl(self, p, q):
        self._need_world("kl")
        return self._per_prompt(self._exact.kl, p, q)

    def from_probs(self, policy):
        """Policies on an LM are models: a given Policy is snapshotted; probabilities are refused."""
        from . import snapshots

        if isinstance(policy, Policy):
            return snapshots.snapshot(policy)
        raise ValueError("on the LLM backend a policy (e.g. a magnet) is a llm.Policy, not probabilities; "
                         "pass a Policy, or None for the reference model")

    def to_numpy(self, policy):
        """The exact response distribution for prompt 0 (numpy) in a world; the policy itself otherwise."""
        if self.world is None:
            return policy
        return np.exp(self._tabular(policy).logp[0])

    # -- checkpointing (algorithms.run's one mechanism) --------------------------------------------------
    def state_dict(self) -> dict:
        """The sampling RNG, counters and timings (run() keeps torch's global RNG itself). Not the live weights: every realisation first loads its anchor
        (a snapshot the algorithm state holds and run() checkpoints) into the live model, so the live
        weights between steps never influence a later step — storing them would only double the file."""
        from . import snapshots

        # oracle_queries counts every rank's judgements (offset): nothing here depends on the number of
        # ranks, so a checkpoint of an N-process run resumes with any number of processes
        return {"generator": self.generator.get_state(), "base_id": snapshots.base_id(self.live),
                "oracle_queries": int(getattr(self.oracle, "queries", 0)) + self._queries_offset,
                "eval_queries": self._eval_queries, "draws": self._draws,
                "win_rate_calls": self._win_rate_calls, "tokens": self.tokens, "timings": asdict(self.timings)}

    def load_state_dict(self, d: dict) -> None:
        from . import snapshots

        self.generator.set_state(d["generator"])
        # the checkpoint's snapshots (anchor, magnet, reference) name the module of the process that
        # wrote them: bind them to this process's live module (they hold tensors only)
        snapshots.adopt(self.live, d["base_id"])
        if hasattr(self.oracle, "queries"):
            self.oracle.queries = d["oracle_queries"]
        self._eval_queries = d["eval_queries"]
        self._queries_offset = 0
        self._draws = d.get("draws", 0)
        self._win_rate_calls = d["win_rate_calls"]
        self.tokens = d["tokens"]
        self.timings = Timings(**d["timings"])

    def fingerprint(self) -> dict:
        """What must match for a checkpoint to continue this run (JSON-able): the model, the prompts,
        the oracle, the world and the realisation settings."""
        model = self.live.model
        cfg = asdict(self.config)
        cfg["target_modules"] = list(cfg["target_modules"]) if cfg["target_modules"] else None
        cfg.pop("gradient_checkpointing")  # memory and time, not the result: a resumed run may change it
        h = hashlib.sha256(json.dumps(self.prompt_ids).encode())
        out = {"model": str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__),
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "prompts": h.hexdigest()[:16], "n_prompts": len(self.prompt_ids),
               "oracle": getattr(self.oracle, "spec", None) or type(self.oracle).__name__,
               "max_new_tokens": self.max_new_tokens, "llm_config": json.loads(json.dumps(cfg, default=str))}
        if self.world is not None:
            out["world"] = {"P": hashlib.sha256(np.ascontiguousarray(self.world.P).tobytes()).hexdigest()[:16],
                            "response_len": self.world.response_len, "n_prompts": len(self.world.prompts)}
        return out

    def __repr__(self):
        return f"LLMBackend({self.live!r}, world={self.world is not None}, {self.config})"
