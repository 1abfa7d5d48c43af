"""How the work to reach a duality gap ε grows with the number of responses n (random games).

For n from 3 to 1000 and every algorithm (library defaults), a batch of random n×n games
(EGPO's generator, one batched run per n) is run from the uniform policy until every game's last
iterate has reached the smallest ε, or a method is seen to stall, or the budget is spent. We record
the first iteration (and oracle query) at which each game's gap is ≤ ε. A regularised method whose
own regularised gap has converged (≤ 1e-10) while the original gap is still > ε has stalled at its
β-floor and is stopped early; MWU's last iterate never converges. Those are drawn as "✗" on the
"not reached" band, and the printed table says which.

    python -m experiments.scaling          # defaults: about 2 minutes
    python -m experiments.scaling --quick
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

STALL = 1e-10  # a regularised method whose own gap is below this has converged to its (biased) target


@dataclass
class Config(common.Base):
    sizes: tuple = arg((3, 10, 30, 100, 300, 1000), "numbers of responses n", low=2)
    eps: tuple = arg((3e-2, 1e-2), "duality gaps to reach", low=0, low_open=True)
    budget: int = arg(50_000, "iterations allowed per run", low=1)
    random_games: int = arg(8, "random games per n (fewer for large n: at most 2·10⁶/n² of them, at least 2)", low=1)
    algorithms: tuple = arg(tuple(algorithms.available()), "algorithms")

    NAME = "scaling"
    QUICK = dict(sizes=(3, 30), eps=(3e-2,), budget=1000, random_games=2, algorithms=("mpo", "mmd", "mwu"))

    def check(self):
        self.algorithms = tuple(common.check_algorithms(self.algorithms))


def _metric(kind, eps):
    return f"{kind}_to_{eps:g}"


def run(cfg: Config) -> list:
    rows = []
    bar = common.progress(total=len(cfg.sizes) * len(cfg.algorithms), desc="scaling")
    for n in cfg.sizes:
        B = int(min(cfg.random_games, max(2, 2_000_000 // n**2)))
        game, fam = common.make_game(f"random{n}", seed=cfg.seed, batch=B)
        for name in cfg.algorithms:
            bar.set_postfix_str(f"n={n} / {name}")
            hit_t = {e: np.full(B, -1) for e in cfg.eps}
            hit_q = {e: np.full(B, -1) for e in cfg.eps}
            status = {"stalled": False}

            def watch(t, state, m, hit_t=hit_t, hit_q=hit_q, status=status):
                gap = np.asarray(m["duality_gap"])
                for e in cfg.eps:
                    new = (hit_t[e] < 0) & (gap <= e)
                    hit_t[e][new], hit_q[e][new] = t, state.queries
                pending = hit_t[min(cfg.eps)] < 0
                if not pending.any():
                    return True
                if "regularized_gap" in m and name != "mpo" and np.all(np.asarray(m["regularized_gap"])[pending] <= STALL):
                    status["stalled"] = True  # converged to π*_β, whose gap is above ε: it will never get there
                    return True
                return False

            res = algorithms.run(algorithms.make(name), game, cfg.budget, record=5, average=False, progress=False,
                                 callbacks=(watch,))
            h = res.history
            t_end, q_end = int(h["iteration"][-1]), int(h["queries"][-1])
            for b in range(B):
                base = (name, f"{fam}#{b}", common.params_str(res.algorithm, b), cfg.seed, t_end, q_end)
                for e in cfg.eps:
                    ok = hit_t[e][b] >= 0
                    rows.append(base + (_metric("iterations", e), float(hit_t[e][b]) if ok else np.nan))
                    rows.append(base + (_metric("queries", e), float(hit_q[e][b]) if ok else np.nan))
                rows.append(base + ("final_gap", float(np.asarray(h["duality_gap"][-1])[b])))
                rows.append(base + ("stalled_at_floor", float(status["stalled"])))
            bar.update(1)
    bar.close()
    return rows


def summarise(rows: common.Rows, eps: float):
    """{algorithm: {n: (median iterations or inf, median queries or inf, reached, total, stalled)}}."""
    out: dict = {}
    for a in rows.unique("algorithm"):
        for fam in dict.fromkeys(common.family(g) for g in rows.unique("game")):
            s = rows.where(algorithm=a, game=lambda g, f=fam: common.family(g) == f)
            if not s:
                continue
            n = int(fam.split("=")[1].rstrip(")"))
            it = np.array([r["value"] for r in s.where(metric=_metric("iterations", eps))])
            q = np.array([r["value"] for r in s.where(metric=_metric("queries", eps))])
            stalled = any(r["value"] > 0 for r in s.where(metric="stalled_at_floor"))
            med = lambda v: float(np.median(np.where(np.isnan(v), np.inf, v)))  # noqa: E731
            out.setdefault(a, {})[n] = (med(it), med(q), int(np.isfinite(it).sum()), len(it), stalled)
    return out


def print_table(rows: common.Rows, eps_values):
    for eps in eps_values:
        summ = summarise(rows, eps)
        sizes = sorted({n for d in summ.values() for n in d})
        print(f"\nmedian iterations to duality gap ≤ {eps:g}  (floor: stalled at its β-floor; ✗: budget spent)")
        print(f"{'algorithm':12s}" + "".join(f"{'n=' + str(n):>10s}" for n in sizes))
        for a, d in summ.items():
            cells = []
            for n in sizes:
                med, _, k, tot, stalled = d.get(n, (np.nan, 0, 0, 0, False))
                cells.append(f"{med:10.0f}" if np.isfinite(med) else f"{'floor' if stalled else '✗':>10s}")
            print(f"{a:12s}" + "".join(cells))


def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    eps_values = sorted({float(r["metric"].split("_to_")[1]) for r in rows if r["metric"].startswith("iterations_to_")},
                        reverse=True)
    budget = max(r["iteration"] for r in rows)
    fig, axes = plt.subplots(2, len(eps_values), figsize=(5.6 * len(eps_values) + 1, 8.4), squeeze=False)
    algos = rows.unique("algorithm")
    for j, eps in enumerate(eps_values):
        summ = summarise(rows, eps)
        for i, kind in enumerate(("iterations", "queries")):
            ax = axes[i, j]
            top = budget * (2 if kind == "queries" else 1) * 3
            sizes = []
            for k, a in enumerate(algos):
                d = summ.get(a, {})
                ns = np.array(sorted(d))
                y = np.array([d[n][0 if kind == "iterations" else 1] for n in ns])
                ok = np.isfinite(y)
                ax.plot(ns[ok], y[ok], "-o", color=common.color(a), lw=common.linewidth(a), ms=4)
                # not reached: on the band above the budget, nudged so the algorithms stay apart;
                # ▽ stalled at its β-floor (stopped early), ✗ budget spent
                nudge = 1 + 0.06 * (k - len(algos) / 2)
                stalled = np.array([d[n][4] for n in ns], dtype=bool)
                for sel, mk in ((~ok & stalled, "v"), (~ok & ~stalled, "x")):
                    ax.scatter(ns[sel] * nudge, np.full(sel.sum(), top * nudge), marker=mk, s=30, color=common.color(a),
                               facecolors="none" if mk == "v" else None, linewidths=1.3)
                sizes = ns if len(ns) > len(sizes) else sizes
            ax.axhline(budget * (2 if kind == "queries" else 1), color="gray", lw=0.8, ls="--")
            ax.axhspan(budget * (2 if kind == "queries" else 1) * 1.4, top * 2.5, color="gray", alpha=0.08, lw=0)
            ax.text(min(sizes), top * 1.9, "not reached:  ✗ budget spent,  ▽ stalled at its β-floor", fontsize=8,
                    color="dimgray", va="top")
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("number of responses n")
            ax.set_ylabel(f"{'iterations' if kind == 'iterations' else 'oracle queries'} to gap ≤ {eps:g} (median)")
            ax.set_title(f"gap ≤ {eps:g}: {kind} (budget {budget} iterations, dashed)", fontsize=10)
    fig.legend(handles=common.algo_legend_handles(algos), loc="lower center", ncol=min(len(algos), 9),
               bbox_to_anchor=(0.5, -0.04), frameon=False)
    fig.suptitle("Scaling with n on random games (first iteration with gap ≤ ε; median over the games): regularised "
                 "methods stall at their β-floor", fontsize=11)
    fig.tight_layout()
    return common.save(fig, cfg.figure_path())


def report_table(cfg, rows):
    eps = sorted({float(r["metric"].split("_to_")[1]) for r in rows if r["metric"].startswith("iterations_to_")}, reverse=True)
    print_table(rows, eps)


def main(argv=None):
    return common.main(Config, run, plot, argv, report_table)

if __name__ == "__main__":
    main()
