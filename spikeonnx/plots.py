"""Figures of an energy report (the dict of :meth:`spikeonnx.GraphEnergy.to_dict`).

matplotlib is imported lazily with the Agg backend, so nothing here needs a display.
Figures are written atomically (:func:`spikeonnx.fileio.atomic_write`): an interrupted
write leaves the old file as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence, Union

import numpy as np

from .fileio import atomic_write

__all__ = ["plot_energy", "plot_rates", "figure_path"]

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


def plot_energy(report: Dict[str, Any], path: PathLike, devices: Sequence[str]) -> Path:
    """Grouped bar chart of the energy per inference of each layer on each device (log scale).

    Parameters
    ----------
    report : dict
        Output of :meth:`spikeonnx.GraphEnergy.to_dict` covering ``devices``.
    path : str or pathlib.Path
        The PNG file to write.
    devices : sequence of str
        Devices to show, one bar per layer each.

    Returns
    -------
    pathlib.Path
        The file written (``path``, with ``.png`` added if it had no suffix).
    """
    plt = _pyplot()
    layers = [layer for layer in report["layers"] if layer["type"] != "Input"]
    names = [layer["name"] for layer in layers]
    width = 0.8 / max(len(devices), 1)
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(layers) + 3), 4.5))
    for i, device in enumerate(devices):
        values = [layer["energy"][device]["total"] for layer in layers]
        # zero energy has no place on a log axis: leave those bars out
        shown = [v if v > 0 else np.nan for v in values]
        ax.bar(x + (i - (len(devices) - 1) / 2) * width, shown, width, label=device)
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("energy per inference [J]")
    ax.set_title(f"Energy per layer: {Path(str(report['model'])).name}")
    ax.legend(title="device", fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    return _save(fig, path)


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
