"""Train a causal LM with any algorithm against a preference oracle: ``--backend llm`` of
``experiments/train.py``.

The default world is enumerable (a tiny vocabulary, responses of fixed length mapped onto the
actions of a catalogue game), so the LM policy's exact duality gap is recorded at every step. Runs
checkpoint (models, algorithm state, RNG, history) every ``checkpoint_every`` steps, atomically;
``resume=True`` continues exactly where a run stopped.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"
COLUMNS = ["algorithm", "game", "params", "seed", "iteration", "queries", "metric", "value"]


@dataclass
class LLMTrainConfig:
    algo: str = "mpo"
    game: str = "cyclic3"
    steps: int = 100
    out: str = "results/llm"
    seed: int = 0
    hparams: dict = field(default_factory=dict)
    model: str | None = None  # a local model directory; a tiny random model by default
    oracle: str = "matrix"  # matrix | reward | mixture
    response_len: int = 1
    lr: float = 0.05
    k: int = 30
    optimizer: str = "lbfgs"
    batch_size: int = 16  # responses sampled per prompt for the regression
    opponents: int = 1024  # opponent samples per prompt for the win-rate estimate
    pairs: str = "sampled"
    win_rates: str = "sampled"
    checkpoint_every: int = 10
    resume: bool = False
    threads: int = 1


def _game_matrix(name):
    import games

    g = games.make(name)
    if not isinstance(g, games.PreferenceGame) or g.batch_shape:
        raise ValueError(f"--backend llm needs a single preference game (e.g. cyclic3, rps, dice); {name!r} is {g!r}")
    return g


def _oracle(kind, world, seed):
    from .oracles import MixtureOracle, RewardModelOracle

    if kind == "matrix":
        return world.oracle()
    if kind in ("reward", "mixture"):
        from transformers import LlamaConfig, LlamaForSequenceClassification

        def rm(s):
            torch.manual_seed(s)
            cfg = LlamaConfig(vocab_size=len(world.tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, num_labels=1,
                              pad_token_id=world.tokenizer.pad_token_id)
            return RewardModelOracle(LlamaForSequenceClassification(cfg).eval(), world.tokenizer)

        if kind == "reward":
            return rm(seed)
        return MixtureOracle([rm(seed + i) for i in range(3)], [1 / 3] * 3)
    raise ValueError(f"unknown oracle {kind!r}; choose matrix, reward or mixture")


def build(cfg: LLMTrainConfig):
    """(backend, algorithm, world), everything validated before anything is written."""
    import algorithms

    from .backend import LLMBackend, LLMConfig
    from .policy import Policy
    from .world import EnumerableWorld

    g = _game_matrix(cfg.game)
    algo = algorithms.make(cfg.algo, **cfg.hparams)
    world = EnumerableWorld(g.P, response_len=cfg.response_len)
    if cfg.model is None:
        policy = world.make_policy(seed=cfg.seed)
    else:
        policy = Policy.from_pretrained(cfg.model, allowed_token_ids=world.content_ids)
        if policy.tokenizer.get_vocab() != world.tokenizer.get_vocab():
            raise ValueError(f"the model at {cfg.model!r} has another vocabulary than the {cfg.game} world; "
                             "save one built for this world (LLMBackend's policy.save_pretrained)")
    config = LLMConfig(k=cfg.k, lr=cfg.lr, samples=cfg.batch_size, opponents=cfg.opponents, pairs=cfg.pairs,
                       win_rates=cfg.win_rates, optimizer=cfg.optimizer, seed=cfg.seed)
    backend = LLMBackend(policy, _oracle(cfg.oracle, world, cfg.seed), world=world, config=config)
    return backend, algo, world


def _save(path, payload):
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _rows(cfg, algo, hist, start):
    params = json.dumps(algo.hparams(), sort_keys=True, default=str)
    for i, t in enumerate(hist["iteration"]):
        if t < start:
            continue
        for metric in ("duality_gap", "regularized_gap"):
            if metric in hist:
                yield [algo.name, cfg.game, params, cfg.seed, int(t), int(hist["queries"][i]), metric,
                       float(hist[metric][i])]


def train(cfg: LLMTrainConfig, progress: bool = False):
    """Run (or resume) a training run; returns the list of result rows and the timings dict."""
    import algorithms

    torch.set_num_threads(cfg.threads)
    ckpt = os.path.join(cfg.out, CHECKPOINT)
    if os.path.exists(ckpt) and not cfg.resume:
        raise FileExistsError(f"a checkpoint already exists at {ckpt}; pass --resume to continue it, "
                              "or choose another --out (nothing was overwritten)")
    if cfg.resume and not os.path.exists(ckpt):
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
    backend, algo, world = build(cfg)  # validation errors happen here, before any write
    os.makedirs(cfg.out, exist_ok=True)
    state, history = None, None
    if cfg.resume:
        saved = torch.load(ckpt, weights_only=False)
        algo, state, history = saved["algorithm"], saved["state"], saved["history"]
        backend.load_state_dict(saved["backend"])
        torch.set_rng_state(saved["torch_rng"])
    t0 = time.perf_counter()
    done = first = 0 if state is None else state.t
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=done, desc=f"{cfg.algo} (llm)", unit="step")
    while done < cfg.steps:
        chunk = min(cfg.checkpoint_every, cfg.steps - done)
        r = algorithms.run(algo, backend, chunk, state=state, record="all", average=False, progress=False)
        algo, state = r.algorithm, r.state
        if history is None:
            history = {k: list(v) for k, v in r.history.items()}
        else:  # the chunk's first record repeats the previous chunk's last
            for k, v in r.history.items():
                history[k].extend(list(v)[1:])
        done = state.t
        _save(ckpt, {"algorithm": algo, "state": state, "history": history, "backend": backend.state_dict(),
                     "torch_rng": torch.get_rng_state(), "config": asdict(cfg)})
        if bar is not None:
            bar.update(chunk)
            bar.set_postfix(gap=f"{history['duality_gap'][-1]:.3g}")
    if bar is not None:
        bar.close()
    hist = {k: np.asarray(v) for k, v in history.items()}
    rows = list(_rows(cfg, algo, hist, 0))
    with open(os.path.join(cfg.out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)
    tm = backend.timings
    timings = {"seconds": time.perf_counter() - t0, "steps": cfg.steps - first,
               "sampling": tm.sampling, "oracle": tm.oracle, "loss": tm.loss}
    with open(os.path.join(cfg.out, "timings.json"), "w") as f:
        json.dump(timings, f, indent=1)
    return rows, timings, state, backend
