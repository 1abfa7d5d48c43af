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

Bad input never costs work: flags are typed and bounded where they are declared (``arg(3, "...",
low=1)``: ``--flag = 0 is not allowed; it must be an integer >= 1``), and each script's
``Config.check()`` (names of algorithms and games, ``--hparams``) plus ``--out``/``--figures``
writability run before the first experiment. Every refusal (a ValueError, TypeError or
FileNotFoundError from the validation layer, or a bad flag) is printed as ONE line ``SCRIPT: message``
on stderr with exit status 2 and no traceback (:func:`cli`; set ``NASHLAB_TRACEBACK=1`` to see one).
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
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import ClassVar  # noqa: E402

import numpy as np  # noqa: E402

from games import validation as V  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "figures"
COLUMNS = ("algorithm", "game", "params", "seed", "iteration", "queries", "metric", "value")
#: gaps below this are drawn at it: double precision cannot resolve a gap of O(1) payoffs beyond it
FLOOR = 1e-16


# -- configuration -------------------------------------------------------------------------------
def arg(default, help: str, *, low=None, high=None, low_open: bool = False, choices=None, nonempty=None,
        element=None):
    """A config field with its ``--help`` text (mutable defaults are fine: lists become tuples).

    low/high (low_open: strictly above low): bounds on the number (every number of a tuple flag),
    checked as the flag is parsed; choices: the allowed strings; nonempty: a tuple flag needs at
    least one value (default: when its default has one); element: the type of a tuple's values
    (default: the type of the default's first value).
    """
    if isinstance(default, list):
        default = tuple(default)
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "choices": choices,
            "nonempty": bool(default) if nonempty is None and isinstance(default, tuple) else bool(nonempty),
            "element": element}
    return field(default=default, metadata=meta)


class UsageError(V.InvalidArgument):
    """A command line argparse could not parse (unknown flag, missing value, bad type)."""


@dataclass
class Base:
    """Flags every script has."""

    out: str = arg("results", "directory for the tidy CSV results (git-ignored)")
    figures: str = arg(str(FIGURES), "directory the figures are written to")
    seed: int = arg(0, "random seed (random games are drawn from it)", low=0)
    quick: bool = arg(False, "a CI-sized run (seconds): fewer steps, games and seeds")
    plot_only: bool = arg(False, "skip the runs; redraw the figure from the CSV already in --out")

    QUICK: ClassVar[dict] = {}
    NAME: ClassVar[str] = "experiment"

    @property
    def csv_path(self) -> Path:
        return Path(self.out) / f"{self.NAME}.csv"

    def figure_path(self, suffix: str = "") -> Path:
        return Path(self.figures) / f"{self.NAME}{suffix}.png"

    def check(self):
        """The script's own checks (names, hyperparameters, combinations of flags); raise ValueError
        naming the flag. Runs before any work; the base class has none."""

    def validate(self):
        """Every check that can be made before any work: the script's :meth:`check`, then that the
        results can be read (--plot-only) or written (--out) and the figures written (--figures).
        Directories are created only once every other check has passed."""
        self.check()
        dirs = [(self.figures, "--figures")]
        if self.plot_only:
            if not self.csv_path.is_file():
                raise FileNotFoundError(f"--plot-only: no results at {self.csv_path}; run the experiment first "
                                        "(without --plot-only), or give the --out it wrote to")
        else:
            dirs.insert(0, (self.out, "--out"))
        for path, flag in dirs:  # every directory checked before any is created
            _could_create(path, flag)
        for path, flag in dirs:
            V.writable_dir(path, flag)


def _could_create(path, flag: str):
    """Refuse (naming ``flag``) a directory path that is empty, names a file, or lies under a file or
    an unwritable directory — without creating anything."""
    if path is None or not str(path).strip():
        V.fail(flag, path, "it must be a directory path", cls=V.WrongType)
    p = Path(path).absolute()
    if p.exists():
        if not p.is_dir():
            V.fail(flag, str(path), "it exists and is not a directory")
        return
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        V.fail(flag, str(path), f"{parent} is a file, so no directory can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        V.fail(flag, str(path), f"{parent} is not writable, so the directory cannot be made")


def _parse_value(text: str):
    """'3' → 3, '0.5' → 0.5, 'adaptive' → 'adaptive', '(1, 2)' → (1, 2)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are raised (and printed by :func:`cli` as one line), not printed with
    the usage and exited from here."""

    def error(self, message):
        m = re.match(r"argument (--[\w-]+)(?:/[^:]*)?: (.*)", message, re.S)
        if m and m.group(2).startswith(m.group(1)):
            message = m.group(2)  # our own typed flags already name themselves
        raise UsageError(f"{message} (see --help)")


def _flag_type(flag: str, kind, meta: dict, each: bool = False):
    """An argparse ``type=`` that converts and checks one value, naming the flag in its error."""
    low, high, low_open, choices = meta.get("low"), meta.get("high"), meta.get("low_open"), meta.get("choices")
    name = flag

    def convert(text: str):
        try:
            if kind is int:
                try:
                    v = int(text)
                except ValueError:
                    V.fail(name, text, "it must be an integer" + _bounds(low, high, low_open), cls=V.WrongType)
                V.integer(v, name, low=low if not low_open else low + 1, high=high)
                return v
            if kind is float:
                try:
                    v = float(text)
                except ValueError:
                    V.fail(name, text, "it must be a number" + _bounds(low, high, low_open), cls=V.WrongType)
                return V.number(v, name, low=low, high=high, low_open=low_open)
            if choices is not None:
                return V.choice(text, name, choices)
            return text
        except V.InvalidArgument as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def _bounds(low, high, low_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return (" " + " and ".join(parts)) if parts else ""


def parse(config_cls, argv=None, description: str | None = None):
    """Build ``config_cls`` from the command line (``argv``; ``sys.argv[1:]`` when None).

    Raises :class:`UsageError` (a ValueError naming the flag) for anything argparse refuses or a
    flag's bounds exclude; ``--help`` prints and exits 0 as usual.
    """
    doc = description or (sys.modules[config_cls.__module__].__doc__ or "")
    prog = getattr(config_cls, "NAME", None)
    p = _Parser(prog=prog, description=doc.strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
                allow_abbrev=False)
    defaults = {}
    nonempty = []
    for f in dataclasses.fields(config_cls):
        d = f.default
        defaults[f.name] = d
        flag = "--" + f.name.replace("_", "-")
        quick = config_cls.QUICK.get(f.name, dataclasses.MISSING)
        shown = lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else v  # noqa: E731
        meta = dict(f.metadata)
        h = meta.get("help", "")
        if meta.get("choices"):
            h += f" [{', '.join(map(str, meta['choices']))}]"
        h += f" (default: {shown(d)}" + ("" if quick is dataclasses.MISSING else f"; --quick: {shown(quick)}") + ")"
        h = h.replace("%", "%%")
        kw = dict(default=argparse.SUPPRESS, help=h, dest=f.name)
        if isinstance(d, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(d, tuple):
            elem = meta.get("element") or (type(d[0]) if d else str)
            p.add_argument(flag, nargs="*", type=_flag_type(flag, elem if elem in (int, float) else str, meta), **kw)
            if meta.get("nonempty"):
                nonempty.append((f.name, flag))
        else:
            kind = type(d) if d is not None else str
            p.add_argument(flag, type=_flag_type(flag, kind if kind in (int, float) else str, meta), **kw)
    given = vars(p.parse_args(argv))
    for name, flag in nonempty:
        if name in given and not given[name]:
            raise UsageError(f"{flag} = (nothing) is not allowed; give at least one value")
    for name, v in given.items():
        if isinstance(v, list):  # a value given twice would run (and draw) the same thing twice
            twice = next((x for i, x in enumerate(v) if x in v[:i]), None)
            if twice is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} = {twice!r} is not allowed; it is given twice (give each value once)")
    values = dict(defaults)
    if given.get("quick", False):
        values.update(config_cls.QUICK)
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    return config_cls(**values)


def parse_hparams(items, algos=None, flag: str = "--hparams") -> dict:
    """``("alpha=0.5", "mpo.refresh=20")`` → ``{None: {"alpha": 0.5}, "mpo": {"refresh": 20}}``.

    A bare ``key=value`` applies to the algorithm of the run (train.py); ``algo.key=value`` to one
    algorithm of a multi-algorithm script (``algos``: the names allowed there; None: any). A
    missing ``=``, an unknown algorithm or a key given twice is a ValueError naming ``flag``.
    """
    out: dict = {}
    for item in items:
        if "=" not in item:
            V.fail(flag, item, "each value must be key=value (or algo.key=value)")
        key, value = item.split("=", 1)
        algo, _, name = key.rpartition(".")
        algo = algo or None
        if not name:
            V.fail(flag, item, "each value must be key=value (or algo.key=value); the key is empty")
        if algo is not None and algos is not None and algo not in algos:
            V.fail(flag, item, f"{algo!r} is not one of the algorithms run: {', '.join(algos)}" if algos else
                   "this script runs one algorithm: give key=value, without an algorithm's name")
        if name in out.get(algo, {}):
            V.fail(flag, item, f"{key} is given twice; give each hyperparameter once")
        out.setdefault(algo, {})[name] = _parse_value(value)
    return out


def check_algorithms(names, flag: str = "--algorithms", allowed=None) -> list[str]:
    """Registry names of ``names`` (aliases resolved), each known (and in ``allowed`` if given);
    a ValueError naming ``flag`` and the valid names otherwise."""
    import algorithms

    out = []
    for n in names:
        try:
            name = algorithms.get(n).name
        except ValueError:
            V.choice(n, flag, list(allowed or algorithms.available()))
        if allowed is not None and name not in allowed:
            V.choice(n, flag, list(allowed))
        out.append(name)
    return out


def build_algorithms(names, hparams=(), flag: str = "--hparams", base=None) -> dict:
    """``{name: algorithm}``, every one built now with its ``--hparams`` overrides (so a bad value
    is refused before the first run, naming the flag). ``base``: overrides applied to every one."""
    import algorithms

    overrides = parse_hparams(hparams, list(names), flag)
    out = {}
    for n in names:
        hp = {**(base or {}), **overrides.get(n, {})}
        try:
            out[n] = algorithms.make(n, **hp)
        except (ValueError, TypeError) as e:
            shown = " ".join([f"{k}={v}" for k, v in (base or {}).items()]
                             + [f"{n}.{k}={v}" for k, v in overrides.get(n, {}).items()])
            raise V.InvalidArgument(f"{flag} {shown}: {e}") from None
    return out


#: the game specs a script accepts: a catalogue name, or randomN (N×N random games)
_RANDOM = re.compile(r"random(\d+)")


def is_random_spec(spec: str) -> bool:
    """Whether ``spec`` is ``randomN`` (N×N random games drawn from --seed), not a catalogue name."""
    return _RANDOM.fullmatch(spec) is not None


def check_games(specs, flag: str = "--games", preference_only: bool = False) -> list[str]:
    """Every spec a catalogue name (games.available()) or ``randomN`` with N >= 2."""
    import games

    for spec in specs:
        m = _RANDOM.fullmatch(spec)
        if m:
            if int(m.group(1)) < 2:
                V.fail(flag, spec, "randomN needs N >= 2 actions (a 1-action game has nothing to learn)")
            continue
        key = spec.strip().lower().replace("-", "_")
        if key not in games.available():
            V.choice(spec, flag, games.available() + ["randomN"])
    return list(specs)


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
    # a backend without exact metrics records only its own (backend.extra_metrics): shape from those
    shaped = next((np.asarray(h[m]) for m in metrics if m in h), np.asarray(it))
    batched = shaped.ndim == 2
    B = shaped.shape[1] if batched else 1
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
        raise FileNotFoundError(f"no results at {path}: run the experiment first (without --plot-only)")
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
    V.choice(kind, "--init", ("reference", "random"))
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

    if is_random_spec(spec):
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


#: what :func:`cli` reports as one line: the validation layer's refusals, missing and existing files
#: (while parsing and checking: also any ValueError or TypeError, which can only be the input's)
REFUSALS = (ValueError, FileNotFoundError, FileExistsError)


def cli(name: str, body, argv=None):
    """Run ``body(argv)``; a refusal is printed as ONE line ``name: message`` on stderr and the
    process exits with status 2, no traceback (``NASHLAB_TRACEBACK=1`` re-raises it instead).
    An unexpected error (a bug) keeps its traceback."""
    try:
        return body(argv)
    except REFUSALS as e:
        if os.environ.get("NASHLAB_TRACEBACK"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"{name}: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_and_check(config_cls, argv=None):
    """The config from the command line, with every check that can be made before any work done."""
    try:
        cfg = parse(config_cls, argv)
        cfg.validate()
    except TypeError as e:  # before any work, a TypeError can only be about the input
        if isinstance(e, V.WrongType):
            raise
        raise V.WrongType(str(e)) from None
    return cfg


def main(config_cls, run, plot, argv=None, summarise=None):
    """The body of every script's main: parse and check the flags (before any work), run (unless
    --plot-only), write the CSV, plot. Refusals: one line on stderr, exit status 2 (:func:`cli`).

    ``summarise(cfg, rows)`` (optional) prints a table from the rows and returns any extra files it wrote.
    """
    def body(argv):
        cfg = parse_and_check(config_cls, argv)
        with Timer() as t:
            if not cfg.plot_only:
                write_csv(cfg.csv_path, run(cfg))
            rows = read_csv(cfg.csv_path)
            extra = list(summarise(cfg, rows) or []) if summarise else []
            fig = plot(cfg, rows)
        report(cfg, [cfg.csv_path, *extra, fig], t.seconds)
        return cfg

    return cli(config_cls.NAME, body, argv)
