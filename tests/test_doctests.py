"""The docstring examples run: every ``>>>`` line of these modules, with its output checked.

``pytest`` (the README's test command) runs them through this file; a module whose
examples were all skipped, or that lost its examples, fails ``attempted > 0``.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "spikeonnx.examples.digits",  # trains the digits classifier for 3 epochs (a few seconds)
    "spikeonnx.examples.zoo",
    "spikeonnx.registry",
    "keras_layers.model_energy",
    "keras_layers.regularizers",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, saved_registries):
    # saved_registries: ModelEnergy.register_layer's example registers a handler
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see stdout)"
