"""Bridge to OpenSpiel: reference payoff matrices, MMD trajectories, NashConv.

This module is an *oracle*: it lets our own matrix-game code be checked
against OpenSpiel's implementations.  It depends only on numpy, pyspiel and
``open_spiel.python``; every pyspiel import happens inside a function so the
rest of the package imports fine on machines without OpenSpiel.

Conventions used throughout
---------------------------
* ``A[i, j]`` is the payoff of the ROW player (player 0) when row ``i`` meets
  column ``j``.  The row player MAXIMISES ``x^T A y``; the column player
  receives ``-A`` (zero-sum), i.e. minimises ``x^T A y``.
* Exploitability of ``(x, y)`` is ``(max(A y) - min(x^T A)) / 2``; OpenSpiel's
  NashConv equals the full duality gap ``max(A y) - min(x^T A)``.

Findings about ``open_spiel.python.algorithms.mmd_dilated`` (v2.0.2), all
checked in ``tests/test_open_spiel_bridge.py``:

* ``sequence_form_utils.construct_vars`` returns the per-player *utility*
  tensor; ``MMDDilatedEnt`` negates player 0's slice, so ``self.payoff_mat`` is
  player 0's LOSS matrix (``-A`` plus a zero row/column for the empty
  sequence).  Net effect: the row player maximises ``x^T A y`` as above.
* The update is SIMULTANEOUS (both players use ``(x_t, y_t)``), with the
  uniform distribution as magnet (dilated entropy is the regulariser):
  ``x_{t+1} ∝ (x_t * exp(eta * A y_t)) ** (1 / (1 + eta * alpha))`` and
  ``y_{t+1} ∝ (y_t * exp(-eta * A^T x_t)) ** (1 / (1 + eta * alpha))``.
* Default stepsize is ``eta = alpha / max|A|**2`` (the max over the sequence
  form matrix, which equals ``max|A|`` for a one-shot game).
* The initial iterate is uniform for both players.
"""

from __future__ import annotations

import functools

import numpy as np

# Normal-form games with more pure strategies than this per player are left
# out of the catalogue: enumerating them would dominate any test run.
MAX_ACTIONS = 2000

# Extensive-form games converted with ``pyspiel.extensive_to_matrix_game``.
# kuhn_poker (64 x 64) converts in ~0.03 s.  leduc_poker was tried and did not
# finish within 20 s (its reduced strategy space is astronomically large), so
# it is excluded.
EXTENSIVE_FORM_GAMES = ("kuhn_poker",)


# --------------------------------------------------------------------------
# Game catalogue
# --------------------------------------------------------------------------


def _is_competitive(game_type) -> bool:
    """True when the game's utility type is zero-sum or constant-sum."""
    import pyspiel

    utility = pyspiel.GameType.Utility
    return game_type.utility in (utility.ZERO_SUM, utility.CONSTANT_SUM)


def _two_player_params(game_type) -> dict:
    """Default-load parameters forcing two players where that is a parameter."""
    spec = game_type.parameter_specification
    if "players" in spec and spec["players"] != 2:
        return {"players": 2}
    return {}


def _is_small_one_shot(game_type) -> bool:
    """Loads the game with defaults and checks it is a small one-shot game."""
    import pyspiel

    try:
        game = pyspiel.load_game(game_type.short_name,
                                 _two_player_params(game_type))
    except Exception:  # pylint: disable=broad-except
        # Some registered games need mandatory parameters (e.g. a file name);
        # those cannot be loaded "by name", which is what we catalogue.
        return False
    return (game.num_players() == 2 and game.max_game_length() == 1
            and game.num_distinct_actions() <= MAX_ACTIONS)


def _is_matrix_candidate(game_type) -> bool:
    """Cheap type-level filter: 2-player, simultaneous, no chance, competitive."""
    import pyspiel

    return (game_type.dynamics == pyspiel.GameType.Dynamics.SIMULTANEOUS
            and game_type.chance_mode
            == pyspiel.GameType.ChanceMode.DETERMINISTIC
            and game_type.min_num_players <= 2 <= game_type.max_num_players
            and _is_competitive(game_type))


@functools.lru_cache(maxsize=None)
def _cached_names() -> tuple[str, ...]:
    import pyspiel

    normal_form = sorted(
        gt.short_name for gt in pyspiel.registered_games()
        if _is_matrix_candidate(gt) and _is_small_one_shot(gt))
    return tuple(normal_form) + EXTENSIVE_FORM_GAMES


def matrix_game_names() -> list[str]:
    """Names of OpenSpiel games usable as two-player zero-sum matrix games.

    Normal-form games are discovered from ``pyspiel.registered_games()``: the
    game type must be simultaneous, deterministic, allow 2 players and be
    ZERO_SUM or CONSTANT_SUM; loaded with default parameters it must be
    one-shot (``max_game_length() == 1``) with at most ``MAX_ACTIONS``
    actions.  With open_spiel 2.0.2 this yields ``blotto`` (66 x 66 by
    default), ``matrix_brps``, ``matrix_mp``, ``matrix_rps``, ``matrix_rpsw``
    (multi-step simultaneous games such as ``oshi_zumo`` or ``goofspiel`` are
    excluded).  The extensive-form games in ``EXTENSIVE_FORM_GAMES`` (only
    ``kuhn_poker``) are appended.  Discovery takes a few milliseconds and is
    cached.

    Returns:
        A fresh list of game short names (normal-form sorted, then
        extensive-form).
    """
    return list(_cached_names())


# --------------------------------------------------------------------------
# Payoff matrices
# --------------------------------------------------------------------------


def _check_known(name: str) -> None:
    """Raises ValueError for names outside the catalogue, explaining why."""
    import pyspiel

    valid = matrix_game_names()
    if name in valid:
        return
    registered = {gt.short_name: gt for gt in pyspiel.registered_games()}
    if name in registered and not _is_competitive(registered[name]):
        raise ValueError(
            f"Game {name!r} is not a two-player zero-sum/constant-sum game "
            f"(utility {registered[name].utility}); valid names: {valid}")
    raise ValueError(f"Unknown matrix game {name!r}; valid names: {valid}")


def _load_matrix_game(name: str, params: dict):
    """Returns a ``pyspiel.MatrixGame`` for a catalogued game."""
    import pyspiel

    game = pyspiel.load_game(name, params)
    if name in EXTENSIVE_FORM_GAMES:
        # Rows/cols are pure strategies; entries are chance-weighted expected
        # payoffs.
        return pyspiel.extensive_to_matrix_game(game)
    if game.num_distinct_actions() > MAX_ACTIONS:
        raise ValueError(f"{game} has {game.num_distinct_actions()} actions "
                         f"per player (> {MAX_ACTIONS}); too big to enumerate")
    # load_matrix_game also converts simultaneous one-shot games that are
    # not MatrixGame objects (e.g. blotto); str(game) carries the params.
    return pyspiel.load_matrix_game(str(game))


def _one_line(action_name: str) -> str:
    """Collapses the multi-line names of converted pure strategies."""
    return "; ".join(line.strip() for line in action_name.splitlines()
                     if line.strip())


def payoff_matrix(name: str, **params) -> tuple[np.ndarray, list[str],
                                                list[str]]:
    """Row player's payoff matrix of a catalogued OpenSpiel game.

    Args:
        name: a name from ``matrix_game_names()``.
        **params: game parameters passed to ``pyspiel.load_game`` (e.g.
            ``coins=5, fields=3`` for blotto).

    Returns:
        ``(A, row_names, col_names)`` where ``A[i, j]`` (float64) is player
        0's utility.  For a CONSTANT_SUM game ``A`` is still exactly ``u0``
        and ``u0 + u1`` equals a constant ``c``; since constants do not change
        best responses, ``A`` is strategically equivalent to the zero-sum
        game ``(u0, -u0)``.  For extensive-form games rows/columns are pure
        strategies (names give the action at each infostate, joined by
        ``"; "``) and ``A`` includes chance.

    Raises:
        ValueError: unknown name, a non-zero-sum game, a too large game, or
            utilities that are not constant-sum after loading.
    """
    _check_known(name)
    matrix_game = _load_matrix_game(name, params)
    u0 = np.asarray(matrix_game.row_utilities(), dtype=np.float64)
    u1 = np.asarray(matrix_game.col_utilities(), dtype=np.float64)
    total = u0 + u1
    from .validation import payoff_tolerance

    # constant up to rounding, relative to the payoffs' scale (np.allclose's absolute 1e-8 is not)
    if np.any(np.abs(total - total.flat[0]) > np.max(payoff_tolerance(np.stack([u0, u1])))):
        raise ValueError(f"{name} with {params} is not constant-sum")
    rows = [_one_line(matrix_game.row_action_name(i)) for i in range(u0.shape[0])]
    cols = [_one_line(matrix_game.col_action_name(j)) for j in range(u0.shape[1])]
    return u0, rows, cols


# --------------------------------------------------------------------------
# Building an OpenSpiel game from a payoff matrix
# --------------------------------------------------------------------------


def _turn_based_game(A: np.ndarray):
    """Turn-based zero-sum game: player 0 picks a row, then player 1 a column.

    Player 1 moves second but does not observe player 0's action, so each
    player has exactly one (non-empty) infoset whose actions are the matrix's
    rows/columns.
    """
    import pyspiel

    A = np.asarray(A, dtype=np.float64)
    matrix_game = pyspiel.create_matrix_game(A.tolist(), (-A).tolist())
    return pyspiel.convert_to_turn_based(matrix_game)


def _infostate_keys(game) -> tuple[str, str]:
    """Information-state strings of the two players' single decision points."""
    root = game.new_initial_state()
    # Player 1's infoset does not depend on player 0's move; any child works.
    return (root.information_state_string(0),
            root.child(0).information_state_string(1))


# --------------------------------------------------------------------------
# MMD with dilated entropy
# --------------------------------------------------------------------------


def _sequence_indices(mmd, player: int, infostate: str) -> np.ndarray:
    """Sequence-vector indices of ``infostate``'s actions, in action order."""
    from open_spiel.python.algorithms import sequence_form_utils as sfu

    isa_keys = mmd.infoset_action_maps[player][infostate]
    order = np.argsort([sfu.get_action_from_key(k) for k in isa_keys])
    seq_ids = [mmd.infoset_actions_to_seq[player][k] for k in isa_keys]
    return np.asarray(seq_ids)[order]


def _current_policies(mmd, index: list[np.ndarray]) -> list[np.ndarray]:
    """Action probabilities of both players from MMD's current sequences.

    The root infoset's parent is the empty sequence (value 1), so the
    sequence values of its actions already form a distribution; we still
    renormalise to remove round-off.
    """
    probs = []
    for player in range(2):
        p = np.asarray(mmd.current_sequences()[player])[index[player]]
        probs.append(p / p.sum())
    return probs


def mmd_dilated_trajectory(A: np.ndarray, alpha: float,
                           stepsize: float | None,
                           steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Last-iterate trajectory of OpenSpiel's ``MMDDilatedEnt`` on matrix ``A``.

    The row player maximises ``x^T A y``.  One ``update_sequences()`` call is
    the simultaneous magnetic mirror descent step with uniform magnet::

        x_{t+1} ∝ (x_t * exp( eta * A   y_t)) ** (1 / (1 + eta * alpha))
        y_{t+1} ∝ (y_t * exp(-eta * A^T x_t)) ** (1 / (1 + eta * alpha))

    starting from uniform ``x_0, y_0``.

    Args:
        A: (m, n) row-player payoff matrix.
        alpha: entropy regularisation weight (>= 0).
        stepsize: ``eta``; ``None`` uses OpenSpiel's default
            ``alpha / max|A|**2`` (0 when ``alpha == 0``, with a warning).
        steps: number of ``update_sequences()`` calls.

    Returns:
        ``(xs, ys)`` of shapes ``(steps + 1, m)`` and ``(steps + 1, n)``;
        row ``t`` is the current policy after ``t`` updates (row 0: initial).
    """
    from open_spiel.python.algorithms import mmd_dilated

    A = np.asarray(A, dtype=np.float64)
    game = _turn_based_game(A)
    mmd = mmd_dilated.MMDDilatedEnt(game, alpha, stepsize)
    keys = _infostate_keys(game)
    index = [_sequence_indices(mmd, p, keys[p]) for p in range(2)]

    xs = np.empty((steps + 1, A.shape[0]))
    ys = np.empty((steps + 1, A.shape[1]))
    xs[0], ys[0] = _current_policies(mmd, index)
    for t in range(1, steps + 1):
        mmd.update_sequences()
        xs[t], ys[t] = _current_policies(mmd, index)
    return xs, ys


# --------------------------------------------------------------------------
# NashConv oracle
# --------------------------------------------------------------------------


def nash_conv(A: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """OpenSpiel's NashConv of the profile ``(x, y)`` in the game ``(A, -A)``.

    Computed by ``open_spiel.python.algorithms.exploitability.nash_conv`` on
    the turn-based version of the matrix game with a ``TabularPolicy`` holding
    ``x`` and ``y``.  For a zero-sum game it equals the duality gap
    ``max(A y) - min(x^T A)``, i.e. twice the exploitability.

    Args:
        A: (m, n) row-player payoff matrix.
        x: row player's mixed strategy (length m, sums to 1).
        y: column player's mixed strategy (length n, sums to 1).

    Returns:
        NashConv as a float.
    """
    from open_spiel.python import policy as policy_lib
    from open_spiel.python.algorithms import exploitability

    A = np.asarray(A, dtype=np.float64)
    if (len(x), len(y)) != A.shape:
        raise ValueError(f"x, y have lengths {(len(x), len(y))}; "
                         f"A has shape {A.shape}")
    game = _turn_based_game(A)
    tabular = policy_lib.TabularPolicy(game)
    for key, probs in zip(_infostate_keys(game), (x, y)):
        # policy_for_key returns a view into the policy's table, whose width
        # is max(m, n); the extra columns are the shorter side's illegal
        # actions and must stay 0.
        row = tabular.policy_for_key(key)
        row[:] = 0.0
        row[:len(probs)] = np.asarray(probs, dtype=np.float64)
    return float(exploitability.nash_conv(game, tabular))
