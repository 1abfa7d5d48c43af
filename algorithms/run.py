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
    """What ``run`` returns. ``policy``/``average_policy`` are numpy probabilities (a pair for a
    zero-sum game); ``history`` maps metric names to arrays indexed by record (and game, if batched)."""

    algorithm: object
    backend: object
    state: RunState
    history: dict = field(default_factory=dict)

    @property
    def policy(self):
        return self.backend.to_numpy(self.state.algo_state.policy)

    @property
    def average_policy(self):
        if self.state.avg is None:
            return self.policy
        from games.exact import TabularPolicy  # noqa: deferred, the exact backend owns the type

        with np.errstate(divide="ignore"):
            logs = tuple(self.backend.ops.log(a) for a in self.state.avg)
        return self.backend.to_numpy(TabularPolicy(logs))

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


def _metrics(algo, backend, state: RunState):
    ops_to_np = lambda x: np.asarray(backend.ops.to_numpy(x), dtype=np.float64) if hasattr(x, "shape") else np.float64(x)
    s = state.algo_state
    out = {"duality_gap": ops_to_np(backend.duality_gap(s.policy))}
    reg = algo.regularization(s)
    if reg is not None:
        beta, magnet = reg
        out["regularized_gap"] = ops_to_np(backend.regularized_gap(s.policy, beta, magnet))
    if state.avg is not None:
        from games.exact import TabularPolicy

        with np.errstate(divide="ignore"):
            avg = TabularPolicy(tuple(backend.ops.log(a) for a in state.avg))
        out["average_gap"] = ops_to_np(backend.duality_gap(avg))
    return out


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
        callbacks=(), progress=None, until=None, average=True, state: RunState | None = None,
        checkpoint=None, checkpoint_every=None, resume=False) -> Result:
    """Run ``algo`` for ``steps`` iterations on ``game`` (a game, or a backend such as the LLM one).

    backend/device/dtype: the exact backend's array library ("numpy" default, or "torch").
    init: initial policy probabilities (default: the game's reference, uniform unless given).
    record: when to record metrics (see :func:`record_points`); callbacks ``f(t, state, metrics)``
    run at each record and stop the run by returning True. until: stop once every game's duality
    gap is ≤ until. average: keep the average iterate (costs one exp per step). state / resume:
    continue a previous run (``result.state``) or the checkpoint file. checkpoint: a path written
    atomically every ``checkpoint_every`` steps (default: at every record) and at the end.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}")
    be = make_backend(game, backend, device, dtype)
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH")
        if os.path.exists(checkpoint):
            algo, state = load_checkpoint(checkpoint)
    if state is None:
        algo = algo.bind(be)
        state = RunState(algo.init(be, be.initial_policy(init)))
    start = state.t
    points = record_points(steps, record, start)
    history = {"iteration": [], "queries": []}
    q0 = be.queries

    def do_record(st):
        m = _metrics(algo, be, st)
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
        avg = state.avg
        if average:
            probs = be.probs(new_algo_state.policy)
            if avg is None:
                avg = probs
            else:
                w = 1.0 / new_algo_state.t
                avg = tuple(a + (p - a) * w for a, p in zip(avg, probs))
        state = RunState(new_algo_state, queries, avg)
        if bar is not None:
            bar.update(1)
        t = state.t
        if until is not None and np.all(np.asarray(be.ops.to_numpy(be.duality_gap(state.algo_state.policy))) <= until):
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
    hist = {k: np.asarray(v) for k, v in history.items()}
    return Result(algo, be, state, hist)
