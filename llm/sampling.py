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

import dataclasses
from typing import Sequence

import torch

from games import validation as v

from .models import forward_names
from .policy import Policy, TokenSeqs, check_lengths, gather_logprobs, mask_after_end, pad_batch


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How responses are drawn; record ``as_dict()`` beside results so a run says how it sampled.

    max_new_tokens: response length limit (tokens; a response ends earlier at an end id).
    temperature: logits are divided by it (> 0; 1 = the policy itself).
    top_p: nucleus sampling — keep the smallest set of tokens whose probability reaches top_p
      (0 < top_p ≤ 1; 1 = off).
    batch_size: sequences decoded together (None = all at once); bounds memory, never changes
      which distribution is sampled (it does change which draws a given seed gives).

    Only temperature = top_p = 1 samples the policy whose ``sequence_logprobs`` the algorithms
    use; other settings sample a different distribution (see ``is_exact``).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int | None = None

    def __post_init__(self):
        where = "SamplingConfig"
        object.__setattr__(self, "max_new_tokens", v.integer(self.max_new_tokens, "max_new_tokens", low=0, where=where))
        object.__setattr__(self, "temperature", v.number(self.temperature, "temperature", low=0, low_open=True, where=where))
        object.__setattr__(self, "top_p", v.number(self.top_p, "top_p", low=0, high=1, low_open=True, where=where))
        object.__setattr__(self, "batch_size", v.integer(self.batch_size, "batch_size", low=1, allow_none=True, where=where))

    @property
    def is_exact(self) -> bool:
        """True when samples follow the policy's own distribution (temperature 1, no nucleus)."""
        return self.temperature == 1.0 and self.top_p == 1.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_generator(seed_or_generator: int | torch.Generator | None, device="cpu") -> torch.Generator | None:
    """A ``torch.Generator`` from a seed (or pass one through; None = global RNG)."""
    if seed_or_generator is None or isinstance(seed_or_generator, torch.Generator):
        return seed_or_generator
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed_or_generator))
    return gen


def _returned_cache(out, name: str):
    # Read the returned cache by the name it was passed under: reading the old attribute name
    # on a new version logs a deprecation notice.
    return out[name] if name in out.keys() else getattr(out, "past_key_values", None)


class _CachedModel:
    """One model decoding a left-padded batch incrementally with its KV cache."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.cache = None
        self.attn = None
        self.last_pos = None
        self.cache_name, self.keep_name = forward_names(policy.model)

    def start(self, prompts: TokenSeqs) -> torch.Tensor:
        ids, self.attn, pos = pad_batch(prompts, self.policy.pad_token_id, "left", self.policy.device)
        extra = {self.keep_name: 1} if self.keep_name else {}  # only the last position's logits
        out = self.policy.model(input_ids=ids, attention_mask=self.attn, position_ids=pos, use_cache=True, **extra)
        self.cache, self.last_pos = _returned_cache(out, self.cache_name), pos[:, -1:]
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
            use_cache=True,
            **{self.cache_name: self.cache},
        )
        self.cache = _returned_cache(out, self.cache_name)
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
    return mask_after_end(gather_logprobs(mixed, targets, mask), targets, mask, policy.eos_token_ids).sum(-1)


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``top_p`` (others -inf).

    A token is kept when the mass of the tokens ranked above it is below top_p, so the most
    likely token always survives (Holtzman et al. 2019, arXiv:1904.09751, "top-p sampling").
    """
    if top_p >= 1.0:
        return logits
    ranked, order = logits.sort(dim=-1, descending=True)
    probs = torch.softmax(ranked, dim=-1)
    before = probs.cumsum(-1) - probs
    ranked = ranked.masked_fill(before >= top_p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, ranked)


@torch.no_grad()
def _decode_batch(
    decoder: MixtureDecoder, prompts: list[list[int]], config: SamplingConfig, end_ids, pad: int, gen
) -> list[list[int]]:
    """One chunk: KV-cached ancestral decoding until every row hit an end id or the limit."""
    logits = decoder.start(prompts)
    device = logits.device
    max_new = config.max_new_tokens
    ends = torch.tensor(list(end_ids), dtype=torch.long, device=device)
    batch = len(prompts)
    out = torch.full((batch, max_new), pad, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.full((batch,), max_new, dtype=torch.long, device=device)
    for t in range(max_new):
        if config.temperature != 1.0:
            logits = logits / config.temperature
        probs = torch.softmax(nucleus(logits, config.top_p), dim=-1)
        tok = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        tok = tok.masked_fill(done, pad)
        out[:, t] = tok
        if ends.numel():
            just_done = torch.isin(tok, ends) & ~done
            lengths[just_done] = t + 1
            done |= just_done
        # No forward pass after the last token: T tokens cost exactly T passes.
        if t + 1 == max_new or bool(done.all()):
            break
        logits = decoder.step(tok)
    rows = out.tolist()
    return [row[:n] for row, n in zip(rows, lengths.tolist())]


def _decode(
    decoder: MixtureDecoder,
    prompts: TokenSeqs,
    config: SamplingConfig,
    generator: int | torch.Generator | None,
) -> list[list[int]]:
    """All prompts in chunks of ``config.batch_size``, grouped by prompt length to limit padding."""
    prompts = [list(p) for p in prompts]
    if config.max_new_tokens == 0 or not prompts:
        return [[] for _ in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (e.g. BOS) to condition on")
    for p in decoder.policies:
        check_lengths(p.model, (len(x) + config.max_new_tokens for x in prompts), "prompt+max_new_tokens")
    first = decoder.policies[0]
    end_ids, pad = first.eos_token_ids, first.pad_token_id
    gen = make_generator(generator, first.device)
    # Stable sort by length: chunks of similar prompts waste little compute on padding.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    size = config.batch_size or len(prompts)
    results: list[list[int]] = [[] for _ in prompts]
    for lo in range(0, len(order), size):
        chunk = order[lo:lo + size]
        for i, r in zip(chunk, _decode_batch(decoder, [prompts[i] for i in chunk], config, end_ids, pad, gen)):
            results[i] = r
    return results


def sample(
    policy: Policy,
    prompts: TokenSeqs,
    max_new_tokens: int,
    *,
    generator: int | torch.Generator | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int | None = None,
) -> list[list[int]]:
    """One ancestral sample y ~ π(·|x) per prompt, as id lists (pass each prompt K times for K).

    All prompts go through one call, decoded together in chunks of ``batch_size`` rows (None =
    one chunk), each chunk KV-cached. A response ends after the first of ``policy.eos_token_ids``
    (included) or at ``max_new_tokens``; padding is stripped. ``generator`` is a seeded
    ``torch.Generator`` or an int seed. ``temperature``/``top_p``: see :class:`SamplingConfig`.
    """
    config = SamplingConfig(max_new_tokens, temperature, top_p, batch_size)
    return _decode(MixtureDecoder([policy], [1.0]), prompts, config, generator)


def sample_mixture(
    policy: Policy,
    mu: Policy,
    prompts: TokenSeqs,
    w: float,
    max_new_tokens: int,
    *,
    generator: int | torch.Generator | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int | None = None,
) -> list[list[int]]:
    """Samples from the token-level geometric mixture π^(1−w)·μ^w, batched like :func:`sample`.

    Each next token ~ softmax((1 − w)·logits_π + w·logits_μ). This approximates,
    and is not equal to, the sequence-level geometric mixture (see module doc).
    Both models must share a tokenizer/vocabulary; end and pad ids are π's.
    """
    w = v.number(w, "w", low=0, high=1, where="sample_mixture")
    config = SamplingConfig(max_new_tokens, temperature, top_p, batch_size)
    return _decode(MixtureDecoder([policy, mu], [1.0 - w, w]), prompts, config, generator)
