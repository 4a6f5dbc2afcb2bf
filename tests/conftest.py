"""Shared test helpers: the op-library marker, small ONNX model builders, registry restore.

- ``@pytest.mark.needs_ops`` skips a test when the compiled op library is not built,
  except in CI (``$CI`` set), where a missing library is an error.
- :func:`finish_model` and :func:`one_node_model` build models the way every test
  needs them (opset imports, an IR version onnxruntime accepts).
- The ``saved_registries`` fixture restores every extension registry after the test.

Test modules import the helpers with ``from tests.conftest import ...``: pytest's
``importlib`` import mode (``pyproject.toml``) names this module after its path from
the root directory, which the ``[tool.pytest.ini_options]`` table fixes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re as _re
import sys
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx import reference as _reference
from spikeonnx.contract import DOMAIN, MAX_IR_VERSION, OPSET_VERSION
from spikeonnx.registry import Registry

# -- the compiled op library ---------------------------------------------------------


def library_available() -> bool:
    """Whether the op library is built; in CI a missing library raises instead."""
    from spikeonnx.ops import library_path

    try:
        library_path()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise  # in CI the op library must have been built and installed
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_ops: needs the compiled spikeonnx op library (skipped if not built)")
    config.addinivalue_line("markers", "lint: ruff check of the repository (tests/test_lint.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    marked = [item for item in items if item.get_closest_marker("needs_ops") is not None]
    if marked and not library_available():
        skip = pytest.mark.skip(reason="spikeonnx op library not built (and CI unset)")
        for item in marked:
            item.add_marker(skip)


# -- ONNX model builders -------------------------------------------------------------

_ONNX_TYPE = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int32): TensorProto.INT32,
}


def finish_model(
    graph: onnx.GraphProto,
    *,
    opset: int = 17,
    domains: Iterable[str] = (DOMAIN,),
    metadata: Optional[Mapping[str, Any]] = None,
    ir_version: int = MAX_IR_VERSION,
) -> onnx.ModelProto:
    """A model of ``graph`` importing the default domain at ``opset`` and ``domains`` at 1
    (``spikeonnx`` at its opset version), with ``metadata`` JSON-encoded into
    ``metadata_props``.

    The IR version defaults to the highest onnxruntime reads (onnx's ``make_model``
    writes a newer one).
    """
    imports = [helper.make_opsetid("", opset)]
    imports += [helper.make_opsetid(d, OPSET_VERSION if d == DOMAIN else 1) for d in domains]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir_version
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    return model


def one_node_model(
    op: str, inputs: Sequence[Optional[np.ndarray]], n_outputs: int = 1, *, name: str = "node0", **attrs: Any
) -> onnx.ModelProto:
    """A model of one ``spikeonnx`` node whose inputs are graph inputs ``in0, in1, ...``
    shaped and typed like ``inputs`` and whose outputs are ``out0, out1, ...``.

    ``None`` in ``inputs`` leaves that optional input out (empty name; trailing ones
    are dropped). The outputs carry the first input's element type, as the ops' type
    inference says, and no shape.
    """
    names = [f"in{i}" if value is not None else "" for i, value in enumerate(inputs)]
    while names and names[-1] == "":
        names.pop()
    graph_inputs = [
        helper.make_tensor_value_info(n, _ONNX_TYPE[value.dtype], list(value.shape))
        for n, value in zip(names, inputs)
        if n
    ]
    out_type = _ONNX_TYPE[inputs[0].dtype]
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, domain=DOMAIN, name=name, **attrs)
    graph = helper.make_graph(
        [node], "one_node", graph_inputs, [helper.make_tensor_value_info(o, out_type, None) for o in outputs]
    )
    return finish_model(graph)


# -- registries ----------------------------------------------------------------------


@pytest.fixture
def saved_registries() -> Iterator[None]:
    """Restore every extension registry (each :class:`spikeonnx.registry.Registry` held by
    an imported ``spikeonnx`` or ``keras_layers`` module or by a class of one, such as
    ``ModelEnergy.layer_stats_computers``) when the test ends."""
    registries = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(("spikeonnx", "keras_layers")):
            continue
        for value in list(vars(module).values()):
            candidates = vars(value).values() if isinstance(value, type) else (value,)
            for candidate in list(candidates):
                if isinstance(candidate, Registry):
                    registries[id(candidate)] = candidate
    with contextlib.ExitStack() as stack:
        for registry in registries.values():
            stack.enter_context(registry.saved())
        yield

# ---------------------------------------------------------------------------
# Models shared by several test files (defined here: conftest is the one test module
# every other test module can import, in a fresh clone as in a development install)
# ---------------------------------------------------------------------------

SHARD_TAU = np.array([[0.05, 0.02, 0.1]], np.float32)
STREAM_DT = 0.002
STREAM_TAU = np.array([0.01, 0.02, 0.005], dtype=np.float32)
PLOT_DT = (0.01, 0.005)
PLOT_UNITS = (40, 7)


def shard_expected(x):
    y, _ = _reference.lowpass(x, SHARD_TAU, np.zeros((1, 3), np.float32), 0.01)
    return y


def shard_lowpass_model(path):
    """x (batch, time, 3) -> Lowpass(tau, dt=0.01) -> y, and s = ReduceSum(y, time) (two outputs)."""
    tau = helper.make_tensor("tau", TensorProto.FLOAT, [1, 3], SHARD_TAU.ravel().tolist())
    level = helper.make_tensor("level", TensorProto.FLOAT, [1, 3], [0.0, 0.0, 0.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Lowpass", ["x", "tau", "level"], ["y"], domain="spikeonnx", dt=0.01, name="filter"),
        helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0, name="sum"),
    ]
    graph = helper.make_graph(
        nodes, "lowpass",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 3]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", 3])],
        [tau, level, axes],
    )
    path.write_bytes(finish_model(graph).SerializeToString())
    return path


def shard_mlp_model(path):
    """x (batch, 4, 6) -> MatMul -> Relu -> Lowpass -> MatMul -> y: layers with different input rates."""
    rng = np.random.default_rng(3)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [6, 5], rng.normal(size=30).astype(np.float32).tolist())
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [5, 2], rng.normal(size=10).astype(np.float32).tolist())
    tau = helper.make_tensor("tau", TensorProto.FLOAT, [1, 5], [0.05] * 5)
    level = helper.make_tensor("level", TensorProto.FLOAT, [1, 5], [0.0] * 5)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="d1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Lowpass", ["r", "tau", "level"], ["f"], domain="spikeonnx", dt=0.01, name="filter"),
        helper.make_node("MatMul", ["f", "w2"], ["y"], name="d2"),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 2])], [w1, w2, tau, level],
    )
    path.write_bytes(finish_model(graph).SerializeToString())
    return path


def cli_lowpass_model(path, state_io: bool):
    """x (B, T, 3) -> Lowpass(tau=0.05, dt=0.01) -> y, optionally with filter/state_in|out."""
    tau = helper.make_tensor("tau", TensorProto.FLOAT, [1, 3], [0.05, 0.02, 0.1])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 3])]
    initializers = [tau]
    if state_io:
        inputs.append(helper.make_tensor_value_info("filter/state_in", TensorProto.FLOAT, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info("filter/state_out", TensorProto.FLOAT, ["batch", 3]))
        node = helper.make_node("Lowpass", ["x", "tau", "filter/state_in"], ["y", "filter/state_out"],
                                domain="spikeonnx", dt=0.01, name="filter")
    else:
        initializers.append(helper.make_tensor("level", TensorProto.FLOAT, [1, 3], [0.0, 0.0, 0.0]))
        node = helper.make_node("Lowpass", ["x", "tau", "level"], ["y"], domain="spikeonnx", dt=0.01, name="filter")
    graph = helper.make_graph([node], "lowpass", inputs, outputs, initializers)
    model = finish_model(graph)
    onnx.save(model, path)
    return path


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def streaming_model(seed=3, level=(0.1, 0.2, 0.3), time_major=0, with_metadata=True):
    """Relu -> SpikingActivation -> Lowpass, both with {layer}/state_in / state_out."""
    seq = ["T", "B", 3] if time_major else ["B", "T", 3]
    nodes = [
        helper.make_node("Relu", ["x"], ["rates"]),
        helper.make_node(
            "SpikingActivation", ["rates", "spike/state_in"], ["spikes", "spike/state_out"],
            domain=DOMAIN, dt=STREAM_DT, time_major=time_major,
        ),
        helper.make_node(
            "Lowpass", ["spikes", "tau", "lp/state_in"], ["y", "lp/state_out"],
            domain=DOMAIN, dt=STREAM_DT, time_major=time_major,
        ),
    ]
    graph = helper.make_graph(
        nodes, "stream",
        [_vi("x", seq), _vi("spike/state_in", ["B", 3]), _vi("lp/state_in", ["B", 3])],
        [_vi("y", seq), _vi("spikes", seq), _vi("spike/state_out", ["B", 3]), _vi("lp/state_out", ["B", 3])],
        initializer=[helper.make_tensor("tau", TensorProto.FLOAT, [1, 3], STREAM_TAU.tolist())],
    )
    metadata = None
    if with_metadata:
        axis = 0 if time_major else 1
        metadata = {
            "spikeonnx.time_axes": {"x": axis, "y": axis, "spikes": axis, "spike/state_in": None,
                                    "lp/state_in": None, "spike/state_out": None, "lp/state_out": None},
            "spikeonnx.initial_state": {
                "spike/state_in": {"kind": "uniform_seed", "seed": seed},
                "lp/state_in": {"kind": "constant", "value": list(level)},
            },
        }
    return finish_model(graph, metadata=metadata)


def svg_axes(path) -> int:
    """Number of axes (panels) in a matplotlib SVG."""
    return len(_re.findall(r'<g id="axes_\d+"', path.read_text()))


def two_layer_model(path, *, seed: int = 0):
    """x (B, T, 6) -> MatMul -> SpikingActivation(dt 0.01) -> MatMul -> SpikingActivation(dt 0.005) -> y.

    Both spiking nodes start from a constant initial voltage, so the test can compute
    their spikes with a plain NumPy loop. Returns the path and the weights and voltages.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(0, 60, (6, PLOT_UNITS[0])).astype(np.float32)
    w1[:, :5] = 0  # five silent neurons
    w1[:, -3:] = 150  # three saturated ones (more than one spike per step)
    w2 = rng.uniform(0, 1.0, (PLOT_UNITS[0], PLOT_UNITS[1])).astype(np.float32)
    v1 = rng.uniform(0, 1, (1, PLOT_UNITS[0])).astype(np.float32)
    v2 = rng.uniform(0, 1, (1, PLOT_UNITS[1])).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["r1"], name="dense1"),
        helper.make_node("Expand", ["v1", "batch_shape1"], ["v1b"], name="v1_expand"),
        helper.make_node("SpikingActivation", ["r1", "v1b"], ["s1"], domain="spikeonnx", dt=PLOT_DT[0], name="spikes1"),
        helper.make_node("MatMul", ["s1", "w2"], ["r2"], name="dense2"),
        helper.make_node("Expand", ["v2", "batch_shape2"], ["v2b"], name="v2_expand"),
        helper.make_node("SpikingActivation", ["r2", "v2b"], ["y"], domain="spikeonnx", dt=PLOT_DT[1], name="spikes2"),
    ]
    # the batch size comes from x's shape: Shape(x)[0:1] ++ [units]
    nodes[1:1] = [
        helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        helper.make_node("Slice", ["x_shape", "zero", "one"], ["batch"], name="batch"),
        helper.make_node("Concat", ["batch", "u1"], ["batch_shape1"], axis=0, name="shape1"),
        helper.make_node("Concat", ["batch", "u2"], ["batch_shape2"], axis=0, name="shape2"),
    ]
    consts = {"w1": w1, "w2": w2, "v1": v1, "v2": v2, "zero": np.array([0], np.int64),
              "one": np.array([1], np.int64), "u1": np.array([PLOT_UNITS[0]], np.int64),
              "u2": np.array([PLOT_UNITS[1]], np.int64)}
    graph = helper.make_graph(
        nodes, "two_spiking_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", PLOT_UNITS[1]])],
        [numpy_helper.from_array(a, n) for n, a in consts.items()],
    )
    metadata = {
        "spikeonnx.batch_axes": {"x": 0, "y": 0}, "spikeonnx.time_axes": {"x": 1, "y": 1},
        "spikeonnx.layers": {"spikes1": "hidden_spikes", "spikes2": "out_spikes"},
        "spikeonnx.dt": {"spikes1": PLOT_DT[0], "spikes2": PLOT_DT[1]},
    }
    onnx.save(finish_model(graph, metadata=metadata), path)
    return path, (w1, w2), (v1, v2)


def shard_dataset(tmp_path, rows, *, name_step: int = 1):
    """The Lowpass model of :func:`shard_lowpass_model` and one ``.npy`` shard per entry
    of ``rows`` (shapes (rows, 4, 3)), named ``part{i * name_step}.npy``."""
    model = shard_lowpass_model(tmp_path / "m.onnx")
    folder = tmp_path / "shards"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = []
    for i, n in enumerate(rows):
        x = rng.normal(size=(n, 4, 3)).astype(np.float32)
        np.save(folder / f"part{i * name_step}.npy", x)
        arrays.append(x)
    return model, folder, arrays
