"""Data-parallel training (DESIGN §9): 2 processes on the CPU (gloo over loopback) give the 1-process run.

The same command — ``python -m experiments.train --backend llm`` on a tiny model and 4 text prompts —
runs once in this process and under ``torchrun --standalone --nproc_per_node 2`` or ``accelerate launch
--config_file examples/accelerate/cpu_gloo.yaml`` (a free port every time; OMP_NUM_THREADS=1 per rank). Each rank samples, judges and fits its 2 prompts; DDP
sums the gradients. Losses, queries, sampled tokens, the KL/win-rate estimates and the final
weights must agree, and a checkpoint written by 2 processes must resume in 1 process to the same
result. Bad launches (a world size that does not divide the prompts, a rendezvous nobody answers)
fail before anything is written, with a one-line message naming what is wrong.

Tolerance: both runs do the same float32 arithmetic except (a) DDP sums the two ranks' gradients
where one process accumulates two micro-batches (another summation order: relative error ~1e-7),
and (b) sampling and log-prob batches are padded to different widths (masked positions: only
rounding changes). With SGD (update = lr × gradient) the final weights then differ by a few float32
ulps (measured: 2.4e-7 on weights of size ~1, which 6 SGD steps moved by 1.5e-2); we allow 1e-5
(40× that, 1500× below the movement). The losses are weighted variances of log π − target over a
prompt's responses, differences of float32 sums of size ~10–30 whose rounding (~3e-6 each) the
subtraction magnifies: measured relative differences up to 1.6e-5; we allow 1e-4. A real mistake — a missing
all-reduce, a loss normalised by the local instead of the global number of prompts, ranks sampling
the same prompts or the same random numbers — changes the weights by ~1e-2 and the samples too.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from experiments import train as train_script
from llm import distributed

REPO = Path(__file__).resolve().parents[2]
# the fixtures model_dir and prompts_file come from tests/llm/conftest.py
WEIGHT_ATOL = 1e-5
LOSS_RTOL = 1e-4
METRICS = ("loss", "tokens", "kl_ref", "win_rate_ref")  # each row also carries the queries column


def _args(model_dir, prompts_file, out, steps, *extra):
    # SGD: the update is linear in the gradient, so the weights compare the gradients themselves (AdamW
    # divides by √v: it would hide a wrongly scaled gradient and amplify rounding in near-zero ones)
    return ["--backend", "llm", "--model", str(model_dir), "--prompts", str(prompts_file), "--oracle", "annotators",
            "--algo", "mpo", "--samples", "3", "--max-new-tokens", "4", "--optimizer", "sgd", "--lr", "0.05",
            "--k", "2", "--steps", str(steps), "--checkpoint-every", "1", "--out", str(out), "--figures", str(out),
            *map(str, extra)]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO),
               NASHLAB_DIST_TIMEOUT="60")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(argv, nproc=2, timeout=240):
    """``torchrun --standalone`` (a free port chosen by the launcher) running experiments.train."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "experiments.train", *argv]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _accelerate(argv, timeout=240):
    """``accelerate launch`` with the repository's CPU config (2 processes, gloo, a free port)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "examples" / "accelerate" / "cpu_gloo.yaml"), "-m", "experiments.train", *argv]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _one_process(argv):
    train_script.main(argv)


def _results(out):
    """metric -> list of values by iteration, from the run's tidy CSV."""
    import csv

    files = list(Path(out).glob("train_*.csv"))
    assert len(files) == 1, files
    rows = list(csv.DictReader(open(files[0])))
    hist = {}
    for r in rows:
        hist.setdefault(r["metric"], []).append((int(r["iteration"]), float(r["value"]), int(r["queries"])))
    return {m: sorted(v) for m, v in hist.items()}


def _final(out):
    return load_file(str(Path(out) / "final" / "model.safetensors"))


def _assert_same_run(a, b):
    ra, rb = _results(a), _results(b)
    for m in METRICS:
        assert m in ra and m in rb, (m, sorted(ra))
        ia, va, qa = zip(*ra[m])
        ib, vb, qb = zip(*rb[m])
        assert ia == ib and qa == qb, (m, ia, ib, qa, qb)
        np.testing.assert_allclose(vb, va, rtol=LOSS_RTOL, atol=1e-7, err_msg=m)
    wa, wb = _final(a), _final(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= WEIGHT_ATOL, worst
    moved = max(float((wa[k] - _initial[k]).abs().max()) for k in wa) if _initial else 1.0
    assert moved > 100 * WEIGHT_ATOL, "training must move the weights far more than the tolerance"


_initial: dict = {}


@pytest.fixture(scope="module")
def one_process_run(model_dir, prompts_file, tmp_path_factory):
    _initial.update(load_file(str(Path(model_dir) / "model.safetensors")))
    out = tmp_path_factory.mktemp("one")
    _one_process(_args(model_dir, prompts_file, out, 3))
    return out


def test_two_processes_give_the_one_process_run(model_dir, prompts_file, one_process_run, tmp_path):
    out = tmp_path / "two"
    p = _torchrun(_args(model_dir, prompts_file, out, 3))
    assert p.returncode == 0, p.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 2
    assert not list(out.glob("*.tmp"))  # one writer: no half-written files left over
    _assert_same_run(one_process_run, out)


def test_lora_policy_gradient_two_processes_give_one(model_dir, prompts_file, tmp_path):
    """LoRA (the adapter is what DDP all-reduces) with the policy-gradient realiser."""
    extra = ("--lora-r", "4", "--realiser", "pg", "--save-adapter")
    one, two = tmp_path / "one", tmp_path / "two"
    _one_process(_args(model_dir, prompts_file, one, 2, *extra))
    p = _torchrun(_args(model_dir, prompts_file, two, 2, *extra))
    assert p.returncode == 0, p.stderr[-3000:]
    ra, rb = _results(one), _results(two)
    for m in METRICS:
        np.testing.assert_allclose([v for _, v, _ in rb[m]], [v for _, v, _ in ra[m]], rtol=LOSS_RTOL, atol=1e-7,
                                   err_msg=m)
    wa = load_file(str(one / "final" / "adapter_model.safetensors"))
    wb = load_file(str(two / "final" / "adapter_model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= WEIGHT_ATOL
    assert max(float(wa[k].abs().max()) for k in wa if "lora_B" in k) > 100 * WEIGHT_ATOL  # B starts at 0


def test_checkpoint_of_two_processes_resumes_in_one(model_dir, prompts_file, one_process_run, tmp_path):
    out = tmp_path / "resumed"
    p = _accelerate(_args(model_dir, prompts_file, out, 2))  # this time through accelerate's launcher
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    # the same command, one process, to a total of 3 steps
    _one_process(_args(model_dir, prompts_file, out, 3, "--resume"))
    _assert_same_run(one_process_run, out)


def test_world_size_that_does_not_divide_the_prompts(model_dir, prompts_file, tmp_path):
    out = tmp_path / "bad"
    p = _torchrun(_args(model_dir, prompts_file, out, 2, "--prompts-per-step", "3"))
    assert p.returncode != 0
    assert "prompts per step" in p.stderr and "multiple of 2" in p.stderr, p.stderr[-2000:]
    assert not out.exists() or not any(out.rglob("*"))  # nothing written (the CLI may make OUT itself)


def test_unreachable_rendezvous(model_dir, prompts_file, tmp_path):
    out = tmp_path / "lonely"
    env = dict(_env(), WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(distributed.free_port()), NASHLAB_DIST_TIMEOUT="3")
    p = subprocess.run([sys.executable, "-m", "experiments.train", *_args(model_dir, prompts_file, out, 2)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    # torch's C++ layer logs the socket timeout itself; ours is the last line, one line, no traceback
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("train: MASTER_ADDR:MASTER_PORT = ") and "within 3 s" in last, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not out.exists() or not any(out.rglob("*"))


def test_single_process_is_the_identity():
    par = distributed.SINGLE
    assert (par.rank, par.world_size, par.is_main, par.accelerator) == (0, 1, True, None)
    assert par.shard([3, 1, 2]) == [3, 1, 2]
    assert par.sum({"a": 2}) == {"a": 2.0}
    assert par.mean({"a": 2.0}, weight=3) == {"a": 2.0}


def test_shards_and_row_seeds():
    class Fake:
        num_processes, process_index = 2, 1

    par = distributed.Parallel(Fake())
    assert par.shard([5, 6, 7, 8]) == [7, 8]
    with pytest.raises(ValueError, match="multiple of 2"):
        par.shard([1, 2, 3])
    g1 = par.row_generators(0, "responses", 4, [(1, 0), (1, 1)])
    g2 = par.row_generators(0, "responses", 4, [(1, 1)])
    import torch

    a = [torch.rand(3, generator=g).tolist() for g in g1]
    b = torch.rand(3, generator=g2[0]).tolist()
    assert a[1] == b and a[0] != b  # a row's stream depends on its coordinates only


def test_per_row_draws_follow_the_distribution():
    """draw_rows (the per-row sampler behind rank-invariant sampling) samples probs exactly and never
    a zero-probability token: 20000 draws per row, χ²-style bound on every cell (5 σ)."""
    import torch

    from llm.sampling import draw_rows

    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2], [0.1, 0.0, 0.9, 0.0, 0.0]], dtype=torch.float32)
    gens = distributed.Parallel.row_generators(7, "responses", 0, [(0, 0), (1, 0)])
    n = 20000
    counts = torch.zeros_like(probs, dtype=torch.float64)
    for _ in range(n):
        tok = draw_rows(probs, gens)
        counts[torch.arange(2), tok] += 1
    assert (counts[probs == 0] == 0).all()
    freq = counts / n
    sigma = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert ((freq - probs.double()).abs() <= 5 * sigma + 1e-12).all(), freq
