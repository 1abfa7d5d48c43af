"""KV-cached ancestral sampling from a policy or a token-level geometric mixture.

The mixture of policies π and μ with weight w samples every next token from
softmax((1 − w)·logits_π + w·logits_μ). This *token-level* geometric mixture
approximates, but is NOT equal to, the sequence-level geometric mixture
π(y)^(1−w)·μ(y)^w / Z: the per-token normalisers do not factor out of the
product over tokens. Algorithms that need the sequence-level mixture exactly
must use it through log-probs (``Policy.sequence_logprobs``), not this sampler.

Each model keeps its own KV cache: the first forward pass reads the full
(left-padded) prompt, then one pass per new token, so T new tokens cost T
forward calls per model. Restrictions (``Policy.allowed_token_ids``) of all
mixed policies are intersected and applied after mixing, which is exact:
renormalising π^(1−w)μ^w over the allowed set equals the softmax of the masked
mixed logits.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .policy import Policy, TokenSeqs, check_lengths, gather_logprobs, pad_batch


def make_generator(seed_or_generator: int | torch.Generator | None, device="cpu") -> torch.Generator | None:
    """A ``torch.Generator`` from a seed (or pass one through; None = global RNG)."""
    if seed_or_generator is None or isinstance(seed_or_generator, torch.Generator):
        return seed_or_generator
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed_or_generator))
    return gen


class _CachedModel:
    """One model decoding a left-padded batch incrementally with its KV cache."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.cache = None
        self.attn = None
        self.last_pos = None

    def start(self, prompts: TokenSeqs) -> torch.Tensor:
        ids, self.attn, pos = pad_batch(prompts, self.policy.pad_token_id, "left", self.policy.device)
        out = self.policy.model(input_ids=ids, attention_mask=self.attn, position_ids=pos, use_cache=True)
        self.cache, self.last_pos = out.past_key_values, pos[:, -1:]
        return out.logits[:, -1].float()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.policy.device)
        # Finished rows keep being fed pad tokens; their outputs are ignored and
        # rows never attend to each other, so this cannot leak into live rows.
        self.attn = torch.cat([self.attn, torch.ones_like(self.attn[:, :1])], dim=1)
        self.last_pos = self.last_pos + 1
        out = self.policy.model(
            input_ids=tokens[:, None],
            attention_mask=self.attn,
            position_ids=self.last_pos,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        return out.logits[:, -1].float()


class MixtureDecoder:
    """Incremental next-token logits of Σ_k w_k·logits_k over several policies.

    ``start(prompts)`` returns the (B, V) mixed, restricted logits for the
    first response token; ``step(tokens)`` appends one token per row and
    returns the logits for the next. With one policy and weight 1 this is
    plain decoding.
    """

    def __init__(self, policies: Sequence[Policy], weights: Sequence[float]):
        if len(policies) != len(weights) or not policies:
            raise ValueError("need one weight per policy and at least one policy")
        self.policies = list(policies)
        self.weights = [float(w) for w in weights]
        self.models = [_CachedModel(p) for p in self.policies]

    def _combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        sizes = {l.shape[-1] for l in logits}
        if len(sizes) != 1:
            raise ValueError(f"mixed models disagree on vocabulary size: {sorted(sizes)}")
        device = logits[0].device
        mixed = sum(w * l.to(device) for w, l in zip(self.weights, logits))
        for p in self.policies:
            mixed = p.restrict(mixed)
        if torch.isneginf(mixed).all(-1).any():
            raise ValueError("the mixed policies' allowed token sets do not intersect")
        return mixed

    def start(self, prompts: TokenSeqs) -> torch.Tensor:
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (e.g. BOS) to condition on")
        return self._combine([m.start(prompts) for m in self.models])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._combine([m.step(tokens) for m in self.models])


@torch.no_grad()
def next_token_logits(policy: Policy, prompts: TokenSeqs) -> torch.Tensor:
    """(B, V) restricted logits of the first response token after each prompt."""
    return MixtureDecoder([policy], [1.0]).start(prompts)


@torch.no_grad()
def mixture_next_token_logits(policy: Policy, mu: Policy, prompts: TokenSeqs, w: float) -> torch.Tensor:
    """(B, V) logits (1 − w)·logits_π + w·logits_μ (restricted) after each prompt."""
    return MixtureDecoder([policy, mu], [1.0 - w, w]).start(prompts)


def mixture_sequence_logprobs(
    policy: Policy, mu: Policy, prompts: TokenSeqs, responses: TokenSeqs, w: float, *, grad: bool = False
) -> torch.Tensor:
    """(B,) exact log-probability of each response under ``sample_mixture``.

    Σ_t log softmax((1 − w)·logits_π + w·logits_μ)[y_t], restricted like the
    sampler. This is the token-level mixture's own likelihood, not the
    sequence-level geometric mixture's.
    """
    lp, targets, mask = policy.response_logits(prompts, responses, grad=grad)
    lm, _, _ = mu.response_logits(prompts, responses, grad=grad)
    mixed = MixtureDecoder([policy, mu], [1.0 - w, w])._combine([lp, lm])
    return gather_logprobs(mixed, targets, mask).sum(-1)


@torch.no_grad()
def _decode(
    decoder: MixtureDecoder,
    prompts: TokenSeqs,
    max_new_tokens: int,
    generator: int | torch.Generator | None,
) -> list[list[int]]:
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    prompts = [list(p) for p in prompts]
    if max_new_tokens == 0 or not prompts:
        return [[] for _ in prompts]
    for p in decoder.policies:
        check_lengths(p.model, (len(x) + max_new_tokens for x in prompts), "prompt+max_new_tokens")
    first = decoder.policies[0]
    eos, pad = first.eos_token_id, first.pad_token_id
    logits = decoder.start(prompts)
    gen = make_generator(generator, logits.device)
    batch = len(prompts)
    out = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=logits.device)
    done = torch.zeros(batch, dtype=torch.bool, device=logits.device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=logits.device)
    for t in range(max_new_tokens):
        probs = torch.softmax(logits, dim=-1)
        tok = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        tok = tok.masked_fill(done, pad)
        out[:, t] = tok
        if eos is not None:
            just_done = (tok == eos) & ~done
            lengths[just_done] = t + 1
            done |= just_done
        # No forward pass after the last token: T tokens cost exactly T passes.
        if t + 1 == max_new_tokens or bool(done.all()):
            break
        logits = decoder.step(tok)
    rows = out.tolist()
    return [row[:n] for row, n in zip(rows, lengths.tolist())]


def sample(
    policy: Policy,
    prompts: TokenSeqs,
    max_new_tokens: int,
    *,
    generator: int | torch.Generator | None = None,
) -> list[list[int]]:
    """Ancestral samples y ~ π(·|x), one per prompt, as id lists.

    A response stops after EOS (included) or at ``max_new_tokens``; padding is
    stripped. ``generator`` is a seeded ``torch.Generator`` or an int seed.
    """
    return _decode(MixtureDecoder([policy], [1.0]), prompts, max_new_tokens, generator)


def sample_mixture(
    policy: Policy,
    mu: Policy,
    prompts: TokenSeqs,
    w: float,
    max_new_tokens: int,
    *,
    generator: int | torch.Generator | None = None,
) -> list[list[int]]:
    """Samples from the token-level geometric mixture π^(1−w)·μ^w.

    Each next token ~ softmax((1 − w)·logits_π + w·logits_μ). This approximates,
    and is not equal to, the sequence-level geometric mixture (see module doc).
    Both models must share a tokenizer/vocabulary; EOS and pad ids are π's.
    """
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"mixture weight w must lie in [0, 1], got {w}")
    return _decode(MixtureDecoder([policy, mu], [1.0 - w, w]), prompts, max_new_tokens, generator)
