"""The one table of activations (lessons/activations.py): every name the pages offer, with the engine's
function and derivative, which agree with kernels.reference's definitions."""

import numpy as np
import pytest

from kernels import reference
from lessons.activations import ACTIVATIONS, LEAKY_SLOPE, activate, link_words
from lessons.links import choice
from lessons.receptive_field import ACTIVATIONS as STAGE_ACTIVATIONS
from tests.naive import relative_error

DEFINITIONS = {"ReLU": "relu", "leaky ReLU": "leaky_relu", "sigmoid": "sigmoid", "tanh": "tanh"}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_activation_and_its_derivative_is_the_definition(name):
    x = np.random.default_rng(0).standard_normal((4, 30)).astype(np.float32) * 5
    d_out = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    entry = ACTIVATIONS[name]
    defined = DEFINITIONS[name]
    extra = (0.3,) if entry.sloped else ()
    assert relative_error(entry.function(x, *extra), getattr(reference, defined)(x, *extra)) < 1e-5
    assert relative_error(entry.derivative(x, d_out, *extra),
                          getattr(reference, f"{defined}_backward")(x, d_out, *extra)) < 1e-5
    assert relative_error(activate(x, name, 0.3), getattr(reference, defined)(x, *extra)) < 1e-5


def test_leaky_relu_takes_the_lessons_slope_and_the_engines_default_otherwise():
    x = np.array([-2.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(activate(x, "leaky ReLU", 0.1), [-0.2, 3.0], rtol=1e-6)
    np.testing.assert_allclose(activate(x, "leaky ReLU"), [-2.0 * LEAKY_SLOPE, 3.0], rtol=1e-6)


def test_an_unknown_activation_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"activation must be one of ReLU, leaky ReLU, sigmoid, tanh; got 'softmax'"):
        activate(np.zeros(3), "softmax")


def test_the_stages_offer_the_same_names_and_links_spell_each_one_once():
    assert STAGE_ACTIVATIONS == ("none",) + tuple(ACTIVATIONS)
    codec = choice(link_words())
    for name in ACTIVATIONS:
        assert codec.parse(codec.format(name)) == name
    assert link_words() == {"relu": "ReLU", "leaky_relu": "leaky ReLU", "sigmoid": "sigmoid", "tanh": "tanh"}
