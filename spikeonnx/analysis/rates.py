"""Pass 6: input rates of each layer, from running the model once on example data.

A layer's rate is the mean magnitude of the tensors entering it over all the
example data (batch, time and units), as ``ModelEnergy`` defines it: for a layer
fed by spikes of height ``1/dt`` this is the mean firing rate in Hz. The model runs
once in onnxruntime (with the ``spikeonnx`` op library when the model uses our
ops), with every tensor that enters a layer exposed as an extra graph output.

Rates over data that does not fit in memory are accumulated batch by batch
(:class:`RateAccumulator`): each tensor's sum of ``|x|`` is kept *exactly* (as an
integer multiple of the smallest float64) together with its element count
(:class:`RateSums`), so the rates do not depend on how the data was split into
batches or shards, nor on the order partial sums are merged in; a rate is rounded
once, when it is read. :func:`compute_rates` is one batch of the same accumulation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from .. import contract
from ..events import (
    _PLUMBING,  # ops that only move elements: spikes keep their height
    event_inputs,
    synaptic_events,
)
from .graph import AnalysisGraph
from .passes import value_info
from .source import make_session

__all__ = ["ExampleData", "load_example_data", "compute_rates", "RateSums", "RateAccumulator"]

# (GraphEnergy also takes any object with a ``rate_sums(graph) -> RateSums`` method,
# e.g. a RateSums or a dataset of shards.)
ExampleData = Union[np.ndarray, Mapping[str, Any], str, os.PathLike, Sequence[Any]]



def _shape_str(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def load_example_data(data: ExampleData, graph: AnalysisGraph) -> Dict[str, np.ndarray]:
    """Turn example data into a feed dict checked against the graph inputs.

    Parameters
    ----------
    data : array, dict, sequence of arrays, or path
        One array for a single-input model; a dict input name -> array; a list of
        arrays in graph input order; or a ``.npy`` / ``.npz`` file (an ``.npz`` holds
        one array per input name, or a single array for a single-input model).
    graph : AnalysisGraph
        The analysed model.

    Returns
    -------
    dict
        Input name -> array of the input's dtype; state inputs not given start as
        the model's metadata says (:func:`spikeonnx.contract.initial_state`).

    Raises
    ------
    FileNotFoundError
        For a missing data file.
    ValueError
        For unreadable files, missing or unknown inputs, or arrays whose rank,
        sizes or dtype do not fit the input.
    """
    names = graph.input_names
    states = graph.state_inputs
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"example data file not found: {path}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as err:
            raise ValueError(f"cannot read example data {path}: {err}") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
                data_names = [n for n in names if n not in states]
            if len(data_names) == 1 and len(arrays) == 1 and data_names[0] not in arrays:
                arrays = {data_names[0]: next(iter(arrays.values()))}
            data = arrays
        else:
            data = loaded
    data_names = [n for n in names if n not in states]
    if isinstance(data, Mapping):
        feeds = dict(data)
    elif isinstance(data, (list, tuple)) and len(data_names) > 1:
        if len(data) != len(data_names):
            raise ValueError(
                f"example data has {len(data)} arrays but the model has {len(data_names)} inputs {data_names}"
            )
        feeds = dict(zip(data_names, data))
    else:
        if len(data_names) != 1:
            raise ValueError(
                f"the model has {len(data_names)} inputs {data_names}; give example data as a dict "
                "input name -> array"
            )
        feeds = {data_names[0]: data}
    missing = [n for n in names if n not in feeds and n not in states]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        raise ValueError(
            f"example data does not match the model inputs {names}"
            + (f": missing {missing}" if missing else "")
            + (f": unknown {extra}" if extra else "")
        )
    out: Dict[str, np.ndarray] = {}
    declared = {v.name: v for v in graph.model.graph.input}
    for name in names:
        if name not in feeds:
            continue  # a state input, filled in below
        value = declared[name]
        arr = np.asarray(feeds[name])
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"example data for input {name!r} has non-numeric dtype {arr.dtype}")
        info = value_info(value)
        if info.shape is not None:
            if arr.ndim != len(info.shape):
                raise ValueError(
                    f"example data for input {name!r} has shape {arr.shape} but the input has "
                    f"rank {len(info.shape)} (shape {_shape_str(info.shape)})"
                )
            for axis, (want, got) in enumerate(zip(info.shape, arr.shape)):
                if isinstance(want, int) and want != got:
                    raise ValueError(
                        f"example data for input {name!r} has shape {arr.shape} but the input "
                        f"expects {_shape_str(info.shape)} (axis {axis}: {got} != {want})"
                    )
        if arr.size == 0:
            raise ValueError(f"example data for input {name!r} is empty (shape {arr.shape})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int(arr.size - np.isfinite(arr).sum())
            raise ValueError(
                f"example data for input {name!r} has {bad} non-finite value(s) (NaN or inf); rates need "
                "finite data"
            )
        if info.dtype is not None:
            arr = arr.astype(info.dtype, copy=False)
        out[name] = np.ascontiguousarray(arr)
    for name in states:
        if name not in out:
            out[name] = _initial_state(graph, name, out, declared[name])
    return out


def _initial_state(
    graph: AnalysisGraph, name: str, feeds: Dict[str, np.ndarray], declared: onnx.ValueInfoProto
) -> np.ndarray:
    """The value a state input starts from when the caller does not give it: its
    declared shape with the batch size of the data, filled as the metadata says."""
    batch_axes = graph.batch_axes
    batch = next(
        (arr.shape[batch_axes[n]] for n, arr in feeds.items()
         if batch_axes.get(n) is not None and n not in graph.state_inputs),
        None,
    )
    info = value_info(declared)
    shape = []
    for axis, d in enumerate(info.shape or ()):
        if axis == batch_axes.get(name) and batch is not None:
            shape.append(batch)
        elif isinstance(d, int):
            shape.append(d)
        else:
            raise ValueError(f"cannot build the initial value of state input {name!r}: axis {axis} has no known size")
    spec = graph.metadata.initial_state.get(name)
    return contract.initial_state(spec, shape, info.dtype or np.dtype(np.float32))


def compute_rates(graph: AnalysisGraph, feeds: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Run the model once and return each layer's mean input magnitude.

    Parameters
    ----------
    graph : AnalysisGraph
        The analysed model (its layers say which tensors enter each layer).
    feeds : dict
        Checked example data, from :func:`load_example_data`.

    Returns
    -------
    dict
        Layer name -> rate (mean of ``|x|`` over every element of the tensors entering
        the layer, correctly rounded; 0 for a layer no float tensor enters).
    """
    accumulator = RateAccumulator(graph)
    accumulator.add_feeds(feeds)
    return accumulator.rates()


# -- exact accumulation -----------------------------------------------------------------
# A finite |x| of IEEE type with ``bits`` mantissa bits and biased exponent E is
# (2**bits * [E > 0] + frac) * 2**(max(E, 1) - bias - bits); times 2**_SCALE_BITS
# (2**-1126 is below the smallest float64 step) this is an integer, shifted left by
# max(E, 1) + base. Summing those integers per exponent gives the exact sum as a
# Python int: any split of the data, in any order, gives the same sum.
_SCALE_BITS = 1126
# dtype -> (unsigned view, mantissa bits, base shift); float16 and float32 go through
# float32 (exactly), everything else through float64.
_LAYOUT = {4: (np.uint32, 23, _SCALE_BITS - 150), 8: (np.uint64, 52, _SCALE_BITS - 1075)}
_HALF = 26  # float64 fractions are summed as two halves below 2**26 ...
_CHUNK = 1 << 26  # ... so a chunk's per-exponent sums stay below 2**52: exact in float64


def _exact_abs_sum(values: np.ndarray) -> Tuple[int, float]:
    """``(sum of |x| over finite x, times 2**_SCALE_BITS, as an int; sum of |x| over non-finite x)``."""
    a = np.asarray(values)
    a = np.abs(a.astype(np.float32 if a.dtype in (np.float16, np.float32) else np.float64, copy=False)).ravel()
    special = 0.0
    finite = np.isfinite(a)
    if not finite.all():
        special = float(a[~finite].sum())  # inf, or nan if any nan
        a = a[finite]
    view, bits, base = _LAYOUT[a.itemsize]
    total = 0
    for start in range(0, a.size, _CHUNK):
        raw = a[start:start + _CHUNK].view(view)
        exponent = (raw >> bits).astype(np.intp)
        frac = raw & view((1 << bits) - 1)
        counts = np.bincount(exponent)
        if bits > 2 * _HALF - 1:
            high = np.bincount(exponent, weights=(frac >> view(_HALF)).astype(np.float64))
            low = np.bincount(exponent, weights=(frac & view((1 << _HALF) - 1)).astype(np.float64))
        else:
            high = np.zeros(len(counts))
            low = np.bincount(exponent, weights=frac.astype(np.float64))
        for e in np.flatnonzero(counts):
            e = int(e)
            m = (int(high[e]) << _HALF) + int(low[e]) + ((int(counts[e]) << bits) if e else 0)
            total += m << (max(e, 1) + base)
    return total, special


class RateSums:
    """Exact per-tensor sums of ``|x|`` and element counts, mergeable in any order.

    The state of a rate measurement over many batches: picklable, and independent
    of how the data was split (sums are exact, see the module notes). Pass it to
    :class:`~spikeonnx.analysis.GraphEnergy` as ``example_data``.

    Attributes
    ----------
    sums : dict
        Tensor name -> ``sum |x|`` of finite elements times ``2**1126`` (an int).
    counts : dict
        Tensor name -> number of elements.
    special : dict
        Tensor name -> sum of ``|x|`` over non-finite elements (0, inf or nan).
    rows : int
        Number of samples (rows) added.
    """

    def __init__(self) -> None:
        self.sums: Dict[str, int] = {}
        self.counts: Dict[str, int] = {}
        self.special: Dict[str, float] = {}
        self.rows = 0

    def add(self, name: str, values: np.ndarray) -> None:
        """Add the elements of one tensor."""
        total, special = _exact_abs_sum(values)
        self.sums[name] = self.sums.get(name, 0) + total
        self.counts[name] = self.counts.get(name, 0) + int(np.size(values))
        self.special[name] = self.special.get(name, 0.0) + special

    def merge(self, other: "RateSums") -> "RateSums":
        """Add ``other``'s sums and counts to these; returns ``self``."""
        for name, total in other.sums.items():
            self.sums[name] = self.sums.get(name, 0) + total
            self.counts[name] = self.counts.get(name, 0) + other.counts[name]
            self.special[name] = self.special.get(name, 0.0) + other.special.get(name, 0.0)
        self.rows += other.rows
        return self

    def mean(self, names: Iterable[str]) -> float:
        """Mean of ``|x|`` over every element of the tensors ``names``, rounded once."""
        names = list(names)
        count = sum(self.counts[n] for n in names)
        special = sum(self.special[n] for n in names)
        if special != 0.0:  # inf or nan: as a float sum would give
            return special
        if not count:
            return 0.0
        return sum(self.sums[n] for n in names) / (count << _SCALE_BITS)  # int division: correctly rounded

    def layer_rates(self, graph: AnalysisGraph) -> Dict[str, float]:
        """Layer name -> rate for the layers of ``graph``.

        Raises
        ------
        ValueError
            If a tensor entering a layer was never added (sums of another model).
        """
        rates = {}
        for layer in graph.layers:
            missing = [n for n in layer.inputs if n not in self.counts]
            if missing:
                raise ValueError(
                    f"{graph.label}: the rate sums have no values for tensor(s) {missing} entering layer "
                    f"{layer.name!r} (were they measured on another model, or on no data?)"
                )
            rates[layer.name] = self.mean(layer.inputs)
        return rates

    def rate_sums(self, graph: AnalysisGraph) -> "RateSums":
        """These sums (the protocol ``GraphEnergy`` reads ``example_data`` through)."""
        return self

    def __repr__(self) -> str:
        return f"RateSums({len(self.counts)} tensors, {self.rows} rows)"


class RateAccumulator:
    """Accumulate layer input magnitudes of a model over batches of data.

    Parameters
    ----------
    graph : AnalysisGraph
        The analysed model. One onnxruntime session (with every layer input exposed
        as an output) is built on the first batch and reused.

    Attributes
    ----------
    sums : RateSums
        The accumulated sums and counts.

    Examples
    --------
    >>> acc = RateAccumulator(graph)                        # doctest: +SKIP
    >>> for batch in batches:                               # doctest: +SKIP
    ...     acc.add(batch)
    >>> GraphEnergy(model, acc.sums).summary()              # doctest: +SKIP
    """

    def __init__(self, graph: AnalysisGraph, *, count_events: bool = False) -> None:
        self.graph = graph
        self.sums = RateSums()
        self._session: Optional[Any] = None
        self._probes: Dict[str, str] = {}
        # count_events: node label -> (synaptic events, sample-steps) of every event node
        self._event_nodes = _event_nodes(graph) if count_events else {}
        self.events: Dict[str, Tuple[int, int]] = {label: (0, 0) for label in self._event_nodes}

    def add(self, data: ExampleData) -> None:
        """Add one batch of data (any form :func:`load_example_data` accepts)."""
        self.add_feeds(load_example_data(data, self.graph))

    def add_feeds(self, feeds: Dict[str, np.ndarray]) -> None:
        """Add one batch of checked feeds (from :func:`load_example_data`)."""
        values: Dict[str, np.ndarray] = dict(feeds)
        wanted = self._layer_inputs() + [t for _, t, _ in self._event_nodes.values()]
        needed = [n for n in dict.fromkeys(wanted) if n not in feeds]
        if needed:
            if self._session is None:
                self._session, self._probes = _probe_session(self.graph, needed)
            try:
                results = self._session.run([self._probes[n] for n in needed], feeds)
            except Exception as err:
                raise ValueError(f"{self.graph.label}: running the model on the example data failed: {err}") from None
            values.update(zip(needed, results, strict=True))
        for name in self._layer_inputs():
            self.sums.add(name, values[name])
        for label, (key, tensor, units) in self._event_nodes.items():
            x = values[tensor]
            events, steps = self.events[label]
            self.events[label] = (events + synaptic_events(self.graph.model, key, x), steps + x.size // units)
        batch = self._batch_size(feeds)
        self.sums.rows += batch

    def rates(self) -> Dict[str, float]:
        """Layer name -> mean input magnitude over everything added so far."""
        return self.sums.layer_rates(self.graph)

    def layer_events(self) -> Dict[str, float]:
        """Layer name -> measured synaptic events per sample and timestep (``count_events``).

        The sum over the layer's event nodes of each node's events divided by the
        sample-steps it ran (its input's elements over its per-sample, per-step size).
        Layers without event nodes are left out.
        """
        found: Dict[str, float] = {}
        for label, (events, steps) in self.events.items():
            layer = self.graph.graph.nodes[label]["layer"]
            found[layer] = found.get(layer, 0.0) + (events / steps if steps else 0.0)
        return found

    def event_rates(self, rates: Mapping[str, float], *, default_dt: float) -> Dict[str, float]:
        """``rates`` with each layer holding event nodes charged at its measured events.

        A layer's rate becomes the one that makes the energy formula's
        ``connections * rate * dt`` equal its measured synaptic events per step at the
        spikes' own ``dt`` (that of the ``SpikingActivation`` feeding each event node,
        ``default_dt`` if none does): ``sum(events / steps / dt_spikes) / connections``,
        in Hz like the estimate. Connections of the layer outside its event nodes keep
        the estimated rate.
        """
        G = self.graph.graph
        out = dict(rates)
        weighted: Dict[str, List[Tuple[str, float]]] = {}
        for label, (events, steps) in self.events.items():
            dt = _spike_dt(self.graph, self._event_nodes[label][1], default_dt)
            weighted.setdefault(G.nodes[label]["layer"], []).append((label, (events / steps if steps else 0.0) / dt))
        for layer in self.graph.layers:
            if layer.name not in weighted or not layer.connections:
                continue
            measured = weighted[layer.name]
            rest = layer.connections - sum(G.nodes[label]["stats"]["connections"] for label, _ in measured)
            out[layer.name] = (sum(hz for _, hz in measured) + rest * rates[layer.name]) / layer.connections
        return out

    def _layer_inputs(self) -> List[str]:
        names: List[str] = []
        for layer in self.graph.layers:
            for name in layer.inputs:
                if name not in names:
                    names.append(name)
        return names

    def _batch_size(self, feeds: Dict[str, np.ndarray]) -> int:
        for name, arr in feeds.items():
            axis = self.graph.batch_axes.get(name)
            if axis is not None and name not in self.graph.state_inputs and arr.ndim > axis:
                return int(arr.shape[axis])
        return 0


def _event_nodes(graph: AnalysisGraph) -> Dict[str, Tuple[str, str, int]]:
    """Event nodes fed by spikes (:func:`spikeonnx.events.event_inputs`) by label: ``(the
    name spikeonnx.events knows it by, its data input, that input's size per sample and
    timestep)``."""
    found = {}
    fed_by_spikes = event_inputs(graph.model)
    for label in graph.graph.graph["order"]:
        data = graph.graph.nodes[label]
        node = data["proto"]
        if node.domain == contract.DOMAIN and node.op_type in contract.EVENT_OP_TYPES:
            key = node.name or f"{node.op_type}:{data['index']}"  # as events.event_inputs keys it
            if key in fed_by_spikes:
                found[label] = (key, node.input[0], graph.op_node(label).input_units(0))
    return found


def _spike_dt(graph: AnalysisGraph, tensor: str, default: float) -> float:
    """``dt`` of the ``SpikingActivation`` whose spikes reach ``tensor`` through plumbing
    (the spikes' height is ``1/dt``), or ``default`` when no such node feeds it."""
    producer = graph.graph.graph["producer"]
    G = graph.graph
    while tensor in producer:
        data = G.nodes[producer[tensor]]
        node = data["proto"]
        if data["domain"] == contract.DOMAIN and node.op_type == "SpikingActivation":
            for attr in node.attribute:
                if attr.name == "dt":
                    return float(attr.f)
            return default
        if node.op_type not in _PLUMBING or not node.input:
            return default
        tensor = node.input[0]
    return default


def _probe_session(graph: AnalysisGraph, needed: Sequence[str]) -> Tuple[Any, Dict[str, str]]:
    """A session of ``graph``'s model with each tensor of ``needed`` exposed as an output
    (the weights are handed over where they are, not copied: :mod:`.source`).

    Returns the session and tensor name -> name of the output exposing it.
    """
    tensors = graph.tensors
    outputs = [(name, tensors[name].elem_type if name in tensors else onnx.TensorProto.FLOAT) for name in needed]
    return make_session(graph.model, graph.graph.graph["source"], outputs)
