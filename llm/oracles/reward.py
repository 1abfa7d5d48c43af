"""A Bradley–Terry oracle over a local sequence-classification reward model with its own tokenizer."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import torch

from games.validation import fail, integer

from .base import CountingOracle


def _model_dir(path, name: str) -> Path:
    """An existing local model directory (FileNotFoundError / ValueError naming ``name``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name} = {str(p)!r}: no such directory")
    if not p.is_dir():
        fail(name, str(p), "it must be a model directory (config.json, weights, tokenizer files)")
    if not (p / "config.json").is_file():
        fail(name, str(p), "it holds no config.json: not a transformers model directory")
    return p


def format_pair(tokenizer, prompt: str, response: str, template: str) -> tuple[str, bool]:
    """(text, add_special_tokens): the chat template with a user and an assistant turn when the
    tokenizer has one (``template="auto"``/``"chat"``), else ``prompt + "\\n" + response`` with the
    tokenizer's own special tokens (``"plain"``)."""
    if template != "plain" and getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return tokenizer.apply_chat_template(msgs, tokenize=False), False
    if template == "chat":
        raise ValueError("template='chat' but the reward tokenizer has no chat template")
    return f"{prompt}\n{response}", True


class RewardModelOracle(CountingOracle):
    """P(a ≻ b | x) = σ(r(x, a) − r(x, b)) for a reward model r (Bradley–Terry; transitive).

    model: a transformers sequence-classification model with one label; tokenizer: *its* tokenizer
    (text in: the policy's tokenizer plays no part). r(x, y) is the head's output at the **last
    position of the attention mask** of the formatted text (:func:`format_pair`), for every head —
    ``score`` (Llama, GPT-2), ``classifier`` (CTRL) or any other child module producing one value
    per position; transformers' own pooling finds that position by matching ``pad_token_id``, which
    skips a final EOS when pad == EOS and shifts when the config's pad id differs from the
    tokenizer's (issue 8.1). Encoder models whose head reads a pooled [CLS] vector are used as
    they are (their pooling does not look at token ids). Sequences are right-padded with the mask
    marking real tokens, so a reward does not depend on what else is in the batch (up to float
    rounding of batched kernels). Each distinct (prompt, response) is scored once per call.

    Errors: ValueError for a multi-label model, an empty text or one longer than the model's context.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 16, template: str = "auto"):
        super().__init__()
        if getattr(model.config, "num_labels", 1) != 1:
            raise ValueError(f"RewardModelOracle: the reward model must have num_labels=1 (one score); "
                             f"got num_labels={model.config.num_labels}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size = integer(batch_size, "batch_size", low=1, where="RewardModelOracle")
        if template not in ("auto", "chat", "plain"):
            fail("template", template, "it must be 'auto', 'chat' or 'plain'", "RewardModelOracle")
        self.template = template
        self.dtype = next(model.parameters()).dtype
        ids = [getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None), 0]
        self._pad = next(int(i) for i in ids if isinstance(i, int))  # any id: the mask hides it

    @classmethod
    def load(cls, path, *, device=None, dtype=None, **kwargs) -> "RewardModelOracle":
        """Load a local reward-model directory (model and its tokenizer; never downloads)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        p = _model_dir(path, "reward model")
        try:
            tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(p, local_files_only=True, dtype=dtype or torch.float32)
        except Exception as e:  # transformers/safetensors raise many types for broken files
            raise ValueError(f"reward model = {str(p)!r} could not be loaded as a sequence-classification "
                             f"model with a tokenizer ({type(e).__name__}: {e})") from None
        if device is not None:
            model = model.to(device)
        return cls(model, tok, **kwargs)

    # -- rewards ------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of each formatted (prompt, response) under the reward model's tokenizer."""
        out = []
        for x, y in zip(prompts, responses):
            text, special = format_pair(self.tokenizer, x, y, self.template)
            out.append(list(self.tokenizer(text, add_special_tokens=special)["input_ids"]))
        return out

    @torch.no_grad()
    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """(B,) float64 rewards r(x, y) (uncounted)."""
        return self.score_ids(self.encode(prompts, responses))

    @torch.no_grad()
    def score_ids(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """(B,) float64 rewards of token-id sequences, each read at its last real token."""
        from ..policy import check_lengths

        if any(len(s) == 0 for s in seqs):
            raise ValueError("RewardModelOracle: cannot score an empty text (the tokenizer produced no tokens)")
        check_lengths(self.model, map(len, seqs), "reward model input")
        if not seqs:
            return torch.zeros(0, dtype=torch.float64)
        bs = self.batch_size
        return torch.cat([self._score(seqs[i:i + bs]) for i in range(0, len(seqs), bs)])

    def _score(self, seqs) -> torch.Tensor:
        device = next(self.model.parameters()).device
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: real tokens keep positions 0..len−1
            ids[i, :len(s)] = torch.as_tensor(list(s))
            mask[i, :len(s)] = 1
        ids, mask = ids.to(device), mask.to(device)
        last = mask.sum(-1) - 1  # the last real token, from the mask, never from token ids
        rows = torch.arange(len(seqs), device=device)
        captured = []

        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 3 and tuple(output.shape[:2]) == tuple(ids.shape):
                if output.shape[-1] == 1:
                    captured.append(output)

        handles = [child.register_forward_hook(hook) for child in self.model.children()]
        try:
            with self._pad_id_for_the_model_pooling():
                out = self.model(input_ids=ids, attention_mask=mask)
        finally:
            for h in handles:
                h.remove()
        if len(captured) == 1:  # a per-position head (decoder models): read it where the mask ends
            scores = captured[0][rows, last]
        elif not captured and out.logits.dim() == 2:  # a pooled head (encoders: [CLS] + mask)
            scores = out.logits
        else:
            raise ValueError(f"RewardModelOracle: cannot find the reward head of {type(self.model).__name__} "
                             f"({len(captured)} child modules produce one value per position)")
        return scores.reshape(len(seqs)).double().cpu()

    @contextlib.contextmanager
    def _pad_id_for_the_model_pooling(self):
        """Decoder classifiers refuse batches when config.pad_token_id is None, though we never use
        their pad-id pooling: lend them one for the call, and put the config back."""
        config = self.model.config
        before = config.pad_token_id
        if before is None:
            config.pad_token_id = self._pad
        try:
            yield
        finally:
            config.pad_token_id = before

    def _prob(self, prompts, a, b):
        keys_a, keys_b = list(zip(prompts, a)), list(zip(prompts, b))
        unique = sorted(set(keys_a) | set(keys_b))
        r = self.rewards([k[0] for k in unique], [k[1] for k in unique])
        index = {k: i for i, k in enumerate(unique)}
        ra = r[[index[k] for k in keys_a]]
        rb = r[[index[k] for k in keys_b]]
        return torch.sigmoid(ra - rb)
