"""Train one algorithm on one game: the single entry point, whatever the backend.

    python -m experiments.train --backend exact --algo mpo --game cyclic3 --steps 5000
    python -m experiments.train --algo mmd --game perturbed_rps --hparams alpha=0.1 eta=0.1
    python -m experiments.train --algo mpo --game random --game-args n=50 --hparams refresh=adaptive
    python -m experiments.train --algo omwu --game kuhn_poker --steps 20000 --init random
    python -m experiments.train --backend llm --algo mpo --game cyclic3 --out results/llm
    python -m experiments.train --backend llm --algo mpo --game cyclic3 --out results/llm --resume

Writes the run's tidy rows (algorithm, game, params, seed, iteration, queries, metric, value) to
DIR/train_<algo>_<game>_s<seed>.csv and prints a summary. ``--backend`` picks the world the same
algorithm object runs in: ``exact`` (known preference matrix, exact metrics) or ``llm`` (a causal LM
trained against a preference oracle in the enumerable world of the game, whose exact duality gap is
recorded; checkpointed every --checkpoint-every steps, --resume continues). Backends live in
:data:`BACKENDS` (a function ``run_<backend>(cfg) -> list of rows``).
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402  (first: it limits BLAS threads before numpy loads)

import numpy as np

from experiments.common import arg
from games import validation as V


@dataclass
class Config(common.Base):
    backend: str = arg("exact", "where the algorithm runs: exact (known preference matrix) or llm (a causal LM)",
                       choices=("exact", "llm"))
    algo: str = arg("mpo", "algorithm (algorithms.available(); aliases such as sppo, onpo, nash_mp work)")
    game: str = arg("cyclic3", "game name (games.available())")
    game_args: tuple = arg((), "game keyword arguments as key=value, e.g. n=50 (a game with a seed takes --seed)")
    steps: int = arg(0, "iterations (0: the backend's default, 5000 exact / 100 llm; --quick: 300 / 30)", low=0)
    hparams: tuple = arg((), "algorithm hyperparameters as key=value, passed to algorithms.make")
    init: str = arg("reference", "initial policy: 'reference' (the game's, uniform) or 'random' (interior, from --seed)",
                    choices=("reference", "random"))
    record: int = arg(0, "record metrics every this many steps (0: every step up to 1000 steps, else ~400 log-spaced)",
                      low=0)
    # --backend llm
    model: str = arg("", "llm: a local model directory built for the game's world (default: a tiny random LM)")
    oracle: str = arg("matrix", "llm: preference oracle: matrix (the game), reward (one BT reward model), mixture (3, intransitive)")
    lr: float = arg(0.05, "llm: learning rate (adam/sgd)")
    optimizer: str = arg("lbfgs", "llm: optimiser per realised step: lbfgs, adam or sgd")
    k: int = arg(30, "llm: optimiser steps (lbfgs: evaluations) per realised step")
    batch_size: int = arg(16, "llm: responses sampled per prompt for the regression")
    opponents: int = arg(1024, "llm: opponent samples per prompt to estimate win rates")
    response_len: int = arg(1, "llm: response length in the enumerable world")
    checkpoint_every: int = arg(10, "llm: steps between checkpoints", low=1)
    resume: bool = arg(False, "llm: continue from the checkpoint in --out")

    NAME = "train"
    QUICK = {}  # --quick shortens the backend's default steps: 300 exact, 30 llm

    @property
    def csv_path(self) -> Path:
        return Path(self.out) / f"train_{self.algo}_{self.game}_s{self.seed}.csv"

    def check(self):
        """Names, hyperparameters and flag combinations, before any work (the LLM backend checks
        its own flags in llm.train, also before any step)."""
        import games

        common.check_algorithms([self.algo], "--algo")
        V.choice(self.game.strip().lower().replace("-", "_"), "--game", games.available())
        given = {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}
        other = EXACT_ONLY if self.backend == "llm" else [f.name for f in dataclasses.fields(self)
                                                          if f.metadata.get("help", "").startswith("llm:")]
        wrong = [f"--{n.replace('_', '-')}" for n in other if n in given]
        if wrong:
            verb = "applies" if len(wrong) == 1 else "apply"
            other_backend = "exact" if self.backend == "llm" else "llm"
            V.fail(wrong[0], getattr(self, wrong[0][2:].replace("-", "_")),
                   f"{', '.join(wrong)} {verb} to --backend {other_backend} only; this run uses --backend {self.backend}")
        hp = common.parse_hparams(self.hparams, (), "--hparams").get(None, {})
        common.build_algorithms([self.algo], (), "--hparams", base=hp)
        if self.backend == "exact":
            game_kwargs(self)  # builds the game: a bad --game-args value is refused now


#: flags that only --backend exact reads
EXACT_ONLY = ("init", "record", "game_args")


def game_kwargs(cfg: Config) -> dict:
    """The game's keyword arguments from --game-args (and --seed for a game drawn at random); the
    game is built once to check them, so errors name --game-args before any work."""
    import inspect

    import games

    kwargs = common.parse_hparams(cfg.game_args, (), "--game-args").get(None, {})
    fn = games.catalogue.BUILTIN.get(cfg.game)
    if fn is not None and "seed" in inspect.signature(fn).parameters:
        kwargs.setdefault("seed", cfg.seed)
    try:
        games.ExactBackend(games.make(cfg.game, **kwargs))  # the backend refuses a game with nothing to learn
    except (ValueError, TypeError) as e:
        raise V.InvalidArgument(f"--game-args {' '.join(cfg.game_args)}: {e}") from None
    return kwargs


def run_exact(cfg: Config) -> list:
    """The exact backend: games.ExactBackend on the named game, algorithms.run, exact metrics."""
    import algorithms
    import games

    game = games.make(cfg.game, **game_kwargs(cfg))
    algo = algorithms.make(cfg.algo, **common.parse_hparams(cfg.hparams).get(None, {}))
    init = common.initial_policy(game, cfg.init, cfg.seed)
    res = algorithms.run(algo, game, cfg.steps or (300 if cfg.quick else 5_000), record=cfg.record or None, init=init, progress=sys.stderr.isatty())
    name = cfg.game + (f"({','.join(cfg.game_args)})" if cfg.game_args else "")
    return common.history_rows(res, game=name, seed=cfg.seed)


def run_llm(cfg: Config) -> list:
    """The LLM backend: llm.train on the game's enumerable world; the LM's exact gap is recorded."""
    from llm.train import LLMTrainConfig, train

    ignored = [f for f, v in (("--init", cfg.init != "reference"), ("--record", cfg.record), ("--game-args", cfg.game_args)) if v]
    if ignored:
        raise SystemExit(f"train: {', '.join(ignored)} apply to --backend exact only (the LLM world records every step "
                         "and starts from the model)")

    tc = LLMTrainConfig(algo=cfg.algo, game=cfg.game, steps=cfg.steps or (30 if cfg.quick else 100), out=str(Path(cfg.out) / "llm"),
                        seed=cfg.seed, hparams=common.parse_hparams(cfg.hparams).get(None, {}),
                        model=cfg.model or None, oracle=cfg.oracle, response_len=cfg.response_len, lr=cfg.lr,
                        k=cfg.k, optimizer=cfg.optimizer, batch_size=cfg.batch_size, opponents=cfg.opponents,
                        checkpoint_every=cfg.checkpoint_every, resume=cfg.resume)
    try:
        rows, timings, *_ = train(tc, progress=sys.stderr.isatty())
    except (FileExistsError, FileNotFoundError) as e:
        raise SystemExit(f"train: {e}") from None
    per_step = timings["seconds"] / max(timings["steps"], 1)
    print(f"{per_step:.3f} s per algorithm step: sampling {timings['sampling']:.1f} s, oracle {timings['oracle']:.1f} s, "
          f"loss/optimiser {timings['loss']:.1f} s of {timings['seconds']:.1f} s")
    return [tuple(r) for r in rows]


#: --backend NAME → function(cfg) -> tidy rows.
BACKENDS = {"exact": run_exact, "llm": run_llm}


def summary(rows: common.Rows) -> str:
    last = max(r["iteration"] for r in rows)
    end = {r["metric"]: r["value"] for r in rows if r["iteration"] == last}
    r0 = rows[0]
    lines = [f"{r0['algorithm']} on {r0['game']} [{r0['params']}]", f"after {last} iterations "
             f"({max(r['queries'] for r in rows)} oracle queries):"]
    lines += [f"  {m:16s} {v:.3e}" for m, v in end.items()]
    return "\n".join(lines)


def main(argv=None):
    """Parse and check every flag before any work; refusals are one line on stderr, exit status 2."""
    return common.cli("train", _main, argv)


def _main(argv):
    cfg = common.parse_and_check(Config, argv)
    with common.Timer() as t:
        if not cfg.plot_only:
            rows = BACKENDS[cfg.backend](cfg)
            if not rows or not np.all([len(r) == len(common.COLUMNS) for r in rows]):
                raise RuntimeError(f"backend {cfg.backend!r} returned malformed rows")
            common.write_csv(cfg.csv_path, rows)
        print(summary(common.read_csv(cfg.csv_path)))
    common.report(cfg, [cfg.csv_path], t.seconds)
    return cfg


if __name__ == "__main__":
    main()
