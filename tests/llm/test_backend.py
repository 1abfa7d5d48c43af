"""The LLM backend realises the algorithms' steps: equivalence with the exact backend in the
enumerable world, MPO training, checkpoint/resume, and errors before any step."""
import numpy as np
import pytest
import torch

import algorithms
import games
from llm import EnumerableWorld
from llm.backend import LLMBackend, LLMConfig
from llm.train import LLMTrainConfig, train

EXACT = LLMConfig(pairs="all", win_rates="exact", k=60)


@pytest.fixture(scope="module")
def world():
    return EnumerableWorld(games.make("cyclic3").P, response_len=1)


def _pair(world, config=EXACT, init_std=0.5):
    """An LLM backend and the exact backend's game on the same induced response game and reference."""
    be = LLMBackend(world.make_policy(seed=0, init_std=init_std), world=world, config=config)
    ref = be.to_numpy(be.reference)
    return be, games.PreferenceGame(world.P_resp, reference=ref)


# Tolerance: log-probs are float32 (relative error ~1e-7) and LBFGS drives the regression loss to
# ~1e-13 (residual ~3e-7 in log space), so one realised step is within ~1e-6 of the exact softmax;
# errors compound mildly over steps. 2e-5 (probabilities) leaves a margin of ~10× over what we
# measured (≤ 8e-6 after 5 steps for every method).
@pytest.mark.parametrize("name", ["mmd", "mpo", "nash_md", "mirror_prox", "egpo", "inpo", "mnpo", "omwu", "mwu"])
def test_llm_tracks_exact_backend(world, name):
    be, game = _pair(world)
    algo = algorithms.make(name)
    r_llm = algorithms.run(algo, be, 4, average=False, record="all")
    r_ex = algorithms.run(algo, game, 4, average=False, record="all")
    # step by step, not just at the end
    np.testing.assert_allclose(r_llm.history["duality_gap"], r_ex.history["duality_gap"], atol=4e-5)
    np.testing.assert_allclose(r_llm.policy, r_ex.policy, atol=2e-5)
    assert be.last_stats["loss"] < 1e-9
    # the policy actually moved: the comparison is not trivially between two copies of π_0
    assert np.abs(r_ex.policy - be.to_numpy(be.reference)).max() > 1e-2


def test_one_step_equals_closed_form_mmd(world):
    """Independent check of one MMD realisation against the hand-written closed form."""
    be, game = _pair(world)
    pi0 = be.to_numpy(be.reference)
    algo = algorithms.MMD(eta=0.7, alpha=0.3)
    r = algorithms.run(algo, be, 1, average=False)
    g = world.P_resp @ pi0
    expected = (pi0 * pi0 ** (0.7 * 0.3) * np.exp(0.7 * g)) ** (1 / (1 + 0.21))
    np.testing.assert_allclose(r.policy, expected / expected.sum(), atol=2e-6)


def test_sampled_mpo_cuts_gap_4x(world):
    """MPO with sampled pairs and oracle queries (1024 fresh opponent samples, the world's default
    in train), default steps, on the cyclic3 world."""
    cfg = LLMTrainConfig()
    be = LLMBackend(world.make_policy(seed=cfg.seed), world=world, config=LLMConfig(opponents=1024))
    r = algorithms.run(algorithms.MPO(), be, cfg.steps, average=False, record=[0, cfg.steps])
    g0, g1 = r.history["duality_gap"]
    assert g1 <= g0 / 4, (g0, g1)


def test_checkpoint_resume_identical(tmp_path):
    """Stopped after 8 steps and re-issued with --resume: bit-identical to 12 uninterrupted steps,
    history included (run()'s one checkpoint mechanism, the backend's RNG in it)."""
    full = tmp_path / "full"
    rows_full, _, r_full, b_full = train(LLMTrainConfig(steps=12, out=str(full), checkpoint_every=4))
    part = tmp_path / "part"
    train(LLMTrainConfig(steps=8, out=str(part), checkpoint_every=4))
    rows, _, r_res, b_res = train(LLMTrainConfig(steps=12, out=str(part), checkpoint_every=4, resume=True))
    np.testing.assert_array_equal(b_full.to_numpy(r_full.state.algo_state.policy),
                                  b_res.to_numpy(r_res.state.algo_state.policy))
    assert r_full.state.queries == r_res.state.queries
    timing = ("seconds", "sampling_s", "oracle_s", "logprobs_s", "fit_s")
    assert [repr(r) for r in rows if r[6] not in timing] == [repr(r) for r in rows_full if r[6] not in timing]
    assert [r[4] for r in rows if r[6] == "duality_gap"] == list(range(13))


def test_existing_checkpoint_not_overwritten(tmp_path):
    train(LLMTrainConfig(steps=2, out=str(tmp_path), checkpoint_every=2))
    before = (tmp_path / "checkpoint.pkl").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train(LLMTrainConfig(steps=4, out=str(tmp_path)))
    assert (tmp_path / "checkpoint.pkl").read_bytes() == before


def test_bad_inputs_fail_before_any_step(world, tmp_path):
    pol = world.make_policy(seed=0)
    def broken(prompts, a, b):  # P(a≻b) = P(b≻a) = 0.7
        return torch.full((len(a),), 0.7, dtype=torch.float64)

    with pytest.raises(ValueError, match="antisymmetr"):
        LLMBackend(pol, oracle=broken, world=world)
    with pytest.raises(ValueError, match="context"):
        LLMBackend(pol, world=world, prompts=[[1] * 70])
    with pytest.raises(FileNotFoundError):
        train(LLMTrainConfig(model=str(tmp_path / "nope"), out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="unknown algorithm"):
        train(LLMTrainConfig(algo="nope", out=str(tmp_path / "o2")))
    assert not (tmp_path / "o2" / "checkpoint.pkl").exists()
    with pytest.raises(ValueError, match="pairs"):
        LLMConfig(pairs="some")
    with pytest.raises(ValueError, match="EnumerableWorld"):
        LLMBackend(pol, oracle=world.oracle(), prompts=world.prompts, config=EXACT)


def test_model_directory_roundtrip(world, tmp_path):
    """A saved world model loads through from_pretrained and trains."""
    world.make_policy(seed=3).save_pretrained(tmp_path / "m")
    rows, *_ = train(LLMTrainConfig(model=str(tmp_path / "m"), steps=2, out=str(tmp_path / "o"), checkpoint_every=2))
    assert rows and rows[0][6] == "duality_gap"


def test_train_script_llm_backend(tmp_path, capsys):
    """`experiments/train.py --backend llm` writes the same tidy rows as the exact backend."""
    from experiments import common, train as train_script

    train_script.main(["--backend", "llm", "--quick", "--out", str(tmp_path), "--figures", str(tmp_path)])
    rows = common.read_csv(tmp_path / "train_mpo_cyclic3_s0.csv")
    assert {"duality_gap", "regularized_gap", "loss", "kl_ref", "win_rate_ref", "tokens", "seconds"} <= {
        r["metric"] for r in rows}
    gaps = rows.where(metric="duality_gap")
    assert [r["iteration"] for r in gaps] == list(range(31))
    assert "s per algorithm step" in capsys.readouterr().out
    assert (tmp_path / "final" / "config.json").exists()


@pytest.mark.parametrize("name", ["mmd", "mpo", "inpo"])
def test_llm_tracks_exact_backend_two_token_responses(name):
    """Responses of 2 tokens (9 of them): the LM's sequence log-probs are sums over tokens."""
    w2 = EnumerableWorld(games.make("cyclic3").P, response_len=2)
    be, game = _pair(w2)
    r_llm = algorithms.run(algorithms.make(name), be, 3, record="all")
    r_ex = algorithms.run(algorithms.make(name), game, 3, record="all", average=False)
    np.testing.assert_allclose(r_llm.policy, r_ex.policy, atol=2e-5)
    assert np.abs(r_ex.policy - be.to_numpy(be.reference)).max() > 1e-2


def test_metrics_average_over_prompts():
    w = EnumerableWorld(games.make("cyclic3").P, response_len=1, n_prompts=2)
    be = LLMBackend(w.make_policy(seed=0, init_std=0.5), world=w, config=EXACT)
    per = [w.duality_gap(be.reference, prompt=i) for i in range(2)]
    assert abs(per[0] - per[1]) > 1e-4  # the prompts differ, so averaging is visible
    # (the world sums float32 probabilities as they are; the backend renormalises them in float64)
    assert be.duality_gap(be.reference) == pytest.approx(np.mean(per), abs=1e-6)


def test_omwu_reuses_the_previous_win_rates(world):
    """OMWU's g(π_{t−1}) is the previous step's estimate: no second round of oracle queries."""
    counts = {}
    for name in ("mwu", "omwu"):
        be = LLMBackend(world.make_policy(seed=0), world=world, config=LLMConfig(samples=8, opponents=64))
        r = algorithms.run(algorithms.make(name), be, 5, record="all")
        counts[name] = np.diff(r.history["queries"])
    np.testing.assert_array_equal(counts["omwu"], counts["mwu"])


def test_magnet_as_probabilities_is_refused_on_an_lm(world):
    be = LLMBackend(world.make_policy(seed=0), world=world, config=EXACT)
    with pytest.raises(ValueError, match="llm.Policy"):
        algorithms.run(algorithms.MMD(magnet=[0.2, 0.3, 0.5]), be, 1)
    # a Policy is a valid magnet
    r = algorithms.run(algorithms.MMD(magnet=world.make_policy(seed=5)), be, 1)
    assert np.isfinite(r.history["duality_gap"]).all()
