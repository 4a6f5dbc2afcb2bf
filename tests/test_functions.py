"""Model-local ONNX functions (spikeonnx.functions): the ops in standard ONNX ops.

Every single-op case runs four ways and is compared with ``spikeonnx.reference``:
stock onnxruntime (no op library: the function bodies run), ``onnx.reference``
without ``new_ops`` (the bodies again, in NumPy), the op library
(``spikeonnx.InferenceSession``), and the NumPy reference itself. Spikes and float32
filters/states must be identical; float64 filters are identical in
``onnx.reference`` and within 1e-12 in onnxruntime (its float64 ``Exp`` differs from
NumPy's / the C library's in the last bits, as the kernels' tests note too). The
seeded initial voltage is checked against ``spikeonnx.philox`` and TensorFlow. Every
zoo model is exported with functions and run in all three runtimes and Keras.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from spikeonnx import contract, reference
from spikeonnx.functions import MIN_OPSET, SIGNATURES, attach_functions
from spikeonnx.ops import library_path
from spikeonnx.philox import tf_stateless_uniform
from spikeonnx.reference import REFERENCE_OPS
from spikeonnx.runtime import InferenceSession

RNG = np.random.default_rng(1313)
_ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def f32(value: float) -> float:
    """The float32 value of an attribute, as every implementation computes with it."""
    return float(np.float32(value))


def make_model(op_type, inputs, n_outputs, attrs, *, opset=17, functions=True):
    """One ``spikeonnx`` node; ``None`` inputs are left out ("" when followed by more)."""
    while inputs and inputs[-1] is None:
        inputs = inputs[:-1]
    names = ["" if v is None else f"in{i}" for i, v in enumerate(inputs)]
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outputs, domain=contract.DOMAIN, name="node0", **attrs)
    graph_inputs = [  # dynamic dimensions of the right rank
        helper.make_tensor_value_info(n, _ELEM[v.dtype.type], [f"{n}_{k}" for k in range(v.ndim)])
        for n, v in zip(names, inputs, strict=True) if n
    ]
    ranks = [inputs[0].ndim, inputs[0].ndim - (op_type != "Alpha")]
    graph_outputs = [
        helper.make_tensor_value_info(n, _ELEM[inputs[0].dtype.type], [f"{n}_{k}" for k in range(r)])
        for n, r in zip(outputs, ranks[: len(outputs)], strict=True)
    ]
    graph = helper.make_graph([node], "g", graph_inputs, graph_outputs)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(contract.DOMAIN, 1)]
    )
    model.ir_version = contract.MAX_IR_VERSION
    if functions:
        attach_functions(model)
    feeds = {n: v for n, v in zip(names, inputs, strict=True) if n}
    return model, feeds


def stock(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def run_all(model, feeds):
    """Outputs of stock onnxruntime, onnx.reference without new_ops, and the op library."""
    return {
        "stock onnxruntime": stock(model, feeds),
        "onnx.reference": ReferenceEvaluator(model).run(None, feeds),
        "library": InferenceSession(model).run(None, feeds),
    }


def assert_same(actual, expected, *, exact=True, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    if exact:
        assert np.array_equal(actual, expected), f"{what}: max diff {np.abs(actual - expected).max()}"
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, err_msg=what)


# -- single ops ------------------------------------------------------------------------
# op variants: (op, which optional inputs, how the Alpha state is batched)
VARIANTS = ["sa_seeded", "sa_voltage", "lowpass", "lowpass_no_level", "alpha", "alpha_state", "alpha_state_shared"]
CASES = [
    (variant, dtype, time_major)
    for variant in VARIANTS
    for dtype in (np.float32, np.float64)
    for time_major in (0, 1)
]


def _case(variant, dtype, time_major, index):
    """Inputs, attributes and the reference's outputs; rank, #outputs and opset vary with ``index``."""
    rank = 3 + index % 3
    n_outputs = 1 + (index // 2) % 2
    opset = (17, 18, 21)[index % 3]
    batch, steps = 3, 9
    units = (5, 2, 3)[: rank - 2]
    seq = (steps, batch, *units) if time_major else (batch, steps, *units)
    state = (batch, *units)
    dt = (0.01, 0.003, 0.0007)[index % 3]
    if variant.startswith("sa"):
        rates = (RNG.uniform(-20, 300, seq)).astype(dtype)  # negative rates: negative spikes
        voltage = RNG.random(state).astype(dtype) if variant == "sa_voltage" else None
        seed = int(RNG.integers(-(2**63), 2**63 - 1)) if index % 2 else 4
        attrs = dict(dt=dt, time_major=time_major)
        if index % 4:  # else: seed left at its default, 0
            attrs["seed"] = seed
        expected = reference.spiking_activation(
            rates, f32(dt), initial_voltage=voltage, seed=attrs.get("seed", 0), time_major=bool(time_major)
        )
        return "SpikingActivation", [rates, voltage], attrs, expected, n_outputs, opset
    x = RNG.normal(0, 2, seq).astype(dtype)
    # per-unit time constants, one of them <= 0 (clamped: the filter passes its input through)
    tau = RNG.uniform(0.0005, 0.05, (1, *units)[-(index % 2 + 1):]).astype(dtype)
    tau.flat[0] = 0.0
    level = RNG.normal(0, 1, state[-(index % 3):] if index % 3 else state).astype(dtype)
    attrs = dict(dt=dt) if not time_major and index % 2 else dict(dt=dt, time_major=time_major)
    if variant == "lowpass_no_level":
        # the kernel runs with initial_level omitted and then rests at 0
        expected = reference.lowpass(x, tau, np.zeros(state, dtype), f32(dt), time_major=bool(time_major))
        return "Lowpass", [x, tau, None], attrs, expected, n_outputs, opset
    if variant == "lowpass":
        expected = reference.lowpass(x, tau, level, f32(dt), time_major=bool(time_major))
        return "Lowpass", [x, tau, level], attrs, expected, n_outputs, opset
    initial_state = None
    if variant != "alpha":
        initial_state = RNG.normal(0, 1, (1 if variant.endswith("shared") else batch, 2, *units)).astype(dtype)
    expected = reference.alpha(
        x, tau, level, f32(dt), time_major=bool(time_major), initial_state=initial_state
    )
    return "Alpha", [x, tau, level, initial_state], attrs, expected, n_outputs, opset


@pytest.mark.parametrize("variant,dtype,time_major", CASES)
def test_function_bodies_equal_reference_and_kernels(variant, dtype, time_major):
    index = CASES.index((variant, dtype, time_major))
    op_type, inputs, attrs, expected, n_outputs, opset = _case(variant, dtype, time_major, index)
    model, feeds = make_model(op_type, inputs, n_outputs, attrs, opset=opset)
    assert [f.name for f in model.functions] == [op_type]
    for runtime, outputs in run_all(model, feeds).items():
        assert len(outputs) == n_outputs
        for k, (got, want) in enumerate(zip(outputs, expected[:n_outputs], strict=True)):
            # float64 filters: exp(-r) of onnxruntime (and of the C library) may differ from NumPy's
            exact = dtype is np.float32 or op_type == "SpikingActivation" or runtime == "onnx.reference"
            assert_same(got, want, exact=exact, what=f"{runtime} output {k}")
    assert np.count_nonzero(expected[0]) > expected[0].size // 10  # the case exercises something


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("shape", [(0, 7, 3), (2, 0, 3), (2, 5), (1, 4, 1, 1, 1)])
def test_empty_sequences_rank_two_and_unit_axes(shape, opset):
    """T = 0 (the Scan is skipped: it refuses zero steps), B = 0, no unit axes, size-1 axes."""
    for op_type in ("SpikingActivation", "Lowpass", "Alpha"):
        x = RNG.uniform(0, 80, shape).astype(np.float32)
        units = shape[2:]
        if op_type == "SpikingActivation":
            inputs, expected = [x], reference.spiking_activation(x, f32(0.01), seed=-7)
            attrs = dict(dt=0.01, seed=-7)
        else:
            tau, level = np.full(units, 0.02, np.float32), np.full(units, 0.5, np.float32)
            fn = reference.lowpass if op_type == "Lowpass" else reference.alpha
            inputs, expected = [x, tau, level], fn(x, tau, level, f32(0.01))
            attrs = dict(dt=0.01)
        model, feeds = make_model(op_type, inputs, 2, attrs, opset=opset)
        for runtime, outputs in run_all(model, feeds).items():
            for got, want in zip(outputs, expected, strict=True):
                assert_same(got, want, what=f"{op_type} {runtime}")


# -- the seeded initial voltage ----------------------------------------------------------

SEEDS = [0, 1, -1, 7, 2**31, -(2**63), 2**63 - 1, 123456789012345]
COUNTS = [1, 3, 4, 5, 1001]


def _voltage_model(pairs, opset):
    """One SpikingActivation node per (seed, count); its final voltage after zero steps is its draw."""
    nodes, inputs, outputs = [], [], []
    for k, (seed, count) in enumerate(pairs):
        x = f"x{count}"
        if x not in [i.name for i in inputs]:
            inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, [count, 0]))
        nodes.append(helper.make_node("SpikingActivation", [x], [f"s{k}", f"v{k}"], domain=contract.DOMAIN,
                                      name=f"n{k}", dt=0.1, seed=seed))
        outputs.append(helper.make_tensor_value_info(f"v{k}", TensorProto.FLOAT, [count]))
    graph = helper.make_graph(nodes, "draws", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(contract.DOMAIN, 1)])
    model.ir_version = contract.MAX_IR_VERSION
    feeds = {i.name: np.zeros((int(i.name[1:]), 0), np.float32) for i in inputs}  # B = count units, T = 0
    return attach_functions(model), feeds


@pytest.mark.parametrize("opset", [17, 18])  # 17: XOR taken bit by bit; 18: BitwiseXor/BitwiseAnd
def test_seeded_voltage_is_tf_stateless_philox(opset):
    pairs = [(seed, COUNTS[k % len(COUNTS)]) for k, seed in enumerate(SEEDS)] + [(3, c) for c in COUNTS]
    model, feeds = _voltage_model(pairs, opset)
    for runtime, draws in (("stock", stock(model, feeds)), ("reference", ReferenceEvaluator(model).run(None, feeds))):
        for (seed, count), got in zip(pairs, draws, strict=True):
            want = tf_stateless_uniform((count,), seed)
            assert got.dtype == np.float32
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (seed, count, runtime)


def test_seeded_voltage_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    seeds = (0, -5, 2**40 + 3)
    model, feeds = _voltage_model([(seed, 42) for seed in seeds], 18)
    for seed, got in zip(seeds, stock(model, feeds), strict=True):
        want = tf.random.stateless_uniform((6, 7), seed=(seed, seed), dtype=tf.float32).numpy()
        assert np.array_equal(got.reshape(6, 7), want)


# -- attaching ---------------------------------------------------------------------------


def _two_node_model(opset=17, second_voltage=False):
    rates = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 4])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["B", 4])
    nodes = [
        helper.make_node("SpikingActivation", ["x"], ["s1"], domain=contract.DOMAIN, name="a", dt=0.01),
        helper.make_node("SpikingActivation", ["s1", "v"] if second_voltage else ["s1"], ["s2", "vf"],
                         domain=contract.DOMAIN, name="b", dt=0.002, seed=3, time_major=0),
    ]
    outs = [helper.make_tensor_value_info("s2", TensorProto.FLOAT, ["B", "T", 4]),
            helper.make_tensor_value_info("vf", TensorProto.FLOAT, ["B", 4])]
    graph = helper.make_graph(nodes, "g", [rates] + ([v] if second_voltage else []), outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(contract.DOMAIN, 1)])
    model.ir_version = 8
    return model


def test_one_function_serves_nodes_with_different_attributes_and_outputs():
    model = attach_functions(_two_node_model())
    assert len(model.functions) == 1 and model.ir_version == 9
    a, b = model.graph.node
    assert len(a.output) == 2 and a.output[1] == "s1__unused_state"  # padded for onnxruntime
    assert {x.name: helper.get_attribute_value(x) for x in a.attribute} == {"dt": pytest.approx(0.01),
                                                                           "time_major": 0, "seed": 0}
    x = RNG.uniform(0, 200, (2, 11, 4)).astype(np.float32)
    s1, _ = reference.spiking_activation(x, f32(0.01), seed=0)
    want = reference.spiking_activation(s1, f32(0.002), seed=3)
    for outputs in run_all(model, {"x": x}).values():
        for got, expected in zip(outputs, want, strict=True):
            assert_same(got, expected)
    again = onnx.ModelProto()
    again.CopyFrom(model)
    attach_functions(again)
    assert again.SerializeToString() == model.SerializeToString()  # idempotent


def test_attach_refuses_what_one_body_cannot_serve():
    with pytest.raises(ValueError, match="differ in the optional inputs.*'a' with rates.*'b' with rates, initial_voltage"):
        attach_functions(_two_node_model(second_voltage=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = attach_functions(_two_node_model(second_voltage=True), skip_unsupported=True)
    assert not model.functions and "needs the spikeonnx op library" in str(caught[0].message)
    with pytest.raises(ValueError, match=f"opset >= {MIN_OPSET}, the model imports 14"):
        attach_functions(_two_node_model(opset=14))
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
    before = plain.SerializeToString()
    assert attach_functions(plain).SerializeToString() == before  # nothing to do


def test_library_false_needs_functions_and_runs_them():
    x = RNG.uniform(0, 100, (2, 6, 3)).astype(np.float32)
    bare, feeds = make_model("SpikingActivation", [x], 1, dict(dt=0.01, seed=2), functions=False)
    with pytest.raises(ValueError, match="SpikingActivation have no model-local function.*functions=True"):
        InferenceSession(bare, library=False)
    model, _ = make_model("SpikingActivation", [x], 1, dict(dt=0.01, seed=2))
    (got,) = InferenceSession(model, library=False).run(None, feeds)
    assert_same(got, reference.spiking_activation(x, f32(0.01), seed=2)[0])


def test_cli_run_no_library(tmp_path, capsys):
    from spikeonnx.cli import main

    x = RNG.uniform(0, 100, (2, 6, 3)).astype(np.float32)
    tau, level = np.full(3, 0.02, np.float32), np.zeros(3, np.float32)
    np.savez(tmp_path / "x.npz", in0=x, in1=tau, in2=level)
    model, _ = make_model("Lowpass", [x, tau, level], 1, dict(dt=0.01))
    onnx.save(model, tmp_path / "m.onnx")
    argv = ["run", str(tmp_path / "m.onnx"), str(tmp_path / "x.npz"), "-o", str(tmp_path / "o.npz"), "--no-library"]
    assert main(argv) == 0
    with np.load(tmp_path / "o.npz") as out:
        assert_same(out["out0"], reference.lowpass(x, tau, level, f32(0.01))[0])
    bare, _ = make_model("Lowpass", [x, tau, level], 1, dict(dt=0.01), functions=False)
    onnx.save(bare, tmp_path / "m.onnx")
    capsys.readouterr()
    assert main(argv) != 0
    assert "Lowpass have no model-local function" in capsys.readouterr().err


def _profiled_ops(model, feeds, library):
    options = ort.SessionOptions()
    options.enable_profiling = True
    if library:
        options.register_custom_ops_library(library_path())
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    with open(session.end_profiling()) as handle:
        events = json.load(handle)
    return {e["args"].get("op_name") for e in events if e.get("cat") == "Node"}


def test_library_kernel_runs_instead_of_the_body_when_registered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # profile files land here
    x = RNG.uniform(0, 100, (2, 8, 3)).astype(np.float32)
    tau, level = np.full(3, 0.02, np.float32), np.zeros(3, np.float32)
    nodes = [
        helper.make_node("SpikingActivation", ["x"], ["s"], domain=contract.DOMAIN, name="sa", dt=0.01),
        helper.make_node("Lowpass", ["s", "tau", "level"], ["y"], domain=contract.DOMAIN, name="lp", dt=0.01),
        helper.make_node("Alpha", ["y", "tau", "level"], ["z"], domain=contract.DOMAIN, name="al", dt=0.01),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", "T", 3])],
        initializer=[onnx.numpy_helper.from_array(tau, "tau"), onnx.numpy_helper.from_array(level, "level")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(contract.DOMAIN, 1)])
    model.ir_version = contract.MAX_IR_VERSION
    attach_functions(model)
    with_library = _profiled_ops(model, {"x": x}, library=True)
    assert set(contract.OP_TYPES) <= with_library and "Scan" not in with_library
    without = _profiled_ops(model, {"x": x}, library=False)
    assert not set(contract.OP_TYPES) & without and "Scan" in without
    assert_same(stock(model, {"x": x})[0], InferenceSession(model).run(None, {"x": x})[0])


def test_checker_passes_in_a_process_that_never_imported_spikeonnx(tmp_path):
    paths = []
    for index, (variant, dtype, time_major) in enumerate(CASES):
        op_type, inputs, attrs, _, n_outputs, opset = _case(variant, dtype, time_major, index)
        model, _ = make_model(op_type, inputs, n_outputs, attrs, opset=opset)
        path = tmp_path / f"{variant}_{index}.onnx"
        onnx.save(model, path)
        paths.append(str(path))
    paths.append(str(tmp_path / "two.onnx"))
    onnx.save(attach_functions(_two_node_model()), paths[-1])
    script = textwrap.dedent(
        """
        import sys, onnx
        for path in sys.argv[1:]:
            onnx.checker.check_model(onnx.load(path), full_check=True)
        assert not any(m == "spikeonnx" or m.startswith("spikeonnx.") for m in sys.modules)
        print("checked", len(sys.argv) - 1)
        """
    )
    done = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"checked {len(paths)}"


def test_signatures_follow_the_reference_ops():
    # the formal inputs are the reference ops' parameters, in order
    import inspect

    for op in REFERENCE_OPS:
        params = list(inspect.signature(op._run).parameters)[1:]
        assert tuple(params[: len(SIGNATURES[op.__name__][0])]) == SIGNATURES[op.__name__][0]


# -- the exported zoo -------------------------------------------------------------------


def _zoo_feeds(model, case):
    """The case's inputs, plus every state input at its reset value (as the Keras layer starts)."""
    xs = case.x if isinstance(case.x, list) else [case.x]
    meta = contract.read_metadata(model)
    first = model.graph.input[0].name
    batch = xs[0].shape[meta.batch_axes.get(first) or 0]
    feeds = {}
    for k, graph_input in enumerate(model.graph.input):
        if k < len(xs):
            feeds[graph_input.name] = xs[k]
            continue
        dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        spec = meta.initial_state.get(graph_input.name)
        feeds[graph_input.name] = contract.initial_state(spec, [batch, *dims[1:]], np.float32)
    return feeds


@pytest.mark.parametrize("name", sorted(__import__("spikeonnx.examples.zoo", fromlist=["ZOO"]).ZOO))
def test_exported_zoo_runs_everywhere(name):
    """Every zoo model, exported with functions (the default): stock onnxruntime, onnx.reference
    without new_ops and the op library agree, and agree with Keras as in test_export_zoo."""
    keras = pytest.importorskip("keras")
    import tensorflow as tf

    from spikeonnx import export
    from spikeonnx.examples.zoo import ZOO

    keras.utils.set_random_seed(1234)
    case = ZOO[name]()
    model = export(case.model, **case.export_kwargs)
    assert model.ir_version <= contract.MAX_IR_VERSION
    spiking = {n.op_type for n in model.graph.node if n.domain == contract.DOMAIN}
    assert {f.name for f in model.functions if f.domain == contract.DOMAIN} == spiking
    feeds = _zoo_feeds(model, case)
    outputs = run_all(model, feeds)
    with_ops = ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, feeds)
    for a, b in zip(outputs["stock onnxruntime"], outputs["library"], strict=True):
        assert_same(a, b)  # same standard kernels, bit-identical spiking ops
    for a, b in zip(outputs["onnx.reference"], with_ops, strict=True):
        assert_same(a, b)  # same NumPy standard ops, bodies == reference ops
    if "default_seed" in case.export_kwargs:
        # an unseeded Keras layer draws a fresh voltage per call; the export fixed the seed
        (layer,) = [lay for lay in case.model.layers if type(lay).__name__ == "SpikingActivation"]
        rates = np.asarray(layer.activation(case.x))
        expected = [reference.spiking_activation(rates, f32(layer.dt), seed=case.export_kwargs["default_seed"])[0]]
    else:
        expected = tf.nest.flatten(case.model(case.x, training=False))
        expected = [np.asarray(tf.convert_to_tensor(e)) for e in expected]
    for runtime, values in outputs.items():
        for got, want in zip(values[: len(expected)], expected, strict=True):
            scale = max(float(np.abs(want).max()), 1.0)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=runtime)


def test_export_without_functions(tmp_path):
    pytest.importorskip("keras")
    from spikeonnx import export
    from spikeonnx.cli import main
    from spikeonnx.examples.zoo import ZOO

    case = ZOO["unseeded_spiking"]()
    assert not export(case.model, functions=False, **case.export_kwargs).functions
    case.model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.onnx"), "--no-functions"]) == 0
    assert not onnx.load(tmp_path / "m.onnx").functions
    assert main(["export", str(tmp_path / "m.keras"), "-o", str(tmp_path / "f.onnx")]) == 0
    assert [f.name for f in onnx.load(tmp_path / "f.onnx").functions] == ["SpikingActivation"]
