"""Scaling of the LLM backend on the CPU: throughput at 1 and 2 processes, and seconds per step vs prompts per step.

The real command (``python -m experiments.train --backend llm``; ``torchrun --standalone`` for 2
processes) on a small random Llama (4 layers, width 256, a 22-word vocabulary: ~3 M parameters, so the
model's arithmetic, not Python, dominates) with MPO, 4 samples per prompt, 16 new tokens, AdamW k = 2,
3 steps. Throughput = (sampled tokens + tokens through the fit's forward/backward passes) / seconds
of the run loop on rank 0 (run.json; loading and process start-up excluded). On 2 cores the fair
pairs are 1 process × 2 threads vs 2 processes × 1 thread.

    env PYTHONPATH=$PWD python -m pytest tests/benchmarks/test_bench_llm_scaling.py --benchmark-only -p no:cacheprovider -s
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .common import add_note, add_row

REPO = Path(__file__).resolve().parents[2]
TABLE_P = "LLM 3a. Data-parallel throughput on the CPU (small Llama, 16 prompts per step)"
TABLE_S = "LLM 3b. Seconds per step vs prompts per step (1 process, small Llama)"
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "red", "blue", "fast", "why", "is", "sky",
         "please", "thanks", "good"]
K = 2  # AdamW steps per realisation: each is one forward/backward over the step's responses


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from llm import tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("scaling")
    tok = tiny_tokenizer(WORDS)
    tiny_model(tok, n_layer=4, n_embd=256, n_head=4, seed=0, max_positions=128, init_std=0.1).save_pretrained(root / "m")
    tok.save_pretrained(root / "m")
    import random

    rng = random.Random(0)
    with open(root / "prompts.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"prompt": " ".join(rng.choice(WORDS) for _ in range(8))}) + "\n")
    return root


def _run(root, out, prompts_per_step, nproc, threads, steps=3):
    argv = ["--backend", "llm", "--model", str(root / "m"), "--prompts", str(root / "prompts.jsonl"),
            "--oracle", "annotators", "--algo", "mpo", "--samples", "4", "--max-new-tokens", "16", "--optimizer",
            "adamw", "--k", str(K), "--steps", str(steps), "--prompts-per-step", str(prompts_per_step),
            "--checkpoint-every", str(steps), "--out", str(out), "--figures", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
              if nproc > 1 else [sys.executable])
    p = subprocess.run([*launch, "-m", "experiments.train", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    rows = list(csv.DictReader(open(next(out.glob("train_*.csv")))))
    sampled = max(float(r["value"]) for r in rows if r["metric"] == "tokens")
    return run["seconds_this_process"], sampled, run


@pytest.mark.parametrize("nproc,threads", [(1, 1), (1, 2), (2, 1)])
def test_processes(benchmark, setup, tmp_path, nproc, threads):
    res = {}
    benchmark.pedantic(lambda: res.update(zip(("s", "tok", "run"), _run(setup, tmp_path / "o", 16, nproc, threads))),
                       rounds=1, iterations=1)
    trained = res["tok"] * K  # every sampled token goes through k forward/backward passes of the fit
    add_row(TABLE_P, processes=nproc, threads_per_process=threads, steps=3, seconds=res["s"],
            s_per_step=res["s"] / 3, sampled_tokens=res["tok"],
            tokens_per_s=(res["tok"] + trained) / res["s"])
    add_note(TABLE_P, "tokens_per_s = (sampled + trained) tokens / run-loop seconds on rank 0; trained = sampled × k "
                      f"(k = {K} AdamW passes); 4 samples × 16 new tokens per prompt.")


@pytest.mark.parametrize("prompts_per_step", [4, 8, 16, 32])
def test_prompts_per_step(benchmark, setup, tmp_path, prompts_per_step):
    res = {}
    benchmark.pedantic(lambda: res.update(zip(("s", "tok", "run"), _run(setup, tmp_path / "o", prompts_per_step, 1, 1))),
                       rounds=1, iterations=1)
    t = res["run"]["timings"]
    add_row(TABLE_S, prompts_per_step=prompts_per_step, s_per_step=res["s"] / 3,
            s_per_prompt=res["s"] / 3 / prompts_per_step, sampling_s=t["sampling"] / 3, oracle_s=t["oracle"] / 3,
            logprobs_s=t["logprobs"] / 3, fit_s=t["fit"] / 3, sampled_tokens_per_step=res["tok"] / 3)
    add_note(TABLE_S, "1 process, 1 thread; phases are per step (means over 3 steps).")
