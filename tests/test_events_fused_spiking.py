"""EventConvSpiking: an ``EventConv`` (``EventConvRelu``) and the ``SpikingActivation`` it
feeds through one ``Reshape``, fused for execution by :func:`spikeonnx.events.fuse_spiking`.

The fused node must give the nodes' spikes bit for bit, on every convolution path, and
the NumPy spiking reference's spikes of the convolution onnxruntime computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx import reference
from spikeonnx.contract import DOMAIN, FUSED_SPIKING_OP, MAX_IR_VERSION, OPSET_VERSION
from spikeonnx.events import fuse, fuse_relu, fuse_spiking
from spikeonnx.ops import library_path
from spikeonnx.runtime import InferenceSession

pytestmark = pytest.mark.needs_ops

_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
DT = 0.01

# (x shape (B T, C, [H,] W), weight shape, Conv attributes)
_CASES = [
    ((12, 3, 9, 9), (16, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((12, 4, 10, 10), (16, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((12, 4, 6, 6), (32, 2, 3, 3), {"group": 2, "pads": [0, 1, 1, 0]}),
    ((12, 4, 11), (16, 4, 3), {"strides": [2], "dilations": [2]}),  # 1-D
]


def _session(model: onnx.ModelProto, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.register_custom_ops_library(library_path())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _chain(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], attrs: dict, shape: List[int], *,
           relu: bool = True, seed: Optional[int] = 3, spiking_extra: Optional[dict] = None,
           outputs: Optional[List[str]] = None, channels_last: bool = False) -> onnx.ModelProto:
    """x -> EventConv -> [Transpose to channels-last] -> [Relu] -> Reshape(shape) ->
    SpikingActivation -> spikes (outputs: ``outputs``, by default the spikes)."""
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    nodes = [helper.make_node("EventConv", inputs, ["conv"], domain=DOMAIN, name="conv", **attrs)]
    rates = "conv"
    if channels_last:
        perm = [0, *range(2, x.ndim), 1]
        nodes.append(helper.make_node("Transpose", ["conv"], ["conv_last"], name="to_last", perm=perm))
        rates = "conv_last"
    if relu:
        nodes.append(helper.make_node("Relu", [rates], ["conv_relu"], name="relu"))
        rates = "conv_relu"
    nodes.append(helper.make_node("Reshape", [rates, "shape"], ["seq"], name="seq_view"))
    sa_attrs = {"dt": DT, **({"seed": seed} if seed is not None else {}), **(spiking_extra or {})}
    nodes.append(helper.make_node("SpikingActivation", ["seq"], ["spikes"], domain=DOMAIN, name="sa", **sa_attrs))
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(shape, np.int64), "shape")]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", _TYPES[x.dtype], list(x.shape))],
        [helper.make_tensor_value_info(o, _TYPES[x.dtype], None) for o in (outputs or ["spikes"])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    return model


def _fused(model: onnx.ModelProto) -> onnx.ModelProto:
    return fuse_spiking(fuse_relu(model))


def _check(x, w, b, attrs, shape, *, relu=True, seed=3, threads=1, channels_last=False):
    """The fused model's spikes equal the nodes' (bitwise) and NumPy's spikes of the
    onnxruntime convolution's output (bitwise)."""
    model = _chain(x, w, b, attrs, shape, relu=relu, seed=seed, outputs=["spikes", "conv"],
                   channels_last=channels_last)
    spikes, conv = _session(model, threads).run(None, {"x": x})
    if channels_last:
        conv = np.moveaxis(conv, 1, -1)
    fused = _fused(_chain(x, w, b, attrs, shape, relu=relu, seed=seed, channels_last=channels_last))
    assert [n.op_type for n in fused.graph.node] == [FUSED_SPIKING_OP]
    got = _session(fused, threads).run(None, {"x": x})[0]
    assert got.dtype == x.dtype and got.shape == spikes.shape
    np.testing.assert_array_equal(got, spikes)
    rates = np.where(conv < 0, 0, conv).astype(conv.dtype) if relu else conv
    # dt as the node holds it: a float32 attribute
    expected, _ = reference.spiking_activation(rates.reshape(spikes.shape), float(np.float32(DT)), seed=seed or 0)
    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero(got) > 0


@pytest.mark.parametrize("path", ["scatter", "gather", "dense", "channels", "auto"])
@pytest.mark.parametrize("density", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("case", range(len(_CASES)))
def test_fused_spiking_equals_the_nodes(case, density, path, monkeypatch):
    """Every path, with and without bias, float32 and float64, with and without the Relu,
    with and without tf2onnx's Transpose to channels-last in between."""
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", path)
    x_shape, w_shape, attrs = _CASES[case]
    rng = np.random.default_rng(case)
    for dtype, relu in ((np.float32, True), (np.float64, False)):
        x = ((rng.random(x_shape) < density) * rng.choice([100.0, -50.0], x_shape)).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        for b in (None, rng.standard_normal(w_shape[0]).astype(dtype)):
            _check(x, w, b, attrs, [3, 4, -1], relu=relu)
            _check(x, w, b, attrs, [3, 4, -1], relu=relu, channels_last=True)


@pytest.mark.parametrize("shape", [[3, 4, 16, 9, 9], [-1, 4, 0, 144], [0, 1, -1], [1, 12, -1], [3, 8, -1],
                                   [2, 6, -1]])
def test_fused_spiking_takes_reshape_rules_and_any_grouping(shape):
    """Reshape's 0 (copy) and -1 (the rest), one step per sequence, one sequence (fewer
    than the cores: the convolution's output first); a step of half an image (3, 8, ...)
    or of an image and a half (2, 6, ...) is computed too (the output first)."""
    rng = np.random.default_rng(5)
    x_shape, w_shape, attrs = _CASES[0]
    x = ((rng.random(x_shape) < 0.2) * 100.0).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    _check(x, w, None, attrs, shape, seed=None)
    _check(x, w, None, attrs, shape, seed=None, channels_last=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_spiking_held_images_threads_and_a_large_output(threads):
    """Images held over steps (each run computed once, then spiked); an output of 4 MiB
    or more (spikes written past the caches); two threads."""
    rng = np.random.default_rng(6)
    frames = ((rng.random((4, 3, 9, 9)) < 0.3) * 100.0).astype(np.float32)
    x = np.repeat(frames, 3, axis=0)  # (12, ...): 3 sequences of 4 steps, images repeated
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    _check(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1], threads=threads)
    _check(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1], threads=threads, channels_last=True)
    x = ((rng.random((32, 8, 32, 32)) < 0.05) * 100.0).astype(np.float32)
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    assert 32 * 32 * 32 * 32 * 4 >= 4 << 20
    bias = rng.standard_normal(32).astype(np.float32)
    _check(x, w, bias, {"pads": [1, 1, 1, 1]}, [4, 8, 32, 32, 32], threads=threads)
    # channels-last: spiked straight from the accumulator rows, the Relu in the streaming loop
    _check(x, w, bias, {"pads": [1, 1, 1, 1]}, [4, 8, 32, 32, 32], threads=threads, channels_last=True)


def test_fused_spiking_streams_rows_of_odd_length():
    """A streamed channels-last output (4 MiB or more) whose steps are an odd number of
    units: the streaming time loop's scalar head and tail take the Relu too."""
    rng = np.random.default_rng(12)
    x = ((rng.random((64, 3, 35, 35)) < 0.05) * 100.0).astype(np.float32)
    w = rng.standard_normal((17, 3, 3, 3)).astype(np.float32)
    assert 64 * 17 * 35 * 35 * 4 >= 4 << 20 and 17 * 35 * 35 % 2 == 1
    _check(x, w, None, {"pads": [1, 1, 1, 1]}, [8, 8, -1], channels_last=True)


def _op_types(model: onnx.ModelProto) -> List[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("change", ["initial voltage", "final voltage", "time major", "reshape output",
                                    "conv output", "allowzero", "other perm"])
def test_fuse_spiking_only_where_the_nodes_allow(change):
    """No fusion when the SpikingActivation has a state input or output or is time-major,
    when a tensor in between is a graph output, when the Reshape has allowzero 1, or a
    Transpose in between is not to channels-last; the model given is never changed."""
    rng = np.random.default_rng(7)
    x = ((rng.random((12, 3, 9, 9)) < 0.2) * 100.0).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    model = _chain(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1],
                   outputs={"reshape output": ["spikes", "seq"], "conv output": ["spikes", "conv"],
                            "final voltage": ["spikes", "v"]}.get(change))
    graph = model.graph
    sa = graph.node[-1]
    if change == "initial voltage":
        sa.input.append("v0")
        graph.input.append(helper.make_tensor_value_info("v0", TensorProto.FLOAT, [3, 16 * 81]))
    elif change == "final voltage":
        sa.output.append("v")
    elif change == "time major":
        sa.attribute.append(helper.make_attribute("time_major", 1))
    elif change == "allowzero":
        graph.node[2].attribute.append(helper.make_attribute("allowzero", 1))
    elif change == "other perm":  # a Transpose that is not tf2onnx's to channels-last
        graph.node.insert(1, helper.make_node("Transpose", ["conv"], ["conv_t"], perm=[0, 1, 3, 2]))
        graph.node[2].input[0] = "conv_t"
    before = model.SerializeToString()
    assert FUSED_SPIKING_OP not in _op_types(_fused(model))
    assert model.SerializeToString() == before
    assert _op_types(_fused(_chain(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1]))) == [FUSED_SPIKING_OP]


def test_fuse_spiking_keeps_a_shape_another_node_reads():
    rng = np.random.default_rng(9)
    x = ((rng.random((12, 3, 9, 9)) < 0.2) * 100.0).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    model = _chain(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1], outputs=["again"])
    model.graph.node.append(helper.make_node("Reshape", ["spikes", "shape"], ["again"], name="again"))
    fused = _fused(model)
    assert _op_types(fused) == [FUSED_SPIKING_OP, "Reshape"] and "shape" in [t.name for t in fused.graph.initializer]
    np.testing.assert_array_equal(_session(fused).run(None, {"x": x})[0], _session(model).run(None, {"x": x})[0])


def _fused_node(x: np.ndarray, w: np.ndarray, shape: Optional[np.ndarray] = None, **attrs) -> onnx.ModelProto:
    """One EventConvSpiking node on x, w and (when given) shape as a fed input "shape"."""
    inputs = ["x", "w", ""] + (["shape"] if shape is not None else [])
    node = helper.make_node(FUSED_SPIKING_OP, inputs, ["y"], domain=DOMAIN, name="fused", **attrs)
    fed = [helper.make_tensor_value_info("shape", helper.np_dtype_to_tensor_dtype(shape.dtype), None)] if (
        shape is not None) else []
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)] + fed,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    return model


def test_fused_spiking_errors_name_the_problem():
    """A shape that does not fit the convolution's output or is not a 1-D int64 tensor, a
    missing shape, relu or channels_last other than 0/1, a time-major node, a bad dt:
    clear errors naming node, input or attribute."""
    x = np.zeros((6, 2, 5, 5), np.float32)
    w = np.ones((4, 2, 3, 3), np.float32)

    def run(shape, **attrs):
        feeds = {"x": x} if shape is None else {"x": x, "shape": shape}
        return _session(_fused_node(x, w, shape, **{"dt": DT, **attrs})).run(None, feeds)[0]

    for shape, match in (([5, 2, -1], "sizes do not divide"), ([2, 3, 4, 5, 5], r"\b600 elements, not 216"),
                         ([2, -1, -1], "more than one -1"), ([2, 3, -2], "negative"),
                         ([2, 3, 0, 0, 0, 0], "a 0 past the output's rank"), ([-1], "at least 2 values")):
        with pytest.raises(Exception, match=f"EventConvSpiking \\(node 'fused'\\): input 'shape'.*{match}"):
            run(np.array(shape, np.int64))
    for shape in (np.array([[2, 3, -1]], np.int64), None):
        with pytest.raises(Exception, match="input 'shape' .* must be a 1-D int64 tensor"):
            run(shape)
    with pytest.raises(Exception, match=r"tensor\(int32\).* input parameter \(shape\).* node \(fused\)"):
        run(np.array([2, 3, -1], np.int32))  # onnxruntime checks the declared int64
    for attrs, match in (({"relu": 2}, "attribute 'relu' must be 0 or 1"),
                         ({"channels_last": -1}, "attribute 'channels_last' must be 0 or 1"),
                         ({"time_major": 1}, "attribute 'time_major' must be 0"), ({"dt": -1.0}, "dt")):
        with pytest.raises(Exception, match=f"fused.*{match}"):
            _session(_fused_node(x, w, np.array([2, 3, -1]), **{"dt": DT, **attrs}))
    assert run(np.array([2, 3, -1])).shape == (2, 3, 4 * 3 * 3)
    assert run(np.array([0, 1, -1]), channels_last=1).shape == (6, 1, 36)


def test_inference_session_runs_the_fused_conv_and_spikes(tmp_path):
    """spikeonnx.InferenceSession hands onnxruntime EventConvSpiking (profiling names it)
    and keeps the model as given; the spikes equal the unfused nodes'."""
    rng = np.random.default_rng(8)
    x = ((rng.random((12, 3, 9, 9)) < 0.2) * 100.0).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    model = _chain(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1])
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = InferenceSession(model, options)
    got = session.run(None, {"x": x})[0]
    ran = {e.get("args", {}).get("op_name") for e in json.loads(Path(session.session.end_profiling()).read_text())}
    assert FUSED_SPIKING_OP in ran and "SpikingActivation" not in ran and "Relu" not in ran
    assert _op_types(session.model) == ["EventConv", "Relu", "Reshape", "SpikingActivation"]
    np.testing.assert_array_equal(got, _session(model).run(None, {"x": x})[0])


def test_keras_conv_export_runs_fused():
    """A Keras spiking CNN as spikeonnx exports it (TimeDistributed Conv2D, tf2onnx's
    Transpose back to channels-last, Reshape, Relu, SpikingActivation) runs its
    convolution and spikes as one EventConvSpiking node, with the unfused nodes' outputs."""
    keras = pytest.importorskip("keras")
    from spikeonnx import export
    from spikeonnx.examples.zoo import build

    keras.utils.set_random_seed(1234)
    case = build("conv_lowpass_readout")
    model = export(case.model, **case.export_kwargs)
    assert _op_types(_fused(model)).count(FUSED_SPIKING_OP) == 1
    feeds = {model.graph.input[0].name: case.x}
    session = InferenceSession(model)
    want = _session(model).run(None, feeds)  # the library's kernels, nodes apart
    for got, expected in zip(session.run(None, feeds), want, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_fuse_spiking_reads_a_file_and_names_a_bad_one(tmp_path):
    """fuse_spiking (and fuse, both passes on one copy) read a path; a missing file or bad
    bytes are named; a Relu that fuse_relu has not yet taken blocks the fusion."""
    rng = np.random.default_rng(10)
    x = ((rng.random((12, 3, 9, 9)) < 0.2) * 100.0).astype(np.float32)
    path = tmp_path / "m.onnx"
    onnx.save(_chain(x, rng.standard_normal((16, 3, 3, 3)).astype(np.float32), None, {}, [3, 4, -1]), str(path))
    assert _op_types(fuse_spiking(path)) == ["EventConv", "Relu", "Reshape", "SpikingActivation"]  # no fuse_relu
    assert _op_types(fuse_spiking(fuse_relu(path))) == [FUSED_SPIKING_OP]
    assert _op_types(fuse(path)) == [FUSED_SPIKING_OP]  # both, on one copy
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        fuse_spiking(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="not an ONNX model"):
        fuse_spiking(b"not a model")


def test_fused_spiking_draws_a_voltage_too_large_to_keep():
    """More than 2^24 seeded states (B * units): the voltage is drawn at every call, in
    pieces, by the fused op as by SpikingActivation; the spikes still equal the nodes'."""
    rng = np.random.default_rng(11)
    side = 730  # 2 sequences x 16 channels x 730 x 730 = 17.1 M states > 2^24
    x = ((rng.random((2, 1, side, side)) < 0.05) * 100.0).astype(np.float32)
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    model = _chain(x, w, None, {"pads": [1, 1, 1, 1]}, [2, 1, -1])
    assert 2 * 16 * side * side > 1 << 24
    got = _session(_fused(model)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, _session(model).run(None, {"x": x})[0])


# Channels-last between fused convolutions (spikeonnx.events.fuse's layout pass): the
# node's input_channels_last and spikes_channels_last attributes, then the pass.


def _with(model: onnx.ModelProto, **attrs) -> onnx.ModelProto:
    """``model`` (one fused node) with ``attrs`` set on the node and no declared input shape."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node[0].attribute.extend([helper.make_attribute(k, v) for k, v in attrs.items()])
    del out.graph.input[0].type.tensor_type.shape.dim[:]
    return out


@pytest.mark.parametrize("path", ["scatter", "gather", "dense", "channels", "auto"])
@pytest.mark.parametrize("density", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("case", range(len(_CASES)))
def test_fused_spiking_reads_and_writes_channels_last(case, density, path, monkeypatch):
    """input_channels_last: x given as (N, [H,] W, C), the spikes are the channels-first
    node's; spikes_channels_last: the same spikes, laid out (B, T, [H,] W, M) (the units
    keep their numbers, so their seeded voltages). Every path (the one-group gather reads
    the channels-last image as it is, the others transpose it), both dtypes, with and
    without bias and Relu, bit for bit."""
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", path)
    x_shape, w_shape, attrs = _CASES[case]
    rng = np.random.default_rng(20 + case)
    for dtype, relu in ((np.float32, True), (np.float64, False)):
        x = ((rng.random(x_shape) < density) * rng.choice([100.0, -50.0], x_shape)).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        for b in (None, rng.standard_normal(w_shape[0]).astype(dtype)):
            conv = _session(_chain(x, w, b, attrs, [3, 4, -1], relu=relu, outputs=["conv"])).run(None, {"x": x})[0]
            view = [3, 4, *conv.shape[1:]]  # (B, T, M, [H,] W)
            fused = _fused(_chain(x, w, b, attrs, view, relu=relu))
            want = _session(fused).run(None, {"x": x})[0]
            x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
            got = _session(_with(fused, input_channels_last=1)).run(None, {"x": x_last})[0]
            np.testing.assert_array_equal(got, want)
            got = _session(_with(fused, spikes_channels_last=1)).run(None, {"x": x})[0]
            assert got.shape == (3, 4, *conv.shape[2:], conv.shape[1])
            np.testing.assert_array_equal(got, np.moveaxis(want, 2, -1))
            got = _session(_with(fused, spikes_channels_last=1, input_channels_last=1)).run(None, {"x": x_last})[0]
            np.testing.assert_array_equal(got, np.moveaxis(want, 2, -1))


@pytest.mark.parametrize("channels", [49, 103])
def test_fused_spiking_gathers_channels_last_of_any_width(channels, monkeypatch):
    """The gather's channels-last buckets where C is not a multiple of a vector (the
    AVX-512 scan's last 16 channels of a position are partly past it) and where a
    reciprocal's product falls just below index // C (C = 49 or 103 at index C; the other
    instruction sets' scan); a NaN input is an event, as on the channels-first path:
    the same spikes."""
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", "gather")
    rng = np.random.default_rng(34)
    x = ((rng.random((12, channels, 5, 5)) < 0.3) * 100.0).astype(np.float32)
    x[:, 0, 0, 1] = 100.0  # index C of every image: channel 0 of the second position
    x[5, channels - 1, 2, 3] = np.nan  # the last channel: in the scan's partial vector
    w = rng.standard_normal((16, channels, 3, 3)).astype(np.float32)
    fused = _fused(_chain(x, w, None, {"pads": [1, 1, 1, 1]}, [3, 4, -1]))
    want = _session(fused).run(None, {"x": x})[0]
    got = _session(_with(fused, input_channels_last=1)).run(None, {"x": np.ascontiguousarray(np.moveaxis(x, 1, -1))})[0]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("view", [[1, 12, 16, 9, 9], [3, 4, 16, 9, 9]])
def test_fused_spiking_channels_last_spikes_when_computed_whole(view):
    """spikes_channels_last where the node computes the convolution's whole output first
    (one sequence, fewer than the cores; images held over steps): the same spikes."""
    rng = np.random.default_rng(30)
    frames = ((rng.random((4, 3, 9, 9)) < 0.3) * 100.0).astype(np.float32)
    x = np.repeat(frames, 3, axis=0)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    fused = _fused(_chain(x, w, None, {"pads": [1, 1, 1, 1]}, view))
    want = _session(fused, 2).run(None, {"x": x})[0]
    got = _session(_with(fused, spikes_channels_last=1), 2).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, np.moveaxis(want, 2, -1))


def test_fused_spiking_channels_last_errors_name_the_problem():
    x = np.zeros((6, 2, 5, 5), np.float32)
    w = np.ones((4, 2, 3, 3), np.float32)
    with pytest.raises(Exception, match="attributes 'channels_last' and 'spikes_channels_last' exclude each other"):
        _session(_fused_node(x, w, np.array([2, 3, -1]), dt=DT, channels_last=1, spikes_channels_last=1))
    for name in ("spikes_channels_last", "input_channels_last"):
        with pytest.raises(Exception, match=f"fused.*attribute '{name}' must be 0 or 1"):
            _session(_fused_node(x, w, np.array([2, 3, -1]), dt=DT, **{name: 2}))
    session = _session(_fused_node(x, w, np.array([2, 3, -1]), dt=DT, spikes_channels_last=1))
    with pytest.raises(Exception, match=r"'spikes_channels_last' needs input 'shape' to be \(B, T\) and the "
                                        r"convolution's output shape \(4, 3, 3\); got \(2, 3, 36\)"):
        session.run(None, {"x": x, "shape": np.array([2, 3, -1])})
    assert session.run(None, {"x": x, "shape": np.array([2, 3, 4, 3, 3])})[0].shape == (2, 3, 3, 3, 4)
    session = _session(_fused_node(x, w, np.array([2, 3, -1]), dt=DT, input_channels_last=1))
    with pytest.raises(Exception, match=r"X has 5 channels and W has shape \(4, 2, 3, 3\)"):
        session.run(None, {"x": x, "shape": np.array([2, 3, -1])})  # (N, H, W, C) with C = 5
    assert session.run(None, {"x": np.zeros((6, 5, 5, 2), np.float32), "shape": np.array([2, 3, -1])})[0].shape == (
        2, 3, 36)


def _two_convs(x: np.ndarray, w0: np.ndarray, w1: np.ndarray, b_t: List[int]) -> onnx.ModelProto:
    """x -> EventConv -> Relu -> Reshape (B, T, M, H, W) -> SpikingActivation -> Reshape
    (N, M, H, W) -> EventConv -> Relu -> Reshape (B, T, -1) -> SpikingActivation, as
    bench_events' CNN is built (3 x 3 kernels, padding 1)."""
    n, m, h, wd = x.shape[0], w0.shape[0], x.shape[2], x.shape[3]
    nodes = [helper.make_node("EventConv", ["x", "w0"], ["c0"], domain=DOMAIN, name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Reshape", ["r0", "view0"], ["q0"]),
             helper.make_node("SpikingActivation", ["q0"], ["s0"], domain=DOMAIN, name="sa0", dt=DT, seed=1),
             helper.make_node("Reshape", ["s0", "flat0"], ["f0"]),
             helper.make_node("EventConv", ["f0", "w1"], ["c1"], domain=DOMAIN, name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Reshape", ["r1", "view1"], ["q1"]),
             helper.make_node("SpikingActivation", ["q1"], ["spikes"], domain=DOMAIN, name="sa1", dt=DT, seed=2)]
    inits = [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1"),
             numpy_helper.from_array(np.array([*b_t, m, h, wd], np.int64), "view0"),
             numpy_helper.from_array(np.array([n, m, h, wd], np.int64), "flat0"),
             numpy_helper.from_array(np.array([*b_t, -1], np.int64), "view1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("spikes", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    return model


def _two_convs_case(seed: int) -> Tuple[np.ndarray, onnx.ModelProto]:
    """A batch of 12 8 x 8 spike images of 3 channels (20 % nonzero) and _two_convs of
    random 16-channel kernels, B, T = 3, 4."""
    rng = np.random.default_rng(seed)
    x = ((rng.random((12, 3, 8, 8)) < 0.2) * 100.0).astype(np.float32)
    w0 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    w1 = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    return x, _two_convs(x, w0, w1, [3, 4])


def _attrs(model: onnx.ModelProto) -> dict:
    return {n.name: {a.name: a.i for a in n.attribute if a.name.endswith("channels_last")}
            for n in model.graph.node if n.op_type == FUSED_SPIKING_OP}


@pytest.mark.parametrize("threads", [1, 2])
def test_fuse_hands_spikes_on_channels_last_between_fused_convolutions(threads):
    """fuse(): the first fused convolution writes its spikes channels-last, the Reshape
    between takes (N, H, W, M), the second reads them so; the spikes equal the nodes'."""
    x, model = _two_convs_case(31)
    fused = fuse(model)
    assert _op_types(fused) == [FUSED_SPIKING_OP, "Reshape", FUSED_SPIKING_OP]
    assert _attrs(fused) == {"conv0": {"channels_last": 0, "spikes_channels_last": 1},
                             "conv1": {"channels_last": 0, "input_channels_last": 1}}
    permuted = {t.name: list(numpy_helper.to_array(t)) for t in fused.graph.initializer}["flat0/channels_last"]
    assert permuted == [12, 8, 8, 16]
    # the channels-first shape no node reads any more goes (onnxruntime warns of it)
    assert "flat0" not in {t.name for t in fused.graph.initializer}
    want = _session(model, threads).run(None, {"x": x})[0]
    assert np.count_nonzero(want) > 0
    np.testing.assert_array_equal(_session(fused, threads).run(None, {"x": x})[0], want)
    np.testing.assert_array_equal(InferenceSession(model).run(None, {"x": x})[0], want)


def test_fuse_names_the_channels_last_shape_apart_from_the_graphs_names():
    """A tensor already named like the permuted shape keeps its name and value; the
    shape gets another."""
    x, model = _two_convs_case(35)
    model.graph.node.append(helper.make_node("Identity", ["x"], ["flat0/channels_last"]))
    model.graph.output.append(helper.make_tensor_value_info("flat0/channels_last", TensorProto.FLOAT, None))
    fused = fuse(model)
    names = [t.name for t in fused.graph.initializer] + [o for n in fused.graph.node for o in n.output]
    assert len(names) == len(set(names))
    reshape = next(n for n in fused.graph.node if n.op_type == "Reshape")
    assert reshape.input[1] not in ("flat0", "flat0/channels_last")
    outputs = ["spikes", "flat0/channels_last"]
    want = _session(model).run(outputs, {"x": x})
    for got, expected in zip(_session(fused).run(outputs, {"x": x}), want, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("source", ["constant node", "shared", "subgraph"])
def test_fuse_removes_the_channels_first_shape_only_when_nothing_reads_it(source):
    """The Reshape's channels-first shape, once replaced, goes if it was a ``Constant``
    node no one else reads, and stays when another node reads it too, or a node of a
    subgraph (an ``If`` branch)."""
    x, model = _two_convs_case(34)
    graph = model.graph
    outputs = ["spikes"]
    if source == "constant node":
        flat = next(t for t in graph.initializer if t.name == "flat0")
        graph.node.insert(0, helper.make_node("Constant", [], ["flat0"], value=flat))
        graph.initializer.remove(flat)
    elif source == "shared":
        graph.node.append(helper.make_node("Identity", ["flat0"], ["shape"]))
    else:
        branches = {name: helper.make_graph([helper.make_node("Identity", ["flat0"], [name])], name, [],
                                            [helper.make_tensor_value_info(name, TensorProto.INT64, None)])
                    for name in ("then", "else")}
        graph.node.append(helper.make_node("If", ["cond"], ["shape"], then_branch=branches["then"],
                                           else_branch=branches["else"]))
        graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    if source != "constant node":
        graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, None))
        outputs.append("shape")
    fused = fuse(model)
    assert _attrs(fused)["conv1"]["input_channels_last"] == 1
    names = {t.name for t in fused.graph.initializer} | {o for n in fused.graph.node for o in n.output}
    assert ("flat0" in names) == (source != "constant node")
    want = _session(model).run(outputs, {"x": x})
    for got, expected in zip(_session(fused).run(outputs, {"x": x}), want, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("change", ["spikes output", "computed shape", "view with -1", "other reshape"])
def test_fuse_keeps_channels_first_where_it_cannot_tell(change):
    """No layout change when the first spikes are also a graph output, the Reshape's shape
    is computed or does not split (B, T, M, H, W) as (N, M, H, W), or the first node's
    sequence view is not written out; the spikes still equal the nodes'."""
    x, model = _two_convs_case(32)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    if change == "spikes output":
        graph.output.append(helper.make_tensor_value_info("s0", TensorProto.FLOAT, None))
    elif change == "computed shape":
        graph.node.insert(0, helper.make_node("Identity", ["flat0"], ["flat0_id"]))
        graph.node[5].input[1] = "flat0_id"
    elif change == "view with -1":
        inits["view0"].CopyFrom(numpy_helper.from_array(np.array([3, 4, -1], np.int64), "view0"))
    else:  # the next convolution reads another split of the same values: (12, 16, 4, 16)
        inits["flat0"].CopyFrom(numpy_helper.from_array(np.array([12, 16, 4, 16], np.int64), "flat0"))
        graph.node[5].attribute[0].CopyFrom(helper.make_attribute("pads", [1, 1, 1, 1]))
    fused = fuse(model)
    assert all(not any(v for k, v in a.items() if k != "channels_last") for a in _attrs(fused).values())
    outputs = [o.name for o in graph.output]
    want = _session(model).run(outputs, {"x": x})
    for got, expected in zip(_session(fused).run(outputs, {"x": x}), want, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("spatial", [1, 2])
def test_fuse_reads_through_a_transpose_to_channels_first(spatial):
    """tf2onnx's Transpose from channels-last before a convolution (here on the model
    input) goes: the fused node reads its input channels-last; the spikes are the same."""
    rng = np.random.default_rng(33)
    shape = (12, 8, 8, 3) if spatial == 2 else (12, 8, 3)
    x_last = ((rng.random(shape) < 0.2) * 100.0).astype(np.float32)
    perm = [0, spatial + 1, *range(1, spatial + 1)]
    w = rng.standard_normal((16, 3, 3, 3)[:spatial + 2]).astype(np.float32)
    pads = [1] * (2 * spatial)
    nodes = [helper.make_node("Transpose", ["x"], ["x_first"], perm=perm),
             helper.make_node("EventConv", ["x_first", "w"], ["c"], domain=DOMAIN, name="conv", pads=pads),
             helper.make_node("Reshape", ["c", "view"], ["q"]),
             helper.make_node("SpikingActivation", ["q"], ["spikes"], domain=DOMAIN, name="sa", dt=DT, seed=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_last.shape))],
                              [helper.make_tensor_value_info("spikes", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w"),
                                           numpy_helper.from_array(np.array([3, 4, -1], np.int64), "view")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    fused = fuse(model)
    assert _op_types(fused) == [FUSED_SPIKING_OP] and _attrs(fused)["conv"]["input_channels_last"] == 1
    np.testing.assert_array_equal(_session(fused).run(None, {"x": x_last})[0],
                                  _session(model).run(None, {"x": x_last})[0])
