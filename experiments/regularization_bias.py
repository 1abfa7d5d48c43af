"""The β-floor: how far each regularised method's target is from the original Nash equilibrium.

MMD (α), Nash-MD, Nash-MP/Mirror Prox, EGPO (β), INPO and MNPO (τ) all converge to the same
regularised equilibrium π*_β ∝ μ·exp(Pπ*_β/β) (uniform reference μ), whose duality gap in the
original game is > 0 whenever the NE is not μ. The line is that floor computed exactly
(games.regularized_nash); the markers are the gap each method actually reaches after --steps
iterations at a few β (filled: its own regularised gap ≤ 1e-6, i.e. converged; hollow: not yet).
MPO has no β-floor: its final gap is the horizontal line.

    python -m experiments.regularization_bias          # defaults: about 15 s
    python -m experiments.regularization_bias --quick
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
import games
from experiments.common import arg

#: a method counts as converged to π*_β when its own regularised gap is at most this
CONVERGED = 1e-6
MARKERS = {"mmd": "o", "nash_md": "v", "mirror_prox": "s", "egpo": "D", "inpo": "^", "mnpo": "P"}


@dataclass
class Config(common.Base):
    betas: tuple = arg(tuple(float(b) for b in np.geomspace(1e-3, 1.0, 13).round(6)),
                       "β values for the exact floor (the line)", low=0, low_open=True)
    run_betas: tuple = arg((0.03, 0.1, 0.3), "β values at which every regularised method is run (the markers)",
                           low=0, low_open=True)
    steps: int = arg(10_000, "iterations per method run", low=1)
    games: tuple = arg(("cyclic3", "perturbed_rps", "condorcet", "random10"), "games (randomN: random N×N games)")
    random_games: int = arg(8, "random games drawn for each randomN entry (median plotted)", low=1)
    algorithms: tuple = arg(common.REGULARISED, "regularised methods to run (MPO is always run as the no-floor reference)")

    NAME = "regularization_bias"
    QUICK = dict(betas=(0.01, 0.1, 1.0), run_betas=(0.1,), steps=1500, games=("cyclic3",), random_games=2)

    def check(self):
        common.check_games(self.games)
        self.algorithms = tuple(common.check_algorithms(self.algorithms, allowed=common.REGULARISED))
        for s in self.games:
            if not common.is_random_spec(s) and not isinstance(games.make(s), games.PreferenceGame):
                common.V.fail("--games", s, "it must be a preference game (the floor is computed on P)")


def _stack(game, k):
    """k copies of a (possibly batched) game as one batch, copy-major: entry i·B + b."""
    P = np.asarray(game.P)
    P = P[None] if P.ndim == 2 else P
    return games.PreferenceGame(np.concatenate([P] * k), name=game.name), P.shape[0]


def run(cfg: Config) -> list:
    rows = []
    bar = common.progress(total=len(cfg.games) * (len(cfg.betas) + len(cfg.algorithms) + 1), desc="regularization_bias")
    for spec in cfg.games:
        game, fam = common.make_game(spec, seed=cfg.seed, batch=cfg.random_games)
        names = [fam] if not game.batch_shape else [f"{fam}#{b}" for b in range(len(game))]
        # the exact floor: the original gap of π*_β
        for beta in cfg.betas:
            gap = np.atleast_1d(games.duality_gap(game, common.regularized_nash(game, beta)))
            rows += [("regularized_nash", g, f"beta={beta:.4g}", cfg.seed, 0, 0, "original_gap", float(v))
                     for g, v in zip(names, gap)]
            bar.update(1)
        # each method at each run β, all β in one batched run (hyperparameters are per game)
        stacked, B = _stack(game, len(cfg.run_betas))
        betas = np.repeat(np.asarray(cfg.run_betas, dtype=np.float64), B)
        for name in cfg.algorithms:
            algo = algorithms.make(name, **{common.BETA_NAME[name]: betas})
            res = algorithms.run(algo, stacked, cfg.steps, record=[cfg.steps], average=False, progress=False)
            h = res.history
            for i in range(len(betas)):
                params = common.params_str(res.algorithm, i)
                for metric, key in (("final_gap", "duality_gap"), ("final_regularized_gap", "regularized_gap")):
                    rows.append((name, names[i % B], params, cfg.seed, int(h["iteration"][-1]), int(h["queries"][-1]),
                                 metric, float(np.atleast_1d(h[key][-1])[i])))
            bar.update(1)
        res = algorithms.run(algorithms.MPO(), game, cfg.steps, record=[cfg.steps], average=False, progress=False)
        gaps = np.atleast_1d(res.history["duality_gap"][-1])
        rows += [("mpo", g, common.params_str(res.algorithm, i if game.batch_shape else None), cfg.seed,
                  int(res.history["iteration"][-1]), int(res.history["queries"][-1]), "final_gap", float(v))
                 for i, (g, v) in enumerate(zip(names, gaps))]
        bar.update(1)
    bar.close()
    return rows


def _median_by(rows, key):
    """{key(row): median value} over the games of a family."""
    by: dict = {}
    for r in rows:
        by.setdefault(key(r), []).append(r["value"])
    return {k: float(np.median(v)) for k, v in sorted(by.items())}


def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    fams = list(dict.fromkeys(common.family(g) for g in rows.unique("game")))
    fig, axes = plt.subplots(1, len(fams), figsize=(4.4 * len(fams), 4.4), squeeze=False, sharey=True)
    algos = [a for a in rows.unique("algorithm") if a in common.REGULARISED]
    # the y-range is the floors' (shared by the panels); MPO's gap, usually far below, sits on the bottom edge
    bottom = max(min(r["value"] for r in rows.where(algorithm="regularized_nash")), common.FLOOR) / 30
    for ax, fam in zip(axes[0], fams):
        sub = rows.where(game=lambda g, f=fam: common.family(g) == f)
        n_games = len(sub.unique("game"))
        floor = _median_by(sub.where(algorithm="regularized_nash"), lambda r: common.param(r["params"], "beta"))
        b = np.array(list(floor))
        ax.plot(b, common.clip(list(floor.values())), color="black", lw=2, zorder=1)
        # small horizontal offsets so methods converging to the same point stay distinguishable
        offsets = np.geomspace(0.7, 1.45, max(len(algos), 1))
        for k, a in enumerate(algos):
            s = sub.where(algorithm=a)
            beta_of = lambda r, a=a: common.param(r["params"], common.BETA_NAME[a])
            gap = _median_by(s.where(metric="final_gap"), beta_of)
            reg = _median_by(s.where(metric="final_regularized_gap"), beta_of)
            for beta, v in gap.items():
                done = reg[beta] <= CONVERGED
                ax.scatter(beta * offsets[k], common.clip(v), marker=MARKERS.get(a, "o"), s=42, zorder=3,
                           color=common.color(a) if done else "white", edgecolors=common.color(a), linewidths=1.4)
        ax.set_ylim(bottom, 1)
        mpo = sub.where(algorithm="mpo", metric="final_gap")
        if mpo:
            v = float(np.median([r["value"] for r in mpo]))
            below = v < bottom
            y = bottom * 1.25 if below else v
            ax.axhline(y, color=common.color("mpo"), lw=1.8, ls=":" if below else "-")
            ax.annotate(f"MPO after {mpo[0]['iteration']} it.: gap {v:.1e}" + (" (below the axis ↓)" if below else ""),
                        (b.min(), y * 1.15), color=common.color("mpo"), fontsize=8, va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("β  (MMD's α, INPO/MNPO's τ)")
        ax.set_title(fam if n_games == 1 else f"{fam}: median of {n_games} games")
    axes[0, 0].set_ylabel("duality gap in the original game")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="black", lw=2, label="floor: gap of π*_β (exact)")]
    handles += [Line2D([], [], ls="", marker=MARKERS.get(a, "o"), color=common.color(a), label=common.label(a)) for a in algos]
    handles += [Line2D([], [], ls="", marker="o", markerfacecolor="white", color="black", label="hollow: not yet converged"),
                Line2D([], [], color=common.color("mpo"), label="MPO (no floor): its final gap")]
    fig.legend(handles=handles, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.14), frameon=False)
    fig.suptitle("Regularisation bias: the original-game gap each regularised method is left with, against β")
    fig.tight_layout()
    return common.save(fig, cfg.figure_path())


def main(argv=None):
    return common.main(Config, run, plot, argv)


if __name__ == "__main__":
    main()
