"""What every experiment script shares: config → argparse, tidy CSV rows, plotting style, progress.

Each script (cleanrl style) declares a ``Config`` dataclass at the top, subclassing :class:`Base`,
whose fields become command-line flags (``steps`` → ``--steps``; ``plot_only`` → ``--plot-only``)
and whose ``QUICK`` dict holds the CI-sized overrides that ``--quick`` applies. Flags given
explicitly always win over ``--quick``.

Results are *tidy rows*, one measurement per row, with the columns :data:`COLUMNS`:
``algorithm, game, params, seed, iteration, queries, metric, value``. A game drawn as game ``b`` of
a batch is named ``"family#b"`` (e.g. ``"random(n=10)#3"``); ``params`` is ``"k=v;k=v"`` with the
algorithm's resolved hyperparameters. Figures are drawn from these rows alone (read back from the
CSV), so ``--plot-only`` redraws a figure without rerunning anything.

Every algorithm has ONE colour (:data:`ALGO_STYLE`), the same in every figure.
"""
from __future__ import annotations

import os

# Before numpy loads OpenBLAS: our matrix-vector products are memory-bound, and BLAS threads only
# spin against each other (measured 5–70× slower per step at n = 1000 on a busy 2-core machine).
# An explicit setting by the user wins.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import ast  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import ClassVar  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "figures"
COLUMNS = ("algorithm", "game", "params", "seed", "iteration", "queries", "metric", "value")
#: gaps below this are drawn at it: double precision cannot resolve a gap of O(1) payoffs beyond it
FLOOR = 1e-16


# -- configuration -------------------------------------------------------------------------------
def arg(default, help: str):
    """A config field with its ``--help`` text (mutable defaults are fine: lists become tuples)."""
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata={"help": help})


@dataclass
class Base:
    """Flags every script has."""

    out: str = arg("results", "directory for the tidy CSV results (git-ignored)")
    figures: str = arg(str(FIGURES), "directory the figures are written to")
    seed: int = arg(0, "random seed (random games are drawn from it)")
    quick: bool = arg(False, "a CI-sized run (seconds): fewer steps, games and seeds")
    plot_only: bool = arg(False, "skip the runs; redraw the figure from the CSV already in --out")

    QUICK: ClassVar[dict] = {}
    NAME: ClassVar[str] = "experiment"

    @property
    def csv_path(self) -> Path:
        return Path(self.out) / f"{self.NAME}.csv"

    def figure_path(self, suffix: str = "") -> Path:
        return Path(self.figures) / f"{self.NAME}{suffix}.png"


def _parse_value(text: str):
    """'3' → 3, '0.5' → 0.5, 'adaptive' → 'adaptive', '(1, 2)' → (1, 2)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse(config_cls, argv=None, description: str | None = None):
    """Build ``config_cls`` from the command line (``argv``; ``sys.argv[1:]`` when None)."""
    doc = description or (sys.modules[config_cls.__module__].__doc__ or "")
    p = argparse.ArgumentParser(description=doc.strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = {}
    for f in dataclasses.fields(config_cls):
        d = f.default
        defaults[f.name] = d
        flag = "--" + f.name.replace("_", "-")
        quick = config_cls.QUICK.get(f.name, dataclasses.MISSING)
        shown = lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else v  # noqa: E731
        h = f.metadata.get("help", "")
        h += f" (default: {shown(d)}" + ("" if quick is dataclasses.MISSING else f"; --quick: {shown(quick)}") + ")"
        h = h.replace("%", "%%")
        kw = dict(default=argparse.SUPPRESS, help=h, dest=f.name)
        if isinstance(d, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(d, tuple):
            elem = type(d[0]) if d else str
            p.add_argument(flag, nargs="*", type=elem if elem in (int, float) else str, **kw)
        else:
            p.add_argument(flag, type=type(d) if d is not None else str, **kw)
    given = vars(p.parse_args(argv))
    values = dict(defaults)
    if given.get("quick", False):
        values.update(config_cls.QUICK)
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    return config_cls(**values)


def parse_hparams(items, algos=None) -> dict:
    """``("alpha=0.5", "mpo.refresh=20")`` → ``{None: {"alpha": 0.5}, "mpo": {"refresh": 20}}``.

    A bare ``key=value`` applies to the algorithm of the run (train.py); ``algo.key=value`` to one
    algorithm of a multi-algorithm script.
    """
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--hparams expects key=value (or algo.key=value); got {item!r}")
        key, value = item.split("=", 1)
        algo, _, name = key.rpartition(".")
        algo = algo or None
        if algo is not None and algos is not None and algo not in algos:
            raise SystemExit(f"--hparams {item!r}: unknown algorithm {algo!r}; choose from {', '.join(algos)}")
        out.setdefault(algo, {})[name] = _parse_value(value)
    return out


# -- tidy rows -----------------------------------------------------------------------------------
def params_str(algo, b: int | None = None) -> str:
    """Resolved hyperparameters as ``k=v;k=v`` (the value for game ``b`` where they are per game)."""
    parts = []
    for f in dataclasses.fields(algo):
        v = getattr(algo, f.name)
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = v.item() if v.ndim == 0 else (v[b].item() if b is not None else "per-game")
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, tuple):
            v = "(" + ",".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v) + ")"
        elif not isinstance(v, (int, str, bool)):
            v = type(v).__name__
        parts.append(f"{f.name}={v}")
    return ";".join(parts)


def history_rows(result, *, game: str, seed: int, metrics=("duality_gap", "regularized_gap", "average_gap"),
                 algorithm: str | None = None, extra: dict | None = None) -> list[tuple]:
    """Tidy rows from ``algorithms.run``'s history; a batched run gives one game ``game#b`` per batch entry.

    ``extra`` maps more metric names to arrays shaped like the history's (R,) or (R, B).
    """
    h = dict(result.history)
    h.update(extra or {})
    algo = result.algorithm
    name = algorithm or algo.name
    it, q = np.asarray(h["iteration"]), np.asarray(h["queries"])
    rows = []
    batched = np.ndim(h["duality_gap"]) == 2
    B = np.shape(h["duality_gap"])[1] if batched else 1
    for b in range(B):
        gname = f"{game}#{b}" if batched else game
        params = params_str(algo, b if batched else None)
        for m in metrics:
            if m not in h:
                continue
            v = np.asarray(h[m], dtype=np.float64)
            v = v[:, b] if batched else v
            k = len(it) - len(v)  # 0: every metric is recorded at every record
            rows.extend((name, gname, params, seed, int(i), int(qq), m, float(x)) for i, qq, x in zip(it[k:], q[k:], v))
    return rows


def write_csv(path, rows) -> Path:
    """Write tidy rows (tuples in :data:`COLUMNS` order, or dicts) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r[c] for c in COLUMNS] if isinstance(r, dict) else [_fmt(x) for x in r])
    return path


def _fmt(x):
    return repr(x) if isinstance(x, float) else x


class Rows(list):
    """Tidy rows read back from a CSV: a list of dicts with typed values, plus small queries."""

    def where(self, **kw) -> "Rows":
        """Rows whose columns equal the given values (a callable value is a predicate)."""
        return Rows(r for r in self if all(v(r[k]) if callable(v) else r[k] == v for k, v in kw.items()))

    def unique(self, col) -> list:
        """Distinct values of ``col``, in first-seen order."""
        return list(dict.fromkeys(r[col] for r in self))

    def xy(self, x="iteration") -> tuple[np.ndarray, np.ndarray]:
        """(x, value) arrays sorted by x."""
        if not self:
            return np.empty(0), np.empty(0)
        a = np.array([(r[x], r["value"]) for r in self], dtype=np.float64)
        a = a[np.argsort(a[:, 0], kind="stable")]
        return a[:, 0], a[:, 1]

    def band(self, x="iteration"):
        """Median and interquartile band of ``value`` over games/seeds at each ``x``: (x, med, q25, q75)."""
        by: dict = {}
        for r in self:
            by.setdefault(r[x], []).append(r["value"])
        xs = np.array(sorted(by), dtype=np.float64)
        vals = [np.asarray(by[k], dtype=np.float64) for k in sorted(by)]
        q = np.array([np.nanpercentile(v, [50, 25, 75]) if np.any(np.isfinite(v)) else [np.nan] * 3 for v in vals])
        return xs, q[:, 0], q[:, 1], q[:, 2]


def read_csv(path) -> Rows:
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"no results at {path}: run the experiment first (without --plot-only)")
    out = Rows()
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            r["seed"], r["iteration"], r["queries"] = int(r["seed"]), int(r["iteration"]), int(r["queries"])
            r["value"] = float(r["value"])
            out.append(r)
    return out


def family(game: str) -> str:
    """``"random(n=10)#3"`` → ``"random(n=10)"``: the game a batch entry was drawn from."""
    return game.split("#", 1)[0]


def param(params: str, key: str, default=None):
    """The value of ``key`` in a ``k=v;k=v`` params string (parsed to a number where it is one)."""
    for kv in params.split(";"):
        k, _, v = kv.partition("=")
        if k == key:
            return _parse_value(v)
    return default


# -- games ---------------------------------------------------------------------------------------
def initial_policy(game, kind: str = "reference", seed: int = 0):
    """``"reference"``: None (the game's reference, uniform); ``"random"``: an interior policy
    softmax(N(0, 1)) per game (and per player of a zero-sum game), drawn from ``seed``."""
    if kind == "reference":
        return None
    if kind != "random":
        raise SystemExit(f"--init must be 'reference' or 'random'; got {kind!r}")
    rng = np.random.default_rng(seed + 12345)

    def draw(n):
        z = rng.normal(size=tuple(game.batch_shape) + (n,))
        p = np.exp(z - z.max(-1, keepdims=True))
        return p / p.sum(-1, keepdims=True)

    sizes = game.sizes
    return draw(sizes[0]) if len(sizes) == 1 and not hasattr(game, "A") else tuple(draw(n) for n in sizes)


def make_game(spec: str, seed: int = 0, batch: int = 1):
    """A game from a short spec: a catalogue name (``cyclic3``), or ``randomN`` for ``batch`` random
    N×N games (EGPO's generator) drawn from ``seed``. Returns (game, family name for the rows)."""
    import games

    if spec.startswith("random") and spec[6:].isdigit():
        n = int(spec[6:])
        g = games.make("random", n=n, seed=seed, batch=batch if batch > 1 else None)
        return g, f"random(n={n})"
    return games.make(spec), spec


def regularized_nash(game, beta):
    """games.regularized_nash with a tolerance double precision can meet at small β.

    Its fixed-point residual |log π − log softmax(log μ + Pπ/β)| carries rounding of size ~ε/β,
    so the default tol = 1e-12 is unreachable for β ≲ 3e-3 on random 10×10 games (it runs its
    1e6 steps and raises); 1e-13/β is still far below anything a figure can show.
    """
    import games

    return games.regularized_nash(game, beta, tol=max(1e-12, 1e-13 / float(np.min(beta))))


# -- style ---------------------------------------------------------------------------------------
#: one fixed colour (and label) per algorithm, identical in every figure
ALGO_STYLE = {
    "mpo": dict(color="#d62728", label="MPO"),
    "mmd": dict(color="#1f77b4", label="MMD", lw=3.2),
    "nash_md": dict(color="#ff7f0e", label="Nash-MD"),
    "mirror_prox": dict(color="#2ca02c", label="Nash-MP (Mirror Prox)", lw=3.2),
    "egpo": dict(color="#9467bd", label="EGPO"),
    "inpo": dict(color="#8c564b", label="INPO"),
    "mnpo": dict(color="#e377c2", label="MNPO"),
    "mwu": dict(color="#7f7f7f", label="MWU / SPPO"),
    "omwu": dict(color="#17becf", label="OMWU / ONPO"),
}
REGULARISED = ("mmd", "nash_md", "mirror_prox", "egpo", "inpo", "mnpo")
#: each regularised method's name for β (the KL weight of its regularised game)
BETA_NAME = {"mmd": "alpha", "nash_md": "beta", "mirror_prox": "beta", "egpo": "beta", "inpo": "tau", "mnpo": "tau",
             "mpo": "alpha"}


def color(algo: str) -> str:
    return ALGO_STYLE.get(algo, {"color": "black"})["color"]


def label(algo: str) -> str:
    return ALGO_STYLE.get(algo, {"label": algo})["label"]


def linewidth(algo: str, base: float = 1.4) -> float:
    """Line width: MMD and Nash-MP are drawn wider because at the library defaults INPO's update is
    exactly MMD's and EGPO's exactly Nash-MP's, so their curves coincide; the wide line shows through."""
    return ALGO_STYLE.get(algo, {}).get("lw", base) * base / 1.4


def setup_style():
    """Matplotlib without a display, with a readable default look. Returns ``pyplot``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 130, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
        "lines.linewidth": 1.6, "axes.spines.top": False, "axes.spines.right": False,
    })
    return plt


def clip(v):
    """Values for a log axis: gaps at or below machine precision drawn at :data:`FLOOR`."""
    return np.maximum(np.asarray(v, dtype=np.float64), FLOOR)


def save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def algo_legend_handles(algos, regularised_dashed=False):
    """Legend handles: one coloured line per algorithm (+ the solid/dashed key if asked)."""
    from matplotlib.lines import Line2D

    hs = [Line2D([], [], color=color(a), lw=linewidth(a), label=label(a)) for a in algos]
    if regularised_dashed:
        hs += [Line2D([], [], color="black", ls="-", label="gap of the original game"),
               Line2D([], [], color="black", ls="--", label="gap of the method's regularised game")]
    return hs


# -- running -------------------------------------------------------------------------------------
def progress(iterable=None, total=None, desc=""):
    """A tqdm progress bar (shown on a terminal, silent in logs and tests)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=None, dynamic_ncols=True, leave=True)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def report(cfg, paths, seconds=None):
    """Print where the results and figures went."""
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    print(f"[{cfg.NAME}] done{took}:", *(f"\n  {p}" for p in paths))


def record_schedule(steps: int, n: int = 300) -> list[int]:
    """Iterations to record: log-spaced early (the fast phase) and evenly spaced late (the tail)."""
    geo = np.round(np.geomspace(1, max(steps, 1), n)).astype(int)
    lin = np.linspace(0, steps, n).round().astype(int)
    return sorted(set(geo.tolist()) | set(lin.tolist()) | {0, steps})


def main(config_cls, run, plot, argv=None, summarise=None):
    """The body of every script's main: parse flags, run (unless --plot-only), write the CSV, plot.

    ``summarise(cfg, rows)`` (optional) prints a table from the rows and returns any extra files it wrote.
    """
    cfg = parse(config_cls, argv)
    with Timer() as t:
        if not cfg.plot_only:
            write_csv(cfg.csv_path, run(cfg))
        rows = read_csv(cfg.csv_path)
        extra = list(summarise(cfg, rows) or []) if summarise else []
        fig = plot(cfg, rows)
    report(cfg, [cfg.csv_path, *extra, fig], t.seconds)
    return cfg
