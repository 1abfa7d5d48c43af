"""Why last-iterate convergence is slow on some games: the equilibrium's conditioning, made visible.

(a) Anatomy of one slow run: MPO at its defaults on ``games.make("random", n=10, seed=0)``, whose
    equilibrium puts mass 0.00265 on one action. We record the duality gap, the log-ratio
    log π_t(i) − log π*(i) of that smallest-mass support action i, and KL(π*‖ρ_k), the quantity MPO's
    proximal-point argument decreases, with the floor −(KL(π*‖ρ_k) + h)/π*(i) that this KL allows
    (``games.conditioning``): the log-ratio dives to the floor while the gap sits on a plateau, climbs
    back, and the gap spikes as it returns to 0 — where KL(π*‖ρ_k) finally falls.
(b) Across random n×n games (EGPO's generator, several n, one batched run per method and n), the
    iterations each method needs to bring the gap to --target and keep it there, against the
    conditioning quantity depth = (KL(π*‖uniform) + h(p_min))/p_min, with a fitted power law over
    the games that reached the target. Methods: MPO (default; η = 4α/L²), OMWU (default η = 1/(8L);
    η = 1/L), and the Euclidean comparators projected OGDA (η = 1/(8L₂); 1/(2L₂)) and extragradient
    (η = 0.9/L₂), which cannot be realised on an LLM.

    python -m experiments.conditioning          # defaults: about 2 minutes on 2 cores
    python -m experiments.conditioning --quick
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
from algorithms.euclidean import lipschitz2
from experiments.common import arg
from games import validation
from games.conditioning import depth_bound

#: method settings: registry name, hyperparameters from (backend, game), colour/label, faster variant?
SETTINGS = {
    "mpo": ("mpo", lambda be, g: {}, "MPO (η = α/L²)"),
    "mpo_fast": ("mpo", lambda be, g: {"eta": "fast"}, "MPO (η = 4α/L²)"),
    "omwu": ("omwu", lambda be, g: {}, "OMWU (η = 1/(8L))"),
    "omwu_fast": ("omwu", lambda be, g: {"eta": 1.0 / np.asarray(be.lipschitz)}, "OMWU (η = 1/L)"),
    "ogda": ("ogda", lambda be, g: {}, "OGDA, Euclidean (η = 1/(8L₂))"),
    "ogda_fast": ("ogda", lambda be, g: {"eta": 0.5 / np.asarray(lipschitz2(g))}, "OGDA, Euclidean (η = 1/(2L₂))"),
    "extragradient": ("extragradient", lambda be, g: {}, "extragradient, Euclidean (η = 0.9/L₂)"),
    # not in the default --methods (measured once for MPO's docstring and figures/README.md)
    "mpo_moving": ("mpo", lambda be, g: {"refresh": "never", "magnet_lr": 0.05}, "MPO, moving magnet λ = 0.05"),
}
DEFAULT_METHODS = ("mpo", "mpo_fast", "omwu", "omwu_fast", "ogda", "ogda_fast", "extragradient")
COLOURS = {"mpo": common.color("mpo"), "omwu": common.color("omwu"), "ogda": "#bcbd22", "extragradient": "#393b79"}
CONDITIONING = ("p_min", "margin", "depth", "margin_time", "kl_reference", "unique")


@dataclass
class Config(common.Base):
    anatomy_n: int = arg(10, "size of the random game whose slow run is dissected in (a)")
    anatomy_seed: int = arg(0, "seed of that game (games.make('random', n, seed))")
    anatomy_steps: int = arg(40_000, "MPO iterations in (a)")
    anatomy_every: int = arg(10, "record every this many iterations in (a)")
    sizes: tuple = arg((5, 10, 20), "numbers of responses n of the random games in (b)")
    games_per_size: int = arg(32, "random games per n in (b) (drawn from --seed + n)")
    methods: tuple = arg(DEFAULT_METHODS, f"method settings in (b), from: {', '.join(SETTINGS)}")
    target: float = arg(1e-8, "duality gap to reach and stay below")
    budget: int = arg(100_000, "iterations allowed per run in (b)")
    check_every: int = arg(10, "how often (iterations) the gap is checked in (b): the resolution of the counts")

    NAME = "conditioning"
    QUICK = dict(anatomy_steps=2000, sizes=(4,), games_per_size=3, budget=1000, methods=("mpo", "omwu_fast", "extragradient"))

    def __post_init__(self):
        for name in ("anatomy_n", "anatomy_steps", "anatomy_every", "games_per_size", "budget", "check_every"):
            validation.integer(getattr(self, name), "--" + name.replace("_", "-"), low=1)
        validation.integer(self.anatomy_n, "--anatomy-n", low=2)
        validation.number(self.target, "--target", low=0, low_open=True)
        for n in self.sizes:
            validation.integer(n, "--sizes", low=2)
        for m in self.methods:
            validation.choice(m, "--methods", list(SETTINGS))


# -- (a) the anatomy of the slow run -----------------------------------------------------------------------
def anatomy(cfg: Config) -> list:
    game = games.make("random", n=cfg.anatomy_n, seed=cfg.anatomy_seed)
    gname = f"random(n={cfg.anatomy_n},seed={cfg.anatomy_seed})"
    c = games.conditioning(game)
    i, star = c.p_min_action, c.nash
    on = star > 0
    be = games.ExactBackend(game)
    extra = {"log_ratio": [], "kl_nash_magnet": []}

    def watch(t, state, m):
        s = state.algo_state
        lr = np.asarray(s.magnet.logp[0])
        extra["log_ratio"].append(float(np.asarray(s.policy.logp[0])[i] - np.log(star[i])))
        extra["kl_nash_magnet"].append(float(np.sum(star[on] * (np.log(star[on]) - lr[on]))))

    res = algorithms.run(algorithms.MPO(), be, cfg.anatomy_steps, record=cfg.anatomy_every, average=False,
                         progress=None, callbacks=(watch,))
    rows = common.history_rows(res, game=gname, seed=cfg.anatomy_seed, metrics=("duality_gap", "log_ratio", "kl_nash_magnet"),
                               extra={k: np.asarray(v) for k, v in extra.items()})
    rows += _conditioning_rows(c, [gname], cfg.anatomy_seed)
    rows.append(("conditioning", gname, "", cfg.anatomy_seed, 0, 0, "p_min_action", float(i)))
    return rows


def _conditioning_rows(c, names, seed):
    d = c.as_dict()
    out = []
    for b, name in enumerate(names):
        for k in CONDITIONING:
            v = np.asarray(d[k], dtype=np.float64)
            out.append(("conditioning", name, "", seed, 0, 0, k, float(v if v.ndim == 0 else v[b])))
    return out


# -- (b) steps to the target against the conditioning -------------------------------------------------------
def sweep(cfg: Config) -> list:
    rows = []
    bar = common.progress(total=len(cfg.sizes) * len(cfg.methods), desc="conditioning")
    for n in cfg.sizes:
        game = games.make("random", n=n, seed=cfg.seed + n, batch=cfg.games_per_size)
        fam = f"random(n={n})"
        names = [f"{fam}#{b}" for b in range(len(game))]
        rows += _conditioning_rows(games.conditioning(game), names, cfg.seed)
        be = games.ExactBackend(game)
        for setting in cfg.methods:
            bar.set_postfix_str(f"n={n} / {setting}")
            reg, hp, _ = SETTINGS[setting]
            last_bad = np.zeros(len(game), dtype=np.int64)
            deep = cfg.target * 1e-3

            def watch(t, state, m, last_bad=last_bad):
                gap = np.asarray(m["duality_gap"])
                last_bad[gap > cfg.target] = t
                return bool(np.all(gap <= deep))  # every game far below the target: nothing left to see

            res = algorithms.run(algorithms.make(reg, **hp(be, game)), be, cfg.budget, record=cfg.check_every,
                                 average=False, progress=False, callbacks=(watch,))
            h = res.history
            final = np.asarray(h["duality_gap"][-1])
            t_end, q_end = int(h["iteration"][-1]), int(h["queries"][-1])
            steps = np.where(final <= cfg.target, np.minimum(last_bad + cfg.check_every, t_end), np.nan)
            for b in range(len(game)):
                base = (setting, names[b], common.params_str(res.algorithm, b), cfg.seed, t_end, q_end)
                rows.append(base + ("steps_to_target", float(steps[b])))
                rows.append(base + ("final_gap", float(final[b])))
            bar.update(1)
    bar.close()
    return rows


def run(cfg: Config) -> list:
    return anatomy(cfg) + sweep(cfg)


# -- summaries ---------------------------------------------------------------------------------------------
def _steps_table(rows):
    """{setting: (depth array, steps array (nan = not reached), size array)} over the sweep's games."""
    cond = {r["game"]: r["value"] for r in rows.where(algorithm="conditioning", metric="depth") if "#" in r["game"]}
    out = {}
    for s in rows.unique("algorithm"):
        if s not in SETTINGS:
            continue
        sub = rows.where(algorithm=s, metric="steps_to_target")
        d = np.array([cond[r["game"]] for r in sub])
        v = np.array([r["value"] for r in sub])
        n = np.array([int(common.family(r["game"])[len("random(n="):-1]) for r in sub])
        out[s] = (d, v, n)
    return out


def fit(depth, steps):
    """Least-squares power law steps ≈ c·depth^k over the reached games: (k, c), or None if < 3 reached."""
    ok = np.isfinite(steps) & (steps > 0)
    if ok.sum() < 3:
        return None
    k, logc = np.polyfit(np.log10(depth[ok]), np.log10(steps[ok]), 1)
    return float(k), float(10**logc)


def spearman(depth, steps, budget):
    """Rank correlation of depth with steps, unreached games ranked last (ties among them)."""
    from scipy.stats import spearmanr

    v = np.where(np.isfinite(steps), steps, 10.0 * budget)
    return float(spearmanr(depth, v).statistic) if len(v) > 2 else float("nan")


def summarise(cfg, rows):
    table = _steps_table(rows)
    budget = max((r["iteration"] for r in rows.where(metric="final_gap")), default=cfg.budget)
    print(f"iterations to gap ≤ {cfg.target:g} (and staying there), budget {budget}:")
    print(f"  {'setting':<15}{'n':>4}{'reached':>10}{'median':>10}{'worst':>10}   (median counts unreached games as ∞)")
    for s, (d, v, n) in table.items():
        for size in list(dict.fromkeys(n.tolist())) + ["all"]:
            m = np.ones_like(v, bool) if size == "all" else n == size
            w = np.where(np.isnan(v[m]), np.inf, v[m])
            print(f"  {s:<15}{size:>4}{f'{np.isfinite(w).sum()}/{m.sum()}':>10}{np.median(w):>10.0f}{np.max(w):>10.0f}")
        f = fit(d, v)
        if f:
            print(f"  {'':<15}fit: steps ≈ {f[1]:.3g}·depth^{f[0]:.2f};  Spearman(depth, steps) = {spearman(d, v, budget):.2f}")
    return []


# -- the figure ----------------------------------------------------------------------------------------------
def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    fig = plt.figure(figsize=(14, 8.6), layout="constrained")
    gs = fig.add_gridspec(6, 2, width_ratios=(1.05, 1))
    _plot_anatomy(fig, gs, rows)
    _plot_sweep(fig, gs, rows, cfg)
    return common.save(fig, cfg.figure_path())


def _plot_anatomy(fig, gs, rows):
    an = [g for g in rows.unique("game") if "seed=" in g]
    if not an:
        return
    g = an[0]
    cond = {r["metric"]: r["value"] for r in rows.where(algorithm="conditioning", game=g)}
    t, gap = rows.where(algorithm="mpo", game=g, metric="duality_gap").xy()
    _, ratio = rows.where(algorithm="mpo", game=g, metric="log_ratio").xy()
    _, kl = rows.where(algorithm="mpo", game=g, metric="kl_nash_magnet").xy()
    p = cond["p_min"]
    axes = [fig.add_subplot(gs[2 * k: 2 * k + 2, 0]) for k in range(3)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    c = common.color("mpo")
    settled = np.flatnonzero(gap < 0.01)  # the first fast phase (gap falling from its start) is not a spike
    spikes = (gap > 0.05) & (t > (t[settled[0]] if len(settled) else np.inf))
    axes[0].semilogy(t, common.clip(gap), color=c)
    axes[0].set_ylabel("duality gap")
    axes[0].set_title(f"(a) MPO (defaults) on {g}: π*(i) = {p:.5f} for action i = {int(cond.get('p_min_action', -1))}, "
                      f"off-support margin {cond['margin']:.2g}", fontsize=10)
    axes[1].plot(t, ratio, color=c, label="log π_t(i) − log π*(i)")
    axes[1].plot(t, -depth_bound(kl, p), color="black", ls="--", lw=1,
                 label="floor −(KL(π*‖ρ_k) + h)/π*(i) allowed by the current KL")
    axes[1].plot([], [], ls="", label=f"(floor at the start, KL(π*‖uniform): −depth = −{cond['depth']:.0f})")
    axes[1].set_ylim(1.3 * min(ratio.min(), -10.0), max(10.0, 1.3 * ratio.max()))
    axes[1].set_ylabel("log-ratio (nats)")
    axes[1].legend(loc="lower right", fontsize=8)
    axes[2].plot(t, kl, color=c)
    axes[2].set_ylabel("KL(π*‖ρ_k)")
    axes[2].set_xlabel("iteration")
    for ax in axes:
        ax.fill_between(t, 0, 1, where=spikes, transform=ax.get_xaxis_transform(), color="orange", alpha=0.25, lw=0)
    axes[0].text(0.99, 0.04, "shaded: gap > 0.05 (the spikes)", transform=axes[0].transAxes, ha="right", fontsize=8)


def _plot_sweep(fig, gs, rows, cfg):
    table = _steps_table(rows)
    if not table:
        return
    budget = max(r["iteration"] for r in rows.where(metric="final_gap"))
    groups = [("log-space (KL) methods: realisable on an LLM", ("mpo", "mpo_fast", "mpo_moving", "omwu", "omwu_fast")),
              ("Euclidean comparators: exact backend only", ("ogda", "ogda_fast", "extragradient"))]
    sizes = sorted({int(x) for _, _, n in table.values() for x in n})
    markers = dict(zip(sizes, "os^Dv<>p"))
    ax0 = None
    for k, (title, settings) in enumerate(groups):
        ax = fig.add_subplot(gs[3 * k: 3 * k + 3, 1], sharex=ax0, sharey=ax0)
        ax0 = ax0 or ax
        for s in settings:
            if s not in table:
                continue
            d, v, n = table[s]
            col = COLOURS[SETTINGS[s][0]]
            fast = s.endswith("_fast") or s.endswith("_moving")
            ls = ":" if s.endswith("_moving") else "--" if fast else "-"
            for size in sizes:
                m = n == size
                reached = m & np.isfinite(v)
                ax.scatter(d[reached], v[reached], s=14, marker=markers[size], alpha=0.55,
                           facecolors="none" if fast else col, edgecolors=col, lw=0.8)
                miss = m & ~np.isfinite(v)
                ax.scatter(d[miss], np.full(miss.sum(), budget * 1.6), s=16, marker="^", facecolors="none", edgecolors=col,
                           alpha=0.6, lw=0.8)
            f = fit(d, v)
            w = np.where(np.isnan(v), np.inf, v)
            lab = f"{SETTINGS[s][2]}: {np.isfinite(w).sum()}/{len(w)} reached, median {np.median(w):.0f}"
            if f:  # drawn over the depths of the games it was fitted on (no extrapolation past the budget)
                ok = np.isfinite(v)
                xs = np.geomspace(d[ok].min(), d[ok].max(), 50)
                ax.plot(xs, f[1] * xs ** f[0], color=col, ls=ls, lw=1.8,
                        label=lab + f", fit ∝ depth^{f[0]:.2f}")
            else:
                ax.plot([], [], color=col, ls=ls, label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(top=budget * 3)
        ax.axhline(budget, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(f"iterations to gap ≤ {cfg.target:g} (and staying)")
        ax.set_title(f"(b) {title}", fontsize=10)
        ax.legend(loc="lower right" if k == 0 else "upper left", fontsize=7.5, framealpha=0.9)
        if k == 1:
            ax.set_xlabel("depth = (KL(π*‖uniform) + h(p_min)) / p_min   (games.conditioning)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker=markers[s], color="grey", label=f"n = {s}") for s in sizes]
    handles.append(Line2D([], [], ls="", marker="^", mfc="none", color="grey", label=f"not reached in {budget}"))
    handles.append(Line2D([], [], ls="", marker="o", mfc="none", color="grey", label="open: the faster setting"))
    fig.legend(handles=handles, loc="outside lower right", ncol=len(handles), fontsize=8)


def main(argv=None):
    return common.main(Config, run, plot, argv, summarise=summarise)


if __name__ == "__main__":
    main()
