"""Game containers: preference games and two-player zero-sum matrix games.

Both are plain validated values. A game may be *batched*: its matrix has a leading batch axis
(B, n, n), and every metric then returns one value per game.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from . import validation as V


def _where(idx, batched):
    """Format an entry index for an error message, with the batch index when there is one."""
    idx = tuple(int(i) for i in idx)
    if batched:
        return f"game {idx[0]}, entry [{idx[1]}, {idx[2]}]"
    return f"entry [{idx[0]}, {idx[1]}]"


def _as_matrix(M, name, where):
    """A finite real matrix (n, n) or batch (B, n, n) as a fresh float64 array (we freeze it), and the
    floating dtype it was given in (its rounding sets the tolerance of the checks made on it)."""
    dtype = V.dtype_of(M)
    M = V.host_array(M)
    try:
        arr = np.asarray(M)
    except (TypeError, ValueError) as e:  # ragged nested lists
        V.fail(name, type(M).__name__, f"it must be a numeric array ({e})", where, V.WrongType)
    if arr.dtype.kind not in "iuf" or arr.dtype == bool:
        V.fail(name, V._summary(arr) if arr.dtype != object else type(M).__name__,
               f"it must be a numeric array of real numbers (got dtype {arr.dtype})", where, V.WrongType)
    M = np.array(arr, dtype=np.float64)  # a copy: we freeze it
    if M.ndim not in (2, 3):
        V.fail(name, V._summary(M), "it must have shape (n, n) or, for a batch of games, (B, n, n); "
               f"got shape {M.shape}", where)
    if M.shape[-1] == 0 or M.shape[-2] == 0 or M.shape[0] == 0:
        V.fail(name, V._summary(M), f"it must have at least one action per player; got shape {M.shape}", where)
    bad = np.argwhere(~np.isfinite(M))
    if len(bad):
        V.fail(name, V._summary(M), f"it has a non-finite value ({M[tuple(bad[0])]}) at {_where(bad[0], M.ndim == 3)}", where)
    return M, dtype


def _as_distribution(p, n, batch_shape, name, where):
    """Validate a KL anchor (n,) or batch (B, n): strictly positive (the project's one rule for every
    policy that enters an algorithm); return its log, normalised exactly."""
    p = V.distribution(p, name, size=n, interior=True, where=where)
    if p.shape not in ((n,), tuple(batch_shape) + (n,)):
        V.fail(name, V._summary(p), f"it must have shape ({n},)"
               + (f" or {tuple(batch_shape) + (n,)} (one row per game)" if batch_shape else "") + f"; got {p.shape}", where)
    logp = np.log(p)
    return logp - np.log(np.exp(logp).sum(-1, keepdims=True))


def _gap(M, x, y):
    """max_i (M y)_i − min_j (xᵀ M)_j per game (x, y probabilities; batched over leading axes)."""
    My = np.einsum("...ij,...j->...i", M, y)
    xM = np.einsum("...i,...ij->...j", x, M)
    return My.max(-1) - xM.min(-1)


def _names(names, n, label, where):
    """Action names: a sequence (not a string) of ``n`` entries, kept as a tuple."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple, np.ndarray)) or len(names) != n:
        V.fail(label, names, f"it must be a sequence of one name per action ({n})", where,
               V.WrongType if not isinstance(names, (list, tuple, np.ndarray)) else V.InvalidArgument)
    for x in names:
        if not isinstance(x, (str, numbers.Integral)) or isinstance(x, (bool, np.bool_)):
            V.fail(label, names, f"every name must be a string (or an integer); got {x!r}", where, V.WrongType)
    return tuple(names)


def _check_nash(M, parts, sizes, batch_shape, name, where, dtype):
    """``nash=`` metadata: probabilities of the right shape, and an equilibrium of M: its duality gap
    within :func:`validation.payoff_tolerance` (relative to the payoff range, as every check here)."""
    out = []
    for p, n, label in zip(parts, sizes, (name,) if len(parts) == 1 else (f"{name}[0] (row)", f"{name}[1] (column)")):
        p = V.distribution(p, label, size=n, where=where)
        if p.shape not in ((n,), tuple(batch_shape) + (n,)):
            V.fail(label, V._summary(p), f"it must have shape ({n},)" + (f" or {tuple(batch_shape) + (n,)}" if batch_shape else "")
                   + f"; got {p.shape}", where)
        p = p.copy()
        p.setflags(write=False)
        out.append(p)
    x, y = (out[0], out[0]) if len(out) == 1 else out
    gap = _gap(M, x, y)
    tol = V.payoff_tolerance(M, dtype=dtype)
    if np.any(gap > tol):
        worst = float(np.max(gap - tol))
        V.fail(name, V._summary(out[0]) if len(out) == 1 else "(x, y)",
               f"it must be a Nash equilibrium of the game (duality gap <= {np.max(tol):.3g}, relative to the payoff "
               f"range); its gap is {float(np.max(gap)):.3g} (exceeds it by {worst:.3g}). Compute one with "
               "games.nash_equilibrium(game), or leave nash=None", where)
    return out


@dataclass(frozen=True, eq=False)
class PreferenceGame:
    """A symmetric constant-sum preference game, P[i, j] = P(i ≻ j).

    Rules (checked on construction): square, finite, real, entries in [0, 1], P + Pᵀ = 1 and diagonal
    ½ within ``validation.tolerance`` of the dtype P is given in (1e-9 for float64, 7.6e-6 for float32). The row policy π plays against itself; its win rates are (Pπ)_y = P(y ≻ π).
    ``reference`` is the KL anchor μ (uniform if omitted; strictly positive); ``nash`` an optional
    known equilibrium, checked to be one (its duality gap within ``validation.payoff_tolerance``).
    Errors: ``validation.InvalidArgument``/``WrongType`` (ValueErrors) naming the argument.
    """

    P: np.ndarray
    reference: np.ndarray | None = None
    names: tuple | None = None
    nash: np.ndarray | None = None
    name: str = "custom"
    log_reference: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        where = "PreferenceGame"
        P, dtype = _as_matrix(self.P, "P", where)
        batched = P.ndim == 3
        if P.shape[-1] != P.shape[-2]:
            V.fail("P", V._summary(P), f"a preference matrix must be square (n x n); got shape {P.shape}", where)
        # P + Pᵀ = 1 is a modelling constraint, so we forgive rounding only: the project's one tolerance,
        # for the dtype P was given in (a float32 sigmoid of score differences is off by ~2e-8).
        tol = V.tolerance(dtype)
        hint = ""
        if dtype == np.float64:
            hint = " (if P was computed in float32, pass it as a float32 array: the tolerance follows its dtype)"
        diag = np.diagonal(P, axis1=-2, axis2=-1)
        bad = np.argwhere(np.abs(diag - 0.5) > tol)
        if len(bad):  # checked first: a wrong diagonal also breaks P + Pᵀ = 1, but this is the clearer rule
            i = tuple(bad[0]) + (bad[0][-1],)
            V.fail("P", V._summary(P), f"invalid preference matrix at {_where(i, batched)} = {float(P[i])!r}: the diagonal must be 1/2 "
                   f"(a response ties with itself; within {tol:.2g}){hint}", where)
        for mask, rule in (
            ((P < -tol) | (P > 1 + tol), "entries must be probabilities in [0, 1]"),
            (np.abs(P + np.swapaxes(P, -1, -2) - 1) > tol,
             f"P[i, j] + P[j, i] must equal 1 (a preference is antisymmetric; within {tol:.2g}){hint}"),
        ):
            bad = np.argwhere(mask)
            if len(bad):
                V.fail("P", V._summary(P), f"invalid preference matrix at {_where(bad[0], batched)} = {float(P[tuple(bad[0])])!r}: {rule}", where)
        n = P.shape[-1]
        P.setflags(write=False)
        object.__setattr__(self, "P", P)
        if self.names is not None:
            object.__setattr__(self, "names", _names(self.names, n, "names", where))
        if not isinstance(self.name, str):
            V.fail("name", self.name, "it must be a string", where, V.WrongType)
        ref = np.full(n, 1.0 / n) if self.reference is None else self.reference
        object.__setattr__(self, "log_reference", _as_distribution(ref, n, P.shape[:-2], "reference", where))
        if self.nash is not None:
            (nash,) = _check_nash(P - 0.5, (self.nash,), (n,), P.shape[:-2], "nash", where, dtype)
            object.__setattr__(self, "nash", nash)

    # -- shape ------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.P.shape[-1]

    @property
    def batch_shape(self) -> tuple:
        return self.P.shape[:-2]

    @property
    def sizes(self) -> tuple:
        """Number of actions per policy slot (one slot: the game is played in self-play)."""
        return (self.n,)

    def __len__(self):
        if not self.batch_shape:
            raise TypeError("a single game has no len(); only a batch of games does")
        return self.batch_shape[0]

    def __getitem__(self, b) -> "PreferenceGame":
        """Game ``b`` of a batch, as a single game."""
        if not self.batch_shape:
            raise TypeError("indexing selects a game from a batch; this is a single game")
        ref = self.log_reference if self.log_reference.ndim == 1 else self.log_reference[b]
        nash = None if self.nash is None else (self.nash if self.nash.ndim == 1 else self.nash[b])
        return PreferenceGame(self.P[b], np.exp(ref), self.names, nash, f"{self.name}[{b}]")

    def __repr__(self):
        b = f", batch={self.batch_shape}" if self.batch_shape else ""
        return f"PreferenceGame({self.name!r}, n={self.n}{b})"


@dataclass(frozen=True, eq=False)
class ZeroSumGame:
    """A two-player zero-sum matrix game: the row player maximises xᵀAy, the column player minimises it.

    Both policies are updated simultaneously. ``reference`` is an optional pair (ρ_x, ρ_y) of KL
    anchors (uniform if omitted); ``nash`` an optional known equilibrium pair.
    """

    A: np.ndarray
    reference: tuple | None = None
    names: tuple | None = None
    nash: tuple | None = None
    name: str = "custom"
    log_reference: tuple = field(init=False, repr=False)

    def __post_init__(self):
        where = "ZeroSumGame"
        A, dtype = _as_matrix(self.A, "A", where)
        A.setflags(write=False)
        object.__setattr__(self, "A", A)
        m, n = A.shape[-2:]
        ref = self.reference
        if ref is None:
            ref = (np.full(m, 1.0 / m), np.full(n, 1.0 / n))
        if isinstance(ref, (str, bytes)) or not hasattr(ref, "__len__") or len(ref) != 2:
            V.fail("reference", ref, "it must be a pair (row reference, column reference) of probability vectors", where)
        object.__setattr__(
            self,
            "log_reference",
            (
                _as_distribution(ref[0], m, A.shape[:-2], "reference[0] (row)", where),
                _as_distribution(ref[1], n, A.shape[:-2], "reference[1] (column)", where),
            ),
        )
        if self.names is not None:
            if isinstance(self.names, (str, bytes)) or not isinstance(self.names, (list, tuple)) or len(self.names) != 2:
                V.fail("names", self.names, f"it must be a pair (row names [{m}], column names [{n}])", where)
            object.__setattr__(self, "names", (_names(self.names[0], m, "names[0] (rows)", where),
                                               _names(self.names[1], n, "names[1] (columns)", where)))
        if not isinstance(self.name, str):
            V.fail("name", self.name, "it must be a string", where, V.WrongType)
        if self.nash is not None:
            if isinstance(self.nash, (str, bytes)) or not hasattr(self.nash, "__len__") or len(self.nash) != 2:
                V.fail("nash", self.nash, "it must be a pair (x, y) of probability vectors", where)
            object.__setattr__(self, "nash", tuple(_check_nash(A, tuple(self.nash), (m, n), A.shape[:-2], "nash", where, dtype)))

    @property
    def sizes(self) -> tuple:
        return self.A.shape[-2:]

    @property
    def n(self) -> tuple:
        return self.sizes

    @property
    def batch_shape(self) -> tuple:
        return self.A.shape[:-2]

    def __len__(self):
        if not self.batch_shape:
            raise TypeError("a single game has no len(); only a batch of games does")
        return self.batch_shape[0]

    def __getitem__(self, b) -> "ZeroSumGame":
        if not self.batch_shape:
            raise TypeError("indexing selects a game from a batch; this is a single game")
        ref = tuple(np.exp(r if r.ndim == 1 else r[b]) for r in self.log_reference)
        nash = None if self.nash is None else tuple(np.asarray(x) if np.ndim(x) == 1 else np.asarray(x)[b] for x in self.nash)
        return ZeroSumGame(self.A[b], ref, self.names, nash, f"{self.name}[{b}]")

    def __repr__(self):
        b = f", batch={self.batch_shape}" if self.batch_shape else ""
        return f"ZeroSumGame({self.name!r}, shape={self.sizes}{b})"


Game = PreferenceGame | ZeroSumGame
