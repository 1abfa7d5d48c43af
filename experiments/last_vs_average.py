"""Last iterate against average iterate: MWU/SPPO, OMWU/ONPO and MPO.

MWU (exact SPPO) is only guaranteed on average: its last iterate cycles. OMWU's last iterate
converges when the NE is unique; MPO's last iterate converges to the original NE through its
magnet refresh. Solid lines: gap of the last iterate π_t; dotted: gap of the average
π̄_t = (π_1 + … + π_t)/t. Log–log axes.

    python -m experiments.last_vs_average            # defaults: well under a minute
    python -m experiments.last_vs_average --quick
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402  (first: it limits BLAS threads before numpy loads)

import numpy as np

import algorithms
from experiments.common import arg


@dataclass
class Config(common.Base):
    steps: int = arg(20_000, "iterations per run", low=1)
    games: tuple = arg(("cyclic3", "perturbed_rps", "random10"), "games (randomN: --random-games random N×N games)")
    random_games: int = arg(8, "random games drawn for each randomN entry (median and IQR plotted)", low=1)
    algorithms: tuple = arg(("mwu", "omwu", "mpo"), "algorithms to compare")
    hparams: tuple = arg((), "overrides as algo.key=value, e.g. mwu.eta=0.05")

    NAME = "last_vs_average"
    QUICK = dict(steps=500, games=("cyclic3",), random_games=2)

    def check(self):
        common.check_games(self.games)
        self.algorithms = tuple(common.check_algorithms(self.algorithms))
        common.build_algorithms(self.algorithms, self.hparams)


def run(cfg: Config) -> list:
    algos = common.build_algorithms(cfg.algorithms, cfg.hparams)
    record = np.unique(np.round(np.geomspace(1, cfg.steps, 250))).astype(int).tolist()
    rows = []
    bar = common.progress(total=len(cfg.games) * len(cfg.algorithms), desc="last_vs_average")
    for spec in cfg.games:
        game, fam = common.make_game(spec, seed=cfg.seed, batch=cfg.random_games)
        for name in cfg.algorithms:
            res = algorithms.run(algos[name], game, cfg.steps, record=record,
                                 progress=False)
            rows += common.history_rows(res, game=fam, seed=cfg.seed, metrics=("duality_gap", "average_gap"))
            bar.update(1)
    bar.close()
    return rows


def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    fams = list(dict.fromkeys(common.family(g) for g in rows.unique("game")))
    algos = rows.unique("algorithm")
    fig, axes = plt.subplots(1, len(fams), figsize=(4.6 * len(fams), 4.2), squeeze=False, sharey=True)
    for ax, fam in zip(axes[0], fams):
        sub = rows.where(game=lambda g, f=fam: common.family(g) == f)
        n_games = len(sub.unique("game"))
        for a in algos:
            for metric, ls in (("duality_gap", "-"), ("average_gap", ":")):
                x, med, lo, hi = sub.where(algorithm=a, metric=metric, iteration=lambda t: t >= 1).band("iteration")
                ax.plot(x, common.clip(med), ls=ls, color=common.color(a), lw=1.6 if ls == "-" else 2.0)
                if n_games > 1:
                    ax.fill_between(x, common.clip(lo), common.clip(hi), color=common.color(a), alpha=0.1, lw=0)
        x = np.geomspace(10, max(r["iteration"] for r in sub), 50)
        ax.plot(x, 0.5 / np.sqrt(x), color="black", lw=0.8, alpha=0.5)
        ax.annotate("∝ 1/√t", (x[-1], 0.5 / np.sqrt(x[-1])), fontsize=8, alpha=0.7, ha="right", va="top")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(common.FLOOR / 3, 3)
        ax.set_xlabel("iteration t")
        ax.set_title(fam if n_games == 1 else f"{fam}: median of {n_games} games")
    axes[0, 0].set_ylabel("duality gap")
    from matplotlib.lines import Line2D

    handles = common.algo_legend_handles(algos) + [
        Line2D([], [], color="black", ls="-", label="last iterate π_t"),
        Line2D([], [], color="black", ls=":", lw=2, label="average iterate π̄_t")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.suptitle("Last iterate vs average iterate (library defaults, from the uniform policy)")
    fig.tight_layout()
    return common.save(fig, cfg.figure_path())


def main(argv=None):
    return common.main(Config, run, plot, argv)


if __name__ == "__main__":
    main()
