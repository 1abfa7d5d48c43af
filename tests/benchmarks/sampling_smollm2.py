"""Sampling speed on SmolLM2-135M-Instruct: seconds per sequence by batch size, against generate().

Run (heavy: ~1.5 GiB, a few minutes; one at a time on a shared machine):

    flock /tmp/nashlab-heavy.lock env OMP_NUM_THREADS=2 python -m tests.benchmarks.sampling_smollm2

The example prompts (chat-templated) × 4 samples = 128 sequences, 32 new tokens, fp32 on CPU.
For each batch size: ``llm.sampling.sample`` over all 128 rows in chunks, then transformers'
``model.generate`` on the same chunks (do_sample, top_k=0, same end ids) for comparison. Peak
memory is the process RSS sampled every 5 ms during each run, above the RSS before it; the
process-wide peak (getrusage) is printed at the end.
"""
from __future__ import annotations

import argparse
import resource
import threading
import time

import torch

from llm import Policy, smollm2_path
from llm.data import load_prompts
from llm.policy import pad_batch
from llm.sampling import sample


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Highest RSS seen while the block runs, sampled by a thread."""

    def __enter__(self):
        self.base = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def with_generate(policy: Policy, prompts, max_new_tokens: int, batch_size: int, seed: int):
    """transformers' sampler on the same rows and chunks (left padding, same end ids)."""
    torch.manual_seed(seed)
    out = []
    ends = list(policy.eos_token_ids)
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo:lo + batch_size]
        ids, attn, _ = pad_batch(chunk, policy.pad_token_id, "left")
        with torch.no_grad():
            gen = policy.model.generate(input_ids=ids, attention_mask=attn, do_sample=True, top_k=0, top_p=1.0,
                                        temperature=1.0, max_new_tokens=max_new_tokens, eos_token_id=ends,
                                        pad_token_id=policy.pad_token_id)
        for row in gen[:, ids.shape[1]:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in ends), len(row))
            out.append(row[:cut])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="4,32,128")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--no-generate", action="store_true")
    ap.add_argument("--model", default=None, help="model path (default: SmolLM2's .gguf)")
    args = ap.parse_args()
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
    t0 = time.perf_counter()
    policy = Policy.from_pretrained(args.model or smollm2_path())
    print(f"load: {time.perf_counter() - t0:.1f} s, RSS {rss_mib():.0f} MiB, end ids {policy.eos_token_ids}")
    split = load_prompts("examples/prompts.jsonl", policy.tokenizer, max_new_tokens=args.max_new_tokens,
                         context_limit=policy.context_limit)
    rows = [p.ids for p in split.train for _ in range(args.samples)]
    print(f"{len(rows)} sequences; prompt tokens {min(map(len, rows))}..{max(map(len, rows))}")
    print("| sampler | batch | s/sequence | new tokens/s | mean length | peak RSS above base (MiB) |")
    print("|---|---|---|---|---|---|")
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        runs = [("llm.sample", lambda: sample(policy, rows, args.max_new_tokens, generator=0, batch_size=b))]
        if not args.no_generate:
            runs.append(("model.generate", lambda: with_generate(policy, rows, args.max_new_tokens, b, 0)))
        for name, run in runs:
            with PeakRSS() as mem:
                t = time.perf_counter()
                out = run()
                dt = time.perf_counter() - t
            tokens = sum(map(len, out))
            print(f"| {name} | {b} | {dt / len(out):.3f} | {tokens / dt:.0f} | {tokens / len(out):.1f} | "
                  f"{mem.peak - mem.base:.0f} |", flush=True)
    print(f"process peak RSS (getrusage): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
