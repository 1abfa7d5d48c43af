"""experiments/llm_alignment.py --quick: a tiny random LM through the whole pipeline (LoRA training of
every algorithm and the BT baseline, held-out win rates, the tournament), its rows and its figure."""
import numpy as np
import pytest

from experiments import common
from experiments import llm_alignment as exp


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("llm_alignment")
    cfg = exp.main(["--quick", "--out", str(out / "results"), "--figures", str(out / "figures")])
    return cfg, common.read_csv(cfg.csv_path)


def test_rows_for_every_algorithm(quick):
    cfg, rows = quick
    assert set(cfg.algorithms) == set(exp.ALGORITHMS)
    held = rows.where(game="heldout")
    for name in exp.ALGORITHMS:
        steps = held.where(algorithm=name, metric="win_rate_vs_ref")
        assert [r["iteration"] for r in steps] == [0, 1, 2]
        for t in (1, 2):
            (est,) = [r["value"] for r in steps if r["iteration"] == t]
            (lo,) = held.where(algorithm=name, iteration=t, metric="win_rate_vs_ref_low")
            (hi,) = held.where(algorithm=name, iteration=t, metric="win_rate_vs_ref_high")
            assert 0 <= lo["value"] <= est <= hi["value"] <= 1
        # the backend's training metrics, one record per step (0, 1, 2)
        kl = rows.where(game="train", algorithm=name, metric="kl_ref")
        assert [r["iteration"] for r in kl] == [0, 1, 2]
        assert rows.where(game="runtime", algorithm=name, metric="train_seconds")[0]["value"] > 0


def test_tournament_is_a_preference_game(quick):
    cfg, rows = quick
    nash = rows.where(game="tournament", metric="nash_weight")
    names = [exp.label(r["algorithm"], r["iteration"]) for r in nash]
    assert names[0] == exp.REFERENCE and len(names) == 1 + len(exp.ALGORITHMS) * len(cfg.tournament_steps)
    w = np.array([r["value"] for r in nash])
    assert (w >= -1e-12).all() and w.sum() == pytest.approx(1)
    P = np.full((len(names), len(names)), 0.5)
    idx = {n: i for i, n in enumerate(names)}
    for r in rows.where(metric="tournament_win_rate"):
        P[idx[exp.label(r["algorithm"], r["iteration"])], idx[r["game"][3:]]] = r["value"]
    np.testing.assert_allclose(P + P.T, 1, atol=1e-12)
    # the NE is an equilibrium of that matrix: no policy beats it by more than its exploitability
    (ne_gap,) = rows.where(metric="nash_exploitability")
    assert (P @ w).max() - 0.5 <= ne_gap["value"] + 1e-9 and ne_gap["value"] < 1e-6
    expl = np.array([r["value"] for r in rows.where(game="tournament", metric="exploitability")])
    np.testing.assert_allclose(expl, P.max(0) - 0.5, atol=1e-9)
    # intransitivity is measured for the population and the BT fit (a reward: never cyclic)
    assert rows.where(algorithm="population", metric="cyclic_triples")
    (bt_cyc,) = rows.where(algorithm="bt", metric="cyclic_triples")
    assert bt_cyc["value"] == 0


def test_figure_and_plot_only(quick, tmp_path):
    cfg, rows = quick
    fig = cfg.figure_path()
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = fig.stat().st_mtime_ns
    exp.main(["--quick", "--plot-only", "--out", cfg.out, "--figures", cfg.figures])
    assert fig.stat().st_mtime_ns >= before


def test_every_step_kept_for_a_rerun(quick):
    cfg, _ = quick
    wd = exp.workdir(cfg)
    for n in exp.ALGORITHMS:
        for f in ("checkpoint.pkl", "evals.json", "records.json"):
            assert (wd / n / f).exists()


def test_bad_input_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    bad_rows = tmp_path / "bad.jsonl"
    bad_rows.write_text('{"prompt": "p", "a": "x"}\n')  # no b, no label
    for argv, needle in ((["--eval-every", "3"], "--eval-every"), (["--tournament-steps", "2", "3"], "--tournament-steps"),
                         (["--algorithms", "nope"], "--algorithms"), (["--population", "matrix"], "--population"),
                         (["--hparams", "mpo.alpha=-1"], "--hparams"),
                         (["--population", "registers:-1"], "--population"),
                         (["--population", "gpm", "--preferences", str(tmp_path / "missing.jsonl")], "--preferences"),
                         (["--population", "gpm", "--preferences", str(bad_rows)], "--preferences")):
        with pytest.raises(SystemExit) as e:
            exp.main(["--quick", "--out", str(out), "--figures", str(out), *argv])
        assert e.value.code == 2
        assert needle in capsys.readouterr().err
    assert not out.exists()


def test_evaluation_alone_needs_no_model(quick, tmp_path, monkeypatch):
    """Once every algorithm is trained, a re-run with fewer --algorithms or --steps evaluates from the
    saved texts without loading the model."""
    cfg, rows = quick
    monkeypatch.setattr(exp.Setup, "_load", lambda self: pytest.fail("the model was loaded"))
    again = exp.main(["--quick", "--out", cfg.out, "--figures", str(tmp_path), "--algorithms", "mpo", "bt"])
    sub = common.read_csv(again.csv_path)
    assert sub.unique("algorithm")[:2] == ["mpo", "bt"] and "nash_md" not in sub.unique("algorithm")
    same = [r["value"] for r in rows.where(game="heldout", algorithm="mpo", metric="win_rate_vs_ref")]
    assert [r["value"] for r in sub.where(game="heldout", algorithm="mpo", metric="win_rate_vs_ref")] == same
    short = exp.main(["--quick", "--out", cfg.out, "--figures", str(tmp_path), "--steps", "1",
                      "--tournament-steps", "1"])
    sub = common.read_csv(short.csv_path)
    assert [r["value"] for r in sub.where(game="heldout", algorithm="mpo", metric="win_rate_vs_ref")] == same[:2]


def test_annotators_population_and_its_feature_bt(tmp_path):
    """The rule-based population: the BT baseline is fitted on the annotators' scores (one weight
    each), and is a reward (no cycles)."""
    cfg = exp.main(["--quick", "--population", "annotators", "--algorithms", "mpo", "bt",
                    "--out", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")])
    rows = common.read_csv(cfg.csv_path)
    weights = {r["metric"] for r in rows.where(algorithm="bt", game="bt_fit") if r["metric"].startswith("w_")}
    assert weights == {"w_length", "w_keywords", "w_diversity"}
    (bt_cyc,) = rows.where(algorithm="bt", metric="cyclic_triples")
    assert bt_cyc["value"] == 0


def test_register_game_exploitability_and_mix(quick):
    """The default population (registers): every checkpoint's exact exploitability in the register
    game and its register mix; step 0 is the reference's, the same for every algorithm."""
    import json

    from llm.oracles import REGISTERS, RegisterPopulation

    cfg, rows = quick
    assert cfg.population == "registers"
    gap = rows.where(game="heldout", metric="register_exploitability")
    pop = RegisterPopulation()
    setup = json.loads((exp.workdir(cfg) / "setup.json").read_text())
    ref = [ys[:cfg.eval_samples] for ys in setup["reference_eval"]]
    want0 = pop.exploitability(setup["eval_texts"], ref)
    for name in exp.ALGORITHMS:
        mine = gap.where(algorithm=name)
        assert [r["iteration"] for r in mine] == [0, 1, 2]
        assert mine[0]["value"] == pytest.approx(want0, abs=1e-12)
        evals = json.loads((exp.workdir(cfg) / name / "evals.json").read_text())
        assert mine[2]["value"] == pytest.approx(pop.exploitability(setup["eval_texts"], evals["2"]), abs=1e-12)
        for t in (0, 1, 2):
            shares = [rows.where(game="heldout", algorithm=name, iteration=t, metric=f"register_share_{r}")[0]["value"]
                      for r in REGISTERS]
            assert sum(shares) == pytest.approx(1) and min(shares) >= 0
    # the BT baseline is fitted on the register memberships: one weight per register
    weights = {r["metric"] for r in rows.where(algorithm="bt", game="bt_fit") if r["metric"].startswith("w_")}
    assert weights == {"w_structured", "w_formal", "w_casual"}


def test_gpm_population_and_its_embedding_bt(tmp_path):
    """The learned population (a GPM trained in-process on --preferences): the BT baseline is a linear
    reward on its embeddings, and a reward (no cycles); no register rows (it has no register game)."""
    cfg = exp.main(["--quick", "--population", "gpm", "--algorithms", "mpo", "bt",
                    "--out", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")])
    rows = common.read_csv(cfg.csv_path)
    assert (exp.workdir(cfg) / "population_gpm" / "config.json").exists()
    assert rows.where(algorithm="bt", metric="bt_heldout_agreement")
    (bt_cyc,) = rows.where(algorithm="bt", metric="cyclic_triples")
    assert bt_cyc["value"] == 0
    assert not rows.where(metric="register_exploitability")


def test_chunks_resume_exactly(quick, tmp_path):
    """Each evaluated chunk frees its model and the next resumes the checkpoint: training to step 2 in
    two chunks (the fixture: --eval-every 1) answers exactly as training to step 2 in one."""
    import json

    cfg, _ = quick
    one = exp.main(["--quick", "--algorithms", "mpo", "nash_md", "--eval-every", "2", "--tournament-steps", "2",
                    "--out", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")])
    for name in ("mpo", "nash_md"):
        chunked = json.loads((exp.workdir(cfg) / name / "evals.json").read_text())["2"]
        whole = json.loads((exp.workdir(one) / name / "evals.json").read_text())["2"]
        assert chunked == whole
