"""The exporter's ONNX post-processing passes, on hand-built graphs, without TensorFlow.

Each pass of :mod:`spikeonnx.exporter.passes` gets a small graph shaped like
tf2onnx's output (TensorFlow tensor names, ``sxl{i}/`` layer scopes, a ``spikeonnx``
node under a tf2onnx name) and is checked against what the test expects. A
subprocess checks that none of this imports TensorFlow.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from spikeonnx.contract import DOMAIN, MAX_IR_VERSION, OPSET_VERSION
from spikeonnx.exporter import ExportError, passes
from spikeonnx.exporter.passes import SpikingNode
from spikeonnx.reference import REFERENCE_OPS

DT = 0.01
TAU = np.array([[0.02, 0.05, 0.1]], np.float32)


class Layer:
    """Stands in for a Keras layer: the passes only read its name and class."""

    def __init__(self, name):
        self.name = name


class Dense(Layer):
    pass


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def tf2onnx_like(ir_version=14, with_spiking=True, extra_nodes=()):
    """Relu -> Lowpass (under a tf2onnx name) -> Identity, with TensorFlow tensor names."""
    nodes = [helper.make_node("Relu", ["serving_input:0"], ["sxl1/relu/Relu:0"], name="sxl1/relu/Relu")]
    out = "sxl1/relu/Relu:0"
    inits = []
    if with_spiking:
        nodes.append(
            helper.make_node(
                "Lowpass",
                ["sxl1/relu/Relu:0", "tau_const", "level_const"],
                ["sxl2/PyFunc:0", "sxl2/PyFunc:1"],
                name="sxl2/PyFunc",
                domain=DOMAIN,
                dt=DT,
                time_major=0,
            )
        )
        inits = [
            helper.make_tensor("tau_const", TensorProto.FLOAT, [1, 3], TAU.ravel().tolist()),
            helper.make_tensor("level_const", TensorProto.FLOAT, [1, 3], [0.0, 0.0, 0.0]),
        ]
        out = "sxl2/PyFunc:0"
    nodes.append(helper.make_node("Identity", [out], ["Identity:0"], name="Identity"))
    nodes.extend(extra_nodes)
    outputs = [_vi("Identity:0", [-1, -1, 3])]
    if with_spiking:
        nodes.append(helper.make_node("Identity", ["sxl2/PyFunc:1"], ["Identity_1:0"], name="Identity_1"))
        outputs.append(_vi("Identity_1:0", [-1, 3]))
    graph = helper.make_graph(nodes, "tf2onnx", [_vi("serving_input:0", [None, None, 3])], outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, OPSET_VERSION)]
    )
    model.ir_version = ir_version
    return model


LOWPASS = SpikingNode(
    op_type="Lowpass",
    node_name="lp",
    layer_name="lp",
    attrs={"dt": DT, "time_major": 0},
    output_shapes=[(None, None, 3), (None, 3)],
)


def _dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _finish(model):
    """The passes in the order export() runs them."""
    passes.raise_on_unsupported(model, {1: Layer("relu"), 2: Layer("lp")})
    passes.name_spiking_nodes(model, {"sxl2/PyFunc": LOWPASS})
    passes.rename_io(model, ["x"], ["y", "lp/state_out"])
    passes.name_dynamic_dims(model, {"x": (0, 1), "y": (0, 1), "lp/state_out": (0, None)}, [(None, None, 3), (None, 3)])
    passes.fix_opsets_and_ir(model)
    return model


def test_scope_index():
    assert passes.scope_index("sxl3/dense/MatMul") == 3
    assert passes.scope_index("sxl12_1/inner/sxl4/Relu") == 12  # the outermost scope
    assert passes.scope_index("foo/sxl7/Relu") == 7
    assert passes.scope_index("Identity") is None
    assert passes.scope_index("sxlx/Relu") is None


def test_unsupported_ops_name_the_layer_and_class():
    bad = helper.make_node("Igamma", ["sxl1/relu/Relu:0", "sxl1/relu/Relu:0"], ["g"], name="sxl3/odd/Igamma")
    stray = helper.make_node("PyFunc", ["g"], ["h"], name="PyFunc_outside")
    model = tf2onnx_like(extra_nodes=[bad, stray])
    with pytest.raises(ExportError) as info:
        passes.raise_on_unsupported(model, {1: Layer("relu"), 3: Dense("odd_one")})
    message = str(info.value)
    assert "layer 'odd_one' of class Dense" in message
    assert "(Igamma)" in message
    assert "spikeonnx.register_export_handler(Dense, handler)" in message
    assert "TensorFlow ops tf2onnx cannot convert: ['PyFunc']" in message
    # a clean graph (standard ops and our domain) passes
    passes.raise_on_unsupported(tf2onnx_like(), {})


def test_unsupported_ops_inside_subgraphs_are_found():
    body = helper.make_graph(
        [helper.make_node("Igamma", ["a", "a"], ["b"], name="sxl1/odd/Igamma")], "body", [], [_vi("b", [1])]
    )
    node = helper.make_node("If", ["cond"], ["b"], name="if", then_branch=body, else_branch=body)
    model = tf2onnx_like(extra_nodes=[node])
    with pytest.raises(ExportError, match="'odd' of class Layer uses TensorFlow ops"):
        passes.raise_on_unsupported(model, {1: Layer("odd")})


def test_spiking_nodes_get_their_names_and_declared_shapes():
    model = tf2onnx_like()
    passes.name_spiking_nodes(model, {"sxl2/PyFunc": LOWPASS, "not/in/graph": LOWPASS})
    (node,) = [n for n in model.graph.node if n.domain == DOMAIN]
    assert node.name == "lp"
    infos = {v.name: v for v in model.graph.value_info}
    # main input and sequence output share their named dimensions; the state is batch-first
    assert _dims(infos["sxl1/relu/Relu:0"]) == ["batch", "lp_seq_dim1", 3]
    assert _dims(infos["sxl2/PyFunc:0"]) == ["batch", "lp_seq_dim1", 3]
    assert _dims(infos["sxl2/PyFunc:1"]) == ["batch", 3]
    assert all(infos[n].type.tensor_type.elem_type == TensorProto.FLOAT for n in infos)


def test_time_major_node_names_axis_1_batch():
    model = tf2onnx_like()
    spec = SpikingNode("Lowpass", "lp", "lp", {"dt": DT, "time_major": 1}, [(None, None, 3), (None, 3)])
    passes.name_spiking_nodes(model, {"sxl2/PyFunc": spec})
    infos = {v.name: v for v in model.graph.value_info}
    assert _dims(infos["sxl2/PyFunc:0"]) == ["lp_seq_dim0", "batch", 3]
    assert _dims(infos["sxl2/PyFunc:1"]) == ["batch", 3]


def test_rename_io_renames_every_use():
    model = tf2onnx_like()
    passes.rename_io(model, ["x"], ["y", "lp/state_out"])
    assert [v.name for v in model.graph.input] == ["x"]
    assert [v.name for v in model.graph.output] == ["y", "lp/state_out"]
    assert model.graph.node[0].input[0] == "x"
    produced = {o for n in model.graph.node for o in n.output}
    assert {"y", "lp/state_out"} <= produced
    assert "Identity:0" not in produced


def test_rename_io_rejects_count_mismatch_and_clashes():
    with pytest.raises(ExportError, match="1 inputs / 2 outputs, expected 2 / 2"):
        passes.rename_io(tf2onnx_like(), ["a", "b"], ["y", "s"])
    with pytest.raises(ExportError, match="clash"):
        passes.rename_io(tf2onnx_like(), ["sxl2/PyFunc:0"], ["y", "s"])


def test_name_dynamic_dims():
    model = tf2onnx_like()
    passes.rename_io(model, ["x"], ["y", "s"])
    passes.name_dynamic_dims(model, {"x": (0, 1), "y": (0, 1), "s": (0, None)}, [(None, None, 3), (None, 3)])
    assert _dims(model.graph.input[0]) == ["batch", "time", 3]
    assert _dims(model.graph.output[0]) == ["batch", "time", 3]
    assert _dims(model.graph.output[1]) == ["batch", 3]
    # an axis without a role keeps a name of its own
    model = tf2onnx_like()
    passes.rename_io(model, ["x"], ["y", "s"])
    passes.name_dynamic_dims(model, {"y": (None, None)}, [(None, 5, 3), (None, 3)])
    assert _dims(model.graph.output[0]) == ["y_dim0", 5, 3]


@pytest.mark.parametrize("with_spiking", [True, False])
@pytest.mark.parametrize("ir_version", [7, 14])
def test_fix_opsets_and_ir(with_spiking, ir_version):
    model = tf2onnx_like(ir_version=ir_version, with_spiking=with_spiking)
    passes.fix_opsets_and_ir(model)
    assert model.ir_version == min(ir_version, MAX_IR_VERSION)
    domains = {o.domain for o in model.opset_import}
    assert (DOMAIN in domains) == with_spiking
    assert "" in domains


def test_attribute_nodes():
    model = tf2onnx_like()
    passes.name_spiking_nodes(model, {"sxl2/PyFunc": LOWPASS})
    outer = Layer("block")  # the spiking node sits inside nested model "block"
    layers = passes.attribute_nodes(model, {"lp": "block"}, {0: Layer("input"), 1: Layer("relu"), 2: outer})
    assert layers == {"sxl1/relu/Relu": "relu", "lp": "block"}  # Identity nodes belong to no layer


def test_finished_model_checks_and_computes_what_the_graph_says():
    model = _finish(tf2onnx_like())
    passes.check_model(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 3)).astype(np.float32)
    y, state = ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, {"x": x})
    # independent lowpass: y_t = (1 - a) relu(x_t) + a y_{t-1}, y_{-1} = 0
    expected = np.zeros((2, 5, 3))
    for b in range(2):
        for k in range(3):
            a = math.exp(-DT / float(TAU[0, k]))
            level = 0.0
            for t in range(5):
                level = (1 - a) * max(float(x[b, t, k]), 0.0) + a * level
                expected[b, t, k] = level
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state, expected[:, -1], rtol=1e-5, atol=1e-7)


def test_check_model_reports_a_bad_node():
    model = _finish(tf2onnx_like())
    for node in model.graph.node:
        if node.domain == DOMAIN:
            del node.attribute[:]  # dt is required
    with pytest.raises(ExportError, match="does not pass the ONNX checker"):
        passes.check_model(model)


def test_passes_and_exporter_import_without_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        import spikeonnx
        from onnx import helper
        from spikeonnx.exporter import export, passes, registered_handlers
        assert callable(export) and callable(spikeonnx.export)
        assert callable(spikeonnx.ops.library_path)  # a lazy subpackage
        passes.check_model(helper.make_model(helper.make_graph([], "empty", [], [])))
        assert registered_handlers() == {}  # built-ins need Keras, which is not loaded
        heavy = sorted(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _sequence_dense_model(*, relu=True, bias_shape=(5,), extra_output=None, weight_input=False):
    """tf2onnx's Dense on (B, T, 4): dynamic shape back, Reshape, MatMul, Reshape, Add [, Relu], Neg."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal(bias_shape).astype(np.float32)
    nodes = [
        # the reshape back's shape comes after the MatMul here, as the pass must order it
        helper.make_node("Reshape", ["x", "flat"], ["sxl0/d/Reshape:0"], name="sxl0/d/Reshape"),
        helper.make_node("MatMul", ["sxl0/d/Reshape:0", "w"], ["sxl0/d/MatMul:0"], name="sxl0/d/MatMul"),
        helper.make_node("Shape", ["x"], ["sxl0/d/Shape:0"], name="sxl0/d/Shape"),
        helper.make_node("Slice", ["sxl0/d/Shape:0", "zero", "two"], ["sxl0/d/free:0"], name="sxl0/d/free"),
        helper.make_node("Concat", ["sxl0/d/free:0", "five"], ["sxl0/d/back:0"], name="sxl0/d/back", axis=0),
        helper.make_node("Reshape", ["sxl0/d/MatMul:0", "sxl0/d/back:0"], ["sxl0/d/Tensordot:0"], name="sxl0/d/Tensordot"),
        helper.make_node("Add", ["sxl0/d/Tensordot:0", "b"], ["sxl0/d/BiasAdd:0"], name="sxl0/d/BiasAdd"),
    ]
    last = "sxl0/d/BiasAdd:0"
    if relu:
        nodes.append(helper.make_node("Relu", [last], ["sxl1/a/Relu:0"], name="sxl1/a/Relu"))
        last = "sxl1/a/Relu:0"
    nodes.append(helper.make_node("Neg", [last], ["y"], name="sxl2/n/Neg"))
    inits = [helper.make_tensor("flat", TensorProto.INT64, [2], [-1, 4]),
             helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
             helper.make_tensor("two", TensorProto.INT64, [1], [2]),
             helper.make_tensor("five", TensorProto.INT64, [1], [5]),
             helper.make_tensor("b", TensorProto.FLOAT, list(bias_shape), b.ravel().tolist())]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 4])]
    if weight_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 5]))
    else:
        inits.append(helper.make_tensor("w", TensorProto.FLOAT, [4, 5], w.ravel().tolist()))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", 5])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits,
                              value_info=[helper.make_tensor_value_info("sxl0/d/BiasAdd:0", TensorProto.FLOAT,
                                                                        ["B", "T", 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = MAX_IR_VERSION
    return model, w, b


@pytest.mark.parametrize("relu", [True, False])
def test_fuse_sequence_dense_gives_the_same_values(relu):
    import onnxruntime as ort

    model, w, b = _sequence_dense_model(relu=relu)
    x = np.random.default_rng(1).standard_normal((3, 7, 4)).astype(np.float32)
    before = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert passes.fuse_sequence_dense(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "MatMul" not in ops and "Add" not in ops and ops.count("Gemm") == 1
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert gemm.name == "sxl0/d/MatMul" and list(gemm.input) == ["sxl0/d/Reshape:0", "w", "b"]
    back = next(n for n in model.graph.node if n.name == "sxl0/d/Tensordot")
    if relu:  # the Relu runs on the Gemm's rows, before the reshape back
        relu_node = next(n for n in model.graph.node if n.op_type == "Relu")
        assert list(relu_node.input) == list(gemm.output) and back.input[0] == relu_node.output[0]
        assert back.output[0] == "sxl1/a/Relu:0"
        assert not any(v.name == "sxl0/d/BiasAdd:0" for v in model.graph.value_info)
    else:
        assert back.input[0] == gemm.output[0] and back.output[0] == "sxl0/d/BiasAdd:0"
    passes.check_model(model)
    after = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)
    dense = x.reshape(-1, 4).astype(np.float64) @ w + b
    expected = -(np.maximum(dense, 0) if relu else dense)
    np.testing.assert_allclose(after, expected.reshape(3, 7, 5), rtol=1e-5, atol=1e-5)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["bias (1, 5)", "product is a graph output", "sequence is a graph output",
                                  "weight is an input"])
def test_fuse_sequence_dense_leaves_other_graphs_alone(case):
    model, _, _ = _sequence_dense_model(
        bias_shape=(1, 5) if case == "bias (1, 5)" else (5,),
        extra_output={"product is a graph output": "sxl0/d/MatMul:0",
                      "sequence is a graph output": "sxl0/d/Tensordot:0"}.get(case),
        weight_input=case == "weight is an input",
    )
    before = model.SerializeToString()
    assert passes.fuse_sequence_dense(model) == 0
    assert model.SerializeToString() == before
