"""GraphEnergy on graphs not made by our exporter: PyTorch, and onnx.helper by hand.

Expected counts come from hand formulas on the layers' hyperparameters, with the
output sizes taken from actually running the graphs (onnxruntime or PyTorch), so
they do not depend on the analyzer's own shape reasoning.
"""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx import devices as dev
from spikeonnx.analysis import GraphEnergy

RNG = np.random.default_rng(99)


def _conv_out(size, k, s=1, p=(0, 0), d=1):
    """Output length of a convolution along one axis (the textbook formula)."""
    return (size + p[0] + p[1] - d * (k - 1) - 1) // s + 1


# ------------------------------------------------------------------------------------
# PyTorch
# ------------------------------------------------------------------------------------
def _torch_net():
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=2)
            self.c3 = torch.nn.Conv2d(12, 12, 3, padding=2, dilation=2, groups=12)
            self.fc = torch.nn.Linear(12 * 4 * 4, 10)

        def forward(self, x):
            x = torch.relu(self.c1(x))
            x = torch.nn.functional.max_pool2d(x, 2)
            x = torch.sigmoid(self.c2(x))
            x = torch.nn.functional.leaky_relu(self.c3(x), 0.1)
            return self.fc(torch.flatten(x, 1))

        def intermediates(self, x):
            a = x
            b = torch.nn.functional.max_pool2d(torch.relu(self.c1(a)), 2)
            c = torch.sigmoid(self.c2(b))
            d = torch.flatten(torch.nn.functional.leaky_relu(self.c3(c), 0.1), 1)
            return a, b, c, d

    torch.manual_seed(0)
    return Net().eval()


def test_pytorch_convnet():
    import torch

    net = _torch_net()
    x = RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net, torch.from_numpy(x), buf, dynamo=False, input_names=["image"],
                          output_names=["logits"], opset_version=17)
    model = onnx.load_from_string(buf.getvalue())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every op of the model has a spec: no warning
        energy = GraphEnergy(model, x)
    stats = energy.layer_stats
    convs = [name for name in energy.layer_names if name.endswith("Conv")]
    assert convs == ["/c1/Conv", "/c2/Conv", "/c3/Conv"]

    h1 = _conv_out(16, 3, p=(1, 1))                    # 16, then pooled to 8
    h2 = _conv_out(h1 // 2, 3, s=2, p=(1, 1))          # 4
    h3 = _conv_out(h2, 3, p=(2, 2), d=2)               # 4
    assert stats["/c1/Conv"] == {"connections": 8 * h1 * h1 * (3 * 3 * 3), "neurons": 8 * h1 * h1, "spiking": False}
    assert stats["/c2/Conv"] == {"connections": 12 * h2 * h2 * (8 // 2 * 3 * 3), "neurons": 12 * h2 * h2,
                                 "spiking": False}
    assert stats["/c3/Conv"] == {"connections": 12 * h3 * h3 * (1 * 3 * 3), "neurons": 12 * h3 * h3,
                                 "spiking": False}
    assert stats["/fc/Gemm"] == {"connections": 12 * h3 * h3 * 10, "neurons": 0, "spiking": True}
    assert stats["/MaxPool"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert energy.graph.layer("/c1/Conv").params == 8 * 3 * 3 * 3 + 8

    # rates: the mean magnitude of what enters each layer, computed by PyTorch
    with torch.no_grad():
        a, b, c, d = (t.numpy().astype(np.float64) for t in net.intermediates(torch.from_numpy(x)))
    assert energy.layer_rates["/c1/Conv"] == pytest.approx(np.abs(a).mean(), rel=1e-12)
    assert energy.layer_rates["/c2/Conv"] == pytest.approx(np.abs(b).mean(), rel=1e-5)
    assert energy.layer_rates["/c3/Conv"] == pytest.approx(np.abs(c).mean(), rel=1e-5)
    assert energy.layer_rates["/fc/Gemm"] == pytest.approx(np.abs(d).mean(), rel=1e-5)

    # energy on a spiking device, layer by layer, from the formulas
    d_spin = dev.get_device("spinnaker2")
    steps, dt = 4, 0.005
    expected_total = 0.0
    for name, rate in (("/c1/Conv", a), ("/c2/Conv", b), ("/c3/Conv", c), ("/fc/Gemm", d)):
        synop, neuron = energy.layer_energy(name, "spinnaker2", steps, dt)
        want_synop = d_spin.energy_per_synop * stats[name]["connections"] * np.abs(rate).mean() * dt * steps
        assert synop == pytest.approx(want_synop, rel=1e-5)
        assert neuron == pytest.approx(d_spin.energy_per_neuron * stats[name]["neurons"] * steps, rel=1e-15)
        expected_total += want_synop + d_spin.energy_per_neuron * stats[name]["neurons"] * steps
    assert energy.total_energy("spinnaker2", steps, dt) == pytest.approx(expected_total, rel=1e-5)


# ------------------------------------------------------------------------------------
# onnx.helper graphs
# ------------------------------------------------------------------------------------
def _model(nodes, inputs, outputs, inits, extra_domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in extra_domains]
    )
    model.ir_version = 10
    return model


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _run_shape(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0].shape


CONV_CASES = {
    # name: (input shape, weight shape, attributes)
    "groups_dilations_pads_strides": ((2, 4, 11, 9), (6, 2, 3, 2),
                                      dict(group=2, dilations=[2, 1], pads=[1, 0, 2, 1], strides=[2, 1])),
    "same_upper_stride": ((2, 6, 5, 9), (4, 6, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "same_lower_depthwise": ((1, 5, 7, 6), (5, 1, 2, 3), dict(auto_pad="SAME_LOWER", group=5)),
    "valid_1d": ((3, 3, 20), (7, 3, 4), dict(auto_pad="VALID", strides=[3])),
    "conv3d": ((2, 2, 4, 5, 6), (3, 2, 2, 2, 3), dict(pads=[1, 0, 0, 0, 1, 1])),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_variants(case):
    x_shape, w_shape, attrs = CONV_CASES[case]
    w = RNG.standard_normal(w_shape).astype(np.float32)
    model = _model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv", **attrs)],
                   [_vi("x", ["N", *x_shape[1:]])], [_vi("y", None)], [("W", w)])
    x = RNG.standard_normal(x_shape).astype(np.float32)
    y_shape = _run_shape(model, {"x": x})
    energy = GraphEnergy(model)
    # every output element: kernel volume x input channels per group
    expected = int(np.prod(y_shape[1:])) * int(np.prod(w_shape[1:]))
    assert energy.layer_stats["conv"]["connections"] == expected
    assert energy.layer_stats["conv"]["neurons"] == 0
    # the analyzer's own output-size computation, used when shape inference leaves
    # the output open, must agree with onnxruntime too
    from spikeonnx.analysis import TensorInfo
    from spikeonnx.analysis.stats import get_op_stats

    node = energy.graph.op_node("conv")
    node.outputs = [TensorInfo("y", None)]
    assert get_op_stats(node)["connections"] == expected


def test_conv_transpose():
    w = RNG.standard_normal((4, 3, 2, 3)).astype(np.float32)  # (C_in, C_out/group, kH, kW)
    model = _model([helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="deconv", strides=[2, 2],
                                     pads=[0, 1, 0, 1])],
                   [_vi("x", ["N", 4, 3, 5])], [_vi("y", None)], [("W", w)])
    energy = GraphEnergy(model)
    # every input element feeds C_out x kernel outputs
    assert energy.layer_stats["deconv"]["connections"] == (4 * 3 * 5) * (3 * 2 * 3)


def test_gemm_matmul3d_and_unknown_op():
    w_gemm = RNG.standard_normal((30, 20)).astype(np.float32)   # transB: (N, K)
    c_gemm = RNG.standard_normal(30).astype(np.float32)
    w_mm = RNG.standard_normal((6, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["a", "Wg", "Cg"], ["g"], name="gemm", transB=1, alpha=0.5),
        helper.make_node("Tanh", ["g"], ["gt"], name="gemm_tanh"),
        helper.make_node("MatMul", ["seq", "Wm"], ["m"], name="matmul3d"),
        helper.make_node("Elu", ["m"], ["me"], name="elu"),
        helper.make_node("Mystery", ["me"], ["out"], name="mystery1", domain="x.vendor"),
        helper.make_node("Mystery", ["gt"], ["out2"], name="mystery2", domain="x.vendor"),
    ]
    model = _model(nodes, [_vi("a", ["N", 20]), _vi("seq", ["N", 5, 6])],
                   [_vi("out", ["N", 5, 4]), _vi("out2", ["N", 30])],
                   [("Wg", w_gemm), ("Cg", c_gemm), ("Wm", w_mm)], extra_domains=["x.vendor"])
    with pytest.warns(UserWarning, match=r"x.vendor.Mystery.*2 node") as rec:
        energy = GraphEnergy(model)
    assert sum("Mystery" in str(w.message) for w in rec) == 1
    stats = energy.layer_stats
    assert stats["gemm"] == {"connections": 20 * 30, "neurons": 30, "spiking": False}
    # a fixed axis between batch and features is positions: 5 x (6 -> 4)
    assert stats["matmul3d"] == {"connections": 5 * 6 * 4, "neurons": 5 * 4, "spiking": False}
    assert stats["mystery1"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert stats["mystery2"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert energy.total_energy("cpu") == pytest.approx(8.6e-9 * (600 + 30 + 120 + 20), rel=1e-12)
    # the same graph with a symbolic time axis: per-timestep counts
    model.graph.input[1].type.tensor_type.shape.dim[1].dim_param = "T"
    with pytest.warns(UserWarning, match="Mystery"):
        timed = GraphEnergy(model)
    assert timed.layer_stats["matmul3d"] == {"connections": 6 * 4, "neurons": 4, "spiking": False}


def test_batch_fixed_above_one_is_not_counted():
    w = RNG.standard_normal((3, 2, 1, 1)).astype(np.float32)
    model = _model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
                    helper.make_node("Relu", ["y"], ["z"], name="relu")],
                   [_vi("x", [8, 2, 5, 5])], [_vi("z", [8, 3, 5, 5])], [("W", w)])
    energy = GraphEnergy(model)
    assert energy.layer_stats["conv"] == {"connections": 3 * 5 * 5 * 2, "neurons": 3 * 5 * 5, "spiking": False}


def test_matmul_behind_reshape_counts_positions():
    """tf2onnx's Dense on (batch, positions, features): reshape to (batch*positions,
    features), MatMul, reshape back. The positions count, as in Keras."""
    w = RNG.standard_normal((6, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["x2"], name="dense/Reshape"),
        helper.make_node("MatMul", ["x2", "W"], ["h2"], name="dense/MatMul"),
        helper.make_node("Reshape", ["h2", "back_shape"], ["h"], name="dense/Reshape_1"),
        helper.make_node("Relu", ["h"], ["y"], name="dense/Relu"),
    ]
    inits = [("W", w), ("flat_shape", np.array([-1, 6], np.int64)), ("back_shape", np.array([-1, 10, 4], np.int64))]
    model = _model(nodes, [_vi("x", ["N", 10, 6])], [_vi("y", ["N", 10, 4])], inits)
    x = RNG.standard_normal((3, 10, 6)).astype(np.float32)
    energy = GraphEnergy(model, x)
    assert energy.layer_names == ["x", "dense/MatMul"]
    assert energy.layer_stats["dense/MatMul"] == {"connections": 10 * 6 * 4, "neurons": 10 * 4, "spiking": False}
    assert energy.layer_rates["dense/MatMul"] == pytest.approx(np.abs(x.astype(np.float64)).mean(), rel=1e-12)
    # with the axis declared as time, everything is per timestep
    timed = GraphEnergy(model, time_axis=1)
    assert timed.layer_stats["dense/MatMul"]["connections"] == 6 * 4


# ------------------------------------------------------------------------------------
# op coverage beyond the basics: hand formulas on onnx.helper graphs
# ------------------------------------------------------------------------------------
def test_integer_arithmetic_on_constants_is_a_layer():
    nodes = [helper.make_node("Mod", ["a", "b"], ["c"], name="mod"),
             helper.make_node("Reshape", ["x", "c"], ["y"], name="reshape"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    inits = [("a", np.array([-1, 9], np.int64)), ("b", np.array([-10, 5], np.int64))]
    model = _model(nodes, [_vi("x", ["N", 8])], [_vi("z", None)], inits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = GraphEnergy(model)
    assert energy.layer_names == ["x", "mod", "relu"]
    assert energy.layer_stats["mod"] == {"connections": 0, "neurons": 0, "spiking": True}
    # (-1 mod -10, 9 mod 5) = (-1, 4): the Mod was evaluated to shape the Reshape
    assert energy.graph.tensors["y"].shape == (2, 4)  # for one sample
    assert energy.layer_stats["relu"]["neurons"] == 8


def _reshape_by_input(value_info=()):
    """x (N, 12) reshaped by a shape given as graph input, then MatMul (4 -> 5):
    nothing in the graph says what the reshape gives."""
    w = RNG.standard_normal((4, 5)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "W"], ["y"], name="dense")]
    model = _model(nodes, [_vi("x", ["N", 12]), helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
                   [_vi("y", None)], [("W", w)])
    model.graph.value_info.extend(value_info)
    return model


def test_shapes_from_value_info_then_from_a_run():
    from spikeonnx.analysis import ShapeResolutionError

    axes = {"x": 0, "s": None}
    with pytest.raises(ShapeResolutionError, match="dense"):
        GraphEnergy(_reshape_by_input(), batch_axis=axes)
    # the shapes the file declares (for any batch size N)
    declared = _reshape_by_input([_vi("r", ["N", 3, 4])])
    energy = GraphEnergy(declared, batch_axis=axes)
    assert energy.layer_stats["dense"]["connections"] == 3 * 4 * 5
    assert "value_info" in energy.graph.graph.graph["shape_sources"]
    # the shapes a run on one sample of the example data shows
    x = RNG.standard_normal((5, 12)).astype(np.float32)
    s = np.array([1, 3, 4], np.int64)
    energy = GraphEnergy(_reshape_by_input(), {"x": x, "s": s}, batch_axis=axes)
    assert energy.graph.graph.graph["shape_sources"][-1] == "run"
    assert energy.layer_stats["dense"]["connections"] == 3 * 4 * 5
    assert energy.layer_rates["dense"] == pytest.approx(np.abs(x.astype(np.float64)).mean(), rel=1e-12)


def _ms_model(nodes, inputs, outputs, inits, value_info):
    model = _model(nodes, inputs, outputs, inits, extra_domains=["com.microsoft"])
    model.graph.value_info.extend(value_info)
    return model


def test_fused_attention_ops():
    s, d, heads = 6, 8, 2
    w = RNG.standard_normal((d, 3 * d)).astype(np.float32)
    b = RNG.standard_normal(3 * d).astype(np.float32)
    nodes = [helper.make_node("Attention", ["x", "W", "B"], ["a"], name="attention", domain="com.microsoft",
                              num_heads=heads),
             helper.make_node("MultiHeadAttention", ["a", "k", "v"], ["m"], name="mha", domain="com.microsoft",
                              num_heads=heads)]
    model = _ms_model(nodes, [_vi("x", ["N", s, d]), _vi("k", ["N", 9, d]), _vi("v", ["N", 9, d])],
                      [_vi("m", ["N", s, d])], [("W", w), ("B", b)], [_vi("a", ["N", s, d])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = GraphEnergy(model)
    # projections s x d x 3d, then Q.K^T and the weighted sum of V over s keys
    assert energy.layer_stats["attention"] == {"connections": s * d * 3 * d + s * s * (d + d),
                                               "neurons": s * heads * s, "spiking": False}
    assert energy.layer_stats["mha"] == {"connections": s * 9 * (d + d), "neurons": s * heads * 9,
                                         "spiking": False}


def test_quantized_ops_and_resize():
    scale, zero = np.array(0.1, np.float32), np.array(0, np.uint8)
    wq = RNG.integers(0, 255, (4, 3, 3, 3)).astype(np.uint8)
    wm = RNG.integers(0, 255, (4 * 6 * 6, 7)).astype(np.uint8)
    nodes = [
        helper.make_node("QLinearConv", ["x", "s", "z", "Wq", "s", "z", "s", "z"], ["c"], name="qconv",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),
        helper.make_node("QLinearMatMul", ["f", "s", "z", "Wm", "s", "z", "s", "z"], ["q"], name="qmatmul"),
        helper.make_node("DequantizeLinear", ["c", "s", "z"], ["cf"], name="dequant"),
        helper.make_node("Resize", ["cf", "", "scales"], ["up"], name="resize", mode="nearest"),
    ]
    inits = [("s", scale), ("z", zero), ("Wq", wq), ("Wm", wm), ("scales", np.array([1, 1, 2, 2], np.float32))]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 3, 6, 6])],
                   [helper.make_tensor_value_info("q", TensorProto.UINT8, None), _vi("up", None)], inits)
    x = RNG.integers(0, 255, (2, 3, 6, 6)).astype(np.uint8)
    feeds = {"x": x}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q_shape, up_shape = (o.shape for o in sess.run(None, feeds))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = GraphEnergy(model)
    stats = energy.layer_stats
    assert stats["qconv"]["connections"] == 4 * 6 * 6 * (3 * 3 * 3)
    assert stats["qmatmul"]["connections"] == int(np.prod(q_shape[1:])) * wm.shape[0]
    assert stats["resize"] == {"connections": 0, "neurons": 0, "spiking": True}
    assert energy.graph.layer("resize").output_shape[1:] == up_shape[1:]


# ------------------------------------------------------------------------------------
# the model's weights are read once
# ------------------------------------------------------------------------------------
def test_weights_stay_in_the_file_and_rates_agree(tmp_path):
    import pickle

    net = _torch_net()
    x = RNG.standard_normal((3, 3, 16, 16)).astype(np.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

        torch.onnx.export(net, torch.from_numpy(x), buf, dynamo=False, input_names=["image"], opset_version=17)
    blob = buf.getvalue()
    path = tmp_path / "net.onnx"
    path.write_bytes(blob)
    from_path = GraphEnergy(path, x)
    source = from_path.graph.graph.graph["source"]
    big = {t.name for t in onnx.load_from_string(blob).graph.initializer if len(t.raw_data) >= 4096}
    assert big and set(source.spans) == big
    # the analysed proto holds no weight data, only where it is in the file
    for init in from_path.graph.model.graph.initializer:
        if init.name in big:
            assert not init.raw_data and init.data_location == onnx.TensorProto.EXTERNAL
            ref = numpy_helper.to_array(next(t for t in onnx.load_from_string(blob).graph.initializer
                                             if t.name == init.name))
            np.testing.assert_array_equal(from_path.graph.constant(init.name), ref)
    for other in (GraphEnergy(blob, x), GraphEnergy(onnx.load_from_string(blob), x)):
        assert other.layer_rates == from_path.layer_rates
        assert other.layer_stats == from_path.layer_stats
    # the analysed graph pickles (Ray actors get it) and runs from its copy
    from spikeonnx.analysis.rates import compute_rates, load_example_data

    copy = pickle.loads(pickle.dumps(from_path.graph))
    assert compute_rates(copy, load_example_data(x, copy)) == from_path.layer_rates
