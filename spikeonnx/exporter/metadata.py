"""The ``metadata_props`` the exporter writes, and a reader for them.

Every value is a JSON string; see "Model metadata" in ``docs/op-contract.md``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import onnx

__all__ = [
    "PRODUCER",
    "KEY_VERSION",
    "KEY_BATCH_AXES",
    "KEY_TIME_AXES",
    "KEY_DT",
    "KEY_LAYERS",
    "KEY_INITIAL_STATE",
    "KEY_SEEDS",
    "KEY_STATE_IO",
    "attach",
    "read",
]

PRODUCER = "spikeonnx"
KEY_VERSION = "spikeonnx.version"
KEY_BATCH_AXES = "spikeonnx.batch_axes"  # graph input/output name -> batch axis or null
KEY_TIME_AXES = "spikeonnx.time_axes"  # graph input/output name -> time axis or null
KEY_DT = "spikeonnx.dt"  # spiking node name -> dt (seconds)
KEY_LAYERS = "spikeonnx.layers"  # ONNX node name -> Keras layer name
KEY_INITIAL_STATE = "spikeonnx.initial_state"  # state input name -> how the state starts
KEY_SEEDS = "spikeonnx.seeds"  # SpikingActivation node (without state input) -> seed
KEY_STATE_IO = "spikeonnx.state_io"  # state input name -> matching state output name

_KEYS = (KEY_BATCH_AXES, KEY_TIME_AXES, KEY_DT, KEY_LAYERS, KEY_INITIAL_STATE, KEY_SEEDS, KEY_STATE_IO)


def attach(
    model: onnx.ModelProto,
    *,
    batch_axes: Dict[str, Optional[int]],
    time_axes: Dict[str, Optional[int]],
    dts: Dict[str, float],
    layers: Dict[str, str],
    initial_state: Dict[str, Dict[str, Any]],
    seeds: Dict[str, int],
    state_io: Dict[str, str],
) -> None:
    """Set the producer fields and write our metadata keys into ``model``.

    Existing entries with the same keys are replaced; others are kept.
    """
    from .. import __version__

    model.producer_name = PRODUCER
    model.producer_version = __version__
    values = {
        KEY_VERSION: __version__,
        KEY_BATCH_AXES: json.dumps(batch_axes),
        KEY_TIME_AXES: json.dumps(time_axes),
        KEY_DT: json.dumps(dts),
        KEY_LAYERS: json.dumps(layers),
        KEY_INITIAL_STATE: json.dumps(initial_state),
        KEY_SEEDS: json.dumps(seeds),
        KEY_STATE_IO: json.dumps(state_io),
    }
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)


def read(model: onnx.ModelProto) -> Dict[str, Any]:
    """Return our metadata of ``model``, JSON-decoded, keyed by metadata key.

    Raises
    ------
    ValueError
        If one of our keys holds a value that is not valid JSON.
    """
    out: Dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key == KEY_VERSION:
            out[prop.key] = prop.value
        elif prop.key in _KEYS:
            try:
                out[prop.key] = json.loads(prop.value)
            except json.JSONDecodeError as err:
                raise ValueError(f"metadata key {prop.key!r} is not valid JSON: {err}") from None
    return out
