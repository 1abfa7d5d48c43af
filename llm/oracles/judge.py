"""An instruct LM as a pairwise A/B judge, symmetrised over both orders.

The judge reads an explicit system prompt, the instruction and two responses labelled A and B, and
we read its next-token distribution restricted to the two answer letters:
p_A(x, first, second) = softmax(logit_A, logit_B)[0]. LMs prefer a position (often the first), so
each pair is judged in both orders and the answers are averaged,

    P(a ≻ b | x) = ½ (p_A(x, a, b) + 1 − p_A(x, b, a)),

which is antisymmetric exactly and cancels any constant position bias: a judge that always answers
"A" gives ½ on every pair.

Measured on SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32, CPU; tests/llm/judge_probe.py,
demo grade): see ``JUDGE_MEASUREMENTS`` below — the numbers are filled in from that script's output.
"""
from __future__ import annotations

from typing import Sequence

import torch

from games.validation import fail, integer

from .base import CountingOracle

SYSTEM_PROMPT = (
    "You are an impartial judge of answers to a user's instruction. You are shown the instruction and "
    "two candidate answers, labelled A and B. Decide which answer follows the instruction better: "
    "helpful, correct, relevant and clear. Ignore the order in which they are shown and their length "
    "unless it matters. Reply with exactly one letter: A or B."
)

USER_TEMPLATE = "Instruction:\n{prompt}\n\n[Answer A]\n{first}\n\n[Answer B]\n{second}\n\nWhich answer is better? Reply A or B."

JUDGE_MEASUREMENTS = {}


def letter_id(tokenizer, letter: str) -> int:
    """The single token id of ``letter`` (ValueError when the tokenizer splits it)."""
    ids = tokenizer.encode(letter, add_special_tokens=False)
    if len(ids) == 1 and ids[0] == getattr(tokenizer, "unk_token_id", None):
        raise ValueError(f"JudgeOracle: the answer letter {letter!r} is not in the tokenizer's vocabulary (it maps "
                         "to the unknown token); pass letters= that the tokenizer knows")
    if len(ids) != 1:
        raise ValueError(f"JudgeOracle: the answer letter {letter!r} is {len(ids)} tokens {ids} under this "
                         "tokenizer; the judge reads one next-token probability per letter, so each letter "
                         "must be a single token (pass other letters=)")
    return int(ids[0])


class JudgeOracle(CountingOracle):
    """P(a ≻ b | x) from an instruct LM's A/B answer, both orders judged (see the module docstring).

    model, tokenizer: a causal LM and its tokenizer (its chat template is used when it has one,
    with ``system`` as the system turn; otherwise the system prompt and the question are joined as
    plain text ending in "Answer:"). letters: the two answer letters, each a single token.
    answer_prefix: text the assistant turn starts with (the letters are read right after it).
    ``JudgeOracle.load(PATH)`` loads a local model directory or a .gguf file (``llm.models.load_model``).
    Errors: ValueError for multi-token letters, or an input longer than the model's context.
    """

    dtype = torch.float32

    def __init__(self, model, tokenizer, *, system: str = SYSTEM_PROMPT, letters: Sequence[str] = ("A", "B"),
                 batch_size: int = 8, template: str = USER_TEMPLATE, answer_prefix: str = ""):
        super().__init__()
        if len(letters) != 2 or letters[0] == letters[1]:
            fail("letters", letters, "it must be two different letters", "JudgeOracle")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.letters = tuple(letters)
        self.letter_ids = (letter_id(tokenizer, letters[0]), letter_id(tokenizer, letters[1]))
        if self.letter_ids[0] == self.letter_ids[1]:
            fail("letters", letters, "the two letters map to the same token", "JudgeOracle")
        self.system, self.template, self.answer_prefix = system, template, str(answer_prefix)
        self.batch_size = integer(batch_size, "batch_size", low=1, where="JudgeOracle")
        ids = [getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None), 0]
        self._pad = next(int(i) for i in ids if isinstance(i, int))

    @classmethod
    def load(cls, path, *, device=None, dtype=None, **kwargs) -> "JudgeOracle":
        """Load a local causal LM (directory or .gguf) and its tokenizer as a judge."""
        from ..models import load_model, load_tokenizer

        try:
            model, tokenizer = load_model(path, dtype=dtype, device=device), load_tokenizer(path)
        except (FileNotFoundError, ImportError):
            raise
        except Exception as e:  # transformers/safetensors raise many types for broken files
            raise ValueError(f"judge = {str(path)!r} could not be loaded as a causal LM with a tokenizer "
                             f"({type(e).__name__}: {e})") from None
        return cls(model, tokenizer, **kwargs)

    def render(self, prompt: str, first: str, second: str) -> str:
        """The judge's input text for one ordered pair."""
        user = self.template.format(prompt=prompt, first=first, second=second)
        if getattr(self.tokenizer, "chat_template", None):
            msgs = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return text + self.answer_prefix
        return f"{self.system}\n\n{user}\nAnswer:{self.answer_prefix}"

    @torch.no_grad()
    def p_first(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> torch.Tensor:
        """(B,) float64: the judge's probability of the first letter for the pairs *as ordered* (uncounted,
        not symmetrised — use it to measure position bias)."""
        from ..policy import check_lengths, pad_batch

        texts = [self.render(x, f, s) for x, f, s in zip(prompts, first, second)]
        special = not getattr(self.tokenizer, "chat_template", None)
        seqs = [list(self.tokenizer(t, add_special_tokens=special)["input_ids"]) for t in texts]
        check_lengths(self.model, map(len, seqs), "judge input")
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(seqs), self.batch_size):
            chunk = seqs[i:i + self.batch_size]
            ids, mask, pos = pad_batch(chunk, self._pad, "right", device)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            last = logits[torch.arange(len(chunk), device=device), mask.sum(-1) - 1]
            two = last[:, list(self.letter_ids)].float()
            out.append(torch.softmax(two, -1)[:, 0].double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def diagnose(self, prompts: Sequence[str], good: Sequence[str], bad: Sequence[str]) -> dict:
        """Position bias and agreement on pairs whose better response is known (uncounted).

        position_bias: mean P(first letter) over both orders − ½ (0 = none, +½ = always "A");
        inconsistent: share of pairs where the judge picks the same *letter* in both orders;
        agreement_single: share of single-order judgements that pick the better response;
        agreement: share of pairs with symmetrised P(good ≻ bad) > ½; mean_p_good: its mean.
        """
        n = len(good)
        p = self.p_first(list(prompts) * 2, list(good) + list(bad), list(bad) + list(good))
        good_first, bad_first = p[:n], p[n:]  # P("A") with good shown first / bad shown first
        sym = 0.5 * (good_first + 1 - bad_first)
        return {"pairs": n,
                "position_bias": float(p.mean() - 0.5),
                "inconsistent": float(((good_first > 0.5) == (bad_first > 0.5)).double().mean()),
                "agreement_single": float(torch.cat([good_first > 0.5, bad_first < 0.5]).double().mean()),
                "agreement": float((sym > 0.5).double().mean()),
                "mean_p_good": float(sym.mean())}

    def _prob(self, prompts, a, b):
        n = len(a)
        p = self.p_first(list(prompts) * 2, list(a) + list(b), list(b) + list(a))
        return 0.5 * (p[:n] + 1.0 - p[n:])

    def __repr__(self):
        return f"JudgeOracle({type(self.model).__name__}, letters={self.letters}, queries={self.queries})"
