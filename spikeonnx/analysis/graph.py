"""An analysed ONNX model: the passes of :mod:`.passes` run in order, read back.

:func:`analyze` runs load -> infer shapes -> count nodes -> group layers and
returns the networkx graph carrying every result; :class:`AnalysisGraph` wraps it
with read-only accessors (layers by name, tensors, the ``OpNode`` view of a node)
for :class:`~.energy.GraphEnergy` and for users who want more than the table.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Mapping, Optional, Union

import networkx as nx
import numpy as np
import onnx

from .. import contract
from .passes import (
    AxisSpec,
    Layer,
    ModelLike,
    constant,
    count_nodes,
    group_layers,
    infer_shapes,
    is_constant,
    load,
    propagate_axes,
)
from .passes import op_node as _op_node
from .stats import OpNode, TensorInfo

__all__ = ["ModelLike", "AxisSpec", "Layer", "AnalysisGraph", "analyze"]


def analyze(
    model: ModelLike, *, batch_axis: AxisSpec = 0, time_axis: AxisSpec = None,
    feeds: Optional[Mapping[str, np.ndarray]] = None,
) -> nx.MultiDiGraph:
    """Run the analysis passes on ``model`` (see :mod:`.passes`) and return the graph.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model.
    batch_axis, time_axis : int, dict or None
        Batch/time axis of the graph inputs, see :func:`.passes.load`.
    feeds : dict, optional
        Example data (input name -> array), used for shapes nothing else resolves.
    """
    G = load(model, batch_axis=batch_axis, time_axis=time_axis)
    infer_shapes(G, feeds=feeds)
    propagate_axes(G)
    count_nodes(G)
    group_layers(G)
    return G


class AnalysisGraph:
    """An ONNX model prepared for analysis: shapes, networkx graph, layers and stats.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model.
    batch_axis : int, dict or None
        Batch axis of the graph inputs (one int for all, or input name -> axis; None
        for no batch axis). Axes in the exporter's metadata take precedence.
    time_axis : int, dict or None
        Time axis of the graph inputs, as ``batch_axis``. When no time axis is known
        (neither given nor in the metadata), an unknown size right after the batch
        axis is taken as time, as Keras' ``ModelEnergy`` does.
    feeds : dict or callable, optional
        Example data (input name -> array), or a function of the loaded graph
        returning it; used for shapes nothing else resolves (kept as ``feeds``).

    Attributes
    ----------
    graph : networkx.MultiDiGraph
        The graph with every pass's results (see :mod:`.passes`).

    Raises
    ------
    FileNotFoundError, ValueError
        For a missing or invalid file, an inconsistent graph (undefined tensors,
        cycles), or failed shape inference.
    """

    def __init__(
        self, model: ModelLike, *, batch_axis: AxisSpec = 0, time_axis: AxisSpec = None,
        feeds: Union[None, Mapping[str, np.ndarray], Callable[["AnalysisGraph"], Mapping[str, np.ndarray]]] = None,
    ) -> None:
        self.graph = load(model, batch_axis=batch_axis, time_axis=time_axis)
        # example data is checked against the loaded inputs, then used for shapes
        # nothing else resolves (see infer_shapes)
        self.feeds = feeds(self) if callable(feeds) else feeds
        infer_shapes(self.graph, feeds=self.feeds)
        propagate_axes(self.graph)
        count_nodes(self.graph)
        group_layers(self.graph)

    # --- what the passes stored ---------------------------------------------------
    @property
    def model(self) -> onnx.ModelProto:
        """The (loaded copy of the) model."""
        return self.graph.graph["model"]

    @property
    def label(self) -> str:
        """How error messages name the model (its path, or ``<model ...>``)."""
        return self.graph.graph["label"]

    @property
    def metadata(self) -> contract.Metadata:
        """The model's ``spikeonnx.*`` metadata."""
        return self.graph.graph["metadata"]

    @property
    def input_names(self) -> List[str]:
        """Graph inputs that are not initializers."""
        return self.graph.graph["inputs"]

    @property
    def state_inputs(self) -> List[str]:
        """State inputs of an exported model (optional in example data)."""
        return self.graph.graph["state_inputs"]

    @property
    def batch_axes(self) -> Dict[str, Optional[int]]:
        """Graph input -> batch axis."""
        return self.graph.graph["batch_axes"]

    @property
    def tensors(self) -> Mapping[str, TensorInfo]:
        """Tensor name -> inferred :class:`~.stats.TensorInfo`."""
        return self.graph.graph["tensors"]

    @property
    def layers(self) -> List[Layer]:
        """The layers, inputs first, then in topological order."""
        return self.graph.graph["layers"]

    @property
    def unknown_ops(self) -> Dict[str, List[str]]:
        """Op key -> labels of the nodes nothing could count."""
        return self.graph.graph["unknown_ops"]

    def layer(self, name: str) -> Layer:
        """The layer called ``name``; raises ValueError naming the known layers."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {', '.join(layer.name for layer in self.layers)}")

    def op_node(self, label: str) -> OpNode:
        """The :class:`~.stats.OpNode` view of one node, as stat functions see it."""
        return _op_node(self.graph, label)

    def constant(self, name: str) -> Optional[np.ndarray]:
        """Value of a constant tensor (initializer or ``Constant`` output), else None."""
        return constant(self.graph, name)

    def is_constant(self, name: str) -> bool:
        """True for initializers and ``Constant`` outputs."""
        return is_constant(self.graph, name)

    def warn_unknown(self) -> None:
        """Warn once per op type nothing could count (they count nothing)."""
        for key, labels in self.unknown_ops.items():
            shown = ", ".join(repr(x) for x in labels[:3]) + (" ..." if len(labels) > 3 else "")
            warnings.warn(
                f"Cannot compute stats for op type '{key}' ({len(labels)} node(s): {shown}); "
                "counting nothing for it. Use spikeonnx.register_op to register it.",
                stacklevel=3,
            )
