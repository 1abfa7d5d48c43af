"""The experiment scripts run end to end in --quick mode and their results say what the figures claim.

Each script's ``main(argv)`` runs in-process with ``--out`` and ``--figures`` under tmp_path, so
the committed figures are never touched. The whole file takes well under a minute.
"""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import (common, convergence, last_vs_average, mpo_refresh, qre, rates, regularization_bias,
                         scaling, train)

REPO = Path(__file__).resolve().parents[1]


def quick(module, tmp_path, *extra):
    cfg = module.main(["--quick", "--out", str(tmp_path), "--figures", str(tmp_path), *extra])
    assert cfg.csv_path.exists()
    with open(cfg.csv_path, newline="") as f:
        assert tuple(next(csv.reader(f))) == common.COLUMNS
    rows = common.read_csv(cfg.csv_path)
    assert rows, "no results written"
    return cfg, rows


def final(rows, **where):
    """The value at the last iteration of the matching rows."""
    s = rows.where(**where)
    t = max(r["iteration"] for r in s)
    return [r["value"] for r in s if r["iteration"] == t]


def test_convergence(tmp_path):
    cfg, rows = quick(convergence, tmp_path)
    assert cfg.figure_path().exists() and cfg.figure_path().stat().st_size > 10_000
    assert set(rows.unique("algorithm")) == set(common.ALGO_STYLE)
    assert set(map(common.family, rows.unique("game"))) == {"cyclic3", "random(n=10)"}
    assert rows.unique("seed") == [0]
    # MPO reaches the original NE of cyclic3 in the last iterate
    assert final(rows, algorithm="mpo", game="cyclic3", metric="duality_gap")[0] < 1e-6
    # the regularised methods solve their own game but stay above the β-floor in the original one
    for a in common.REGULARISED:
        assert final(rows, algorithm=a, game="cyclic3", metric="duality_gap")[0] > 1e-3, a
        assert final(rows, algorithm=a, game="cyclic3", metric="regularized_gap")[0] < (1e-5 if a == "nash_md" else 1e-10), a
    # a batched family gives one game per batch entry, all recorded at the same iterations
    r0 = rows.where(algorithm="mpo", game="random(n=10)#0", metric="duality_gap")
    r1 = rows.where(algorithm="mpo", game="random(n=10)#1", metric="duality_gap")
    assert [r["iteration"] for r in r0] == [r["iteration"] for r in r1]
    # average_gap is recorded at every iteration, from t = 0 (where the only iterate is π_0)
    avg = rows.where(algorithm="mwu", game="cyclic3", metric="average_gap")
    gap = rows.where(algorithm="mwu", game="cyclic3", metric="duality_gap")
    assert [r["iteration"] for r in avg] == [r["iteration"] for r in gap]
    assert avg[0]["value"] == gap[0]["value"]


def test_convergence_plot_only_and_overrides(tmp_path):
    quick(convergence, tmp_path, "--algorithms", "mpo", "omwu", "--games", "cyclic3", "--steps", "50",
          "--hparams", "omwu.eta=0.5")
    fig = tmp_path / "convergence.png"
    fig.unlink()
    cfg = convergence.main(["--plot-only", "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert fig.exists()
    rows = common.read_csv(cfg.csv_path)
    assert common.param(rows.where(algorithm="omwu")[0]["params"], "eta") == 0.5
    assert max(r["iteration"] for r in rows) == 50  # explicit flags win over --quick


def test_last_vs_average(tmp_path):
    cfg, rows = quick(last_vs_average, tmp_path)
    assert cfg.figure_path().exists()
    # MWU: the average iterate beats the cycling last iterate; MPO's last iterate converges
    assert final(rows, algorithm="mwu", metric="average_gap")[0] < final(rows, algorithm="mwu", metric="duality_gap")[0]
    assert final(rows, algorithm="mpo", metric="duality_gap")[0] < 1e-6


def test_regularization_bias(tmp_path):
    cfg, rows = quick(regularization_bias, tmp_path)
    assert cfg.figure_path().exists()
    floor = {common.param(r["params"], "beta"): r["value"] for r in rows.where(algorithm="regularized_nash")}
    betas = sorted(floor)
    assert all(floor[a] < floor[b] for a, b in zip(betas, betas[1:])), floor  # the bias grows with β
    converged = [a for a in common.REGULARISED
                 if rows.where(algorithm=a, metric="final_regularized_gap")[0]["value"] <= regularization_bias.CONVERGED]
    assert {"mmd", "mirror_prox", "egpo", "inpo"} <= set(converged)
    for a in converged:  # a method that has converged sits on the exact floor
        gap = rows.where(algorithm=a, metric="final_gap")[0]["value"]
        assert gap == pytest.approx(floor[0.1], rel=1e-2), a
    assert rows.where(algorithm="mpo", metric="final_gap")[0]["value"] < 1e-8 < min(floor.values())


def test_rates(tmp_path):
    cfg, rows = quick(rates, tmp_path)
    assert cfg.figure_path().exists()
    tab = list(csv.DictReader(open(tmp_path / "rates_table.csv")))
    assert {r["method"] for r in tab} == set(rates.METHODS)
    assert all(r["rate_holds"] == "True" and r["theorem_holds"] == "True" for r in tab), tab
    measured = [r["value"] for r in rows.where(metric="measured_rate")]
    assert np.all(np.isfinite(measured)) and np.all(np.asarray(measured) < 1)


def test_mpo_refresh(tmp_path):
    cfg, rows = quick(mpo_refresh, tmp_path)
    assert cfg.figure_path().exists()
    it = {(common.param(r["params"], "refresh"), common.param(r["params"], "alpha")): r["value"]
          for r in rows.where(metric="iterations_to_target", game="cyclic3")}
    assert it[(10, 0.4)] <= cfg.budget  # reached
    assert np.isnan(it[(2, 0.1)])  # K = 2 refreshes too often: not reached, recorded as NaN


def test_scaling(tmp_path):
    cfg, rows = quick(scaling, tmp_path)
    assert cfg.figure_path().exists()
    summ = scaling.summarise(rows, 3e-2)
    assert np.isfinite(summ["mpo"][3][0])  # MPO reaches ε on the 3×3 games
    assert all(v[4] for v in summ["mmd"].values())  # MMD stalls at its β-floor at every n


def test_qre(tmp_path):
    cfg, rows = quick(qre, tmp_path)
    assert cfg.figure_path().exists()
    kl = final(rows, metric="kl_to_qre", params=lambda p: common.param(p, "alpha") == 0.5)
    assert kl[0] < 1e-10  # linear convergence to the QRE
    assert final(rows, metric="exploitability", params=lambda p: common.param(p, "alpha") == 0.5)[0] > 1e-2


def test_open_spiel_games(tmp_path):
    pytest.importorskip("pyspiel")
    from experiments import open_spiel_games

    cfg, rows = quick(open_spiel_games, tmp_path)
    assert cfg.figure_path().exists()
    assert set(rows.unique("game")) == {"kuhn_poker", "matrix_rps"}
    assert len(rows.where(algorithm="mpo", game="kuhn_poker").unique("params")) == 2  # defaults + tuned


def test_train(tmp_path):
    cfg, rows = quick(train, tmp_path, "--algo", "sppo", "--game", "random", "--game-args", "n=4", "--hparams", "eta=0.2")
    assert rows.unique("algorithm") == ["mwu"] and common.param(rows[0]["params"], "eta") == 0.2
    assert max(r["iteration"] for r in rows) == 300
    assert set(train.BACKENDS) >= {"exact"}
    for argv, msg in ((["--backend", "nope"], "--backend = 'nope'"), (["--algo", "nope"], "--algo = 'nope'")):
        with pytest.raises(SystemExit) as e:
            train.main([*argv, "--out", str(tmp_path / "x")])
        assert e.value.code == 2
        assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("module", [convergence, last_vs_average, regularization_bias, rates, mpo_refresh, scaling, qre,
                                    train])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--quick" in out and "--seed" in out


def test_runs_as_a_file():
    """``python experiments/convergence.py`` works as well as ``python -m experiments.convergence``."""
    r = subprocess.run([sys.executable, "experiments/convergence.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and "convergence" in r.stdout
