"""One training step on SmolLM2-135M-Instruct: MPO (regression and policy-gradient realisers) vs TRL's
OnlineDPOTrainer, full fine-tuning and LoRA r = 8, at equal work (see bench_llm_step_worker.py):
8 prompts × 2 sampled completions × ≤ 32 new tokens, one judge rule, one AdamW step over the 16
completions. Each configuration runs in a fresh subprocess (peak RSS per configuration).

    flock /tmp/nashlab-heavy.lock env OMP_NUM_THREADS=1 PYTHONPATH=$PWD /work/trlenv/bin/python -m pytest \
        tests/benchmarks/test_bench_llm_step.py --benchmark-only -p no:cacheprovider -s
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import bench_llm_common as bc
from .common import add_note, add_row

TABLE = "LLM 2. One training step, SmolLM2-135M-Instruct: MPO vs TRL OnlineDPOTrainer (equal work)"
REPO = Path(__file__).resolve().parents[2]
CONFIGS = [("ours", "regression", None), ("ours", "pg", None), ("trl", None, None),
           ("ours", "regression", 8), ("ours", "pg", 8), ("trl", None, 8)]


def run_config(impl, realiser, lora_r, new_tokens=32, timeout=3600):
    cmd = [sys.executable, "-m", "tests.benchmarks.bench_llm_step_worker", "--impl", impl, "--new-tokens",
           str(new_tokens)]
    if realiser:
        cmd += ["--realiser", realiser]
    if lora_r:
        cmd += ["--lora-r", str(lora_r)]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("impl,realiser,lora_r", CONFIGS, ids=[f"{i}-{r or 'dpo'}-{'lora' if l else 'full'}"
                                                               for i, r, l in CONFIGS])
def test_training_step(benchmark, impl, realiser, lora_r):
    if impl == "trl":
        bc.require_trl()
    bc.smollm2_dir()
    res = {}
    benchmark.pedantic(lambda: res.update(run_config(impl, realiser, lora_r)), rounds=1, iterations=1)
    ph = res["phases"]
    add_row(TABLE, impl=impl, method=res["realiser"], tuning=f"LoRA r={lora_r}" if lora_r else "full",
            step_s=res["seconds"], sampling_s=ph.get("sampling", ""), oracle_s=ph.get("oracle", ""),
            logprobs_s=ph.get("logprobs", ""), fit_s=ph.get("fit", ""), peak_rss_gib=res["peak_rss_gib"],
            threads=res["threads"])
    add_note(TABLE, "fresh process per row; second step timed (first is a warm-up); peak RSS includes loading the "
                    "model; TRL with gradient checkpointing off (its fastest setting).")
