"""Bad input fails early with a ValueError that says what is wrong and what would be right."""
from __future__ import annotations

import re

import numpy as np
import pytest

import algorithms
import games

P3 = games.make("cyclic3").P  # L = 0.4


def bad(M, **kw):
    return games.PreferenceGame(np.asarray(M, float), **kw)


# -- invalid preference matrices: the message names the entry and the rule ---------------------------------
def test_non_square():
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        bad(np.full((3, 4), 0.5))


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2, 2)])
def test_wrong_number_of_axes(shape):
    with pytest.raises(ValueError, match=r"\(n, n\).*\(B, n, n\)"):
        bad(np.full(shape, 0.5))


def test_nan_entry():
    Q = P3.copy()
    Q[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*entry \[1, 2\]"):
        bad(Q)


def test_entry_outside_0_1():
    Q = P3.copy()
    Q[0, 2], Q[2, 0] = 1.2, -0.2  # still antisymmetric: only the range rule is broken
    with pytest.raises(ValueError, match=r"entry \[0, 2\].*1\.2.*probabilities in \[0, 1\]"):
        bad(Q)


def test_not_antisymmetric():
    Q = P3.copy()
    Q[0, 1] = 0.2
    with pytest.raises(ValueError, match=r"entry \[0, 1\].*0\.2.*P\[i, j\] \+ P\[j, i\] must equal 1"):
        bad(Q)


def test_not_antisymmetric_in_a_batch_names_the_game():
    Q = np.stack([P3, P3])
    Q[1, 0, 1] = 0.3
    with pytest.raises(ValueError, match=r"game 1, entry \[0, 1\]"):
        bad(Q)


def test_diagonal_not_one_half():
    Q = P3.copy()
    Q[1, 1] = 0.6
    with pytest.raises(ValueError, match=r"entry \[1, 1\].*diagonal must be 1/2"):
        bad(Q)


def test_diagonal_not_one_half_is_rejected():
    Q = P3.copy()
    Q[1, 1] = 0.6
    with pytest.raises(ValueError, match=r"entry \[1, 1\]"):
        bad(Q)


def test_non_numeric_matrix_and_zero_sum_inf():
    with pytest.raises(ValueError, match="numeric"):
        games.PreferenceGame([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match=r"non-finite.*entry \[0, 1\]"):
        games.ZeroSumGame(np.array([[1.0, np.inf], [0.0, 1.0]]))


@pytest.mark.parametrize("ref,msg", [([0.5, 0.5, 0.0], "strictly positive"), ([0.5, 0.5, 0.5], "sum to 1"),
                                     ([0.5, 0.5], r"shape \(3,\)")])
def test_bad_reference(ref, msg):
    with pytest.raises(ValueError, match=msg):
        bad(P3, reference=ref)


def test_constant_game_has_nothing_to_learn():
    with pytest.raises(ValueError, match="constant"):
        games.ExactBackend(bad(np.full((3, 3), 0.5)))


# -- unknown names list the valid ones --------------------------------------------------------------------
def test_unknown_game_lists_valid_names():
    with pytest.raises(ValueError) as e:
        games.make("rock_paper")
    assert "rock_paper" in str(e.value)
    for name in games.available():
        assert name in str(e.value)


def test_unknown_game_argument_lists_the_parameters():
    with pytest.raises(ValueError, match=r"'random'.*takes: n, seed, batch"):
        games.make("random", size=4)


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ValueError) as e:
        algorithms.make("dpo")
    for name in algorithms.available():
        assert name in str(e.value)


def test_algorithm_names_and_aliases():
    assert algorithms.available() == ["mpo", "mmd", "nash_md", "mirror_prox", "egpo", "inpo", "mnpo", "mwu", "omwu"]
    assert type(algorithms.make("SPPO")) is algorithms.MWU
    assert type(algorithms.make("nash-mp")) is algorithms.MirrorProx
    assert type(algorithms.make("onpo")) is algorithms.OMWU


def test_unknown_hyperparameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"MMD.*beta.*takes: eta, alpha, magnet, guarantee"):
        algorithms.make("mmd", beta=0.1)
    with pytest.raises(ValueError, match=r"INPO.*lr.*eta, tau"):
        algorithms.make("inpo", lr=0.1)


# -- impossible hyperparameters ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", algorithms.available())
@pytest.mark.parametrize("eta", [-0.1, 0.0, float("nan"), float("inf")])
def test_eta_must_be_positive_and_finite(name, eta):
    with pytest.raises(ValueError, match="eta"):
        algorithms.make(name, eta=eta)


@pytest.mark.parametrize("name,param", [("nash_md", "beta"), ("mirror_prox", "beta"), ("egpo", "beta"),
                                        ("inpo", "tau"), ("mnpo", "tau"), ("mmd", "alpha"), ("mpo", "alpha")])
def test_regularisation_must_not_be_negative(name, param):
    with pytest.raises(ValueError, match=param):
        algorithms.make(name, **{param: -0.1})


@pytest.mark.parametrize("cls", [algorithms.INPO, algorithms.MNPO])
def test_inpo_tau_above_eta_is_refused(cls):
    # η is an INVERSE learning rate: τ > η would put a negative weight 1 − τ/η on π_t
    with pytest.raises(ValueError, match=r"tau=0\.5 > eta=0\.1.*inverse learning rate"):
        algorithms.run(cls(eta=0.1, tau=0.5), games.make("cyclic3"), 1)


@pytest.mark.parametrize("refresh", [0, -3, 2.5, True, "sometimes", None])
def test_mpo_refresh(refresh):
    with pytest.raises(ValueError, match=r"refresh.*'adaptive'"):
        algorithms.MPO(refresh=refresh)


def test_mpo_tol_must_be_positive():
    with pytest.raises(ValueError, match="tol"):
        algorithms.MPO(refresh="adaptive", tol=0)


def test_nash_md_eta_with_decreasing_schedule():
    with pytest.raises(ValueError, match=r"decreasing.*schedule='constant'"):
        algorithms.NashMD(eta=0.1, schedule="decreasing")
    with pytest.raises(ValueError, match="schedule"):
        algorithms.NashMD(schedule="cosine")


@pytest.mark.parametrize("algo", [algorithms.NashMD(eta=20.0, beta=0.2), algorithms.EGPO(eta=20.0, beta=0.2)])
def test_eta_beta_above_one_is_refused(algo):
    with pytest.raises(ValueError, match=r"eta\*beta.*> 1"):
        algorithms.run(algo, games.make("cyclic3"), 1)


@pytest.mark.parametrize("w", [(-1.0, 2.0), (), (0.0, 0.0), (np.nan, 1.0)])
def test_mnpo_weights(w):
    with pytest.raises(ValueError, match="weights"):
        algorithms.MNPO(weights=w)


def test_regularized_nash_needs_positive_beta():
    with pytest.raises(ValueError, match="beta must be > 0"):
        games.regularized_nash(games.make("cyclic3"), 0.0)


# -- guarantee=True: refuses a step outside the proven range, accepts the boundary ---------------------------
L = 0.4
GUARANTEES = [  # (class, kwargs at the boundary, the kwarg to push past it, the direction)
    (algorithms.MMD, dict(alpha=0.1, eta=0.1 / L**2), "eta", +1, r"η ≤ α/L²"),
    (algorithms.MPO, dict(alpha=0.1, eta=0.1 / L**2), "eta", +1, r"η ≤ α/L²"),
    (algorithms.MirrorProx, dict(beta=0.1, eta=0.1 / L), "eta", +1, r"η ≤ β/L"),
    (algorithms.EGPO, dict(beta=0.1, eta=1 / (0.1 + L)), "eta", +1, r"η ≤ 1/\(β\+L\)"),
    (algorithms.INPO, dict(tau=0.1, eta=(L**2 + 0.1**2) / 0.1), "eta", -1, r"η ≥ \(L²\+τ²\)/τ"),
]


@pytest.mark.parametrize("cls,kw,key,direction,msg", GUARANTEES, ids=lambda x: getattr(x, "__name__", None))
def test_guarantee(cls, kw, key, direction, msg):
    be = games.ExactBackend(games.make("cyclic3"))
    assert be.lipschitz == pytest.approx(L, abs=1e-15)
    cls(guarantee=True, **kw).bind(be)  # the boundary value is accepted
    cls(guarantee=False, **{**kw, key: kw[key] * (1 + direction * 0.01)}).bind(be)  # no check asked for
    with pytest.raises(ValueError, match=msg):
        cls(guarantee=True, **{**kw, key: kw[key] * (1 + direction * 0.01)}).bind(be)
    with pytest.raises(ValueError, match="guarantee=False"):  # the message says how to proceed anyway
        algorithms.run(cls(guarantee=True, **{**kw, key: kw[key] * (1 + direction * 0.01)}), games.make("cyclic3"), 1)


@pytest.mark.parametrize("cls", [algorithms.MMD, algorithms.MirrorProx, algorithms.EGPO, algorithms.INPO])
def test_guarantee_accepts_the_defaults(cls):
    algorithms.run(cls(guarantee=True), games.make("random", n=5, seed=0, batch=3), 2)


# -- the run loop's arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,msg", [
    (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"),
    (dict(record="some"), "record"), (dict(record=0), "record"),
    (dict(init=[0.5, 0.6, 0.1]), "sum to 1"), (dict(init=[0.5, 0.5]), "length 3"), (dict(init=[1.5, -0.5, 0.0]), "non-negative"),
    (dict(backend="jax"), "numpy"), (dict(resume=True), "checkpoint"),
])
def test_run_arguments(kw, msg):
    kw = {"steps": 3, **kw}
    with pytest.raises(ValueError, match=msg):
        algorithms.run(algorithms.MWU(), games.make("cyclic3"), **kw)


def test_run_on_something_that_is_not_a_game():
    with pytest.raises(TypeError, match=re.escape("games.make")):
        algorithms.run(algorithms.MWU(), np.eye(3), 3)
