"""The run loop: drive an algorithm on a backend, record metrics, show progress, checkpoint."""
from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass, field

import numpy as np


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
    game, if batched)."""

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


def record_points(steps: int, record=None, start: int = 0) -> np.ndarray:
    """Iterations (in [start, start+steps]) at which metrics are recorded.

    None: every step for runs of at most 1000 steps, else ~400 log-spaced iterations (memory stays
    bounded however long the run); "all": every step; an int k: every k steps; or explicit iterations.
    """
    end = start + steps
    if record is None:
        if steps <= 1000:
            pts = np.arange(start, end + 1)
        else:
            pts = np.unique(np.round(np.geomspace(1, steps + 1, 400)).astype(np.int64) - 1 + start)
    elif isinstance(record, str):
        if record != "all":
            raise ValueError(f"record must be None, 'all', an int period or a list of iterations; got {record!r}")
        pts = np.arange(start, end + 1)
    elif isinstance(record, (int, np.integer)):
        if record < 1:
            raise ValueError(f"record period must be >= 1; got {record}")
        pts = np.arange(start, end + 1, int(record))
    else:
        pts = np.asarray(sorted(set(int(x) for x in record)), dtype=np.int64)
        pts = pts[(pts >= start) & (pts <= end)]
    return np.unique(np.concatenate([pts, [start, end]]))


def make_backend(game, backend="numpy", device=None, dtype=None):
    """A backend for ``game`` (a game object, or an already built backend, returned as is)."""
    if hasattr(game, "win_rates") and hasattr(game, "realise"):
        return game
    from games.exact import ExactBackend

    return ExactBackend(game, backend=backend, device=device, dtype=dtype)


def _all_le(x, bound) -> bool:
    """Whether every entry of a backend array is <= bound; reduced where the array lives, so a GPU
    run transfers one boolean, not a value per game."""
    le = x <= bound
    return bool(le.all()) if hasattr(le, "all") else bool(le)


def _metrics(algo, backend, state: RunState, average: bool):
    # Only the recorded values (one per game) leave the backend's device.
    def ops_to_np(x):
        return backend.host(x) if hasattr(backend, "host") else np.float64(x)

    s = state.algo_state
    out = {"duality_gap": ops_to_np(backend.duality_gap(s.policy))}
    reg = algo.regularization(s)
    if reg is not None:
        beta, magnet = reg
        out["regularized_gap"] = ops_to_np(backend.regularized_gap(s.policy, beta, magnet))
    if state.avg is not None:
        out["average_gap"] = ops_to_np(backend.duality_gap(backend.from_average(state.avg)))
    elif average:  # before the first step the only iterate is π_0: its gap keeps the rows aligned
        out["average_gap"] = out["duality_gap"]
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
                raise ValueError(f"{type(algo).__name__}: {f.name} has shape {v.shape}; this game needs a number or {want}")


def _save(path, algo, state):
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump({"algorithm": algo, "state": state}, f)
    os.replace(tmp, path)  # atomic: a crash mid-write never corrupts the last good checkpoint


def load_checkpoint(path):
    """(algorithm, RunState) saved by ``run(..., checkpoint=path)``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    with open(path, "rb") as f:
        d = pickle.load(f)
    return d["algorithm"], d["state"]


def run(algo, game, steps: int, *, backend="numpy", device=None, dtype=None, init=None, record=None,
        callbacks=(), progress=None, until=None, average=None, state: RunState | None = None,
        checkpoint=None, checkpoint_every=None, resume=False, as_numpy=True) -> Result:
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
    k-th step, a list of iterations, or ``record=[]`` for the first and last only. A record needs
    the duality gap (Pπ, shared with the next step's query, and πᵀP: one extra pass over a
    preference matrix). callbacks ``f(t, state, metrics)`` run at each record and stop the run by
    returning True. until: stop once every game's duality gap is ≤ until (checked every step: the
    gap's cost plus one device sync per step). average: keep the average iterate (O(B·n); its
    probabilities are shared with the next step's query; default: on wherever the backend has
    probabilities, i.e. not on an LLM). state / resume: continue a previous run (``result.state``;
    ``steps`` more steps) or the checkpoint file. checkpoint: a path written atomically every
    ``checkpoint_every`` steps (default: at every record) and at the end. as_numpy: return
    ``result.policy``/``average_policy`` as numpy (default) or as the backend's arrays (tensors on
    their device); ``result.history`` is numpy either way.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}")
    be = make_backend(game, backend, device, dtype)
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH")
        if os.path.exists(checkpoint):
            algo, state = load_checkpoint(checkpoint)
    has_probs = hasattr(be, "average")
    if average is None:
        average = has_probs
    elif average and not has_probs:
        raise ValueError(f"{type(be).__name__} has no exact probabilities to average; pass average=False")
    algo = algo.bind(be)  # idempotent on an already bound algorithm (resume), required on a fresh one
    _check_per_game(algo, be)
    if state is None:
        state = RunState(algo.init(be, be.initial_policy(init)))
    start = state.t
    points = record_points(steps, record, start)
    history = {"iteration": [], "queries": []}
    q0 = be.queries

    def do_record(st):
        m = _metrics(algo, be, st, average)
        history["iteration"].append(st.t)
        history["queries"].append(st.queries)
        for k, v in m.items():
            history.setdefault(k, []).append(v)
        stop = False
        for cb in callbacks:
            stop = bool(cb(st.t, st, m)) or stop
        return stop, m

    show = progress if progress is not None else (steps >= 5000 and sys.stderr.isatty())
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"{getattr(algo, 'name', 'run')}", unit="it", leave=False, mininterval=0.5)
    next_rec = 0
    stop = False
    if points[0] == start:
        stop, _ = do_record(state)
        next_rec = 1
    every = checkpoint_every or None
    while state.t < start + steps and not stop:
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
            if bar is not None:
                bar.set_postfix(gap=f"{np.max(m['duality_gap']):.2e}", refresh=False)
            if checkpoint and not every:
                _save(checkpoint, algo, state)
        if checkpoint and every and t % every == 0:
            _save(checkpoint, algo, state)
    if bar is not None:
        bar.close()
    if checkpoint:
        _save(checkpoint, algo, state)
    # Per-game hyperparameters on a single game batch it implicitly from the first step on (one
    # matrix, B policies): the shared initial record is broadcast to the B games.
    hist = {k: np.stack(np.broadcast_arrays(*v)) if v else np.asarray(v) for k, v in history.items()}
    return Result(algo, be, state, hist, as_numpy)
