"""A causal LM seen as a policy over responses: exact sequence log-probabilities.

Prompts and responses are lists of token ids. A policy may be *restricted* to a
set of allowed next tokens (``allowed_token_ids``): the logits of every other
token are set to -inf before the softmax, both here and in ``llm.sampling``,
so the log-probs used for training are exactly those of the sampler.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .models import forward_names, load_model, load_tokenizer

TokenSeqs = Sequence[Sequence[int]]


def context_limit(model: torch.nn.Module) -> int | None:
    """Longest sequence the model accepts (None when the config does not say)."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_lengths(model: torch.nn.Module, lengths: Iterable[int], what: str = "prompt+response") -> None:
    """Raise ValueError if any total length exceeds the model's context."""
    limit = context_limit(model)
    if limit is None:
        return
    longest = max(lengths, default=0)
    if longest > limit:
        raise ValueError(
            f"{what} length {longest} exceeds the model's context limit of {limit} "
            "tokens (config.max_position_embeddings); shorten prompts or responses"
        )


def pad_batch(seqs: TokenSeqs, pad_id: int, side: str, device=None):
    """Pad id lists into (input_ids, attention_mask, position_ids).

    Position ids count real tokens only, so a sequence gets the same positions
    whatever its padding: this is what makes left and right padding agree.
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        span = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, span] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, span] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _as_ids(value) -> list[int]:
    """An id, a list of ids or None → a list of ints (a bare int is never compared with a list)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [int(v) for v in value if v is not None]
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(value)]


def end_token_ids(model: torch.nn.Module | None, tokenizer=None) -> tuple[int, ...]:
    """Every end id declared by the tokenizer, ``model.config`` and ``model.generation_config``.

    Order kept (tokenizer first), duplicates dropped. transformers' ``generate`` stops on the
    union of the config's and generation config's ids; we add the tokenizer's, which a chat
    tokenizer may declare (e.g. ``<|im_end|>``) when the config does not.
    """
    ids: list[int] = []
    if tokenizer is not None:
        ids += _as_ids(getattr(tokenizer, "eos_token_id", None))
    if model is not None:
        ids += _as_ids(getattr(getattr(model, "config", None), "eos_token_id", None))
        ids += _as_ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    return tuple(dict.fromkeys(ids))


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[target] per position, 0 where ``mask`` is False."""
    logps = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return logps.masked_fill(~mask, 0.0)


def mask_after_end(logps: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, end_ids) -> torch.Tensor:
    """-inf for every real token that follows an end id in its row (impossible under the sampler)."""
    if not end_ids or targets.numel() == 0:
        return logps
    is_end = torch.isin(targets, torch.tensor(list(end_ids), device=targets.device)) & mask
    after = (is_end.long().cumsum(-1) - is_end.long()) > 0
    return logps.masked_fill(after & mask, float("-inf"))


class Policy:
    """(model, tokenizer) pair with exact, batched sequence log-probabilities.

    ``frozen`` policies (see ``snapshot``) never build autograd graphs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        allowed_token_ids: Iterable[int] | None = None,
        frozen: bool = False,
    ):
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token, which batching needs; fix it with "
                "`tokenizer.pad_token = tokenizer.eos_token` (the attention mask keeps "
                "padding out of every result)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.frozen = frozen
        self.allowed_token_ids = None if allowed_token_ids is None else tuple(sorted(set(allowed_token_ids)))
        if self.allowed_token_ids is not None and not self.allowed_token_ids:
            raise ValueError("allowed_token_ids is empty: no token could ever be generated")
        self._mask_cache: dict = {}

    @classmethod
    def from_pretrained(
        cls,
        path,
        *,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> "Policy":
        """Policy from a local model directory or ``.gguf`` file (see ``llm.models.load_model``).

        dtype: default float32 on CPU, bfloat16 on CUDA; device: default CPU ("auto" = CUDA if
        available). A tokenizer without a pad token gets pad = its EOS token: every mask here
        is built from lengths, never by matching pad ids, so pad == EOS is safe.
        ``kwargs`` go to ``Policy`` (e.g. ``allowed_token_ids``).
        """
        model = load_model(path, dtype=dtype, device=device)
        tokenizer = load_tokenizer(path)
        if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model, tokenizer, **kwargs)

    # -- basic facts ---------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Every declared end-of-sequence id, in order: tokenizer, config, generation config.

        Chat models often declare several (``config.eos_token_id = [<eos>, <end_of_turn>]``);
        sampling stops at the first of any of them, and ``token_logprobs`` gives -inf to a
        response holding one before its last token (the sampler never produces it), so log-probs
        and sampling agree on the same set. Ids are always ints here, never a list.
        """
        return end_token_ids(self.model, self.tokenizer)

    @property
    def eos_token_id(self) -> int | None:
        """The first of ``eos_token_ids`` (None if none is declared); stop checks use them all."""
        ids = self.eos_token_ids
        return ids[0] if ids else None

    @property
    def context_limit(self) -> int | None:
        return context_limit(self.model)

    def parameters(self):
        return self.model.parameters()

    # -- restriction ---------------------------------------------------------
    def allowed_mask(self, vocab_size: int, device) -> torch.Tensor | None:
        """Boolean (vocab_size,) mask of allowed tokens, or None if unrestricted."""
        if self.allowed_token_ids is None:
            return None
        key = (vocab_size, str(device))
        if key not in self._mask_cache:
            if self.allowed_token_ids[-1] >= vocab_size:
                raise ValueError(f"allowed token id {self.allowed_token_ids[-1]} >= vocab size {vocab_size}")
            mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            mask[list(self.allowed_token_ids)] = True
            self._mask_cache[key] = mask
        return self._mask_cache[key]

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """Set logits of disallowed tokens to -inf (identity when unrestricted)."""
        mask = self.allowed_mask(logits.shape[-1], logits.device)
        return logits if mask is None else logits.masked_fill(~mask, float("-inf"))

    # -- log-probabilities ---------------------------------------------------
    def _grad_context(self, grad: bool):
        return contextlib.nullcontext() if grad and not self.frozen else torch.no_grad()

    def response_logits(
        self, prompts: TokenSeqs, responses: TokenSeqs, *, padding_side: str = "left", grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unrestricted float32 logits predicting each response token.

        Returns ``(logits, targets, mask)``: logits (B, R, V) where row i,
        column t holds the logits that predict response i's token t, the target
        ids (B, R) and the real-token mask (B, R), R = longest response.
        ``padding_side`` only changes the batch layout, never the result.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (e.g. BOS) to condition on")
        check_lengths(self.model, (len(p) + len(r) for p, r in zip(prompts, responses)))
        device = self.device
        seqs = [list(p) + list(r) for p, r in zip(prompts, responses)]
        ids, attn, pos = pad_batch(seqs, self.pad_token_id, padding_side, device)
        width, batch = ids.shape[1], len(seqs)
        n_resp = max((len(r) for r in responses), default=0)
        lengths = torch.tensor([len(r) for r in responses], device=device)
        offsets = torch.arange(n_resp, device=device)
        mask = offsets[None, :] < lengths[:, None]
        if n_resp == 0:
            vocab = self.model.config.vocab_size
            empty = torch.zeros((batch, 0), dtype=torch.long, device=device)
            return torch.zeros((batch, 0, vocab), device=device), empty, mask
        # Column of the first response token of each row in the padded layout.
        starts = torch.tensor(
            [(width - len(s) if padding_side == "left" else 0) + len(p) for s, p in zip(seqs, prompts)],
            device=device,
        )
        # Token at column c is predicted by the logits at column c - 1; padded
        # slots are clamped into range and masked by the caller.
        target_cols = (starts[:, None] + offsets[None, :]).clamp(max=width - 1)
        rows = torch.arange(batch, device=device)[:, None]
        extra, first = {}, 0
        keep_name = forward_names(self.model)[1]
        if padding_side == "left" and keep_name:
            # Left-padded, every response sits in the last n_resp columns, so only the last
            # n_resp + 1 positions' logits are needed: (B, R+1, V) instead of (B, width, V).
            extra, first = {keep_name: n_resp + 1}, width - (n_resp + 1)
        with self._grad_context(grad):
            logits = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False, **extra).logits
            # Slice before any softmax: only response positions are needed.
            logits = logits[rows, target_cols - 1 - first].float()
        return logits, ids[rows, target_cols], mask

    def token_logprobs(
        self, prompts: TokenSeqs, responses: TokenSeqs, *, padding_side: str = "left", grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log π(y_t | x, y_<t) under the restriction, response-aligned.

        Returns ``(logps, mask)`` of shape (B, max response length): row i holds
        response i's tokens from column 0, ``mask`` marks real tokens, padded
        entries of ``logps`` are 0. A token after one of ``eos_token_ids`` gets
        -inf: the sampler stops at the first end id, so it never produces one.
        """
        logits, targets, mask = self.response_logits(prompts, responses, padding_side=padding_side, grad=grad)
        with self._grad_context(grad):
            logps = gather_logprobs(self.restrict(logits), targets, mask)
            return mask_after_end(logps, targets, mask, self.eos_token_ids), mask

    def sequence_logprobs(
        self, prompts: TokenSeqs, responses: TokenSeqs, *, padding_side: str = "left", grad: bool = True
    ) -> torch.Tensor:
        """(B,) exact log π(response | prompt), summed over response tokens only.

        Differentiable when ``grad`` is True, the policy is not frozen and grad
        mode is on; empty responses get 0. A response containing a token outside
        ``allowed_token_ids`` gets -inf.
        """
        logps, _ = self.token_logprobs(prompts, responses, padding_side=padding_side, grad=grad)
        return logps.sum(-1)

    # -- copies ----------------------------------------------------------------
    def snapshot(self) -> "Policy":
        """Frozen value of the current weights (eval mode, no grads): see ``llm.snapshots``."""
        from .snapshots import snapshot  # no copy of the model: tensors over one shared module

        return snapshot(self)

    def save_pretrained(self, path: str | Path) -> None:
        """Save model and tokenizer so ``Policy.from_pretrained`` restores them."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def __repr__(self) -> str:
        kind = type(self.model).__name__
        extra = f", allowed={len(self.allowed_token_ids)} tokens" if self.allowed_token_ids else ""
        return f"Policy({kind}, frozen={self.frozen}{extra})"
