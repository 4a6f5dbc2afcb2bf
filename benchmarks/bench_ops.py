"""Speed of the compiled spikeonnx ops against the alternatives.

For each op on a (32, 1000, 1024) float32 sequence this times, in one run:

- the custom op in onnxruntime with 1 and with 2 intra-op threads (through IOBinding
  into a preallocated output, so that the figure is the kernel, not Python copies);
- the same recurrence written with standard ONNX ops (a ``Scan`` over time) in
  onnxruntime, 1 thread;
- the ``keras_layers`` layer's ``predict`` (TensorFlow backend);
- ``numpy.copyto`` of the same bytes, the floor any streaming kernel must pay.

Usage::

    python benchmarks/bench_ops.py [--batch 32 --steps 1000 --units 1024]
                                   [--keras-steps 100] [--repeats 5]

Keras on the full size is slow, so by default it runs on ``--keras-steps`` time steps and
its time is scaled linearly to the full length (the output says so).  The op library is
found with ``spikeonnx.ops.library_path()`` (set ``SPIKEONNX_OPS_LIBRARY`` to use a dev
build).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from spikeonnx.ops import DOMAIN, library_path

DT = 0.001
TAU = 0.01
OPS = ("SpikingActivation", "Lowpass", "Alpha")


def _timeit(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in seconds after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _finish(graph: onnx.GraphProto, extra_opsets: Optional[List] = None) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", 17)] + (extra_opsets or [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def custom_model(op: str, shape) -> onnx.ModelProto:
    """One-node model of our op with its parameters as initializers."""
    units = shape[2:]
    inits = []
    inputs = ["x"]
    if op != "SpikingActivation":
        inits.append(helper.make_tensor("tau", TensorProto.FLOAT, [1], [TAU]))
        inputs.append("tau")
    else:
        inits.append(helper.make_tensor("v0", TensorProto.FLOAT, [shape[0], *units],
                                        np.zeros((shape[0], *units), np.float32).ravel().tolist()))
        inputs.append("v0")
    node = helper.make_node(op, inputs, ["y"], domain=DOMAIN, dt=DT)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], initializer=inits,
    )
    return _finish(graph, [helper.make_opsetid(DOMAIN, 1)])


def scan_model(op: str, shape) -> onnx.ModelProto:
    """The op's recurrence as a standard-ONNX ``Scan`` over the time axis."""
    batch, _, *units = shape
    state_shape = [batch, *units]
    f = TensorProto.FLOAT
    a = float(np.exp(np.float64(-DT / TAU)))
    consts = {
        "dt": np.float32(DT), "keep": np.float32(a), "gain": np.float32(1 - a),
        "ra": np.float32(DT / TAU * a), "in2": np.float32(1 - a - DT / TAU * a),
    }
    body_inits = [helper.make_tensor(k, f, [], [float(v)]) for k, v in consts.items()]
    if op == "SpikingActivation":
        nodes = [
            helper.make_node("Mul", ["u", "dt"], ["rdt"]),
            helper.make_node("Add", ["v_in", "rdt"], ["v1"]),
            helper.make_node("Floor", ["v1"], ["n"]),
            helper.make_node("Sub", ["v1", "n"], ["v_out"]),
            helper.make_node("Div", ["n", "dt"], ["y"]),
        ]
        states, outs = ["v_in"], ["v_out"]
    elif op == "Lowpass":
        nodes = [
            helper.make_node("Mul", ["u", "gain"], ["p"]),
            helper.make_node("Mul", ["v_in", "keep"], ["q"]),
            helper.make_node("Add", ["p", "q"], ["v_out"]),
            helper.make_node("Identity", ["v_out"], ["y"]),
        ]
        states, outs = ["v_in"], ["v_out"]
    else:
        nodes = [
            helper.make_node("Mul", ["s1_in", "keep"], ["a1"]),
            helper.make_node("Mul", ["u", "gain"], ["b1"]),
            helper.make_node("Add", ["a1", "b1"], ["s1_out"]),
            helper.make_node("Mul", ["s1_in", "ra"], ["c1"]),
            helper.make_node("Mul", ["s2_in", "keep"], ["c2"]),
            helper.make_node("Mul", ["u", "in2"], ["c3"]),
            helper.make_node("Add", ["c1", "c2"], ["c12"]),
            helper.make_node("Add", ["c12", "c3"], ["s2_out"]),
            helper.make_node("Identity", ["s2_out"], ["y"]),
        ]
        states, outs = ["s1_in", "s2_in"], ["s1_out", "s2_out"]
    body = helper.make_graph(
        nodes, "step",
        [helper.make_tensor_value_info(s, f, state_shape) for s in states]
        + [helper.make_tensor_value_info("u", f, state_shape)],
        [helper.make_tensor_value_info(o, f, state_shape) for o in outs]
        + [helper.make_tensor_value_info("y", f, state_shape)],
        initializer=body_inits,
    )
    zeros = np.zeros(state_shape, np.float32)
    inits = [helper.make_tensor(f"init{i}", f, state_shape, zeros.ravel().tolist()) for i in range(len(states))]
    scan = helper.make_node(
        "Scan", [f"init{i}" for i in range(len(states))] + ["x"],
        [f"final{i}" for i in range(len(states))] + ["y"],
        num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1], body=body,
    )
    graph = helper.make_graph(
        [scan], f"{op}_scan", [helper.make_tensor_value_info("x", f, list(shape))],
        [helper.make_tensor_value_info("y", f, list(shape))], initializer=inits,
    )
    return _finish(graph)


def _session(model: onnx.ModelProto, threads: int, custom: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if custom:
        options.register_custom_ops_library(library_path())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _bound_runner(session: ort.InferenceSession, x: np.ndarray, out: np.ndarray) -> Callable[[], None]:
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    return lambda: session.run_with_iobinding(binding)


def keras_layer(op: str):
    import keras_layers

    if op == "SpikingActivation":
        return keras_layers.SpikingActivation("linear", dt=DT, seed=0)
    cls = keras_layers.Lowpass if op == "Lowpass" else keras_layers.Alpha
    return cls(tau_initializer=TAU, dt=DT)


def time_keras(op: str, x: np.ndarray, repeats: int) -> float:
    import keras

    layer = keras_layer(op)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    return _timeit(lambda: model.predict(x, batch_size=x.shape[0], verbose=0), repeats)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--keras-steps", type=int, default=100,
                        help="time steps for the Keras run (scaled to --steps); 0 = full length")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-keras", action="store_true")
    args = parser.parse_args(argv)

    shape = (args.batch, args.steps, args.units)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 300.0, shape).astype(np.float32)
    out = np.empty_like(x)
    mib = x.nbytes / 2**20
    print(f"shape {shape} float32 ({mib:.0f} MiB in, {mib:.0f} MiB out); cores: {os.cpu_count()}; "
          f"onnxruntime {ort.__version__}; library {library_path()}")

    copy_s = _timeit(lambda: np.copyto(out, x), args.repeats)
    print(f"numpy.copyto of the same bytes: {copy_s * 1e3:8.1f} ms")

    keras_steps = args.keras_steps if args.keras_steps and args.keras_steps < args.steps else args.steps
    results: Dict[str, Dict[str, float]] = {}
    for op in OPS:
        row: Dict[str, float] = {}
        for threads in (1, 2):
            session = _session(custom_model(op, shape), threads, custom=True)
            row[f"op{threads}"] = _timeit(_bound_runner(session, x, out), args.repeats)
        scan = _session(scan_model(op, shape), 1, custom=False)
        row["scan"] = _timeit(_bound_runner(scan, x, out), max(1, args.repeats // 2))
        results[op] = row
    # Keras last: TensorFlow's thread pools stay alive afterwards and would disturb the
    # onnxruntime timings.
    if not args.skip_keras:
        for op in OPS:
            try:
                seconds = time_keras(op, np.ascontiguousarray(x[:, :keras_steps]), max(1, args.repeats // 2))
            except ImportError as error:  # keras_layers or TensorFlow missing
                print(f"{op}: Keras layer unavailable ({error}); skipped")
                continue
            results[op]["keras"] = seconds * args.steps / keras_steps

    print()
    keras_note = f" (timed on T={keras_steps}, scaled x{args.steps / keras_steps:g})" if keras_steps != args.steps else ""
    print(f"{'op':18s} {'1 thread':>10s} {'2 threads':>10s} {'Scan':>10s} {'Keras' + keras_note:>10s}   "
          "op1/copy  keras/op1  scan/op1  op1/op2")
    for op, row in results.items():
        keras_s = row.get("keras")
        print(
            f"{op:18s} {row['op1'] * 1e3:8.1f}ms {row['op2'] * 1e3:8.1f}ms {row['scan'] * 1e3:8.1f}ms "
            f"{(f'{keras_s * 1e3:8.1f}ms' if keras_s else '       n/a'):>10s}   "
            f"{row['op1'] / copy_s:8.2f}  {(keras_s / row['op1'] if keras_s else float('nan')):9.1f}  "
            f"{row['scan'] / row['op1']:8.1f}  {row['op1'] / row['op2']:7.2f}"
        )
    print("\ntargets: SpikingActivation and Lowpass op1/copy <= 2; keras/op1 >= 20; scan/op1 >= 10")


if __name__ == "__main__":
    main()
