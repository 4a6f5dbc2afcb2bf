"""Tests of keras_layers.ModelEnergy: the reference examples and hand-computed counts."""

import contextlib
import math
import warnings

import keras
import numpy as np
import pytest

import keras_layers
from keras_layers.model_energy import ModelEnergy
from spikeonnx import devices as shared_devices

# Published per-operation energies, restated here so the tests do not read them from
# the code under test (KerasSpiking reference / Davies et al. 2018 / Hoeppner 2019).
CPU = 8.6e-9
LOIHI_SYNOP, LOIHI_NEURON = (23.6 + 3.5) * 1e-12, 81e-12
SPINN2_SYNOP, SPINN2_NEURON = 450e-12, 2.19e-9


@contextlib.contextmanager
def temporary_device(name, synop, neuron, spiking):
    """Register a device in the shared table for the duration of a test."""
    assert name not in shared_devices.DEVICES
    try:
        ModelEnergy.register_device(name, energy_per_synop=synop, energy_per_neuron=neuron, spiking=spiking)
        yield
    finally:
        shared_devices.DEVICES.pop(name, None)


def temporary_handler(layer_class):
    """Restore the handler registry (entry of ``layer_class`` included) after a test."""
    return ModelEnergy.layer_stats_computers.saved()


def dense_weights(layer):
    kernel, bias = (np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights)
    return kernel, bias


# --------------------------------------------------------------------- reference examples


def reference_dense_model():
    # Reference: Input(784) -> Dense(128, relu); names as printed in the reference.
    inp = keras.Input((784,), name="input_3")
    dense = keras.layers.Dense(units=128, activation="relu", name="dense_2")(inp)
    return keras.Model(inp, dense)


def test_reference_summary_dense_784_128(capsys):
    energy = ModelEnergy(reference_dense_model())
    energy.summary(line_length=80)
    lines = capsys.readouterr().out.splitlines()

    connections = 784 * 128
    neurons = 128
    total = CPU * connections + CPU * neurons
    assert connections == 100352
    # The reference table, with the Keras 3 shape "(None, 784)" instead of Keras 2's
    # "[(None, 784)]" (so that column is one character narrower).
    assert lines[:6] == [
        "Layer (type)        |Output shape|Param #|Conn #|Neuron #|J/inf (cpu)",
        "--------------------|------------|-------|------|--------|-----------",
        "input_3 (InputLayer)| (None, 784)|      0|     0|       0|          0",
        "dense_2 (Dense)     | (None, 128)| 100480|100352|     128|    0.00086",
        "=" * 69,
        "Total energy per inference [Joules/inf] (cpu): 8.64e-04",
    ]
    assert lines[5].endswith(f"{total:.2e}")
    assert len(lines) > 6  # the assumptions note follows
    assert all(len(line) <= 80 for line in lines)

    assert energy.total_energy("cpu") == pytest.approx(total, rel=1e-12)


def test_reference_register_device_mycpu(capsys):
    energy = ModelEnergy(reference_dense_model())
    with temporary_device("mycpu", 1e-10, 2e-9, False):
        # Delegates to the single shared table.
        assert shared_devices.get_device("mycpu").energy_per_neuron == 2e-9
        energy.summary(columns=("name", "energy cpu", "energy mycpu"), line_length=80)
        mycpu_total = 1e-10 * 784 * 128 + 2e-9 * 128
        assert energy.total_energy("mycpu") == pytest.approx(mycpu_total, rel=1e-12)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:7] == [
        "Layer (type)        |J/inf (cpu)|J/inf (mycpu)",
        "--------------------|-----------|-------------",
        "input_3 (InputLayer)|          0|            0",
        "dense_2 (Dense)     |    0.00086|        1e-05",
        "=" * 46,
        "Total energy per inference [Joules/inf] (cpu): 8.64e-04",
        "Total energy per inference [Joules/inf] (mycpu): 1.03e-05",
    ]
    assert f"{mycpu_total:.2e}" == "1.03e-05"


def test_reference_timedistributed_dense(capsys):
    inp = keras.Input([None, 10])
    layer = keras.layers.TimeDistributed(keras.layers.Dense(5, "relu"))
    keras.Model(inp, [layer(inp)])
    print(ModelEnergy.compute_layer_stats(layer))
    assert capsys.readouterr().out.strip() == "{'connections': 50, 'neurons': 5, 'spiking': False}"


def test_reference_register_layer_upsampling2d(capsys):
    with temporary_handler(keras.layers.UpSampling2D):

        @ModelEnergy.register_layer(keras.layers.UpSampling2D)
        def upsampling2d_stats(node):
            # note: ignore the batch dimension when computing output size
            output_size = np.prod(node.output_shapes[1:])
            return {"connections": output_size, "neurons": 0}

        inp = keras.Input([4, 4, 3])
        layer = keras.layers.UpSampling2D(size=(2, 2))
        keras.Model(inp, [layer(inp)])
        print(ModelEnergy.compute_layer_stats(layer))
    assert capsys.readouterr().out.strip() == "{'connections': 192, 'neurons': 0}"
    assert 8 * 8 * 3 == 192


# ------------------------------------------------------------------------ layer counts


def conv_out_len(size, kernel, stride, dilation, padding):
    """Output length of one convolution axis (Keras/TF rules), by hand."""
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        return (size - span) // stride + 1
    return math.ceil(size / stride)  # "same" and "causal" keep ceil(size / stride)


@pytest.mark.parametrize("spatial, channels, kwargs", [
    ((17, 19), 6, dict(filters=8, kernel_size=(3, 5), strides=(2, 3), groups=2, padding="valid")),
    ((17, 19), 6, dict(filters=9, kernel_size=(3, 2), dilation_rate=(2, 3), groups=3, padding="same")),
    ((16, 11), 4, dict(filters=4, kernel_size=(4, 4), strides=(3, 2), padding="same", activation="relu")),
    ((23,), 6, dict(filters=10, kernel_size=4, dilation_rate=2, groups=2, padding="causal", activation="tanh")),
    ((23,), 6, dict(filters=5, kernel_size=3, strides=2, padding="valid")),
    ((7, 8, 9), 4, dict(filters=6, kernel_size=(2, 3, 4), strides=(1, 2, 3), groups=2, activation="relu")),
    ((7, 8, 9), 3, dict(filters=2, kernel_size=3, dilation_rate=(1, 2, 1), padding="same")),
])
def test_conv_counts_match_hand_formula(spatial, channels, kwargs):
    cls = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[len(spatial)]
    inp = keras.Input(spatial + (channels,))
    layer = cls(**kwargs)
    keras.Model(inp, layer(inp))

    d = len(spatial)
    kernel = np.broadcast_to(kwargs["kernel_size"], d)
    strides = np.broadcast_to(kwargs.get("strides", 1), d)
    dilation = np.broadcast_to(kwargs.get("dilation_rate", 1), d)
    out_spatial = [conv_out_len(n, k, s, r, kwargs.get("padding", "valid"))
                   for n, k, s, r in zip(spatial, kernel, strides, dilation)]
    outputs = int(np.prod(out_spatial)) * kwargs["filters"]
    per_output = int(np.prod(kernel)) * channels // kwargs.get("groups", 1)
    want = {"connections": outputs * per_output}
    if "activation" in kwargs:
        want.update(neurons=outputs, spiking=False)
    else:
        want.update(neurons=0, spiking=True)
    assert ModelEnergy.compute_layer_stats(layer) == want


def test_conv_channels_first_shapes_only():
    # Shape inference only (no data): TF CPU cannot run channels_first convolutions.
    inp = keras.Input((6, 17, 19))
    layer = keras.layers.Conv2D(8, (3, 5), strides=(2, 3), groups=2, data_format="channels_first")
    keras.Model(inp, layer(inp))
    out = ((17 - 3) // 2 + 1) * ((19 - 5) // 3 + 1) * 8
    assert ModelEnergy.compute_layer_stats(layer)["connections"] == out * 3 * 5 * (6 // 2)


def test_dense_counts_extra_axes_but_not_unknown_time():
    inp = keras.Input((4, 3, 10))
    fixed = keras.layers.Dense(7)
    keras.Model(inp, fixed(inp))
    assert ModelEnergy.compute_layer_stats(fixed) == {"connections": 4 * 3 * 10 * 7, "neurons": 0, "spiking": True}

    inp = keras.Input((None, 10))
    timed = keras.layers.Dense(7, activation="sigmoid")
    keras.Model(inp, timed(inp))
    assert ModelEnergy.compute_layer_stats(timed) == {"connections": 10 * 7, "neurons": 7, "spiking": False}

    inp = keras.Input((None, None, 10))
    undefined = keras.layers.Dense(7)
    keras.Model(inp, undefined(inp))
    with pytest.raises(ValueError, match="undefined dimensions"):
        ModelEnergy.compute_layer_stats(undefined)


@pytest.mark.parametrize("layer, neurons, spiking", [
    (keras.layers.Activation("relu"), 12, False),
    (keras.layers.Activation("linear"), 0, True),
    (keras.layers.ReLU(), 12, False),
    (keras.layers.LeakyReLU(), 12, False),
    (keras.layers.ELU(), 12, False),
    (keras.layers.PReLU(shared_axes=[1]), 12, False),
    (keras.layers.Softmax(), 12, False),
])
def test_activation_layers(layer, neurons, spiking):
    inp = keras.Input((None, 3, 4))
    keras.Model(inp, layer(inp))
    stats = ModelEnergy.compute_layer_stats(layer)
    assert stats == {"neurons": neurons, "spiking": spiking}


def test_spiking_activation_counts_units():
    inp = keras.Input((None, 3, 5))
    layer = keras_layers.SpikingActivation("relu")
    keras.Model(inp, layer(inp))
    assert ModelEnergy.compute_layer_stats(layer) == {"neurons": 15, "spiking": True}

    inp = keras.Input((6, 4))
    last = keras_layers.SpikingActivation("relu", return_sequences=False)
    keras.Model(inp, last(inp))
    assert ModelEnergy.compute_layer_stats(last) == {"neurons": 4, "spiking": True}


def test_subclass_inherits_handler_and_unknown_layers_warn():
    class MyDense(keras.layers.Dense):
        pass

    inp = keras.Input((6,))
    mine = MyDense(3)
    keras.Model(inp, mine(inp))
    assert ModelEnergy.compute_layer_stats(mine)["connections"] == 18

    inp = keras.Input((4, 5))
    permute = keras.layers.Permute((2, 1))
    keras.Model(inp, permute(inp))
    with pytest.warns(UserWarning, match="Permute"):
        assert ModelEnergy.compute_layer_stats(permute) == {}


def test_free_layers_are_silent():
    inp = keras.Input((4, 6, 2))
    a = keras.layers.Dropout(0.2)(inp)
    b = keras.layers.Reshape((4, 12))(a)
    c = keras.layers.GlobalAveragePooling1D()(b)
    d = keras.layers.Flatten()(inp)
    e = keras.layers.Add()([keras.layers.Dense(12)(d), c])
    model = keras.Model(inp, e)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = ModelEnergy(model)
    assert sum(s["connections"] for s in energy.layer_stats.values()) == 48 * 12


def test_invalid_handler_results_raise():
    class Odd(keras.layers.Layer):
        def call(self, x):
            return x

    inp = keras.Input((3,))
    layer = Odd()
    keras.Model(inp, layer(inp))
    with temporary_handler(Odd):
        ModelEnergy.register_layer(Odd)(lambda node: {"synops": 3})
        with pytest.raises(ValueError, match="invalid stat 'synops'"):
            ModelEnergy.compute_layer_stats(layer)
        with pytest.warns(UserWarning, match="replacing"):
            ModelEnergy.register_layer(Odd)(lambda node: {"connections": -1})
        with pytest.raises(ValueError, match="non-negative integer"):
            ModelEnergy.compute_layer_stats(layer)
    never_called = keras.layers.Dense(2)
    with pytest.raises(ValueError, match="never been called"):
        ModelEnergy.compute_layer_stats(never_called)


# ------------------------------------------------------------------- model-level energy


def test_reused_layer_counted_per_call():
    a, b = keras.Input((6,)), keras.Input((6,))
    shared = keras.layers.Dense(4, activation="relu")
    out = keras.layers.Add()([shared(a), shared(b)])
    model = keras.Model([a, b], out)
    energy = ModelEnergy(model)
    assert energy.layer_stats[shared] == {"connections": 2 * 6 * 4, "neurons": 2 * 4, "spiking": False}
    synop, neuron = energy.layer_energy(shared, "cpu")
    assert synop == pytest.approx(CPU * 48, rel=1e-12)
    assert neuron == pytest.approx(CPU * 8, rel=1e-12)
    assert "multiple" not in energy.summary_string(print_warnings=False)  # same shapes

    # On a spiking device each call is charged at its own input rate.
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(9, 6)), 3 * rng.normal(size=(9, 6))
    spiking = ModelEnergy(model, example_data=[xa, xb])
    dt = 0.001
    want = LOIHI_SYNOP * 24 * (np.abs(xa).mean() + np.abs(xb).mean()) * dt
    assert spiking.layer_energy(shared, "loihi", dt=dt)[0] == pytest.approx(want, rel=1e-6)
    assert spiking.layer_rates[shared] == pytest.approx(np.abs(np.concatenate([xa, xb])).mean(), rel=1e-6)


def rate_model():
    inp = keras.Input((None, 5), name="data")
    d1 = keras.layers.Dense(8, name="d1")
    act = keras.layers.Activation("relu", name="act")
    d2 = keras.layers.Dense(3, name="d2")
    spk = keras_layers.SpikingActivation("relu", dt=0.01, name="spk")
    out = spk(d2(act(d1(inp))))
    return keras.Model(inp, out), (d1, act, d2, spk)


def test_rates_and_spiking_energy_against_numpy():
    model, (d1, act, d2, spk) = rate_model()
    x = np.random.default_rng(1).normal(size=(11, 4, 5)).astype(np.float32)
    energy = ModelEnergy(model, example_data=x)

    # Independent forward pass in NumPy for the inputs of each layer.
    k1, b1 = dense_weights(d1)
    k2, b2 = dense_weights(d2)
    h1 = x.astype(np.float64) @ k1 + b1
    h2 = np.maximum(h1, 0)
    h3 = h2 @ k2 + b2
    want_rates = {"data": np.abs(x).mean(), "d1": np.abs(x).mean(), "act": np.abs(h1).mean(),
                  "d2": np.abs(h2).mean(), "spk": np.abs(h3).mean()}
    for layer in model.layers:
        assert energy.layer_rates[layer] == pytest.approx(want_rates[layer.name], rel=1e-5), layer.name

    stats = {layer.name: energy.layer_stats[layer] for layer in model.layers}
    assert stats["d1"]["connections"] == 40 and stats["d2"]["connections"] == 24
    assert stats["act"]["neurons"] == 8 and stats["spk"]["neurons"] == 3
    assert stats["spk"]["spiking"] and not stats["act"]["spiking"]

    timesteps, dt = 7, 0.002
    for device, e_syn, e_neu in (("loihi", LOIHI_SYNOP, LOIHI_NEURON), ("spinnaker2", SPINN2_SYNOP, SPINN2_NEURON)):
        synop = e_syn * (40 * want_rates["d1"] + 24 * want_rates["d2"]) * dt * timesteps
        neuron = e_neu * (8 + 3) * timesteps
        got = energy.total_energy(device, timesteps_per_inference=timesteps, dt=dt)
        assert got == pytest.approx(synop + neuron, rel=1e-5)
        d2_synop, d2_neuron = energy.layer_energy("d2", device, timesteps_per_inference=timesteps, dt=dt)
        assert d2_synop == pytest.approx(e_syn * 24 * want_rates["d2"] * dt * timesteps, rel=1e-5)
        assert d2_neuron == 0

    # Non-spiking devices: one timestep, every connection once, whatever the data.
    cpu = energy.total_energy("cpu", timesteps_per_inference=timesteps, dt=dt)
    assert cpu == pytest.approx(CPU * (40 + 24 + 8 + 3), rel=1e-12)
    assert ModelEnergy(model).total_energy("cpu") == cpu

    text = energy.summary_string(columns=("name", "rate", "synop_energy loihi", "neuron_energy loihi", "energy loihi"))
    assert f"{want_rates['d2']:.2g}" in text.splitlines()[2 + 3]
    assert "non-spiking activations" in text
    assert "non-spiking activations" not in energy.summary_string(columns=("name", "energy loihi"), print_warnings=False)


def test_default_dt_comes_from_config():
    model, _ = rate_model()
    x = np.ones((2, 3, 5), dtype=np.float32)
    energy = ModelEnergy(model, example_data=x)
    old = keras_layers.default.dt
    try:
        keras_layers.default.dt = 0.004
        assert energy.total_energy("loihi") == energy.total_energy("loihi", dt=0.004)
    finally:
        keras_layers.default.dt = old
    assert energy.total_energy("loihi") == energy.total_energy("loihi", dt=0.001)


def test_sequential_model():
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(2)])
    x = np.random.default_rng(2).normal(size=(5, 10))
    energy = ModelEnergy(model, example_data=x)
    assert [energy.layer_stats[layer]["connections"] for layer in model.layers] == [60, 12]
    assert energy.layer_rates[model.layers[0]] == pytest.approx(np.abs(x).mean(), rel=1e-6)
    assert energy.total_energy("cpu") == pytest.approx(CPU * (60 + 12 + 6), rel=1e-12)

    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="build"):
        ModelEnergy(unbuilt)


def test_errors():
    energy = ModelEnergy(reference_dense_model())
    for call in (
        lambda: energy.total_energy("loihi"),
        lambda: energy.layer_energy("dense_2", "spinnaker"),
        lambda: energy.summary_string(columns=("name", "energy loihi")),
    ):
        with pytest.raises(ValueError, match="example_data"):
            call()
    with pytest.raises(ValueError, match="unknown device 'tpu'.*cpu"):
        energy.total_energy("tpu")
    with pytest.raises(ValueError, match="unknown device"):
        energy.summary_string(columns=("name", "energy tpu"))
    with pytest.raises(ValueError, match="unknown summary column"):
        energy.summary_string(columns=("name", "flops"))
    with pytest.raises(ValueError, match="needs a device"):
        energy.summary_string(columns=("energy",))
    with pytest.raises(ValueError, match="timesteps_per_inference"):
        energy.total_energy("cpu", timesteps_per_inference=0)
    with pytest.raises(ValueError, match="dt"):
        energy.total_energy("cpu", dt=-1.0)
    with pytest.raises(ValueError, match="not part of model"):
        energy.layer_energy(keras.layers.Dense(3), "cpu")
    with pytest.raises(TypeError, match="keras.Model"):
        ModelEnergy("model")

    class Custom(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        ModelEnergy(Custom())


def test_devices_view_reads_shared_table():
    assert ModelEnergy.devices["loihi"] == {
        "spiking": True, "energy_per_synop": LOIHI_SYNOP, "energy_per_neuron": LOIHI_NEURON,
    }
    with temporary_device("test-chip", 1e-12, 2e-12, True):
        assert "test-chip" in ModelEnergy.devices
    assert "test-chip" not in ModelEnergy.devices


def test_drop_in_import_names():
    import keras_layers as keras_spiking

    assert keras_spiking.ModelEnergy is ModelEnergy
    assert keras_spiking.regularizers.Percentile.__module__ == "keras_layers.regularizers"
    assert keras_spiking.model_energy.dense_stats is ModelEnergy.layer_stats_computers[keras.layers.Dense]
