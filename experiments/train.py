"""Train one algorithm on one game: the single entry point, whatever the backend.

    python -m experiments.train --backend exact --algo mpo --game cyclic3 --steps 5000
    python -m experiments.train --algo mmd --game perturbed_rps --hparams alpha=0.1 eta=0.1
    python -m experiments.train --algo mpo --game random --game-args n=50 --hparams refresh=adaptive
    python -m experiments.train --algo omwu --game kuhn_poker --steps 20000 --init random
    python -m experiments.train --backend llm --algo mpo --game cyclic3 --out results/llm
    python -m experiments.train --backend llm --algo mpo --game cyclic3 --out results/llm --resume
    python -m experiments.train --backend llm --model PATH --prompts examples/prompts.jsonl \
        --oracle annotators --algo mpo --steps 20 --lora-r 8 --out results/smol

Writes the run's tidy rows (algorithm, game, params, seed, iteration, queries, metric, value) to
DIR/train_<algo>_<game>_s<seed>.csv and prints a summary. ``--backend`` picks the world the same
algorithm object runs in: ``exact`` (known preference matrix, exact metrics) or ``llm`` (a causal LM
trained against a preference oracle: with --model and --prompts a real model on text prompts, judged
by a text oracle, saved to DIR/final/ (loadable by transformers), per-step estimates (loss, KL and
win rate against the reference, queries, tokens, seconds) as rows; without them, a tiny LM in the
enumerable world of the game, whose exact duality gap is recorded. Checkpointed every
--checkpoint-every steps in DIR; the same command with --resume finishes the run). Backends live in
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
    # --backend llm (None: the default said in the help; numbers given for them are checked in llm.train)
    model: str = arg("", "llm: a local causal-LM directory or .gguf file (with --prompts: a real model on text; alone: a "
                     "model built for the game's world; neither: a tiny random LM in the world)")
    prompts: str = arg("", "llm: text prompts, a JSONL/JSON/CSV/Parquet file or a saved datasets folder (needs --model)")
    prompt_column: str = arg("prompt", "llm: the prompts' text column (or chat 'messages')")
    oracle: str = arg("", "llm: preference oracle spec (llm.oracles.from_spec): annotators, reward:DIR, preference:DIR, "
                      "judge:PATH, mix:..., matrix (default: matrix in the world, annotators on a real model)")
    realiser: str = arg("regression", "llm: how a step's target becomes a policy: regression or pg (policy gradient)",
                        choices=("regression", "pg"))
    lora_r: int = arg(None, "llm: LoRA rank >= 1 (default: full fine-tuning)")
    gradient_checkpointing: str = arg("auto", "llm: recompute activations in the backward pass to save memory: auto (on "
                                              "for full fine-tuning, off for LoRA), on or off", choices=("auto", "on", "off"))
    micro_batch: int = arg(None, "llm: prompts per forward/backward pass (memory grows with it; default: 1)")
    threads: int = arg(None, "llm: torch threads (default: $OMP_NUM_THREADS, else every core available)")
    save_adapter: bool = arg(False, "llm: save the LoRA adapter to OUT/final instead of the merged model")
    lr: float = arg(None, "llm: learning rate > 0 of the realiser's optimiser (default: the realiser's safe default)")
    optimizer: str = arg(None, "llm: the realiser's optimiser: adamw, sgd or lbfgs (default: lbfgs in the world, "
                               "adamw on a real model)")
    k: int = arg(None, "llm: optimiser steps (lbfgs: evaluations) per realised step (default: the realiser's)")
    samples: int = arg(None, "llm: responses sampled per prompt, >= 2 (default: 16 in the world, 4 on a real model)")
    opponents: int = arg(None, "llm: fresh opponent samples per prompt (default: 1024 in the world; on a real model "
                               "the step's own samples, leave-one-out)")
    prompts_per_step: int = arg(None, "llm: prompts per step (default: all)")
    max_new_tokens: int = arg(None, "llm: response length limit on a real model (default: 32)")
    temperature: float = arg(1.0, "llm: sampling temperature", low=0, low_open=True)
    top_p: float = arg(1.0, "llm: nucleus sampling mass", low=0, high=1, low_open=True)
    dtype: str = arg(None, "llm: the weights' dtype: float32, bfloat16 or float16 (default: float32; on CUDA the "
                           "computation runs under bfloat16 autocast)")
    device: str = arg(None, "llm: cpu, cuda, cuda:1 ... (default: cuda when available)")
    response_len: int = arg(1, "llm: response length in the enumerable world", low=1)
    checkpoint_every: int = arg(10, "llm: steps between checkpoints", low=1)
    resume: bool = arg(False, "llm: continue the run whose checkpoint is in --out (the same command, re-issued)")

    NAME = "train"
    QUICK = {}  # --quick shortens the backend's default steps: 300 exact, 30 llm

    @property
    def csv_path(self) -> Path:
        game = Path(self.prompts).stem if self.backend == "llm" and self.prompts else self.game
        return Path(self.out) / f"train_{self.algo}_{game}_s{self.seed}.csv"

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
        else:
            from llm.train import check

            check(llm_config(self))  # the LLM flags, --out against --resume, the model and prompts paths


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


def _typed(value, flag: str, kind):
    """A flag whose default is None arrives as text: convert it, or say what is wrong."""
    if value is None or not isinstance(value, str):
        return value
    try:
        return kind(value)
    except ValueError:
        V.fail(flag, value, f"it must be {'an integer' if kind is int else 'a number'}", cls=V.WrongType)


def llm_config(cfg: Config):
    """The LLM run's configuration (llm.train.LLMTrainConfig) from the flags."""
    from llm.train import LLMTrainConfig

    return LLMTrainConfig(
        algo=cfg.algo, game=cfg.game, steps=cfg.steps or (30 if cfg.quick else 100), out=cfg.out, seed=cfg.seed,
        hparams=common.parse_hparams(cfg.hparams, (), "--hparams").get(None, {}), model=cfg.model or None,
        prompts=cfg.prompts or None, prompt_column=cfg.prompt_column, oracle=cfg.oracle or None,
        response_len=cfg.response_len, realiser=cfg.realiser, optimizer=cfg.optimizer,
        lr=_typed(cfg.lr, "--lr", float), k=_typed(cfg.k, "--k", int), samples=_typed(cfg.samples, "--samples", int),
        opponents=_typed(cfg.opponents, "--opponents", int),
        prompts_per_step=_typed(cfg.prompts_per_step, "--prompts-per-step", int),
        max_new_tokens=_typed(cfg.max_new_tokens, "--max-new-tokens", int), temperature=cfg.temperature,
        top_p=cfg.top_p, lora_r=_typed(cfg.lora_r, "--lora-r", int), dtype=cfg.dtype,
        gradient_checkpointing={"auto": None, "on": True, "off": False}[cfg.gradient_checkpointing],
        micro_batch=_typed(cfg.micro_batch, "--micro-batch", int), threads=_typed(cfg.threads, "--threads", int), device=cfg.device,
        checkpoint_every=cfg.checkpoint_every, resume=cfg.resume, save_adapter=cfg.save_adapter,
        progress=sys.stderr.isatty())


def run_llm(cfg: Config) -> list:
    """The LLM backend (llm.train): a real model on text prompts, or the game's enumerable world."""
    from llm.train import train

    rows, summary, *_ = train(llm_config(cfg))
    if not summary["main"]:  # data-parallel rank > 0: rank 0 writes the results and prints the summary
        _leave()
    t = summary["timings"]
    print(f"{summary['seconds_per_step']:.3f} s per algorithm step: sampling {t['sampling']:.1f} s, oracle "
          f"{t['oracle']:.1f} s, log-probs {t['logprobs']:.1f} s, fit {t['fit']:.1f} s; final policy in {summary['final']}")
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


def _leave(code: int = 0):
    """End a launched (data-parallel) worker once its work is done and its files are closed.

    Every rank has passed ``Parallel.close()`` (a barrier, then the process group destroyed) by now;
    what is left is interpreter finalisation, where gloo's background threads can wait forever on a
    peer that already exited (seen once on a loaded 2-core machine: rank 0 done and idle with no
    Python frame left until torchrun's timeout). Flushing and leaving with ``os._exit`` skips that.
    """
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
    if "torch" in sys.modules:  # only an LLM run can be a launched worker (exact runs need no torch)
        from llm.distributed import launched

        if launched():
            _leave()
