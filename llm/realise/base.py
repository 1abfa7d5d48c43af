"""The optimisation loop shared by the realisers: minibatches of prompts, micro-batches, gradient
accumulation, clipping, AdamW/SGD/LBFGS, and optional data parallelism through ``accelerate``."""
from __future__ import annotations

import contextlib
import math
import time

import torch

from games import validation as V

from .. import snapshots
from .batch import StepBatch

#: AdamW learning rates that move a pretrained model without breaking it (see ``Realiser``).
DEFAULT_LR = {"lora": 1.25e-5, "full": 2.5e-7}
#: optimiser steps per realisation: one for first-order methods (one pass over the minibatch, as
#: online RLHF trainers take: on SmolLM2 with LoRA at the default lr it cut the regression loss
#: 0.013 → 0.0022, of 0.0009 reached in 4 steps, at a quarter of the fit's cost — see ``Realiser``),
#: a few dozen function evaluations for LBFGS (converges on the toy world's problems).
DEFAULT_STEPS = {"adamw": 1, "sgd": 1, "lbfgs": 30}


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


class Realiser:
    """Fits the live policy to one StepBatch; subclasses define the per-micro-batch loss.

    optimizer: "adamw" (default), "sgd" or "lbfgs" (full batch, strong-Wolfe line search: for the
    enumerable toy world, where it solves a realisation to ~1e-13; on a real model each LBFGS
    history pair costs two model-sized vectors, which is why it is not the default).
    lr: learning rate; None = 1.25e-5 with LoRA, 2.5e-7 with full fine-tuning. A fresh AdamW's first
    step moves every parameter by ≈ lr whatever the gradient's scale, so lr sets the size of the
    first move, and it must match the size of the step being realised. Measured on SmolLM2-135M
    (8 prompts × 4 samples × 32 tokens, MPO at its defaults, 4 AdamW steps per realisation, the
    regression loss before each step; ``tests/benchmarks/llm_step.py``): with LoRA r = 8 at 5e-5 the
    loss went 0.013 → 0.051 → 0.055 → 0.027 (every step overshot: the fit ended farther from the
    target than the anchor was), at 1.25e-5 it went 0.013 → 0.0022 → 0.0009 → 0.0027 (a 5-14×
    reduction); full fine-tuning at 1e-6 went 0.013 → 0.082 → 0.084 → 0.045 (overshooting too), at
    2.5e-7 0.013 → 0.0019 → 0.0016 → 0.0028 (and 0.0125 → 0.0009 → … on the next step): with the
    default single step, each lr takes the loss down 7-14×.
    A larger step (η = 1, α = 0.1) has a farther target and a larger right lr
    (tests/benchmarks/realise_smollm2.py); pass lr for such settings. The trial's Adam lr 0.05
    destroyed SmolLM2 in one step. Ignored by LBFGS (lr 1).
    steps: optimiser steps per realisation (None: 1 first-order, 30 LBFGS evaluations). The reported
    ``loss`` is the value before the last step: with one step, the anchor's distance to the target.
    minibatch: prompts per optimiser step (None: every prompt of the batch — full-batch steps);
    minibatches are visited in order, cycling. micro_batch: prompts per forward/backward pass
    (memory is bounded by micro_batch × samples × sequence length, not by the step); gradients of a
    minibatch's micro-batches accumulate before each optimiser step. Default 1: on SmolLM2-135M
    with LoRA r = 8 (8 prompts × 4 samples × 32 tokens, 2 CPU threads) one prompt per pass peaked at
    2.04 GiB against 3.25 GiB for two, and the step was no slower (91.9 s against 99.0 s for two MPO
    steps: the CPU gains nothing from wider passes, and glibc keeps the larger activations'
    fragments); on a GPU raise it for throughput. max_grad_norm: clip the
    global gradient norm (None: no clipping). weight_decay: AdamW's decoupled decay (0: the target
    is the regulariser). Minibatches are taken in prompt order (deterministic: no seed).

    ``fit(live, batch, accelerator=None) -> dict`` trains ``live``'s trainable parameters in place
    from the weights it holds. Losses are means over the GLOBAL number of prompts
    (``batch.n_groups_global``) so ranks holding part of the prompts each contribute their share;
    with an ``accelerate.Accelerator`` the forward runs through ``live.model`` (pass a live policy
    whose model is the prepared module), backward is ``accelerator.backward`` (the loss is multiplied
    by the number of processes to undo DDP's gradient average: the sum over ranks is the 1-rank
    gradient), clipping ``accelerator.clip_grad_norm_``, and all but the last micro-batch of a step
    run under ``accelerator.no_sync``. Keep the accelerator's own gradient_accumulation_steps at 1.
    """

    name = "realiser"
    optimizers = ("adamw", "sgd", "lbfgs")
    #: whether the loss needs the start policy's log-probs even without a start term (policy gradient:
    #: its importance ratios are against the policy the responses were sampled from)
    needs_start = False

    def __init__(self, *, optimizer: str = "adamw", lr: float | None = None, steps: int | None = None,
                 minibatch: int | None = None, micro_batch: int = 1, max_grad_norm: float | None = 1.0,
                 weight_decay: float = 0.0):
        self.optimizer = V.choice(optimizer, "optimizer", self.optimizers)
        self.lr = V.number(lr, "lr", low=0.0, low_open=True, allow_none=True)
        self.steps = V.integer(steps, "steps", low=1, allow_none=True)
        self.minibatch = V.integer(minibatch, "minibatch", low=1, allow_none=True)
        self.micro_batch = V.integer(micro_batch, "micro_batch", low=1)
        self.max_grad_norm = V.number(max_grad_norm, "max_grad_norm", low=0.0, low_open=True, allow_none=True)
        self.weight_decay = V.number(weight_decay, "weight_decay", low=0.0)

    # -- what subclasses provide ---------------------------------------------------------------
    def loss(self, live, sub: StepBatch, rows: torch.Tensor, norm: float) -> torch.Tensor:
        """Scalar loss of the micro-batch ``sub`` (rows ``rows`` of the whole batch), divided by ``norm``."""
        raise NotImplementedError

    def begin(self, live, batch: StepBatch, first_groups: list[int]) -> None:
        """Before the first update: the start policy's log-probs of the rows outside the first
        minibatch need one no-grad pass now (the first minibatch's come from its first forward pass,
        at no extra cost: see :meth:`start_logps`)."""
        self._start = None
        if not (self.needs_start or batch.start_coef):
            return
        self._start = torch.full(batch.mask.shape, float("nan"), dtype=torch.float64)
        rest = sorted(set(range(batch.n_groups)) - set(first_groups))
        for i in range(0, len(rest), self.micro_batch):
            mg = rest[i:i + self.micro_batch]
            sub = batch.select(mg)
            with torch.no_grad():
                lp, _ = live.token_logprobs(sub.prompts, sub.responses, grad=False)
            self._record_start(batch.rows_of(mg), lp)

    def _record_start(self, rows, lp):
        self._start[rows, :lp.shape[1]] = lp.detach().double().cpu()

    def start_logps(self, rows, lp, mask) -> torch.Tensor:
        """(n, T) float64 per-token log-probs of the start policy (the live one before any update) on
        these rows, on ``lp``'s device: recorded from ``lp`` — this pass's log-probs — on the rows'
        first visit, which happens before the first update."""
        T = lp.shape[1]
        mask = mask.cpu()
        if torch.isnan(self._start[rows, :T][mask]).any():  # first visit: this pass is at the start
            self._record_start(rows, lp)
        return self._start[rows, :T].masked_fill(~mask, 0.0).to(lp.device)

    # -- the loop --------------------------------------------------------------------------------
    def options(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def resolved_lr(self, live) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR["lora" if snapshots.is_lora(live) else "full"]

    def fit(self, live, batch: StepBatch, accelerator=None) -> dict:
        if not isinstance(batch, StepBatch):
            raise ValueError("batch = a non-StepBatch is not allowed; build one with llm.realise.StepBatch")
        if getattr(live, "frozen", False):
            raise ValueError("live = a frozen snapshot is not allowed; fit the live policy (llm.snapshots.prepare)")
        params = snapshots.trainable_parameters(live)
        if not params:
            raise ValueError("live has no trainable parameters (prepare it with llm.snapshots.prepare)")
        t0 = time.perf_counter()
        steps = self.steps or DEFAULT_STEPS[self.optimizer]
        G = batch.n_groups
        # local prompts → global prompts: each rank holds about G of n_groups_global
        scale = batch.n_groups_global / G
        groups = list(range(G))
        minibatches = [groups] if self.minibatch is None or self.optimizer == "lbfgs" else _chunks(groups, self.minibatch)
        model = live.model
        was_training = model.training
        model.train()
        stats = {"realiser": self.name, "optimizer": self.optimizer, "steps": steps, "losses": [],
                 "grad_norm": math.nan, "passes": 0}
        mult = accelerator.num_processes if accelerator is not None else 1

        def accumulate(mb):
            """Forward/backward over the micro-batches of one minibatch; returns the summed loss."""
            norm = len(mb) * scale
            micro = _chunks(mb, self.micro_batch)
            total = 0.0
            for j, mg in enumerate(micro):
                sync = accelerator is None or j == len(micro) - 1
                ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                with ctx:
                    rows = batch.rows_of(mg)
                    loss = self.loss(live, batch.select(mg), rows, norm)
                    if accelerator is not None:
                        accelerator.backward(loss * mult)
                    else:
                        loss.backward()
                total += float(loss.detach())
                stats["passes"] += 1
            return total

        def clip():
            limit = self.max_grad_norm if self.max_grad_norm is not None else math.inf
            if accelerator is not None:
                return float(accelerator.clip_grad_norm_(params, limit))
            return float(torch.nn.utils.clip_grad_norm_(params, limit))

        try:
            self.begin(live, batch, minibatches[0])
            if self.optimizer == "lbfgs":
                opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, history_size=20,
                                        line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-14)

                def closure():
                    opt.zero_grad(set_to_none=True)
                    value = accumulate(groups)
                    if accelerator is not None and accelerator.num_processes > 1:
                        # the line search must see the GLOBAL loss, or ranks take different steps
                        value = float(accelerator.reduce(torch.tensor(value, dtype=torch.float64,
                                                                      device=accelerator.device), reduction="sum"))
                    stats["losses"].append(value)
                    return torch.tensor(value, dtype=torch.float64)

                opt.step(closure)
                stats["grad_norm"] = clip()  # the norm after the last evaluation (no step follows)
                opt.zero_grad(set_to_none=True)
            else:
                lr = self.resolved_lr(live)
                stats["lr"] = lr
                if self.optimizer == "adamw":
                    opt = torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
                else:
                    opt = torch.optim.SGD(params, lr=lr, weight_decay=self.weight_decay)
                for step in range(steps):
                    opt.zero_grad(set_to_none=True)
                    stats["losses"].append(accumulate(minibatches[step % len(minibatches)]))
                    stats["grad_norm"] = clip()
                    opt.step()
                opt.zero_grad(set_to_none=True)
        finally:
            model.train(was_training)
            # the start policy's log-probs on every row (the backend reuses them for its metrics)
            start = getattr(self, "_start", None)
            self._last_start = (None if start is None or torch.isnan(start[batch.mask]).any()
                                else start.masked_fill(~batch.mask, 0.0))
            self.end()
        stats["loss"] = stats["losses"][-1]
        stats["seconds"] = time.perf_counter() - t0
        stats["tokens"] = batch.tokens
        return stats

    def end(self) -> None:
        """Called after the fit (drop per-fit caches)."""
        self._start = None

    def take_start_logps(self) -> torch.Tensor | None:
        """(R, T) float64 per-token log-probs of the start policy on every row of the last fit (0 on
        padding), or None when the fit did not record them all; handed over once (then None)."""
        out, self._last_start = getattr(self, "_last_start", None), None
        return out

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"
