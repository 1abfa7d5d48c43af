"""LLM groundwork for nashlab: tiny/real causal LMs as policies, samplers,
preference oracles and an enumerable toy world with exact distributions."""

from .models import load_model, load_tokenizer, smollm2_path, tiny_model, tiny_tokenizer
from .oracles import (
    Annotator,
    AnnotatorPopulation,
    CountingOracle,
    JudgeOracle,
    MatrixOracle,
    MixtureOracle,
    PreferenceModelOracle,
    PreferenceOracle,
    RegisterPopulation,
    RewardModelOracle,
    as_oracle,
    check_antisymmetric,
    from_spec,
    validate_preference_matrix,
)
from .policy import Policy, context_limit
from .sampling import (
    MixtureDecoder,
    make_generator,
    mixture_next_token_logits,
    mixture_sequence_logprobs,
    next_token_logits,
    sample,
    sample_mixture,
)
from .world import EnumerableWorld
from .evaluate import Tournament, WinRate, tournament, win_rate
from .backend import LLMBackend, LLMConfig, Mixture

__all__ = [
    "Annotator",
    "AnnotatorPopulation",
    "Tournament",
    "WinRate",
    "tournament",
    "win_rate",
    "CountingOracle",
    "JudgeOracle",
    "PreferenceModelOracle",
    "as_oracle",
    "from_spec",
    "EnumerableWorld",
    "LLMBackend",
    "LLMConfig",
    "Mixture",
    "MatrixOracle",
    "MixtureDecoder",
    "MixtureOracle",
    "Policy",
    "PreferenceOracle",
    "RegisterPopulation",
    "RewardModelOracle",
    "check_antisymmetric",
    "context_limit",
    "load_model",
    "load_tokenizer",
    "make_generator",
    "mixture_next_token_logits",
    "mixture_sequence_logprobs",
    "next_token_logits",
    "sample",
    "sample_mixture",
    "smollm2_path",
    "tiny_model",
    "tiny_tokenizer",
    "validate_preference_matrix",
]
