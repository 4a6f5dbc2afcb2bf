"""The state of one export, handed to every export handler.

Imports TensorFlow: loaded when a model is exported (``spikeonnx.exporter`` itself
stays light).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import onnx
import tensorflow as tf

from ..contract import STATE_IN_SUFFIX, STATE_OUT_SUFFIX
from .errors import ExportError
from .handlers import find_handler
from .passes import SCOPE_PREFIX, SpikingNode, layer_name

__all__ = ["ExportContext", "StateSlot"]


@dataclass
class StateSlot:
    """A state input/output pair of one spiking layer (``state_io`` or stateful)."""

    layer: Any
    kind: str  # "SpikingActivation" | "Lowpass" | "Alpha"
    shape: Tuple[Optional[int], ...]  # (None, *S) or (None, 2, *S)
    initial: Dict[str, Any]
    tensor_in: Any = None
    tensor_out: Any = None

    @property
    def input_name(self) -> str:
        return f"{self.layer.name}{STATE_IN_SUFFIX}"

    @property
    def output_name(self) -> str:
        return f"{self.layer.name}{STATE_OUT_SUFFIX}"


@dataclass
class ExportContext:
    """State of one export, handed to every export handler.

    Handlers use :meth:`call_layer` to trace a layer through its own handler (or
    as-is), :meth:`call_default` to call a layer in inference mode,
    :meth:`spiking_op` to emit a ``spikeonnx`` node, and :meth:`state_input` /
    :meth:`set_state_output` for streaming state.

    Attributes
    ----------
    state_io : bool
        Whether every spiking layer gets state inputs/outputs.
    default_seed : int
        Seed recorded for spiking layers without one of their own.
    """

    state_io: bool = False
    default_seed: int = 0
    markers: Dict[str, SpikingNode] = field(default_factory=dict)  # marker token -> node
    states: Dict[int, StateSlot] = field(default_factory=dict)  # id(layer) -> slot
    dts: Dict[str, float] = field(default_factory=dict)
    seeds: Dict[str, int] = field(default_factory=dict)
    scopes: Dict[int, Any] = field(default_factory=dict)  # scope index -> Keras layer
    node_names: set = field(default_factory=set)
    # layers being traced, outermost first: a spiking layer inside a nested model is
    # attributed to the nested model, the layer of the exported model it belongs to
    active: List[Any] = field(default_factory=list)

    # -- tracing layers ------------------------------------------------------

    def call_layer(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Trace ``layer`` on ``args`` through its export handler, in a scope of its own."""
        index = len(self.scopes)
        self.scopes[index] = layer
        self.active.append(layer)
        try:
            with tf.name_scope(f"{SCOPE_PREFIX}{index}"):
                return self.call_unscoped(layer, *args, **kwargs)
        finally:
            self.active.pop()

    def call_unscoped(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Trace ``layer`` through its export handler without opening a scope."""
        handler = find_handler(layer)
        if handler is None:
            return self.call_default(layer, *args, **kwargs)
        return handler(layer, self, *args, **kwargs)

    def call_default(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``layer`` (or a Keras operation) as it is, in inference mode."""
        if isinstance(layer, keras.layers.Layer):
            kwargs["training"] = False
        return layer(*args, **kwargs)

    # -- spiking nodes ---------------------------------------------------------

    def unique_node_name(self, name: str) -> str:
        """Return ``name``, suffixed if needed so that node names stay unique."""
        candidate, n = name, 1
        while candidate in self.node_names:
            n += 1
            candidate = f"{name}_{n}"
        self.node_names.add(candidate)
        return candidate

    def spiking_op(
        self,
        op_type: str,
        layer: Any,
        inputs: Sequence[Any],
        attrs: Dict[str, Any],
        output_shapes: Sequence[Sequence[Optional[int]]],
    ) -> List[Any]:
        """Emit a marker that becomes one ``spikeonnx`` node named after ``layer``.

        The marker is a ``tf.numpy_function`` whose token (an attribute TensorFlow
        assigns) identifies the node when tf2onnx converts it.

        Parameters
        ----------
        op_type : str
            ``"SpikingActivation"``, ``"Lowpass"`` or ``"Alpha"``.
        layer : keras.layers.Layer
            The layer the node comes from (its name names the node).
        inputs : sequence of tf.Tensor
            The node inputs, in the order of the op contract; all get the type of
            the first (float32 or float64), as do the outputs.
        attrs : dict
            Node attributes (``dt``, ``time_major``, ``seed``...).
        output_shapes : sequence of shapes
            Static shape of each output (``None`` for unknown dimensions); their
            number is the number of node outputs.

        Returns
        -------
        list of tf.Tensor
            One tensor per output, with the given static shapes.
        """
        shapes = [tuple(s) for s in output_shapes]
        batch_axis = 1 if attrs.get("time_major") else 0
        dtype = tf.float64 if tf.convert_to_tensor(inputs[0]).dtype == tf.float64 else tf.float32

        def stand_in(*arrays: np.ndarray) -> List[np.ndarray]:
            # Only runs if the traced function is executed (shape probing); the
            # numbers are irrelevant there, the shapes must be right: output 0 is
            # shaped like the main input, the others are batch-first states whose
            # other dimensions are static.
            x = arrays[0]
            out = [np.zeros(x.shape, dtype.as_numpy_dtype)]
            for shape in shapes[1:]:
                dims = [x.shape[batch_axis]] + [1 if d is None else int(d) for d in shape[1:]]
                out.append(np.zeros(dims, dtype.as_numpy_dtype))
            return out

        tensors = [tf.cast(tf.convert_to_tensor(t), dtype) for t in inputs]
        outputs = tf.numpy_function(
            stand_in, tensors, [dtype] * len(shapes), stateful=False, name=f"spikeonnx_{op_type}"
        )
        for tensor, shape in zip(outputs, shapes, strict=True):
            tensor.set_shape(shape)
        token = outputs[0].op.get_attr("token")
        token = token.decode() if isinstance(token, bytes) else str(token)
        node_name = self.unique_node_name(layer.name)
        self.markers[token] = SpikingNode(
            op_type=op_type,
            node_name=node_name,
            layer_name=layer_name(self.active[0]) if self.active else layer.name,
            attrs=dict(attrs),
            output_shapes=shapes,
            elem_type=onnx.TensorProto.DOUBLE if dtype == tf.float64 else onnx.TensorProto.FLOAT,
        )
        if "dt" in attrs:
            self.dts[node_name] = float(attrs["dt"])
        if "seed" in attrs and len(tensors) == 1:
            self.seeds[node_name] = int(attrs["seed"])
        return list(outputs)

    # -- state ----------------------------------------------------------------

    def state_input(self, layer: Any) -> Any:
        """Return the graph input carrying ``layer``'s state, or ``None`` if it has none."""
        slot = self.states.get(id(layer))
        return None if slot is None else slot.tensor_in

    def set_state_output(self, layer: Any, tensor: Any) -> None:
        """Declare ``tensor`` as ``layer``'s final state (graph output ``{name}/state_out``)."""
        slot = self.states.get(id(layer))
        if slot is None:
            raise ExportError(f"layer {layer.name!r} has no state input, so it cannot have a state output")
        if slot.tensor_out is not None:
            raise ExportError(
                f"layer {layer.name!r} is called more than once in the model; exporting its "
                "state (state_io=True or stateful=True) needs a single call"
            )
        slot.tensor_out = tensor
