"""Every algorithm on OpenSpiel's two-player zero-sum games: Kuhn poker (MPO's headline toy) and matrix games.

Kuhn poker enters as its 64×64 matrix game (pyspiel.extensive_to_matrix_game, via
games.make("kuhn_poker")); matrix_rps, matrix_mp (matching pennies), matrix_brps (biased RPS,
payoffs ±50) and blotto (66×66) as they are. Both players update simultaneously from an initial
policy pair (random interior by default; uniform is already the NE of matrix_rps and matrix_mp);
we plot the last iterate's duality gap max(Ay) − min(xᵀA) (= NashConv).
Kuhn's matrix form is degenerate (many equivalent pure strategies, a large NE face), so the
KL-proximal methods converge slowly there: MPO at its defaults and MPO tuned for Kuhn (α = 0.1,
K = 500, found by a sweep; ηαK ≈ 2.5 as for the defaults) are both shown (dash-dot: tuned).

    python -m experiments.open_spiel_games          # defaults: under a minute
    python -m experiments.open_spiel_games --quick
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


@dataclass
class Config(common.Base):
    main_game: str = arg("kuhn_poker", "the headline game (large panel)")
    main_steps: int = arg(50_000, "iterations on the headline game", low=1)
    games: tuple = arg(("matrix_rps", "matrix_mp", "matrix_brps", "blotto"), "further open_spiel games (small panels)")
    steps: int = arg(10_000, "iterations on the further games", low=1)
    algorithms: tuple = arg(tuple(algorithms.available()), "algorithms")
    tuned: tuple = arg(("alpha=0.1", "refresh=500"), "an extra MPO run on the headline game with these hyperparameters")
    hparams: tuple = arg((), "overrides as algo.key=value for every game")
    init: str = arg("random", "initial policy pair: 'random' (interior, from --seed) or 'reference' (uniform, "
                              "which is already the NE of matrix_rps and matrix_mp)", choices=("random", "reference"))

    NAME = "open_spiel_games"
    QUICK = dict(main_steps=1000, games=("matrix_rps",), steps=300, algorithms=("mpo", "mmd", "omwu"))

    def check(self):
        common.check_games([self.main_game], "--main-game")
        common.check_games(self.games)
        self.algorithms = tuple(common.check_algorithms(self.algorithms))
        common.build_algorithms(self.algorithms, self.hparams)
        tuned = common.parse_hparams(self.tuned, (), "--tuned")
        if tuned:
            common.build_algorithms(["mpo"], (), "--tuned", base=tuned.get(None, {}))


def run(cfg: Config) -> list:
    overrides = common.parse_hparams(cfg.hparams, cfg.algorithms)
    tuned = common.parse_hparams(cfg.tuned).get(None, {})
    plan = [(cfg.main_game, cfg.main_steps, name, overrides.get(name, {})) for name in cfg.algorithms]
    if tuned:
        plan.append((cfg.main_game, cfg.main_steps, "mpo", tuned))
    plan += [(g, cfg.steps, name, overrides.get(name, {})) for g in cfg.games for name in cfg.algorithms]
    rows, cache = [], {}
    bar = common.progress(total=sum(s for _, s, _, _ in plan), desc="open_spiel_games")
    for gname, steps, name, hp in plan:
        if gname not in cache:
            g = games.make(gname)
            cache[gname] = (g, common.initial_policy(g, cfg.init, cfg.seed))
        game, init = cache[gname]
        bar.set_postfix_str(f"{gname} / {name}")
        res = algorithms.run(algorithms.make(name, **hp), game, steps, record=common.record_schedule(steps),
                             average=False, progress=False, init=init)
        rows += common.history_rows(res, game=gname, seed=cfg.seed, metrics=("duality_gap",))
        bar.update(steps)
    bar.close()
    return rows


def _short(params: str, default: str) -> str:
    """The hyperparameters in which ``params`` differs from ``default``."""
    d = dict(kv.split("=", 1) for kv in default.split(";"))
    return ", ".join(kv.replace("alpha", "α").replace("refresh", "K").replace("eta", "η")
                     for kv in params.split(";") if d.get(kv.split("=", 1)[0]) != kv.split("=", 1)[1])


def _panel(ax, rows, game, title_extra=""):
    sub = rows.where(game=game, iteration=lambda t: t >= 1)
    for a in sub.unique("algorithm"):
        variants = sub.where(algorithm=a).unique("params")
        for k, p in enumerate(variants):
            x, y = sub.where(algorithm=a, params=p).xy()
            lab = common.label(a) if k == 0 else f"{common.label(a)} ({_short(p, variants[0])}; tuned)"
            ax.plot(x, common.clip(y), color=common.color(a), lw=common.linewidth(a), ls="-" if k == 0 else "-.", label=lab)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"{game}{title_extra}", fontsize=10)
    ax.set_xlabel("iteration t")
    return ax


def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    gs_names = rows.unique("game")
    main, rest = gs_names[0], gs_names[1:]
    fig = plt.figure(figsize=(15, 6.4), layout="constrained")
    ncol = 2 if len(rest) > 1 else max(len(rest), 1)
    nrow = int(np.ceil(len(rest) / ncol)) if rest else 1
    grid = fig.add_gridspec(nrow, 2 + ncol, width_ratios=[1.25, 1.25] + [1] * ncol)
    ax = fig.add_subplot(grid[:, :2])
    g = games.make(main)
    shape = "×".join(map(str, g.sizes))
    _panel(ax, rows, main, f" ({shape} matrix game)")
    ax.set_ylabel("duality gap max(Ay) − min(xᵀA) (last iterate)")
    ax.legend(fontsize=8, loc="lower left", ncol=2)
    for k, gname in enumerate(rest):
        a = fig.add_subplot(grid[k // ncol, 2 + k % ncol])
        _panel(a, rows, gname, f" ({'×'.join(map(str, games.make(gname).sizes))})")
    fig.suptitle("OpenSpiel zero-sum games: last-iterate duality gap, every algorithm (library defaults unless noted)")
    return common.save(fig, cfg.figure_path())


def summarise(cfg, rows):
    last = {}
    for r in rows.where(game=rows[0]["game"], metric="duality_gap"):
        key = (r["algorithm"], r["params"])
        if key not in last or r["iteration"] > last[key][0]:
            last[key] = (r["iteration"], r["value"])
    print(f"final duality gap on {rows[0]['game']}:")
    for (a, p), (it, v) in last.items():
        print(f"  {a:12s} {v:10.3e}  after {it} it.  [{p}]")


def main(argv=None):
    return common.main(Config, run, plot, argv, summarise)

if __name__ == "__main__":
    main()
