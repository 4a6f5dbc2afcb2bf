"""The model contract: what a ``spikeonnx`` model file is, declared once.

Everything another module needs to agree on lives here and nowhere else: the custom
ONNX domain and its version, the highest IR version we write and hand to
onnxruntime, the names of state inputs and outputs, the ``metadata_props`` keys and
their meaning, how a state input starts, and how a model file is read. The exporter
writes through this module; the runtime and the analyzer read through it. See
``docs/op-contract.md`` for the prose.

This module is at the bottom of the package: it imports only NumPy, onnx and
:mod:`spikeonnx.philox`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from .philox import SEED_MAX, SEED_MIN, tf_stateless_uniform

__all__ = [
    "DOMAIN",
    "OPSET_VERSION",
    "OP_TYPES",
    "EVENT_OPS",
    "EVENT_OP_TYPES",
    "FUSED_RELU_OPS",
    "FUSED_SPIKING_OP",
    "MAX_IR_VERSION",
    "PRODUCER",
    "STATE_IN_SUFFIX",
    "STATE_OUT_SUFFIX",
    "KEY_VERSION",
    "KEY_BATCH_AXES",
    "KEY_TIME_AXES",
    "KEY_DT",
    "KEY_LAYERS",
    "KEY_INITIAL_STATE",
    "KEY_SEEDS",
    "KEY_STATE_IO",
    "METADATA_KEYS",
    "MetadataError",
    "Metadata",
    "read_metadata",
    "write_metadata",
    "initial_state",
    "check_seed",
    "load_model",
    "ModelLike",
]

#: Name of our custom ONNX domain.
DOMAIN = "spikeonnx"
#: Version of the domain (the operator set our nodes belong to).
OPSET_VERSION = 1
#: The spiking and filter operators of the domain (the event ops follow).
OP_TYPES = ("SpikingActivation", "Lowpass", "Alpha")
#: Event-driven weighted ops of the domain (:mod:`spikeonnx.events`), by the standard op
#: whose value each computes (only for nonzero inputs, in the op library).
EVENT_OPS = {"MatMul": "EventMatMul", "Gemm": "EventGemm", "Conv": "EventConv"}
#: The event-driven ops' names.
EVENT_OP_TYPES = tuple(EVENT_OPS.values())
#: Execution-only ops of the op library, never written to a file: an event op followed by
#: ``Relu``, in one pass over the output (:func:`spikeonnx.events.fuse_relu`, which the
#: sessions of :mod:`spikeonnx.runtime` apply, as onnxruntime fuses ``Conv`` and ``Relu``).
FUSED_RELU_OPS = {event: f"{event}Relu" for event in EVENT_OP_TYPES}
#: Execution-only op of the op library: an ``EventConv`` (or ``EventConvRelu``) whose
#: output, through one ``Reshape`` (and tf2onnx's ``Transpose`` to channels-last), is a
#: ``SpikingActivation``'s rates, as one node whose output is the spikes
#: (:func:`spikeonnx.events.fuse_spiking`, applied by the sessions).
FUSED_SPIKING_OP = "EventConvSpiking"
#: Highest model IR version we write and hand to onnxruntime. onnx 1.17+ writes IR 11+
#: by default; onnxruntime 1.18 and later accept IR 10, and nothing we emit needs more.
MAX_IR_VERSION = 10
#: ``ModelProto.producer_name`` of exported models.
PRODUCER = "spikeonnx"

#: Suffix of a state input / output of an exported model (``--state-io``): the state
#: input of node ``X`` is ``X/state_in`` and its final state ``X/state_out``.
STATE_IN_SUFFIX = "/state_in"
STATE_OUT_SUFFIX = "/state_out"

# Metadata keys. Every value is a JSON string.
KEY_VERSION = "spikeonnx.version"  # package version that wrote the file (plain string)
KEY_BATCH_AXES = "spikeonnx.batch_axes"  # graph input/output name -> batch axis or null
KEY_TIME_AXES = "spikeonnx.time_axes"  # graph input/output name -> time axis or null
KEY_DT = "spikeonnx.dt"  # spiking node name -> dt (seconds)
KEY_LAYERS = "spikeonnx.layers"  # ONNX node name -> Keras layer name
KEY_INITIAL_STATE = "spikeonnx.initial_state"  # state input name -> how the state starts
KEY_SEEDS = "spikeonnx.seeds"  # SpikingActivation node (without state input) -> seed
KEY_STATE_IO = "spikeonnx.state_io"  # state input name -> matching state output name

#: Our JSON-valued metadata keys (``KEY_VERSION`` is a plain string).
METADATA_KEYS = (KEY_BATCH_AXES, KEY_TIME_AXES, KEY_DT, KEY_LAYERS, KEY_INITIAL_STATE, KEY_SEEDS, KEY_STATE_IO)

#: Kinds of ``spikeonnx.initial_state`` entries.
INITIAL_STATE_KINDS = ("zeros", "constant", "uniform_seed")

ModelLike = Union[str, "os.PathLike[str]", bytes, onnx.ModelProto]


class MetadataError(ValueError):
    """A ``spikeonnx.*`` metadata value is malformed; the message names the key."""


@dataclass(frozen=True)
class Metadata:
    """Our metadata of one model, parsed and validated (empty mappings when absent)."""

    version: Optional[str] = None
    batch_axes: Dict[str, Optional[int]] = field(default_factory=dict)
    time_axes: Dict[str, Optional[int]] = field(default_factory=dict)
    dt: Dict[str, float] = field(default_factory=dict)
    layers: Dict[str, str] = field(default_factory=dict)
    initial_state: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    seeds: Dict[str, int] = field(default_factory=dict)
    state_io: Dict[str, str] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        """Whether the model carries any of our metadata (i.e. was exported by us)."""
        return self.version is not None or any(
            (self.batch_axes, self.time_axes, self.dt, self.layers, self.initial_state, self.seeds, self.state_io)
        )


# ---------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _axis(key: str, name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if not _is_int(value) or not -64 <= value < 64:
        raise MetadataError(f"metadata {key!r}: axis of {name!r} must be a small integer or null, got {value!r}")
    return value


def _dt(key: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise MetadataError(f"metadata {key!r}: dt of {name!r} must be a finite number > 0, got {value!r}")
    return float(value)


def _string(key: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise MetadataError(f"metadata {key!r}: value of {name!r} must be a string, got {value!r}")
    return value


def _seed(key: str, name: str, value: Any) -> int:
    try:
        return check_seed(value)
    except ValueError as err:
        raise MetadataError(f"metadata {key!r} for {name!r}: {err}") from None


def _state_spec(key: str, name: str, value: Any) -> Dict[str, Any]:
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind not in INITIAL_STATE_KINDS:
        raise MetadataError(
            f"metadata {key!r}: unknown initial state {value!r} for {name!r} "
            f"(expected kind {', '.join(map(repr, INITIAL_STATE_KINDS))})"
        )
    spec = dict(value)
    if kind == "constant":
        try:
            as_array = np.asarray(spec.get("value"), dtype=np.float64)
        except (TypeError, ValueError):
            raise MetadataError(f"metadata {key!r}: constant of {name!r} is not numeric: {spec.get('value')!r}") from None
        if not np.all(np.isfinite(as_array)):
            raise MetadataError(f"metadata {key!r}: constant of {name!r} is not finite")
    elif kind == "uniform_seed":
        spec["seed"] = _seed(key, name, spec.get("seed"))
    return spec


# key -> (Metadata field, validator of one entry)
_FIELDS = {
    KEY_BATCH_AXES: ("batch_axes", _axis),
    KEY_TIME_AXES: ("time_axes", _axis),
    KEY_DT: ("dt", _dt),
    KEY_LAYERS: ("layers", _string),
    KEY_INITIAL_STATE: ("initial_state", _state_spec),
    KEY_SEEDS: ("seeds", _seed),
    KEY_STATE_IO: ("state_io", _string),
}


def read_metadata(model: onnx.ModelProto, where: str = "model") -> Metadata:
    """Parse and validate our ``metadata_props`` of ``model``.

    Parameters
    ----------
    model : onnx.ModelProto
        The model.
    where : str
        How to name the model in error messages (e.g. ``"file m.onnx"``).

    Returns
    -------
    Metadata
        Every key we know, validated; keys we do not know are ignored.

    Raises
    ------
    MetadataError
        If one of our keys is not a JSON object or holds a malformed entry.
    """
    values: Dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key == KEY_VERSION:
            values["version"] = prop.value
            continue
        if prop.key not in _FIELDS:
            continue
        attr, check = _FIELDS[prop.key]
        try:
            decoded = json.loads(prop.value)
        except (json.JSONDecodeError, RecursionError) as err:
            raise MetadataError(f"{where}: metadata {prop.key!r} is not valid JSON ({err})") from None
        if not isinstance(decoded, dict):
            raise MetadataError(f"{where}: metadata {prop.key!r} must be a JSON object, got {prop.value[:80]!r}")
        try:
            values[attr] = {str(name): check(prop.key, name, value) for name, value in decoded.items()}
        except MetadataError as err:
            raise MetadataError(f"{where}: {err}") from None
    return Metadata(**values)


def write_metadata(model: onnx.ModelProto, metadata: Metadata, version: str) -> None:
    """Set the producer fields and write ``metadata`` into ``model.metadata_props``.

    Existing entries with our keys are replaced; others are kept. ``metadata.version``
    is ignored in favour of ``version``.
    """
    model.producer_name = PRODUCER
    model.producer_version = version
    values = {KEY_VERSION: version}
    for key, (attr, _) in _FIELDS.items():
        values[key] = json.dumps(getattr(metadata, attr))
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)


# ---------------------------------------------------------------------------
# Initial states and seeds
# ---------------------------------------------------------------------------


def check_seed(seed: Any) -> int:
    """Return ``seed`` as a Python int if it is a valid seed (a signed 64-bit integer).

    Raises
    ------
    ValueError
        If ``seed`` is not an integer or does not fit in int64.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"'seed' must be an integer, got {seed!r}")
    if not SEED_MIN <= int(seed) <= SEED_MAX:
        raise ValueError(f"'seed' must fit in a signed 64-bit integer, got {seed}")
    return int(seed)


def initial_state(
    spec: Optional[Mapping[str, Any]], shape: Sequence[int], dtype: Any, *, name: str = "state"
) -> np.ndarray:
    """The value a state input starts from, as its ``spikeonnx.initial_state`` entry says.

    Parameters
    ----------
    spec : mapping or None
        One entry of :attr:`Metadata.initial_state` (``None`` means zeros):
        ``{"kind": "zeros"}``, ``{"kind": "constant", "value": per-sample values}``
        (broadcast to ``shape``) or ``{"kind": "uniform_seed", "seed": s}``
        (TensorFlow's ``stateless_uniform(shape, (s, s))``).
    shape : sequence of int
        Shape of the state tensor, batch axis included.
    dtype : numpy dtype
        Element type of the state input.
    name : str
        The state input's name, for error messages.

    Returns
    -------
    numpy.ndarray
        A new, C-contiguous array of ``shape`` and ``dtype``.

    Raises
    ------
    MetadataError
        If ``spec`` is malformed or a constant does not broadcast to ``shape``.
    """
    shape = tuple(int(d) for d in shape)
    dtype = np.dtype(dtype)
    spec = _state_spec(KEY_INITIAL_STATE, name, {"kind": "zeros"} if spec is None else spec)
    kind = spec["kind"]
    if kind == "zeros":
        return np.zeros(shape, dtype=dtype)
    if kind == "constant":
        value = np.asarray(spec["value"], dtype=dtype)
        try:
            return np.ascontiguousarray(np.broadcast_to(value, shape))
        except ValueError:
            raise MetadataError(
                f"metadata {KEY_INITIAL_STATE!r} for {name!r}: constant of shape {value.shape} does not broadcast "
                f"to the state shape {shape}"
            ) from None
    return tf_stateless_uniform(shape, spec["seed"]).astype(dtype, copy=False)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{where} is not an ONNX model (protobuf parse error: {err})") from None
    # Arbitrary bytes sometimes decode as a protobuf; a real model has a graph and an IR version.
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ValueError(f"{where} is not an ONNX model (no graph or IR version)")
    return proto


def load_model(model: ModelLike, *, load_external_data: bool = True) -> Tuple[onnx.ModelProto, str]:
    """Read a model from a path, bytes or a proto, never modifying the caller's proto.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
        The model. A proto is copied.
    load_external_data : bool
        Whether to load initializers stored in external files next to a model file.
        onnx refuses external-data paths that leave the model's folder.

    Returns
    -------
    (onnx.ModelProto, str)
        The model and a description of where it came from (``"file m.onnx"``),
        for error messages.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If the data is not an ONNX model, or its external data cannot be loaded.
    TypeError
        If ``model`` is of another type.
    """
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto, "the given ModelProto"
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _parse(bytes(model), "the given bytes"), "the given bytes"
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        where = f"file {path}"
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model file not found: {path}")
        with open(path, "rb") as handle:
            proto = _parse(handle.read(), where)
        if load_external_data and any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
        ):
            try:
                onnx.load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
            except (onnx.checker.ValidationError, OSError, ValueError) as err:
                raise ValueError(f"{where}: cannot load its external data: {err}") from None
        return proto, where
    raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")
