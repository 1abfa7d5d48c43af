"""The exact backend on torch: the same algorithm objects, the same iterates as numpy.

float64 torch reproduces numpy to 1e-12 for every algorithm, on a preference game and on zero-sum
games; a batch of B games (numpy or torch) equals B single runs, including MPO's adaptive refresh,
whose masks differ per game; float32 runs stay within 1e-5. Every test runs on "cpu" and, where
one is present, on "cuda" (the code is device-agnostic).
"""
from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp

torch = pytest.importorskip("torch")

import algorithms  # noqa: E402
import games  # noqa: E402
from games.exact import ExactBackend, tile  # noqa: E402
from games.ops import NumpyOps, make_ops  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALGOS = algorithms.available()
STEPS = 40


def _game(name):
    if name == "random":
        return games.make("random", n=7, seed=3)
    return games.make(name)


def _flat(p):
    """Probabilities of a policy (one array, or the pair of a zero-sum game) as one numpy array."""
    return np.concatenate(p, -1) if isinstance(p, tuple) else np.asarray(p)


def _hist_close(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


# -- torch float64 == numpy, iterate by iterate ---------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("game", ["cyclic3", "random", "matrix_rps", "kuhn_poker"])
@pytest.mark.parametrize("name", ALGOS)
def test_torch_iterates_equal_numpy(name, game, device):
    g = _game(game)
    bn, bt = ExactBackend(g), ExactBackend(g, backend="torch", device=device)
    algo = algorithms.make(name)
    an, at = algo.bind(bn), algo.bind(bt)
    assert an.hparams() == at.hparams()  # defaults come from the numpy Lipschitz constant on both
    sn, st = an.init(bn, bn.initial_policy()), at.init(bt, bt.initial_policy())
    for t in range(STEPS):
        sn, st = an.step(bn, sn), at.step(bt, st)
        np.testing.assert_allclose(_flat(bt.to_numpy(st.policy)), _flat(bn.to_numpy(sn.policy)), rtol=0, atol=1e-12,
                                   err_msg=f"{name} on {game}, step {t + 1}")
    assert float(bt.ops.to_numpy(bt.duality_gap(st.policy))) == pytest.approx(float(bn.duality_gap(sn.policy)), abs=1e-12)
    assert bt.queries == bn.queries


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALGOS)
def test_run_torch_equals_numpy(name, device):
    """The run loop too: history (every metric), average iterate and final policy."""
    g = games.make("kuhn_poker")
    algo = algorithms.make(name)
    rn = algorithms.run(algo, g, 30)
    rt = algorithms.run(algo, g, 30, backend="torch", device=device)
    _hist_close(rn.history, rt.history, 1e-12)
    np.testing.assert_allclose(_flat(rt.policy), _flat(rn.policy), rtol=0, atol=1e-12)
    np.testing.assert_allclose(_flat(rt.average_policy), _flat(rn.average_policy), rtol=0, atol=1e-12)


# -- a batch of games == the games one by one ----------------------------------------------------------
def _batch_vs_singles(algo, g, backend, steps=30, device=None, atol=1e-12):
    rb = algorithms.run(algo, g, steps, backend=backend, device=device)
    for b in range(len(g)):
        rs = algorithms.run(algo, g[b], steps, backend=backend, device=device)
        pb = rb.policy if not isinstance(rb.policy, tuple) else tuple(x[b] for x in rb.policy)
        if not isinstance(pb, tuple):
            pb = pb[b]
        np.testing.assert_allclose(_flat(pb), _flat(rs.policy), rtol=0, atol=atol, err_msg=f"game {b}")
        for k, v in rs.history.items():
            col = rb.history[k] if k in ("iteration", "queries") else rb.history[k][:, b]
            np.testing.assert_allclose(col, v, rtol=0, atol=atol, err_msg=f"{k}, game {b}")
    return rb


@pytest.mark.parametrize("backend,device", [("numpy", None)] + [("torch", d) for d in DEVICES])
@pytest.mark.parametrize("name", ALGOS)
def test_batch_equals_single_runs(name, backend, device):
    g = games.make("random", n=6, seed=1, batch=4)
    rb = _batch_vs_singles(algorithms.make(name), g, backend, device=device)
    assert rb.history["duality_gap"].shape == (31, 4)


@pytest.mark.parametrize("backend,device", [("numpy", None)] + [("torch", d) for d in DEVICES])
def test_zero_sum_batch_equals_single_runs(backend, device):
    A = np.random.default_rng(0).uniform(-1, 1, size=(3, 5, 4))  # three different games
    for name in ("mmd", "omwu", "mirror_prox"):
        _batch_vs_singles(algorithms.make(name), games.ZeroSumGame(A), backend, device=device)


@pytest.mark.parametrize("backend,device", [("numpy", None)] + [("torch", d) for d in DEVICES])
def test_per_game_hyperparameters(backend, device):
    """A hyperparameter sweep is a batch: tile(g, B) with arrays of length B == B single runs, and
    the same arrays on the single game batch it implicitly (one matrix, B policies)."""
    g = games.make("kuhn_poker")
    eta, alpha = np.array([0.5, 1.0, 2.0]), np.array([0.05, 0.1, 0.2])
    cases = {"mmd": dict(eta=eta, alpha=alpha), "mpo": dict(eta=eta, alpha=alpha), "nash_md": dict(beta=alpha),
             "mirror_prox": dict(eta=eta / 4, beta=alpha), "egpo": dict(eta=eta, beta=alpha),
             "inpo": dict(eta=eta + 1, tau=alpha), "mnpo": dict(eta=eta + 1, tau=alpha), "mwu": dict(eta=eta),
             "omwu": dict(eta=eta / 4)}
    assert set(cases) == set(ALGOS)
    for name, hp in cases.items():
        rt = algorithms.run(algorithms.make(name, **hp), tile(g, 3), 20, backend=backend, device=device)
        ri = algorithms.run(algorithms.make(name, **hp), g, 20, backend=backend, device=device)
        _hist_close(rt.history, ri.history, 1e-12)
        for b in range(3):
            one = {k: v[b] for k, v in hp.items()}
            rs = algorithms.run(algorithms.make(name, **one), g, 20, backend=backend, device=device)
            np.testing.assert_allclose(_flat(tuple(x[b] for x in rt.policy)), _flat(rs.policy), rtol=0, atol=1e-12)
            np.testing.assert_allclose(rt.history["duality_gap"][:, b], rs.history["duality_gap"], rtol=0, atol=1e-12)


def test_tile():
    g = games.make("cyclic3")
    t = tile(g, 5)
    assert t.P.shape == (5, 3, 3) and t.batch_shape == (5,) and np.allclose(t[4].P, g.P)
    assert tile(games.make("matrix_rps"), 2).A.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="already a batch"):
        tile(t, 2)
    with pytest.raises(ValueError, match="positive int"):
        tile(g, 0)


# -- MPO's adaptive refresh: per-game masks --------------------------------------------------------------
def _refresh_pattern(algo, g, backend, steps=150):
    """Which games refreshed their magnet at each step (the magnet is then the new policy)."""
    be = ExactBackend(g, backend=backend)
    a = algo.bind(be)
    s = a.init(be, be.initial_policy())
    pattern = []
    for _ in range(steps):
        s = a.step(be, s)
        pattern.append(np.all(be.ops.to_numpy(s.magnet.logp[0]) == be.ops.to_numpy(s.policy.logp[0]), -1))
    return np.array(pattern)


def test_mpo_adaptive_masks_differ_per_game():
    g = games.make("random", n=5, seed=0, batch=6)
    pat = _refresh_pattern(algorithms.MPO(refresh="adaptive"), g, "numpy")
    assert pat.any() and not np.all(pat == pat[:, :1])  # games refresh at different steps


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_mpo_adaptive_batch_equals_single_runs(backend):
    g = games.make("random", n=5, seed=0, batch=6)
    # scalar hyperparameters: every game runs the same numbers, only the masks differ
    _batch_vs_singles(algorithms.MPO(refresh="adaptive", eta=1.0, alpha=0.25), g, backend, steps=150)
    if backend == "numpy":  # the defaults scale with each game's L: per-game arrays
        _batch_vs_singles(algorithms.MPO(refresh="adaptive"), g, backend, steps=150)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("game", ["cyclic3", "kuhn_poker"])
def test_mpo_adaptive_single_game_torch(game, device):
    """A single game's refresh mask is a 0-d tensor."""
    g = _game(game)
    rn = algorithms.run(algorithms.MPO(refresh="adaptive"), g, 100)
    rt = algorithms.run(algorithms.MPO(refresh="adaptive"), g, 100, backend="torch", device=device)
    _hist_close(rn.history, rt.history, 1e-12)


def test_mpo_adaptive_per_game_alpha_torch():
    g = games.make("random", n=5, seed=0, batch=6)
    _batch_vs_singles(algorithms.MPO(refresh="adaptive"), g, "torch", steps=150)


# -- float32 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALGOS)
def test_float32_close(name, device):
    g = games.make("random", n=6, seed=2, batch=3)
    algo = algorithms.make(name)
    r64 = algorithms.run(algo, g, STEPS)
    r32 = algorithms.run(algo, g, STEPS, backend="torch", device=device, dtype="float32", as_numpy=False)
    assert r32.policy.dtype == torch.float32 and r32.policy.device.type == device
    np.testing.assert_allclose(r32.policy.cpu().numpy(), r64.policy, rtol=0, atol=1e-5)
    _hist_close({k: v for k, v in r64.history.items()}, r32.history, 1e-5)


def test_float32_mpo_converges():
    g = games.make("cyclic3")
    r = algorithms.run(algorithms.MPO(), g, 3000, backend="torch", dtype=torch.float32, record=[])
    assert r.history["duality_gap"][-1] < 1e-5


# -- the run loop on torch -----------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_results_numpy_unless_asked(device):
    g = games.make("kuhn_poker")
    r = algorithms.run(algorithms.MMD(), g, 5, backend="torch", device=device)
    assert all(isinstance(x, np.ndarray) for x in r.policy + r.average_policy)
    assert all(isinstance(v, np.ndarray) for v in r.history.values())
    r = algorithms.run(algorithms.MMD(), g, 5, backend="torch", device=device, as_numpy=False)
    for x in r.policy + r.average_policy:
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float64 and x.device.type == device
    assert all(isinstance(v, np.ndarray) for v in r.history.values())
    r = algorithms.run(algorithms.MMD(), games.make("cyclic3"), 5, as_numpy=False)  # numpy backend: numpy anyway
    assert isinstance(r.policy, np.ndarray)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_results_do_not_alias_the_state(backend):
    g = games.make("random", n=4, seed=0, batch=2)
    r = algorithms.run(algorithms.MMD(), g, 5, backend=backend)
    before = r.policy.copy()
    r.policy[:] = 0
    r.average_policy[:] = 0
    np.testing.assert_array_equal(r.policy, before)
    if backend == "torch":
        r = algorithms.run(algorithms.MMD(), g, 5, backend=backend, as_numpy=False)
        r.policy.zero_()
        np.testing.assert_allclose(r.policy.numpy(), before, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_until_and_batched_metrics(device):
    g = games.make("random", n=5, seed=1, batch=3)
    rn = algorithms.run(algorithms.MPO(), g, 3000, until=1e-6, record=[])
    rt = algorithms.run(algorithms.MPO(), g, 3000, until=1e-6, record=[], backend="torch", device=device)
    assert rt.steps == rn.steps < 3000 and np.all(rt.history["duality_gap"][-1] <= 1e-6)
    be = ExactBackend(g, backend="torch", device=device)
    pol = be.from_probs(rt.policy)
    gap = be.duality_gap(pol)
    assert isinstance(gap, torch.Tensor) and gap.shape == (3,)
    np.testing.assert_allclose(gap.cpu().numpy(), [games.duality_gap(g[b], rt.policy[b]) for b in range(3)], atol=1e-12)
    np.testing.assert_allclose(be.regularized_gap(pol, 0.1).cpu().numpy(), games.regularized_gap(g, rt.policy, 0.1), atol=1e-12)


def test_resume_torch(tmp_path):
    g = games.make("random", n=5, seed=4, batch=2)
    full = algorithms.run(algorithms.OMWU(), g, 20, backend="torch")
    half = algorithms.run(algorithms.OMWU(), g, 10, backend="torch", checkpoint=str(tmp_path / "c.pkl"))
    # resume=True re-issues the same run: it continues to a total of `steps`
    rest = algorithms.run(algorithms.OMWU(), g, 20, backend="torch", checkpoint=str(tmp_path / "c.pkl"), resume=True)
    assert half.steps == 10 and rest.steps == 20
    np.testing.assert_allclose(rest.policy, full.policy, rtol=0, atol=1e-15)
    # cached values (probabilities, payoffs) are not written to checkpoints
    assert "_exact_cache" not in pickle.loads(pickle.dumps(rest.state.algo_state.policy)).__dict__


def test_memory_stays_bounded():
    """Old iterates are freed (nothing chains them) and long runs record ~400 points."""
    g = games.make("random", n=5, seed=0, batch=8)
    refs = []

    def keep(t, state, metrics):
        if t == 1:
            refs.append(weakref.ref(state.algo_state.policy))

    r = algorithms.run(algorithms.MPO(), g, 5000, backend="torch", record=[0, 1], callbacks=[keep])
    gc.collect()
    assert refs and refs[0]() is None
    assert len(algorithms.run(algorithms.MMD(), g, 5000, backend="torch").history["iteration"]) <= 401
    assert r.state.avg[0].shape == (8, 5)


def test_cache_is_per_game():
    """A policy value evaluated on two games gets each game's numbers (cached payoffs are per backend)."""
    g1, g2 = games.make("random", n=4, seed=1), games.make("random", n=4, seed=2)
    b1, b2 = ExactBackend(g1, backend="torch"), ExactBackend(g2, backend="torch")
    x = np.array([0.1, 0.2, 0.3, 0.4])
    p = b1.from_probs(x)
    assert float(b1.duality_gap(p)) == pytest.approx(games.duality_gap(g1, x), abs=1e-14)
    assert float(b2.duality_gap(p)) == pytest.approx(games.duality_gap(g2, x), abs=1e-14)


# -- ops ------------------------------------------------------------------------------------------------
def test_make_ops_and_dtypes():
    assert make_ops("torch").dtype == torch.float64
    for d in ("float32", torch.float32, np.float32, "torch.float32"):
        assert make_ops("torch", dtype=d).dtype == torch.float32
    with pytest.raises(ValueError, match="floating dtype"):
        make_ops("torch", dtype="int64")
    with pytest.raises(ValueError, match="backend='torch'"):
        make_ops("numpy", device="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        make_ops("jax")


def test_numpy_logsumexp_is_scipys_bit_for_bit():
    rng = np.random.default_rng(0)
    lse = NumpyOps().logsumexp
    for trial in range(300):
        shape = [(10,), (3,), (200, 10), (40, 7, 4), (50, 40), (1,)][trial % 6]
        x = rng.normal(size=shape) * rng.choice([1e-3, 1.0, 50.0])
        if trial % 3 == 0:
            x = np.round(x)  # ties for the maximum
        if trial % 5 == 0:
            x[..., 0] = -np.inf
        if trial % 7 == 0:
            x[..., :] = -np.inf
        want = scipy_logsumexp(x, axis=-1)
        got = lse(x)
        assert np.array_equal(got, want) and type(got) is type(want), (shape, trial)
