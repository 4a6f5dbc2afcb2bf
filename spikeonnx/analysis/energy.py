"""``GraphEnergy``: the ``ModelEnergy`` estimates for any ONNX graph.

The energy model is the one of KerasSpiking's ``ModelEnergy``. Per layer and
inference, on a device with energies ``E_synop`` and ``E_neuron`` per operation::

    synop_energy  = E_synop  * connections * rate * dt * timesteps
    neuron_energy = E_neuron * neurons * timesteps

where ``rate`` is the layer's mean input magnitude on the example data (Hz for
spikes of height ``1/dt``). A non-spiking device computes every connection once
per inference: it uses ``rate = 1/dt`` and ``timesteps = 1``, i.e.
``synop_energy = E_synop * connections`` and ``neuron_energy = E_neuron * neurons``.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import devices as _devices
from .graph import AnalysisGraph, AxisSpec, Layer, ModelLike
from .rates import ExampleData, compute_rates, load_example_data

__all__ = ["GraphEnergy", "DEFAULT_DT"]

#: Default timestep length in seconds (KerasSpiking's ``default.dt``).
DEFAULT_DT = 0.001

_DEFAULT_COLUMNS = ("name", "output_shape", "params", "connections", "neurons", "energy cpu")
_HEADERS = {
    "name": "Layer (type)",
    "output_shape": "Output shape",
    "params": "Param #",
    "rate": "Rate [Hz]",
    "connections": "Conn #",
    "neurons": "Neuron #",
    "energy": "J/inf ({})",
    "synop_energy": "Synop J/inf ({})",
    "neuron_energy": "Neuron J/inf ({})",
}
_DEVICE_COLUMNS = ("energy", "synop_energy", "neuron_energy")


def _check_dt(dt: Optional[float]) -> float:
    dt = DEFAULT_DT if dt is None else dt
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a number > 0, got {dt!r}") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    return value


def _check_timesteps(timesteps: Any) -> int:
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral) or timesteps < 1:
        raise ValueError(f"timesteps_per_inference must be an int >= 1, got {timesteps!r}")
    return int(timesteps)


class GraphEnergy:
    """Compute statistics and device energy estimates for an ONNX model.

    The ONNX counterpart of ``keras_layers.ModelEnergy``: the graph is split into
    layers (Keras layers when the model was exported by :mod:`spikeonnx.export`),
    each with its number of synaptic *connections* and *neuron* updates per sample
    and timestep, and optionally its input firing rate measured on example data.
    No TensorFlow is needed.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model to analyse.
    example_data : array, dict of arrays, or path to .npy/.npz, optional
        Input used to measure each layer's mean input rate; required for energy
        estimates on spiking devices.
    batch_axis : int, dict or None
        Batch axis of the graph inputs (default 0); the exporter's metadata takes
        precedence where present.
    time_axis : int, dict or None
        Time axis of the graph inputs (default: none declared, in which case an
        unknown size right after the batch axis is taken as time, as in Keras).

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
    ) -> None:
        self.graph = AnalysisGraph(model, batch_axis=batch_axis, time_axis=time_axis)
        self.graph.warn_unknown()
        self.example_data = example_data
        self.layer_rates: Dict[str, float] = {}
        if example_data is not None:
            feeds = load_example_data(example_data, self.graph)
            self.layer_rates = compute_rates(self.graph, feeds)

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
        device_name: str, energy_per_synop: float, energy_per_neuron: float, spiking: bool
    ) -> None:
        """Register a device in the table shared with ``ModelEnergy`` (see
        :func:`spikeonnx.devices.register_device`)."""
        _devices.register_device(device_name, energy_per_synop, energy_per_neuron, spiking)

    # --- energy -------------------------------------------------------------------
    @staticmethod
    def _device(device: str) -> _devices.Device:
        name = str(device)
        if name not in _devices.DEVICES and name.lower() in _devices.DEVICES:
            name = name.lower()
        return _devices.get_device(name)

    def layer_energy(
        self,
        layer_name: Union[str, Layer],
        device: str,
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
    ) -> Tuple[float, float]:
        """Estimate the energy one layer uses per inference.

        Parameters
        ----------
        layer_name : str or Layer
            The layer (its name, or one of :attr:`layers`).
        device : str
            A device of :mod:`spikeonnx.devices` (e.g. ``"cpu"``, ``"loihi"``).
        timesteps_per_inference : int
            Timesteps per inference (ignored on non-spiking devices).
        dt : float, optional
            Length of a device timestep in seconds (default 0.001).

        Returns
        -------
        synop_energy : float
            Joules per inference for synaptic operations.
        neuron_energy : float
            Joules per inference for neuron updates.

        Raises
        ------
        ValueError
            For an unknown layer or device, bad ``dt``/timesteps, or a spiking device
            without example data.
        """
        dt = _check_dt(dt)
        timesteps = _check_timesteps(timesteps_per_inference)
        dev = self._device(device)
        layer = self.graph.layer(layer_name.name if isinstance(layer_name, Layer) else layer_name)
        if dev.spiking and self.example_data is None:
            raise ValueError(
                f"example_data must be given to estimate energy on the spiking device {dev.name!r}"
            )
        if dev.spiking:
            # energy/op * (ops/event * events/s * s/timestep) * timesteps/inference;
            # the same float operation order as keras_layers.ModelEnergy
            events_per_step = layer.connections * self.layer_rates[layer.name] * dt
            synop = dev.energy_per_synop * events_per_step * timesteps
            neuron = dev.energy_per_neuron * layer.neurons * timesteps
        else:
            # a non-spiking device computes every connection once per inference
            # (input rate 1/dt over a single timestep, which cancels exactly)
            synop = dev.energy_per_synop * layer.connections
            neuron = dev.energy_per_neuron * layer.neurons
        return float(synop), float(neuron)

    def total_energy(
        self, device: str, timesteps_per_inference: int = 1, dt: Optional[float] = None
    ) -> float:
        """Estimate the energy the whole model uses per inference, in Joules.

        Parameters are as for :meth:`layer_energy`.
        """
        # per layer (synop + neuron), then over layers in order, as ModelEnergy adds
        return float(sum(
            sum(self.layer_energy(layer.name, device, timesteps_per_inference, dt))
            for layer in self.graph.layers
        ))

    # --- summary ------------------------------------------------------------------
    def summary(
        self,
        columns: Sequence[str] = _DEFAULT_COLUMNS,
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
        line_length: int = 98,
        print_warnings: bool = True,
    ) -> None:
        """Print a per-layer table of statistics and energy estimates.

        See :meth:`summary_string` for the parameters.
        """
        print(self.summary_string(columns, timesteps_per_inference, dt, line_length, print_warnings))

    def summary_string(
        self,
        columns: Sequence[str] = _DEFAULT_COLUMNS,
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
        line_length: int = 98,
        print_warnings: bool = True,
    ) -> str:
        """Return a per-layer table of statistics and energy estimates.

        Parameters
        ----------
        columns : sequence of str
            Any of ``"name"``, ``"output_shape"``, ``"params"``, ``"connections"``,
            ``"neurons"``, ``"rate"`` and ``"energy <device>"``,
            ``"synop_energy <device>"``, ``"neuron_energy <device>"``.
        timesteps_per_inference : int
            Timesteps per inference on spiking devices.
        dt : float, optional
            Device timestep in seconds (default 0.001).
        line_length : int
            Maximum width of a table line.
        print_warnings : bool
            Whether to append the notes on the assumptions made.

        Returns
        -------
        str
            The table.
        """
        dt = _check_dt(dt)
        if isinstance(columns, str):
            columns = (columns,)
        parsed: List[Tuple[str, str]] = []
        for col in columns:
            parts = str(col).split()
            kind = parts[0] if parts else ""
            if kind not in _HEADERS:
                raise ValueError(f"unknown column {col!r}; must be one of {list(_HEADERS)}")
            arg = " ".join(parts[1:])
            if kind in _DEVICE_COLUMNS:
                if not arg:
                    raise ValueError(f"column {col!r} needs a device, e.g. '{kind} cpu'")
                arg = self._device(arg).name
            parsed.append((kind, arg))
        if not isinstance(line_length, int) or line_length < len(parsed) * 2:
            raise ValueError(f"line_length={line_length!r} is too short for {len(parsed)} columns")

        def cell(layer: Layer, kind: str, arg: str) -> str:
            if kind == "name":
                return f"{layer.name} ({layer.kind})"
            if kind == "output_shape":
                return layer.output_shape_str
            if kind == "params":
                return str(layer.params)
            if kind == "rate":
                return f"{self.layer_rates.get(layer.name, float('nan')):.2g}"
            if kind in ("connections", "neurons"):
                return str(getattr(layer, kind))
            synop, neuron = self.layer_energy(layer.name, arg, timesteps_per_inference, dt)
            value = {"energy": synop + neuron, "synop_energy": synop, "neuron_energy": neuron}[kind]
            return f"{value:.2g}"

        rows = [[_HEADERS[k].format(a) for k, a in parsed]]
        rows += [[cell(layer, k, a) for k, a in parsed] for layer in self.graph.layers]
        widths = self._widths(rows, line_length)
        lines = []
        for i, row in enumerate(rows):
            parts = []
            for (kind, _), text, width in zip(parsed, row, widths):
                align = "<" if i == 0 or kind == "name" else ">"
                parts.append(f"{text[:width]:{align}{width}}")
            lines.append("|".join(parts))
            if i == 0:
                lines.append("|".join("-" * w for w in widths))

        energy_devices = [a for k, a in parsed if k == "energy"]
        if energy_devices:
            lines.append("=" * len(lines[0]))
            for name in energy_devices:
                total = self.total_energy(name, timesteps_per_inference, dt)
                lines.append(f"Total energy per inference [Joules/inf] ({name}): {total:0.2e}")
        if print_warnings and energy_devices:
            lines.append(textwrap.fill(
                "* These are estimates only; see the documentation of "
                "keras_layers.ModelEnergy for the assumptions being made.",
                width=line_length, subsequent_indent="  ",
            ))
            spiking = any(self._device(n).spiking for n in energy_devices)
            if spiking and not all(layer.spiking for layer in self.graph.layers):
                lines.append(textwrap.fill(
                    "* This model contains non-spiking activations, assumed here to be "
                    "converted to spiking equivalents on spiking devices.",
                    width=line_length, subsequent_indent="  ",
                ))
        return "\n".join(lines)

    @staticmethod
    def _widths(rows: List[List[str]], line_length: int) -> List[int]:
        """Column widths: natural widths, shrunk (widest first) to fit ``line_length``."""
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        budget = line_length - (len(widths) - 1)
        while sum(widths) > budget:
            i = max(range(len(widths)), key=lambda j: widths[j])
            if widths[i] <= 1:
                break
            widths[i] -= 1
        return widths

    # --- machine-readable ---------------------------------------------------------
    def to_dict(
        self,
        devices: Sequence[str] = ("cpu",),
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
    ) -> Dict[str, Any]:
        """All statistics and the energy on ``devices`` as plain JSON-able data."""
        dt = _check_dt(dt)
        names = [self._device(d).name for d in devices]
        layers = []
        for layer in self.graph.layers:
            energy = {}
            for name in names:
                synop, neuron = self.layer_energy(layer.name, name, timesteps_per_inference, dt)
                energy[name] = {"synop": synop, "neuron": neuron, "total": synop + neuron}
            rate = self.layer_rates.get(layer.name)
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
                "energy": energy,
            })
        return {
            "model": self.graph.label,
            "dt": dt,
            "timesteps_per_inference": _check_timesteps(timesteps_per_inference),
            "layers": layers,
            "total_energy": {n: self.total_energy(n, timesteps_per_inference, dt) for n in names},
            "unknown_ops": {k: list(v) for k, v in self.graph.unknown_ops.items()},
        }
