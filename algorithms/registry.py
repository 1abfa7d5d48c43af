"""Names → algorithm classes: ``algorithms.make(name, **hparams)`` and ``algorithms.available()``."""
from __future__ import annotations

from .egpo import EGPO
from .euclidean import OGDA, Extragradient
from .inpo import INPO
from .mirror_prox import MirrorProx
from .mmd import MMD
from .mnpo import MNPO
from .mpo import MPO
from .mwu import MWU
from .nash_md import NashMD
from .omwu import OMWU

ALGORITHMS = {cls.name: cls for cls in (MPO, MMD, NashMD, MirrorProx, EGPO, INPO, MNPO, MWU, OMWU, OGDA, Extragradient)}
ALIASES = {"sppo": "mwu", "hedge": "mwu", "onpo": "omwu", "nash_mp": "mirror_prox", "nashmp": "mirror_prox",
           "nashmd": "nash_md", "mirrorprox": "mirror_prox", "eg": "extragradient", "extra_gradient": "extragradient",
           "projected_ogda": "ogda"}
#: Exact-backend comparators only: Euclidean (projected) steps on probabilities, which an LLM policy
#: (a softmax fitted to log-linear targets) cannot realise; their ``bind`` refuses any other backend.
EXACT_ONLY = tuple(name for name, cls in ALGORITHMS.items() if getattr(cls, "exact_only", False))


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def available(comparators: bool = False) -> list[str]:
    """Registry names of the Nash-learning methods, all realisable on every backend (aliases such as
    'sppo', 'onpo', 'nash_mp' also work); ``comparators=True`` adds the exact-backend-only
    Euclidean comparators (:data:`EXACT_ONLY`: 'ogda', 'extragradient'), which ``get``/``make``
    always accept."""
    return [n for n in ALGORITHMS if comparators or n not in EXACT_ONLY]


def get(name: str):
    key = _key(name)
    key = ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(available(comparators=True))} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return ALGORITHMS[key]


def make(name: str, **hparams):
    """An algorithm by name, e.g. ``make("mpo", alpha=0.5, refresh=20)``."""
    cls = get(name)
    try:
        return cls(**hparams)
    except TypeError as e:
        import dataclasses

        names = [f.name for f in dataclasses.fields(cls)]
        raise ValueError(f"{cls.__name__} got an unexpected hyperparameter ({e}); it takes: {', '.join(names)}") from None
