"""Portable models: the ops' function bodies in stock onnxruntime vs the op library.

A model exported with functions (the default) runs without our op library: stock
onnxruntime inlines each ``spikeonnx`` node's model-local function (standard ONNX ops, a
``Scan`` over time). This times, in one run and with the same thread settings:

- each single op on a ``(32, 1000, 1024)`` float32 sequence (SpikingActivation with its
  seeded initial voltage, Lowpass and Alpha with tau and level initializers) with the
  library registered, through the function bodies in stock onnxruntime, as the plain
  ``Scan`` model of ``benchmarks/bench_ops.py`` (hand-written, constants folded in), and as
  the plain tf2onnx ``Loop``: what a user gets converting the ``keras_layers`` layer with
  tf2onnx alone, no spikeonnx handler (Keras's RNN while-loop becomes an ONNX ``Loop``);
- the digits classifier (``spikeonnx.examples.digits``, exported with ``spikeonnx.export``)
  on a batch of sequences, with and without the library.

It prints the times and the ratios (function bodies / library, function bodies / plain
Scan, function bodies / tf2onnx Loop, library / tf2onnx Loop), and how far the Loop's
output is from the library's. The tf2onnx conversion runs in a child process so that
TensorFlow's thread pools never share this process with the timed sessions. Usage::

    python benchmarks/bench_portable.py [--batch 32 --steps 1000 --units 1024]
                                        [--threads 0] [--repeats 3] [--opset 17]
                                        [--loop-steps 0] [--skip-loop]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops  # noqa: E402  (the plain Scan models)

from spikeonnx.contract import DOMAIN, MAX_IR_VERSION, OP_TYPES  # noqa: E402
from spikeonnx.functions import attach_functions  # noqa: E402
from spikeonnx.ops import library_path  # noqa: E402

DT = bench_ops.DT
TAU = bench_ops.TAU


def _timeit(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in seconds after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def op_model(op: str, shape, opset: int) -> onnx.ModelProto:
    """One node of ``op`` as an exported model has it, with its function attached."""
    units = shape[2:]
    inputs, inits = ["x"], []
    if op != "SpikingActivation":
        inits = [numpy_helper.from_array(np.full(units, TAU, np.float32), "tau"),
                 numpy_helper.from_array(np.zeros(units, np.float32), "level")]
        inputs += ["tau", "level"]
        attrs = dict(dt=DT)
    else:
        attrs = dict(dt=DT, seed=1)  # the seeded initial voltage is part of the body
    node = helper.make_node(op, inputs, ["y"], domain=DOMAIN, name=op, **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = MAX_IR_VERSION
    return attach_functions(model)


def session(model: onnx.ModelProto, threads: int, library: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if library:
        options.register_custom_ops_library(library_path())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def time_model(model: onnx.ModelProto, feeds: Dict[str, np.ndarray], threads: int, library: bool,
               repeats: int) -> float:
    sess = session(model, threads, library)
    return _timeit(lambda: sess.run(None, feeds), repeats)


def _convert_loop(op: str, shape: Tuple[int, ...], opset: int) -> Union[bytes, str]:
    """Plain tf2onnx conversion of the ``keras_layers`` layer alone (runs in a child process).

    The layer gets the same parameters as :func:`op_model` (linear SpikingActivation with
    ``seed=1``; tau ``TAU``, level 0), a fixed batch and no spikeonnx handler. Returns the
    serialized model, or the reason the conversion failed.
    """
    try:
        import keras
        import tensorflow as tf
        import tf2onnx

        import keras_layers

        if op == "SpikingActivation":
            layer = keras_layers.SpikingActivation("linear", dt=DT, seed=1)
        else:
            layer = getattr(keras_layers, op)(tau_initializer=TAU, dt=DT)
        inp = keras.Input(shape[1:], batch_size=shape[0])
        model = keras.Model(inp, layer(inp))
        # Keras 3 models go through a tf.function with a fixed signature (from_keras wants Keras 2)
        fn = tf.function(lambda x: model(x, training=False))
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=[tf.TensorSpec(shape, tf.float32, name="x")], opset=opset)
    except Exception as error:  # noqa: BLE001  (any failure is the answer: reported, not raised)
        return f"{type(error).__name__}: {error}"
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    return proto.SerializeToString()


def _op_types(graph: onnx.GraphProto) -> Dict[Tuple[str, str], int]:
    """``(domain, op_type)`` counts over ``graph`` and its subgraphs (a Loop's body)."""
    counts: Dict[Tuple[str, str], int] = {}
    for node in graph.node:
        key = (node.domain or "", node.op_type)
        counts[key] = counts.get(key, 0) + 1
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                for k, n in _op_types(sub).items():
                    counts[k] = counts.get(k, 0) + n
    return counts


def loop_models(shape: Tuple[int, ...], opset: int) -> Dict[str, Union[onnx.ModelProto, str]]:
    """The plain tf2onnx model of each op (or why there is none), converted in a child process."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        converted = {op: pool.apply(_convert_loop, (op, tuple(shape), opset)) for op in OP_TYPES}
    models: Dict[str, Union[onnx.ModelProto, str]] = {}
    for op, result in converted.items():
        if isinstance(result, str):
            models[op] = result
            continue
        model = onnx.load_from_string(result)
        kinds = _op_types(model.graph)
        domains = {d for d, _ in kinds} - {"", "ai.onnx"}
        if domains:  # a plain conversion must not contain any of our (or other custom) nodes
            models[op] = f"tf2onnx produced non-standard domains {sorted(domains)}"
        elif not any(t in ("Loop", "Scan") for _, t in kinds):
            models[op] = "tf2onnx produced no Loop/Scan (unexpected: the layer loops over time)"
        else:
            models[op] = model
    return models


def _difference(ref: np.ndarray, out: np.ndarray, spikes: bool) -> str:
    """How far the Loop's output is from the library's."""
    if ref.shape != out.shape:
        return f"shape {out.shape} != {ref.shape}"
    if spikes:
        return f"{int(np.count_nonzero(ref != out))} spikes differ"
    scale = float(np.max(np.abs(ref))) or 1.0
    return f"max|diff|/max|y| {float(np.max(np.abs(ref - out))) / scale:.1e}"


def digits_model(opset: int) -> onnx.ModelProto:
    import keras

    from spikeonnx import export
    from spikeonnx.examples import digits

    keras.utils.set_random_seed(0)
    return export(digits.build_model(), opset=opset)  # untrained: the speed is the same


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--opset", type=int, default=17, help="default-domain opset (the exporter's default: 17)")
    parser.add_argument("--loop-steps", type=int, default=0,
                        help="time steps for the tf2onnx Loop (scaled linearly to --steps); 0 = full length")
    parser.add_argument("--skip-loop", action="store_true", help="no tf2onnx Loop baseline")
    parser.add_argument("--digits-batch", type=int, default=256)
    parser.add_argument("--digits-steps", type=int, default=100)
    args = parser.parse_args(argv)

    shape = (args.batch, args.steps, args.units)
    x = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, intra-op threads {args.threads or 'default'}, "
          f"opset {args.opset}; float32 {shape}; median of {args.repeats}")
    loop_steps = args.loop_steps if 0 < args.loop_steps < args.steps else args.steps
    loops = {} if args.skip_loop else loop_models((args.batch, loop_steps, args.units), args.opset)
    print(f"{'':20s} {'library':>10s} {'functions':>10s} {'plain Scan':>10s} {'tf2onnx Loop':>12s} "
          f"{'fn/lib':>8s} {'fn/Scan':>8s} {'fn/Loop':>8s} {'lib/Loop':>8s}")
    notes = []
    for op in OP_TYPES:
        model = op_model(op, shape, args.opset)
        lib = time_model(model, {"x": x}, args.threads, True, args.repeats)
        fn = time_model(model, {"x": x}, args.threads, False, args.repeats)
        scan = time_model(bench_ops.scan_model(op, shape), {"x": x}, args.threads, False, args.repeats)
        loop_time, vs_loop = f"{'-':>12s}", ""
        loop = loops.get(op)
        if isinstance(loop, onnx.ModelProto):
            xl = np.ascontiguousarray(x[:, :loop_steps])
            loop_sess = session(loop, args.threads, False)
            feeds = {loop_sess.get_inputs()[0].name: xl}
            seconds = _timeit(lambda: loop_sess.run(None, feeds), args.repeats) * args.steps / loop_steps  # noqa: B023
            ref = session(op_model(op, xl.shape, args.opset), args.threads, True).run(None, {"x": xl})[0]
            out = loop_sess.run(None, feeds)[0]
            kinds = "/".join(sorted({k for _, k in _op_types(loop.graph) if k in ("Loop", "Scan")}))
            notes.append(f"{op}: tf2onnx graph has a {kinds} and no spikeonnx node; its output vs the "
                         f"library's: {_difference(ref, out, op == 'SpikingActivation')}")
            loop_time, vs_loop = f"{seconds:11.3f}s", f" {fn / seconds:7.2f}x {lib / seconds:7.3f}x"
        elif isinstance(loop, str):
            notes.append(f"{op}: plain tf2onnx cannot convert the layer: {loop}")
        print(f"{op:20s} {lib:9.3f}s {fn:9.3f}s {scan:9.3f}s {loop_time} {fn / lib:7.1f}x {fn / scan:7.2f}x{vs_loop}")
    for note in notes:
        print("  " + note)
    if loops and loop_steps != args.steps:
        print(f"  tf2onnx Loop timed on T={loop_steps} and scaled x{args.steps / loop_steps:g} to T={args.steps}.")

    model = digits_model(args.opset)
    name = model.graph.input[0].name
    xd = np.random.default_rng(1).uniform(0, 1, (args.digits_batch, args.digits_steps, 64)).astype(np.float32)
    lib = time_model(model, {name: xd}, args.threads, True, args.repeats)
    fn = time_model(model, {name: xd}, args.threads, False, args.repeats)
    print(f"{'digits classifier':20s} {lib:9.3f}s {fn:9.3f}s {'':>10s} {'':>12s} {fn / lib:7.1f}x"
          f"   (batch {args.digits_batch}, {args.digits_steps} steps)")
    print("fn/lib: how much slower the portable function bodies are than the op library; "
          "fn/Scan: against the plain hand-written Scan (< 1: the bodies are faster); fn/Loop, lib/Loop: "
          "the bodies and the library against the plain tf2onnx Loop of the Keras layer (< 1: faster).")


if __name__ == "__main__":
    main()
