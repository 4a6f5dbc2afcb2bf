"""The device energy table shared by ``keras_layers.ModelEnergy`` and ``spikeonnx.GraphEnergy``.

A device is described by the energy of one synaptic operation, the energy of one
neuron update, and whether it is event-based ("spiking"). This module has no
TensorFlow dependency so the ONNX analyzer and the Keras estimator read one table.
The table is a :class:`spikeonnx.registry.Registry`: registering a known name again
warns and replaces its figures, ``replace=True`` replaces silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterator, List, Optional

from .registry import Registry

__all__ = ["Device", "DeviceTable", "register_device", "get_device", "devices", "DEVICES"]


@dataclass(frozen=True)
class Device:
    """Energy figures of one device.

    Parameters
    ----------
    name : str
        Name used to refer to the device (e.g. ``"loihi"``).
    energy_per_synop : float
        Energy in Joules of one synaptic operation.
    energy_per_neuron : float
        Energy in Joules of one neuron update.
    spiking : bool
        True if the device is event-based: it only does synaptic work for incoming
        spikes, instead of computing every connection on every timestep.
    source : str
        Where the figures come from.
    """

    name: str
    energy_per_synop: float
    energy_per_neuron: float
    spiking: bool
    source: str = "user-registered"


class DeviceTable(Registry[Device]):
    """The device registry, also usable as a mutable mapping name -> `Device`.

    Item assignment replaces silently (as ``register(..., replace=True)``), so a
    test can patch the table with ``monkeypatch.setitem``; :func:`register_device`
    is the checked way to add a device.
    """

    def __setitem__(self, name: Hashable, device: Device) -> None:
        self.register(name, device, replace=True)

    def __delitem__(self, name: Hashable) -> None:
        self.unregister(name)

    def pop(self, name: Hashable, *default: Any) -> Any:
        """Remove and return the device called ``name`` (or ``default``)."""
        if name not in self and default:
            return default[0]
        return self.unregister(name)

    def values(self) -> List[Device]:
        """The devices, in registration order."""
        return [device for _, device in self.items()]


# The single, module-level table. Registering mutates it in place so that every
# consumer (Keras estimator, ONNX analyzer, CLI) sees user devices.
DEVICES = DeviceTable(
    "device",
    overwrite_message=lambda name: (
        f"Device '{name}' already registered. Overwriting. Pass replace=True when "
        "replacing its figures on purpose, to do it silently"
    ),
)

_DEGNAN = (
    "Degnan, Marr & Hasler (2015), Assessing trends in performance per watt for "
    "signal processing applications, IEEE TVLSI 24(1)"
)
_DAVIES = "Davies et al. (2018), Loihi: a neuromorphic manycore processor, IEEE Micro 38(1)"
_HOPPNER = (
    "Hoeppner et al. (2019), Dynamic power management for neuromorphic many-core "
    "systems, IEEE TCAS-I 66(8)"
)


def register_device(
    device_name: str,
    energy_per_synop: float,
    energy_per_neuron: float,
    spiking: bool,
    source: Optional[str] = None,
    *,
    replace: bool = False,
) -> Device:
    """Add a device to the table, or replace the figures of an existing one.

    Parameters
    ----------
    device_name : str
        The string used to refer to the device.
    energy_per_synop : float
        Energy (J) of a single synaptic operation on the device.
    energy_per_neuron : float
        Energy (J) of a single neuron update on the device.
    spiking : bool
        Whether the device is event-based (only processes incoming spikes).
    source : str, optional
        Where the figures come from (shown by ``spikeonnx devices``).
    replace : bool
        Replace an existing device silently (otherwise a warning says so).

    Returns
    -------
    Device
        The registered entry.
    """
    if not isinstance(device_name, str) or not device_name:
        raise ValueError(f"device name must be a non-empty string, got {device_name!r}")
    for label, value in (("energy_per_synop", energy_per_synop), ("energy_per_neuron", energy_per_neuron)):
        value = float(value)
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"device {device_name!r}: {label} must be a finite number >= 0, got {value!r}")
    device = Device(
        device_name,
        float(energy_per_synop),
        float(energy_per_neuron),
        bool(spiking),
        source if source is not None else "user-registered",
    )
    DEVICES.register(device_name, device, replace=replace)
    return device


def get_device(device_name: str) -> Device:
    """Look up a device by name.

    Raises
    ------
    ValueError
        If the device is not registered; the message lists the known devices.
    """
    try:
        return DEVICES[device_name]
    except KeyError:
        raise ValueError(
            f"Energy specs unknown for device {device_name!r} (unknown device {device_name!r}; "
            f"known devices: {', '.join(sorted(DEVICES))}; add one with register_device)"
        ) from None


def devices() -> Iterator[Device]:
    """Iterate over the registered devices in registration order."""
    return iter(DEVICES.values())


# Published figures, as listed in the KerasSpiking reference (synop / neuron, Joules).
register_device("cpu", 8.6e-9, 8.6e-9, spiking=False, source=_DEGNAN + " (Intel i7-4960X, one MAC per op)")
register_device("gpu", 0.3e-9, 0.3e-9, spiking=False, source=_DEGNAN + " (Nvidia GTX Titan Black, one MAC per op)")
register_device("arm", 0.9e-9, 0.9e-9, spiking=False, source=_DEGNAN + " (ARM Cortex-A, one MAC per op)")
register_device("loihi", (23.6 + 3.5) * 1e-12, 81e-12, spiking=True, source=_DAVIES)
register_device("spinnaker", 13.3e-9, 26e-9, spiking=True, source=_HOPPNER + " (SpiNNaker 1)")
register_device("spinnaker2", 450e-12, 2.19e-9, spiking=True, source=_HOPPNER + " (SpiNNaker 2)")
