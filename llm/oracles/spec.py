"""``--oracle SPEC``: one string names a preference source. The grammar:

    SPEC      := SOURCE | "mix:" SOURCE SEP SOURCE {SEP SOURCE} [WEIGHTS]
    SOURCE    := "annotators" [":mean" | ":majority"]   rule-based population (no model)
               | "registers" [":" BETA]                 rock-paper-scissors over answer registers
                                                        (RegisterPopulation(beta=BETA), default 2)
               | "matrix"                               the enumerable world's exact oracle (needs world=)
               | "reward:" PATH                         RewardModelOracle.load(PATH)
               | "preference:" PATH                     PreferenceModelOracle.load(PATH)
               | "judge:" PATH                          JudgeOracle.load(PATH)  (a model dir or a .gguf file)
    SEP       := "+" | ","                              only where a SOURCE keyword follows
    WEIGHTS   := ("@" | ",") NUMBER {"," NUMBER}        one per source, >= 0, normalised to sum 1
                                                        (default: equal weights)

Examples: ``annotators``, ``preference:runs/pm``, ``mix:annotators+preference:runs/pm@0.3,0.7``,
``mix:annotators,judge:/models/smollm2.gguf,0.5,0.5`` (the form of issue 11). A separator is read as one
only when followed by a source keyword, and weights only as the trailing run of numbers, so a PATH
may hold '+', ',' and '@' except in those two places. Mixtures do not nest.
"""
from __future__ import annotations

import re

from games.validation import InvalidArgument, WrongType, fail

#: one line for a CLI's --oracle help
SPEC_HELP = ("annotators[:majority] | registers[:BETA] | matrix (world only) | reward:DIR | preference:DIR | judge:PATH | "
             "mix:SPEC+SPEC[+...][@W,W,...] (also mix:SPEC,SPEC[,W,W])")

KINDS = ("annotators", "registers", "matrix", "reward", "preference", "judge", "mix")
_KEYWORD = r"(?:annotators|registers|matrix|reward:|preference:|judge:|mix:)"
_SPLIT = re.compile(r"[+,](?=" + _KEYWORD + ")")
_NUM = r"\s*[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?\s*"
_WEIGHTS = re.compile(r"[@,](" + _NUM + r"(?:," + _NUM + r")*)$")


def parse_spec(spec, name: str = "oracle") -> tuple[str, object]:
    """(kind, argument): ``("annotators", "mean")``, ``("reward", PATH)``, ...,
    ``("mix", [(kind, arg), ...], weights)`` flattened as ``("mix", (components, weights))``.
    Raises InvalidArgument naming ``name`` for anything outside the grammar."""
    if not isinstance(spec, str):
        fail(name, spec, "it must be a string such as 'annotators', 'preference:DIR' or 'mix:A+B@0.5,0.5'",
             cls=WrongType)
    s = spec.strip()
    if s.startswith("mix:"):
        body, weights = s[4:], None
        m = _WEIGHTS.search(body)
        if m:
            weights = [float(w) for w in m.group(1).split(",")]
            body = body[: m.start()]
        parts = _SPLIT.split(body)
        comps = []
        for part in parts:
            if part.strip().startswith("mix:"):
                fail(name, spec, "mixtures do not nest; list every source in one mix:")
            comps.append(parse_spec(part, name))
        if len(comps) < 2:
            fail(name, spec, "a mixture needs at least two sources joined by '+' (e.g. mix:annotators+preference:DIR)")
        if weights is not None:
            if len(weights) != len(comps):
                fail(name, spec, f"it lists {len(weights)} weights for {len(comps)} sources (one weight per source)")
            if sum(weights) <= 0:
                fail(name, spec, "mixture weights must be >= 0 with a positive sum")
            weights = [w / sum(weights) for w in weights]
        return "mix", (comps, weights)
    if s in ("annotators", "annotators:mean", "annotators:majority"):
        return "annotators", s.partition(":")[2] or "mean"
    if s == "matrix":
        return "matrix", None
    if s == "registers" or s.startswith("registers:"):
        beta = s.partition(":")[2].strip() or "2"
        try:
            value = float(beta)
        except ValueError:
            value = float("nan")
        if not (value > 0 and value < float("inf")):
            fail(name, spec, f"registers:BETA needs a finite number BETA > 0 (the cycle's strength), not {beta!r}")
        return "registers", value
    kind, sep, arg = s.partition(":")
    if kind in ("reward", "preference", "judge") and sep:
        if not arg.strip():
            fail(name, spec, f"'{kind}:' needs a path after the colon ({kind}:PATH)")
        return kind, arg
    if kind in ("reward", "preference", "judge"):
        fail(name, spec, f"{kind} needs a path: {kind}:PATH")
    import difflib

    close = difflib.get_close_matches(kind, KINDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    fail(name, spec, "it must be annotators, registers[:BETA], matrix, reward:PATH, preference:PATH, judge:PATH or "
         f"mix:SPEC+SPEC[@W,W]{hint}")


def from_spec(spec: str, *, world=None, device=None, name: str = "oracle"):
    """Build the oracle a spec names (grammar in this module's docstring). ``world``: the
    :class:`~llm.world.EnumerableWorld` for ``matrix``; ``device``: where model-based oracles run.
    Errors: InvalidArgument (a ValueError) naming ``name`` for a bad spec; FileNotFoundError or
    ValueError from the loaders for missing or malformed model files."""
    kind, arg = parse_spec(spec, name)
    return _build(kind, arg, spec, world, device, name)


def _build(kind, arg, spec, world, device, name):
    from .annotators import AnnotatorPopulation
    from .judge import JudgeOracle
    from .mixture import MixtureOracle
    from .preference import PreferenceModelOracle
    from .reward import RewardModelOracle

    if kind == "annotators":
        return AnnotatorPopulation(aggregate=arg)
    if kind == "registers":
        from .registers import RegisterPopulation

        return RegisterPopulation(beta=arg)
    if kind == "matrix":
        if world is None:
            raise InvalidArgument(f"{name} = {spec!r} is not allowed; 'matrix' is the enumerable world's exact "
                                  "oracle and needs a world (it judges the world's responses only)")
        return world.oracle()
    if kind == "reward":
        return RewardModelOracle.load(arg, device=device)
    if kind == "preference":
        return PreferenceModelOracle.load(arg, device=device)
    if kind == "judge":
        return JudgeOracle.load(arg, device=device)
    comps, weights = arg
    return MixtureOracle([_build(k, a, spec, world, device, name) for k, a in comps], weights)
