"""The run behind ``python -m experiments.train --backend llm``: build, check, run, save.

Two settings, one code path:

* **a real model on text prompts** (``model`` and ``prompts`` given): a local HF causal-LM directory or
  ``.gguf`` file, prompts from a JSONL/JSON/CSV/Parquet file (``llm.data.load_prompts``), a text
  oracle from a spec (``llm.oracles.from_spec``: ``annotators``, ``reward:DIR``, ...), LoRA or full
  fine-tuning; per-step metrics are estimates (``LLMBackend.extra_metrics``);
* **the enumerable world** (neither given): a tiny LM in the world of a catalogue game, whose exact
  duality gap is recorded at every step (``model`` alone: a saved model built for that world).

Everything is checked before any step (:func:`check` then :func:`build`): flags, the output folder,
the checkpoint against ``resume``, the model path, the prompts file and column, prompt lengths
against the context, the oracle's antisymmetry. Checkpoint and resume are ``algorithms.run``'s one
mechanism (``checkpoint=``, ``resume=``, ``config=``): re-issuing the same command after a kill
finishes the same run bit-identically; a different configuration is refused naming the field. The
final policy goes to ``OUT/final/`` (adapters merged, loadable by
``transformers.AutoModelForCausalLM.from_pretrained``; ``save_adapter`` keeps the LoRA adapter), with
its generation config; ``OUT/run.json`` records the configuration, generation settings and timings.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from games import validation as V

CHECKPOINT = "checkpoint.pkl"
FINAL = "final"
COLUMNS = ["algorithm", "game", "params", "seed", "iteration", "queries", "metric", "value"]
#: metrics written as rows, when recorded (exact ones in a world; estimates on a real run)
METRICS = ("duality_gap", "regularized_gap", "loss", "kl_ref", "win_rate_ref", "tokens", "seconds",
           "sampling_s", "oracle_s", "logprobs_s", "fit_s")
#: configuration fields a resumed run may change (everything else must match the checkpoint)
RESUMABLE = ("steps", "resume", "checkpoint_every", "threads", "save_adapter", "progress", "gradient_checkpointing")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LLMTrainConfig:
    """One training run (the CLI's flags; names in messages are the flags').

    samples: responses per prompt (None: 16 in the world, 4 on a real model); max_new_tokens: None =
    the world's response length, else 32; lr / k / optimizer: the realiser's (None: its defaults);
    lora_r: LoRA rank (None: full fine-tuning); dtype: the weights' float32 | bfloat16 | float16 (None:
    float32; on CUDA the backend then runs under bfloat16 autocast); device: "cpu", "cuda", ... (None:
    cuda if available). gradient_checkpointing: None = on for full fine-tuning, off for LoRA (it changes
    memory and time, not results, so a resumed run may change it); micro_batch: prompts per
    forward/backward pass (None: the realiser's default, 1).
    """

    algo: str = "mpo"
    game: str = "cyclic3"
    steps: int = 100
    out: str = "results/llm"
    seed: int = 0
    hparams: dict = field(default_factory=dict)
    model: str | None = None
    prompts: str | None = None
    prompt_column: str = "prompt"
    oracle: str | None = None  # None: "matrix" in the world, "annotators" on a real model
    response_len: int = 1
    realiser: str = "regression"
    optimizer: str | None = None
    lr: float | None = None
    k: int | None = None
    samples: int | None = None
    opponents: int | None = None
    prompts_per_step: int | None = None
    max_new_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    lora_r: int | None = None
    gradient_checkpointing: bool | None = None
    micro_batch: int | None = None
    dtype: str | None = None
    device: str | None = None
    pairs: str = "sampled"
    win_rates: str = "sampled"
    checkpoint_every: int = 10
    resume: bool = False
    save_adapter: bool = False
    threads: int | None = None
    progress: bool = False

    @property
    def real(self) -> bool:
        return self.prompts is not None


def check(cfg: LLMTrainConfig) -> Path:
    """Every flag, and the output folder against ``--resume``, before anything is loaded. Returns OUT."""
    V.integer(cfg.steps, "--steps", low=1)
    V.integer(cfg.seed, "--seed", low=0)
    V.integer(cfg.checkpoint_every, "--checkpoint-every", low=1)
    V.integer(cfg.samples, "--samples", low=2, allow_none=True)
    V.integer(cfg.opponents, "--opponents", low=1, allow_none=True)
    V.integer(cfg.prompts_per_step, "--prompts-per-step", low=1, allow_none=True)
    V.integer(cfg.max_new_tokens, "--max-new-tokens", low=1, allow_none=True)
    V.integer(cfg.k, "--k", low=1, allow_none=True)
    V.integer(cfg.lora_r, "--lora-r", low=1, allow_none=True)
    V.integer(cfg.micro_batch, "--micro-batch", low=1, allow_none=True)
    if cfg.gradient_checkpointing is not None:
        V.boolean(cfg.gradient_checkpointing, "--gradient-checkpointing")
    V.integer(cfg.threads, "--threads", low=1, allow_none=True)
    if cfg.lr is not None:
        V.number(cfg.lr, "--lr", low=0, low_open=True)
    V.number(cfg.temperature, "--temperature", low=0, low_open=True)
    V.number(cfg.top_p, "--top-p", low=0, high=1, low_open=True)
    V.choice(cfg.realiser, "--realiser", ("regression", "pg"))
    V.choice(cfg.pairs, "--pairs", ("sampled", "all"))
    V.choice(cfg.win_rates, "--win-rates", ("sampled", "exact"))
    if cfg.dtype is not None:
        V.choice(cfg.dtype, "--dtype", tuple(DTYPES))
    if cfg.device is not None:
        try:
            torch.device(cfg.device)
        except (RuntimeError, TypeError):
            V.fail("--device", cfg.device, "it must be a torch device such as cpu, cuda or cuda:1")
        if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
            V.fail("--device", cfg.device, "CUDA is not available on this machine; use --device cpu")
    if cfg.model is not None:
        if not str(cfg.model).strip():
            V.fail("--model", cfg.model, "it must be a model directory or .gguf file")
        if not Path(cfg.model).exists():
            raise FileNotFoundError(f"--model = {str(cfg.model)!r}: no such file or directory (a local model directory "
                                    "or .gguf file; nothing is downloaded)")
        from .models import _resolve

        try:  # a directory without config.json or a .gguf, or a file that is not .gguf: refused in no time
            _resolve(cfg.model)
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"--model: {e}") from None
    if cfg.prompts is not None:
        if cfg.model is None:
            V.fail("--prompts", cfg.prompts, "text prompts need a real model: give --model PATH too")
        V.readable_file(cfg.prompts, "--prompts")
        if cfg.pairs != "sampled" or cfg.win_rates != "sampled":
            V.fail("--pairs/--win-rates", (cfg.pairs, cfg.win_rates),
                   "'all' and 'exact' enumerate the world's responses; a real model samples them (use the defaults)")
    else:
        for flag, value in (("--lora-r", cfg.lora_r), ("--save-adapter", cfg.save_adapter or None),
                            ("--max-new-tokens", cfg.max_new_tokens)):
            if value is not None:
                V.fail(flag, value, "it applies to a real model on text prompts (--model PATH --prompts FILE); the "
                       "enumerable world's responses have --response-len tokens and its models are tiny")
    if cfg.save_adapter and cfg.lora_r is None:
        V.fail("--save-adapter", True, "there is no adapter to keep without LoRA: add --lora-r R")
    out = _check_out(cfg.out)
    ckpt = out / CHECKPOINT
    if cfg.resume and not ckpt.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {str(ckpt)!r} (nothing to continue; drop --resume to start)")
    if not cfg.resume:
        for p in (ckpt, out / FINAL):
            if p.exists():
                raise FileExistsError(f"{str(p)!r} already exists: pass --resume to continue that run, or choose "
                                      "another --out (nothing was overwritten)")
    return out


def _threads(threads: int | None) -> int:
    """torch's intra-op threads: --threads, else $OMP_NUM_THREADS (a launcher's per-rank setting), else
    every core this process may use. Set explicitly because ``experiments.common`` sets
    MKL_NUM_THREADS=1 for the exact backend's BLAS, which left torch one thread: the README command
    ran at 99% of one CPU on 2 cores (37.4 s per step against 21.5 s with 2 threads)."""
    if threads:
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_out(path) -> Path:
    """OUT is writable — checked now, but created only once every other check has passed (a refused
    run leaves nothing behind)."""
    if path is None or not str(path).strip():
        V.fail("--out", path, "it must be a directory path")
    p = Path(path)
    if p.exists():
        return V.writable_dir(p, "--out")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        V.fail("--out", str(p), f"it cannot be created ({str(parent)!r} is not a writable directory)")
    return p


def _device_dtype(cfg, parallel=None):
    device = torch.device(cfg.device) if cfg.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if parallel is not None and parallel.device is not None and not cfg.device:
        device = parallel.device  # data-parallel: the device accelerate gave this rank (cuda:LOCAL_RANK or cpu)
    # float32 weights by default, also on CUDA, where the backend computes in bfloat16 under autocast:
    # AdamW's per-step change (~lr = 5e-6 of a weight) is far below bfloat16's resolution (2^-8), so
    # bfloat16 *weights* would silently not train; --dtype bfloat16 is for inference-sized budgets
    dtype = DTYPES[cfg.dtype] if cfg.dtype else torch.float32
    return device, dtype


def build(cfg: LLMTrainConfig, parallel=None):
    """(backend, algorithm): model, prompts, oracle and backend loaded and checked; nothing written."""
    import algorithms

    from .backend import LLMBackend, LLMConfig

    algo = algorithms.make(cfg.algo, **cfg.hparams)
    # the world keeps today's estimator (1024 fresh opponent samples: a precise ĝ on 3 responses);
    # a real model uses the step's own samples, leave-one-out (K(K−1)/2 judgements per prompt)
    opponents = cfg.opponents if cfg.opponents is not None or cfg.real else 1024
    lcfg = dict(samples=cfg.samples or (4 if cfg.real else 16), opponents=opponents,
                prompts_per_step=cfg.prompts_per_step, temperature=cfg.temperature, top_p=cfg.top_p,
                pairs=cfg.pairs, win_rates=cfg.win_rates, realiser=cfg.realiser, optimizer=cfg.optimizer, lr=cfg.lr,
                k=cfg.k, lora_r=cfg.lora_r, seed=cfg.seed, gradient_checkpointing=cfg.gradient_checkpointing,
                realiser_options={} if cfg.micro_batch is None else {"micro_batch": cfg.micro_batch})
    if cfg.real:
        from .data import load_prompts
        from .models import load_tokenizer
        from .oracles import from_spec
        from .policy import Policy

        device, dtype = _device_dtype(cfg, parallel)
        max_new = cfg.max_new_tokens or 32
        tokenizer = load_tokenizer(cfg.model)  # a path that is not a model fails here, in seconds
        split = load_prompts(cfg.prompts, tokenizer, column=cfg.prompt_column, max_new_tokens=max_new, seed=cfg.seed,
                             name="--prompts")
        policy = Policy.from_pretrained(cfg.model, dtype=dtype, device=device)
        oracle = from_spec(cfg.oracle or "annotators", device=device, name="--oracle")
        backend = LLMBackend(policy, oracle, prompts=split.train,
                             config=LLMConfig(max_new_tokens=max_new, **lcfg), parallel=parallel)
        return backend, algo
    import games

    from .policy import Policy
    from .world import EnumerableWorld

    g = games.make(cfg.game)
    if not isinstance(g, games.PreferenceGame) or g.batch_shape:
        V.fail("--game", cfg.game, "--backend llm needs a single preference game (e.g. cyclic3, rps, dice)")
    world = EnumerableWorld(g.P, response_len=cfg.response_len)
    if cfg.model is None:
        policy = world.make_policy(seed=cfg.seed)
    else:
        policy = Policy.from_pretrained(cfg.model, allowed_token_ids=world.content_ids)
        if policy.tokenizer.get_vocab() != world.tokenizer.get_vocab():
            V.fail("--model", cfg.model, f"it has another vocabulary than the {cfg.game} world; for a real model give "
                   "--prompts FILE too, or save a model built for this world (world.make_policy().save_pretrained)")
    if cfg.oracle in (None, "matrix"):
        oracle = world.oracle()
    else:
        from .oracles import from_spec

        oracle = from_spec(cfg.oracle, world=world, name="--oracle")
    backend = LLMBackend(policy, oracle, world=world, config=LLMConfig(**lcfg), parallel=parallel)
    return backend, algo


def run_config(cfg: LLMTrainConfig) -> dict:
    """The configuration a checkpoint must match (everything but what a resume may change)."""
    d = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE and k != "out"}
    d["oracle"] = cfg.oracle or ("annotators" if cfg.real else "matrix")
    # keyed by the flags, so a refused resume names the flag the user changed
    return {"--" + k.replace("_", "-"): v for k, v in json.loads(json.dumps(d, default=str)).items()}


def generation_config(backend) -> dict:
    """The sampler's settings, recorded with the results and saved with the final model."""
    cfg = backend.config
    return {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "max_new_tokens": backend.max_new_tokens, "eos_token_id": list(getattr(backend.live, "eos_token_ids", ()))
            or backend.live.eos_token_id}


def rows(cfg: LLMTrainConfig, result) -> list[list]:
    """Tidy rows (COLUMNS) from the run's history: every recorded metric at every step."""
    algo, h = result.algorithm, result.history
    params = ";".join(f"{k}={v}" for k, v in algo.hparams().items() if v is not None)
    game = Path(cfg.prompts).stem if cfg.real else cfg.game
    out = []
    for m in METRICS:
        if m not in h:
            continue
        for t, q, v in zip(h["iteration"], h["queries"], h[m]):
            out.append([algo.name, game, params, cfg.seed, int(t), int(q), m, float(v)])
    return out


def save_final(cfg: LLMTrainConfig, backend, result, out: Path) -> Path:
    """The final policy to OUT/final (atomically: written beside, then renamed)."""
    from transformers import GenerationConfig

    from . import snapshots

    final, tmp = out / FINAL, out / (FINAL + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    snapshots.load_into(backend.live, result.state.algo_state.policy)
    if cfg.save_adapter:
        backend.live.model.save_pretrained(tmp)  # peft: the adapter only (adapter_config.json + weights)
    else:
        model = snapshots.merged_model(backend.live)
        model.generation_config = GenerationConfig(**generation_config(backend))
        model.save_pretrained(tmp)
    backend.tokenizer.save_pretrained(tmp)
    if final.exists():  # only on --resume of this same run (check() refuses it otherwise)
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def train(cfg: LLMTrainConfig, parallel=None):
    """Run (or resume) a run; returns (rows, summary dict, algorithms.Result, backend).

    Under ``accelerate launch`` / ``torchrun`` every rank runs this (``parallel``: default
    ``llm.distributed.setup()``): the same loop, a shard of each step's prompts; rank 0 alone writes
    the checkpoint, the final model and run.json (``summary["main"]`` says which rank this is).
    """
    import algorithms

    from . import distributed

    out = check(cfg)
    par = parallel if parallel is not None else distributed.setup()
    torch.set_num_threads(_threads(cfg.threads))
    backend, algo = build(cfg, par)  # every remaining check happens here, before any step or write
    # every rank has checked OUT (and the checkpoint against --resume) before rank 0 writes anything
    par.barrier()
    if par.is_main:
        V.writable_dir(out, "--out")
    t0 = time.perf_counter()
    # rank 0 writes the checkpoint; the others read it on --resume (run() asks backend.writes_checkpoints)
    ckpt = str(out / CHECKPOINT) if par.is_main or cfg.resume else None
    result = algorithms.run(algo, backend, cfg.steps, checkpoint=ckpt,
                            checkpoint_every=cfg.checkpoint_every if ckpt else None, resume=cfg.resume and ckpt is not None,
                            config=run_config(cfg), record="all", progress=cfg.progress and par.is_main)
    seconds = time.perf_counter() - t0
    if not par.is_main:
        par.close()  # waits for rank 0's final files
        return rows(cfg, result), {"main": False, "steps": int(result.state.t)}, result, backend
    final = save_final(cfg, backend, result, out)
    tm = backend.timings
    steps = len(result.history["iteration"]) - 1
    summary = {"steps": int(result.state.t), "seconds_this_process": seconds, "final": str(final),
               "timings": asdict(tm), "seconds_per_step": tm.total / max(int(result.state.t), 1),
               "generation": generation_config(backend), "config": run_config(cfg),
               "fingerprint": backend.fingerprint(), "records": steps + 1, "main": True,
               "processes": par.world_size}
    with open(out / "run.json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    par.close()  # the other ranks wait here for the files above, then every rank leaves the group
    return rows(cfg, result), summary, result, backend
