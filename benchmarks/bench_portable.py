"""Portable models: the ops' function bodies in stock onnxruntime vs the op library.

A model exported with functions (the default) runs without our op library: stock
onnxruntime inlines each ``spikeonnx`` node's model-local function (standard ONNX ops, a
``Scan`` over time). This times, in one run and with the same thread settings:

- each single op on a ``(32, 1000, 1024)`` float32 sequence (SpikingActivation with its
  seeded initial voltage, Lowpass and Alpha with tau and level initializers) with the
  library registered, through the function bodies in stock onnxruntime, and as the plain
  ``Scan`` model of ``benchmarks/bench_ops.py`` (hand-written, constants folded in);
- the digits classifier (``spikeonnx.examples.digits``, exported with ``spikeonnx.export``)
  on a batch of sequences, with and without the library.

It prints the times and the ratios (function bodies / library, function bodies / plain
Scan). Usage::

    python benchmarks/bench_portable.py [--batch 32 --steps 1000 --units 1024]
                                        [--threads 0] [--repeats 3] [--opset 17]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

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
    parser.add_argument("--digits-batch", type=int, default=256)
    parser.add_argument("--digits-steps", type=int, default=100)
    args = parser.parse_args(argv)

    shape = (args.batch, args.steps, args.units)
    x = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, intra-op threads {args.threads or 'default'}, "
          f"opset {args.opset}; float32 {shape}; median of {args.repeats}")
    print(f"{'':20s} {'library':>10s} {'functions':>10s} {'plain Scan':>10s} {'fn/lib':>8s} {'fn/Scan':>8s}")
    for op in OP_TYPES:
        model = op_model(op, shape, args.opset)
        lib = time_model(model, {"x": x}, args.threads, True, args.repeats)
        fn = time_model(model, {"x": x}, args.threads, False, args.repeats)
        scan = time_model(bench_ops.scan_model(op, shape), {"x": x}, args.threads, False, args.repeats)
        print(f"{op:20s} {lib:9.3f}s {fn:9.3f}s {scan:9.3f}s {fn / lib:7.1f}x {fn / scan:7.2f}x")

    model = digits_model(args.opset)
    name = model.graph.input[0].name
    xd = np.random.default_rng(1).uniform(0, 1, (args.digits_batch, args.digits_steps, 64)).astype(np.float32)
    lib = time_model(model, {name: xd}, args.threads, True, args.repeats)
    fn = time_model(model, {name: xd}, args.threads, False, args.repeats)
    print(f"{'digits classifier':20s} {lib:9.3f}s {fn:9.3f}s {'':>10s} {fn / lib:7.1f}x"
          f"   (batch {args.digits_batch}, {args.digits_steps} steps)")
    print("fn/lib: how much slower the portable function bodies are than the op library; "
          "fn/Scan: against the plain hand-written Scan (< 1: the bodies are faster).")


if __name__ == "__main__":
    main()
