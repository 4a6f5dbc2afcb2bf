"""Our layers against outputs recorded from the original keras-spiking 0.3.0.

The vectors are test data of the project, in ``tests/data`` (its README says what
they are and how they were produced); the tests never skip for want of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_layers as ks
from spikeonnx import reference

REF_FILE = Path(__file__).resolve().parent / "data" / "keras_spiking_0.3.0.npz"


def _load():
    data = np.load(REF_FILE)
    cases = json.loads(bytes(data["cases_json"]).decode())
    return data, cases


def _cases(kind):
    _, cases = _load()
    return [c for c in cases if c["layer"] in kind]


def _scaled_error(actual, expected):
    """Max abs error divided by the signal scale max|expected| (values cross zero)."""
    scale = max(float(np.max(np.abs(expected))), 1e-3)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected))) / scale


@pytest.mark.parametrize("case", _cases({"SpikingActivation"}), ids=lambda c: c["name"])
def test_spiking_activation_reference(case):
    data, _ = _load()
    name = case["name"]
    x = data[f"{name}/inputs"]
    v0 = data[f"{name}/initial_voltage"]
    expected = data[f"{name}/outputs"]
    layer = ks.SpikingActivation(case["activation"], dt=case["dt"])
    out = layer(x, initial_state=[v0]).numpy()
    np.testing.assert_array_equal(out, expected)
    # the same through a functional model (graph execution)
    inp = keras.Input(x.shape[1:])
    vin = keras.Input(v0.shape[1:])
    model = keras.Model([inp, vin], ks.SpikingActivation(case["activation"], dt=case["dt"])(inp, initial_state=[vin]))
    np.testing.assert_array_equal(model.predict([x, v0], verbose=0), expected)


# Lowpass reproduces the original bit for bit. The original Alpha uses a different
# (but mathematically equivalent) state-space form, so float32 rounding differs;
# its own outputs are ~3e-6 (relative to the signal scale) away from the exact
# float64 result, which bounds how close any float32 implementation can get.
TOLERANCE = {"Lowpass": 1e-6, "Alpha": 5e-6}


def test_reference_cases_present_and_spiking():
    _, cases = _load()
    kinds = {c["layer"] for c in cases}
    assert kinds == {"SpikingActivation", "Lowpass", "Alpha"}
    data, _ = _load()
    total = sum(
        np.count_nonzero(data[f"{c['name']}/outputs"])
        for c in cases
        if c["layer"] == "SpikingActivation"
    )
    assert total > 0  # the spike comparisons are not all-zeros


@pytest.mark.parametrize("case", _cases({"Lowpass", "Alpha"}), ids=lambda c: c["name"])
def test_filter_reference(case):
    data, _ = _load()
    name = case["name"]
    x = data[f"{name}/inputs"]
    expected = data[f"{name}/outputs"]
    cls = getattr(ks, case["layer"])
    layer = cls(
        case["tau"],
        dt=case["dt"],
        level_initializer=keras.initializers.Constant(case["initial_level"]),
    )
    out = layer(x).numpy()
    assert out.shape == expected.shape
    err = _scaled_error(out, expected)
    assert err <= TOLERANCE[case["layer"]], f"{name}: scaled error {err:.3g}"


@pytest.mark.parametrize("case", _cases({"Lowpass", "Alpha"}), ids=lambda c: c["name"])
def test_reference_op_matches_original(case):
    """The op contract's NumPy reference (float32) reproduces the original filters.

    For Alpha this holds because the op starts at rest, ``s1 = s2 = initial_level``,
    as keras-spiking 0.3.0 does; its error is float32 round-off (see ``TOLERANCE``).
    """
    data, _ = _load()
    x = data[f"{case['name']}/inputs"]
    expected = data[f"{case['name']}/outputs"]
    func = reference.alpha if case["layer"] == "Alpha" else reference.lowpass
    tau, level = np.float32(case["tau"]), np.float32(case["initial_level"])
    out, _ = func(x, tau, level, case["dt"])
    assert out.dtype == np.float32 and out.shape == expected.shape
    if case["layer"] == "Lowpass":  # same float32 operations as the original
        np.testing.assert_array_equal(out, expected)
    err = _scaled_error(out, expected)
    assert err <= TOLERANCE[case["layer"]], f"{case['name']}: scaled error {err:.3g}"


@pytest.mark.parametrize(
    "case",
    [c for c in _cases({"Alpha"}) if c["initial_level"] != 0],
    ids=lambda c: c["name"],
)
def test_alpha_first_stage_at_zero_would_not_match(case):
    """Starting the first stage at 0, i.e. state (0, level), is far from the original.

    Uses the op's ``initial_state`` input to start there: the check can tell the two
    start states apart, so the match above is not an accident of small levels.
    """
    data, _ = _load()
    x = data[f"{case['name']}/inputs"]
    expected = data[f"{case['name']}/outputs"]
    level = np.full((x.shape[0], *x.shape[2:]), case["initial_level"], np.float32)
    state = np.stack([np.zeros_like(level), level], axis=1)
    wrong, _ = reference.alpha(x, np.float32(case["tau"]), level, case["dt"], initial_state=state)
    # 200x the tolerance the real start meets
    assert _scaled_error(wrong, expected) > 1e-3
