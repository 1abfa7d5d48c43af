"""Game containers: preference games and two-player zero-sum matrix games.

Both are plain validated values. A game may be *batched*: its matrix has a leading batch axis
(B, n, n), and every metric then returns one value per game.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Tolerances for validation. P + P^T = 1 is a modelling constraint, so we only forgive rounding.
ATOL = 1e-9


def _where(idx, batched):
    """Format an entry index for an error message, with the batch index when there is one."""
    idx = tuple(int(i) for i in idx)
    if batched:
        return f"game {idx[0]}, entry [{idx[1]}, {idx[2]}]"
    return f"entry [{idx[0]}, {idx[1]}]"


def _as_matrix(M, what):
    try:
        M = np.array(M, dtype=np.float64)  # a copy: we freeze it
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a numeric array; got {type(M).__name__} ({e})") from None
    if M.ndim not in (2, 3):
        raise ValueError(
            f"{what} must have shape (n, n) or, for a batch of games, (B, n, n); got shape {M.shape}"
        )
    if M.shape[-1] == 0 or M.shape[-2] == 0:
        raise ValueError(f"{what} must have at least one action per player; got shape {M.shape}")
    bad = np.argwhere(~np.isfinite(M))
    if len(bad):
        raise ValueError(f"{what} has a non-finite value ({M[tuple(bad[0])]}) at {_where(bad[0], M.ndim == 3)}")
    return M


def _as_distribution(p, n, batch_shape, what):
    """Validate a probability vector (n,) or batch (B, n); return its log, normalised exactly."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape not in ((n,), tuple(batch_shape) + (n,)):
        raise ValueError(f"{what} must have shape ({n},) or {tuple(batch_shape) + (n,)}; got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(
            f"{what} must be strictly positive (a KL anchor with a zero entry makes the regularised "
            f"game undefined); got min {np.min(p)!r}. Mix in a little uniform mass if you need near-zero entries."
        )
    s = p.sum(-1)
    if np.any(np.abs(s - 1) > 1e-9):
        raise ValueError(f"{what} must sum to 1 (got {s!r}); normalise it yourself so nothing is hidden")
    logp = np.log(p)
    return logp - np.log(np.exp(logp).sum(-1, keepdims=True))


@dataclass(frozen=True, eq=False)
class PreferenceGame:
    """A symmetric constant-sum preference game, P[i, j] = P(i ≻ j).

    Rules (checked on construction): square, finite, entries in [0, 1], P + Pᵀ = 1 and diagonal ½
    within 1e-9. The row policy π plays against itself; its win rates are (Pπ)_y = P(y ≻ π).
    ``reference`` is the KL anchor μ (uniform if omitted); ``nash`` an optional known equilibrium.
    """

    P: np.ndarray
    reference: np.ndarray | None = None
    names: tuple | None = None
    nash: np.ndarray | None = None
    name: str = "custom"
    log_reference: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        P = _as_matrix(self.P, "preference matrix P")
        batched = P.ndim == 3
        if P.shape[-1] != P.shape[-2]:
            raise ValueError(f"preference matrix P must be square (n x n); got shape {P.shape}")
        diag = np.diagonal(P, axis1=-2, axis2=-1)
        bad = np.argwhere(np.abs(diag - 0.5) > ATOL)
        if len(bad):  # checked first: a wrong diagonal also breaks P + Pᵀ = 1, but this is the clearer rule
            i = tuple(bad[0]) + (bad[0][-1],)
            raise ValueError(f"invalid preference matrix at {_where(i, batched)} = {P[i]!r}: the diagonal must be 1/2 (a response ties with itself)")
        for mask, rule in (
            ((P < -ATOL) | (P > 1 + ATOL), "entries must be probabilities in [0, 1]"),
            (np.abs(P + np.swapaxes(P, -1, -2) - 1) > ATOL, "P[i, j] + P[j, i] must equal 1 (a preference is antisymmetric)"),
        ):
            bad = np.argwhere(mask)
            if len(bad):
                raise ValueError(f"invalid preference matrix at {_where(bad[0], batched)} = {P[tuple(bad[0])]!r}: {rule}")
        n = P.shape[-1]
        P.setflags(write=False)
        object.__setattr__(self, "P", P)
        if self.names is not None:
            if len(self.names) != n:
                raise ValueError(f"names must have one entry per action ({n}); got {len(self.names)}")
            object.__setattr__(self, "names", tuple(self.names))
        ref = np.full(n, 1.0 / n) if self.reference is None else self.reference
        object.__setattr__(self, "log_reference", _as_distribution(ref, n, P.shape[:-2], "reference"))
        if self.nash is not None:
            object.__setattr__(self, "nash", np.asarray(self.nash, dtype=np.float64))

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
        A = _as_matrix(self.A, "payoff matrix A")
        A.setflags(write=False)
        object.__setattr__(self, "A", A)
        m, n = A.shape[-2:]
        ref = self.reference
        if ref is None:
            ref = (np.full(m, 1.0 / m), np.full(n, 1.0 / n))
        if len(ref) != 2:
            raise ValueError("reference for a ZeroSumGame must be a pair (row reference, column reference)")
        object.__setattr__(
            self,
            "log_reference",
            (
                _as_distribution(ref[0], m, A.shape[:-2], "row reference"),
                _as_distribution(ref[1], n, A.shape[:-2], "column reference"),
            ),
        )
        if self.names is not None:
            if len(self.names) != 2 or len(self.names[0]) != m or len(self.names[1]) != n:
                raise ValueError(f"names must be a pair (row names [{m}], column names [{n}])")

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
