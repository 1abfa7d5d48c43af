"""One validation layer for every public entry point (games, algorithms, llm, experiment CLIs).

Every check takes the value and the argument's name *as the user gave it* (``"eta"``,
``"--batch-size"``, ``"LLMConfig.samples"``, ``"magnet"``) and raises an error whose message names
that argument, shows the value, and says what is allowed::

    MPO: alpha = -1.0 is not allowed; it must be a finite number > 0

The errors are :class:`InvalidArgument` (a ``ValueError``) and :class:`WrongType` (both a
``ValueError`` and a ``TypeError``), so callers — the CLIs in particular — catch every refusal with
``except ValueError`` and turn it into one line and exit status 2.

Numbers: we accept real numbers only (Python or numpy ints/floats, or arrays of them where a
per-game array is allowed) — never strings, booleans or complex values; the CLIs convert text before
calling the library, so the library has one rule.

Tolerances: one rule, :func:`tolerance` (dtype), for "equal up to rounding" on probabilities
(P + Pᵀ = 1, simplex sums, oracle antisymmetry); on payoff-valued quantities (gaps, values) it is
relative to the payoff range, :func:`payoff_tolerance`, so no verdict depends on the payoff scale.

Policies: :func:`distribution` checks probabilities; with ``interior=True`` it applies the one rule for
every policy that enters an algorithm (init, magnet, reference): no zero entries (INTERIOR_RULE).
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np


class InvalidArgument(ValueError):
    """A value the entry point cannot use; the message names the argument, the value and the rule."""


class WrongType(InvalidArgument, TypeError):
    """A value of the wrong kind (a string for a number, a class for an instance, ...)."""


def _show(value, limit: int = 80) -> str:
    if isinstance(value, np.ndarray):
        value = _summary(value)
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def fail(name: str, value, rule: str, where: str = "", cls=InvalidArgument):
    """Raise ``cls`` with the project's one message format."""
    raise cls(f"{_prefix(where)}{name} = {_show(value)} is not allowed; {rule}")


def _range_text(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def _is_real_scalar(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def number(value, name: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
           allow_none: bool = False, where: str = ""):
    """A finite real number within the given bounds, returned as a Python float (or None).

    Raises :class:`WrongType` for strings, booleans, complex numbers and arrays, and
    :class:`InvalidArgument` for NaN, infinities and out-of-range values.
    """
    if value is None:
        if allow_none:
            return None
        fail(name, value, "it is required (a number)", where, WrongType)
    rng = _range_text(low, high, low_open, high_open)
    want = "it must be a finite number" + (f" {rng}" if rng else "")
    if not _is_real_scalar(value):
        fail(name, value, f"{want} (got a {type(value).__name__})", where, WrongType)
    v = float(value)
    _check_range(v, name, value, low, high, low_open, high_open, want, where)
    return v


def _check_range(v, name, value, low, high, low_open, high_open, want, where):
    arr = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        fail(name, value, want, where)
    if low is not None and np.any(arr <= low if low_open else arr < low):
        fail(name, value, want, where)
    if high is not None and np.any(arr >= high if high_open else arr > high):
        fail(name, value, want, where)


def integer(value, name: str, *, low=None, high=None, allow_none: bool = False, where: str = "") -> int | None:
    """An int (Python or numpy; not a bool, not a float such as 2.5 or 2.0) within [low, high]."""
    if value is None:
        if allow_none:
            return None
        fail(name, value, "it is required (an integer)", where, WrongType)
    rng = _range_text(low, high, False, False)
    want = "it must be an integer" + (f" {rng}" if rng else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        fail(name, value, f"{want} (got a {type(value).__name__})", where, WrongType)
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        fail(name, value, want, where)
    return v


def param(value, name: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
          allow_none: bool = True, where: str = ""):
    """A hyperparameter: a finite real number, or a 1-D array of them (one per game of a batch).

    Returns the value unchanged (None stays None). Per-game arrays must be 1-D and real.
    """
    if value is None:
        if allow_none:
            return None
        fail(name, value, "it is required", where, WrongType)
    if _is_real_scalar(value):
        number(value, name, low=low, high=high, low_open=low_open, high_open=high_open, where=where)
        return value
    rng = _range_text(low, high, low_open, high_open)
    want = "it must be a finite number" + (f" {rng}" if rng else "") + ", or a 1-D array of them (one per game)"
    if isinstance(value, (str, bytes, bool, np.bool_)) or not isinstance(value, (list, tuple, np.ndarray)):
        fail(name, value, f"{want} (got a {type(value).__name__})", where, WrongType)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        fail(name, value, f"{want} (got a ragged {type(value).__name__})", where, WrongType)
    if arr.dtype.kind not in "iuf" or arr.dtype == bool:
        fail(name, value, f"{want} (got an array of {arr.dtype})", where, WrongType)
    if arr.ndim == 0:
        _check_range(float(arr), name, value, low, high, low_open, high_open, want, where)
        return value
    if arr.ndim != 1 or arr.size == 0:
        fail(name, value, f"{want}; got shape {arr.shape}", where)
    _check_range(arr.astype(np.float64), name, value, low, high, low_open, high_open, want, where)
    return value


def boolean(value, name: str, where: str = "") -> bool:
    """True or False (numpy bools too); 0/1, strings and None are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    fail(name, value, "it must be True or False", where, WrongType)


def choice(value, name: str, options, where: str = ""):
    """One of ``options`` (strings compared exactly); the message lists them and suggests the nearest."""
    options = list(options)
    if isinstance(value, str) and value in options:
        return value
    if not isinstance(value, str) and value in options and not isinstance(value, bool):
        return value
    hint = ""
    if isinstance(value, str):
        import difflib

        close = difflib.get_close_matches(value, [str(o) for o in options], n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    fail(name, value, f"it must be one of {', '.join(map(repr, options))}{hint}", where,
         InvalidArgument if isinstance(value, str) else WrongType)


def real_array(value, name: str, *, ndim=None, where: str = "") -> np.ndarray:
    """A finite real float64 array (complex, object, string and boolean arrays are refused)."""
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        fail(name, type(value).__name__, f"it must be a numeric array ({e})", where, WrongType)
    if arr.dtype.kind not in "iuf" or arr.dtype == bool:
        fail(name, _summary(arr), f"it must be an array of real numbers (got dtype {arr.dtype})", where, WrongType)
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        fail(name, _summary(arr), f"it must have {ndim} axes; got shape {arr.shape}", where)
    arr = arr.astype(np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        idx = tuple(int(i) for i in bad[0])
        fail(name, _summary(arr), f"every entry must be finite; entry {list(idx)} is {float(arr[idx])!r}", where)
    return arr


class _Shown(str):
    """Text shown as is in a message (an array's summary), not quoted like a string value."""

    def __repr__(self):
        return str(self)


def kind(value) -> str:
    """How a value of the wrong kind is shown in a message: its type, e.g. ``<ndarray>``."""
    return _Shown(f"<{type(value).__name__}>")


def _summary(arr: np.ndarray) -> str:
    arr = np.asarray(arr)
    if arr.size > 8:
        return _Shown(f"<array of shape {arr.shape}>")
    return _Shown(np.array2string(arr, precision=6, separator=", ", max_line_width=10**6))


def tolerance(dtype=np.float64) -> float:
    """The project's one tolerance for "equal up to rounding" on probabilities computed in ``dtype``:
    64 units in the last place of that dtype, and never below 1e-9 (float64: 1e-9; float32: 7.6e-6;
    bfloat16: 0.5 — so bfloat16 preferences must be computed in float32). Used for P + Pᵀ = 1,
    simplex sums and oracle antisymmetry alike. On payoff-valued quantities (gaps, values) it is
    *relative*: see :func:`payoff_tolerance`."""
    return max(1e-9, rounding(dtype))


def eps(dtype=np.float64) -> float:
    """Machine epsilon of a numpy or torch floating dtype (or of a dtype name such as "float32")."""
    try:
        return float(np.finfo(np.dtype(dtype)).eps)
    except (TypeError, ValueError):
        return _torch_eps(dtype)


def rounding(dtype=np.float64) -> float:
    """64 units in the last place of ``dtype``: what a short chain of rounded operations can lose,
    relative to the magnitudes involved (float64: 1.4e-14; float32: 7.6e-6)."""
    return 64 * eps(dtype)


def _torch_eps(dtype) -> float:
    import torch

    return float(torch.finfo(dtype).eps)


def dtype_of(value):
    """The floating dtype ``value`` was computed in: a numpy or torch array's own dtype when it is
    floating, float64 otherwise (Python numbers, lists, integer arrays)."""
    dt = getattr(value, "dtype", None)
    if dt is None:
        return np.dtype(np.float64)
    if isinstance(dt, np.dtype):
        return dt if dt.kind == "f" else np.dtype(np.float64)
    if getattr(dt, "is_floating_point", False):  # a torch dtype
        return dt
    return np.dtype(np.float64)


def payoff_tolerance(M, rtol=None, dtype=np.float64):
    """The tolerance for a payoff-valued quantity (a duality gap, a game value) on the matrix ``M``:
    ``rtol`` times the payoff range (max − min; default rtol = tolerance(dtype)) plus the rounding
    floor of evaluating it, rounding(dtype)·n·max|M| (an n-term dot product of payoffs of that
    magnitude). Scaling M scales it: equilibria do not change when payoffs are scaled, and neither
    does any verdict made with this tolerance. One value per game of a batch (M: (..., m, n))."""
    M = np.asarray(M, dtype=np.float64)
    rtol = tolerance(dtype) if rtol is None else float(rtol)
    hi, lo = M.max(axis=(-2, -1)), M.min(axis=(-2, -1))
    span = hi / 2 - lo / 2  # halves first: no overflow for payoffs near the float64 limit
    big = np.maximum(np.abs(hi), np.abs(lo))
    out = 2 * rtol * span + rounding(dtype) * max(M.shape[-2:]) * big
    return float(out) if np.ndim(out) == 0 else out


def regularisation(value, name: str, L, dtype=np.float64, where: str = ""):
    """The finite-arithmetic bound on a regularisation weight (α, β, τ; a number or one per game):
    value/L ≤ 1/tolerance(dtype), i.e. 1e9·L in float64 (L: half the largest payoff range of a row
    or column). Beyond it the regularised equilibrium is the magnet to within tolerance(dtype), a
    step's game term is lost to the rounding of the log-probabilities, and the regularised gap (whose
    rounding floor is ≈ value·ε) measures nothing; see ``algorithms.base.check_regularisation``."""
    if value is None:
        return value
    L = np.asarray(L, dtype=np.float64)
    tol = tolerance(dtype)
    v = np.asarray(value, dtype=np.float64)
    if np.any(v / L > 1 / tol):
        lim = L / tol
        fail(name, value, f"it must be <= L/{tol:.2g} = {float(lim) if lim.ndim == 0 else lim!r} for this game (L = "
             f"{float(L) if L.ndim == 0 else L!r}, half its largest payoff range): beyond that the regularised equilibrium "
             f"equals the magnet to within {tol:.2g}, the game term of a step is lost to rounding and the regularised gap "
             "measures nothing", where)
    return value


INTERIOR_RULE = (
    "log-linear methods (every algorithm here) update log-probabilities, "
    "so an action with probability 0 keeps it forever and the run can never leave that face of the "
    "simplex (and a KL anchor with a zero entry makes the regularised game undefined); start strictly "
    "inside, e.g. mix with uniform: (1 - 1e-3)*p + 1e-3/n")


def host_array(value):
    """A numpy view of ``value`` (torch tensors on any device are copied to the host first)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return value


def distribution(value, name: str, *, size=None, interior: bool = False, where: str = "") -> np.ndarray:
    """Probabilities over the last axis, as float64: real, finite, >= 0 and summing to 1 within
    :func:`tolerance` of the dtype they were given in. ``size``: the required length of the last
    axis. ``interior``: refuse zero entries (the project's one rule for every policy that enters an
    algorithm — init, magnet, reference; see INTERIOR_RULE)."""
    dt = dtype_of(value)
    arr = real_array(host_array(value), name, where=where)
    if arr.ndim == 0:
        fail(name, value, "it must be a vector of probabilities (got a scalar)", where, WrongType)
    if arr.size == 0:
        fail(name, _summary(arr), f"it must hold at least one probability; got shape {arr.shape}", where)
    if size is not None and arr.shape[-1] != size:
        fail(name, _summary(arr), f"it must be a probability vector of length {size}, shape ({size},) (or one row "
             f"per game of a batch); got shape {arr.shape}", where)
    bad = np.argwhere(arr < 0)
    if len(bad):
        idx = tuple(int(i) for i in bad[0])
        fail(name, _summary(arr), f"probabilities must be non-negative; entry {list(idx)} is {float(arr[idx])!r}", where)
    s = arr.sum(-1)
    tol = tolerance(dt)
    if np.any(np.abs(s - 1) > tol):
        worst = float(np.asarray(s).flat[int(np.argmax(np.abs(s - 1)))])
        fail(name, _summary(arr), f"probabilities must sum to 1 (within {tol:.2g} for {dt}); the sum is {worst!r}. "
             "Normalise it yourself, so nothing is hidden", where)
    if interior:
        bad = np.argwhere(arr == 0)
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            fail(name, _summary(arr), f"it must be strictly positive (entry {list(idx)} is 0): {INTERIOR_RULE}", where)
    return arr


def float_dtype(value, name: str = "dtype", where: str = ""):
    """A numpy floating dtype (None: float64). Integer, boolean, complex and unknown dtypes are refused:
    policies are log-probabilities, which integers cannot hold."""
    if value is None:
        return np.dtype(np.float64)
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError, SyntaxError):  # numpy parses comma strings such as ',' as Python
        fail(name, value, "it must be a floating dtype such as 'float64' (default) or 'float32'", where, WrongType)
    if dt.kind != "f":
        fail(name, value, "it must be a floating dtype such as 'float64' (default) or 'float32' "
             "(policies are log-probabilities: an integer dtype cannot hold them)", where)
    return dt


def writable_dir(path, name: str, where: str = "") -> Path:
    """A directory we can write into: created if missing; checked by writing a probe file, now,
    before any work, so a run never loses its results to a late failure."""
    if path is None or (isinstance(path, str) and not path.strip()):
        fail(name, path, "it must be a directory path", where, WrongType)
    p = Path(path)
    if p.exists() and not p.is_dir():
        fail(name, str(p), "it exists and is not a directory", where)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".nashlab-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        fail(name, str(p), f"it must be a writable directory ({e.strerror or e})", where)
    return p


def writable_file(path, name: str, where: str = "") -> Path:
    """A file path we can (re)write atomically: its directory is writable and it is not a directory."""
    if path is None or (isinstance(path, str) and not path.strip()):
        fail(name, path, "it must be a file path", where, WrongType)
    p = Path(path)
    if p.is_dir():
        fail(name, str(p), "it is a directory; give a file path inside it", where)
    writable_dir(p.parent if str(p.parent) else Path("."), f"the directory of {name}", where)
    return p


def readable_file(path, name: str, where: str = "") -> Path:
    """An existing regular file (FileNotFoundError otherwise, naming the argument)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{_prefix(where)}{name} = {str(p)!r}: no such file")
    if not p.is_file():
        fail(name, str(p), "it must be a file", where)
    return p
