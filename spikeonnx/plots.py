"""Figures: energy reports and the spikes of a model.

- :func:`plot_energy` and :func:`plot_rates` draw an energy report (the dict of
  :meth:`spikeonnx.GraphEnergy.to_dict`);
- :func:`record_spikes` runs a model on data with the output of every
  ``SpikingActivation`` node exposed (as the analyzer measures rates), and
  :func:`plot_spikes` (a raster of one sample) and :func:`plot_firing_rates` (the
  distribution of per-neuron firing rates) draw what it recorded.

matplotlib is imported lazily with the Agg backend, so nothing here needs a display.
Figures are written atomically (:func:`spikeonnx.fileio.atomic_write`): an interrupted
write leaves the old file as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from .contract import DOMAIN
from .devices import DEVICES
from .fileio import atomic_write

__all__ = [
    "plot_energy",
    "plot_rates",
    "plot_spikes",
    "plot_firing_rates",
    "record_spikes",
    "SpikeRecording",
    "SpikingLayer",
    "figure_path",
]

PathLike = Union[str, Path]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_path(path: PathLike) -> Path:
    """The file a figure saved to ``path`` ends up in: ``.png`` is added to a name without suffix
    (as matplotlib does)."""
    path = Path(path)
    return path if path.suffix else path.with_name(path.name + ".png")


def _save(fig: Any, path: PathLike) -> Path:
    plt = _pyplot()
    target = figure_path(path)
    fmt = target.suffix[1:].lower()
    try:
        supported = fig.canvas.get_supported_filetypes()
        if fmt not in supported:
            raise ValueError(f"cannot write plot {target}: unknown image format {fmt!r} "
                             f"(supported: {', '.join(sorted(supported))})")
        fig.tight_layout()
        with atomic_write(target) as handle:
            fig.savefig(handle, format=fmt, dpi=100)
    except OSError as err:
        raise OSError(f"cannot write plot {target}: {err}") from None
    finally:
        plt.close(fig)
    return target


def _device_groups(devices: Sequence[str]) -> List[tuple]:
    """``[(group title, [devices])]``: non-spiking hardware first, then spiking, each in the given order."""
    spiking = [d for d in devices if getattr(DEVICES.get(d), "spiking", False)]
    standard = [d for d in devices if d not in spiking]
    return [(title, group) for title, group in (("standard hardware", standard), ("spiking hardware", spiking))
            if group]


def plot_energy(report: Dict[str, Any], path: PathLike, devices: Sequence[str]) -> Path:
    """Energy per inference of each layer and of the whole model on each device, grouped by kind.

    Two panels: bars of each layer's energy per device (log scale), and each device's
    total. Non-spiking devices come first in shades of blue, spiking (neuromorphic)
    devices after them in shades of orange, so the two kinds compare at a glance.
    Layers that cost nothing on every device are left out.

    Parameters
    ----------
    report : dict
        Output of :meth:`spikeonnx.GraphEnergy.to_dict` covering ``devices``.
    path : str or pathlib.Path
        The image file to write (PNG unless the suffix names another format).
    devices : sequence of str
        Devices to show.

    Returns
    -------
    pathlib.Path
        The file written (``path``, with ``.png`` added if it had no suffix).
    """
    plt = _pyplot()
    groups = _device_groups(devices)
    ordered = [d for _, group in groups for d in group]
    colors = {}
    for title, group in groups:
        cmap = plt.cm.Oranges if title.startswith("spiking") else plt.cm.Blues
        for i, device in enumerate(group):
            colors[device] = cmap(0.45 + 0.45 * i / max(len(group) - 1, 1))
    layers = [layer for layer in report["layers"] if layer["type"] != "Input"
              and any(layer["energy"][d]["total"] > 0 for d in ordered)]
    names = [f"{layer['name']}\n({layer['type']})" for layer in layers]
    fig, (ax, ax_total) = plt.subplots(
        1, 2, figsize=(max(7.0, 0.9 * len(layers) + 3) + 4, 5), gridspec_kw={"width_ratios": [3, 1.3]}
    )
    width = 0.8 / max(len(ordered), 1)
    x = np.arange(len(layers))
    for i, device in enumerate(ordered):
        values = [layer["energy"][device]["total"] for layer in layers]
        # zero energy has no place on a log axis: leave those bars out
        shown = [v if v > 0 else np.nan for v in values]
        spiking = getattr(DEVICES.get(device), "spiking", False)
        ax.bar(x + (i - (len(ordered) - 1) / 2) * width, shown, width, color=colors[device],
               label=device + (" (spiking)" if spiking else ""))
    if layers:  # a log axis needs a value > 0 (a model that costs nothing has none)
        ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("energy per inference [J]")
    ax.set_title("per layer")
    ax.legend(fontsize=8, ncol=max(len(groups), 1), title="device")
    ax.grid(axis="y", which="both", alpha=0.3)

    # totals: one horizontal bar per device, a gap between the groups
    positions, labels, y = [], [], 0.0
    for _, group in groups:
        for device in group:
            positions.append(y)
            labels.append(device)
            y += 1
        y += 0.6
    totals = [report["total_energy"][d] for d in ordered]
    ax_total.barh(positions, [t if t > 0 else np.nan for t in totals], color=[colors[d] for d in ordered])
    ax_total.set_yticks(positions)
    ax_total.set_yticklabels(labels, fontsize=8)
    ax_total.set_ylim(positions[-1] + 0.6, -1.3)  # inverted, with room for the group titles
    if any(t > 0 for t in totals):
        ax_total.set_xscale("log")
    ax_total.set_xlabel("energy per inference [J]")
    ax_total.set_title("whole model")
    ax_total.grid(axis="x", which="both", alpha=0.3)
    for (title, _), first in zip(groups, _group_starts(groups), strict=True):
        ax_total.annotate(title, xy=(0.02, positions[first] - 0.5), xycoords=("axes fraction", "data"),
                          ha="left", va="bottom", fontsize=8, style="italic")
    steps = report.get("timesteps_per_inference")
    dt = report.get("dt")
    fig.suptitle(f"Energy per inference: {Path(str(report['model'])).name}"
                 + (f" ({steps} timestep{'s' if steps != 1 else ''} of {dt:g} s on spiking devices)"
                    if steps and dt and any(title.startswith("spiking") for title, _ in groups) else ""))
    return _save(fig, path)


def _group_starts(groups: Sequence[tuple]) -> List[int]:
    starts, n = [], 0
    for _, group in groups:
        starts.append(n)
        n += len(group)
    return starts


def plot_rates(report: Dict[str, Any], path: PathLike) -> Path:
    """Bar chart of each layer's mean input rate (Hz), spiking layers' outputs included.

    Parameters
    ----------
    report : dict
        Output of :meth:`spikeonnx.GraphEnergy.to_dict` built with example data.
    path : str or pathlib.Path
        The PNG file to write.

    Returns
    -------
    pathlib.Path
        The file written (``path``, with ``.png`` added if it had no suffix).

    Raises
    ------
    ValueError
        If the report has no rates (no example data was given).
    """
    layers = [layer for layer in report["layers"] if layer.get("rate") is not None]
    if not layers:
        raise ValueError("the energy report has no firing rates: analyse with example data")
    plt = _pyplot()
    names = [layer["name"] for layer in layers]
    rates = [layer["rate"] for layer in layers]
    # the "spiking" flag of a stats dict means "could run on a spiking device"; colour by op
    colors = ["tab:red" if layer.get("type") == "SpikingActivation" else "tab:blue" for layer in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(layers) + 3), 4.5))
    ax.bar(np.arange(len(layers)), rates, color=colors)
    ax.set_xticks(np.arange(len(layers)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean |input| per layer [Hz]")
    ax.set_title("Mean input rate per layer (red: SpikingActivation, whose input is the rate it encodes)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# ----------------------------------------------------------------------------- spikes


@dataclass
class SpikingLayer:
    """The spikes one ``SpikingActivation`` node emitted.

    Attributes
    ----------
    name : str
        The Keras layer it was exported from (the node name if unknown).
    node : str
        The ONNX node's name.
    dt : float
        Its timestep in seconds.
    spikes : numpy.ndarray
        ``(batch, time, neurons)`` spike counts per step (the op outputs ``count / dt``),
        the node's unit axes flattened.
    """

    name: str
    node: str
    dt: float
    spikes: np.ndarray

    @property
    def rates(self) -> np.ndarray:
        """``(neurons,)`` firing rate of each neuron in Hz, over every sample and step."""
        steps = self.spikes.shape[0] * self.spikes.shape[1]
        return self.spikes.sum(axis=(0, 1), dtype=np.float64) / (steps * self.dt) if steps else \
            np.zeros(self.spikes.shape[2])


@dataclass
class SpikeRecording:
    """What :func:`record_spikes` recorded: the model's label and its spiking layers in graph order."""

    model: str
    layers: List[SpikingLayer]


def record_spikes(
    model: Any, data: Any, *, batch_axis: Any = 0, time_axis: Any = None
) -> SpikeRecording:
    """Run ``model`` on ``data`` and return the spikes of every ``SpikingActivation`` node.

    The model runs once in onnxruntime (with the op library when it uses our ops),
    each spiking node's output exposed as an extra graph output, as the analyzer
    does to measure rates (:mod:`spikeonnx.analysis.rates`).

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
        An exported model.
    data : array, dict of arrays, sequence of arrays or path to .npy/.npz
        Its input (:func:`spikeonnx.analysis.rates.load_example_data`), with a batch
        and a time axis; missing state inputs start as the metadata says.
    batch_axis, time_axis : int, dict or None
        Axes of the graph inputs, for a model without our metadata (see
        :class:`spikeonnx.analysis.AnalysisGraph`).

    Returns
    -------
    SpikeRecording

    Raises
    ------
    ValueError
        If the model has no ``SpikingActivation`` node, the data does not fit its
        inputs, or running it fails.
    """
    from .analysis import AnalysisGraph
    from .analysis.rates import _probe_session, load_example_data

    graph = AnalysisGraph(model, batch_axis=batch_axis, time_axis=time_axis)
    nodes = [n for n in graph.model.graph.node if n.domain == DOMAIN and n.op_type == "SpikingActivation"]
    if not nodes:
        raise ValueError(f"{graph.label} has no SpikingActivation node: there are no spikes to record")
    feeds = load_example_data(data, graph)
    needed = [node.output[0] for node in nodes]
    session, probes = _probe_session(graph, needed)
    try:
        outputs = session.run([probes[name] for name in needed], feeds)
    except Exception as err:
        raise ValueError(f"{graph.label}: running the model on the data failed: {err}") from None
    layers = []
    for node, values in zip(nodes, outputs, strict=True):
        attrs = {a.name: _attribute(a) for a in node.attribute}
        # the metadata has dt in double precision, the attribute in float
        dt = float(graph.metadata.dt.get(node.name, attrs.get("dt", 0.0)))
        if not dt > 0:
            raise ValueError(f"{graph.label}: SpikingActivation {node.name!r} has no dt > 0")
        values = np.asarray(values)
        if values.ndim < 2:
            raise ValueError(f"{graph.label}: SpikingActivation {node.name!r} output has shape {values.shape}, "
                             "expected (batch, time, ...)")
        if attrs.get("time_major", 0):
            values = np.swapaxes(values, 0, 1)
        counts = np.rint(values.reshape(values.shape[0], values.shape[1], -1).astype(np.float64) * dt)
        layers.append(SpikingLayer(name=graph.metadata.layers.get(node.name, node.name), node=node.name, dt=dt,
                                   spikes=counts.astype(np.float32)))
    return SpikeRecording(model=graph.label, layers=layers)


def _attribute(attribute: Any) -> Any:
    """The Python value of an ``onnx.AttributeProto``."""
    import onnx

    return onnx.helper.get_attribute_value(attribute)


def _recording(recording: Any) -> SpikeRecording:
    if not isinstance(recording, SpikeRecording):
        raise TypeError(f"expected a SpikeRecording (from record_spikes), got {type(recording).__name__}")
    if not recording.layers:
        raise ValueError("the recording has no spiking layer")
    return recording


def _model_name(recording: SpikeRecording) -> str:
    label = recording.model
    return Path(label[5:] if label.startswith("file ") else label).name


def plot_spikes(recording: SpikeRecording, path: PathLike, *, sample: int = 0, max_neurons: int = 300) -> Path:
    """Spike raster of one sample: time against neuron, one panel per spiking layer.

    Layers with more than ``max_neurons`` neurons show that many, sampled evenly
    (every k-th neuron); a step with several spikes of one neuron is drawn in red.

    Parameters
    ----------
    recording : SpikeRecording
        From :func:`record_spikes`.
    path : str or pathlib.Path
        The image file to write.
    sample : int
        Which sample of the batch to draw.
    max_neurons : int
        Most neurons shown per layer (>= 1).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    recording = _recording(recording)
    batch = recording.layers[0].spikes.shape[0]
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or not 0 <= sample < batch:
        raise ValueError(f"sample must be an index in 0..{batch - 1} (the data holds {batch}), got {sample!r}")
    if isinstance(max_neurons, bool) or not isinstance(max_neurons, (int, np.integer)) or max_neurons < 1:
        raise ValueError(f"max_neurons must be an integer >= 1, got {max_neurons!r}")
    plt = _pyplot()
    n = len(recording.layers)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 + 2.4 * n), squeeze=False)
    for ax, layer in zip(axes[:, 0], recording.layers, strict=True):
        counts = layer.spikes[sample]  # (time, neurons)
        steps, neurons = counts.shape
        shown = np.unique(np.linspace(0, neurons - 1, min(neurons, max_neurons)).round().astype(int)) \
            if neurons else np.zeros(0, int)
        t, row = np.nonzero(counts[:, shown])
        several = counts[t, shown[row]] > 1
        size = max(4.0, min(60.0, 2400.0 / max(len(shown), 1)))
        for mask, color, label in ((~several, "black", "1 spike"), (several, "tab:red", "several spikes")):
            if mask.any():
                ax.scatter((t[mask] + 1) * layer.dt, shown[row[mask]], c=color, marker="|", s=size,
                           linewidths=1.2, label=f"{label} in a step")
        if several.any():
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xlim(0, (steps + 0.5) * layer.dt)
        ax.set_ylim(-0.5, max(neurons, 1) - 0.5)
        ax.set_ylabel("neuron index")
        rate = counts.sum() / (steps * layer.dt * max(neurons, 1)) if steps else 0.0
        sampled = f"{len(shown)} of {neurons} neurons" if len(shown) < neurons else f"{neurons} neurons"
        ax.set_title(f"{layer.name}: {sampled}, {int(counts.sum())} spikes, mean {rate:.3g} Hz", fontsize=9)
        ax.grid(alpha=0.2)
    axes[-1, 0].set_xlabel("time [s]")
    fig.suptitle(f"Spike raster of sample {sample}: {_model_name(recording)}")
    return _save(fig, path)


def plot_firing_rates(recording: SpikeRecording, path: PathLike, *, bins: int = 30) -> Path:
    """Distribution of per-neuron firing rates, one panel per spiking layer.

    A neuron's rate is its spike count over every sample and step of the recording
    divided by the time (Hz). Rates are binned on a log axis; silent neurons (0 Hz,
    which a log axis cannot show) get a grey bar of their own on the left, and
    neurons at or above one spike per step (``1/dt``, saturated) are red.

    Parameters
    ----------
    recording : SpikeRecording
        From :func:`record_spikes`.
    path : str or pathlib.Path
        The image file to write.
    bins : int
        Number of log-spaced bins of positive rates.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    recording = _recording(recording)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    plt = _pyplot()
    n = len(recording.layers)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 + 2.6 * n), squeeze=False)
    for ax, layer in zip(axes[:, 0], recording.layers, strict=True):
        rates = layer.rates
        batch, steps, _ = layer.spikes.shape
        ceiling = 1.0 / layer.dt  # one spike per step
        positive = rates[rates > 0]
        low = positive.min() if positive.size else 1.0 / (max(batch * steps, 1) * layer.dt)
        high = max(positive.max() if positive.size else ceiling, ceiling) * 1.05
        edges = np.geomspace(low / 1.05, high, bins + 1)
        # firing and saturated neurons stacked in the same bins (a bin may straddle 1/dt)
        firing, _ = np.histogram(positive[positive < ceiling], edges)
        full, _ = np.histogram(positive[positive >= ceiling], edges)
        ax.bar(edges[:-1], firing, np.diff(edges), align="edge", color="tab:blue", edgecolor="white", linewidth=0.5)
        ax.bar(edges[:-1], full, np.diff(edges), bottom=firing, align="edge", color="tab:red", edgecolor="white",
               linewidth=0.5)
        silent = int(np.sum(rates == 0))
        n_saturated = int(np.sum(rates >= ceiling))
        # silent neurons: a bar one bin-width left of the first edge
        ratio = edges[1] / edges[0]
        ax.bar(edges[0] / ratio ** 2, silent, edges[0] / ratio - edges[0] / ratio ** 2, align="edge",
               color="tab:gray", edgecolor="white", linewidth=0.5)
        ax.annotate("0 Hz", xy=(edges[0] / ratio ** 1.5, silent), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, color="tab:gray")
        ax.axvline(ceiling, color="tab:red", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(edges[0] / ratio ** 3, edges[-1] * ratio)
        ax.set_ylabel("neurons")
        ax.set_title(f"{layer.name}: {rates.size} neurons, mean {rates.mean() if rates.size else 0:.3g} Hz",
                     fontsize=9)
        handles = [
            plt.Rectangle((0, 0), 1, 1, color="tab:gray", label=f"silent (0 Hz): {silent}"),
            plt.Rectangle((0, 0), 1, 1, color="tab:blue", label=f"firing: {rates.size - silent - n_saturated}"),
            plt.Rectangle((0, 0), 1, 1, color="tab:red", label=f"saturated (>= 1/dt = {ceiling:g} Hz): {n_saturated}"),
        ]
        ax.legend(handles=handles, fontsize=7, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("firing rate [Hz] (log scale)")
    samples = recording.layers[0].spikes.shape[0]
    fig.suptitle(f"Per-neuron firing rates over {samples} sample(s): {_model_name(recording)}")
    return _save(fig, path)
