"""Time GraphEnergy's stats pass against plain ONNX shape inference on a ResNet-50.

The ResNet-50 graph (53 convolutions, unfolded batch norms, a 1000-way Gemm,
about 25.6M parameters) is built with onnx.helper. Two variants:

- ``initializers``: the weights as real-size (zero-filled) initializers, as in a
  model file;
- ``weight-inputs``: the weights declared as typed graph inputs, without data.

For each, the best of ``--repeat`` runs of ``GraphEnergy(model)`` (load, shape
inference, networkx graph, grouping, per-op stats) is compared with the best of
``onnx.shape_inference.infer_shapes(model)``; the target is a ratio within 3x.

With example data (``--data``, on by default), the ResNet-50 with real-size
random weights is saved to a temporary file, and two fresh processes each load it
and run it once on the same batch: ``GraphEnergy(path, data)`` (analysis plus the
rate run) and a plain ``onnxruntime.InferenceSession(path).run``. Each reports its
wall time and its peak resident memory (``resource.getrusage(RUSAGE_SELF)`` of the
child, read back through ``RUSAGE_CHILDREN``); the targets are <= 1.5x the time and
<= 1.3x the peak memory of the plain session.

Run: ``python benchmarks/bench_analyzer.py [--repeat N] [--batch B] [--no-data]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, List, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    """Accumulates nodes and weights of the ResNet graph."""

    def __init__(self, weights_as_inputs: bool) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.weight_inputs: List[onnx.ValueInfoProto] = []
        self.weights_as_inputs = weights_as_inputs
        self.params = 0
        self.convs = 0
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def weight(self, prefix: str, shape: Tuple[int, ...]) -> str:
        name = self._name(prefix)
        self.params += int(np.prod(shape))
        if self.weights_as_inputs:
            self.weight_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        else:
            self.inits.append(numpy_helper.from_array(np.zeros(shape, np.float32), name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        w = self.weight("W", (c_out, c_in, k, k))
        y = self._name("conv")
        self.nodes.append(helper.make_node("Conv", [x, w], [y], name=y, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[k // 2] * 4))
        self.convs += 1
        return self.bn(y, c_out)

    def bn(self, x: str, c: int) -> str:
        params = [self.weight(p, (c,)) for p in ("scale", "bias", "mean", "var")]
        y = self._name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [x, *params], [y], name=y))
        return y

    def op(self, op_type: str, inputs: List[str], **attrs) -> str:
        y = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [y], name=y, **attrs))
        return y


def resnet50(weights_as_inputs: bool, batch: int = 1) -> Tuple[onnx.ModelProto, int, int]:
    """The ResNet-50 graph; returns (model, parameter count, conv count)."""
    b = _Builder(weights_as_inputs)
    x = b.op("Relu", [b.conv("image", 3, 64, 7, stride=2)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            c_out = 4 * width
            h = b.op("Relu", [b.conv(x, c_in, width, 1)])
            h = b.op("Relu", [b.conv(h, width, width, 3, stride)])
            h = b.conv(h, width, c_out, 1)
            shortcut = b.conv(x, c_in, c_out, 1, stride) if block == 0 else x
            x = b.op("Relu", [b.op("Add", [h, shortcut])])
            c_in = c_out
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    fc_w = b.weight("fc_W", (1000, 2048))
    fc_b = b.weight("fc_b", (1000,))
    logits = b.op("Gemm", [x, fc_w, fc_b], transB=1)
    graph = helper.make_graph(
        b.nodes, "resnet50",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 224, 224]), *b.weight_inputs],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [batch, 1000])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model, b.params, b.convs


_PREPARE = r"""
import sys
import numpy as np
import onnx
from onnx import numpy_helper
sys.path.insert(0, sys.argv[1])
from bench_analyzer import resnet50
model, params, _ = resnet50(False, int(sys.argv[4]))
rng = np.random.default_rng(0)
for init in model.graph.initializer:  # real-size random weights, as a trained model has
    arr = rng.standard_normal(tuple(init.dims)).astype(np.float32) * 0.01
    if init.name.startswith(("var", "scale")):  # batch norm: positive variances, unit scales
        arr = np.ones(tuple(init.dims), np.float32)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
onnx.save(model, sys.argv[2])
np.save(sys.argv[3], rng.standard_normal((int(sys.argv[4]), 3, 224, 224)).astype(np.float32))
print(params)
"""

_CHILD = r"""
import json, resource, sys, time, warnings
start = time.perf_counter()
import numpy as np
mode, path, data_path = sys.argv[1:4]
if mode == "plain":
    import onnxruntime as ort
else:
    import onnxruntime as ort  # noqa: F401 (imported by the analysis too)
    from spikeonnx.analysis import GraphEnergy
x = np.load(data_path)
imported = time.perf_counter()
with open("/proc/self/status") as status:  # resident memory once the imports are done
    import_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
if mode == "plain":
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: x})
else:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GraphEnergy(path, x).total_energy("loihi")
done = time.perf_counter()
print(json.dumps({"time": done - imported, "import": imported - start, "import_kb": import_kb,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _child(mode: str, path: str, data_path: str) -> Tuple[float, float, int, int]:
    """Wall time (after imports), import time, peak RSS and RSS after the imports (kB)
    of one fresh process doing ``mode``. The peak is also read through RUSAGE_CHILDREN,
    which must agree."""
    import resource

    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, path, data_path], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # RUSAGE_CHILDREN holds the largest peak of any waited-for child so far
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >= result["peak_kb"]
    return result["time"], result["import"], result["peak_kb"], result["import_kb"]


def bench_example_data(batch: int, repeat: int) -> None:
    """GraphEnergy with example data vs a plain onnxruntime session, in fresh processes.

    Run before this process holds any big model: a child's peak RSS counts the
    memory it shared with its parent at fork time.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "resnet50.onnx")
        data_path = os.path.join(folder, "x.npy")
        here = os.path.dirname(os.path.abspath(__file__))
        prep = subprocess.run([sys.executable, "-c", _PREPARE, here, path, data_path, str(batch)],
                              capture_output=True, text=True)
        if prep.returncode:
            raise RuntimeError(prep.stderr[-3000:])
        params = int(prep.stdout.split()[-1])
        size_mb = os.path.getsize(path) / 2**20
        runs: dict = {"plain": [], "graph": []}
        for _ in range(repeat):
            for mode in ("plain", "graph"):  # interleaved: both see the same machine state
                runs[mode].append(_child(mode, path, data_path))
    best = {mode: (min(r[0] for r in rs), min(r[1] for r in rs), min(r[2] for r in rs) / 1024,
                   min(r[2] - r[3] for r in rs) / 1024)
            for mode, rs in runs.items()}
    (t_plain, i_plain, m_plain, g_plain), (t_graph, i_graph, m_graph, g_graph) = best["plain"], best["graph"]
    print(f"[example data] model file {size_mb:.0f} MB ({params / 1e6:.1f}M params), batch {batch}, "
          f"best of {repeat} fresh processes each")
    print(f"[example data] time after imports: GraphEnergy(path, data) {t_graph:.2f} s | plain onnxruntime "
          f"session create+run {t_plain:.2f} s | ratio {t_graph / t_plain:.2f}x (target <= 1.5x)")
    print(f"[example data] imports: spikeonnx.analysis + onnxruntime {i_graph:.2f} s | onnxruntime {i_plain:.2f} s")
    print(f"[example data] peak RSS: GraphEnergy {m_graph:.0f} MB | plain session {m_plain:.0f} MB | "
          f"ratio {m_graph / m_plain:.2f}x (target <= 1.3x)")
    # The analyzer's imports (onnx, networkx) are a fixed cost whatever the model: the
    # memory the model itself costs is the peak beyond the RSS after the imports.
    print(f"[example data] peak RSS beyond the imports: GraphEnergy {g_graph:.0f} MB | plain session "
          f"{g_plain:.0f} MB | ratio {g_graph / g_plain:.2f}x")


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--no-data", action="store_true", help="skip the example-data comparison")
    args = parser.parse_args()

    if not args.no_data:
        bench_example_data(args.batch, max(1, min(args.repeat, 3)))

    from spikeonnx.analysis import GraphEnergy

    for variant, as_inputs in (("initializers", False), ("weight-inputs", True)):
        model, params, convs = resnet50(as_inputs, args.batch)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every op of the graph has a spec
            # only the image has a batch axis (not the weights declared as inputs)
            axes = {"image": 0}
            energy = GraphEnergy(model, batch_axis=axes)
            t_stats = _best(functools.partial(GraphEnergy, model, batch_axis=axes), args.repeat)
        t_infer = _best(functools.partial(onnx.shape_inference.infer_shapes, model), args.repeat)
        conns = sum(s["connections"] for s in energy.layer_stats.values())
        neurons = sum(s["neurons"] for s in energy.layer_stats.values())
        print(f"[{variant}] {len(model.graph.node)} nodes, {convs} Conv, {params / 1e6:.2f}M params, "
              f"{len(energy.layer_names)} layers, {conns / 1e9:.3f}G connections, {neurons} neurons, "
              f"cpu {energy.total_energy('cpu'):.3e} J/inf")
        print(f"[{variant}] GraphEnergy stats pass {t_stats * 1e3:.1f} ms | onnx infer_shapes "
              f"{t_infer * 1e3:.1f} ms | ratio {t_stats / t_infer:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
