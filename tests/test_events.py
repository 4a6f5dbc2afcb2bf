"""Event-driven ops (EventMatMul, EventGemm, EventConv) and spikeonnx.optimize.

One-node tests compare the op library's kernels with the NumPy references of
spikeonnx.reference (float64) at several input densities, layouts and attributes;
optimize() is checked on models with spiking layers: the event ops' results equal the
dense graph's within relative 1e-5 of the output scale, the predicted classes are
identical, the file still runs in stock onnxruntime (model-local functions) and passes
the full ONNX check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx import reference
from spikeonnx.contract import DOMAIN, MAX_IR_VERSION, OPSET_VERSION
from spikeonnx.events import EVENT_OP_TYPES, event_inputs, event_nodes, fuse_relu, optimize
from spikeonnx.runtime import InferenceSession

pytestmark = pytest.mark.needs_ops

_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
# float32 summation-order rounding, relative to the output's scale.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _session(model: onnx.ModelProto, *, library: bool = True, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if library:
        from spikeonnx.ops import library_path

        options.register_custom_ops_library(library_path())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _model(op: str, x: np.ndarray, weights: Sequence[Optional[np.ndarray]], *, constant: bool = True,
           domain: str = DOMAIN, **attrs: Any) -> onnx.ModelProto:
    """One node ``op(x, *weights)``; the weights are initializers (``constant``) or graph inputs."""
    names = ["x"] + [f"w{i}" if w is not None else "" for i, w in enumerate(weights)]
    while names[-1] == "":
        names.pop()
    present = [(n, w) for n, w in zip(names[1:], weights[: len(names) - 1], strict=True) if n]
    inputs = [helper.make_tensor_value_info("x", _TYPES[x.dtype], None)]
    inits = []
    for name, w in present:
        if constant:
            inits.append(numpy_helper.from_array(w, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, _TYPES[w.dtype], list(w.shape)))
    node = helper.make_node(op, names, ["y"], domain=domain, name="n0", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", _TYPES[x.dtype], None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    return model


def _run(model: onnx.ModelProto, x: np.ndarray, feeds: Optional[Dict[str, np.ndarray]] = None, **kw) -> np.ndarray:
    return _session(model, **kw).run(None, {"x": x, **(feeds or {})})[0]


def _spikes(rng: np.random.Generator, shape, density: float, dtype=np.float32) -> np.ndarray:
    """Spike-like input: zeros, and 1/dt-sized values at ``density`` of the positions."""
    mask = rng.random(shape) < density
    return (mask * rng.choice([100.0, 200.0, -50.0], size=shape)).astype(dtype)


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-30)
    err = float(np.abs(actual.astype(np.float64) - expected).max())
    assert err <= RTOL[actual.dtype] * scale, f"max error {err} vs scale {scale}"


# -- one-node kernels vs NumPy -----------------------------------------------------


@pytest.mark.parametrize("density", [0.0, 0.01, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape", [(70,), (3, 70), (2, 300, 70)])
def test_matmul_matches_numpy(density, dtype, x_shape):
    rng = np.random.default_rng(0)
    # N = 300 covers full register tiles and a partial one for every instruction set.
    w = rng.standard_normal((70, 300)).astype(dtype)
    x = _spikes(rng, x_shape, density, dtype)
    expected = reference.event_matmul(x, w)
    for constant in (True, False):
        model = _model("EventMatMul", x, [w], constant=constant)
        y = _run(model, x, None if constant else {"w0": w})
        assert y.dtype == dtype
        _assert_close(y, expected)
    if density == 0.0:
        assert not y.any()


def test_matmul_uses_the_thread_pool_without_changing_results():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 200)).astype(np.float32)
    x = _spikes(rng, (999, 64), 0.05)
    model = _model("EventMatMul", x, [w])
    one, two = _run(model, x, threads=1), _run(model, x, threads=2)
    np.testing.assert_array_equal(one, two)  # rows are independent: no change of order
    _assert_close(one, reference.event_matmul(x, w))


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (37,), (1, 37), (9, 1), (9, 37)])
@pytest.mark.parametrize("density", [0.02, 1.0])
def test_gemm_matches_numpy(trans_b, c_shape, density):
    rng = np.random.default_rng(2)
    a = _spikes(rng, (9, 50), density)
    b = rng.standard_normal((37, 50) if trans_b else (50, 37)).astype(np.float32)
    c = None if c_shape is None else rng.standard_normal(c_shape).astype(np.float32)
    attrs = {"alpha": 0.5, "beta": 2.0, "transB": trans_b}
    expected = reference.event_gemm(a, b, c, alpha=0.5, beta=2.0, trans_b=trans_b)
    for constant in (True, False):
        model = _model("EventGemm", a, [b, c], constant=constant, **attrs)
        feeds = {} if constant else {"w0": b, **({} if c is None else {"w1": c})}
        _assert_close(_run(model, a, feeds), expected)


def _held_frames(rng: np.random.Generator, density: float, dtype) -> np.ndarray:
    """(B * T, K) rows: frames held over time steps (runs of 1-40 equal rows), with a run
    of -0.0 rows after one of 0.0 rows (bitwise different, equal in value)."""
    frames = _spikes(rng, (24, 65), density, dtype)
    frames[5] = 0.0
    frames[6] = -0.0
    lengths = rng.integers(1, 40, len(frames))
    lengths[0] = 1  # a run of one row first
    return np.repeat(frames, lengths, axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("density", [0.05, 1.0])
def test_repeated_rows_match_numpy(dtype, density):
    """Rows equal to the row before (a frame held over time steps) are computed once and
    copied: the result is NumPy's, for the event and dense paths, MatMul and Gemm."""
    rng = np.random.default_rng(4)
    x = _held_frames(rng, density, dtype)
    assert len(np.unique(x, axis=0)) < len(x) // 2
    w = rng.standard_normal((65, 40)).astype(dtype)
    _assert_close(_run(_model("EventMatMul", x, [w]), x), reference.event_matmul(x, w))
    # held frames of a (B, T, K) input
    x3 = np.stack([x[:100], x[100:200]])
    _assert_close(_run(_model("EventMatMul", x3, [w]), x3), reference.event_matmul(x3, w))
    # a C per row differs along a run of equal rows: those are not copied
    for c_shape in [None, (40,), (len(x), 1), (len(x), 40)]:
        c = None if c_shape is None else rng.standard_normal(c_shape).astype(dtype)
        for trans_b in (0, 1):
            b = np.ascontiguousarray(w.T) if trans_b else w
            expected = reference.event_gemm(x, b, c, alpha=0.5, beta=2.0, trans_b=trans_b)
            model = _model("EventGemm", x, [b, c], alpha=0.5, beta=2.0, transB=trans_b)
            _assert_close(_run(model, x, threads=2), expected)


def test_gemm_float64_and_default_attributes():
    rng = np.random.default_rng(3)
    a = _spikes(rng, (5, 40), 0.1, np.float64)
    b = rng.standard_normal((40, 6))
    _assert_close(_run(_model("EventGemm", a, [b]), a), reference.event_gemm(a, b))


_CONV_CASES = [
    # x shape, w shape, attributes
    ((2, 3, 9, 10), (4, 3, 3, 3), {}),
    ((2, 3, 9, 10), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 3, 9, 10), (4, 3, 3, 2), {"strides": [2, 3], "pads": [0, 2, 1, 1]}),
    ((2, 3, 11, 10), (4, 3, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 0, 3]}),
    ((2, 6, 8, 8), (4, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 4, 7, 7), (4, 1, 3, 3), {"group": 4, "strides": [2, 2]}),  # depthwise
    ((2, 3, 9, 10), (5, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((2, 3, 8, 10), (5, 3, 2, 4), {"auto_pad": "SAME_LOWER"}),
    ((2, 3, 9, 10), (5, 3, 3, 3), {"auto_pad": "VALID", "kernel_shape": [3, 3]}),
    ((3, 4, 20), (6, 4, 3), {}),  # 1-D
    ((3, 4, 20), (6, 2, 5), {"group": 2, "strides": [3], "pads": [2, 1], "dilations": [2]}),
    ((3, 4, 20), (6, 4, 2), {"auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("case", range(len(_CONV_CASES)))
def test_conv_matches_numpy(case, density):
    x_shape, w_shape, attrs = _CONV_CASES[case]
    rng = np.random.default_rng(4 + case)
    x = _spikes(rng, x_shape, density)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    numpy_attrs = {k: v for k, v in attrs.items() if k != "kernel_shape"}
    for bias in (None, b):
        expected = reference.event_conv(x, w, bias, **numpy_attrs)
        model = _model("EventConv", x, [w, bias], **attrs)
        _assert_close(_run(model, x), expected)
        # The same numbers from onnxruntime's own Conv (the function body's op).
        dense = _run(_model("Conv", x, [w, bias], domain="", **attrs), x, library=False)
        _assert_close(dense, expected)


_PATH_CASES = [
    # the gather path needs whole vectors of output channels per group (16 floats or
    # 8 doubles with AVX-512), so these have 16 or 32 per group
    ((3, 8, 12, 11), (32, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 8, 13, 12), (16, 8, 3, 2), {"strides": [2, 3], "pads": [0, 2, 1, 1]}),
    ((2, 6, 11, 10), (32, 6, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 0, 3]}),
    ((2, 4, 9, 9), (32, 2, 3, 3), {"group": 2, "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((2, 8, 9, 9), (16, 8, 1, 1), {}),
    ((3, 8, 30), (16, 8, 5), {"strides": [2], "pads": [2, 1], "dilations": [2]}),  # 1-D
    ((2, 3, 9, 10), (5, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # 5 channels: gather falls back to scatter
    # more shapes for the dense path (the direct convolution): output rows of 3 to 32
    # positions, in whole vectors (rows of 16 or 32: planes per stride phase) or not
    # (planes per kernel column, several rows to a vector, a partial last vector)
    ((2, 3, 10, 16), (16, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 8, 12, 30), (32, 8, 3, 3), {"strides": [1, 2], "pads": [1, 1, 1, 1]}),
    ((2, 4, 9, 28), (32, 2, 3, 3), {"group": 2, "dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((2, 4, 11, 47), (16, 4, 3, 3), {"strides": [2, 3], "pads": [0, 2, 1, 1], "dilations": [1, 2]}),
    ((2, 4, 8, 16), (16, 4, 2, 3), {"auto_pad": "SAME_LOWER"}),
    ((3, 8, 64), (16, 8, 5), {"strides": [2], "pads": [2, 1], "dilations": [2]}),  # 1-D
    ((2, 4, 8, 8), (16, 4, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 4, 9, 32), (16, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # rows of 16
    ((2, 4, 8, 36), (16, 4, 3, 3), {"dilations": [1, 2]}),  # rows of 32
    ((2, 4, 6, 6), (16, 2, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    # rows of at most 8 values: the planes are filled from a table of input offsets
    ((2, 3, 7, 7), (16, 3, 3, 3), {"dilations": [2, 1], "strides": [1, 2], "pads": [2, 1, 0, 1]}),
    ((3, 4, 9), (16, 4, 3), {"strides": [2], "pads": [1, 0]}),  # 1-D, 4 outputs
    # the channels kernel's tiles of 4, 3 and 4 + 1 vectors of output channels (float32)
    ((2, 8, 9, 9), (64, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 6, 6, 6), (96, 3, 3, 3), {"group": 2, "pads": [0, 1, 1, 0]}),
    ((2, 8, 7, 7), (80, 8, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("path", ["scatter", "gather", "dense", "channels", "auto"])
@pytest.mark.parametrize("case", [1, 4, 6, 10])
def test_conv_held_images_match_numpy(case, path, monkeypatch):
    """Images equal to the one before (held over time steps) are computed once, by the
    event paths, and copied; -0.0 images after 0.0 ones are not equal bitwise."""
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", path)
    x_shape, w_shape, attrs = _CONV_CASES[case]
    rng = np.random.default_rng(30 + case)
    frames = _spikes(rng, (9,) + x_shape[1:], 0.5)
    frames[3] = 0.0
    frames[4] = -0.0
    x = np.repeat(frames, rng.integers(1, 12, len(frames)), axis=0)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    numpy_attrs = {k: v for k, v in attrs.items() if k != "kernel_shape"}
    for bias in (None, b):
        _assert_close(_run(_model("EventConv", x, [w, bias], **attrs), x, threads=2),
                      reference.event_conv(x, w, bias, **numpy_attrs))


@pytest.mark.parametrize("path", ["scatter", "gather", "dense", "channels", "auto"])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.3, 1.0])
@pytest.mark.parametrize("case", range(len(_PATH_CASES)))
def test_conv_paths_match_numpy(case, density, path, monkeypatch):
    """Every path of EventConv (fixed by SPIKEONNX_EVENT_CONV_PATH when the kernel is
    created: dense is the planes kernel, channels the kernel with the output channels
    in the vectors) gives NumPy's convolution, float32 and float64, with and without
    bias."""
    _check_conv_path(case, density, path, monkeypatch, relu=False)


def _check_conv_path(case: int, density: float, path: str, monkeypatch, *, relu: bool) -> None:
    """EventConv (EventConvRelu with ``relu``) of ``_PATH_CASES[case]`` on a fixed path
    against NumPy (then ``_relu``), float32 and float64, with and without bias."""
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", path)
    x_shape, w_shape, attrs = _PATH_CASES[case]
    rng = np.random.default_rng((60 if relu else 40) + case)
    for dtype in (np.float32, np.float64):
        x = _spikes(rng, x_shape, density, dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        for bias in (None, b):
            expected = reference.event_conv(x, w, bias, **attrs)
            if relu:
                expected = _relu(expected)
                assert (expected == 0).any() and (expected > 0).any()
            y = _run(_model("EventConvRelu" if relu else "EventConv", x, [w, bias], **attrs), x)
            _assert_close(y, expected)


@pytest.mark.parametrize("op", ["EventConv", "EventConvRelu"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("side", [32, 30])
@pytest.mark.parametrize("path", ["scatter", "gather", "dense", "channels"])
def test_conv_output_past_the_caches_matches_numpy(path, side, threads, op, monkeypatch):
    """An output of 4 MiB or more is written with non-temporal stores (the direct
    convolution's tiles; the event paths' transposes, in 16 x 16 blocks where the
    positions are whole blocks: 32 x 32, not 30 x 30, which leaves 4 rows): the same
    numbers, every image, with threads; the fused Relu's too (applied in the transpose),
    a NaN input included."""
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", path)
    rng = np.random.default_rng(77)
    x = _spikes(rng, (40, 8, side, side), 0.3)
    x[3, 2, 10, 10] = np.nan
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    y = _run(_model(op, x, [w, b], pads=[1, 1, 1, 1]), x, threads=threads)
    assert y.nbytes >= 4 << 20
    expected = reference.event_conv(x, w, b, pads=[1, 1, 1, 1])
    _assert_close_with_nan(y, _relu(expected) if op == "EventConvRelu" else expected)


# -- the fused Relu of fuse_relu's execution-only ops ------------------------------------


def _relu(y: np.ndarray) -> np.ndarray:
    """onnxruntime's Relu: negatives become 0; NaN and -0 pass unchanged."""
    return np.where(y < 0, 0, y).astype(y.dtype)


def _assert_close_with_nan(actual: np.ndarray, expected: np.ndarray) -> None:
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    _assert_close(np.where(nan, 0, actual), np.where(nan, 0, expected))


@pytest.mark.parametrize("density", [0.05, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out", [300, 10])  # own kernels; onnxruntime's for a narrow dense product
def test_matmul_and_gemm_with_fused_relu_match_numpy(n_out, dtype, density):
    """EventMatMulRelu and EventGemmRelu: the op's value, then Relu, on the event path and
    the dense paths; a NaN input stays NaN where it reaches, as through a Relu node."""
    rng = np.random.default_rng(11)
    x = _spikes(rng, (40, 70), density, dtype)
    x[3, 5] = np.nan
    w = rng.standard_normal((70, n_out)).astype(dtype)
    y = _run(_model("EventMatMulRelu", x, [w]), x)
    assert y.dtype == dtype and (y >= 0).sum() + np.isnan(y).sum() == y.size
    _assert_close_with_nan(y, _relu(reference.event_matmul(x, w)))
    b = rng.standard_normal((n_out, 70)).astype(dtype)
    c = rng.standard_normal(n_out).astype(dtype)
    y = _run(_model("EventGemmRelu", x, [b, c], alpha=0.5, beta=2.0, transB=1), x)
    _assert_close_with_nan(y, _relu(reference.event_gemm(x, b, c, alpha=0.5, beta=2.0, trans_b=1)))


@pytest.mark.parametrize("path", ["scatter", "gather", "dense", "channels"])
@pytest.mark.parametrize("density", [0.05, 1.0])
@pytest.mark.parametrize("case", [0, 1, 8, 13, 19])
def test_conv_with_fused_relu_matches_numpy(case, density, path, monkeypatch):
    """EventConvRelu on every path (the event paths clamp the accumulator before writing
    it out, the direct convolution its register tiles), float32 and float64, with and
    without bias."""
    _check_conv_path(case, density, path, monkeypatch, relu=True)


def _relu_chain_model(tail: str) -> onnx.ModelProto:
    """spikes -> EventMatMul -> Reshape -> Relu -> (tail) on a SpikingActivation's output."""
    rng = np.random.default_rng(12)
    nodes = [
        helper.make_node("SpikingActivation", ["x"], ["s"], domain=DOMAIN, name="sa", dt=0.01, seed=1),
        helper.make_node("Reshape", ["s", "flat"], ["s2"], name="flat_view"),
        helper.make_node("MatMul", ["s2", "w"], ["h"], name="dense"),
        helper.make_node("Reshape", ["h", "seq"], ["h2"], name="seq_view"),
        helper.make_node("Relu", ["h2"], ["r"], name="relu"),
    ]
    outputs = ["r"]
    if tail == "second user":
        nodes.append(helper.make_node("Neg", ["h2"], ["n"], name="neg"))
        outputs.append("n")
    if tail == "output":
        outputs.append("h2")
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 20])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(rng.standard_normal((20, 16)).astype(np.float32), "w"),
                     numpy_helper.from_array(np.array([-1, 20]), "flat"),
                     numpy_helper.from_array(np.array([2, 3, 16]), "seq")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    return optimize(model)


@pytest.mark.parametrize("tail", ["", "second user", "output"])
def test_fuse_relu_through_plumbing_and_only_there(tail):
    """fuse_relu moves a Relu reached through a Reshape into the event op, bitwise the
    same outputs; not when the tensor before the Relu has another user or is an output."""
    model = _relu_chain_model(tail)
    fused = fuse_relu(model)
    ops = [n.op_type for n in fused.graph.node]
    if tail:
        assert ops == [n.op_type for n in model.graph.node] and "EventMatMul" in ops
    else:
        assert "Relu" not in ops and "EventMatMulRelu" in ops
        assert [n.output[0] for n in fused.graph.node if n.name == "seq_view"] == ["r"]
    assert [n.op_type for n in model.graph.node].count("Relu") == 1  # the input is not changed
    x = np.random.default_rng(13).uniform(-20, 80, (2, 3, 20)).astype(np.float32)
    for want, got in zip(_session(model).run(None, {"x": x}), _session(fused).run(None, {"x": x}), strict=True):
        np.testing.assert_array_equal(got, want)


def test_fuse_relu_reads_a_file_and_names_a_bad_one(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_relu_chain_model(""), str(path))
    assert "EventMatMulRelu" in [n.op_type for n in fuse_relu(path).graph.node]
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        fuse_relu(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="not an ONNX model"):
        fuse_relu(b"not a model")


def test_inference_session_runs_the_fused_ops(tmp_path):
    """spikeonnx.InferenceSession hands onnxruntime the fused model (profiling names the
    kernel) and keeps the model as given; the outputs equal stock onnxruntime's."""
    model = _relu_chain_model("")
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = InferenceSession(model, options)
    x = np.random.default_rng(14).uniform(-20, 80, (2, 3, 20)).astype(np.float32)
    got = session.run(None, {"x": x})[0]
    ran = {e.get("args", {}).get("op_name") for e in json.loads(Path(session.session.end_profiling()).read_text())}
    assert "EventMatMulRelu" in ran and "Relu" not in ran
    assert "Relu" in [n.op_type for n in session.model.graph.node]
    np.testing.assert_array_equal(got, _session(model).run(None, {"x": x})[0])
    assert list(tmp_path.iterdir())  # the profile went to tmp_path, not the working directory


def test_conv_path_variable_is_checked(monkeypatch):
    monkeypatch.setenv("SPIKEONNX_EVENT_CONV_PATH", "fastest")
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(Exception, match="SPIKEONNX_EVENT_CONV_PATH must be auto, scatter, gather, dense or channels; got 'fastest'"):
        _session(_model("EventConv", x, [np.ones((2, 2, 3, 3), np.float32)]))


@pytest.mark.parametrize("density", [0.0, 0.02, 0.2, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_long_k_matches_numpy(density, dtype):
    """K = 5000 sweeps the weight in blocks of K rows (partial sums through y); N = 200
    has a partial last tile; 300 rows are two row blocks."""
    rng = np.random.default_rng(9)
    x = _spikes(rng, (300, 5000), density, dtype)
    w = rng.standard_normal((5000, 200)).astype(dtype)
    _assert_close(_run(_model("EventMatMul", x, [w]), x), reference.event_matmul(x, w))
    b = rng.standard_normal((200, 5000)).astype(dtype)
    c = rng.standard_normal(200).astype(dtype)
    _assert_close(_run(_model("EventGemm", x, [b, c], transB=1, alpha=0.5), x),
                  reference.event_gemm(x, b, c, trans_b=1, alpha=0.5))


@pytest.mark.parametrize("density", [0.05, 1.0])
def test_conv_float64_and_non_constant_weights(density):
    rng = np.random.default_rng(5)
    x = _spikes(rng, (2, 4, 6, 7), density, np.float64)
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    attrs = {"group": 2, "pads": [1, 0, 1, 1], "strides": [1, 2]}
    expected = reference.event_conv(x, w, b, **attrs)
    _assert_close(_run(_model("EventConv", x, [w, b], **attrs), x), expected)
    model = _model("EventConv", x, [w, b], constant=False, **attrs)
    _assert_close(_run(model, x, {"w0": w, "w1": b}), expected)


def test_reference_conv_matches_onnxruntime():
    """The NumPy conv itself against onnxruntime's Conv (independent implementations)."""
    rng = np.random.default_rng(6)
    for x_shape, w_shape, attrs in _CONV_CASES:
        x = rng.standard_normal(x_shape)
        w = rng.standard_normal(w_shape)
        numpy_attrs = {k: v for k, v in attrs.items() if k != "kernel_shape"}
        got = _run(_model("Conv", x.astype(np.float32), [w.astype(np.float32)], domain="", **attrs),
                   x.astype(np.float32), library=False)
        np.testing.assert_allclose(got, reference.event_conv(x, w, **numpy_attrs), rtol=1e-4, atol=1e-4)


# -- errors ------------------------------------------------------------------------


def _error(model: onnx.ModelProto, x: np.ndarray, feeds: Optional[Dict[str, np.ndarray]] = None) -> str:
    with pytest.raises(Exception) as info:  # onnxruntime's Fail / InvalidArgument
        _run(model, x, feeds)
    return str(info.value)


def test_matmul_errors_name_the_problem():
    x = np.ones((3, 4), np.float32)
    assert "disagree on K" in _error(_model("EventMatMul", x, [np.ones((5, 2), np.float32)]), x)
    message = _error(_model("EventMatMul", x, [np.ones((4, 2, 1), np.float32)]), x)
    assert "2-D weight matrix (K, N)" in message and "(4, 2, 1)" in message
    # Mixed element types: refused (by onnxruntime's type check or by the kernel).
    message = _error(_model("EventMatMul", x, [np.ones((4, 2), np.float64)]), x)
    assert "float64" in message or "tensor(double)" in message
    xi = np.ones((3, 4), np.int32)
    model = _model("EventMatMul", x, [np.ones((4, 2), np.float32)])
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT32
    assert "float32 or float64" in _error(model, xi)


def test_gemm_errors_name_the_problem():
    a = np.ones((3, 4), np.float32)
    assert "transA" in _error(_model("EventGemm", a, [np.ones((3, 2), np.float32)], transA=1), a)
    assert "'A' must be 2-D" in _error(_model("EventGemm", a[None], [np.ones((4, 2), np.float32)]), a[None])
    message = _error(_model("EventGemm", a, [np.ones((4, 2), np.float32), np.ones((2, 2), np.float32)]), a)
    assert "does not broadcast to (M, N) = (3, 2)" in message
    assert "disagree on K" in _error(_model("EventGemm", a, [np.ones((4, 2), np.float32)], transB=1), a)


def test_conv_errors_name_the_problem():
    x = np.ones((1, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    assert "channels" in _error(_model("EventConv", x, [np.ones((4, 2, 3, 3), np.float32)]), x)
    assert "group' must be >= 1" in _error(_model("EventConv", x, [w], group=0), x)
    assert "'strides' has 1 values" in _error(_model("EventConv", x, [w], strides=[1]), x)
    assert "output would be empty" in _error(_model("EventConv", x, [np.ones((4, 3, 7, 3), np.float32)]), x)
    assert "bias 'B' must have shape (4,)" in _error(
        _model("EventConv", x, [w, np.ones(3, np.float32)]), x)
    x5 = np.ones((1, 3, 4, 4, 4), np.float32)
    assert "1-D or 2-D" in _error(_model("EventConv", x5, [np.ones((2, 3, 2, 2, 2), np.float32)]), x5)
    assert "auto_pad" in _error(_model("EventConv", x, [w], auto_pad="SAME"), x)
    assert "kernel_shape" in _error(_model("EventConv", x, [w], kernel_shape=[2, 2]), x)


# -- optimize() ----------------------------------------------------------------------


def _spiking_mlp(rng: np.random.Generator, *, conv: bool = False) -> onnx.ModelProto:
    """rates -> MatMul (or Conv) -> SpikingActivation -> Reshape/Transpose plumbing -> weighted op."""
    dt = 0.01
    nodes, inits = [], []

    def init(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    if conv:
        # x (B, T, 1, 8, 8) -> (B*T, 1, 8, 8) -> Conv(4) -> (B, T, 4, 6, 6) -> spikes -> (B*T, 4, 6, 6) -> Conv(3)
        x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 5, 1, 8, 8])
        nodes += [
            helper.make_node("Reshape", ["x", init("s0", np.array([-1, 1, 8, 8]))], ["x2"]),
            helper.make_node("Conv", ["x2", init("w0", rng.uniform(0, 0.3, (4, 1, 3, 3)).astype(np.float32))], ["h"]),
            helper.make_node("Reshape", ["h", init("s1", np.array([-1, 5, 4, 6, 6]))], ["h2"]),
            helper.make_node("SpikingActivation", ["h2"], ["sp"], domain=DOMAIN, dt=dt, seed=1, name="sa"),
            helper.make_node("Reshape", ["sp", init("s2", np.array([-1, 4, 6, 6]))], ["sp2"]),
            helper.make_node("Conv", ["sp2", init("w1", rng.standard_normal((3, 4, 3, 3)).astype(np.float32)),
                                      init("b1", rng.standard_normal(3).astype(np.float32))], ["c"],
                             pads=[1, 1, 1, 1], strides=[2, 2], name="conv_on_spikes"),
            helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("Gemm", ["f", init("w2", rng.standard_normal((10, 27)).astype(np.float32)),
                                      init("b2", np.zeros(10, np.float32))], ["g"], transB=1, name="gemm_dense"),
            helper.make_node("Reshape", ["g", init("s3", np.array([-1, 5, 10]))], ["y"]),
        ]
        out_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 5, 10])
    else:
        x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 7, 12])
        nodes += [
            helper.make_node("MatMul", ["x", init("w0", rng.uniform(0, 2, (12, 30)).astype(np.float32))], ["h"]),
            helper.make_node("SpikingActivation", ["h"], ["sp"], domain=DOMAIN, dt=dt, seed=2, name="sa"),
            helper.make_node("Transpose", ["sp"], ["spt"], perm=[1, 0, 2]),
            helper.make_node("Transpose", ["spt"], ["sp2"], perm=[1, 0, 2]),
            helper.make_node("MatMul", ["sp2", init("w1", rng.standard_normal((30, 6)).astype(np.float32))], ["m"],
                             name="mm_on_spikes"),
            helper.make_node("Relu", ["m"], ["r"]),  # not plumbing: the next MatMul stays dense
            helper.make_node("MatMul", ["r", init("w2", rng.standard_normal((6, 4)).astype(np.float32))], ["y"]),
        ]
        out_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 7, 4])
    graph = helper.make_graph(nodes, "snn", [x_info], [out_info], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = 8
    return model


def test_optimize_rewrites_only_weighted_ops_on_spikes():
    rng = np.random.default_rng(7)
    model = _spiking_mlp(rng)
    optimized = optimize(model)
    # the MatMul on spikes, and the one on the data input of this spiking model (for its
    # repeated rows); only the first one's inputs are synaptic events
    assert [(n.input[0], n.name, n.op_type) for n in event_nodes(optimized)] == [
        ("x", "", "EventMatMul"), ("sp2", "mm_on_spikes", "EventMatMul")]
    assert event_inputs(optimized) == {"mm_on_spikes": "sp2"}
    assert [n.op_type for n in model.graph.node].count("MatMul") == 3  # the input is not changed
    assert {f.name for f in optimized.functions} == {"EventMatMul"}
    conv = optimize(_spiking_mlp(rng, conv=True))
    assert [(n.input[0], n.name, n.op_type) for n in event_nodes(conv)] == [
        ("x2", "", "EventConv"), ("sp2", "conv_on_spikes", "EventConv")]
    # Flatten is plumbing, but the Conv output is not spikes: the Gemm stays dense.
    assert [n.op_type for n in conv.graph.node if n.name == "gemm_dense"] == ["Gemm"]
    # Idempotent: a second pass finds nothing new.
    again = optimize(optimized)
    assert [n.op_type for n in again.graph.node] == [n.op_type for n in optimized.graph.node]
    assert len(again.functions) == len(optimized.functions)


def test_optimized_gemm_on_spikes_and_the_function_bodies():
    """A Gemm fed by spikes through Flatten; optional bias absent; runs everywhere."""
    rng = np.random.default_rng(8)
    nodes = [
        helper.make_node("SpikingActivation", ["x"], ["sp"], domain=DOMAIN, dt=0.01, seed=3, name="sa"),
        helper.make_node("Flatten", ["sp"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg"], ["g"], transB=1, alpha=0.5, name="gemm"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1, beta=3.0, name="gemm_bias"),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((5, 21)).astype(np.float32), "wg"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "bg")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 7])],
                              [helper.make_tensor_value_info("g", TensorProto.FLOAT, ["B", 5]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = 8
    optimized = optimize(model)
    assert [n.op_type for n in event_nodes(optimized)] == ["EventGemm", "EventGemm"]
    assert list(optimized.graph.node[2].input) == ["f", "wg", ""]
    x = rng.uniform(0, 60, (6, 3, 7)).astype(np.float32)
    dense = _session(model).run(None, {"x": x})
    event = _session(optimized).run(None, {"x": x})
    for d, e in zip(dense, event, strict=True):
        _assert_close(e, d.astype(np.float64))
    _check_runs_anywhere(optimized, model, {"x": x}, spiking=True)


def test_rewritten_nodes_set_default_attributes_for_onnx_reference():
    """A Gemm and a Conv that leave every attribute to its default: the event nodes set
    them (the bodies reference them), so onnx.reference runs the bodies and gives the
    original graph's values; a Conv with auto_pad gets no pads."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(13)
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"], name="conv"),
        helper.make_node("Conv", ["x", "wc"], ["c2"], auto_pad="SAME_UPPER", name="conv_same"),
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg"], ["g"], name="gemm"),
        helper.make_node("SpikingActivation", ["g"], ["y"], domain=DOMAIN, dt=0.01, seed=3, name="sa"),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "wc"),
             numpy_helper.from_array(rng.standard_normal((2 * 6 * 6, 5)).astype(np.float32), "wg")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c", "c2", "g", "y")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2, 6, 6])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = MAX_IR_VERSION
    optimized = optimize(model)
    attrs = {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in event_nodes(optimized)}
    assert attrs["gemm"] == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    assert attrs["conv"] == {"auto_pad": b"NOTSET", "group": 1, "dilations": [1, 1], "strides": [1, 1],
                             "kernel_shape": [3, 3], "pads": [0, 0, 0, 0]}
    assert "pads" not in attrs["conv_same"] and attrs["conv_same"]["auto_pad"] == b"SAME_UPPER"
    x = rng.uniform(0, 3, (3, 2, 6, 6)).astype(np.float32)
    dense = _session(model).run(None, {"x": x})
    # onnx.reference runs the bodies of the event nodes (not SpikingActivation's, not attached)
    probe = onnx.ModelProto.FromString(optimized.SerializeToString())
    kept = [n for n in probe.graph.node if n.name not in ("sa", "conv_same")]
    del probe.graph.node[:]
    probe.graph.node.extend(kept)
    del probe.graph.output[:]
    probe.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c", "g")])
    got = ReferenceEvaluator(probe).run(None, {"x": x})
    for g, d in zip(got, [dense[0], dense[2]], strict=True):
        _assert_close(np.asarray(g, np.float32), d.astype(np.float64))
    # the library gives the same
    for e, d in zip(_session(optimized).run(None, {"x": x}), dense, strict=True):
        _assert_close(e, d.astype(np.float64))


def _check_runs_anywhere(optimized: onnx.ModelProto, dense: onnx.ModelProto, feeds, *, spiking: bool) -> None:
    """Full ONNX check; the event ops' bodies in stock onnxruntime give the dense graph's values."""
    onnx.checker.check_model(optimized, full_check=True)
    if spiking and not any(f.name == "SpikingActivation" for f in optimized.functions):
        return  # the spiking op itself still needs the library (no body attached here)
    stock = _session(optimized, library=False).run(None, feeds)
    for s, d in zip(stock, _session(dense).run(None, feeds), strict=True):
        _assert_close(s, d.astype(np.float64))


def test_library_runs_the_kernel_and_stock_onnxruntime_the_body():
    """A zero input times an infinite weight: the event kernel skips it (0), the body's
    MatMul gives NaN, so the output tells which of the two ran."""
    w = np.ones((10, 2), np.float32)
    w[1] = np.inf
    x = np.zeros((40, 10), np.float32)
    x[:, 0] = 1.0  # density 0.1: the event path
    model = optimize(_model("MatMul", x, [w], domain=""), functions=True)
    # (the lone MatMul is not fed by spikes: make it an event op by hand)
    model.graph.node[0].op_type, model.graph.node[0].domain = "EventMatMul", DOMAIN
    from spikeonnx.events import make_event_function

    model.functions.append(make_event_function("EventMatMul", 17))
    np.testing.assert_array_equal(_run(model, x), np.ones((40, 2), np.float32))
    assert np.isnan(_run(model, x, library=False)).all()


def test_optimize_checks_and_keeps_what_it_cannot_rewrite():
    rng = np.random.default_rng(9)
    model = _spiking_mlp(rng)
    # A weight that is a graph input (not constant) is left alone (the MatMul on spikes);
    # the one on the data input has a constant weight.
    model.graph.input.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [30, 6]))
    assert [n.input[1] for n in event_nodes(optimize(model))] == ["w0"]
    # A model without SpikingActivation is not a spiking model: nothing is rewritten.
    plain = onnx.ModelProto.FromString(model.SerializeToString())
    kept = [n for n in plain.graph.node if n.op_type != "SpikingActivation"]
    for n in kept:
        n.input[:] = ["h2" if i == "sp" else i for i in n.input]
    del plain.graph.node[:]
    plain.graph.node.extend(kept)
    assert not event_nodes(optimize(plain))
    with pytest.raises(FileNotFoundError):
        optimize("/nonexistent/model.onnx")
    assert set(EVENT_OP_TYPES) == {"EventMatMul", "EventGemm", "EventConv"}


@pytest.mark.parametrize("conv", [False, True])
def test_optimized_graph_equals_dense_graph(conv):
    rng = np.random.default_rng(10 + conv)
    model = _spiking_mlp(rng, conv=conv)
    optimized = optimize(model)
    shape = (6, 5, 1, 8, 8) if conv else (6, 7, 12)
    x = rng.uniform(0, 30, shape).astype(np.float32)
    dense = _session(model).run(None, {"x": x})[0]
    event = _session(optimized).run(None, {"x": x})[0]
    _assert_close(event, dense.astype(np.float64))
    np.testing.assert_array_equal(event.argmax(-1), dense.argmax(-1))


# -- the export zoo ------------------------------------------------------------------


def _zoo_feeds(model: onnx.ModelProto, case) -> Dict[str, np.ndarray]:
    xs = case.x if isinstance(case.x, list) else [case.x]
    names = [i.name for i in model.graph.input if not i.name.endswith("/state_in")]
    feeds = dict(zip(names, xs, strict=True))
    batch = xs[0].shape[1 if case.time_major else 0]
    rng = np.random.default_rng(11)
    for i in model.graph.input:  # states: random values of the right shape (batch first)
        if i.name.endswith("/state_in"):
            shape = [d.dim_value or batch for d in i.type.tensor_type.shape.dim]
            feeds[i.name] = rng.uniform(0, 1, shape).astype(np.float32)
    return feeds


def test_zoo_optimized_equals_dense():
    """Every zoo model: optimize() changes the outputs only by float summation order
    (relative 1e-5 of each output's scale) and no predicted class; where the model
    carries function bodies for all its spikeonnx ops, stock onnxruntime runs it too."""
    keras = pytest.importorskip("keras")
    from spikeonnx import export
    from spikeonnx.examples.zoo import ZOO
    from spikeonnx.runtime import InferenceSession

    rewritten, spiking = {}, {}
    for name, builder in ZOO.items():
        keras.utils.set_random_seed(1234)
        case = builder()
        dense = export(case.model, events=False, **case.export_kwargs)
        optimized = optimize(dense)
        rewritten[name] = [n.op_type for n in event_nodes(optimized)]
        spiking[name] = event_inputs(optimized)
        feeds = _zoo_feeds(dense, case)
        expected = InferenceSession(dense).run(None, feeds)
        got = InferenceSession(optimized).run(None, feeds)
        for e, g in zip(expected, got, strict=True):
            _assert_close(np.asarray(g), np.asarray(e, dtype=np.float64))
            if e.ndim >= 1 and e.shape[-1] > 1:
                np.testing.assert_array_equal(np.argmax(g, -1), np.argmax(e, -1), err_msg=name)
        onnx.checker.check_model(optimized, full_check=True)
        bodies = {f.name for f in optimized.functions if f.domain == DOMAIN}
        if rewritten[name] and all(n.op_type in bodies for n in optimized.graph.node if n.domain == DOMAIN):
            stock = _session(optimized, library=False).run(None, feeds)
            for e, s in zip(expected, stock, strict=True):
                _assert_close(np.asarray(s), np.asarray(e, dtype=np.float64))
    # The Dense layers right after spikes (through tf2onnx's reshape to (B*T, F)) are rewritten,
    # and so are those on the model's data input.
    for name in ("dense_spiking_sequential", "dense_spiking_functional", "nested", "fixed_length_dense",
                 "fixed_length_flatten"):
        assert "EventMatMul" in rewritten[name], (name, rewritten[name])
        assert len(spiking[name]) == 1, (name, spiking[name])


def test_export_rewrites_by_default():
    keras = pytest.importorskip("keras")
    from spikeonnx import export
    from spikeonnx.examples.zoo import build

    keras.utils.set_random_seed(1234)
    case = build("dense_spiking_functional")
    exported = export(case.model)
    plain = export(case.model, events=False)
    assert [n.op_type for n in exported.graph.node] == [n.op_type for n in optimize(plain).graph.node]
    assert "EventMatMul" in [n.op_type for n in exported.graph.node]
    assert "EventMatMul" not in [n.op_type for n in plain.graph.node]


def test_functions_and_events_in_either_order():
    """attach_functions skips the event ops and keeps their functions: optimize() then
    attach_functions gives the same model as the other order, and it runs in stock onnxruntime."""
    from spikeonnx.contract import EVENT_OP_TYPES as contract_event_ops
    from spikeonnx.functions import attach_functions
    from spikeonnx.schemas import EVENT_OP_TYPES as schema_event_ops

    assert EVENT_OP_TYPES is contract_event_ops and schema_event_ops is contract_event_ops
    rng = np.random.default_rng(12)
    model = _spiking_mlp(rng)
    events_first = attach_functions(optimize(model))
    functions_first = optimize(attach_functions(onnx.ModelProto.FromString(model.SerializeToString())))
    for m in (events_first, functions_first):
        assert {f.name for f in m.functions} == {"SpikingActivation", "EventMatMul"}
        assert [n.op_type for n in event_nodes(m)] == ["EventMatMul", "EventMatMul"]
    assert [(n.op_type, list(n.input), list(n.output)) for n in events_first.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in functions_first.graph.node]
    x = rng.uniform(0, 30, (4, 7, 12)).astype(np.float32)
    _check_runs_anywhere(events_first, model, {"x": x}, spiking=True)
    # A second attach_functions changes nothing.
    again = attach_functions(onnx.ModelProto.FromString(events_first.SerializeToString()))
    assert again.SerializeToString() == events_first.SerializeToString()


# -- measured synaptic events ----------------------------------------------------------


def _brute_conv_events(x: np.ndarray, w_shape, *, pads, strides, group=1) -> int:
    """Loops over every nonzero input and kernel tap: outputs it reaches times M/group."""
    n_spatial = x.ndim - 2
    out = [(x.shape[2 + a] + pads[a] + pads[a + n_spatial] - w_shape[2 + a]) // strides[a] + 1
           for a in range(n_spatial)]
    total = 0
    for index in zip(*np.nonzero(x), strict=True):
        position = index[2:]
        for tap in np.ndindex(*w_shape[2:]):
            reached = True
            for a in range(n_spatial):
                t = position[a] + pads[a] - tap[a]
                reached &= t >= 0 and t % strides[a] == 0 and t // strides[a] < out[a]
            total += int(reached)
    return total * (w_shape[0] // group)


@pytest.mark.parametrize("conv", [False, True])
def test_run_counts_synaptic_events(conv):
    """count_events: per event node, nonzero inputs x the outputs each reaches, against
    NumPy counts of the dense graph's intermediate spikes; the outputs are unchanged."""
    from spikeonnx.runtime import InferenceSession

    rng = np.random.default_rng(13 + conv)
    model = _spiking_mlp(rng, conv=conv)
    optimized = optimize(model)
    x = rng.uniform(0, 30, (3, 5, 1, 8, 8) if conv else (3, 7, 12)).astype(np.float32)
    session = InferenceSession(optimized)
    plain = session.run(None, {"x": x})
    outputs, events = session.run(None, {"x": x}, count_events=True)
    np.testing.assert_array_equal(outputs[0], plain[0])
    # The spikes the event node reads, from the dense model with them as an output.
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.append(helper.make_tensor_value_info("sp", TensorProto.FLOAT, None))
    spikes = InferenceSession(probe).run(["sp"], {"x": x})[0]
    assert np.count_nonzero(spikes) > 0
    if conv:
        expected = _brute_conv_events(spikes.reshape(-1, 4, 6, 6), (3, 4, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])
        assert events == {"conv_on_spikes": expected}
    else:
        assert events == {"mm_on_spikes": np.count_nonzero(spikes) * 6}
    # A model without event nodes counts nothing.
    assert InferenceSession(model).run(None, {"x": x}, count_events=True)[1] == {}


def test_synaptic_events_of_conv_attributes():
    from spikeonnx.events import synaptic_events

    rng = np.random.default_rng(14)
    for x_shape, w_shape, attrs in _CONV_CASES:
        if "dilations" in attrs or "auto_pad" in attrs:
            continue  # the brute-force count covers explicit pads and strides
        x = _spikes(rng, x_shape, 0.3)
        model = _model("EventConv", x, [rng.standard_normal(w_shape).astype(np.float32)], **attrs)
        n = len(x_shape) - 2
        expected = _brute_conv_events(x, w_shape, pads=attrs.get("pads", [0] * 2 * n),
                                      strides=attrs.get("strides", [1] * n), group=attrs.get("group", 1))
        assert synaptic_events(model, "n0", x) == expected, (x_shape, w_shape, attrs)
    with pytest.raises(ValueError, match="no event node"):
        synaptic_events(model, "nope", x)
