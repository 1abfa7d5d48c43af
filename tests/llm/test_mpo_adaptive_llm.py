"""Issue 8.6: MPO's adaptive refresh on an LLM backend without an enumerable world (no exact
metrics) is refused up front with a clear error — not an AttributeError, not a rule that never fires."""
import pytest

import algorithms
from llm import LLMBackend
from llm.backend import LLMConfig


def test_adaptive_refresh_refused_without_a_world(world):
    be = LLMBackend(world.make_policy(seed=0), oracle=world.oracle(), prompts=world.prompts,
                    config=LLMConfig(max_new_tokens=world.response_len))  # the world's text, judged without the world
    queries = be.queries
    with pytest.raises(ValueError, match="refresh='adaptive'.*exact_metrics is False"):
        algorithms.run(algorithms.MPO(refresh="adaptive"), be, 3, average=False)
    assert be.queries == queries  # refused before any step


def test_euclidean_comparators_refused_on_an_lm(world):
    be = LLMBackend(world.make_policy(seed=0), world=world)
    for name in algorithms.EXACT_ONLY:
        with pytest.raises(ValueError, match="exact backend only"):
            algorithms.run(algorithms.make(name), be, 1, average=False)
