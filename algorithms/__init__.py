"""Nash-learning algorithms, each written once against the backend interface.

>>> import games, algorithms
>>> r = algorithms.run(algorithms.MPO(), games.make("cyclic3"), steps=2000)
>>> games.duality_gap(games.make("cyclic3"), r.policy) < 1e-8
True
"""
from .base import State, prox_step
from .egpo import EGPO
from .euclidean import OGDA, Extragradient
from .inpo import INPO
from .mirror_prox import MirrorProx, NashMP
from .mmd import MMD, mmd_step
from .mnpo import MNPO
from .mpo import MPO
from .mwu import MWU
from .nash_md import NashMD
from .omwu import OMWU
from .registry import EXACT_ONLY, available, get, make
from .run import Result, RunState, load_checkpoint, record_points, run

__all__ = ["MPO", "MMD", "NashMD", "MirrorProx", "NashMP", "EGPO", "INPO", "MNPO", "MWU", "OMWU", "OGDA", "Extragradient", "EXACT_ONLY",
           "run", "Result", "RunState", "make", "get", "available", "record_points", "load_checkpoint",
           "prox_step", "mmd_step", "State"]
