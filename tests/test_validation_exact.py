"""Bad input to games/ and the algorithm constructors: refused up front, by games.validation, with a
message that names the argument as the user gave it, shows its value and says what is allowed
(issue 9, classes 2-5 and 8; issue 8.5). Counted in the report: every parametrised case is one test.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import algorithms
import games
from games import validation as V

CYC = games.make("cyclic3")
A_ISSUE = np.random.default_rng(1).uniform(-1, 1, (6, 5))

#: every numeric hyperparameter of every algorithm: (class, name, smallest allowed: "positive" or "nonneg")
NUMERIC = [
    (algorithms.MPO, "eta", "positive"), (algorithms.MPO, "alpha", "positive"), (algorithms.MPO, "tol", "positive"),
    (algorithms.MMD, "eta", "positive"), (algorithms.MMD, "alpha", "nonneg"),
    (algorithms.NashMD, "eta", "positive"), (algorithms.NashMD, "beta", "positive"),
    (algorithms.MirrorProx, "eta", "positive"), (algorithms.MirrorProx, "beta", "positive"),
    (algorithms.EGPO, "eta", "positive"), (algorithms.EGPO, "beta", "positive"),
    (algorithms.INPO, "eta", "positive"), (algorithms.INPO, "tau", "positive"),
    (algorithms.MNPO, "eta", "positive"), (algorithms.MNPO, "tau", "positive"),
    (algorithms.MWU, "eta", "positive"), (algorithms.OMWU, "eta", "positive"),
]
ids = [f"{c.__name__}.{n}" for c, n, _ in NUMERIC]


def _kw(cls, name, value):
    kw = {name: value}
    if cls is algorithms.NashMD and name == "eta":
        kw["schedule"] = "constant"
    return kw


def refused(fn, name, exc=ValueError):
    """fn() raises ``exc`` whose message says "NAME = VALUE is not allowed; RULE"."""
    with pytest.raises(exc) as e:
        fn()
    msg = str(e.value)
    assert re.search(rf"(^|: ){re.escape(name)} = .+ is not allowed; .+", msg), msg
    return msg


# -- class 4/5: numbers only, every hyperparameter, the same rule ----------------------------------------------
GARBAGE = ["0.1", "abc", b"0.1", True, False, 1 + 2j, [[0.1, 0.2]], [], ["0.1"], {"eta": 0.1}, object(),
           float("nan"), float("inf"), -float("inf"), np.array([[0.1]]), np.array(["0.1"])]


@pytest.mark.parametrize("cls,name,kind", NUMERIC, ids=ids)
@pytest.mark.parametrize("value", GARBAGE, ids=lambda v: type(v).__name__ + ":" + repr(v)[:12])
def test_every_hyperparameter_refuses_garbage_naming_itself(cls, name, kind, value):
    msg = refused(lambda: cls(**_kw(cls, name, value)), name)
    assert msg.startswith(f"{cls.__name__}: {name} = ")


@pytest.mark.parametrize("cls,name,kind", NUMERIC, ids=ids)
def test_every_hyperparameter_refuses_out_of_range(cls, name, kind):
    refused(lambda: cls(**_kw(cls, name, -1.0)), name)
    if kind == "positive":
        refused(lambda: cls(**_kw(cls, name, 0.0)), name)
    else:
        cls(**_kw(cls, name, 0.0))


@pytest.mark.parametrize("cls,name,kind", NUMERIC, ids=ids)
def test_numeric_strings_are_refused_consistently(cls, name, kind):
    # issue 9 class 4: "0.1" was accepted for eta but crashed for alpha/beta/tau: numbers only, everywhere
    # (a TypeError too, except MPO's eta, whose one allowed string is 'fast': a wrong word is a bad value there)
    refused(lambda: cls(**_kw(cls, name, "0.1")), name, ValueError if (cls, name) == (algorithms.MPO, "eta") else TypeError)


@pytest.mark.parametrize("cls,name,kind", NUMERIC, ids=ids)
def test_numpy_numbers_and_per_game_arrays_are_accepted(cls, name, kind):
    cls(**_kw(cls, name, np.float32(0.1)))
    cls(**_kw(cls, name, np.int64(1)))
    cls(**_kw(cls, name, np.array([0.1, 0.2])))


def test_a_2d_alpha_is_reported_as_alpha():
    # issue 9 class 5: a 2-D alpha was reported as "eta has shape (1, 2)"
    msg = refused(lambda: algorithms.MMD(alpha=np.array([[0.1, 0.2]])), "alpha")
    assert "eta" not in msg and "(1, 2)" in msg


@settings(max_examples=150, deadline=None)
@given(which=st.sampled_from(range(len(NUMERIC))),
       value=st.one_of(st.text(max_size=5), st.binary(max_size=3), st.booleans(), st.complex_numbers(),
                       st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                       st.lists(st.floats(allow_nan=True), max_size=3), st.none(),
                       st.lists(st.lists(st.floats(0.1, 1), min_size=1, max_size=2), min_size=1, max_size=2)))
def test_random_garbage_is_refused_or_valid(which, value):
    """Any value is either a valid hyperparameter (a finite real > 0, >= 0 for MMD's alpha, a 1-D
    non-empty array of them, or None) or refused with a ValueError naming the argument."""
    cls, name, kind = NUMERIC[which]
    arr = None
    if not isinstance(value, (str, bytes, bool, complex)) and value is not None:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
    ok_range = (lambda a: np.all(a > 0)) if kind == "positive" else (lambda a: np.all(a >= 0))
    valid = (value is None and name != "tol") or (cls is algorithms.MPO and name == "eta" and value == "fast") or (
        arr is not None and arr.ndim <= 1 and arr.size > 0 and np.all(np.isfinite(arr)) and ok_range(arr)
        and not (arr.ndim == 0 and isinstance(value, list)))
    if valid:
        cls(**_kw(cls, name, value))
    else:
        refused(lambda: cls(**_kw(cls, name, value)), name)


@pytest.mark.parametrize("cls", [algorithms.MMD, algorithms.MirrorProx, algorithms.EGPO, algorithms.INPO])
@pytest.mark.parametrize("value", ["yes", 1, 0, None])
def test_guarantee_must_be_a_boolean(cls, value):
    refused(lambda: cls(guarantee=value), "guarantee", TypeError)


@pytest.mark.parametrize("w", ["0.5", ["0.5", "0.5"], [[0.5, 0.5]], [1 + 1j], [np.inf, 1.0], 3.0])
def test_mnpo_weights_are_numbers(w):
    refused(lambda: algorithms.MNPO(weights=w), "weights")


@pytest.mark.parametrize("sched", ["cosine", 3, ["decreasing"]])
def test_nash_md_schedule(sched):
    refused(lambda: algorithms.NashMD(schedule=sched), "schedule")


@pytest.mark.parametrize("bad", [lambda t: "0.1", lambda t: -1.0, lambda t: float("nan")])
def test_nash_md_schedule_values_are_checked(bad):
    refused(lambda: algorithms.run(algorithms.NashMD(schedule=bad, beta=0.1), CYC, 2), "schedule(0)")


# -- class 5/2: degenerate derived defaults, the finite-arithmetic bound on regularisation ------------------------
@pytest.mark.parametrize("name", algorithms.available())
@pytest.mark.parametrize("scale", [1e200, -1e200, 1e-200])
def test_extreme_but_representable_payoffs_run(name, scale):
    # issue 9 class 5: ±1e200 payoffs reported "MMD: eta must be > 0; got 0.0" (α/L² overflowed L²)
    r = algorithms.run(algorithms.make(name), games.ZeroSumGame(scale * A_ISSUE), 3)
    assert np.all(np.isfinite(r.history["duality_gap"]))


REGULARISERS = [(algorithms.MPO, "alpha"), (algorithms.MMD, "alpha"), (algorithms.NashMD, "beta"),
                (algorithms.MirrorProx, "beta"), (algorithms.EGPO, "beta"), (algorithms.INPO, "tau"), (algorithms.MNPO, "tau")]


@pytest.mark.parametrize("cls,name", REGULARISERS, ids=[f"{c.__name__}.{n}" for c, n in REGULARISERS])
@pytest.mark.parametrize("value", [1e300, 1e12])
def test_regularisation_beyond_the_finite_arithmetic_bound_is_refused(cls, name, value):
    # issue 9 class 2: MPO(alpha=1e300) gave a NaN policy; the bound is value/L <= 1/tolerance = 1e9
    msg = refused(lambda: algorithms.run(cls(**{name: value}), CYC, 2), name)
    assert "L/" in msg and "rounding" in msg


@pytest.mark.parametrize("cls,name", REGULARISERS, ids=[f"{c.__name__}.{n}" for c, n in REGULARISERS])
def test_regularisation_at_the_bound_is_accepted_and_finite(cls, name):
    L = games.ExactBackend(CYC).lipschitz
    r = algorithms.run(cls(**{name: 0.99e9 * L}), CYC, 3)
    assert np.all(np.isfinite(r.policy))


def test_mmd_eta_times_alpha_overflow_is_refused():
    with pytest.raises(ValueError, match=r"MMD: eta and alpha overflow"):
        algorithms.run(algorithms.MMD(eta=1e305, alpha=1e5), CYC, 1)


@pytest.mark.parametrize("name", ["mwu", "omwu"])
def test_a_step_that_overflows_the_logits_is_refused(name):
    refused(lambda: algorithms.run(algorithms.make(name, eta=1e308), CYC, 1), "eta")


def test_regularized_nash_large_beta_works_and_beyond_the_bound_is_refused():
    pi = games.regularized_nash(CYC, 1e6)  # issue 9 class 8
    assert games.regularized_gap(CYC, pi, 1e6) < 1e-6
    refused(lambda: games.regularized_nash(CYC, 1e300), "beta")


@pytest.mark.parametrize("beta", [1e-7, 1.5631430817542192e-108])  # the second: found by hypothesis
def test_regularized_nash_too_small_beta_is_refused_up_front(beta):
    """Below ~4.7e-7·L the residual's rounding floor exceeds 1e-3: the solver stopped at once and its
    gap check raised a bare RuntimeError (β = 1.56e-108: gap 0.07). Now a clear refusal before any work."""
    refused(lambda: games.regularized_nash(CYC, beta), "beta")
    with pytest.raises(V.InvalidArgument, match="too small to solve in float64.*nash_equilibrium"):
        games.regularized_nash(CYC, beta)
    pi = games.regularized_nash(CYC, 3e-7)  # just above the limit: solved and checked
    assert games.regularized_gap(CYC, pi, 3e-7) < 1e-12


# -- issue 8.5: one rule for zero probabilities wherever a policy enters ----------------------------------------
FACE = "face of the simplex"


@pytest.mark.parametrize("name", algorithms.available())
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_every_algorithm_refuses_a_start_on_the_boundary(name, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    msg = refused(lambda: algorithms.run(algorithms.make(name), CYC, 5, init=[1.0, 0.0, 0.0], backend=backend), "init")
    assert FACE in msg and "mix with uniform" in msg


@pytest.mark.parametrize("name", algorithms.available())
def test_every_algorithm_refuses_a_zero_sum_start_with_a_zero(name):
    x = np.full(6, 1 / 6)
    y = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    msg = refused(lambda: algorithms.run(algorithms.make(name), games.ZeroSumGame(A_ISSUE), 2, init=(x, y)), "init[1] (column)")
    assert FACE in msg


def test_a_torch_tensor_start_with_a_zero_is_refused():
    torch = pytest.importorskip("torch")
    refused(lambda: algorithms.run(algorithms.MPO(), CYC, 2, init=torch.tensor([1.0, 0.0, 0.0]), backend="torch"), "init")


@pytest.mark.parametrize("magnet", [[1.0, 0.0, 0.0], np.array([0.5, 0.5, 0.0])])
def test_mmd_magnet_on_the_boundary_is_refused_at_construction(magnet):
    assert FACE in refused(lambda: algorithms.MMD(magnet=magnet), "magnet")


def test_a_game_reference_on_the_boundary_is_refused_with_the_same_rule():
    assert FACE in refused(lambda: games.PreferenceGame(CYC.P, reference=[0.5, 0.5, 0.0]), "reference")
    assert FACE in refused(lambda: games.ZeroSumGame(A_ISSUE, reference=(np.full(6, 1 / 6), [1, 0, 0, 0, 0])),
                           "reference[1] (column)")


def test_a_magnet_of_the_wrong_length_names_the_magnet():
    # issue 9 class 5: "a policy must ..." without saying "magnet"
    msg = refused(lambda: algorithms.run(algorithms.MMD(magnet=[0.5, 0.5]), CYC, 1), "magnet")
    assert "length 3" in msg


@pytest.mark.parametrize("name", algorithms.available())
def test_an_interior_start_near_a_vertex_leaves_the_face(name):
    """The documented way in: mix with uniform. (From [1, 0, 0] MPO used to stay at gap 0.8.)"""
    start = 0.999 * np.array([1.0, 0.0, 0.0]) + 0.001 / 3
    r = algorithms.run(algorithms.make(name), CYC, 3000, init=start)
    # mass moved onto the action that started (almost) empty (MWU/OMWU: on average; their last iterates cycle)
    assert (r.average_policy if name in ("mwu", "omwu") else r.policy)[1] > 0.05
    if name == "mpo":
        assert r.history["duality_gap"][-1] < 1e-8


# -- dtypes (class 2) ---------------------------------------------------------------------------------------------
# ',': numpy parses comma strings with Python's parser, and it raised SyntaxError (found by hypothesis); 'f8,'
# and 'a,b' parse as structured dtypes and are refused as not floating
@pytest.mark.parametrize("dtype", ["int64", np.int32, "bool", "complex128", "banana", "U3", ",", "f8,", "a,b"])
def test_numpy_backend_accepts_floating_dtypes_only(dtype):
    refused(lambda: algorithms.run(algorithms.MWU(), CYC, 2, dtype=dtype), "dtype")


@pytest.mark.parametrize("dtype", ["int64", "banana", "complex64", ",", np.dtype([("x", "f8")])])
def test_torch_backend_accepts_floating_dtypes_only(dtype):
    pytest.importorskip("torch")
    refused(lambda: algorithms.run(algorithms.MWU(), CYC, 2, backend="torch", dtype=dtype), "dtype")


def test_float32_numpy_backend_runs():
    r = algorithms.run(algorithms.MPO(), CYC, 200, dtype="float32")
    assert r.history["duality_gap"][-1] < 1e-3


# -- metrics with impossible arguments (class 3) -------------------------------------------------------------------
U3 = np.full(3, 1 / 3)


@pytest.mark.parametrize("beta", [-1, -1e-12, float("nan"), float("inf"), "0.1", None, 1j, [[0.1]]])
def test_regularized_gap_beta(beta):
    refused(lambda: games.regularized_gap(CYC, U3, beta), "beta")


def test_regularized_gap_beta_zero_is_the_duality_gap():
    assert games.regularized_gap(CYC, U3, 0) == pytest.approx(games.duality_gap(CYC, U3))


@pytest.mark.parametrize("ref", [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.5, 0.6, -0.1]])
def test_regularized_gap_reference_must_be_interior(ref):
    refused(lambda: games.regularized_gap(CYC, U3, 0.1, reference=ref), "reference")


@pytest.mark.parametrize("p,q,name", [
    ([0.5, 0.5], [1.5, -0.5], "q"), ([0.5, 0.5], [0.5, np.nan], "q"), ([1.5, -0.5], [0.5, 0.5], "p"),
    ([0.5, 0.5], [0.2, 0.3, 0.5], "q"), ([0.5, 0.5], [0.3, 0.3], "q"), (["a", "b"], [0.5, 0.5], "p"),
    ([0.5, 0.5j], [0.5, 0.5], "p"),
])
def test_kl_refuses_what_is_not_a_distribution(p, q, name):
    refused(lambda: games.kl(p, q), name)


def test_kl_values():
    assert games.kl([0.5, 0.5], [1.0, 0.0]) == np.inf  # a real +inf, not a NaN
    assert games.kl([1.0, 0.0], [0.5, 0.5]) == pytest.approx(np.log(2))


@pytest.mark.parametrize("fn", [games.duality_gap, games.exploitability])
@pytest.mark.parametrize("policy", [[0.5, 0.5], [0.5, 0.6, -0.1], [0.2, 0.2, 0.2], "abc", [np.nan, 0.5, 0.5]])
def test_metric_policy_is_checked_and_named(fn, policy):
    refused(lambda: fn(CYC, policy), "policy")


@pytest.mark.parametrize("fn", [games.duality_gap, games.nash_equilibrium, lambda g: games.regularized_nash(g, 0.1)])
def test_a_non_game_is_refused_naming_it(fn):
    refused(lambda: fn(np.eye(3)), "game", TypeError) if fn is not games.duality_gap else \
        refused(lambda: fn(np.eye(3), U3), "game", TypeError)


def test_a_pure_policy_is_fine_for_metrics():
    assert games.duality_gap(CYC, [1.0, 0.0, 0.0]) == pytest.approx(0.8)


# -- game matrices: complex, float32 preferences (class 3, 8) -------------------------------------------------------
@pytest.mark.parametrize("make", [lambda M: games.PreferenceGame(M), lambda M: games.ZeroSumGame(M)])
def test_complex_matrices_are_refused(make):
    M = CYC.P.astype(complex)
    M[0, 1] += 1e-3j
    refused(lambda: make(M), "P" if "Preference" in repr(make(CYC.P)) else "A", TypeError)


def test_a_float32_preference_matrix_is_accepted():
    # issue 9 class 8: a sigmoid of score differences computed in float32 (|P + Pᵀ − 1| ~ 1e-7)
    s = np.random.default_rng(0).normal(size=40).astype(np.float32)
    d = s[:, None] - s[None, :]
    P32 = (np.float32(1) / (np.float32(1) + np.exp(-d))).astype(np.float32)
    assert np.abs(P32 + P32.T - 1).max() > 1e-9
    g = games.PreferenceGame(P32)
    games.nash_equilibrium(g)
    algorithms.run(algorithms.MPO(), g, 10)


def test_a_float32_torch_preference_matrix_is_accepted():
    torch = pytest.importorskip("torch")
    s = torch.randn(50, generator=torch.Generator().manual_seed(0))
    P = torch.sigmoid(s[:, None] - s[None, :])
    assert (P + P.T - 1).abs().max().item() > 1e-9
    games.PreferenceGame(P)


def test_float32_rounding_in_a_float64_matrix_says_how_to_pass_it():
    P = CYC.P.copy()
    P[0, 1] += 2e-8
    msg = refused(lambda: games.PreferenceGame(P), "P")
    assert "float32" in msg
    games.PreferenceGame(P.astype(np.float32))  # as float32, the float32 tolerance applies


def test_the_tolerance_rule_is_one_function_of_the_dtype():
    assert V.tolerance(np.float64) == 1e-9
    assert V.tolerance(np.float32) == pytest.approx(64 * np.finfo(np.float32).eps)
    torch = pytest.importorskip("torch")
    assert V.tolerance(torch.float32) == V.tolerance(np.float32)


# -- nash= metadata (class 3) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("nash,what", [([0.4, 0.3, 0.3], "Nash equilibrium"), ([0.5, 0.5], "length 3"),
                                       ([0.5, 0.6, -0.1], "non-negative"), ([0.3, 0.3, 0.3], "sum to 1"),
                                       ("abc", "real")])
def test_nash_metadata_is_checked(nash, what):
    assert what in refused(lambda: games.PreferenceGame(CYC.P, nash=nash), "nash")


def test_nash_metadata_that_is_an_equilibrium_is_kept():
    g = games.PreferenceGame(CYC.P, nash=games.nash_equilibrium(CYC))
    np.testing.assert_allclose(g.nash, np.array([4, 3, 4]) / 11, atol=1e-12)


def test_zero_sum_nash_must_be_a_pair():
    refused(lambda: games.ZeroSumGame(A_ISSUE, nash=np.full(6, 1 / 6)), "nash")


# -- games.make (class 4/5) --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,kw,name", [
    ((None,), {}, "name"), ((3,), {}, "name"), (("rock",), {}, "name"),
    (("bt_mixture",), dict(k=0), "k"), (("bt_mixture",), dict(k=2.5), "k"), (("bt_mixture",), dict(scale=0), "scale"),
    (("bt_mixture",), dict(k=3, weights=[0.5, 0.5]), "weights"), (("bt_mixture",), dict(weights=[0.2, 0.2, 0.2]), "weights"),
    (("random",), dict(n=0), "n"), (("random",), dict(n="5"), "n"), (("random",), dict(n=True), "n"),
    (("random",), dict(seed=-1), "seed"), (("random",), dict(seed=1.5), "seed"), (("random",), dict(batch=0), "batch"),
    (("random",), dict(size=4), "size"), (("rps",), dict(n=3), "n"), (("random_skew",), dict(scale=-1), "scale"),
    (("condorcet",), dict(eps=0.5), "eps"), (("condorcet",), dict(eps="0.1"), "eps"),
    (("bradley_terry",), dict(scores=[1, np.nan]), "scores"), (("bradley_terry",), dict(scores=[1, 2j]), "scores"),
    (("blotto",), dict(foo=1), "foo"),
])
def test_make_refuses_bad_arguments_naming_them(args, kw, name):
    refused(lambda: games.make(*args, **kw), name)


def test_make_does_not_pass_internal_errors_off_as_bad_arguments(monkeypatch):
    from games import catalogue

    def broken(n: int = 3):
        raise TypeError("an integer is required")  # a bug inside a generator, not the caller's fault

    monkeypatch.setitem(catalogue.BUILTIN, "broken", broken)
    with pytest.raises(TypeError, match="an integer is required") as e:
        games.make("broken", n=3)
    assert "unexpected" not in str(e.value) and not isinstance(e.value, ValueError)


def test_make_unknown_name_suggests_the_nearest():
    assert "did you mean 'cyclic3'" in refused(lambda: games.make("cyclic"), "name")


def test_tile_checks_its_arguments():
    refused(lambda: games.tile(CYC, 0), "B")
    refused(lambda: games.tile(CYC, "2"), "B", TypeError)
    refused(lambda: games.tile(np.eye(2), 2), "game", TypeError)


# -- nash_equilibrium / regularized_nash arguments ------------------------------------------------------------------
@pytest.mark.parametrize("kw,name", [(dict(tol=-1), "tol"), (dict(tol="1e-9"), "tol"), (dict(tol=np.nan), "tol")])
def test_nash_equilibrium_arguments(kw, name):
    refused(lambda: games.nash_equilibrium(CYC, **kw), name)


@pytest.mark.parametrize("kw,name", [
    (dict(beta=-1), "beta"), (dict(beta="0.1"), "beta"), (dict(beta=np.nan), "beta"), (dict(beta=0.0), "beta"),
    (dict(beta=1e300), "beta"), (dict(beta=0.1, tol=0), "tol"), (dict(beta=0.1, max_steps=0), "max_steps"), (dict(beta=0.1, max_steps=2.5), "max_steps"),
    (dict(beta=0.1, reference=[1.0, 0.0, 0.0]), "reference"), (dict(beta=np.array([0.1, 0.2, 0.3])), "beta"),
])
def test_regularized_nash_arguments(kw, name):
    g = games.make("random", n=3, seed=0, batch=2) if "beta" in kw and np.ndim(kw["beta"]) else CYC
    refused(lambda: games.regularized_nash(g, **kw), name)


# -- the message format (every refusal above goes through games.validation.fail) ----------------------------------
def test_validation_errors_are_value_errors_and_wrong_types_are_type_errors_too():
    with pytest.raises(ValueError):
        algorithms.MMD(eta="0.1")
    with pytest.raises(TypeError):
        algorithms.MMD(eta="0.1")
    with pytest.raises(ValueError) as e:
        algorithms.MMD(eta=-1)
    assert not isinstance(e.value, TypeError)


# -- per-game arrays of the wrong length are reported under the name given, before anything is derived ------------
PER_GAME = [(algorithms.MPO, "alpha"), (algorithms.MPO, "eta"), (algorithms.MMD, "alpha"), (algorithms.MMD, "eta"),
            (algorithms.NashMD, "beta"), (algorithms.MirrorProx, "beta"), (algorithms.MirrorProx, "eta"),
            (algorithms.EGPO, "beta"), (algorithms.EGPO, "eta"), (algorithms.INPO, "tau"), (algorithms.INPO, "eta"),
            (algorithms.MNPO, "tau"), (algorithms.MWU, "eta"), (algorithms.OMWU, "eta")]


@pytest.mark.parametrize("cls,name", PER_GAME, ids=[f"{c.__name__}.{n}" for c, n in PER_GAME])
def test_per_game_array_of_the_wrong_length_names_itself(cls, name):
    g = games.make("random", n=4, seed=0, batch=2)
    value = np.array([0.1, 0.2, 0.3]) if name != "eta" or cls not in (algorithms.INPO,) else np.array([5.0, 6.0, 7.0])
    msg = refused(lambda: algorithms.run(cls(**_kw(cls, name, value)), g, 1), name)
    assert "2 values" in msg


# -- what the census of our own entry points found (names, degenerate combinations, loose tolerances) -------------
@pytest.mark.parametrize("names", [True, 3, 1.5, "abc", ["a", "b"], [0.2, 0.3, 0.5], [None, "b", "c"], object()])
def test_action_names(names):
    refused(lambda: games.PreferenceGame(CYC.P, names=names), "names")


@pytest.mark.parametrize("names", [("a", "b"), (["a"] * 6, ["b"] * 4), (["a"] * 6, 5), 3])
def test_zero_sum_action_names(names):
    with pytest.raises(ValueError, match=r"names(\[\d\] \(\w+\))? = .* is not allowed"):
        games.ZeroSumGame(A_ISSUE, names=names)


def test_names_are_kept():
    assert games.PreferenceGame(CYC.P, names=["x", "y", 3]).names == ("x", "y", 3)


@pytest.mark.parametrize("alpha", [0, 0.0, -0.0, np.array([0.1, 0.0])])
def test_mmd_alpha_zero_needs_an_explicit_eta(alpha):
    msg = refused(lambda: algorithms.run(algorithms.MMD(alpha=alpha), CYC, 1), "alpha")
    assert "pass eta" in msg
    algorithms.run(algorithms.MMD(alpha=alpha, eta=0.1), CYC, 1)


@pytest.mark.parametrize("cls", [algorithms.NashMD, algorithms.EGPO])
def test_eta_times_beta_above_one_names_eta(cls):
    kw = dict(eta=20.0, beta=0.2) if cls is algorithms.EGPO else dict(eta=20.0, beta=0.2, schedule="constant")
    assert "eta*beta" in refused(lambda: algorithms.run(cls(**kw), CYC, 1), "eta")


def test_inpo_tau_above_eta_names_tau():
    assert "inverse learning rate" in refused(lambda: algorithms.run(algorithms.INPO(eta=0.1, tau=0.5), CYC, 1), "tau")


@pytest.mark.parametrize("tol", [1.5, 1e-3])
def test_regularized_nash_honours_a_loose_tolerance(tol):
    pi = games.regularized_nash(CYC, 0.1, tol=tol)
    assert np.all(np.isfinite(pi)) and pi.sum() == pytest.approx(1)


def test_a_magnet_array_is_stored_as_a_value_and_works_on_a_batch():
    m = np.array([0.2, 0.3, 0.5], dtype=np.float32)
    a = algorithms.MMD(magnet=m)
    m[0] = 0.9  # the caller's array is not aliased
    assert a.magnet[0] == pytest.approx(0.2)
    r = algorithms.run(a, games.make("random", n=3, seed=0, batch=2), 3)
    assert r.policy.shape == (2, 3)


# -- random garbage at every entry point of games/ (hypothesis): a clean refusal or a finite answer ----------------
GARBAGE_ST = st.one_of(
    st.none(), st.booleans(), st.text(max_size=4), st.binary(max_size=2), st.complex_numbers(),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
    st.lists(st.one_of(st.floats(-2, 2), st.just(float("nan"))), max_size=4),
    st.lists(st.lists(st.floats(-1, 2), min_size=3, max_size=3), min_size=1, max_size=3),
    st.sampled_from([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], np.full((3, 3), 0.5), np.eye(3), (np.full(6, 1 / 6), np.full(5, 0.2))]),
)
ENTRY = {
    "PreferenceGame.P": lambda v: games.PreferenceGame(v),
    "PreferenceGame.reference": lambda v: games.PreferenceGame(CYC.P, reference=v),
    "PreferenceGame.nash": lambda v: games.PreferenceGame(CYC.P, nash=v),
    "ZeroSumGame.A": lambda v: games.ZeroSumGame(v),
    "ZeroSumGame.reference": lambda v: games.ZeroSumGame(A_ISSUE, reference=v),
    "make.name": lambda v: games.make(v),
    "make.random.n": lambda v: games.make("random", n=v),
    "make.bt_mixture.k": lambda v: games.make("bt_mixture", k=v),
    "make.bt_mixture.weights": lambda v: games.make("bt_mixture", weights=v),
    "make.bradley_terry.scores": lambda v: games.make("bradley_terry", scores=v),
    "duality_gap.policy": lambda v: games.duality_gap(CYC, v),
    "duality_gap.zero_sum_policy": lambda v: games.duality_gap(games.ZeroSumGame(A_ISSUE), v),
    "regularized_gap.beta": lambda v: games.regularized_gap(CYC, U3, v),
    "regularized_gap.reference": lambda v: games.regularized_gap(CYC, U3, 0.1, v),
    "kl.q": lambda v: games.kl([0.2, 0.3, 0.5], v),
    "nash_equilibrium.tol": lambda v: games.nash_equilibrium(CYC, tol=v),
    "regularized_nash.beta": lambda v: games.regularized_nash(CYC, v, max_steps=3000),
    "run.init": lambda v: algorithms.run(algorithms.MPO(), CYC, 2, init=v).policy,
    "run.dtype": lambda v: algorithms.run(algorithms.MPO(), CYC, 2, dtype=v).policy,
    "MMD.magnet": lambda v: algorithms.run(algorithms.MMD(magnet=v), CYC, 2).policy,
    "MNPO.weights": lambda v: algorithms.run(algorithms.MNPO(weights=v), CYC, 2).policy,
}


@settings(max_examples=300, deadline=None)
@given(where=st.sampled_from(sorted(ENTRY)), value=GARBAGE_ST)
def test_garbage_anywhere_is_refused_cleanly_or_answered_finitely(where, value):
    try:
        out = ENTRY[where](value)
    except (V.InvalidArgument, FileNotFoundError):
        return  # the validation layer's refusal (WrongType is an InvalidArgument)
    except RuntimeError as e:  # only the solvers may say they did not converge, and say so
        assert where == "regularized_nash.beta" and "not reached" in str(e), (where, value, e)
        return
    parts = out if isinstance(out, tuple) else (out,)
    for p in parts:
        arr = np.asarray(getattr(p, "P", getattr(p, "A", p)), dtype=np.float64) if not isinstance(p, float) else np.asarray(p)
        assert np.all(np.isfinite(arr)) or where == "kl.q", (where, value, out)


# -- the start rule lives in AlgorithmMixin: every log-linear init checks it, Euclidean methods opt out ---------
def test_euclidean_methods_may_start_on_a_face():
    from algorithms.euclidean import OGDA, Extragradient

    for cls in (Extragradient, OGDA):
        r = algorithms.run(cls(), CYC, 400, init=[1.0, 0.0, 0.0])
        assert r.policy[1] > 0.05  # mass moved onto actions that started with none


def test_a_new_log_linear_algorithm_gets_the_start_rule_without_asking():
    from dataclasses import dataclass

    from algorithms.base import AlgorithmMixin, State

    @dataclass(frozen=True)
    class Mine(AlgorithmMixin):
        eta: float = 0.1

        def init(self, backend, policy):
            return State(policy, 0)

        def step(self, backend, state):
            return State(backend.realise(((1.0, state.policy), (self.eta, backend.win_rates(state.policy)))), state.t + 1)

    assert "Mine" in refused(lambda: algorithms.run(Mine(), CYC, 2, init=[0.0, 0.5, 0.5]), "init")
    algorithms.run(Mine(), CYC, 2, init=[0.1, 0.4, 0.5])


def test_the_start_rule_on_the_torch_backend_names_the_slot():
    pytest.importorskip("torch")
    x = np.full(6, 1 / 6)
    y = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    refused(lambda: algorithms.run(algorithms.OMWU(), games.ZeroSumGame(A_ISSUE), 2, init=(x, y), backend="torch"),
            "init[1] (column)")


@pytest.mark.parametrize("beta", [5e-324, 1e-310, 1e-300, 1e-12])
def test_regularized_gap_at_a_tiny_beta_is_the_duality_gap_not_nan(beta):
    # hypothesis found beta = 2.2e-313 giving NaN (q/β overflowed); β → 0 is the unregularised gap
    pi = np.array([0.2, 0.3, 0.5])
    assert games.regularized_gap(CYC, pi, beta) == pytest.approx(games.duality_gap(CYC, pi), abs=1e-9)


def test_regularized_gap_beyond_the_finite_arithmetic_bound_is_refused():
    L = games.ExactBackend(CYC).lipschitz
    games.regularized_gap(CYC, U3, 0.99e9 * L)
    assert "L/" in refused(lambda: games.regularized_gap(CYC, U3, 1.01e9 * L), "beta")


# -- silent ignoring (class 7) in the catalogue -------------------------------------------------------------------
@pytest.mark.parametrize("kw,name", [(dict(n=3), "n"), (dict(seed=1), "seed"), (dict(batch=2), "batch")])
def test_bradley_terry_refuses_arguments_its_scores_make_unused(kw, name):
    refused(lambda: games.make("bradley_terry", scores=[0.0, 1.0, 2.0], **kw), name)


def test_bradley_terry_defaults_are_unchanged():
    s = np.random.default_rng(0).normal(size=5)
    np.testing.assert_allclose(games.make("bradley_terry").P, 1 / (1 + np.exp(-(s[:, None] - s[None, :]))), atol=1e-15)


def test_bt_mixture_takes_k_from_the_weights():
    assert games.make("bt_mixture", weights=[0.25, 0.25, 0.5, 0.0]).n == 5
    refused(lambda: games.make("bt_mixture", k=2, weights=[0.5, 0.25, 0.25]), "weights")
