"""Evaluation: win-rate intervals cover the truth (simulated), the tournament's NE is
games.nash_equilibrium of its matrix, and the CLI writes its rows and figure."""

import csv
import json
import math

import numpy as np
import pytest
import torch

import games
from llm import AnnotatorPopulation, MatrixOracle, Policy, tiny_model, tiny_tokenizer
from llm.data import load_prompts
from llm.evaluate import (
    CSV_NAME,
    FIGURE_NAME,
    RESPONSES_NAME,
    generate,
    main,
    prompt_interval,
    tournament,
    tournament_from_matrix,
    win_rate,
)
from llm.oracles import CountingOracle


@pytest.mark.parametrize("method, n, lo, hi", [("t", 30, 0.93, 0.97), ("t", 8, 0.93, 0.97),
                                                ("bootstrap", 30, 0.91, 0.97)])
def test_prompt_intervals_cover_the_true_mean(method, n, lo, hi):
    """Per-prompt win rates ~ Beta(2, 3) (mean 0.4): the 95% interval covers 0.4 at its nominal rate
    (percentile bootstrap a little below at small n, as expected)."""
    rng = np.random.default_rng(0)
    reps = 1000
    hits = 0
    for r in range(reps):
        w = rng.beta(2, 3, n)
        _, low, high = prompt_interval(w, level=0.95, method=method, n_boot=500, seed=r)
        hits += low <= 0.4 <= high
    assert lo <= hits / reps <= hi, hits / reps


class Quality(CountingOracle):
    """Responses are texts "q=<number>": P(a ≻ b) = σ(q_a − q_b)."""

    def _prob(self, prompts, a, b):
        q = lambda s: float(s.split("=")[1])  # noqa: E731
        return torch.sigmoid(torch.tensor([q(x) - q(y) for x, y in zip(a, b)], dtype=torch.float64))


def test_win_rate_intervals_cover_the_truth_through_an_oracle():
    """Prompt effect δ ~ N(0.3, 0.5²); A's responses q ~ N(δ, 1), B's ~ N(0, 1); truth E σ(D), D ~ N(0.3, 2.25)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    truth = float((weights * (1 / (1 + np.exp(-(0.3 + 1.5 * nodes))))).sum() / weights.sum())
    rng = np.random.default_rng(1)
    oracle = Quality()
    reps, n, m = 300, 20, 3
    hits = 0
    for _ in range(reps):
        delta = rng.normal(0.3, 0.5, n)
        a = [[f"q={v}" for v in rng.normal(d, 1, m)] for d in delta]
        b = [[f"q={v}" for v in rng.normal(0, 1, m)] for _ in delta]
        r = win_rate(oracle, [f"x{i}" for i in range(n)], a, b)
        hits += r.low <= truth <= r.high
    assert r.n_prompts == n and r.n_pairs == n * m * m and r.method == "t"
    assert oracle.queries == reps * n * m * m
    assert 0.91 <= hits / reps <= 0.98, (hits / reps, truth)


def test_win_rate_validates():
    o = AnnotatorPopulation()
    with pytest.raises(ValueError, match="one list of responses per prompt"):
        win_rate(o, ["x", "y"], [["a"]], [["b"], ["c"]])
    with pytest.raises(ValueError, match=r"a\[0\] = \[\] is not allowed"):
        win_rate(o, ["x"], [[]], [["b"]])
    with pytest.raises(ValueError, match="method = 'wilson'"):
        prompt_interval([0.2, 0.3], method="wilson")
    assert prompt_interval([0.7]) == (0.7, 0.0, 1.0)


P4 = np.array([[0.5, 0.8, 0.3, 0.6],
               [0.2, 0.5, 0.75, 0.4],
               [0.7, 0.25, 0.5, 0.55],
               [0.4, 0.6, 0.45, 0.5]])


def test_tournament_recovers_a_known_game_and_its_nash_equilibrium():
    # policy i always answers with a response of action i: the tournament must be the game itself
    oracle = MatrixOracle(P4, rule=lambda x, y: int(y.split()[0]))
    prompts = ["x0", "x1", "x2"]
    responses = {f"p{i}": [[f"{i} take {k}" for k in range(2)] for _ in prompts] for i in range(4)}
    t = tournament(oracle, prompts, responses)
    assert np.allclose(t.P, P4, atol=1e-12)
    want = games.nash_equilibrium(games.PreferenceGame(t.P))
    assert np.array_equal(t.nash, want)
    assert np.allclose(t.exploitability, (P4.max(0) - 0.5))  # max_j P(j ≻ i) − ½
    assert t.nash_exploitability <= 1e-8
    assert t.game.names == ("p0", "p1", "p2", "p3")
    # a game where no pure policy is unexploitable: every checkpoint is beaten by some other one
    assert (t.exploitability > 0.05).all() and (t.nash > 0).sum() >= 2
    rows = t.rows("matrix")
    assert sum(r["metric"] == "win_rate" for r in rows) == 12
    assert {r["metric"] for r in rows} == {"win_rate", "nash_weight", "exploitability"}


def test_tournament_of_text_policies_under_annotators_is_the_pairwise_win_rates():
    o = AnnotatorPopulation()
    prompts = ["Explain the tides.", "Name a colour."]
    responses = {
        "long": [["the moon pulls the water of the sea and the water of the sea moves up and down"]] * 2,
        "keywords": [["first because example step therefore because example"]] * 2,
        "short": [["gravity; note tides."]] * 2,
    }
    t = tournament(o, prompts, responses)
    for i, a in enumerate(t.names):
        for j, b in enumerate(t.names):
            if i != j:
                assert t.P[i, j] == pytest.approx(win_rate(o, prompts, responses[a], responses[b]).estimate, abs=1e-12)
    assert np.array_equal(t.nash, games.nash_equilibrium(games.PreferenceGame(t.P)))
    with pytest.raises(ValueError, match="at least two policies"):
        tournament(o, prompts, {"one": responses["long"]})
    t2 = tournament_from_matrix(["a", "b"], [[0.5, 0.9], [0.1, 0.5]])
    assert t2.nash.tolist() == [1.0, 0.0] and t2.exploitability.tolist() == pytest.approx([0.0, 0.4])


WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "why", "is", "tell", "me"]


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    tok = tiny_tokenizer(WORDS)
    dirs = []
    for seed in (0, 1):
        d = root / f"m{seed}"
        tiny_model(tok, seed=seed, init_std=0.5).save_pretrained(d)
        tok.save_pretrained(d)
        dirs.append(d)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                               ["why is the cat red", "tell me a dog", "the big mat", "why is a dog"]))
    return dirs, prompts


def test_generate_samples_every_prompt_in_one_batched_call(two_policies):
    dirs, prompts_file = two_policies
    policy = Policy.from_pretrained(dirs[0])
    prompts = load_prompts(prompts_file, policy.tokenizer, max_new_tokens=5).train
    out = generate(policy, prompts, 3, 5, generator=torch.Generator().manual_seed(0))
    assert len(out) == 4 and all(len(g) == 3 and all(isinstance(s, str) for s in g) for g in out)
    again = generate(policy, prompts, 3, 5, generator=torch.Generator().manual_seed(0))
    assert out == again


def test_cli_writes_rows_figure_and_responses_and_refuses_to_overwrite(two_policies, tmp_path, capsys):
    dirs, prompts_file = two_policies
    out = tmp_path / "eval"
    args = ["--policies", str(dirs[0]), str(dirs[1]), "--names", "ref", "trained", "--prompts", str(prompts_file),
            "--oracle", "annotators", "--out", str(out), "--samples", "2", "--max-new-tokens", "6"]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / CSV_NAME)))
    assert {r["metric"] for r in rows} == {"win_rate", "nash_weight", "exploitability"}
    wr = {(r["policy"], r["opponent"]): float(r["value"]) for r in rows if r["metric"] == "win_rate"}
    assert wr[("ref", "trained")] + wr[("trained", "ref")] == pytest.approx(1.0, abs=1e-12)
    ne = [float(r["value"]) for r in rows if r["metric"] == "nash_weight"]
    assert sum(ne) == pytest.approx(1.0)
    assert (out / FIGURE_NAME).stat().st_size > 1000
    assert len((out / RESPONSES_NAME).read_text().splitlines()) == 2 * 4
    before = (out / CSV_NAME).read_bytes()
    assert main(args) == 2
    assert "already holds tournament.csv" in capsys.readouterr().err
    assert (out / CSV_NAME).read_bytes() == before


@pytest.mark.parametrize("change, match", [
    ({"--policies": ["ONE"]}, "at least two policies"),
    ({"--prompts": ["/nonexistent.jsonl"]}, "--prompts = '/nonexistent.jsonl': no such file"),
    ({"--oracle": ["annotatorz"]}, "did you mean 'annotators'"),
    ({"--samples": ["0"]}, "--samples = 0 is not allowed"),
    ({"--level": ["1.5"]}, "--level = 1.5 is not allowed"),
    ({"--method": ["wilson"]}, "--method = 'wilson' is not allowed"),
    ({"--names": ["a", "a"]}, "distinct"),
])
def test_cli_refuses_bad_input_before_loading_anything(two_policies, tmp_path, capsys, change, match):
    dirs, prompts_file = two_policies
    opts = {"--policies": [str(dirs[0]), str(dirs[1])], "--prompts": [str(prompts_file)], "--oracle": ["annotators"],
            "--out": [str(tmp_path / "o")]}
    if change.get("--policies") == ["ONE"]:
        change = {"--policies": [str(dirs[0])]}
    opts.update(change)
    argv = [x for k, v in opts.items() for x in [k, *v]]
    assert main(argv) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o" / CSV_NAME).exists()
