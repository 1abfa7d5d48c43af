"""Oracles judge text: antisymmetry on different responses (both orders), batching, counting,
the reward read at the attention mask's last position (issue 8.1), the judge's symmetrisation,
the annotators' intransitivity, mixtures and the --oracle grammar."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    CTRLConfig,
    CTRLForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from games.validation import tolerance
from llm import (
    AnnotatorPopulation,
    CountingOracle,
    JudgeOracle,
    MatrixOracle,
    MixtureOracle,
    PreferenceOracle,
    RewardModelOracle,
    as_oracle,
    check_antisymmetric,
    from_spec,
    tiny_model,
    tiny_tokenizer,
    validate_preference_matrix,
)
from llm.oracles import CountedOracle, RegisterPopulation, parse_spec

P3 = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast", "A", "B",
         "user", "system", "assistant", "because", "example", "first", "step"]
TEXTS = ["the cat sat on a mat", "a big red dog ran", "the blue cat", "dog", "fast red cat ran on the mat",
         "a dog sat", "the the the cat", "first because example step", "big blue mat", "ran"]
F32 = tolerance(np.float32)


def _seed_model(cls, config, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config).eval()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(WORDS)


@pytest.fixture(scope="module")
def llama_reward(tok):
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id, num_labels=1, initializer_range=0.5)
    return RewardModelOracle(_seed_model(LlamaForSequenceClassification, config), tok, batch_size=3)


def _ctrl(vocab, pad_token_id, seed=0):
    config = CTRLConfig(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, dff=64, n_positions=64,
                        num_labels=1, pad_token_id=pad_token_id, initializer_range=0.5)
    return _seed_model(CTRLForSequenceClassification, config, seed)


@pytest.fixture(scope="module")
def bert_reward(tok):
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=1, pad_token_id=tok.pad_token_id,
                        initializer_range=0.5)
    return RewardModelOracle(_seed_model(BertForSequenceClassification, config), tok)


CHAT = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}")


def _judge_tokenizer():
    t = tiny_tokenizer(WORDS)
    t.chat_template = CHAT
    return t


@pytest.fixture(scope="module")
def preference(tmp_path_factory, tok):
    """A GPM head (random, k = 4) on a tiny random BERT encoder saved with the word-level tokenizer."""
    from transformers import BertModel

    from llm.oracles import PreferenceModelOracle, SkewHead, TextEmbedder

    path = tmp_path_factory.mktemp("encoder")
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    _seed_model(BertModel, config).save_pretrained(path)
    tok.save_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = SkewHead(32, k=4)
        torch.nn.init.normal_(head.out.weight, std=3.0)
    return PreferenceModelOracle(TextEmbedder(path, batch_size=3), head)


@pytest.fixture(scope="module")
def judge():
    t = _judge_tokenizer()
    return JudgeOracle(tiny_model(t, seed=3, init_std=0.5, max_positions=256), t, batch_size=4)


def always_first_letter_judge():
    """A real LM whose next token is "A" with probability ≈ 0.993 whatever it reads."""
    t = _judge_tokenizer()
    model = tiny_model(t, seed=0, max_positions=256)
    head = torch.nn.Linear(model.config.hidden_size, len(t), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[t.convert_tokens_to_ids("A")] = 5.0
    model.lm_head = head
    return JudgeOracle(model, t)


def oracle_factories(tok, llama_reward, bert_reward, judge, preference):
    matrix = MatrixOracle(P3, rule=lambda x, y: len(y.split()) % 3)
    return {
        "matrix": matrix,
        "annotators": AnnotatorPopulation(),
        "annotators-majority": AnnotatorPopulation(aggregate="majority"),
        "registers": RegisterPopulation(),
        "reward-llama": llama_reward,
        "reward-ctrl": RewardModelOracle(_ctrl(len(tok), tok.pad_token_id), tok, batch_size=2),
        "reward-bert": bert_reward,
        "judge": judge,
        "preference": preference,
        "mixture": MixtureOracle([matrix, AnnotatorPopulation(), llama_reward], [0.2, 0.5, 0.3]),
    }


NAMES = ["matrix", "annotators", "annotators-majority", "registers", "reward-llama", "reward-ctrl", "reward-bert", "judge",
         "preference", "mixture"]


@pytest.fixture(scope="module")
def oracles(tok, llama_reward, bert_reward, judge, preference):
    return oracle_factories(tok, llama_reward, bert_reward, judge, preference)


#: texts in different registers (the word texts above are all one register: RegisterPopulation ties them)
REGISTER_TEXTS = ["1. the cat\n2. the dog", "fundamentally, categorisation determines everything", "wow, fun cat!",
                  "the cat sat on a mat", "**Dogs**: they ran", "oh hey, a dog? cool", "Here:\n- a\n- b\n- c",
                  "a comprehensive, systematic explanation", "yay!!", "the dog"]


def _pairs(seed, n=6, texts=TEXTS):
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(texts), n)
    j = (i + rng.integers(1, len(texts), n)) % len(texts)  # j != i: different responses
    prompts = [texts[k] for k in rng.integers(0, len(texts), n)]
    return prompts, [texts[k] for k in i], [texts[k] for k in j]


@pytest.mark.parametrize("name", NAMES)
def test_every_oracle_is_antisymmetric_on_different_responses_batched_and_counted(oracles, name):
    oracle = oracles[name]
    assert isinstance(oracle, PreferenceOracle)
    prompts, a, b = _pairs(1, texts=REGISTER_TEXTS if name == "registers" else TEXTS)
    assert all(x != y for x, y in zip(a, b))
    before = oracle.queries
    p_ab, p_ba = oracle.prob(prompts, a, b), oracle.prob(prompts, b, a)
    assert oracle.queries - before == 2 * len(a)
    assert p_ab.dtype == torch.float64 and p_ab.shape == (len(a),) and p_ab.device.type == "cpu"
    assert ((p_ab >= 0) & (p_ab <= 1)).all()
    assert torch.allclose(p_ab + p_ba, torch.ones_like(p_ab), rtol=0, atol=F32)
    assert check_antisymmetric(oracle, prompts, a, b) <= F32
    # batched == one pair at a time (the batch's composition does not change an answer)
    single = torch.cat([oracle.prob([x], [y], [z]) for x, y, z in zip(prompts, a, b)])
    assert torch.allclose(single, p_ab, rtol=0, atol=F32)
    # identical responses tie; an empty batch is fine
    assert oracle.prob(prompts[:2], a[:2], a[:2]).tolist() == [0.5, 0.5]
    assert oracle.prob([], [], []).shape == (0,)
    if name not in ("annotators-majority",):
        assert p_ab.std() > 1e-3, "the oracle does not discriminate these responses: the test would be vacuous"


def test_oracles_refuse_token_ids_and_ragged_batches(oracles):
    oracle = oracles["annotators"]
    with pytest.raises(TypeError, match=r"a\[0\].*decode token ids first"):
        oracle.prob(["x"], [[4, 5]], ["the cat"])
    with pytest.raises(ValueError, match="batch sizes differ"):
        oracle.prob(["x"], ["the cat", "dog"], ["dog"])
    with pytest.raises(TypeError, match="prompts = 'x'"):
        oracle.prob("x", ["a"], ["b"])


class HalfOnTies:
    """Issue 9 class 2: ½ on identical responses and 0.9 otherwise (no counter, not antisymmetric)."""

    def prob(self, prompts, a, b):
        return torch.tensor([0.5 if x == y else 0.9 for x, y in zip(a, b)], dtype=torch.float64)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5))
def test_check_antisymmetric_always_catches_a_judge_that_is_fair_only_on_ties(seed, n):
    prompts, a, b = _pairs(seed, n)
    with pytest.raises(ValueError, match=r"not antisymmetric: P\(a≻b\) \+ P\(b≻a\) = 1.8"):
        check_antisymmetric(HalfOnTies(), prompts, a, b)
    wrapped = as_oracle(HalfOnTies())  # wrapping counts it but does not hide the fault
    with pytest.raises(ValueError, match="not antisymmetric"):
        check_antisymmetric(wrapped, prompts, a, b)
    assert wrapped.queries == 2 * n


def test_check_antisymmetric_needs_different_responses_and_checks_range():
    with pytest.raises(ValueError, match="at least one pair of different responses"):
        check_antisymmetric(HalfOnTies(), ["x", "x"], ["a", "b"], ["a", "b"])

    class OutOfRange:
        def prob(self, prompts, a, b):
            return torch.full((len(a),), 1.5)

    with pytest.raises(ValueError, match=r"P = 1.5 .* must lie in \[0, 1\]"):
        check_antisymmetric(OutOfRange(), ["x"], ["a"], ["b"])

    class WrongShape:
        def prob(self, prompts, a, b):
            return torch.full((len(a) + 1,), 0.5)

    with pytest.raises(ValueError, match="2 probabilities for 1 pairs"):
        as_oracle(WrongShape()).prob(["x"], ["a"], ["b"])
    # the project tolerance, scaled to the oracle's dtype: a float32-rounding violation passes
    class Rounded:
        dtype = torch.float32

        def prob(self, prompts, a, b):
            return torch.tensor([0.7 + 1e-6 if x < y else 0.3 for x, y in zip(a, b)], dtype=torch.float64)

    assert 0 < check_antisymmetric(Rounded(), ["x"], ["a"], ["b"]) <= F32


def test_as_oracle_counts_an_uncounted_oracle_or_refuses_clearly():
    wrapped = as_oracle(lambda prompts, a, b: [0.5] * len(a))
    assert isinstance(wrapped, CountedOracle)
    wrapped.prob(["x"] * 3, ["a"] * 3, ["b"] * 3)
    assert wrapped.queries == 3
    m = MatrixOracle(P3, rule=lambda x, y: 0)
    assert as_oracle(m) is m
    with pytest.raises(TypeError, match="oracle = 42 is not allowed; it must have a method prob"):
        as_oracle(42)
    with pytest.raises(TypeError, match="not a class"):
        as_oracle(AnnotatorPopulation)


def test_counting_oracle_subclasses_are_antisymmetric_by_construction():
    class Biased(CountingOracle):
        """Ignores the order: says the first wins with 0.9. The base class makes it antisymmetric."""

        def _prob(self, prompts, a, b):
            assert all(x < y for x, y in zip(a, b))  # only canonical pairs reach _prob
            return np.full(len(a), 0.9)

    o = Biased()
    p = o.prob(["x", "x", "x"], ["a", "b", "a"], ["b", "a", "a"])
    assert p.tolist() == [0.9, pytest.approx(0.1, abs=1e-15), 0.5]
    assert check_antisymmetric(o, ["x"], ["a"], ["b"]) <= 1e-15


# -- matrix ----------------------------------------------------------------------------------------
def test_matrix_oracle_reproduces_its_matrix_exactly_from_text():
    oracle = MatrixOracle.from_words(P3, [["the", "a"], ["dog"], ["big", "fast"]])
    got = oracle.prob(["x"] * 4, ["the cat", "a mat", "dog ran", "fast dog"], ["dog", "big red", "fast cat", "the mat"])
    assert got.tolist() == [P3[0, 1], P3[0, 2], P3[1, 2], P3[2, 0]]
    assert oracle.queries == 4
    with pytest.raises(ValueError, match="no action word"):
        oracle.prob(["x"], ["cat"], ["dog"])
    with pytest.raises(ValueError, match="two actions"):
        MatrixOracle.from_words(P3, [["the"], ["the"], ["dog"]])
    with pytest.raises(ValueError, match="outside"):
        MatrixOracle(P3, rule=lambda x, y: 7).prob(["x"], ["a"], ["b"])
    with pytest.raises(TypeError, match="rule"):
        MatrixOracle(P3, rule=None)


def test_matrix_validation():
    with pytest.raises(ValueError, match="antisymmetric"):
        MatrixOracle(np.array([[0.5, 0.6], [0.6, 0.5]]), rule=lambda x, y: 0)
    with pytest.raises(ValueError, match="square"):
        validate_preference_matrix(np.ones((2, 3)) / 2)


# -- annotators ------------------------------------------------------------------------------------
X_LONG = "Sure, here is an answer that goes on and on about many different things in a rather wordy way, going on and on"
Y_KEYWORDS = "First, because because example example step step therefore"
Z_SHORT = "Short, crisp, first reply."


@pytest.mark.parametrize("aggregate", ["mean", "majority"])
def test_annotator_population_is_intransitive_on_a_condorcet_triple(aggregate):
    pop = AnnotatorPopulation(aggregate=aggregate)
    x = ["Explain the tides."] * 3
    a, b = [X_LONG, Y_KEYWORDS, Z_SHORT], [Y_KEYWORDS, Z_SHORT, X_LONG]
    votes = pop.votes(x, a, b)  # rows: length, keywords, diversity
    # each annotator is transitive; together they form the Condorcet profile
    assert (votes[0] > 0.5).tolist() == [True, True, False]  # length: X > Y > Z
    assert (votes[1] > 0.5).tolist() == [False, True, True]  # keywords: Y > Z > X
    assert (votes[2] > 0.5).tolist() == [True, False, True]  # diversity: Z > X > Y
    p = pop.prob(x, a, b)
    assert (p > 0.6).all(), p  # X ≻ Y ≻ Z ≻ X
    if aggregate == "majority":
        assert p.tolist() == [1.0, 1.0, 1.0]


def test_annotator_population_validates():
    with pytest.raises(ValueError, match="aggregate = 'vote'"):
        AnnotatorPopulation(aggregate="vote")
    with pytest.raises(ValueError, match="weights"):
        AnnotatorPopulation(weights=[0.5, 0.5])
    from llm.oracles import Annotator

    with pytest.raises(ValueError, match="temperature = 0"):
        Annotator("x", len, 0)


# -- reward models (issue 8.1) ---------------------------------------------------------------------
def _manual_head_at_last(model, ids):
    """The head applied to the final hidden state at the last token of an unpadded sequence."""
    with torch.no_grad():
        hidden = model.transformer(input_ids=torch.tensor([ids]))[0]
        return model.classifier(hidden[0, -1]).item()


def test_reward_is_read_at_the_final_eos_when_pad_is_eos_for_a_classifier_head():
    tok = tiny_tokenizer(WORDS, pad_token="<eos>")  # pad == eos, as many chat models ship
    eos = tok.eos_token_id
    assert tok.pad_token_id == eos
    model = _ctrl(len(tok), eos)
    assert not hasattr(model, "score") and hasattr(model, "classifier")
    rm = RewardModelOracle(model, tok)
    x, a = tok.encode("the cat", add_special_tokens=False), tok.encode("sat on a mat", add_special_tokens=False)
    with_eos, without = x + a + [eos], x + a
    r = rm.score_ids([with_eos, without])
    assert r[0].item() == pytest.approx(_manual_head_at_last(model, with_eos), abs=1e-5)  # read AT the EOS
    assert r[1].item() == pytest.approx(_manual_head_at_last(model, without), abs=1e-5)
    assert abs(r[0] - r[1]) > 1e-3
    # transformers' own pooling (match the pad id) skips the final EOS: the fault this fixes
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor([with_eos])).logits.item()
    assert theirs == pytest.approx(r[1].item(), abs=1e-5)
    # and through text: the response "... <eos>" ends in the EOS token
    assert rm.encode(["the cat"], ["sat on a mat <eos>"])[0] == with_eos
    assert rm.rewards(["the cat"], ["sat on a mat <eos>"]).item() == pytest.approx(r[0].item(), abs=1e-5)


@pytest.mark.parametrize("head", ["ctrl", "llama"])
def test_reward_does_not_depend_on_the_batch_when_config_pad_differs_from_the_tokenizer(tok, head):
    other_pad = tok.convert_tokens_to_ids("the")  # a real word: the model's pooling would stop on it
    if head == "ctrl":
        model = _ctrl(len(tok), other_pad, seed=2)
    else:
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                             pad_token_id=other_pad, num_labels=1, initializer_range=0.5)
        model = _seed_model(LlamaForSequenceClassification, config, 2)
    rm = RewardModelOracle(model, tok)
    alone = rm.rewards(["a dog"], ["sat on the mat"])
    batch = rm.rewards(["a dog", "a dog"], ["sat on the mat", "ran on the big red mat fast the cat sat"])
    assert batch[0].item() == pytest.approx(alone.item(), abs=1e-5)
    ids = rm.encode(["a dog"], ["sat on the mat"])[0]
    with torch.no_grad():
        hidden = model.base_model(input_ids=torch.tensor([ids]))[0]
        head_module = model.classifier if head == "ctrl" else model.score
        want = head_module(hidden[0, -1]).item()
    assert alone.item() == pytest.approx(want, abs=1e-5)
    assert model.config.pad_token_id == other_pad  # the user's config is left as it was


def test_reward_oracle_is_bradley_terry_and_refuses_multi_label_and_empty_text(tok, llama_reward):
    r = llama_reward.rewards(["the cat", "a dog"], ["sat", "ran fast"])
    p = llama_reward.prob(["the cat"], ["sat"], ["dog"])
    rd = llama_reward.rewards(["the cat"], ["dog"])
    assert p.item() == pytest.approx(torch.sigmoid(r[0] - rd[0]).item(), abs=F32)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, num_labels=2)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelOracle(LlamaForSequenceClassification(config), tok)
    with pytest.raises(ValueError, match="empty"):
        llama_reward.score_ids([[]])


def test_reward_oracle_load_round_trip_and_clear_errors(tmp_path, tok, llama_reward):
    llama_reward.model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    loaded = from_spec(f"reward:{tmp_path / 'rm'}")
    prompts, a, b = _pairs(3)
    assert torch.allclose(loaded.prob(prompts, a, b), llama_reward.prob(prompts, a, b), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="reward model = .*no such directory"):
        from_spec(f"reward:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        from_spec(f"reward:{tmp_path / 'empty'}")
    (tmp_path / "rm" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not be loaded"):
        from_spec(f"reward:{tmp_path / 'rm'}")
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="judge|config"):
        from_spec(f"judge:{tmp_path / 'judge'}")
    with pytest.raises(FileNotFoundError):
        from_spec(f"judge:{tmp_path / 'nothing'}")


# -- judge -----------------------------------------------------------------------------------------
def test_a_judge_that_always_says_A_gives_one_half():
    j = always_first_letter_judge()
    prompts, a, b = _pairs(5)
    first = j.p_first(prompts, a, b)
    assert (first > 0.99).all()  # position bias at its worst ...
    assert torch.allclose(j.prob(prompts, a, b), torch.full((len(a),), 0.5, dtype=torch.float64), atol=1e-12)  # ... cancelled


def test_judge_symmetrises_both_orders(judge):
    prompts, a, b = _pairs(7)
    want = 0.5 * (judge.p_first(prompts, a, b) + 1 - judge.p_first(prompts, b, a))
    assert torch.allclose(judge.prob(prompts, a, b), want, atol=1e-12)
    assert (judge.p_first(prompts, a, b) - judge.p_first(prompts, b, a)).abs().max() > 1e-3  # orders differ
    assert "system" in judge.render("the cat", "dog", "mat")


def test_judge_refuses_letters_that_are_not_single_known_tokens():
    t = _judge_tokenizer()
    model = tiny_model(t, seed=0, max_positions=256)
    with pytest.raises(ValueError, match="'the cat' is 2 tokens"):
        JudgeOracle(model, t, letters=("the cat", "B"))
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        JudgeOracle(model, t, letters=("Z", "B"))
    with pytest.raises(ValueError, match="two different letters"):
        JudgeOracle(model, t, letters=("A", "A"))


# -- mixtures --------------------------------------------------------------------------------------
def _order(order):
    rank = {a: i for i, a in enumerate(order)}
    return np.array([[0.5 if i == j else float(rank[i] < rank[j]) for j in range(3)] for i in range(3)])


def test_mixture_of_transitive_voters_is_intransitive_and_counts_members():
    rule = lambda x, y: int(y)  # noqa: E731 - responses "0", "1", "2" are the actions
    voters = [MatrixOracle(_order(o), rule) for o in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]]
    mix = MixtureOracle(voters)
    p = mix.prob(["x"] * 3, ["0", "1", "2"], ["1", "2", "0"])
    assert np.allclose(p.numpy(), 2 / 3)  # 0 ≻ 1 ≻ 2 ≻ 0
    assert mix.queries == 3 and all(v.queries == 3 for v in voters)


def test_mixture_validates_weights_and_members():
    m = MatrixOracle(P3, rule=lambda x, y: 0)
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureOracle([m, m], [0.5, 0.6])
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureOracle([m, m], [1.5, -0.5])
    with pytest.raises(ValueError, match="one weight per oracle"):
        MixtureOracle([m], [0.5, 0.5])
    with pytest.raises(TypeError, match=r"oracles\[1\]"):
        MixtureOracle([m, "annotators"])
    with pytest.raises(ValueError, match="non-empty"):
        MixtureOracle([])


# -- the --oracle grammar --------------------------------------------------------------------------
@pytest.mark.parametrize("spec, want", [
    ("annotators", ("annotators", "mean")),
    ("annotators:majority", ("annotators", "majority")),
    ("matrix", ("matrix", None)),
    ("registers", ("registers", 2.0)),
    ("registers:3.5", ("registers", 3.5)),
    ("mix:registers+annotators", ("mix", ([("registers", 2.0), ("annotators", "mean")], None))),
    ("reward:/m/rm", ("reward", "/m/rm")),
    ("judge:/m/smol.gguf", ("judge", "/m/smol.gguf")),
    ("preference:runs/a+b,c@d", ("preference", "runs/a+b,c@d")),
    ("mix:annotators+preference:runs/pm@0.3,0.7", ("mix", ([("annotators", "mean"), ("preference", "runs/pm")], [0.3, 0.7]))),
    ("mix:annotators,judge:/m/s.gguf,1,3", ("mix", ([("annotators", "mean"), ("judge", "/m/s.gguf")], [0.25, 0.75]))),
    ("mix:reward:/a+b+annotators", ("mix", ([("reward", "/a+b"), ("annotators", "mean")], None))),
])
def test_spec_grammar(spec, want):
    assert parse_spec(spec) == want


@pytest.mark.parametrize("spec, match", [
    ("annotator", "did you mean 'annotators'"),
    ("reward", "reward needs a path"),
    ("registers:0", "finite number BETA > 0"),
    ("registers:inf", "finite number BETA > 0"),
    ("registers:strong", "finite number BETA > 0"),
    ("reward:", "needs a path after the colon"),
    ("mix:annotators", "at least two sources"),
    ("mix:annotators+annotators@1", "1 weights for 2 sources"),
    ("mix:annotators+annotators@0,0", "positive sum"),
    ("mix:annotators+mix:annotators+matrix", "do not nest"),
    (3, "it must be a string"),
])
def test_spec_errors_name_the_argument(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec, "--oracle")
    with pytest.raises(ValueError, match="--oracle = "):
        parse_spec(spec, "--oracle")


def test_from_spec_builds_oracles(world):
    pop = from_spec("mix:annotators+annotators:majority@0.25,0.75")
    assert isinstance(pop, MixtureOracle) and pop.weights.tolist() == [0.25, 0.75]
    with pytest.raises(ValueError, match="needs a world"):
        from_spec("matrix")
    assert isinstance(from_spec("matrix", world=world), MatrixOracle)
    with pytest.raises(FileNotFoundError, match="preference model = .*no such directory"):
        from_spec("preference:/nonexistent/pm")
