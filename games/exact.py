"""The exact backend: the interface every algorithm is written against, realised exactly.

A policy is a value (:class:`TabularPolicy`): normalised log-probabilities, one array per policy
slot (one slot for a preference game played in self-play; two for a zero-sum game). Win rates are a
value too (:class:`WinRates`): for each slot, the payoff vector q of its actions against the opponent.
An algorithm step asks for win rates and for a log-linear combination of policies and win rates to
be *realised* as a policy; here that is one softmax in log space, on an LLM it is an SGD fit.

Everything is computed in log space and batched over leading axes, with numpy (default) or torch.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import numpy as np

from .core import PreferenceGame, ZeroSumGame
from .ops import make_ops


@dataclass(frozen=True, eq=False)
class TabularPolicy:
    """Log-probabilities per slot, each of shape (*batch, n_slot), normalised (logsumexp = 0)."""

    logp: tuple

    def __getstate__(self):
        # what the backend cached on this value (probabilities, payoffs) is not part of it
        return {k: v for k, v in self.__dict__.items() if k != "_exact_cache"}


@dataclass(frozen=True, eq=False)
class WinRates:
    """Per slot, the payoff of every action against an opponent: q = P σ (preference game)."""

    q: tuple


@dataclass(frozen=True)
class _Role:
    slot: int  # which policy this role's payoff is for
    opp: int  # which policy it plays against
    left: bool  # q = M σ (row role) or q = -σᵀ M (column role)


class ExactBackend:
    """Exact win rates, exact realisation (softmax of the target logits) and exact metrics.

    ``backend`` picks the array library ("numpy" or "torch"); ``device`` and ``dtype`` are passed
    to torch. Batched games run as one batch: every array carries the game's batch axes first.
    """

    #: every metric here is exact (the run loop records the gaps; ``until=`` may use them)
    exact_metrics = True

    def __init__(self, game, backend: str = "numpy", device=None, dtype=None):
        if not isinstance(game, (PreferenceGame, ZeroSumGame)):
            raise TypeError(
                f"expected a games.PreferenceGame or games.ZeroSumGame, got {type(game).__name__}; "
                "build one with games.make(name) or games.PreferenceGame(P)"
            )
        self.game = game
        self.ops = make_ops(backend, device, dtype)
        self.symmetric = isinstance(game, PreferenceGame)
        M = game.P if self.symmetric else game.A
        self.M = self.ops.asarray(M)
        self.batch_shape = tuple(game.batch_shape)
        if self.symmetric:
            # Self-play: one policy; the column role exists only for metrics (−Pᵀπ = Pπ − 1).
            self._update_roles = (_Role(0, 0, True),)
            self._gap_roles = (_Role(0, 0, True), _Role(0, 0, False))
            log_ref = (game.log_reference,)
        else:
            self._update_roles = (_Role(0, 1, True), _Role(1, 0, False))
            self._gap_roles = self._update_roles
            log_ref = game.log_reference
        self.reference = TabularPolicy(tuple(self._broadcast(self.ops.asarray(r)) for r in log_ref))
        # ½·(largest payoff range over one row or one column): the ℓ1→ℓ∞ Lipschitz constant of the
        # game operator on the simplex (differences of policies sum to zero, so only ranges matter).
        Mn = np.asarray(M)
        rows = Mn.max(-1) - Mn.min(-1)
        cols = Mn.max(-2) - Mn.min(-2)
        L = 0.5 * np.maximum(rows.max(-1), cols.max(-1))
        self.lipschitz = float(L) if L.ndim == 0 else L
        if np.any(np.asarray(self.lipschitz) == 0):
            raise ValueError("the game is constant (every payoff equal): every policy is an equilibrium, there is nothing to learn")
        self.queries = 0
        # Policies are values, so what is derived from one (its probabilities, its payoff vectors) is
        # cached on it and reused: the run loop's average, the next step's query and the metrics then
        # share one exp and one pass over the matrix. The token ties a cache to this backend's game.
        self._token = object()

    # -- helpers ------------------------------------------------------------------------------------
    def _broadcast(self, x):
        if x.ndim - 1 < len(self.batch_shape):
            shape = self.batch_shape + tuple(x.shape[-1:])
            x = x + self.ops.asarray(np.zeros(shape))
        return x

    def _coef(self, c):
        """A scalar or a per-game array of coefficients, shaped to broadcast over actions."""
        if isinstance(c, (int, float)):
            return c
        c = self.ops.coef(c)
        return c if c.ndim == 0 else c[..., None]

    def asarray(self, x):
        """Numbers or numpy arrays (e.g. per-game hyperparameters) as this backend's arrays."""
        return self.ops.coef(x)

    def _cache(self, policy: TabularPolicy) -> dict:
        c = policy.__dict__.get("_exact_cache")
        if c is None or c[0] is not self._token:
            c = (self._token, {})
            object.__setattr__(policy, "_exact_cache", c)  # frozen dataclass: a private, derived field
        return c[1]

    @property
    def slots(self) -> int:
        return len(self._update_roles)

    def _q(self, role, policy: TabularPolicy):
        """Payoffs of ``role``'s actions against ``policy`` (one pass over the matrix, cached)."""
        cache = self._cache(policy)
        key = (role.opp, role.left)
        q = cache.get(key)
        if q is None:
            p = self.probs(policy)[role.opp]
            q = cache[key] = self.ops.matvec(self.M, p) if role.left else -self.ops.vecmat(p, self.M)
        return q

    def probs(self, policy: TabularPolicy) -> tuple:
        cache = self._cache(policy)
        p = cache.get("probs")
        if p is None:
            p = cache["probs"] = tuple(self.ops.exp(l) for l in policy.logp)
        return p

    # -- the interface the algorithms use ---------------------------------------------------------
    def initial_policy(self, init=None) -> TabularPolicy:
        """The reference policy, or ``init`` (probabilities, one array per slot for a zero-sum game)."""
        if init is None:
            return self.reference
        return self.from_probs(init)

    def win_rates(self, sigma: TabularPolicy) -> WinRates:
        """One oracle query per game: every action's payoff against σ, for every slot."""
        self.queries += 1
        return WinRates(tuple(self._q(r, sigma) for r in self._update_roles))

    def realise(self, terms) -> TabularPolicy:
        """The policy whose logits are Σ coef·term (term: a policy's log-probs or win rates), normalised."""
        out = []
        for s in range(self.slots):
            logits = None
            for c, term in terms:
                if isinstance(c, (int, float)) and c == 0:
                    continue  # skips 0·(−inf) for policies with zero mass
                arr = term.logp[s] if isinstance(term, TabularPolicy) else term.q[s]
                cc = self._coef(c)
                if isinstance(term, TabularPolicy) and not isinstance(cc, (int, float)) and (
                        not isinstance(c, np.ndarray) or np.any(c == 0)):
                    # a per-game coefficient that is 0 for some games: 0·(−inf) must be 0 there too
                    # (decided on the host from numpy coefficients: no device sync, no cost otherwise)
                    with np.errstate(invalid="ignore"):
                        x = self.ops.where(cc == 0, 0.0 * cc, cc * arr)
                else:
                    x = cc * arr
                if logits is None:
                    logits = x
                elif logits.shape == x.shape:
                    logits += x  # in place into the fresh array made just above: no one else holds it
                else:
                    logits = logits + x
            out.append(self._normalise(logits))
        return TabularPolicy(tuple(out))

    def mixture(self, policy: TabularPolicy, other: TabularPolicy, weight) -> TabularPolicy:
        """The geometric mixture π^(1−w)·μ^w, normalised (exact here; token-level on an LLM)."""
        return self.realise(((1 - weight, policy), (weight, other)))

    def where(self, mask, a: TabularPolicy, b: TabularPolicy) -> TabularPolicy:
        """Per game of a batch: ``a`` where ``mask`` else ``b``."""
        if isinstance(mask, (bool, np.bool_)):
            return a if mask else b
        if not (self.ops.is_array(mask) and mask.dtype == self._bool_dtype):
            mask = self.ops.asarray(mask) > 0
        m = mask[..., None]
        return TabularPolicy(tuple(self.ops.where(m, x, y) for x, y in zip(a.logp, b.logp)))

    @functools.cached_property
    def _bool_dtype(self):
        return (self.ops.asarray(0.0) > 0).dtype

    def _normalise(self, logits):
        if logits is None or not self.ops.is_array(logits):
            raise ValueError("a realised target needs at least one term with a non-zero coefficient")
        return logits - self.ops.logsumexp(logits)[..., None]

    # -- the average iterate (the run loop keeps it only on backends that have these) ----------------
    def average(self, avg, policy: TabularPolicy, t: int):
        """Running mean of the iterates' probabilities: avg_t = avg_{t−1} + (π_t − avg_{t−1})/t."""
        probs = self.probs(policy)
        if avg is None:
            return probs
        return tuple(a + (p - a) * (1.0 / t) for a, p in zip(avg, probs))

    def from_average(self, avg) -> TabularPolicy:
        with np.errstate(divide="ignore"):
            return TabularPolicy(tuple(self.ops.log(a) for a in avg))

    def host(self, x):
        """A metric value (one per game) as numpy float64, wherever the backend computed it."""
        return np.asarray(self.ops.to_numpy(x), dtype=np.float64)

    def to_arrays(self, policy: TabularPolicy):
        """Probabilities as this backend's arrays (fresh, nothing aliased); a pair for a zero-sum game."""
        probs = tuple(self.ops.exp(l) for l in policy.logp)
        return probs[0] if len(probs) == 1 else probs

    # -- metrics (exact) ----------------------------------------------------------------------------
    def duality_gap(self, policy: TabularPolicy):
        """max_y (Pπ)_y − min_y (πᵀP)_y; for a zero-sum pair max(Ay) − min(xᵀA). Zero exactly at a NE."""
        return functools.reduce(operator.add, (self.ops.max(self._q(r, policy)) for r in self._gap_roles))

    def regularized_gap(self, policy: TabularPolicy, beta, magnet: TabularPolicy | None = None):
        """Duality gap of the game regularised by β·KL(·‖magnet) (magnet: the reference by default).

        Σ over roles of β·logsumexp(log ρ + q/β) + β·KL(π‖ρ); for a preference game
        2β·logsumexp(log ρ + Pπ/β) − 1 + 2β·KL(π‖ρ). Zero exactly at the regularised NE.
        """
        magnet = self.reference if magnet is None else magnet
        if isinstance(beta, (int, float)) and beta == 0:
            return self.duality_gap(policy)
        b = self._coef(beta)
        b0 = b if isinstance(b, (int, float)) else b[..., 0]
        total = 0.0
        probs = self.probs(policy)
        for r in self._gap_roles:
            lr = magnet.logp[r.slot]
            total = total + b0 * self.ops.logsumexp(lr + self._q(r, policy) / b)
            total = total + b0 * self._kl(probs[r.slot], policy.logp[r.slot], lr)
        return total

    def _kl(self, p, lp, lq):
        # 0·log 0 = 0: entries with no mass contribute nothing even where lq is −inf too.
        with np.errstate(invalid="ignore"):  # (−inf) − (−inf) where p = 0: masked out
            return self.ops.sum(self.ops.where(p > 0, p * (lp - lq), 0.0 * p))

    def kl(self, p: TabularPolicy, q: TabularPolicy):
        """KL(p‖q), summed over policy slots."""
        return sum(self._kl(pp, a, b) for pp, a, b in zip(self.probs(p), p.logp, q.logp))

    # -- conversion ---------------------------------------------------------------------------------
    def to_numpy(self, policy: TabularPolicy):
        """Probabilities as numpy: one array (preference game) or the pair (x, y) (zero-sum game)."""
        # a copy: the probabilities are cached on the policy value and must not be mutable through it
        ps = tuple(np.array(self.ops.to_numpy(p), dtype=np.float64) for p in self.probs(policy))
        return ps[0] if self.symmetric else ps

    def from_probs(self, probs) -> TabularPolicy:
        """A policy from probabilities (validated: finite, non-negative, summing to 1)."""
        parts = (probs,) if self.symmetric else tuple(probs)
        sizes = self.game.sizes
        if len(parts) != len(sizes):
            raise ValueError(f"a policy for this game is a pair (x, y); got {len(parts)} arrays")
        out = []
        for p, n in zip(parts, sizes):
            p = np.asarray(self.ops.to_numpy(p) if not isinstance(p, np.ndarray) else p, dtype=np.float64)
            if p.shape[-1] != n or not np.all(np.isfinite(p)) or np.any(p < 0):
                raise ValueError(f"a policy must be a finite, non-negative vector of length {n}; got shape {p.shape}")
            if np.any(np.abs(p.sum(-1) - 1) > 1e-9):
                raise ValueError(f"a policy must sum to 1; got {p.sum(-1)!r}")
            if p.shape[:-1] not in ((), self.batch_shape):
                raise ValueError(f"a policy for this game has shape ({n},)" + (f" or {self.batch_shape + (n,)} (one row per game)"
                                 if self.batch_shape else "") + f"; got {p.shape}")
            with np.errstate(divide="ignore"):
                out.append(self._broadcast(self.ops.asarray(np.log(p))))
        return TabularPolicy(tuple(out))

    def fingerprint(self) -> dict:
        """What a resumed run must match (JSON-able): the game (a hash of its matrix and reference),
        the array library, dtype and device. A numpy checkpoint is not resumed on torch, nor a
        float64 one in float32: the iterates would differ from the uninterrupted run's."""
        import hashlib

        h = hashlib.sha256()
        refs = (self.game.log_reference,) if self.symmetric else tuple(self.game.log_reference)
        for a in (self.game.P if self.symmetric else self.game.A, *refs):
            a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
        return {"game": type(self.game).__name__, "game_sha256": h.hexdigest()[:32],
                "array_library": self.ops.name, "dtype": str(self.ops.dtype).replace("torch.", ""),
                # the kind of device, not its index: the same run resumes on another GPU of the machine
                "device": getattr(getattr(self.ops, "device", None), "type", "cpu")}

    def __repr__(self):
        return f"ExactBackend({self.game!r}, {self.ops.name})"


def tile(game, B: int):
    """A batch of ``B`` copies of a single game, e.g. to sweep per-game hyperparameters on one game:
    ``run(MMD(eta=etas, alpha=alphas), tile(g, len(etas)), steps)`` with arrays of length B."""
    if not isinstance(B, (int, np.integer)) or B < 1:
        raise ValueError(f"B must be a positive int; got {B!r}")
    if game.batch_shape:
        raise ValueError(f"tile repeats a single game; this one is already a batch of shape {game.batch_shape}")
    rep = lambda x: np.broadcast_to(x, (B,) + np.shape(x))
    name = f"{game.name}x{B}"
    if isinstance(game, PreferenceGame):
        nash = None if game.nash is None else rep(game.nash)
        return PreferenceGame(rep(game.P), rep(np.exp(game.log_reference)), game.names, nash, name)
    ref = tuple(rep(np.exp(r)) for r in game.log_reference)
    return ZeroSumGame(rep(game.A), ref, game.names, game.nash, name)
