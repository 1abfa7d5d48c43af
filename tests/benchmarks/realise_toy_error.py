"""One realised step against the exact log-linear step, in the enumerable world (no heavy model).

For the cyclic3 world (2 prompts; responses of 1 or 2 tokens over 3 content tokens) and an
MPO-like target ℓ* = 0.8·ℓ_anchor + 0.2·ℓ_magnet + 0.7·P_resp·π_anchor, every realiser fits the
live policy from the anchor; the error is KL(π* ‖ π_realised) (mean over prompts; "no move" is
KL(π* ‖ π_anchor)) and the largest probability error.

    python -m tests.benchmarks.realise_toy_error
"""
from __future__ import annotations

import time

import torch

import games
from llm import EnumerableWorld, sample
from llm import snapshots as S
from llm.realise import StepBatch, make_realiser
from tests.llm.test_realise import world_batch  # the one exact-step batch builder

COEF = (0.8, 0.2, 0.7)  # anchor, magnet, win rate


def setup(response_len, seed=0):
    world = EnumerableWorld(games.make("cyclic3").P, response_len=response_len, n_prompts=2)
    torch.manual_seed(seed)
    live = S.prepare(world.make_policy(seed=seed, init_std=0.5))
    return world, live, world.make_policy(seed=seed + 1, init_std=0.5)


def exact_batch(world, live, magnet, weights):
    """Every listed response; weights uniform (regression) or the anchor's probabilities (pg)."""
    return world_batch(world, live, magnet, *COEF, weights=weights)


def sampled_batch(world, anchor, magnet, exact, k, seed=0):
    """K samples per prompt from the anchor, uniform weights (what a real run has)."""
    rows_p = [x for x in world.prompts for _ in range(k)]
    ys = sample(anchor, rows_p, world.response_len, generator=seed)
    n = world.n_responses
    g = [float(exact.g[(r // k) * n + world.index_of(y)]) for r, y in enumerate(ys)]
    a, b, _ = COEF
    return StepBatch.build(rows_p, ys, [r // k for r in range(len(ys))], [1 / k] * len(ys), g,
                           [(a, anchor), (b, magnet)])


def errors(world, live, target_batch):
    t = torch.log_softmax(target_batch.target.view(len(world.prompts), -1), -1)
    got = torch.stack([world.exact_distribution(live, i).double() for i in range(len(world.prompts))])
    kl = float((t.exp() * (t - got.log())).sum(-1).mean())
    return kl, float((t.exp() - got).abs().max())


RUNS = [
    ("regression", dict(optimizer="lbfgs"), "uniform"),
    ("regression", dict(), "uniform"),
    ("regression", dict(lr=1e-3, steps=4), "uniform"),
    ("regression", dict(lr=1e-3, steps=300), "uniform"),
    ("regression", dict(lr=1e-3, steps=4), "sampled"),
    ("regression", dict(lr=1e-3, steps=300), "sampled"),
    ("pg", dict(variant="kl", baseline="mean", lr=1e-3, steps=4), "anchor"),
    ("pg", dict(variant="kl", baseline="mean", lr=1e-3, steps=300), "anchor"),
    ("pg", dict(variant="rt", baseline="mean", lr=1e-3, steps=300), "anchor"),
    ("pg", dict(variant="kl", lr=1e-3, steps=4), "sampled"),
    ("pg", dict(variant="rt", lr=1e-3, steps=4), "sampled"),
    ("pg", dict(variant="kl", lr=1e-3, steps=300), "sampled"),
    ("pg", dict(variant="rt", lr=1e-3, steps=300), "sampled"),
]


def main():
    torch.set_num_threads(1)
    rows = ["| L | realiser | options | rows | KL no move | KL after | max abs err | s |", "|" + "---|" * 8]
    for L in (1, 2):
        for kind, opts, rows_kind in RUNS:
            world, live, magnet = setup(L)
            anchor, exact = exact_batch(world, live, magnet, "uniform" if rows_kind != "anchor" else "anchor")
            batch = sampled_batch(world, anchor, magnet, exact, 16) if rows_kind == "sampled" else exact
            before, _ = errors(world, live, exact)
            t0 = time.perf_counter()
            make_realiser(kind, **opts).fit(live, batch)
            dt = time.perf_counter() - t0
            kl, err = errors(world, live, exact)
            shown = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
            what = {"uniform": "all listed, uniform", "anchor": "all listed, w = π_anchor",
                    "sampled": "16 samples/prompt"}[rows_kind]
            rows.append(f"| {L} | {kind} | {shown} | {what} | {before:.2e} | {kl:.2e} | {err:.1e} | {dt:.1f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
