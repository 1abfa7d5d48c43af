"""Built-in games: ``games.make(name, **kwargs)`` and ``games.available()``.

Every seeded generator takes ``batch=B`` and then returns one game holding B independent draws
(matrix of shape (B, n, n)); ``game[b]`` is draw b as a single game.
"""
from __future__ import annotations

import numpy as np

from .core import PreferenceGame, ZeroSumGame


def _pref(P, name, nash=None, names=None, reference=None):
    return PreferenceGame(np.asarray(P, dtype=np.float64), reference=reference, names=names, nash=nash, name=name)


def rps():
    """Rock–paper–scissors as a deterministic preference cycle; NE uniform."""
    return _pref([[.5, 0, 1], [1, .5, 0], [0, 1, .5]], "rps", np.full(3, 1 / 3), ("rock", "paper", "scissors"))


def perturbed_rps():
    """MMD's perturbed RPS [[0,−3,3],[3,0,−1],[−3,1,0]] min–max normalised to [0, 1]; NE (1/7, 3/7, 3/7)."""
    return _pref([[.5, 0, 1], [1, .5, 1 / 3], [0, 2 / 3, .5]], "perturbed_rps", np.array([1, 3, 3]) / 7,
                 ("rock", "paper", "scissors"))


def cyclic3():
    """The 3×3 cyclic game of COMAL: P(b≻a) = P(c≻b) = .9, P(a≻c) = .8; NE (4/11, 3/11, 4/11)."""
    return _pref([[.5, .1, .8], [.9, .5, .1], [.2, .9, .5]], "cyclic3", np.array([4, 3, 4]) / 11, ("a", "b", "c"))


def dice():
    """Non-transitive dice (NLHF App. C.1): each die beats the next with probability 5/9; NE uniform."""
    a, b = 5 / 9, 4 / 9
    return _pref([[.5, a, b], [b, .5, a], [a, b, .5]], "dice", np.full(3, 1 / 3), ("A", "B", "C"))


def condorcet(eps: float = 0.1):
    """NLHF §3.2's three annotator types with masses (1/3−ε, 1/3+ε/2, 1/3+ε/2) and cyclic tastes.

    P(y2≻y1) = ½ + w1/2, P(y1≻y3) = ½ + w2/2, P(y3≻y2) = ½ + w3/2; NE (1/3+ε/2, 1/3+ε/2, 1/3−ε).
    """
    if not -2 / 3 < eps < 1 / 3:
        raise ValueError(f"condorcet: eps must lie in (-2/3, 1/3) so every annotator mass is positive; got {eps}")
    w1, w2, w3 = 1 / 3 - eps, 1 / 3 + eps / 2, 1 / 3 + eps / 2
    P = np.full((3, 3), 0.5)
    P[1, 0], P[0, 2], P[2, 1] = .5 + w1 / 2, .5 + w2 / 2, .5 + w3 / 2
    P[0, 1], P[2, 0], P[1, 2] = 1 - P[1, 0], 1 - P[0, 2], 1 - P[2, 1]
    return _pref(P, "condorcet", np.array([w3, w2, w1]) / (w1 + w2 + w3), ("y1", "y2", "y3"))


def _rng(seed):
    return np.random.default_rng(seed)


def _shape(n, batch):
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    if batch is not None and (not isinstance(batch, (int, np.integer)) or batch < 1):
        raise ValueError(f"batch must be a positive int; got {batch!r}")
    return (n,) if batch is None else (batch, n)


def bradley_terry(scores=None, n: int = 5, seed: int = 0, batch: int | None = None):
    """Transitive P_ij = σ(s_i − s_j) from scores (random N(0,1) if omitted); pure NE at argmax s."""
    if scores is None:
        s = _rng(seed).normal(size=_shape(n, batch))
    else:
        s = np.asarray(scores, dtype=np.float64)
    P = 1 / (1 + np.exp(-(s[..., :, None] - s[..., None, :])))
    nash = None
    if s.ndim == 1:
        nash = np.eye(len(s))[np.argmax(s)]
    return _pref(P, "bradley_terry", nash)


def bt_mixture(n: int = 5, k: int = 3, seed: int = 0, weights=None, scale: float = 3.0, batch: int | None = None):
    """A population of k Bradley–Terry annotators, P = Σ_a w_a σ(s^a_i − s^a_j): generally intransitive."""
    rng = _rng(seed)
    shape = _shape(n, batch)
    s = rng.normal(scale=scale, size=shape[:-1] + (k, n))
    w = np.full(k, 1 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
        raise ValueError(f"bt_mixture: weights must be {k} non-negative numbers summing to 1; got {weights!r}")
    P = np.einsum("a,...aij->...ij", w, 1 / (1 + np.exp(-(s[..., :, None] - s[..., None, :]))))
    return _pref(P, "bt_mixture")


def random(n: int = 10, seed: int = 0, batch: int | None = None):
    """EGPO's random games: P_ij ~ U(0, 1) below the diagonal, P_ji = 1 − P_ij, diagonal ½."""
    shape = _shape(n, batch)
    U = _rng(seed).uniform(size=shape[:-1] + (n, n))
    low = np.tril(U, -1)
    P = low + np.swapaxes(1 - low, -1, -2) * (np.triu(np.ones((n, n)), 1)) + 0.5 * np.eye(n)
    return _pref(P, "random")


def random_skew(n: int = 10, seed: int = 0, scale: float = 1.0, batch: int | None = None):
    """P = σ(scale·(G − Gᵀ)) with G standard Gaussian: skew-Gaussian logits, always a valid P."""
    if not scale > 0:
        raise ValueError(f"random_skew: scale must be > 0; got {scale}")
    shape = _shape(n, batch)
    G = _rng(seed).normal(size=shape[:-1] + (n, n))
    A = scale * (G - np.swapaxes(G, -1, -2))
    return _pref(1 / (1 + np.exp(-A)), "random_skew")


def open_spiel_game(name: str, **params):
    """An open_spiel two-player zero-sum matrix game (or Kuhn poker in matrix form) by name."""
    from . import open_spiel_bridge as osb

    A, rows, cols = osb.payoff_matrix(name, **params)
    return ZeroSumGame(A, names=(tuple(rows), tuple(cols)), name=name)


BUILTIN = {
    "rps": rps,
    "perturbed_rps": perturbed_rps,
    "cyclic3": cyclic3,
    "dice": dice,
    "condorcet": condorcet,
    "bradley_terry": bradley_terry,
    "bt_mixture": bt_mixture,
    "random": random,
    "random_skew": random_skew,
}

#: the built-in intransitive games with an interior NE, the default set for experiments
INTRANSITIVE = ("cyclic3", "perturbed_rps", "dice", "condorcet", "rps")


def _open_spiel_names():
    try:
        from . import open_spiel_bridge as osb

        return osb.matrix_game_names()
    except ImportError:
        return []


def available() -> list[str]:
    """Every name ``make`` accepts: the built-in games, then open_spiel's (if it is installed)."""
    return list(BUILTIN) + [n for n in _open_spiel_names() if n not in BUILTIN]


def make(name: str, **kwargs):
    """A game by name, e.g. ``make("cyclic3")``, ``make("random", n=10, seed=0, batch=4096)``,
    ``make("kuhn_poker")``. Unknown names raise ValueError listing the valid ones."""
    key = name.strip().lower().replace("-", "_")
    if key in BUILTIN:
        fn = BUILTIN[key]
        try:
            return fn(**kwargs)
        except TypeError as e:
            import inspect

            params = ", ".join(inspect.signature(fn).parameters) or "none"
            raise ValueError(f"game {key!r} got unexpected arguments ({e}); it takes: {params}") from None
    if key in _open_spiel_names():
        return open_spiel_game(key, **kwargs)
    raise ValueError(f"unknown game {name!r}; available: {', '.join(available())}")
