"""GraphEnergy on hand-built ONNX graphs: stats, grouping, rates, energy, bad input.

Expected numbers are computed independently in each test (hand formulas, NumPy),
never by the analyzer.
"""

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx import devices as dev
from spikeonnx.analysis import GraphEnergy, ShapeResolutionError, register_op

RNG = np.random.default_rng(1234)


def _model(nodes, inputs, outputs, inits=(), metadata=None, value_info=(), opset=17):
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits], value_info=value_info
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("spikeonnx", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    return model


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def dense_relu_784_128():
    w = RNG.standard_normal((784, 128)).astype(np.float32) * 0.05
    b = RNG.standard_normal(128).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="dense/MatMul"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["hb"], ["y"], name="dense/Relu"),
    ]
    return _model(nodes, [_vi("x", ["N", 784])], [_vi("y", ["N", 128])], [("W", w), ("b", b)]), w, b


# ------------------------------------------------------------------------------------
# the published ModelEnergy example
# ------------------------------------------------------------------------------------
def test_published_dense_example():
    model, _, _ = dense_relu_784_128()
    energy = GraphEnergy(model)
    assert energy.layer_names == ["x", "dense/MatMul"]
    stats = energy.layer_stats["dense/MatMul"]
    assert stats == {"connections": 784 * 128, "neurons": 128, "spiking": False}
    assert stats["connections"] == 100352
    assert energy.compute_layer_stats("x") == {"connections": 0, "neurons": 0, "spiking": True}
    layer = energy.layers[1]
    assert energy.layer_energy(layer, "cpu") == energy.layer_energy("dense/MatMul", "cpu") == (
        8.6e-9 * 100352, 8.6e-9 * 128)
    # cpu: 8.6e-9 J per synop and per neuron update, every connection once
    expected = 8.6e-9 * 100352 + 8.6e-9 * 128
    assert energy.total_energy("cpu") == pytest.approx(expected, rel=1e-15)
    assert f"{energy.total_energy('cpu'):.2e}" == "8.64e-04"
    text = energy.summary_string(line_length=80)
    assert "Total energy per inference [Joules/inf] (cpu): 8.64e-04" in text
    assert "100480" in text  # params: 784*128 weights + 128 biases
    assert all(len(line) <= 80 for line in text.splitlines())
    # non-spiking devices ignore timesteps and dt
    assert energy.total_energy("cpu", timesteps_per_inference=10, dt=0.01) == energy.total_energy("cpu")


def test_summary_columns_and_errors(capsys):
    model, _, _ = dense_relu_784_128()
    energy = GraphEnergy(model)
    energy.summary(columns=("name", "connections", "synop_energy gpu", "neuron_energy gpu", "energy arm"))
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "Synop J/inf (gpu)" in header and "Neuron J/inf (gpu)" in header and "J/inf (arm)" in header
    assert f"{0.3e-9 * 100352:.2g}" in out and f"{0.3e-9 * 128:.2g}" in out
    assert "rate" not in header.lower()
    with pytest.raises(ValueError, match="unknown column 'bogus'"):
        energy.summary_string(columns=("name", "bogus"))
    with pytest.raises(ValueError, match="unknown device 'nodev'"):
        energy.summary_string(columns=("energy nodev",))
    with pytest.raises(ValueError, match="unknown device 'nodev'"):
        energy.layer_energy("dense/MatMul", "nodev")
    with pytest.raises(ValueError, match="no layer named 'nolayer'"):
        energy.layer_energy("nolayer", "cpu")
    with pytest.raises(ValueError, match="dt must be"):
        energy.total_energy("cpu", dt=0)
    with pytest.raises(ValueError, match="timesteps_per_inference"):
        energy.total_energy("cpu", timesteps_per_inference=0)
    with pytest.raises(ValueError, match="example_data must be given"):
        energy.total_energy("loihi")


def test_register_device_uses_shared_table():
    GraphEnergy.register_device("h5-test-dev", 2e-10, 3e-9, spiking=False)
    try:
        assert dev.get_device("h5-test-dev").energy_per_neuron == 3e-9
        model, _, _ = dense_relu_784_128()
        energy = GraphEnergy(model)
        assert energy.total_energy("h5-test-dev") == pytest.approx(2e-10 * 100352 + 3e-9 * 128, rel=1e-15)
    finally:
        dev.DEVICES.pop("h5-test-dev", None)


# ------------------------------------------------------------------------------------
# rates and spiking-device energy
# ------------------------------------------------------------------------------------
def two_layer_model():
    w1 = RNG.standard_normal((6, 5)).astype(np.float32)
    b1 = RNG.standard_normal(5).astype(np.float32)
    w2 = RNG.standard_normal((5, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="d1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="d1_bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="d1_relu"),
        helper.make_node("MatMul", ["r", "W2"], ["y"], name="d2"),
    ]
    model = _model(nodes, [_vi("x", ["N", "T", 6])], [_vi("y", ["N", "T", 3])], [("W1", w1), ("b1", b1), ("W2", w2)])
    return model, w1, b1, w2


def test_rates_and_spiking_energy_match_numpy():
    model, w1, b1, w2 = two_layer_model()
    x = RNG.standard_normal((4, 7, 6)).astype(np.float32)
    energy = GraphEnergy(model, x)
    # unknown size after the batch axis is time (Keras convention): not counted
    assert energy.layer_stats["d1"] == {"connections": 30, "neurons": 5, "spiking": False}
    assert energy.layer_stats["d2"] == {"connections": 15, "neurons": 0, "spiking": True}
    r = np.maximum(x.astype(np.float64) @ w1 + b1, 0)
    rate_x = np.abs(x.astype(np.float64)).mean()
    rate_r = np.abs(r).mean()
    assert energy.layer_rates["x"] == pytest.approx(rate_x, rel=1e-12)
    assert energy.layer_rates["d1"] == pytest.approx(rate_x, rel=1e-12)
    assert energy.layer_rates["d2"] == pytest.approx(rate_r, rel=1e-5)
    steps, dt = 7, 0.002
    for name in ("loihi", "spinnaker", "spinnaker2"):
        d = dev.get_device(name)
        synop1, neuron1 = energy.layer_energy("d1", name, steps, dt)
        assert synop1 == pytest.approx(d.energy_per_synop * 30 * rate_x * dt * steps, rel=1e-12)
        assert neuron1 == pytest.approx(d.energy_per_neuron * 5 * steps, rel=1e-15)
        synop2, neuron2 = energy.layer_energy("d2", name, steps, dt)
        assert synop2 == pytest.approx(d.energy_per_synop * 15 * rate_r * dt * steps, rel=1e-5)
        assert neuron2 == 0
        total = energy.total_energy(name, steps, dt)
        assert total == pytest.approx(synop1 + neuron1 + synop2, rel=1e-12)
    # the default dt is 1 ms
    d = dev.get_device("loihi")
    assert energy.layer_energy("d1", "loihi")[0] == pytest.approx(d.energy_per_synop * 30 * rate_x * 0.001, rel=1e-12)
    text = energy.summary_string(columns=("name", "rate", "energy loihi"))
    assert f"{rate_x:.2g}" in text and f"{rate_r:.2g}" in text
    assert "non-spiking activations" in text
    assert "non-spiking" not in energy.summary_string(columns=("name", "rate", "energy loihi"), print_warnings=False)


def test_example_data_forms(tmp_path):
    model, w1, b1, _ = two_layer_model()
    x = RNG.standard_normal((3, 4, 6))
    expected = np.abs(x.astype(np.float32).astype(np.float64)).mean()
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "anon.npz", x)
    for data in (x, {"x": x}, str(tmp_path / "x.npy"), tmp_path / "x.npz", tmp_path / "anon.npz"):
        energy = GraphEnergy(model, data)  # float64 data is cast to the input's float32
        assert energy.layer_rates["d1"] == pytest.approx(expected, rel=1e-12)


def test_example_data_errors(tmp_path):
    model, *_ = two_layer_model()
    with pytest.raises(ValueError, match=r"input 'x' has shape \(3, 6\) but the input has rank 3"):
        GraphEnergy(model, np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match=r"axis 2: 5 != 6"):
        GraphEnergy(model, np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"missing \['x'\].*unknown \['y'\]"):
        GraphEnergy(model, {"y": np.zeros((3, 4, 6), np.float32)})
    with pytest.raises(ValueError, match="non-numeric dtype"):
        GraphEnergy(model, np.full((3, 4, 6), "a"))
    with pytest.raises(FileNotFoundError, match="example data file not found"):
        GraphEnergy(model, tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="cannot read example data"):
        GraphEnergy(model, tmp_path / "junk.npy")


# ------------------------------------------------------------------------------------
# time and batch axes, metadata grouping, spiking ops
# ------------------------------------------------------------------------------------
def test_declared_time_axis_and_metadata_grouping():
    """Fixed-size time axis declared in the metadata, Keras names for the groups."""
    t, f, u = 9, 4, 6
    w = RNG.standard_normal((f, u)).astype(np.float32)
    b = RNG.standard_normal(u).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["inp", "W"], ["h"], name="m/dense/MatMul"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="m/dense/Add"),
        helper.make_node("Relu", ["hb"], ["r"], name="m/act/Relu"),
        helper.make_node("Softmax", ["r"], ["y"], name="m/soft/Softmax", axis=-1),
    ]
    meta = {
        "spikeonnx.layers": {"m/dense/MatMul": "dense", "m/dense/Add": "dense", "m/act/Relu": "act",
                             "m/soft/Softmax": "soft"},
        "spikeonnx.batch_axes": {"inp": 0, "y": 0},
        "spikeonnx.time_axes": {"inp": 1, "y": 1},
    }
    model = _model(nodes, [_vi("inp", [2, t, f])], [_vi("y", [2, t, u])], [("W", w), ("b", b)], metadata=meta)
    energy = GraphEnergy(model)
    assert energy.layer_names == ["inp", "dense", "act", "soft"]
    # a separate activation layer is its own layer (as a Keras Activation layer)
    assert energy.layer_stats["dense"] == {"connections": f * u, "neurons": 0, "spiking": True}
    assert energy.layer_stats["act"] == {"connections": 0, "neurons": u, "spiking": False}
    assert energy.layer_stats["soft"] == {"connections": 0, "neurons": u, "spiking": False}
    # without metadata the time axis is counted (as Keras counts a fixed time axis),
    # and the activation joins the dense layer
    plain = GraphEnergy(_model(nodes, [_vi("inp", [2, t, f])], [_vi("y", [2, t, u])], [("W", w), ("b", b)]))
    assert plain.layer_stats["m/dense/MatMul"] == {"connections": t * f * u, "neurons": t * u, "spiking": False}
    # an explicit time axis argument does the same as the metadata
    explicit = GraphEnergy(_model(nodes, [_vi("inp", [2, t, f])], [_vi("y", [2, t, u])], [("W", w), ("b", b)]),
                           time_axis=1)
    assert explicit.layer_stats["m/dense/MatMul"]["connections"] == f * u
    # time-major layout: time first, batch second
    tm = GraphEnergy(_model(nodes, [_vi("inp", [t, 3, f])], [_vi("y", [t, 3, u])], [("W", w), ("b", b)]),
                     batch_axis=1, time_axis=0)
    assert tm.layer_stats["m/dense/MatMul"] == {"connections": f * u, "neurons": u, "spiking": False}
    with pytest.raises(ValueError, match="time_axis=5 is out of range for graph input 'inp'"):
        GraphEnergy(model, time_axis={"inp": 5})


def test_spiking_activation_absorbs_base_activation():
    """Relu -> SpikingActivation is one spiking layer: the relu is its rate function."""
    f, u = 5, 7
    w = RNG.standard_normal((f, u)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="dense"),
        helper.make_node("Relu", ["h"], ["r"], name="sa/relu"),
        helper.make_node("SpikingActivation", ["r"], ["s"], name="sa", domain="spikeonnx", dt=0.001),
        helper.make_node("Lowpass", ["s", "tau", "lvl"], ["y"], name="lp", domain="spikeonnx", dt=0.001),
    ]
    inits = [("W", w), ("tau", np.full((1, u), 0.01, np.float32)), ("lvl", np.zeros((1, u), np.float32))]
    model = _model(nodes, [_vi("x", ["B", "T", f])], [_vi("y", ["B", "T", u])], inits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own ops never warn
        energy = GraphEnergy(model)
    assert energy.layer_names == ["x", "dense", "sa", "lp"]
    assert energy.layer_stats["dense"] == {"connections": f * u, "neurons": 0, "spiking": True}
    assert energy.layer_stats["sa"] == {"connections": 0, "neurons": u, "spiking": True}
    assert energy.layer_stats["lp"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert energy.graph.layer("sa").nodes == ["sa/relu", "sa"]


def test_spiking_rates_through_op_library():
    """Rates of a graph with our custom op come from onnxruntime with the op library."""
    f, u, t, dt = 3, 4, 50, 0.01
    w = np.abs(RNG.standard_normal((f, u))).astype(np.float32) * 20
    w2 = RNG.standard_normal((u, 2)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="dense"),
        helper.make_node("SpikingActivation", ["h", "v0"], ["s"], name="sa", domain="spikeonnx", dt=dt),
        helper.make_node("MatMul", ["s", "W2"], ["y"], name="out"),
    ]
    model = _model(nodes, [_vi("x", ["B", "T", f]), _vi("v0", ["B", u])], [_vi("y", ["B", "T", 2])],
                   [("W", w), ("W2", w2)])
    x = np.abs(RNG.standard_normal((2, t, f))).astype(np.float32)
    v0 = RNG.uniform(size=(2, u)).astype(np.float32)
    energy = GraphEnergy(model, {"x": x, "v0": v0}, time_axis={"x": 1})
    # integrate-and-fire in float32, per the op contract
    rates = np.matmul(x, w).astype(np.float32)
    v = v0.copy()
    spikes = np.zeros_like(rates)
    for step in range(t):
        v = v + rates[:, step] * np.float32(dt)
        n = np.floor(v)
        v = v - n
        spikes[:, step] = n / np.float32(dt)
    expected = np.abs(np.asarray(spikes, np.float64)).mean()
    assert expected > 0
    assert energy.layer_rates["out"] == pytest.approx(expected, rel=1e-6)
    d = dev.get_device("loihi")
    synop, _ = energy.layer_energy("out", "loihi", 3, dt)
    assert synop == pytest.approx(d.energy_per_synop * u * 2 * expected * dt * 3, rel=1e-6)


# ------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------
def test_register_op_and_unknown_ops_warn_once():
    nodes = [
        helper.make_node("Upsample2x", ["x"], ["u"], name="up1", domain="h5.test"),
        helper.make_node("Upsample2x", ["u"], ["v"], name="up2", domain="h5.test"),
        helper.make_node("Relu", ["v"], ["y"], name="relu"),
    ]
    vinfo = [_vi("u", ["N", 3, 8, 8]), _vi("v", ["N", 3, 16, 16])]
    model = _model(nodes, [_vi("x", ["N", 3, 4, 4])], [_vi("y", ["N", 3, 16, 16])], value_info=vinfo)
    model.opset_import.append(helper.make_opsetid("h5.test", 1))
    with pytest.warns(UserWarning, match=r"op type 'h5.test.Upsample2x' \(2 node\(s\)") as rec:
        energy = GraphEnergy(model)
    assert sum("Upsample2x" in str(w.message) for w in rec) == 1
    assert energy.layer_stats["up1"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert energy.layer_stats["relu"]["neurons"] == 3 * 16 * 16

    @register_op("h5.test", "Upsample2x")
    def upsample_stats(node):
        # one synaptic operation per output element (per sample and timestep)
        return {"connections": node.output_units(0)}

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            energy = GraphEnergy(model)
        assert energy.layer_stats["up1"]["connections"] == 3 * 8 * 8
        assert energy.layer_stats["up2"]["connections"] == 3 * 16 * 16
    finally:
        from spikeonnx.analysis import stats

        stats.OPS.unregister(("h5.test", "Upsample2x"))

    @register_op("h5.test", "Bad")
    def bad(node):
        return {"synops": 3}

    try:
        bad_model = _model([helper.make_node("Bad", ["x"], ["y"], name="b", domain="h5.test")],
                           [_vi("x", ["N", 3])], [_vi("y", ["N", 3])])
        bad_model.opset_import.append(helper.make_opsetid("h5.test", 1))
        with pytest.raises(ValueError, match="invalid stat 'synops'"):
            GraphEnergy(bad_model)
    finally:
        from spikeonnx.analysis import stats

        stats.OPS.unregister(("h5.test", "Bad"))


# ------------------------------------------------------------------------------------
# malformed input
# ------------------------------------------------------------------------------------
def test_truncated_and_missing_files(tmp_path):
    model, _, _ = dense_relu_784_128()
    blob = model.SerializeToString()
    path = tmp_path / "trunc.onnx"
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match=r"trunc\.onnx.*(truncated|not a valid ONNX model)"):
        GraphEnergy(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"trunc\.onnx"):
        GraphEnergy(path)
    with pytest.raises(FileNotFoundError, match="nothere.onnx"):
        GraphEnergy(tmp_path / "nothere.onnx")
    with pytest.raises(IsADirectoryError):
        GraphEnergy(tmp_path)
    with pytest.raises(TypeError, match="ModelProto, a path or bytes"):
        GraphEnergy(3.5)
    # the full file works, as path and as bytes
    path.write_bytes(blob)
    assert GraphEnergy(path).layer_stats["dense/MatMul"]["connections"] == 100352
    assert GraphEnergy(blob).layer_stats["dense/MatMul"]["connections"] == 100352


def test_cycle_and_undefined_tensor():
    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["c"], name="second"),
    ]
    model = _model(nodes, [_vi("x", ["N", 3])], [_vi("c", ["N", 3])])
    with pytest.raises(ValueError, match=r"cycle: (first -> second -> first|second -> first -> second)"):
        GraphEnergy(model)
    # nodes out of file order (but acyclic) are sorted, not rejected
    model, _, _ = dense_relu_784_128()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    assert GraphEnergy(model).layer_stats["dense/MatMul"] == {"connections": 100352, "neurons": 128, "spiking": False}
    undefined = _model([helper.make_node("Relu", ["ghost"], ["y"], name="r")], [_vi("x", ["N", 3])],
                       [_vi("y", ["N", 3])])
    with pytest.raises(ValueError, match="node 'r' \\(Relu\\) reads tensor 'ghost'"):
        GraphEnergy(undefined)


def test_unresolvable_symbolic_dim():
    w = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1, 1, 1, 1])
    # the image size is symbolic: the conv's connections depend on it
    model = _model([conv], [_vi("x", ["N", 3, "H", "W"])], [_vi("y", ["N", 8, "H", "W"])], [("W", w)])
    with pytest.raises(ShapeResolutionError, match=r"node 'conv' \(Conv\).*axis 2 of 'x' has the symbolic size 'H'"):
        GraphEnergy(model)
    # the same for an activation on a tensor with a symbolic feature size
    relu = _model([helper.make_node("Relu", ["x"], ["y"], name="act")], [_vi("x", ["N", 4, "F"])],
                  [_vi("y", ["N", 4, "F"])])
    with pytest.raises(ShapeResolutionError, match=r"node 'act' \(Relu\).*axis 2.*'F'"):
        GraphEnergy(relu)


def test_unknown_op_output_without_type():
    nodes = [helper.make_node("Blur", ["x"], ["b"], name="blur", domain="h5.vendor"),
             helper.make_node("Relu", ["b"], ["y"], name="act")]
    model = _model(nodes, [_vi("x", ["N", 4])], [_vi("y", ["N", 4])])
    model.opset_import.append(helper.make_opsetid("h5.vendor", 1))
    with pytest.raises(ShapeResolutionError, match=r"node 'act' \(Relu\).*tensor '[by]' could not be inferred"
                       r".*comes from node 'blur' of op type 'h5.vendor.Blur'"):
        GraphEnergy(model)
    # declaring the output type of the unknown op is enough
    model.graph.value_info.append(_vi("b", ["N", 4]))
    with pytest.warns(UserWarning, match="h5.vendor.Blur"):
        assert GraphEnergy(model).layer_stats["act"]["neurons"] == 4


def test_no_tensorflow_import(tmp_path):
    model, _, _ = dense_relu_784_128()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    np.save(tmp_path / "x.npy", np.ones((2, 784), np.float32))
    code = (
        "import sys\n"
        "from spikeonnx import GraphEnergy\n"
        f"e = GraphEnergy({str(path)!r}, {str(tmp_path / 'x.npy')!r})\n"
        "assert e.layer_stats['dense/MatMul']['connections'] == 100352\n"
        "e.total_energy('loihi'); e.summary_string()\n"
        "from spikeonnx.cli import main\n"
        f"assert main(['energy', {str(path)!r}, '--json']) == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "print('LOADED', bad)\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=path.parent)  # not the repo root: import the installed package
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout
