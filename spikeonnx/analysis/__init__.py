"""Framework-independent energy analysis of ONNX graphs.

:class:`GraphEnergy` gives the estimates of KerasSpiking's ``ModelEnergy`` for any
ONNX model (exported from Keras, PyTorch or built by hand) without TensorFlow:
the graph is loaded and shape-inferred, turned into a networkx graph, grouped into
layers, and each op's connections and neuron updates are counted by a stat
function from the registry that :func:`register_op` extends.
"""

from .energy import DEFAULT_DT, GraphEnergy
from .graph import AnalysisGraph, Layer, load_model
from .stats import BATCH, TIME, OpNode, ShapeResolutionError, TensorInfo, register_op

__all__ = [
    "GraphEnergy",
    "register_op",
    "AnalysisGraph",
    "Layer",
    "OpNode",
    "TensorInfo",
    "ShapeResolutionError",
    "load_model",
    "DEFAULT_DT",
    "BATCH",
    "TIME",
]
