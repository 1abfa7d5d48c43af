"""Measured linear rates of the regularised methods against their proven bounds, on random games.

For each method at its proven step (guarantee=True) and each β, on random n×n games, we run from
the uniform policy, track KL(π*_β‖π_t) with π*_β = games.regularized_nash(g, β), and fit the slope
of log KL over the linear phase (KL between 1e-10 and KL_0/10): measured contraction
ρ̂ = exp(slope) per iteration. The proven per-iteration bounds (our L = ½·payoff range ≤ ½):

    MMD          (1+ηα)^(−1)   with η = α/L²       (Sokota et al. Thm 3.4)
    Nash-MP      (1+η)^(−1)    with η = β/L        (= (1+η)^(−1/2) per query; paper: (1+2β)^(−N/2))
    EGPO         1 − ηβ        with η = 1/(β+L)
    INPO         1 − τ/η       with η = (L²+τ²)/τ  (η an inverse learning rate)

We also check the theorem itself, max_t KL_t / (ρ^t·KL_0) ≤ 1 (while ρ^t·KL_0 ≥ 1e-8). Output: tidy rows, a summary
table (printed and rates_table.csv), and a figure of measured vs proven rate.

    python -m experiments.rates            # defaults: about 20 s
    python -m experiments.rates --quick
"""
from __future__ import annotations

import csv
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

#: the methods with a proven linear rate, and the name of their regularisation parameter
METHODS = {"mmd": "alpha", "mirror_prox": "beta", "egpo": "beta", "inpo": "tau"}
FIT_LOW = 1e-10  # below this KL the π*_β used as the target (gap ≤ 1e-12) is not accurate enough
CHECK_LOW = 1e-8  # the bound ρ^t·KL_0 is checked while it is above this (π*_β's own error is ~1e-11)


def bound(name, algo):
    """Proven per-iteration contraction factor of KL(π*‖π_t) for a bound algorithm (per game)."""
    eta = np.asarray(algo.eta, dtype=np.float64)
    if name == "mmd":
        return 1 / (1 + eta * np.asarray(algo.alpha))
    if name == "mirror_prox":
        return 1 / (1 + eta)
    if name == "egpo":
        return 1 - eta * np.asarray(algo.beta)
    if name == "inpo":
        return 1 - np.asarray(algo.tau) / eta
    raise ValueError(name)


def fit_rate(t, kl):
    """exp(slope) of log KL against t over the linear phase; NaN if the phase is too short."""
    kl = np.asarray(kl)
    ok = (kl > FIT_LOW) & (kl < kl[0] / 10) & np.isfinite(kl)
    if ok.sum() < 4:
        return np.nan
    slope = np.polyfit(np.asarray(t, dtype=np.float64)[ok], np.log(kl[ok]), 1)[0]
    return float(np.exp(slope))


@dataclass
class Config(common.Base):
    sizes: tuple = arg((3, 5, 10, 20), "numbers of actions n of the random games", low=2)
    betas: tuple = arg((0.05, 0.1, 0.2, 0.5), "regularisation strengths β (MMD's α, INPO's τ)", low=0, low_open=True)
    random_games: int = arg(6, "random games per size", low=1)
    steps: int = arg(4000, "iterations per run (enough for the slowest rate to reach KL 1e-10)", low=1)
    algorithms: tuple = arg(tuple(METHODS), "methods")

    NAME = "rates"
    QUICK = dict(sizes=(5,), betas=(0.2, 0.5), random_games=2, steps=600)

    def check(self):
        self.algorithms = tuple(common.check_algorithms(self.algorithms, allowed=list(METHODS)))


def run(cfg: Config) -> list:
    rows = []
    record = sorted(set(range(0, min(200, cfg.steps))) | set(range(0, cfg.steps + 1, 10)) | {cfg.steps})
    bar = common.progress(total=len(cfg.sizes) * len(cfg.betas) * len(cfg.algorithms), desc="rates")
    for n in cfg.sizes:
        game, fam = common.make_game(f"random{n}", seed=cfg.seed + n, batch=cfg.random_games)
        be = games.ExactBackend(game)
        for beta in cfg.betas:
            star = be.from_probs(common.regularized_nash(game, beta))
            for name in cfg.algorithms:
                kls = []
                algo = algorithms.make(name, **{METHODS[name]: beta, "guarantee": True})
                res = algorithms.run(algo, be, cfg.steps, record=record, average=False, progress=False,
                                     callbacks=(lambda t, s, m: kls.append(np.atleast_1d(be.ops.to_numpy(be.kl(star, s.algo_state.policy)))),))
                kl = np.array(kls)  # (R, B)
                t = res.history["iteration"]
                rho = np.broadcast_to(bound(name, res.algorithm), (kl.shape[1],))
                for b in range(kl.shape[1]):
                    g, params = f"{fam}#{b}", common.params_str(res.algorithm, b)
                    # the theorem, KL_t ≤ ρ^t·KL_0, checked while the bound is above π*_β's accuracy
                    with np.errstate(all="ignore"):  # ρ^t underflows long after the checked range
                        bt = rho[b] ** t * kl[0, b]
                        ratio = np.max((kl[:, b] / bt)[(bt >= CHECK_LOW) & (t >= 1)], initial=0.0)
                    q = int(res.history["queries"][-1])
                    base = (name, g, params, cfg.seed, int(t[-1]), q)
                    rows += [base + ("measured_rate", fit_rate(t, kl[:, b])), base + ("bound_rate", float(rho[b])),
                             base + ("max_kl_over_bound", float(ratio))]
                    if b == 0:  # one trajectory per (n, β, method) for the figure
                        rows += [(name, g, params, cfg.seed, int(ti), int(qi), "kl", float(v))
                                 for ti, qi, v in zip(t, res.history["queries"], kl[:, b])]
                bar.update(1)
    bar.close()
    return rows


def table(rows: common.Rows) -> list[dict]:
    """One line per (method, n, β): measured contraction (median, worst) vs the bound."""
    out = []
    keys = dict.fromkeys((r["algorithm"], common.family(r["game"]), common.param(r["params"], METHODS.get(r["algorithm"], "beta")))
                         for r in rows.where(metric="bound_rate"))
    for algo, fam, beta in keys:
        s = rows.where(algorithm=algo, game=lambda g, f=fam: common.family(g) == f,
                       params=lambda p, a=algo, b=beta: common.param(p, METHODS.get(a, "beta")) == b)
        m = np.array([r["value"] for r in s.where(metric="measured_rate")])
        bd = np.array([r["value"] for r in s.where(metric="bound_rate")])
        ratio = np.array([r["value"] for r in s.where(metric="max_kl_over_bound")])
        fitted = np.isfinite(m)
        out.append({
            "method": algo, "game": fam, "beta": beta, "games": len(m),
            "bound_per_iter": float(np.median(bd)),
            "measured_median": float(np.median(m[fitted])) if fitted.any() else np.nan,
            "measured_worst": float(np.max(m[fitted])) if fitted.any() else np.nan,
            "rate_holds": bool(np.all(m[fitted] <= bd[fitted] * (1 + 1e-9))),
            "theorem_holds": bool(np.all(ratio <= 1 + 1e-6)),
            "max_kl_over_bound": float(np.max(ratio)),
        })
    return out


def print_table(tab):
    hdr = f"{'method':12s} {'game':15s} {'beta':>6s} {'bound':>8s} {'measured(med)':>13s} {'worst':>8s}  rate≤bound  KL_t≤ρ^t·KL_0"
    print(hdr)
    print("-" * len(hdr))
    for r in tab:
        print(f"{r['method']:12s} {r['game']:15s} {r['beta']:6.3g} {r['bound_per_iter']:8.5f} {r['measured_median']:13.5f} "
              f"{r['measured_worst']:8.5f}  {str(r['rate_holds']):10s}  {r['theorem_holds']} (max ratio {r['max_kl_over_bound']:.3g})")


def write_table(tab, path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(tab[0]))
        w.writeheader()
        w.writerows(tab)
    return Path(path)


def plot(cfg: Config, rows: common.Rows) -> Path:
    plt = common.setup_style()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5))
    algos = rows.unique("algorithm")
    sizes = sorted({int(common.family(g).split("=")[1].rstrip(")")) for g in rows.unique("game")})
    markers = dict(zip(sizes, "os^Dv<>"))
    lo, hi = np.inf, 0
    for a in algos:
        meas = rows.where(algorithm=a, metric="measured_rate")
        bnd = {(r["game"], r["params"]): r["value"] for r in rows.where(algorithm=a, metric="bound_rate")}
        for n in sizes:
            pts = [(-np.log(bnd[(r["game"], r["params"])]), -np.log(r["value"])) for r in meas
                   if common.family(r["game"]) == f"random(n={n})" and np.isfinite(r["value"])]
            if pts:
                x, y = np.array(pts).T
                wide = common.linewidth(a) > common.linewidth("")  # MMD ≡ INPO, Nash-MP ≡ EGPO: ring vs dot
                a1.scatter(x, y, marker=markers[n], s=70 if wide else 16, facecolors="none" if wide else common.color(a),
                           edgecolors=common.color(a), linewidths=1.3, alpha=0.85)
                lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
    if np.isfinite(lo):
        d = np.geomspace(lo / 1.5, hi * 1.5, 10)
        a1.plot(d, d, color="black", lw=1)
        a1.plot(d, 2 * d, color="black", lw=0.8, ls="--")
        a1.fill_between(d, d / 10, d, color="red", alpha=0.06, lw=0)
        a1.text(d[-1] / 1.3, d[-1] / 20, "slower than proven\n(would violate the bound)", ha="right", va="top", fontsize=8, color="darkred")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("proven rate  −log ρ  (per iteration)")
    a1.set_ylabel("measured rate  −log ρ̂  (fitted slope of log KL)")
    a1.set_title("Measured vs proven linear rate, random games (one point per game and β)", fontsize=10)
    from matplotlib.lines import Line2D

    h = common.algo_legend_handles(algos) + [Line2D([], [], ls="", marker=markers[n], color="black", label=f"n = {n}") for n in sizes]
    h += [Line2D([], [], color="black", lw=1, label="measured = proven"),
          Line2D([], [], color="black", lw=0.8, ls="--", label="measured = 2 × proven")]
    a1.legend(handles=h, fontsize=8, loc="upper left")
    # right: example trajectories with their bounds
    n_ex = 10 if 10 in sizes else sizes[-1]
    kls = rows.where(metric="kl", game=f"random(n={n_ex})#0")
    betas = sorted({common.param(r["params"], METHODS.get(r["algorithm"], "beta")) for r in kls})
    beta_ex = 0.1 if 0.1 in betas else betas[len(betas) // 2]
    t_end = 10.0
    for a in algos:
        s = kls.where(algorithm=a, params=lambda p, a=a: common.param(p, METHODS.get(a, "beta")) == beta_ex)
        if not s:
            continue
        t, v = s.xy("iteration")
        a2.plot(t, common.clip(v), color=common.color(a), lw=common.linewidth(a), label=common.label(a))
        rho = rows.where(algorithm=a, metric="bound_rate", game=f"random(n={n_ex})#0", params=s[0]["params"])[0]["value"]
        a2.plot(t, common.clip(v[0] * rho ** t), color=common.color(a), ls=":", lw=1.2)
        t_end = max(t_end, float(np.log(1e-14 / v[0]) / np.log(rho)))
    a2.set_yscale("log")
    a2.set_ylim(1e-14, 10)
    a2.set_xlim(0, 1.1 * t_end)
    a2.set_xlabel("iteration t (Nash-MP and EGPO: 2 queries per iteration)")
    a2.set_ylabel("KL(π*_β ‖ π_t)")
    a2.set_title(f"random(n={n_ex}) game #0, β = {beta_ex:g}: KL (solid) and proven bound ρ^t·KL_0 (dotted)", fontsize=10)
    a2.legend(fontsize=8)
    fig.suptitle("Linear last-iterate rates of the regularised methods at their proven step sizes (guarantee=True)")
    fig.tight_layout()
    return common.save(fig, cfg.figure_path())


def summarise(cfg, rows):
    tab = table(rows)
    print_table(tab)
    return [write_table(tab, Path(cfg.out) / f"{cfg.NAME}_table.csv")]


def main(argv=None):
    return common.main(Config, run, plot, argv, summarise)

if __name__ == "__main__":
    main()
