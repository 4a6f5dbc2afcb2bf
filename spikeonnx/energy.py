"""The energy model and summary table shared by ``ModelEnergy`` and ``GraphEnergy``.

Both estimators (``keras_layers.ModelEnergy`` for Keras models and
:class:`spikeonnx.analysis.GraphEnergy` for ONNX graphs) count, per layer, the
synaptic *connections* and the *neuron* updates per timestep, and measure the mean
input magnitude ("rate") on example data. Everything that turns those numbers into
energies and into the printed table lives here, once, so the two cannot drift apart:

- what a stat function may return (:func:`check_stats`), how stats of several ops or
  layer calls add up (:func:`sum_stats`), and which axes of a shape count
  (:func:`counted_axes`: all but batch and time, an unknown size right after the
  batch axis being time);
- the plain per-layer record both estimators produce (:class:`LayerRecord`: name,
  kind, output shape, params, connections and rate per application, neurons,
  spiking);
- the energy formula (:func:`layer_energy`) and :class:`EnergyEstimator`, which
  turns a list of records into energies, totals and the summary table.

The energy of one layer per inference on a device with energies ``E_synop`` and
``E_neuron`` per operation is::

    synop_energy  = E_synop  * connections * rate * dt * timesteps
    neuron_energy = E_neuron * neurons * timesteps

with ``rate`` in Hz (spikes of height ``1/dt``). A non-spiking device runs an
ordinary ANN: every connection is computed once per inference, i.e. ``rate = 1/dt``
and ``timesteps = 1``, which gives ``E_synop * connections`` and
``E_neuron * neurons``.

The module needs neither TensorFlow nor ONNX; devices come from
:mod:`spikeonnx.devices`.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import devices as _devices

__all__ = [
    "DEFAULT_DT",
    "DEFAULT_COLUMNS",
    "COLUMN_TITLES",
    "DEVICE_COLUMNS",
    "Column",
    "lookup_device",
    "check_timesteps",
    "check_dt",
    "check_line_length",
    "parse_columns",
    "layer_energy",
    "sum_energy",
    "STATS",
    "check_stats",
    "sum_stats",
    "counted_axes",
    "LayerRecord",
    "EnergyEstimator",
]

#: Default device timestep in seconds (KerasSpiking's ``default.dt``).
DEFAULT_DT = 0.001

#: Columns of the summary table when none are given.
DEFAULT_COLUMNS = ("name", "output_shape", "params", "connections", "neurons", "energy cpu")

#: Column kind -> header title; ``{}`` is replaced by the device name.
COLUMN_TITLES = {
    "name": "Layer (type)",
    "output_shape": "Output shape",
    "params": "Param #",
    "connections": "Conn #",
    "neurons": "Neuron #",
    "rate": "Rate [Hz]",
    "synop_energy": "Synop J/inf ({})",
    "neuron_energy": "Neuron J/inf ({})",
    "energy": "J/inf ({})",
}

#: Column kinds that take a device argument (``"energy cpu"``).
DEVICE_COLUMNS = ("synop_energy", "neuron_energy", "energy")

# The first sentence of each note is KerasSpiking's (scripts match on it).
_GENERAL_NOTE = (
    "* These are estimates only; see the documentation for a list of the assumptions "
    "being made. They use published per-operation energies and ignore overheads such "
    "as moving data on and off the device."
)
_NON_SPIKING_NOTE = (
    "* This model contains non-spiking activations that would not actually behave in "
    "the manner we assume in these calculations; we assume these layers will be "
    "converted to spiking equivalents. Make this explicit with "
    "keras_layers.SpikingActivation."
)


class Column(NamedTuple):
    """One parsed summary column.

    Parameters
    ----------
    kind : str
        A key of `COLUMN_TITLES`.
    device : str
        Registered device name for the kinds in `DEVICE_COLUMNS`, else ``""``.
    """

    kind: str
    device: str = ""

    @property
    def title(self) -> str:
        """Header text of the column, e.g. ``"J/inf (cpu)"``."""
        return COLUMN_TITLES[self.kind].format(self.device)


# ------------------------------------------------------------------- argument checks


def lookup_device(name: Any) -> _devices.Device:
    """Find a registered device by exact name, falling back to its lower-case spelling.

    Parameters
    ----------
    name : str
        Device name, e.g. ``"loihi"`` or ``"CPU"``.

    Returns
    -------
    spikeonnx.devices.Device
        The device entry.

    Raises
    ------
    ValueError
        If ``name`` is not a string or names no registered device (the message lists
        the known devices).
    """
    if not isinstance(name, str):
        raise ValueError(f"device must be a device name string, got {name!r}")
    if name not in _devices.DEVICES and name.lower() in _devices.DEVICES:
        name = name.lower()
    return _devices.get_device(name)


def check_timesteps(timesteps: Any) -> int:
    """Validate a number of timesteps per inference.

    Parameters
    ----------
    timesteps : int
        Must be an integer >= 1 (``bool`` is rejected).

    Returns
    -------
    int
        The value as a plain ``int``.

    Raises
    ------
    ValueError
        If the value is not a positive integer.
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral) or timesteps < 1:
        raise ValueError(f"timesteps_per_inference must be a positive integer, got {timesteps!r}")
    return int(timesteps)


def check_dt(dt: Any, default: Any = DEFAULT_DT) -> float:
    """Validate a device timestep, substituting ``default`` for None.

    Parameters
    ----------
    dt : float or None
        Timestep length in seconds.
    default : float
        Used when ``dt`` is None (``ModelEnergy`` passes ``keras_layers.default.dt``
        read at call time, ``GraphEnergy`` passes `DEFAULT_DT`).

    Returns
    -------
    float
        The timestep.

    Raises
    ------
    ValueError
        If the value is not a finite number > 0.
    """
    if dt is None:
        dt = default
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"dt must be a positive number of seconds, got {value!r}")
    return value


def check_line_length(line_length: Any, n_columns: int) -> int:
    """Validate the width of a summary table.

    Parameters
    ----------
    line_length : int
        Maximum characters per table line.
    n_columns : int
        Number of columns; each needs one character plus a ``|`` separator.

    Returns
    -------
    int
        ``line_length``, converted to ``int``.

    Raises
    ------
    ValueError
        If ``line_length`` is not an integer or leaves less than one character per
        column.
    """
    if isinstance(line_length, bool) or not isinstance(line_length, numbers.Integral):
        raise ValueError(f"line_length must be an integer, got {line_length!r}")
    if line_length < 2 * n_columns - 1:
        raise ValueError(f"line_length {line_length} is too small for {n_columns} columns")
    return int(line_length)


def parse_columns(
    columns: Union[str, Sequence[str]],
    lookup_device: Callable[[str], _devices.Device] = lookup_device,
    *,
    noun: str = "summary column",
) -> List[Column]:
    """Parse summary column specifications such as ``"energy loihi"``.

    Parameters
    ----------
    columns : str or sequence of str
        Column specifications: a kind of `COLUMN_TITLES`, followed by a device name
        for the kinds in `DEVICE_COLUMNS`. A single string is one column.
    lookup_device : callable
        Maps a device name to its `spikeonnx.devices.Device` (raising ValueError for
        unknown names); the device's canonical name is stored in the column.
    noun : str
        How error messages call a column (``ModelEnergy`` says "summary column",
        ``GraphEnergy`` says "column").

    Returns
    -------
    list of Column
        The parsed columns, in order.

    Raises
    ------
    ValueError
        For an unknown kind or device, a device column without a device, a plain
        column with an argument, or no columns at all.
    """
    if isinstance(columns, str):
        columns = (columns,)
    parsed = []
    for column in columns:
        parts = str(column).split()
        kind = parts[0] if parts else ""
        if kind not in COLUMN_TITLES:
            # KerasSpiking's wording first
            raise ValueError(
                f"Unknown column type {column!r} (unknown {noun} {column!r}; valid columns: "
                f"{list(COLUMN_TITLES)})"
            )
        arg = " ".join(parts[1:])
        if kind in DEVICE_COLUMNS:
            if not arg:
                raise ValueError(f"{noun} {column!r} needs a device, e.g. '{kind} cpu'")
            arg = lookup_device(arg).name
        elif arg:
            raise ValueError(f"{noun} {kind!r} takes no argument, got {column!r}")
        parsed.append(Column(kind, arg))
    if not parsed:
        raise ValueError("summary needs at least one column")
    return parsed


# ------------------------------------------------------------------------- energy


def _counts(value: Any, what: str) -> List[int]:
    """A non-negative integer count, or a sequence of them, as a list."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    for v in values:
        # NumPy integers are fine (handlers use np.prod); floats and bools are not.
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{what} must be a non-negative integer, got {v!r}")
    return values


def layer_energy(
    connections: Union[int, Sequence[int]],
    neurons: int,
    rate: Union[None, float, Sequence[float]],
    device: Union[str, _devices.Device],
    timesteps: int = 1,
    dt: Optional[float] = DEFAULT_DT,
) -> Tuple[float, float]:
    """Energy one layer uses per inference (see the module docstring for the model).

    Parameters
    ----------
    connections : int or sequence of int
        Synaptic connections of the layer. A layer applied several times is passed
        as one count per application, each charged at its own input rate.
    neurons : int
        Neuron updates per timestep (all applications together).
    rate : float, sequence of float, or None
        Mean input event rate in Hz, one per entry of ``connections``. Only spiking
        devices use it; None is allowed for non-spiking devices.
    device : str or spikeonnx.devices.Device
        The device (a name is looked up with `lookup_device`).
    timesteps : int
        Timesteps per inference; non-spiking devices run one.
    dt : float, optional
        Device timestep in seconds (None means `DEFAULT_DT`).

    Returns
    -------
    synop_energy : float
        Synaptic-operation energy in Joules per inference.
    neuron_energy : float
        Neuron-update energy in Joules per inference.

    Raises
    ------
    ValueError
        For an unknown device, invalid counts, ``timesteps`` or ``dt``, rates that do
        not match ``connections`` or are negative/non-finite, or a spiking device
        without rates.
    """
    spec = device if isinstance(device, _devices.Device) else lookup_device(device)
    timesteps = check_timesteps(timesteps)
    dt = check_dt(dt)
    conns = _counts(connections, "connections")
    (neurons,) = _counts(neurons, "neurons")

    if not spec.spiking:
        # An ANN computes every connection once per inference: an input rate of 1/dt
        # over a single timestep, which cancels exactly, so it is left out.
        return float(spec.energy_per_synop * sum(conns)), float(spec.energy_per_neuron * neurons)

    if rate is None:
        raise ValueError(
            f"example_data must be given to estimate energy on the spiking device {spec.name!r}: "
            "its synaptic energy depends on the input firing rates measured on that data"
        )
    rates = list(rate) if isinstance(rate, (list, tuple)) else [rate]
    if len(rates) != len(conns):
        raise ValueError(f"got {len(rates)} rates for {len(conns)} connection counts; pass one rate per count")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not (r >= 0 and math.isfinite(r)):
            raise ValueError(f"rate must be a finite number >= 0 (Hz), got {r!r}")
    # energy/op * (ops/event * events/s * s/step, summed over applications) * steps;
    # this exact operation order is what the Keras/ONNX parity tests compare.
    events_per_step = sum(c * r * dt for c, r in zip(conns, rates, strict=True))
    synop = spec.energy_per_synop * events_per_step * timesteps
    neuron = spec.energy_per_neuron * neurons * timesteps
    return float(synop), float(neuron)


def sum_energy(layer_energies: Iterable[Tuple[float, float]]) -> float:
    """Total Joules over layers: each layer's synaptic plus neuron energy, in order.

    Parameters
    ----------
    layer_energies : iterable of (float, float)
        ``(synop_energy, neuron_energy)`` per layer, as `layer_energy` returns.

    Returns
    -------
    float
        The sum.
    """
    return float(sum(synop + neuron for synop, neuron in layer_energies))


# ------------------------------------------------------------------- stats, records

#: The statistics a stat function (Keras layer handler or ONNX op) may return.
STATS = ("connections", "neurons", "spiking")


def check_stats(raw: Any, source: str, *, complete: bool = False) -> Dict[str, Any]:
    """Validate what a stat function returned.

    Parameters
    ----------
    raw : mapping
        Some of "connections" and "neurons" (non-negative integers; NumPy integers
        and integral floats are accepted) and "spiking" (truthy).
    source : str
        Who returned it, for messages (e.g. ``"stats handler 'f' for layer 'd'"``).
    complete : bool
        Fill in the defaults (0, 0, True) of the keys ``raw`` leaves out.

    Returns
    -------
    dict
        The given keys (all three if ``complete``) as plain ``int``/``bool``.

    Raises
    ------
    ValueError
        If ``raw`` is not a mapping, has a key outside `STATS`, or a count that is
        not a non-negative integer.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source} returned {type(raw).__name__}, expected a dict")
    checked: Dict[str, Any] = {"connections": 0, "neurons": 0, "spiking": True} if complete else {}
    for key, value in raw.items():
        if key not in STATS:
            raise ValueError(f"{source} returned an invalid stat {key!r}; valid stats are {STATS}")
        if key == "spiking":
            checked[key] = bool(value)
            continue
        # handlers often return NumPy integers (np.prod) or integral floats
        if (
            isinstance(value, bool)
            or type(value).__name__ == "bool_"
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
            or value != int(value)
        ):
            raise ValueError(f"{source} returned {key}={value!r}; stat {key!r} must be a non-negative integer")
        checked[key] = int(value)
    return checked


def sum_stats(stats: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """Stats of several ops or layer calls counted as one: counts add up, and the
    whole is spiking only if every part is (missing keys take the defaults)."""
    total = {"connections": 0, "neurons": 0, "spiking": True}
    for part in stats:
        total["connections"] += int(part.get("connections", 0))
        total["neurons"] += int(part.get("neurons", 0))
        total["spiking"] = total["spiking"] and bool(part.get("spiking", True))
    return total


def counted_axes(
    shape: Sequence[Any], batch_axis: Optional[int] = 0, time_axis: Optional[int] = None, *,
    time_fallback: bool = True,
) -> List[int]:
    """Axes of ``shape`` counted per sample and timestep: all but batch and time.

    Parameters
    ----------
    shape : sequence
        Sizes; an ``int`` is known, anything else (None, a symbol) is not.
    batch_axis, time_axis : int or None
        The batch and time axes, if the tensor has them.
    time_fallback : bool
        With no ``time_axis``: an unknown size right after the batch axis is time
        (the convention of Keras, where time is the leading unknown axis).

    Returns
    -------
    list of int
        The counted axes, in order (their sizes may still be unknown).
    """
    rank = len(shape)
    excluded = {a for a in (batch_axis, time_axis) if a is not None}
    if time_axis is None and time_fallback:
        after = 0 if batch_axis is None else batch_axis + 1
        if after < rank and not isinstance(shape[after], int):
            excluded.add(after)
    return [axis for axis in range(rank) if axis not in excluded]


@dataclass(frozen=True)
class LayerRecord:
    """One row of an estimate: what both estimators hand to :class:`EnergyEstimator`.

    Parameters
    ----------
    name : str
        Layer name.
    kind : str
        Layer type (Keras class name, ONNX op type, ``"Input"``).
    output_shape : str
        The output shape as shown in the table.
    params : int
        Number of parameters.
    connections : tuple of int
        Synaptic connections per application of the layer (a layer called twice
        has two entries, each charged at its own input rate).
    neurons : int
        Neuron updates per timestep, all applications together.
    spiking : bool
        Whether the layer could run as it is on a spiking device.
    rates : tuple of float or None
        Input rate (Hz) per application, None when not measured.
    rate : float or None
        The layer's mean input rate over all its applications (shown in the
        table), None when not measured.
    """

    name: str
    kind: str
    output_shape: str
    params: int
    connections: Tuple[int, ...]
    neurons: int
    spiking: bool
    rates: Optional[Tuple[float, ...]] = None
    rate: Optional[float] = None

    @property
    def stats(self) -> Dict[str, Any]:
        """``{"connections": total, "neurons", "spiking"}``."""
        return {"connections": sum(self.connections), "neurons": self.neurons, "spiking": self.spiking}

    def describe(self, kind: str) -> Any:
        """Value of the non-energy summary column ``kind``."""
        if kind == "name":
            return f"{self.name} ({self.kind})"
        if kind in ("connections", "neurons", "spiking"):
            return self.stats[kind]
        return getattr(self, kind)


# -------------------------------------------------------------------------- table


def _summary_rows(
    columns: Sequence[Column],
    layers: Iterable[Any],
    describe: Callable[[Any, str], Any],
    energy: Callable[[Any, str], Tuple[float, float]],
) -> List[List[str]]:
    """Format the cells of the summary table, one row per layer.

    Parameters
    ----------
    columns : sequence of Column
        The columns, from `parse_columns`.
    layers : iterable
        The layers, in table order (any objects ``describe`` and ``energy`` accept).
    describe : callable
        ``describe(layer, kind)`` gives the value of a non-device column: text for
        "name" and "output_shape", integers for "params", "connections" and
        "neurons", and the rate in Hz (or None when unmeasured) for "rate". Called
        only for the kinds present.
    energy : callable
        ``energy(layer, device)`` gives ``(synop_energy, neuron_energy)``; called
        only for device columns.

    Returns
    -------
    list of list of str
        The cells.
    """
    rows = []
    for layer in layers:
        row = []
        for column in columns:
            if column.kind in DEVICE_COLUMNS:
                synop, neuron = energy(layer, column.device)
                value = {"synop_energy": synop, "neuron_energy": neuron, "energy": synop + neuron}[column.kind]
                row.append(f"{value:.2g}")
            elif column.kind == "rate":
                rate = describe(layer, "rate")
                row.append(f"{float('nan') if rate is None else rate:.2g}")
            else:
                row.append(str(describe(layer, column.kind)))
        rows.append(row)
    return rows


def _assumption_notes(columns: Sequence[Column], all_layers_spiking: bool) -> List[str]:
    """The notes on the assumptions behind the estimates a table shows.

    Parameters
    ----------
    columns : sequence of Column
        The table's columns; without device columns there is nothing to note.
    all_layers_spiking : bool
        Whether every layer could run on a spiking device as it is.

    Returns
    -------
    list of str
        Zero, one or two notes (unwrapped).
    """
    device_columns = [c for c in columns if c.kind in DEVICE_COLUMNS]
    if not device_columns:
        return []
    notes = [_GENERAL_NOTE]
    if not all_layers_spiking and any(lookup_device(c.device).spiking for c in device_columns):
        notes.append(_NON_SPIKING_NOTE)
    return notes


_TEXT_COLUMNS = ("name", "output_shape")


def _engineering(cell: str) -> str:
    """An integer cell in engineering notation (``115605504`` -> ``115.6e6``) when
    that is shorter; any other cell unchanged."""
    if not cell.isdigit() or len(cell) < 7:
        return cell
    exponent = 3 * ((len(cell) - 1) // 3)
    short = f"{int(cell) / 10 ** exponent:.4g}e{exponent}"
    return short if len(short) < len(cell) else cell


def _column_widths(cells: Sequence[Sequence[str]], line_length: int) -> List[int]:
    """Column widths: natural, then the widest column that can still narrow loses
    one character while the line is too long. A column never gets narrower than
    its longest word (the whole cell for numbers), so wrapping never splits one."""
    n = len(cells[0])
    widths = [max(len(row[i]) for row in cells) for i in range(n)]
    least = [max(max((len(word) for word in row[i].split()), default=0) for row in cells) or 1 for i in range(n)]
    while sum(widths) + n - 1 > line_length:
        candidates = [i for i in range(n) if widths[i] > least[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
    return widths


def _format_summary(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    totals: Sequence[Tuple[str, float]] = (),
    notes: Sequence[str] = (),
    line_length: int = 98,
) -> str:
    """Lay out the summary table.

    Columns are separated by ``|`` and as wide as their widest cell. While a line
    would be longer than ``line_length``, the widest column (the leftmost of equals)
    loses one character, and text wraps onto more lines, but never below the longest
    word of a column: numbers and words are never cut. If that is still too wide,
    large integers switch to engineering notation (``115.6e6``); if even that does
    not fit, the table is wider than ``line_length``. Headers and the "name" column
    are left-aligned, all else right-aligned. Totals follow a ``=`` rule, then the
    notes, each wrapped to ``line_length``.

    Parameters
    ----------
    columns : sequence of Column
        The columns (their titles are the header).
    rows : sequence of sequence of str
        One row of cells per layer (see `_summary_rows`).
    totals : sequence of (str, float)
        ``(device, Joules per inference)`` lines to print under the table.
    notes : sequence of str
        Paragraphs to print last (see `_assumption_notes`).
    line_length : int
        Maximum table width; see `check_line_length`.

    Returns
    -------
    str
        The table, lines joined by newlines.

    Raises
    ------
    ValueError
        For a bad ``line_length``, no columns, or a row whose length differs from
        the number of columns.
    """
    line_length = check_line_length(line_length, len(columns))
    if not columns:
        raise ValueError("summary needs at least one column")
    header = [column.title for column in columns]
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"summary row {i} has {len(row)} cells for {len(columns)} columns")
    cells = [header] + [[str(cell) for cell in row] for row in rows]

    widths = _column_widths(cells, line_length)
    if sum(widths) + len(widths) - 1 > line_length:
        numeric = [column.kind not in _TEXT_COLUMNS for column in columns]
        cells = [header] + [[_engineering(c) if numeric[i] else c for i, c in enumerate(row)] for row in cells[1:]]
        widths = _column_widths(cells, line_length)

    def lines(values: Sequence[str], aligns: Sequence[str]) -> List[str]:
        wrapped = [
            textwrap.wrap(v, width=w, break_long_words=False, break_on_hyphens=False) or [""] if len(v) > w else [v]
            for v, w in zip(values, widths, strict=True)
        ]
        height = max(len(parts) for parts in wrapped)
        return [
            "|".join(
                f"{parts[k] if k < len(parts) else '':{a}{w}}" for parts, a, w in zip(wrapped, aligns, widths, strict=True)
            )
            for k in range(height)
        ]

    aligns = ["<" if column.kind == "name" else ">" for column in columns]
    out = lines(header, ["<"] * len(columns)) + ["|".join("-" * w for w in widths)]
    for row in cells[1:]:
        out += lines(row, aligns)
    if totals:
        out.append("=" * len(out[0]))
        out += [f"Total energy per inference [Joules/inf] ({device}): {joules:0.2e}" for device, joules in totals]
    out += [textwrap.fill(note, width=line_length, subsequent_indent="  ") for note in notes]
    return "\n".join(out)


def _format_tables(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    totals: Sequence[Tuple[str, float]] = (),
    notes: Sequence[str] = (),
    line_length: int = 98,
) -> str:
    """Lay out the summary as one table, or as several when the device columns do not fit.

    If the table at its natural width (every column as wide as its widest cell) is
    longer than ``line_length`` and has device columns, the device columns are split,
    in order, over several tables: the first has every other column and the device
    columns that fit after them (possibly none), each further table repeats only the
    "name" column (or the first other column) and takes as many device columns as fit
    (at least one). The tables are separated by a blank line; totals and notes follow
    the last. Each table is laid out by `_format_summary`.

    Parameters
    ----------
    columns, rows, totals, notes, line_length
        As for `_format_summary`.

    Returns
    -------
    str
        The table(s), lines joined by newlines.
    """
    devices = [i for i, column in enumerate(columns) if column.kind in DEVICE_COLUMNS]
    others = [i for i, column in enumerate(columns) if column.kind not in DEVICE_COLUMNS]
    cells = [[column.title for column in columns]] + [[str(cell) for cell in row] for row in rows]
    if any(len(row) != len(columns) for row in cells):
        return _format_summary(columns, rows, totals, notes, line_length)  # which reports the bad row
    natural = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    if not devices or not others or sum(natural) + len(columns) - 1 <= line_length:
        return _format_summary(columns, rows, totals, notes, line_length)
    key = [i for i in others if columns[i].kind == "name"][:1] or others[:1]
    # (leading columns, device columns) per table; widths count a separator after each column
    tables_columns: List[Tuple[List[int], List[int]]] = [(others, [])]
    used = sum(natural[i] + 1 for i in others)
    for i in devices:
        lead, group = tables_columns[-1]
        if used + natural[i] > line_length and (group or lead is others):
            tables_columns.append((key, []))
            used = sum(natural[k] + 1 for k in key)
        tables_columns[-1][1].append(i)
        used += natural[i] + 1
    tables = []
    for n, (lead, group) in enumerate(tables_columns):
        keep = sorted(lead + group)  # the columns in the order asked for
        last = n == len(tables_columns) - 1
        tables.append(_format_summary(
            [columns[i] for i in keep], [[row[i] for i in keep] for row in rows],
            totals if last else (), notes if last else (), line_length,
        ))
    return "\n\n".join(tables)


def _summary_table(
    columns: Union[str, Sequence[str]],
    layers: Sequence[Any],
    describe: Callable[[Any, str], Any],
    layer_energy: Callable[[Any, str, int, float], Tuple[float, float]],
    total_energy: Callable[[str, int, float], float],
    *,
    all_layers_spiking: bool,
    timesteps_per_inference: int = 1,
    dt: Optional[float] = None,
    default_dt: float = DEFAULT_DT,
    line_length: int = 98,
    print_warnings: bool = True,
    noun: str = "summary column",
) -> str:
    """Build the complete summary table of an estimator (``summary_string``).

    Checks the arguments (columns, then ``line_length``, then timesteps and
    ``dt``), fills the cells with `_summary_rows`, adds a total line per "energy"
    column and, if ``print_warnings``, the `_assumption_notes`; device columns that
    do not fit in ``line_length`` go to further tables (`_format_tables`).

    Parameters
    ----------
    columns : str or sequence of str
        Column specifications (see `parse_columns`).
    layers : sequence
        The layers, in table order.
    describe : callable
        ``describe(layer, kind)``, see `_summary_rows`.
    layer_energy : callable
        ``layer_energy(layer, device, timesteps, dt) -> (synop, neuron)``.
    total_energy : callable
        ``total_energy(device, timesteps, dt) -> float``.
    all_layers_spiking : bool
        Whether every layer could run on a spiking device as it is.
    timesteps_per_inference : int
        Timesteps per inference on spiking devices.
    dt : float, optional
        Device timestep in seconds; None means ``default_dt``.
    default_dt : float
        The estimator's default timestep.
    line_length : int
        Maximum table width.
    print_warnings : bool
        Whether to append the notes on assumptions.
    noun : str
        How column error messages call a column.

    Returns
    -------
    str
        The table.
    """
    parsed = parse_columns(columns, noun=noun)
    # device columns may go to tables of their own: the narrowest has one of them
    n_devices = sum(column.kind in DEVICE_COLUMNS for column in parsed)
    line_length = check_line_length(line_length, len(parsed) - max(n_devices - 1, 0))
    timesteps = check_timesteps(timesteps_per_inference)
    dt = check_dt(dt, default_dt)
    rows = _summary_rows(parsed, layers, describe, lambda layer, device: layer_energy(layer, device, timesteps, dt))
    totals = [(c.device, total_energy(c.device, timesteps, dt)) for c in parsed if c.kind == "energy"]
    notes = _assumption_notes(parsed, all_layers_spiking) if print_warnings else []
    return _format_tables(parsed, rows, totals, notes, line_length)


class EnergyEstimator:
    """Base class of the estimators: energies, totals and the summary table, once.

    ``keras_layers.ModelEnergy`` and :class:`spikeonnx.analysis.GraphEnergy` derive
    from it. Both return :class:`LayerRecord` rows from `_summary_layers` and map a
    user's layer argument to its record in `_record`; everything else (the energy
    of a layer, the total, the table) is done here from the records, so both
    estimators validate, add up and lay out in exactly the same way.

    A subclass whose rows are not records overrides `_describe`,
    `_all_layers_spiking` and `layer_energy` as well.
    """

    #: How column error messages call a column ("unknown summary column 'x'").
    _column_noun = "summary column"

    # ------------------------------------------------------------------ hooks

    def _summary_layers(self) -> Sequence[Any]:
        """The rows in table order (`LayerRecord`, or what the other hooks accept)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _summary_layers")

    def _record(self, layer: Any) -> LayerRecord:
        """The record of ``layer``: a record, or the name of one. Estimators extend
        this to their own layer objects."""
        rows = self._summary_layers()
        if isinstance(layer, LayerRecord):
            return layer
        for row in rows:
            if isinstance(row, LayerRecord) and row.name == layer:
                return row
        known = ", ".join(str(getattr(row, "name", row)) for row in rows)
        raise ValueError(f"no layer named {layer!r}; layers: {known}")

    def _describe(self, layer: Any, kind: str) -> Any:
        """Value of a non-energy column for one layer (see `_summary_rows`)."""
        return self._record(layer).describe(kind)

    def _all_layers_spiking(self) -> bool:
        """Whether every layer could run on a spiking device as it is."""
        return all(self._record(layer).spiking for layer in self._summary_layers())

    def _default_dt(self) -> float:
        """The timestep used when ``dt`` is None (read at call time)."""
        return DEFAULT_DT

    def layer_energy(
        self, layer: Any, device: str, timesteps_per_inference: int = 1, dt: Optional[float] = None
    ) -> Tuple[float, float]:
        """Estimate the energy one layer uses per inference.

        Parameters
        ----------
        layer : LayerRecord, str or the estimator's layer object
            The layer (see `_record`). A layer applied several times is charged for
            every application, each at its own input rate.
        device : str
            A device of :mod:`spikeonnx.devices` (e.g. ``"cpu"``, ``"loihi"``).
        timesteps_per_inference : int
            Timesteps per inference (ignored on non-spiking devices).
        dt : float, optional
            Length of a device timestep in seconds (default: `_default_dt`).

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
        record = self._record(layer)
        spec = lookup_device(device)
        timesteps = check_timesteps(timesteps_per_inference)
        dt = check_dt(dt, self._default_dt())
        return layer_energy(record.connections, record.neurons, record.rates, spec, timesteps, dt)

    # ---------------------------------------------------------------- results

    def total_energy(
        self, device: str, timesteps_per_inference: int = 1, dt: Optional[float] = None
    ) -> float:
        """Estimate the energy the whole model uses per inference.

        Parameters
        ----------
        device : str
            Device name (see `layer_energy`).
        timesteps_per_inference : int
            Timesteps each inference runs for (spiking devices only).
        dt : float, optional
            Length of a device timestep in seconds (default: the estimator's,
            ``keras_layers.default.dt`` for ``ModelEnergy`` and `DEFAULT_DT` for
            ``GraphEnergy``).

        Returns
        -------
        float
            Estimated energy in Joules per inference (synaptic plus neuron energy of
            every layer).

        Raises
        ------
        ValueError
            As `layer_energy`: unknown device, bad ``dt`` or timesteps, or a spiking
            device without example data.
        """
        return sum_energy(
            self.layer_energy(layer, device, timesteps_per_inference, dt) for layer in self._summary_layers()
        )

    def summary(
        self,
        columns: Sequence[str] = DEFAULT_COLUMNS,
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
        line_length: int = 98,
        print_warnings: bool = True,
        *,
        width: Optional[int] = None,
    ) -> None:
        """Print a per-layer table of statistics and energy estimates.

        Parameters
        ----------
        columns : sequence of str
            Columns to show, any of

            - "name": layer name and type;
            - "output_shape": output shape of the layer;
            - "params": number of parameters;
            - "connections": synaptic connections;
            - "neurons": neuron updates per timestep;
            - "rate": average input firing rate in Hz (needs ``example_data``; only
              matters for layers with connections);
            - "synop_energy <device>": synaptic energy (J/inference) on <device>;
            - "neuron_energy <device>": neuron-update energy (J/inference);
            - "energy <device>": total energy (J/inference) on <device>.

            <device> is any registered device name.
        timesteps_per_inference : int
            Timesteps each inference runs for (spiking devices only).
        dt : float, optional
            Length of a device timestep in seconds (default: see `total_energy`).
        line_length : int
            Maximum length of a table line. Device columns that do not fit are
            split over several tables (each repeating the other columns); text
            columns are shortened only if one device column does not fit.
        print_warnings : bool
            Whether to add notes about the assumptions behind the estimates.
        width : int, optional
            The same limit as ``line_length`` under the command line's name (it
            takes precedence when given), e.g. ``shutil.get_terminal_size().columns``
            to fit the terminal.
        """
        print(self.summary_string(columns, timesteps_per_inference, dt, line_length, print_warnings, width=width))

    def summary_string(
        self,
        columns: Sequence[str] = DEFAULT_COLUMNS,
        timesteps_per_inference: int = 1,
        dt: Optional[float] = None,
        line_length: int = 98,
        print_warnings: bool = True,
        *,
        width: Optional[int] = None,
    ) -> str:
        """Return the table that `summary` prints, as a string.

        See `summary` for the parameters; the layout is that of `_format_summary`.

        Raises
        ------
        ValueError
            For an unknown column or device, a device column without a device (or a
            plain column with one), a too small ``line_length``, bad ``dt`` or
            timesteps, or a spiking device without example data.
        """
        return _summary_table(
            columns,
            self._summary_layers(),
            self._describe,
            self.layer_energy,
            self.total_energy,
            all_layers_spiking=self._all_layers_spiking(),
            timesteps_per_inference=timesteps_per_inference,
            dt=dt,
            default_dt=self._default_dt(),
            line_length=line_length if width is None else width,
            print_warnings=print_warnings,
            noun=self._column_noun,
        )
