"""Framework-independent energy analysis of ONNX graphs.

:class:`GraphEnergy` gives the estimates of KerasSpiking's ``ModelEnergy`` for any
ONNX model (exported from Keras, PyTorch or built by hand) without TensorFlow.
The analysis is a chain of passes over a networkx graph (:mod:`.passes`: load,
infer shapes, count nodes, group into layers; :mod:`.rates`: input rates), and
everything about an op (its role and its stat function) is one spec in the op
registry of :mod:`.stats`, which :func:`register_op` extends.
"""

from .energy import DEFAULT_DT, GraphEnergy
from .graph import AnalysisGraph, Layer, analyze
from .stats import BATCH, TIME, OpNode, OpSpec, ShapeResolutionError, TensorInfo, register_op

__all__ = [
    "GraphEnergy",
    "register_op",
    "analyze",
    "AnalysisGraph",
    "Layer",
    "OpNode",
    "OpSpec",
    "TensorInfo",
    "ShapeResolutionError",
    "DEFAULT_DT",
    "BATCH",
    "TIME",
]
