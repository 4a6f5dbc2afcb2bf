"""``GraphEnergy``: the ``ModelEnergy`` estimates for any ONNX graph.

The energy model is the one of KerasSpiking's ``ModelEnergy``. Per layer and
inference, on a device with energies ``E_synop`` and ``E_neuron`` per operation::

    synop_energy  = E_synop  * connections * rate * dt * timesteps
    neuron_energy = E_neuron * neurons * timesteps

where ``rate`` is the layer's mean input magnitude on the example data (Hz for
spikes of height ``1/dt``). A non-spiking device computes every connection once
per inference: it uses ``rate = 1/dt`` and ``timesteps = 1``, i.e.
``synop_energy = E_synop * connections`` and ``neuron_energy = E_neuron * neurons``.

The formula, the argument checks and the summary table are those of
:mod:`spikeonnx.energy`, which ``keras_layers.ModelEnergy`` uses too; this module
only turns the analysed graph's layers (:mod:`.passes`) and rates into the core's
:class:`~spikeonnx.energy.LayerRecord` rows.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from .. import devices as _devices
from .. import energy as _energy
from ..contract import EVENT_OP_TYPES
from ..energy import DEFAULT_DT, LayerRecord
from ..events import event_inputs, event_nodes
from .graph import AnalysisGraph, AxisSpec, Layer, ModelLike
from .rates import ExampleData, RateAccumulator, compute_rates, load_example_data

__all__ = ["GraphEnergy", "DEFAULT_DT"]

_EVENTS = ("estimated", "measured")

class GraphEnergy(_energy.EnergyEstimator):
    """Compute statistics and device energy estimates for an ONNX model.

    The ONNX counterpart of ``keras_layers.ModelEnergy``: the graph is split into
    layers (Keras layers when the model was exported by :mod:`spikeonnx.exporter`),
    each with its number of synaptic *connections* and *neuron* updates per sample
    and timestep, and optionally its input firing rate measured on example data.
    No TensorFlow is needed. `total_energy`, `summary` and `summary_string` are
    those of :class:`spikeonnx.energy.EnergyEstimator`, shared with ``ModelEnergy``.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model to analyse.
    example_data : array, dict of arrays, path to .npy/.npz, or RateSums, optional
        Input used to measure each layer's mean input rate; required for energy
        estimates on spiking devices. Data larger than memory: rates accumulated
        batch by batch (:class:`~spikeonnx.analysis.rates.RateSums`), or any object
        with a ``rate_sums(graph)`` method such as :class:`spikeonnx.shards.Shards`.
    batch_axis : int, dict or None
        Batch axis of the graph inputs (default 0); the exporter's metadata takes
        precedence where present.
    time_axis : int, dict or None
        Time axis of the graph inputs (default: none declared, in which case an
        unknown size right after the batch axis is taken as time, as in Keras).
    events : {"estimated", "measured"}
        How the synaptic events of layers holding event-driven nodes
        (:mod:`spikeonnx.events`) are found: ``"estimated"`` (default) from
        connections times the mean input magnitude, as for every layer;
        ``"measured"`` by counting the events those nodes process on the example
        data (:func:`spikeonnx.events.synaptic_events`), see ``docs/op-counting.md``.
        The measured events per sample and step are in :attr:`layer_events`.

    Notes
    -----
    These are rough estimates resting on the same assumptions as ``ModelEnergy``:
    published per-operation figures, no overhead, and on spiking devices a model
    fully converted to event-based computation.
    """

    def __init__(
        self,
        model: ModelLike,
        example_data: Optional[ExampleData] = None,
        *,
        batch_axis: AxisSpec = 0,
        time_axis: AxisSpec = None,
        events: str = "estimated",
    ) -> None:
        if events not in _EVENTS:
            raise ValueError(f"events must be one of {', '.join(map(repr, _EVENTS))}, got {events!r}")
        direct = example_data is not None and not hasattr(example_data, "rate_sums")
        self.graph = AnalysisGraph(
            model, batch_axis=batch_axis, time_axis=time_axis,
            feeds=(lambda graph: load_example_data(example_data, graph)) if direct else None,
        )
        self.graph.warn_unknown()
        self.example_data = example_data
        self.events = events
        self.layer_rates: Dict[str, float] = {}
        #: Layer name -> measured synaptic events per sample and timestep (events="measured").
        self.layer_events: Dict[str, float] = {}
        if events == "measured":
            self._check_measurable(direct)
            accumulator = RateAccumulator(self.graph, count_events=True)
            accumulator.add_feeds(self.graph.feeds)
            self.layer_events = accumulator.layer_events()
            self.layer_rates = accumulator.event_rates(accumulator.rates(), default_dt=self._default_dt())
        elif hasattr(example_data, "rate_sums"):
            # accumulated elsewhere (RateSums, shards streamed or on a Ray cluster)
            self.layer_rates = example_data.rate_sums(self.graph).layer_rates(self.graph)
        elif example_data is not None:
            self.layer_rates = compute_rates(self.graph, self.graph.feeds)
        self.graph.graph.graph["rates"] = self.layer_rates
        self._records = [self._make_record(layer) for layer in self.graph.layers]

    def _check_measurable(self, direct: bool) -> None:
        """Why events="measured" cannot be honoured, as a ValueError."""
        if not direct:
            raise ValueError(
                'events="measured" counts the events of a run on the example data: give example_data as '
                "arrays or a .npy/.npz file" + ("" if self.example_data is None else
                                                 " (rates accumulated elsewhere carry no event counts)")
            )
        model = self.graph.model
        if not event_inputs(model):
            on_input = bool(event_nodes(model))
            raise ValueError(
                f'{self.graph.label}: events="measured" needs event-driven nodes '
                f"({', '.join(EVENT_OP_TYPES)}) fed by spikes and the model has none"
                + ("; its event nodes take the model's input, which carries no spikes" if on_input else
                   "; export it with spikeonnx.export(..., events=True) or rewrite it with spikeonnx.optimize")
            )

    def _make_record(self, layer: Layer) -> LayerRecord:
        """The core's row of one layer: one application, at the layer's input rate."""
        rate = self.layer_rates[layer.name] if self.example_data is not None else None
        return LayerRecord(
            name=layer.name, kind=layer.kind, output_shape=layer.output_shape_str, params=layer.params,
            connections=(layer.connections,), neurons=layer.neurons, spiking=layer.spiking,
            rates=None if rate is None else (rate,), rate=rate,
        )

    # --- layers and stats ---------------------------------------------------------
    @property
    def layers(self) -> List[Layer]:
        """The layers, inputs first, then in topological order."""
        return list(self.graph.layers)

    @property
    def layer_names(self) -> List[str]:
        """Names of :attr:`layers`."""
        return [layer.name for layer in self.graph.layers]

    @property
    def layer_stats(self) -> Dict[str, Dict[str, Any]]:
        """Layer name -> ``{"connections": int, "neurons": int, "spiking": bool}``."""
        return {layer.name: layer.stats for layer in self.graph.layers}

    def compute_layer_stats(self, layer_name: str) -> Dict[str, Any]:
        """Statistics of one layer (see :attr:`layer_stats`).

        Raises
        ------
        ValueError
            If there is no such layer.
        """
        return self.graph.layer(layer_name).stats

    @staticmethod
    def register_device(
        device_name: str, energy_per_synop: float, energy_per_neuron: float, spiking: bool, *, replace: bool = False
    ) -> None:
        """Register a device in the table shared with ``ModelEnergy`` (see
        :func:`spikeonnx.devices.register_device`)."""
        _devices.register_device(device_name, energy_per_synop, energy_per_neuron, spiking, replace=replace)

    # --- hooks of spikeonnx.energy.EnergyEstimator ---------------------------------
    # (which provides layer_energy, total_energy, summary and summary_string)
    _column_noun = "column"  # messages say "unknown column 'x'"

    def _summary_layers(self) -> List[LayerRecord]:
        """The rows in table order (inputs first, then topological)."""
        return self._records

    def _record(self, layer: Union[str, Layer, LayerRecord]) -> LayerRecord:
        """The row of a layer given by name, :class:`Layer` or record."""
        if isinstance(layer, (Layer, LayerRecord)):
            layer = layer.name
        self.graph.layer(layer)  # "no layer named ..." with the known names
        return next(record for record in self._records if record.name == layer)

    # --- machine-readable ---------------------------------------------------------
    def to_dict(
        self,
        devices: Sequence[str] = ("cpu",),
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
    ) -> Dict[str, Any]:
        """All statistics and the energy on ``devices`` as plain JSON-able data."""
        dt = _energy.check_dt(dt, self._default_dt())
        names = [_energy.lookup_device(d).name for d in devices]
        layers = []
        for layer, record in zip(self.graph.layers, self._records, strict=True):
            energy = {}
            for name in names:
                synop, neuron = self.layer_energy(record, name, timesteps_per_inference, dt)
                energy[name] = {"synop": synop, "neuron": neuron, "total": synop + neuron}
            rate = record.rate
            layers.append({
                "name": layer.name,
                "type": layer.kind,
                "nodes": list(layer.nodes),
                "output_shape": [None if not isinstance(d, int) else d for d in layer.output_shape]
                if layer.output_shape is not None else None,
                "params": layer.params,
                "connections": layer.connections,
                "neurons": layer.neurons,
                "spiking": layer.spiking,
                "rate": rate,
                # measured synaptic events per sample and step (events="measured", event layers)
                "synaptic_events": self.layer_events.get(layer.name),
                "energy": energy,
            })
        return {
            "model": self.graph.label,
            "dt": dt,
            "timesteps_per_inference": _energy.check_timesteps(timesteps_per_inference),
            "events": self.events,
            "layers": layers,
            "total_energy": {n: self.total_energy(n, timesteps_per_inference, dt) for n in names},
            "unknown_ops": {k: list(v) for k, v in self.graph.unknown_ops.items()},
        }
