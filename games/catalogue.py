"""Built-in games: ``games.make(name, **kwargs)`` and ``games.available()``.

Every seeded generator takes ``batch=B`` and then returns one game holding B independent draws
(matrix of shape (B, n, n)); ``game[b]`` is draw b as a single game.
"""
from __future__ import annotations

import inspect

import numpy as np
from scipy.special import expit

from . import validation as V
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
    eps = V.number(eps, "eps", low=-2 / 3, high=1 / 3, low_open=True, high_open=True, where="condorcet")
    if not -2 / 3 < eps < 1 / 3:  # pragma: no cover - checked above; the rule, spelled out
        raise AssertionError
    w1, w2, w3 = 1 / 3 - eps, 1 / 3 + eps / 2, 1 / 3 + eps / 2
    P = np.full((3, 3), 0.5)
    P[1, 0], P[0, 2], P[2, 1] = .5 + w1 / 2, .5 + w2 / 2, .5 + w3 / 2
    P[0, 1], P[2, 0], P[1, 2] = 1 - P[1, 0], 1 - P[0, 2], 1 - P[2, 1]
    return _pref(P, "condorcet", np.array([w3, w2, w1]) / (w1 + w2 + w3), ("y1", "y2", "y3"))


def _rng(seed, where):
    return np.random.default_rng(V.integer(seed, "seed", low=0, where=where))


def _shape(n, batch, where):
    n = V.integer(n, "n", low=1, where=where)
    batch = V.integer(batch, "batch", low=1, allow_none=True, where=where)
    return (n,) if batch is None else (batch, n)


def bradley_terry(scores=None, n: int | None = None, seed: int | None = None, batch: int | None = None):
    """Transitive P_ij = σ(s_i − s_j) from scores (random N(0,1) if omitted: n = 5, seed = 0 by
    default); pure NE at argmax s. Given scores fix the game: n, seed and batch are then refused
    rather than silently ignored."""
    where = "bradley_terry"
    if scores is None:
        s = _rng(0 if seed is None else seed, where).normal(size=_shape(5 if n is None else n, batch, where))
    else:
        for name, value in (("n", n), ("seed", seed), ("batch", batch)):
            if value is not None:
                V.fail(name, value, "it is not used when scores are given (the scores fix the game); drop it", where)
        s = V.real_array(scores, "scores", ndim=(1, 2), where=where)
        if s.shape[-1] == 0:
            V.fail("scores", scores, "it must hold one score per response (at least one)", where)
    P = expit(s[..., :, None] - s[..., None, :])  # σ(s_i − s_j) without overflow warnings
    nash = None
    if s.ndim == 1:
        nash = np.eye(len(s))[np.argmax(s)]
    return _pref(P, "bradley_terry", nash)


def bt_mixture(n: int = 5, k: int | None = None, seed: int = 0, weights=None, scale: float = 3.0,
               batch: int | None = None):
    """A population of k Bradley–Terry annotators, P = Σ_a w_a σ(s^a_i − s^a_j): generally intransitive.
    k: the number of annotators (default: one per weight if ``weights`` are given, else 3)."""
    where = "bt_mixture"
    rng = _rng(seed, where)
    shape = _shape(n, batch, where)
    if k is None:
        k = 3 if weights is None else len(V.distribution(weights, "weights", where=where))
    k = V.integer(k, "k", low=1, where=where)
    scale = V.number(scale, "scale", low=0, low_open=True, where=where)
    w = np.full(k, 1 / k) if weights is None else V.distribution(weights, "weights", size=k, where=where)
    if w.ndim != 1:
        V.fail("weights", weights, f"it must be {k} non-negative numbers summing to 1 (one per annotator)", where)
    s = rng.normal(scale=scale, size=shape[:-1] + (k, n))
    P = np.einsum("a,...aij->...ij", w, expit(s[..., :, None] - s[..., None, :]))
    return _pref(P, "bt_mixture")


def random(n: int = 10, seed: int = 0, batch: int | None = None):
    """EGPO's random games: P_ij ~ U(0, 1) below the diagonal, P_ji = 1 − P_ij, diagonal ½."""
    shape = _shape(n, batch, "random")
    U = _rng(seed, "random").uniform(size=shape[:-1] + (n, n))
    low = np.tril(U, -1)
    P = low + np.swapaxes(1 - low, -1, -2) * (np.triu(np.ones((n, n)), 1)) + 0.5 * np.eye(n)
    return _pref(P, "random")


def random_skew(n: int = 10, seed: int = 0, scale: float = 1.0, batch: int | None = None):
    """P = σ(scale·(G − Gᵀ)) with G standard Gaussian: skew-Gaussian logits, always a valid P."""
    scale = V.number(scale, "scale", low=0, low_open=True, where="random_skew")
    shape = _shape(n, batch, "random_skew")
    G = _rng(seed, "random_skew").normal(size=shape[:-1] + (n, n))
    A = scale * (G - np.swapaxes(G, -1, -2))
    return _pref(expit(A), "random_skew")


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
    ``make("kuhn_poker")``. Names are matched ignoring case, surrounding spaces and '-' vs '_'.

    Errors (ValueErrors naming the argument): an unknown name (the message lists the valid ones),
    an argument the game does not take (the message lists those it does), or a bad value for one
    (each generator checks its own arguments with ``games.validation``).
    """
    where = "games.make"
    if not isinstance(name, str):
        V.fail("name", name, f"it must be a game name (a string), one of: {', '.join(available())}", where, V.WrongType)
    key = name.strip().lower().replace("-", "_")
    if key in BUILTIN:
        fn = BUILTIN[key]
        params = inspect.signature(fn).parameters
        for k, v in kwargs.items():
            if k not in params:  # checked up front: a TypeError inside the generator is a bug, not a bad argument
                V.fail(k, v, f"game {key!r} takes no argument {k!r}; it takes: {', '.join(params) or 'none'}", where)
        return fn(**kwargs)
    if key in _open_spiel_names():
        try:
            return open_spiel_game(key, **kwargs)
        except ValueError:
            raise
        except Exception as e:  # pyspiel.SpielError: unknown or invalid game parameters
            if type(e).__name__ != "SpielError":
                raise
            shown = next(iter(kwargs.values())) if len(kwargs) == 1 else kwargs
            V.fail(", ".join(kwargs) or "name", shown if kwargs else name,
                   f"open_spiel cannot load game {key!r} with {'this parameter' if len(kwargs) == 1 else 'these parameters'}: {e}",
                   where)
    import difflib

    close = difflib.get_close_matches(key, available(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    V.fail("name", name, f"unknown game{hint}; available: {', '.join(available())}", where)
