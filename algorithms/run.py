"""The run loop: drive an algorithm on a backend, record metrics, show progress, checkpoint.

One checkpoint mechanism for every backend (the exact one and the LLM one): a checkpoint file holds
the algorithm, its state, the history recorded so far, the backend's own state (its RNGs, counters,
model weights: ``backend.state_dict()`` where the backend has one), torch's global RNG where torch
is loaded, and the run's configuration. Re-issuing the same ``run(..., checkpoint=PATH,
resume=True)`` after a kill finishes the same run, bit-identical to one that was never interrupted.

What the loop asks of a backend beyond the algorithms' interface (all optional):

- ``exact_metrics: bool`` (default True): the duality gaps are recorded (and ``until=`` allowed)
  only when True;
- ``extra_metrics(policy) -> dict[str, float]``: more metrics, recorded at every record point;
- ``state_dict()`` / ``load_state_dict(d)``: the backend's own state (RNGs, counters, weights),
  saved in every checkpoint and restored on resume;
- ``fingerprint() -> dict``: what a resumed run must match (JSON-able);
- ``checkpoint_shared() -> dict[str, object]``: large objects the run's state refers to but that
  the backend rebuilds itself (a frozen base model shared by every snapshot, say): a checkpoint
  stores a reference to each by its key instead of a copy, and a resume resolves the reference to
  the new backend's object.
"""
from __future__ import annotations

import hashlib
import numbers
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from games import validation as V

#: the checkpoint file format written by :func:`run` (a dict; see :func:`load_checkpoint`)
FORMAT = 1
#: without checkpoint_every, a checkpoint is written at the first record point this long after the last one
CHECKPOINT_SECONDS = 30.0
#: recorded on every backend with exact metrics (``backend.exact_metrics``; see :func:`run`)
EXACT_METRICS = ("duality_gap", "regularized_gap", "average_gap")


@dataclass
class RunState:
    """Everything needed to continue a run exactly: the algorithm's state plus bookkeeping."""

    algo_state: object
    queries: int = 0
    avg: tuple | None = None  # running mean of π_1..π_t (probabilities, backend arrays)

    @property
    def t(self):
        return self.algo_state.t


@dataclass
class Result:
    """What ``run`` returns. ``policy``/``average_policy`` are probabilities (a pair for a zero-sum
    game): numpy arrays, or the backend's own arrays (e.g. torch tensors on their device) when
    ``as_numpy`` is False. ``history`` maps metric names to numpy arrays indexed by record (and
    game, if batched); after a resume it holds the records from before the checkpoint too."""

    algorithm: object
    backend: object
    state: RunState
    history: dict = field(default_factory=dict)
    as_numpy: bool = True

    def _out(self, policy):
        if self.as_numpy or not hasattr(self.backend, "to_arrays"):
            return self.backend.to_numpy(policy)
        return self.backend.to_arrays(policy)

    @property
    def policy(self):
        return self._out(self.state.algo_state.policy)

    @property
    def average_policy(self):
        if self.state.avg is None:
            return self.policy
        return self._out(self.backend.from_average(self.state.avg))

    @property
    def steps(self):
        return self.state.t


# -- the record schedule -----------------------------------------------------------------------------
_RECORD_RULE = "it must be None, 'all', an int period >= 1, or a list of iterations (ints >= 0)"


def _check_record(record):
    """``record`` as given, refused (naming it) unless it is one of the documented forms."""
    if record is None:
        return None
    if isinstance(record, str):
        if record != "all":
            V.fail("record", record, _RECORD_RULE)
        return record
    if isinstance(record, (bool, np.bool_)):
        V.fail("record", record, _RECORD_RULE, cls=V.WrongType)
    if isinstance(record, numbers.Integral):
        if record < 1:
            V.fail("record", record, _RECORD_RULE)
        return int(record)
    if isinstance(record, numbers.Number):  # 2.5, 2.0, complex: a period must be an int
        V.fail("record", record, _RECORD_RULE, cls=V.WrongType)
    if not isinstance(record, (list, tuple, range, np.ndarray)):
        V.fail("record", record, f"{_RECORD_RULE} (got a {type(record).__name__})", cls=V.WrongType)
    arr = np.asarray(record)
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu")):
        V.fail("record", record, _RECORD_RULE, cls=V.WrongType)
    if arr.size and arr.min() < 0:
        V.fail("record", record, _RECORD_RULE)
    return record


def record_points(steps: int, record=None, start: int = 0) -> np.ndarray:
    """Iterations (in [start, start+steps]) at which metrics are recorded.

    None: every step for runs of at most 1000 steps, else ~400 log-spaced iterations (memory stays
    bounded however long the run); "all": every step; an int k: every k steps; or explicit iterations.
    """
    steps = V.integer(steps, "steps", low=0)
    record = _check_record(record)
    end = start + steps
    if record is None:
        if steps <= 1000:
            pts = np.arange(start, end + 1)
        else:
            pts = np.unique(np.round(np.geomspace(1, steps + 1, 400)).astype(np.int64) - 1 + start)
    elif isinstance(record, str):
        pts = np.arange(start, end + 1)
    elif isinstance(record, int):
        pts = np.arange(start, end + 1, record)
    else:
        pts = np.asarray(sorted(set(int(x) for x in record)), dtype=np.int64)
        pts = pts[(pts >= start) & (pts <= end)]
    return np.unique(np.concatenate([pts, [start, end]]).astype(np.int64))


def make_backend(game, backend="numpy", device=None, dtype=None):
    """A backend for ``game`` (a game object, or an already built backend, returned as is)."""
    if hasattr(game, "win_rates") and hasattr(game, "realise"):
        if (backend, device, dtype) != ("numpy", None, None):
            V.fail("backend", backend if backend != "numpy" else (device or dtype),
                   f"backend/device/dtype choose how a game is run; {type(game).__name__} is already a backend "
                   "(give the game instead, or leave them out)")
        return game
    if isinstance(game, str):
        V.fail("game", game, f"it must be a game or a backend; build the game with games.make({game!r})",
               cls=V.WrongType)
    V.choice(backend, "backend", ("numpy", "torch"))
    if backend == "numpy" and dtype is not None:
        # an integer dtype would round every log-probability: the policy never moves, gaps read 0
        V.float_dtype(dtype, "dtype")
    from games.exact import ExactBackend

    return ExactBackend(game, backend=backend, device=device, dtype=dtype)


def _all_le(x, bound) -> bool:
    """Whether every entry of a backend array is <= bound; reduced where the array lives, so a GPU
    run transfers one boolean, not a value per game."""
    le = x <= bound
    return bool(le.all()) if hasattr(le, "all") else bool(le)


def _metrics(algo, backend, state: RunState, average: bool, exact: bool):
    """The metrics recorded at one record point: the exact gaps where the backend can measure them,
    and whatever the backend adds (``backend.extra_metrics(policy)``, e.g. an LLM's loss or KL)."""
    # Only the recorded values (one per game) leave the backend's device.
    def ops_to_np(x):
        return backend.host(x) if hasattr(backend, "host") else np.float64(x)

    s = state.algo_state
    out = {}
    if exact:
        out["duality_gap"] = ops_to_np(backend.duality_gap(s.policy))
        reg = algo.regularization(s)
        if reg is not None:
            beta, magnet = reg
            out["regularized_gap"] = ops_to_np(backend.regularized_gap(s.policy, beta, magnet))
        if state.avg is not None:
            out["average_gap"] = ops_to_np(backend.duality_gap(backend.from_average(state.avg)))
        elif average:  # before the first step the only iterate is π_0: its gap keeps the rows aligned
            out["average_gap"] = out["duality_gap"]
    extra = getattr(backend, "extra_metrics", None)
    if extra is not None:
        for k, v in dict(extra(s.policy)).items():
            if k in ("iteration", "queries") or (k in out):
                raise ValueError(f"{type(backend).__name__}.extra_metrics returned {k!r}, a name the run loop "
                                 "records itself; rename it")
            out[k] = np.asarray(v, dtype=np.float64) if not isinstance(v, np.ndarray) else v
    return out


def _check_per_game(algo, backend):
    """Per-game hyperparameters are 1-D, one value per game of the batch (any length on a single game)."""
    import dataclasses

    batch = tuple(getattr(backend, "batch_shape", ()) or ())
    for f in dataclasses.fields(algo):
        v = getattr(algo, f.name)
        if isinstance(v, np.ndarray) and v.ndim >= 1:
            if v.ndim != 1 or (batch and v.shape != batch[:1]):
                want = f"{batch[0]} values (one per game)" if batch else "a 1-D array (one value per game)"
                V.fail(f"{type(algo).__name__}: {f.name}", f"<array of shape {v.shape}>",
                       f"this game needs a number or {want}")


# -- the run's configuration (what a resume must match) -------------------------------------------------
def _canon(v):
    """A comparable, printable form of a configuration value (numbers, strings, lists, dicts;
    arrays by value up to 16 entries, by shape and hash beyond; other objects by their type)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    arr = None
    if isinstance(v, np.ndarray):
        arr = v
    elif type(v).__module__.startswith("torch") and hasattr(v, "detach"):
        arr = v.detach().cpu().numpy()
    if arr is not None:
        if arr.dtype.kind in "iufb" and arr.size <= 16:
            return _canon(arr.tolist())
        h = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
        return {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": h}
    return f"<{type(v).__module__}.{type(v).__qualname__}>"


def _algorithm_config(algo) -> dict:
    import dataclasses

    out = {"class": f"{type(algo).__module__}.{type(algo).__qualname__}"}
    if dataclasses.is_dataclass(algo):
        out.update({f.name: _canon(getattr(algo, f.name)) for f in dataclasses.fields(algo)})
    return out


def _backend_config(be) -> dict:
    fp = getattr(be, "fingerprint", None)
    out = {"class": f"{type(be).__module__}.{type(be).__qualname__}"}
    if fp is not None:
        out.update(_canon(dict(fp())))
    return out


def _run_config(config, given, bound, be, init, average) -> dict:
    """The configuration saved with a checkpoint and compared on resume, in the order a difference
    is reported: the caller's own ``config``, the backend's fingerprint, ``init``, ``average``, the
    algorithm as given, and its hyperparameters as resolved for this game by ``bind``."""
    return {"config": _canon(config or {}), "backend": _backend_config(be), "init": _canon(init),
            "average": bool(average), "algorithm": _algorithm_config(given), "resolved": _algorithm_config(bound)}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    return type(a) is type(b) and a == b if not isinstance(a, (dict, list)) else False


def _first_difference(saved, given, path=""):
    """(field, saved value, given value) of the first difference between two canonical configs."""
    if isinstance(saved, dict) and isinstance(given, dict):
        for k in list(saved) + [k for k in given if k not in saved]:
            sub = f"{path}.{k}" if path else k
            if k not in saved or k not in given:
                return sub, saved.get(k, "<absent>"), given.get(k, "<absent>")
            d = _first_difference(saved[k], given[k], sub)
            if d:
                return d
        return None
    if isinstance(saved, list) and isinstance(given, list) and len(saved) == len(given):
        for i, (a, b) in enumerate(zip(saved, given)):
            d = _first_difference(a, b, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if _same(saved, given) else (path, saved, given)


def _config_difference(saved, given):
    """(field, saved value, given value) of the first difference that matters, or None.

    A default left as None in the saved algorithm matches any value now (the caller may pass the
    bound algorithm, ``result.algorithm``); the resolved hyperparameters are compared after that,
    so what ``bind`` derives from the game is checked too, and named as resolved.
    """
    saved, given = dict(saved), dict(given)
    sa, ga = dict(saved.get("algorithm", {})), dict(given.get("algorithm", {}))
    explicit = [k for k, v in ga.items() if v is not None]  # what the caller set: reported first
    for k in list(sa):
        if sa[k] is None and k in ga:
            ga[k] = None
    saved["algorithm"], given["algorithm"] = sa, ga
    for key in ("resolved",):
        for d in (saved, given):
            r = dict(d.get(key, {}))
            d[key] = {**{k: r[k] for k in explicit if k in r}, **r}
    d = _first_difference(saved, given)
    if d is None:
        return None
    name, was, now = d
    if name.startswith("config."):  # the caller's config keys as given (e.g. its command-line flags)
        name = name[len("config."):]
    elif name.startswith("resolved."):
        name = f"algorithm.{name[len('resolved.'):]} (as resolved for this game)"
    return name, was, now


# -- checkpoint files ----------------------------------------------------------------------------------
def _global_rng():
    """torch's global RNG (CPU, and CUDA where initialised) when torch is loaded: a backend that
    draws from it (dropout, say) then resumes exactly too. numpy's and Python's global RNGs are not
    used by this library."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_global_rng(saved):
    if not saved:
        return
    import torch

    torch.set_rng_state(saved["torch"])
    if "torch_cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["torch_cuda"])


class _Shared:
    """What a checkpoint refers to instead of storing: one of the backend's shared objects, seen by
    :func:`load_checkpoint` without the backend that would resolve it."""

    def __init__(self, key):
        self.key = key

    def __repr__(self):
        return f"<shared object {self.key!r} of the backend (not stored in the checkpoint)>"


class _Pickler(pickle.Pickler):
    # The backend's shared objects (``backend.checkpoint_shared()``: e.g. the frozen base model
    # that every LoRA snapshot refers to) are written as a reference, not copied into every file.
    def __init__(self, f, shared):
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self._ids = {id(o): k for k, o in (shared or {}).items()}

    def persistent_id(self, obj):
        return self._ids.get(id(obj)) if self._ids else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, shared):
        super().__init__(f)
        self._shared = shared

    def persistent_load(self, pid):
        if self._shared is None:
            return _Shared(pid)
        if pid not in self._shared:
            raise pickle.UnpicklingError(f"it refers to a shared object {pid!r} that this backend does not have")
        return self._shared[pid]


def _shared_objects(be):
    fn = getattr(be, "checkpoint_shared", None)
    return dict(fn()) if fn is not None else {}


def _save(path, payload, shared=None):
    """Write ``payload`` atomically: a crash mid-write never corrupts the last good checkpoint, and
    a failed write leaves no ``.tmp`` behind."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            if shared:
                _Pickler(f, shared).dump(payload)
            else:  # no per-object hook: the plain C pickler
                pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_KEYS = ("format", "algorithm", "state", "history", "backend", "config")


def load_checkpoint(path, shared=None) -> dict:
    """The checkpoint that ``run(..., checkpoint=path)`` wrote, as a dict with the keys
    ``format`` (1), ``algorithm`` (bound), ``state`` (:class:`RunState`), ``history`` (metric →
    list of records), ``backend`` (``backend.state_dict()`` or None), ``config`` (what a resume
    must match), ``origin`` (the iteration the run started at), ``stopped`` (True when ``until``
    or a callback ended it) and ``rng`` (torch's global RNG, or None).

    shared: the backend's shared objects (``backend.checkpoint_shared()``), which the file refers
    to rather than stores; without them such references load as placeholders.

    Raises FileNotFoundError (no such file), or ValueError naming the path when the file is not a
    checkpoint of this format (empty, truncated, garbage, another program's pickle). Checkpoints
    are pickles: load only files you wrote.
    """
    if path is None or isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        V.fail("checkpoint", path, "it must be a file path", cls=V.WrongType)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint = {str(p)!r}: no such file (resume=True continues a run from its "
                                "checkpoint; start the run without resume to create one)")
    if p.is_dir():
        V.fail("checkpoint", str(p), "it is a directory; give the checkpoint file's path")
    try:
        with open(p, "rb") as f:
            d = _Unpickler(f, shared).load()
    except Exception as e:  # empty, truncated, garbage, a module that no longer exists...
        why = "it is empty" if p.stat().st_size == 0 else f"it cannot be read ({type(e).__name__}: {e})"
        V.fail("checkpoint", str(p), f"it is not a readable nashlab run checkpoint: {why}; "
               "delete it or give another path")
    if not isinstance(d, dict) or any(k not in d for k in _KEYS):
        V.fail("checkpoint", str(p), "it is not a nashlab run checkpoint (a different file, or one written "
               "by an older version); give another path")
    if d["format"] != FORMAT:
        V.fail("checkpoint", str(p), f"it has format {d['format']!r}; this version reads format {FORMAT}")
    if not isinstance(d["state"], RunState) or not isinstance(d["history"], dict):
        V.fail("checkpoint", str(p), "it is damaged (no run state or history)")
    d.setdefault("origin", 0)
    d.setdefault("stopped", False)
    d.setdefault("rng", None)
    return d


def _checkpoint_path(checkpoint):
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, (str, os.PathLike)):
        V.fail("checkpoint", checkpoint, "it must be a file path (str or os.PathLike)", cls=V.WrongType)
    return str(V.writable_file(checkpoint, "checkpoint"))


# -- argument checks ---------------------------------------------------------------------------------------
def _check_algorithm(algo):
    if isinstance(algo, type):
        V.fail("algo", algo, f"it is a class; pass an instance, e.g. {algo.__name__}() "
               f"(or algorithms.make(name, **hyperparameters))", cls=V.WrongType)
    if isinstance(algo, str):
        V.fail("algo", algo, f"it must be an algorithm; build one with algorithms.make({algo!r})", cls=V.WrongType)
    if not all(callable(getattr(algo, m, None)) for m in ("bind", "init", "step")):
        V.fail("algo", algo, "it must be an algorithm (e.g. algorithms.MPO(), algorithms.make('mmd'))", cls=V.WrongType)


def _check_callbacks(callbacks):
    if callbacks is None:
        return ()
    if callable(callbacks):
        V.fail("callbacks", callbacks, "it must be a list or tuple of functions f(t, state, metrics); "
               "wrap a single one in a list: callbacks=[f]", cls=V.WrongType)
    if not isinstance(callbacks, (list, tuple)):
        V.fail("callbacks", callbacks, "it must be a list or tuple of functions f(t, state, metrics)", cls=V.WrongType)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            V.fail(f"callbacks[{i}]", cb, "it must be a function f(t, state, metrics)", cls=V.WrongType)
    return tuple(callbacks)


def _optional_bool(value, name):
    return None if value is None else V.boolean(value, name)


def _initial_policy(be, init):
    """The backend's start policy; its refusals of ``init`` are reported as being about ``init``."""
    want = "it must be probabilities over the actions (an array; a pair (x, y) for a zero-sum game)"
    if isinstance(init, (bool, str, bytes, numbers.Number, dict, set)) or callable(init):
        V.fail("init", init, want, cls=V.WrongType)
    try:
        return be.initial_policy(init)
    except (ValueError, TypeError, IndexError) as e:  # IndexError: arrays of the wrong shape
        msg = str(e)
        if "init" in msg:
            raise
        cls = V.WrongType if isinstance(e, TypeError) else V.InvalidArgument
        shown = repr(init) if len(repr(init)) <= 80 else repr(init)[:77] + "..."
        raise cls(f"init = {shown} is not allowed; {msg}") from None


# -- the loop -------------------------------------------------------------------------------------------------
def run(algo, game, steps: int, *, backend="numpy", device=None, dtype=None, init=None, record=None,
        callbacks=(), progress=None, until=None, average=None, state: RunState | None = None,
        checkpoint=None, checkpoint_every=None, resume=False, config=None, as_numpy=True) -> Result:
    """Run ``algo`` for ``steps`` iterations on ``game`` (a game, or a backend such as the LLM one).

    backend/device/dtype: the exact backend's array library: "numpy" (default, float64) or "torch"
    on ``device`` "cpu" (default) or "cuda", float64 by default (so gaps reach 1e-10 and runs match
    numpy to ~1e-12) or ``dtype="float32"`` (faster; gaps bottom out near 1e-6). A batched game
    (P of shape (B, n, n), e.g. ``games.make("random", n=10, batch=4096)``) runs as one batch;
    per-game hyperparameters are arrays of length B (on a single game they batch it: one matrix, B
    policies; ``games.exact.tile`` makes B explicit copies).
    init: initial policy probabilities (default: the game's reference, uniform unless given).
    record: when to record metrics (see :func:`record_points`). The default records every step of a
    run of at most 1000 steps and ~400 log-spaced iterations of a longer one, so memory stays
    bounded however long the run and however large the batch (the state itself is O(B·n)); pass
    ``record="all"`` to record every step (memory then grows with steps × B), an int k for every
    k-th step, a list of iterations, or ``record=[]`` for the first and last only. A record holds
    ``duality_gap``, ``regularized_gap`` (regularised methods) and ``average_gap`` where the
    backend has exact metrics (``backend.exact_metrics``, default True), plus every entry of
    ``backend.extra_metrics(policy)`` where the backend defines it. A duality gap needs Pπ
    (shared with the next step's query) and πᵀP: one extra pass over a preference matrix.
    callbacks: a list of ``f(t, state, metrics)`` (or None), run at each record; one returning
    True stops the run. until: stop once every game's duality gap is ≤ until (checked every step:
    the gap's cost plus one device sync per step; needs exact metrics). average: keep the average
    iterate (O(B·n); its probabilities are shared with the next step's query; default: on wherever
    the backend has probabilities, i.e. not on an LLM).
    state: continue an in-memory run (``result.state``) for ``steps`` MORE steps.

    checkpoint: a file, written atomically (pickle) before the first step, every
    ``checkpoint_every`` steps (default: at the first record point :data:`CHECKPOINT_SECONDS`
    after the previous save, so a fast run does not spend its time rewriting its history) and at
    the end. It holds the bound algorithm, its state, the history so far, ``backend.state_dict()``
    (RNGs, counters, model weights) where the backend has one, torch's global RNG, and the
    configuration a resume must match: ``config`` (the caller's dict, e.g. its command-line flags;
    leave out what may differ when the same run is re-issued: steps, resume, output paths,
    progress), the algorithm's class and hyperparameters (as given and as resolved by ``bind``),
    ``backend.fingerprint()`` where the backend has one, ``init`` and ``average``. The path is
    checked before the first step (a directory or an unwritable location is refused), and an
    existing file is never overwritten by a new run (FileExistsError).
    resume=True continues the run in ``checkpoint`` to a TOTAL of ``steps`` iterations: re-issuing
    the same call after a kill finishes the same run, bit-identical to an uninterrupted one, and
    ``result.history`` holds the records from before the checkpoint too. A missing file is a
    FileNotFoundError; a file that is not a checkpoint, or one whose configuration differs from
    the one given, is refused naming the path and the field (a resume continues a run, it does
    not change it). A run that ``until`` or a callback ended is returned as it is; a larger
    ``steps`` extends a finished run.
    as_numpy: return ``result.policy``/``average_policy`` as numpy (default) or as the backend's
    arrays (tensors on their device); ``result.history`` is numpy either way.

    Every argument is checked before the first step; refusals are ValueError (TypeError too for a
    value of the wrong kind) naming the argument.
    """
    # -- every check before any work ---------------------------------------------------------------
    _check_algorithm(algo)
    steps = V.integer(steps, "steps", low=0)
    _check_record(record)
    callbacks = _check_callbacks(callbacks)
    progress = _optional_bool(progress, "progress")
    average = _optional_bool(average, "average")
    resume = V.boolean(resume, "resume")
    as_numpy = V.boolean(as_numpy, "as_numpy")
    if until is not None:
        until = V.number(until, "until", low=0)
    if state is not None and not isinstance(state, RunState):
        V.fail("state", state, "it must be a RunState (result.state of an earlier run)", cls=V.WrongType)
    if state is not None and init is not None:
        raise V.InvalidArgument("init and state were both given: a continued run starts from its state, so init "
                                "would be ignored; leave init out")
    if config is not None and not isinstance(config, dict):
        V.fail("config", config, "it must be a dict (the caller's settings, compared on resume)", cls=V.WrongType)
    if checkpoint_every is not None:
        if checkpoint is None:
            V.fail("checkpoint_every", checkpoint_every, "it needs checkpoint=PATH (there is nothing to write)")
        checkpoint_every = V.integer(checkpoint_every, "checkpoint_every", low=1)
    if resume:
        if checkpoint is None:
            V.fail("resume", resume, "it needs checkpoint=PATH (the file of the run to continue)")
        if state is not None:
            raise V.InvalidArgument("state and resume=True were both given: resume continues the run in the "
                                    "checkpoint; leave state out")
    path = None
    saved = None
    if checkpoint is not None:
        path = _checkpoint_path(checkpoint)
        if resume:
            if not os.path.exists(path):
                raise FileNotFoundError(f"checkpoint = {path!r}: no such file (resume=True continues a run from its "
                                        "checkpoint; start the run without resume to create one)")
        elif os.path.exists(path):
            raise FileExistsError(f"checkpoint = {path!r} already exists; pass resume=True to continue that run, "
                                  "or give another path (nothing was overwritten)")
    be = make_backend(game, backend, device, dtype)
    shared = _shared_objects(be)
    if resume:
        saved = load_checkpoint(path, shared)  # ValueError naming the path for anything but a checkpoint
    exact = bool(getattr(be, "exact_metrics", True))
    if until is not None and not exact:
        V.fail("until", until, f"{type(be).__name__} has no exact duality gap to compare with it (exact_metrics "
               "is False); stop with a callback on its metrics instead")
    has_probs = hasattr(be, "average")
    if average is None:
        average = has_probs
    elif average and not has_probs:
        V.fail("average", True, f"{type(be).__name__} has no exact probabilities to average; pass average=False")
    given = algo
    algo = algo.bind(be)  # idempotent on an already bound algorithm, required on a fresh one
    _check_per_game(algo, be)
    run_config = _run_config(config, given, algo, be, init, average)

    history = {"iteration": [], "queries": []}
    origin, stopped = None, False
    if saved is not None:
        diff = _config_difference(saved["config"], run_config)
        if diff:
            name, was, now = diff
            V.fail("checkpoint", path, f"it holds a different run: {name} is {was!r} there but "
                   f"{now!r} now; resume continues a run, it does not change it (give another checkpoint path "
                   "to start a new run)")
        state, origin, stopped = saved["state"], int(saved["origin"]), bool(saved["stopped"])
        if steps < state.t:
            V.fail("steps", steps, f"the checkpoint is already at iteration {state.t} (with resume=True, steps is "
                   "the run's total)")
        history = {k: list(v) for k, v in saved["history"].items()}
        if saved["backend"] is not None:
            if not hasattr(be, "load_state_dict"):
                V.fail("checkpoint", path, f"it holds a backend state that {type(be).__name__} cannot load")
            be.load_state_dict(saved["backend"])
        _set_global_rng(saved.get("rng"))
        start, end = state.t, steps
    else:
        if state is None:
            state = RunState(algo.init(be, _initial_policy(be, init)))
        origin = state.t
        start, end = state.t, state.t + steps
    points = record_points(end - origin, record, origin)
    # a resumed run records what its history does not hold yet (a kill can fall between a save and a record)
    last = history["iteration"][-1] if history["iteration"] else start - 1
    points = points[(points >= start) & (points > last)]
    q0 = be.queries

    def payload(st, stop):
        return {"format": FORMAT, "algorithm": algo, "state": st, "history": history,
                "backend": be.state_dict() if hasattr(be, "state_dict") else None, "config": run_config,
                "origin": origin, "stopped": bool(stop), "rng": _global_rng()}

    last_save = [time.monotonic()]
    # a data-parallel rank other than 0 reads a checkpoint but never writes one (rank 0 writes the
    # state every rank holds): the backend says so (LLMBackend.writes_checkpoints)
    writer = bool(getattr(be, "writes_checkpoints", True))

    def save(st, stop=False):
        if writer:
            _save(path, payload(st, stop), shared)
        last_save[0] = time.monotonic()

    if path is not None and saved is None:
        save(state)  # unpicklable or unwritable state fails now, not after the work

    def do_record(st):
        m = _metrics(algo, be, st, average, exact)
        history["iteration"].append(st.t)
        history["queries"].append(st.queries)
        for k, v in m.items():
            history.setdefault(k, []).append(v)
        stop = False
        for cb in callbacks:
            stop = bool(cb(st.t, st, m)) or stop
        return stop, m

    run_steps = 0 if stopped else end - start
    show = progress if progress is not None else (run_steps >= 5000 and sys.stderr.isatty())
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=end - origin, initial=start - origin, desc=f"{getattr(algo, 'name', 'run')}", unit="it",
                   leave=False, mininterval=0.5)
    next_rec = 0
    stop = stopped
    if not stop and len(points) and points[0] == start:
        stop, _ = do_record(state)
        next_rec = 1
    every = checkpoint_every
    while state.t < end and not stop:
        new_algo_state = algo.step(be, state.algo_state)
        queries = state.queries + (be.queries - q0)
        q0 = be.queries
        avg = be.average(state.avg, new_algo_state.policy, new_algo_state.t) if average else state.avg
        state = RunState(new_algo_state, queries, avg)
        if bar is not None:
            bar.update(1)
        t = state.t
        if until is not None and _all_le(be.duality_gap(state.algo_state.policy), until):
            stop = True
        if next_rec < len(points) and (t == points[next_rec] or stop):
            s, m = do_record(state)
            stop = stop or s
            while next_rec < len(points) and points[next_rec] <= t:
                next_rec += 1
            if bar is not None and "duality_gap" in m:
                bar.set_postfix(gap=f"{np.max(m['duality_gap']):.2e}", refresh=False)
            if (path is not None and not every and t < end and not stop
                    and time.monotonic() - last_save[0] >= CHECKPOINT_SECONDS):
                save(state)
        if path is not None and every and t % every == 0 and t < end and not stop:
            save(state)
    if bar is not None:
        bar.close()
    if path is not None:
        save(state, stop)
    # Per-game hyperparameters on a single game batch it implicitly from the first step on (one
    # matrix, B policies): the shared initial record is broadcast to the B games.
    hist = {k: np.stack(np.broadcast_arrays(*v)) if v else np.asarray(v) for k, v in history.items()}
    return Result(algo, be, state, hist, as_numpy)
