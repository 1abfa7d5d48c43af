"""One training step in a FRESH process (run by test_bench_llm_step.py): ours (MPO through the LLM
backend, regression or policy-gradient realiser) or TRL's OnlineDPOTrainer, full fine-tuning or LoRA.

Equal work: the same 8 prompts, 2 completions sampled per prompt, at most ``--new-tokens`` new tokens,
one cheap rule-based judge (the shorter response wins: P = sigmoid(len(b) − len(a)) in characters), one
AdamW step over the 16 completions in one forward/backward pass (TRL: per_device_train_batch_size 8,
gradient_accumulation 1; ours: micro_batch 8 prompts, k 1). A warm-up step runs first (untimed);
the second step is timed. Prints one JSON line: seconds of the step, its phases, peak RSS (GiB,
``resource.getrusage``; includes the model's load), sampled tokens.

    python -m tests.benchmarks.bench_llm_step_worker --impl ours --realiser regression [--lora-r 8] [--grad-ckpt]
    python -m tests.benchmarks.bench_llm_step_worker --impl trl [--lora-r 8] [--grad-ckpt]
"""
from __future__ import annotations

import argparse
import json
import math
import time

from . import bench_llm_common as bc


def shorter_wins(prompts, a, b):
    import torch

    d = torch.tensor([len(y) - len(x) for x, y in zip(a, b)], dtype=torch.float64)
    return torch.sigmoid(d / 10.0)


def ours(args):
    import torch

    import algorithms
    from llm.backend import LLMBackend, LLMConfig
    from llm.policy import Policy

    policy = Policy.from_pretrained(str(bc.smollm2_dir()), dtype=torch.float32)
    prompts = bc.chat_ids(policy.tokenizer, bc.PROMPTS)
    cfg = LLMConfig(samples=2, max_new_tokens=args.new_tokens, realiser=args.realiser, optimizer="adamw", k=1,
                    lora_r=args.lora_r, realiser_options={"micro_batch": 8}, logprob_batch_size=16, seed=0,
                    gradient_checkpointing=args.grad_ckpt)  # as TRL's: off unless --grad-ckpt
    backend = LLMBackend(policy, shorter_wins, prompts=prompts, config=cfg)
    algo = algorithms.make("mpo").bind(backend)
    state = algo.init(backend, backend.initial_policy())
    state = algo.step(backend, state)  # warm-up
    t0, tok0, before = time.perf_counter(), backend.tokens, dict(vars(backend.timings))
    algo.step(backend, state)
    seconds = time.perf_counter() - t0
    phases = {k: v - before[k] for k, v in vars(backend.timings).items()}
    return {"seconds": seconds, "phases": phases, "tokens": backend.tokens - tok0}


def trl(args):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    path = str(bc.smollm2_dir())
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    chat = bool(getattr(tok, "chat_template", None))  # a tiny smoke-test model has no chat template
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}] if chat else p} for p in bc.PROMPTS] * 2)
    peft_config = None
    if args.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM")

    def reward(prompts, completions, **kw):  # the same rule, as a reward: shorter is better
        return [-len(c[0]["content"] if isinstance(c, list) else c) / 10.0 for c in completions]

    conf = OnlineDPOConfig(output_dir="/tmp/nashlab-bench-trl", per_device_train_batch_size=8,
                           gradient_accumulation_steps=1, max_steps=2, max_new_tokens=args.new_tokens,
                           temperature=1.0, top_k=0, top_p=1.0, learning_rate=5e-6 if not args.lora_r else 2e-4,
                           gradient_checkpointing=args.grad_ckpt, use_cpu=True, report_to="none", logging_steps=100,
                           save_strategy="no", bf16=False, fp16=False, dataloader_num_workers=0, seed=0,
                           lr_scheduler_type="constant")
    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            times.append(time.perf_counter())

        def on_step_end(self, a, s, c, **kw):
            times[-1] = time.perf_counter() - times[-1]

    trainer = OnlineDPOTrainer(model=model, reward_funcs=reward, args=conf, train_dataset=data, processing_class=tok,
                               peft_config=peft_config, callbacks=[Clock()])
    trainer.train()
    return {"seconds": times[-1], "phases": {}, "tokens": math.nan}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=("ours", "trl"), required=True)
    ap.add_argument("--realiser", default="regression", choices=("regression", "pg"))
    ap.add_argument("--lora-r", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--grad-ckpt", action="store_true")
    args = ap.parse_args()
    import torch

    out = (ours if args.impl == "ours" else trl)(args)
    out.update(impl=args.impl, realiser=args.realiser if args.impl == "ours" else "online-dpo",
               lora_r=args.lora_r, new_tokens=args.new_tokens, grad_ckpt=args.grad_ckpt,
               peak_rss_gib=bc.peak_rss_gib(), threads=torch.get_num_threads())
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
