"""Last-iterate convergence of every algorithm on intransitive preference games.

Runs every algorithm (algorithms.available(), library defaults) on cyclic3, perturbed RPS,
non-transitive dice, the Condorcet population and 16 random 10×10 games (one batched run), and
plots the last iterate's duality gap against iterations and against oracle queries (log scale).
For the regularised methods the gap of their own regularised game is drawn dashed: it goes to
zero while the gap of the original game stalls at the β-floor. MPO (refreshed magnet) and OMWU
are the ones whose original gap can reach zero.

    python -m experiments.convergence              # defaults: about 40 s on 2 CPU cores
    python -m experiments.convergence --quick      # seconds
    python -m experiments.convergence --hparams omwu.eta=0.5 mpo.refresh=20
    python -m experiments.convergence --plot-only  # redraw figures/convergence.png from results/
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402  (first: it limits BLAS threads before numpy loads)

import algorithms
from experiments.common import arg


@dataclass
class Config(common.Base):
    steps: int = arg(20_000, "iterations per run", low=1)
    games: tuple = arg(("cyclic3", "perturbed_rps", "dice", "condorcet", "random10"),
                       "games: catalogue names, or randomN for --random-games random N×N games")
    random_games: int = arg(16, "random games drawn for each randomN entry (one batched run; median and IQR plotted)",
                            low=1)
    algorithms: tuple = arg(tuple(algorithms.available()), "algorithms to run (registry names)")
    hparams: tuple = arg((), "hyperparameter overrides as algo.key=value, e.g. omwu.eta=0.5 mpo.alpha=0.1")
    init: str = arg("random", "initial policy: 'random' (interior, softmax of N(0,1), from --seed; the same for "
                              "every algorithm) or 'reference' (uniform; dice's NE, so nothing moves there)",
                       choices=("random", "reference"))

    NAME = "convergence"
    QUICK = dict(steps=1000, games=("cyclic3", "random10"), random_games=2)

    def check(self):
        common.check_games(self.games)
        self.algorithms = tuple(common.check_algorithms(self.algorithms))
        common.build_algorithms(self.algorithms, self.hparams)


def run(cfg: Config) -> list:
    """Every (game, algorithm) run; tidy rows of duality_gap, regularized_gap and average_gap."""
    algos = common.build_algorithms(cfg.algorithms, cfg.hparams)  # checked already: refused before any run
    record = common.record_schedule(cfg.steps)
    rows = []
    jobs = [(g, a) for g in cfg.games for a in cfg.algorithms]
    bar = common.progress(total=len(jobs), desc="convergence")
    for spec in cfg.games:
        game, fam = common.make_game(spec, seed=cfg.seed, batch=cfg.random_games)
        init = common.initial_policy(game, cfg.init, cfg.seed)
        for name in cfg.algorithms:
            bar.set_postfix_str(f"{fam} / {name}")
            res = algorithms.run(algos[name], game, cfg.steps, record=record, progress=False, init=init)
            rows += common.history_rows(res, game=fam, seed=cfg.seed)
            bar.update(1)
    bar.close()
    return rows


def plot(cfg: Config, rows: common.Rows) -> Path:
    """Gap vs iterations (top row) and vs oracle queries (bottom row), one column per game."""
    plt = common.setup_style()
    fams = list(dict.fromkeys(common.family(g) for g in rows.unique("game")))
    algos = rows.unique("algorithm")
    fig, axes = plt.subplots(2, len(fams), figsize=(3.6 * len(fams) + 1, 7.2), squeeze=False, sharey=True)
    for j, fam in enumerate(fams):
        sub = rows.where(game=lambda g, f=fam: common.family(g) == f)
        n_games = len(sub.unique("game"))
        for i, xcol in enumerate(("iteration", "queries")):
            ax = axes[i, j]
            for a in algos:
                for metric, ls in (("duality_gap", "-"), ("regularized_gap", "--")):
                    if metric == "regularized_gap" and a not in common.REGULARISED:
                        continue  # MPO's inner gap (wrt a moving magnet) is not a floor; keep it in the CSV only
                    s = sub.where(algorithm=a, metric=metric, iteration=lambda t: t >= 1)
                    if not s:
                        continue
                    x, med, lo, hi = s.band(xcol)
                    ax.plot(x, common.clip(med), ls=ls, color=common.color(a), lw=common.linewidth(a, 1.4 if ls == "-" else 1.1))
                    if n_games > 1 and ls == "-":
                        ax.fill_between(x, common.clip(lo), common.clip(hi), color=common.color(a), alpha=0.12, lw=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(common.FLOOR / 3, 3)
            ax.set_xlabel("iteration t" if xcol == "iteration" else "oracle queries (win-rate evaluations)")
            if j == 0:
                ax.set_ylabel("duality gap (last iterate)")
            title = fam if n_games == 1 else f"{fam}: median of {n_games} games (band: IQR)"
            ax.set_title(title if i == 0 else f"{fam}, against queries", fontsize=10)
    steps = int(max(r["iteration"] for r in rows))
    setting = "library defaults" + (f" except {' '.join(cfg.hparams)}" if cfg.hparams else "")
    start = "a random interior policy" if cfg.init == "random" else "the uniform policy"
    fig.suptitle(f"Last-iterate duality gap of every algorithm ({setting}; {steps} iterations from {start}); "
                 f"gaps ≤ {common.FLOOR:g} drawn at {common.FLOOR:g}", y=1.0)
    fig.legend(handles=common.algo_legend_handles(algos, regularised_dashed=True), loc="lower center",
               ncol=6, bbox_to_anchor=(0.5, -0.07), frameon=False)
    fig.tight_layout()
    return common.save(fig, cfg.figure_path())


def main(argv=None):
    return common.main(Config, run, plot, argv)


if __name__ == "__main__":
    main()
