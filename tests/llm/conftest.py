"""Shared tiny fixtures: a random Llama + word-level tokenizer, saved and reloaded.

Going through save_pretrained/from_pretrained once per session checks the
round trip and gives every test the same reloaded objects cheaply.
"""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from llm import EnumerableWorld, Policy, tiny_model, tiny_tokenizer

hf_logging.disable_progress_bar()

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast"]

# Rock-paper-scissors-like intransitive game with a unique interior equilibrium.
P_RPS = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])


@pytest.fixture(scope="package", autouse=True)
def single_thread():
    """Run these tests on one intra-op thread, restoring the setting afterwards.

    The models are tiny, so time goes to per-op overhead; on a busy 2-core box
    torch's thread pool spin-waits made the suite ~30x slower (65 s vs 2 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def words():
    return list(WORDS)


@pytest.fixture(scope="session")
def saved_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_lm")
    tokenizer = tiny_tokenizer(WORDS)
    model = tiny_model(tokenizer, seed=0, max_positions=64, init_std=0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tokenizer(saved_dir):
    return AutoTokenizer.from_pretrained(saved_dir)


@pytest.fixture(scope="session")
def model(saved_dir):
    return AutoModelForCausalLM.from_pretrained(saved_dir).eval()


@pytest.fixture(scope="session")
def policy(model, tokenizer):
    # Session-wide: tests must not train it; train a snapshot-derived copy instead.
    return Policy(model, tokenizer)


@pytest.fixture(scope="session")
def other_policy(tokenizer):
    """A second, differently initialised model over the same vocabulary (μ)."""
    return Policy(tiny_model(tokenizer, seed=1, max_positions=64, init_std=0.5), tokenizer)


@pytest.fixture(scope="session")
def rps():
    return P_RPS.copy()


@pytest.fixture(scope="session")
def world():
    return EnumerableWorld(P_RPS, response_len=2)


# -- a tiny model directory and a text prompts file: the LLM command line end to end -----------------
TEXT_WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast", "why", "is", "sky",
              "please", "thanks", "good"]
TEXT_PROMPTS = ["why is the sky blue", "the cat sat on a mat", "a big red dog ran", "please a good cat"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A saved tiny Llama whose word-level tokenizer covers TEXT_PROMPTS."""
    path = tmp_path_factory.mktemp("tiny_model")
    tok = tiny_tokenizer(TEXT_WORDS)
    tiny_model(tok, seed=0, max_positions=64, init_std=0.5).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory):
    """TEXT_PROMPTS as a JSONL file with a ``prompt`` column."""
    import json

    path = tmp_path_factory.mktemp("data") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in TEXT_PROMPTS))
    return path
