"""Tests of spikeonnx.energy, the formula and table shared by ModelEnergy and GraphEnergy.

Expected values are hand computations with the published device figures restated
here (not read from the code under test), and hand-written table lines.
"""

import math
import subprocess
import sys

import numpy as np
import pytest

from spikeonnx import devices as dev
from spikeonnx import energy as en

# Published per-operation energies (KerasSpiking reference; Davies et al. 2018;
# Hoeppner et al. 2019), in Joules.
CPU = 8.6e-9
GPU = 0.3e-9
LOIHI_SYNOP, LOIHI_NEURON = (23.6 + 3.5) * 1e-12, 81e-12
SPINN_SYNOP, SPINN_NEURON = 13.3e-9, 26e-9


def add_device(monkeypatch, name, spiking):
    """Put a device in the shared table for one test (monkeypatch removes it)."""
    assert name not in dev.DEVICES
    monkeypatch.setitem(dev.DEVICES, name, dev.Device(name, 1e-12, 1e-12, spiking))


def test_import_needs_no_tensorflow_onnx_or_networkx(tmp_path):
    code = (
        "import sys, spikeonnx.energy as e; "
        "heavy = [m for m in ('tensorflow', 'keras', 'onnx', 'networkx', 'onnxruntime') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)  # not the repo root: import the installed package
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------- formula


def test_non_spiking_device_counts_every_connection_once():
    # 784 -> 128 dense layer: 100352 connections, 128 neurons
    assert en.layer_energy(100352, 128, None, "cpu") == (CPU * 100352, CPU * 128)
    assert en.layer_energy(100352, 128, None, "gpu") == (GPU * 100352, GPU * 128)
    # rate, timesteps and dt do not matter on an ANN device
    assert en.layer_energy(100352, 128, 37.5, "cpu", timesteps=9, dt=0.01) == (CPU * 100352, CPU * 128)
    # per-application counts are added before the multiplication
    assert en.layer_energy([24, 24], 8, None, "cpu") == (CPU * 48, CPU * 8)
    # a device object works as well as its name, and results are plain floats
    synop, neuron = en.layer_energy(np.int64(10), np.int64(3), None, dev.get_device("cpu"))
    assert type(synop) is float and type(neuron) is float
    assert (synop, neuron) == (CPU * 10, CPU * 3)


def test_spiking_device_formula_by_hand():
    # 30 connections at 250 Hz with dt = 2 ms: 15 events per step, for 7 steps
    synop, neuron = en.layer_energy(30, 5, 250.0, "loihi", timesteps=7, dt=0.002)
    assert synop == pytest.approx(LOIHI_SYNOP * 15 * 7, rel=1e-14)
    assert neuron == pytest.approx(LOIHI_NEURON * 5 * 7, rel=1e-15)
    # the exact operation order: E * (c * r * dt) * T
    assert synop == LOIHI_SYNOP * (30 * 250.0 * 0.002) * 7
    assert neuron == LOIHI_NEURON * 5 * 7

    # a layer applied twice: each application at its own rate, summed before E and T
    synop, neuron = en.layer_energy([24, 40], 6, [3.25, 0.5], "spinnaker", timesteps=3, dt=0.004)
    events = 24 * 3.25 * 0.004 + 40 * 0.5 * 0.004
    assert events == pytest.approx(0.392, rel=1e-14)
    assert synop == SPINN_SYNOP * events * 3
    assert neuron == SPINN_NEURON * 6 * 3

    # dt=None means 1 ms
    assert en.layer_energy(30, 0, 250.0, "loihi")[0] == pytest.approx(LOIHI_SYNOP * 7.5, rel=1e-14)
    assert en.DEFAULT_DT == 0.001
    # a rate of 1/dt for one step is the ANN cost (up to rounding)
    assert en.layer_energy(50, 2, 1000.0, "loihi", 1, 0.001)[0] == pytest.approx(LOIHI_SYNOP * 50, rel=1e-14)


def test_layer_energy_errors():
    with pytest.raises(ValueError, match="example_data must be given.*'loihi'"):
        en.layer_energy(10, 1, None, "loihi")
    with pytest.raises(ValueError, match="unknown device 'tpu'.*cpu"):
        en.layer_energy(10, 1, None, "tpu")
    with pytest.raises(ValueError, match="device must be a device name string"):
        en.layer_energy(10, 1, None, 3)
    with pytest.raises(ValueError, match="2 rates for 1 connection counts"):
        en.layer_energy(10, 1, [1.0, 2.0], "loihi")
    for rate in (-1.0, float("nan"), float("inf"), "5"):
        with pytest.raises(ValueError, match="rate must be a finite number >= 0"):
            en.layer_energy(10, 1, rate, "loihi")
    for bad in (-1, 2.5, True, "7"):
        with pytest.raises(ValueError, match="connections must be a non-negative integer"):
            en.layer_energy(bad, 1, None, "cpu")
        with pytest.raises(ValueError, match="neurons must be a non-negative integer"):
            en.layer_energy(1, bad, None, "cpu")
    with pytest.raises(ValueError, match="timesteps_per_inference"):
        en.layer_energy(1, 1, None, "cpu", timesteps=0)
    with pytest.raises(ValueError, match="dt must be"):
        en.layer_energy(1, 1, None, "cpu", dt=-0.1)


def test_sum_energy_adds_layers_in_order():
    pairs = [(1e-3, 2e-9), (0.5, 0.25), (0.0, 3e-7)]
    assert en.sum_energy(pairs) == ((1e-3 + 2e-9) + (0.5 + 0.25)) + (0.0 + 3e-7)
    assert en.sum_energy(iter(pairs)) == en.sum_energy(pairs)
    assert en.sum_energy([]) == 0.0


# ----------------------------------------------------------------- argument checks


def test_check_timesteps_and_dt():
    assert en.check_timesteps(3) == 3 and type(en.check_timesteps(np.int32(4))) is int
    for bad in (0, -2, 1.0, True, "2", None):
        with pytest.raises(ValueError, match="timesteps_per_inference must be a positive integer"):
            en.check_timesteps(bad)
    assert en.check_dt(None) == 0.001
    assert en.check_dt(None, default=0.02) == 0.02
    assert en.check_dt(np.float32(0.5), default=0.02) == 0.5
    for bad in (0, -1.0, float("nan"), float("inf"), "x", [1]):
        with pytest.raises(ValueError, match="dt must be a positive number of seconds"):
            en.check_dt(bad)
    with pytest.raises(ValueError, match="got 0.0"):  # the value as a float, like Keras's check
        en.check_dt(0)
    # a bad default is caught as well
    with pytest.raises(ValueError, match="dt must be"):
        en.check_dt(None, default=0)


def test_lookup_device_and_check_line_length(monkeypatch):
    assert en.lookup_device("CPU").name == "cpu" and en.lookup_device("loihi").spiking
    add_device(monkeypatch, "MyChip", True)
    assert en.lookup_device("MyChip").name == "MyChip"  # exact spelling first
    with pytest.raises(ValueError, match="unknown device 'nodev'"):
        en.lookup_device("nodev")
    assert en.check_line_length(5, 3) == 5
    assert type(en.check_line_length(np.int64(9), 1)) is int
    with pytest.raises(ValueError, match="line_length 4 is too small for 3 columns"):
        en.check_line_length(4, 3)
    for bad in (40.0, True, "80", None):
        with pytest.raises(ValueError, match="line_length must be an integer"):
            en.check_line_length(bad, 1)


def test_parse_columns(monkeypatch):
    parsed = en.parse_columns(["name", "rate", "energy LOIHI", "synop_energy  cpu", "neuron_energy gpu"])
    assert parsed == [
        en.Column("name"), en.Column("rate"), en.Column("energy", "loihi"),
        en.Column("synop_energy", "cpu"), en.Column("neuron_energy", "gpu"),
    ]
    assert [c.title for c in parsed] == [
        "Layer (type)", "Rate [Hz]", "J/inf (loihi)", "Synop J/inf (cpu)", "Neuron J/inf (gpu)",
    ]
    assert en.parse_columns("energy arm") == [en.Column("energy", "arm")]
    assert [c.title for c in en.parse_columns(en.DEFAULT_COLUMNS)] == [
        "Layer (type)", "Output shape", "Param #", "Conn #", "Neuron #", "J/inf (cpu)",
    ]
    add_device(monkeypatch, "two words", False)
    assert en.parse_columns(["energy two words"])[0].device == "two words"

    with pytest.raises(ValueError, match=r"unknown summary column 'flops'; valid columns: \['name'"):
        en.parse_columns(["name", "flops"])
    with pytest.raises(ValueError, match=r"\(unknown column 'flops'"):
        en.parse_columns(["flops"], noun="column")
    with pytest.raises(ValueError, match="summary column 'energy' needs a device"):
        en.parse_columns(["energy"])
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        en.parse_columns(["energy tpu"])
    with pytest.raises(ValueError, match="'name' takes no argument"):
        en.parse_columns(["name cpu"])
    with pytest.raises(ValueError, match="at least one column"):
        en.parse_columns([])

    # a custom lookup decides which names are devices
    seen = []

    def lookup(name):
        seen.append(name)
        return dev.get_device("gpu")

    assert en.parse_columns(["energy anything"], lookup) == [en.Column("energy", "gpu")]
    assert seen == ["anything"]


# --------------------------------------------------------------------------- table

COLUMNS = [en.Column("name"), en.Column("connections"), en.Column("energy", "cpu")]
ROWS = [["input_1 (InputLayer)", "0", "0"], ["d (Dense)", "12", "1e-07"]]


def test_format_summary_natural_widths_and_alignment():
    text = en._format_summary(COLUMNS, ROWS, line_length=98)
    assert text.splitlines() == [
        "Layer (type)        |Conn #|J/inf (cpu)",
        "--------------------|------|-----------",
        "input_1 (InputLayer)|     0|          0",
        "d (Dense)           |    12|      1e-07",
    ]


def test_format_summary_shrinks_widest_column_to_fit():
    # natural widths 20 + 6 + 11 + 2 separators = 39; at 30 the name column narrows
    # to its longest word (12, "(InputLayer)"), then the energy column loses one:
    # text wraps onto more lines, nothing is cut
    lines = en._format_summary(COLUMNS, ROWS, line_length=30).splitlines()
    assert lines == [
        "Layer (type)|Conn #|J/inf     ",
        "            |      |(cpu)     ",
        "------------|------|----------",
        "input_1     |     0|         0",
        "(InputLayer)|      |          ",
        "d (Dense)   |    12|     1e-07",
    ]
    # narrower than every column's longest word (the whole cell for numbers): the
    # table is wider than asked rather than cutting a number or a word
    lines = en._format_summary(COLUMNS, ROWS, line_length=5).splitlines()
    assert lines == [
        "Layer (type)|Conn|J/inf",
        "            |#   |(cpu)",
        "------------|----|-----",
        "input_1     |   0|    0",
        "(InputLayer)|    |     ",
        "d (Dense)   |  12|1e-07",
    ]
    for width in range(5, 45):
        text = en._format_summary(COLUMNS, ROWS, line_length=width)
        lines = text.splitlines()
        assert all(len(line) <= max(width, 23) for line in lines)
        for word in " ".join(" ".join(row) for row in ROWS).split():
            assert word in text.split("|") or word in text.replace("|", " ").split()


def test_format_summary_never_cuts_a_number():
    """9+ digit counts: the columns narrow and wrap text first, then large integers
    switch to engineering notation; no digit is ever dropped silently."""
    columns = [en.Column("name"), en.Column("output_shape"), en.Column("params"), en.Column("connections"),
               en.Column("neurons"), en.Column("energy", "cpu"), en.Column("energy", "loihi")]
    rows = [["layer1.0.conv1 (Conv)", "(None, 64, 56, 56)", "36864", "115605504", "200704", "9.9e-04", "1.2e-05"],
            ["fc (Gemm)", "(None, 1000)", "513000", "1234567890", "0", "4.4e-06", "3.1e-08"]]
    for width in range(40, 130):
        text = en._format_summary(columns, rows, line_length=width)
        tokens = text.replace("|", " ").split()
        if all(len(line) <= width for line in text.splitlines()) and "115605504" in tokens:
            # the full numbers are shown: every cell's words are there whole
            for row in rows:
                for cell in row:
                    assert all(word in tokens for word in cell.split()), (width, cell)
        else:
            # engineering notation: the same values to 4 significant digits
            assert "115.6e6" in tokens and "1.235e9" in tokens, width
            assert all(cell in tokens for cell in ("36864", "200704", "9.9e-04", "1.2e-05")), width
        assert not any(n in tokens for n in ("1156055", "11560550", "123456789")), width
    wide = en._format_summary(columns, rows, line_length=200)
    assert "115605504" in wide and "1234567890" in wide and max(map(len, wide.splitlines())) < 200


def test_format_summary_totals_and_notes():
    notes = ["* " + " ".join(["word"] * 30), "* short note"]
    text = en._format_summary(COLUMNS, ROWS, totals=[("cpu", 8.6352e-4), ("my dev", 1.0e-5)], notes=notes,
                             line_length=40)
    lines = text.splitlines()
    assert lines[4] == "=" * 39  # as wide as the header line
    assert lines[5] == "Total energy per inference [Joules/inf] (cpu): 8.64e-04"
    assert lines[6] == "Total energy per inference [Joules/inf] (my dev): 1.00e-05"
    note_lines = lines[7:]
    assert note_lines[0].startswith("* word") and note_lines[-1] == "* short note"
    assert all(line.startswith("  ") for line in note_lines[1:-1])
    assert all(len(line) <= 40 for line in note_lines)
    assert " ".join(" ".join(note_lines[:-1]).split()) == notes[0]
    # without totals there is no rule
    assert "=" not in en._format_summary(COLUMNS, ROWS, notes=notes)


def test_format_summary_errors():
    with pytest.raises(ValueError, match="row 1 has 2 cells for 3 columns"):
        en._format_summary(COLUMNS, [ROWS[0], ["x", "1"]])
    with pytest.raises(ValueError, match="line_length 4 is too small for 3 columns"):
        en._format_summary(COLUMNS, ROWS, line_length=4)
    with pytest.raises(ValueError, match="at least one column"):
        en._format_summary([], [])


def test_assumption_notes():
    cols = en.parse_columns
    assert en._assumption_notes(cols(["name", "connections"]), all_layers_spiking=False) == []
    one = en._assumption_notes(cols(["name", "energy cpu"]), all_layers_spiking=False)
    assert len(one) == 1 and one[0].startswith("* These are estimates only")
    assert en._assumption_notes(cols(["synop_energy cpu"]), False) == one
    assert en._assumption_notes(cols(["energy loihi"]), all_layers_spiking=True) == one
    two = en._assumption_notes(cols(["energy cpu", "neuron_energy loihi"]), all_layers_spiking=False)
    assert two[0] == one[0] and "non-spiking activations" in two[1]


def test_summary_rows_formats_values_and_calls_only_what_is_shown():
    calls = []

    def describe(layer, kind):
        calls.append((layer, kind))
        return {"name": f"{layer} (T)", "params": 7, "connections": 30, "neurons": 5,
                "rate": None if layer == "a" else 123.456}[kind]

    def energy(layer, device):
        calls.append((layer, device))
        return (1.234e-9, 5.0e-10) if device == "loihi" else (2.0, 3.0)

    columns = en.parse_columns(["name", "rate", "synop_energy loihi", "neuron_energy loihi", "energy loihi", "energy cpu"])
    rows = en._summary_rows(columns, ["a", "b"], describe, energy)
    assert rows == [
        ["a (T)", "nan", "1.2e-09", "5e-10", "1.7e-09", "5"],
        ["b (T)", "1.2e+02", "1.2e-09", "5e-10", "1.7e-09", "5"],
    ]
    assert ("a", "params") not in calls and ("a", "output_shape") not in calls
    assert en._summary_rows(en.parse_columns(["params", "connections"]), ["a"], describe, energy) == [["7", "30"]]


def test_summary_table_checks_then_uses_callbacks():
    seen = []

    def layer_energy(layer, device, timesteps, dt):
        seen.append((device, timesteps, dt))
        return (1e-6, 2e-6)

    def total_energy(device, timesteps, dt):
        seen.append(("total", device, timesteps, dt))
        return 6e-6

    def describe(layer, kind):
        return {"name": layer, "connections": 4, "neurons": 2}[kind]

    kwargs = dict(all_layers_spiking=False, default_dt=0.02, line_length=60)
    text = en._summary_table(["name", "energy loihi"], ["l1", "l2"], describe, layer_energy, total_energy, **kwargs)
    assert seen == [("loihi", 1, 0.02), ("loihi", 1, 0.02), ("total", "loihi", 1, 0.02)]
    lines = text.splitlines()
    assert lines[:4] == ["Layer (type)|J/inf (loihi)", "------------|-------------", "l1          |        3e-06",
                         "l2          |        3e-06"]
    assert lines[5] == "Total energy per inference [Joules/inf] (loihi): 6.00e-06"
    assert sum(line.startswith("* ") for line in lines) == 2
    quiet = en._summary_table(["name", "energy loihi"], ["l1"], describe, layer_energy, total_energy,
                             print_warnings=False, timesteps_per_inference=3, dt=0.5, **kwargs)
    assert "*" not in quiet and seen[-1] == ("total", "loihi", 3, 0.5)

    args = (["l1"], describe, layer_energy, total_energy)
    with pytest.raises(ValueError, match="unknown summary column"):
        en._summary_table(["bogus"], *args, **kwargs)
    with pytest.raises(ValueError, match=r"\(unknown column '"):
        en._summary_table(["bogus"], *args, noun="column", **kwargs)
    with pytest.raises(ValueError, match="too small"):
        en._summary_table(["name", "neurons"], *args, all_layers_spiking=True, line_length=2)
    with pytest.raises(ValueError, match="timesteps_per_inference"):
        en._summary_table(["name"], *args, timesteps_per_inference=0, **kwargs)
    with pytest.raises(ValueError, match="dt must be"):
        en._summary_table(["name"], *args, dt=float("nan"), **kwargs)


def test_keras_and_onnx_estimators_print_the_same_table():
    """ModelEnergy and GraphEnergy share the table code: same model, same text."""
    import keras
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from keras_layers import ModelEnergy
    from spikeonnx.analysis import GraphEnergy

    inp = keras.Input((784,), name="x")
    keras_model = keras.Model(inp, keras.layers.Dense(128, activation="relu", name="d")(inp))
    w = np.zeros((784, 128), np.float32)
    b = np.zeros(128, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="d/MatMul"),
         helper.make_node("Add", ["h", "b"], ["hb"], name="d/BiasAdd"),
         helper.make_node("Relu", ["hb"], ["y"], name="d/Relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 128])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 10
    onnx.checker.check_model(onnx_model)

    columns = ("params", "connections", "neurons", "synop_energy gpu", "energy cpu", "energy arm")
    keras_text = ModelEnergy(keras_model).summary_string(columns, line_length=70)
    onnx_text = GraphEnergy(onnx_model).summary_string(columns, line_length=70)
    assert keras_text == onnx_text
    lines = keras_text.splitlines()
    cpu = CPU * 100352 + CPU * 128
    arm = 0.9e-9 * 100352 + 0.9e-9 * 128
    assert lines[:6] == [
        "Param #|Conn #|Neuron #|Synop J/inf (gpu)|J/inf (cpu)|J/inf (arm)",
        "-------|------|--------|-----------------|-----------|-----------",
        "      0|     0|       0|                0|          0|          0",
        f" 100480|100352|     128|{GPU * 100352:>17.2g}|{cpu:>11.2g}|{arm:>11.2g}",
        "=" * 65,
        f"Total energy per inference [Joules/inf] (cpu): {cpu:0.2e}",
    ]
    assert lines[5].endswith("8.64e-04")
    assert lines[6] == f"Total energy per inference [Joules/inf] (arm): {arm:0.2e}"
    # one note (no spiking device shown), wrapped to the line length
    assert lines[7].startswith("* These are estimates only")
    assert all(line.startswith("  ") and len(line) <= 70 for line in lines[8:])
    assert math.isclose(ModelEnergy(keras_model).total_energy("cpu"), cpu, rel_tol=1e-15)


class _TwoLayerEstimator(en.EnergyEstimator):
    """A minimal estimator: fixed counts, rates only when measured."""

    LAYERS = {"in": (0, 0, True), "fc": (30, 5, False)}  # connections, neurons, spiking

    def __init__(self, rates=None):
        self.rates = rates

    def _summary_layers(self):
        return list(self.LAYERS)

    def _describe(self, layer, kind):
        connections, neurons, _ = self.LAYERS[layer]
        return {"name": f"{layer} (Test)", "output_shape": "(None, 5)", "params": 155,
                "connections": connections, "neurons": neurons,
                "rate": None if self.rates is None else self.rates[layer]}[kind]

    def _all_layers_spiking(self):
        return all(spiking for _, _, spiking in self.LAYERS.values())

    def _default_dt(self):
        return 0.004

    def layer_energy(self, layer, device, timesteps_per_inference=1, dt=None):
        connections, neurons, _ = self.LAYERS[layer]
        rate = None if self.rates is None else self.rates[layer]
        dt = en.check_dt(dt, self._default_dt())
        return en.layer_energy(connections, neurons, rate, device, timesteps_per_inference, dt)


def test_energy_estimator_base_class(capsys):
    est = _TwoLayerEstimator({"in": 2.0, "fc": 50.0})
    # default dt 4 ms: 30 connections * 50 Hz * 0.004 s = 6 events per step, 3 steps
    want = LOIHI_SYNOP * (30 * 50.0 * 0.004) * 3 + LOIHI_NEURON * 5 * 3
    assert est.total_energy("loihi", 3) == (0.0 + 0.0) + want
    assert est.total_energy("cpu") == CPU * 30 + CPU * 5
    est.summary(("name", "rate", "energy loihi"), 3, None, 60, True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:6] == [
        "Layer (type)|Rate [Hz]|J/inf (loihi)",
        "------------|---------|-------------",
        "in (Test)   |        2|            0",
        f"fc (Test)   |       50|{want:>13.2g}",
        "=" * 36,
        f"Total energy per inference [Joules/inf] (loihi): {want:0.2e}",
    ]
    assert "non-spiking activations" in " ".join(lines[6:])
    assert est.summary_string(("name", "energy loihi"), 3) == est.summary_string(("name", "energy loihi"), 3, 0.004)
    with pytest.raises(ValueError, match="example_data must be given"):
        _TwoLayerEstimator().summary_string(("name", "energy loihi"))
    with pytest.raises(ValueError, match="unknown summary column 'x'"):
        est.summary_string(("x",))

    class Incomplete(en.EnergyEstimator):
        pass

    with pytest.raises(NotImplementedError, match="Incomplete must implement _summary_layers"):
        Incomplete().total_energy("cpu")
    assert Incomplete()._default_dt() == en.DEFAULT_DT


# ------------------------------------------------------------ stats and records


def test_check_stats_one_validator_for_both_estimators():
    assert en.check_stats({"connections": np.int64(12), "spiking": 0}, "h") == {"connections": 12, "spiking": False}
    assert en.check_stats({"neurons": 3.0}, "h", complete=True) == {"connections": 0, "neurons": 3, "spiking": True}
    assert type(en.check_stats({"neurons": np.float32(2.0)}, "h")["neurons"]) is int
    with pytest.raises(ValueError, match=r"^handler 'f' returned an invalid stat 'synops'; valid stats are"):
        en.check_stats({"synops": 1}, "handler 'f'")
    with pytest.raises(ValueError, match="returned list, expected a dict"):
        en.check_stats([1], "h")
    for bad in (-1, 2.5, True, np.bool_(True), "7", float("inf"), float("nan"), None):
        with pytest.raises(ValueError, match="'connections' must be a non-negative integer"):
            en.check_stats({"connections": bad}, "h")


def test_sum_stats_and_counted_axes():
    parts = [{"connections": 5, "neurons": 1}, {"spiking": False}, {"connections": 2, "neurons": 4, "spiking": True}]
    assert en.sum_stats(parts) == {"connections": 7, "neurons": 5, "spiking": False}
    assert en.sum_stats([]) == {"connections": 0, "neurons": 0, "spiking": True}
    # batch first, an unknown size right after it is time (Keras' convention)
    assert en.counted_axes((None, None, 4, 5)) == [2, 3]
    assert en.counted_axes((None, 7, 4)) == [1, 2]
    assert en.counted_axes((None, None, 4), time_fallback=False) == [1, 2]
    # declared axes: time-major layout, no fallback then
    assert en.counted_axes((None, None, "F"), batch_axis=1, time_axis=0) == [2]
    assert en.counted_axes(("T", 3), batch_axis=None) == [1]
    assert en.counted_axes(()) == []


def test_layer_record_rows_and_energy():
    class Rows(en.EnergyEstimator):
        def __init__(self, records):
            self.records = records

        def _summary_layers(self):
            return self.records

    shared = en.LayerRecord("d", "Dense", "(None, 4)", 28, (24, 24), 8, False, rates=(2.0, 6.0), rate=4.0)
    est = Rows([en.LayerRecord("x", "InputLayer", "(None, 6)", 0, (0,), 0, True, (1.5,), 1.5), shared])
    assert shared.stats == {"connections": 48, "neurons": 8, "spiking": False}
    assert shared.describe("name") == "d (Dense)" and shared.describe("rate") == 4.0
    # each application at its own rate: 24*2 + 24*6 events/s
    assert est.layer_energy("d", "loihi", 3, 0.01) == en.layer_energy([24, 24], 8, [2.0, 6.0], "loihi", 3, 0.01)
    assert est.layer_energy(shared, "cpu") == (CPU * 48, CPU * 8)
    assert est.total_energy("cpu") == CPU * 48 + CPU * 8
    assert not est._all_layers_spiking()
    with pytest.raises(ValueError, match="no layer named 'z'; layers: x, d"):
        est.layer_energy("z", "cpu")
    lines = est.summary_string(("name", "rate", "connections"), line_length=60).splitlines()
    assert lines[2:] == ["x (InputLayer)|      1.5|     0", "d (Dense)     |        4|    48"]
