"""Bad input fails early with a ValueError that says what is wrong and what would be right."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import algorithms
import games

P3 = games.make("cyclic3").P  # L = 0.4
REPO = Path(__file__).resolve().parents[1]


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


# -- the run loop's arguments: refused before the first step, naming the argument ---------------------------
def _f(t, state, m):
    return False


G3 = games.make("cyclic3")

RUN_BAD = [  # (keyword arguments, exception class, pattern the message must contain)
    (dict(steps=-1), ValueError, r"steps = -1"), (dict(steps=2.5), TypeError, r"steps = 2\.5"),
    (dict(steps="3"), TypeError, r"steps = '3'"), (dict(steps=True), TypeError, r"steps = True"),
    (dict(steps=None), TypeError, r"steps = None"),
    (dict(record="some"), ValueError, r"record = 'some'"), (dict(record=0), ValueError, r"record = 0"),
    (dict(record=-2), ValueError, r"record = -2"), (dict(record=2.5), TypeError, r"record = 2\.5"),
    (dict(record=2.0), TypeError, r"record = 2\.0"), (dict(record=True), TypeError, r"record = True"),
    (dict(record=[1.5, 3]), TypeError, r"record = \[1\.5, 3\]"), (dict(record=[3, -1]), ValueError, r"record = "),
    (dict(record={"every": 2}), TypeError, r"record = "), (dict(record=[[1, 2]]), TypeError, r"record = "),
    (dict(callbacks=_f), TypeError, r"callbacks = .*callbacks=\[f\]"),
    (dict(callbacks=[_f, 3]), TypeError, r"callbacks\[1\] = 3"), (dict(callbacks=3), TypeError, r"callbacks = 3"),
    (dict(callbacks="f"), TypeError, r"callbacks = 'f'"), (dict(callbacks={_f}), TypeError, r"callbacks = "),
    (dict(until=float("nan")), ValueError, r"until = nan"), (dict(until=-1e-3), ValueError, r"until = -0\.001"),
    (dict(until=float("inf")), ValueError, r"until = inf"), (dict(until="1e-3"), TypeError, r"until = '1e-3'"),
    (dict(progress="yes"), TypeError, r"progress = 'yes'"), (dict(average=1), TypeError, r"average = 1"),
    (dict(resume=1), TypeError, r"resume = 1"), (dict(as_numpy=0), TypeError, r"as_numpy = 0"),
    (dict(config=[("seed", 1)]), TypeError, r"config = "),
    (dict(checkpoint_every=10), ValueError, r"checkpoint_every = 10.*checkpoint=PATH"),
    (dict(resume=True), ValueError, r"resume = True.*checkpoint=PATH"),
    (dict(checkpoint=3), TypeError, r"checkpoint = 3"),
    (dict(init=[0.5, 0.6, 0.1]), ValueError, r"init.*sum to 1"), (dict(init=[0.5, 0.5]), ValueError, r"init.*length 3"),
    (dict(init=[1.5, -0.5, 0.0]), ValueError, r"init.*non-negative"), (dict(init="uniform"), ValueError, r"init"),
    (dict(init=[0.2, 0.3, 0.5], state="x"), TypeError, r"state = 'x'"),
    (dict(backend="jax"), ValueError, r"backend = 'jax'.*'numpy', 'torch'"),
    (dict(dtype="int64"), ValueError, r"dtype = 'int64'.*floating"), (dict(dtype=bool), ValueError, r"dtype = "),
    (dict(dtype="complex128"), ValueError, r"dtype = 'complex128'"), (dict(dtype="nope"), TypeError, r"dtype = 'nope'"),
]


@pytest.mark.parametrize("kw,exc,msg", RUN_BAD, ids=[",".join(f"{k}={v!r}"[:30] for k, v in kw.items()) for kw, _, _ in RUN_BAD])
def test_run_arguments(kw, exc, msg):
    kw = {"steps": 3, **kw}
    steps = kw.pop("steps")
    with pytest.raises(exc, match=msg) as e:
        algorithms.run(algorithms.MWU(), G3, steps, **kw)
    assert isinstance(e.value, ValueError)  # one `except ValueError` catches every refusal (CLIs, callers)


def test_checkpoint_every_must_be_a_positive_int(tmp_path):
    for every, exc in ((0, ValueError), (-1, ValueError), (2.5, TypeError), ("5", TypeError)):
        with pytest.raises(exc, match=r"checkpoint_every = "):
            algorithms.run(algorithms.MWU(), G3, 3, checkpoint=tmp_path / "c.ckpt", checkpoint_every=every)
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("algo,msg", [(algorithms.MPO, r"algo = .*MPO.*is a class.*MPO\(\)"),
                                      ("mpo", r"algo = 'mpo'.*algorithms\.make\('mpo'\)"),
                                      (3, r"algo = 3.*algorithm"), (None, r"algo = None")])
def test_run_needs_an_algorithm_instance(algo, msg):
    with pytest.raises(TypeError, match=msg):
        algorithms.run(algo, G3, 5)


def test_run_on_something_that_is_not_a_game():
    with pytest.raises(TypeError, match=re.escape("games.make")):
        algorithms.run(algorithms.MWU(), np.eye(3), 3)
    with pytest.raises(TypeError, match=re.escape("games.make('cyclic3')")):
        algorithms.run(algorithms.MWU(), "cyclic3", 3)


def test_backend_options_with_a_backend_object_are_refused():
    be = games.ExactBackend(G3)
    with pytest.raises(ValueError, match=r"backend = 'torch'.*already a backend"):
        algorithms.run(algorithms.MWU(), be, 3, backend="torch")
    with pytest.raises(ValueError, match=r"already a backend"):
        algorithms.run(algorithms.MWU(), be, 3, dtype="float32")


def test_init_and_state_together_are_refused():
    r = algorithms.run(algorithms.MWU(), G3, 2)
    with pytest.raises(ValueError, match=r"init and state were both given"):
        algorithms.run(algorithms.MWU(), G3, 2, state=r.state, init=[0.2, 0.3, 0.5])


class _Blind(games.ExactBackend):
    exact_metrics = False


def test_until_needs_exact_metrics():
    with pytest.raises(ValueError, match=r"until = 0\.01.*exact_metrics is False"):
        algorithms.run(algorithms.MWU(), _Blind(G3), 3, until=0.01)


# -- checkpoints: every bad path or file is refused clearly, before the first step, losing nothing -------------
def _ckpt(tmp_path, steps=2, **kw):
    path = tmp_path / "run.ckpt"
    algorithms.run(algorithms.MPO(), G3, steps, checkpoint=path, **kw)
    return path


def test_a_directory_as_checkpoint_is_refused_before_the_first_step(tmp_path):
    calls = []
    with pytest.raises(ValueError, match=r"checkpoint = .*is a directory"):
        algorithms.run(algorithms.MWU(), G3, 3, checkpoint=tmp_path, callbacks=[lambda *a: calls.append(1)])
    assert calls == [] and list(tmp_path.iterdir()) == []  # no step, no record, no stray .tmp


def test_an_unwritable_checkpoint_location_is_refused_before_the_first_step(tmp_path):
    (tmp_path / "afile").write_text("x")
    calls = []
    with pytest.raises(ValueError, match=r"checkpoint.*writable"):
        algorithms.run(algorithms.MWU(), G3, 3, checkpoint=tmp_path / "afile" / "run.ckpt",
                       callbacks=[lambda *a: calls.append(1)])
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_existing_checkpoint_is_not_overwritten_by_a_new_run(tmp_path):
    path = _ckpt(tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"run\.ckpt.*resume=True"):
        algorithms.run(algorithms.MPO(), G3, 2, checkpoint=path)
    assert path.read_bytes() == before


def test_resume_from_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        algorithms.run(algorithms.MPO(), G3, 4, checkpoint=tmp_path / "missing.ckpt", resume=True)
    assert not list(tmp_path.iterdir())


def _truncated(tmp_path):
    data = _ckpt(tmp_path).read_bytes()
    return data[: len(data) // 2]


BAD_FILES = {
    "empty": lambda tmp: b"",
    "garbage": lambda tmp: b"\x00\x01not a pickle at all\xff" * 10,
    "truncated": _truncated,
    "text": lambda tmp: b"step,gap\n1,0.5\n",
    "foreign pickle": lambda tmp: __import__("pickle").dumps({"weights": [1, 2, 3]}),
    "a list": lambda tmp: __import__("pickle").dumps([1, 2]),
    "older format": lambda tmp: __import__("pickle").dumps({"algorithm": None, "state": None}),
    "unknown format": lambda tmp: __import__("pickle").dumps(
        {"format": 99, "algorithm": None, "state": None, "history": {}, "backend": None, "config": {}}),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_checkpoint_file_is_refused_naming_it(kind, tmp_path):
    path = tmp_path / "run.ckpt"
    data = BAD_FILES[kind](tmp_path)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"checkpoint = '.*run\.ckpt' is not allowed") as e:
        algorithms.run(algorithms.MPO(), G3, 4, checkpoint=path, resume=True)
    assert type(e.value).__module__ == "games.validation"  # not UnpicklingError / EOFError / KeyError
    assert path.read_bytes() == data  # the file is left as it was
    with pytest.raises(ValueError, match=r"run\.ckpt"):
        algorithms.load_checkpoint(path)


def test_a_torch_save_file_is_not_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"model\.pt"):
        algorithms.run(algorithms.MPO(), G3, 4, checkpoint=path, resume=True)


MISMATCH = [  # (what the resumed call changes, the field the refusal names)
    (dict(algo=algorithms.OMWU()), r"algorithm\.class is 'algorithms\.mpo\.MPO' there but 'algorithms\.omwu\.OMWU' now"),
    (dict(algo=algorithms.MPO(alpha=0.3)), r"algorithm\.alpha \(as resolved for this game\) is 0\.2 there but 0\.3 now"),
    (dict(algo=algorithms.MPO(refresh=5)), r"algorithm\.refresh is 10 there but 5 now"),
    (dict(game=games.make("rps")), r"backend\.game_sha256"),
    (dict(backend="torch"), r"backend\.array_library is 'numpy' there but 'torch' now"),
    (dict(dtype="float32"), r"backend\.dtype is 'float64' there but 'float32' now"),
    (dict(config={"seed": 1}), r"seed is 0 there but 1 now"),
    (dict(config={"seed": 0, "lr": 0.1}), r"lr is '<absent>' there but 0\.1 now"),
    (dict(init=[0.2, 0.3, 0.5]), r"init is None there but \[0\.2, 0\.3, 0\.5\] now"),
    (dict(average=False), r"average is True there but False now"),
    (dict(game=games.PreferenceGame(P3, reference=[0.5, 0.25, 0.25])), r"backend\.game_sha256"),  # another reference
]


@pytest.mark.parametrize("change,msg", MISMATCH, ids=[next(iter(c)) + str(i) for i, (c, _) in enumerate(MISMATCH)])
def test_resume_with_a_different_configuration_is_refused_naming_the_field(change, msg, tmp_path):
    if change.get("backend") == "torch" or "dtype" in change:
        pytest.importorskip("torch")
        if "dtype" in change:
            change = {**change, "backend": "torch"}
            msg = r"backend\.(array_library|dtype)"
    path = _ckpt(tmp_path, config={"seed": 0})
    before = path.read_bytes()
    kw = {"algo": algorithms.MPO(), "game": G3, "config": {"seed": 0}, **change}
    with pytest.raises(ValueError, match=r"checkpoint = .*holds a different run: " + msg):
        algorithms.run(kw.pop("algo"), kw.pop("game"), 4, checkpoint=path, resume=True, **kw)
    assert path.read_bytes() == before


def test_resume_to_fewer_steps_than_the_checkpoint_has_is_refused(tmp_path):
    path = _ckpt(tmp_path, steps=5)
    with pytest.raises(ValueError, match=r"steps = 3.*already at iteration 5"):
        algorithms.run(algorithms.MPO(), G3, 3, checkpoint=path, resume=True)


def test_resume_with_a_state_is_refused(tmp_path):
    path = _ckpt(tmp_path)
    r = algorithms.run(algorithms.MPO(), G3, 2)
    with pytest.raises(ValueError, match=r"state and resume=True"):
        algorithms.run(algorithms.MPO(), G3, 4, checkpoint=path, resume=True, state=r.state)


# -- the experiment CLIs: one line on stderr naming the flag, exit status 2, nothing written, no work done -------
CLI_BAD = [  # (script, flags, the start of the one-line message after "SCRIPT: ")
    ("convergence", ["--random-games", "0"], "--random-games = 0 is not allowed"),
    ("convergence", ["--random-games", "-3"], "--random-games = -3 is not allowed"),
    ("convergence", ["--steps", "0"], "--steps = 0 is not allowed"),
    ("convergence", ["--steps", "2.5"], "--steps = '2.5' is not allowed"),
    ("convergence", ["--steps", "abc"], "--steps = 'abc' is not allowed"),
    ("convergence", ["--seed", "-1"], "--seed = -1 is not allowed"),
    ("convergence", ["--algorithms", "mpo", "foo"], "--algorithms = 'foo' is not allowed"),
    ("convergence", ["--algorithms"], "--algorithms = (nothing) is not allowed"),
    ("convergence", ["--games", "cyclic3", "nope"], "--games = 'nope' is not allowed"),
    ("convergence", ["--games", "random1"], "--games = 'random1' is not allowed"),
    ("convergence", ["--init", "foo"], "--init = 'foo' is not allowed"),
    ("convergence", ["--hparams", "omwu.eta=1", "omwu.eta=2"], "--hparams = 'omwu.eta=2' is not allowed; omwu.eta is given twice"),
    ("convergence", ["--hparams", "mpo.alpha=-1"], "--hparams mpo.alpha=-1: MPO"),
    ("convergence", ["--hparams", "mpo.alpha=abc"], "--hparams mpo.alpha=abc: MPO"),
    ("convergence", ["--hparams", "foo.eta=1"], "--hparams = 'foo.eta=1' is not allowed"),
    ("convergence", ["--hparams", "eta"], "--hparams = 'eta' is not allowed"),
    ("convergence", ["--hparams", "mpo.beta=1"], "--hparams mpo.beta=1: MPO got an unexpected hyperparameter"),
    ("convergence", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("convergence", ["--algorithms", "mpo", "omwu", "mpo"], "--algorithms = 'mpo' is not allowed; it is given twice"),
    ("scaling", ["--sizes", "3", "10", "3"], "--sizes = 3 is not allowed; it is given twice"),
    ("last_vs_average", ["--random-games", "0"], "--random-games = 0 is not allowed"),
    ("last_vs_average", ["--algorithms", "mwu", "dpo"], "--algorithms = 'dpo' is not allowed"),
    ("scaling", ["--sizes", "0"], "--sizes = 0 is not allowed"),
    ("scaling", ["--sizes", "1"], "--sizes = 1 is not allowed"),
    ("scaling", ["--eps", "0"], "--eps = 0.0 is not allowed"),
    ("scaling", ["--budget", "-5"], "--budget = -5 is not allowed"),
    ("qre", ["--alphas", "0"], "--alphas = 0.0 is not allowed"),
    ("qre", ["--alphas", "nan"], "--alphas = nan is not allowed"),
    ("qre", ["--game", "nope"], "--game = 'nope' is not allowed"),
    ("rates", ["--algorithms", "mpo"], "--algorithms = 'mpo' is not allowed"),
    ("rates", ["--betas", "-0.1"], "--betas = -0.1 is not allowed"),
    ("regularization_bias", ["--run-betas", "0"], "--run-betas = 0.0 is not allowed"),
    ("regularization_bias", ["--algorithms", "mwu"], "--algorithms = 'mwu' is not allowed"),
    ("mpo_refresh", ["--refresh", "0"], "--refresh = '0' is not allowed"),
    ("mpo_refresh", ["--target", "-1"], "--target = -1.0 is not allowed"),
    ("mpo_refresh", ["--games", "cyclic3", "bradley_terry"], "--games = 'cyclic3 bradley_terry' is not allowed"),
    ("mpo_refresh", ["--games", "matrix_rps"], "--games = 'matrix_rps' is not allowed"),
    ("train", ["--checkpoint-every", "-1"], "--checkpoint-every = -1 is not allowed"),
    ("train", ["--checkpoint-every", "0"], "--checkpoint-every = 0 is not allowed"),
    ("train", ["--backend", "jax"], "--backend = 'jax' is not allowed"),
    ("train", ["--algo", "dpo"], "--algo = 'dpo' is not allowed"),
    ("train", ["--game", "chess"], "--game = 'chess' is not allowed"),
    ("train", ["--steps", "-1"], "--steps = -1 is not allowed"),
    ("train", ["--record", "-2"], "--record = -2 is not allowed"),
    ("train", ["--hparams", "eta=1", "eta=2"], "--hparams = 'eta=2' is not allowed; eta is given twice"),
    ("train", ["--hparams", "eta=-1"], "--hparams eta=-1: MPO"),
    ("train", ["--hparams", "mpo.eta=0.1"], "--hparams = 'mpo.eta=0.1' is not allowed; this script runs one algorithm"),
    ("train", ["--game", "random", "--game-args", "n=1"], "--game-args n=1:"),
    ("train", ["--game", "random", "--game-args", "n=4", "n=5"], "--game-args = 'n=5' is not allowed"),
    ("train", ["--backend", "exact", "--model", "m", "--oracle", "reward"], "--model = 'm' is not allowed"),
    ("train", ["--backend", "llm", "--init", "random"], "--init = 'random' is not allowed"),
]


def _cli_ids(cases):
    return [f"{s}:{' '.join(a)}"[:60] for s, a, _ in cases]


@pytest.mark.parametrize("script,flags,msg", CLI_BAD, ids=_cli_ids(CLI_BAD))
def test_cli_refuses_bad_flags_in_one_line_before_any_work(script, flags, msg, tmp_path, capsys, monkeypatch):
    import importlib

    module = importlib.import_module(f"experiments.{script}")
    ran = []
    if hasattr(module, "run"):
        monkeypatch.setattr(module, "run", lambda cfg: ran.append(cfg) or [])
    monkeypatch.setattr(algorithms, "run", lambda *a, **k: ran.append(a))
    out, fig = tmp_path / "out", tmp_path / "fig"
    with pytest.raises(SystemExit) as e:
        module.main([*flags, "--out", str(out), "--figures", str(fig)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{script}: {msg}"), err
    assert "Traceback" not in err
    assert not ran and not out.exists() and not fig.exists()  # refused before any work; nothing written


@pytest.mark.parametrize("script,flags,msg", [
    ("convergence", ["--random-games", "0"], "--random-games = 0"),
    ("scaling", ["--sizes", "0"], "--sizes = 0"),
    ("train", ["--checkpoint-every", "-1"], "--checkpoint-every = -1"),
    ("train", ["--algo", "nope"], "--algo = 'nope'"),
])
def test_cli_refusal_as_a_process(script, flags, msg, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", f"experiments.{script}", *flags, "--out", str(tmp_path / "out"),
                        "--figures", str(tmp_path / "fig")], cwd=REPO, capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"{script}: {msg} is not allowed"), r.stderr
    assert r.stdout == "" and not (tmp_path / "out").exists() and not (tmp_path / "fig").exists()


def test_cli_unwritable_out_is_refused_before_any_run(tmp_path, capsys, monkeypatch):
    from experiments import convergence

    (tmp_path / "afile").write_text("x")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where the default --out (results/) would be made
    ran = []
    monkeypatch.setattr(convergence, "run", lambda cfg: ran.append(cfg) or [])
    for flag, value in (("--out", str(tmp_path / "afile" / "sub")), ("--figures", str(tmp_path / "afile")),
                        ("--out", ""), ("--figures", " ")):
        with pytest.raises(SystemExit) as e:
            convergence.main(["--quick", flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"convergence: {flag} = ") and err.count("\n") == 1, err
    assert not ran and not list((tmp_path / "cwd").iterdir())  # no directory made for a refused run


def test_cli_plot_only_without_results(tmp_path, capsys):
    from experiments import convergence

    with pytest.raises(SystemExit) as e:
        convergence.main(["--plot-only", "--out", str(tmp_path / "none"), "--figures", str(tmp_path / "fig")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("convergence: --plot-only: no results at") and err.count("\n") == 1
    assert not (tmp_path / "fig").exists()


def test_cli_hparams_parse_into_numbers_and_the_valid_ones_are_accepted(tmp_path):
    from experiments import common

    assert common.parse_hparams(["mpo.alpha=0.5", "refresh=20", "mpo.refresh=adaptive"]) == {
        "mpo": {"alpha": 0.5, "refresh": "adaptive"}, None: {"refresh": 20}}
    algos = common.build_algorithms(["mpo", "omwu"], ["mpo.alpha=0.5", "omwu.eta=0.2"])
    assert algos["mpo"].alpha == 0.5 and algos["omwu"].eta == 0.2


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["mpo.alpha", "mmd.eta", "omwu.eta", "mpo.refresh", "mmd.magnet"]),
       st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.integers(-10**6, 10**6).map(str)))
def test_cli_garbage_hyperparameters_are_accepted_or_refused_in_one_line(key, value):
    """Random text for a hyperparameter: either a valid value (the run starts) or one line, exit 2."""
    import contextlib
    import io

    from experiments import convergence

    started = []
    err = io.StringIO()
    orig = convergence.run
    convergence.run = lambda cfg: started.append(cfg) or []
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                convergence.main(["--algorithms", "mpo", "mmd", "omwu", "--games", "cyclic3", "--plot-only",
                                  "--hparams", f"{key}={value}", "--out", "/nonexistent-h2", "--figures", "/nonexistent-h2"])
            except SystemExit as e:
                assert e.code == 2
                text = err.getvalue()
                assert text.count("\n") == 1 and text.startswith("convergence: ") and "Traceback" not in text, text
    finally:
        convergence.run = orig
    assert not started  # --plot-only: never runs, whatever the hyperparameters


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=5), st.lists(st.integers(-3, 8), max_size=4), st.lists(st.floats(0, 1), max_size=4),
                 st.just(_f), st.just(algorithms.MPO), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["steps", "record", "until", "callbacks", "progress", "average", "init", "checkpoint_every",
                        "resume", "as_numpy", "config"]), _ANY)
def test_run_garbage_arguments_are_accepted_or_refused_with_a_value_error(name, value):
    """Random values for any argument of run(): a run, or a ValueError that names the argument."""
    kw = {"steps": 3, name: value}
    steps = kw.pop("steps")
    try:
        algorithms.run(algorithms.MWU(), G3, steps, **kw)
    except ValueError as e:  # validation errors (WrongType is a ValueError too)
        assert name in str(e) or (name == "init" and "policy" in str(e)), str(e)
