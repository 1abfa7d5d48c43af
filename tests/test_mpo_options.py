"""MPO's options (issue 13 and issue 8.6): the fast step, the moving magnet, refresh='never', and the
adaptive rule's refusal without exact metrics. Each keeps the closed-form step, fixed-point, simplex
and invariance tests the other methods have (hand-written references from tests/test_step_closed_form)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax

import algorithms
import games
from tests.conftest import GAMES3, lipschitz_np
from tests.test_step_closed_form import CASES, ShiftedBackend, _assert_on_simplex, _game, close, logs, ref_mmd, setup

lsm = lambda z: log_softmax(z, axis=-1)  # noqa: E731


def ref_move_magnet(lrho, lp, lam):
    """The MMD authors' moving magnet: ρ_{t+1} ∝ ρ_t^{1−λ}·π_t^λ (π_t: the policy before the step)."""
    return [lsm((1 - lam) * r + lam * p) for r, p in zip(lrho, lp)]


# -- closed-form steps --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fast_step_is_mmd_at_four_times_the_proven_step(case):
    game, init = CASES[case]()
    M = game.P if isinstance(game, games.PreferenceGame) else game.A
    L = lipschitz_np(M)
    alpha = 0.3
    be, algo, s = setup(algorithms.MPO(eta="fast", alpha=alpha, refresh=4), game, init)
    eta = 4 * alpha / L**2
    assert algo.eta == pytest.approx(eta, rel=1e-14)
    lp = lrho = logs(s.policy)
    for t in range(1, 10):
        lp = ref_mmd(game, lp, lrho, eta, alpha)
        if t % 4 == 0:
            lrho = lp
        s = algo.step(be, s)
        close(s.policy, lp)
        close(s.magnet, lrho)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("refresh", [3, "never"])
def test_moving_magnet_step(case, refresh):
    game, init = CASES[case]()
    eta, alpha, lam = 0.8, 0.4, 0.2
    be, algo, s = setup(algorithms.MPO(eta=eta, alpha=alpha, refresh=refresh, magnet_lr=lam), game, init)
    lp = lrho = logs(s.policy)
    for t in range(1, 10):
        new = ref_mmd(game, lp, lrho, eta, alpha)  # the step uses the magnet before it moves
        lrho = ref_move_magnet(lrho, lp, lam)
        if refresh != "never" and t % refresh == 0:
            lrho = new  # a hard refresh overrides the move
        lp = new
        s = algo.step(be, s)
        close(s.policy, lp)
        close(s.magnet, lrho)


def test_per_game_magnet_lr_on_a_batch():
    g = games.make("random", n=5, seed=2, batch=3)
    lam = np.array([0.0, 0.1, 0.5])
    r = algorithms.run(algorithms.MPO(magnet_lr=lam, refresh="never"), g, 7, record=[7])
    for b in range(3):
        rb = algorithms.run(algorithms.MPO(magnet_lr=float(lam[b]), refresh="never"), g[b], 7, record=[7])
        np.testing.assert_allclose(r.policy[b], rb.policy, rtol=0, atol=1e-14)


def test_never_refresh_without_a_moving_magnet_is_mmd_with_the_initial_policy_as_magnet():
    game, init = CASES["preference"]()
    a = algorithms.run(algorithms.MPO(eta=0.7, alpha=0.3, refresh="never"), game, 40, init=init, record=[40])
    b = algorithms.run(algorithms.MMD(eta=0.7, alpha=0.3, magnet=init), game, 40, init=init, record=[40])
    np.testing.assert_allclose(a.policy, b.policy, rtol=0, atol=1e-14)


# -- the MMD authors' perturbed RPS (github.com/ssokota/mmd, examples/nfg/perturbed_rps.py) -----------------
#: their published QREs for α = η ∈ {0.05, 0.1, 0.2, 0.5}, uniform start and magnet, magnet_lr = 0
PUBLISHED_QRE = {0.05: [0.1517447, 0.46794775, 0.38030755], 0.1: [0.17347803, 0.48630324, 0.34021873],
                 0.2: [0.22364492, 0.47798817, 0.29836691], 0.5: [0.29813319, 0.41382045, 0.28804635]}


def test_magnet_lr_0_reproduces_the_authors_published_qres():
    alpha = np.array(list(PUBLISHED_QRE))  # one run, one α = η per policy of the batch; their 10 000 iterations
    r = algorithms.run(algorithms.MPO(eta=alpha, alpha=alpha, refresh="never", magnet_lr=0.0), games.make("perturbed_rps"),
                       10_000, record=[10_000], average=False)
    np.testing.assert_allclose(r.policy, np.array(list(PUBLISHED_QRE.values())), rtol=0, atol=6e-9)  # their 8 digits


def test_moving_magnet_converges_to_the_nash_equilibrium_not_the_qre():
    g = games.make("perturbed_rps")
    r = algorithms.run(algorithms.MPO(eta=1.0, alpha=0.25, refresh="never", magnet_lr=0.05), g, 3000, record=[3000],
                       average=False)
    np.testing.assert_allclose(r.policy, np.array([1, 3, 3]) / 7, rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.state.algo_state.magnet.logp[0], np.log(np.array([1, 3, 3]) / 7), atol=1e-8)
    # without the moving magnet the same settings stop at the QRE (gap 0.147)
    q = algorithms.run(algorithms.MPO(eta=1.0, alpha=0.25, refresh="never"), g, 3000, record=[3000], average=False)
    assert q.history["duality_gap"][-1] > 0.1


def test_authors_moving_magnet_settings_make_progress_on_perturbed_rps():
    """α = 1, η = 0.1, λ = 0.05 (their extensive-form Nash runs): the gap falls from 0.22, slowly."""
    r = algorithms.run(algorithms.MPO(eta=0.1, alpha=1.0, refresh="never", magnet_lr=0.05), games.make("perturbed_rps"),
                       5000, record=[0, 5000], average=False)
    g0, g1 = r.history["duality_gap"]
    assert g1 < g0 / 4


# -- fixed points -------------------------------------------------------------------------------------------
OPTIONS = {"fast": dict(eta="fast"), "moving": dict(magnet_lr=0.1), "moving_never": dict(magnet_lr=0.1, refresh="never"),
           "fast_moving": dict(eta="fast", magnet_lr=0.3, refresh=7)}


@pytest.mark.parametrize("opt", OPTIONS)
@pytest.mark.parametrize("game_name", GAMES3 + ("rps",))
def test_nash_equilibrium_is_fixed(opt, game_name):
    g = games.make(game_name)
    ne = games.nash_equilibrium(g)
    be = games.ExactBackend(g)
    algo = algorithms.MPO(**OPTIONS[opt]).bind(be)
    s = algo.init(be, be.from_probs(ne))
    for _ in range(3):
        s = algo.step(be, s)
    np.testing.assert_allclose(be.to_numpy(s.policy), ne, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.exp(s.magnet.logp[0]), ne, rtol=0, atol=1e-14)
    near = 0.98 * ne + 0.02 * np.array([1.0, 0, 0])
    s = algo.step(be, algo.init(be, be.from_probs(near)))
    assert np.abs(be.to_numpy(s.policy) - near).max() > 1e-5


def test_the_qre_is_not_fixed_under_a_moving_magnet():
    """With ρ = uniform and π = the QRE the policy step is fixed, but the magnet moves towards π."""
    g = games.make("perturbed_rps")
    be = games.ExactBackend(g)
    qre = np.array(PUBLISHED_QRE[0.1])
    qre = qre / qre.sum()
    algo = algorithms.MPO(eta=0.1, alpha=0.1, magnet_lr=0.05, refresh="never").bind(be)
    from algorithms.mmd import MagnetState

    s = algo.step(be, MagnetState(be.from_probs(qre), be.reference, 0))
    assert np.abs(be.to_numpy(s.policy) - qre).max() < 1e-7  # the QRE is (nearly: 8 digits) MMD's fixed point
    assert np.abs(np.exp(s.magnet.logp[0]) - 1 / 3).max() > 1e-3


# -- invariance and the simplex -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("opt", OPTIONS)
def test_constant_added_to_win_rates_changes_nothing(case, opt):
    game, init = CASES[case]()
    out = []
    for c in (0.0, 0.37, -5.0):
        be = ShiftedBackend(game)
        be.shift = c
        algo = algorithms.MPO(alpha=0.4, **OPTIONS[opt]).bind(be)
        s = algo.init(be, be.from_probs(init))
        for _ in range(9):
            s = algo.step(be, s)
        out.append(np.concatenate(logs(s.policy) + logs(s.magnet)))
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[2], out[0], rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["random", "skew_sharp", "zero_sum_huge", "zero_sum_tiny"]), opt=st.sampled_from(list(OPTIONS)),
       seed=st.integers(0, 10_000), n=st.integers(2, 7), m=st.integers(2, 7), aggressive=st.booleans())
def test_iterates_and_magnets_stay_on_the_simplex(kind, opt, seed, n, m, aggressive):
    game = _game(kind, seed, n, m)
    be = games.ExactBackend(game)
    hp = dict(OPTIONS[opt])
    if aggressive:
        hp.update(alpha=0.01 * be.lipschitz)  # "fast" is then 4·0.01/L; a given eta 100/L
        if hp.get("eta") != "fast":
            hp["eta"] = 100 / be.lipschitz
    algo = algorithms.MPO(**hp).bind(be)
    rng = np.random.default_rng(seed)
    init = [rng.dirichlet(np.ones(k)) for k in game.sizes]
    s = algo.init(be, be.from_probs(init[0] if len(init) == 1 else tuple(init)))
    for _ in range(200):
        s = algo.step(be, s)
    none = [np.zeros(k, bool) for k in game.sizes]
    _assert_on_simplex(be, s.policy, none)
    _assert_on_simplex(be, s.magnet, none)


# -- defaults, guarantees and bad input ---------------------------------------------------------------------
def test_fast_is_refused_under_guarantee():
    with pytest.raises(ValueError, match="proven"):
        algorithms.run(algorithms.MPO(eta="fast", guarantee=True), games.make("cyclic3"), 1)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "some", True, None])
def test_magnet_lr_must_lie_in_0_1(bad):
    with pytest.raises(ValueError, match="magnet_lr"):
        algorithms.MPO(magnet_lr=bad)


@pytest.mark.parametrize("bad", ["slow", "FAST", ""])
def test_eta_strings_other_than_fast_are_refused(bad):
    with pytest.raises(ValueError, match="eta.*'fast'"):
        algorithms.MPO(eta=bad)


def test_refresh_never_is_accepted_and_others_named():
    algorithms.MPO(refresh="never")
    with pytest.raises(ValueError, match="'never'"):
        algorithms.MPO(refresh="sometimes")


def test_registry_passes_the_new_options():
    a = algorithms.make("mpo", eta="fast", magnet_lr=0.05, refresh="never")
    assert (a.eta, a.magnet_lr, a.refresh) == ("fast", 0.05, "never")


# -- issue 8.6: the adaptive rule needs exact metrics --------------------------------------------------------
class NoExactMetrics(games.ExactBackend):
    """An exact backend that says it cannot measure gaps (as an LLM backend without a world)."""

    exact_metrics = False


def test_adaptive_refresh_is_refused_without_exact_metrics_before_any_step():
    be = NoExactMetrics(games.make("cyclic3"))
    with pytest.raises(ValueError, match="exact_metrics is False"):
        algorithms.run(algorithms.MPO(refresh="adaptive"), be, 3)
    assert be.queries == 0
    # a fixed period needs no metrics: it runs
    algorithms.run(algorithms.MPO(refresh=10), be, 3, record=[3])


def test_adaptive_refresh_runs_where_metrics_are_exact():
    class Exact(games.ExactBackend):
        exact_metrics = True

    r = algorithms.run(algorithms.MPO(refresh="adaptive"), Exact(games.make("cyclic3")), 3)
    gap = r.history["duality_gap"]  # the rule's exact metrics were measured and recorded
    assert len(gap) == 4 and np.all(np.isfinite(gap)) and np.all(np.isfinite(r.history["regularized_gap"]))


@pytest.mark.parametrize("opt", ["fast_moving", "moving_never"])
def test_torch_batch_equals_numpy_single_games(opt):
    g = games.make("random", n=5, seed=8, batch=3)
    lam = np.array([0.05, 0.2, 0.0])  # per-game λ, one of them off
    hp = dict(OPTIONS[opt], magnet_lr=lam)
    rt = algorithms.run(algorithms.MPO(**hp), g, 40, backend="torch", record=[40])
    for b in range(3):
        rn = algorithms.run(algorithms.MPO(**dict(hp, magnet_lr=float(lam[b]))), g[b], 40, record=[40])
        np.testing.assert_allclose(rt.policy[b], rn.policy, rtol=0, atol=1e-13)


def test_fast_step_does_not_overflow_at_huge_payoffs():
    # η = 4α/L² computed as 4(α/L)/L: L² overflows for payoffs above ~1e154
    import numpy as np

    z = games.ZeroSumGame(np.random.default_rng(0).uniform(-1, 1, (3, 3)))
    big = games.ZeroSumGame(1e200 * z.A)
    small = algorithms.run(algorithms.MPO(eta="fast"), z, 200)
    huge = algorithms.run(algorithms.MPO(eta="fast"), big, 200)
    np.testing.assert_allclose(huge.history["duality_gap"] / 1e200, small.history["duality_gap"], rtol=1e-9, atol=1e-15)


def test_make_reports_a_refused_value_by_its_own_name():
    with pytest.raises(ValueError, match=r"eta = '0\.1' is not allowed"):
        algorithms.make("mmd", eta="0.1")
