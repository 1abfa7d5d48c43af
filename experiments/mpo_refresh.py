"""MPO's magnet refresh: the period K against the magnet strength α, and the adaptive rule.

For every refresh rule (K = 1, 2, 5, …, or "adaptive") and α (η = α/L², MPO's default step), we
count the iterations MPO needs to bring the last iterate's duality gap to --target (first time
below it), capped at --budget. Heatmap cells: the median over the games (catalogue games pooled;
random games separately); "✗" marks a median that was not reached within the budget (with the
median gap at the end of the budget), and "k/N" how many games reached it when not all did. K = 1 is MWU with a smaller step and never converges.

    python -m experiments.mpo_refresh          # defaults: under a minute
    python -m experiments.mpo_refresh --quick
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
from games import validation as V


@dataclass
class Config(common.Base):
    alphas: tuple = arg((0.05, 0.1, 0.2, 0.4), "magnet strengths α (MPO's default is L/2 ≈ 0.2–0.25 here)",
                        low=0, low_open=True)
    refresh: tuple = arg(("1", "2", "5", "10", "20", "50", "100", "adaptive"), "refresh rules: periods K, or 'adaptive'")
    target: float = arg(1e-8, "duality gap to reach", low=0, low_open=True)
    budget: int = arg(50_000, "iterations allowed per run", low=1)
    games: tuple = arg(("cyclic3", "perturbed_rps", "condorcet", "random10"), "games (randomN: random N×N games)")
    random_games: int = arg(16, "random games drawn for each randomN entry", low=1)

    NAME = "mpo_refresh"
    QUICK = dict(alphas=(0.1, 0.4), refresh=("2", "10", "adaptive"), budget=2000, games=("cyclic3", "random10"),
                 random_games=2)

    def check(self):
        common.check_games(self.games)
        for r in self.refresh:
            if r != "adaptive" and not (r.isdigit() and int(r) >= 1):
                V.fail("--refresh", r, "each value must be a period K >= 1 (an integer) or 'adaptive'")
        sizes = {}
        for s in self.games:
            if not common.is_random_spec(s):
                g = games.make(s)
                if not isinstance(g, games.PreferenceGame):
                    V.fail("--games", s, "it must be a preference game (this experiment batches preference matrices)")
                sizes[s] = g.n
        if len(set(sizes.values())) > 1:
            V.fail("--games", " ".join(sizes), "the catalogue games are run as one batch, so they must have one size; "
                   f"got {', '.join(f'{k}: {v}' for k, v in sizes.items())}")


def _refresh(r: str):
    return "adaptive" if r == "adaptive" else int(r)


def _groups(cfg):
    """(panel name, stacked game of every game in the panel, per-entry game names)."""
    fixed = [s for s in cfg.games if not common.is_random_spec(s)]
    out = []
    if fixed:
        gs = [games.make(s) for s in fixed]
        n = {g.n for g in gs}
        assert len(n) == 1  # Config.check refused other sizes before any work
        out.append(("catalogue", games.PreferenceGame(np.stack([g.P for g in gs]), name="catalogue"), fixed))
    for s in cfg.games:
        if common.is_random_spec(s):
            g, fam = common.make_game(s, seed=cfg.seed, batch=max(cfg.random_games, 2))
            out.append((fam, g, [f"{fam}#{b}" for b in range(len(g))]))
    return out


def run(cfg: Config) -> list:
    rows = []
    groups = _groups(cfg)
    A = len(cfg.alphas)
    bar = common.progress(total=len(groups) * len(cfg.refresh), desc="mpo_refresh")
    for panel, game, names in groups:
        B = len(names)
        P = np.concatenate([np.asarray(game.P)] * A)  # entry i·B + b: α_i on game b
        stacked = games.PreferenceGame(P, name=panel)
        alpha = np.repeat(np.asarray(cfg.alphas, dtype=np.float64), B)
        for r in cfg.refresh:
            hit = np.full(len(alpha), -1)

            def first_hit(t, state, m, hit=hit):
                hit[(hit < 0) & (np.asarray(m["duality_gap"]) <= cfg.target)] = t
                return bool(np.all(hit >= 0))  # stop once every game has reached the target

            res = algorithms.run(algorithms.MPO(alpha=alpha, refresh=_refresh(r)), stacked, cfg.budget, record=10,
                                 average=False, progress=False, callbacks=(first_hit,))
            last = np.asarray(res.history["duality_gap"][-1])
            t_end, q_end = int(res.history["iteration"][-1]), int(res.history["queries"][-1])
            for i in range(len(alpha)):
                base = ("mpo", names[i % B], common.params_str(res.algorithm, i), cfg.seed, t_end, q_end)
                rows.append(base + ("iterations_to_target", float(hit[i]) if hit[i] >= 0 else float("nan")))
                rows.append(base + ("final_gap", float(last[i])))
            bar.update(1)
    bar.close()
    return rows


def _panel(rows, metric="iterations_to_target"):
    """{(refresh, alpha): array of values over the games} (iterations: inf = not reached)."""
    cells: dict = {}
    for r in rows.where(metric=metric):
        key = (str(common.param(r["params"], "refresh")), common.param(r["params"], "alpha"))
        cells.setdefault(key, []).append(np.inf if np.isnan(r["value"]) else r["value"])
    return {k: np.asarray(v) for k, v in cells.items()}


def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    import matplotlib as mpl

    panels = list(dict.fromkeys("catalogue" if "#" not in g else common.family(g) for g in rows.unique("game")))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 1, 5.2), squeeze=False, sharey=True,
                             layout="constrained")
    budget = max(r["iteration"] for r in rows)
    norm = mpl.colors.LogNorm(vmin=10, vmax=max(budget, 100))
    cmap = mpl.colormaps["viridis_r"].copy()
    for ax, panel in zip(axes[0], panels):
        sub = rows.where(game=lambda g, p=panel: ("catalogue" if "#" not in g else common.family(g)) == p)
        cells, final = _panel(sub), _panel(sub, "final_gap")
        refresh = list(dict.fromkeys(k[0] for k in cells))
        alphas = sorted({k[1] for k in cells})
        M = np.full((len(refresh), len(alphas)), np.nan)
        for (r, a), v in cells.items():
            i, j = refresh.index(r), alphas.index(a)
            med = np.median(v)
            M[i, j] = med if np.isfinite(med) else np.nan
            reached = int(np.isfinite(v).sum())
            text = f"{med:.0f}" if np.isfinite(med) else f"✗ gap {np.median(final[(r, a)]):.0e}"
            text += "" if reached == len(v) else f"\n{reached}/{len(v)} reached"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(med) and norm(med) > 0.55 else "black")
        ax.imshow(np.ma.masked_invalid(M), cmap=cmap, norm=norm, aspect="auto")
        ax.imshow(np.where(np.isnan(M), 1.0, np.nan), cmap=mpl.colors.ListedColormap(["#dddddd"]), aspect="auto")
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_yticks(range(len(refresh)), [f"K = {r}" if r != "adaptive" else "adaptive" for r in refresh])
        ax.set_xlabel("magnet strength α  (η = α/L²)")
        ax.grid(False)
        n_games = len(sub.unique("game"))
        what = ", ".join(sub.unique("game")) if panel == "catalogue" else panel
        ax.set_title(f"{what}: median over {n_games} game{'s' if n_games > 1 else ''}", fontsize=10)
        if "10" in refresh and any(abs(a - 0.2) < 1e-9 for a in alphas):  # MPO's default: K = 10, α = L/2 ≈ 0.2
            j = [abs(a - 0.2) < 1e-9 for a in alphas].index(True)
            ax.add_patch(mpl.patches.Rectangle((j - 0.5, refresh.index("10") - 0.5), 1, 1, fill=False, lw=2.2,
                                               edgecolor=common.color("mpo")))
    axes[0, 0].set_ylabel("refresh rule")
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes[0].tolist(), label=f"iterations to reach gap ≤ {cfg.target:g}", shrink=0.9)
    fig.suptitle(f"MPO magnet refresh: iterations to duality gap {cfg.target:g} (budget {budget}; ✗ = median not reached, "
                 f"with the median final gap; red box ≈ library default)", fontsize=11)
    return common.save(fig, cfg.figure_path())


def main(argv=None):
    return common.main(Config, run, plot, argv)


if __name__ == "__main__":
    main()
