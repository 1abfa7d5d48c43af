"""Preference sources judging TEXT: ``oracle.prob(prompts, a, b) -> P(a ≻ b)`` (DESIGN §6.4).

One protocol (:mod:`.base`), one module per source:

* :class:`MatrixOracle` — the exact oracle of a finite game (the enumerable world's ground truth);
* :class:`AnnotatorPopulation` — rule-based annotators (length, keywords, lexical diversity) whose
  aggregate is intransitive; no model;
* :class:`RegisterPopulation` — rock-paper-scissors over answer registers (structured, formal,
  casual): a rule-based population whose Nash equilibrium and exploitability are known;
* :class:`RewardModelOracle` — Bradley–Terry over a local sequence-classification reward model;
* :class:`PreferenceModelOracle` — a general (non-BT) skew-symmetric preference model (GPM) on a
  frozen sentence embedder, trainable in seconds (``python -m llm.preference_model train``);
* :class:`JudgeOracle` — an instruct LM as an A/B judge, both orders;
* :class:`MixtureOracle` — a weighted population of any of these;
* :func:`from_spec` — the ``--oracle`` grammar.
"""
from .annotators import KEYWORDS, Annotator, AnnotatorPopulation, default_annotators
from .base import CountedOracle, CountingOracle, PreferenceOracle, as_oracle, check_antisymmetric, check_texts
from .embedder import TextEmbedder, minilm_path
from .judge import SYSTEM_PROMPT, JudgeOracle
from .matrix import MatrixOracle, validate_preference_matrix
from .mixture import MixtureOracle
from .preference import PreferenceModelOracle, SkewHead
from .registers import REGISTERS, RegisterPopulation
from .reward import RewardModelOracle
from .spec import SPEC_HELP, from_spec, parse_spec

__all__ = [
    "Annotator", "AnnotatorPopulation", "CountedOracle", "CountingOracle", "JudgeOracle", "KEYWORDS",
    "MatrixOracle", "MixtureOracle", "PreferenceModelOracle", "PreferenceOracle", "REGISTERS", "RegisterPopulation",
    "RewardModelOracle",
    "SPEC_HELP", "SYSTEM_PROMPT", "SkewHead", "TextEmbedder", "as_oracle", "check_antisymmetric", "check_texts",
    "default_annotators", "from_spec", "minilm_path", "parse_spec", "validate_preference_matrix",
]
