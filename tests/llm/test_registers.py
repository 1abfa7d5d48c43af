"""RegisterPopulation: rock-paper-scissors over answer registers, with a known equilibrium."""
import numpy as np
import pytest

from games import PreferenceGame, nash_equilibrium
from llm.oracles import REGISTERS, RegisterPopulation, from_spec

# one clear answer per register (structured, formal, casual)
STRUCTURED = "Three tips:\n1. Keep a regular bedtime.\n2. Avoid screens late.\n3. Keep the room cool."
FORMAL = "Consistent circadian regulation fundamentally determines physiological recovery and performance."
CASUAL = "Wow, sleep is awesome! Just chill, buddy, and have fun!"
PURE = [STRUCTURED, FORMAL, CASUAL]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture
def pop():
    return RegisterPopulation()


def test_clear_answers_fall_in_their_register(pop):
    m = pop.memberships(PURE)
    assert m.shape == (3, 3) and np.allclose(m.sum(1), 1, rtol=0, atol=1e-12)
    assert m.argmax(1).tolist() == [0, 1, 2] and (m.max(1) > 0.99).all()
    assert REGISTERS == ("structured", "formal", "casual")
    empty = pop.memberships([""])
    assert np.isfinite(empty).all() and abs(empty.sum() - 1) < 1e-12


@pytest.mark.parametrize("beta", [0.5, 2.0, 5.0])
def test_the_cycle_between_pure_registers_is_sigma_beta(beta):
    pop = RegisterPopulation(beta=beta)
    p = pop.prob(["x"] * 3, PURE, PURE[1:] + PURE[:1]).numpy()  # S≻F, F≻C, C≻S
    assert np.allclose(p, sigmoid(beta), rtol=0, atol=0.01)  # memberships are > 0.99 pure, not exactly
    assert np.allclose(pop.register_game(), sigmoid(beta * np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]])),
                       rtol=0, atol=1e-15)


def test_the_register_games_equilibrium_is_the_even_mix(pop):
    ne = nash_equilibrium(PreferenceGame(pop.register_game()))
    assert np.allclose(ne, 1 / 3, rtol=0, atol=1e-9)


def test_exploitability_closed_forms_and_brute_force(pop):
    # one pure register: the register that beats it wins with σ(β)
    assert pop.exploitability(["x"], [[STRUCTURED]]) == pytest.approx(sigmoid(2.0) - 0.5, abs=0.01)
    # the even mix: no register beats it
    assert pop.exploitability(["x"], [PURE]) == pytest.approx(0.0, abs=0.01)
    # brute force: the best of the three pure answers against a mixed group, judged pair by pair
    group = [STRUCTURED, STRUCTURED, FORMAL, "Some words here, okay?", "Intermediate explanation of things"]
    brute = max(pop.prob(["x"] * len(group), [r] * len(group), group).numpy().mean() for r in PURE) - 0.5
    assert pop.exploitability(["x"], [group]) == pytest.approx(brute, abs=0.01)
    # the mean over prompts
    two = pop.exploitability(["x", "y"], [[STRUCTURED], PURE])
    assert two == pytest.approx((sigmoid(2.0) - 0.5) / 2, abs=0.01)
    per = pop.exploitability(["x", "y"], [[STRUCTURED], PURE], per_prompt=True)
    assert per.shape == (2,) and per.mean() == pytest.approx(two, abs=1e-15)
    with pytest.raises(ValueError, match="2 prompts but 1 groups"):
        pop.exploitability(["x", "y"], [PURE])


def test_shares_are_the_mean_membership(pop):
    assert np.allclose(pop.shares([[STRUCTURED], [FORMAL, CASUAL]]), 1 / 3, atol=0.01)
    assert np.isnan(pop.shares([[]])).all()


@pytest.mark.parametrize("kw, match", [(dict(beta=0), "beta = 0"), (dict(beta=float("nan")), "beta"),
                                       (dict(temperature=-1), "temperature = -1")])
def test_bad_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        RegisterPopulation(**kw)


def test_spec_builds_it():
    pop = from_spec("registers:3")
    assert isinstance(pop, RegisterPopulation) and pop.beta == 3.0
    assert from_spec("registers").beta == 2.0
