"""The activations a lesson lets people choose, by name: one table of the engine's function and derivative for each."""

from __future__ import annotations

from typing import Callable, NamedTuple

from kernels import (leaky_relu, leaky_relu_backward, relu, relu_backward, sigmoid, sigmoid_backward, tanh,
                     tanh_backward)

LEAKY_SLOPE = 0.01  # leaky ReLU's slope for negative inputs where a lesson offers no choice (the engine's default)


class Activation(NamedTuple):
    """One activation: ``function(x)`` and ``derivative(x, d_out)`` (d_loss/d_x from the forward input x).

    ``sloped``: both also take leaky ReLU's ``slope`` as their last argument. ``link_word``: how a lesson
    link spells the choice.
    """

    function: Callable
    derivative: Callable
    link_word: str
    sloped: bool = False


ACTIVATIONS = {
    "ReLU": Activation(relu, relu_backward, "relu"),
    "leaky ReLU": Activation(leaky_relu, leaky_relu_backward, "leaky_relu", sloped=True),
    "sigmoid": Activation(sigmoid, sigmoid_backward, "sigmoid"),
    "tanh": Activation(tanh, tanh_backward, "tanh"),
}


def _entry(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]


def activate(values, name, slope=LEAKY_SLOPE):
    """``values`` through the activation called ``name`` (float32, the shape of values)."""
    entry = _entry(name)
    return entry.function(values, slope) if entry.sloped else entry.function(values)


def link_words(names=tuple(ACTIVATIONS)):
    """Link word -> activation name, for a lesson link's ``choice`` field."""
    return {ACTIVATIONS[name].link_word: name for name in names}
