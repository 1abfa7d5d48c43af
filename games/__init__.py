"""Preference games and zero-sum matrix games, exact metrics and equilibria, the exact backend.

>>> import games
>>> g = games.make("cyclic3")
>>> games.nash_equilibrium(g).round(4)
array([0.3636, 0.2727, 0.3636])
"""
from .catalogue import INTRANSITIVE, available, make
from .conditioning import Conditioning, conditioning
from .core import PreferenceGame, ZeroSumGame
from .equilibria import nash_equilibrium, regularized_nash
from .exact import ExactBackend, TabularPolicy, WinRates, tile
from .metrics import duality_gap, exploitability, kl, regularized_gap

__all__ = ["PreferenceGame", "ZeroSumGame", "make", "available", "INTRANSITIVE", "duality_gap", "exploitability", "conditioning", "Conditioning",
           "regularized_gap", "kl", "nash_equilibrium", "regularized_nash", "ExactBackend", "TabularPolicy", "WinRates", "tile"]
