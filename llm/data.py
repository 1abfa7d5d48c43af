"""Prompts from files: the text a policy answers, tokenised the way the model expects.

Formats (by extension): ``.jsonl`` (one JSON object per line), ``.json`` (a list of objects, or an
object of equal-length columns), ``.csv`` (a header row), ``.parquet``, or a folder written by
``datasets.Dataset.save_to_disk`` (a ``DatasetDict`` uses its ``train`` split). Each row gives a
prompt either as text (column ``prompt`` by default) or as chat ``messages`` — a list of
``{"role", "content"}`` dicts ending with the user turn to answer.

Tokenisation: when the tokenizer has a chat template, every prompt becomes a conversation (a text
prompt is one user message) rendered with ``add_generation_prompt=True``, so the ids end where the
assistant's reply starts. Without a template the text is tokenised as is (chat messages then need
a template and are refused). ``Prompt.text`` is always the user's own words — what oracles judge
(they never see the template's special tokens or system prompt).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from games import validation as v

#: file extensions load_prompts reads
FORMATS = (".jsonl", ".json", ".csv", ".parquet")
#: tokenizers report "no limit" with a huge sentinel (1e30); a real context is below this
_NO_LIMIT = 10**7


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt: ``text`` (the user's words, for oracles) and ``ids`` (what the policy reads)."""

    text: str
    ids: list[int]


@dataclasses.dataclass(frozen=True)
class PromptSplit:
    """Training prompts and held-out evaluation prompts (disjoint rows of the same file)."""

    train: list[Prompt]
    eval: list[Prompt]


# -- reading rows ------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[Any]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {n} is not valid JSON ({err.msg})") from None
    return rows


def _read_json(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(data, dict):  # columns: {"prompt": [...], ...}
        lengths = {len(c) for c in data.values() if isinstance(c, list)}
        if not data or len(lengths) != 1 or not all(isinstance(c, list) for c in data.values()):
            raise ValueError(f"{path}: a JSON object must map column names to lists of equal length")
        (n,) = lengths
        return [{k: c[i] for k, c in data.items()} for i in range(n)]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows or an object of columns, got {type(data).__name__}")
    return data


def _read_csv(path: Path) -> list[Any]:
    with path.open(encoding="utf-8", newline="") as f:
        try:
            return list(csv.DictReader(f))
        except csv.Error as err:
            raise ValueError(f"{path}: not a readable CSV file ({err})") from None


def _read_parquet(path: Path) -> list[Any]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises its own ArrowInvalid/OSError kinds
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None


def _read_saved_dataset(path: Path) -> list[Any]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as err:
        raise ValueError(f"{path}: not a folder saved by datasets' save_to_disk ({err})") from None
    if isinstance(data, datasets.DatasetDict):
        if "train" in data:
            data = data["train"]
        elif len(data) == 1:
            data = next(iter(data.values()))
        else:
            raise ValueError(f"{path}: a DatasetDict with splits {sorted(data)} and no 'train' split; save one split")
    return data.to_list()


def read_rows(path: str | Path, name: str = "path") -> list[Any]:
    """The rows of a prompt file or saved dataset, as Python objects (no tokenisation)."""
    p = Path(path)
    if p.is_dir():
        return _read_saved_dataset(p)
    p = v.readable_file(p, name)
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    suffix = p.suffix.lower()
    if suffix not in readers:
        v.fail(name, str(p), f"it must be one of {', '.join(FORMATS)} or a folder saved by datasets")
    try:
        return readers[suffix](p)
    except UnicodeDecodeError as err:
        raise ValueError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None


# -- rows → conversations ----------------------------------------------------------------------


def _messages(value, where: str) -> list[dict]:
    """Validate chat messages and drop trailing assistant turns (the policy writes the reply)."""
    if isinstance(value, str):  # CSV cells and some JSON files hold the list as text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: messages must be a list of {{'role', 'content'}} dicts, got text") from None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise ValueError(f"{where}: messages must be a list of {{'role': str, 'content': str}} dicts")
    messages = [dict(role=m["role"], content=m["content"]) for m in value]
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise ValueError(f"{where}: the conversation must end with a non-empty user message")
    return messages


def _columns(rows: list[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:
        if isinstance(row, dict):
            seen.update(dict.fromkeys(row))
    return list(seen)


def _conversations(rows: list[Any], column: str, source: str) -> list[tuple[str, list[dict] | None]]:
    """(user text, messages or None for a plain-text prompt) per row."""
    if all(isinstance(r, str) for r in rows):  # a JSON list of strings
        rows = [{column: r} for r in rows]
    if not all(isinstance(r, dict) for r in rows):
        bad = next(i for i, r in enumerate(rows) if not isinstance(r, dict))
        raise ValueError(f"{source}: row {bad} is a {type(rows[bad]).__name__}, expected an object with a {column!r} field")
    present = _columns(rows)
    if column not in present and column == "prompt" and "messages" in present:
        column = "messages"  # the documented fallback: chat data
    if column not in present:
        raise ValueError(
            f"{source}: no {column!r} column; the columns present are {present or 'none'}"
            + ("" if column == "messages" else " (a prompt is a text column, or chat 'messages')")
        )
    out = []
    for i, row in enumerate(rows):
        value, where = row.get(column), f"{source}: row {i}"
        if column == "messages" or isinstance(value, (list, tuple)):
            messages = _messages(value, where)
            out.append((messages[-1]["content"], messages))
        elif isinstance(value, str):
            if not value.strip():
                raise ValueError(f"{where}: the {column!r} text is empty")
            out.append((value, None))
        else:
            raise ValueError(f"{where}: {column!r} must be text or chat messages, got {value!r:.60}")
    return out


def encode_prompt(tokenizer, text: str, messages: list[dict] | None = None) -> list[int]:
    """Token ids of one prompt: the chat template with the generation prompt when there is one.

    transformers 5's ``apply_chat_template`` returns an encoding (we take ``input_ids``); 4.x a
    plain list. Raises ValueError for chat messages without a template, or an empty encoding.
    """
    if getattr(tokenizer, "chat_template", None):
        conversation = messages if messages is not None else [{"role": "user", "content": text}]
        encoded = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    else:
        if messages is not None and len(messages) > 1:
            raise ValueError(
                "chat messages with several turns need a tokenizer with a chat template "
                "(tokenizer.chat_template is not set); give single prompts as text instead"
            )
        ids = tokenizer(text)["input_ids"]
    ids = [int(t) for t in ids]
    if not ids:
        raise ValueError(f"the prompt {text!r:.60} encodes to no tokens")
    return ids


def _limit(tokenizer, context_limit: int | None) -> int | None:
    if context_limit is not None:
        return context_limit
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _NO_LIMIT else None


def load_prompts(
    path,
    tokenizer,
    *,
    column: str = "prompt",
    eval_fraction: float = 0.0,
    max_new_tokens: int = 64,
    context_limit: int | None = None,
    seed: int = 0,
    name: str = "path",
) -> PromptSplit:
    """Read, tokenise, check and split prompts.

    path: a file (``FORMATS``) or a saved ``datasets`` folder; also accepted: a list of strings
      or of row dicts (handy in tests and notebooks).
    column: the text column (default "prompt"; when absent a "messages" column is used).
    eval_fraction: share of rows held out for evaluation, in [0, 1); at least one row goes to
      each side when it is > 0. The split is a seeded permutation (deterministic in ``seed``);
      each side keeps the file's order.
    max_new_tokens, context_limit: every prompt must leave room for ``max_new_tokens`` within
      ``context_limit`` tokens (default: the tokenizer's ``model_max_length`` when it states a
      real one; pass ``policy.context_limit`` to check against the model).
    name: how the caller calls ``path`` in errors (e.g. "--prompts").

    Raises FileNotFoundError (no such file), ValueError (unreadable or empty data, a missing
    column — naming the columns present —, a bad row, prompts too long for the context).
    """
    where = "load_prompts"
    eval_fraction = v.number(eval_fraction, "eval_fraction", low=0, high=1, high_open=True, where=where)
    max_new_tokens = v.integer(max_new_tokens, "max_new_tokens", low=1, where=where)
    context_limit = v.integer(context_limit, "context_limit", low=1, allow_none=True, where=where)
    seed = v.integer(seed, "seed", low=0, where=where)
    if not isinstance(column, str) or not column:
        v.fail("column", column, "it must be a column name", where, v.WrongType)
    if isinstance(path, (list, tuple)):
        rows, source = list(path), "prompts"
    else:
        if path is None or (isinstance(path, str) and not path.strip()):
            v.fail(name, path, "it must be a prompt file or a saved datasets folder", where, v.WrongType)
        rows, source = read_rows(path, name), str(path)
    if not rows:
        raise ValueError(f"{source}: no prompts (the data is empty)")
    prompts = [Prompt(text, encode_prompt(tokenizer, text, messages))
               for text, messages in _conversations(rows, column, source)]
    limit = _limit(tokenizer, context_limit)
    if limit is not None:
        room = limit - max_new_tokens
        too_long = [i for i, p in enumerate(prompts) if len(p.ids) > room]
        if too_long:
            worst = max(len(prompts[i].ids) for i in too_long)
            raise ValueError(
                f"{source}: {len(too_long)} prompt(s) (rows {too_long[:5]}{'...' if len(too_long) > 5 else ''}) "
                f"do not fit the context: the longest has {worst} tokens, and {worst} + max_new_tokens "
                f"{max_new_tokens} > the context limit of {limit} tokens; shorten them or lower max_new_tokens"
            )
    return split_prompts(prompts, eval_fraction, seed)


def split_prompts(prompts: Sequence[Prompt], eval_fraction: float, seed: int = 0) -> PromptSplit:
    """Hold out round(eval_fraction·n) prompts (≥ 1 each side when eval_fraction > 0), seeded."""
    n = len(prompts)
    if eval_fraction == 0:
        return PromptSplit(list(prompts), [])
    if n < 2:
        raise ValueError(f"eval_fraction = {eval_fraction} needs at least 2 prompts to split; got {n}")
    n_eval = min(max(int(round(eval_fraction * n)), 1), n - 1)
    held = set(np.random.default_rng(seed).permutation(n)[:n_eval].tolist())
    return PromptSplit([p for i, p in enumerate(prompts) if i not in held],
                       [p for i, p in enumerate(prompts) if i in held])
