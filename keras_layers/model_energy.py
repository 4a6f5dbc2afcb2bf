"""Estimate the energy a Keras model would use on various devices.

`ModelEnergy` walks the layer graph of a Keras 3 functional or Sequential model and
computes, for every application ("node") of every layer, two statistics:

- ``connections``: the number of synaptic connections from input elements to output
  units; each incoming event (spike, or input value on a non-spiking device) costs
  one synaptic operation per connection.
- ``neurons``: the number of neuron updates the layer performs per timestep.

Those statistics, combined with the per-operation energies of a device from the
shared table in :mod:`spikeonnx.devices` (and, for spiking devices, the average input
firing rates measured on example data), give an energy estimate per inference. The
energy formula and the summary table come from :mod:`spikeonnx.energy`, shared with
the ONNX analyzer ``spikeonnx.analysis.GraphEnergy``.

Per-layer statistics come from handler functions registered per layer class with
`ModelEnergy.register_layer`; a handler receives a `LayerNode` (one call of the layer,
with its input and output shapes) and returns a dict of statistics.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from spikeonnx import devices as _devices
from spikeonnx import energy as _energy
from spikeonnx.registry import Registry

from . import config
from .layers import SpikingActivation, SpikingActivationCell

__all__ = [
    "ModelEnergy",
    "LayerNode",
    "layer_stats",
    "free_stats",
    "act_stats",
    "dense_stats",
    "conv_stats",
    "spikingactivation_stats",
    "timedistributed_stats",
    "rnn_stats",
    "model_stats",
]

Shape = Tuple[Optional[int], ...]
StatsFn = Callable[["LayerNode"], Dict[str, Any]]



def _as_shape(shape: Any) -> Shape:
    """Convert a Keras/TF shape to a plain tuple of ints and Nones."""
    return tuple(None if d is None else int(d) for d in shape)


class LayerNode:
    """One application of a layer, as seen by a statistics handler.

    Shapes follow the Keras 2 convention used by KerasSpiking handlers: a layer called
    on one tensor has ``input_shapes`` equal to that tensor's shape tuple (batch axis
    first), a layer called on several tensors has a list of shape tuples; likewise for
    ``output_shapes``.

    Parameters
    ----------
    layer : keras.layers.Layer
        The layer that was applied.
    input_shapes : tuple or list of tuple
        Shape(s) of the input tensor(s), including the batch axis.
    output_shapes : tuple or list of tuple
        Shape(s) of the output tensor(s), including the batch axis.
    keras_node : keras Node, optional
        The Keras graph node this describes, if any (None for nodes synthesised by
        handlers, e.g. the wrapped layer of ``TimeDistributed``).
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        input_shapes: Union[Shape, List[Shape]],
        output_shapes: Union[Shape, List[Shape]],
        keras_node: Any = None,
    ) -> None:
        self.layer = layer
        self.input_shapes = input_shapes
        self.output_shapes = output_shapes
        self.keras_node = keras_node

    @classmethod
    def from_keras_node(cls, node: Any) -> "LayerNode":
        """Describe a Keras 3 graph node (an entry of ``layer._inbound_nodes``)."""
        inputs = list(node.input_tensors)
        outputs = list(node.output_tensors)

        def shapes(tensors: Sequence[Any]) -> Union[Shape, List[Shape]]:
            converted = [_as_shape(t.shape) for t in tensors]
            return converted[0] if len(converted) == 1 else converted

        return cls(node.operation, shapes(inputs), shapes(outputs), keras_node=node)

    @property
    def operation(self) -> keras.layers.Layer:
        """Alias of `layer` (the Keras 3 name)."""
        return self.layer

    @property
    def input_tensors(self) -> List[Any]:
        """Symbolic input tensors of the Keras node (empty for synthesised nodes)."""
        return [] if self.keras_node is None else list(self.keras_node.input_tensors)

    @property
    def output_tensors(self) -> List[Any]:
        """Symbolic output tensors of the Keras node (empty for synthesised nodes)."""
        return [] if self.keras_node is None else list(self.keras_node.output_tensors)

    def __repr__(self) -> str:
        return (
            f"LayerNode(layer={self.layer.name!r}, input_shapes={self.input_shapes}, "
            f"output_shapes={self.output_shapes})"
        )


class _DeviceView(Mapping):
    """Read-only view of the shared device table in the KerasSpiking dict format."""

    def __getitem__(self, name: str) -> Dict[str, Any]:
        try:
            device = _devices.get_device(name)
        except ValueError as err:
            raise KeyError(str(err)) from None
        return {
            "spiking": device.spiking,
            "energy_per_synop": device.energy_per_synop,
            "energy_per_neuron": device.energy_per_neuron,
        }

    def __iter__(self) -> Iterator[str]:
        return iter(list(_devices.DEVICES))

    def __len__(self) -> int:
        return len(_devices.DEVICES)

    def __repr__(self) -> str:
        return f"ModelEnergy.devices({sorted(self)})"


def _model_graph(model: Any) -> Any:
    """Return the Functional graph behind a functional or Sequential model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"ModelEnergy needs a keras.Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        # A built Sequential model keeps an equivalent functional model internally.
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no known input shape yet; start it "
                "with keras.Input(...) or call model.build(input_shape) first"
            )
        return graph
    if getattr(model, "_nodes_by_depth", None) is None:
        raise ValueError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed model without "
            "a layer graph; ModelEnergy supports functional and Sequential models"
        )
    return model


class ModelEnergy(_energy.EnergyEstimator):
    """Compute statistics and device energy estimates for a Keras model.

    For every layer the estimator counts

    - "connections": connections from all input elements to all output units. The
      synaptic operations per second ("synops") are this number times the average
      firing rate of the layer's input.
    - "neurons": neuron updates per timestep. Neuron updates per inference are this
      number times the timesteps per inference.

    With a device's energy per synaptic operation and per neuron update these give an
    energy per inference. Devices come from the table shared with the ONNX analyzer
    (:mod:`spikeonnx.devices`); the built-in ones are "cpu", "gpu", "arm" (non-spiking,
    one MAC per operation), "loihi", "spinnaker" and "spinnaker2" (spiking). Add more
    with `register_device`.

    On a non-spiking device the model is assumed to run as an ordinary ANN: a single
    timestep per inference in which every connection is computed once (an input rate
    of one event per timestep), so the estimate does not depend on ``example_data`` or
    ``timesteps_per_inference``. On a spiking device the model is assumed to be fully
    converted to an event-based implementation (even its non-spiking activations),
    so each connection costs one operation per input event; the input event rate of
    each layer is the mean absolute value of its input on ``example_data``.

    These are rough estimates: device figures are published per-operation energies,
    and overheads such as moving data on and off the device are ignored.

    The energy formula, `total_energy`, `summary` and `summary_string` are those of
    :class:`spikeonnx.energy.EnergyEstimator`, shared with the ONNX analyzer
    ``spikeonnx.analysis.GraphEnergy``.

    Parameters
    ----------
    model : keras.Model
        A functional or (built) Sequential model.
    example_data : array_like, optional
        Input passed to ``predict`` of a sub-model that exposes each layer's inputs,
        to measure the average input firing rate of each layer. Needed for spiking
        devices; non-spiking devices do not use it.

    Raises
    ------
    TypeError
        If ``model`` is not a Keras model.
    ValueError
        If the model has no layer graph (subclassed or unbuilt Sequential model), or a
        layer's statistics cannot be computed (e.g. undefined shapes).

    Examples
    --------
    >>> inp = keras.Input((784,), name="pixels")
    >>> model = keras.Model(inp, keras.layers.Dense(128, activation="relu", name="dense")(inp))
    >>> ModelEnergy(model).summary(line_length=80)  # doctest: +NORMALIZE_WHITESPACE
    Layer (type)       |Output shape|Param #|Conn #|Neuron #|J/inf (cpu)
    -------------------|------------|-------|------|--------|-----------
    pixels (InputLayer)| (None, 784)|      0|     0|       0|          0
    dense (Dense)      | (None, 128)| 100480|100352|     128|    0.00086
    ====================================================================
    Total energy per inference [Joules/inf] (cpu): 8.64e-04
    * ...
    """

    #: Registered statistics handlers, by layer class (looked up along the MRO).
    layer_stats_computers: "Registry[StatsFn]" = Registry(
        "stats handler",
        overwrite_message=lambda cls: (
            f"Layer '{cls.__name__}' already registered. Overwriting. Pass replace=True to "
            "register_layer when replacing its stats handler on purpose, to do it silently"
        ),
    )

    #: The shared device table, in the KerasSpiking ``{"spiking", "energy_per_synop",
    #: "energy_per_neuron"}`` dict format (read-only; use `register_device`).
    devices: Mapping = _DeviceView()

    def __init__(self, model: keras.Model, example_data: Any = None) -> None:
        self.model = model
        self.example_data = example_data
        self._graph = _model_graph(model)
        model_nodes = {id(n) for nodes in self._graph._nodes_by_depth.values() for n in nodes}

        # Only the calls that belong to this model count (a layer may also be used in
        # other models); model.layers gives the rows (Sequential hides its InputLayer).
        self.layers: List[keras.layers.Layer] = list(model.layers)
        self.layer_nodes: Dict[keras.layers.Layer, List[Any]] = {
            layer: [n for n in layer._inbound_nodes if id(n) in model_nodes] for layer in self.layers
        }

        self.node_stats: Dict[Any, Dict[str, Any]] = {}
        self.layer_stats: Dict[keras.layers.Layer, Dict[str, Any]] = {}
        for layer in self.layers:
            for node in self.layer_nodes[layer]:
                self.node_stats[node] = self.compute_layer_stats(layer, node=node)
            self.layer_stats[layer] = _energy.sum_stats(self.node_stats[n] for n in self.layer_nodes[layer])

        self.node_rates: Dict[Any, float] = {}
        self.layer_rates: Dict[keras.layers.Layer, float] = {}
        if example_data is not None:
            self._compute_rates()
        # the rows handed to spikeonnx.energy, which does the energy and the table
        self._records = {layer: self._make_record(layer) for layer in self.layers}

    def _make_record(self, layer: keras.layers.Layer) -> _energy.LayerRecord:
        """The core's row of one layer: one connection count and rate per call."""
        nodes = self.layer_nodes[layer]
        measured = self.example_data is not None
        return _energy.LayerRecord(
            name=layer.name,
            kind=type(layer).__name__,
            output_shape=self._output_shape_string(layer),
            params=layer.count_params(),
            connections=tuple(self.node_stats[node].get("connections", 0) for node in nodes),
            neurons=self.layer_stats[layer]["neurons"],
            spiking=self.layer_stats[layer]["spiking"],
            rates=tuple(self.node_rates[node] for node in nodes) if measured else None,
            rate=self.layer_rates.get(layer),
        )

    # ------------------------------------------------------------------ statistics

    @classmethod
    def compute_layer_stats(cls, layer: keras.layers.Layer, node: Any = None) -> Dict[str, Any]:
        """Compute the statistics of one application of a layer.

        The handler registered for the nearest class in ``type(layer).__mro__`` is
        used (so subclasses inherit their parent's handler).

        Parameters
        ----------
        layer : keras.layers.Layer
            The layer.
        node : LayerNode or keras Node, optional
            The application to describe; defaults to the layer's first call.

        Returns
        -------
        dict
            Some of "connections" (int), "neurons" (int), "spiking" (bool), as
            returned by the handler.

        Raises
        ------
        ValueError
            If no handler applies, the layer was never called, or the handler returns
            an unknown key or an invalid value.

        Examples
        --------
        >>> inp = keras.Input([None, 10])
        >>> layer = keras.layers.TimeDistributed(keras.layers.Dense(5, "relu"))
        >>> model = keras.Model(inp, [layer(inp)])
        >>> ModelEnergy.compute_layer_stats(layer)
        {'connections': 50, 'neurons': 5, 'spiking': False}
        """
        handler = cls.layer_stats_computers.find(type(layer))
        if handler is None:
            raise ValueError(
                f"Cannot compute stats for layer of type '{type(layer).__name__}'. No stats handler "
                f"is registered for it or its base classes ({layer!r}); add one with "
                "ModelEnergy.register_layer"
            )

        if node is None:
            if not layer._inbound_nodes:
                raise ValueError(
                    f"Layer {layer.name} has never been applied to any inputs, so its stats are "
                    f"undefined. Layer {layer.name!r} has never been called on an input: build "
                    "the model (call it on keras.Input) first"
                )
            node = layer._inbound_nodes[0]
        if not isinstance(node, LayerNode):
            node = LayerNode.from_keras_node(node)

        source = f"stats handler {getattr(handler, '__name__', handler)!r} for layer {layer.name!r}"
        return _energy.check_stats(handler(node), source)

    @classmethod
    def register_layer(cls, layer_class: type, *, replace: bool = False) -> Callable[[StatsFn], StatsFn]:
        """Decorator registering a statistics handler for a layer class.

        The decorated function receives a `LayerNode` (the layer, its input and
        output shapes) and returns a dict with any of

        - "connections": connections from all input elements to all output units
          (default 0);
        - "neurons": neuron updates per timestep (default 0);
        - "spiking": whether the layer could run on a spiking device as it is (e.g.
          ``keras.layers.ReLU`` is not, since a rate nonlinearity is not spiking;
          default True).

        The handler also applies to subclasses of ``layer_class`` that have no handler
        of their own.

        Parameters
        ----------
        layer_class : type
            The layer class handled.
        replace : bool
            Replace an existing handler of ``layer_class`` silently (otherwise a
            warning says so).

        Returns
        -------
        callable
            The decorator; it returns the function unchanged.

        Examples
        --------
        Count one synaptic operation per output element of ``UpSampling2D``:

        >>> @ModelEnergy.register_layer(keras.layers.UpSampling2D)
        ... def upsampling2d_stats(node):
        ...     return {"connections": int(np.prod(node.output_shapes[1:])), "neurons": 0}
        >>> inp = keras.Input((4, 4, 3))
        >>> layer = keras.layers.UpSampling2D(size=(2, 2))
        >>> model = keras.Model(inp, layer(inp))
        >>> ModelEnergy.compute_layer_stats(layer)  # 8 * 8 * 3 outputs
        {'connections': 192, 'neurons': 0}
        """
        if not isinstance(layer_class, type):
            raise TypeError(f"register_layer needs a layer class, got {layer_class!r}")

        def register(stats_fn: StatsFn) -> StatsFn:
            if not callable(stats_fn):
                raise TypeError(f"stats handler must be callable, got {stats_fn!r}")
            cls.layer_stats_computers.register(layer_class, stats_fn, replace=replace)
            return stats_fn

        return register

    @classmethod
    def register_device(
        cls,
        device_name: str,
        energy_per_synop: float,
        energy_per_neuron: float,
        spiking: bool,
        *,
        replace: bool = False,
    ) -> None:
        """Add a device (or replace one) in the shared device table.

        The table is :data:`spikeonnx.devices.DEVICES`, so the device is also known to
        the ONNX energy analyzer and the command line.

        Parameters
        ----------
        device_name : str
            The name used to refer to the device.
        energy_per_synop : float
            Energy (J) of one synaptic operation on the device.
        energy_per_neuron : float
            Energy (J) of one neuron update on the device.
        spiking : bool
            Whether the device is event-based, i.e. only does synaptic work for
            incoming spikes rather than for every connection on every timestep.
        replace : bool
            Replace an existing device silently (otherwise a warning says so).
        """
        _devices.register_device(device_name, energy_per_synop, energy_per_neuron, spiking, replace=replace)

    # ----------------------------------------------------------------- firing rates

    def _compute_rates(self) -> None:
        """Measure the mean absolute input of every layer call on ``example_data``."""
        node_tensors: Dict[Any, List[Any]] = {}
        unique: Dict[int, Any] = {}
        for layer in self.layers:
            for node in self.layer_nodes[layer]:
                # An input layer has no inputs; its "input" is the data it emits.
                tensors = list(node.input_tensors) or list(node.output_tensors)
                node_tensors[node] = tensors
                for t in tensors:
                    unique.setdefault(id(t), t)

        order = list(unique)
        probe = keras.Model(self._graph.inputs, [unique[k] for k in order])
        values = probe.predict(self.example_data, verbose=0)
        if not isinstance(values, (list, tuple)):
            values = [values]
        # Sum and count per tensor, so reused tensors are only reduced once.
        sums = {}
        for key, value in zip(order, values):
            value = np.asarray(value)
            sums[key] = (float(np.abs(value, dtype=np.float64).sum()), value.size)

        for layer in self.layers:
            layer_abs, layer_count = 0.0, 0
            for node in self.layer_nodes[layer]:
                node_abs = sum(sums[id(t)][0] for t in node_tensors[node])
                node_count = sum(sums[id(t)][1] for t in node_tensors[node])
                self.node_rates[node] = node_abs / node_count if node_count else 0.0
                layer_abs += node_abs
                layer_count += node_count
            self.layer_rates[layer] = layer_abs / layer_count if layer_count else 0.0

    # ----------------------------------------- hooks of spikeonnx.energy.EnergyEstimator
    # (which provides layer_energy, total_energy, summary and summary_string from
    # the records)

    def _summary_layers(self) -> List[_energy.LayerRecord]:
        """The rows in table order (``model.layers``)."""
        return list(self._records.values())

    def _record(self, layer: Union[str, keras.layers.Layer, _energy.LayerRecord]) -> _energy.LayerRecord:
        """The row of a layer of the model, given as the layer or its name. A layer
        applied several times is charged for every application."""
        if isinstance(layer, _energy.LayerRecord):
            return layer
        if isinstance(layer, str):
            for candidate in self.layers:
                if candidate.name == layer:
                    return self._records[candidate]
            raise ValueError(f"model {self.model.name!r} has no layer named {layer!r}")
        if layer not in self._records:
            name = getattr(layer, "name", repr(layer))
            raise ValueError(f"layer {name!r} is not part of model {self.model.name!r}")
        return self._records[layer]

    def _default_dt(self) -> float:
        """``keras_layers.default.dt``, read at call time so changes apply."""
        return config.default.dt

    def _output_shape_string(self, layer: keras.layers.Layer) -> str:
        """Output shape(s) of the layer in this model, or "multiple" if they differ."""
        shapes = set()
        for node in self.layer_nodes[layer]:
            outs = [_as_shape(t.shape) for t in node.output_tensors]
            shapes.add(str(outs[0]) if len(outs) == 1 else str(outs))
        if not shapes:
            return "?"
        return shapes.pop() if len(shapes) == 1 else "multiple"


# --------------------------------------------------------------------------- handlers


def _single_shape(shapes: Union[Shape, List[Shape]], what: str, node: LayerNode) -> Shape:
    """The shape of a single-tensor input/output, or a clear error."""
    if isinstance(shapes, list):
        raise ValueError(f"layer {node.layer.name!r} has {len(shapes)} {what} tensors; expected one")
    return shapes


def _unit_count(shape: Shape, node: LayerNode) -> int:
    """Number of elements per example and timestep of a batch-first shape.

    A leading unknown axis after the batch axis is taken to be time and not counted
    (:func:`spikeonnx.energy.counted_axes`); any other unknown axis makes the count
    undefined.
    """
    dims = [shape[axis] for axis in _energy.counted_axes(shape, batch_axis=0)]
    if any(d is None for d in dims):
        raise ValueError(
            f"Cannot compute stats for '{node.layer.name}' layer because the output shape "
            f"{tuple(dims)} contains undefined elements. Its full shape {tuple(shape)} has "
            "undefined dimensions other than batch and time"
        )
    return int(np.prod(dims, dtype=np.int64))


def _is_linear(activation: Any) -> bool:
    """Whether an activation function is the identity."""
    if activation is None or activation is keras.activations.linear:
        return True
    if isinstance(activation, str):
        return activation == "linear"
    return getattr(activation, "__name__", None) == "linear"


def _activation_part(activation: Any, n_outputs: int) -> Dict[str, Any]:
    """Neuron statistics of a (possibly linear) activation applied to ``n_outputs``."""
    if _is_linear(activation):
        return {"neurons": 0, "spiking": True}
    return {"neurons": n_outputs, "spiking": False}


@ModelEnergy.register_layer(keras.layers.Layer)
def layer_stats(node: LayerNode, **_: Any) -> Dict[str, Any]:
    """Fallback for layers without a handler: count nothing, with a warning.

    Layers known to cost nothing have `free_stats` as their handler instead.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        Empty statistics.
    """
    warnings.warn(
        f"Cannot compute stats for layer of type '{type(node.layer).__name__}'. ModelEnergy "
        f"counts no connections or neurons for layer {node.layer.name!r}; register a handler "
        "with ModelEnergy.register_layer",
        stacklevel=2,
    )
    return {}


@ModelEnergy.register_layer(keras.layers.InputLayer)
@ModelEnergy.register_layer(keras.layers.Flatten)
@ModelEnergy.register_layer(keras.layers.Reshape)
@ModelEnergy.register_layer(keras.layers.Dropout)
@ModelEnergy.register_layer(keras.layers.Add)
@ModelEnergy.register_layer(keras.layers.GlobalAveragePooling1D)
@ModelEnergy.register_layer(keras.layers.GlobalAveragePooling2D)
@ModelEnergy.register_layer(keras.layers.GlobalAveragePooling3D)
def free_stats(node: LayerNode) -> Dict[str, Any]:
    """Layers that move or combine data without synapses or neurons worth counting
    (input, flatten, reshape, dropout, add, global average pooling): nothing, silently.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        Empty statistics.
    """
    return {}


@ModelEnergy.register_layer(keras.layers.Activation)
@ModelEnergy.register_layer(keras.layers.ReLU)
@ModelEnergy.register_layer(keras.layers.LeakyReLU)
@ModelEnergy.register_layer(keras.layers.ELU)
@ModelEnergy.register_layer(keras.layers.PReLU)
@ModelEnergy.register_layer(keras.layers.Softmax)
def act_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a (non-spiking) activation layer.

    Every output element is one neuron, updated each timestep; the layer is marked
    non-spiking. An ``Activation("linear")`` layer costs nothing.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        "neurons" and "spiking".
    """
    n_outputs = _unit_count(_single_shape(node.output_shapes, "output", node), node)
    # Layers such as ReLU have no `activation` attribute; they are nonlinear.
    return _activation_part(getattr(node.layer, "activation", "nonlinear"), n_outputs)


@ModelEnergy.register_layer(keras.layers.Dense)
def dense_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a ``Dense`` layer.

    Every input feature connects to every unit, at every position of the axes between
    batch and features (an unknown leading axis is time and is not counted). A
    non-linear ``activation`` adds one neuron per output element.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        "connections", "neurons" and "spiking".
    """
    in_shape = _single_shape(node.input_shapes, "input", node)
    out_shape = _single_shape(node.output_shapes, "output", node)
    n_outputs = _unit_count(out_shape, node)
    in_features = in_shape[-1]
    if in_features is None:
        raise ValueError(f"Dense layer {node.layer.name!r} has an undefined input feature size: {in_shape}")
    positions = n_outputs // int(out_shape[-1])
    stats = {"connections": positions * int(in_features) * int(out_shape[-1])}
    stats.update(_activation_part(node.layer.activation, n_outputs))
    return stats


@ModelEnergy.register_layer(keras.layers.Conv1D)
@ModelEnergy.register_layer(keras.layers.Conv2D)
@ModelEnergy.register_layer(keras.layers.Conv3D)
def conv_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a ``Conv1D``/``Conv2D``/``Conv3D`` layer.

    Each output element connects to a kernel window over ``in_channels / groups``
    input channels, so connections = output elements x kernel volume x input
    channels per group. Strides, padding and dilation enter through the output shape
    (padded positions are counted, as a dense implementation computes them). A
    non-linear ``activation`` adds one neuron per output element.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        "connections", "neurons" and "spiking".
    """
    layer = node.layer
    in_shape = _single_shape(node.input_shapes, "input", node)
    n_outputs = _unit_count(_single_shape(node.output_shapes, "output", node), node)
    channel_axis = 1 if layer.data_format == "channels_first" else -1
    in_channels = in_shape[channel_axis]
    if in_channels is None:
        raise ValueError(f"conv layer {layer.name!r} has an undefined channel count: {in_shape}")
    window = int(np.prod(layer.kernel_size)) * (int(in_channels) // int(layer.groups))
    stats = {"connections": n_outputs * window}
    stats.update(_activation_part(layer.activation, n_outputs))
    return stats


@ModelEnergy.register_layer(SpikingActivation)
def spikingactivation_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a ``SpikingActivation`` layer.

    One spiking neuron per unit. The input always has a time axis (even when the
    layer returns only the last step), so the units are the input axes after batch
    and time.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        "neurons" and "spiking" (True).
    """
    shapes = node.input_shapes
    in_shape = shapes[0] if isinstance(shapes, list) else shapes  # rates, then optional state
    units = in_shape[2:]
    if any(d is None for d in units):
        raise ValueError(
            f"cannot compute stats for layer {node.layer.name!r}: input shape {in_shape} has "
            "undefined unit dimensions"
        )
    return {"neurons": int(np.prod(units, dtype=np.int64)), "spiking": True}


@ModelEnergy.register_layer(keras.layers.TimeDistributed)
def timedistributed_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a ``TimeDistributed`` layer.

    Delegates to `ModelEnergy.compute_layer_stats` for the wrapped layer, described
    for a single timestep (the time axis removed from input and output shapes), so
    the time axis is never counted.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        The wrapped layer's statistics.
    """
    in_shape = _single_shape(node.input_shapes, "input", node)
    out_shape = _single_shape(node.output_shapes, "output", node)
    inner = LayerNode(
        node.layer.layer,
        (in_shape[0],) + tuple(in_shape[2:]),
        (out_shape[0],) + tuple(out_shape[2:]),
    )
    return ModelEnergy.compute_layer_stats(node.layer.layer, node=inner)


@ModelEnergy.register_layer(keras.layers.RNN)
def rnn_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a ``keras.layers.RNN``.

    An RNN around a ``SpikingActivationCell`` is a ``SpikingActivation`` layer
    written out by hand: one spiking neuron per unit (the input axes after batch and
    time). Any other cell gets the fallback of `layer_stats` (nothing counted, with
    a warning).

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        "neurons" and "spiking" for a spiking cell, else empty.
    """
    if isinstance(getattr(node.layer, "cell", None), SpikingActivationCell):
        return spikingactivation_stats(node)
    return layer_stats(node)


@ModelEnergy.register_layer(keras.Model)
def model_stats(node: LayerNode) -> Dict[str, Any]:
    """Statistics of a functional or Sequential model used as a layer of another model.

    The nested model is one row of the outer model: its connections and neurons
    are the sums over its own layers (each counted by its handler, recursively), and
    it is spiking only if all of them are. The nested model is charged the input rate
    of its first input, like any other layer.

    Parameters
    ----------
    node : LayerNode
        The layer application.

    Returns
    -------
    dict
        "connections", "neurons" and "spiking".

    Notes
    -----
    A subclassed model has no layer graph to walk: it gets the fallback of
    `layer_stats` (nothing counted, with a warning).
    """
    if not isinstance(node.layer, keras.Sequential) and getattr(node.layer, "_nodes_by_depth", None) is None:
        return layer_stats(node)
    return _energy.sum_stats(ModelEnergy(node.layer).layer_stats.values())
