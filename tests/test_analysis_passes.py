"""The analyzer's passes, one at a time, on small hand-built ONNX graphs.

Each test runs the passes up to the one under test and checks what that pass
stored on the networkx graph; counts are compared with hand formulas or NumPy.
"""

import json
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx.analysis import passes, stats
from spikeonnx.analysis.axes import AxisMark
from spikeonnx.analysis.graph import AnalysisGraph, analyze
from spikeonnx.analysis.rates import compute_rates, load_example_data

RNG = np.random.default_rng(7)


def _model(nodes, inputs, outputs, inits=(), metadata=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("spikeonnx", 1)])
    model.ir_version = 10
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    return model


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def conv_dense_model():
    """Conv(3->4, 3x3, stride 2, pad 1) + bias -> Relu -> Flatten -> MatMul(.., 5)."""
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    wd = RNG.standard_normal((4 * 4 * 5, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "Wd"], ["y"], name="dense"),
    ]
    model = _model(nodes, [_vi("x", ["N", 3, 8, 10])], [_vi("y", ["N", 5])], [("W", w), ("B", b), ("Wd", wd)])
    return model, w, b, wd


# -- 1. load ---------------------------------------------------------------------------


def test_load_builds_nodes_edges_and_order():
    model, *_ = conv_dense_model()
    # file order reversed: the pass sorts topologically
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    G = passes.load(model)
    assert set(G.nodes) == {"conv", "relu", "flat", "dense"}
    assert G.graph["order"] == ["conv", "relu", "flat", "dense"]
    assert G.nodes["conv"]["op_type"] == "Conv" and G.nodes["conv"]["domain"] == ""
    assert G.nodes["dense"]["index"] == 0  # position in the file
    # one edge per tensor between nodes, keyed by the tensor name
    assert sorted(G.edges(keys=True)) == [("conv", "relu", "c"), ("flat", "dense", "f"), ("relu", "flat", "r")]
    assert G.graph["producer"]["r"] == "relu" and G.graph["consumers"]["x"] == ["conv"]
    assert G.graph["inputs"] == ["x"] and G.graph["outputs"] == ["y"]
    assert G.graph["batch_axes"] == {"x": 0} and G.graph["time_axes"] == {"x": None}
    assert G.graph["time_fallback"] is True
    # the caller's proto is not modified
    assert [n.name for n in model.graph.node] == ["dense", "flat", "relu", "conv"]


def test_load_reads_metadata_axes_and_states():
    nodes = [helper.make_node("SpikingActivation", ["x", "v"], ["s"], name="sa", domain="spikeonnx", dt=0.001)]
    meta = {"spikeonnx.time_axes": {"x": 1}, "spikeonnx.initial_state": {"v": {"kind": "zeros"}}}
    model = _model(nodes, [_vi("x", ["B", "T", 3]), _vi("v", ["B", 3])], [_vi("s", ["B", "T", 3])], metadata=meta)
    G = passes.load(model, batch_axis=0, time_axis=None)
    assert G.graph["time_axes"] == {"x": 1, "v": None}  # the metadata wins over the argument
    assert G.graph["time_fallback"] is False
    assert G.graph["state_inputs"] == ["v"]
    assert G.graph["parameter_inputs"] == set()
    assert G.nodes["sa"]["domain"] == "spikeonnx"
    with pytest.raises(ValueError, match="time_axis=-4 is out of range for graph input 'x'"):
        passes.load(model, time_axis={"x": -4})


# -- 2. shapes -------------------------------------------------------------------------


def test_infer_shapes_marks_batch_and_time():
    model, *_ = conv_dense_model()
    G = passes.load(model)
    assert "tensors" not in G.graph and "inputs" not in G.nodes["conv"]
    passes.infer_shapes(G)
    # one sample: a dynamic batch axis has size 1 for shape inference
    assert G.nodes["conv"]["inputs"][0].shape == (1, 3, 8, 10)
    passes.propagate_axes(G)
    assert G.graph["marks"]["x"] == (AxisMark(0, 1), None)
    assert G.graph["marks"]["f"] == (AxisMark(0, 1), None)  # through Conv, Relu and Flatten
    conv_in, weight, bias = G.nodes["conv"]["inputs"]
    assert conv_in.shape == (stats.BATCH, 3, 8, 10) and conv_in.is_float
    assert weight.shape == (4, 3, 3, 3) and bias.shape == (4,)
    # Conv output: floor((size + 2*pad - kernel) / stride) + 1
    assert G.nodes["conv"]["outputs"][0].shape == (stats.BATCH, 4, (8 + 2 - 3) // 2 + 1, (10 + 2 - 3) // 2 + 1)
    assert G.graph["tensors"]["f"].shape == (stats.BATCH, 4 * 4 * 5)

    timed = passes.load(model, time_axis=1)  # (N, C, H, W) read as (batch, time, ...)
    passes.infer_shapes(timed)
    passes.propagate_axes(timed)
    assert timed.nodes["conv"]["inputs"][0].shape == (stats.BATCH, stats.TIME, 8, 10)


# -- 3. node stats ---------------------------------------------------------------------


def _counted(model, **kwargs):
    G = passes.load(model, **kwargs)
    passes.infer_shapes(G)
    passes.propagate_axes(G)
    passes.count_nodes(G)
    return G


def test_count_nodes_matches_hand_formulas():
    model, w, _, wd = conv_dense_model()
    G = _counted(model)
    out_h, out_w = (8 + 2 - 3) // 2 + 1, (10 + 2 - 3) // 2 + 1
    # every conv output element sums over a kernel window of all input channels
    assert G.nodes["conv"]["stats"] == {"connections": 4 * out_h * out_w * w[0].size, "neurons": 0, "spiking": True}
    assert G.nodes["relu"]["stats"] == {"connections": 0, "neurons": 4 * out_h * out_w, "spiking": False}
    assert G.nodes["flat"]["stats"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert G.nodes["dense"]["stats"]["connections"] == wd.size
    assert [G.nodes[n]["role"] for n in G.graph["order"]] == ["weighted", "activation", "free", "weighted"]
    assert G.graph["unknown_ops"] == {}


def test_count_nodes_unknown_bookkeeping_and_absorbed():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="rate_fn"),
        helper.make_node("SpikingActivation", ["r"], ["s"], name="sa", domain="spikeonnx", dt=0.001),
        helper.make_node("Mystery", ["s"], ["m"], name="mystery", domain="x.vendor"),
        helper.make_node("Shape", ["x"], ["shp"], name="shape"),
        helper.make_node("IntThing", ["shp"], ["k"], name="ints", domain="x.vendor"),
    ]
    model = _model(nodes, [_vi("x", ["B", "T", 6])], [_vi("m", ["B", "T", 6]), _vi("k", [3], TensorProto.INT64)])
    model.graph.value_info.extend([_vi("m", ["B", "T", 6]), _vi("k", [3], TensorProto.INT64)])
    model.opset_import.append(helper.make_opsetid("x.vendor", 1))
    G = _counted(model)
    # the Relu feeding only the SpikingActivation is its rate function: absorbed
    assert G.nodes["rate_fn"]["absorbed"] is True and G.nodes["rate_fn"]["stats"]["neurons"] == 0
    assert G.nodes["sa"]["stats"] == {"connections": 0, "neurons": 6, "spiking": True}
    # an unknown op on float data is reported; one on integers only is bookkeeping
    assert G.graph["unknown_ops"] == {"x.vendor.Mystery": ["mystery"]}
    assert G.nodes["ints"]["role"] == "other" and G.nodes["ints"]["stats"]["connections"] == 0


def test_clip_role_depends_on_its_bound():
    nodes = [
        helper.make_node("Clip", ["x", "zero", "six"], ["a"], name="relu6"),
        helper.make_node("Clip", ["a", "minus", "six"], ["y"], name="clamp"),
    ]
    inits = [("zero", np.array(0, np.float32)), ("six", np.array(6, np.float32)), ("minus", np.array(-1, np.float32))]
    G = _counted(_model(nodes, [_vi("x", ["N", 7])], [_vi("y", ["N", 7])], inits))
    assert G.nodes["relu6"]["role"] == "activation" and G.nodes["relu6"]["stats"]["neurons"] == 7
    assert G.nodes["clamp"]["role"] == "free" and G.nodes["clamp"]["stats"]["neurons"] == 0


# -- 4. layers -------------------------------------------------------------------------


def test_group_layers_structural():
    model, w, b, wd = conv_dense_model()
    G = _counted(model)
    passes.group_layers(G)
    layers = G.graph["layers"]
    assert [layer.name for layer in layers] == ["x", "conv", "dense"]
    # the conv takes its activation; the Flatten joins the layer it feeds
    assert [G.nodes[n]["layer"] for n in G.graph["order"]] == ["conv", "conv", "dense", "dense"]
    conv, dense = layers[1], layers[2]
    assert conv.nodes == ["conv", "relu"] and dense.nodes == ["flat", "dense"]
    assert conv.params == w.size + b.size and dense.params == wd.size
    assert conv.inputs == ["x"] and dense.inputs == ["r"]
    assert conv.output == "r" and dense.output == "y"
    assert (conv.connections, conv.neurons, conv.spiking) == (
        G.nodes["conv"]["stats"]["connections"], G.nodes["relu"]["stats"]["neurons"], False)


def test_group_layers_by_metadata_names():
    model, *_ = conv_dense_model()
    meta = {"conv": "block", "relu": "block", "dense": "head"}
    model.metadata_props.add(key="spikeonnx.layers", value=json.dumps(meta))
    G = analyze(model)
    assert [layer.name for layer in G.graph["layers"]] == ["x", "block", "head"]
    assert G.nodes["flat"]["layer"] == "head"  # a free node joins the layer it feeds


# -- 5. rates --------------------------------------------------------------------------


def test_rates_of_layer_inputs_match_numpy():
    model, w, b, wd = conv_dense_model()
    graph = AnalysisGraph(model)
    x = RNG.standard_normal((2, 3, 8, 10)).astype(np.float32)
    rates = compute_rates(graph, load_example_data(x, graph))
    # the dense layer's input is relu(conv(x)), computed here with NumPy
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((2, 4, 4, 5))
    for i in range(4):
        for j in range(5):
            window = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", window, w.astype(np.float64)) + b
    relu = np.maximum(out, 0)
    assert rates["x"] == pytest.approx(np.abs(x.astype(np.float64)).mean(), rel=1e-12)
    assert rates["conv"] == rates["x"]
    assert rates["dense"] == pytest.approx(np.abs(relu).mean(), rel=1e-5)


# -- the op registry -------------------------------------------------------------------


def test_op_specs_declare_roles_and_traits_once():
    for key, spec in stats.OPS.items():
        assert spec.role in stats.ROLES, key
        if spec.pass_through or spec.bias or spec.bookkeeping:
            assert spec.role == "free", key
    assert stats.op_spec("", "Reshape").pass_through and stats.op_spec("ai.onnx", "Add").bias
    assert stats.op_spec("", "Shape").bookkeeping and stats.op_spec("", "MatMul").role == "weighted"
    assert stats.op_spec("spikeonnx", "SpikingActivation").role == "activation"
    assert stats.op_spec("", "NoSuchOp") is None


def test_register_op_overwrite_policy():
    with stats.OPS.saved():
        @stats.register_op("t.test", "Op", role="weighted")
        def first(node):
            return {"connections": 1}

        with pytest.warns(UserWarning, match="op 't.test.Op' already registered; overwriting"):
            stats.register_op("t.test", "Op")(first)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stats.register_op("t.test", "Op", role="free", replace=True)(first)
        assert stats.op_spec("t.test", "Op").role == "free"
        with pytest.raises(ValueError, match="op role must be one of"):
            stats.register_op("t.test", "Other", role="bias")(first)
    assert stats.op_spec("t.test", "Op") is None  # saved() restored the table


def test_symbolic_shape_fallback_writes_nothing_to_the_working_directory(tmp_path, monkeypatch):
    """onnxruntime's SymbolicShapeInference.infer_shapes saves 'sym_shape_infer_temp.onnx'
    into the working directory when it cannot finish; the analyzer must not."""
    monkeypatch.chdir(tmp_path)
    # an op of an unknown domain leaves its output unresolved
    node = helper.make_node("Mystery", ["x"], ["y"], domain="example.unknown")
    relu = helper.make_node("Relu", ["y"], ["z"])
    graph = helper.make_graph(
        [node, relu], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.unknown", 1)]
    )
    result = passes._ort_inference(model)
    assert result is None or result.graph.node
    assert list(tmp_path.iterdir()) == []
