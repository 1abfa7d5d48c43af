"""algorithms.run: history, record schedules, query counts, stopping, resuming, checkpoints, averages."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

import algorithms
import games
from tests.conftest import INIT3, kl_np

G = games.make("cyclic3")

ALL = {
    "mpo": algorithms.MPO(refresh=3),
    "mpo_adaptive": algorithms.MPO(refresh="adaptive"),
    "mmd": algorithms.MMD(),
    "nash_md": algorithms.NashMD(),
    "nash_md_constant": algorithms.NashMD(eta=1.0),
    "mirror_prox": algorithms.MirrorProx(),
    "egpo": algorithms.EGPO(),
    "inpo": algorithms.INPO(),
    "mnpo": algorithms.MNPO(weights=(0.5, 0.3, 0.2)),
    "mwu": algorithms.MWU(),
    "omwu": algorithms.OMWU(),
}


def collect(store):
    """A callback that keeps every recorded policy (as numpy)."""
    def cb(t, state, metrics):
        store.append((t, np.exp(np.asarray(state.algo_state.policy.logp[0]))))
    return cb


# -- history ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_history_keys_and_shapes(name):
    r = algorithms.run(ALL[name], G, 40, init=INIT3)
    regularised = name not in ("mwu", "omwu")
    want = {"iteration", "queries", "duality_gap", "average_gap"} | ({"regularized_gap"} if regularised else set())
    assert set(r.history) == want
    for k, v in r.history.items():
        if k != "average_gap":  # see test_average_gap_is_aligned_with_iteration
            assert v.shape == (41,), k
    np.testing.assert_array_equal(r.history["iteration"], np.arange(41))
    r = algorithms.run(ALL[name], G, 40, init=INIT3, average=False)
    assert "average_gap" not in r.history


def test_batched_history_shapes():
    g = games.make("random", n=5, seed=0, batch=4)
    r = algorithms.run(algorithms.MMD(), g, 30, record=10)
    assert r.history["iteration"].shape == (4,) and r.history["queries"].shape == (4,)
    for k in ("duality_gap", "regularized_gap"):
        assert r.history[k].shape == (4, 4)
    assert r.history["average_gap"].shape[1:] == (4,)
    assert r.policy.shape == (4, 5) and r.average_policy.shape == (4, 5)
    # each game's column equals a run of that game alone
    solo = algorithms.run(algorithms.MMD(), g[2], 30, record=10)
    np.testing.assert_allclose(r.history["duality_gap"][:, 2], solo.history["duality_gap"], rtol=0, atol=1e-14)


def test_average_gap_is_aligned_with_iteration():
    r = algorithms.run(algorithms.MWU(), G, 10, init=INIT3)
    assert len(r.history["average_gap"]) == len(r.history["iteration"])


def test_average_gap_rows_are_the_gaps_of_the_running_means():
    seen = []
    r = algorithms.run(algorithms.MWU(), G, 10, init=INIT3, callbacks=[collect(seen)])
    means = np.cumsum([p for t, p in seen[1:]], axis=0) / np.arange(1, 11)[:, None]
    np.testing.assert_allclose(r.history["average_gap"][-10:], [2 * (G.P @ m).max() - 1 for m in means], atol=1e-14)


def test_recorded_metrics_are_the_metrics_of_the_recorded_policies():
    seen = []
    r = algorithms.run(algorithms.MMD(alpha=0.1), G, 30, init=INIT3, callbacks=[collect(seen)])
    alpha = r.algorithm.alpha
    mu = np.full(3, 1 / 3)
    for i, (t, pi) in enumerate(seen):
        assert r.history["iteration"][i] == t
        assert r.history["duality_gap"][i] == pytest.approx(2 * (G.P @ pi).max() - 1, abs=1e-14)
        reg = 2 * (alpha * logsumexp(np.log(mu) + G.P @ pi / alpha) + alpha * kl_np(pi, mu)) - 1
        assert r.history["regularized_gap"][i] == pytest.approx(reg, abs=1e-14)


def test_mpo_records_the_inner_gap_with_respect_to_its_current_magnet():
    rows = []

    def cb(t, state, m):
        rows.append((np.exp(state.algo_state.policy.logp[0]), np.exp(state.algo_state.magnet.logp[0]), m["regularized_gap"]))

    r = algorithms.run(algorithms.MPO(refresh=4), G, 20, init=INIT3, callbacks=[cb])
    a = r.algorithm.alpha
    for pi, rho, got in rows:
        assert got == pytest.approx(2 * (a * logsumexp(np.log(rho) + G.P @ pi / a) + a * kl_np(pi, rho)) - 1, abs=1e-14)


# -- record schedules -------------------------------------------------------------------------------------
def test_record_none_is_every_step_up_to_1000():
    np.testing.assert_array_equal(algorithms.record_points(1000), np.arange(1001))
    r = algorithms.run(algorithms.MWU(), G, 1000, average=False)
    np.testing.assert_array_equal(r.history["iteration"], np.arange(1001))


@pytest.mark.parametrize("steps", [1001, 5000, 1_000_000])
def test_record_none_is_log_spaced_above_1000(steps):
    pts = algorithms.record_points(steps)
    assert pts[0] == 0 and pts[-1] == steps
    assert np.all(np.diff(pts) > 0) and 200 <= len(pts) <= 402  # ~400 minus rounding duplicates
    # log-spaced: the gaps grow, the ratio between consecutive points (away from 0) stays bounded
    late = pts[pts >= 100]
    assert np.max(late[1:] / late[:-1]) < 1.1
    assert np.diff(pts)[-1] > 10 * np.diff(pts)[0]


def test_record_schedules():
    np.testing.assert_array_equal(algorithms.record_points(10, "all"), np.arange(11))
    np.testing.assert_array_equal(algorithms.record_points(50, 7), [0, 7, 14, 21, 28, 35, 42, 49, 50])
    np.testing.assert_array_equal(algorithms.record_points(100, [3, 10, 10, 99, 500]), [0, 3, 10, 99, 100])
    r = algorithms.run(algorithms.MWU(), G, 50, record=7)
    np.testing.assert_array_equal(r.history["iteration"], [0, 7, 14, 21, 28, 35, 42, 49, 50])
    r = algorithms.run(algorithms.MWU(), G, 100, record=[3, 10, 99])
    np.testing.assert_array_equal(r.history["iteration"], [0, 3, 10, 99, 100])
    r = algorithms.run(algorithms.MWU(), G, 1500, record="all", average=False)
    np.testing.assert_array_equal(r.history["iteration"], np.arange(1501))


# -- queries -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_queries_per_step(name):
    r = algorithms.run(ALL[name], G, 25, record=5)
    per = 2 if name in ("mirror_prox", "egpo") else 1
    assert r.algorithm.queries_per_step == per
    np.testing.assert_array_equal(r.history["queries"], per * r.history["iteration"])
    assert r.backend.queries == 25 * per  # metrics and averaging cost no oracle queries


# -- stopping ------------------------------------------------------------------------------------------------
def test_until_stops_at_the_first_iterate_below_the_threshold():
    r = algorithms.run(algorithms.MPO(), G, 100_000, init=INIT3, until=1e-6, record=1000)
    T = r.steps
    assert T < 100_000
    assert r.history["iteration"][-1] == T and r.history["duality_gap"][-1] <= 1e-6
    before = algorithms.run(algorithms.MPO(), G, T - 1, init=INIT3, record=[T - 1])
    assert before.history["duality_gap"][-1] > 1e-6


def test_until_waits_for_every_game_of_a_batch():
    # three random games MPO solves at different times (≈1600, 2300, 2500 steps)
    g = games.PreferenceGame(np.stack([games.make("random", n=10, seed=s).P for s in (7, 2, 22)]))
    r = algorithms.run(algorithms.MPO(), g, 10_000, until=1e-8, record=1000, average=False)
    assert r.steps < 10_000 and np.all(r.history["duality_gap"][-1] <= 1e-8)
    prev = algorithms.run(algorithms.MPO(), g, r.steps - 1, record=[r.steps - 1], average=False)
    gaps = prev.history["duality_gap"][-1]
    assert np.any(gaps > 1e-8) and np.any(gaps <= 1e-8)  # one game was done earlier, and waited


@pytest.mark.parametrize("record,stop_at", [("all", 37), (10, 40)])
def test_callback_can_stop_the_run(record, stop_at):
    calls = []

    def cb(t, state, metrics):
        calls.append(t)
        assert set(metrics) >= {"duality_gap"}
        return t >= 37

    r = algorithms.run(algorithms.MWU(), G, 100, record=record, callbacks=[cb])
    assert r.steps == stop_at and calls[-1] == stop_at
    assert r.history["iteration"][-1] == stop_at


# -- resuming ------------------------------------------------------------------------------------------------
def final(r):
    return np.concatenate([np.ravel(x) for x in r.state.algo_state.policy.logp])


@pytest.mark.parametrize("name", ALL)
def test_resume_from_state_is_identical_to_an_uninterrupted_run(name):
    full = algorithms.run(ALL[name], G, 50, init=INIT3, record=[50])
    part = algorithms.run(ALL[name], G, 20, init=INIT3, record=[20])
    rest = algorithms.run(part.algorithm, G, 30, state=part.state, record=[50])
    assert rest.steps == 50
    np.testing.assert_array_equal(final(rest), final(full))
    np.testing.assert_array_equal(rest.average_policy, full.average_policy)
    assert rest.history["queries"][-1] == full.history["queries"][-1]
    np.testing.assert_array_equal(rest.history["iteration"], [20, 50])


def test_resume_from_state_with_the_same_unbound_algorithm():
    full = algorithms.run(algorithms.MWU(), G, 50, init=INIT3, record=[50])
    part = algorithms.run(algorithms.MWU(), G, 20, init=INIT3, record=[20])
    rest = algorithms.run(algorithms.MWU(), G, 30, state=part.state, record=[50])
    np.testing.assert_array_equal(final(rest), final(full))


@pytest.mark.parametrize("name", ["mpo", "mpo_adaptive", "nash_md", "mnpo", "omwu", "mirror_prox"])
def test_checkpoint_and_resume_is_identical_to_an_uninterrupted_run(name, tmp_path):
    path = str(tmp_path / "run.pkl")
    full = algorithms.run(ALL[name], G, 50, init=INIT3, record=[50])

    class Crash(Exception):
        pass

    def crash(t, state, m):
        if t == 33:
            raise Crash

    with pytest.raises(Crash):
        algorithms.run(ALL[name], G, 50, init=INIT3, record="all", callbacks=[crash], checkpoint=path, checkpoint_every=10)
    state = algorithms.load_checkpoint(path)["state"]
    assert state.t == 30  # the last multiple of checkpoint_every before the crash
    # resume=True re-issues the same run: it continues from the file to a total of `steps`
    rest = algorithms.run(ALL[name], G, 50, init=INIT3, record="all", checkpoint=path, checkpoint_every=10, resume=True)
    assert rest.steps == 50
    np.testing.assert_array_equal(final(rest), final(full))
    np.testing.assert_array_equal(rest.average_policy, full.average_policy)
    np.testing.assert_array_equal(rest.history["iteration"], np.arange(51))  # the records before the crash too
    assert algorithms.load_checkpoint(path)["state"].t == 50  # and the file is up to date at the end


def test_resume_without_a_checkpoint_file_is_an_error(tmp_path):
    path = str(tmp_path / "new.pkl")
    with pytest.raises(FileNotFoundError, match="new.pkl"):
        algorithms.run(algorithms.MPO(), G, 30, init=INIT3, checkpoint=path, resume=True)
    assert not (tmp_path / "new.pkl").exists()


# -- the average iterate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mwu", "omwu", "mirror_prox", "mpo"])
def test_average_policy_is_the_mean_of_pi_1_to_pi_T(name):
    T = 40
    be = games.ExactBackend(G)
    algo = ALL[name].bind(be)
    s = algo.init(be, be.from_probs(INIT3))
    iterates = []
    for _ in range(T):
        s = algo.step(be, s)
        iterates.append(be.to_numpy(s.policy))
    r = algorithms.run(ALL[name], G, T, init=INIT3, record="all")
    mean = np.mean(iterates, axis=0)  # π_1..π_T: the start π_0 is not included
    np.testing.assert_allclose(r.average_policy, mean, rtol=0, atol=1e-14)
    assert not np.allclose(r.average_policy, np.mean([INIT3] + iterates, axis=0), atol=1e-6)
    np.testing.assert_allclose(r.history["average_gap"][-1], 2 * (G.P @ mean).max() - 1, rtol=0, atol=1e-14)


def test_average_policy_of_a_zero_sum_game():
    A = np.random.default_rng(0).normal(size=(3, 4))
    g = games.ZeroSumGame(A)
    xs, ys = [], []

    def cb(t, state, m):
        if t > 0:
            xs.append(np.exp(state.algo_state.policy.logp[0]))
            ys.append(np.exp(state.algo_state.policy.logp[1]))

    r = algorithms.run(algorithms.MWU(), g, 30, record="all", callbacks=[cb])
    x, y = r.average_policy
    np.testing.assert_allclose(x, np.mean(xs, 0), atol=1e-14)
    np.testing.assert_allclose(y, np.mean(ys, 0), atol=1e-14)
    assert r.history["average_gap"][-1] == pytest.approx((A @ y).max() - (x @ A).min(), abs=1e-14)


def test_no_average_means_average_policy_is_the_last_iterate():
    r = algorithms.run(algorithms.MWU(), G, 10, average=False)
    np.testing.assert_array_equal(r.average_policy, r.policy)


def test_zero_steps():
    r = algorithms.run(algorithms.MWU(), G, 0, init=INIT3)
    np.testing.assert_allclose(r.policy, INIT3, atol=1e-15)
    np.testing.assert_array_equal(r.history["iteration"], [0])


# -- one checkpoint mechanism: kill, re-issue the same call, get the uninterrupted run ------------------------
def _histories_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _exact(kind):
    if kind == "torch":
        pytest.importorskip("torch")
    return lambda: games.ExactBackend(games.make("random", n=6, seed=3, batch=3), backend=kind)


def _llm():
    pytest.importorskip("transformers")
    from llm import EnumerableWorld, LLMBackend
    from llm.backend import LLMConfig

    def make():
        world = EnumerableWorld(games.make("cyclic3").P, response_len=1)
        return LLMBackend(world.make_policy(seed=0), world=world, config=LLMConfig(k=5, samples=4, opponents=16))
    return make


BACKENDS = {"numpy": lambda: _exact("numpy"), "torch": lambda: _exact("torch"), "llm": _llm}


@pytest.fixture
def one_thread():
    """Tiny models: torch's thread pool only spins against the other processes of a busy machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("algo", [algorithms.MPO(refresh=3), algorithms.OMWU(), algorithms.MirrorProx()],
                         ids=lambda a: a.name)
def test_kill_and_reissue_is_bit_identical_to_an_uninterrupted_run(kind, algo, tmp_path, one_thread):
    make = BACKENDS[kind]()
    kw = {} if kind != "llm" else {"average": False}
    full = algorithms.run(algo, make(), 4, **kw)
    path = tmp_path / "run.ckpt"
    part = algorithms.run(algo, make(), 2, checkpoint=path, **kw)  # "killed" after 2 of 4 steps
    assert part.steps == 2 and algorithms.load_checkpoint(path)["state"].t == 2
    rest = algorithms.run(algo, make(), 4, checkpoint=path, resume=True, **kw)  # the same call, re-issued
    assert rest.steps == 4
    np.testing.assert_array_equal(final(rest), final(full)) if kind != "llm" else None
    np.testing.assert_array_equal(np.asarray(rest.policy), np.asarray(full.policy))
    _histories_equal(rest.history, full.history)  # every record, from before the kill too
    np.testing.assert_array_equal(rest.history["iteration"], np.arange(5))
    again = algorithms.run(algo, make(), 4, checkpoint=path, resume=True, **kw)  # a finished run: nothing to do
    assert again.steps == 4
    _histories_equal(again.history, full.history)


def test_llm_backend_state_is_what_makes_the_resume_exact(tmp_path, one_thread):
    """Without the backend's RNG the resumed steps replay the first steps' draws (issue 8.4: 0.03)."""
    make = _llm()
    full = algorithms.run(algorithms.MPO(), make(), 4, average=False)
    path = tmp_path / "run.ckpt"
    algorithms.run(algorithms.MPO(), make(), 2, checkpoint=path, average=False)
    be = make()
    be.load_state_dict = lambda d: None  # a backend that forgets its state
    rest = algorithms.run(algorithms.MPO(), be, 4, checkpoint=path, resume=True, average=False)
    assert np.abs(rest.policy - full.policy).max() > 1e-3


def test_resume_extends_a_finished_run_to_the_new_total(tmp_path):
    path = tmp_path / "run.ckpt"
    full = algorithms.run(algorithms.OMWU(), G, 30, init=INIT3, record=5)
    algorithms.run(algorithms.OMWU(), G, 20, init=INIT3, record=5, checkpoint=path)
    more = algorithms.run(algorithms.OMWU(), G, 30, init=INIT3, record=5, checkpoint=path, resume=True)
    np.testing.assert_array_equal(final(more), final(full))
    np.testing.assert_array_equal(more.history["iteration"], [0, 5, 10, 15, 20, 25, 30])
    np.testing.assert_array_equal(more.history["duality_gap"], full.history["duality_gap"])


def test_a_run_stopped_by_until_is_returned_as_it_is(tmp_path):
    path = tmp_path / "run.ckpt"
    a = algorithms.run(algorithms.MPO(), G, 5000, init=INIT3, until=1e-6, checkpoint=path, checkpoint_every=50)
    assert a.steps < 5000
    b = algorithms.run(algorithms.MPO(), G, 5000, init=INIT3, until=1e-6, checkpoint=path, checkpoint_every=50,
                       resume=True)
    assert b.steps == a.steps
    _histories_equal(a.history, b.history)


def test_checkpoint_is_written_before_the_first_step_and_holds_the_configuration(tmp_path):
    path = tmp_path / "run.ckpt"
    seen = []

    def cb(t, state, m):
        if t == 0:
            seen.append(algorithms.load_checkpoint(path)["state"].t)

    algorithms.run(algorithms.MMD(), G, 3, callbacks=[cb], checkpoint=path, config={"seed": 7})
    assert seen == [0]
    d = algorithms.load_checkpoint(path)
    assert d["format"] == 1 and d["state"].t == 3 and d["config"]["config"] == {"seed": 7}
    assert d["config"]["algorithm"]["class"].endswith("MMD") and d["config"]["backend"]["array_library"] == "numpy"
    assert d["history"]["iteration"] == [0, 1, 2, 3]
    assert not list(tmp_path.glob("*.tmp"))


# -- backend capabilities (PLAN interface 1) ----------------------------------------------------------------
class NoExactMetrics(games.ExactBackend):
    """A backend that cannot measure gaps but reports its own metrics (as an LLM without a world does)."""

    exact_metrics = False

    def extra_metrics(self, policy):
        return {"entropy": float(-(np.exp(policy.logp[0]) * policy.logp[0]).sum()), "loss": 1.5}


def test_no_exact_metrics_records_only_the_backend_metrics():
    r = algorithms.run(algorithms.MPO(), NoExactMetrics(G), 3, init=INIT3)
    assert set(r.history) == {"iteration", "queries", "entropy", "loss"}
    np.testing.assert_array_equal(r.history["loss"], [1.5] * 4)
    assert r.history["entropy"][0] == pytest.approx(-(INIT3 * np.log(INIT3)).sum(), abs=1e-14)


def test_extra_metrics_are_recorded_next_to_the_exact_ones():
    class Extra(games.ExactBackend):
        def extra_metrics(self, policy):
            return {"p0": float(np.exp(policy.logp[0][0]))}

    r = algorithms.run(algorithms.MWU(), Extra(G), 4, init=INIT3, record=2)
    assert {"duality_gap", "average_gap", "p0"} <= set(r.history)
    assert r.history["p0"][0] == pytest.approx(0.7, abs=1e-15) and len(r.history["p0"]) == 3


def test_resume_accepts_the_bound_algorithm_of_the_first_run(tmp_path):
    path = tmp_path / "run.ckpt"
    part = algorithms.run(algorithms.MPO(), G, 10, init=INIT3, checkpoint=path)
    full = algorithms.run(algorithms.MPO(), G, 20, init=INIT3)
    rest = algorithms.run(part.algorithm, G, 20, init=INIT3, checkpoint=path, resume=True)
    np.testing.assert_array_equal(final(rest), final(full))


class SharedBackend(games.ExactBackend):
    """A backend whose state refers to a large object it rebuilds itself (a frozen base model, say)."""

    def __init__(self, game):
        super().__init__(game)
        self.base = np.arange(200_000, dtype=np.float64)
        self.loaded = None

    def checkpoint_shared(self):
        return {"base": self.base}

    def state_dict(self):
        return {"base": self.base, "counter": self.queries}

    def load_state_dict(self, d):
        self.loaded = d


def test_shared_backend_objects_are_referenced_not_copied(tmp_path):
    path = tmp_path / "run.ckpt"
    algorithms.run(algorithms.MMD(), SharedBackend(G), 3, checkpoint=path)
    assert path.stat().st_size < 100_000  # the 1.6 MB base is not in the file
    assert "shared object 'base'" in repr(algorithms.load_checkpoint(path)["backend"]["base"])
    be = SharedBackend(G)
    algorithms.run(algorithms.MMD(), be, 5, checkpoint=path, resume=True)
    assert be.loaded["base"] is be.base and be.loaded["counter"] == 3


@pytest.mark.parametrize("kill_at", [0, 7])
def test_a_kill_between_a_save_and_a_record_loses_no_record(kill_at, tmp_path):
    path = tmp_path / "run.ckpt"
    full = algorithms.run(algorithms.OMWU(), G, 12, init=INIT3)

    class Kill(Exception):
        pass

    def kill(t, state, m):
        if t == kill_at:
            raise Kill

    with pytest.raises(Kill):  # killed at the record of kill_at, after the checkpoint of the step before
        algorithms.run(algorithms.OMWU(), G, 12, init=INIT3, callbacks=[kill], checkpoint=path, checkpoint_every=1)
    assert algorithms.load_checkpoint(path)["state"].t == max(kill_at - 1, 0)
    rest = algorithms.run(algorithms.OMWU(), G, 12, init=INIT3, checkpoint=path, checkpoint_every=1, resume=True)
    _histories_equal(rest.history, full.history)


def test_default_checkpoints_are_written_at_records_at_most_every_checkpoint_seconds(tmp_path, monkeypatch):
    saves = []
    real = algorithms.run.__globals__["_save"]
    monkeypatch.setitem(algorithms.run.__globals__, "_save", lambda p, d, s=None: saves.append(d["state"].t) or real(p, d, s))
    algorithms.run(algorithms.MWU(), G, 200, checkpoint=tmp_path / "a.ckpt")
    assert saves == [0, 200]  # a fast run: the start and the end only
    saves.clear()
    monkeypatch.setitem(algorithms.run.__globals__, "CHECKPOINT_SECONDS", 0.0)
    algorithms.run(algorithms.MWU(), G, 20, record=5, checkpoint=tmp_path / "b.ckpt")
    assert saves == [0, 5, 10, 15, 20]  # otherwise at the record points
