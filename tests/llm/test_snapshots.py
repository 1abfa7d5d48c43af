"""Snapshots over one shared module: exact restores, the reference, no leaks, memory, pickling."""
import copy
import pickle

import pytest
import torch

from llm import Policy, sample, sample_mixture, tiny_model, tiny_tokenizer
from llm import snapshots as S

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast"]
PROMPTS = [[1, 4, 5, 6], [1, 7], [1, 8, 9, 10, 11, 12], [1, 13]]
RESPONSES = [[5, 6, 2], [9], [4, 4, 4, 4, 15], [6, 7]]


def fresh(seed=0):
    tok = tiny_tokenizer(WORDS)
    return Policy(tiny_model(tok, seed=seed, init_std=0.5), tok)


def lp(policy):
    return policy.sequence_logprobs(PROMPTS, RESPONSES, grad=False)


def perturb(live, scale=0.05, seed=0):
    """A stand-in for training: move every trainable tensor."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in S.trainable_parameters(live):
            p.add_(scale * torch.randn(p.shape, generator=gen))


@pytest.fixture(params=["full", "lora"])
def live(request):
    return S.prepare(fresh(), lora_r=4 if request.param == "lora" else None)


def test_restored_snapshot_equals_original_exactly(live):
    perturb(live, seed=1)
    before = lp(live)
    snap = S.snapshot(live)
    assert torch.equal(lp(snap), before)  # the frozen value, evaluated through the shared module
    perturb(live, seed=2)
    assert not torch.allclose(lp(live), before)
    assert torch.equal(lp(snap), before)  # training the live policy does not reach the snapshot
    S.load_into(live, snap)
    assert torch.equal(lp(live), before)  # restored bit for bit


def test_reference_is_the_base_with_adapters_off(live):
    base = fresh()  # an identical, independent model
    want = lp(base)
    ref = S.reference(live)
    assert torch.equal(lp(ref), want)
    perturb(live, seed=3)
    assert not torch.allclose(lp(live), want)
    assert torch.equal(lp(ref), want)
    S.load_into(live, ref)  # the starting point of the first realisation
    assert torch.equal(lp(live), want)
    if S.is_lora(live):
        assert ref.kind == "reference"
        # the initial adapter keeps a nonzero A, so training can leave B = 0
        assert any(("lora_A" in n and p.abs().sum() > 0) for n, p in live.model.named_parameters())


def test_no_leaks_between_snapshots_or_into_live(live):
    perturb(live, seed=4)
    s1 = S.snapshot(live)
    perturb(live, seed=5)
    s2 = S.snapshot(live)
    perturb(live, seed=6)
    live_state = {k: v.clone() for k, v in live.model.state_dict().items()}
    want1, want2, want_live = lp(s1), lp(s2), lp(live)
    # independent copies of each state, to compare against
    c1, c2 = S.merged_model(s1), S.merged_model(s2)
    p1, p2 = Policy(c1, live.tokenizer), Policy(c2, live.tokenizer)
    torch.testing.assert_close(lp(p1), want1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lp(p2), want2, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(want1, want2)
    # interleaved calls and a token-level mixture decoded step by step over both snapshots
    for _ in range(2):
        assert torch.equal(lp(s2), want2) and torch.equal(lp(s1), want1)
    got = sample_mixture(s1, s2, PROMPTS, 0.4, 6, generator=7)
    ref = sample_mixture(p1, p2, PROMPTS, 0.4, 6, generator=7)
    assert got == ref
    assert sample(s2, PROMPTS, 6, generator=3) == sample(p2, PROMPTS, 6, generator=3)
    # the live module's tensors are exactly what they were
    after = live.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in live_state.items())
    assert torch.equal(lp(live), want_live)


def test_lora_snapshot_is_adapter_sized():
    policy = fresh()
    full_bytes = sum(p.numel() * p.element_size() for p in policy.model.parameters())
    cfg = policy.model.config
    live = S.prepare(policy, lora_r=4)
    snap = S.snapshot(live)
    # 2·r·(d_in + d_out) float32 numbers per adapted linear layer, nothing else
    d, f, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    per_layer = 4 * (d + d) + 4 * (d + kv) * 2 + 4 * (d + d) + 3 * 4 * (d + f)
    assert S.nbytes(snap) == 4 * cfg.num_hidden_layers * per_layer
    assert S.nbytes(snap) < full_bytes / 4
    full_live = S.prepare(fresh())
    assert S.nbytes(S.snapshot(full_live)) >= full_bytes  # full fine-tuning: one model's worth
    # a pickled snapshot carries its tensors, never the shared module
    assert len(pickle.dumps(snap)) < S.nbytes(snap) + 200_000


def test_pickled_snapshot_binds_to_an_adopted_module(tmp_path):
    live = S.prepare(fresh(), lora_r=4)
    perturb(live, seed=8)
    snap = S.snapshot(live)
    want = lp(snap)
    blob = pickle.dumps({"anchor": snap, "base": S.base_id(live)})
    # a "new process": an identical prepared model; the old id is bound to it by adopt
    live2 = S.prepare(fresh(), lora_r=4)
    state = pickle.loads(blob)
    S.adopt(live2, state["base"])
    restored = state["anchor"]
    assert restored.model.base is live2.model
    assert torch.equal(lp(restored), want)
    S.load_into(live2, restored)
    assert torch.equal(lp(live2), want)
    again = S.restore(live2, snap.state_dict())
    assert torch.equal(lp(again), want)


def test_unbound_snapshot_says_what_to_do():
    live = S.prepare(fresh(), lora_r=2)
    state = S.snapshot(live).state_dict()
    state["base_id"] = "no-such-model"
    orphan = pickle.loads(pickle.dumps(S.restore(live, state)))  # rebinds to live's id: fine
    assert torch.equal(lp(orphan), lp(live))
    blob = pickle.dumps(S.snapshot(live))
    blob = blob.replace(S.base_id(live).encode(), b"0" * 32)
    lost = pickle.loads(blob)
    with pytest.raises(RuntimeError, match="adopt"):
        lp(lost)


def test_merged_model_saves_and_reloads(tmp_path, live):
    from transformers import AutoModelForCausalLM

    perturb(live, seed=9)
    want = lp(live)
    merged = S.merged_model(live)
    merged.save_pretrained(tmp_path)
    back = Policy(AutoModelForCausalLM.from_pretrained(tmp_path), live.tokenizer)
    torch.testing.assert_close(lp(back), want, rtol=1e-5, atol=1e-5)
    if S.is_lora(live):
        assert torch.equal(lp(live), want)  # merging a copy left the live adapter alone
        assert not any("lora" in n for n, _ in merged.named_parameters())


def test_policy_snapshot_delegates_and_is_frozen():
    policy = fresh()
    snap = policy.snapshot()
    assert isinstance(snap, S.SnapshotPolicy) and snap.frozen
    assert snap.model.base is policy.model  # no copy of the module
    assert not snap.sequence_logprobs(PROMPTS, RESPONSES).requires_grad
    with pytest.raises(RuntimeError, match="frozen"):
        snap.model.requires_grad_(True)
    assert snap.snapshot() is snap


def test_gradient_checkpointing_gives_the_same_gradient():
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)  # peft draws the adapter's A from the global generator
        live = S.prepare(fresh(), lora_r=4, gradient_checkpointing=ckpt)
        live.model.train()
        live.sequence_logprobs(PROMPTS, RESPONSES).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in S.trainable_parameters(live)]))
    torch.testing.assert_close(grads[0], grads[1])


def test_gradient_checkpointing_default_and_refusal():
    """None: on for full fine-tuning of a real model (no world), off for LoRA and in a world; asked for on
    a model that cannot, a clear error."""
    from llm.backend import LLMConfig

    model = fresh().model
    assert LLMConfig().resolved_gradient_checkpointing(model) is True
    assert LLMConfig(lora_r=4).resolved_gradient_checkpointing(model) is False
    assert LLMConfig().resolved_gradient_checkpointing(model, world=object()) is False
    assert LLMConfig(gradient_checkpointing=False).resolved_gradient_checkpointing(model) is False
    assert LLMConfig(lora_r=4, gradient_checkpointing=True).resolved_gradient_checkpointing(model) is True
    plain = torch.nn.Linear(2, 2)
    assert LLMConfig().resolved_gradient_checkpointing(plain) is False  # cannot: not asked for, not used
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        LLMConfig(gradient_checkpointing="yes")
    policy = fresh()
    policy.model.supports_gradient_checkpointing = False
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        S.prepare(policy, gradient_checkpointing=True)


def test_bad_input():
    policy = fresh()
    with pytest.raises(ValueError, match="lora_r"):
        S.prepare(policy, lora_r=0)
    with pytest.raises(ValueError, match="lora_alpha"):
        S.prepare(policy, lora_alpha=8)
    live = S.prepare(policy, lora_r=2)
    with pytest.raises(ValueError, match="already prepared"):
        S.prepare(live, lora_r=2)
    with pytest.raises(ValueError, match="snapshot"):
        S.prepare(S.snapshot(live))
    other = S.prepare(fresh(), lora_r=2)
    with pytest.raises(ValueError, match="another model"):
        S.load_into(live, S.snapshot(other))
    with pytest.raises(ValueError, match="another model"):
        S.restore(live, S.snapshot(S.prepare(fresh())).state_dict())


def test_snapshot_device_and_active_block():
    live = S.prepare(fresh(), snapshot_device="cpu")
    perturb(live, seed=10)
    snap = S.snapshot(live)
    assert all(t.device.type == "cpu" for t in snap.model.tensors.values())
    want = lp(snap)
    with S.active(snap) as same:
        assert same.model._staged is None or all(t.device == live.device for t in same.model._staged.values())
        assert torch.equal(lp(snap), want)
    assert snap.model._staged is None
    with S.active(live):  # a live (or any plain) policy: a no-op block
        pass


@pytest.mark.parametrize("lora_r", [None, 4])
def test_a_dropped_policy_frees_its_model(lora_r):
    """The registries hold models weakly: once the live policy, its reference and its snapshots are
    dropped, the model is freed (before, the registry's reference snapshot kept every prepared model
    — a full copy of the weights for full fine-tuning — alive for the rest of the process)."""
    import gc
    import weakref

    live = S.prepare(fresh(), lora_r=lora_r)
    ref, snap = S.reference(live), S.snapshot(live)
    assert torch.equal(lp(ref), lp(S.reference(live)))  # a new view of the same frozen tensors
    module = weakref.ref(live.model)
    tensor = weakref.ref(next(iter(ref.model.tensors.values())))  # one of the reference's frozen tensors
    del live, ref, snap
    gc.collect()
    assert module() is None and tensor() is None
