"""experiments/conditioning.py in --quick mode writes tidy rows and its figure, and --plot-only redraws it."""
import numpy as np
import pytest

from experiments import common
from experiments import conditioning as exp


def test_quick_run_writes_rows_and_figure(tmp_path, capsys):
    cfg = exp.main(["--quick", "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert cfg.csv_path.exists() and cfg.figure_path().stat().st_size > 20_000
    rows = common.read_csv(cfg.csv_path)
    # (a) the anatomy: gap, log-ratio and KL at the same iterations; the game's conditioning
    g = "random(n=10,seed=0)"
    its = {m: [r["iteration"] for r in rows.where(game=g, algorithm="mpo", metric=m)]
           for m in ("duality_gap", "log_ratio", "kl_nash_magnet")}
    assert its["duality_gap"] == its["log_ratio"] == its["kl_nash_magnet"] and its["duality_gap"][-1] == 2000
    cond = {r["metric"]: r["value"] for r in rows.where(game=g, algorithm="conditioning")}
    assert round(cond["p_min"], 5) == 0.00265 and cond["p_min_action"] == 0 and cond["unique"] == 1
    # by step 2000 the starved action has fallen tens of nats below its equilibrium log-probability
    assert rows.where(game=g, metric="log_ratio")[-1]["value"] < -30
    # (b) one steps_to_target and one final_gap per method and game, and the games' conditioning
    games_b = [x for x in rows.unique("game") if "#" in x]
    assert len(games_b) == 3
    for m in cfg.methods:
        steps = rows.where(algorithm=m, metric="steps_to_target")
        assert sorted(r["game"] for r in steps) == sorted(games_b)
        for r, f in zip(steps, rows.where(algorithm=m, metric="final_gap")):
            assert np.isnan(r["value"]) == (f["value"] > cfg.target)  # reached iff the final gap is below the target
    assert rows.where(algorithm="conditioning", metric="depth", game=games_b[0])
    assert "fit: steps" in capsys.readouterr().out
    # --plot-only redraws from the CSV alone
    cfg.figure_path().unlink()
    exp.main(["--quick", "--plot-only", "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert cfg.figure_path().exists()


def test_fit_recovers_a_power_law():
    d = np.geomspace(1, 1000, 20)
    k, c = exp.fit(d, 7 * d**1.5)
    assert k == pytest.approx(1.5) and c == pytest.approx(7)
    assert exp.fit(d[:2], d[:2]) is None


@pytest.mark.parametrize("flag", [["--methods", "sgd"], ["--budget", "0"], ["--target", "-1"], ["--sizes", "1"]])
def test_bad_flags_are_refused_before_any_run(tmp_path, flag, capsys):
    # the CLI convention (experiments.common.cli): one line naming the flag, exit status 2
    with pytest.raises(SystemExit) as e:
        exp.main(["--quick", "--out", str(tmp_path), "--figures", str(tmp_path), *flag])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag[0] in err and "Traceback" not in err, err
    assert not (tmp_path / "conditioning.csv").exists()


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as e:
        exp.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--anatomy-steps" in out and "--methods" in out and "--quick" in out
