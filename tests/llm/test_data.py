"""Prompts from files: every format, chat templates, the eval split and clear errors."""

import csv
import json
from pathlib import Path

import pytest

from llm.data import Prompt, PromptSplit, load_prompts
from llm.models import load_tokenizer, tiny_gguf, tiny_tokenizer

TEXTS = ["the cat sat", "a dog ran on the mat", "big red dog", "the blue cat ran fast"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts.jsonl"


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory):
    """A byte-level BPE tokenizer with a ChatML template (the tiny GGUF's, like SmolLM2's)."""
    path = tmp_path_factory.mktemp("chat") / "tiny.gguf"
    tiny_gguf(path)
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def word_tok(words):
    return tiny_tokenizer(words)  # no chat template


def write(path: Path, fmt: str, rows: list[dict]) -> Path:
    path = path.with_suffix(fmt) if fmt != "saved" else path
    if fmt == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")  # a trailing blank line is fine
    elif fmt == ".json":
        path.write_text(json.dumps(rows))
    elif fmt == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "saved":
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


FORMATS = [".jsonl", ".json", ".csv", ".parquet", "saved"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_same_prompts(tmp_path, fmt, chat_tok):
    rows = [{"id": i, "prompt": t} for i, t in enumerate(TEXTS)]
    path = write(tmp_path / "p", fmt, rows)
    split = load_prompts(path, chat_tok)
    assert isinstance(split, PromptSplit) and split.eval == []
    assert [p.text for p in split.train] == TEXTS
    want = [chat_tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True)["input_ids"]
            for t in TEXTS]
    assert [p.ids for p in split.train] == want


def test_chat_template_ends_with_the_generation_prompt(chat_tok):
    (prompt,) = load_prompts(["the cat sat"], chat_tok).train
    assert prompt == Prompt("the cat sat", prompt.ids)
    assert chat_tok.decode(prompt.ids) == "<|im_start|>user\nthe cat sat<|im_end|>\n<|im_start|>assistant\n"
    assert all(isinstance(t, int) for t in prompt.ids)


def test_without_a_template_the_text_is_tokenised_as_is(word_tok):
    split = load_prompts([{"prompt": t} for t in TEXTS], word_tok)
    assert [p.ids for p in split.train] == [word_tok(t).input_ids for t in TEXTS]
    assert split.train[0].ids == [4, 5, 7]


def test_chat_messages(tmp_path, chat_tok, word_tok):
    convo = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "the cat sat"},
        {"role": "assistant", "content": "a reply the policy must not see"},
    ]
    path = write(tmp_path / "m", ".jsonl", [{"messages": convo}])
    (prompt,) = load_prompts(path, chat_tok).train  # "prompt" is absent, so "messages" is used
    assert prompt.text == "the cat sat"  # the user's own words, for oracles
    text = chat_tok.decode(prompt.ids)
    assert text.startswith("<|im_start|>system\nbe brief") and text.endswith("the cat sat<|im_end|>\n<|im_start|>assistant\n")
    assert "must not see" not in text
    # CSV cells hold the conversation as JSON text
    csv_path = write(tmp_path / "m", ".csv", [{"messages": json.dumps(convo)}])
    assert load_prompts(csv_path, chat_tok, column="messages").train == [prompt]
    with pytest.raises(ValueError, match="need a tokenizer with a chat template"):
        load_prompts(path, word_tok)
    one_turn = load_prompts([{"messages": [{"role": "user", "content": "the cat"}]}], word_tok).train
    assert one_turn[0].ids == [4, 5]


def test_eval_split_is_seeded_disjoint_and_complete(word_tok):
    rows = [{"prompt": " ".join(["the"] * (i + 1))} for i in range(20)]  # 20 distinct prompts
    a = load_prompts(rows, word_tok, eval_fraction=0.25, seed=3)
    assert (len(a.train), len(a.eval)) == (15, 5)
    assert sorted(p.text for p in a.train + a.eval) == sorted(r["prompt"] for r in rows)
    assert load_prompts(rows, word_tok, eval_fraction=0.25, seed=3) == a
    others = {tuple(p.text for p in load_prompts(rows, word_tok, eval_fraction=0.25, seed=s).eval) for s in range(4, 8)}
    assert len(others) > 1 and all(set(o) != {p.text for p in a.eval} for o in others)
    order = [r["prompt"] for r in rows]
    assert [p.text for p in a.train] == [t for t in order if t in {p.text for p in a.train}]  # file order kept
    tiny = load_prompts(rows[:3], word_tok, eval_fraction=0.01)
    assert (len(tiny.train), len(tiny.eval)) == (2, 1)  # at least one held out


def test_example_prompts_ship_and_load(chat_tok):
    lines = EXAMPLES.read_text().splitlines()
    assert len(lines) == 32
    split = load_prompts(EXAMPLES, chat_tok, eval_fraction=0.25, max_new_tokens=64, context_limit=256)
    assert (len(split.train), len(split.eval)) == (24, 8)
    assert len({p.text for p in split.train + split.eval}) == 32


def test_missing_column_names_the_columns_present(tmp_path, word_tok):
    path = write(tmp_path / "p", ".jsonl", [{"question": "the cat", "id": 1}])
    with pytest.raises(ValueError, match=r"no 'prompt' column; the columns present are \['question', 'id'\]"):
        load_prompts(path, word_tok)
    assert load_prompts(path, word_tok, column="question").train[0].text == "the cat"
    with pytest.raises(ValueError, match=r"no 'text' column"):
        load_prompts(path, word_tok, column="text")


@pytest.mark.parametrize("fmt", [".jsonl", ".json", ".csv"])
def test_empty_data(tmp_path, fmt, word_tok):
    path = tmp_path / f"empty{fmt}"
    path.write_text({".jsonl": "\n\n", ".json": "[]", ".csv": "prompt\n"}[fmt])
    with pytest.raises(ValueError, match="no prompts"):
        load_prompts(path, word_tok)


def test_unreadable_files(tmp_path, word_tok):
    with pytest.raises(FileNotFoundError, match="--prompts = .*no such file"):
        load_prompts(tmp_path / "missing.jsonl", word_tok, name="--prompts")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "the cat"}\n{"prompt": oops}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_prompts(bad, word_tok)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_prompts(tmp_path / "bad.json", word_tok)
    (tmp_path / "p.txt").write_text("the cat\n")
    with pytest.raises(ValueError, match=r"\.jsonl, \.json, \.csv, \.parquet"):
        load_prompts(tmp_path / "p.txt", word_tok)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        load_prompts(tmp_path / "bad.parquet", word_tok)
    (tmp_path / "latin.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_prompts(tmp_path / "latin.jsonl", word_tok)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="not a folder saved by datasets"):
        load_prompts(tmp_path / "folder", word_tok)


def test_bad_rows(word_tok):
    with pytest.raises(ValueError, match="row 1: the 'prompt' text is empty"):
        load_prompts([{"prompt": "the"}, {"prompt": "  "}], word_tok)
    with pytest.raises(ValueError, match="row 0: 'prompt' must be text or chat messages"):
        load_prompts([{"prompt": 3}], word_tok)
    with pytest.raises(ValueError, match="must end with a non-empty user message"):
        load_prompts([{"messages": [{"role": "system", "content": "x"}]}], word_tok)
    with pytest.raises(ValueError, match="row 0 is a int"):
        load_prompts([3], word_tok)


def test_prompts_that_cannot_fit_the_context(chat_tok, word_tok):
    long = "the " * 30
    with pytest.raises(ValueError, match=r"1 prompt\(s\) \(rows \[1\]\).*30 \+ max_new_tokens 8 > the context limit of 32"):
        load_prompts(["the cat", long], word_tok, max_new_tokens=8, context_limit=32)
    assert len(load_prompts(["the cat", long], word_tok, max_new_tokens=2, context_limit=32).train) == 2
    word_tok_limited = tiny_tokenizer(["the"])
    word_tok_limited.model_max_length = 16  # a tokenizer that states its context is used by default
    with pytest.raises(ValueError, match="context limit of 16"):
        load_prompts([long], word_tok_limited, max_new_tokens=1)


def test_bad_options(word_tok):
    with pytest.raises(ValueError, match="eval_fraction = 1.0 is not allowed"):
        load_prompts(TEXTS, word_tok, eval_fraction=1.0)
    with pytest.raises(ValueError, match="max_new_tokens = 0 is not allowed"):
        load_prompts(TEXTS, word_tok, max_new_tokens=0)
    with pytest.raises(ValueError, match="needs at least 2 prompts"):
        load_prompts(TEXTS[:1], word_tok, eval_fraction=0.5)
