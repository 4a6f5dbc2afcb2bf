"""Speed of the compiled spikeonnx ops against the alternatives.

For each op on a (32, 1000, 1024) float32 sequence this times, in one run:

- the custom op in onnxruntime with 1 and with 2 intra-op threads, and with onnxruntime's
  default intra-op thread count (``intra_op_num_threads = 0``: onnxruntime chooses, one
  thread per physical core), always through IOBinding into a preallocated output, so that
  the figure is the kernel, not Python copies;
- the same recurrence written with standard ONNX ops (a ``Scan`` over time) in
  onnxruntime, with 1 thread and with the default thread count;
- the ``keras_layers`` layer's ``predict`` (TensorFlow backend, TensorFlow's default
  threads);
- ``numpy.copyto`` of the same bytes (one thread), the floor any streaming kernel must pay.

It then prints, from the numbers of this run, whether each target of the speed issue is met.

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
    # Only the constants this body reads (unused initializers make onnxruntime warn).
    used = {name for node in nodes for name in node.input}
    body_inits = [helper.make_tensor(k, f, [], [float(v)]) for k, v in consts.items() if k in used]
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
    """Session with ``threads`` intra-op threads (0: onnxruntime's default)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
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
        # 0 = onnxruntime's default intra-op thread count.
        for threads, key in ((1, "op1"), (2, "op2"), (0, "opD")):
            session = _session(custom_model(op, shape), threads, custom=True)
            row[key] = _timeit(_bound_runner(session, x, out), args.repeats)
        for threads, key in ((1, "scan1"), (0, "scanD")):
            scan = _session(scan_model(op, shape), threads, custom=False)
            row[key] = _timeit(_bound_runner(scan, x, out), max(1, args.repeats // 2))
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

    _report(results, copy_s, args.steps, keras_steps)


def _report(results: Dict[str, Dict[str, float]], copy_s: float, steps: int, keras_steps: int) -> None:
    """Prints the timing table, the ratios and the verdict on every target."""
    print()
    if keras_steps != steps:
        print(f"Keras timed on T={keras_steps} and scaled x{steps / keras_steps:g} to T={steps}.")
    print("Thread counts: op1 / scan1 = 1 intra-op thread; op2 = 2 threads; opD / scanD = "
          f"onnxruntime's default (intra_op_num_threads=0, one per physical core; os.cpu_count() = "
          f"{os.cpu_count()}); Keras = TensorFlow's default; copy = numpy, 1 thread.")
    print(f"{'op':18s} {'op1':>9s} {'op2':>9s} {'opD':>9s} {'scan1':>9s} {'scanD':>9s} {'Keras':>9s}")
    for op, row in results.items():
        keras_s = row.get("keras")
        cells = [row[k] for k in ("op1", "op2", "opD", "scan1", "scanD")] + [keras_s]
        print(f"{op:18s} " + " ".join(f"{c * 1e3:7.1f}ms" if c else "      n/a" for c in cells))
    print()
    print(f"{'op':18s} {'op1/copy':>9s} {'keras/op1':>10s} {'scan1/op1':>10s} {'scanD/opD':>10s} {'op1/op2':>8s}")
    for op, row in results.items():
        keras_s = row.get("keras")
        print(f"{op:18s} {row['op1'] / copy_s:9.2f} {(keras_s / row['op1'] if keras_s else float('nan')):10.1f} "
              f"{row['scan1'] / row['op1']:10.1f} {row['scanD'] / row['opD']:10.1f} {row['op1'] / row['op2']:8.2f}")

    print("\nTargets (from this run's numbers):")

    def verdict(name: str, ok: Optional[bool], detail: str) -> None:
        state = "n/a (not measured)" if ok is None else ("MET" if ok else "NOT MET")
        print(f"  {name:64s} {state:8s} {detail}")

    for op in ("SpikingActivation", "Lowpass"):
        if op in results:
            ratio = results[op]["op1"] / copy_s
            verdict(f"{op}: 1 thread within 2x of numpy.copyto", ratio <= 2, f"op1/copy = {ratio:.2f}")
    for op, row in results.items():
        keras_s = row.get("keras")
        verdict(f"{op}: >= 20x faster than Keras (op at 1 thread)",
                None if keras_s is None else keras_s / row["op1"] >= 20,
                f"keras/op1 = {keras_s / row['op1']:.1f}" if keras_s else "")
    for op, row in results.items():
        ratio = row["scan1"] / row["op1"]
        verdict(f"{op}: >= 10x faster than Scan, both 1 thread", ratio >= 10, f"scan1/op1 = {ratio:.1f}")
    for op, row in results.items():
        ratio = row["scanD"] / row["opD"]
        verdict(f"{op}: >= 10x faster than Scan, both default threads", ratio >= 10, f"scanD/opD = {ratio:.1f}")

if __name__ == "__main__":
    main()
